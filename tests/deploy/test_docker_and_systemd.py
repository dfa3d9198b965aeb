"""The container image's entrypoint and health check, the Dockerfile's promises, the systemd
unit and the LICENSE."""

from __future__ import annotations

import asyncio
import configparser
import hashlib
import os
import re
import shlex
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from bridge.admin import admin_app
from bridge.cli import _parser
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deploy" / "docker"
ADMIN = "CONSUL_XDS_BRIDGE_ADMIN_LISTEN"
TOKEN = "CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN"


def entrypoint(env: dict[str, str], tmp_path: Path) -> str:
    """What admin address the entrypoint hands the bridge (a stand-in bridge prints it)."""
    fake = tmp_path / "consul-xds-bridge"
    fake.write_text(f'#!/bin/sh\necho "${ADMIN} $*"\n')
    fake.chmod(0o755)
    done = subprocess.run(
        [str(DOCKER / "entrypoint.sh"), "serve"],
        env={"PATH": f"{tmp_path}:/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return done.stdout.strip()


def test_the_admin_listener_stays_on_loopback_unless_a_debug_token_is_set(tmp_path: Path) -> None:
    assert entrypoint({}, tmp_path) == "127.0.0.1:9102 serve"
    assert entrypoint({TOKEN: "t0ken-value"}, tmp_path) == "0.0.0.0:9102 serve"
    assert entrypoint({TOKEN: "t0ken-value", ADMIN: "127.0.0.1:9200"}, tmp_path) == (
        "127.0.0.1:9200 serve"
    )


@pytest.fixture
async def admin_port() -> AsyncIterator[int]:
    """The bridge's admin app (healthy) on a loopback port."""
    runner = web.AppRunner(admin_app(lambda: (True, "ok")))
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield port
    await runner.cleanup()


async def healthcheck(env: dict[str, str], cmdline: list[str], tmp_path: Path) -> int:
    path = tmp_path / "cmdline"
    path.write_bytes("\0".join(cmdline).encode() + b"\0")
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(DOCKER / "healthcheck.py"),
        env={**env, "CONSUL_XDS_BRIDGE_HEALTHCHECK_CMDLINE": str(path)},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return await process.wait()


async def test_the_health_check_follows_admin_listen(admin_port: int, tmp_path: Path) -> None:
    bridge = ["consul-xds-bridge", "serve"]
    assert await healthcheck({ADMIN: f"0.0.0.0:{admin_port}"}, bridge, tmp_path) == 0
    assert await healthcheck({ADMIN: f"127.0.0.1:{admin_port}"}, bridge, tmp_path) == 0
    flag = [*bridge, "--admin-listen", f"0.0.0.0:{admin_port}"]
    assert await healthcheck({ADMIN: "127.0.0.1:1"}, flag, tmp_path) == 0  # the flag wins
    assert await healthcheck({}, [*bridge, f"--admin-listen=127.0.0.1:{admin_port}"], tmp_path) == 0
    assert await healthcheck({ADMIN: f"127.0.0.1:{free_port()}"}, bridge, tmp_path) == 1


def test_the_dockerfile_runs_non_root_with_labels_and_the_health_check() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001$", text, re.MULTILINE)
    assert ADMIN not in text  # the entrypoint decides, from the debug token
    assert 'ENTRYPOINT ["consul-xds-bridge-entrypoint"]' in text
    assert "COPY deploy/docker/entrypoint.sh /usr/local/bin/consul-xds-bridge-entrypoint" in text
    (check,) = re.findall(r"HEALTHCHECK .*\n\s*CMD (.*)", text)
    assert "/usr/local/lib/consul-xds-bridge/healthcheck.py" in check
    assert (
        "COPY deploy/docker/healthcheck.py /usr/local/lib/consul-xds-bridge/healthcheck.py" in text
    )
    for label in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{label}=" in text
    assert 'org.opencontainers.image.licenses="Apache-2.0"' in text
    for copied in re.findall(r"^COPY (\S+)", text, re.MULTILINE):
        assert (ROOT / copied).exists(), copied


def test_the_systemd_unit_runs_a_real_serve_command_hardened() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(ROOT / "deploy" / "systemd" / "consul-xds-bridge.service")
    service = unit["Service"]
    command = shlex.split(service["ExecStart"])
    assert command[0].endswith("/consul-xds-bridge")
    assert _parser().parse_args(command[1:]).command == "serve"
    assert service["RestartPreventExitStatus"] == "2"  # a configuration error
    assert int(service["TimeoutStopSec"]) > 15  # the bridge's shutdown bound
    assert service["DynamicUser"] == "yes"
    assert service["NoNewPrivileges"] == "yes"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_the_license_is_the_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_bytes()
    assert hashlib.md5(text).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    assert b"Apache License\n                           Version 2.0, January 2004" in text
    assert os.access(DOCKER / "entrypoint.sh", os.X_OK)
