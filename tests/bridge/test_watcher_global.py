"""CatalogWatcher under a small connection cap: global mode still reflects every change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from consul_double import ConsulDouble
from tests.bridge.test_watcher_support import (
    CHANGES,
    Running,
    register,
    watching,
    web_and_api,
)

CAP = 5
FILLERS = 30


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    # Fillers live on their own nodes: node-level changes on node1/node2 touch only web and api.
    # The double refuses (429) a client above CAP connections: any excess would show.
    async with ConsulDouble(datacenter="dc1", max_conns_per_client=CAP) as double:
        yield double


@pytest.fixture
async def running(consul: ConsulDouble) -> AsyncIterator[Running]:
    web_and_api(consul)
    for i in range(FILLERS):
        register(consul, f"svc-{i:02d}", f"svc-{i:02d}-1", port=10000 + i, node=f"filler{i % 4}")
    async with watching(consul, max_connections=CAP) as run:
        await run.ready(timeout=10)
        yield run
        assert consul.stats.max_concurrent_connections <= CAP
        assert consul.stats.rejected_429 == 0


async def test_global_mode_reads_everything_within_the_cap(running: Running) -> None:
    assert running.watcher.status()["modes"] == {"dc1": "global"}
    assert running.rec.ids("web") == {"web-1", "web-2"}
    assert all(running.rec.ids(f"svc-{i:02d}") == {f"svc-{i:02d}-1"} for i in range(FILLERS))
    paths = {w["path"] for w in running.watcher.status()["watches"]}
    assert "/v1/health/state/any" in paths
    assert "/v1/health/service/web" not in paths  # no per-service long polls


@pytest.mark.parametrize("kind", list(CHANGES))
async def test_every_change_kind_is_reflected_in_global_mode(running: Running, kind: str) -> None:
    action, seen = CHANGES[kind]
    mark = running.rec.mark()
    action(running.consul)
    await running.until(lambda: seen(running.rec), what=f"{kind} to reach the watcher")
    updates = running.rec.since(mark)
    assert {u.name for u in updates} == {"web"}, updates
    assert all(u.instances for u in updates)


async def test_errors_in_global_mode_keep_state_and_recover(running: Running) -> None:
    consul, rec = running.consul, running.rec
    consul.faults.error(status=500, body="No cluster leader", path_prefix="/v1/health/service/")
    mark = rec.mark()
    consul.deregister("web-2")
    await running.until(lambda: _responses(consul, 500) >= 3, what="failing re-reads")
    assert rec.since(mark) == []
    consul.faults.clear()
    await running.until(lambda: rec.ids("web") == {"web-1"}, what="recovery")
    assert all(u.instances for u in rec.since(mark))


async def test_mode_follows_the_number_of_services() -> None:
    async with ConsulDouble(datacenter="dc1", max_conns_per_client=CAP) as consul:
        register(consul, "a", "a-1")
        # 3 of 4 services go at once below: the mass-removal guard's share rule off.
        async with watching(consul, max_connections=CAP, mass_removal_share=1) as run:
            await run.ready()
            assert run.watcher.status()["modes"] == {"dc1": "per-service"}
            for name in ("b", "c", "d"):  # 4 services > CAP - 2 per-service watches
                register(consul, name, f"{name}-1")
            await run.until(lambda: run.rec.ids("d") == {"d-1"})
            assert run.watcher.status()["modes"] == {"dc1": "global"}
            for name in ("b", "c", "d"):
                consul.deregister(f"{name}-1")
            await run.until(lambda: run.rec.state.get(("d", "dc1"), ()) is None)
            await run.until(lambda: run.watcher.status()["modes"] == {"dc1": "per-service"})
            register(consul, "a", "a-1", port=9999)
            await run.until(lambda: run.rec.instance("a", "a-1").port == 9999)  # type: ignore[union-attr]
        assert consul.stats.max_concurrent_connections <= CAP
        assert consul.stats.rejected_429 == 0


def _responses(consul: ConsulDouble, status: int) -> int:
    counts: dict[Any, Any] = dict(consul.stats.responses_by_status)
    return int(counts.get(status) or counts.get(str(status)) or 0)
