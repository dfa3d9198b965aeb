"""Config entries changing under a real Envoy: passive health checks eject a failing instance,
an entry change reaches traffic, and an invalid entry is quarantined while everything else keeps
flowing (the service keeps its last good routing)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.waiting import eventually

from .traffic_stack import BOUND, TrafficStack, traffic_stack

pytestmark = pytest.mark.envoy

NODE = "edge-traffic-changes"
SUBSETS = {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2"},
}


@pytest.fixture
async def stack() -> AsyncIterator[TrafficStack]:
    async with traffic_stack(NODE, "web-v1", "web-v2", "api-1", "api-2") as s:
        s.register("web-v1", "web", version="v1")
        s.register("web-v2", "web", version="v2")
        s.register("api-1", "api")
        await s.follows({"web-v1", "web-v2"}, what="both web instances before any entry")
        yield s


def canary(stack: TrafficStack, v1: float, v2: float) -> None:
    stack.put(
        {
            "Kind": "service-splitter",
            "Name": "web",
            "Splits": [
                {"Weight": v1, "ServiceSubset": "v1"},
                {"Weight": v2, "ServiceSubset": "v2"},
            ],
        }
    )


def versioned_web(stack: TrafficStack) -> None:
    stack.put({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
    stack.put({"Kind": "service-resolver", "Name": "web", "Subsets": SUBSETS})


async def test_outlier_detection_ejects_an_instance_that_answers_5xx(stack: TrafficStack) -> None:
    stack.put(
        {
            "Kind": "service-defaults",
            "Name": "web",
            "UpstreamConfig": {
                "Defaults": {
                    "PassiveHealthCheck": {
                        "Interval": "10s",
                        "MaxFailures": 3,
                        "EnforcingConsecutive5xx": 100,
                        "MaxEjectionPercent": 50,
                        "BaseEjectionTime": "60s",
                    }
                }
            },
        }
    )

    async def detection_served() -> bool:
        clusters = await stack.envoy.active_clusters()
        return "outlier_detection" in clusters.get("web", {}).get("cluster", {})

    await eventually(detection_served, timeout=BOUND, what="outlier detection on cluster web")
    stack.backends["web-v2"].status = 500
    # Round robin gives web-v2 every other request: its third 5xx in a row ejects it.
    answers = await stack.counts("web", 10)
    assert answers["HTTP 500"] <= 3, answers
    assert set(await stack.counts("web", 20)) == {"web-v1"}
    assert await stack.envoy.stat("cluster.web.outlier_detection.ejections_enforced_total") >= 1
    hosts = await stack.envoy.cluster_hosts("web")
    v2 = f"127.0.0.1:{stack.backends['web-v2'].port}"
    assert "failed_outlier_check" in hosts[v2]["health_flags"]


async def test_an_entry_change_reaches_traffic(stack: TrafficStack) -> None:
    versioned_web(stack)
    canary(stack, 100, 0)
    await stack.follows({"web-v1"}, what="all of web on v1")
    for v1, v2, expected in ((0, 100, "web-v2"), (100, 0, "web-v1")):
        written = time.monotonic()
        canary(stack, v1, v2)
        await stack.follows({expected}, what=f"the splitter change to {expected}")
        # Measured, not asserted (a shared machine): the report quotes `make bench` figures.
        logging.getLogger(__name__).info(
            "splitter change reached traffic in %.0f ms", (time.monotonic() - written) * 1000
        )
    stack.consul.delete_config_entry("service-splitter", "web")
    await stack.follows({"web-v1", "web-v2"}, what="no splitter: every web instance again")


async def test_an_invalid_entry_is_quarantined_while_the_rest_keeps_flowing(
    stack: TrafficStack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.chains")
    versioned_web(stack)
    canary(stack, 0, 100)
    await stack.follows({"web-v2"}, what="the good routing: all of web on v2")

    # Consul accepts this resolver (filters are only parsed), but the bridge cannot evaluate
    # Node.Address on an instance: the entry is quarantined, web keeps its last good chain.
    stack.put(
        {
            "Kind": "service-resolver",
            "Name": "web",
            "Subsets": {**SUBSETS, "v2": {"Filter": 'Node.Address == "10.0.0.9"'}},
        }
    )
    # Consul does not check routes against the catalog: a route to a service that does not
    # exist is a conflict; api (other entries, same table) still changes as asked.
    for service in ("api", "nope"):  # Consul wants the destination's protocol too
        stack.put({"Kind": "service-defaults", "Name": service, "Protocol": "http"})
    stack.put(
        {
            "Kind": "service-router",
            "Name": "api",
            "Routes": [
                {"Match": {"HTTP": {"PathPrefix": "/gone"}}, "Destination": {"Service": "nope"}}
            ],
        }
    )

    def warned(text: str) -> bool:
        return any(text in r.getMessage() for r in caplog.records)

    async def both_warned() -> bool:
        return warned("service-resolver 'web' field Subsets") and warned("'nope'")

    await eventually(both_warned, timeout=BOUND, what="warnings naming both entries")
    assert set(await stack.counts("web", 20)) == {"web-v2"}  # the last good routing
    stack.register("api-2", "api")
    await stack.follows({"api-1", "api-2"}, host="api", what="another service keeps changing")

    async with aiohttp.ClientSession() as session:
        admin = f"http://127.0.0.1:{stack.bridge.admin_port}"
        async with session.get(f"{admin}/debug/traffic") as response:
            view = await response.json()
        async with session.get(f"{admin}/metrics") as response:
            metrics = await response.text()
    assert view["services"]["web"]["state"] == "last-good"
    assert view["quarantined"][0]["field"].startswith("Subsets")
    api = view["services"]["api"]  # kept, or compiled without the router (when read at once)
    assert api["state"] in ("last-good", "fallback")
    assert "'nope' does not exist in the catalog" in api["problems"][0]["text"]
    assert 'consul_xds_quarantined_config_entries{reason="invalid"} 1.0' in metrics
    assert 'consul_xds_quarantined_config_entries{reason="conflict"} 1.0' in metrics

    stack.put({"Kind": "service-resolver", "Name": "web", "Subsets": SUBSETS})
    canary(stack, 100, 0)
    await stack.follows({"web-v1"}, what="a fixed entry is used again")
    assert await stack.nacks() == 0
