"""The ``consul-xds-bridge`` command run as a user runs it: a separate process."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator

import aiohttp

from tests.support.ports import free_port
from tests.support.waiting import eventually

CLI = [sys.executable, "-m", "bridge"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run one command to its end (at most a minute); output captured as text."""
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env, check=False
    )


async def _readyz(admin_port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/readyz") as response,
    ):
        return response.status


@contextlib.asynccontextmanager
async def serving(*args: str, env: dict[str, str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """``serve`` on free loopback ports with ``args``, yielded once ``/readyz`` answers 200;
    killed if it still runs at the end (stderr is piped: read it with :func:`terminate`)."""
    admin = free_port()
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "serve",
        "--xds-listen",
        f"127.0.0.1:{free_port()}",
        "--admin-listen",
        f"127.0.0.1:{admin}",
        *args,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:

        async def ready_or_exited() -> int | None:
            if process.returncode is not None:
                return None  # it ended: no point waiting
            return await _readyz(admin)

        status = await eventually(
            ready_or_exited, lambda s: s == 200 or process.returncode is not None, 60, what="ready"
        )
        if status != 200:
            assert process.stderr is not None
            stderr = (await process.stderr.read()).decode()
            raise AssertionError(f"serve exited {process.returncode} before ready:\n{stderr}")
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def terminate(process: asyncio.subprocess.Process, within_seconds: float) -> str:
    """SIGTERM, then wait (bounded) for the exit; its stderr."""
    process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(within_seconds):
        _, stderr = await process.communicate()
    return stderr.decode()
