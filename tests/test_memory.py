"""The allocator settings of :mod:`chunkseg.engine.memory`: freed block buffers are reused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from chunkseg.engine.cluster import _connect

pytestmark = pytest.mark.subprocess

#: a fresh process runs :func:`_buffer_faults` after ``setup`` and prints the faults
_CHILD = """
{setup}
import sys
sys.path.insert(0, {tests!r})
from test_memory import _buffer_faults
print(_buffer_faults())
"""
_PAGES = (64 << 20) // 4096


def _faults(setup: str) -> int:
    # without MALLOC_* variables: a LocalCluster's nanny sets its pre-spawn environment
    # in the process that starts it (e.g. this test session)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    code = _CHILD.format(setup=setup, tests=os.path.dirname(os.path.abspath(__file__)))
    out = subprocess.run([sys.executable, "-c", code],
                         capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_reused_buffers_take_no_new_pages():
    reused = _faults("from chunkseg.engine.memory import reuse_buffers; assert reuse_buffers()")
    # glibc's mmap for large buffers (here forced from 1 MiB): new pages every round
    mapped = _faults("import ctypes; ctypes.CDLL('libc.so.6').mallopt(-3, 1 << 20)")
    assert mapped > 5 * _PAGES
    assert reused < _PAGES // 10


def _buffer_faults() -> int:
    """Minor page faults of 6 rounds of a 64 MiB buffer in this process, after a warm-up
    (a bytearray: plain malloc, no huge pages)."""
    import resource

    bytearray(64 << 20)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(6):
        a = bytearray(64 << 20)
        del a
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
@pytest.mark.cluster
def test_local_cluster_workers_reuse_buffers():
    """The settings act in the worker processes: glibc reads them when a process starts."""
    client, cluster = _connect(None, 1, 1, 30, "2GiB", None, "default", None)
    try:
        faults = list(client.run(_buffer_faults).values())
    finally:
        client.close()
        cluster.close()
    assert faults[0] < _PAGES // 10
