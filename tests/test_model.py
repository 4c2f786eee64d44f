"""Tests of chunkseg.model: configuration, U-Net, receptive field, FLOPs, loss, save/load."""

from __future__ import annotations

import json
import zipfile

from types import SimpleNamespace

import numpy as np
import pytest

from chunkseg.errors import ModelError, OutputExistsError, ParameterError
from chunkseg.model import (
    UNetConfig,
    build_unet,
    default_metrics,
    flops_per_voxel,
    load_model,
    membrane_loss,
    pooling_factor,
    read_metadata,
    receptive_field,
    resolve_model,
    save_model,
)

keras = pytest.importorskip("keras")

ANISO = UNetConfig(depth=3, base_filters=4, pools=((1, 2, 2), (2, 2, 2)))


def _rng_model(config: UNetConfig, seed: int = 0):
    keras.utils.set_random_seed(seed)
    return build_unet(config)


# -- configuration ---------------------------------------------------------------------

def test_config_roundtrip_and_defaults():
    cfg = UNetConfig(depth=4, base_filters=16, pools=[[1, 2, 2], (2, 2, 2), 2], dropout=0.1,
                     kernel_size=3)
    assert cfg.pools == ((1, 2, 2), (2, 2, 2), (2, 2, 2))
    assert cfg.kernel_size == (3, 3, 3)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert UNetConfig.from_dict(d) == cfg
    assert UNetConfig(depth=3).pools == ((2, 2, 2), (2, 2, 2))
    assert UNetConfig(depth=1).pools == ()


@pytest.mark.parametrize("kwargs", [
    {"depth": 0}, {"depth": 2.5}, {"base_filters": 0}, {"depth": 3, "pools": [(2, 2, 2)]},
    {"pools": "222"}, {"depth": 2, "pools": [(2, 0, 2)]}, {"depth": 2, "pools": [(2, 2)]},
    {"kernel_size": 4}, {"dropout": 1.0}, {"dropout": "x"}, {"batchnorm": "yes"},
    {"depth": 2, "pools": [(1.5, 2, 2)]}, {"depth": 2, "pools": [None]},
    {"bn_momentum": 1.0}, {"bn_momentum": "high"},
])
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ParameterError):
        UNetConfig(**kwargs)


def test_config_rejects_unknown_keys():
    with pytest.raises(ParameterError, match="unknown model configuration key.*'filters'"):
        UNetConfig.from_dict({"depth": 2, "filters": 8})
    with pytest.raises(ParameterError, match="table/dict"):
        UNetConfig.from_dict([1, 2])


# -- architecture ----------------------------------------------------------------------

def test_pooling_factor():
    assert pooling_factor(ANISO) == (2, 4, 4)
    assert pooling_factor(UNetConfig(depth=1)) == (1, 1, 1)


def test_any_tile_multiple_of_pooling_factor():
    model = _rng_model(ANISO)
    for shape in [(2, 4, 4), (6, 12, 20), (4, 8, 16)]:
        y = model.predict(np.zeros((2, *shape, 1), np.float32), verbose=0)
        assert y.shape == (2, *shape, 1)
        assert y.dtype == np.float32
        assert np.all((y >= 0) & (y <= 1))


def test_dropout_and_no_batchnorm_build():
    model = _rng_model(UNetConfig(depth=2, base_filters=2, dropout=0.2, batchnorm=False))
    names = [layer.name for layer in model.layers]
    assert "bottom_dropout" in names
    assert not any("bn" in n for n in names)
    assert model.predict(np.zeros((1, 4, 4, 4, 1), np.float32), verbose=0).shape == (1, 4, 4, 4, 1)


def test_receptive_field_formula_small_cases():
    assert receptive_field(UNetConfig(depth=1)) == (2, 2, 2)
    assert receptive_field(UNetConfig(depth=1, kernel_size=(1, 3, 5))) == (0, 2, 4)
    # one pooling of 2: 2 + 2*2 + 1 + 2 = 9
    assert receptive_field(UNetConfig(depth=2)) == (9, 9, 9)
    assert receptive_field(ANISO) == (13, 23, 23)


def _measured_radius(model, shape, centre, phases):
    """Largest |output - perturbed voxel| per axis over perturbations at several phases."""
    rng = np.random.default_rng(1)
    base = rng.random((1, *shape, 1)).astype(np.float32)
    batch = [base]
    positions = []
    for k in range(phases):
        v = tuple(c + k for c in centre)
        x = base.copy()
        x[(0, *v, 0)] += 5.0
        batch.append(x)
        positions.append(v)
    y = model.predict(np.concatenate(batch), batch_size=1, verbose=0)[..., 0]
    radius = np.zeros(3, int)
    for k, v in enumerate(positions):
        changed = np.argwhere(np.abs(y[k + 1] - y[0]) > 1e-6)
        assert len(changed), "perturbation changed nothing"
        radius = np.maximum(radius, np.abs(changed - np.array(v)).max(axis=0))
    return tuple(int(r) for r in radius)


def test_receptive_field_matches_perturbation():
    """Perturb one voxel (at every phase of the pooling grid); the outputs that change
    lie exactly within the computed radius."""
    model = _rng_model(ANISO, seed=3)
    r = receptive_field(ANISO)
    shape = (40, 64, 64)
    measured = _measured_radius(model, shape, centre=(18, 28, 28), phases=4)
    assert measured == r


def test_flops_manual_count_tiny():
    cfg = UNetConfig(depth=2, base_filters=2, pools=((2, 2, 2),))
    # enc0: 1->2, 2->2 ; bottom (1/8 voxels): 2->4, 4->4 ; up 4->2 (1 tap) ; dec0: 4->2, 2->2 ;
    # head 2->1
    manual = (2 * 27 * (1 * 2 + 2 * 2) + 2 * 27 * (2 * 4 + 4 * 4) / 8 + 2 * 4 * 2
              + 2 * 27 * (4 * 2 + 2 * 2) + 2 * 2 * 1)
    assert flops_per_voxel(cfg) == pytest.approx(manual)


def _level_of(name: str, depth: int) -> int:
    """Resolution level of a layer from its name (enc1_conv2, bottom_conv1, up0, ...)."""
    if name.startswith("bottom"):
        return depth - 1
    if name == "membrane":
        return 0
    prefix = name.split("_")[0]
    return int(prefix[2:] if prefix.startswith("up") else prefix[3:])


@pytest.mark.parametrize("cfg", [ANISO, UNetConfig(depth=2, base_filters=3, kernel_size=(1, 3, 3))])
def test_flops_match_keras_weights(cfg):
    """Independent count from the built model's kernels: every kernel weight is one
    multiply-add per output voxel (transposed convs: weights / kernel volume)."""
    model = build_unet(cfg)
    fz, fy, fx = 1, 1, 1
    scale_of = {}
    for level, pool in enumerate(cfg.pools):
        scale_of[level] = fz * fy * fx
        fz, fy, fx = fz * pool[0], fy * pool[1], fx * pool[2]
    scale_of[cfg.depth - 1] = fz * fy * fx
    total = 0.0
    for layer in model.layers:
        if not isinstance(layer, keras.layers.Conv3D | keras.layers.Conv3DTranspose):
            continue
        level = _level_of(layer.name, cfg.depth)
        kernel = layer.kernel
        macs = int(np.prod(kernel.shape))
        if isinstance(layer, keras.layers.Conv3DTranspose):
            macs //= int(np.prod(kernel.shape[:3]))
        total += 2 * macs / scale_of[level]
    assert flops_per_voxel(cfg) == pytest.approx(total)


# -- loss and metrics ------------------------------------------------------------------

def test_loss_values():
    loss = membrane_loss(3.0)
    y = np.zeros((1, 2, 4, 4, 1), np.float32)
    y[0, :, 1] = 1
    perfect = float(loss(y, y))
    assert perfect < 1e-5
    bad = float(loss(y, 1 - y))
    assert bad > 5
    half = float(loss(y, np.full_like(y, 0.5)))
    # weighted BCE of 0.5 is log 2 whatever the weights; Dice = 2*8*0.5 + 1 / (8 + 16 + 1)
    dice = (2 * 0.5 * 8 + 1) / (8 + 16 + 1)
    assert half == pytest.approx(np.log(2) + 1 - dice, rel=1e-5)
    cfg = loss.get_config()
    assert cfg["membrane_weight"] == 3.0
    again = type(loss).from_config(cfg)
    assert float(again(y, np.full_like(y, 0.5))) == pytest.approx(half)


def test_loss_weights_membrane_errors_more():
    y = np.zeros((1, 1, 4, 4, 1), np.float32)
    y[0, 0, 0] = 1
    p_miss = np.where(y > 0, 0.3, 0.0).astype(np.float32)   # misses membrane
    p_false = np.where(y > 0, 1.0, 0.0).astype(np.float32)  # ...
    p_false[0, 0, 1, :4] = 0.7                                # false membrane, same count
    plain = membrane_loss(1.0, dice_weight=0.0)
    heavy = membrane_loss(10.0, dice_weight=0.0)
    assert float(heavy(y, p_miss)) / float(plain(y, p_miss)) > \
        float(heavy(y, p_false)) / float(plain(y, p_false))


@pytest.mark.parametrize("kwargs", [{"membrane_weight": -1}, {"bce_weight": 0, "dice_weight": 0}])
def test_loss_rejects_bad_parameters(kwargs):
    with pytest.raises(ParameterError):
        membrane_loss(**kwargs)


def test_metrics():
    with pytest.raises(ParameterError):
        default_metrics(1.5)
    names = [m.name for m in default_metrics()]
    assert names == ["accuracy", "iou", "precision", "recall"]
    y = np.array([1, 1, 0, 0], np.float32)
    p = np.array([0.9, 0.2, 0.6, 0.1], np.float32)
    values = {}
    for m in default_metrics():
        m.update_state(y, p)
        values[m.name] = float(m.result())
    assert values == pytest.approx({"accuracy": 0.5, "iou": 1 / 3, "precision": 0.5,
                                    "recall": 0.5})


# -- save / load -----------------------------------------------------------------------

def test_save_load_roundtrip_identical(tmp_path):
    model = _rng_model(ANISO, seed=5)
    model.compile(optimizer="adam", loss=membrane_loss(), metrics=default_metrics())
    x = np.random.default_rng(0).random((2, 4, 16, 16, 1)).astype(np.float32)
    model.fit(x, (x > 0.5).astype(np.float32), epochs=1, verbose=0)  # non-trivial BN stats
    meta = {"config": ANISO, "normalization": {"low": 3, "high": np.float32(250.5)},
            "voxel_size": (2.0, 0.5, 0.5), "receptive_field": receptive_field(ANISO)}
    path = save_model(model, tmp_path / "m.keras", metadata=meta)
    loaded, got = load_model(path)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert got["config"] == ANISO.to_dict()
    assert UNetConfig.from_dict(got["config"]) == ANISO
    assert got["normalization"] == {"low": 3, "high": 250.5}
    assert got["voxel_size"] == [2.0, 0.5, 0.5]
    assert got["receptive_field"] == [13, 23, 23]
    assert "chunkseg_version" in got
    assert read_metadata(path) == got
    # plain Keras can still load it
    plain = keras.saving.load_model(path, compile=False)
    np.testing.assert_array_equal(plain.predict(x, verbose=0), model.predict(x, verbose=0))
    with pytest.raises(OutputExistsError):
        save_model(model, path, metadata={}, overwrite=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]  # no temp files left


def test_save_rejects_bad_path_and_metadata(tmp_path):
    model = _rng_model(UNetConfig(depth=1, base_filters=1))
    with pytest.raises(ModelError, match="must end in '.keras'"):
        save_model(model, tmp_path / "m.h5", metadata={})
    with pytest.raises(ModelError, match="'bad' is not JSON"):
        save_model(model, tmp_path / "m.keras", metadata={"bad": object()})


def _zip(path, entries: dict[str, str]):
    """A zip archive at ``path`` holding ``entries`` (name -> text)."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in entries.items():
            zf.writestr(name, text)
    return path


def test_load_errors_name_the_path(tmp_path):
    missing = tmp_path / "missing.keras"
    with pytest.raises(ModelError, match="missing.keras.*does not exist"):
        load_model(missing)
    text = tmp_path / "text.keras"
    text.write_text("not a model")
    with pytest.raises(ModelError, match="text.keras.*not a Keras .keras archive"):
        load_model(text)
    other_zip = _zip(tmp_path / "other.keras", {"hello.txt": "hi"})
    with pytest.raises(ModelError, match="other.keras.*not a Keras model"):
        load_model(other_zip)
    plain = tmp_path / "plain.keras"
    build_unet(UNetConfig(depth=1, base_filters=1)).save(plain)
    with pytest.raises(ModelError, match="plain.keras.*no chunkseg metadata"):
        load_model(plain)
    broken = _zip(tmp_path / "broken.keras", {"config.json": "{not json", "chunkseg.json": "{}"})
    with pytest.raises(ModelError, match="broken.keras.*could not be loaded"):
        load_model(broken)
    bad_meta = _zip(tmp_path / "badmeta.keras", {"config.json": "{}", "chunkseg.json": "[1, 2]"})
    with pytest.raises(ModelError, match="badmeta.keras.*must be a dict"):
        read_metadata(bad_meta)
    corrupt_meta = _zip(tmp_path / "corruptmeta.keras",
                        {"config.json": "{}", "chunkseg.json": "{oops"})
    with pytest.raises(ModelError, match="corruptmeta.keras.*corrupt"):
        read_metadata(corrupt_meta)


def test_resolve_model(tmp_path):
    p = tmp_path / "x.keras"
    p.write_bytes(b"")
    assert resolve_model(p) == p
    assert resolve_model(str(p)) == p
    from chunkseg.model.io import DEFAULT_MODEL

    if DEFAULT_MODEL.is_file():
        assert resolve_model("default") == DEFAULT_MODEL
        assert resolve_model() == DEFAULT_MODEL
    else:
        with pytest.raises(ModelError, match="default model"):
            resolve_model("default")


def test_default_model_ships_and_predicts():
    """The packaged model loads by name, carries its metadata and finds synthetic membranes."""
    from chunkseg.model.io import DEFAULT_MODEL

    if not DEFAULT_MODEL.is_file():
        pytest.skip(f"{DEFAULT_MODEL} not built yet (examples/train_default_model.py)")
    assert DEFAULT_MODEL.stat().st_size < 5 * 2**20
    model, meta = load_model("default")
    cfg = UNetConfig.from_dict(meta["config"])
    assert meta["receptive_field"] == list(receptive_field(cfg))
    assert "low" not in meta["normalization"]  # predict computes the input's percentiles
    assert meta["normalization"]["percentiles"] == [1.0, 99.5]
    # trained across voxel sizes: predict must never resample an input for it
    assert meta["voxel_size"] is None
    from chunkseg.pipeline._predict_resample import resample_plan

    vol = SimpleNamespace(attrs={"voxel_size_from": "metadata"}, voxel_size=(2.0, 0.26, 0.26))
    assert resample_plan("in.ome.zarr", vol, meta)["factor"] is None
    from chunkseg.ops.normalize import scale_to_uint8
    from chunkseg.ops.robust_range import robust_range
    from chunkseg.synth import synth_volume

    v = synth_volume((16, 64, 64), seed=7, voxel_size=(0.3, 0.15, 0.15), cell_diameter=4.0)
    x = scale_to_uint8(v.raw, *robust_range(v.raw)).astype(np.float32) / 255
    p = model.predict(x[None, ..., None], verbose=0)[0, ..., 0]
    pred, truth = p >= 0.5, v.mask.astype(bool)
    iou = np.sum(pred & truth) / np.sum(pred | truth)
    assert iou > 0.5, iou  # 0.69 when shipped
