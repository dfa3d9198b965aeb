"""Bridge restarts and replicas: Envoys keep serving, reconnect, and see no config churn."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.templating import BUNDLED_DIR
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.bridge_env import answers, envoy_bootstrap, start_bridge
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until

pytestmark = pytest.mark.envoy

NODE = "edge-restart"
#: Envoy stats that move when a cluster or listener is re-created (config churn).
CHURN_STATS = (
    "cluster_manager.cds.version",
    "listener_manager.lds.version",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_added",
)


@dataclass
class TrafficProbe:
    """Requests through Envoy, back to back, until stopped (bounded): counts what failed."""

    port: int
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, limit: int = 20_000) -> None:
        while not self._stop.is_set() and self.sent < limit:
            status, body = await get(self.port, host="web")
            self.sent += 1
            if status != 200:
                self.failed.append(f"HTTP {status}: {body[:80]}")
            await asyncio.sleep(0.005)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[TrafficProbe]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task


@dataclass
class World:
    consul: ConsulDouble
    templates: Path
    backends: dict[str, Backend]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_DIR, templates)
    async with backends("web-1", "web-2") as started, ConsulDouble() as consul:
        by_name = {b.name: b for b in started}
        for name in by_name:
            consul.register(
                "web", id=name, address="127.0.0.1", port=by_name[name].port, check_status="passing"
            )
        yield World(consul, templates, by_name)


async def ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


async def in_sync(bridge: Bridge, node_id: str) -> bool:
    streams = bridge.registry.by_node(node_id)
    if not streams:
        return False
    states = streams[0].types.values()
    return bool(states) and all(s.version_sent == s.version_acked for s in states)


async def churn(envoy: Envoy) -> dict[str, int]:
    stats = await envoy.stats("cluster_manager|listener_manager")
    found = {name: stats[name] for name in CHURN_STATS}
    assert found["cluster_manager.cds.version"] != 0  # the counters are real, not defaults
    assert found["cluster_manager.cluster_added"] >= 2
    return found


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_restart_keeps_traffic_and_causes_no_config_churn(world: World, delta: bool) -> None:
    xds_port, ingress = free_port(), free_port()
    first = start_bridge(world.consul, world.templates, xds_port)
    await first.start()
    try:
        await eventually(lambda: ready(first), what="bridge ready")
        async with Envoy(envoy_bootstrap(NODE, xds_port, ingress, delta)) as envoy:
            await eventually(
                lambda: answers(ingress, "web"), lambda s: set(s) == set(world.backends)
            )
            await eventually(lambda: in_sync(first, NODE), what="envoy in sync")
            before = await churn(envoy)
            async with TrafficProbe(ingress).running() as probe:
                await first.stop()
                second = start_bridge(world.consul, world.templates, xds_port)
                async with second:
                    await eventually(lambda: in_sync(second, NODE), timeout=20, what="reconnect")
                    assert await churn(envoy) == before  # identical versions: nothing rebuilt
                    world.consul.deregister("web-2")  # and changes flow from the new bridge
                    await eventually(lambda: answers(ingress, "web"), lambda s: set(s) == {"web-1"})
            assert probe.failed == []
            assert probe.sent > 20
    finally:
        await first.stop()


async def test_replicas_behind_one_xds_cluster_fail_over_without_traffic_loss(
    world: World,
) -> None:
    ports = [free_port(), free_port()]
    ingress = free_port()
    replicas = {port: start_bridge(world.consul, world.templates, port) for port in ports}
    for bridge in replicas.values():
        await bridge.start()
    try:
        await until(lambda: all(b.readiness()[0] for b in replicas.values()), what="replicas ready")
        async with Envoy(envoy_bootstrap(NODE, ports, ingress)) as envoy:
            await eventually(
                lambda: answers(ingress, "web"), lambda s: set(s) == set(world.backends)
            )
            (serving,) = [b for b in replicas.values() if b.registry.by_node(NODE)]
            (standby,) = [b for b in replicas.values() if b is not serving]
            await eventually(lambda: in_sync(serving, NODE), what="envoy in sync")
            before = await churn(envoy)
            async with TrafficProbe(ingress).running() as probe:
                await serving.stop()
                await eventually(lambda: in_sync(standby, NODE), timeout=20, what="failover")
                await until(lambda: probe.sent > 20, what="traffic during failover")
            assert probe.failed == []
            assert await churn(envoy) == before  # both replicas built identical versions
            world.consul.deregister("web-1")
            await eventually(lambda: answers(ingress, "web"), lambda s: set(s) == {"web-2"})
    finally:
        for bridge in replicas.values():
            await bridge.stop()
