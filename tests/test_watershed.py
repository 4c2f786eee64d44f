"""ops.watershed: exact bounded seeds and flood, parameter checks, quality on synth data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from chunkseg.errors import DTypeError, InputError, ParameterError, ShapeError
from chunkseg.ops.segstats import finish_labels
from chunkseg.ops.watershed import (
    SegmentParams, as_probability, capped_sq_distance, flood, flood_halo, flood_schedule,
    label_seeds, seed_halo, seed_mask, segment_block, watershed_reference,
)

VS = (0.4, 0.15, 0.1)


def _prob(shape=(14, 40, 36), seed=0):
    rng = np.random.default_rng(seed)
    p = ndimage.gaussian_filter(rng.random(shape), (1, 2.5, 2.5))
    p = (p - p.min()) / (p.max() - p.min())
    return np.clip(p + rng.normal(0, 0.05, shape), 0, 1).astype(np.float32)


def test_capped_distance_equals_edt_within_radius():
    rng = np.random.default_rng(1)
    bg = rng.random((12, 30, 30)) < 0.03
    radius = 1.2
    d = capped_sq_distance(bg, radius=radius, voxel_size=VS)
    edt = ndimage.distance_transform_edt(~bg, sampling=VS)
    inside = edt <= radius
    np.testing.assert_allclose(np.sqrt(d[inside]), edt[inside], rtol=1e-12)
    assert np.all(np.sqrt(d[~inside]) > radius - 1e-12)


@pytest.mark.parametrize("vs, radius", [((0.4, 0.13, 0.1), 0.45),  # windows 1, 3, 4
                                        ((0.3, 0.1, 0.5), 0.45),  # none along x
                                        ((0.5, 0.6, 0.7), 0.45)])  # none at all
def test_capped_distance_is_the_box_minimum_bit_for_bit(vs, radius):
    """The value is one fixed float64 expression per offset, ((x + y) + z), minimised
    over the box: what makes a block with halo give the whole volume's bits."""
    rng = np.random.default_rng(4)
    bg = rng.random((6, 11, 9)) < 0.05
    d = capped_sq_distance(bg, radius=radius, voxel_size=vs)
    w = [int(np.floor(radius / s)) for s in vs]
    want = np.full(bg.shape, np.inf)
    for z, y, x in zip(*np.nonzero(bg)):
        for oz in range(-w[0], w[0] + 1):
            for oy in range(-w[1], w[1] + 1):
                for ox in range(-w[2], w[2] + 1):
                    q = (z + oz, y + oy, x + ox)
                    if all(0 <= c < s for c, s in zip(q, bg.shape)):
                        v = ((vs[2] ** 2 * ox * ox) + vs[1] ** 2 * oy * oy) + vs[0] ** 2 * oz * oz
                        want[q] = min(want[q], v)
    np.testing.assert_array_equal(d, want)


def _random_box(shape, rng):
    lo = [int(rng.integers(0, s - 2)) for s in shape]
    hi = [int(rng.integers(a + 1, s + 1)) for a, s in zip(lo, shape)]
    return tuple(slice(a, b) for a, b in zip(lo, hi))


def _with_halo(box, halo, shape):
    ext = tuple(slice(max(0, b.start - h), min(s, b.stop + h)) for b, h, s in zip(box, halo, shape))
    crop = tuple(slice(b.start - e.start, b.stop - e.start) for b, e in zip(box, ext))
    return ext, crop


def test_seed_mask_of_block_with_halo_is_bit_exact():
    p = _prob()
    prm = SegmentParams(voxel_size=VS, seed_distance=0.5)
    whole = seed_mask(p, prm)
    assert 0 < whole.mean() < 0.9
    rng = np.random.default_rng(2)
    for _ in range(8):
        box = _random_box(p.shape, rng)
        ext, crop = _with_halo(box, seed_halo(prm), p.shape)
        np.testing.assert_array_equal(seed_mask(p[ext], prm)[crop], whole[box])


def _naive_flood(markers, prob, prm):
    """Reference: the same automaton, every unlabelled voxel checked every iteration."""
    lab = np.pad(markers, 1)
    pp = np.pad(prob, 1, constant_values=np.inf)
    inside = np.pad(np.ones(markers.shape, bool), 1)
    for level, active in flood_schedule(prm):
        cand = inside & (lab == 0) & (pp < level)
        best = np.zeros_like(lab)
        best_p = np.full(lab.shape, np.inf, np.float32)
        for axis in range(3):
            if not active[axis]:
                continue
            for step in (-1, 1):
                nl = np.roll(lab, -step, axis)
                npp = np.roll(pp, -step, axis)
                better = cand & (nl != 0) & (npp < best_p)
                best[better], best_p[better] = nl[better], npp[better]
        lab = np.where(best != 0, best, lab)
    return lab[1:-1, 1:-1, 1:-1]


@pytest.mark.parametrize("vs", [VS, (0.3, 0.1, 0.2)])  # x active every other step
def test_flood_equals_naive_automaton(vs):
    p = _prob(seed=3)
    prm = SegmentParams(voxel_size=vs, seed_distance=0.4, reach=0.8, membrane_reach=0.3)
    markers, n = label_seeds(seed_mask(p, prm))
    assert n > 3
    fast = flood(markers.astype(np.uint64), p, prm)
    np.testing.assert_array_equal(fast, _naive_flood(markers.astype(np.uint64), p, prm))


def test_flood_of_rising_levels_equals_naive_automaton():
    """Several interior and membrane levels (voxels wait for a higher level), values on
    the levels themselves and -0.0; blocks with a halo and a pruned light cone are exact."""
    p = np.round(_prob(seed=7) * 16) / 16  # many voxels exactly on a level (p < level)
    p[0, :3] = -0.0
    prm = SegmentParams(voxel_size=(0.3, 0.1, 0.2), seed_distance=0.3, reach=0.4,
                        membrane_reach=0.2, interior_levels=4, levels=3)
    markers, n = label_seeds(seed_mask(p, prm))
    assert n > 3
    whole = flood(markers.astype(np.uint64), p, prm)
    np.testing.assert_array_equal(whole, _naive_flood(markers.astype(np.uint64), p, prm))
    rng = np.random.default_rng(8)
    for _ in range(4):
        box = _random_box(p.shape, rng)
        ext, crop = _with_halo(box, flood_halo(prm), p.shape)
        got = flood(markers[ext].astype(np.uint64), p[ext], prm, exact=crop)
        np.testing.assert_array_equal(got[crop], whole[box])


def test_flood_of_block_with_halo_is_exact_and_permutation_equivariant():
    p = _prob(seed=4)
    prm = SegmentParams(voxel_size=VS, seed_distance=0.45)
    markers, n = label_seeds(seed_mask(p, prm))
    whole = flood(markers.astype(np.uint64), p, prm)
    perm = np.r_[0, np.random.default_rng(5).permutation(n) + 1000].astype(np.uint64)
    permuted = flood(perm[markers], p, prm)
    np.testing.assert_array_equal(permuted, perm[whole])
    rng = np.random.default_rng(6)
    halo = flood_halo(prm)
    assert halo[0] < halo[1]  # z voxels are larger: fewer z steps
    for _ in range(6):
        box = _random_box(p.shape, rng)
        ext, crop = _with_halo(box, halo, p.shape)
        got = flood(markers[ext].astype(np.uint64), p[ext], prm)[crop]
        np.testing.assert_array_equal(got, whole[box])
        # only the box wanted: updates pruned to its light cone, the box unchanged
        pruned = flood(markers[ext].astype(np.uint64), p[ext], prm, exact=crop)
        np.testing.assert_array_equal(pruned[crop], whole[box])


@pytest.mark.parametrize("kw", [{"threshold": 0.0}, {"threshold": 1.0}, {"threshold": -0.2},
                                {"threshold": 1.5}, {"seed_distance": 0}, {"min_size": -1},
                                {"voxel_size": (1, 0, 1)}, {"levels": 0}, {"reach": -1}])
def test_bad_parameters(kw):
    with pytest.raises(ParameterError):
        SegmentParams(**kw)


def test_bad_probability():
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        as_probability(np.array([0.2, 1.5], np.float32), name="p.zarr")
    with pytest.raises(InputError):
        as_probability(np.array([-0.1, 0.5], np.float32))
    with pytest.raises(InputError, match="NaN"):
        as_probability(np.array([np.nan, 0.5], np.float32))
    with pytest.raises(DTypeError):
        as_probability(np.array([1, 2], np.int16))
    np.testing.assert_allclose(as_probability(np.array([0, 255], np.uint8)), [0, 1])
    with pytest.raises(ShapeError):
        seed_mask(np.zeros((4, 4), np.float32), SegmentParams())
    with pytest.raises(ShapeError):
        flood(np.zeros((2, 2, 2), np.uint64), np.zeros((2, 2, 3), np.float32), SegmentParams())


def test_recovers_synthetic_cells():
    """Blurred truth membranes + noise as a crude probability: most cells matched at IoU 0.5."""
    from chunkseg.ops.instance_metrics import contingency, instance_scores
    from chunkseg.synth import synth_volume

    v = synth_volume((24, 80, 80), seed=3, noise=False, blobs=False)
    rng = np.random.default_rng(0)
    p = ndimage.gaussian_filter(v.mask.astype(np.float32), (0.7, 1.5, 1.5))
    p = np.clip(p / p.max() + rng.normal(0, 0.1, p.shape), 0, 1).astype(np.float32)
    prm = SegmentParams(voxel_size=v.params.voxel_size, seed_distance=0.6)
    labels, cells = finish_labels(segment_block(p, prm), min_voxels=prm.min_size / prm.voxel_volume)
    assert labels.max() == cells.ids.size
    scores = instance_scores(contingency(v.labels, labels))
    assert scores["f1"] > 0.6, scores
    ref = instance_scores(contingency(v.labels, watershed_reference(p, prm)))
    assert scores["adapted_rand_error"] < ref["adapted_rand_error"] + 0.15
