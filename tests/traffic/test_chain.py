"""Discovery chain compilation: where a service's traffic goes, as Consul documents it."""

from __future__ import annotations

from bridge.traffic import Chain, CompileResult, Target, compile_chain, parse_entries

from .helpers import LOCAL, VERSIONED, compiled, defaults, entries, resolver, router, splitter


def chain_of(result: CompileResult) -> Chain:
    assert result.problems == ()
    assert result.chain is not None
    return result.chain


def shares(chain: Chain, route: int = -1) -> dict[str, int]:
    """target → weight (1/100 %) of one route (the catch-all by default)."""
    return {str(leg.target): leg.weight for leg in chain.routes[route].legs}


def web(subset: str = "", dc: str = LOCAL, service: str = "web") -> Target:
    return Target(service, subset, dc)


def test_a_service_without_entries_goes_to_all_its_instances() -> None:
    chain = chain_of(compiled("web"))
    assert chain.default
    assert chain.protocol == "tcp"  # Consul's default when nothing says otherwise
    assert len(chain.routes) == 1
    assert chain.routes[0].match is None
    assert [leg.target for leg in chain.routes[0].legs] == [web()]
    assert [c.target for c in chain.clusters] == [web()]
    assert chain.clusters[0].failover == ()


def test_a_splitter_sends_weighted_shares_to_subsets() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            resolver("web", Subsets=VERSIONED),
            splitter(
                "web", {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}
            ),
        )
    )
    assert not chain.default
    assert chain.routes[0].split
    assert shares(chain) == {"v1.web.dc1": 9000, "v2.web.dc1": 1000}
    assert {c.target for c in chain.clusters} == {web("v1"), web("v2")}


def test_router_routes_keep_their_order_and_end_with_a_catch_all() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            defaults("api"),
            resolver("web", Subsets=VERSIONED),
            splitter(
                "web", {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}
            ),
            router(
                "web",
                {
                    "Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "1"}]}},
                    "Destination": {"ServiceSubset": "v2"},
                },
                {"Match": {"HTTP": {"PathPrefix": "/api/"}}, "Destination": {"Service": "api"}},
            ),
        )
    )
    first, second, last = chain.routes
    assert first.match is not None
    assert first.match.headers[0].name == "x-canary"
    # naming a subset skips the splitter
    assert not first.split
    assert [leg.target for leg in first.legs] == [web("v2")]
    assert [leg.target for leg in second.legs] == [web(service="api")]
    assert last.match is None
    assert last.split
    assert first.origin is not None
    assert first.origin.field == "Routes[0]"


def test_a_route_to_another_service_uses_that_services_splitter() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            defaults("api"),
            resolver("api", Subsets=VERSIONED),
            splitter(
                "api", {"Weight": 75, "ServiceSubset": "v1"}, {"Weight": 25, "ServiceSubset": "v2"}
            ),
            router(
                "web",
                {"Match": {"HTTP": {"PathPrefix": "/api/"}}, "Destination": {"Service": "api"}},
            ),
        )
    )
    assert shares(chain, 0) == {"v1.api.dc1": 7500, "v2.api.dc1": 2500}
    assert shares(chain, -1) == {"web.dc1": 10000}


def test_nested_splitters_are_flattened_with_merged_header_changes() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            defaults("api"),
            resolver("api", Subsets=VERSIONED),
            splitter(
                "web",
                {
                    "Weight": 50,
                    "Service": "api",
                    "RequestHeaders": {"Set": {"x-from": "web", "x-shared": "parent"}},
                    "ResponseHeaders": {"Set": {"x-resp": "parent"}},
                },
                {"Weight": 50},
            ),
            splitter(
                "api",
                {
                    "Weight": 80,
                    "ServiceSubset": "v1",
                    "RequestHeaders": {"Set": {"x-shared": "child"}},
                    "ResponseHeaders": {"Set": {"x-resp": "child"}},
                },
                {"Weight": 20, "ServiceSubset": "v2"},
            ),
        )
    )
    assert shares(chain) == {"v1.api.dc1": 4000, "v2.api.dc1": 1000, "web.dc1": 5000}
    v1 = next(leg for leg in chain.routes[-1].legs if leg.target == web("v1", service="api"))
    # request changes: the inner split wins; response changes: the outer one (responses flow back)
    assert dict(v1.request_headers.set) == {"x-from": "web", "x-shared": "child"}
    assert dict(v1.response_headers.set) == {"x-resp": "parent"}


def test_flattened_weights_always_sum_to_the_whole() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            defaults("api"),
            resolver("api", Subsets={"a": {}, "b": {}, "c": {}}),
            splitter("web", {"Weight": 33.33, "Service": "api"}, {"Weight": 66.67}),
            splitter(
                "api",
                {"Weight": 33.33, "ServiceSubset": "a"},
                {"Weight": 33.33, "ServiceSubset": "b"},
                {"Weight": 33.34, "ServiceSubset": "c"},
            ),
        )
    )
    assert sum(shares(chain).values()) == 10000


def test_default_subset_applies_unless_a_subset_is_named() -> None:
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            resolver("web", Subsets=VERSIONED, DefaultSubset="v1"),
            router(
                "web",
                {
                    "Match": {"HTTP": {"PathPrefix": "/beta"}},
                    "Destination": {"ServiceSubset": "v2"},
                },
            ),
        )
    )
    assert [leg.target for route in chain.routes for leg in route.legs] == [web("v2"), web("v1")]


def test_redirects_move_traffic_to_another_service_or_datacenter() -> None:
    to_api = chain_of(compiled("web", resolver("web", Redirect={"Service": "api"})))
    assert [c.target for c in to_api.clusters] == [web(service="api")]
    to_subset = chain_of(
        compiled(
            "web",
            resolver("web", Subsets=VERSIONED, Redirect={"Service": "web", "ServiceSubset": "v2"}),
        )
    )
    assert [c.target for c in to_subset.clusters] == [web("v2")]
    to_dc2 = chain_of(compiled("web", resolver("web", Redirect={"Datacenter": "dc2"})))
    assert [c.target for c in to_dc2.clusters] == [web(dc="dc2")]
    assert to_dc2.watches() == {("web", "dc2")}
    # a redirect to another service drops the subset asked for, then that service's default applies
    chained = chain_of(
        compiled(
            "web",
            resolver("web", Redirect={"Service": "api"}),
            resolver("api", Subsets=VERSIONED, DefaultSubset="v2"),
        )
    )
    assert [c.target for c in chained.clusters] == [web("v2", service="api")]


def test_a_redirect_cycle_is_a_problem_naming_the_resolver() -> None:
    result = compiled(
        "a",
        resolver("a", Redirect={"Service": "b"}),
        resolver("b", Redirect={"Service": "a"}),
    )
    assert result.chain is None
    (problem,) = result.problems
    assert (problem.kind, problem.field) == ("service-resolver", "Redirect")
    assert "circular resolver redirect: a.dc1 -> b.dc1 -> a.dc1" in problem.message


def test_failover_lists_datacenters_in_order() -> None:
    chain = chain_of(
        compiled(
            "web",
            resolver(
                "web",
                Subsets=VERSIONED,
                Failover={
                    "v2": {"Datacenters": ["dc1", "dc3", "dc2"]},
                    "*": {"Datacenters": ["dc2"]},
                },
            ),
            splitter(
                "web", {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}
            ),
            defaults("web"),
        )
    )
    v2 = chain.cluster(web("v2"))
    # failing over to itself (dc1) is dropped
    assert [level.target for level in v2.failover] == [web("v2", "dc3"), web("v2", "dc2")]
    v1 = chain.cluster(web("v1"))
    assert [level.target for level in v1.failover] == [web("v1", "dc2")]  # through "*"
    assert ("web", "dc3") in chain.watches()


def test_failover_targets_use_their_own_redirect_and_default_subset_but_not_their_failover() -> (
    None
):
    chain = chain_of(
        compiled(
            "web",
            resolver(
                "web",
                Failover={
                    "*": {
                        "Targets": [{"Service": "backup"}, {"Service": "web", "Datacenter": "dc2"}]
                    }
                },
            ),
            resolver(
                "backup",
                Subsets={"warm": {"Filter": "warm in Service.Tags"}},
                DefaultSubset="warm",
                Failover={"*": {"Service": "last-resort"}},
            ),
        )
    )
    (cluster,) = chain.clusters
    assert [level.target for level in cluster.failover] == [
        web("warm", service="backup"),
        web(dc="dc2"),
    ]
    assert cluster.failover[0].subset.filter is not None  # the backup's subset filter applies
    assert ("last-resort", LOCAL) not in chain.watches()  # no transitive failover


def test_a_missing_subset_is_a_problem_naming_who_asked_for_it() -> None:
    result = compile_chain(
        "web",
        parse_entries(
            [
                defaults("web"),
                resolver("web", Subsets=VERSIONED),
                splitter("web", {"Weight": 100, "ServiceSubset": "v3"}),
            ]
        ),
        datacenter=LOCAL,
    )
    (problem,) = result.problems
    assert (problem.kind, problem.name, problem.field) == ("service-splitter", "web", "Splits[0]")
    assert "does not have a subset named 'v3'" in problem.message


def test_routing_needs_an_http_protocol() -> None:
    result = compile_chain(
        "web",
        parse_entries([splitter("web", {"Weight": 100})]),
        datacenter=LOCAL,
    )
    (problem,) = result.problems
    assert (problem.kind, problem.name) == ("service-splitter", "web")
    assert "protocol 'tcp'" in problem.message
    # proxy-defaults gives the protocol when the service has no service-defaults...
    via_proxy = compile_chain(
        "web",
        parse_entries(
            [
                {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}},
                splitter("web", {"Weight": 100}),
            ]
        ),
        datacenter=LOCAL,
    )
    assert chain_of(via_proxy).protocol == "http"
    # ...but a service-defaults without Protocol means tcp, whatever proxy-defaults says
    shadowed = compile_chain(
        "web",
        parse_entries(
            [
                {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}},
                {"Kind": "service-defaults", "Name": "web"},
                splitter("web", {"Weight": 100}),
            ]
        ),
        datacenter=LOCAL,
    )
    assert shadowed.chain is None


def test_services_of_one_chain_must_share_a_protocol() -> None:
    result = compile_chain(
        "web",
        parse_entries(
            [
                defaults("web"),
                defaults("api", "grpc"),
                router("web", {"Destination": {"Service": "api"}}),
            ]
        ),
        datacenter=LOCAL,
    )
    (problem,) = result.problems
    assert (problem.kind, problem.name, problem.field) == ("service-defaults", "api", "Protocol")
    assert "inconsistent protocols" in problem.message


def test_routing_to_a_service_missing_from_the_catalog_is_a_problem() -> None:
    raw = [defaults("web"), defaults("gone"), router("web", {"Destination": {"Service": "gone"}})]
    result = compile_chain("web", parse_entries(raw), datacenter=LOCAL, known_services={"web"})
    (problem,) = result.problems
    assert (problem.kind, problem.field) == ("service-router", "Routes[0].Destination")
    assert "'gone' does not exist" in problem.message
    # failing over to a missing service is harmless: it just has no instances
    failover = [resolver("web", Failover={"*": {"Service": "gone"}})]
    assert compile_chain(
        "web", parse_entries(failover), datacenter=LOCAL, known_services={"web"}
    ).chain


def test_a_quarantined_entry_stops_only_the_chains_that_use_it() -> None:
    bad_split = splitter("web", {"Weight": 90, "ServiceSubset": "v1"})  # sums to 90
    parsed = parse_entries(
        [defaults("web"), defaults("api"), resolver("web", Subsets=VERSIONED), bad_split]
    )
    web_result = compile_chain("web", parsed, datacenter=LOCAL)
    assert web_result.chain is None  # not silently compiled without its splitter
    assert [p.field for p in web_result.problems] == ["Splits"]
    assert compile_chain("api", parsed, datacenter=LOCAL).chain is not None
    # what the integration can fall back to when there is no last good routing
    fallback = compile_chain("web", parsed.without([("service-splitter", "web")]), datacenter=LOCAL)
    assert fallback.chain is not None


def test_a_chain_lists_every_entry_it_looked_up_even_absent_ones() -> None:
    chain = chain_of(
        compiled("web", defaults("web"), resolver("web", Subsets=VERSIONED, DefaultSubset="v1"))
    )
    # a splitter or router written later must trigger a recompile
    assert {
        ("service-splitter", "web"),
        ("service-router", "web"),
        ("service-resolver", "web"),
    } <= set(chain.entries)


def test_splitter_cycles_and_reserved_names_are_problems() -> None:
    cycle = compile_chain(
        "a",
        parse_entries(
            [
                defaults("a"),
                defaults("b"),
                splitter("a", {"Weight": 100, "Service": "b"}),
                splitter("b", {"Weight": 100, "Service": "a"}),
            ]
        ),
        datacenter=LOCAL,
    )
    assert cycle.chain is None
    assert "circular reference between splitters: a -> b -> a" in cycle.problems[0].message
    tilde = compile_chain(
        "web",
        parse_entries(
            [defaults("web"), defaults("w~x"), router("web", {"Destination": {"Service": "w~x"}})]
        ),
        datacenter=LOCAL,
    )
    assert tilde.chain is None
    assert "'~'" in tilde.problems[0].message


def test_hash_policies_and_request_timeouts_follow_the_resolver() -> None:
    ring = {"Policy": "ring_hash", "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}]}
    chain = chain_of(
        compiled(
            "web",
            defaults("web"),
            resolver("web", Subsets=VERSIONED, LoadBalancer=ring, RequestTimeout="7s"),
            splitter(
                "web", {"Weight": 50, "ServiceSubset": "v1"}, {"Weight": 50, "ServiceSubset": "v2"}
            ),
            router(
                "web",
                {"Match": {"HTTP": {"PathPrefix": "/one"}}, "Destination": {"ServiceSubset": "v1"}},
            ),
        )
    )
    one, catch_all = chain.routes
    assert one.hash_from == web("v1")
    assert one.request_timeout == 7.0
    assert catch_all.hash_from is not None  # a split takes the first hashing resolver's policies
    assert catch_all.request_timeout is None  # a split has no one resolver's timeout


def test_the_edge_can_take_upstream_settings_from_its_own_service_defaults() -> None:
    edge = defaults(
        "edge",
        UpstreamConfig={
            "Defaults": {"ConnectTimeoutMs": 1000, "PassiveHealthCheck": {"MaxFailures": 5}},
            "Overrides": [{"Name": "web", "PassiveHealthCheck": {"MaxFailures": 2}}],
        },
    )
    own = defaults("web", UpstreamConfig={"Defaults": {"PassiveHealthCheck": {"MaxFailures": 9}}})
    parsed = entries(edge, own)
    as_edge = chain_of(compile_chain("web", parsed, datacenter=LOCAL, upstream_source="edge"))
    upstream = as_edge.clusters[0].upstream
    assert upstream is not None
    assert upstream.connect_timeout == 1.0
    assert upstream.passive_health_check is not None
    assert upstream.passive_health_check.max_failures == 2  # the override for web wins
    assert as_edge.clusters[0].upstream_from == "edge"
    own_settings = chain_of(compile_chain("web", parsed, datacenter=LOCAL)).clusters[0].upstream
    assert own_settings is not None
    assert own_settings.passive_health_check is not None
    assert own_settings.passive_health_check.max_failures == 9
