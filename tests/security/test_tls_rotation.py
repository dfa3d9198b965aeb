"""Certificates renewed without a restart: the xDS listener's certificate, key and client CA
(file events and SIGHUP) with real Envoys over mTLS, the Consul client's TLS files, and the
expiry metric."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import os
import signal
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from cryptography import x509

from bridge.app import Bridge
from bridge.certinfo import not_after
from bridge.config import ConfigError
from bridge.file_watch import relevant
from bridge.security import XdsTls
from bridge.tls_reload import ServerCertificates
from consul_double import ConsulDouble
from tests.security.certs import Pem, ca_file, client_cert, server_cert
from tests.security.mtls import mtls_bootstrap
from tests.support.bridge_env import bridge_config
from tests.support.cli import serving, terminate
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until

SOON = datetime.timedelta(minutes=10)  # a short-lived certificate (long enough for the test)


def expiry_of(pem: bytes) -> float:
    certificate = x509.load_pem_x509_certificate(pem)
    return certificate.not_valid_after_utc.timestamp()


def replace(path: Path, data: bytes) -> None:
    """Renew a file as renewal tools do: write a new one, rename it over the old."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data)
    fresh.chmod(0o600)
    os.replace(fresh, path)


def test_expiry_is_read_from_the_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    now = datetime.datetime.now(datetime.UTC)
    for when in (now + SOON, datetime.datetime(2061, 3, 4, 5, 6, 7, tzinfo=datetime.UTC)):
        pem = server_cert(ca, tmp_path, "s", not_after=when).cert  # 2061: a GeneralizedTime
        assert not_after(pem) == expiry_of(pem) == int(when.timestamp())
    client = client_cert(ca, tmp_path, "c", dns=("c",)).cert  # UTCTime, with a version field
    assert not_after(client) == expiry_of(client)
    for bad in (b"", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"):
        with pytest.raises(ValueError):  # noqa: PT011 (any reason will do)
            not_after(bad)


def test_a_reload_swaps_all_three_files_at_once_or_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ca, other = trustme.CA(), trustme.CA()
    first = server_cert(ca, tmp_path, "first", not_after=datetime.datetime.now(datetime.UTC) + SOON)
    ca_path = ca_file(ca, tmp_path)
    served: list[float] = []
    handshakes: list[int] = []
    certs = ServerCertificates(
        XdsTls(str(first.cert_file), str(first.key_file), str(ca_path)),
        on_served=lambda files: served.append(files.not_after),
        on_handshake=lambda: handshakes.append(1),
    )
    assert served == [expiry_of(first.cert)]
    assert certs.reload() is False  # nothing changed
    assert certs._fetch() is None  # gRPC keeps what it has
    assert handshakes == [1]

    # half a renewal (the new certificate, the old key): refused, the current one stays
    renewed = server_cert(other, tmp_path / "renewed")
    replace(first.cert_file, renewed.cert)
    assert certs.reload() is False
    assert "still serving the certificate expiring" in caplog.text
    assert "is not the key of" in caplog.text
    assert certs._fetch() is None
    assert certs.current.cert == first.cert

    # the whole renewal: new connections get it; gRPC is told once
    replace(first.key_file, renewed.key)
    replace(ca_path, other.cert_pem.bytes())
    assert certs.reload() is True
    assert certs.current.cert == renewed.cert
    assert certs.current.client_ca == other.cert_pem.bytes()
    assert served == [expiry_of(first.cert), expiry_of(renewed.cert)]
    assert certs._fetch() is not None
    assert certs._fetch() is None

    first.cert_file.unlink()
    assert certs.reload() is False  # a missing file: reported, nothing changes
    with pytest.raises(ConfigError):
        ServerCertificates(XdsTls(str(first.cert_file), str(first.key_file)))


def metric(bridge: Bridge, name: str) -> float:
    return bridge.metrics.registry.get_sample_value(name) or 0.0


@contextlib.asynccontextmanager
async def mtls_bridge(
    consul: ConsulDouble, server: Pem, client_ca: Path, xds_port: int
) -> AsyncIterator[Bridge]:
    config = bridge_config(consul)
    config.xds_listen = f"127.0.0.1:{xds_port}"
    config.xds_tls_cert = str(server.cert_file)
    config.xds_tls_key = str(server.key_file)
    config.xds_tls_client_ca = str(client_ca)
    async with Bridge(config) as bridge:
        await until(lambda: bridge.readiness()[0], what="bridge ready")
        yield bridge


@pytest.mark.envoy
async def test_a_renewed_certificate_reaches_new_envoys_and_old_streams_survive(
    tmp_path: Path,
) -> None:
    old_ca, new_ca = trustme.CA(), trustme.CA()
    short_lived = datetime.datetime.now(datetime.UTC) + SOON
    server = server_cert(old_ca, tmp_path / "live", not_after=short_lived)
    client_ca = ca_file(old_ca, tmp_path / "live", "client-ca")
    old_trust = ca_file(old_ca, tmp_path, "old-ca")
    new_trust = ca_file(new_ca, tmp_path, "new-ca")
    old_client = client_cert(old_ca, tmp_path, "edge-1", dns=("edge-1",))
    new_client = client_cert(new_ca, tmp_path, "edge-2", dns=("edge-2",))
    renewed = server_cert(new_ca, tmp_path / "renewed")
    xds_port = free_port()

    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        async with mtls_bridge(consul, server, client_ca, xds_port) as bridge:
            expiry = "consul_xds_tls_certificate_expiry_timestamp_seconds"
            assert metric(bridge, expiry) == expiry_of(server.cert)
            old = mtls_bootstrap(old_trust, old_client, "edge-1", "edge", xds_port)
            async with Envoy(old, name="edge-1") as edge_1:
                await eventually(edge_1.active_clusters, lambda c: "web" in c, what="edge-1")
                streams = [s.stream_id for s in bridge.registry.by_node("edge-1")]
                assert streams

                # renewal: a certificate from another CA, its key, a client CA trusting both
                replace(client_ca, old_ca.cert_pem.bytes() + new_ca.cert_pem.bytes())
                replace(server.key_file, renewed.key)
                replace(server.cert_file, renewed.cert)
                await until(
                    lambda: metric(bridge, expiry) == expiry_of(renewed.cert),
                    what="the renewed certificate served (file watch)",
                )

                # an Envoy that trusts only the new CA connects: it got the new certificate
                new = mtls_bootstrap(new_trust, new_client, "edge-2", "edge", xds_port)
                async with Envoy(new, name="edge-2") as edge_2:
                    await eventually(edge_2.active_clusters, lambda c: "web" in c, what="edge-2")
                    assert await edge_2.stat("cluster.consul_xds_bridge.ssl.handshake") >= 1

                # the old stream was never interrupted, and still carries changes
                assert [s.stream_id for s in bridge.registry.by_node("edge-1")] == streams
                consul.register("api", id="api-1", address="127.0.0.1", port=8081)
                await eventually(edge_1.active_clusters, lambda c: "api" in c, what="api")
                assert [s.stream_id for s in bridge.registry.by_node("edge-1")] == streams
                assert await edge_1.stat("control_plane.connected_state") == 1
            assert metric(bridge, "consul_xds_tls_handshakes_total") >= 2


async def test_sighup_reloads_the_tls_files(tmp_path: Path) -> None:
    ca = trustme.CA()
    server = server_cert(ca, tmp_path, not_after=datetime.datetime.now(datetime.UTC) + SOON)
    async with ConsulDouble() as consul:
        env = {"CONSUL_HTTP_ADDR": consul.url, "PATH": ""}
        flags = ["--xds-tls-cert", str(server.cert_file), "--xds-tls-key", str(server.key_file)]
        async with serving(*flags, env=env) as process:
            assert process.stderr is not None
            process.send_signal(signal.SIGHUP)
            async with asyncio.timeout(20):
                while b"reloading TLS files" not in await process.stderr.readline():
                    pass
            assert process.returncode is None  # SIGHUP does not end the bridge
            stderr = await terminate(process, 20)
    assert process.returncode == 0, stderr


async def test_the_consul_clients_renewed_files_reach_new_connections(tmp_path: Path) -> None:
    """The bridge's client certificate is from a CA Consul does not trust: nothing is read.
    Renewed files (from the right CA) are used by the next connection, without a restart."""
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    wrong = client_cert(trustme.CA(), tmp_path / "live", "bridge", dns=("bridge",))
    right = client_cert(ca, tmp_path / "renewed", "bridge", dns=("bridge",))
    async with ConsulDouble(ssl_context=server_ctx) as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        config = bridge_config(
            consul,
            ca_file=str(ca_file(ca, tmp_path)),
            client_cert=str(wrong.cert_file),
            client_key=str(wrong.key_file),
            backoff_base="50ms",
            backoff_max="0.2s",
        )
        async with Bridge(config) as bridge:
            await until(
                lambda: any(w["last_error"] for w in bridge.watcher.status()["watches"]),
                what="Consul refusing the wrong client certificate",
            )
            assert not bridge.readiness()[0]
            replace(wrong.key_file, right.key)
            replace(wrong.cert_file, right.cert)
            await until(lambda: bridge.readiness()[0], what="ready with the renewed files")


def test_logging_is_quiet_about_unchanged_files(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    server = server_cert(trustme.CA(), tmp_path)
    certs = ServerCertificates(XdsTls(str(server.cert_file), str(server.key_file)))
    for _ in range(3):
        certs.reload()
    assert caplog.records == []


def test_file_events_that_may_be_a_renewal() -> None:
    names = frozenset({"server.pem", "server.key"})
    assert relevant(["/etc/tls/server.pem"], names)
    assert relevant(["/etc/tls/..2024_01_01_00_00_00.123", "/etc/tls/x"], names)  # Kubernetes
    assert not relevant(["/etc/tls/other.pem", "/etc/tls/server.pem.new"], names)
