"""Resumable training: an atomic per-epoch checkpoint with the optimizer state.

:class:`ResumableCheckpoint` writes, at the end of every epoch, one ``.npz`` file holding

- the model weights (``w0 .. wN``) and the optimizer variables (``o0 .. oM``: Adam's
  moments, the iteration counter, the learning rate);
- the best weights so far (``b0 .. bN``, lowest validation loss);
- a JSON ``state``: epochs done, history, best epoch, the states of the other callbacks
  (early stopping, learning-rate plateau) and the caller's ``identity`` (what must not
  change between a run and its continuation).

The file is written to a temporary name in the same directory, flushed to disk and
renamed over the previous checkpoint (``os.replace``), so a run killed at any moment
(SIGKILL included) leaves either the previous or the new checkpoint, never half of one.
:func:`restore_checkpoint` puts weights and optimizer state back into a model compiled
the same way; training then continues with ``fit(initial_epoch=state["epoch"])``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from chunkseg.errors import FormatError, ResumeMismatchError

__all__ = ["ResumableCheckpoint", "read_checkpoint", "restore_checkpoint"]

#: attributes of Keras callbacks that carry state across epochs
_CALLBACK_STATE = ("best", "wait", "cooldown_counter", "best_epoch")


def _callback_state(callbacks: Sequence[Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for cb in callbacks:
        values = {k: getattr(cb, k) for k in _CALLBACK_STATE if getattr(cb, k, None) is not None}
        out[type(cb).__name__] = {k: float(v) for k, v in values.items()}
    return out


def _write_atomic(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


class ResumableCheckpoint(keras.callbacks.Callback):
    """Write a resumable checkpoint (and the best weights) after every epoch.

    Parameters
    ----------
    path : path
        The checkpoint file (``.npz``), replaced atomically each epoch.
    best_path : path
        ``*.weights.h5`` file of the best weights (lowest ``val_loss``), replaced
        atomically when the validation loss improves.
    identity : dict
        JSON-able facts a continuation must share (model, data, options); stored in
        the state and checked by :func:`read_checkpoint`.
    resumed : dict, optional
        The state of the checkpoint this run continues (history, best, callback states).
    best_weights : list of arrays, optional
        The best weights of the checkpoint this run continues.
    stateful : sequence of keras callbacks
        Callbacks whose counters (best, wait, cooldown) are saved and restored.
    """

    def __init__(self, path: str | os.PathLike[str], best_path: str | os.PathLike[str], *,
                 identity: Mapping[str, Any], resumed: Mapping[str, Any] | None = None,
                 best_weights: list[np.ndarray] | None = None,
                 stateful: Sequence[Any] = ()) -> None:
        super().__init__()
        self.path, self.best_path = Path(path), Path(best_path)
        self.identity = json.loads(json.dumps(dict(identity)))
        state = dict(resumed or {})
        self.history: dict[str, list[float]] = {k: list(v) for k, v in
                                                state.get("history", {}).items()}
        self.best = float(state.get("best_val_loss", np.inf))
        self.best_epoch = int(state.get("best_epoch", -1))
        self.stateful = list(stateful)
        self._restore = dict(state.get("callbacks", {}))
        self.best_weights: list[np.ndarray] | None = best_weights

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        for cb in self.stateful:  # after their own on_train_begin reset
            for key, value in self._restore.get(type(cb).__name__, {}).items():
                setattr(cb, key, int(value) if key in ("wait", "cooldown_counter",
                                                       "best_epoch") else value)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        weights = self.model.get_weights()
        val = float(logs.get("val_loss", logs.get("loss", np.inf)))
        if self.best_weights is None or val < self.best:
            self.best, self.best_epoch, self.best_weights = val, epoch, weights
            tmp = self.best_path.with_name(f".tmp{os.getpid()}.{self.best_path.name}")
            self.model.save_weights(tmp)
            os.replace(tmp, self.best_path)
        state = {"epoch": epoch + 1, "history": self.history, "best_val_loss": self.best,
                 "best_epoch": self.best_epoch, "callbacks": _callback_state(self.stateful),
                 "identity": self.identity}
        arrays = {f"w{i}": w for i, w in enumerate(weights)}
        arrays.update({f"b{i}": w for i, w in enumerate(self.best_weights)})
        arrays.update({f"o{i}": np.asarray(v) for i, v in
                       enumerate(self.model.optimizer.variables)})
        arrays["state"] = np.array(json.dumps(state))
        _write_atomic(self.path, arrays)


def read_checkpoint(path: str | os.PathLike[str], *, identity: Mapping[str, Any] | None = None
                    ) -> tuple[dict[str, Any], dict[str, list[np.ndarray]]]:
    """Read a checkpoint: ``(state, {"weights", "best", "optimizer"})``.

    Raises
    ------
    FormatError
        The file is not a chunkseg checkpoint (message names it).
    ResumeMismatchError
        ``identity`` differs from the one stored (the keys that differ are named).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            state = json.loads(str(z["state"]))
            groups = {name: [z[f"{p}{i}"] for i in range(sum(k.startswith(p) and k[1:].isdigit()
                                                             for k in z.files))]
                      for name, p in (("weights", "w"), ("best", "b"), ("optimizer", "o"))}
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise FormatError(f"checkpoint {str(path)!r} is not a chunkseg training checkpoint: "
                          f"{exc}") from None
    if identity is not None:
        stored = state.get("identity", {})
        new = json.loads(json.dumps(dict(identity)))
        diff = sorted(k for k in set(stored) | set(new) if stored.get(k) != new.get(k))
        if diff:
            raise ResumeMismatchError(
                f"checkpoint {str(path)!r} belongs to another training: {diff} differ "
                f"(expected {[stored.get(k) for k in diff]}, found {[new.get(k) for k in diff]})")
    return state, groups


def restore_checkpoint(model: Any, groups: Mapping[str, list[np.ndarray]]) -> None:
    """Set weights and optimizer variables (building the optimizer) of a compiled model."""
    model.set_weights(groups["weights"])
    optimizer = model.optimizer
    optimizer.build(model.trainable_variables)
    if len(optimizer.variables) != len(groups["optimizer"]):
        raise FormatError(f"checkpoint has {len(groups['optimizer'])} optimizer variables; the "
                          f"model's optimizer has {len(optimizer.variables)}")
    for var, value in zip(optimizer.variables, groups["optimizer"]):
        var.assign(value)
