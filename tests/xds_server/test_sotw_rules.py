"""State-of-the-world rules, request by request without gRPC: stale nonces, wildcard and named
subscriptions, full-state versus only-what-changed responses, placeholders."""

from __future__ import annotations

import logging

import pytest
from envoy.config.endpoint.v3 import endpoint_pb2

from tests.support.stream_harness import Harness, names
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.resource import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    ResourceSet,
    combined_version,
    empty_resource,
)
from xds_server.sotw import SotwStream


def sotw() -> Harness:
    return Harness(SotwStream)


def test_a_request_with_a_stale_nonce_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="xds_server")
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    assert h.sotw(CLUSTER)
    first = h.one()
    assert not h.sotw(CLUSTER, ["a"], nonce="stale")  # would switch to named: ignored
    assert h.responses() == []
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).wildcard is True
    assert info.state(CLUSTER).version_acked is None
    [stale] = [r.getMessage() for r in caplog.records if "stale" in r.getMessage()]
    assert f"stale cluster request on stream {info.stream_id} " in stale
    assert f"(nonce 'stale', latest {first.nonce!r})" in stale
    assert h.ack(first)
    assert info.state(CLUSTER).version_acked == first.version_info


def test_a_wildcard_response_carries_the_set_version_and_a_named_one_its_own() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER)
    wildcard = h.one()
    assert (
        wildcard.version_info == ResourceSet(CLUSTER, [eds_cluster("a"), eds_cluster("b")]).version
    )
    h.sotw(CLUSTER, ["a"], wildcard.version_info, wildcard.nonce)
    named = h.one()
    assert names(named) == ["a"]
    assert named.version_info == combined_version([("a", eds_cluster("a").version)])


def test_an_explicit_wildcard_with_names_still_gets_everything() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER, ["*", "a"])
    assert sorted(names(h.one())) == ["a", "b"]


def test_an_empty_list_after_names_means_nothing_not_everything() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER, ["a"])
    named = h.one()
    assert names(named) == ["a"]
    h.sotw(CLUSTER, [], named.version_info, named.nonce)
    emptied = h.one()
    assert names(emptied) == []
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).subscribed == []
    assert info.state(CLUSTER).wildcard is False


def test_endpoints_and_routes_are_never_wildcard() -> None:
    h = sotw()
    h.publish(load_assignment("a", [1]), route_config("r", {}))
    h.sotw(ENDPOINT)
    h.sotw(ROUTE, ["*"])
    assert h.responses() == []  # nothing named: nothing to answer
    [info] = h.registry.streams.values()
    assert info.state(ENDPOINT).wildcard is False
    assert info.state(ROUTE).wildcard is False


def test_endpoints_send_only_what_the_client_lacks() -> None:
    h = sotw()
    h.publish(load_assignment("a", [1]), load_assignment("b", [1]))
    h.sotw(ENDPOINT, ["a", "b"])
    first = h.one()
    assert sorted(names(first)) == ["a", "b"]
    h.ack(first, ["a", "b"])
    h.publish(load_assignment("a", [1]), load_assignment("b", [2]))
    second = h.one()
    assert names(second) == ["b"]
    # The version still covers everything the client subscribed to.
    assert second.version_info == combined_version(
        [("a", load_assignment("a", [1]).version), ("b", load_assignment("b", [2]).version)]
    )
    h.ack(second, ["a", "b"])
    h.sotw(ENDPOINT, ["a", "b"], second.version_info, second.nonce)
    assert h.responses() == []


def test_a_full_state_response_is_not_repeated_for_the_same_version() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), http_listener("l", 1, "r"))
    h.sotw(CLUSTER)
    first = h.one()
    h.ack(first)
    h.publish(eds_cluster("a"), http_listener("l", 2, "r"))  # the cluster set did not change
    h.sotw(CLUSTER, [], first.version_info, first.nonce)
    assert h.responses() == []


def test_an_assignment_that_disappears_is_not_emptied_before_its_cluster_goes() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), load_assignment("a", [1]), load_assignment("b", [1]))
    h.sotw(CLUSTER)
    h.sotw(ENDPOINT, ["a", "b"])
    cds, eds = h.responses()
    h.ack(cds)
    h.ack(eds, ["a", "b"])
    h.publish(eds_cluster("a"), load_assignment("a", [2]))  # b's assignment is gone
    eds = h.one()
    assert names(eds) == ["a"]  # b is not replaced by an empty placeholder
    h.ack(eds, ["a", "b"])
    # A client that drops b and subscribes to it again asks for it: it gets the placeholder.
    h.sotw(ENDPOINT, ["a"], eds.version_info, eds.nonce)
    assert h.responses() == []
    h.sotw(ENDPOINT, ["a", "b"], eds.version_info, eds.nonce)
    again = h.one()
    assert names(again) == ["b"]
    placeholder = endpoint_pb2.ClusterLoadAssignment()
    again.resources[0].Unpack(placeholder)
    assert placeholder == endpoint_pb2.ClusterLoadAssignment(cluster_name="b")


def test_a_newly_named_cluster_is_sent_with_the_rest_of_the_named_set() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER, ["a"])
    first = h.one()
    h.sotw(CLUSTER, ["a", "b"], first.version_info, first.nonce)
    assert sorted(names(h.one())) == ["a", "b"]


def test_a_named_cluster_removed_from_the_snapshot_is_removed_from_the_client() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER, ["a", "b"])
    first = h.one()
    h.ack(first, ["a", "b"])
    h.publish(eds_cluster("a"))
    second = h.one()
    assert names(second) == ["a"]


def test_a_listener_stream_and_a_route_stream_that_name_nothing_get_no_answer() -> None:
    h = Harness(SotwStream, fixed_type=ROUTE)
    h.publish(route_config("r", {}))
    h.sotw(ROUTE, [])
    assert h.responses() == []
    h = Harness(SotwStream, fixed_type=LISTENER)
    h.publish(http_listener("l", 1, "r"))
    h.sotw(LISTENER, [])
    assert names(h.one()) == ["l"]  # LDS with no names is a wildcard


def test_switching_from_wildcard_to_the_same_names_sends_them_again() -> None:
    h = sotw()
    h.publish(eds_cluster("a"))
    h.sotw(CLUSTER)
    wildcard = h.one()
    h.sotw(CLUSTER, ["a"], wildcard.version_info, wildcard.nonce)
    named = h.one()  # newly named resources are sent even if unchanged
    assert names(named) == ["a"]
    assert named.version_info == wildcard.version_info


def test_a_name_subscribed_and_dropped_before_the_next_answer_sends_nothing() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.sotw(CLUSTER)
    first = h.one()
    # Two requests before the server computes its next answer: "*" + b, then "*" alone.
    h.sotw(CLUSTER, ["*", "b"], first.version_info, first.nonce)
    h.sotw(CLUSTER, ["*"], first.version_info, first.nonce)
    assert h.responses() == []


def test_a_client_narrowing_its_cluster_list_is_answered_while_routes_are_pending() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), eds_cluster("b"), http_listener("l", 1, "r"))
    h.sotw(CLUSTER, ["a", "b"])
    h.sotw(LISTENER)
    cds, lds = h.responses()
    h.ack(cds, ["a", "b"])
    h.ack(lds)
    h.publish(eds_cluster("a"), eds_cluster("b"), http_listener("l", 2, "r"))
    pending_lds = h.one()
    assert pending_lds.type_url == LISTENER  # sent, not answered yet
    h.sotw(CLUSTER, ["a"], cds.version_info, cds.nonce)
    narrowed = h.one()  # the client dropped b itself: nothing to wait for
    assert names(narrowed) == ["a"]


def test_a_request_naming_nothing_still_shows_the_type_as_asked_for() -> None:
    h = sotw()
    h.publish(load_assignment("a", [1]))
    h.sotw(ENDPOINT)
    assert h.responses() == []
    [info] = h.registry.streams.values()
    assert ENDPOINT in info.types  # /debug/clients lists the endpoint subscription


def test_a_changed_cluster_whose_assignment_is_gone_gets_an_empty_one() -> None:
    h = sotw()
    h.publish(eds_cluster("a"), load_assignment("a", [1]))
    h.sotw(CLUSTER)
    h.sotw(ENDPOINT, ["a"])
    cds, eds = h.responses()
    h.ack(cds)
    h.ack(eds, ["a"])
    h.publish(eds_cluster("a", connect_timeout_ms=9))  # and no assignment for it any more
    cds, eds = h.responses()  # the cluster warms until it has an assignment: it gets one
    assert names(eds) == ["a"]
    empty = endpoint_pb2.ClusterLoadAssignment()
    eds.resources[0].Unpack(empty)
    assert empty == endpoint_pb2.ClusterLoadAssignment(cluster_name="a")


def test_the_version_of_a_placeholder_response_is_the_placeholders_own() -> None:
    h = sotw()
    h.publish(load_assignment("x", [1]))
    h.sotw(ENDPOINT, ["missing"])
    response = h.one()
    assert names(response) == ["missing"]
    placeholder = empty_resource(ENDPOINT, "missing")
    assert response.version_info == combined_version([("missing", placeholder.version)])
