"""Fixtures of the proxyless tests: the Node client installed once per session (``npm ci``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .clients import install_node_client


@pytest.fixture(scope="session")
def node_installed() -> Path:
    """``tests/node`` with its ``node_modules`` (a missing Node/npm fails, never skips)."""
    return install_node_client()
