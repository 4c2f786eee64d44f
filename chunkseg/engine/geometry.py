"""Block geometry shared by every blockwise engine: the region a block owns, the region it
reads (owned + halo, clipped to the volume), the crop of the owned region inside the read
one, and the context missing at the volume's faces.

Like stardist's ``big.py`` ``BlockND``: each task reads with context, computes, crops
the context off and writes only the region it owns; :func:`cover` lists the blocks of a
volume.  Pure index arithmetic (no dask), so block functions of ``map_overlap`` /
``map_blocks`` and hand-built task graphs use the same definition.

Examples
--------
>>> b = Block.at((1, 0, 0), shape=(10, 6, 6), block=(4, 6, 6), halo=(2, 1, 1))
>>> b.owned
(slice(4, 8, None), slice(0, 6, None), slice(0, 6, None))
>>> b.read
(slice(2, 10, None), slice(0, 6, None), slice(0, 6, None))
>>> b.crop
(slice(2, 6, None), slice(0, 6, None), slice(0, 6, None))
>>> b.missing
((0, 0), (1, 1), (1, 1))
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from chunkseg.errors import ShapeError

__all__ = ["Block", "cover", "grid_shape"]


def grid_shape(shape: Sequence[int], block: Sequence[int]) -> tuple[int, ...]:
    """Blocks per axis of a ``block`` grid over ``shape`` (the last ones may be smaller)."""
    if len(shape) != len(block) or any(int(b) < 1 for b in block):
        raise ShapeError(f"block {tuple(block)} must be positive, one per axis of {tuple(shape)}")
    return tuple(-(-int(s) // int(b)) for s, b in zip(shape, block))


@dataclass(frozen=True)
class Block:
    """One block of a regular grid over a volume, with its halo.

    Attributes
    ----------
    index : tuple of int
        Grid position.
    owned : tuple of slice
        The region this block computes and writes (global coordinates).
    read : tuple of slice
        ``owned`` grown by ``halo`` and clipped to the volume (what the block reads).
    crop : tuple of slice
        ``owned`` inside ``read``: ``data[read][crop] == data[owned]``.
    missing : tuple of (int, int)
        Halo voxels before / after that lie outside the volume (to pad, e.g. mirrored).
    """

    index: tuple[int, ...]
    owned: tuple[slice, ...]
    read: tuple[slice, ...]
    crop: tuple[slice, ...]
    missing: tuple[tuple[int, int], ...]

    @classmethod
    def at(cls, index: Sequence[int], *, shape: Sequence[int], block: Sequence[int],
           halo: Sequence[int] | int = 0) -> Block:
        """The block at grid position ``index`` of a ``block`` grid over ``shape``."""
        bounds = []
        for i, s, b in zip(index, shape, block):
            lo, hi = int(i) * int(b), min((int(i) + 1) * int(b), int(s))
            if not 0 <= lo < hi:
                raise ShapeError(f"block index {tuple(index)} is outside the grid of "
                                 f"{tuple(block)} blocks over {tuple(shape)}")
            bounds.append((lo, hi))
        return cls._make(index, bounds, shape, halo)

    @classmethod
    def of_chunks(cls, index: Sequence[int], chunks: Sequence[Sequence[int]],
                  halo: Sequence[int] | int = 0) -> Block:
        """Block ``index`` of a dask array with (possibly irregular) ``chunks``.

        Examples
        --------
        >>> Block.of_chunks((1,), ((3, 5),), halo=2).read
        (slice(1, 8, None),)
        """
        bounds = [(sum(c[:int(i)]), sum(c[:int(i) + 1])) for i, c in zip(index, chunks)]
        return cls._make(index, bounds, [sum(c) for c in chunks], halo)

    @classmethod
    def _make(cls, index, bounds, shape, halo) -> Block:
        halo = (halo,) * len(shape) if isinstance(halo, int) else tuple(halo)
        owned, read, crop, missing = [], [], [], []
        for (lo, hi), s, h in zip(bounds, shape, halo):
            r0, r1 = max(0, lo - int(h)), min(int(s), hi + int(h))
            owned.append(slice(lo, hi))
            read.append(slice(r0, r1))
            crop.append(slice(lo - r0, hi - r0))
            missing.append((int(h) - (lo - r0), int(h) - (r1 - hi)))
        return cls(tuple(int(i) for i in index), tuple(owned), tuple(read), tuple(crop),
                   tuple(missing))

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the owned region."""
        return tuple(s.stop - s.start for s in self.owned)

    @property
    def padded_crop(self) -> tuple[slice, ...]:
        """``owned`` inside the read region padded by ``missing`` (always ``halo`` in)."""
        return tuple(slice(c.start + m[0], c.stop + m[0]) for c, m in zip(self.crop, self.missing))

    @property
    def origin(self) -> tuple[int, ...]:
        """Global coordinate of the first voxel of the read region padded by ``missing``."""
        return tuple(r.start - m[0] for r, m in zip(self.read, self.missing))


def cover(shape: Sequence[int], block: Sequence[int],
          halo: Sequence[int] | int = 0) -> Iterator[Block]:
    """Every block of a ``block`` grid over ``shape``, in C order.

    Examples
    --------
    >>> [b.owned[0] for b in cover((5,), (2,))]
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    for index in itertools.product(*(range(n) for n in grid_shape(shape, block))):
        yield Block.at(index, shape=shape, block=block, halo=halo)
