"""TLS to Consul end to end: a bridge configured through the settings table reads the catalog
from the Consul double serving HTTPS and requiring client certificates (mTLS)."""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from bridge.app import Bridge, bridge_config
from bridge.config import load
from consul_double import ConsulDouble
from tests.security.certs import ca_file, client_cert
from tests.support.waiting import until
from tests.support.xds_client import XdsClient, names_in
from xds_server.resource import CLUSTER


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "consul.test").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED  # the double demands a client certificate
    bridge_cert = client_cert(ca, tmp_path, "bridge", dns=("bridge.test",))
    return {
        "server_ctx": server_ctx,
        "ca_file": str(ca_file(ca, tmp_path)),
        "cert": str(bridge_cert.cert_file),
        "key": str(bridge_cert.key_file),
        "other_ca_file": str(ca_file(trustme.CA(), tmp_path, "other-ca")),
    }


@contextlib.asynccontextmanager
async def bridge_on(consul: ConsulDouble, **flags: str) -> AsyncIterator[Bridge]:
    settings = {
        "consul.address": consul.url,
        "consul.wait": "2s",
        "xds.listen": "127.0.0.1:0",
        "admin.listen": "127.0.0.1:0",
        **{key.replace("__", "."): value for key, value in flags.items()},
    }
    async with Bridge(bridge_config(load(settings, {}))) as bridge:
        yield bridge


def last_errors(bridge: Bridge) -> list[str]:
    return [w["last_error"] for w in bridge.watcher.status()["watches"] if w["last_error"]]


async def test_bridge_reads_the_catalog_over_https_with_a_client_certificate(
    pki: dict[str, Any],
) -> None:
    async with ConsulDouble(ssl_context=pki["server_ctx"]) as consul:
        assert consul.url.startswith("https://")
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        tls = {
            "consul__ca_file": pki["ca_file"],
            "consul__client_cert": pki["cert"],
            "consul__client_key": pki["key"],
        }
        async with bridge_on(consul, **tls, consul__tls_server_name="consul.test") as bridge:
            await until(lambda: bridge.readiness()[0], what="catalog read over HTTPS")
            async with XdsClient(f"127.0.0.1:{bridge.xds_port}", "reader") as client:
                await client.send(CLUSTER)
                assert names_in(await client.recv()) == ["web"]

        # without a client certificate the double ends the handshake: a connection error,
        # reported, and the bridge stays not ready (it never serves an empty catalog)
        no_cert = {"consul__ca_file": pki["ca_file"]}
        async with bridge_on(consul, **no_cert) as bridge:
            await until(lambda: bool(last_errors(bridge)), what="a TLS error reported")
            assert not bridge.readiness()[0]

        # a CA that did not sign the double's certificate: verification fails, same outcome
        wrong_ca = {**tls, "consul__ca_file": pki["other_ca_file"]}
        async with bridge_on(consul, **wrong_ca) as bridge:
            await until(lambda: bool(last_errors(bridge)), what="a verification error reported")
            assert not bridge.readiness()[0]
            assert any(
                "certificate" in e.lower() or "ssl" in e.lower() for e in last_errors(bridge)
            )
