"""Screenshot of the dask dashboard during a real ``chunkseg predict`` run (for the README).

Starts ``chunkseg predict`` with every default but ``--block`` (32 x 128 x 128: short
tasks, so that the task stream shows many) and ``--dashboard-address``, on a synthetic
40 x 64 x 256 x 256 series, waits until some time points are logged in ``progress.jsonl``, takes
a screenshot of the dashboard's status page with headless Chromium (Debian package
``chromium``) driven over the DevTools protocol (the page draws its plots over a
websocket after loading, which ``chromium --screenshot`` does not wait for) and of the
worker's page, which lists the keys of the tasks it is processing (the status page's
tooltips show only their group, ``predict``), then stops the run it started.

Usage: ``python benchmarks/dashboard_screenshot.py --out docs/dashboard.png`` (the
dashboard needs bokeh: ``pip install chunkseg[dashboard]``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make_series(path: Path, n_t: int, shape: tuple[int, int, int]) -> None:
    """A raw uint16 series of smooth noise with a stored intensity range."""
    import dask.array as da
    import numpy as np

    from chunkseg.engine.blocks import write_volume
    from chunkseg.io.store import create_image, mark_complete

    rng = np.random.default_rng(0)
    data = rng.integers(100, 4000, size=(n_t, *shape), dtype=np.uint16)
    create_image(path, shape=data.shape, dtype=data.dtype,
                 attrs={"kind": "raw", "normalization": {"low": 100.0, "high": 4000.0}})
    write_volume(da.from_array(data, chunks=(1, *shape)), path, progress=False)
    mark_complete(path)


async def _cdp_screenshots(base: str, status_png: str, tasks_png: str, *, wait: float,
                           size=(1400, 900), port: int = 9333) -> None:
    """Headless Chromium on the dashboard at ``base``: the status page after ``wait``
    seconds (``status_png``), then the page of the first worker, which lists the keys of
    the tasks it is processing (``tasks_png``)."""
    from tornado.websocket import websocket_connect

    browser = subprocess.Popen(["chromium", "--headless=new", "--no-sandbox", "--disable-gpu",
                                "--hide-scrollbars", f"--window-size={size[0]},{size[1]}",
                                f"--remote-debugging-port={port}", "about:blank"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(150):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/json") as resp:
                    page = next(t for t in json.load(resp) if t["type"] == "page")
                break
            except (OSError, StopIteration):
                await asyncio.sleep(0.2)
        ws = await websocket_connect(page["webSocketDebuggerUrl"], max_message_size=1 << 28)
        calls = iter(range(1, 1 << 30))

        async def call(method: str, **params):
            n = next(calls)
            ws.write_message(json.dumps({"id": n, "method": method, "params": params}))
            while True:
                msg = json.loads(await ws.read_message())
                if msg.get("id") == n:
                    return msg.get("result", {})

        async def shot(url: str, out: str, seconds: float) -> None:
            await call("Page.navigate", url=url)
            await asyncio.sleep(seconds)
            data = (await call("Page.captureScreenshot", format="png"))["data"]
            Path(out).write_bytes(base64.b64decode(data))

        await call("Emulation.setDeviceMetricsOverride", width=size[0], height=size[1],
                   deviceScaleFactor=1, mobile=False)
        await shot(f"{base}/status", status_png, wait)
        await call("Page.navigate", url=f"{base}/info/main/workers.html")
        links: list[str] = []
        while not links:  # the first worker's page, once the list has loaded
            await asyncio.sleep(0.5)
            found = await call("Runtime.evaluate", returnByValue=True, expression=(
                "Array.from(document.querySelectorAll('a')).map(a => a.href).join(' ')"))
            links = [u for u in found["result"].get("value", "").split() if "/info/worker/" in u]
        await shot(links[0], tasks_png, 2)
    finally:
        browser.terminate()
        browser.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "dashboard.png"))
    parser.add_argument("--tasks-out", default=str(ROOT / "docs" / "dashboard_tasks.png"))
    parser.add_argument("--port", type=int, default=8787)
    parser.add_argument("--timepoints", type=int, default=40)
    parser.add_argument("--after", type=int, default=3, help="time points done before the shot")
    parser.add_argument("--block", type=int, nargs=3, default=(32, 128, 128))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dashboard-") as tmp:
        raw, out = Path(tmp) / "raw.ome.zarr", Path(tmp) / "prob.ome.zarr"
        make_series(raw, args.timepoints, (64, 256, 256))
        run = subprocess.Popen([sys.executable, "-m", "chunkseg", "predict", str(raw), "--out",
                                str(out), "--block", *map(str, args.block), "--dashboard-address",
                                f":{args.port}", "--quiet"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            log = out / "progress.jsonl"
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline and run.poll() is None:
                if log.is_file() and len(log.read_text().splitlines()) >= args.after:
                    break
                time.sleep(1)
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            asyncio.run(_cdp_screenshots(f"http://127.0.0.1:{args.port}", args.out,
                                         args.tasks_out, wait=10))
            print((log.read_text() if log.is_file() else "no time point finished yet"))
        finally:
            os.kill(run.pid, signal.SIGINT)
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
    print(f"wrote {args.out} and {args.tasks_out}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
