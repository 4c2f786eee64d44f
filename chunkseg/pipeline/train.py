"""``chunkseg train``: train the 3D U-Net on random augmented crops read from Zarr.

Crops come from :func:`chunkseg.model.training_data.make_dataset` (reads only the crop, applies the
paper's augmentations); the network from :func:`chunkseg.model.build_unet`; the loss is
:class:`chunkseg.model.MembraneLoss` (class-weighted BCE + soft Dice).  Outputs, for
``--out model.keras``:

- ``model.keras``: the best model (lowest validation loss), float32, with chunkseg
  metadata (configuration, normalization, voxel size, crop, receptive field, provenance);
- ``model_training/``: ``history.json``, ``log.csv`` (per epoch), ``tensorboard/``
  event files, ``training_curves.png`` (loss / accuracy / IoU, train vs validation),
  ``config.json`` (the resolved configuration) and ``best.weights.h5``.

Training needs the TensorFlow backend (``tf.data`` input pipeline, ``MirroredStrategy``):
under ``KERAS_BACKEND=jax`` / ``torch`` :func:`run_train` raises :class:`ParameterError`.
The saved model predicts under every backend (``chunkseg predict`` is backend-neutral).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chunkseg import __version__
from chunkseg.errors import OutputExistsError, ParameterError
from chunkseg.model.unet import (
    UNetConfig,
    flops_per_voxel,
    pooling_factor,
    receptive_field,
)
from chunkseg.ops.normalize import DEFAULT_PERCENTILES as PERCENTILES
from chunkseg.pipeline.train_config import TrainOptions, load_train_config

__all__ = ["TrainOptions", "load_train_config", "run_train"]

PathLike = str | os.PathLike[str]


def _pairs(raw: Any, mask: Any, what: str) -> list[tuple[Any, Any]]:
    raws = list(raw) if isinstance(raw, (list, tuple)) else [raw]
    masks = list(mask) if isinstance(mask, (list, tuple)) else [mask]
    if len(raws) != len(masks) or not raws:
        raise ParameterError(f"{what}: need as many raw volumes as masks; got {len(raws)} raw "
                             f"and {len(masks)} mask")
    return list(zip(raws, masks))


def _names(pairs: list[tuple[Any, Any]]) -> list[list[str]]:
    def name(obj: Any) -> str:
        return os.fspath(obj) if isinstance(obj, (str, os.PathLike)) else f"<{type(obj).__name__}>"
    return [[name(r), name(m)] for r, m in pairs]


def _normalization_record(sampler: Any, how: str | None) -> dict[str, Any]:
    """How the training raw was scaled to 8 bit, as stored in the model.

    ``how``: None (each raw's stored range), ``"given"`` (``normalization=``) or
    ``"percentiles"`` (computed by :func:`_computed_range`).

    ``low``/``high`` are recorded only when every training volume used the same range
    (then ``predict`` may reuse it for input without a stored range); with per-volume
    ranges only the method and percentiles are kept, so ``predict`` computes the same
    percentiles of its input.
    """
    ranges, methods, pcts = [], set(), set()
    for src, rng in zip(sampler.raws, sampler.ranges):
        stored = dict(src.attrs.get("normalization") or {})
        if rng is None and "low" in stored and "high" in stored:
            rng = (float(stored["low"]), float(stored["high"]))
        ranges.append(None if rng is None else [float(rng[0]), float(rng[1])])
        if how == "given":
            stored = {"method": "given"}
        elif how == "percentiles":
            stored = {"method": "percentiles", "percentiles": list(PERCENTILES)}
        methods.add(str(stored.get("method", "range" if rng is not None else "unknown")))
        p = stored.get("percentiles")
        pcts.add(tuple(float(v) for v in p) if p else None)
    record: dict[str, Any] = {
        "input": "scale_to_uint8(raw, low, high) / 255",
        "method": methods.pop() if len(methods) == 1 else sorted(methods),
        "percentiles": list(next(iter(pcts))) if len(pcts) == 1 and None not in pcts else None,
        "ranges": ranges,
    }
    if len({json.dumps(r) for r in ranges}) == 1 and ranges[0] is not None:
        record["low"], record["high"] = ranges[0]
    return record


def _strategy(options_batch: int):
    """MirroredStrategy when more than one GPU is visible, else None."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        strategy = tf.distribute.MirroredStrategy()
        if options_batch % strategy.num_replicas_in_sync:
            raise ParameterError(f"batch {options_batch} must be a multiple of the "
                                 f"{strategy.num_replicas_in_sync} GPUs")
        return strategy
    return None


def _common_voxel_size(sampler: Any) -> list[float] | None:
    """Voxel size (µm, z y x) shared by all training volumes; None when they differ."""
    sizes = {tuple(float(v) for v in r.voxel_size) for r in sampler.raws}
    return list(sizes.pop()) if len(sizes) == 1 else None


def _computed_range(pairs: list[tuple[Any, Any]], normalization: Any) -> Any:
    """A range for a single non-uint8 raw that has none stored: its (0, 99.99) percentiles
    (``chunkseg normalize``'s default), computed in one streaming pass.  Anything else is
    left to the crop sampler (which explains what is missing)."""
    if normalization is not None or len(pairs) != 1:
        return None
    raw = pairs[0][0]
    if not isinstance(raw, (str, os.PathLike)):
        return None
    import numpy as np

    from chunkseg.engine.stats import percentiles
    from chunkseg.io.store import open_volume

    vol = open_volume(raw)
    norm = vol.attrs.get("normalization") or {}
    if vol.data.dtype == np.uint8 or ("low" in norm and "high" in norm):
        return None
    low, high = percentiles(vol.data, PERCENTILES)["values"]
    return (float(low), float(high))


def _mixed_policy() -> str:
    """``mixed_float16`` on GPUs; ``mixed_bfloat16`` on CPUs (no float16 CPU pooling kernels)."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


def run_train(
    raw: PathLike | Sequence[Any],
    mask: PathLike | Sequence[Any],
    *,
    out: PathLike,
    val_raw: PathLike | Sequence[Any] | None = None,
    val_mask: PathLike | Sequence[Any] | None = None,
    config: PathLike | Mapping[str, Any] | None = None,
    model_config: UNetConfig | Mapping[str, Any] | None = None,
    normalization: tuple[float, float] | None = None,
    mixed_precision: bool = False,
    overwrite: bool = False,
    verbose: int = 1,
    **train_options: Any,
) -> dict[str, Any]:
    """Train a 3D U-Net on (raw, mask) volumes and save the best model with its metadata.

    Parameters
    ----------
    raw, mask : path or list of paths (or opened zarr arrays)
        Training pairs: raw volumes (chunkseg OME-Zarr, zarr or TIFF; uint8 normalised,
        or with a ``normalization`` range in their attrs) and membrane masks (0/1).
    out : path
        Output ``.keras`` file; side outputs go to ``<stem>_training/`` next to it.
    val_raw, val_mask : optional
        Held-out validation pairs.  Without them, validation crops are drawn
        (un-augmented, another seed) from the training volumes, and the summary says so.
    config : TOML path or dict, optional
        Tables ``[model]`` (:class:`UNetConfig` fields) and ``[train]``
        (:class:`TrainOptions` fields).
    model_config : UNetConfig or dict, optional
        Overrides ``[model]``.
    normalization : (low, high), optional
        Intensity range of non-uint8 raw; default: each raw's stored range; a single
        raw without one gets its (0, 99.99) percentiles (recorded in the model).
    mixed_precision : bool
        Train with the ``mixed_float16`` policy (``mixed_bfloat16`` without a GPU); the
        saved model is float32.
    overwrite : bool
        Replace an existing ``out``.
    verbose : int
        0 silent, 1 Keras progress bar per epoch + summary, 2 one line per epoch.
    **train_options
        Override :class:`TrainOptions` fields (``epochs``, ``steps``, ``crop``, ``batch``,
        ``lr``, ``seed``, ...); None values are ignored.

    Returns
    -------
    dict
        Summary: paths, epochs run, best epoch and its metrics, timings, model facts.
    """
    cfg = load_train_config(config)
    unknown = sorted(set(train_options) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise ParameterError(f"unknown training option(s) {unknown}")
    opts = TrainOptions(**{**cfg["train"],
                           **{k: (tuple(v) if k == "crop" else v)
                              for k, v in train_options.items() if v is not None}})
    if model_config is None:
        model_config = cfg["model"]
    net_cfg = model_config if isinstance(model_config, UNetConfig) else \
        UNetConfig.from_dict(model_config)
    factor = pooling_factor(net_cfg)
    if any(c % f for c, f in zip(opts.crop, factor)):
        raise ParameterError(f"crop {opts.crop} must be a multiple of the model's pooling factor "
                             f"{factor} in every axis")
    out = Path(out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {str(out)!r} must end in '.keras'")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"model file {str(out)!r} exists; pass overwrite=True "
                                "(--overwrite) to replace it")
    train_pairs = _pairs(raw, mask, "training data")
    held_out = val_raw is not None or val_mask is not None
    val_pairs = _pairs(val_raw, val_mask, "validation data") if held_out else train_pairs
    from chunkseg.engine.backend import require_tensorflow

    require_tensorflow("chunkseg train")  # tf.data pipeline; prediction runs on any backend
    import keras

    from chunkseg.model.training_data import CropSampler, make_dataset
    from chunkseg.model.callbacks import ScalarEventLogger
    from chunkseg.model.io import save_model
    from chunkseg.model.losses import default_metrics, membrane_loss
    from chunkseg.model.unet import build_unet
    from chunkseg.plots.training import plot_training_curves

    computed = _computed_range(train_pairs, normalization)
    train_range = computed or normalization
    val_computed = _computed_range(val_pairs, normalization) if held_out else computed
    val_range = val_computed or normalization
    how = "given" if normalization is not None else "percentiles" if computed else None
    sampler = CropSampler(train_pairs, crop=opts.crop, seed=opts.seed,
                          membrane_bias=opts.membrane_bias, normalization=train_range)
    val_sampler = CropSampler(val_pairs, crop=opts.crop, seed=opts.seed + 1_000_003,
                              membrane_bias=opts.membrane_bias, normalization=val_range)
    train_ds = make_dataset(sampler, batch=opts.batch, augment=opts.augment, noise=opts.noise)
    val_ds = make_dataset(val_sampler, batch=opts.batch, augment=False,
                          n=opts.val_steps * opts.batch).cache()

    side = out.with_name(f"{out.stem}_training")
    side.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(opts.seed)
    previous_policy = keras.config.dtype_policy().name
    strategy = _strategy(opts.batch)
    try:
        policy = _mixed_policy() if mixed_precision else "float32"
        keras.config.set_dtype_policy(policy)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = build_unet(net_cfg)
            lr: Any = opts.lr
            if opts.lr_schedule == "cosine":
                lr = keras.optimizers.schedules.CosineDecay(opts.lr, opts.epochs * opts.steps,
                                                            alpha=0.01)
            loss = membrane_loss(opts.membrane_weight)
            model.compile(optimizer=keras.optimizers.Adam(lr), loss=loss,
                          metrics=default_metrics())
        best_weights = side / "best.weights.h5"
        callbacks: list[Any] = [
            keras.callbacks.ModelCheckpoint(best_weights, monitor="val_loss",
                                            save_best_only=True, save_weights_only=True),
            keras.callbacks.CSVLogger(side / "log.csv"),
            keras.callbacks.TerminateOnNaN(),
            ScalarEventLogger(side / "tensorboard"),
        ]
        if opts.patience:
            callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss",
                                                           patience=opts.patience))
        if opts.lr_schedule == "plateau":
            callbacks.append(keras.callbacks.ReduceLROnPlateau(
                monitor="val_loss", factor=0.5, patience=max(1, opts.patience // 2 or 3),
                min_lr=opts.lr / 100))
        (side / "config.json").write_text(json.dumps(
            {"model": net_cfg.to_dict(), "train": opts.to_dict(),
             "mixed_precision": mixed_precision}, indent=2))
        t0 = time.perf_counter()
        hist = model.fit(train_ds, epochs=opts.epochs, steps_per_epoch=opts.steps,
                         validation_data=val_ds, callbacks=callbacks, verbose=verbose,
                         shuffle=False)
        seconds = time.perf_counter() - t0
    finally:
        keras.config.set_dtype_policy(previous_policy)

    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    epochs_run = len(history.get("loss", []))
    val_losses = history.get("val_loss", [])
    best_epoch = val_losses.index(min(val_losses)) if val_losses else epochs_run - 1
    final = build_unet(net_cfg)  # float32, uncompiled copy of the best weights
    if best_weights.exists():
        model.load_weights(best_weights)
    final.set_weights(model.get_weights())
    best = {k: v[best_epoch] for k, v in history.items() if len(v) > best_epoch}
    radius, flops = list(receptive_field(net_cfg)), flops_per_voxel(net_cfg)
    metadata = {
        "config": net_cfg.to_dict(),
        "normalization": _normalization_record(sampler, how),
        "voxel_size": _common_voxel_size(sampler),
        "voxel_sizes": [list(r.voxel_size) for r in sampler.raws],
        "crop": list(opts.crop),
        "receptive_field": radius,
        "pooling_factor": list(factor),
        "flops_per_voxel": flops,
        "input": "float32 (batch, z, y, x, 1): 8-bit normalised raw / 255",
        "output": "membrane probability, sigmoid, float32 (batch, z, y, x, 1)",
        "training": {
            "data": _names(train_pairs),
            "validation_data": _names(val_pairs) if held_out else
            "un-augmented crops of the training volumes (no held-out data given)",
            "options": opts.to_dict(),
            "mixed_precision": mixed_precision,
            "dtype_policy": policy,
            "gpus": strategy.num_replicas_in_sync if strategy is not None else 0,
            "epochs_run": epochs_run,
            "best_epoch": best_epoch + 1,
            "best": best,
            "seconds": round(seconds, 1),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "chunkseg_version": __version__,
        },
    }
    save_model(final, out, metadata=metadata, overwrite=True)
    (side / "history.json").write_text(json.dumps(
        {"history": history, "best_epoch": best_epoch + 1}, indent=2))
    plot = plot_training_curves(history, side / "training_curves.png", best_epoch=best_epoch,
                                title=f"{out.name}: {net_cfg.depth} levels, "
                                      f"{net_cfg.base_filters} base filters")
    summary = {
        "model": str(out),
        "training_dir": str(side),
        "history": str(side / "history.json"),
        "curves": str(plot),
        "csv_log": str(side / "log.csv"),
        "tensorboard": str(side / "tensorboard"),
        "epochs_run": epochs_run,
        "best_epoch": best_epoch + 1,
        "best": best,
        "seconds": round(seconds, 1),
        "parameters": int(final.count_params()),
        "receptive_field": radius,
        "flops_per_voxel": flops,
        "held_out_validation": held_out,
    }
    if verbose:
        print(format_summary(summary))
    return summary


def format_summary(summary: Mapping[str, Any]) -> str:
    """Human-readable end-of-training summary."""
    best = summary["best"]
    metrics = ", ".join(f"{k} {best[k]:.4f}" for k in
                        ("loss", "val_loss", "val_accuracy", "val_iou", "val_precision",
                         "val_recall") if k in best)
    val = "held-out volumes" if summary["held_out_validation"] else \
        "crops of the training volumes (no --val-raw given)"
    return "\n".join([
        f"trained {summary['epochs_run']} epochs in {summary['seconds']:.0f} s; "
        f"kept epoch {summary['best_epoch']} (lowest validation loss)",
        f"  best: {metrics}",
        f"  validation on: {val}",
        f"  model: {summary['model']} ({summary['parameters']} parameters, receptive field "
        f"{tuple(summary['receptive_field'])} voxels, "
        f"{summary['flops_per_voxel'] / 1e6:.3g} MFLOP/voxel)",
        f"  curves: {summary['curves']}; history: {summary['history']}; "
        f"TensorBoard: {summary['tensorboard']}",
    ])
