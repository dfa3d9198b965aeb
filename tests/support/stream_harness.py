"""Drives one SotW or delta stream's protocol state directly (no gRPC): requests in, the
responses it would send out. For rules that a gRPC client can only observe indirectly."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from tests.support.xds_client import delta_request
from xds_server.cache import NodeKeyFunc, Snapshot, SnapshotCache, node_key_by_id
from xds_server.delta import DeltaStream
from xds_server.limits import Limits
from xds_server.resource import MESSAGE_CLASSES, Resource, name_of
from xds_server.sotw import SotwStream
from xds_server.tracking import ClientRegistry

NODE = "envoy-1"


class Harness:
    """One stream of ``protocol`` for node ``NODE`` on a fresh cache."""

    def __init__(
        self,
        protocol: type[SotwStream] | type[DeltaStream],
        fixed_type: str | None = None,
        limits: Limits | None = None,
        node_key: NodeKeyFunc = node_key_by_id,
        node_id: str = NODE,
    ) -> None:
        self.cache = SnapshotCache(node_key)
        self.registry = ClientRegistry()
        self.wakeups = 0
        self.node = base_pb2.Node(id=node_id, cluster="edge")
        self.stream: SotwStream | DeltaStream = protocol(
            self.cache, self.registry, "ads", "peer-1", self._wake, fixed_type, limits
        )
        self._first = True

    def _wake(self) -> None:
        self.wakeups += 1

    def publish(self, *resources: Resource) -> None:
        self.cache.set_snapshot(self.cache.node_key(self.node), Snapshot.of(resources))

    def _with_node(self, request: Any, error: str | None) -> Any:
        if self._first:
            request.node.CopyFrom(self.node)
            self._first = False
        if error is not None:
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        return request

    def sotw(
        self,
        type_url: str,
        names: Iterable[str] = (),
        version: str = "",
        nonce: str = "",
        error: str | None = None,
    ) -> bool:
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            version_info=version,
            response_nonce=nonce,
        )
        return self.stream.handle_request(self._with_node(request, error))

    def delta(
        self,
        type_url: str,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        nonce: str = "",
        initial: dict[str, str] | None = None,
        error: str | None = None,
    ) -> bool:
        request = delta_request(type_url, subscribe, unsubscribe, nonce, initial)
        return self.stream.handle_request(self._with_node(request, error))

    def responses(self) -> list[Any]:
        return self.stream.next_responses()

    def one(self) -> Any:
        """The one response due now."""
        responses = self.responses()
        assert len(responses) == 1, [r.type_url for r in responses]
        return responses[0]

    def ack(self, response: Any, names: Iterable[str] = ()) -> bool:
        """ACK ``response`` (SotW: naming ``names``; delta: no change of subscription)."""
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            return self.delta(response.type_url, nonce=response.nonce)
        return self.sotw(response.type_url, names, response.version_info, response.nonce)

    def nack(self, response: Any, names: Iterable[str] = (), error: str = "rejected") -> bool:
        if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
            return self.delta(response.type_url, nonce=response.nonce, error=error)
        return self.sotw(response.type_url, names, "", response.nonce, error=error)


def names(response: Any) -> list[str]:
    """The names of the resources a SotW or delta response carries, in order."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [r.name for r in response.resources]
    out = []
    for packed in response.resources:
        message = MESSAGE_CLASSES[packed.type_url]()
        packed.Unpack(message)
        out.append(name_of(message))
    return out


def removed(response: Any) -> list[str]:
    return list(response.removed_resources)
