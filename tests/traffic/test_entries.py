"""Reading config entries as Consul returns them; bad entries are quarantined with a problem
that names the entry and the field, and nothing raises."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.traffic import ServiceDefaults, ServiceResolver, ServiceRouter, parse_entries

from .helpers import VERSIONED, defaults, entries, resolver, router, splitter


def test_entries_read_back_from_consul_keep_their_meaning() -> None:
    parsed = entries(
        defaults(
            "web",
            "HTTP2",
            UpstreamConfig={
                "Defaults": {
                    "ConnectTimeoutMs": 1500,
                    "Limits": {"MaxConnections": 100},
                    "PassiveHealthCheck": {"Interval": "10s", "MaxFailures": 3},
                }
            },
        ),
        resolver(
            "web",
            Subsets=VERSIONED,
            DefaultSubset="v1",
            ConnectTimeout="2500ms",
            RequestTimeout="1m30s",
            LoadBalancer={
                "Policy": "ring_hash",
                "HashPolicies": [
                    {"Field": "cookie", "FieldValue": "sid", "CookieConfig": {"TTL": "1h"}}
                ],
            },
        ),
        router(
            "web",
            {
                "Match": {"HTTP": {"PathPrefix": "/api", "Methods": ["get"]}},
                "Destination": {"RequestTimeout": "3s", "RetryOn": ["5xx"], "NumRetries": 2},
            },
        ),
    )
    assert parsed.problems == ()
    web = parsed.service_defaults("web")
    assert isinstance(web, ServiceDefaults)
    assert web.protocol == "http2"  # lower-cased, as Consul does
    upstream = web.upstream_defaults
    assert upstream is not None
    assert upstream.connect_timeout == 1.5
    assert upstream.limits is not None
    assert upstream.limits.max_connections == 100
    check = upstream.passive_health_check
    # Consul returns this duration as integer nanoseconds, the resolver's as strings.
    assert check is not None
    assert (check.interval, check.max_failures) == (10.0, 3)
    res = parsed.resolver("web")
    assert isinstance(res, ServiceResolver)
    assert (res.connect_timeout, res.request_timeout) == (2.5, 90.0)
    assert res.default_subset == "v1"
    assert {name for name, _ in res.subsets} == {"v1", "v2"}
    assert res.load_balancer is not None
    assert res.load_balancer.policy == "ring_hash"
    cookie = res.load_balancer.hash_policies[0].cookie
    assert cookie is not None
    assert cookie.ttl == 3600.0
    route = parsed.router("web")
    assert isinstance(route, ServiceRouter)
    match = route.routes[0].match
    assert match is not None
    assert match.methods == ("GET",)
    dest = route.routes[0].destination
    assert dest is not None
    assert (dest.request_timeout, dest.num_retries) == (3.0, 2)


def test_proxy_defaults_protocol_comes_from_its_config() -> None:
    parsed = entries({"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "GRPC"}})
    proxy = parsed.proxy_defaults()
    assert proxy is not None
    assert proxy.protocol == "grpc"


SPLIT_100 = {"Weight": 100}


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        # values of the wrong type
        (splitter("web", {"Weight": "ninety"}), "Splits[0].Weight", "expected a number"),
        (resolver("web", ConnectTimeout="5 seconds"), "ConnectTimeout", "expected a duration"),
        (resolver("web", ConnectTimeout="-1s"), "ConnectTimeout", "must not be negative"),
        (resolver("web", Subsets=["v1"]), "Subsets", "expected an object"),
        (
            {"Kind": "service-router", "Name": "web", "Routes": ["not a route"]},
            "Routes[0]",
            "expected an object",
        ),
        (
            defaults(
                "web",
                UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"MaxEjectionPercent": 150}}},
            ),
            "UpstreamConfig.Defaults.PassiveHealthCheck.MaxEjectionPercent",
            "from 0 to 100",
        ),
        # subset filters
        (
            resolver("web", Subsets={"v2": {"Filter": "Service.Meta.version = v2"}}),
            "Subsets[v2].Filter",
            "position",
        ),
        (
            resolver("web", Subsets={"v2": {"Filter": "Service.Kind == typical"}}),
            "Subsets[v2].Filter",
            "not supported by the bridge",
        ),
        (resolver("web", Subsets={"V2": {"Filter": ""}}), "Subsets[V2]", "DNS label"),
        (resolver("web", Subsets=VERSIONED, DefaultSubset="v9"), "DefaultSubset", "not a defined"),
        # what the bridge does not implement
        (
            resolver("web", Redirect={"Service": "api", "Peer": "east"}),
            "Redirect.Peer",
            "not supported",
        ),
        (
            splitter("web", {"Weight": 100, "Namespace": "team-a"}),
            "Splits[0].Namespace",
            "not supported",
        ),
        (
            resolver(
                "web",
                Failover={"*": {"Datacenters": ["dc2"], "Policy": {"Mode": "order-by-locality"}}},
            ),
            "Failover[*].Policy.Mode",
            "not supported",
        ),
        # redirects and failover
        (
            resolver("web", Redirect={"Service": "api"}, Failover={"*": {"Service": "api"}}),
            "Redirect",
            "cannot both be set",
        ),
        (resolver("web", Redirect={}), "Redirect", "must set"),
        (
            resolver("web", Redirect={"Service": "web", "ServiceSubset": "v9"}),
            "Redirect.ServiceSubset",
            "not a defined",
        ),
        (
            resolver("web", Redirect={"ServiceSubset": "v1"}),
            "Redirect.ServiceSubset",
            "name its Service",
        ),
        (resolver("web", Failover={"v9": {"Service": "api"}}), "Failover[v9]", "neither '*' nor"),
        (resolver("web", Failover={"*": {}}), "Failover[*]", "set one of"),
        (
            resolver(
                "web", Failover={"*": {"Datacenters": ["dc2"], "Targets": [{"Service": "api"}]}}
            ),
            "Failover[*].Targets",
            "cannot be combined",
        ),
        (
            resolver("web", Failover={"*": {"Datacenters": [""]}}),
            "Failover[*].Datacenters",
            "empty",
        ),
        # load balancing
        (
            resolver("web", LoadBalancer={"Policy": "fastest"}),
            "LoadBalancer.Policy",
            "unknown policy",
        ),
        (
            resolver(
                "web",
                LoadBalancer={"Policy": "round_robin", "RingHashConfig": {"MinimumRingSize": 1024}},
            ),
            "LoadBalancer.RingHashConfig",
            "only allowed with the ring_hash",
        ),
        (
            resolver(
                "web",
                LoadBalancer={"Policy": "ring_hash", "RingHashConfig": {"MaximumRingSize": 10**8}},
            ),
            "LoadBalancer.RingHashConfig.MaximumRingSize",
            "at most",
        ),
        (
            resolver(
                "web",
                LoadBalancer={"Policy": "least_request", "LeastRequestConfig": {"ChoiceCount": 1}},
            ),
            "LoadBalancer.LeastRequestConfig.ChoiceCount",
            "at least 2",
        ),
        (
            resolver(
                "web", LoadBalancer={"Policy": "random", "HashPolicies": [{"SourceIP": True}]}
            ),
            "LoadBalancer.HashPolicies",
            "only allowed with the ring_hash or maglev",
        ),
        (
            resolver(
                "web",
                LoadBalancer={
                    "Policy": "maglev",
                    "HashPolicies": [{"Field": "body", "FieldValue": "x"}],
                },
            ),
            "LoadBalancer.HashPolicies[0].Field",
            "must be header, cookie or query_parameter",
        ),
        (
            resolver(
                "web", LoadBalancer={"Policy": "maglev", "HashPolicies": [{"Field": "header"}]}
            ),
            "LoadBalancer.HashPolicies[0].FieldValue",
            "needs a FieldValue",
        ),
        (
            resolver(
                "web",
                LoadBalancer={
                    "Policy": "ring_hash",
                    "HashPolicies": [
                        {
                            "Field": "cookie",
                            "FieldValue": "s",
                            "CookieConfig": {"Session": True, "TTL": "10s"},
                        }
                    ],
                },
            ),
            "LoadBalancer.HashPolicies[0].CookieConfig",
            "Session and TTL",
        ),
        # splitters
        (
            splitter("web", {"Weight": 90}, {"Weight": 20, "ServiceSubset": "v2"}),
            "Splits",
            "sum to 100, not 110",
        ),
        (
            splitter("web", {"Weight": 120}, {"Weight": -20, "ServiceSubset": "v2"}),
            "Splits[0].Weight",
            "from 0 to 100",
        ),
        (splitter("web", {"Weight": 50}, {"Weight": 50}), "Splits[1]", "appears twice"),
        (splitter("web"), "Splits", "at least one split"),
        (
            splitter("web", {"Weight": 100, "RequestHeaders": {"Set": {"bad header": "x"}}}),
            "Splits[0].RequestHeaders",
            "not a valid HTTP header name",
        ),
        (
            splitter("web", {"Weight": 100, "RequestHeaders": {"Set": {"Host": "elsewhere"}}}),
            "Splits[0].RequestHeaders",
            "cannot be modified",
        ),
        # routers
        (
            router("web", {"Match": {"HTTP": {"PathExact": "api"}}}),
            "Routes[0].Match.HTTP.PathExact",
            "start with '/'",
        ),
        (
            router("web", {"Match": {"HTTP": {"PathExact": "/a", "PathPrefix": "/b"}}}),
            "Routes[0].Match.HTTP",
            "at most one of",
        ),
        (
            router("web", {"Match": {"HTTP": {"PathRegex": "/(a"}}}),
            "Routes[0].Match.HTTP.PathRegex",
            "invalid regular",
        ),
        (
            router("web", {"Match": {"HTTP": {"PathRegex": "/(?!admin)"}}}),
            "Routes[0].Match.HTTP.PathRegex",
            "look-around",
        ),
        (
            router("web", {"Match": {"HTTP": {"Header": [{"Name": "x-v"}]}}}),
            "Routes[0].Match.HTTP.Header[0]",
            "exactly one of",
        ),
        (
            router(
                "web",
                {"Match": {"HTTP": {"Header": [{"Name": "x-v", "Exact": "1", "Prefix": "1"}]}}},
            ),
            "Routes[0].Match.HTTP.Header[0]",
            "exactly one of",
        ),
        (
            router("web", {"Match": {"HTTP": {"QueryParam": [{"Name": "debug"}]}}}),
            "Routes[0].Match.HTTP.QueryParam[0]",
            "exactly one of",
        ),
        (
            router("web", {"Match": {"HTTP": {"Methods": ["FETCH"]}}}),
            "Routes[0].Match.HTTP.Methods",
            "unknown HTTP method",
        ),
        (
            router("web", {"Match": {"HTTP": {"Methods": ["GET", "get"]}}}),
            "Routes[0].Match.HTTP.Methods",
            "twice",
        ),
        (
            router(
                "web",
                {"Match": {"HTTP": {"PathRegex": "/a.*"}}, "Destination": {"PrefixRewrite": "/"}},
            ),
            "Routes[0].Destination.PrefixRewrite",
            "only allowed with a PathExact or PathPrefix",
        ),
        (
            router("web", {"Destination": {"RetryOn": ["sometimes"]}}),
            "Routes[0].Destination.RetryOn",
            "unknown retry",
        ),
        (
            router("web", {"Destination": {"RetryOnStatusCodes": [42]}}),
            "Routes[0].Destination.RetryOnStatusCodes",
            "not an HTTP status code",
        ),
        (
            router("web", {"Destination": {"ResponseHeaders": {"Add": {"x-a": "line\nbreak"}}}}),
            "Routes[0].Destination.ResponseHeaders",
            "line break",
        ),
        (
            router("web", {"Match": {"HTTP": {"Header": [{"Exact": "1"}]}}}),
            "Routes[0].Match.HTTP.Header[0].Name",
            "header name is required",
        ),
        (
            router("web", {"Match": {"HTTP": {"QueryParam": [{"Exact": "1"}]}}}),
            "Routes[0].Match.HTTP.QueryParam[0].Name",
            "needs a Name",
        ),
        (
            resolver("web", Failover={"*": {"Targets": [{}]}}),
            "Failover[*].Targets[0]",
            "must set Service",
        ),
        (
            resolver(
                "web",
                LoadBalancer={
                    "Policy": "maglev",
                    "HashPolicies": [{"SourceIP": True, "Field": "header"}],
                },
            ),
            "LoadBalancer.HashPolicies[0]",
            "SourceIP cannot be combined",
        ),
        (
            resolver(
                "web",
                LoadBalancer={
                    "Policy": "maglev",
                    "HashPolicies": [
                        {"Field": "header", "FieldValue": "x", "CookieConfig": {"Path": "/"}}
                    ],
                },
            ),
            "LoadBalancer.HashPolicies[0].CookieConfig",
            "only allowed with Field 'cookie'",
        ),
        # defaults
        ({"Kind": "proxy-defaults", "Name": "edge"}, "Name", "must be named 'global'"),
        (
            defaults("web", UpstreamConfig={"Defaults": {"Name": "api"}}),
            "UpstreamConfig.Defaults.Name",
            "must not have a Name",
        ),
        (
            defaults("web", UpstreamConfig={"Overrides": [{"ConnectTimeoutMs": 100}]}),
            "UpstreamConfig.Overrides[0].Name",
            "needs the Name",
        ),
    ],
)
def test_invalid_entries_are_quarantined_naming_the_field(
    raw: dict[str, Any], field: str, words: str
) -> None:
    parsed = parse_entries([raw, defaults("other")])
    key = (raw["Kind"], raw["Name"])
    assert key not in parsed.entries
    assert ("service-defaults", "other") in parsed.entries  # the rest keeps working
    messages = [p.message for p in parsed.quarantined[key] if p.field == field]
    assert any(words in m for m in messages), parsed.problems
    assert all(p.key == key for p in parsed.problems)


def test_unknown_kinds_nameless_and_repeated_entries_are_problems() -> None:
    parsed = parse_entries(
        [
            {"Kind": "service-intentions", "Name": "web"},
            {"Kind": "service-resolver"},
            "not an entry",
            defaults("web"),
            defaults("web", "grpc"),
        ]
    )
    assert parsed.entries == {}
    messages = [str(p) for p in parsed.problems]
    assert any("unknown config entry kind 'service-intentions'" in m for m in messages)
    assert any("needs a Name" in m for m in messages)
    assert any("expected a config entry object" in m for m in messages)
    assert any("appears twice" in m for m in messages)


def test_a_problem_reads_as_kind_name_field_and_message() -> None:
    parsed = parse_entries([splitter("web", {"Weight": 90})])
    assert str(parsed.problems[0]) == (
        "service-splitter 'web' field Splits: the weights must sum to 100, not 90"
    )


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 10**10)
    | st.floats(allow_nan=False)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "Weight",
                    "Splits",
                    "Subsets",
                    "Filter",
                    "Routes",
                    "Match",
                    "HTTP",
                    "Header",
                    "Name",
                    "Destination",
                    "Failover",
                    "Redirect",
                    "LoadBalancer",
                    "HashPolicies",
                    "Protocol",
                    "UpstreamConfig",
                    "Defaults",
                    "PassiveHealthCheck",
                    "ConnectTimeout",
                    "Methods",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(
        [
            "service-defaults",
            "proxy-defaults",
            "service-resolver",
            "service-splitter",
            "service-router",
        ]
    ),
    body=st.dictionaries(
        st.sampled_from(
            [
                "Splits",
                "Subsets",
                "Routes",
                "Redirect",
                "Failover",
                "LoadBalancer",
                "Protocol",
                "UpstreamConfig",
                "Config",
                "DefaultSubset",
                "RequestTimeout",
            ]
        ),
        _JSON,
        max_size=4,
    ),
)
def test_no_entry_makes_the_reader_raise(kind: str, body: dict[str, Any]) -> None:
    parsed = parse_entries([{"Kind": kind, "Name": "web", **body}])
    assert len(parsed.entries) + len(parsed.quarantined) == 1
