"""What the client registry records per stream (what /debug/clients and the metrics show) and
how it tells its observers, checked without any gRPC."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

import pytest
from envoy.config.core.v3 import base_pb2

from xds_server.resource import CLUSTER, ENDPOINT
from xds_server.tracking import BaseObserver, ClientRegistry, Nack, StreamInfo, TypeState


class Log(BaseObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def stream_opened(self, stream: StreamInfo) -> None:
        self.calls.append(("opened", stream.stream_id))

    def stream_closed(self, stream: StreamInfo) -> None:
        self.calls.append(("closed", stream.stream_id))

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        self.calls.append(("sent", stream.stream_id, type_url, version, nonce, resources))
        self.calls.append(("origins", origin_times))

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        self.calls.append(("acked", stream.stream_id, type_url, version, nonce))

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        self.calls.append(("nacked", stream.stream_id, type_url, nack.version, nack.message))


class Broken(BaseObserver):
    def stream_opened(self, stream: StreamInfo) -> None:
        raise RuntimeError("observer broke")

    def __repr__(self) -> str:
        return "<the broken observer>"


def envoy(node_id: str = "envoy-1", **fields: object) -> base_pb2.Node:
    return base_pb2.Node(id=node_id, cluster="edge", **fields)


def test_a_stream_shows_its_node_cluster_and_user_agent() -> None:
    registry = ClientRegistry()
    built = envoy(user_agent_name="envoy")
    built.user_agent_build_version.version.major_number = 1
    built.user_agent_build_version.version.minor_number = 40
    built.user_agent_build_version.version.patch = 2
    info = registry.open("ads", built, "edge", "ipv4:127.0.0.1:5000")
    assert (info.node_id, info.node_cluster, info.node_key) == ("envoy-1", "edge", "edge")
    assert (info.method, info.peer) == ("ads", "ipv4:127.0.0.1:5000")
    assert info.user_agent == "envoy/1.40.2"

    grpc_client = envoy(user_agent_name="grpc-python", user_agent_version="1.70.0")
    assert registry.open("ads", grpc_client, "k", "p").user_agent == "grpc-python/1.70.0"
    anonymous = envoy(user_agent_name="curl")
    assert registry.open("ads", anonymous, "k", "p").user_agent == "curl"


def test_streams_get_increasing_ids_and_are_found_by_node() -> None:
    registry = ClientRegistry()
    before = time.time()
    first = registry.open("ads", envoy("envoy-1"), "envoy-1", "p1")
    second = registry.open("cds", envoy("envoy-2"), "envoy-2", "p2")
    third = registry.open("eds", envoy("envoy-1"), "envoy-1", "p3")
    after = time.time()
    assert [first.stream_id, second.stream_id, third.stream_id] == [1, 2, 3]
    assert before <= first.connected_at <= after  # wall clock, shown in /debug/clients
    assert dict(registry.streams) == {1: first, 2: second, 3: third}
    assert registry.by_node("envoy-1") == [first, third]
    assert registry.by_node("envoy-9") == []


def test_the_state_of_a_type_is_created_once_and_kept() -> None:
    info = ClientRegistry().open("ads", envoy(), "envoy-1", "p")
    state = info.state(CLUSTER)
    assert state == TypeState()
    assert info.state(CLUSTER) is state
    assert info.state(ENDPOINT) is not state
    assert set(info.types) == {CLUSTER, ENDPOINT}


def test_sent_acked_and_nacked_are_recorded_and_told_to_observers() -> None:
    registry = ClientRegistry()
    log = Log()
    registry.add_observer(log)
    info = registry.open("ads", envoy(), "envoy-1", "p")

    registry.sent(info, CLUSTER, "v1", "1", 3, [5.0, 6.0])
    registry.acked(info, CLUSTER, "v1", "1")
    registry.sent(info, CLUSTER, "v2", "2", 4)
    before = time.time()
    registry.nacked(info, CLUSTER, "v2", "bad cluster")
    after = time.time()

    state = info.state(CLUSTER)
    assert (state.version_sent, state.version_acked, state.resources_sent) == ("v2", "v1", 4)
    assert state.last_nack is not None
    assert (state.last_nack.version, state.last_nack.message) == ("v2", "bad cluster")
    assert before <= state.last_nack.time <= after
    assert log.calls == [
        ("opened", 1),
        ("sent", 1, CLUSTER, "v1", "1", 3),
        ("origins", (5.0, 6.0)),
        ("acked", 1, CLUSTER, "v1", "1"),
        ("sent", 1, CLUSTER, "v2", "2", 4),
        ("origins", ()),
        ("nacked", 1, CLUSTER, "v2", "bad cluster"),
    ]


def test_a_stream_closes_once() -> None:
    registry = ClientRegistry()
    log = Log()
    registry.add_observer(log)
    info = registry.open("ads", envoy(), "envoy-1", "p")
    registry.close(info)
    registry.close(info)
    assert log.calls == [("opened", 1), ("closed", 1)]
    assert dict(registry.streams) == {}


def test_a_failing_observer_is_logged_and_the_others_are_still_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="xds_server")
    registry = ClientRegistry()
    log = Log()
    registry.add_observer(Broken())
    registry.add_observer(log)
    info = registry.open("ads", envoy(), "envoy-1", "p")
    assert log.calls == [("opened", 1)]
    assert dict(registry.streams) == {1: info}
    [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert error.exc_info is not None
    assert "stream_opened" in error.getMessage()
    assert "<the broken observer>" in error.getMessage()


def test_the_base_observer_accepts_every_event() -> None:
    registry = ClientRegistry()
    registry.add_observer(BaseObserver())
    info = registry.open("ads", envoy(), "envoy-1", "p")
    registry.sent(info, CLUSTER, "v1", "1", 1, [1.0])
    registry.acked(info, CLUSTER, "v1", "1")
    registry.nacked(info, CLUSTER, "v1", "no")
    registry.close(info)
    assert info.state(CLUSTER).version_acked == "v1"
