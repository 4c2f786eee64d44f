"""Training progress over the whole run: one bar with ETA, and training voxels/s.

:class:`TrainingProgress` counts optimizer steps over all epochs (a resumed run starts
the bar at the steps already done), shows the ETA of the whole training, and adds
``train_voxels_per_s`` to each epoch's logs: crop voxels of the training batches over the
wall time of those batches (validation excluded; the first step of a run, which traces
and compiles the graph, is not counted), so it lands in the history, the CSV log and
TensorBoard.
"""

from __future__ import annotations

import time
from typing import Any

import keras

__all__ = ["TrainingProgress"]


class TrainingProgress(keras.callbacks.Callback):
    """A bar over all training steps, with ETA and voxels/s; per-epoch voxels/s in the logs.

    Parameters
    ----------
    total_steps : int
        Steps of the whole training (epochs x steps per epoch).
    done_steps : int
        Steps already done (a resumed run).
    voxels_per_step : int
        Crop voxels per step (batch x crop volume).
    show : bool
        Show the bar (and one line per epoch); False only measures.
    """

    def __init__(self, total_steps: int, *, done_steps: int = 0, voxels_per_step: int,
                 show: bool = True) -> None:
        super().__init__()
        self.total_steps, self.done_steps = int(total_steps), int(done_steps)
        self.voxels_per_step = int(voxels_per_step)
        self.show = bool(show)
        self.train_seconds = 0.0
        self.train_steps = 0
        self._bar: Any = None
        self._t0 = self._last = 0.0
        self._steps = 0
        self._warm = False

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total_steps, initial=self.done_steps, desc="train",
                         unit="step", disable=not self.show, dynamic_ncols=True)

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._t0 = self._last = time.perf_counter()
        self._steps = 0

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._last = time.perf_counter()
        if self._warm:
            self._steps += 1
        else:  # the first step traces the graph: start the clock after it
            self._warm, self._t0 = True, self._last
        seconds = self.train_seconds + self._last - self._t0
        rate = (self.train_steps + self._steps) * self.voxels_per_step / max(seconds, 1e-9)
        self._bar.set_postfix_str(f"loss {float((logs or {}).get('loss', float('nan'))):.4f}, "
                                  f"{rate / 1e3:.1f} kvoxel/s", refresh=False)
        self._bar.update(1)

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        seconds = self._last - self._t0
        self.train_seconds += seconds
        self.train_steps += self._steps
        if logs is not None:
            logs["train_voxels_per_s"] = self._steps * self.voxels_per_step / max(seconds, 1e-9)
        if self.show and logs:
            shown = ", ".join(f"{k} {v:.4g}" for k, v in logs.items() if k != "learning_rate")
            self._bar.write(f"epoch {epoch + 1}: {shown}")

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        if self._bar is not None:
            self._bar.close()

    @property
    def voxels_per_s(self) -> float:
        """Training voxels/s over the epochs of this run (0 before any)."""
        return self.train_steps * self.voxels_per_step / self.train_seconds \
            if self.train_seconds else 0.0
