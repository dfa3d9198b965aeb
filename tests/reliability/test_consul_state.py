"""Consul's state itself going wrong, with a real Envoy: a Consul restarted empty, an index reset,
an unreachable failover datacenter. The fleet keeps serving, the operator sees why (log, metric,
``/debug/consul``, ``/readyz``), and changes flow again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from consul_double import ConsulDouble
from tests.support.backends import backends, get
from tests.support.bridge_env import Stack, bridge_bootstrap, bridge_config, running_stack
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until

pytestmark = pytest.mark.envoy

NODE = "edge-consul-state"


@dataclass
class Traffic:
    """Requests through Envoy to each host, back to back until stopped (bounded)."""

    port: int
    hosts: tuple[str, ...]
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, limit: int = 50_000) -> None:
        while not self._stop.is_set() and self.sent < limit:
            for host in self.hosts:
                status, body = await get(self.port, host=host)
                self.sent += 1
                if status != 200:
                    self.failed.append(f"{host}: HTTP {status} {body[:60]}")
            await asyncio.sleep(0.005)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Traffic]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task


async def admin(bridge: Bridge, path: str, method: str = "GET") -> tuple[int, Any]:
    url = f"http://127.0.0.1:{bridge.admin_port}{path}"
    async with aiohttp.ClientSession() as session, session.request(method, url) as response:
        if response.content_type == "application/json":
            return response.status, await response.json()
        return response.status, await response.text()


async def metric(bridge: Bridge, name: str, **labels: str) -> float:
    _, text = await admin(bridge, "/metrics")
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return float("nan")


def dc_status(bridge: Bridge, dc: str = "dc1") -> dict[str, Any]:
    status: dict[str, Any] = bridge.watcher.status()["datacenter_status"][dc]
    return status


def holding(bridge: Bridge) -> bool:
    return bool(dc_status(bridge)["removal_guard"]["holding"])


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack(NODE) as started:
        started.register("api-1", service="api")
        await started.follows({"web-1", "web-2"})
        await started.follows({"api-1"}, host="api")
        yield started


async def test_consul_restarted_empty_is_held_until_the_operator_accepts(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    bridge = stack.bridge
    async with Traffic(stack.ingress, ("web", "api")).running() as traffic:
        await stack.consul.lose_state()
        await until(lambda: holding(bridge), what="the removal held")
        guard = dc_status(bridge)["removal_guard"]
        assert set(guard["services"]) == {"web", "api"}
        assert "holding the removal of" in caplog.text
        assert "Consul's index went backwards" in caplog.text
        assert await metric(bridge, "consul_xds_mass_removal_held", dc="dc1") == 2
        assert await metric(bridge, "consul_xds_mass_removal_holds_total", dc="dc1") == 1
        assert await metric(bridge, "consul_xds_consul_index_resets_total", dc="dc1") >= 1
        status, ready = await admin(bridge, "/readyz")
        assert status == 200
        assert "holding the removal of 2 services" in ready["reason"]
        assert "POST /debug/accept-removal" in ready["reason"]
        _, debug = await admin(bridge, "/debug/consul")
        assert debug["datacenter_status"]["dc1"]["removal_guard"]["services_held"] == 2

        # Registrations during the hold are served: web-1 again, and a new instance (web-3).
        stack.register("web-1")
        stack.consul.register(
            "web", id="web-3", address="127.0.0.1", port=stack.backends["web-dc2"].port
        )
        await stack.follows({"web-1", "web-2", "web-dc2"}, what="a new instance during the hold")
        assert dc_status(bridge)["removal_guard"]["services"] == ["api", "web"]
        assert await stack.traffic("api") == {"api-1"}
    assert traffic.failed == []
    assert traffic.sent > 50

    accepted_at = time.monotonic()
    status, body = await admin(bridge, "/debug/accept-removal", method="POST")
    assert status == 200
    assert body["accepted"]["dc1"]["services_held"] == 2
    await stack.follows({"web-1", "web-dc2"}, what="web-2 removed once accepted")
    await eventually(stack.envoy.active_clusters, lambda c: "api" not in c, what="api removed")
    assert time.monotonic() - accepted_at < 10
    assert not holding(bridge)
    assert "an operator accepted the held removals" in caplog.text


async def test_an_accept_from_a_browser_page_is_refused(stack: Stack) -> None:
    url = f"http://127.0.0.1:{stack.bridge.admin_port}/debug/accept-removal"
    headers = {"Origin": "http://example.invalid"}
    async with aiohttp.ClientSession() as session, session.post(url, headers=headers) as response:
        assert response.status == 403


async def test_a_change_right_after_an_index_reset_arrives_long_before_the_wait() -> None:
    """With consul.wait 60s, a blocking query held on the old index would wait a minute."""
    async with running_stack(NODE, wait="60s") as stack:
        await stack.follows({"web-1", "web-2"})
        bridge = stack.bridge
        async with Traffic(stack.ingress, ("web",)).running() as traffic:
            stack.consul.reset_index()
            changed_at = time.monotonic()
            stack.register("api-1", service="api")  # a change right after the reset
            await stack.follows({"api-1"}, host="api", what="the change after the reset")
            seconds = time.monotonic() - changed_at
            stack.consul.deregister("web-2")  # a removal right after a reset is held
            await until(lambda: holding(bridge), what="the removal after the reset held")
            assert await stack.traffic() == {"web-1", "web-2"}
        assert traffic.failed == []
        assert seconds < 15  # bounded well under consul.wait (about a second measured)
        assert dc_status(bridge)["index_resets"] >= 1
        bridge.watcher.accept_removals()
        await stack.follows({"web-1"}, what="the removal once accepted")


async def test_an_unreachable_failover_datacenter_blocks_nothing() -> None:
    async with (
        backends("web-1", "api-9") as started,
        ConsulDouble(datacenter="dc1", extra_datacenters=("dc9",)) as consul,
    ):
        ports = {b.name: b.port for b in started}
        consul.register("web", id="web-1", address="127.0.0.1", port=ports["web-1"])
        consul.register(
            "api", id="api-9", address="127.0.0.1", port=ports["api-9"], datacenter="dc9"
        )
        consul.set_datacenter_reachable("dc9", False)  # before the bridge (re)starts
        async with Bridge(bridge_config(consul, datacenters=("dc9",))) as bridge:
            await until(lambda: bridge.readiness()[0], what="ready without dc9")
            status, ready = await admin(bridge, "/readyz")
            assert status == 200
            assert "datacenter dc9 not read yet" in ready["reason"]
            assert "No path to datacenter" in ready["reason"]
            assert dc_status(bridge, "dc9")["reachable"] is False
            assert await metric(bridge, "consul_xds_datacenter_reachable", dc="dc9") == 0
            assert await metric(bridge, "consul_xds_datacenter_reachable", dc="dc1") == 1
            ingress = free_port()
            bootstrap = bridge_bootstrap(bridge.xds_port, NODE, ingress, ["web", "api"])
            async with Envoy(bootstrap):
                await eventually(
                    lambda: get(ingress, host="web"),
                    lambda reply: reply == (200, "web-1"),
                    what="the local datacenter served",
                )
                consul.set_datacenter_reachable("dc9", True)
                await eventually(
                    lambda: get(ingress, host="api"),
                    lambda reply: reply == (200, "api-9"),
                    what="dc9's endpoints once it answers",
                )
            await until(lambda: bridge.watcher.complete.is_set(), what="every datacenter read")
            await eventually(  # the probe's next round
                lambda: metric(bridge, "consul_xds_datacenter_reachable", dc="dc9"),
                lambda found: found == 1,
                what="dc9 reported reachable",
            )
            assert "dc9" not in bridge.readiness()[1]
