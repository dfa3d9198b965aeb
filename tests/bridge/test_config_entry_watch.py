"""The config entry watch: one blocking list, the whole table delivered on change, readiness,
the connection budget, and "never lose served state" (errors, a Consul that lost its data,
entries hidden by ACLs)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.config_entries import ENTRY_KINDS, ConfigEntriesUpdate
from bridge.consul import CatalogWatcher, ConsulClient, ConsulError, ConsulResponse
from bridge.consul.blocking import WatchContext
from bridge.consul.config_entries import ConfigEntryWatch
from bridge.consul.retry import Recovery
from bridge.consul_settings import settings_from_env
from bridge.tasks import within
from consul_double import ConsulDouble

from .test_watcher_support import Recorder, fast_settings, register

WEB_DEFAULTS = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
WEB_RESOLVER = {"Kind": "service-resolver", "Name": "web", "DefaultSubset": "v1"}
WEB_RESOLVER["Subsets"] = {"v1": {"Filter": "Service.Meta.version == v1"}}  # type: ignore[assignment]


@dataclass
class Tables:
    """The watcher's ``on_config_entries``: every table delivered."""

    updates: list[ConfigEntriesUpdate] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, update: ConfigEntriesUpdate) -> None:
        self.updates.append(update)
        self.changed.set()

    def names(self, index: int = -1) -> set[tuple[str, str]]:
        return {(str(e["Kind"]), str(e["Name"])) for e in self.updates[index].entries}

    async def until(self, predicate: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await within(self.changed.wait(), min(0.05, remaining))


@dataclass
class Watching:
    consul: ConsulDouble
    watcher: CatalogWatcher
    tables: Tables


@contextlib.asynccontextmanager
async def watching(consul: ConsulDouble, **overrides: Any) -> AsyncIterator[Watching]:
    settings = fast_settings(consul, **overrides)
    client = ConsulClient(settings)
    tables = Tables()
    watcher = CatalogWatcher(client, settings, Recorder(), on_config_entries=tables)
    task = asyncio.create_task(watcher.run())
    try:
        yield Watching(consul, watcher, tables)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1") as double:
        register(double, "web", "web-1")
        double.put_config_entry(WEB_DEFAULTS)
        yield double


async def test_the_first_table_comes_before_ready_and_any_write_delivers_it_once(
    consul: ConsulDouble,
) -> None:
    async with watching(consul) as run:
        await within(run.watcher.ready.wait(), 10)
        assert run.tables.names() == {("service-defaults", "web")}
        paths = {w["path"] for w in run.watcher.status()["watches"]}
        assert {f"/v1/config/{kind}" for kind in ENTRY_KINDS} <= paths

        consul.put_config_entry(WEB_RESOLVER)  # another kind than the blocking list's
        await run.tables.until(lambda: len(run.tables.updates) == 2, "the resolver")
        assert run.tables.names() == {("service-defaults", "web"), ("service-resolver", "web")}

        register(consul, "api", "api-1")  # the catalog moves, not the config entries
        consul.put_config_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "http"})
        await run.tables.until(lambda: len(run.tables.updates) == 3, "api's defaults")
        assert len(run.tables.updates) == 3


async def test_the_watch_takes_its_connections_from_the_local_budget(
    consul: ConsulDouble,
) -> None:
    for n in range(3):
        register(consul, f"svc-{n}", f"svc-{n}-1")
    # 6 connections: per-service watches fit 6 - 2 = 4 services, but 6 - 2 - 2 = 2 with the
    # config entry watch; the catalog (web, svc-0..2, consul excluded) has 4.
    async with watching(consul, max_connections=6) as run:
        await within(run.watcher.ready.wait(), 10)
        assert run.watcher.status()["modes"] == {"dc1": "global"}


async def test_errors_deliver_nothing_and_the_change_arrives_after(
    consul: ConsulDouble,
) -> None:
    async with watching(consul) as run:
        await within(run.watcher.ready.wait(), 10)
        fault = consul.faults.error(500, "rpc error", path_prefix="/v1/config")
        consul.put_config_entry(WEB_RESOLVER)
        await run.tables.until(lambda: fault.hits >= 2, "the watch meeting the fault")
        assert len(run.tables.updates) == 1
        consul.faults.clear()
        await run.tables.until(lambda: len(run.tables.updates) == 2, "the change after the fault")
        assert ("service-resolver", "web") in run.tables.names()


async def test_an_empty_table_right_after_a_failure_is_held_until_confirmed(
    consul: ConsulDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    async with watching(consul, wait="1s") as run:
        await within(run.watcher.ready.wait(), 10)
        await consul.lose_state()  # connections cut, then a freshly booted, empty Consul

        def held() -> bool:
            return logged(caplog, "no config entries right after failing")

        await run.tables.until(held, "the empty table held")
        assert [len(u.entries) for u in run.tables.updates] == [1]
        # A blocking read on the empty table, with no failure since, confirms it.
        await run.tables.until(lambda: len(run.tables.updates) == 2, "the confirmed empty table")
        assert run.tables.updates[-1].entries == ()


async def test_entries_restored_while_held_are_never_delivered_empty(
    consul: ConsulDouble, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    async with watching(consul, wait="5s") as run:
        await within(run.watcher.ready.wait(), 10)
        await consul.lose_state()

        def held() -> bool:
            return logged(caplog, "no config entries right after failing")

        await run.tables.until(held, "the empty table held")
        consul.put_config_entry(WEB_DEFAULTS)  # an operator restores the entries
        consul.put_config_entry(WEB_RESOLVER)
        await run.tables.until(lambda: len(run.tables.updates) >= 2, "the restored table")
        assert all(update.entries for update in run.tables.updates)
        await run.tables.until(
            lambda: ("service-resolver", "web") in run.tables.names(), "both entries"
        )


def logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)


# ------------------------------------------------------------------ ACL-filtered lists
class FilteringConsul:
    """A client answering each config list at once from ``tables``; lists named in
    ``filtered`` carry X-Consul-Results-Filtered-By-ACLs. Blocking reads wait for ``bump``."""

    def __init__(self) -> None:
        self.tables: dict[str, list[Mapping[str, Any]]] = {kind: [] for kind in ENTRY_KINDS}
        self.filtered: set[str] = set()
        self.index = 10
        self._moved = asyncio.Event()

    def bump(self) -> None:
        self.index += 1
        self._moved.set()

    async def get_json(
        self, path: str, params: Any = None, *, known_index: int = 0
    ) -> ConsulResponse:
        kind = path.rsplit("/", 1)[1]
        if kind not in self.tables:
            raise ConsulError("client_error", f"unexpected {path}")
        if dict(params or {}).get("index", 0) >= self.index:
            self._moved.clear()
            with contextlib.suppress(TimeoutError):
                await within(self._moved.wait(), 5)
        headers = {"X-Consul-Results-Filtered-By-ACLs": "true"} if kind in self.filtered else {}
        body = list(self.tables[kind])
        return ConsulResponse(200, self.index, body, headers, time.monotonic())


async def test_entries_hidden_by_acls_are_kept(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    client = FilteringConsul()
    client.tables["service-defaults"] = [dict(WEB_DEFAULTS), {**WEB_DEFAULTS, "Name": "api"}]
    tables = Tables()
    settings = settings_from_env({}, address="http://127.0.0.1:1", wait="1s", min_interval=0)
    context = WatchContext(client, settings, Recovery(), lambda resp: None, "dc1", None)
    watch = ConfigEntryWatch(context, tables)
    task = asyncio.create_task(watch.run())
    try:
        await tables.until(lambda: len(tables.updates) == 1, "the first table")
        client.tables["service-defaults"] = [dict(WEB_DEFAULTS)]  # api's: hidden, not deleted
        client.tables["service-resolver"] = [dict(WEB_RESOLVER)]
        client.filtered = {"service-defaults"}
        client.bump()
        await tables.until(lambda: len(tables.updates) == 2, "the next table")
        assert ("service-defaults", "api") in tables.names()
        assert ("service-resolver", "web") in tables.names()
        assert any("ACLs hide config entries" in r.getMessage() for r in caplog.records)

        client.filtered = set()  # an unfiltered list that lacks it: deleted
        client.bump()
        await tables.until(lambda: len(tables.updates) == 3, "the unfiltered table")
        assert ("service-defaults", "api") not in tables.names()
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
