"""The validation gate: a resource Envoy would reject is named, with the field and the rule,
before any node sees it."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm,
)
from google.protobuf import duration_pb2

from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.validation import InvalidResource, check, check_route_domains, validate


def test_resources_the_tests_serve_to_envoy_are_valid() -> None:
    for resource in (
        eds_cluster("web"),
        load_assignment("web", [8080, 8081], weight=3),
        route_config("local", {"web": "web"}),
        http_listener("ingress", 10000, "local"),
    ):
        assert check(resource.message) == [], resource.name


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0, 0), (0, -5), (-1, 0)],
)
def test_a_connect_timeout_that_is_not_positive_is_refused(seconds: int, nanos: int) -> None:
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(eds_cluster("web").message)
    cluster.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=seconds, nanos=nanos))
    problems = check(cluster)
    assert problems, "a zero or negative connect_timeout must be refused"
    assert problems[0].startswith("connect_timeout: ")


def test_a_tiny_but_positive_timeout_is_accepted() -> None:
    cluster = cluster_pb2.Cluster()
    cluster.CopyFrom(eds_cluster("web").message)
    cluster.connect_timeout.CopyFrom(duration_pb2.Duration(nanos=1))
    assert check(cluster) == []


def test_empty_names_and_undefined_enums_are_named() -> None:
    cluster = cluster_pb2.Cluster(name="", connect_timeout=duration_pb2.Duration(seconds=1))
    cluster.type = 99
    problems = check(cluster)
    assert "name: must be at least 1 character(s), got ''" in problems
    assert any(p.startswith("type: 99 is not a defined") for p in problems)


def test_rules_inside_repeated_fields_and_packed_any_are_checked() -> None:
    listener = listener_pb2.Listener(name="l")
    listener.address.socket_address.CopyFrom(address_pb2.SocketAddress(address="0.0.0.0"))
    chain = listener.filter_chains.add()
    chain.filters.add(name="envoy.filters.network.http_connection_manager").typed_config.Pack(
        hcm.HttpConnectionManager(stat_prefix="")
    )
    problems = check(listener)
    prefix = "filter_chains[0].filters[0].typed_config."
    assert prefix + "stat_prefix: must be at least 1 character(s), got ''" in problems
    assert prefix + "route_specifier: one of its fields is required" in problems


def test_a_virtual_host_without_domains_is_refused() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="web")
    assert check(config) == ["virtual_hosts[0].domains: at least 1 item(s) required, got 0"]


def test_out_of_range_numbers_are_refused() -> None:
    assignment = endpoint_pb2.ClusterLoadAssignment()
    assignment.CopyFrom(load_assignment("web", [8080]).message)
    lb = assignment.endpoints[0].lb_endpoints[0]
    lb.load_balancing_weight.value = 0  # weights are >= 1
    problems = check(assignment)
    assert problems == [
        "endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1, got 0"
    ]


def test_validate_raises_with_every_problem() -> None:
    cluster = cluster_pb2.Cluster(name="", connect_timeout=duration_pb2.Duration())
    with pytest.raises(InvalidResource) as caught:
        validate(cluster)
    assert len(caught.value.problems) == 2
    assert "connect_timeout" in str(caught.value)


def test_problems_are_bounded() -> None:
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name="web")
    locality = assignment.endpoints.add()
    for _ in range(500):
        locality.lb_endpoints.add().load_balancing_weight.value = 0
    assert 0 < len(check(assignment)) <= 20


def test_duplicate_domains_collide_case_insensitively() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="Web", domains=["Web", "Web.service.consul"])
    config.virtual_hosts.add(name="web", domains=["web", "web.service.consul"])
    config.virtual_hosts.add(name="api", domains=["api"])
    (dropped,) = check_route_domains(config)
    assert (dropped.index, dropped.name) == (1, "web")
    assert dropped.problem == "domain 'web' is also claimed by virtual host 'Web'"


def test_a_second_catch_all_collides() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="default", domains=["*"])
    config.virtual_hosts.add(name="star", domains=["*"])
    assert [d.problem for d in check_route_domains(config)] == [
        "domain '*' is also claimed by virtual host 'default'"
    ]


def test_precedence_decides_who_keeps_a_contested_domain() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="*", domains=["*", "*.service.consul"])
    config.virtual_hosts.add(name="web", domains=["web"])
    config.virtual_hosts.add(name="unknown_host", domains=["*"])
    dropped = check_route_domains(config, lambda i, vhost: vhost.name != "unknown_host")
    assert [(d.name, d.holder) for d in dropped] == [("*", "unknown_host")]


def test_a_dropped_virtual_host_claims_nothing() -> None:
    config = route_pb2.RouteConfiguration(name="r")
    config.virtual_hosts.add(name="a", domains=["a"])
    config.virtual_hosts.add(name="b", domains=["b", "a"])  # dropped: "b" stays free
    config.virtual_hosts.add(name="c", domains=["b"])
    config.virtual_hosts.add(name="d", domains=["d", "D"])  # lists one domain twice
    dropped = check_route_domains(config)
    assert [(d.name, d.problem) for d in dropped] == [
        ("b", "domain 'a' is also claimed by virtual host 'a'"),
        ("d", "domain 'd' is listed twice"),
    ]
