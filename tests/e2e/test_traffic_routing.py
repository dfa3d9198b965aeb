"""Consul config entries shape real Envoy traffic: splits, header and path routes, retries,
redirects and failover (Consul double → bridge → default templates → Envoy 1.40 → backends)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.waiting import eventually

from .traffic_stack import BOUND, TrafficStack, traffic_stack

pytestmark = pytest.mark.envoy

NODE = "edge-traffic"
SUBSETS = {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2"},
}


@pytest.fixture
async def stack() -> AsyncIterator[TrafficStack]:
    async with traffic_stack(NODE, "web-v1", "web-v2", "web-dc2", "api-1", "legacy-1") as s:
        s.register("web-v1", "web", version="v1")
        s.register("web-v2", "web", version="v2")
        s.register("api-1", "api")
        await s.follows({"web-v1", "web-v2"}, what="both web instances before any entry")
        yield s


def http(stack: TrafficStack, *services: str) -> None:
    for service in services:
        stack.put({"Kind": "service-defaults", "Name": service, "Protocol": "http"})


def versioned_resolver(stack: TrafficStack, **fields: object) -> None:
    stack.put({"Kind": "service-resolver", "Name": "web", "Subsets": SUBSETS, **fields})


async def test_a_90_10_split_holds_over_two_thousand_requests(stack: TrafficStack) -> None:
    http(stack, "web")
    versioned_resolver(stack)
    stack.put(
        {
            "Kind": "service-splitter",
            "Name": "web",
            "Splits": [
                {"Weight": 90, "ServiceSubset": "v1"},
                {"Weight": 10, "ServiceSubset": "v2"},
            ],
        }
    )
    clusters = await stack.envoy.active_clusters()

    async def split_served() -> bool:
        routes = await stack.envoy.config_dump("dynamic_route_configs")
        return "web~v1" in str(routes) and "web~v2" in str(routes)

    await eventually(split_served, timeout=BOUND, what="the split reaching Envoy's routes")
    seen = await stack.counts("web", 2000, concurrency=8)
    assert set(seen) == {"web-v1", "web-v2"}, seen
    share_v2 = seen["web-v2"] / sum(seen.values()) * 100
    assert 7.0 <= share_v2 <= 13.0, seen
    assert "web" in clusters
    assert await stack.nacks() == 0


async def test_a_header_match_goes_to_v2_and_everything_else_to_v1(stack: TrafficStack) -> None:
    http(stack, "web")
    versioned_resolver(stack, DefaultSubset="v1")
    stack.put(
        {
            "Kind": "service-router",
            "Name": "web",
            "Routes": [
                {
                    "Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "yes"}]}},
                    "Destination": {"ServiceSubset": "v2"},
                }
            ],
        }
    )
    await stack.follows({"web-v2"}, headers={"x-canary": "yes"})
    await stack.follows({"web-v1"})
    assert set(await stack.counts("web", 20, headers={"x-canary": "no"})) == {"web-v1"}
    assert await stack.nacks() == 0


async def test_a_path_prefix_route_to_another_service_rewrites_the_prefix(
    stack: TrafficStack,
) -> None:
    http(stack, "web", "api")
    stack.put(
        {
            "Kind": "service-router",
            "Name": "web",
            "Routes": [
                {
                    "Match": {"HTTP": {"PathPrefix": "/api/"}},
                    "Destination": {"Service": "api", "PrefixRewrite": "/v1/"},
                }
            ],
        }
    )
    await stack.follows({"api-1"}, path="/api/users?id=7")
    answer = await stack.get("web", "/api/users?id=7")
    assert (answer.status, answer.body, answer.path) == (200, "api-1", "/v1/users?id=7")
    other = await stack.get("web", "/home")
    assert other.body in {"web-v1", "web-v2"}
    assert other.path == "/home"


async def test_retries_on_503_show_in_the_backends_hit_count(stack: TrafficStack) -> None:
    http(stack, "api")
    stack.put(
        {
            "Kind": "service-router",
            "Name": "api",
            "Routes": [
                {
                    "Match": {"HTTP": {"PathPrefix": "/"}},
                    "Destination": {"NumRetries": 2, "RetryOnStatusCodes": [503]},
                }
            ],
        }
    )

    async def retry_policy_served() -> bool:
        routes = await stack.envoy.config_dump("dynamic_route_configs")
        return "retriable_status_codes" in str(routes)

    await eventually(retry_policy_served, timeout=BOUND, what="the retry policy in Envoy's routes")
    api = stack.backends["api-1"]
    api.status = 503
    before = api.hits
    answers = [await stack.get("api") for _ in range(5)]
    assert {a.status for a in answers} == {503}
    assert api.hits - before == 5 * 3  # each request: the first try and two retries
    api.status = 200
    assert (await stack.get("api")).status == 200


async def test_failover_goes_to_another_datacenter_when_the_local_subset_is_empty(
    stack: TrafficStack,
) -> None:
    stack.register("web-dc2", "web", version="v1", datacenter="dc2")
    versioned_resolver(stack, DefaultSubset="v1", Failover={"*": {"Datacenters": ["dc2"]}})
    await stack.follows({"web-v1"}, what="the local v1 subset first")
    stack.consul.deregister("web-v1")  # the local v1 subset is now empty
    await stack.follows({"web-dc2"}, what="failover to dc2's v1 instance")
    stack.register("web-v1", "web", version="v1")
    await stack.follows({"web-v1"}, what="back to the local subset")


async def test_a_resolver_redirect_sends_a_service_elsewhere(stack: TrafficStack) -> None:
    stack.register("legacy-1", "legacy")
    await stack.follows({"legacy-1"}, host="legacy")
    versioned_resolver(stack)
    stack.put(
        {
            "Kind": "service-resolver",
            "Name": "legacy",
            "Redirect": {"Service": "web", "ServiceSubset": "v2"},
        }
    )
    await stack.follows({"web-v2"}, host="legacy", what="legacy redirected to web's v2 subset")
    stack.consul.delete_config_entry("service-resolver", "legacy")
    await stack.follows({"legacy-1"}, host="legacy", what="legacy served again once deleted")
