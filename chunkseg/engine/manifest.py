"""Completion manifests: which blocks of a store are written, one small file per time point.

A block is recorded only after its data are stored (the recording happens when the
write task has returned), as one line ``"t.z.y.x\\n"`` appended with a single
``write(2)`` on a file opened ``O_APPEND``: concurrent appends never interleave, and a
process killed mid-line leaves at most one truncated last line, which readers skip
(that block is then simply written again).  The next append to such a file first ends
the fragment with ``"!\\n"``, so it stays unreadable (a cut ``"3.0.1.12"`` must not
read as block ``3.0.1.1``) and the new record starts a line of its own.  One file per
time point (``<store>/.chunkseg/done/t000042.log``) keeps resume cheap at 10^6 blocks:
a run reads only the manifests of the time points it is about to submit, and a
finished time point costs one file, not one file per block.

Per time point, :class:`TimepointLog` also appends a JSON line to
``<store>/progress.jsonl`` once all its blocks are written (time point, blocks,
seconds, voxels per second) -- the run's progress readable with ``tail -f``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

__all__ = ["MANIFEST_DIR", "PROGRESS_LOG", "Manifest", "TimepointLog", "done_blocks"]

#: folder of the per-time-point manifests inside a store
MANIFEST_DIR = ".chunkseg/done"
#: JSON-lines log of finished time points inside a store
PROGRESS_LOG = "progress.jsonl"


def _parse(line: str) -> tuple[int, ...] | None:
    try:
        return tuple(int(v) for v in line.split("."))
    except ValueError:
        return None


class Manifest:
    """The completion manifests of one store.

    Parameters
    ----------
    store : path-like
        The store folder (the group of a chunkseg OME-Zarr image, or a plain array).
    """

    def __init__(self, store: str | os.PathLike) -> None:
        self.folder = Path(store) / MANIFEST_DIR

    def path(self, t: int) -> Path:
        """The manifest file of time point (axis-0 block) ``t``."""
        return self.folder / f"t{int(t):06d}.log"

    def read(self, t: int) -> set[tuple[int, ...]]:
        """Block indices ``(t, z, y, x)`` recorded for time point ``t``."""
        try:
            text = self.path(t).read_text()
        except FileNotFoundError:
            return set()
        lines = text.split("\n")[:-1]  # the last piece is "" or a truncated line
        return {idx for idx in map(_parse, lines) if idx is not None and idx[0] == t}

    def record(self, index: tuple[int, ...]) -> None:
        """Append one finished block (call only after its data are stored)."""
        line = (".".join(map(str, index)) + "\n").encode()
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT
        try:
            fd = os.open(self.path(index[0]), flags, 0o644)
        except FileNotFoundError:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path(index[0]), flags, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":  # a line cut short by a crash
                line = b"!\n" + line
            os.write(fd, line)
        finally:
            os.close(fd)

    def timepoints(self) -> list[int]:
        """Time points that have a manifest."""
        if not self.folder.is_dir():
            return []
        return sorted(int(p.name[1:-4]) for p in self.folder.glob("t*.log"))


def done_blocks(store: str | os.PathLike) -> set[tuple[int, ...]]:
    """Every block index recorded as finished in a store (reads all its manifests)."""
    m = Manifest(store)
    return set().union(*(m.read(t) for t in m.timepoints()))


class TimepointLog:
    """Counts finished blocks per time point; logs a JSON line when one is complete.

    Parameters
    ----------
    store : path-like
        The log goes to ``<store>/progress.jsonl``.
    command : str
        Written in every line (``"predict"``, ``"segment: flood"``, ...).
    """

    def __init__(self, store: str | os.PathLike, command: str) -> None:
        self.path = Path(store) / PROGRESS_LOG
        self.command = command
        self._open: dict[int, list] = {}  # t -> [blocks left, blocks, voxels, start]

    def start(self, t: int, blocks: int) -> None:
        """Time point ``t`` was submitted with ``blocks`` blocks to write."""
        self._open[t] = [blocks, blocks, 0, time.time()]

    def done(self, t: int, voxels: int) -> None:
        """One block of ``t`` holding ``voxels`` voxels is written."""
        entry = self._open[t]
        entry[0] -= 1
        entry[2] += int(voxels)
        if entry[0] == 0:
            del self._open[t]
            seconds = time.time() - entry[3]
            line = {"command": self.command, "t": t, "blocks": entry[1], "voxels": entry[2],
                    "seconds": round(seconds, 3),
                    "voxels_per_s": round(entry[2] / max(seconds, 1e-9), 1),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            with open(self.path, "a") as fh:
                fh.write(json.dumps(line) + "\n")
