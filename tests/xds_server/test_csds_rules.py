"""Per-resource status as CSDS reports it, from what a stream was sent, accepted and rejected."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.type.matcher.v3 import node_pb2
from google.protobuf import struct_pb2

from tests.support.xds_resources import eds_cluster
from xds_server.csds import (
    ACKED,
    DOES_NOT_EXIST,
    ERROR,
    NACKED,
    NOT_SENT,
    REQUESTED,
    STALE,
    SYNCED,
    resource_statuses,
)
from xds_server.matching import node_matches
from xds_server.resource import CLUSTER, ENDPOINT, ResourceSet, make_resource
from xds_server.tracking import ClientRegistry, StreamInfo


def stream(method: str = "ADS") -> tuple[ClientRegistry, StreamInfo]:
    registry = ClientRegistry()
    return registry, registry.open(method, base_pb2.Node(id="n1"), "n1", "peer")


def report(
    info: StreamInfo, available: ResourceSet, type_url: str = CLUSTER
) -> dict[str, tuple[int, int, str, str | None]]:
    return {
        s.name: (s.config_status, s.client_status, s.version, s.rejected_version)
        for s in resource_statuses(info.state(type_url), available, 1000.0, 50.0)
    }


def test_sent_then_acked_resources_are_synced_with_the_version_the_node_holds() -> None:
    registry, info = stream()
    a, b = eds_cluster("a"), eds_cluster("b")
    available = ResourceSet(CLUSTER, [a, b])
    info.state(CLUSTER).wildcard = True
    assert report(info, available) == {
        "a": (NOT_SENT, REQUESTED, "", None),
        "b": (NOT_SENT, REQUESTED, "", None),
    }
    registry.sent(info, CLUSTER, "v1", "1", 2, holds={"a": a.version, "b": b.version})
    assert report(info, available)["a"] == (STALE, REQUESTED, "", None)
    registry.acked(info, CLUSTER, "v1", "1")
    assert report(info, available) == {
        "a": (SYNCED, ACKED, a.version, None),
        "b": (SYNCED, ACKED, b.version, None),
    }


def test_a_nacked_change_is_an_error_while_the_node_keeps_its_previous_version() -> None:
    registry, info = stream()
    info.state(CLUSTER).wildcard = True
    a, b = eds_cluster("a"), eds_cluster("b")
    registry.sent(info, CLUSTER, "v1", "1", 2, holds={"a": a.version, "b": b.version})
    registry.acked(info, CLUSTER, "v1", "1")
    bad = eds_cluster("a", connect_timeout_ms=0)
    registry.sent(info, CLUSTER, "v2", "2", 2, holds={"a": bad.version, "b": b.version})
    registry.nacked(info, CLUSTER, "v2", "bad timeout")
    nack = info.state(CLUSTER).last_nack
    assert nack is not None
    assert dict(nack.resources) == {"a": bad.version}  # only what changed was rejected
    available = ResourceSet(CLUSTER, [bad, b])
    assert report(info, available) == {
        "a": (ERROR, NACKED, a.version, bad.version),
        "b": (SYNCED, ACKED, b.version, None),
    }

    # SotW CDS re-sends every cluster: an ACK of the next set accepts "a" as well.
    c = eds_cluster("c")
    holds = {"a": bad.version, "b": b.version, "c": c.version}
    registry.sent(info, CLUSTER, "v3", "3", 3, holds=holds)
    registry.acked(info, CLUSTER, "v3", "3")
    assert report(info, ResourceSet(CLUSTER, [bad, b, c]))["a"] == (
        SYNCED,
        ACKED,
        bad.version,
        None,
    )


def test_an_incremental_ack_does_not_accept_a_rejected_version_it_did_not_carry() -> None:
    registry, info = stream()
    info.state(ENDPOINT).subscribed = ["x", "y"]
    x1, y1 = (make_resource(_assignment(n, 1)) for n in ("x", "y"))
    registry.sent(info, ENDPOINT, "v1", "1", 2, holds={"x": x1.version, "y": y1.version})
    registry.acked(info, ENDPOINT, "v1", "1")
    x2 = make_resource(_assignment("x", 2))
    registry.sent(info, ENDPOINT, "v2", "2", 1, holds={"x": x2.version, "y": y1.version})
    registry.nacked(info, ENDPOINT, "v2", "rejected")
    y2 = make_resource(_assignment("y", 2))  # only y is sent next (x2 is never re-sent)
    registry.sent(info, ENDPOINT, "v3", "3", 1, holds={"x": x2.version, "y": y2.version})
    registry.acked(info, ENDPOINT, "v3", "3")
    found = report(info, ResourceSet(ENDPOINT, [x2, y2]), ENDPOINT)
    assert found["x"] == (ERROR, NACKED, x1.version, x2.version)
    assert found["y"] == (SYNCED, ACKED, y2.version, None)


def test_a_newer_version_not_sent_yet_is_stale_and_a_missing_name_does_not_exist() -> None:
    registry, info = stream("Delta ADS")
    state = info.state(ENDPOINT)
    state.subscribed = ["x", "ghost"]
    x1 = make_resource(_assignment("x", 1))
    registry.sent(info, ENDPOINT, "v1", "1", 1, holds={"x": x1.version})
    registry.acked(info, ENDPOINT, "v1", "1")
    x2 = make_resource(_assignment("x", 2), origin_time=40.0)
    found = list(resource_statuses(state, ResourceSet(ENDPOINT, [x2]), 1000.0, 50.0))
    by_name = {s.name: s for s in found}
    assert by_name["x"].config_status == STALE
    assert by_name["x"].updated == 990.0  # when the bridge got it: 10 s before "now"
    assert (by_name["ghost"].config_status, by_name["ghost"].client_status) == (
        SYNCED,
        DOES_NOT_EXIST,
    )


def _assignment(name: str, port: int) -> endpoint_pb2.ClusterLoadAssignment:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    lb = assignment.endpoints.add().lb_endpoints.add()
    lb.endpoint.address.socket_address.address = "10.0.0.1"
    lb.endpoint.address.socket_address.port_value = port
    return assignment


def test_node_matchers_by_id_and_metadata() -> None:
    node = base_pb2.Node(id="edge-7", cluster="edge")
    node.metadata.update({"zone": "a", "labels": {"tier": "front"}, "canary": True})
    by_id = node_pb2.NodeMatcher()
    by_id.node_id.prefix = "EDGE-"
    assert not node_matches(by_id, node)
    by_id.node_id.ignore_case = True
    assert node_matches(by_id, node)

    by_meta = node_pb2.NodeMatcher()
    matcher = by_meta.node_metadatas.add()
    matcher.path.add().key = "labels"
    matcher.path.add().key = "tier"
    matcher.value.string_match.exact = "front"
    assert node_matches(by_meta, node)
    matcher.value.string_match.exact = "back"
    assert not node_matches(by_meta, node)

    flag = node_pb2.NodeMatcher()
    canary = flag.node_metadatas.add()
    canary.path.add().key = "canary"
    canary.value.bool_match = True
    assert node_matches(flag, node)
    absent = flag.node_metadatas.add()
    absent.path.add().key = "missing"
    absent.value.present_match = False
    assert node_matches(flag, node)
    assert not node_matches(flag, base_pb2.Node(id="x", metadata=struct_pb2.Struct()))
