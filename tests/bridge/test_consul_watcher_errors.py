"""Errors on the Consul side never vanish: crashed watches come back, a failing ``on_update``
is logged, counted and reported, and a token without ``agent:read`` still finds its datacenter."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from bridge.catalog import ServiceUpdate
from bridge.consul import CatalogWatcher, ConsulClient, ConsulResponse
from bridge.consul.client import Params
from consul_double import ConsulDouble
from tests.bridge.test_watcher_support import Recorder, eventually, fast_settings, register


class CrashingOnce:
    """A real client, except that the first read of one path raises a bug-like error."""

    def __init__(self, client: ConsulClient, path: str) -> None:
        self.client = client
        self.path = path
        self.crashed = False

    async def get_json(
        self, path: str, params: Params | None = None, *, known_index: int = 0
    ) -> ConsulResponse:
        if path == self.path and not self.crashed:
            self.crashed = True
            raise RuntimeError("a bug in a watch")
        return await self.client.get_json(path, params, known_index=known_index)


@contextlib.asynccontextmanager
async def running(watcher: CatalogWatcher) -> AsyncIterator[None]:
    task = asyncio.create_task(watcher.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.parametrize("path", ["/v1/health/service/web", "/v1/catalog/services"])
async def test_a_crashed_watch_is_logged_at_error_and_restarted(
    path: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with ConsulDouble(datacenter="dc1") as consul:
        register(consul, "web", "web-1")
        settings = fast_settings(consul)
        async with ConsulClient(settings) as client:
            rec = Recorder()
            watcher = CatalogWatcher(CrashingOnce(client, path), settings, rec)
            async with running(watcher):
                await eventually(rec, lambda: rec.ids("web") == {"web-1"}, what="web read")
                register(consul, "web", "web-2", node="node2")
                await eventually(rec, lambda: rec.ids("web") == {"web-1", "web-2"}, what="change")
    crashes = [r for r in caplog.records if r.levelno == logging.ERROR and "crashed" in r.message]
    assert len(crashes) == 1
    assert "a bug in a watch" in caplog.text


async def test_a_failing_on_update_is_logged_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rec = Recorder()
    reported: list[BaseException] = []

    def on_update(updates: list[ServiceUpdate]) -> None:
        if any(u.name == "api" for u in updates) and not reported:
            raise ValueError("publisher refused")
        rec(updates)

    async with ConsulDouble(datacenter="dc1") as consul:
        register(consul, "web", "web-1")
        register(consul, "api", "api-1", port=9090)
        settings = fast_settings(consul)
        async with ConsulClient(settings) as client:
            watcher = CatalogWatcher(client, settings, on_update, reported.append)
            async with running(watcher):
                await eventually(rec, lambda: watcher.ready.is_set(), what="ready")
                assert [str(e) for e in reported] == ["publisher refused"]
                assert watcher.status()["update_errors"] == 1
                assert rec.ids("web") == {"web-1"}
                register(consul, "api", "api-2", port=9091)  # the next change gets through
                await eventually(rec, lambda: rec.ids("api") == {"api-1", "api-2"})
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert ["api" in r.getMessage() and "stale" in r.getMessage() for r in errors] == [True]


async def test_a_token_without_agent_read_takes_the_first_listed_datacenter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as consul:
        register(consul, "web", "web-1")
        consul.faults.error(
            status=403, body="Permission denied", times=None, path_prefix="/v1/agent/self"
        )
        settings = fast_settings(consul)
        async with ConsulClient(settings) as client:
            rec = Recorder()
            watcher = CatalogWatcher(client, settings, rec)
            async with running(watcher):
                await eventually(rec, watcher.ready.is_set, what="ready")
    assert watcher.local_datacenter == "dc1"
    assert rec.ids("web") == {"web-1"}
    assert "cannot read /v1/agent/self (agent:read)" in caplog.text
