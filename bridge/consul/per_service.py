"""Per-service mode: one blocking ``/v1/health/service/<name>`` watch per selected service.

Consul keeps one index per service, so a write to one service wakes only its own watch: every
change (instances, address, port, tags, meta, weights, check status, service or node
maintenance, node checks) arrives in one round trip, with no wasted reads. It needs one
connection per service, so it is used while the services fit the budget.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Iterable
from functools import partial

from ..tasks import cancel_and_wait
from .blocking import BlockingQuery, WatchContext, expect
from .client import service_path
from .retry import WatchStatus
from .strategy import PER_SERVICE, OnRead
from .supervise import spawn


class PerServiceWatches:
    """One supervised blocking-query task per selected service."""

    mode = PER_SERVICE

    def __init__(self, context: WatchContext, on_read: OnRead) -> None:
        self._context = context
        self._on_read = on_read
        self._watches: dict[str, tuple[BlockingQuery, asyncio.Task[None]]] = {}
        self._stopping: set[asyncio.Task[None]] = set()

    def start(self, selected: Collection[str]) -> None:
        self._add(selected)

    def selection_changed(self, added: list[str], removed: list[str], retagged: list[str]) -> None:
        self._remove(removed)
        self._add(added)

    def catalog_moved(self) -> None:
        """Nothing to do: each service's own index wakes its watch."""

    def statuses(self) -> list[WatchStatus]:
        return [query.status for query, _ in self._watches.values()]

    async def stop(self) -> None:
        tasks = [task for _, task in self._watches.values()] + list(self._stopping)
        self._watches.clear()
        await cancel_and_wait(tasks)

    def _add(self, names: Iterable[str]) -> None:
        for name in names:
            if name in self._watches:
                continue
            path = service_path(name)
            query = BlockingQuery(self._context, path, PER_SERVICE, expect(list))
            task = spawn(
                f"watch {path} (dc {self._context.datacenter})",
                partial(self._watch, name, query),
                self._context.settings,
            )
            self._watches[name] = (query, task)

    def _remove(self, names: Iterable[str]) -> None:
        for name in names:
            entry = self._watches.pop(name, None)
            if entry is not None:
                task = entry[1]
                task.cancel()
                self._stopping.add(task)
                task.add_done_callback(self._stopping.discard)

    async def _watch(self, name: str, query: BlockingQuery) -> None:
        while True:
            resp, _ = await query.next_change()
            self._on_read(name, resp)
