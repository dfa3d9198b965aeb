"""The validation gate on what the bridge builds and renders: each problem names the resource,
the Consul field (or render) it comes from and the rule, and says what is served instead."""

from __future__ import annotations

import dataclasses

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from bridge.bootstrap import BootstrapOptions, bootstrap
from bridge.gate import (
    DOMAIN_COLLISION,
    INVALID,
    RESERVED_CLUSTER_NAMES,
    RESERVED_NAME,
    check_service,
    gate_render,
)
from bridge.model import Instance, ServiceView
from bridge.resources import BuildSettings, BuiltService, build_service
from tests.support.xds_resources import eds_cluster, http_listener
from tests.templates.support import instance
from xds_server.resource import make_resource


def built(name: str, *instances: Instance, **meta: str) -> BuiltService:
    chosen = instances or (instance(name, 1, meta=meta),)
    view = ServiceView(name, ("dc1",), {"dc1": tuple(chosen)})
    return build_service(view, BuildSettings())


def test_reserved_names_are_the_bootstraps_own_clusters() -> None:
    config = bootstrap(BootstrapOptions(node_id="n", node_cluster="c"))
    assert {c["name"] for c in config["static_resources"]["clusters"]} == RESERVED_CLUSTER_NAMES
    assert "consul_xds_bridge" in RESERVED_CLUSTER_NAMES


@pytest.mark.parametrize("name", ["*", "xdstp://x/envoy.config.cluster.v3.Cluster/web"])
def test_names_envoy_reads_as_wildcards_or_locators_are_reserved(name: str) -> None:
    (problem,) = check_service(name, built(name), kept=False)
    assert problem.reason == RESERVED_NAME


def test_a_service_taking_a_reserved_name_is_refused() -> None:
    (problem,) = check_service("consul_xds_bridge", built("consul_xds_bridge"), kept=False)
    assert (problem.type, problem.name, problem.reason) == (
        "cluster",
        "consul_xds_bridge",
        RESERVED_NAME,
    )
    assert problem.source == "Service.Service"
    assert problem.action == "it is left out"
    assert "xDS" in problem.rule


def test_a_valid_service_passes() -> None:
    assert check_service("web", built("web", **{"xds-connect-timeout": "250ms"}), kept=False) == []


def test_a_broken_rule_is_traced_to_the_consul_field() -> None:
    service = built("web")
    service.cluster.connect_timeout.FromNanoseconds(0)  # what a builder bug would produce
    (problem,) = check_service("web", service, kept=True)
    assert problem.reason == INVALID
    assert problem.source == 'Service.Meta["xds-connect-timeout"]'
    assert problem.rule.startswith("connect_timeout: must be greater than 0s")
    assert problem.action == "its last good version is served"


def test_weights_that_add_up_beyond_what_envoy_takes_are_refused() -> None:
    heavy = [dataclasses.replace(instance("web", n), weight_passing=2**31) for n in (1, 2)]
    service = built("web", *heavy)
    (problem,) = check_service("web", service, kept=False)
    assert (problem.type, problem.source) == ("endpoint", "Service.Weights")
    assert "add up to 4294967296" in problem.rule


def routes(*hosts: tuple[str, list[str]]) -> route_pb2.RouteConfiguration:
    config = route_pb2.RouteConfiguration(name="ingress_routes")
    for name, domains in hosts:
        vhost = config.virtual_hosts.add(name=name, domains=domains)
        vhost.routes.add().match.prefix = "/"
        vhost.routes[0].direct_response.status = 200
    return config


def test_colliding_virtual_hosts_are_dropped_and_the_rest_served() -> None:
    config = routes(
        ("Web", ["Web", "Web.service.consul"]),
        ("web", ["web", "web.service.consul"]),
        ("*", ["*", "*.service.consul"]),
        ("unknown_host", ["*"]),
    )
    gated = gate_render([make_resource(config)], {"Web", "web", "*"})
    assert gated.resources is not None
    (served,) = gated.resources
    assert [v.name for v in served.message.virtual_hosts] == ["web", "unknown_host"]  # type: ignore[attr-defined]
    dropped = {(p.name, p.reason, p.service) for p in gated.problems}
    assert dropped == {("Web", DOMAIN_COLLISION, "Web"), ("*", DOMAIN_COLLISION, "*")}
    rules = {p.name: p.rule for p in gated.problems}
    assert rules["Web"] == (
        "domain 'web' is also claimed by virtual host 'web' in route configuration 'ingress_routes'"
    )
    assert rules["*"].startswith("domain '*' is also claimed by virtual host 'unknown_host'")


def test_a_service_named_like_another_services_domain_loses_it() -> None:
    config = routes(
        ("web", ["web", "web.service.consul"]),
        ("web.service.consul", ["web.service.consul", "web.service.consul.service.consul"]),
    )
    gated = gate_render([make_resource(config)], {"web", "web.service.consul"})
    assert [p.name for p in gated.problems] == ["web.service.consul"]


def test_an_invalid_rendered_resource_refuses_the_render() -> None:
    bad = listener_pb2.Listener()
    bad.CopyFrom(http_listener("ingress", 10000, "ingress_routes").message)
    bad.address.socket_address.port_value = 70000
    gated = gate_render([make_resource(bad)], set())
    assert gated.resources is None
    (problem,) = gated.problems
    assert (problem.type, problem.name, problem.reason) == ("listener", "ingress", INVALID)
    assert "port_value: must be at most 65535, got 70000" in problem.rule
    assert problem.action == "the node key keeps its last good listeners and routes"


def test_a_rendered_cluster_may_not_take_a_reserved_name() -> None:
    gated = gate_render([eds_cluster("consul_xds_bridge")], set())
    assert gated.resources is None
    assert [p.reason for p in gated.problems] == [RESERVED_NAME]


def test_collisions_in_an_inline_route_configuration_refuse_the_render() -> None:
    listener = listener_pb2.Listener(name="greeter")
    manager = hcm_pb2.HttpConnectionManager(stat_prefix="greeter")
    manager.route_config.CopyFrom(routes(("a", ["*"]), ("b", ["*"])))
    manager.http_filters.add(name="envoy.filters.http.router")
    listener.api_listener.api_listener.Pack(manager)
    gated = gate_render([make_resource(listener)], set())
    assert gated.resources is None
    assert "route_config 'ingress_routes': domain '*' is also claimed" in gated.problems[0].rule
