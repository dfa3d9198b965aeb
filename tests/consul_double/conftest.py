"""Fixtures of the conformance suite: the same HTTP-only tests run against the double and,
when a ``consul`` binary is installed, against a real ``consul agent -dev``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest

from consul_double import ConsulDouble

from .api import ConsulAPI


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def name() -> str:
    """A service name unique to the test (a real agent is shared by the whole session)."""
    return f"svc-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def real_consul_url() -> Iterator[str]:
    # The only skip of the suite: without a consul binary the double alone is checked.
    binary = shutil.which("consul") or pytest.skip("no consul binary on PATH: real agent skipped")
    http_port = free_port()
    args = [
        binary,
        "agent",
        "-dev",
        "-bind=127.0.0.1",
        "-client=127.0.0.1",
        f"-http-port={http_port}",
        "-dns-port=-1",
        "-grpc-port=-1",
        "-grpc-tls-port=-1",
        f"-serf-lan-port={free_port()}",
        f"-serf-wan-port={free_port()}",
        f"-server-port={free_port()}",
        "-node=conformance",
    ]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{http_port}"
        try:
            _wait_ready(url, proc)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    """A leader is elected and the agent's node is in the catalog with a passing serfHealth."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, "consul agent -dev exited during startup"
        with (
            contextlib.suppress(OSError, ValueError),
            urllib.request.urlopen(f"{url}/v1/health/state/passing", timeout=2) as resp,
        ):
            if b"serfHealth" in resp.read():
                return
        time.sleep(0.1)  # an external process: there is no event to await
    raise AssertionError("consul agent -dev did not become ready within 30 s")


@pytest.fixture(params=["double", "real"])
async def consul_api(request: pytest.FixtureRequest) -> AsyncIterator[ConsulAPI]:
    async with aiohttp.ClientSession() as session:
        if request.param == "double":
            async with ConsulDouble(datacenter="dc1") as double:
                yield ConsulAPI("double", double.url, session, double)
            return
        url = request.getfixturevalue("real_consul_url")
        api = ConsulAPI("real", url, session)
        try:
            yield api
        finally:
            for service_id in api.registered:
                await api.put(f"/v1/agent/service/deregister/{service_id}")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
