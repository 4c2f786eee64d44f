"""The public Python API: every lazily exported name resolves, and import stays light."""

from __future__ import annotations

import subprocess
import sys

import chunkseg


def test_every_public_name_resolves():
    for name in chunkseg.__all__:
        assert getattr(chunkseg, name) is not None, name


def test_import_is_light():
    code = ("import sys, chunkseg; "
            "assert not any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
