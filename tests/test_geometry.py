"""The one block geometry (chunkseg.engine.geometry): owned, read (with halo), crop, missing."""

from __future__ import annotations

import numpy as np
import pytest

from chunkseg.engine.geometry import Block, cover, grid_shape
from chunkseg.errors import ShapeError


@pytest.mark.parametrize("shape, block, halo", [
    ((11, 13, 17), (5, 7, 9), (2, 3, 0)),
    ((4, 6, 5), (4, 6, 5), (3, 1, 9)),      # one block, halo larger than the volume
    ((9,), (2,), (5,)),
])
def test_blocks_reassemble_exactly_and_read_their_owned_region(shape, block, halo):
    data = np.random.default_rng(0).integers(0, 1000, shape)
    out = np.full(shape, -1)
    blocks = list(cover(shape, block, halo))
    assert len(blocks) == np.prod(grid_shape(shape, block))
    for b in blocks:
        read = data[b.read]
        np.testing.assert_array_equal(read[b.crop], data[b.owned])
        padded = np.pad(read, b.missing, mode="symmetric")
        # the padded read region has the full halo on every side
        assert padded.shape == tuple(n + 2 * h for n, h in zip(b.shape, halo))
        np.testing.assert_array_equal(padded[b.padded_crop], data[b.owned])
        assert b.origin == tuple(o.start - h for o, h in zip(b.owned, halo))
        assert (out[b.owned] == -1).all()  # owned regions do not overlap
        out[b.owned] = padded[b.padded_crop]
    np.testing.assert_array_equal(out, data)


def test_irregular_chunks_match_the_regular_grid():
    chunks = ((5, 5, 1), (7, 6))
    for i in range(3):
        for j in range(2):
            got = Block.of_chunks((i, j), chunks, (2, 3))
            if (i, j) != (2, 1) and i < 2 and j < 1:
                assert got == Block.at((i, j), shape=(11, 13), block=(5, 7), halo=(2, 3))
            assert got.shape == (chunks[0][i], chunks[1][j])


def test_bad_grid_is_refused():
    with pytest.raises(ShapeError, match="outside the grid"):
        Block.at((3,), shape=(5,), block=(2,))
    with pytest.raises(ShapeError, match="must be positive"):
        grid_shape((5, 5), (0, 2))
