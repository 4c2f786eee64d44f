"""Augmentations (chunkseg.ops.augment), the crop sampler / tf.data pipeline
(chunkseg.model.training_data) and ``chunkseg crops``."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import tifffile
import zarr
import zarr.storage as zs
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunkseg.model.training_data import CropSampler, make_dataset, to_network_input
from chunkseg.cli import main
from chunkseg.errors import (
    DTypeError,
    IncompleteStoreError,
    InputError,
    InputNotFoundError,
    OutputExistsError,
    ParameterError,
    ShapeError,
)
from chunkseg.engine.blocks import write_volume
from chunkseg.io.store import create_image, mark_complete, read_attrs
from chunkseg.ops.augment import (
    NOISE_PRESETS,
    AugmentParams,
    add_gaussian_noise,
    apply_augment,
    draw_augment,
    flip,
    random_augment,
    resolve_noise,
    rot90_yx,
)
from chunkseg.pipeline.crops import run_crops

# ----------------------------------------------------------------------------- helpers


def _store(path: Path, data: np.ndarray, *, chunks, shards=False, attrs=None, complete=True) -> str:
    create_image(path, shape=data.shape, dtype=data.dtype, chunks=chunks, shards=shards,
                 attrs=attrs or {}, voxel_size=(2.0, 0.5, 0.5))
    write_volume(da.from_array(data, chunks=-1), path, progress=False)
    if complete:
        mark_complete(path)
    return str(path)


def _volumes(shape=(2, 20, 40, 44), seed=0):
    """uint8 raw correlated with a sparse membrane mask (planes every 9 voxels in y)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.uint8)
    mask[:, :, ::9, :] = 1
    mask[:, :, :, : shape[3] // 2] = 0  # left half has no membrane
    raw = (40 + 150 * mask + rng.integers(0, 30, shape)).astype(np.uint8)
    return raw, mask


@pytest.fixture
def pair(tmp_path):
    raw, mask = _volumes()
    return (_store(tmp_path / "raw.ome.zarr", raw, chunks=(1, 7, 16, 16),
                   attrs={"kind": "normalized"}),
            _store(tmp_path / "mask.ome.zarr", mask, chunks=(1, 7, 16, 16), attrs={"kind": "mask"}),
            raw, mask)


class CountingStore(zs.WrapperStore):
    """Records every read: (key, byte range, bytes)."""

    def __init__(self, store):
        super().__init__(store)
        self.reads: list[tuple[str, object, int]] = []

    async def get(self, key, prototype=None, byte_range=None):
        out = await self._store.get(key, prototype, byte_range)
        self.reads.append((key, byte_range, 0 if out is None else len(out)))
        return out

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        outs = await self._store.get_partial_values(prototype, key_ranges)
        for (key, br), out in zip(key_ranges, outs):
            self.reads.append((key, br, 0 if out is None else len(out)))
        return outs


def _counted(path: str):
    store = CountingStore(zs.LocalStore(path, read_only=True))
    arr = zarr.open_array(store=store, path="0", mode="r")
    store.reads.clear()
    return arr, store


def _grid_cells(t, corner, size, unit):
    """Grid cells (t, z, y, x) of a (1, *unit[1:]) grid that the crop intersects."""
    ranges = [range(t, t + 1)] + [range(c // u, (c + s - 1) // u + 1)
                                  for c, s, u in zip(corner, size, unit[1:])]
    return set(itertools.product(*ranges))


# ----------------------------------------------------------------------------- ops.augment


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 5), st.integers(1, 7), st.integers(1, 7)),
    seed=st.integers(0, 2**32 - 1),
    square=st.booleans(),
)
def test_augment_keeps_raw_and_mask_aligned(shape, seed, square):
    z, y, x = shape
    if square:
        x = y
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, 2, (z, y, x)).astype(np.uint8)
    raw = (0.25 + 0.5 * mask).astype(np.float32)           # raw is a function of the mask
    params = draw_augment(rng, shape=raw.shape)
    out, mout = apply_augment(raw, mask, params, rng=rng)
    assert out.shape == raw.shape and mout.shape == mask.shape  # shapes preserved
    assert out.dtype == np.float32 and mout.dtype == np.uint8
    expected = np.clip((0.25 + 0.5 * mout.astype(np.float32)) * np.float32(params.scale)
                       + np.float32(params.shift), 0, 1)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-6)  # relation holds voxelwise
    assert params.rot_k in ((0, 1, 2, 3) if y == x else (0, 2))
    # z never mixes with y or x: the z coordinate stays constant on every z slice
    zcoord = np.broadcast_to(np.arange(z, dtype=np.float32)[:, None, None], (z, y, x)) / max(z, 1)
    _, zout = apply_augment(raw, zcoord, params)
    assert all(np.unique(zout[k]).size == 1 for k in range(z))
    # the geometric part is a permutation of voxels: same multiset
    np.testing.assert_array_equal(np.sort(mout, axis=None), np.sort(mask, axis=None))


def test_random_augment_with_noise_keeps_geometry_aligned():
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 2, (6, 16, 16)).astype(np.uint8)
    raw = (0.2 + 0.6 * mask).astype(np.float32)
    out, mout = random_augment(raw, mask, np.random.default_rng(11), noise="low",
                               intensity_scale=(1, 1), intensity_shift=(0, 0))
    resid = out - (0.2 + 0.6 * mout)
    assert abs(resid.mean()) < 0.005 and 0.015 < resid.std() < 0.025


def test_flip_and_rot90_match_numpy():
    a = np.arange(2 * 3 * 4 * 4).reshape(2, 3, 4, 4)  # a leading channel axis is left alone
    np.testing.assert_array_equal(flip(a, axis=0), a[:, ::-1])
    np.testing.assert_array_equal(flip(a, axis=(1, 2)), a[:, :, ::-1, ::-1])
    np.testing.assert_array_equal(rot90_yx(a, k=1), np.rot90(a, 1, axes=(2, 3)))
    with pytest.raises(ParameterError, match="flip axis"):
        flip(a, axis=3)
    with pytest.raises(ShapeError, match="at least 3 axes"):
        rot90_yx(np.zeros((4, 4)))


@pytest.mark.parametrize("preset", ["low", "medium", "high"])
def test_noise_preset_statistics(preset):
    mu, sigma = NOISE_PRESETS[preset]
    x = np.full((32, 64, 64), 0.5, np.float32)  # mid-grey: clipping at 0 / 1 is > 5 sigma away
    out = add_gaussian_noise(x, mu=mu, sigma=sigma, rng=np.random.default_rng(0))
    d = out - x
    assert out.dtype == np.float32
    assert abs(d.mean() - mu) < 4 * sigma / np.sqrt(d.size)
    assert abs(d.std() / sigma - 1) < 0.02
    assert resolve_noise(preset) == (mu, sigma)
    assert NOISE_PRESETS["low"][1] < NOISE_PRESETS["medium"][1] < NOISE_PRESETS["high"][1]


def test_noise_user_values_and_clipping():
    x = np.full((16, 32, 32), 0.5, np.float32)
    out = add_gaussian_noise(x, mu=0.1, sigma=0.03, rng=np.random.default_rng(1))
    assert abs(out.mean() - 0.6) < 0.002 and abs(out.std() - 0.03) < 0.002
    hot = add_gaussian_noise(x, mu=0.0, sigma=1.0, rng=np.random.default_rng(1))
    assert hot.min() == 0.0 and hot.max() == 1.0
    raw = add_gaussian_noise(x, mu=0.0, sigma=1.0, rng=np.random.default_rng(1), clip=False)
    assert raw.min() < 0 and raw.max() > 1
    assert resolve_noise({"mu": 0.1, "sigma": 0.2}) == (0.1, 0.2)
    assert resolve_noise((0, 0)) is None and resolve_noise("none") is None and resolve_noise(None) is None


@pytest.mark.parametrize("bad", ["loud", (0.0, -0.1), ("a", 1), {"mu": 1}, (float("nan"), 0.1), 3])
def test_resolve_noise_rejects(bad):
    with pytest.raises(ParameterError):
        resolve_noise(bad)


def test_augment_parameter_errors():
    rng = np.random.default_rng(0)
    with pytest.raises(ParameterError, match="noise_p"):
        draw_augment(rng, shape=(2, 4, 4), noise_p=1.5)
    with pytest.raises(ParameterError, match="intensity_scale"):
        draw_augment(rng, shape=(2, 4, 4), intensity_scale=(1.2, 0.8))
    with pytest.raises(ShapeError, match="shape must be"):
        draw_augment(rng, shape=(4, 4))
    with pytest.raises(ShapeError, match="same shape"):
        apply_augment(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), AugmentParams())
    with pytest.raises(ParameterError, match="rng"):
        apply_augment(np.zeros((2, 4, 4)), None, AugmentParams(noise=(0, 0.1)))
    with pytest.raises(ParameterError, match="sigma"):
        add_gaussian_noise(np.zeros(3), mu=0, sigma=-1, rng=rng)


def test_augment_deterministic_per_seed():
    rng = np.random.default_rng(0)
    raw, mask = rng.random((4, 8, 8), dtype=np.float32), rng.integers(0, 2, (4, 8, 8))
    a = random_augment(raw, mask, np.random.default_rng(5), noise="medium")
    b = random_augment(raw, mask, np.random.default_rng(5), noise="medium")
    c = random_augment(raw, mask, np.random.default_rng(6), noise="medium")
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


# ----------------------------------------------------------------------------- sampler


def test_sampler_reads_exactly_the_chunks_of_the_crop(pair):
    raw_path, mask_path, raw, mask = pair
    (rarr, rstore), (marr, mstore) = _counted(raw_path), _counted(mask_path)
    s = CropSampler([(rarr, marr)], crop=(5, 12, 20), seed=4, membrane_bias=0.0)
    unit = rarr.chunks
    for i in range(12):
        rstore.reads.clear()
        mstore.reads.clear()
        c = s.sample(i)
        expected = {"0/c/" + "/".join(map(str, k)) for k in _grid_cells(c.t, c.corner, s.crop, unit)}
        for store in (rstore, mstore):
            keys = [k for k, _, _ in store.reads]
            assert set(keys) == expected and len(keys) == len(expected)  # each chunk read once
        sl = (c.t, *(slice(o, o + n) for o, n in zip(c.corner, s.crop)))
        np.testing.assert_array_equal(c.raw, raw[sl] / np.float32(255))
        np.testing.assert_array_equal(c.mask, mask[sl].astype(np.float32))


def test_sampler_reads_only_crop_chunks_inside_shards(tmp_path):
    raw, mask = _volumes(shape=(2, 24, 64, 64))
    chunks, shards = (1, 6, 16, 16), (1, 12, 32, 32)
    paths = [_store(tmp_path / f"{n}.zarr", a, chunks=chunks, shards=shards)
             for n, a in (("raw", raw), ("mask", mask))]
    arr, store = _counted(paths[0])
    s = CropSampler([(arr, _counted(paths[1])[0])], crop=(7, 20, 18), seed=1, membrane_bias=0)
    index_bytes = 16 * 2 * 2 * 2 + 4  # per inner chunk (offset, nbytes) uint64 + crc32c
    for i in range(8):
        store.reads.clear()
        c = s.sample(i)
        chunk_cells = _grid_cells(c.t, c.corner, s.crop, chunks)
        shard_keys = {"0/c/" + "/".join(map(str, k))
                      for k in _grid_cells(c.t, c.corner, s.crop, shards)}
        assert {k for k, _, _ in store.reads} == shard_keys
        # map every read back to inner chunks through the shard index; zarr reads a whole
        # shard (byte range None) only when every chunk of it intersects the crop
        read_cells: list[tuple[int, ...]] = []
        index_reads = 0
        for key, br, _ in store.reads:
            shard = tuple(int(v) for v in key.split("/")[2:])
            if isinstance(br, SuffixByteRequest):
                index_reads += 1
                continue
            blob = (Path(paths[0]) / key).read_bytes()
            table = np.frombuffer(blob[-index_bytes:-4], "<u8").reshape(1, 2, 2, 2, 2)
            for inner in itertools.product(*(range(n) for n in table.shape[:4])):
                if br is None or (isinstance(br, RangeByteRequest) and table[inner][0] == br.start
                                  and table[inner][1] == br.end - br.start):
                    read_cells.append(tuple(s_ * (sh // ch) + j for s_, j, sh, ch
                                            in zip(shard, inner, shards, chunks)))
        assert index_reads <= len(shard_keys)
        assert len(read_cells) == len(set(read_cells))  # each chunk read once
        read_cells = set(read_cells)
        assert read_cells == chunk_cells


def test_sampler_deterministic_per_seed_and_index(pair):
    raw_path, mask_path, _, _ = pair
    a = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=7)
    b = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=7)
    c = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=8)
    later = [b.sample(i, augment=True, noise="low") for i in (9, 3, 5)]  # out of order
    for i, cb in zip((9, 3, 5), later):
        ca = a.sample(i, augment=True, noise="low")
        np.testing.assert_array_equal(ca.raw, cb.raw)
        np.testing.assert_array_equal(ca.mask, cb.mask)
        assert ca.info() == cb.info()
    assert [a.sample(i).corner for i in range(6)] != [c.sample(i).corner for i in range(6)]
    assert a.sample(2).corner == a.sample(2, augment=True).corner  # position independent of aug


def _weighted_pairs():
    rng = np.random.default_rng(3)
    shapes = [(6, 12, 12), (6, 12, 12), (8, 20, 20)]  # 75, 75, 845 positions of (4, 8, 8)
    return [(zarr.array(rng.integers(0, 255, s, dtype=np.uint8)),
             zarr.array((rng.random(s) < 0.3).astype(np.uint8))) for s in shapes]


def test_sampler_draws_pairs_in_proportion_to_weight_times_positions():
    pairs, n = _weighted_pairs(), 3000
    weights = [1.0, 3.0, 0.5]
    s = CropSampler(pairs, crop=(4, 8, 8), seed=11, membrane_bias=0.0, weights=weights)
    expected = np.array([75 * 1.0, 75 * 3.0, 845 * 0.5])
    expected /= expected.sum()
    freq = np.bincount([s.sample(i).pair for i in range(n)], minlength=3) / n
    sigma = np.sqrt(expected * (1 - expected) / n)
    assert np.all(np.abs(freq - expected) < 4 * sigma), (freq, expected)
    plain = CropSampler(pairs, crop=(4, 8, 8), seed=11, membrane_bias=0.0)
    freq = np.bincount([plain.sample(i).pair for i in range(n)], minlength=3) / n
    expected = np.array([75, 75, 845]) / 995
    assert np.all(np.abs(freq - expected) < 4 * np.sqrt(expected * (1 - expected) / n))


def test_weighted_sampler_is_reproducible_from_any_index():
    """Crop i depends only on (seed, i) and the weights: a resumed training that starts its
    sampler anew at index k draws the crops k, k+1, ... of the first run."""
    pairs = _weighted_pairs()
    a = CropSampler(pairs, crop=(4, 8, 8), seed=2, weights=[1, 3, 0.5])
    b = CropSampler(pairs, crop=(4, 8, 8), seed=2, weights=[1, 3, 0.5])
    first = [a.sample(i, augment=True, noise="low") for i in range(12)]
    for i in (7, 11, 8):
        c = b.sample(i, augment=True, noise="low")
        np.testing.assert_array_equal(c.raw, first[i].raw)
        assert c.info() == first[i].info()
    other = CropSampler(pairs, crop=(4, 8, 8), seed=2, weights=[1, 1, 1])
    assert [c.pair for c in first] != [other.sample(i).pair for i in range(12)]


@pytest.mark.parametrize("weights", [[1, 2], [1, 0, 1], [1, -1, 1], [1, float("nan"), 1]])
def test_sampler_rejects_bad_weights(weights):
    with pytest.raises(ParameterError, match="one finite weight > 0 per pair"):
        CropSampler(_weighted_pairs(), crop=(4, 8, 8), weights=weights)


def test_membrane_bias_increases_membrane_fraction(pair):
    raw_path, mask_path, _, _ = pair
    fractions = {}
    for bias in (0.0, 1.0):
        s = CropSampler([(raw_path, mask_path)], crop=(4, 10, 10), seed=0, membrane_bias=bias,
                        min_membrane=0.05, max_tries=10)
        crops = [s.sample(i) for i in range(60)]
        fractions[bias] = np.mean([c.membrane_fraction for c in crops])
        if bias:
            assert sum(c.membrane_fraction >= 0.05 for c in crops) >= 57
            assert max(c.tries for c in crops) <= 10
    assert fractions[1.0] > 1.5 * fractions[0.0]


def test_uint16_raw_uses_normalization_range(tmp_path):
    rng = np.random.default_rng(2)
    raw = rng.integers(0, 3000, (1, 6, 16, 16)).astype(np.uint16)
    mask = (rng.random(raw.shape) < 0.2).astype(np.uint8)
    rp = _store(tmp_path / "r.zarr", raw, chunks=(1, 6, 16, 16),
                attrs={"kind": "raw", "normalization": {"low": 100, "high": 2000}})
    mp = _store(tmp_path / "m.zarr", mask, chunks=(1, 6, 16, 16), attrs={"kind": "mask"})
    c = CropSampler([(rp, mp)], crop=(6, 16, 16)).sample(0)
    ref = np.clip(np.floor(255 * (raw[0].astype(np.float64) - 100) / 1900 + 0.5), 0, 255) / 255
    np.testing.assert_allclose(c.raw, ref, atol=1e-6)
    c2 = CropSampler([(rp, mp)], crop=(6, 16, 16), normalization=(0, 3000)).sample(0)
    ref2 = np.clip(np.floor(255 * raw[0].astype(np.float64) / 3000 + 0.5), 0, 255) / 255
    np.testing.assert_allclose(c2.raw, ref2, atol=1e-6)  # an explicit range wins over attrs
    with pytest.raises(ParameterError, match="normalization"):
        CropSampler([(zarr.open_array(rp + "/0"), mp)], crop=(6, 16, 16))
    with pytest.raises(ParameterError, match="high > low"):
        CropSampler([(rp, mp)], crop=(6, 16, 16), normalization=(5, 5))
    with pytest.raises(DTypeError, match="uint16"):
        to_network_input(raw, normalization=None)


def test_sampler_tiff_pairs_and_timepoints(tmp_path):
    raw, mask = _volumes(shape=(3, 6, 20, 20))
    tifffile.imwrite(tmp_path / "r.tif", raw, imagej=True, metadata={"axes": "TZYX"})
    tifffile.imwrite(tmp_path / "m.tif", mask, imagej=True, metadata={"axes": "TZYX"})
    s = CropSampler([(tmp_path / "r.tif", tmp_path / "m.tif")], crop=(3, 8, 8), timepoints=[2])
    for i in range(5):
        c = s.sample(i)
        assert c.t == 2
        sl = (2, *(slice(o, o + n) for o, n in zip(c.corner, s.crop)))
        np.testing.assert_array_equal(c.mask, mask[sl])
        np.testing.assert_array_equal(c.raw, raw[sl] / np.float32(255))


def test_sampler_bad_inputs(tmp_path, pair):
    raw_path, mask_path, raw, mask = pair
    with pytest.raises(ParameterError) as e:
        CropSampler([(raw_path, mask_path)], crop=(32, 8, 8))
    assert raw_path in str(e.value) and "(32, 8, 8)" in str(e.value) and "(20, 40, 44)" in str(e.value)
    small = _store(tmp_path / "small.zarr", mask[:, :, :20], chunks=(1, 8, 8, 8))
    with pytest.raises(ShapeError, match="same|expected equal"):
        CropSampler([(raw_path, small)], crop=(4, 8, 8))
    # the values decide, not the kind: a 0/1 volume stored as labels is a mask
    ones = _store(tmp_path / "ones.zarr", mask.astype(np.uint32), chunks=(1, 8, 8, 8),
                  attrs={"kind": "labels"})
    CropSampler([(raw_path, ones)], crop=(4, 8, 8))
    labels = _store(tmp_path / "labels.zarr", mask.astype(np.uint32) * 7, chunks=(1, 8, 8, 8),
                    attrs={"kind": "labels"})
    with pytest.raises(InputError, match=r"0/1 membrane mask; found values in \[0, 7\].*binarize"):
        CropSampler([(raw_path, labels)], crop=(4, 8, 8))
    fmask = _store(tmp_path / "fmask.zarr", mask.astype(np.float32), chunks=(1, 8, 8, 8))
    with pytest.raises(DTypeError, match="float32"):
        CropSampler([(raw_path, fmask)], crop=(4, 8, 8))
    with pytest.raises(InputNotFoundError):
        CropSampler([(tmp_path / "nope.zarr", mask_path)], crop=(4, 8, 8))
    unfinished = _store(tmp_path / "unfinished.zarr", raw, chunks=(1, 8, 8, 8), complete=False)
    with pytest.raises(IncompleteStoreError):
        CropSampler([(unfinished, mask_path)], crop=(4, 8, 8))
    with pytest.raises(ShapeError, match="3D"):
        CropSampler([(zarr.zeros((4, 4), dtype="u1"), mask_path)], crop=(4, 8, 8))
    with pytest.raises(ParameterError, match="path or a zarr array"):
        CropSampler([(42, mask_path)], crop=(4, 8, 8))
    good = [(raw_path, mask_path)]
    for kwargs, match in [
        ({"crop": (4, 8)}, "crop"), ({"crop": (0, 8, 8)}, "crop"), ({"seed": -1}, "seed"),
        ({"membrane_bias": 2}, "membrane_bias"), ({"min_membrane": -0.1}, "min_membrane"),
        ({"max_tries": 0}, "max_tries"), ({"timepoints": [5]}, "timepoints"),
        ({"timepoints": []}, "timepoints"),
    ]:
        with pytest.raises(ParameterError, match=match):
            CropSampler(good, **{"crop": (4, 8, 8), **kwargs})
    for bad_pairs in ([], [(raw_path,)], [raw_path]):
        with pytest.raises(ParameterError, match="pairs"):
            CropSampler(bad_pairs, crop=(4, 8, 8))
    with pytest.raises(ParameterError, match="index"):
        CropSampler(good, crop=(4, 8, 8)).sample(-1)


def test_sampler_draws_across_pairs_and_timepoints(tmp_path, pair):
    raw_path, mask_path, raw, mask = pair
    r2 = _store(tmp_path / "r2.zarr", raw[:, :10, :20, :20].copy(), chunks=(1, 8, 8, 8))
    m2 = _store(tmp_path / "m2.zarr", mask[:, :10, :20, :20].copy(), chunks=(1, 8, 8, 8))
    s = CropSampler([(raw_path, mask_path), (r2, m2)], crop=(4, 8, 8), membrane_bias=0)
    crops = [s.sample(i) for i in range(200)]
    assert {c.pair for c in crops} == {0, 1} and {c.t for c in crops} == {0, 1}
    share = np.mean([c.pair == 1 for c in crops])  # weights ∝ crop positions: 7*13*13 vs 17*33*37
    assert share < 0.15


# ----------------------------------------------------------------------------- tf.data


@pytest.mark.tf
def test_make_dataset_shapes_dtypes_and_determinism(pair):
    raw_path, mask_path, _, _ = pair
    ds = make_dataset([(raw_path, mask_path)], batch=2, crop=(4, 8, 8), seed=3, n=5,
                      noise="low", num_parallel=3)
    batches = list(ds.as_numpy_iterator())
    assert [b[0].shape for b in batches] == [(2, 4, 8, 8, 1)] * 2 + [(1, 4, 8, 8, 1)]
    for x, y in batches:
        assert x.dtype == np.float32 and y.dtype == np.float32 and x.shape == y.shape
        assert x.min() >= 0 and x.max() <= 1 and set(np.unique(y)) <= {0.0, 1.0}
    again = list(make_dataset([(raw_path, mask_path)], batch=2, crop=(4, 8, 8), seed=3, n=5,
                              noise="low", num_parallel=1).as_numpy_iterator())
    for (x1, y1), (x2, y2) in zip(batches, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    s = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=3)
    ref = s.sample(0, augment=True, noise="low")
    np.testing.assert_array_equal(batches[0][0][0, ..., 0], ref.raw)
    endless = make_dataset(s, batch=3, augment=False)
    assert endless.element_spec[0].shape.as_list() == [3, 4, 8, 8, 1]
    (x, y), = endless.take(1).as_numpy_iterator()
    np.testing.assert_array_equal(x[1, ..., 0], s.sample(1).raw)


@pytest.mark.tf
def test_make_dataset_bad_arguments(pair):
    raw_path, mask_path, _, _ = pair
    s = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=3)
    for kwargs, match in [
        ({"crop": (4, 8, 9)}, "crop"), ({"seed": 4}, "seed"), ({"membrane_bias": 0.1}, "sampler options"),
        ({"batch": 0}, "batch"), ({"n": 0}, "n must"), ({"start": -1}, "start"),
        ({"noise": "loud"}, "noise"),
    ]:
        with pytest.raises(ParameterError, match=match):
            make_dataset(s, **kwargs)


# ----------------------------------------------------------------------------- crops CLI


def test_crops_cli_writes_tiff_pairs_and_manifest(tmp_path, pair, capsys):
    raw_path, mask_path, _, _ = pair
    out = tmp_path / "crops"
    argv = ["crops", raw_path, mask_path, "--out", str(out), "--n", "3", "--size", "4", "8", "8",
            "--noise", "low", "--seed", "5", "--quiet"]
    assert main(argv) == 0
    assert "wrote 3 crop pairs" in capsys.readouterr().out
    for i in range(3):
        r, m = tifffile.imread(out / f"raw_{i:05d}.tif"), tifffile.imread(out / f"mask_{i:05d}.tif")
        assert r.shape == m.shape == (4, 8, 8) and r.dtype == np.uint8 and m.dtype == np.uint8
        assert set(np.unique(m)) <= {0, 1}
    manifest = json.loads((out / "crops.json").read_text())
    assert manifest["n"] == 3 and manifest["noise"] == {"preset": "low", "mu": 0.0, "sigma": 0.02}
    assert manifest["raw_dtype"] == "uint8" and len(manifest["crops"]) == 3
    # same seed, same crops: the TIFF equals the sampler's crop
    c = CropSampler([(raw_path, mask_path)], crop=(4, 8, 8), seed=5).sample(1, augment=True, noise="low")
    np.testing.assert_array_equal(tifffile.imread(out / "raw_00001.tif"), np.rint(c.raw * 255))
    # existing output → exit status 2; --overwrite replaces
    assert main(argv) == 2
    assert "crops already" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:  # exclusive options: argparse's own usage error
        main([*argv, "--overwrite", "--noise-sigma", "0.1"])
    assert e.value.code == 2
    capsys.readouterr()
    assert main(argv[:-3] + ["--noise-mu", "0.1", "--quiet"]) == 2  # mu without sigma
    assert "--noise-sigma" in capsys.readouterr().err


def test_run_crops_float32_without_augmentation(tmp_path, pair):
    raw_path, mask_path, raw, _ = pair
    m = run_crops(raw_path, mask_path, out=tmp_path / "o", n=2, size=(3, 6, 6), augment=False,
                  raw_dtype="float32", membrane_bias=0, progress=False, workers=1)
    r = tifffile.imread(tmp_path / "o" / "raw_00000.tif")
    c = m["crops"][0]
    sl = (c["t"], *(slice(o, o + n) for o, n in zip(c["corner"], (3, 6, 6))))
    assert r.dtype == np.float32 and c["augment"] is None
    np.testing.assert_array_equal(r, raw[sl] / np.float32(255))
    for kwargs, match in [({"n": 0}, "n must"), ({"raw_dtype": "uint16"}, "raw_dtype"),
                          ({"workers": 0}, "workers"), ({"noise": "loud"}, "noise")]:
        with pytest.raises(ParameterError, match=match):
            run_crops(raw_path, mask_path, **{"out": tmp_path / "p", "n": 1, "size": (3, 6, 6),
                                              **kwargs})
    with pytest.raises(OutputExistsError):
        run_crops(raw_path, mask_path, out=tmp_path / "o", n=1, size=(3, 6, 6), progress=False)


# ----------------------------------------------------------------------------- real data


def test_sampler_on_real_ovule_membranes(tmp_path, real_data):
    """Real membranes: TIFF raw (uint8) + mask from the drawn labels; bias finds membrane."""
    from chunkseg.ops.boundaries import membrane_mask

    labels = tifffile.imread(real_data / "ovule_labels.tif")
    mask = membrane_mask(labels)
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    pairs = [(real_data / "ovule_raw.tif", tmp_path / "mask.tif")]
    mean = {}
    for bias in (0.0, 1.0):
        s = CropSampler(pairs, crop=(8, 32, 32), seed=0, membrane_bias=bias, min_membrane=0.15)
        crops = [s.sample(i, augment=True, noise="low") for i in range(40)]
        mean[bias] = np.mean([c.membrane_fraction for c in crops])
        for c in crops[:3]:
            assert c.raw.shape == c.mask.shape == (8, 32, 32) and 0 <= c.raw.min() <= c.raw.max() <= 1
    assert mean[1.0] > mean[0.0]


def test_converted_tiff_mask_is_a_mask(tmp_path, pair):
    """A 0/1 mask converted from TIFF (kind 'raw') trains: values decide, not provenance."""
    from chunkseg.pipeline.convert import run_convert

    raw_path, _, _, mask = pair
    tifffile.imwrite(tmp_path / "mask.tif", mask, imagej=True, metadata={"axes": "TZYX"})
    conv = run_convert(tmp_path / "mask.tif", tmp_path / "converted.ome.zarr", progress=False)
    assert read_attrs(conv["out"])["kind"] == "raw"
    s = CropSampler([(raw_path, conv["out"])], crop=(4, 8, 8), seed=3)
    c = s.sample(0)
    sl = (c.t, *(slice(o, o + n) for o, n in zip(c.corner, s.crop)))
    np.testing.assert_array_equal(c.mask, mask[sl])
    tifffile.imwrite(tmp_path / "bad.tif", mask * 2, imagej=True, metadata={"axes": "TZYX"})
    bad = run_convert(tmp_path / "bad.tif", tmp_path / "bad.ome.zarr", progress=False)
    with pytest.raises(InputError, match=r"found values in \[0, 2\] \(kind 'raw'\)"):
        CropSampler([(raw_path, bad["out"])], crop=(4, 8, 8))
