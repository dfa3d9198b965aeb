"""Start-up failures: exit status 2, the setting's key, one line, no traceback — and a port in
use is never shared (a second bridge must not take half of the first one's Envoys)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from consul_double import ConsulDouble
from tests.support.cli import CLI, run_cli
from tests.support.ports import free_port
from tests.support.waiting import eventually
from tests.support.xds_client import XdsClient, names_in
from xds_server.resource import CLUSTER


def assert_start_refused(returncode: int, stderr: str, key: str) -> str:
    assert returncode == 2, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"config error: {key}: "), stderr
    return lines[0]


@pytest.fixture
def port_in_use() -> Iterator[int]:
    """A loopback port another process (here: the test) listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


async def readyz(admin_port: int) -> int:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/readyz") as response,
    ):
        return response.status


async def test_a_second_bridge_on_the_same_xds_port_exits_2_and_the_first_keeps_serving() -> None:
    xds, admin = free_port(), free_port()
    async with ConsulDouble(datacenter="dc1") as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        common = ["--consul-addr", consul.url, "--xds-listen", f"127.0.0.1:{xds}"]
        first = await asyncio.create_subprocess_exec(
            *CLI,
            "serve",
            *common,
            "--admin-listen",
            f"127.0.0.1:{admin}",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            await eventually(lambda: readyz(admin), lambda s: s == 200, 20, what="first ready")
            second = await asyncio.create_subprocess_exec(
                *CLI,
                "serve",
                *common,
                "--admin-listen",
                f"127.0.0.1:{free_port()}",
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            async with asyncio.timeout(60):
                _, stderr = await second.communicate()
            assert second.returncode is not None
            line = assert_start_refused(second.returncode, stderr.decode(), "xds.listen")
            assert f"127.0.0.1:{xds}" in line
            assert "in use" in line
            # The first one still serves its port, alone.
            assert first.returncode is None
            assert await readyz(admin) == 200
            async with XdsClient(f"127.0.0.1:{xds}", "after-the-second") as client:
                await client.send(CLUSTER, [])
                response = await client.recv(timeout=20)
                assert names_in(response) == ["web"]
        finally:
            if first.returncode is None:
                first.kill()
                await first.wait()


def test_an_admin_port_in_use_exits_2_naming_admin_listen(port_in_use: int) -> None:
    done = run_cli(
        "serve",
        "--xds-listen",
        "127.0.0.1:0",
        "--admin-listen",
        f"127.0.0.1:{port_in_use}",
        "--consul-addr",
        "http://127.0.0.1:1",
    )
    line = assert_start_refused(done.returncode, done.stderr, "admin.listen")
    assert "in use" in line


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("192.0.2.1:0", "not an address of this host"),  # TEST-NET-1: never local
        ("999.1.1.1:0", "not an IP address or a name this host resolves"),
    ],
    ids=["foreign-ip", "bad-ip"],
)
def test_an_address_the_host_cannot_listen_on_exits_2(address: str, problem: str) -> None:
    done = run_cli(
        "serve",
        "--xds-listen",
        address,
        "--admin-listen",
        "127.0.0.1:0",
        "--consul-addr",
        "http://127.0.0.1:1",
    )
    line = assert_start_refused(done.returncode, done.stderr, "xds.listen")
    assert problem in line


def test_unreadable_files_exit_2_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_bytes(b"xds:\n  listen: '\xff\xfe'\n")
    done = run_cli("serve", "--config", str(config))
    assert "not UTF-8" in assert_start_refused(done.returncode, done.stderr, "config")

    missing = str(tmp_path / "missing.pem")
    done = run_cli("serve", "--xds-tls-cert", missing, "--xds-tls-key", missing)
    assert missing in assert_start_refused(done.returncode, done.stderr, "xds.tls_cert")
