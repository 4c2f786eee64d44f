"""Keras callbacks used by ``chunkseg train``.

:class:`ScalarEventLogger` writes TensorBoard event files (one scalar per metric and
epoch, plus the learning rate) with TensorFlow's core summary writer.  Unlike
``keras.callbacks.TensorBoard`` it does not need the ``tensorboard`` package at training
time (tensorflow-cpu no longer pulls it in); ``tensorboard --logdir`` reads the files.
"""

from __future__ import annotations

import os
from typing import Any

import keras

__all__ = ["ScalarEventLogger", "read_scalar_events"]


class ScalarEventLogger(keras.callbacks.Callback):
    """Write epoch metrics to TensorBoard event files under ``log_dir``/train and /validation.

    Parameters
    ----------
    log_dir : path
        Directory of the event files (created).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        super().__init__()
        self.log_dir = os.fspath(log_dir)
        self._writers: dict[str, Any] = {}
        self._metadata = None

    def _writer(self, split: str):
        import tensorflow as tf

        if split not in self._writers:
            self._writers[split] = tf.summary.create_file_writer(os.path.join(self.log_dir, split))
        return self._writers[split]

    def _scalar_metadata(self) -> bytes:
        if self._metadata is None:
            from tensorflow.core.framework import summary_pb2

            md = summary_pb2.SummaryMetadata()
            md.plugin_data.plugin_name = "scalars"  # what TensorBoard's scalar dashboard reads
            self._metadata = md.SerializeToString()
        return self._metadata

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        import tensorflow as tf

        logs = dict(logs or {})
        try:
            logs.setdefault("learning_rate", float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate)))
        except (AttributeError, TypeError, ValueError):
            pass
        metadata = self._scalar_metadata()
        for key, value in logs.items():
            split, tag = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            with self._writer(split).as_default():
                tf.summary.write(f"epoch_{tag}", tf.constant(float(value), tf.float32),
                                 step=epoch, metadata=metadata)
        for writer in self._writers.values():
            writer.flush()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def read_scalar_events(log_dir: str | os.PathLike[str]) -> dict[str, dict[str, list[float]]]:
    """Read back what :class:`ScalarEventLogger` wrote: ``{split: {tag: [values by step]}}``."""
    import glob

    import tensorflow as tf

    out: dict[str, dict[str, list[float]]] = {}
    for split in ("train", "validation"):
        series: dict[str, dict[int, float]] = {}
        for f in sorted(glob.glob(os.path.join(os.fspath(log_dir), split, "events.*"))):
            for event in tf.compat.v1.train.summary_iterator(f):
                for v in event.summary.value:
                    series.setdefault(v.tag, {})[event.step] = float(tf.make_ndarray(v.tensor))
        if series:
            out[split] = {tag: [s[k] for k in sorted(s)] for tag, s in series.items()}
    return out
