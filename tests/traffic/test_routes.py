"""Chains → the routes of a service's virtual host: matches, splits, rewrites, timeouts, retries,
header changes and hash policies, each as an operator writes it in a config entry."""

from __future__ import annotations

from typing import Any

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from bridge.resources import BuildSettings
from bridge.traffic import build_routes, compile_chain, parse_entries

from .helpers import LOCAL, VERSIONED, compiled, defaults, resolver, router, splitter, valid

SETTINGS = BuildSettings()


def routes_of(*raw: dict[str, Any], **kw: Any) -> list[rc.Route]:
    result = compiled("web", defaults("web"), defaults("api"), *raw)
    assert result.chain is not None, result.problems
    routes = build_routes(result.chain, SETTINGS, **kw)
    vhost = rc.VirtualHost(name="web", domains=["web"], routes=routes)
    assert valid(route_pb2.RouteConfiguration(name="ingress", virtual_hosts=[vhost]))
    return routes


def first_route(match: dict[str, Any] | None = None, **destination: Any) -> rc.Route:
    route: dict[str, Any] = {"Destination": destination or {"Service": "api"}}
    if match is not None:
        route["Match"] = {"HTTP": match}
    return routes_of(router("web", route))[0]


def test_a_plain_service_gets_one_catch_all_route_to_its_cluster() -> None:
    (route,) = routes_of()
    assert route.match.prefix == "/"
    assert route.route.cluster == "web"
    assert not route.route.HasField("timeout")  # Envoy's default applies


def test_path_matches() -> None:
    assert first_route({"PathExact": "/health"}).match.path == "/health"
    assert first_route({"PathPrefix": "/api/"}).match.prefix == "/api/"
    regex = first_route({"PathRegex": "/v[0-9]+/.*"}).match
    assert regex.safe_regex.regex == "/v[0-9]+/.*"
    assert first_route({"Methods": ["GET"]}).match.prefix == "/"  # no path: everything


def test_case_insensitive_paths() -> None:
    # CaseInsensitive is newer than the Consul the project's double models: read it directly.
    route = {"Match": {"HTTP": {"PathPrefix": "/API", "CaseInsensitive": True}}}
    chain = compile_chain(
        "web", parse_entries([defaults("web"), router("web", route)]), datacenter=LOCAL
    )
    assert chain.chain is not None
    match = build_routes(chain.chain, SETTINGS)[0].match
    assert valid(match)
    assert match.HasField("case_sensitive")
    assert not match.case_sensitive.value


def test_header_matches_of_every_kind() -> None:
    headers = [
        {"Name": "x-present", "Present": True},
        {"Name": "x-exact", "Exact": "1"},
        {"Name": "x-prefix", "Prefix": "ab"},
        {"Name": "x-suffix", "Suffix": "yz"},
        {"Name": "x-regex", "Regex": "v[12]"},
        {"Name": "x-not", "Exact": "no", "Invert": True},
    ]
    matchers = {h.name: h for h in first_route({"Header": headers}).match.headers}
    assert matchers["x-present"].present_match
    assert matchers["x-exact"].string_match.exact == "1"
    assert matchers["x-prefix"].string_match.prefix == "ab"
    assert matchers["x-suffix"].string_match.suffix == "yz"
    assert matchers["x-regex"].string_match.safe_regex.regex == "v[12]"
    assert matchers["x-not"].invert_match
    assert not matchers["x-exact"].invert_match


def test_methods_become_one_method_header_regex() -> None:
    (method,) = first_route({"Methods": ["GET", "HEAD"]}).match.headers
    assert method.name == ":method"
    assert method.string_match.safe_regex.regex == "GET|HEAD"


def test_query_parameter_matches() -> None:
    params = [
        {"Name": "debug", "Present": True},
        {"Name": "lang", "Exact": "en"},
        {"Name": "id", "Regex": "[0-9]+"},
    ]
    matchers = {q.name: q for q in first_route({"QueryParam": params}).match.query_parameters}
    assert matchers["debug"].present_match
    assert matchers["lang"].string_match.exact == "en"
    assert matchers["id"].string_match.safe_regex.regex == "[0-9]+"


def test_a_split_becomes_weighted_clusters_with_header_changes() -> None:
    (route,) = routes_of(
        resolver("web", Subsets=VERSIONED),
        splitter(
            "web",
            {"Weight": 90, "ServiceSubset": "v1"},
            {
                "Weight": 10,
                "ServiceSubset": "v2",
                "RequestHeaders": {
                    "Add": {"x-canary": "1"},
                    "Set": {"x-version": "v2"},
                    "Remove": ["x-debug"],
                },
                "ResponseHeaders": {"Set": {"x-served-by": "canary"}},
            },
            {"Weight": 0, "Service": "api"},
        ),
    )
    weighted = {c.name: c for c in route.route.weighted_clusters.clusters}
    assert {name: c.weight.value for name, c in weighted.items()} == {
        "web~v1": 9000,
        "web~v2": 1000,
    }
    canary = weighted["web~v2"]
    added = {o.header.key: (o.header.value, o.append_action) for o in canary.request_headers_to_add}
    assert added == {
        "x-canary": ("1", base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD),
        "x-version": ("v2", base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD),
    }
    assert list(canary.request_headers_to_remove) == ["x-debug"]
    assert [o.header.key for o in canary.response_headers_to_add] == ["x-served-by"]
    assert not weighted["web~v1"].request_headers_to_add


def test_destination_rewrite_timeouts_and_header_changes() -> None:
    route = first_route(
        {"PathPrefix": "/api/"},
        Service="api",
        PrefixRewrite="/",
        RequestTimeout="2s",
        IdleTimeout="30s",
        RequestHeaders={"Set": {"x-from": "edge"}},
        ResponseHeaders={"Remove": ["server"]},
    )
    assert route.route.cluster == "api"
    assert route.route.prefix_rewrite == "/"
    assert route.route.timeout.seconds == 2
    assert route.route.idle_timeout.seconds == 30
    assert [o.header.key for o in route.request_headers_to_add] == ["x-from"]
    assert list(route.response_headers_to_remove) == ["server"]


def test_retry_policy_collects_every_retry_setting() -> None:
    route = first_route(
        NumRetries=3,
        RetryOn=["5xx", "reset"],
        RetryOnConnectFailure=True,
        RetryOnStatusCodes=[503, 429],
    )
    policy = route.route.retry_policy
    assert policy.num_retries.value == 3
    assert policy.retry_on.split(",") == [
        "5xx",
        "reset",
        "connect-failure",
        "retriable-status-codes",
    ]
    assert list(policy.retriable_status_codes) == [503, 429]
    assert not first_route(Service="api").route.HasField("retry_policy")


def test_timeouts_from_the_resolver_or_the_bridge_default() -> None:
    timed = resolver("web", Subsets=VERSIONED, RequestTimeout="9s")
    routes = routes_of(
        timed,
        router(
            "web",
            {
                "Match": {"HTTP": {"PathPrefix": "/a"}},
                "Destination": {"ServiceSubset": "v1", "RequestTimeout": "1s"},
            },
        ),
    )
    assert [r.route.timeout.seconds for r in routes] == [1, 9]  # the route's own wins
    split = splitter(
        "web", {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}
    )
    (split_route,) = routes_of(timed, split, default_timeout=20.0)
    assert split_route.route.timeout.seconds == 20  # a split has no single resolver's timeout


def test_grpc_routes_carry_the_timeout_as_max_stream_duration() -> None:
    (route,) = routes_of(resolver("web", RequestTimeout="4s"), grpc=True)
    assert route.route.max_stream_duration.max_stream_duration.seconds == 4
    assert not route.route.HasField("timeout")


def test_hash_policies_of_a_hashing_resolver_go_on_the_route() -> None:
    policies = [
        {"Field": "header", "FieldValue": "x-user", "Terminal": True},
        {"Field": "cookie", "FieldValue": "sid", "CookieConfig": {"Session": True}},
        {"Field": "cookie", "FieldValue": "pref", "CookieConfig": {"TTL": "1h", "Path": "/app"}},
        {"Field": "query_parameter", "FieldValue": "tenant"},
        {"SourceIP": True},
    ]
    (route,) = routes_of(
        resolver("web", LoadBalancer={"Policy": "maglev", "HashPolicies": policies})
    )
    header, session, cookie, query, source = route.route.hash_policy
    assert (header.header.header_name, header.terminal) == ("x-user", True)
    assert session.cookie.name == "sid"
    assert session.cookie.HasField("ttl")
    assert session.cookie.ttl.seconds == 0  # a session cookie
    assert (cookie.cookie.ttl.seconds, cookie.cookie.path) == (3600, "/app")
    assert query.query_parameter.name == "tenant"
    assert source.connection_properties.source_ip
    plain = routes_of(resolver("web", LoadBalancer={"Policy": "least_request"}))[0]
    assert not plain.route.hash_policy
