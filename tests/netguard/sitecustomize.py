"""Loaded by every Python subprocess the tests start (PYTHONPATH points here):
installs the same loopback-only guard as tests/conftest.py in that process."""

from __future__ import annotations

import os

if os.environ.get("GOLEM_TEST_NETGUARD") == "1":
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from netguard.guard import install

    install()
