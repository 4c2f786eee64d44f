"""Tests of training: the network learns, ``run_train`` / ``chunkseg train`` end to end."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from chunkseg.cli import main
from chunkseg.errors import (
    FormatError,
    InputNotFoundError,
    OutputExistsError,
    ParameterError,
)
from chunkseg.io.store import create_image, mark_complete
from chunkseg.model import UNetConfig, build_unet, load_model, membrane_loss, receptive_field
from chunkseg.pipeline.train import TrainOptions, load_train_config, run_train
from chunkseg.synth import synth_volume

keras = pytest.importorskip("keras")

TINY = {"depth": 2, "base_filters": 2, "pools": [[1, 2, 2]]}
FAST = {"epochs": 2, "steps": 2, "val_steps": 1, "crop": (8, 16, 16), "batch": 2, "seed": 0}


def _store(path: Path, data: np.ndarray, attrs: dict) -> str:
    arr = create_image(path, shape=data.shape, dtype=data.dtype, chunks=(1, 8, 16, 16),
                       shards=False, attrs=attrs, voxel_size=(0.4, 0.1, 0.1))
    arr[...] = data
    mark_complete(path)
    return str(path)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Two synthetic (raw uint16 with a stored range, mask) OME-Zarr pairs."""
    root = tmp_path_factory.mktemp("train_data")
    out = []
    for i in range(2):
        v = synth_volume((12, 32, 32), seed=10 + i, cell_diameter=1.5)
        low, high = (float(x) for x in np.percentile(v.raw, [0, 99.99]))
        raw = _store(root / f"raw{i}.ome.zarr", v.raw[None],
                     {"kind": "raw", "normalization": {"low": low, "high": high,
                                                       "method": "percentiles",
                                                       "percentiles": [0.0, 99.99]}})
        mask = _store(root / f"mask{i}.ome.zarr", v.mask[None], {"kind": "mask"})
        out.append((raw, mask))
    return out


def test_tiny_model_overfits_one_crop():
    """Seeded: the loss on one synthetic crop falls by at least half within 40 Adam steps
    (training-mode forward passes, so BatchNorm uses the crop's own statistics)."""
    v = synth_volume((8, 32, 32), seed=3, voxel_size=(0.5, 0.25, 0.25), cell_diameter=3.0)
    low, high = np.percentile(v.raw, [0, 99.99])
    x = (np.clip((v.raw - low) / (high - low), 0, 1)[None, ..., None]).astype(np.float32)
    y = v.mask[None, ..., None].astype(np.float32)
    assert 0.05 < y.mean() < 0.6
    keras.utils.set_random_seed(0)
    model = build_unet(UNetConfig(depth=2, base_filters=4, pools=((1, 2, 2),)))
    loss = membrane_loss()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss)
    first = float(loss(y, model(x, training=True)))
    model.fit(np.repeat(x, 40, 0), np.repeat(y, 40, 0), batch_size=1, epochs=1, shuffle=False,
              verbose=0)
    last = float(loss(y, model(x, training=True)))
    assert last <= 0.5 * first, (first, last)


def test_run_train_end_to_end(pairs, tmp_path):
    out = tmp_path / "model.keras"
    summary = run_train([p[0] for p in pairs], [p[1] for p in pairs], out=out,
                        val_raw=pairs[1][0], val_mask=pairs[1][1],
                        config={"model": TINY, "train": {"lr": 5e-3, "noise": "low"}},
                        verbose=0, **FAST)
    assert summary["epochs_run"] == 2
    assert 1 <= summary["best_epoch"] <= 2
    assert summary["held_out_validation"] is True
    side = tmp_path / "model_training"
    history = json.loads((side / "history.json").read_text())
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "iou", "val_iou",
                "precision", "recall"):
        assert len(history["history"][key]) == 2, key
    with open(side / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and "val_loss" in rows[0]
    png = (side / "training_curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    from chunkseg.model.callbacks import read_scalar_events

    events = read_scalar_events(side / "tensorboard")
    assert events["train"]["epoch_loss"] == pytest.approx(history["history"]["loss"])
    assert events["validation"]["epoch_loss"] == pytest.approx(history["history"]["val_loss"])
    assert len(events["train"]["epoch_learning_rate"]) == 2

    model, meta = load_model(out)
    cfg = UNetConfig.from_dict(meta["config"])
    assert cfg == UNetConfig.from_dict(TINY)
    assert meta["receptive_field"] == list(receptive_field(cfg))
    assert meta["crop"] == [8, 16, 16]
    assert meta["voxel_size"] == pytest.approx([0.4, 0.1, 0.1])
    assert meta["voxel_sizes"] == [pytest.approx([0.4, 0.1, 0.1])] * 2
    norm = meta["normalization"]
    assert norm["method"] == "percentiles" and norm["percentiles"] == [0.0, 99.99]
    assert len(norm["ranges"]) == 2 and "low" not in norm  # per-volume ranges differ
    assert meta["training"]["data"] == [list(p) for p in pairs]
    assert meta["training"]["options"]["lr"] == 5e-3
    assert meta["training"]["best"]["val_loss"] == pytest.approx(
        min(history["history"]["val_loss"]))
    assert model.predict(np.zeros((1, 8, 16, 16, 1), np.float32), verbose=0).shape == \
        (1, 8, 16, 16, 1)
    with pytest.raises(OutputExistsError, match="model.keras"):
        run_train(pairs[0][0], pairs[0][1], out=out, config={"model": TINY}, verbose=0, **FAST)


def test_cli_train_mixed_precision(pairs, tmp_path, capsys):
    out = tmp_path / "m.keras"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[model]\ndepth = 2\nbase_filters = 2\npools = [[1, 2, 2]]\n'
                   '[train]\nepochs = 1\nsteps = 2\nval_steps = 1\ncrop = [8, 16, 16]\n')
    code = main(["train", "--raw", pairs[0][0], "--mask", pairs[0][1], "--out", str(out),
                 "--config", str(cfg), "--batch", "2", "--mixed-precision", "--quiet",
                 "--lr-schedule", "cosine", "--json"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "kept epoch 1" in printed and "crops of the training volumes" in printed
    summary = json.loads(printed[printed.index("{\n"):])
    assert summary["epochs_run"] == 1 and summary["held_out_validation"] is False
    model, meta = load_model(out)
    assert meta["training"]["mixed_precision"] is True
    from chunkseg.pipeline.train import _mixed_policy

    assert meta["training"]["dtype_policy"] == _mixed_policy()  # bfloat16 without a GPU
    assert meta["normalization"]["low"] == meta["normalization"]["ranges"][0][0]
    # the saved model is float32 whatever the training policy
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)
    assert keras.config.dtype_policy().name == "float32"  # global policy restored
    assert main(["train", "--raw", pairs[0][0], "--mask", pairs[0][1], "--out", str(out),
                 "--config", str(cfg)]) == 2
    assert "exists" in capsys.readouterr().err


def test_cli_train_pair_weights_and_bn_recompute(pairs, tmp_path, capsys):
    out = tmp_path / "w.keras"
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[model]\ndepth = 2\nbase_filters = 2\npools = [[1, 2, 2]]\n'
                   '[train]\nepochs = 1\nsteps = 2\nval_steps = 1\ncrop = [8, 16, 16]\n')
    raws, masks = [p[0] for p in pairs], [p[1] for p in pairs]
    assert main(["train", "--raw", *raws, "--mask", *masks, "--out", str(out), "--config",
                 str(cfg), "--pair-weights", "1", "3", "--bn-recompute", "2", "--quiet"]) == 0
    _, meta = load_model(out)
    assert meta["training"]["options"]["bn_recompute"] == 2
    capsys.readouterr()
    assert main(["train", "--raw", *raws, "--mask", *masks, "--out", str(out), "--config",
                 str(cfg), "--pair-weights", "1", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "one finite weight > 0 per pair (2)" in err and err.count("\n") == 1


def test_train_config_validation(tmp_path, pairs):
    assert load_train_config(None) == {"model": {}, "train": {}}
    with pytest.raises(ParameterError, match="unknown table"):
        load_train_config({"optim": {}})
    with pytest.raises(ParameterError, match=r"unknown \[train\] key.*'epoch'"):
        load_train_config({"train": {"epoch": 3}})
    with pytest.raises(ParameterError, match=r"\[model\].*unknown model configuration"):
        load_train_config({"model": {"levels": 3}})
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = ")
    with pytest.raises(FormatError, match="bad.toml.*not valid TOML"):
        load_train_config(bad)
    with pytest.raises(InputNotFoundError, match="missing.toml"):
        load_train_config(tmp_path / "missing.toml")
    good = tmp_path / "good.toml"
    good.write_text("[model]\ndepth = 2\n[train]\nepochs = 3\ncrop = [8, 16, 16]\n")
    assert load_train_config(good) == {"model": {"depth": 2},
                                       "train": {"epochs": 3, "crop": [8, 16, 16]}}
    raw, mask = pairs[0]
    kw = {"out": tmp_path / "x.keras", "verbose": 0, "config": {"model": TINY}}
    with pytest.raises(ParameterError, match="unknown training option"):
        run_train(raw, mask, learning_rate=1, **kw)
    with pytest.raises(ParameterError, match="multiple of the model's pooling factor"):
        run_train(raw, mask, crop=(8, 15, 16), **kw)
    with pytest.raises(ParameterError, match="must end in '.keras'"):
        run_train(raw, mask, **{**kw, "out": tmp_path / "x.h5"})
    with pytest.raises(ParameterError, match="as many raw volumes as masks"):
        run_train([raw, raw], [mask], **kw)
    assert not (tmp_path / "x.keras").exists()


@pytest.mark.parametrize("kwargs", [
    {"epochs": 0}, {"steps": 1.5}, {"batch": True}, {"crop": (8, 16)}, {"lr": 0},
    {"lr_schedule": "step"}, {"patience": -1}, {"membrane_weight": 0}, {"augment": "yes"},
    {"decay_epochs": -1}, {"decay_epochs": 2.5},
    {"crop": 5}, {"intensity": "yes"}, {"intensity": {"gamma": [0, 1]}},
    {"intensity": {"hue": [0, 1]}},
])
def test_train_options_reject_bad_values(kwargs):
    with pytest.raises(ParameterError):
        TrainOptions(**kwargs)


def test_train_options_intensity_ranges():
    opts = TrainOptions(intensity={"gamma": (0.4, 1.7)})
    assert opts.intensity == {"gamma": (0.4, 1.7)}
    assert opts.to_dict()["intensity"] == {"gamma": (0.4, 1.7)}
    assert TrainOptions().intensity is True


def test_plot_training_curves(tmp_path):
    from chunkseg.plots.training import plot_training_curves

    hist = {"loss": [1.0, 0.5, 0.4], "val_loss": [1.1, 0.7, 0.6], "accuracy": [0.6, 0.8, 0.9],
            "val_accuracy": [0.5, 0.7, 0.8]}
    path = plot_training_curves(hist, tmp_path / "c.png", best_epoch=2, title="t")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ParameterError, match="none of the metrics"):
        plot_training_curves({"foo": [1]}, tmp_path / "d.png")


def test_normalization_record_and_computed_ranges(tmp_path, pairs):
    """A raw file without a stored range gets predict's range (robust percentiles of its
    non-zero voxels), one per raw; the model then records the rule, not one range."""
    from types import SimpleNamespace

    from chunkseg.model.training_data import CropSampler
    from chunkseg.ops.robust_range import robust_range
    from chunkseg.pipeline._train_data import computed_ranges
    from chunkseg.pipeline._train_data import normalization_record as _normalization_record

    raws = []
    for seed in (10, 11):
        v = synth_volume((12, 32, 32), seed=seed, cell_diameter=1.5)
        hot = v.raw.copy()
        hot[0, 0, :3] = 60_000                                     # hot pixels
        raws.append(hot)
    bare = [_store(tmp_path / f"bare{i}.ome.zarr", r[None], {"kind": "raw"})
            for i, r in enumerate(raws)]
    mask = pairs[0][1]
    got = computed_ranges([(bare[0], mask), pairs[0], (bare[1], mask)], None)
    assert got[0] == robust_range(raws[0]) and got[2] == robust_range(raws[1])
    assert got[1] is None                                        # stored range used
    assert got[0][1] < 60_000 and got[0] != got[2]
    assert computed_ranges([(bare[0], mask)], (1, 2)) is None    # given range wins
    assert computed_ranges(pairs, None) is None                  # all stored

    sampler = CropSampler([(bare[0], mask), (bare[1], mask)], crop=(8, 16, 16),
                          normalization=got[::2])
    assert sampler.ranges == [got[0], got[2]]
    rec = _normalization_record(sampler, "percentiles")
    assert rec["method"] == "robust_percentiles" and rec["percentiles"] == [1.0, 99.5]
    assert rec["ignore_zero"] is True and "low" not in rec
    src = SimpleNamespace(attrs={})
    rec = _normalization_record(SimpleNamespace(raws=[src, src], ranges=[(1, 2), (1, 2)]), "given")
    assert rec["method"] == "given" and (rec["low"], rec["high"]) == (1, 2)
    u8 = SimpleNamespace(attrs={"normalization": {"low": 5, "high": 9, "method": "range"}})
    rec = _normalization_record(SimpleNamespace(raws=[u8, src], ranges=[None, None]), None)
    assert rec["ranges"] == [[5.0, 9.0], None] and "low" not in rec
    assert rec["method"] == ["range", "unknown"]
    from chunkseg.pipeline._train_data import common_voxel_size, recorded_voxel_sizes

    assert recorded_voxel_sizes(sampler) == [[0.4, 0.1, 0.1]] * 2
    assert common_voxel_size(sampler) == [0.4, 0.1, 0.1]
    import zarr

    bare_arrays = [(zarr.open_array(f"{b}/0", mode="r"), zarr.open_array(f"{mask}/0", mode="r"))
                   for b in bare]
    arrays = CropSampler(bare_arrays, crop=(8, 16, 16), normalization=got[::2])
    assert recorded_voxel_sizes(arrays) == [None, None]   # nothing records a voxel size
    assert common_voxel_size(arrays) is None              # so predict never resamples
    with pytest.raises(ParameterError, match="one range per pair"):
        CropSampler([(bare[0], mask)], crop=(8, 16, 16), normalization=[got[0], got[2]])


def test_train_config_reads_toml_without_tomllib(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: the config is read with its backport tomli."""
    import sys

    pytest.importorskip("tomli")
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` fails as on 3.10
    good = tmp_path / "good.toml"
    good.write_text("[train]\nepochs = 3\n[model]\ndepth = 2\n")
    cfg = load_train_config(good)
    assert cfg["train"] == {"epochs": 3} and cfg["model"] == {"depth": 2}
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(FormatError, match="bad.toml.*not valid TOML"):
        load_train_config(bad)


def test_cli_trains_on_a_mask_converted_from_tiff(pairs, tmp_path, capsys):
    """What the README tells users: convert the TIFF mask, then train on it."""
    import tifffile

    from chunkseg.io.store import open_volume, read_attrs

    mask = np.asarray(open_volume(pairs[0][1]).data)
    tifffile.imwrite(tmp_path / "mask.tif", mask[0])
    assert main(["convert", str(tmp_path / "mask.tif"), "--out",
                 str(tmp_path / "mask.ome.zarr")]) == 0
    assert read_attrs(tmp_path / "mask.ome.zarr")["kind"] == "raw"
    capsys.readouterr()
    out = tmp_path / "m.keras"
    code = main(["train", "--raw", pairs[0][0], "--mask", str(tmp_path / "mask.ome.zarr"),
                 "--out", str(out), "--epochs", "1", "--steps", "1", "--val-steps", "1",
                 "--batch", "1", "--crop", "8", "16", "16", "--depth", "2",
                 "--base-filters", "2", "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


def test_train_sets_up_the_backend_first(monkeypatch, tmp_path):
    """run_train configures TensorFlow (oneDNN kernels, threads) before anything imports it."""
    import chunkseg.engine.backend as backend

    calls = []
    monkeypatch.setattr(backend, "configure_backend", lambda *a, **k: calls.append(a) or "tensorflow")
    with pytest.raises(ParameterError):
        run_train(tmp_path / "raw.zarr", tmp_path / "mask.zarr", out=tmp_path / "model.h5")
    assert calls == [()]
