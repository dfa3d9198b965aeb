"""Global mode at scale: a small health trigger, and sweeps that skip unchanged services."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from bridge.consul import ConsulClient, ConsulResponse
from bridge.consul.global_mode import NOT_PASSING
from consul_double import ConsulDouble
from tests.bridge.test_watcher_support import Running, fast_settings, register, watching

CAP = 5
FILLERS = 12


@pytest.fixture
async def running() -> AsyncIterator[tuple[Running, list[tuple[str, dict[str, Any], bool]]]]:
    async with ConsulDouble(datacenter="dc1", max_conns_per_client=CAP) as consul:
        register(consul, "web", "web-1", port=8080, node="node1")
        for i in range(FILLERS):
            register(consul, f"svc-{i:02d}", f"svc-{i:02d}-1", port=10000 + i, node="filler")
        async with watching(consul, max_connections=CAP) as run:
            calls: list[tuple[str, dict[str, Any], bool]] = []
            original = run.client.get_json

            async def recording(
                path: str, params: Mapping[str, Any] | None = None, *, known_index: int = 0
            ) -> ConsulResponse:
                resp = await original(path, params, known_index=known_index)
                calls.append((path, dict(params or {}), resp.unchanged))
                return resp

            run.client.get_json = recording  # type: ignore[method-assign,assignment]
            await run.ready(timeout=10)
            yield run, calls
        assert consul.stats.rejected_429 == 0


async def test_health_trigger_lists_only_checks_that_are_not_passing(
    running: tuple[Running, list[tuple[str, dict[str, Any], bool]]],
) -> None:
    run, calls = running
    assert run.watcher.status()["modes"] == {"dc1": "global"}
    health = [p for path, p, _ in calls if path == "/v1/health/state/any"]
    assert health
    assert all(p.get("filter") == NOT_PASSING for p in health)
    run.consul.set_check_status("service:web-1", "critical")
    await run.until(lambda: run.rec.instance("web", "web-1").health.name == "CRITICAL")  # type: ignore[union-attr]
    run.consul.set_check_status("service:web-1", "passing")
    await run.until(lambda: run.rec.instance("web", "web-1").health.name == "PASSING")  # type: ignore[union-attr]


async def test_a_sweep_does_not_decode_unchanged_services(
    running: tuple[Running, list[tuple[str, dict[str, Any], bool]]],
) -> None:
    run, calls = running
    mark = len(calls)
    register(run.consul, "web", "web-1", port=9999, node="node1")  # only the catalog index moves
    await run.until(lambda: run.rec.instance("web", "web-1").port == 9999)  # type: ignore[union-attr]
    await run.until(
        lambda: sum(1 for path, _, same in calls[mark:] if same) >= FILLERS,
        what="the sweep to re-read the other services",
    )
    rereads = [(path, same) for path, _, same in calls[mark:] if "/health/service/" in path]
    assert ("/v1/health/service/web", False) in rereads
    assert all(same for path, same in rereads if path != "/v1/health/service/web")


async def test_known_index_skips_decoding_only_when_the_index_is_the_same() -> None:
    async with ConsulDouble() as consul:
        register(consul, "web", "web-1")
        async with ConsulClient(fast_settings(consul)) as client:
            first = await client.get_json("/v1/health/service/web")
            same = await client.get_json("/v1/health/service/web", known_index=first.index)
            assert (same.unchanged, same.body, same.index) == (True, None, first.index)
            consul.set_check_status("service:web-1", "warning")
            moved = await client.get_json("/v1/health/service/web", known_index=first.index)
            assert not moved.unchanged
            assert moved.body[0]["Checks"][-1]["Status"] == "warning"
