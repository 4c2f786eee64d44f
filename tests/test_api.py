"""The public Python API: every lazily exported name resolves to its owner, the type stub
states the same names, and import stays light."""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import chunkseg


def test_every_public_name_resolves_to_the_module_that_owns_it():
    assert chunkseg.__all__ == ["__version__", *chunkseg._LAZY]
    for name, module in chunkseg._LAZY.items():
        obj = getattr(chunkseg, name)
        owner = importlib.import_module(module)
        assert obj is getattr(owner, name), name
        assert name in owner.__all__, f"{module}.__all__ lacks {name}"
        if inspect.isfunction(obj) or inspect.isclass(obj):
            # defined there or in the layer below, never a stale alias
            assert obj.__module__.startswith("chunkseg."), name
    assert sorted(dir(chunkseg)) == sorted(chunkseg.__all__)


def test_unknown_or_broken_names_fail(monkeypatch):
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        chunkseg.nope  # noqa: B018
    monkeypatch.setitem(chunkseg._LAZY, "ghost", "chunkseg.io.store")
    with pytest.raises(AttributeError, match="ghost"):
        chunkseg.ghost  # noqa: B018


def test_type_stub_states_the_lazy_names():
    stub = ast.parse((Path(chunkseg.__file__).parent / "__init__.pyi").read_text())
    stated = {}
    for node in stub.body:
        if isinstance(node, ast.ImportFrom) and node.module.startswith("chunkseg"):
            for alias in node.names:
                assert alias.asname == alias.name, alias.name  # an explicit re-export
                stated[alias.name] = node.module
    assert stated == chunkseg._LAZY


@pytest.mark.subprocess
def test_import_is_light():
    code = ("import sys, chunkseg; "
            "assert not any(m.split('.')[0] in ('tensorflow', 'keras', 'distributed') "
            "for m in sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)
