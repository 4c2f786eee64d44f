"""Index specs: artifact z-slices (``"3,17,40-45"``, dropped from a (t, z, y, x) array)
and time-point ranges (``"A:B"``, :func:`parse_timepoints`).

The paper deletes slices with artifacts from raw image and mask before training; the
same spec applied to raw and labels keeps them aligned.  Slice indices are 0-based z
indices of the input; ranges ``a-b`` include both ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from chunkseg.errors import ParameterError, ShapeError

__all__ = ["compose_dropped", "drop_slices", "keep_indices", "parse_slices", "parse_timepoints"]


def _parse_token(token: str, where: str) -> list[int]:
    try:
        if "-" not in token[1:]:
            return [int(token)]
        a, b = token.split("-", 1)
        lo, hi = int(a), int(b)
    except ValueError as exc:
        raise ParameterError(
            f"{where}cannot read slice spec item {token!r}; expected an integer or a range "
            "like 40-45 (comma separated: 3,17,40-45)"
        ) from exc
    if hi < lo:
        raise ParameterError(f"{where}slice range {token!r} runs backwards; expected a-b with a <= b")
    return list(range(lo, hi + 1))


def parse_slices(spec: str | Sequence[int] | None, n: int, *, name: str | None = None) -> list[int]:
    """The sorted, unique z indices a drop-slices spec names.

    Parameters
    ----------
    spec : str or sequence of int
        ``"3,17,40-45"`` (0-based, ranges inclusive, spaces allowed) or a list of ints.
        ``None`` or ``""`` names no slices.
    n : int
        Number of z slices of the volume.
    name : str, optional
        The file the spec applies to (for error messages).

    Returns
    -------
    list of int

    Raises
    ------
    ParameterError
        An unreadable item, a backwards range, an index outside ``0 .. n-1``, or a
        spec that would drop every slice.

    Examples
    --------
    >>> parse_slices("3,17,40-42", 50)
    [3, 17, 40, 41, 42]
    """
    where = f"{name}: " if name else ""
    if spec is None:
        return []
    if isinstance(spec, str):
        tokens = [t.strip() for t in spec.split(",") if t.strip()]
        indices = [i for t in tokens for i in _parse_token(t, where)]
    else:
        indices = []
        for v in spec:
            if isinstance(v, bool) or int(v) != v:
                raise ParameterError(f"{where}slice indices must be integers; got {v!r}")
            indices.append(int(v))
    out = sorted(set(indices))
    bad = [i for i in out if not 0 <= i < n]
    if bad:
        raise ParameterError(
            f"{where}slice indices out of range: expected 0..{n - 1} (the volume has {n} "
            f"z slices); got {bad}"
        )
    if out and len(out) == n:
        raise ParameterError(f"{where}dropping slices {spec!r} would remove all {n} z slices")
    return out


def keep_indices(dropped: Sequence[int], n: int) -> list[int]:
    """The z indices that remain after dropping ``dropped`` from ``n`` slices."""
    gone = set(dropped)
    return [z for z in range(n) if z not in gone]


def drop_slices(arr: Any, spec: str | Sequence[int] | None, *, name: str | None = None):
    """Remove z slices (axis 1 of a (t, z, y, x) array, NumPy or dask) named by ``spec``.

    Returns
    -------
    array, dropped : (same type as ``arr``, list of int)
        The array without those slices (lazy for dask input) and the dropped indices
        (record them as the ``dropped_slices`` attribute).
    """
    if arr.ndim != 4:
        raise ShapeError(f"{name + ': ' if name else ''}expected a 4D (t, z, y, x) array; "
                         f"got shape {tuple(arr.shape)}")
    dropped = parse_slices(spec, arr.shape[1], name=name)
    if not dropped:
        return arr, []
    return arr[:, keep_indices(dropped, arr.shape[1])], dropped


def compose_dropped(previous: Sequence[int], new: Sequence[int]) -> list[int]:
    """All dropped slices in the *original* z numbering after a second drop.

    ``previous`` are indices of the original volume already removed; ``new`` are
    indices into what remained.  Returns the sorted union in original numbering, so
    ``dropped_slices`` always refers to the acquisition.

    Examples
    --------
    >>> compose_dropped([1, 2], [0, 2])   # remaining 0,3,4,5,... -> drop 0 and 4
    [0, 1, 2, 4]
    """
    if not new:
        return sorted(set(previous))
    # the original slices that remained, up to the last one ``new`` names
    remaining = keep_indices(previous, max(new) + 1 + len(set(previous)))
    return sorted(set(previous) | {remaining[i] for i in new})


def parse_timepoints(spec: Any, n: int) -> tuple[int, int]:
    """``"A:B"``, ``"A"``, ``(A, B)`` or None -> a half-open range inside ``[0, n)``.

    Examples
    --------
    >>> parse_timepoints("1:3", 5), parse_timepoints(None, 5), parse_timepoints("2", 5)
    ((1, 3), (0, 5), (2, 3))
    """
    if spec is None:
        return 0, n
    try:
        if isinstance(spec, str):
            parts = spec.split(":")
            if len(parts) == 1:
                a = int(parts[0])
                a, b = a, a + 1
            elif len(parts) == 2:
                a = int(parts[0]) if parts[0].strip() else 0
                b = int(parts[1]) if parts[1].strip() else n
            else:
                raise ValueError
        elif isinstance(spec, int):
            a, b = spec, spec + 1
        else:
            a, b = (int(v) for v in spec)
    except (TypeError, ValueError):
        raise ParameterError(f"timepoints must look like A:B (e.g. 0:10); got {spec!r}") from None
    if not 0 <= a < b <= n:
        raise ParameterError(f"timepoints {a}:{b} must satisfy 0 <= A < B <= {n} "
                             f"(the input has {n} time points)")
    return a, b
