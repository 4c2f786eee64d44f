"""Resumable training, fine-tuning from a model, sparse labels and their bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from chunkseg.cli import main
from chunkseg.errors import InputError, ModelError, ResumeMismatchError
from chunkseg.pipeline.train import run_train
from chunkseg.synth import synth_volume
from test_train import TINY, _store

keras = pytest.importorskip("keras")

FAST = {"steps": 2, "val_steps": 1, "crop": (8, 16, 16), "batch": 2, "seed": 0,
        "lr_schedule": "constant", "patience": 0, "lr": 5e-3}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """A uint8 raw and a 0/1 mask whose store says kind 'labels' (values decide)."""
    root = tmp_path_factory.mktemp("resume_data")
    v = synth_volume((12, 32, 32), seed=4, cell_diameter=1.5)
    raw = np.clip(v.raw / np.percentile(v.raw, 99.9) * 255, 0, 255).astype(np.uint8)
    return (_store(root / "raw.ome.zarr", raw[None], {"kind": "raw"}),
            _store(root / "mask.ome.zarr", v.mask[None].astype(np.uint8), {"kind": "labels"}))


def _weights(path):
    from chunkseg.model import load_model

    return load_model(path)[0].get_weights()


def test_resume_continues_steps_and_optimizer(pair, tmp_path):
    """3 epochs straight == 1 epoch, then resumed to 3: same steps, history, weights."""
    cfg = {"model": TINY}
    full = run_train(*pair, out=tmp_path / "full.keras", config=cfg, verbose=0, epochs=3, **FAST)
    part = run_train(*pair, out=tmp_path / "part.keras", config=cfg, verbose=0, epochs=1, **FAST)
    assert part["steps_done"] == 2 and full["steps_done"] == 6
    ckpt = tmp_path / "part_training" / "checkpoint.npz"
    with np.load(ckpt) as z:
        assert json.loads(str(z["state"]))["epoch"] == 1
    resumed = run_train(*pair, out=tmp_path / "part.keras", config=cfg, verbose=0, epochs=3,
                        resume=True, **FAST)
    assert resumed["resumed_from_epoch"] == 1
    assert resumed["steps_done"] == 6 and resumed["epochs_run"] == 3
    h_full = json.loads((tmp_path / "full_training" / "history.json").read_text())["history"]
    h_res = json.loads((tmp_path / "part_training" / "history.json").read_text())["history"]
    np.testing.assert_allclose(h_res["loss"], h_full["loss"], rtol=1e-4)
    np.testing.assert_allclose(h_res["val_loss"], h_full["val_loss"], rtol=1e-4)
    assert resumed["train_voxels_per_s"] > 0 and len(h_res["train_voxels_per_s"]) == 3
    for a, b in zip(_weights(tmp_path / "part.keras"), _weights(tmp_path / "full.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ResumeMismatchError, match="options"):
        run_train(*pair, out=tmp_path / "part.keras", config=cfg, verbose=0, epochs=4,
                  resume=True, **{**FAST, "batch": 1})


def test_cosine_decay_epochs_resumed_in_parts_equals_straight(pair, tmp_path):
    """With ``decay_epochs`` the cosine schedule does not depend on the growing ``epochs``
    of the parts: 3 parts of 1 epoch == 3 epochs straight."""
    cfg, opts = {"model": TINY}, {**FAST, "lr_schedule": "cosine", "decay_epochs": 3}
    run_train(*pair, out=tmp_path / "full.keras", config=cfg, verbose=0, epochs=3, **opts)
    for epochs in (1, 2, 3):
        part = run_train(*pair, out=tmp_path / "part.keras", config=cfg, verbose=0,
                         epochs=epochs, resume=True, **opts)
    assert part["steps_done"] == 6
    h_full = json.loads((tmp_path / "full_training" / "history.json").read_text())["history"]
    h_part = json.loads((tmp_path / "part_training" / "history.json").read_text())["history"]
    np.testing.assert_allclose(h_part["loss"], h_full["loss"], rtol=1e-4)
    for a, b in zip(_weights(tmp_path / "part.keras"), _weights(tmp_path / "full.keras")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_decay_epochs_is_in_the_identity_only_when_set():
    from chunkseg.pipeline._train_inputs import checkpoint_identity
    from chunkseg.pipeline.train_config import TrainOptions

    def ident(options):
        return checkpoint_identity(model={}, options=options, data=[], validation=[], extra={})

    opts = TrainOptions(lr_schedule="cosine").to_dict()
    without = {k: v for k, v in opts.items() if k != "decay_epochs"}
    assert ident(opts) == ident(without)  # a checkpoint written without the option resumes
    assert ident({**opts, "decay_epochs": 5})["options"]["decay_epochs"] == 5


def test_ignored_voxels_change_nothing_in_the_loss():
    from chunkseg.model.losses import membrane_loss

    rng = np.random.default_rng(0)
    y = (rng.random((2, 6, 8, 8, 1)) < 0.3).astype(np.float32)
    p = rng.random(y.shape).astype(np.float32)
    w = (rng.random(y.shape) < 0.6).astype(np.float32)
    loss = membrane_loss()
    base = float(loss(y, p, sample_weight=w))
    p2 = np.where(w > 0, p, rng.random(y.shape)).astype(np.float32)
    y2 = np.where(w > 0, y, 1 - y).astype(np.float32)
    assert float(loss(y2, p2, sample_weight=w)) == pytest.approx(base, rel=1e-6)
    assert float(loss(y, p2)) != pytest.approx(float(loss(y, p)), rel=1e-3)
    # the labelled voxels alone give the same loss as an unweighted call on them
    keep = w[..., 0] > 0
    alone = float(loss(y[..., 0][keep][None], p[..., 0][keep][None]))
    assert base == pytest.approx(alone, rel=1e-5)
    assert float(loss(y, p, sample_weight=np.zeros_like(w))) == pytest.approx(0.0)


def test_sparse_labels_keep_the_ignore_value(pair, tmp_path):
    """Crops keep the ignore value through flips / rotations; the dataset's weight is 0
    there; training with ignore_value runs and records it."""
    from chunkseg.model.training_data import CropSampler, make_dataset

    v = synth_volume((12, 32, 32), seed=4, cell_diameter=1.5)
    sparse = v.mask.astype(np.uint8)
    sparse[:, :, 16:] = 7  # right half unlabelled
    mask = _store(tmp_path / "sparse.ome.zarr", sparse[None], {})
    s = CropSampler([(pair[0], mask)], crop=(8, 16, 32), seed=1, ignore_value=7)
    for i in range(6):
        c = s.sample(i, augment=True)
        assert set(np.unique(c.mask)) <= {0.0, 1.0, 7.0}
        assert (c.mask == 7).sum() == 8 * 16 * 16
    x, y, w = next(iter(make_dataset(s, batch=2, augment=True)))
    assert set(np.unique(y.numpy())) <= {0.0, 1.0}
    assert w.numpy().sum() == 2 * 8 * 16 * 16
    summary = run_train(pair[0], mask, out=tmp_path / "s.keras", config={"model": TINY},
                        verbose=0, epochs=1, ignore_value=7, **FAST)
    assert summary["steps_done"] == 2
    from chunkseg.model.io import read_metadata

    assert read_metadata(tmp_path / "s.keras")["training"]["ignore_value"] == 7


def test_init_loads_the_weights(pair, tmp_path):
    """With a negligible learning rate the trained convolutions stay those of --init."""
    base = tmp_path / "base.keras"
    run_train(*pair, out=base, config={"model": TINY}, verbose=0, epochs=1, **FAST)
    tuned = tmp_path / "tuned.keras"
    summary = run_train(*pair, out=tuned, verbose=0, epochs=1, init=base,
                        **{**FAST, "lr": 1e-9, "seed": 5})
    from chunkseg.model import load_model

    m0, m1 = load_model(base)[0], load_model(tuned)[0]
    for a, b in zip(m0.trainable_weights, m1.trainable_weights):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6)
    meta = load_model(tuned)[1]
    assert meta["training"]["init"]["path"] == str(base)
    assert meta["config"] == load_model(base)[1]["config"] and summary["steps_done"] == 2


def test_bad_inputs_exit_2(pair, tmp_path, capsys):
    base = tmp_path / "base.keras"
    run_train(*pair, out=base, config={"model": TINY}, verbose=0, epochs=1, **FAST)
    common = ["--epochs", "1", "--steps", "1", "--val-steps", "1", "--crop", "8", "16", "16"]
    cases = []
    # an incompatible --init model
    cases.append((["--raw", pair[0], "--mask", pair[1], "--init", str(base), "--depth", "3",
                   "--base-filters", "2"], "incompatible"))
    import tifffile

    zero = str(tmp_path / "zero.tif")  # (an all-zero zarr store has no chunks written)
    tifffile.imwrite(zero, np.zeros((12, 32, 32), np.uint8))
    cases.append((["--raw", pair[0], "--mask", zero], "at least one membrane voxel"))
    other = _store(tmp_path / "other.ome.zarr", np.ones((1, 12, 32, 24), np.uint8), {})
    cases.append((["--raw", pair[0], "--mask", other], "shape"))
    big = _store(tmp_path / "big.ome.zarr", np.full((1, 12, 32, 32), 3, np.uint8), {})
    cases.append((["--raw", pair[0], "--mask", big],
                  "0/1 membrane mask; found values in [3, 3]"))
    for args, message in cases:
        out = tmp_path / "x.keras"
        assert main(["train", *args, "--out", str(out), *common]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    with pytest.raises(ModelError, match="incompatible"):
        run_train(*pair, out=tmp_path / "y.keras", init=base, model_config={"depth": 3},
                  verbose=0, epochs=1, **FAST)
    with pytest.raises(InputError, match="zero.tif"):
        run_train(pair[0], zero, out=tmp_path / "y.keras", verbose=0, epochs=1,
                  config={"model": TINY}, **FAST)


@pytest.mark.slow
def test_sigkill_then_resume(pair, tmp_path):
    """A training killed with SIGKILL after its first checkpoint resumes to the end."""
    out = tmp_path / "k.keras"
    cmd = [sys.executable, "-m", "chunkseg", "train", "--raw", pair[0], "--mask", pair[1],
           "--out", str(out), "--depth", "2", "--base-filters", "2", "--epochs", "40",
           "--steps", "2", "--val-steps", "1", "--crop", "8", "16", "16", "--quiet",
           "--lr-schedule", "constant", "--patience", "0"]
    env = {**os.environ, "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "k_training" / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while not ckpt.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists() and not out.exists()
    with np.load(ckpt) as z:
        done = json.loads(str(z["state"]))["epoch"]
    assert 1 <= done < 40
    assert subprocess.run([*cmd, "--resume"], env=env, capture_output=True).returncode == 0
    meta = json.loads((tmp_path / "k_training" / "history.json").read_text())
    assert len(meta["history"]["loss"]) == 40


def test_callback_counters_survive_a_resume(tmp_path):
    """Early-stopping and plateau counters are saved and put back after their reset."""
    from chunkseg.model.checkpoint import ResumableCheckpoint, _callback_state

    es = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=3)
    es.on_train_begin()
    es.best, es.wait, es.best_epoch = 0.25, 2, 4
    plateau.best, plateau.wait, plateau.cooldown_counter = 0.25, 1, 0
    saved = json.loads(json.dumps(_callback_state([es, plateau])))
    es2 = keras.callbacks.EarlyStopping(monitor="val_loss", patience=5)
    plateau2 = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", patience=3)
    ckpt = ResumableCheckpoint(tmp_path / "c.npz", tmp_path / "b.weights.h5", identity={},
                               resumed={"callbacks": saved}, stateful=[es2, plateau2])
    for cb in (es2, plateau2, ckpt):  # Keras calls them in list order
        cb.on_train_begin()
    assert (es2.best, es2.wait, es2.best_epoch) == (0.25, 2, 4)
    assert (plateau2.best, plateau2.wait) == (0.25, 1)


@pytest.mark.tf
def test_bn_recompute_sets_population_statistics_of_the_saved_model(pair, tmp_path):
    """``bn_recompute`` changes only the saved model's BatchNorm moving statistics: to those
    :func:`recompute_batchnorm` computes over the training sampler's crops."""
    from chunkseg.model import load_model
    from chunkseg.model.batchnorm import batchnorm_layers, recompute_batchnorm, sampler_batches
    from chunkseg.model.training_data import CropSampler
    from chunkseg.pipeline._train_data import computed_ranges

    cfg = {"model": TINY}
    run_train(*pair, out=tmp_path / "a.keras", config=cfg, verbose=0, epochs=1, **FAST)
    s = run_train(*pair, out=tmp_path / "b.keras", config=cfg, verbose=0, epochs=1,
                  bn_recompute=3, **FAST)
    plain, _ = load_model(tmp_path / "a.keras")
    recomputed, meta = load_model(tmp_path / "b.keras")
    assert meta["training"]["options"]["bn_recompute"] == 3 and s["steps_done"] == 2
    stats = {id(v) for layer in batchnorm_layers(plain)
             for v in (layer.moving_mean, layer.moving_variance)}
    differ = [not np.allclose(a, b) for v, a, b in zip(plain.weights, plain.get_weights(),
                                                       recomputed.get_weights())]
    assert any(differ)
    assert all(id(v) in stats for v, d in zip(plain.weights, differ) if d)
    sampler = CropSampler([pair], crop=FAST["crop"], seed=FAST["seed"], membrane_bias=0.5,
                          normalization=computed_ranges([pair], None) or None)
    recompute_batchnorm(plain, sampler_batches(sampler, 3))
    for a, b in zip(plain.get_weights(), recomputed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    # not part of the identity: a resume may change it
    run_train(*pair, out=tmp_path / "b.keras", config=cfg, verbose=0, epochs=2, resume=True,
              **FAST)


@pytest.mark.tf
def test_resume_checks_the_pair_weights(pair, tmp_path):
    cfg = {"model": TINY}
    two = [pair, pair]
    raws, masks = [p[0] for p in two], [p[1] for p in two]
    run_train(raws, masks, out=tmp_path / "w.keras", config=cfg, verbose=0, epochs=1,
              pair_weights=[1.0, 2.0], **FAST)
    with pytest.raises(ResumeMismatchError, match="pair_weights"):
        run_train(raws, masks, out=tmp_path / "w.keras", config=cfg, verbose=0, epochs=2,
                  resume=True, pair_weights=[1.0, 3.0], **FAST)
    s = run_train(raws, masks, out=tmp_path / "w.keras", config=cfg, verbose=0, epochs=2,
                  resume=True, pair_weights=[1.0, 2.0], **FAST)
    assert s["resumed_from_epoch"] == 1 and s["steps_done"] == 4
