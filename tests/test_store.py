"""OME-Zarr store: create/open/complete, NGFF validation, shard-aligned parallel writes."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest
import zarr

from chunkseg.engine.blocks import done_blocks, write_volume
from chunkseg.errors import (
    BlockFailedError,
    FormatError,
    IncompleteStoreError,
    InputNotFoundError,
    OutputExistsError,
    ParameterError,
    ResumeMismatchError,
    ShapeError,
)
from chunkseg.io.store import (
    create_image,
    default_chunks,
    mark_complete,
    open_volume,
    read_attrs,
    shard_sample,
)


def test_default_chunks_for_lattice_stack():
    chunks, shards = default_chunks((100, 251, 1024, 1024), np.uint16)
    assert chunks == (1, 32, 256, 256)
    assert shards == (1, 64, 512, 512)


def test_default_chunks_clip_small_volume_and_stay_multiples():
    chunks, shards = default_chunks((1, 20, 100, 700))
    assert chunks == (1, 20, 100, 256)
    assert all(s % c == 0 for s, c in zip(shards, chunks))
    assert shards == (1, 20, 100, 512)


@pytest.mark.parametrize("bad", [(0, 1, 1), (1, -2, 1)])
def test_nonpositive_chunks_rejected(bad):
    with pytest.raises(ParameterError, match="positive"):
        default_chunks((1, 8, 8, 8), chunks=bad)


def test_roundtrip_and_ngff_validation(tmp_path):
    from ome_zarr_models.v05.image import Image

    x = np.arange(2 * 9 * 20 * 21, dtype=np.uint16).reshape(2, 9, 20, 21)
    out = tmp_path / "a.ome.zarr"
    create_image(out, shape=x.shape, dtype=x.dtype, voxel_size=(0.4, 0.1, 0.1),
                 chunks=(4, 8, 8), attrs={"kind": "raw"})
    write_volume(da.from_array(x, chunks=(1, 5, 7, 9)), out, progress=False)
    mark_complete(out)
    Image.from_zarr(zarr.open_group(str(out), mode="r"))  # raises if not valid NGFF 0.5
    vol = open_volume(out)
    assert vol.voxel_size == (0.4, 0.1, 0.1)
    assert vol.attrs["kind"] == "raw" and vol.attrs["complete"] is True
    np.testing.assert_array_equal(vol.data.compute(), x)
    np.testing.assert_array_equal(da.from_zarr(str(out / "0")).compute(), x)


def test_lz4_codec_roundtrip_and_unknown_codec_refused(tmp_path):
    x = np.arange(1 * 9 * 20 * 21, dtype=np.uint64).reshape(1, 9, 20, 21) << np.uint64(33)
    out = tmp_path / "w.zarr"
    arr = create_image(out, shape=x.shape, dtype=x.dtype, chunks=(4, 8, 8), codec="lz4")
    assert arr.compressors[0].cname.value == "lz4"
    write_volume(da.from_array(x, chunks=(1, 5, 7, 9)), out, progress=False)
    np.testing.assert_array_equal(da.from_zarr(str(out / "0")).compute(), x)
    with pytest.raises(ParameterError, match="codec must be one of"):
        create_image(tmp_path / "v.zarr", shape=x.shape, dtype=x.dtype, codec="gzip")
    assert not (tmp_path / "v.zarr").exists()


def test_incomplete_store_refused(tmp_path):
    out = tmp_path / "b.zarr"
    create_image(out, shape=(1, 4, 4, 4), dtype="uint8")
    with pytest.raises(IncompleteStoreError, match="incomplete.*--resume"):
        open_volume(out)
    assert open_volume(out, require_complete=False).shape == (1, 4, 4, 4)


def test_output_exists_and_overwrite(tmp_path):
    out = tmp_path / "c.zarr"
    create_image(out, shape=(1, 4, 4, 4), dtype="uint8")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        create_image(out, shape=(1, 4, 4, 4), dtype="uint8")
    create_image(out, shape=(1, 5, 4, 4), dtype="uint8", overwrite=True)
    assert open_volume(out, require_complete=False).shape == (1, 5, 4, 4)


def test_resume_refuses_other_fingerprint(tmp_path):
    out = tmp_path / "d.zarr"
    create_image(out, shape=(1, 4, 4, 4), dtype="uint8", attrs={"fingerprint": "aaa"})
    create_image(out, shape=(1, 4, 4, 4), dtype="uint8", attrs={"fingerprint": "aaa"}, resume=True)
    with pytest.raises(ResumeMismatchError, match="differ from the first run"):
        create_image(out, shape=(1, 4, 4, 4), dtype="uint8", attrs={"fingerprint": "bbb"},
                     resume=True)
    with pytest.raises(ResumeMismatchError, match="store holds"):
        create_image(out, shape=(1, 4, 4, 5), dtype="uint8", attrs={"fingerprint": "aaa"},
                     resume=True)


def test_open_errors(tmp_path):
    with pytest.raises(InputNotFoundError, match="no such file"):
        open_volume(tmp_path / "missing.zarr")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(FormatError, match="expected an OME-Zarr"):
        open_volume(tmp_path / "notes.txt")
    zarr.create_array(str(tmp_path / "flat.zarr"), shape=(5, 5), dtype="uint8")
    with pytest.raises(ShapeError, match="expected a 3D"):
        open_volume(tmp_path / "flat.zarr")


def test_parallel_writes_are_shard_aligned_and_complete(tmp_path):
    """Many threads, dask chunks NOT aligned to shards: every voxel must land."""
    rng = np.random.default_rng(1)
    x = rng.integers(1, 65535, size=(3, 40, 96, 80), dtype=np.uint16)
    out = tmp_path / "p.zarr"
    arr = create_image(out, shape=x.shape, dtype=x.dtype, chunks=(8, 16, 16), shards=(1, 16, 48, 32))
    assert arr.shards == (1, 16, 48, 32)
    src = da.from_array(x, chunks=(1, 7, 13, 11))  # crosses every shard border
    with dask.config.set(scheduler="threads", num_workers=6):
        rep = write_volume(src, out, progress=False)
    assert rep.n_blocks == 3 * 3 * 2 * 3 and rep.written == rep.n_blocks
    got = zarr.open_array(str(out / "0"))[:]
    assert np.count_nonzero(got == 0) == 0
    np.testing.assert_array_equal(got, x)


@pytest.mark.cluster
def test_parallel_writes_on_distributed_workers(tmp_path):
    distributed = pytest.importorskip("distributed")
    x = np.random.default_rng(2).integers(1, 255, size=(2, 24, 40, 40), dtype=np.uint8)
    out = tmp_path / "q.zarr"
    create_image(out, shape=x.shape, dtype=x.dtype, chunks=(8, 8, 8), shards=(1, 16, 16, 16))
    with distributed.Client(n_workers=2, threads_per_worker=2, processes=False,
                            dashboard_address=None) as client:
        write_volume(da.from_array(x, chunks=(1, 5, 9, 11)), out, client=client, progress=False)
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"))[:], x)


def _boom(block, block_info=None):
    if block_info[0]["chunk-location"][1] == 1:
        raise RuntimeError("simulated failure")
    return block


def test_failed_blocks_never_marked_done_and_resume_finishes(tmp_path):
    x = np.ones((1, 32, 16, 16), dtype=np.uint8)
    out = tmp_path / "f.zarr"
    create_image(out, shape=x.shape, dtype=x.dtype, chunks=(8, 16, 16), shards=False)
    bad = da.from_array(x, chunks=(1, 8, 16, 16)).map_blocks(_boom, dtype=np.uint8)
    with pytest.raises(BlockFailedError, match="1 of 4 blocks failed"):
        write_volume(bad, out, progress=False, retries=1)
    assert done_blocks(out) == {(0, 0, 0, 0), (0, 2, 0, 0), (0, 3, 0, 0)}
    assert read_attrs(out)["complete"] is False
    rep = write_volume(da.from_array(x, chunks=(1, 8, 16, 16)), out, resume=True, progress=False)
    assert (rep.written, rep.skipped) == (1, 3)
    np.testing.assert_array_equal(zarr.open_array(str(out / "0"))[:], x)


def test_missing_shard_detected_even_if_all_zero(tmp_path):
    import shutil

    x = np.zeros((1, 16, 16, 16), dtype=np.uint8)  # all fill value: still written
    out = tmp_path / "z.zarr"
    create_image(out, shape=x.shape, dtype=x.dtype, chunks=(8, 8, 8), shards=(1, 8, 16, 16))
    write_volume(da.from_array(x), out, progress=False)
    mark_complete(out)
    assert open_volume(out).shape == x.shape
    shutil.rmtree(out / "0" / "c" / "0" / "1")
    with pytest.raises(IncompleteStoreError, match=r"shard files are missing.*\(0, 1, 0, 0\)"):
        open_volume(out)


def test_shard_sample_is_bounded_and_spans_the_grid():
    assert shard_sample((2, 1, 2, 1), 10) == [(0, 0, 0, 0), (0, 0, 1, 0), (1, 0, 0, 0),
                                              (1, 0, 1, 0)]
    picks = shard_sample((1000, 1, 10, 100), 64)  # 10^6 blocks
    assert len(picks) == 64 and len(set(picks)) == 64
    assert picks[0] == (0, 0, 0, 0) and picks[-1] == (999, 0, 9, 99)
    steps = np.diff([t for t, *_ in picks])
    assert steps.max() <= 17  # evenly spread over the series, no part skipped


def test_verification_of_a_large_store_checks_a_bounded_sample(tmp_path, monkeypatch):
    import chunkseg.io.store as store

    x = np.zeros((40, 1, 4, 4), dtype=np.uint8)
    out = tmp_path / "z.zarr"
    create_image(out, shape=x.shape, dtype=x.dtype, chunks=(1, 1, 4, 4), shards=(1, 1, 4, 4))
    write_volume(da.from_array(x, chunks=(1, 1, 4, 4)), out, progress=False)
    mark_complete(out)
    monkeypatch.setattr(store, "VERIFY_BLOCKS", 5)  # sample: t = 0, 9, 19, 29, 39
    listed = []
    monkeypatch.setattr(store, "missing_shards", lambda *a, **k: listed.append(a) or [])
    (out / "0" / "c" / "12" / "0" / "0" / "0").unlink()  # not sampled: not seen
    assert open_volume(out).shape == x.shape
    (out / "0" / "c" / "39" / "0" / "0" / "0").unlink()
    with pytest.raises(IncompleteStoreError, match=r"shard files are missing.*\(39, 0, 0, 0\)"):
        open_volume(out)
    assert listed == []  # no listing of every shard
    monkeypatch.undo()
    assert store.missing_shards(out) == [(12, 0, 0, 0), (39, 0, 0, 0)]
