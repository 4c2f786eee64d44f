"""chunkseg.ops.tiling: tile grid on the pooling grid, blend weights, tiled predictor.

The stand-in network is a SciPy box filter with zero ("same") padding — receptive-field
radius ``R`` — plus a term that depends on each voxel's position modulo the pooling
factor *inside its tile*, like max-pooling does.  Tiled prediction equals the direct
whole-array computation only if tiles keep >= R context and sit on the pooling grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkseg.errors import ParameterError, ShapeError
from chunkseg.ops.tiling import (
    BLEND_MODES,
    as_triple,
    blend_weights,
    choose_batch,
    choose_tile,
    count_tiles,
    crop,
    pad_to_grid,
    predict_tiled,
    tile_grid,
)

R, P = 3, 4


def phase(shape, offset=(0, 0, 0), pool=P):
    """0.01 * position-in-pooling-window summed over axes (depends on the tile origin)."""
    out = np.zeros(shape, np.float32)
    for axis, (n, o) in enumerate(zip(shape, offset)):
        idx = ((np.arange(n) + o) % pool) / pool * 0.01
        out += idx.reshape([-1 if i == axis else 1 for i in range(3)])
    return out


def fake_net(x: np.ndarray) -> np.ndarray:
    """(b, z, y, x, 1) -> box filter radius R with zero padding + pooling-phase term."""
    y = ndi.uniform_filter(x, size=(1, 2 * R + 1, 2 * R + 1, 2 * R + 1, 1), mode="constant")
    return y + phase(x.shape[1:4])[None, ..., None]


def reference(block: np.ndarray, origin) -> np.ndarray:
    """What any seam-free tiling must give at voxels >= R from the block border."""
    return ndi.uniform_filter(block, size=2 * R + 1, mode="constant") + phase(block.shape, origin)


def test_as_triple():
    assert as_triple(4, "t") == (4, 4, 4)
    assert as_triple((1, 2, 3), "t") == (1, 2, 3)
    assert as_triple(np.int64(2), "t") == (2, 2, 2)
    for bad in [(1, 2), (0, 1, 1), 2.5, "abc", (1.5, 2, 2), None]:
        with pytest.raises(ParameterError, match="t must be"):
            as_triple(bad, "t")
    assert as_triple(0, "h", minimum=0) == (0, 0, 0)


@pytest.mark.parametrize("origin", [(0, 0, 0), (-3, 5, 7), (13, -10, 1)])
def test_tile_origins_on_volume_pooling_grid_and_cover_block(origin):
    grid = tile_grid((20, 31, 30), tile=(12, 16, 16), context=R, pool=P, origin=origin)
    for o in grid.origins():
        vol = [oi - pb + g for oi, pb, g in zip(o, grid.pad_before, origin)]
        assert all(v % P == 0 for v in vol)
    for axis in range(3):
        starts, t = grid.starts[axis], grid.tile[axis]
        assert starts[0] == 0 and starts[-1] + t == grid.padded_shape[axis]
        assert grid.pad_before[axis] < P
        # consecutive tiles overlap by >= 2 * context: every voxel has a tile with R context
        assert all(b - a <= t - 2 * R for a, b in zip(starts, starts[1:]))
    assert grid.n_tiles == count_tiles((20, 31, 30), tile=(12, 16, 16), context=R, pool=P,
                                       origin=origin)


def test_tile_shrinks_to_block_and_single_tile():
    grid = tile_grid((10, 11, 5), tile=64, context=R, pool=P, origin=(2, 0, 0))
    assert grid.n_tiles == 1
    assert grid.tile == (12, 12, 8)
    assert grid.padded_shape == grid.tile


def test_tile_grid_errors():
    with pytest.raises(ParameterError, match="multiple of the model's pooling factor"):
        tile_grid((20, 20, 20), tile=(12, 14, 16), context=R, pool=P)
    with pytest.raises(ParameterError, match="too small for a context"):
        tile_grid((40, 40, 40), tile=8, context=R, pool=P)


def test_pad_and_crop_roundtrip():
    a = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    grid = tile_grid(a.shape, tile=4, context=1, pool=2, origin=(1, 0, 3))
    p = pad_to_grid(a, grid)
    assert p.shape == grid.padded_shape
    np.testing.assert_array_equal(crop(p, grid.pad_before, grid.pad_after), a)
    with pytest.raises(ShapeError):
        pad_to_grid(a[:-1], grid)


@pytest.mark.parametrize("mode", BLEND_MODES)
def test_blend_weights(mode):
    w = blend_weights((8, 9, 10), mode=mode)
    assert w.shape == (8, 9, 10) and w.dtype == np.float32
    assert w.min() > 0
    np.testing.assert_allclose(w, w[::-1, ::-1, ::-1], rtol=1e-6)
    assert np.isclose(w.max(), w[4, 4, 5]) or mode == "none"
    c = blend_weights((8, 9, 10), mode=mode, crop_before=(2, 0, 0), crop_after=(0, 3, 0))
    assert (c[:2] == 0).all() and (c[:, -3:] == 0).all() and (c[2:, :-3] > 0).all()
    with pytest.raises(ParameterError, match="blend must be one of"):
        blend_weights(4, mode="cosine")


def test_choose_batch_and_tile():
    assert choose_batch((64, 128, 128), n_tiles=100, bytes_per_voxel=512, budget_bytes=1 << 30) == 2
    assert choose_batch((64, 128, 128), n_tiles=1, budget_bytes=1 << 40) == 1
    assert choose_batch((512, 512, 512), n_tiles=5, budget_bytes=1) == 1
    t = choose_tile((64, 256, 256), halo=10, pool=4, bytes_per_voxel=512, budget_bytes=1 << 30)
    assert all(v % 4 == 0 for v in t)
    assert np.prod(t) * 512 <= 1 << 30
    assert choose_tile((20, 20, 20), halo=5, pool=4, budget_bytes=1 << 40) == (36, 36, 36)
    # never below 2 * halo + pool, even over budget
    assert choose_tile((20, 20, 20), halo=5, pool=4, budget_bytes=1) == (16, 16, 16)


def test_max_voxels_caps_tile_and_batch_whatever_the_budget():
    t = choose_tile((128, 256, 256), halo=10, pool=4, bytes_per_voxel=1, budget_bytes=1 << 40,
                    max_voxels=2_000_000)
    assert np.prod(t) <= 2_000_000 and all(v % 4 == 0 for v in t)
    assert np.prod(t) > 1_000_000  # the budget alone would give one tile per block
    assert choose_tile((128, 256, 256), halo=10, pool=4, bytes_per_voxel=1,
                       budget_bytes=1 << 40) == (152, 280, 280)  # block + 2 halo + pool - 1
    assert choose_batch((100, 100, 100), n_tiles=50, bytes_per_voxel=1, budget_bytes=1 << 40,
                        max_voxels=3_500_000) == 3
    assert choose_batch((100, 100, 100), n_tiles=50, bytes_per_voxel=1, budget_bytes=1 << 40,
                        max_voxels=10) == 1  # one tile per call is always allowed


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize("origin", [(0, 0, 0), (-3, 5, 7), (13, -2, 1)])
def test_tiled_equals_direct_with_receptive_field_context(blend, origin):
    block = np.random.default_rng(1).random((20, 30, 27), dtype=np.float32)
    out, n = predict_tiled(block, fake_net, tile=(12, 16, 16), context=R, pool=P,
                           origin=origin, blend=blend, batch=5)
    assert n > 8 and out.shape == block.shape and out.dtype == np.float32
    inner = (slice(R, -R),) * 3
    np.testing.assert_allclose(out[inner], reference(block, origin)[inner], atol=1e-6)


def test_misaligned_or_short_context_is_not_exact():
    """The test above has teeth: less context, or tiles off the pooling grid, differ."""
    block = np.random.default_rng(2).random((20, 30, 27), dtype=np.float32)
    inner = (slice(R, -R),) * 3
    ref = reference(block, (0, 0, 0))[inner]
    short, _ = predict_tiled(block, fake_net, tile=12, context=1, pool=P, crop_context=True)
    assert np.abs(short[inner] - ref).max() > 1e-3
    shifted, _ = predict_tiled(block, fake_net, tile=12, context=R, pool=P, origin=(0, 0, 0))
    off, _ = predict_tiled(block, fake_net, tile=12, context=R, pool=1, origin=(0, 0, 0))
    assert np.abs(shifted[inner] - ref).max() < 1e-6
    assert np.abs(off[inner] - ref).max() > 1e-3


def test_predict_tiled_errors():
    with pytest.raises(ShapeError, match="3D"):
        predict_tiled(np.zeros((4, 4)), fake_net, tile=4, context=0)
    with pytest.raises(ShapeError, match="predict_batch returned"):
        predict_tiled(np.zeros((8, 8, 8)), lambda x: x[:, :-1], tile=4, context=1, pool=1)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(*(st.integers(1, 23),) * 3),
    origin=st.tuples(*(st.integers(-9, 9),) * 3),
    pool=st.sampled_from([1, 2, 4]),
    context=st.integers(0, 3),
    extra=st.integers(1, 3),
    batch=st.integers(1, 7),
    blend=st.sampled_from(BLEND_MODES),
)
def test_identity_network_reproduces_any_block(shape, origin, pool, context, extra, batch, blend):
    tile = (-(-(2 * context + pool) // pool) + extra - 1) * pool
    block = np.random.default_rng(0).random(shape, dtype=np.float32)
    out, n = predict_tiled(block, lambda x: x, tile=tile, context=context, pool=pool,
                           origin=origin, blend=blend, batch=batch)
    assert n >= 1
    np.testing.assert_allclose(out, block, rtol=1e-6, atol=1e-7)


def test_choose_tile_minimises_network_voxels_within_budget():
    block, halo, pool, bpv, budget = (128, 256, 256), 10, 4, 512, 1 << 30
    best = choose_tile(block, halo=halo, pool=pool, bytes_per_voxel=bpv, budget_bytes=budget)
    assert np.prod(best) * bpv <= budget

    def work(tile):  # network voxels for an interior block
        g = tile_grid([b + 2 * halo for b in block], tile=tile, context=halo, pool=pool,
                      origin=(-halo + 128, -halo + 256, -halo + 256))
        return g.n_tiles * np.prod(g.tile)

    for other in [(128, 128, 128), (64, 128, 256), (148, 108, 108), (32, 256, 256)]:
        if np.prod(other) * bpv <= budget:
            assert work(best) <= work(other)


@pytest.mark.parametrize("crop_context", [True, False])
def test_uint8_block_scaled_per_tile_in_bounded_memory(crop_context):
    import tracemalloc

    from chunkseg.engine.plan import BLOCK_BYTES_PER_VOXEL

    block = np.random.default_rng(5).integers(0, 256, (30, 70, 66)).astype(np.uint8)
    kw = dict(tile=(12, 24, 20), context=2, pool=P, origin=(1, 3, 2), batch=2,
              crop_context=crop_context)
    ref, _ = predict_tiled(block.astype(np.float32) / 255, np.sqrt, **kw)
    tracemalloc.start()
    got, n = predict_tiled(block, np.sqrt, scale=1 / 255, **kw)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
    grid = tile_grid(block.shape, **{k: kw[k] for k in ("tile", "context", "pool", "origin")})
    assert n == grid.n_tiles >= 27  # first, inner and last tiles on every axis
    # the padded uint8 copy and the two float32 sums of the blend, plus a few arrays the
    # size of one network call (input, output, one tile's weights, a product); never the
    # weights of every kind of tile, nor a float32 copy of the block
    call = 4 * kw["batch"] * int(np.prod(grid.tile))
    assert peak <= (BLOCK_BYTES_PER_VOXEL - 1) * int(np.prod(grid.padded_shape)) + 5 * call
