"""ADS streams over (m)TLS with an explicit node, for the identity tests, and Envoy bootstraps
over mTLS from ``bridge.bootstrap``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from bridge.bootstrap import BootstrapOptions, bootstrap
from bridge.tasks import within
from tests.security.certs import Pem
from tests.support.envoy import Envoy
from xds_server.resource import LISTENER


def credentials(ca_pem: bytes, client: Pem | None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(ca_pem)
    return grpc.ssl_channel_credentials(ca_pem, client.key, client.cert)


def make_node(node_id: str, cluster: str, **metadata: str) -> base_pb2.Node:
    node = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="envoy")
    if metadata:
        node.metadata.CopyFrom(struct_pb2.Struct())
        node.metadata.update(metadata)
    return node


class AdsStream:
    """One SotW ADS stream whose first request carries ``node``."""

    def __init__(self, call: Any, node: base_pb2.Node) -> None:
        self.call = call
        self.node = node
        self._first = True

    async def request(self, type_url: str, names: tuple[str, ...] = ()) -> None:
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names))
        if self._first:
            request.node.CopyFrom(self.node)
            self._first = False
        await self.call.write(request)

    async def response(self, timeout: float = 10) -> Any:
        """The next response; raises :class:`grpc.aio.AioRpcError` when the stream is refused."""
        response = await within(self.call.read(), timeout)
        if response is grpc.aio.EOF:
            raise AssertionError(f"stream ended: {await self.call.code()}")
        return response


@contextlib.asynccontextmanager
async def ads_stream(
    port: int, creds: grpc.ChannelCredentials, node: base_pb2.Node
) -> AsyncIterator[AdsStream]:
    async with grpc.aio.secure_channel(f"127.0.0.1:{port}", creds) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources(
            timeout=60
        )
        try:
            yield AdsStream(call, node)
        finally:
            call.cancel()


def listener_ports(response: Any) -> dict[str, int]:
    """Listener name → port in an LDS response."""
    ports = {}
    for resource in response.resources:
        listener = listener_pb2.Listener()
        resource.Unpack(listener)
        ports[listener.name] = listener.address.socket_address.port_value
    return ports


async def first_listeners(
    port: int, creds: grpc.ChannelCredentials, node: base_pb2.Node
) -> dict[str, int]:
    async with ads_stream(port, creds, node) as stream:
        await stream.request(LISTENER)
        return listener_ports(await stream.response())


def mtls_bootstrap(
    ca_file: Path,
    client: Pem,
    node_id: str,
    cluster: str,
    xds_port: int,
    metadata: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    options = BootstrapOptions(
        node_id=node_id,
        node_cluster=cluster,
        xds_host="127.0.0.1",
        xds_port=xds_port,
        metadata=dict(metadata or {}),
        tls_ca_file=str(ca_file),
        tls_cert_file=str(client.cert_file),
        tls_key_file=str(client.key_file),
        tls_server_name="localhost",
    )
    config = bootstrap(options)
    del config["admin"]  # the harness picks a free admin port
    return config


async def envoy_listener_ports(envoy: Envoy) -> dict[str, int]:
    dump = await envoy.config_dump("dynamic_listeners")
    ports = {}
    for entry in dump.get("configs", []):
        state = entry.get("active_state") or entry.get("warming_state") or {}
        listener = state.get("listener", {})
        ports[entry["name"]] = listener["address"]["socket_address"]["port_value"]
    return ports
