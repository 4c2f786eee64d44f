"""The bad-input corpus: every command, every broken input, a clear error and nothing complete.

The corpus is generated in the test (nothing large is committed). Each case runs the
command through the CLI entry point and asserts: exit status 2, a message on stderr that
names the offending file and the problem, no output store marked complete, and (via
pytest-timeout) that nothing hangs.
"""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import tifffile

from chunkseg.cli import main
from chunkseg.io.store import create_image, is_zarr, mark_complete, open_array, read_attrs

pytestmark = pytest.mark.timeout(120)


def _stack(path: Path, shape=(6, 24, 20), dtype=np.uint16, value=None) -> Path:
    rng = np.random.default_rng(0)
    data = (np.full(shape, value, dtype=dtype) if value is not None
            else rng.integers(1, 3000, size=shape).astype(dtype))
    tifffile.imwrite(path, data)
    return path


def _zarr(path: Path, data: np.ndarray) -> Path:
    from chunkseg.engine.blocks import write_volume

    import dask.array as da

    create_image(path, shape=data.shape, dtype=data.dtype, chunks=(4, 8, 8))
    write_volume(da.from_array(data), path, progress=False)
    mark_complete(path)
    return path


@pytest.fixture
def corpus(tmp_path) -> dict[str, Path]:
    c: dict[str, Path] = {}
    c["zero_byte"] = tmp_path / "empty.tif"
    c["zero_byte"].write_bytes(b"")
    good = _stack(tmp_path / "good.tif")
    data = good.read_bytes()
    c["truncated"] = tmp_path / "truncated.tif"
    c["truncated"].write_bytes(data[: len(data) // 3])
    # corrupt IFD: point the first-IFD offset of the header past the end of the file
    bad = bytearray(data)
    bad[4:8] = struct.pack("<I", len(data) + 1000)
    c["corrupt_ifd"] = tmp_path / "corrupt_ifd.tif"
    c["corrupt_ifd"].write_bytes(bytes(bad))
    c["flat_2d"] = _stack(tmp_path / "flat.tif", shape=(24, 20))
    c["not_tiff"] = tmp_path / "notes.tif"
    c["not_tiff"].write_text("microscope log, not an image\n" * 20)
    c["all_zero"] = _stack(tmp_path / "zeros.tif", value=0)
    nan = np.random.default_rng(1).random((6, 24, 20)).astype(np.float32)
    nan[2, 3, 4] = np.nan
    nan[1, 1, 1] = np.inf
    c["nan_inf"] = tmp_path / "nan_inf.tif"
    tifffile.imwrite(c["nan_inf"], nan)
    c["float_labels"] = tmp_path / "float_labels.tif"
    tifffile.imwrite(c["float_labels"], np.ones((6, 24, 20), np.float32))
    c["missing_chunks"] = _zarr(tmp_path / "holes.zarr",
                                np.ones((1, 8, 16, 16), np.uint16) * 7)
    import shutil

    shutil.rmtree(c["missing_chunks"] / "0" / "c" / "0" / "0" / "0")
    c["good"] = good
    return c


def run(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_clear(code: int, err: str, path: Path, *needles: str) -> None:
    assert code == 2, err
    assert str(path.name) in err, f"message does not name {path.name}: {err}"
    for n in needles:
        assert n.lower() in err.lower(), f"{n!r} not in: {err}"
    assert "Traceback" not in err


def assert_nothing_complete(out: Path) -> None:
    if is_zarr(out):
        assert read_attrs(out).get("complete") is not True


CASES = [
    # (command, corpus key, expected words)
    ("convert", "zero_byte", ["expected a TIFF"]),
    ("convert", "truncated", ["truncated"]),
    ("convert", "corrupt_ifd", ["TIFF"]),
    ("convert", "flat_2d", ["expected a 3D", "(24, 20)"]),
    ("convert", "not_tiff", ["expected a TIFF"]),
    ("convert", "missing_chunks", ["missing"]),
    ("info", "zero_byte", ["expected a TIFF"]),
    ("info", "missing_chunks", ["missing"]),
    ("normalize", "zero_byte", ["expected a TIFF"]),
    ("normalize", "truncated", ["truncated"]),
    ("normalize", "all_zero", ["constant"]),
    ("normalize", "nan_inf", ["nan"]),
    ("normalize", "missing_chunks", ["missing"]),
    ("binarize", "float_labels", ["float"]),
    ("binarize", "flat_2d", ["expected a 3D"]),
    ("binarize", "corrupt_ifd", ["TIFF"]),
    ("predict", "zero_byte", ["expected a TIFF"]),
    ("predict", "flat_2d", ["expected a 3D"]),
    ("predict", "missing_chunks", ["missing"]),
    ("segment", "zero_byte", ["expected a TIFF"]),
    ("segment", "missing_chunks", ["missing"]),
]


@pytest.mark.parametrize("command,case,needles", CASES, ids=[f"{c}-{k}" for c, k, _ in CASES])
def test_bad_input(command, case, needles, corpus, tmp_path, capsys, tiny_model):
    path = corpus[case]
    out = tmp_path / "out.zarr"
    argv = {
        "convert": [command, path, "--out", out],
        "info": [command, path],
        "normalize": [command, path, "--out", out, "--scheduler", "threads"],
        "binarize": [command, path, "--out", out, "--scheduler", "threads"],
        "predict": [command, path, "--out", out, "--model", tiny_model, "--scheduler", "threads",
                    "--quiet"],
        "segment": [command, path, "--out", out, "--scheduler", "threads", "--quiet"],
    }[command]
    code, err = run(capsys, *argv)
    assert_clear(code, err, path, *needles)
    assert_nothing_complete(out)


def test_series_of_mixed_shapes(tmp_path, capsys):
    a = _stack(tmp_path / "t1.tif")
    b = _stack(tmp_path / "t2.tif", shape=(6, 24, 21))
    code, err = run(capsys, "convert", a, b, "--out", tmp_path / "o.zarr")
    assert_clear(code, err, b, "differs")
    assert not (tmp_path / "o.zarr").exists()


@pytest.mark.tf
@pytest.mark.parametrize("kind", ["garbage", "foreign_zip", "plain_keras"])
def test_corrupt_or_foreign_model(kind, corpus, tmp_path, capsys):
    model = tmp_path / "model.keras"
    if kind == "garbage":
        model.write_bytes(b"\x00not a keras archive" * 50)
    elif kind == "foreign_zip":
        import zipfile

        with zipfile.ZipFile(model, "w") as z:
            z.writestr("hello.txt", "a zip, but not a Keras model")
    else:
        import keras

        inp = keras.Input((None, None, None, 1))
        keras.Model(inp, keras.layers.Conv3D(1, 1)(inp)).save(model)
    raw = _zarr(tmp_path / "raw.zarr", np.ones((1, 8, 16, 16), np.uint16) * 7)
    out = tmp_path / "prob.zarr"
    code, err = run(capsys, "predict", raw, "--out", out, "--model", model, "--scheduler",
                    "threads", "--quiet")
    assert_clear(code, err, model)
    assert_nothing_complete(out)


def test_halo_larger_than_block(corpus, tmp_path, capsys, tiny_model):
    raw = _zarr(tmp_path / "raw.zarr", np.ones((1, 16, 16, 16), np.uint16) * 7)
    code, err = run(capsys, "predict", raw, "--out", tmp_path / "p.zarr", "--model", tiny_model,
                    "--block", 8, 8, 8, "--halo", 12, "--scheduler", "threads", "--quiet")
    assert code == 2 and "halo" in err and "block" in err
    assert_nothing_complete(tmp_path / "p.zarr")


@pytest.mark.timeout(120)
def test_halo_larger_than_a_split_axis_block_refused_before_any_work(tmp_path, capsys,
                                                                     tiny_model):
    # z is split into two 8-slice blocks; y and x are one block each (any halo clips there)
    raw = _zarr(tmp_path / "small.ome.zarr", np.ones((1, 16, 32, 32), np.uint16) * 7)
    out = tmp_path / "p.ome.zarr"
    code, err = run(capsys, "predict", raw, "--out", out, "--model", tiny_model,
                    "--block", 8, 64, 64, "--halo", 999, "--scheduler", "threads", "--quiet")
    assert code == 2
    assert "halo (999, 999, 999) is larger than the block (8, 32, 32) on an axis split" in err
    assert "volume (16, 32, 32)" in err
    assert not out.exists()  # refused before the output (or any pass over the input)


def test_read_only_output_directory(corpus, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root ignores permissions: make the store creation fail as it would
        import zarr

        def denied(*a, **k):
            raise PermissionError(errno.EACCES, "Permission denied", str(ro / "o.zarr"))

        monkeypatch.setattr(zarr, "create_group", denied)
    code, err = run(capsys, "convert", corpus["good"], "--out", ro / "o.zarr")
    assert_clear(code, err, ro / "o.zarr", "cannot write")
    assert_nothing_complete(ro / "o.zarr")


def test_disk_full_while_writing(corpus, tmp_path, capsys, monkeypatch):
    import chunkseg.engine.blocks as blocks

    real = blocks._write_block
    calls = {"n": 0}
    written = []

    def full(block, array_path, region, *rows):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device", array_path)
        written.append(region)
        return real(block, array_path, region, *rows)

    monkeypatch.setattr(blocks, "_write_block", full)
    big = _stack(tmp_path / "big.tif", shape=(70, 24, 20))  # 2 shards in z
    out = tmp_path / "o.zarr"
    code, err = run(capsys, "convert", big, "--out", out)
    assert_clear(code, err, out, "No space left on device", "not complete")
    assert_nothing_complete(out)
    # only the block written before the disk filled may be recorded (if it finished
    # before the local scheduler stopped at the failure); the failing one never is
    grid = open_array(out).shards
    assert blocks.done_blocks(out) <= {tuple(s.start // g for s, g in zip(r, grid))
                                       for r in written}
