"""The same chains for proxyless gRPC clients: what gRPC implements is kept, the rest is dropped
with a warning that names the entry and the field."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc

from bridge.resources import BuildSettings, BuiltService
from bridge.traffic import EntryProblem, grpc_resources

from .helpers import (
    VERSIONED,
    compiled,
    defaults,
    resolver,
    router,
    splitter,
    valid,
    versioned_web,
    view,
)

SETTINGS = BuildSettings()
CATALOG = {"web": view("web", {"dc1": versioned_web()}), "api": view("api", {"dc1": []})}


def for_grpc(
    *raw: dict[str, Any],
) -> tuple[list[rc.Route], dict[str, BuiltService], set[tuple[str, str]]]:
    """(routes, clusters by name, {(field, message)}) of web's chain for gRPC clients."""
    result = compiled("web", defaults("web", "grpc"), defaults("api", "grpc"), *raw)
    assert result.chain is not None, result.problems
    routes, built, warnings = grpc_resources(result.chain, CATALOG, SETTINGS)
    assert valid(*routes, *(b.cluster for b in built))
    return routes, {b.cluster.name: b for b in built}, {(w.field, w.message) for w in warnings}


def fields(warnings: set[tuple[str, str]]) -> set[str]:
    return {field for field, _ in warnings}


def test_what_grpc_supports_is_kept_without_warnings() -> None:
    routes, clusters, warnings = for_grpc(
        resolver(
            "web",
            Subsets=VERSIONED,
            RequestTimeout="3s",
            LoadBalancer={
                "Policy": "ring_hash",
                "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}],
            },
        ),
        splitter(
            "web", {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}
        ),
        router(
            "web",
            {
                "Match": {
                    "HTTP": {
                        "PathPrefix": "/pkg.Svc/",
                        "Header": [{"Name": "x-tier", "Exact": "gold"}],
                    }
                },
                "Destination": {
                    "ServiceSubset": "v2",
                    "NumRetries": 2,
                    "RetryOn": ["unavailable", "cancelled"],
                },
            },
        ),
    )
    assert warnings == set()
    gold, catch_all = routes
    assert gold.match.headers[0].string_match.exact == "gold"
    assert gold.route.retry_policy.retry_on == "unavailable,cancelled"
    assert gold.route.retry_policy.num_retries.value == 2
    assert gold.route.max_stream_duration.max_stream_duration.seconds == 3  # resolver timeout
    assert [c.weight.value for c in catch_all.route.weighted_clusters.clusters] == [9000, 1000]
    assert catch_all.route.hash_policy[0].header.header_name == "x-user"
    assert clusters["web~v1"].cluster.lb_policy == cluster_pb2.Cluster.RING_HASH


def test_destination_settings_grpc_ignores_are_dropped_with_warnings() -> None:
    routes, _, warnings = for_grpc(
        router(
            "web",
            {
                "Match": {"HTTP": {"PathPrefix": "/pkg.Svc/"}},
                "Destination": {
                    "PrefixRewrite": "/other.Svc/",
                    "IdleTimeout": "30s",
                    "RequestHeaders": {"Set": {"x-a": "1"}},
                    "ResponseHeaders": {"Remove": ["x-b"]},
                    "NumRetries": 3,
                    "RetryOn": ["5xx", "unavailable"],
                    "RetryOnConnectFailure": True,
                    "RetryOnStatusCodes": [503],
                },
            },
        )
    )
    prefix = "Routes[0].Destination."
    assert {
        prefix + name
        for name in (
            "PrefixRewrite",
            "IdleTimeout",
            "RequestHeaders",
            "ResponseHeaders",
            "RetryOn",
            "RetryOnConnectFailure",
            "RetryOnStatusCodes",
        )
    } == fields(warnings)
    assert any("'5xx' dropped" in message for _, message in warnings)
    route = routes[0]
    assert route.route.prefix_rewrite == ""
    assert not route.route.HasField("idle_timeout")
    assert not route.request_headers_to_add
    assert not route.response_headers_to_remove
    assert route.route.retry_policy.retry_on == "unavailable"
    assert list(route.route.retry_policy.retriable_status_codes) == []


def test_retries_without_a_grpc_condition_are_left_out() -> None:
    routes, _, warnings = for_grpc(
        router("web", {"Destination": {"NumRetries": 2, "RetryOn": ["5xx"]}})
    )
    assert not routes[0].route.HasField("retry_policy")
    assert fields(warnings) == {"Routes[0].Destination.RetryOn"}
    many = for_grpc(router("web", {"Destination": {"NumRetries": 9, "RetryOn": ["unavailable"]}}))
    assert fields(many[2]) == {"Routes[0].Destination.NumRetries"}


def test_routes_grpc_can_never_match_are_left_out() -> None:
    routes, _, warnings = for_grpc(
        router(
            "web",
            {
                "Match": {"HTTP": {"QueryParam": [{"Name": "debug", "Present": True}]}},
                "Destination": {"Service": "api"},
            },
            {"Match": {"HTTP": {"Methods": ["GET"]}}, "Destination": {"Service": "api"}},
            {"Match": {"HTTP": {"PathPrefix": "/pkg.A/", "Methods": ["POST", "GET"]}}},
        )
    )
    assert fields(warnings) == {"Routes[0].Match.HTTP.QueryParam", "Routes[1].Match.HTTP.Methods"}
    # gRPC calls are POSTs: a route allowing POST stays, without a method match
    kept, catch_all = routes
    assert kept.match.prefix == "/pkg.A/"
    assert not kept.match.headers
    assert catch_all.match.prefix == "/"


def test_split_header_changes_are_dropped_and_legs_merged() -> None:
    routes, _, warnings = for_grpc(
        resolver("web", Subsets=VERSIONED),
        splitter(
            "web",
            {"Weight": 60, "ServiceSubset": "v1"},
            {"Weight": 30, "ServiceSubset": "v2", "RequestHeaders": {"Set": {"x-c": "a"}}},
            {"Weight": 10, "Service": "api"},
        ),
        # a nested splitter that sends its share to the same subset, with other headers
        splitter(
            "api",
            {
                "Weight": 100,
                "Service": "web",
                "ServiceSubset": "v2",
                "RequestHeaders": {"Set": {"x-c": "b"}},
            },
        ),
    )
    assert fields(warnings) == {"Splits[1].RequestHeaders", "Splits[0].RequestHeaders"}
    weights = {c.name: c.weight.value for c in routes[0].route.weighted_clusters.clusters}
    assert weights == {"web~v1": 6000, "web~v2": 4000}


def test_balancing_grpc_lacks_falls_back_with_warnings() -> None:
    policies = [
        {"Field": "header", "FieldValue": "x-user"},
        {"Field": "cookie", "FieldValue": "sid"},
        {"SourceIP": True},
    ]
    routes, clusters, warnings = for_grpc(
        resolver("web", LoadBalancer={"Policy": "maglev", "HashPolicies": policies})
    )
    assert clusters["web"].cluster.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert [p.header.header_name for p in routes[0].route.hash_policy] == ["x-user"]
    assert fields(warnings) == {
        "LoadBalancer.Policy",
        "LoadBalancer.HashPolicies[1]",
        "LoadBalancer.HashPolicies[2]",
    }
    for policy in ("random", "least_request"):
        _, clusters, warnings = for_grpc(resolver("web", LoadBalancer={"Policy": policy}))
        assert clusters["web"].cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
        assert fields(warnings) == {"LoadBalancer.Policy"}


def test_consecutive_failure_ejection_is_flagged_for_grpc() -> None:
    result = compiled(
        "web",
        defaults(
            "web", "grpc", UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"MaxFailures": 3}}}
        ),
    )
    assert result.chain is not None
    _, built, warnings = grpc_resources(result.chain, CATALOG, SETTINGS)
    assert built[0].cluster.outlier_detection.consecutive_5xx.value == 3  # harmless, kept
    (warning,) = warnings
    assert warning == EntryProblem(
        "service-defaults",
        "web",
        "UpstreamConfig.PassiveHealthCheck.MaxFailures",
        warning.message,
    )
    assert "gRFC A50" in warning.message
