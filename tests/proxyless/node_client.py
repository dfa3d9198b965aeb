"""The Node proxyless client (``tests/node/xds_client.js``, ``@grpc/grpc-js-xds``) in a subprocess.

``install_node_client()`` runs ``npm ci`` in ``tests/node`` when its ``node_modules`` is missing or
older than the lock file; a missing ``node``/``npm`` fails the test (never a skip).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.tasks import within

NODE_DIR = Path(__file__).resolve().parents[1] / "node"
SCRIPT = NODE_DIR / "xds_client.js"


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not on PATH: the Node proxyless tests need Node.js >= 18 and npm")
    return found


def install_node_client() -> Path:
    """``npm ci`` once per lock file change; returns the ``tests/node`` directory."""
    _tool("node")
    marker = NODE_DIR / "node_modules" / ".package-lock.json"  # written by npm itself
    lock = NODE_DIR / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return NODE_DIR
    result = subprocess.run(
        [_tool("npm"), "ci", "--no-audit", "--no-fund", "--prefer-offline"],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"npm ci in {NODE_DIR} failed:\n{result.stdout}\n{result.stderr}")
    return NODE_DIR


class NodeClient:
    """Drives ``xds_client.js`` over stdin/stdout (JSON lines)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.versions: dict[str, Any] = {}

    async def event(self, timeout: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await within(self.process.stdout.readline(), timeout)
        if not raw:
            code = await self.process.wait()
            raise AssertionError(f"node client exited with {code}:\n{self.stderr_tail()}")
        event: dict[str, Any] = json.loads(raw)
        return event

    def stderr_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def calls(self, count: int = 8, timeout: float = 60) -> list[str]:
        """``count`` calls of ``/echo.Echo/Who``: the answering backends, or ``error: ...``."""
        assert self.process.stdin is not None
        self.process.stdin.write(f"call {count}\n".encode())
        await self.process.stdin.drain()
        event = await self.event(timeout)
        assert event["event"] == "calls", event
        answers: list[str] = event["answers"]
        return answers


@asynccontextmanager
async def node_client(
    target: str, bootstrap: dict[str, Any], workdir: Path, max_seconds: int = 110
) -> AsyncIterator[NodeClient]:
    """A Node client process with ``GRPC_XDS_BOOTSTRAP`` = ``bootstrap``, calling ``target``."""
    node_dir = install_node_client()
    path = workdir / "node-grpc-bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path)}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    log_path = workdir / "node-client.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            _tool("node"),
            str(SCRIPT),
            target,
            str(max_seconds),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=str(node_dir),
            env=env,
        )
    client = NodeClient(process, log_path)
    try:
        ready = await client.event(30)
        assert ready["event"] == "ready", ready
        client.versions = ready
        yield client
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await within(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
