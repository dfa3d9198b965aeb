"""TLS, mTLS and the node-id/SAN rule on the bridge's xDS listener, with gRPC clients and a real
Envoy whose bootstrap comes from ``bridge.bootstrap``. Certificates are made at test time."""

from __future__ import annotations

import contextlib
import logging
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bridge.app import Bridge
from bridge.bootstrap import BootstrapOptions, bootstrap
from bridge.tasks import within
from bridge.templating import BUNDLED_DIR, TemplateSource
from consul_double import ConsulDouble
from tests.security.certs import Pem, ca_file, client_cert, server_cert
from tests.support.bridge_env import bridge_config
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until
from tests.support.xds_client import names_in, node
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

SPIFFE_EDGE_1 = "spiffe://mesh/node/edge-1"


@dataclass(frozen=True)
class Pki:
    ca: trustme.CA
    ca_file: Path
    server: Pem
    edge_1: Pem  # SANs: URI spiffe://mesh/node/edge-1, DNS edge-1
    no_sans: Pem  # signed by the CA, only a common name
    stranger: Pem  # SAN DNS edge-1, but signed by another CA

    def channel_credentials(self, client: Pem | None) -> grpc.ChannelCredentials:
        if client is None:
            return grpc.ssl_channel_credentials(self.ca.cert_pem.bytes())
        return grpc.ssl_channel_credentials(self.ca.cert_pem.bytes(), client.key, client.cert)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("xds-pki")
    ca = trustme.CA()
    return Pki(
        ca=ca,
        ca_file=ca_file(ca, directory),
        server=server_cert(ca, directory),
        edge_1=client_cert(ca, directory, "edge-1", uris=(SPIFFE_EDGE_1,), dns=("edge-1",)),
        no_sans=client_cert(ca, directory, "no-sans", common_name="edge-1"),
        stranger=client_cert(trustme.CA(), directory, "stranger", dns=("edge-1",)),
    )


@contextlib.asynccontextmanager
async def tls_bridge(
    pki: Pki,
    mtls: bool = True,
    require_node_san: bool = False,
    templates: Path | None = None,
    xds_port: int = 0,
) -> AsyncIterator[Bridge]:
    """A bridge serving TLS (optionally mTLS / the SAN rule) on xDS, reading a Consul double
    that holds one service, web."""
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        config = bridge_config(consul)
        config.xds_listen = f"127.0.0.1:{xds_port}"
        config.xds_tls_cert = str(pki.server.cert_file)
        config.xds_tls_key = str(pki.server.key_file)
        config.xds_tls_client_ca = str(pki.ca_file) if mtls else ""
        config.xds_require_node_san = require_node_san
        node_config = TemplateSource(templates) if templates is not None else None
        async with Bridge(config, node_config) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            yield bridge


async def first_clusters(
    port: int,
    credentials: grpc.ChannelCredentials | None,
    node_id: str = "edge-1",
    delta: bool = False,
) -> list[str]:
    """Open an ADS stream as ``node_id`` and return the cluster names of the first response
    (raises :class:`grpc.aio.AioRpcError` when the bridge refuses the connection or stream)."""
    target = f"127.0.0.1:{port}"
    channel = (
        grpc.aio.insecure_channel(target)
        if credentials is None
        else grpc.aio.secure_channel(target, credentials)
    )
    async with channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call: Any
        if delta:
            call = stub.DeltaAggregatedResources(timeout=10)
            request: Any = discovery_pb2.DeltaDiscoveryRequest(type_url=CLUSTER)
        else:
            call = stub.StreamAggregatedResources(timeout=10)
            request = discovery_pb2.DiscoveryRequest(type_url=CLUSTER)
        request.node.CopyFrom(node(node_id))
        await call.write(request)
        response = await within(call.read(), 10)
        if response is grpc.aio.EOF:
            raise AssertionError(f"stream ended with {await call.code()}: {await call.details()}")
        call.cancel()
        if delta:
            return sorted(r.name for r in response.resources)
        return sorted(names_in(response))


async def refused(
    port: int, credentials: grpc.ChannelCredentials | None, **kwargs: Any
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await first_clusters(port, credentials, **kwargs)
    return caught.value


async def test_tls_listener_serves_tls_clients_and_refuses_plaintext(pki: Pki) -> None:
    async with tls_bridge(pki, mtls=False) as bridge:
        # server-only TLS: a client that verifies the bridge's certificate needs none of its own
        assert await first_clusters(bridge.xds_port, pki.channel_credentials(None)) == ["web"]
        error = await refused(bridge.xds_port, None)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        # a client that does not trust the bridge's CA does not talk to it either
        untrusted = grpc.ssl_channel_credentials(trustme.CA().cert_pem.bytes())
        assert (await refused(bridge.xds_port, untrusted)).code() == grpc.StatusCode.UNAVAILABLE
        assert bridge.registry.by_node("edge-1") == []


async def test_mtls_refuses_clients_without_a_certificate_from_the_client_ca(pki: Pki) -> None:
    async with tls_bridge(pki, mtls=True) as bridge:
        port = bridge.xds_port
        assert await first_clusters(port, pki.channel_credentials(pki.edge_1)) == ["web"]
        for credentials in (None, pki.channel_credentials(None)):
            assert (await refused(port, credentials)).code() == grpc.StatusCode.UNAVAILABLE
        stranger = pki.channel_credentials(pki.stranger)
        assert (await refused(port, stranger)).code() == grpc.StatusCode.UNAVAILABLE
        # without the SAN rule a valid certificate may claim any node id
        assert await first_clusters(port, pki.channel_credentials(pki.edge_1), "edge-9") == ["web"]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_node_san_rule_denies_another_nodes_id(
    pki: Pki, delta: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xds_server")
    async with tls_bridge(pki, mtls=True, require_node_san=True) as bridge:
        port = bridge.xds_port
        edge_1 = pki.channel_credentials(pki.edge_1)
        error = await refused(port, edge_1, node_id="edge-2", delta=delta)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        details = error.details() or ""
        assert "node id 'edge-2'" in details
        assert f"URI:{SPIFFE_EDGE_1}" in details
        assert "DNS:edge-1" in details
        assert bridge.registry.by_node("edge-2") == []
        assert any("'edge-2'" in r.getMessage() for r in caplog.records)  # the operator sees it

        # the node ids the certificate names: its DNS SAN and its URI SAN
        assert await first_clusters(port, edge_1, "edge-1", delta=delta) == ["web"]
        assert await first_clusters(port, edge_1, SPIFFE_EDGE_1, delta=delta) == ["web"]
        # a certificate without SANs names no node (its common name does not count)
        error = await refused(port, pki.channel_credentials(pki.no_sans), delta=delta)
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED
        assert "no URI or DNS SANs" in (error.details() or "")


def envoy_bootstrap(pki: Pki, node_id: str, xds_port: int, client: Pem) -> dict[str, Any]:
    options = BootstrapOptions(
        node_id=node_id,
        node_cluster="edge",
        xds_host="127.0.0.1",
        xds_port=xds_port,
        metadata={"ingress_port": str(free_port()), "ingress_address": "127.0.0.1"},
        tls_ca_file=str(pki.ca_file),
        tls_cert_file=str(client.cert_file),
        tls_key_file=str(client.key_file),
        tls_server_name="localhost",
    )
    config = bootstrap(options)
    del config["admin"]  # the test harness picks a free admin port
    return config


@pytest.mark.envoy
async def test_envoy_with_generated_mtls_bootstrap_gets_its_config(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xds_server")
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_DIR, templates)
    xds_port = free_port()
    async with tls_bridge(pki, require_node_san=True, templates=templates, xds_port=xds_port):
        config = envoy_bootstrap(pki, "edge-1", xds_port, pki.edge_1)
        tls = config["static_resources"]["clusters"][0]["transport_socket"]["typed_config"]
        assert tls["sni"] == "localhost"
        async with Envoy(config, name="edge-1") as envoy:
            await eventually(envoy.active_clusters, lambda c: "web" in c, what="web via mTLS")
            assert await envoy.stat("cluster.consul_xds_bridge.ssl.handshake") >= 1
            assert await envoy.stat("cluster_manager.cds.update_rejected") == 0

        # the same certificate claiming another node's id gets nothing
        impostor = envoy_bootstrap(pki, "edge-2", xds_port, pki.edge_1)
        envoy = Envoy(impostor, name="impostor")
        try:
            await envoy.start(wait_ready=False)
            await until(
                lambda: any("node id 'edge-2'" in r.getMessage() for r in caplog.records),
                what="the bridge refusing edge-2",
            )
            assert "web" not in await envoy.active_clusters()
        finally:
            await envoy.stop()


#: Every per-type discovery API (SotW and delta), with a resource name to ask for on it.
PER_TYPE_METHODS = [
    (f"/envoy.service.{package}.v3.{service}/{prefix}{noun}", delta, type_url, name)
    for package, service, noun, type_url, name in (
        ("cluster", "ClusterDiscoveryService", "Clusters", CLUSTER, "web"),
        ("endpoint", "EndpointDiscoveryService", "Endpoints", ENDPOINT, "web"),
        ("listener", "ListenerDiscoveryService", "Listeners", LISTENER, "ingress"),
        ("route", "RouteDiscoveryService", "Routes", ROUTE, "routes"),
    )
    for prefix, delta in (("Stream", False), ("Delta", True))
]


async def first_per_type_response(
    port: int,
    credentials: grpc.ChannelCredentials,
    method: str,
    delta: bool,
    type_url: str,
    name: str,
    node_id: str,
) -> grpc.StatusCode:
    """Open ``method`` as ``node_id`` asking for ``name``: OK once a response arrives, else the
    status the stream ended with."""
    request_class: Any = (
        discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
    )
    response_class: Any = (
        discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
    )
    request = request_class(type_url=type_url, node=node(node_id))
    if delta:
        request.resource_names_subscribe.append(name)
    else:
        request.resource_names.append(name)
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
        call: Any = channel.stream_stream(
            method,
            request_serializer=request_class.SerializeToString,
            response_deserializer=response_class.FromString,
        )(timeout=10)
        await call.write(request)
        try:
            response = await within(call.read(), 10)
        except grpc.aio.AioRpcError as error:
            return error.code()
        call.cancel()
        assert response is not grpc.aio.EOF
        assert response.type_url == type_url
        return grpc.StatusCode.OK


async def test_node_san_rule_applies_to_every_per_type_api(pki: Pki) -> None:
    async with tls_bridge(pki, mtls=True, require_node_san=True) as bridge:
        edge_1 = pki.channel_credentials(pki.edge_1)
        impostor: dict[str, grpc.StatusCode] = {}
        itself: dict[str, grpc.StatusCode] = {}
        for method, delta, type_url, name in PER_TYPE_METHODS:
            args = (bridge.xds_port, edge_1, method, delta, type_url, name)
            impostor[method] = await first_per_type_response(*args, node_id="edge-2")
            itself[method] = await first_per_type_response(*args, node_id="edge-1")
        assert len(impostor) == 8
        assert impostor == dict.fromkeys(impostor, grpc.StatusCode.PERMISSION_DENIED)
        assert itself == dict.fromkeys(itself, grpc.StatusCode.OK)
        assert bridge.registry.by_node("edge-2") == []
