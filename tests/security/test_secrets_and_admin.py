"""Secrets stay secret (the Consul token in no log line and no admin output), the admin listener
is on loopback by default, and ``/debug/*`` can require a bearer token."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
from pathlib import Path

import aiohttp
import pytest

from bridge.app import Bridge, bridge_config
from bridge.config import load
from bridge.logs import REDACTED
from bridge.tasks import within
from bridge.templating import BUNDLED_DIR, TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config as double_bridge_config
from tests.support.ports import free_port
from tests.support.waiting import until
from tests.support.xds_client import XdsClient, names_in
from xds_server.resource import CLUSTER

TOKEN = "5ecre7-70ken-0f-the-bridge-a1b2c3d4"
WRONG_TOKEN = "wr0ng-70ken-e5f6a7b8-never-valid"
DEBUG_TOKEN = "debug-bearer-9c8d7e6f5a4b"
NODE = "edge-1"


async def admin_outputs(bridge: Bridge, headers: dict[str, str] | None = None) -> dict[str, str]:
    """Every admin endpoint's body, by path."""
    paths = [
        "/healthz",
        "/readyz",
        "/metrics",
        "/debug/clients",
        f"/debug/resources?node={NODE}",
        "/debug/consul",
        "/debug/templates",
    ]
    bodies = {}
    async with aiohttp.ClientSession(headers=headers) as session:
        for path in paths:
            async with session.get(f"http://127.0.0.1:{bridge.admin_port}{path}") as response:
                bodies[path] = f"{response.status} {dict(response.headers)} {await response.text()}"
                if path.startswith(("/debug", "/metrics")):
                    assert response.status == 200, bodies[path]
    return bodies


async def test_consul_token_appears_in_no_log_and_no_admin_output(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_DIR, templates)
    token_file = tmp_path / "consul-token"
    token_file.write_text(TOKEN + "\n")
    seen: dict[str, str] = {}
    acl = {TOKEN: {"service_read": "*", "node_read": True}}
    async with ConsulDouble(acl_tokens=acl) as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")

        # a token Consul does not know: every read is a 403, logged (at warning and debug)
        wrong = double_bridge_config(consul, token=WRONG_TOKEN)
        async with Bridge(wrong, TemplateSource(templates)) as bridge:
            await until(lambda: "HTTP 403" in caplog.text, what="the 403 logged")
            await until(lambda: "HTTP 403" in caplog.text.split("HTTP 403", 1)[1], what="again")
            assert not bridge.readiness()[0]
            seen |= {f"wrong {k}": v for k, v in (await admin_outputs(bridge)).items()}

        # the right token, from a token file: the catalog is read and served
        right = double_bridge_config(consul, token_file=str(token_file))
        assert right.consul.token == TOKEN
        async with Bridge(right, TemplateSource(templates)) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready with the token")
            async with XdsClient(f"127.0.0.1:{bridge.xds_port}", NODE) as client:
                await client.send(CLUSTER)
                assert "web" in names_in(await client.recv())  # the token's read rights at work
                seen |= {f"right {k}": v for k, v in (await admin_outputs(bridge)).items()}
            assert '"count": 1' in seen["right /debug/clients"]
            assert "web" in seen[f"right /debug/resources?node={NODE}"]

    assert len(caplog.records) > 20  # debug logging really was on
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    for secret in (TOKEN, WRONG_TOKEN):
        assert secret not in logged
        for path, body in seen.items():
            assert secret not in body, path
        assert secret not in repr(right) + repr(wrong) + str(right.consul)


async def test_admin_is_on_loopback_by_default_and_debug_takes_a_bearer_token() -> None:
    async with ConsulDouble() as consul:
        config = load(
            {"consul.address": consul.url, "xds.listen": "127.0.0.1:0"},
            {"CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN": DEBUG_TOKEN, "CONSUL_HTTP_TOKEN": TOKEN},
        )
        assert config.describe()["admin.debug_token"]["value"] == "[redacted]"
        assert config.describe()["consul.token"]["value"] == "[redacted]"
        bridge_cfg = bridge_config(config)
        assert bridge_cfg.admin_listen == "127.0.0.1:9102"  # the default: loopback only
        bridge_cfg.admin_listen = "127.0.0.1:0"  # same host, a free port for the test
        async with Bridge(bridge_cfg) as bridge, aiohttp.ClientSession() as session:
            assert bridge._admin is not None
            assert {address[0] for address in bridge._admin.addresses} == {"127.0.0.1"}
            base = f"http://127.0.0.1:{bridge.admin_port}"

            async def status(path: str, authorization: str | None = None) -> int:
                headers = {"Authorization": authorization} if authorization else {}
                async with session.get(base + path, headers=headers) as response:
                    if response.status == 401:
                        assert response.headers["WWW-Authenticate"] == "Bearer"
                        assert DEBUG_TOKEN not in await response.text()
                    return response.status

            for view in ("clients", "consul", "templates", "nope"):
                assert await status(f"/debug/{view}") == 401
                assert await status(f"/debug/{view}", "Bearer wrong") == 401
                assert await status(f"/debug/{view}", DEBUG_TOKEN) == 401  # no "Bearer "
            assert await status("/debug/clients", f"Bearer {DEBUG_TOKEN}") == 200
            assert await status("/debug/consul", f"Bearer {DEBUG_TOKEN}") == 200
            assert await status("/debug/nope", f"Bearer {DEBUG_TOKEN}") == 404
            # health and metrics stay open to probes and scrapers
            assert await status("/healthz") == 200
            assert await status("/metrics") == 200
            outputs = await admin_outputs(bridge, {"Authorization": f"Bearer {DEBUG_TOKEN}"})
            for body in outputs.values():
                assert DEBUG_TOKEN not in body
                assert TOKEN not in body


@pytest.mark.parametrize("log_format", ["text", "json"])
async def test_serve_redacts_the_token_from_a_log_line_that_carries_it(log_format: str) -> None:
    """``serve``'s own log output (not pytest's capture, which bypasses the redacting handler):
    a proxy in front of Consul echoes the token in its error page, the bridge logs that page."""
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        consul.faults.error(
            status=403,
            body=f"ACL not found: the token {TOKEN} is not known here",
            path_prefix="/v1/health/service/",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bridge",
            "serve",
            "--consul-addr",
            consul.url,
            "--xds-listen",
            f"127.0.0.1:{free_port()}",
            "--admin-listen",
            f"127.0.0.1:{free_port()}",
            "--log-format",
            log_format,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={"CONSUL_HTTP_TOKEN": TOKEN, "PATH": ""},
        )
        assert process.stderr is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(30):
                while not any("HTTP 403" in line for line in lines):
                    raw = await process.stderr.readline()
                    assert raw, f"serve exited early: {''.join(lines)}"
                    lines.append(raw.decode())
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            try:
                lines.append((await within(process.stderr.read(), 20)).decode())
                await within(process.wait(), 20)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    output = "".join(lines)
    denied = [line for line in lines if "HTTP 403" in line]
    assert denied, output
    assert TOKEN not in output
    assert f"the token {REDACTED} is not known" in denied[0]
    if log_format == "json":
        assert json.loads(denied[0])["level"] == "warning"
