"""asyncssh is imported through requestor.ssh._asyncssh: its library lookup answers
from the loader's cache, as the stdlib's does wherever a library is there."""

from __future__ import annotations

import ast
import ctypes.util
from pathlib import Path

import pytest

from requestor.ssh import _asyncssh

REQUESTOR = Path(__file__).resolve().parents[2] / "requestor"


@pytest.mark.parametrize("name", ["c", "m", "z", "nettle", "oqs", "liboqs", "no-such-lib-x"])
def test_the_quick_lookup_agrees_with_the_stdlib(name: str) -> None:
    assert _asyncssh._find_in_loader_cache(name) == ctypes.util.find_library(name)


def test_asyncssh_found_the_optional_libraries_the_stdlib_finds() -> None:
    from asyncssh.crypto import umac

    assert bool(umac._nettle_lib) == bool(ctypes.util.find_library("nettle"))


def test_no_module_imports_asyncssh_directly() -> None:
    direct = []
    for path in REQUESTOR.rglob("*.py"):
        if path.name == "_asyncssh.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import) and any(a.name == "asyncssh" for a in node.names):
                direct.append(f"{path.relative_to(REQUESTOR)}:{node.lineno}")
    assert direct == [], "import asyncssh through requestor.ssh._asyncssh"
