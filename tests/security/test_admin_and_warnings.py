"""The admin listener's bearer check (any header is a clean 401, the scheme in any case) and the
start-up warnings: a private key others can read, an open admin listener without a token."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
import trustme

from bridge.admin import AdminViews, admin_app, start_admin
from bridge.app import Bridge
from bridge.security import bearer_matches
from bridge.startup_checks import admin_warnings, is_loopback, key_file_warnings
from consul_double import ConsulDouble
from tests.security.certs import server_cert
from tests.support.bridge_env import bridge_config

TOKEN = "debug-70ken-5e6f7a8b"


def test_bearer_scheme_in_any_case_token_exactly() -> None:
    for header in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER {TOKEN}", f"  Bearer   {TOKEN} "):
        assert bearer_matches(header, TOKEN), header
    for header in (TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN.upper()}", "Bearer", "", "Bearer x"):
        assert not bearer_matches(header, TOKEN), header
    assert not bearer_matches("Bearer \udcc3\udca9t\u00e9", TOKEN)  # undecodable bytes: no
    assert not bearer_matches("Bearer ", "")  # no token configured matches nothing


async def raw_status(port: int, header: bytes) -> tuple[int, bytes]:
    """Send ``GET /debug/clients`` with a raw Authorization header (bytes as given)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(
            b"GET /debug/clients HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Authorization: " + header + b"\r\n\r\n"
        )
        await writer.drain()
        async with asyncio.timeout(10):
            response = await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()
    return int(response.split(b" ", 2)[1]), response


async def test_any_authorization_header_gets_a_clean_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    views = AdminViews(lambda: (True, "ok"), debug={"clients": lambda q: (200, {"n": 1})})
    views.debug_token = TOKEN
    runner, port = await start_admin(admin_app(views), "127.0.0.1", 0)
    try:
        for header in ("Bearer é".encode(), b"Bearer \xff\xfe", "Bearer 令牌".encode(), b"\xc3"):
            status, response = await raw_status(port, header)
            assert status == 401, response
            assert TOKEN.encode() not in response
        assert (await raw_status(port, f"bEaReR {TOKEN}".encode()))[0] == 200
    finally:
        await runner.cleanup()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_key_readable_by_every_user_is_named(tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n")
    key.chmod(0o600)
    assert key_file_warnings({"xds.tls_key": str(key), "consul.client_key": ""}) == []
    key.chmod(0o640)  # a group (ssl-cert, a pod's fsGroup) is a deliberate choice
    assert key_file_warnings({"xds.tls_key": str(key)}) == []
    key.chmod(0o644)
    (warning,) = key_file_warnings({"xds.tls_key": str(key), "x": str(tmp_path / "missing")})
    assert warning.startswith(f"xds.tls_key: the private key {key} is readable by every user")
    assert "0644" in warning


def test_an_admin_listener_others_can_reach_needs_a_debug_token() -> None:
    assert admin_warnings("127.0.0.1:9102", "") == []
    assert admin_warnings("[::1]:9102", "") == []
    assert admin_warnings("localhost:9102", "") == []
    assert admin_warnings("0.0.0.0:9102", TOKEN) == []
    for listen in ("0.0.0.0:9102", "[::]:9102", "10.1.2.3:9102", "bridge.internal:9102"):
        (warning,) = admin_warnings(listen, "")
        assert f"admin.listen {listen} is not a loopback address" in warning
        assert "admin.debug_token" in warning
    assert is_loopback("127.8.9.1")
    assert not is_loopback("bridge.internal")


async def test_the_bridge_warns_at_start(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    server = server_cert(trustme.CA(), tmp_path)
    server.key_file.chmod(0o644)
    async with ConsulDouble() as consul:
        config = bridge_config(consul)
        config.xds_tls_cert, config.xds_tls_key = str(server.cert_file), str(server.key_file)
        async with Bridge(config):
            pass
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("xds.tls_key: the private key" in w for w in warnings), warnings
