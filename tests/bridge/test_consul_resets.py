"""Index resets, the datacenter probe and per-datacenter readiness, against the Consul double
(no Envoy): what the watcher delivers, and when."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import pytest

from bridge.admin import AdminViews, admin_app, start_admin
from bridge.consul.probe import went_backwards
from bridge.consul.readiness import datacenter_problems
from bridge.consul.resets import IndexResets, Interrupted
from bridge.tasks import within
from consul_double import ConsulDouble
from tests.bridge.test_watcher_support import Running, register, watching, web_and_api


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as double:
        web_and_api(double)
        yield double


def guard(run: Running, dc: str = "dc1") -> dict[str, Any]:
    status: dict[str, Any] = run.watcher.status()["datacenter_status"][dc]["removal_guard"]
    return status


def test_went_backwards_only_below_the_highest_valid_index() -> None:
    assert went_backwards(20, 3)
    assert not went_backwards(20, 20)
    assert not went_backwards(20, 25)
    assert not went_backwards(0, 3)  # nothing seen yet
    assert not went_backwards(20, 0)  # no index header: not a reset


async def test_a_reset_interrupts_what_is_in_flight_and_calls_back() -> None:
    seen: list[str] = []
    resets = IndexResets("dc1", seen.append)
    never = asyncio.get_running_loop().create_future()
    waiting = asyncio.create_task(resets.interruptible(never))
    await asyncio.sleep(0)  # let it start waiting
    resets.went_backwards("/v1/catalog/services", 40, 3)
    with pytest.raises(Interrupted):
        await within(waiting, 5)
    assert (resets.generation, resets.count) == (1, 1)
    assert seen == ["/v1/catalog/services: index 40 → 3"]
    assert await resets.interruptible(asyncio.sleep(0, "done")) == "done"


def test_readiness_sentences_name_datacenters_and_held_removals() -> None:
    fine = {"name": "dc1", "read": True, "reachable": True, "removal_guard": {"holding": False}}
    unread = {"name": "dc9", "read": False, "reachable": False, "last_error": "No path"}
    gone = {"name": "dc2", "read": True, "reachable": False, "last_error": "timed out"}
    held = {
        **fine,
        "removal_guard": {
            "holding": True,
            "services_held": 3,
            "endpoints_held": 5,
            "reason": "Consul's index went backwards",
            "release_at": 0.0,
        },
    }
    assert datacenter_problems([fine]) == []
    problems = datacenter_problems([held, gone, unread])
    assert problems[0].startswith("datacenter dc1: holding the removal of 3 services and 5")
    assert "until 1970-01-01T00:00:00Z" in problems[0]
    assert "POST /debug/accept-removal" in problems[0]
    assert "dc2 cannot be reached (timed out)" in problems[1]
    assert problems[2] == "datacenter dc9 not read yet: it cannot be reached (No path); retrying"


async def test_changes_after_a_reset_arrive_long_before_the_wait_expires(
    consul: ConsulDouble,
) -> None:
    async with watching(consul, wait="60s") as run:
        await run.ready()
        consul.reset_index()
        started = time.monotonic()
        register(consul, "web", "web-1", port=7777)
        await run.until(
            lambda: run.rec.instance("web", "web-1").port == 7777,  # type: ignore[union-attr]
            timeout=15,
            what="the change after the reset",
        )
        assert time.monotonic() - started < 15  # a held query would wait 60 s
        assert run.watcher.status()["datacenter_status"]["dc1"]["index_resets"] >= 1


async def test_a_consul_restarted_empty_is_held_then_published_once_stable(
    consul: ConsulDouble,
) -> None:
    async with watching(consul, mass_removal_hold="1s") as run:
        await run.ready()
        mark = run.rec.mark()
        await consul.lose_state()
        await run.until(lambda: guard(run)["holding"], what="the removal held")
        assert run.rec.ids("web") == {"web-1", "web-2"}
        assert all(u.instances for u in run.rec.since(mark))  # nothing removed yet
        register(consul, "api", "api-1", port=9999)  # re-registered, changed: served at once
        await run.until(lambda: run.rec.instance("api", "api-1").port == 9999)  # type: ignore[union-attr]
        assert guard(run)["services"] == ["web"]
        await run.until(lambda: run.rec.ids("web") is None, what="published once stable")
        assert not guard(run)["holding"]
        assert guard(run)["holds_total"] == 1


async def test_an_unreachable_failover_datacenter_does_not_delay_readiness(
    consul: ConsulDouble,
) -> None:
    register(consul, "web", "web-dc2", port=8090, datacenter="dc2")
    consul.set_datacenter_reachable("dc2", False)
    async with watching(consul, datacenters=("dc2",)) as run:
        await run.ready()
        assert run.rec.ids("web") == {"web-1", "web-2"}
        assert not run.watcher.complete.is_set()
        await run.until(
            lambda: run.watcher.status()["datacenter_status"]["dc2"]["reachable"] is False,
            what="dc2 reported unreachable",
        )
        assert any("dc2 not read yet" in p for p in run.watcher.problems())
        consul.set_datacenter_reachable("dc2", True)
        await run.until(lambda: run.rec.ids("web", "dc2") == {"web-dc2"}, what="dc2 read")
        await within(run.watcher.complete.wait(), 5)


async def test_accept_removal_is_an_admin_post_with_the_debug_token() -> None:
    accepted: list[str] = []

    def accept(query: Mapping[str, str]) -> tuple[int, Any]:
        accepted.append("yes")
        return 200, {"accepted": {}}

    views = AdminViews(lambda: (True, "ok"), debug_token="t0k", actions={"accept-removal": accept})
    runner, port = await start_admin(admin_app(views), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{port}/debug/"
    token = {"Authorization": "Bearer t0k"}
    try:
        async with aiohttp.ClientSession() as session:

            async def post(path: str, headers: dict[str, str]) -> int:
                async with session.post(url + path, headers=headers) as response:
                    return response.status

            assert await post("accept-removal", {}) == 401
            assert await post("accept-removal", {**token, "Origin": "http://a.example"}) == 403
            assert await post("no-such-action", token) == 404
            assert accepted == []
            assert await post("accept-removal", token) == 200
            assert accepted == ["yes"]
    finally:
        await runner.cleanup()
