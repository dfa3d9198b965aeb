"""Incremental (delta) xDS rules, request by request without gRPC: what a reconnecting client
is sent, wildcard and named subscriptions, removals and names that do not exist."""

from __future__ import annotations

import pytest

from tests.support.stream_harness import Harness, names, removed
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.delta import DeltaStream
from xds_server.resource import CLUSTER, ENDPOINT, combined_version


def delta() -> Harness:
    return Harness(DeltaStream)


def test_a_reconnect_that_holds_current_versions_is_sent_nothing() -> None:
    h = delta()
    a, b = eds_cluster("a"), eds_cluster("b")
    h.publish(a, b)
    h.delta(CLUSTER, initial={"a": a.version, "b": b.version})
    assert h.responses() == []
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).wildcard is True


def test_a_reconnect_gets_what_differs_and_removals_of_what_is_gone() -> None:
    h = delta()
    a, b = eds_cluster("a"), eds_cluster("b")
    h.publish(a, b)
    h.delta(CLUSTER, initial={"a": a.version, "b": "old", "gone": "1"})
    response = h.one()
    assert names(response) == ["b"]
    assert removed(response) == ["gone"]
    assert response.system_version_info == combined_version([("a", a.version), ("b", b.version)])
    assert [r.version for r in response.resources] == [b.version]


def test_a_named_reconnect_is_sent_only_a_differing_version() -> None:
    h = delta()
    a = load_assignment("a", [1])
    h.publish(a, load_assignment("b", [1]))
    h.delta(ENDPOINT, subscribe=["a", "b"], initial={"a": a.version})
    assert names(h.one()) == ["b"]


def test_the_first_cluster_request_is_wildcard_when_it_names_nothing_or_asks_for_it() -> None:
    for subscribe in ([], ["*"], ["*", "a"]):
        h = delta()
        h.publish(eds_cluster("a"), eds_cluster("b"))
        h.delta(CLUSTER, subscribe=subscribe)
        assert names(h.one()) == ["a", "b"], subscribe
    h = delta()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.delta(CLUSTER, subscribe=["a"])
    assert names(h.one()) == ["a"]


def test_a_wildcard_can_be_added_and_dropped_later() -> None:
    h = delta()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.delta(CLUSTER, subscribe=["a"])
    first = h.one()
    h.delta(CLUSTER, subscribe=["*"], nonce=first.nonce)
    assert names(h.one()) == ["b"]
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).wildcard is True


def test_dropping_the_wildcard_removes_what_is_not_named() -> None:
    h = delta()
    h.publish(eds_cluster("a"), eds_cluster("b"))
    h.delta(CLUSTER, subscribe=["*", "a"])
    first = h.one()
    h.delta(CLUSTER, unsubscribe=["*"], nonce=first.nonce)
    second = h.one()
    assert names(second) == []
    assert removed(second) == ["b"]
    [info] = h.registry.streams.values()
    assert info.state(CLUSTER).wildcard is False


def test_endpoints_never_become_wildcard() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["*"])
    assert h.responses() == []
    [info] = h.registry.streams.values()
    assert info.state(ENDPOINT).wildcard is False


def test_an_unsubscribed_resource_is_no_longer_sent() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]), load_assignment("b", [1]))
    h.delta(ENDPOINT, subscribe=["a", "b"])
    first = h.one()
    h.delta(ENDPOINT, unsubscribe=["b"], nonce=first.nonce)
    assert h.responses() == []  # the client drops it itself: no removal is due
    h.publish(load_assignment("a", [1]), load_assignment("b", [2]))
    assert h.responses() == []  # b is no longer of interest
    h.publish(load_assignment("a", [2]), load_assignment("b", [3]))
    assert names(h.one()) == ["a"]


def test_unsubscribing_a_wildcard_cluster_by_name_keeps_it_known() -> None:
    h = delta()
    h.publish(eds_cluster("a"))
    h.delta(CLUSTER)
    first = h.one()
    h.delta(CLUSTER, unsubscribe=["a"], nonce=first.nonce)
    assert h.responses() == []  # still covered by the wildcard: nothing to send again


def test_a_missing_name_is_reported_once_then_sent_when_it_appears() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["a", "later"])
    first = h.one()
    assert (names(first), removed(first)) == (["a"], ["later"])
    h.ack(first)
    h.publish(load_assignment("a", [2]))
    second = h.one()
    assert (names(second), removed(second)) == (["a"], [])  # not reported missing again
    h.ack(second)
    h.publish(load_assignment("a", [2]), load_assignment("later", [1]))
    assert names(h.one()) == ["later"]


RESUBSCRIBE_BUG = (
    "stream.py Subscription.subscribe marks the subscription dirty only for a new name: a "
    "delta client that subscribes again to a name it already subscribed to gets the resource "
    "(or its removal) only with the next unrelated change of that type"
)


@pytest.mark.xfail(strict=True, reason=RESUBSCRIBE_BUG)
def test_subscribing_again_on_the_same_stream_sends_the_resource_again() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["a"])
    first = h.one()
    h.ack(first)
    h.delta(ENDPOINT, subscribe=["a"])
    assert [names(r) for r in h.responses()] == [["a"]]


@pytest.mark.xfail(strict=True, reason=RESUBSCRIBE_BUG)
def test_subscribing_to_a_missing_name_again_reports_it_again() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["later"])
    first = h.one()
    assert removed(first) == ["later"]
    h.delta(ENDPOINT, subscribe=["later"], nonce=first.nonce)
    assert [removed(r) for r in h.responses()] == [["later"]]


def test_a_forced_resend_goes_out_with_the_next_response_of_its_type() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["a"])
    h.ack(h.one())
    h.delta(ENDPOINT, subscribe=["a"])
    h.delta(ENDPOINT, subscribe=["b"])
    response = h.one()
    assert (names(response), removed(response)) == (["a"], ["b"])


def test_a_resource_gone_from_the_snapshot_is_removed_and_counted() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]), load_assignment("b", [1]))
    h.delta(ENDPOINT, subscribe=["a", "b"])
    first = h.one()
    h.ack(first)
    h.publish(load_assignment("a", [2]))
    second = h.one()
    assert (names(second), removed(second)) == (["a"], ["b"])
    [info] = h.registry.streams.values()
    assert info.state(ENDPOINT).resources_sent == 2
    assert second.system_version_info == combined_version(
        [("a", load_assignment("a", [2]).version)]
    )


def test_a_subscription_on_a_stale_nonce_is_still_applied() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]), load_assignment("b", [1]))
    h.delta(ENDPOINT, subscribe=["a"])
    first = h.one()
    h.delta(ENDPOINT, subscribe=["b"], nonce="stale")
    [info] = h.registry.streams.values()
    assert info.state(ENDPOINT).subscribed == ["a", "b"]
    assert h.responses() == []  # the first response is still unanswered
    h.ack(first)
    assert names(h.one()) == ["b"]


def test_resources_are_sent_in_name_order() -> None:
    h = delta()
    h.publish(*(eds_cluster(n) for n in ("c", "a", "b")))
    h.delta(CLUSTER)
    assert names(h.one()) == ["a", "b", "c"]


def test_a_missing_name_subscribed_again_is_reported_again_with_the_next_response() -> None:
    h = delta()
    h.publish(load_assignment("a", [1]))
    h.delta(ENDPOINT, subscribe=["later"])
    first = h.one()
    assert removed(first) == ["later"]
    h.ack(first)
    h.delta(ENDPOINT, subscribe=["later"])
    h.delta(ENDPOINT, subscribe=["a"])
    response = h.one()
    assert (names(response), removed(response)) == (["a"], ["later"])


def test_a_missing_name_does_not_hold_back_the_names_after_it() -> None:
    h = delta()
    h.publish(load_assignment("b", [1]), load_assignment("c", [1]))
    h.delta(ENDPOINT, subscribe=["a-missing", "b", "c"])
    response = h.one()
    assert (names(response), removed(response)) == (["b", "c"], ["a-missing"])
