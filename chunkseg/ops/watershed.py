"""Seeded, *bounded* watershed of a membrane probability block (pure NumPy/SciPy).

Cells are found in three steps, each defined by a rule with bounded support, so that
the blockwise engine (:mod:`chunkseg.engine.segment`) reproduces the whole-volume
result bit for bit with a finite halo:

1. **Seeds** — voxel ``x`` is a seed when it is foreground (``p < threshold``) and no
   background voxel (``p >= threshold``) lies within the ellipsoid of physical radius
   ``seed_distance`` µm around it (voxel-size aware).  Computed by
   :func:`capped_sq_distance`: a separable *windowed* squared distance
   ``min over background q in the box |Δ_a| <= w_a of Σ (s_a Δ_a)^2`` with
   ``w_a = floor(seed_distance / s_a)``.  Because rounding is monotone, the float
   result is the minimum over that box of one fixed expression per offset, so it is
   the same number whether the box was seen inside a block (with halo ``w``) or
   inside the whole volume.  Outside the volume counts as foreground (cells cut by
   the volume border still get seeds).  Seed components (6-connectivity) are cell
   markers.
2. **Flooding** — a cellular automaton (:func:`flood`): at every iteration each
   unlabelled voxel whose probability is below the current level takes, at once
   (synchronous update), the label of its labelled face neighbour of lowest ``p``
   (ties: fixed neighbour order −z, +z, −y, +y, −x, +x).  The level rises in stages
   (:func:`flood_schedule`): first through the foreground (``p < threshold``, in
   ``interior_levels`` rising steps) for ``reach`` µm each, then in ``levels`` steps
   up to 1 through the membranes, each for ``membrane_reach`` µm.  An axis only takes
   part in the iterations where the front, over the whole schedule, advances one
   voxel of that axis in physical units, so growth is isotropic in µm.
   After ``n`` iterations a voxel depends only on voxels within ``n_a`` steps along
   each axis (the light cone of the automaton), which gives the flood halo
   (:func:`flood_halo`).  The rule compares labels only for equality, never by
   value, so relabelled markers give the same partition.  Voxels out of reach of
   every seed stay 0.
3. **Small segments** (< ``min_size`` µm³) are merged, in one simultaneous round,
   into the neighbour they share most faces with (ties: the neighbour whose first
   voxel comes first in raster order); see :mod:`chunkseg.ops.segstats`.  Final ids
   number the cells by the raster order of their first voxel, so the labels do not
   depend on any chunking at all.

Limits: this is not skimage's unbounded priority flood; a cell is only complete if
every voxel lies within ``reach`` (+ membrane reach) of its seed, and a cell
thinner than ``2 * seed_distance`` everywhere gets no seed (its voxels join a
neighbour or stay 0).  :func:`watershed_reference` runs skimage's classic watershed
on the same seeds for comparison (in memory only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
from scipy import ndimage

from chunkseg.errors import DTypeError, InputError, ParameterError, ShapeError

__all__ = [
    "DEFAULT_MEMBRANE_REACH",
    "SegmentParams",
    "as_probability",
    "capped_sq_distance",
    "default_membrane_reach",
    "flood",
    "flood_halo",
    "flood_schedule",
    "label_seeds",
    "seed_halo",
    "seed_mask",
    "segment_block",
    "watershed_reference",
]

#: growth per membrane level (µm) when none is given, at the least
DEFAULT_MEMBRANE_REACH = 0.5
#: neighbour order of the flood (axis, step); ties go to the first
_NEIGHBOURS = ((0, -1), (0, 1), (1, -1), (1, 1), (2, -1), (2, 1))
#: the flood's marks of a voxel: free, in the front, parked, waiting for a higher level
_FREE, _FRONT, _PARKED, _WAITING = 0, 1, 2, 3
#: the sign bit of a float32: set in the flood's key of an unlabelled voxel
_SIGN = np.uint32(0x80000000)
#: the bits of float32 inf
_INF_BITS = np.uint32(0x7F800000)


@dataclass(frozen=True)
class SegmentParams:
    """Validated parameters of the segmentation (lengths in µm, volumes in µm³).

    Parameters
    ----------
    threshold : float
        Foreground is ``p < threshold``; must lie in (0, 1).
    seed_distance : float
        Seeds lie farther than this from any membrane voxel (µm, > 0).
    min_size : float
        Segments smaller than this (µm³, >= 0) merge into a neighbour.
    voxel_size : tuple of float
        ``(z, y, x)`` µm.
    reach : float, optional
        How far labels grow through the foreground (µm); default ``3 * seed_distance``.
    membrane_reach : float, optional
        Growth per membrane level (µm); default :func:`default_membrane_reach`.
    levels : int
        Membrane levels between ``threshold`` and 1.
    interior_levels : int
        Interior levels: the growth through the foreground runs in this many stages
        with levels evenly spaced in (0, threshold], each for ``reach`` µm, so the
        clearest interior is taken first.
    """

    threshold: float = 0.5
    seed_distance: float = 0.5
    min_size: float = 1.0
    voxel_size: tuple[float, float, float] = (1.0, 1.0, 1.0)
    reach: float | None = None
    membrane_reach: float | None = None
    levels: int = 3
    interior_levels: int = 1

    def __post_init__(self) -> None:
        t = float(self.threshold)
        if not 0.0 < t < 1.0:
            raise ParameterError(f"threshold must lie in (0, 1); got {self.threshold!r}")
        if not float(self.seed_distance) > 0:
            raise ParameterError(f"seed_distance must be > 0 µm; got {self.seed_distance!r}")
        if not float(self.min_size) >= 0:
            raise ParameterError(f"min_size must be >= 0 µm³; got {self.min_size!r}")
        vs = tuple(float(v) for v in self.voxel_size)
        if len(vs) != 3 or not all(v > 0 for v in vs):
            raise ParameterError(f"voxel_size must be 3 positive numbers; got {self.voxel_size!r}")
        reach = 3.0 * float(self.seed_distance) if self.reach is None else float(self.reach)
        mreach = (default_membrane_reach(vs) if self.membrane_reach is None
                  else float(self.membrane_reach))
        if not (reach >= 0 and mreach >= 0):
            raise ParameterError(f"reach and membrane_reach must be >= 0; got {reach}, {mreach}")
        if int(self.levels) < 1 or int(self.interior_levels) < 1:
            raise ParameterError(f"levels and interior_levels must be >= 1; got "
                                 f"{self.levels!r}, {self.interior_levels!r}")
        for name, value in (("threshold", t), ("seed_distance", float(self.seed_distance)),
                            ("min_size", float(self.min_size)), ("voxel_size", vs),
                            ("reach", reach), ("membrane_reach", mreach),
                            ("levels", int(self.levels)),
                            ("interior_levels", int(self.interior_levels))):
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict:
        """JSON-ready parameters."""
        return {"threshold": self.threshold, "seed_distance": self.seed_distance,
                "min_size": self.min_size, "voxel_size": list(self.voxel_size),
                "reach": self.reach, "membrane_reach": self.membrane_reach,
                "levels": self.levels, "interior_levels": self.interior_levels}

    @property
    def voxel_volume(self) -> float:
        """µm³ per voxel."""
        return float(np.prod(self.voxel_size))


def default_membrane_reach(voxel_size: Sequence[float]) -> float:
    """Growth per membrane level when none is given: :data:`DEFAULT_MEMBRANE_REACH` µm, or one
    voxel of the coarsest axis where that is longer.

    An axis takes part in the flood only in the iterations where the front crosses a
    multiple of its voxel size (:func:`flood_schedule`); with a shorter membrane reach
    the membrane levels of a volume whose slices lie farther apart than the three levels
    together (e.g. 2 µm) never step between slices, and a wall lying along a slice stays
    unreached.  At least one voxel per level lets each level take one step on every axis.
    """
    return max(DEFAULT_MEMBRANE_REACH, max(float(s) for s in voxel_size))


def as_probability(block: np.ndarray, *, name: str = "") -> np.ndarray:
    """Probability block as float32 in [0, 1] (uint8 is read as ``v / 255``).

    Raises
    ------
    DTypeError
        Not a float or uint8 array.
    InputError
        Values outside [0, 1] or NaN.
    """
    where = f"{name}: " if name else ""
    if block.dtype == np.uint8:
        return block.astype(np.float32) / np.float32(255)
    if block.dtype.kind != "f":
        raise DTypeError(f"{where}membrane probability must be float in [0, 1] or uint8; "
                         f"got dtype {block.dtype}")
    p = block.astype(np.float32, copy=False)
    if p.size and not (np.nanmin(p) >= 0 and np.nanmax(p) <= 1 and not np.isnan(p).any()):
        raise InputError(f"{where}membrane probability must lie in [0, 1]; found values in "
                         f"[{np.nanmin(p)!r}, {np.nanmax(p)!r}]"
                         + (" and NaN" if np.isnan(p).any() else ""))
    return p


def _windows(radius: float, voxel_size: Sequence[float]) -> tuple[int, int, int]:
    return tuple(int(math.floor(radius / float(s))) for s in voxel_size)


def seed_halo(params: SegmentParams) -> tuple[int, int, int]:
    """Halo (voxels per axis) that makes :func:`seed_mask` of a block exact."""
    return _windows(params.seed_distance, params.voxel_size)


def capped_sq_distance(background: np.ndarray, *, radius: float,
                       voxel_size: Sequence[float]) -> np.ndarray:
    """Squared distance (µm²) to the nearest background voxel within a box.

    The box has half-widths ``floor(radius / s_a)`` voxels; ``inf`` where it holds no
    background.  Out-of-array voxels are not background.  Bit-identical for any
    sub-block that contains the box of a voxel (see the module notes): one grey
    erosion per axis (x, then y, then z), ``min over |o| <= w of d[x + o] + (s o)^2``,
    in float64.
    """
    d = None
    for axis, w in reversed(list(enumerate(_windows(radius, voxel_size)))):
        if w == 0:
            continue
        o = np.arange(-w, w + 1, dtype=np.float64)
        cost = float(voxel_size[axis]) ** 2 * o * o
        shape = (int(np.prod(background.shape[:axis])), background.shape[axis], -1)
        d = (_erode_first(background.reshape(shape), cost) if d is None else
             _erode_middle(d.reshape(shape), cost)).reshape(background.shape)
    return np.where(background, 0.0, np.inf) if d is None else d


@numba.njit(cache=True, nogil=True)
def _erode_first(background, cost):
    """:func:`_erode_middle` of ``where(background, 0, inf)``: the cost of the nearest
    background voxel along the middle axis (``cost`` is symmetric and grows with
    ``|o|``, so that is the minimum), found by one scan each way."""
    a, n, b = background.shape
    w = (cost.size - 1) // 2
    out = np.empty(background.shape)
    for i in range(a):
        for k in range(b):
            last = -n - w - 1
            for j in range(n):
                if background[i, j, k]:
                    last = j
                out[i, j, k] = cost[w + j - last] if j - last <= w else np.inf
            last = 2 * n + w + 1
            for j in range(n - 1, -1, -1):
                if background[i, j, k]:
                    last = j
                if last - j <= w:
                    out[i, j, k] = min(out[i, j, k], cost[w + last - j])
    return out


@numba.njit(cache=True, nogil=True)
def _erode_middle(d, cost):
    """Grey erosion along the middle axis of a C-contiguous 3D array:
    ``out[i, j, k] = min over |o| <= w of d[i, j + o, k] + cost[o + w]`` (outside: inf).

    One offset at a time over a whole slab ``i``, so the inner loop runs along memory.
    """
    a, n, b = d.shape
    w = (cost.size - 1) // 2
    src = d.reshape(a, n * b)
    out = np.full((a, n * b), np.inf)
    for i in range(a):
        for o in range(-w, w + 1):
            c = cost[o + w]
            for t in range(max(0, -o) * b, min(n, n - o) * b):
                v = src[i, t + o * b] + c
                m = out[i, t]
                out[i, t] = v if v < m else m
    return out.reshape(d.shape)


def seed_mask(prob: np.ndarray, params: SegmentParams) -> np.ndarray:
    """Boolean seeds: foreground voxels with no membrane within ``seed_distance`` µm."""
    if prob.ndim != 3:
        raise ShapeError(f"expected a 3D (z, y, x) probability block; got shape {prob.shape}")
    background = prob >= np.float32(params.threshold)
    d = capped_sq_distance(background, radius=params.seed_distance,
                           voxel_size=params.voxel_size)
    return ~background & (d > params.seed_distance ** 2)


def label_seeds(seeds: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (face connectivity) of a seed mask: ``(labels int32, n)``."""
    lab, n = ndimage.label(seeds)
    return lab, int(n)


def flood_schedule(params: SegmentParams) -> list[tuple[float, tuple[bool, bool, bool]]]:
    """One ``(level, active axes)`` entry per flood iteration.

    ``interior_levels`` stages grow through ``p < level`` (levels evenly spaced in
    (0, threshold]) for ``reach`` µm each; then ``levels`` stages
    with levels evenly spaced in (threshold, 1] (the last takes every voxel), each
    ``membrane_reach`` µm.  Axis ``a`` is active in an iteration when the front,
    advancing ``min(voxel_size)`` µm per iteration over the whole schedule, crosses a
    multiple of ``s_a`` (so an axis coarser than one stage's reach still grows).
    """
    smin = min(params.voxel_size)
    t = params.threshold
    n_in = params.interior_levels
    stages = [(t * k / n_in if k < n_in else t, params.reach) for k in range(1, n_in + 1)]
    for k in range(1, params.levels + 1):
        level = t + (1.0 - t) * k / params.levels if k < params.levels else math.inf
        stages.append((level, params.membrane_reach))
    schedule = []
    done = 0  # iterations so far: the front's distance runs on across stages
    for level, dist in stages:
        n = int(math.ceil(dist / smin - 1e-9))
        for i in range(done, done + n):
            active = tuple(
                math.floor((i + 1) * smin / s + 1e-9) > math.floor(i * smin / s + 1e-9)
                for s in params.voxel_size)
            schedule.append((level, active))
        done += n
    return schedule


def flood_halo(params: SegmentParams) -> tuple[int, int, int]:
    """Halo (voxels per axis) that makes :func:`flood` of a block exact."""
    sched = flood_schedule(params)
    return tuple(sum(1 for _, act in sched if act[a]) for a in range(3))


def flood(markers: np.ndarray, prob: np.ndarray, params: SegmentParams, *,
          exact: Sequence[slice] | None = None) -> np.ndarray:
    """Grow ``markers`` (0 = unlabelled) over ``prob`` by the bounded flood rule.

    Parameters
    ----------
    markers : ndarray of int, (z, y, x)
    prob : ndarray of float32, (z, y, x)
        Membrane probability in [0, 1].
    params : SegmentParams
    exact : sequence of 3 slice, optional
        The box whose labels are wanted (default: the whole array).  A voxel stops
        being updated once it lies outside the light cone of that box (farther from
        it along some axis than the iterations left that are active on that axis),
        so labels outside the box may stay incomplete; inside it they are those of
        the unpruned rule.

    Returns
    -------
    ndarray
        Labels, same dtype as ``markers`` (a view into a padded work array); unreached
        voxels stay 0.
    """
    if markers.shape != prob.shape or markers.ndim != 3:
        raise ShapeError(f"markers {markers.shape} and probability {prob.shape} must be equal 3D")
    sched = flood_schedule(params)
    levels = sorted({level for level, _ in sched})
    state = _FloodState(markers, prob, levels, _light_cone(markers.shape, exact, sched))
    i = 0
    for k, level in enumerate(levels):
        state.start_level(k)
        while i < len(sched) and sched[i][0] == level:
            state.step(sched[i][1], i)
            i += 1
    return state.lab[(slice(1, -1),) * 3]


def _light_cone(shape: Sequence[int], exact: Sequence[slice] | None,
                sched: Sequence[tuple[float, tuple[bool, bool, bool]]]) -> np.ndarray:
    """Per voxel of the padded array, the last iteration whose update can still reach
    the box ``exact`` (-1: none; the pad is -1)."""
    n = len(sched)
    dtype = next(t for t in (np.int8, np.int16, np.int32) if n < np.iinfo(t).max)
    last = None
    for axis, size in enumerate(shape):
        box = range(size) if exact is None else range(size)[exact[axis]]
        # later[i]: iterations after i that move along this axis
        act = np.array([a[axis] for _, a in sched], np.int64)
        later = act[::-1].cumsum()[::-1] - act
        c = np.arange(size)
        dist = np.maximum(np.maximum(box.start - c, c - (box.stop - 1)), 0)
        # the last i with later[i] >= dist (later is non-increasing)
        lim = np.searchsorted(-later, -dist, side="right") - 1
        lim = np.pad(lim, 1, constant_values=-1).astype(dtype)
        lim = lim.reshape([-1 if a == axis else 1 for a in range(3)])
        last = lim if last is None else np.minimum(last, lim)  # 3D only at the last axis
    return last


class _FloodState:
    """The flat padded arrays of :func:`flood` and its lists of voxels.

    ``key`` holds, per voxel, the bits of its probability as uint32 (for values >= 0
    their order as integers is their order as floats) with the sign bit :data:`_SIGN`
    set while the voxel is unlabelled; the pad is an unlabelled ``inf``.  So one
    gather per neighbour finds the labelled neighbour of lowest ``p`` (the smallest
    key below ``_SIGN``).  ``rank`` is the index of the first level above a free
    voxel's ``p``, or ``never`` (the number of levels: labelled voxels, the pad and
    voxels above every level): a voxel is free and below level ``k`` exactly when
    ``rank <= k``.  So no level needs a pass over the whole array.

    Lists: the *front* (free voxels below the level with a labelled face neighbour),
    the *parked* front voxels (no labelled neighbour along the active axes: they cannot
    succeed before a neighbour of theirs is labelled, which makes them candidates again,
    or the active axes change, which returns them to the front) and the *waiting* voxels
    (free, at or above the level, with a labelled neighbour: the front of a later level
    takes them in).
    """

    def __init__(self, markers: np.ndarray, prob: np.ndarray, levels: Sequence[float],
                 life: np.ndarray) -> None:
        self.lab = np.zeros(tuple(s + 2 for s in markers.shape), markers.dtype)
        key = np.empty(self.lab.shape, np.uint32)
        self.never = np.min_scalar_type(len(levels)).type(len(levels))
        rank = np.empty(self.lab.shape, self.never.dtype)
        labelled = np.empty(np.count_nonzero(markers), np.int64)
        _fill_state(markers, np.asarray(prob, np.float32).view(np.uint32),
                    np.array(levels, np.float32).view(np.uint32), self.lab, key, rank, labelled)
        self.flab, self.key, self.rank = self.lab.ravel(), key.ravel(), rank.ravel()
        self.life = life.ravel()
        self.steps = np.array([step * (self.lab.strides[axis] // self.lab.itemsize)
                               for axis, step in _NEIGHBOURS], np.int64)
        self.where = np.zeros(self.flab.size, np.uint8)
        self.labelled = labelled
        self.front = self.active = None
        self.parked, self.waiting, self.ranks = [], [], []
        self.level = 0

    def start_level(self, level: int) -> None:
        """The front of level ``level`` (an index): the last level's front and parked
        voxels, and the waiting voxels now below the level (their ranks are kept beside
        them, so this reads no voxel array).

        Sorted, so that the steps of the level visit memory roughly in order.
        """
        if self.front is None:
            self.front, waiting, ranks = _touch(self.labelled, self.steps, self.rank, level,
                                                self.never, self.where)
            self.labelled, self.waiting, self.ranks = None, [waiting], [ranks]
        else:
            front = _unpark(self.front, np.concatenate(self.parked), self.where)
            front, waiting, ranks = _promote(front, np.concatenate(self.waiting),
                                             np.concatenate(self.ranks), self.where, level)
            self.front, self.waiting, self.ranks = (_sort(front, self.flab.size), [waiting],
                                                    [ranks])
        self.parked = [np.zeros(0, np.int64)]
        self.level = level

    def step(self, active: tuple[bool, bool, bool], i: int) -> None:
        """One synchronous iteration over the active axes.

        The front it leaves is sorted, as after a level start: the next step then reads
        its voxels' neighbourhoods in memory order (the result does not depend on it).
        """
        if active != self.active:
            self.front = _sort(_unpark(self.front, np.concatenate(self.parked), self.where),
                               self.flab.size)
            self.parked, self.active = [np.zeros(0, np.int64)], active
        steps = self.steps[[k for k, (axis, _) in enumerate(_NEIGHBOURS) if active[axis]]]
        if steps.size == 0:
            self.front = self.front[self.life[self.front] >= i]
            return
        front, failed, wait, ranks = _flood_step(
            self.front, i, steps, self.steps, self.flab, self.key, self.rank, self.level,
            self.never, self.where, self.life)
        self.front = _sort(front, self.flab.size)
        self.parked.append(failed)
        self.waiting.append(wait)
        self.ranks.append(ranks)


@numba.njit(cache=True, nogil=True)
def _sort(a, size):
    """``a`` (values in ``[0, size)``) sorted: a radix sort, 12 bits per pass."""
    src = a.copy()
    dst = np.empty_like(a)
    shift = 0
    while (size - 1) >> shift:
        count = np.zeros(4097, np.int64)
        for v in src:
            count[((v >> shift) & 4095) + 1] += 1
        for d in range(4096):
            count[d + 1] += count[d]
        for v in src:
            d = (v >> shift) & 4095
            dst[count[d]] = v
            count[d] += 1
        src, dst = dst, src
        shift += 12
    return src


@numba.njit(cache=True, nogil=True)
def _fill_state(markers, prob_bits, level_bits, lab, key, rank, labelled):
    """Fill the padded labels (pad 0), keys (pad: unlabelled ``inf``) and ranks of
    :class:`_FloodState` from the markers, the bits of the float32 probability and of
    the rising levels, and ``labelled`` with the flat indices of the labelled voxels."""
    nz, ny, nx = markers.shape
    never = level_bits.size
    for side in (0, -1):  # the pad
        key[side], key[:, side], key[:, :, side] = _INF_BITS | _SIGN, _INF_BITS | _SIGN, \
            _INF_BITS | _SIGN
        rank[side], rank[:, side], rank[:, :, side] = never, never, never
    sy, sz = nx + 2, (nx + 2) * (ny + 2)
    n = 0
    for z in range(nz):
        for y in range(ny):
            for x in range(nx):
                m = markers[z, y, x]
                lab[z + 1, y + 1, x + 1] = m
                bits = prob_bits[z, y, x] & ~_SIGN  # -0.0 reads as 0.0
                r = 0
                for b in level_bits:  # the levels rise: r counts those <= p
                    r += bits >= b
                if m == 0:
                    key[z + 1, y + 1, x + 1] = bits | _SIGN
                    rank[z + 1, y + 1, x + 1] = r
                else:
                    key[z + 1, y + 1, x + 1] = bits
                    rank[z + 1, y + 1, x + 1] = never
                    labelled[n] = (z + 1) * sz + (y + 1) * sy + x + 1
                    n += 1


@numba.njit(cache=True, nogil=True)
def _touch(new, all_steps, rank, level, never, where):
    """The face neighbours of newly labelled voxels ``new`` that join the front (free
    voxels below the level) or wait (free voxels at or above it, not the pad), each
    once: ``(front, waiting, ranks of the waiting)``."""
    cand = np.empty(new.size * all_steps.size, np.int64)
    wait = np.empty(new.size * all_steps.size, np.int64)
    ranks = np.empty(new.size * all_steps.size, rank.dtype)
    n_cand = n_wait = 0
    for v in new:
        for s in all_steps:
            c = v + s
            r = rank[c]
            if r <= level:
                if where[c] != _FRONT:
                    where[c] = _FRONT
                    cand[n_cand] = c
                    n_cand += 1
            elif r != never and where[c] == _FREE:
                where[c] = _WAITING
                wait[n_wait] = c
                ranks[n_wait] = r
                n_wait += 1
    return cand[:n_cand], wait[:n_wait], ranks[:n_wait]


@numba.njit(cache=True, nogil=True)
def _promote(front, waiting, ranks, where, level):
    """The front with the waiting voxels of rank ``<= level`` added, and the voxels
    still waiting with their ranks."""
    out = np.empty(front.size + waiting.size, np.int64)
    out[:front.size] = front
    n = front.size
    m = 0
    for k in range(waiting.size):
        if ranks[k] <= level:
            where[waiting[k]] = _FRONT
            out[n] = waiting[k]
            n += 1
        else:  # compacted in place: only the voxels before k were read
            waiting[m], ranks[m] = waiting[k], ranks[k]
            m += 1
    return out[:n], waiting[:m], ranks[:m]


@numba.njit(cache=True, nogil=True)
def _unpark(front, parked, where):
    """The front with the parked voxels returned to it (each once)."""
    out = np.empty(front.size + parked.size, np.int64)
    out[:front.size] = front
    n = front.size
    for v in parked:
        if where[v] == _PARKED:
            where[v] = _FRONT
            out[n] = v
            n += 1
    return out[:n]


@numba.njit(cache=True, nogil=True)
def _flood_step(front, i, steps, all_steps, flab, key, rank, level, never, where, life):
    """Compiled body of :meth:`_FloodState.step` (numba; the loop over the front).

    A front voxel whose life ended before iteration ``i`` is dropped (it stays marked
    FRONT, so it never returns).  Every other one takes the label of its labelled
    neighbour of lowest probability along ``steps`` (the first of equal minima), all
    read before any is written (a synchronous update), or is parked.  The face
    neighbours (``all_steps``) of the newly labelled voxels then join the next front
    or wait (:func:`_touch`).  Returns ``(front, parked, waiting, their ranks)``.
    """
    n = front.size
    new = np.empty(n, np.int64)
    src = np.empty(n, np.int64)
    failed = np.empty(n, np.int64)
    n_new = n_failed = 0
    for k in range(n):
        v = front[k]
        if life[v] < i:
            continue
        best = _SIGN
        nb = -1
        for s in steps:
            q = key[v + s]
            if q < best:
                best = q
                nb = v + s
        if nb >= 0:
            new[n_new] = v
            src[n_new] = nb
            n_new += 1
        else:
            failed[n_failed] = v
            n_failed += 1
    for k in range(n_new):
        v = new[k]
        flab[v] = flab[src[k]]
        key[v] &= ~_SIGN
        rank[v] = never
        where[v] = _FREE
    for k in range(n_failed):
        where[failed[k]] = _PARKED
    cand, wait, ranks = _touch(new[:n_new], all_steps, rank, level, never, where)
    return cand, failed[:n_failed], wait, ranks


def segment_block(prob: np.ndarray, params: SegmentParams) -> np.ndarray:
    """Seeds + flood of a whole (in-memory) probability volume, before merging.

    Returns uint64 labels (seed component ids); the in-memory reference of the
    engine is :func:`chunkseg.ops.segstats.finish_labels` applied to this.
    """
    p = as_probability(prob)
    markers, _ = label_seeds(seed_mask(p, params))
    return flood(markers.astype(np.uint64), p, params)


def watershed_reference(prob: np.ndarray, params: SegmentParams) -> np.ndarray:
    """skimage's classic (unbounded) watershed of ``prob`` from the same seeds.

    In memory only; used to measure what bounding the flood changes.
    """
    from skimage.segmentation import watershed

    p = as_probability(prob)
    markers, _ = label_seeds(seed_mask(p, params))
    return watershed(p, markers).astype(np.uint32)
