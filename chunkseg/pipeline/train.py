"""``chunkseg train``: train the 3D U-Net on random augmented crops read from Zarr.

Crops come from :func:`chunkseg.model.training_data.make_dataset` (reads only the crop, applies the
paper's augmentations); the network from :func:`chunkseg.model.build_unet`; the loss is
:class:`chunkseg.model.MembraneLoss` (class-weighted BCE + soft Dice).  Outputs, for
``--out model.keras``:

- ``model.keras``: the best model (lowest validation loss), float32, with chunkseg
  metadata (configuration, normalization, voxel size, crop, receptive field, provenance);
- ``model_training/``: ``history.json``, ``log.csv`` (per epoch), ``tensorboard/``
  event files, ``training_curves.png`` (loss / accuracy / IoU, train vs validation),
  ``config.json`` (the resolved configuration), ``best.weights.h5`` and
  ``checkpoint.npz`` (weights, optimizer state, epoch: what ``resume`` continues from,
  replaced atomically after every epoch).

Training needs the TensorFlow backend (``tf.data`` input pipeline, ``MirroredStrategy``):
under ``KERAS_BACKEND=jax`` / ``torch`` :func:`run_train` raises :class:`ParameterError`.
The saved model predicts under every backend (``chunkseg predict`` is backend-neutral).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from chunkseg import __version__
from chunkseg.engine import backend
from chunkseg.errors import OutputExistsError, ParameterError
from chunkseg.model.unet import (
    UNetConfig,
    flops_per_voxel,
    pooling_factor,
    receptive_field,
)
from chunkseg.pipeline._train_data import (
    common_voxel_size,
    computed_ranges,
    names,
    normalization_record,
    pairs,
    recorded_voxel_sizes,
)
from chunkseg.pipeline._train_inputs import (
    checkpoint_identity,
    init_weights,
    resume_point,
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
    resume: bool = False,
    init: PathLike | None = None,
    ignore_value: int | None = None,
    pair_weights: Sequence[float] | None = None,
    **train_options: Any,
) -> dict[str, Any]:
    """Train a 3D U-Net on (raw, mask) volumes and save the best model with its metadata.

    Parameters
    ----------
    raw, mask : path or list of paths (or opened zarr arrays)
        Training pairs: raw volumes (chunkseg OME-Zarr, zarr or TIFF, any integer or
        float dtype) and membrane masks (0/1).
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
        One intensity range for every raw.  Default: each raw's stored range, else (a
        raw file that is not ``chunkseg normalize`` output) its own (1, 99.5)
        percentiles of the non-zero voxels, as ``predict`` computes them; the model then
        records that rule instead of a range.
    mixed_precision : bool
        Train with the ``mixed_float16`` policy (``mixed_bfloat16`` without a GPU); the
        saved model is float32.
    overwrite : bool
        Replace an existing ``out``.
    verbose : int
        0 silent, 1 one progress bar over all steps (ETA, voxels/s) + summary, 2 one
        line per epoch.
    resume : bool
        Continue from ``<stem>_training/checkpoint.npz`` (weights, optimizer state,
        epoch counter, history), written atomically after every epoch; without one,
        start afresh.  The data, model and options must be those of the first run
        (``epochs`` and ``patience`` may change); ``out`` is replaced.
    init : "default" or path, optional
        Start from this chunkseg model's weights (fine-tuning); its architecture is used
        unless ``model_config`` / ``[model]`` ask for one, which must then be equal.
    ignore_value : int, optional
        Mask value of unlabelled voxels (sparse labels): excluded from the loss and the
        metrics.
    pair_weights : sequence of float, optional
        One weight > 0 per training pair: crops are drawn from a pair in proportion to
        its weight times its number of crop positions (default: all 1).
    **train_options
        Override :class:`TrainOptions` fields (``epochs``, ``steps``, ``crop``, ``batch``,
        ``lr``, ``seed``, ...); None values are ignored.

    Returns
    -------
    dict
        Summary: paths, epochs run, best epoch and its metrics, timings, model facts.

    Notes
    -----
    TensorFlow is set up as for prediction (:func:`~chunkseg.engine.backend.configure_backend`:
    oneDNN kernels on, about 8x less CPU per step on an AVX2 CPU) before it is first imported.
    """
    backend.configure_backend()
    opts, net_cfg, start = _resolve_options(config, model_config, train_options, init)
    out = Path(out)
    if out.suffix != ".keras":
        raise ParameterError(f"--out {str(out)!r} must end in '.keras'")
    if out.exists() and not (overwrite or resume):
        raise OutputExistsError(f"model file {str(out)!r} exists; pass overwrite=True "
                                "(--overwrite) to replace it")
    train_pairs = pairs(raw, mask, "training data")
    held_out = val_raw is not None or val_mask is not None
    val_pairs = pairs(val_raw, val_mask, "validation data") if held_out else train_pairs
    backend.require_tensorflow("chunkseg train")  # tf.data pipeline; prediction runs on any backend
    samplers, ranges, how = _samplers(train_pairs, val_pairs, held_out, opts, normalization,
                                      ignore_value, pair_weights)
    side = out.with_name(f"{out.stem}_training")
    _start_point(start, side / "checkpoint.npz", resume=resume, identity=checkpoint_identity(
        model=net_cfg.to_dict(), options=opts.to_dict(), data=names(train_pairs),
        validation=names(val_pairs),
        extra={"mixed_precision": mixed_precision, "ignore_value": ignore_value,
               "ranges": ranges, "init": init and str(init),
               **_weights_identity(pair_weights)}))
    train_ds, val_ds = _pipelines(samplers, opts, int(start["state"].get("epoch", 0)))
    side.mkdir(parents=True, exist_ok=True)
    (side / "config.json").write_text(json.dumps(
        {"model": net_cfg.to_dict(), "train": opts.to_dict(),
         "mixed_precision": mixed_precision}, indent=2))
    fit = _fit(net_cfg, opts, train_ds, val_ds, side, mixed_precision=mixed_precision,
               verbose=verbose, start=start)
    final, history, best_epoch = _best_model(fit, net_cfg, samplers[0], opts.bn_recompute)
    fit["best_epoch"], fit["best"] = best_epoch, {k: v[best_epoch] for k, v in history.items()
                                                  if len(v) > best_epoch}
    from chunkseg.model.io import save_model
    from chunkseg.plots.training import plot_training_curves

    metadata = _metadata(net_cfg, opts, samplers[0], how, fit, history,
                         data=names(train_pairs),
                         validation=names(val_pairs) if held_out else None,
                         mixed_precision=mixed_precision, init=start.get("init"),
                         ignore_value=ignore_value)
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
        "steps_done": fit["steps_done"], "resumed_from_epoch": fit["initial_epoch"],
        "train_voxels_per_s": round(fit["voxels_per_s"], 1),
    }
    if verbose:
        print(format_summary(summary))
    return summary


def _weights_identity(pair_weights: Sequence[float] | None) -> dict[str, Any]:
    """The pair weights as part of a checkpoint's identity (absent when not given, so that
    checkpoints written before them resume)."""
    return {} if pair_weights is None else {"pair_weights": [float(w) for w in pair_weights]}


def _resolve_options(config, model_config, train_options: dict[str, Any], init):
    """The training options, the network configuration (file, then arguments, or the
    ``init`` model's) and the starting weights (``{"weights", "init"}``, empty without
    ``init``)."""
    cfg = load_train_config(config)
    unknown = sorted(set(train_options) - {f.name for f in dataclasses.fields(TrainOptions)})
    if unknown:
        raise ParameterError(f"unknown training option(s) {unknown}")
    opts = TrainOptions(**{**cfg["train"],
                           **{k: (tuple(v) if k == "crop" else v)
                              for k, v in train_options.items() if v is not None}})
    if model_config is None:
        model_config = cfg["model"] or None
    net_cfg = model_config if isinstance(model_config, UNetConfig) else \
        UNetConfig.from_dict(model_config or {})
    start: dict[str, Any] = {}
    if init is not None:
        net_cfg, start["weights"], start["init"] = init_weights(
            init, None if model_config is None else net_cfg)
    factor = pooling_factor(net_cfg)
    if any(c % f for c, f in zip(opts.crop, factor)):
        raise ParameterError(f"crop {opts.crop} must be a multiple of the model's pooling factor "
                             f"{factor} in every axis")
    return opts, net_cfg, start


def _start_point(start: dict[str, Any], path: Path, *, resume: bool,
                 identity: dict[str, Any]) -> None:
    """Add to ``start`` the run's ``identity`` and, with ``resume``, the checkpoint's
    ``state`` and arrays (``checkpoint``; None for a fresh start)."""
    start["identity"] = identity
    start["state"], start["checkpoint"] = resume_point(path, identity, resume=resume)


def _samplers(train_pairs, val_pairs, held_out: bool, opts: TrainOptions, normalization,
              ignore_value: int | None, pair_weights: Sequence[float] | None = None):
    """Crop samplers (training, with ``pair_weights``; validation) with checked masks; the
    raw ranges used; how the range was found."""
    from chunkseg.model.training_data import CropSampler

    computed = computed_ranges(train_pairs, normalization)
    train_range = computed or normalization
    val_computed = computed_ranges(val_pairs, normalization) if held_out else computed
    val_range = val_computed or normalization
    how = "given" if normalization is not None else "percentiles" if computed else None
    sampler = CropSampler(train_pairs, crop=opts.crop, seed=opts.seed,
                          membrane_bias=opts.membrane_bias, normalization=train_range,
                          ignore_value=ignore_value, weights=pair_weights)
    val_sampler = CropSampler(val_pairs, crop=opts.crop, seed=opts.seed + 1_000_003,
                              membrane_bias=opts.membrane_bias, normalization=val_range,
                              ignore_value=ignore_value)
    return (sampler, val_sampler), [train_range, val_range], how


def _pipelines(samplers, opts: TrainOptions, start_epoch: int):
    """``tf.data`` pipelines; training crops continue at ``start_epoch``'s first draw."""
    from chunkseg.model.training_data import make_dataset

    sampler, val_sampler = samplers
    train_ds = make_dataset(sampler, batch=opts.batch, augment=opts.augment, noise=opts.noise,
                            start=start_epoch * opts.steps * opts.batch,
                            augment_options={"intensity": opts.intensity})
    val_ds = make_dataset(val_sampler, batch=opts.batch, augment=False,
                          n=opts.val_steps * opts.batch).cache()
    return train_ds, val_ds


def _callbacks(side: Path, opts: TrainOptions, start: dict[str, Any], verbose: int
               ) -> list[Any]:
    """Progress bar, CSV and TensorBoard logs, NaN stop, early stop, LR schedule, and last
    the resumable checkpoint (best weights included) that saves their counters."""
    import keras

    from chunkseg.model.callbacks import ScalarEventLogger
    from chunkseg.model.checkpoint import ResumableCheckpoint
    from chunkseg.model.progress import TrainingProgress

    state, ckpt = start["state"], start["checkpoint"]
    callbacks: list[Any] = [
        TrainingProgress(opts.epochs * opts.steps,
                         done_steps=int(state.get("epoch", 0)) * opts.steps,
                         voxels_per_step=opts.batch * math.prod(opts.crop), show=verbose == 1),
        keras.callbacks.CSVLogger(side / "log.csv", append=ckpt is not None),
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
    callbacks.append(ResumableCheckpoint(
        side / "checkpoint.npz", side / "best.weights.h5", identity=start["identity"],
        resumed=state, best_weights=None if ckpt is None else ckpt["best"],
        stateful=[cb for cb in callbacks if isinstance(
            cb, (keras.callbacks.EarlyStopping, keras.callbacks.ReduceLROnPlateau))]))
    return callbacks


def _compiled(net_cfg: UNetConfig, opts: TrainOptions):
    """The network compiled with Adam (optionally a cosine schedule) and the membrane loss."""
    import keras

    from chunkseg.model.losses import default_metrics, membrane_loss
    from chunkseg.model.unet import build_unet

    model = build_unet(net_cfg)
    lr: Any = opts.lr
    if opts.lr_schedule == "cosine":
        lr = keras.optimizers.schedules.CosineDecay(
            opts.lr, (opts.decay_epochs or opts.epochs) * opts.steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.Adam(lr), loss=membrane_loss(opts.membrane_weight),
                  metrics=default_metrics())
    return model


def _fit(net_cfg: UNetConfig, opts: TrainOptions, train_ds, val_ds, side: Path, *,
         mixed_precision: bool, verbose: int, start: dict[str, Any]) -> dict[str, Any]:
    """Train under the dtype policy (restored afterwards), on all GPUs when there are
    several, from the checkpoint, the ``init`` weights or afresh."""
    import keras

    from chunkseg.model.checkpoint import restore_checkpoint

    keras.utils.set_random_seed(opts.seed)
    previous_policy = keras.config.dtype_policy().name
    strategy = _strategy(opts.batch)
    initial_epoch = int(start["state"].get("epoch", 0))
    try:
        policy = _mixed_policy() if mixed_precision else "float32"
        keras.config.set_dtype_policy(policy)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            model = _compiled(net_cfg, opts)
            if start["checkpoint"] is not None:
                restore_checkpoint(model, start["checkpoint"])
            elif "weights" in start:
                model.set_weights(start["weights"])
        callbacks = _callbacks(side, opts, start, verbose)
        t0 = time.perf_counter()
        model.fit(train_ds, epochs=opts.epochs, steps_per_epoch=opts.steps,
                  validation_data=val_ds, callbacks=callbacks, verbose=2 if verbose == 2 else 0,
                  shuffle=False, initial_epoch=initial_epoch)
        seconds = time.perf_counter() - t0
    finally:
        keras.config.set_dtype_policy(previous_policy)
    return {"model": model, "checkpoint": callbacks[-1], "seconds": seconds, "policy": policy,
            "gpus": strategy.num_replicas_in_sync if strategy is not None else 0,
            "initial_epoch": initial_epoch, "voxels_per_s": callbacks[0].voxels_per_s,
            "steps_done": int(keras.ops.convert_to_numpy(model.optimizer.iterations))}


def _best_model(fit: dict[str, Any], net_cfg: UNetConfig, sampler, bn_recompute: int):
    """A float32, uncompiled copy of the best weights (BatchNorm statistics recomputed over
    ``bn_recompute`` crops of ``sampler`` when > 0); the history; the best epoch (0-based)."""
    from chunkseg.model.batchnorm import recompute_batchnorm, sampler_batches
    from chunkseg.model.unet import build_unet

    checkpoint = fit["checkpoint"]
    final = build_unet(net_cfg)
    final.set_weights(checkpoint.best_weights or fit["model"].get_weights())
    if bn_recompute:
        recompute_batchnorm(final, sampler_batches(sampler, bn_recompute))
    return final, checkpoint.history, checkpoint.best_epoch


def _metadata(net_cfg: UNetConfig, opts: TrainOptions, sampler, how, fit: dict[str, Any],
              history: dict[str, list[float]], *, data, validation,
              mixed_precision: bool, init: dict[str, Any] | None,
              ignore_value: int | None) -> dict[str, Any]:
    """What the saved model carries: configuration, input scaling, geometry, provenance."""
    import keras

    return {
        "config": net_cfg.to_dict(),
        "normalization": normalization_record(sampler, how),
        "voxel_size": common_voxel_size(sampler),
        "voxel_sizes": recorded_voxel_sizes(sampler),
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
            "init": init,
            "ignore_value": ignore_value,
            "steps_done": fit["steps_done"],
            "train_voxels_per_s": round(fit["voxels_per_s"], 1),
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
    resumed = f" (resumed after epoch {summary['resumed_from_epoch']})" \
        if summary.get("resumed_from_epoch") else ""
    return "\n".join([
        f"trained {summary['epochs_run']} epochs in {summary['seconds']:.0f} s{resumed}; "
        f"kept epoch {summary['best_epoch']} (lowest validation loss)",
        f"  {summary['steps_done']} optimizer steps, "
        f"{summary['train_voxels_per_s'] / 1e3:.1f} k training voxels/s",
        f"  best: {metrics}",
        f"  validation on: {val}",
        f"  model: {summary['model']} ({summary['parameters']} parameters, receptive field "
        f"{tuple(summary['receptive_field'])} voxels, "
        f"{summary['flops_per_voxel'] / 1e6:.3g} MFLOP/voxel)",
        f"  curves: {summary['curves']}; history: {summary['history']}; "
        f"TensorBoard: {summary['tensorboard']}",
    ])
