"""What an operator scrapes and reads on the admin listener, with a real Envoy connected."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.bridge_env import Stack, running_stack
from tests.support.waiting import eventually
from tests.support.xds_resources import eds_cluster
from xds_server.resource import CLUSTER

pytestmark = pytest.mark.envoy

NODE = "edge-ops"


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack(NODE) as started:
        yield started


async def admin_get(stack: Stack, path: str) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{stack.bridge.admin_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def samples(stack: Stack) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample on /metrics: (name, labels) → value."""
    _, text = await admin_get(stack, "/metrics")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(
    found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def test_push_latency_is_observed_for_a_consul_change(stack: Stack) -> None:
    await stack.follows({"web-1", "web-2"})
    before = value(await samples(stack), "consul_xds_push_latency_seconds_count", type="endpoint")
    stack.consul.deregister("web-2")
    await stack.follows({"web-1"})
    found = await eventually(
        lambda: samples(stack),
        lambda s: value(s, "consul_xds_push_latency_seconds_count", type="endpoint") > before,
        what="an endpoint push-latency observation",
    )
    total = value(found, "consul_xds_push_latency_seconds_sum", type="endpoint")
    assert 0 < total < 60
    assert value(found, "consul_xds_responses_total", type="endpoint") >= 2
    assert value(found, "consul_xds_resources", type="cluster") == 1  # only web is registered
    assert value(found, "consul_xds_catalog_services") == 1
    ok = [v for (name, labels), v in found.items() if name == "consul_xds_consul_requests_total"
          and ("outcome", "ok") in labels]  # fmt: skip
    assert sum(ok) > 0
    assert 0 <= value(found, "consul_xds_consul_last_contact_seconds") < 60
    assert value(found, "consul_xds_snapshot_build_duration_seconds_count") >= 2


async def test_connected_clients_go_up_then_back_to_zero(stack: Stack) -> None:
    found = await samples(stack)
    assert value(found, "consul_xds_connected_clients") == 1
    await stack.envoy.stop()
    await eventually(
        lambda: samples(stack),
        lambda s: value(s, "consul_xds_connected_clients") == 0,
        what="connected clients back to 0",
    )


async def test_a_rejected_config_is_counted_and_shown_with_its_message(stack: Stack) -> None:
    key = stack.bridge.registry.by_node(NODE)[0].node_key
    stack.bridge.cache.update_resources(key, CLUSTER, [eds_cluster("broken", connect_timeout_ms=0)])
    await eventually(
        lambda: samples(stack),
        lambda s: value(s, "consul_xds_nacks_total", type="cluster") == 1,
        what="one NACK counted",
    )
    status, clients = await admin_get(stack, "/debug/clients")
    assert status == 200
    (client,) = [c for c in clients["clients"] if c["node_id"] == NODE]
    assert "ConnectTimeout" in client["types"]["cluster"]["last_nack"]["message"]
    assert client["types"]["endpoint"]["in_sync"] is True
    assert client["user_agent"].startswith("envoy/")


async def test_debug_views_show_resources_and_consul_watches(stack: Stack) -> None:
    status, resources = await admin_get(stack, f"/debug/resources?node={NODE}")
    assert status == 200
    clusters = resources["resources"]["cluster"]["items"]
    assert [c["name"] for c in clusters] == ["web"]
    (assignment,) = resources["resources"]["endpoint"]["items"]
    ports = {
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for locality in assignment["resource"]["endpoints"]
        for lb in locality["lb_endpoints"]
    }
    assert ports == {stack.backends["web-1"].port, stack.backends["web-2"].port}

    status, consul = await admin_get(stack, "/debug/consul")
    assert status == 200
    assert consul["ready"] is True
    assert consul["datacenters"] == ["dc1", "dc2"]
    assert all("index" in watch for watch in consul["watches"])

    status, error = await admin_get(stack, "/debug/resources")
    assert status == 400
    assert "node=" in error["error"]
    status, _ = await admin_get(stack, "/debug/nope")
    assert status == 404


async def test_health_and_readiness(stack: Stack) -> None:
    assert (await admin_get(stack, "/healthz"))[0] == 200
    status, body = await admin_get(stack, "/readyz")
    assert status == 200
    assert body["status"] == "ready"
