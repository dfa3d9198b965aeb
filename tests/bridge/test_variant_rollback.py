"""A NACK rollback of a shared resource applies to the gRPC variant too where it serves the very
same resource (an IP-addressed service's assignment), also after later rebuilds; an emptied
service's endpoints go through the gate and reach the gRPC variant."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2

from bridge.client_kinds import as_grpc_client
from bridge.publisher import Publisher
from tests.templates.support import instance, updates
from xds_server import ENDPOINT, SnapshotCache


def publisher_with_grpc_key() -> Publisher:
    publisher = Publisher(SnapshotCache(), debounce=0)
    publisher.set_datacenters(["dc1"])
    publisher.key_opened("g~grpc", as_grpc_client(base_pb2.Node(id="g")))
    return publisher


def publish(publisher: Publisher, *instances: object) -> None:
    publisher.submit(updates(*instances))  # type: ignore[arg-type]
    publisher.flush()


async def test_a_rolled_back_assignment_is_rolled_back_for_grpc_nodes_too() -> None:
    publisher = publisher_with_grpc_key()
    publish(publisher, instance("web", 1))
    first = publisher.endpoints["web"]
    assert publisher.grpc.endpoints["web"] is first  # one resource in both variants
    publish(publisher, instance("web", 1), instance("web", 2))
    second = publisher.endpoints["web"]
    assert second.version != first.version
    assert publisher.grpc.endpoints["web"].version == second.version

    publisher._roll_back(ENDPOINT, second, "NACK from node 'e'", "nope", "e")
    assert publisher.endpoints["web"].version == first.version
    assert publisher.grpc.endpoints["web"].version == first.version

    publisher._rebuild({"web": 0.0})  # the rejected content built again: the rollback stays
    assert publisher.endpoints["web"].version == first.version
    assert publisher.grpc.endpoints["web"].version == first.version

    publish(publisher, instance("web", 3))  # new content: served in both variants
    assert publisher.endpoints["web"].version not in (first.version, second.version)
    assert publisher.grpc.endpoints["web"].version == publisher.endpoints["web"].version
