"""Global mode: a few connections watch any number of services.

Two blocking trigger watches -- the datacenter's ``/v1/catalog/services`` (run by the
datacenter) and ``/v1/health/state/any?filter=Status != "passing"`` (here) -- plus a pool of
workers re-reading individual services with non-blocking ``/v1/health/service/<name>`` reads.

The health trigger lists only the checks that are not passing: every health change moves a
check into, out of or within that list, and the body stays small where the full list would be
megabytes re-read on every check change. A change in it is attributed to its service (or, for
a node-level check, to every service with an instance on that node) and re-read first. A
catalog body change (service added, removed, retagged) is attributed the same way. Some
changes -- a port, address, meta or weight change, a new instance without checks -- only move
the catalog index, so every catalog index move also queues a *sweep*: a re-read of every
selected service, behind the attributed ones. Sweeps coalesce (a service queued twice is read
once), and a re-read answered with the service's last-read ``X-Consul-Index`` is not even
decoded. Changes that affect no health (a passing check's output, a passing check added or
removed) are picked up at the next sweep only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from functools import partial
from typing import Any

from ..tasks import cancel_and_wait
from .blocking import BlockingQuery, WatchContext, expect
from .client import ConsulError, ConsulResponse, service_path
from .retry import Retrier, WatchStatus, combined
from .services import ServiceTable
from .strategy import GLOBAL, OnRead
from .supervise import spawn

NOT_PASSING = 'Status != "passing"'
REREAD_PATH = "/v1/health/service/*"

CheckKey = tuple[str, str]  # (node, check id)
Checks = Mapping[CheckKey, Mapping[str, Any]]


def checks_by_key(body: Iterable[Any]) -> dict[CheckKey, Mapping[str, Any]]:
    return {
        (str(c.get("Node", "")), str(c.get("CheckID", ""))): c
        for c in body
        if isinstance(c, Mapping)
    }


def affected_services(
    old: Checks, new: Checks, services_on_node: Callable[[str], Collection[str]]
) -> set[str]:
    """The services whose health may differ between two health-trigger bodies."""
    names: set[str] = set()
    for key in old.keys() | new.keys():
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        for check in (before, after):
            if check is None:
                continue
            service = str(check.get("ServiceName") or "")
            if service:
                names.add(service)
            else:  # a node-level check applies to every instance on the node
                names.update(services_on_node(key[0]))
    return names


class GlobalWatches:
    """The health trigger and the re-read workers of one datacenter."""

    mode = GLOBAL

    def __init__(
        self, context: WatchContext, table: ServiceTable, on_read: OnRead, workers: int
    ) -> None:
        self._context = context
        self._table = table
        self._on_read = on_read
        self._health = BlockingQuery(
            context, "/v1/health/state/any", "global-trigger", expect(list), {"filter": NOT_PASSING}
        )
        self._checks: dict[CheckKey, Mapping[str, Any]] = {}
        # Re-reads start once the health trigger has a baseline: a change landing between a
        # service's first read and that baseline would otherwise never be attributed.
        self._primed = asyncio.Event()
        self._workers = [context.retrier(REREAD_PATH, "global-reread") for _ in range(workers)]
        self._selected: set[str] = set()
        self._urgent: dict[str, None] = {}
        self._sweep: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, selected: Collection[str]) -> None:
        dc = self._context.datacenter
        settings = self._context.settings
        self._selected = set(selected)
        self._tasks = [spawn(f"health (dc {dc})", self._watch_health, settings)]
        for number, retrier in enumerate(self._workers):
            run = partial(self._reread_worker, retrier)
            self._tasks.append(spawn(f"re-read {number} (dc {dc})", run, settings))
        self._queue(selected, urgent=False)

    def selection_changed(self, added: list[str], removed: list[str], retagged: list[str]) -> None:
        self._selected.difference_update(removed)
        self._selected.update(added)
        self._queue(added + retagged, urgent=True)

    def catalog_moved(self) -> None:
        self._queue(self._selected, urgent=False)

    def statuses(self) -> list[WatchStatus]:
        workers = [retrier.status for retrier in self._workers]
        reread = combined(REREAD_PATH, self._context.datacenter, "global-reread", workers)
        return [self._health.status, reread]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)

    async def _watch_health(self) -> None:
        while True:
            resp, _ = await self._health.next_change()
            checks = checks_by_key(resp.body)
            if self._primed.is_set():
                changed = affected_services(self._checks, checks, self._table.services_on_node)
                self._queue(changed & self._selected, urgent=True)
            self._checks = checks
            self._primed.set()

    def _queue(self, names: Iterable[str], urgent: bool) -> None:
        target = self._urgent if urgent else self._sweep
        for name in names:
            target[name] = None
        if target:
            self._wake.set()

    async def _next_queued(self) -> str:
        while True:
            for queue in (self._urgent, self._sweep):
                for name in queue:
                    del queue[name]
                    if queue is self._urgent:
                        self._sweep.pop(name, None)
                    return name
            self._wake.clear()
            await self._wake.wait()

    async def _reread_worker(self, retrier: Retrier) -> None:
        await self._primed.wait()
        while True:
            name = await self._next_queued()
            if name in self._selected:
                await self._reread(name, retrier)

    async def _reread(self, name: str, retrier: Retrier) -> None:
        path = service_path(name)
        # A sweep re-reads every service: one whose index did not move is not decoded.
        known = self._table.known_index(name)

        async def read() -> ConsulResponse:
            resp = await self._context.client.get_json(
                path, self._context.params(), known_index=known
            )
            self._context.observe(resp)
            if not resp.unchanged and not isinstance(resp.body, list):
                raise ConsulError("invalid_body", f"GET {path}: expected a JSON list")
            return resp

        resp = await retrier.call(read)
        retrier.status.index = resp.index
        if name in self._selected and not resp.unchanged and self._on_read(name, resp):
            retrier.status.last_change = time.time()
