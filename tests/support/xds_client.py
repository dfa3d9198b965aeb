"""A plain gRPC xDS client for protocol tests: every request and response is explicit."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2

from bridge.tasks import within
from xds_server.resource import MESSAGE_CLASSES, name_of


def node(node_id: str = "client-1", cluster: str = "test") -> Any:
    return base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="protocol-test")


class XdsClient:
    """One ADS (or per-type) stream; the first request carries the node."""

    def __init__(self, target: str, node_id: str = "client-1", method: str = "") -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.node = node(node_id)
        self._first = True
        #: The latest response received per type (what a real client would ACK next).
        self.latest: dict[str, Any] = {}
        if method:
            self.call: Any = self.channel.stream_stream(
                method,
                request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
                response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
            )()
        else:
            self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(
                self.channel
            ).StreamAggregatedResources()

    async def send(
        self,
        type_url: str,
        names: Iterable[str] = (),
        version: str = "",
        nonce: str = "",
        error: str | None = None,
        with_node: bool | None = None,
    ) -> None:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        if with_node if with_node is not None else self._first:
            request.node.CopyFrom(self.node)
        self._first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(request)

    async def recv(self, timeout: float = 5.0) -> Any:
        response = await within(self.call.read(), timeout)
        if response is grpc.aio.EOF:
            raise AssertionError("stream ended")
        self.latest[response.type_url] = response
        return response

    async def ack(self, response: Any, names: Iterable[str] = ()) -> None:
        await self.send(response.type_url, names, response.version_info, response.nonce)

    async def nack(self, response: Any, last_good: str, names: Iterable[str] = ()) -> None:
        await self.send(response.type_url, names, last_good, response.nonce, error="rejected")

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()

    async def __aenter__(self) -> XdsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def names_in(response: Any) -> list[str]:
    """The resource names a response carries, in order."""
    names = []
    for packed in response.resources:
        message = MESSAGE_CLASSES[packed.type_url]()
        packed.Unpack(message)
        names.append(name_of(message))
    return names


def unpack_all(response: Any) -> list[Any]:
    out = []
    for packed in response.resources:
        message = MESSAGE_CLASSES[packed.type_url]()
        packed.Unpack(message)
        out.append(message)
    return out


class DeltaClient:
    """One delta ADS stream with explicit requests."""

    def __init__(self, target: str, node_id: str = "client-1") -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self.node = node(node_id)
        self._first = True
        self.call: Any = ads_pb2_grpc.AggregatedDiscoveryServiceStub(
            self.channel
        ).DeltaAggregatedResources()

    async def send(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        initial: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        request = delta_request(type_url, subscribe, unsubscribe, nonce, initial)
        if self._first:
            request.node.CopyFrom(self.node)
            self._first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(request)

    async def recv(self, timeout: float = 5.0) -> Any:
        response = await within(self.call.read(), timeout)
        if response is grpc.aio.EOF:
            raise AssertionError("stream ended")
        return response

    async def ack(self, response: Any) -> None:
        await self.send(response.type_url, nonce=response.nonce)

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()

    async def __aenter__(self) -> DeltaClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def delta_versions(response: Any) -> dict[str, str]:
    return {r.name: r.version for r in response.resources}


def delta_request(
    type_url: str,
    subscribe: Iterable[str] = (),
    unsubscribe: Iterable[str] = (),
    nonce: str = "",
    initial: dict[str, str] | None = None,
) -> discovery_pb2.DeltaDiscoveryRequest:
    """A delta request as the tests' clients send it."""
    return discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url,
        resource_names_subscribe=list(subscribe),
        resource_names_unsubscribe=list(unsubscribe),
        response_nonce=nonce,
        initial_resource_versions=initial or {},
    )
