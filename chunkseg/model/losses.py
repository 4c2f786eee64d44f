"""Loss and metrics for membrane segmentation (Keras 3, backend agnostic).

The loss is a class-weighted binary cross-entropy plus a soft Dice loss on the
membrane class: membranes are a small minority of voxels, so plain BCE would be
minimised by predicting "no membrane" nearly everywhere.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from chunkseg.errors import ParameterError

__all__ = ["MembraneLoss", "default_metrics", "membrane_loss"]


@keras.saving.register_keras_serializable(package="chunkseg")
class MembraneLoss(keras.losses.Loss):
    """``bce_weight * weighted BCE + dice_weight * (1 - soft Dice)``.

    Parameters
    ----------
    membrane_weight : float
        Weight of membrane voxels (``y = 1``) in the cross-entropy; background has 1.
        The weighted BCE is normalised by the summed weights, so it stays on the scale
        of a plain BCE.
    bce_weight, dice_weight : float
        Mix of the two terms.
    smooth : float
        Additive smoothing of the Dice ratio (keeps empty crops finite).

    Notes
    -----
    A ``sample_weight`` of the labels' shape (``loss(y, p, sample_weight=w)``, or the
    third element of a ``tf.data`` batch in ``fit``) marks voxels with weight 0 as
    unlabelled: they are left out of both terms (sparse annotations).  The Dice term is computed over the whole batch (all voxels), the cross-entropy per
    voxel; both are reduced to one scalar per batch.
    """

    def __init__(self, membrane_weight: float = 3.0, bce_weight: float = 1.0,
                 dice_weight: float = 1.0, smooth: float = 1.0, name: str = "membrane_loss",
                 **kwargs: Any) -> None:
        kwargs.pop("reduction", None)
        super().__init__(name=name, reduction="sum", **kwargs)
        for key, value in (("membrane_weight", membrane_weight), ("bce_weight", bce_weight),
                           ("dice_weight", dice_weight), ("smooth", smooth)):
            if not float(value) >= 0:
                raise ParameterError(f"{key} must be >= 0; got {value!r}")
        if bce_weight == 0 and dice_weight == 0:
            raise ParameterError("bce_weight and dice_weight cannot both be 0")
        self.membrane_weight = float(membrane_weight)
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The loss; ``sample_weight`` (the shape of ``y_true``, 0 = ignored voxel) masks
        voxels out of both terms, so ignored voxels change nothing."""
        return self.weighted(y_true, y_pred, sample_weight)

    def call(self, y_true, y_pred):
        return self.weighted(y_true, y_pred, None)

    def weighted(self, y_true, y_pred, weight=None):
        """The loss over the voxels where ``weight`` > 0 (all voxels when None)."""
        y_pred = ops.cast(y_pred, "float32")
        y_true = ops.cast(y_true, "float32")
        keep = 1.0 if weight is None else ops.cast(ops.reshape(weight, ops.shape(y_true)) > 0,
                                                   "float32")
        eps = 1e-7
        p = ops.clip(y_pred, eps, 1.0 - eps)
        y_true = y_true * keep
        w = (1.0 + (self.membrane_weight - 1.0) * y_true) * keep
        bce = -(y_true * ops.log(p) + (1.0 - y_true) * ops.log(1.0 - p))
        bce = ops.sum(w * bce) / ops.maximum(ops.sum(w), eps)
        y_pred = y_pred * keep
        inter = ops.sum(y_true * y_pred)
        dice = (2.0 * inter + self.smooth) / (ops.sum(y_true) + ops.sum(y_pred) + self.smooth)
        return self.bce_weight * bce + self.dice_weight * (1.0 - dice)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("reduction", None)
        config.update(membrane_weight=self.membrane_weight, bce_weight=self.bce_weight,
                      dice_weight=self.dice_weight, smooth=self.smooth)
        return config


def membrane_loss(membrane_weight: float = 3.0, **kwargs: Any) -> MembraneLoss:
    """Shorthand for :class:`MembraneLoss` (``model.compile(loss=membrane_loss(5.0))``)."""
    return MembraneLoss(membrane_weight=membrane_weight, **kwargs)


def default_metrics(threshold: float = 0.5) -> list[keras.metrics.Metric]:
    """Accuracy, IoU, precision and recall of the membrane class at ``threshold``.

    Returned as fresh Keras metric objects named ``accuracy``, ``iou``, ``precision``
    and ``recall`` (so the history keys are ``val_iou`` etc.), ready for ``compile``.
    """
    if not 0.0 < threshold < 1.0:
        raise ParameterError(f"threshold must be in (0, 1); got {threshold!r}")
    return [
        keras.metrics.BinaryAccuracy(name="accuracy", threshold=threshold),
        keras.metrics.BinaryIoU(target_class_ids=[1], threshold=threshold, name="iou"),
        keras.metrics.Precision(thresholds=threshold, name="precision"),
        keras.metrics.Recall(thresholds=threshold, name="recall"),
    ]
