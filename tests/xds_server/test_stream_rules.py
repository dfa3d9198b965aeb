"""The protocol rules SotW and delta streams share, driven request by request without gRPC:
what a stream refuses, what it tells the registry, when it answers and in which order."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2

from tests.support.stream_harness import NODE, Harness, names
from tests.support.xds_resources import (
    eds_cluster,
    http_listener,
    load_assignment,
    route_config,
)
from xds_server.cache import node_key_by_cluster
from xds_server.delta import DeltaStream
from xds_server.limits import Limits
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE, make_resource
from xds_server.sotw import SotwStream
from xds_server.stream import ProtocolError, eds_name
from xds_server.tracking import BaseObserver, StreamInfo

PROTOCOLS = [pytest.param(SotwStream, id="sotw"), pytest.param(DeltaStream, id="delta")]
Protocol = type[SotwStream] | type[DeltaStream]


def request(h: Harness, type_url: str, names_: list[str] | None = None, nonce: str = "") -> bool:
    """Subscribe (or ACK with ``nonce``) in the stream's own protocol."""
    if isinstance(h.stream, SotwStream):
        return h.sotw(type_url, names_ or [], nonce=nonce)
    return h.delta(type_url, subscribe=names_ or [], nonce=nonce)


def refused(h: Harness, type_url: str, names_: list[str]) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        request(h, type_url, names_)
    return caught.value


def dns_cluster(name: str) -> Any:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.STRICT_DNS)
    cluster.connect_timeout.FromMilliseconds(250)
    return make_resource(cluster)


def eds_cluster_for(name: str, service_name: str) -> Any:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.connect_timeout.FromMilliseconds(250)
    cluster.eds_cluster_config.service_name = service_name
    cluster.eds_cluster_config.eds_config.ads.SetInParent()
    return make_resource(cluster)


def test_an_eds_cluster_waits_for_its_service_name_or_else_its_own_name() -> None:
    assert eds_name(eds_cluster("web").message) == "web"
    assert eds_name(eds_cluster_for("web", "web-endpoints").message) == "web-endpoints"
    assert eds_name(dns_cluster("web").message) is None


# ------------------------------------------------------------------------ what is refused
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_first_request_must_name_a_node_with_an_id(protocol: Protocol) -> None:
    h = Harness(protocol)
    h._first = False  # send no node
    error = refused(h, CLUSTER, [])
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == str(error)
    assert "node with a non-empty id" in error.message
    h = Harness(protocol, node_id="")
    assert refused(h, CLUSTER, []).code == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(h.registry.streams) == {}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_ads_needs_a_known_type_url(protocol: Protocol) -> None:
    h = Harness(protocol)
    missing = refused(h, "", [])
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "must carry a type_url" in missing.message
    unknown = refused(h, "type.googleapis.com/envoy.Nope", [])
    assert unknown.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported resource type 'type.googleapis.com/envoy.Nope'" in unknown.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_per_type_stream_takes_its_type_or_none_and_refuses_others(protocol: Protocol) -> None:
    h = Harness(protocol, fixed_type=CLUSTER)
    h.publish(eds_cluster("a"))
    assert request(h, "", [])  # the type may be left out on a per-type stream
    assert names(h.one()) == ["a"]
    error = refused(h, ENDPOINT, ["a"])
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert error.message == f"this stream serves {CLUSTER}, not {ENDPOINT}"


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_may_name_up_to_the_limit_and_not_more(protocol: Protocol) -> None:
    limits = Limits(max_names_per_request=3, max_name_length=8)
    h = Harness(protocol, limits=limits)
    assert request(h, ENDPOINT, ["a", "b", "c"])
    error = refused(Harness(protocol, limits=limits), ENDPOINT, ["a", "b", "c", "d"])
    assert error.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4 resource names in one endpoint request; the limit is 3" in error.message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_name_may_be_as_long_as_the_limit_and_not_longer(protocol: Protocol) -> None:
    limits = Limits(max_name_length=8)
    assert request(Harness(protocol, limits=limits), ENDPOINT, ["x" * 8])
    error = refused(Harness(protocol, limits=limits), ENDPOINT, ["x" * 9])
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "a resource name of 9 characters exceeds the limit of 8" in error.message


def test_names_gathered_over_several_delta_requests_are_limited_too() -> None:
    h = Harness(DeltaStream, limits=Limits(max_names_per_request=3))
    assert h.delta(ENDPOINT, subscribe=["a", "b"])
    assert h.delta(ENDPOINT, subscribe=["c"])  # three in all: at the limit
    with pytest.raises(ProtocolError) as caught:
        h.delta(ENDPOINT, subscribe=["d"])
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "4 endpoint names subscribed; the limit is 3" in caught.value.message


# --------------------------------------------------------------- registry and cache wiring
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_the_stream_registers_its_node_once_and_releases_everything_on_close(
    protocol: Protocol,
) -> None:
    h = Harness(protocol, node_key=node_key_by_cluster)
    h.stream.close()  # closing a stream that never opened is harmless
    request(h, CLUSTER)
    request(h, ENDPOINT, ["a"])
    [info] = h.registry.streams.values()
    assert (info.node_id, info.node_key, info.method, info.peer) == (NODE, "edge", "ads", "peer-1")
    assert h.stream.info is info
    assert h.cache.watched() == {"edge": h.node}
    assert h.cache.listener_count() == 1

    h.stream.close()
    assert dict(h.registry.streams) == {}
    assert h.cache.watched() == {}
    assert h.cache.listener_count() == 0
    h.publish(eds_cluster("a"))
    assert h.wakeups == 0  # no longer listening


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_nothing_is_sent_before_a_request_or_before_the_node_has_a_snapshot(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    assert h.responses() == []
    request(h, CLUSTER)
    assert h.responses() == []  # no snapshot yet: never an empty state
    h.publish(eds_cluster("a"))
    assert h.wakeups == 1
    assert names(h.one()) == ["a"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_change_wakes_the_stream_only_for_types_it_asked_for(protocol: Protocol) -> None:
    h = Harness(protocol)
    h.publish(eds_cluster("a"), http_listener("l", 10000, "r"))
    assert h.wakeups == 0  # not watching yet
    request(h, CLUSTER)
    cds = h.one()
    request(h, CLUSTER, nonce=cds.nonce)
    assert h.responses() == []
    h.publish(eds_cluster("a"), http_listener("l", 10001, "r"))  # only the listener changed
    assert h.wakeups == 1
    assert h.responses() == []  # LDS was never asked for
    h.publish(eds_cluster("a", connect_timeout_ms=9), http_listener("l", 10001, "r"))
    assert h.wakeups == 2
    assert [r.type_url for r in h.responses()] == [CLUSTER]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_what_a_stream_subscribed_is_shown_to_the_registry(protocol: Protocol) -> None:
    h = Harness(protocol)
    request(h, CLUSTER)
    request(h, ENDPOINT, ["b", "a"])
    [info] = h.registry.streams.values()
    assert (info.state(CLUSTER).subscribed, info.state(CLUSTER).wildcard) == ([], True)
    assert (info.state(ENDPOINT).subscribed, info.state(ENDPOINT).wildcard) == (["a", "b"], False)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_responses_are_recorded_with_their_version_count_and_origin_times(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    timed = make_resource(eds_cluster("a").message, origin_time=42.0)
    h.publish(timed, eds_cluster("b"))
    seen: list[tuple[str, int, tuple[float, ...]]] = []

    class Sent(BaseObserver):
        def response_sent(
            self,
            stream: StreamInfo,
            type_url: str,
            version: str,
            nonce: str,
            resources: int,
            origin_times: Iterable[float],
        ) -> None:
            seen.append((nonce, resources, tuple(origin_times)))

    h.registry.add_observer(Sent())
    request(h, CLUSTER)
    response = h.one()
    [info] = h.registry.streams.values()
    version = response.version_info if protocol is SotwStream else response.system_version_info
    assert info.state(CLUSTER).version_sent == version
    assert info.state(CLUSTER).resources_sent == 2
    assert seen == [(response.nonce, 2, (42.0,))]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_response_of_a_stream_gets_a_new_nonce(protocol: Protocol) -> None:
    h = Harness(protocol)
    h.publish(eds_cluster("a"), load_assignment("a", [1]))
    request(h, CLUSTER)
    request(h, ENDPOINT, ["a"])
    first, second = h.responses()
    assert (first.type_url, second.type_url) == (CLUSTER, ENDPOINT)
    assert first.nonce != second.nonce
    h.ack(first, [])
    h.publish(eds_cluster("a", connect_timeout_ms=9), load_assignment("a", [1]))
    third = h.responses()[0]
    assert third.nonce not in (first.nonce, second.nonce)


# ------------------------------------------------------------------------ ACK and NACK
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_an_ack_is_recorded_and_a_nack_is_recorded_and_logged(
    protocol: Protocol, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xds_server")
    h = Harness(protocol)
    acks: list[str] = []

    class Acks(BaseObserver):
        def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
            acks.append(nonce)

    h.registry.add_observer(Acks())
    h.publish(eds_cluster("a"))
    request(h, CLUSTER)
    first = h.one()
    h.ack(first)
    assert acks == [first.nonce]
    [info] = h.registry.streams.values()
    version = first.version_info if protocol is SotwStream else first.system_version_info
    assert info.state(CLUSTER).version_acked == version
    assert info.state(CLUSTER).last_nack is None

    h.publish(eds_cluster("a", connect_timeout_ms=9))
    second = h.one()
    h.nack(second, error="a: bad timeout")
    nack = info.state(CLUSTER).last_nack
    assert nack is not None
    second_version = second.version_info if protocol is SotwStream else second.system_version_info
    assert (nack.version, nack.message) == (second_version, "a: bad timeout")
    assert info.state(CLUSTER).version_acked == version  # still the last accepted one
    # The stream logs what it isolated as rejected (the NACK itself is logged by the registry's
    # observers, e.g. the bridge's StreamEventLogger, which this harness does not add).
    [isolated] = [r for r in caplog.records if r.name.startswith("xds_server")]
    message = isolated.getMessage()
    for part in (f"'{NODE}'", "rejected cluster 'a'", "no longer sent"):
        assert part in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_request_answering_an_older_response_is_no_ack(protocol: Protocol) -> None:
    h = Harness(protocol)
    h.publish(eds_cluster("a"))
    request(h, CLUSTER)
    response = h.one()
    request(h, CLUSTER, nonce="not-" + response.nonce)
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).version_acked is None
    h.publish(eds_cluster("a", connect_timeout_ms=9))
    assert h.responses() == []  # the response in flight was not answered yet
    h.ack(response)
    assert info.state(CLUSTER).version_acked is not None
    assert [r.type_url for r in h.responses()] == [CLUSTER]


# ------------------------------------------------------------------ make before break
def cluster_and_route_snapshot(h: Harness, clusters: list[str], port: int) -> None:
    h.publish(
        *(eds_cluster(c) for c in clusters),
        *(load_assignment(c, [8000]) for c in clusters),
        http_listener("ingress", port, "routes"),
        route_config("routes", {c: c for c in clusters}),
    )


def subscribe_everything(h: Harness, clusters: list[str]) -> dict[str, Any]:
    """Subscribe CDS, EDS, LDS and RDS and ACK the first responses; returns them by type."""
    request(h, CLUSTER)
    request(h, ENDPOINT, clusters)
    request(h, LISTENER)
    request(h, ROUTE, ["routes"])
    first = {r.type_url: r for r in h.responses()}
    assert list(first) == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
    for type_url, response in first.items():
        h.ack(
            response, clusters if type_url == ENDPOINT else ["routes"] if type_url == ROUTE else []
        )
    return first


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("pending", [LISTENER, ROUTE])
def test_removing_a_cluster_waits_for_an_unanswered_route_update(
    protocol: Protocol, pending: str
) -> None:
    h = Harness(protocol)
    cluster_and_route_snapshot(h, ["a", "b"], 10000)
    subscribe_everything(h, ["a", "b"])
    # b goes away; the listener (or the routes) change at the same time
    h.publish(
        eds_cluster("a"),
        load_assignment("a", [8000]),
        load_assignment("b", [8000]),
        http_listener("ingress", 10001 if pending == LISTENER else 10000, "routes"),
        route_config("routes", {"a": "a"} if pending == ROUTE else {"a": "a", "b": "b"}),
    )
    first = h.responses()
    # CDS holds back (a changed listener also makes its routes go out again)
    assert [r.type_url for r in first] == ([LISTENER, ROUTE] if pending == LISTENER else [ROUTE])
    assert h.responses() == []  # and still does while those responses are unanswered
    for response in first:
        h.ack(response, ["routes"] if response.type_url == ROUTE else [])
    [cds] = h.responses()
    assert cds.type_url == CLUSTER
    assert names(cds) == ["a"] if protocol is SotwStream else list(cds.removed_resources) == ["b"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_adding_a_cluster_does_not_wait_for_route_updates(protocol: Protocol) -> None:
    h = Harness(protocol)
    cluster_and_route_snapshot(h, ["a"], 10000)
    subscribe_everything(h, ["a"])
    h.publish(
        eds_cluster("a"),
        eds_cluster("c"),
        load_assignment("a", [8000]),
        http_listener("ingress", 10001, "routes"),
        route_config("routes", {"a": "a"}),
    )
    assert [r.type_url for r in h.responses()] == [CLUSTER, LISTENER, ROUTE]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_new_or_changed_eds_cluster_resends_its_subscribed_assignment_only(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    h.publish(
        eds_cluster("a"), dns_cluster("d"), load_assignment("a", [1]), load_assignment("x", [1])
    )
    request(h, CLUSTER)
    request(h, ENDPOINT, ["a", "x"])
    cds, eds = h.responses()
    h.ack(cds)
    h.ack(eds, ["a", "x"])
    # a changes; d (a DNS cluster) changes too; x's cluster does not exist: nothing of x is due
    h.publish(
        eds_cluster("a", connect_timeout_ms=9),
        dns_cluster("d2"),
        load_assignment("a", [1]),
        load_assignment("x", [1]),
    )
    cds, eds = h.responses()  # the assignment follows its cluster at once
    assert cds.type_url == CLUSTER
    assert names(eds) == ["a"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_cluster_change_without_an_eds_subscription_sends_only_clusters(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    h.publish(eds_cluster("a"))
    request(h, CLUSTER)
    h.ack(h.one())
    h.publish(eds_cluster("a", connect_timeout_ms=9))
    cds = h.one()
    assert cds.type_url == CLUSTER
    h.ack(cds)
    assert h.responses() == []


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_changed_listener_resends_every_subscribed_route_configuration(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    h.publish(http_listener("ingress", 10000, "r1"), route_config("r1", {}), route_config("r2", {}))
    request(h, LISTENER)
    request(h, ROUTE, ["r1", "r2"])
    lds, rds = h.responses()
    h.ack(lds)
    h.ack(rds, ["r1", "r2"])
    h.publish(http_listener("ingress", 10001, "r1"), route_config("r1", {}), route_config("r2", {}))
    lds, rds = h.responses()  # the route configurations follow their listener at once
    assert lds.type_url == LISTENER
    assert sorted(names(rds)) == ["r1", "r2"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_changed_listener_without_route_subscriptions_sends_only_listeners(
    protocol: Protocol,
) -> None:
    h = Harness(protocol)
    h.publish(http_listener("ingress", 10000, "r1"), route_config("r1", {}))
    request(h, LISTENER)
    h.ack(h.one())
    h.publish(http_listener("ingress", 10001, "r1"), route_config("r1", {}))
    h.ack(h.one())
    assert h.responses() == []
