"""Configuration of ``chunkseg train``: the ``[train]`` options and the TOML reader.

A configuration file has two tables, ``[model]`` (:class:`chunkseg.model.UNetConfig`
fields) and ``[train]`` (:class:`TrainOptions` fields); unknown tables or keys are
errors, so a typo never silently falls back to a default::

    [model]
    depth = 3
    base_filters = 8
    pools = [[1, 2, 2], [2, 2, 2]]

    [train]
    epochs = 50
    crop = [32, 128, 128]
    noise = "low"
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from chunkseg.model.training_data import DEFAULT_CROP
from chunkseg.errors import ParameterError
from chunkseg.model.unet import UNetConfig
from chunkseg.ops.augment_intensity import draw_intensity

__all__ = ["TrainOptions", "load_train_config", "toml_reader"]

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class TrainOptions:
    """Training hyper-parameters (the ``[train]`` table of a config file).

    Attributes
    ----------
    epochs, steps : int
        Epochs and optimizer steps (batches) per epoch.
    val_steps : int
        Validation batches per epoch (a fixed, un-augmented set of crops).
    crop : (z, y, x)
        Training crop; each axis a multiple of the model's pooling factor.
    batch : int
        Crops per step (global batch, split over GPUs).
    lr : float
        Initial Adam learning rate.
    lr_schedule : {"plateau", "cosine", "constant"}
        ``plateau`` halves the rate after ``patience // 2`` epochs without improvement
        of the validation loss; ``cosine`` decays to 1 % over all steps, or over
        ``decay_epochs``.
    decay_epochs : int
        Length of the cosine decay in epochs (0: ``epochs``).  Give it to a training
        that is resumed in parts with a growing ``epochs``, so that the schedule does
        not change with each part; after it the rate stays at 1 %.
    patience : int
        Early stopping after this many epochs without improvement (0 disables).
    membrane_weight : float
        Membrane class weight in the cross-entropy.
    membrane_bias : float
        Fraction of crops drawn to contain membrane (see ``CropSampler``).
    noise : str or [mu, sigma] or None
        Noise augmentation (preset name or values); None: no noise.
    augment : bool
        Flips / rotations / intensity augmentation of training crops.
    intensity : bool or mapping
        With ``augment``, also window / gamma / contrast / offset / 8-bit requantization
        (:mod:`chunkseg.ops.augment_intensity`), so the network does not depend on how
        an input was scaled to 8 bit; a mapping replaces some of the default ranges
        (``{"gamma": [0.4, 1.7]}``, keys of ``INTENSITY_RANGES`` and ``p``).
    seed : int
        Seed of weights, crops and augmentations.
    bn_recompute : int
        After training, replace the saved model's BatchNorm moving statistics by the mean
        and variance of each layer's input over this many un-augmented training crops
        (:func:`chunkseg.model.batchnorm.recompute_batchnorm`; 0: keep the moving
        averages).  With batch 1-2 and momentum 0.9 the moving averages follow the last
        few crops; 200 crops give population statistics.  Not part of a checkpoint's
        identity: it changes the saved model, not the training.
    """

    epochs: int = 50
    steps: int = 100
    val_steps: int = 10
    crop: tuple[int, int, int] = DEFAULT_CROP
    batch: int = 2
    lr: float = 1e-3
    lr_schedule: str = "plateau"
    decay_epochs: int = 0
    patience: int = 10
    membrane_weight: float = 3.0
    membrane_bias: float = 0.5
    noise: Any = None
    augment: bool = True
    intensity: bool | Mapping[str, Any] = True
    seed: int = 0
    bn_recompute: int = 0

    def __post_init__(self) -> None:
        for key in ("epochs", "steps", "val_steps", "batch"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ParameterError(f"{key} must be an int >= 1; got {v!r}")
        for key in ("patience", "seed", "decay_epochs", "bn_recompute"):
            v = getattr(self, key)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ParameterError(f"{key} must be an int >= 0; got {v!r}")
        crop = tuple(self.crop) if isinstance(self.crop, Sequence) else ()
        if len(crop) != 3 or not all(isinstance(c, int) and c >= 1 for c in crop):
            raise ParameterError(f"crop must be 3 positive ints (z, y, x); got {self.crop!r}")
        object.__setattr__(self, "crop", crop)
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr < 1):
            raise ParameterError(f"lr must be in (0, 1); got {self.lr!r}")
        if self.lr_schedule not in ("plateau", "cosine", "constant"):
            raise ParameterError(f"lr_schedule must be 'plateau', 'cosine' or 'constant'; "
                                 f"got {self.lr_schedule!r}")
        if not (isinstance(self.membrane_weight, (int, float)) and self.membrane_weight > 0):
            raise ParameterError(f"membrane_weight must be > 0; got {self.membrane_weight!r}")
        if isinstance(self.intensity, Mapping):
            draw_intensity(np.random.default_rng(0), self.intensity)  # checks the ranges
            object.__setattr__(self, "intensity", dict(self.intensity))
        for key in ("augment",) + (() if isinstance(self.intensity, dict) else ("intensity",)):
            if not isinstance(getattr(self, key), bool):
                raise ParameterError(f"{key} must be true or false; got {getattr(self, key)!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["crop"] = list(self.crop)
        return d


def toml_reader() -> Any:
    """The TOML parser: :mod:`tomllib` (Python >= 3.11) or its backport ``tomli`` (3.10).

    ``tomli`` is the package ``tomllib`` was taken from (same API); it is a dependency
    only where Python lacks ``tomllib`` (``tomli; python_version < "3.11"``).
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib


def load_train_config(config: PathLike | Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Read a training configuration: a TOML file or a dict with tables ``model``, ``train``.

    Unknown tables or keys raise :class:`ParameterError` naming the file.
    """
    source = "config"
    if config is None:
        data: Mapping[str, Any] = {}
    elif isinstance(config, Mapping):
        data = config
    else:
        tomllib = toml_reader()
        path = Path(config)
        source = str(path)
        if not path.is_file():
            from chunkseg.errors import InputNotFoundError

            raise InputNotFoundError(f"training config {source!r} does not exist")
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            from chunkseg.errors import FormatError

            raise FormatError(f"training config {source!r} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"model", "train"})
    if unknown:
        raise ParameterError(f"{source}: unknown table(s) {unknown}; expected 'model' and/or "
                             "'train'")
    train = dict(data.get("train", {}))
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    bad = sorted(set(train) - known)
    if bad:
        raise ParameterError(f"{source}: unknown [train] key(s) {bad}; expected some of "
                             f"{sorted(known)}")
    model = dict(data.get("model", {}))
    try:
        UNetConfig.from_dict(model)
    except ParameterError as exc:
        raise ParameterError(f"{source}: [model]: {exc}") from None
    return {"model": model, "train": train}
