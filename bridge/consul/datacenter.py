"""One datacenter: its catalog watch, the selection, and the strategy watching the services.

A blocking ``/v1/catalog/services`` watch gives the selected service names; the strategy --
per-service while ``selected <= budget - 2``, global beyond, with 10 % hysteresis -- is chosen
here and replaced when the catalog grows or shrinks past the budget. Each read is delivered as
one batch (a catalog read removing many services is one batch), so that the mass-removal guard
(:mod:`.guard`) judges what one Consul response would remove.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from ..catalog import ServiceUpdate
from .blocking import BlockingQuery, WatchContext, expect
from .client import ConsulResponse
from .global_mode import GlobalWatches
from .per_service import PerServiceWatches
from .retry import WatchStatus
from .services import Selection, ServiceTable, catalog_selection
from .strategy import GLOBAL, PER_SERVICE, WatchStrategy, choose_mode, per_service_capacity

log = logging.getLogger(__name__)


class Datacenter:
    """The watches of one datacenter and the last state delivered for it."""

    def __init__(
        self, context: WatchContext, budget: int, deliver: Callable[[list[ServiceUpdate]], None]
    ) -> None:
        """``budget``: the connections this datacenter may hold; ``deliver`` gets the updates
        of each read."""
        self.context = context
        self.name = context.datacenter
        self.budget = budget
        self.capacity = per_service_capacity(budget)
        self.table = ServiceTable(self.name)
        self.catalog = BlockingQuery(context, "/v1/catalog/services", "catalog", expect(dict))
        self.selected: Selection = {}
        self.ready = asyncio.Event()  # every selected service read once
        self._deliver = deliver
        self._strategy: WatchStrategy = self._strategy_for(PER_SERVICE)

    @property
    def mode(self) -> str:
        return self._strategy.mode

    def statuses(self) -> list[WatchStatus]:
        return [self.catalog.status, *self._strategy.statuses()]

    def index_reset(self) -> None:
        """The datacenter's indexes went backwards (the blocking watches already read again
        from 0): what was read is re-read too, not skipped for carrying a known index."""
        self.table.forget_indexes()
        self._strategy.catalog_moved()

    def _strategy_for(self, mode: str) -> WatchStrategy:
        if mode == GLOBAL:
            workers = max(1, self.budget - 3)  # catalog, health trigger, one spare
            return GlobalWatches(self.context, self.table, self._read, workers)
        return PerServiceWatches(self.context, self._read)

    async def run(self) -> None:
        # A fresh strategy each run: after a crash, every selected service is read again.
        self._strategy = self._strategy_for(self.mode)
        self._strategy.start(list(self.selected))
        try:
            while True:
                resp, body_changed = await self.catalog.next_change(index_bumps=True)
                if body_changed:
                    await self._apply_catalog(resp)
                self._strategy.catalog_moved()
                self._check_ready()
        finally:
            await self._strategy.stop()

    async def _apply_catalog(self, resp: ConsulResponse) -> None:
        selected = catalog_selection(resp.body, self.context.settings)
        previous = self.selected
        hidden = [n for n in previous if n not in selected] if resp.filtered_by_acls else []
        if hidden:
            # Services that vanish from an ACL-filtered catalog may only be hidden from the
            # token: keep serving them (a deregistration shows up in their health reads).
            log.warning(
                "dc %s: Consul's ACLs hide %d services the bridge serves (%s); keeping them - "
                "check the token's service:read",
                self.name,
                len(hidden),
                ", ".join(sorted(hidden)[:5]) + (" ..." if len(hidden) > 5 else ""),
            )
            selected = {**{n: previous[n] for n in hidden}, **selected}
        self.selected = selected
        removed = [n for n in previous if n not in selected]
        added = [n for n in selected if n not in previous]
        retagged = [n for n in selected if n in previous and previous[n] != selected[n]]
        self.table.expect(added, removed)
        forgotten = [self.table.forget(name, resp.received_at) for name in removed]
        gone = [update for update in forgotten if update is not None]
        if gone:
            self._deliver(gone)
        mode = choose_mode(self.mode, len(selected), self.capacity)
        if mode != self.mode:
            log.info(
                "dc %s: %d services selected, budget %d connections: switching to %s mode",
                self.name,
                len(selected),
                self.budget,
                mode,
            )
            old, self._strategy = self._strategy, self._strategy_for(mode)
            await old.stop()
            self._strategy.start(list(selected))
        self._strategy.selection_changed(added, removed, retagged)

    def _read(self, name: str, resp: ConsulResponse) -> bool:
        update = self.table.read(name, resp)
        if update is not None:
            self._deliver([update])
        self._check_ready()
        return update is not None

    def _check_ready(self) -> None:
        if not self.ready.is_set() and self.catalog.has_body and self.table.complete:
            self.ready.set()
