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
from chunkseg.pipeline._train_data import (
    common_voxel_size,
    computed_range,
    names,
    normalization_record,
    pairs,
)
from chunkseg.pipeline.train_config import TrainOptions, load_train_config

__all__ = ["TrainOptions", "load_train_config", "run_train"]

PathLike = str | os.PathLike[str]


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
    opts, net_cfg = _resolve_options(config, model_config, train_options)
    out = Path(out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {str(out)!r} must end in '.keras'")
    if out.exists() and not overwrite:
        raise OutputExistsError(f"model file {str(out)!r} exists; pass overwrite=True "
                                "(--overwrite) to replace it")
    train_pairs = pairs(raw, mask, "training data")
    held_out = val_raw is not None or val_mask is not None
    val_pairs = pairs(val_raw, val_mask, "validation data") if held_out else train_pairs
    from chunkseg.engine.backend import require_tensorflow

    require_tensorflow("chunkseg train")  # tf.data pipeline; prediction runs on any backend
    sampler, train_ds, val_ds, how = _datasets(train_pairs, val_pairs, held_out, opts,
                                               normalization)
    side = out.with_name(f"{out.stem}_training")
    side.mkdir(parents=True, exist_ok=True)
    (side / "config.json").write_text(json.dumps(
        {"model": net_cfg.to_dict(), "train": opts.to_dict(),
         "mixed_precision": mixed_precision}, indent=2))
    fit = _fit(net_cfg, opts, train_ds, val_ds, side, mixed_precision=mixed_precision,
               verbose=verbose)
    final, history, best_epoch = _best_model(fit, net_cfg)
    fit["best_epoch"], fit["best"] = best_epoch, {k: v[best_epoch] for k, v in history.items()
                                                  if len(v) > best_epoch}
    from chunkseg.model.io import save_model
    from chunkseg.plots.training import plot_training_curves

    metadata = _metadata(net_cfg, opts, sampler, how, fit, history,
                         data=names(train_pairs),
                         validation=names(val_pairs) if held_out else None,
                         mixed_precision=mixed_precision)
    save_model(final, out, metadata=metadata, overwrite=True)
    (side / "history.json").write_text(json.dumps(
        {"history": history, "best_epoch": best_epoch + 1}, indent=2))
    plot = plot_training_curves(history, side / "training_curves.png", best_epoch=best_epoch,
                                title=f"{out.name}: {net_cfg.depth} levels, "
                                      f"{net_cfg.base_filters} base filters")
    summary = {
        "model": str(out), "training_dir": str(side), "history": str(side / "history.json"),
        "curves": str(plot), "csv_log": str(side / "log.csv"),
        "tensorboard": str(side / "tensorboard"),
        "epochs_run": len(history.get("loss", [])), "best_epoch": best_epoch + 1,
        "best": fit["best"], "seconds": round(fit["seconds"], 1),
        "parameters": int(final.count_params()),
        "receptive_field": list(receptive_field(net_cfg)),
        "flops_per_voxel": flops_per_voxel(net_cfg), "held_out_validation": held_out,
    }
    if verbose:
        print(format_summary(summary))
    return summary


def _resolve_options(config, model_config, train_options: dict[str, Any]):
    """The training options and the network configuration: file, then arguments."""
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
    return opts, net_cfg


def _datasets(train_pairs, val_pairs, held_out: bool, opts: TrainOptions, normalization):
    """Crop samplers and ``tf.data`` pipelines; how the raw range was found."""
    from chunkseg.model.training_data import CropSampler, make_dataset

    computed = computed_range(train_pairs, normalization)
    train_range = computed or normalization
    val_computed = computed_range(val_pairs, normalization) if held_out else computed
    val_range = val_computed or normalization
    how = "given" if normalization is not None else "percentiles" if computed else None
    sampler = CropSampler(train_pairs, crop=opts.crop, seed=opts.seed,
                          membrane_bias=opts.membrane_bias, normalization=train_range)
    val_sampler = CropSampler(val_pairs, crop=opts.crop, seed=opts.seed + 1_000_003,
                              membrane_bias=opts.membrane_bias, normalization=val_range)
    train_ds = make_dataset(sampler, batch=opts.batch, augment=opts.augment, noise=opts.noise)
    val_ds = make_dataset(val_sampler, batch=opts.batch, augment=False,
                          n=opts.val_steps * opts.batch).cache()
    return sampler, train_ds, val_ds, how


def _callbacks(side: Path, opts: TrainOptions, best_weights: Path) -> list[Any]:
    """Best-weights checkpoint, CSV and TensorBoard logs, NaN stop, early stop, LR schedule."""
    import keras

    from chunkseg.model.callbacks import ScalarEventLogger

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
    return callbacks


def _compiled(net_cfg: UNetConfig, opts: TrainOptions):
    """The network compiled with Adam (optionally a cosine schedule) and the membrane loss."""
    import keras

    from chunkseg.model.losses import default_metrics, membrane_loss
    from chunkseg.model.unet import build_unet

    model = build_unet(net_cfg)
    lr: Any = opts.lr
    if opts.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(opts.lr, opts.epochs * opts.steps,
                                                    alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=membrane_loss(opts.membrane_weight),
                  metrics=default_metrics())
    return model


def _fit(net_cfg: UNetConfig, opts: TrainOptions, train_ds, val_ds, side: Path, *,
         mixed_precision: bool, verbose: int) -> dict[str, Any]:
    """Train under the dtype policy (restored afterwards), on all GPUs when there are several."""
    import keras

    keras.utils.set_random_seed(opts.seed)
    previous_policy = keras.config.dtype_policy().name
    strategy = _strategy(opts.batch)
    best_weights = side / "best.weights.h5"
    try:
        policy = _mixed_policy() if mixed_precision else "float32"
        keras.config.set_dtype_policy(policy)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = _compiled(net_cfg, opts)
        t0 = time.perf_counter()
        hist = model.fit(train_ds, epochs=opts.epochs, steps_per_epoch=opts.steps,
                         validation_data=val_ds, callbacks=_callbacks(side, opts, best_weights),
                         verbose=verbose, shuffle=False)
        seconds = time.perf_counter() - t0
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return {"model": model, "history": hist.history, "seconds": seconds, "policy": policy,
            "best_weights": best_weights,
            "gpus": strategy.num_replicas_in_sync if strategy is not None else 0}


def _best_model(fit: dict[str, Any], net_cfg: UNetConfig):
    """A float32, uncompiled copy of the best weights; the history; the best epoch (0-based)."""
    from chunkseg.model.unet import build_unet

    history = {k: [float(v) for v in vals] for k, vals in fit["history"].items()}
    val_losses = history.get("val_loss", [])
    epochs_run = len(history.get("loss", []))
    best_epoch = val_losses.index(min(val_losses)) if val_losses else epochs_run - 1
    final = build_unet(net_cfg)
    model = fit["model"]
    if fit["best_weights"].exists():
        model.load_weights(fit["best_weights"])
    final.set_weights(model.get_weights())
    return final, history, best_epoch


def _metadata(net_cfg: UNetConfig, opts: TrainOptions, sampler, how, fit: dict[str, Any],
              history: dict[str, list[float]], *, data, validation,
              mixed_precision: bool) -> dict[str, Any]:
    """What the saved model carries: configuration, input scaling, geometry, provenance."""
    import keras

    return {
        "config": net_cfg.to_dict(),
        "normalization": normalization_record(sampler, how),
        "voxel_size": common_voxel_size(sampler),
        "voxel_sizes": [list(r.voxel_size) for r in sampler.raws],
        "crop": list(opts.crop),
        "receptive_field": list(receptive_field(net_cfg)),
        "pooling_factor": list(pooling_factor(net_cfg)),
        "flops_per_voxel": flops_per_voxel(net_cfg),
        "input": "float32 (batch, z, y, x, 1): 8-bit normalised raw / 255",
        "output": "membrane probability, sigmoid, float32 (batch, z, y, x, 1)",
        "training": {
            "data": data,
            "validation_data": validation if validation is not None else
            "un-augmented crops of the training volumes (no held-out data given)",
            "options": opts.to_dict(),
            "mixed_precision": mixed_precision,
            "dtype_policy": fit["policy"],
            "gpus": fit["gpus"],
            "epochs_run": len(history.get("loss", [])),
            "best_epoch": fit["best_epoch"] + 1,
            "best": fit["best"],
            "seconds": round(fit["seconds"], 1),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "keras": keras.__version__,
            "backend": keras.backend.backend(),
            "chunkseg_version": __version__,
        },
    }


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
