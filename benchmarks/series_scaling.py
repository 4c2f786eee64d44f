"""Client memory and per-block time versus series length: every command that writes a series.

Each command runs through the CLI with every default (predict: a LocalCluster sized to
the machine; convert, normalize, binarize, segment: dask's threaded scheduler) in a
fresh child process on a series of ``T`` tiny time points (8 x 32 x 32, one block
each), for two series lengths: convert from a 4D TIFF, normalize and predict from the
raw series, binarize from a label series, segment from a probability series.  The child reports its own peak
RSS (``VmHWM``: the client process, which also hosts the LocalCluster's
scheduler; the worker processes are not counted), the wall time of the command and
the time until its first time point was logged as finished (``progress.jsonl``).

Flat means: RSS(T_long) <= 1.15 x RSS(T_short), and the wall time added per added
block <= 0.08 s.  Load (load average, client CPU vs wall) is recorded beside every
figure (:mod:`benchmarks.load`); a loaded machine inflates times, not memory.

Usage::

    python benchmarks/series_scaling.py --short 100 --long 1000 [--commands predict ...]

Writes ``benchmarks/results/series_scaling.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHAPE = (8, 32, 32)
COMMANDS = ("predict", "normalize", "segment", "convert", "binarize")
RESULTS = Path(__file__).resolve().parent / "results"


def _labels(n_t: int):
    """A (t, z, y, x) label series: 2 x 4 x 4 boxes per time point, numbered 1.."""
    import numpy as np

    z, y, x = np.indices(SHAPE)
    cells = 1 + (z // 4) * 16 + (y // 8) * 4 + x // 8
    return np.broadcast_to(cells.astype(np.uint16), (n_t, *SHAPE))


def make_inputs(folder: Path, n_t: int) -> dict[str, Path]:
    """Raw uint16 (Zarr and 4D TIFF), float32 probability and uint16 label series."""
    import dask.array as da
    import numpy as np
    import tifffile

    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete

    rng = np.random.default_rng(0)
    raw = rng.integers(100, 4000, size=(n_t, *SHAPE), dtype=np.uint16)
    prob = (rng.random((n_t, *SHAPE), dtype=np.float32) ** 4).astype(np.float32)
    paths = {}
    for name, data in (("raw", raw), ("prob", prob), ("labels", _labels(n_t))):
        path = folder / f"{name}.ome.zarr"
        # the raw series carries its intensity range (as after 'chunkseg normalize' without
        # --out), so predict measures the prediction, not a percentile pass over the series
        attrs = {"raw": {"kind": "raw", "normalization": {"low": 100.0, "high": 4000.0}},
                 "prob": {"kind": "probability"}, "labels": {"kind": "labels"}}[name]
        create_image(path, shape=data.shape, dtype=data.dtype, attrs=attrs)
        write_volume(da.from_array(data, chunks=(1, *SHAPE)), path, progress=False)
        mark_complete(path)
        paths[name] = path
    paths["tiff"] = folder / "raw.tif"
    tifffile.imwrite(paths["tiff"], raw, imagej=True, metadata={"axes": "TZYX"})
    return paths


#: the input of each command (a key of :func:`make_inputs`)
SOURCE = {"predict": "raw", "normalize": "raw", "segment": "prob", "convert": "tiff",
          "binarize": "labels"}


def argv_for(command: str, inputs: dict[str, Path], out: Path) -> list[str]:
    """The CLI arguments of one command with every default."""
    # the others show no progress bar when their output is piped
    quiet = ["--quiet"] if command in ("predict", "segment") else []
    return [command, str(inputs[SOURCE[command]]), "--out", str(out), *quiet]


def peak_rss_mb() -> float:
    """This process's peak resident memory: ``VmHWM`` (``ru_maxrss`` would include the
    parent's peak, which Linux carries across ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(argv: list[str], out: str) -> None:
    """Run one CLI command here and print what the parent measures (one JSON line)."""
    from chunkseg.cli import main

    t0, c0 = time.perf_counter(), time.process_time()
    start = time.time()
    code = main(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    first = None
    log = Path(out) / "progress.jsonl"
    if log.is_file():
        line = json.loads(log.read_text().splitlines()[0])
        first = time.mktime(time.strptime(line["finished"], "%Y-%m-%dT%H:%M:%SZ")) \
            - time.timezone - start
    print(json.dumps({"code": code, "wall_s": wall, "client_cpu_s": cpu,
                      "peak_rss_mb": peak_rss_mb(),
                      "first_timepoint_s": first}))


def measure(command: str, inputs: dict[str, Path], out: Path) -> dict:
    """One child run of ``command``; its JSON line plus the load around it."""
    from load import LoadProbe

    argv = argv_for(command, inputs, out)
    with LoadProbe() as probe:
        res = subprocess.run([sys.executable, __file__, "--child", str(out), *argv],
                             capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"{command} failed: {res.stderr[-2000:]}")
    row = json.loads(res.stdout.strip().splitlines()[-1])
    return {**row, **probe.summary()}


def run(short: int, long: int, commands: list[str]) -> dict:
    """Measure every command at both lengths; rows and the flatness verdicts."""
    from load import machine

    rows = []
    with tempfile.TemporaryDirectory(prefix="series-scaling-") as tmp:
        for n_t in (short, long):
            folder = Path(tmp) / f"T{n_t}"
            folder.mkdir()
            inputs = make_inputs(folder, n_t)
            for command in commands:
                row = measure(command, inputs, folder / f"{command}.zarr")
                rows.append({"command": command, "timepoints": n_t, "blocks": n_t, **row})
                print(json.dumps(rows[-1]), flush=True)
    verdicts = {}
    for command in commands:
        a, b = (next(r for r in rows if r["command"] == command and r["timepoints"] == n)
                for n in (short, long))
        per_block = (b["wall_s"] - a["wall_s"]) / (long - short)
        ratio = b["peak_rss_mb"] / a["peak_rss_mb"]
        verdicts[command] = {"rss_ratio": round(ratio, 3), "s_per_added_block":
                             round(per_block, 4), "rss_flat": ratio <= 1.15,
                             "time_flat": per_block <= 0.08}
    return {"shape": list(SHAPE), "block": list(SHAPE), "short": short, "long": long,
            "defaults": "CLI, every default (predict: LocalCluster; convert, normalize, binarize, "
                        "segment: threads); the raw series stores its intensity range",
            "machine": machine(), "rows": rows, "verdicts": verdicts}


def table(result: dict) -> str:
    """Markdown table of a :func:`run` result."""
    lines = ["| command | time points (blocks) | wall s | first time point s | client peak "
             "RSS MB | load avg | client CPU/wall | loaded |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        first = "-" if r["first_timepoint_s"] is None else f"{r['first_timepoint_s']:.1f}"
        lines.append(f"| {r['command']} | {r['timepoints']} | {r['wall_s']:.1f} | {first} | "
                     f"{r['peak_rss_mb']:.0f} | {r['load_before']:.2f} / {r['load_after']:.2f} "
                     f"| {r['client_cpu_s'] / max(r['wall_s'], 1e-9):.2f} | "
                     f"{'yes' if r['loaded'] else 'no'} |")
    lines += ["", "| command | RSS ratio (target <= 1.15) | s per added block (target <= 0.08) |",
              "| --- | --- | --- |"]
    for c, v in result["verdicts"].items():
        lines.append(f"| {c} | {v['rss_ratio']} | {v['s_per_added_block']} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[3:], sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--short", type=int, default=100)
    parser.add_argument("--long", type=int, default=1000)
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=COMMANDS)
    parser.add_argument("--name", default="series_scaling")
    args = parser.parse_args()
    result = run(args.short, args.long, args.commands)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=1))
    (RESULTS / f"{args.name}.md").write_text(table(result) + "\n")
    print(table(result))


if __name__ == "__main__":
    HERE = Path(__file__).resolve().parent
    sys.path[:0] = [str(HERE.parent), str(HERE)]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    main()
