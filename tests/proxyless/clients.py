"""The real proxyless clients in subprocesses: Node (``tests/node/xds_client.js``,
``@grpc/grpc-js-xds``) and grpc-python (:mod:`tests.proxyless.python_client`).

Both speak the same JSON-lines protocol (``call``/``try N [TARGET]``), so a test is written once
and run with each. ``install_node_client()`` runs ``npm ci`` in ``tests/node`` when its
``node_modules`` is missing or older than the lock file; a missing ``node``/``npm`` fails the
test (never a skip).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bridge.tasks import within

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / "tests" / "node"
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


class ProxylessClient:
    """Drives one client process over stdin/stdout (JSON lines)."""

    def __init__(self, process: asyncio.subprocess.Process, log: Path) -> None:
        self.process = process
        self.log = log
        self.versions: dict[str, Any] = {}

    async def event(self, timeout: float = 30) -> dict[str, Any]:
        assert self.process.stdout is not None
        raw = await within(self.process.stdout.readline(), timeout)
        if not raw:
            code = await self.process.wait()
            raise AssertionError(f"client exited with {code}:\n{self.stderr_tail()}")
        event: dict[str, Any] = json.loads(raw)
        return event

    def stderr_tail(self, lines: int = 40) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def calls(self, count: int = 8, timeout: float = 60, target: str = "") -> list[str]:
        """``count`` wait-for-ready calls of ``/echo.Echo/Who``: the answering backends, or
        ``error: ...``; ``target``: another channel of the same client (made on first use)."""
        return await self._command("call", count, timeout, target)

    async def tries(self, count: int = 1, timeout: float = 60, target: str = "") -> list[str]:
        """Like :meth:`calls`, failing fast (what an application without wait-for-ready sees)."""
        return await self._command("try", count, timeout, target)

    async def _command(self, command: str, count: int, timeout: float, target: str) -> list[str]:
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command} {count} {target}".strip().encode() + b"\n")
        await self.process.stdin.drain()
        event = await self.event(timeout)
        assert event["event"] == "calls", event
        answers: list[str] = event["answers"]
        return answers


@asynccontextmanager
async def _client(
    argv: Sequence[str], cwd: Path, bootstrap: dict[str, Any], workdir: Path, name: str
) -> AsyncIterator[ProxylessClient]:
    path = workdir / f"{name}-grpc-bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path), "PYTHONPATH": str(REPO)}
    env.pop("GRPC_XDS_BOOTSTRAP_CONFIG", None)
    log_path = workdir / f"{name}-client.log"
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=str(cwd),
            env=env,
        )
    client = ProxylessClient(process, log_path)
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


def node_client(
    target: str, bootstrap: dict[str, Any], workdir: Path, max_seconds: int = 170
) -> AbstractAsyncContextManager[ProxylessClient]:
    """A Node client process with ``GRPC_XDS_BOOTSTRAP`` = ``bootstrap``, calling ``target``."""
    node_dir = install_node_client()
    argv = [_tool("node"), str(SCRIPT), target, str(max_seconds)]
    return _client(argv, node_dir, bootstrap, workdir, "node")


def python_client(
    target: str, bootstrap: dict[str, Any], workdir: Path
) -> AbstractAsyncContextManager[ProxylessClient]:
    """A grpc-python client process with ``GRPC_XDS_BOOTSTRAP`` = ``bootstrap``."""
    argv = [sys.executable, "-m", "tests.proxyless.python_client", target]
    return _client(argv, REPO, bootstrap, workdir, "python")


ClientFactory = Callable[[str, dict[str, Any], Path], AbstractAsyncContextManager[ProxylessClient]]

#: Every real proxyless client the suite runs, by name.
CLIENTS: dict[str, ClientFactory] = {"node": node_client, "python": python_client}
