"""The discovery config entries of one datacenter: one blocking list, the other kinds re-read.

Consul keeps one ``X-Consul-Index`` for the whole config-entries table, and a list of one kind
watches that table index: any config entry write, of any kind, wakes a blocking
``GET /v1/config/<kind>`` (``agent/consul/state/config_entry.go``, ``configEntriesByKindTxn``).
So one blocking list (the first kind of :data:`~bridge.config_entries.ENTRY_KINDS`) is the
trigger, and each time its index moves the other kinds are listed once, without blocking: two
connections (one held, one for the re-reads) instead of one held per kind, and the same number of
requests per change.

The rules are the catalog's: errors are retried forever with the same backoff, and never change
what was delivered. Two reads that look like loss rather than change keep the last entries:

* a table that comes back **empty right after a failure or with its index gone backwards**
  while entries were known (a Consul server restarted without its data answers exactly so) is
  held, with a WARNING, until a blocking read on that empty state confirms it without a failure
  in between (a restore within that wait shows up as entries again and nothing was lost);
* entries that vanish from a list Consul marks as **filtered by ACLs** may only be hidden from
  the token: they are kept, with a WARNING.

A round whose entries equal the last delivered ones delivers nothing (Consul answers any config
write with a new index, and often an unchanged body).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ..config_entries import ENTRY_KINDS, ConfigEntriesUpdate
from .blocking import BlockingQuery, WatchContext, expect
from .client import ConsulError, ConsulResponse
from .retry import Retrier, WatchStatus

log = logging.getLogger(__name__)

MODE = "config-entries"
#: Connections the watch uses: the held trigger and one for the re-reads.
CONNECTIONS = 2

Entries = dict[str, tuple[Mapping[str, Any], ...]]  # kind → its entries, as listed


def config_path(kind: str) -> str:
    return f"/v1/config/{kind}"


def _name(entry: Mapping[str, Any]) -> str:
    return str(entry.get("Name", "")) if isinstance(entry, Mapping) else ""


def with_hidden(kind: str, listed: list[Any], known: tuple[Mapping[str, Any], ...]) -> list[Any]:
    """``listed`` plus the ``known`` entries missing from it (an ACL-filtered list)."""
    names = {_name(e) for e in listed}
    return listed + [e for e in known if _name(e) not in names]


class ConfigEntryWatch:
    """Watches the entry kinds of one datacenter and delivers the table when it changes."""

    def __init__(
        self, context: WatchContext, deliver: Callable[[ConfigEntriesUpdate], None]
    ) -> None:
        self.context = context
        self.datacenter = context.datacenter
        first, *others = ENTRY_KINDS
        self.trigger_kind = first
        self.trigger = BlockingQuery(context, config_path(first), MODE, expect(list))
        self.rereads: dict[str, Retrier] = {
            kind: context.retrier(config_path(kind), MODE) for kind in others
        }
        self.ready = asyncio.Event()  # the first table delivered
        self._deliver = deliver
        self._delivered: Entries | None = None
        self._errors_seen = 0  # error count after the last successful round
        self._index_seen = 0  # the table's index in the last successful round
        self._holding = False  # an empty table is held, waiting for confirmation
        self._hidden_warned: frozenset[tuple[str, str]] = frozenset()

    def statuses(self) -> list[WatchStatus]:
        return [self.trigger.status, *(r.status for r in self.rereads.values())]

    def _errors(self) -> int:
        return sum(s.error_count for s in self.statuses())

    async def run(self) -> None:
        while True:
            blocked = self.trigger.index >= 1  # this read waits on the state last seen
            if not self._holding:
                resp, _ = await self.trigger.next_change(index_bumps=True)
            else:  # one read: a wait that ends quietly confirms the empty table
                resp = await self.trigger.fetch()
            responses = {self.trigger_kind: resp}
            for kind, retrier in self.rereads.items():
                responses[kind] = await retrier.call(partial(self._list, kind, retrier.status))
            self._round(responses, blocked)

    async def _list(self, kind: str, status: WatchStatus) -> ConsulResponse:
        path = config_path(kind)
        resp = await self.context.client.get_json(path, self.context.params())
        self.context.observe(resp)
        if not isinstance(resp.body, list):
            raise ConsulError("invalid_body", f"GET {path}: expected a JSON list")
        status.index = resp.index
        return resp

    # ------------------------------------------------------------ one round of reads
    def _round(self, responses: Mapping[str, ConsulResponse], blocked: bool) -> None:
        errors = self._errors()
        index = max(r.index for r in responses.values())
        # A failure, or an index gone backwards: a restarted or restored server.
        failed = errors > self._errors_seen or index < self._index_seen
        self._errors_seen, self._index_seen = errors, index
        entries = self._entries(responses)
        known = self._delivered
        emptied = known is not None and not _count(entries) and _count(known) > 0
        if emptied and not self._confirms_empty(failed, blocked):
            return
        self._holding = False
        if entries == known:
            return
        trigger = responses[self.trigger_kind]
        update = ConfigEntriesUpdate(
            self.datacenter,
            tuple(e for kind in ENTRY_KINDS for e in entries[kind]),
            trigger.received_at,
            index,
        )
        self._deliver(update)
        self._delivered = entries
        now = time.time()
        for status in self.statuses():
            status.last_change = now
        self.ready.set()

    def _confirms_empty(self, failed: bool, blocked: bool) -> bool:
        """An empty table where entries were known: accepted unless it follows a failure; then
        held until a blocking read on it, with no failure since, says the same."""
        if not self._holding:
            if not failed:
                return True
            self._holding = True
            log.warning(
                "dc %s: Consul lists no config entries right after failing (or with its index "
                "gone backwards), where %d were known; keeping them until a read without errors "
                "confirms the empty table (a Consul server restarted without its data looks "
                "like this)",
                self.datacenter,
                _count(self._delivered or {}),
            )
            return False
        if blocked and not failed:
            log.warning("dc %s: Consul confirms it has no config entries", self.datacenter)
            return True
        return False

    def _entries(self, responses: Mapping[str, ConsulResponse]) -> Entries:
        entries: Entries = {}
        hidden: set[tuple[str, str]] = set()
        for kind in ENTRY_KINDS:
            resp = responses[kind]
            listed = list(resp.body)
            known = self._delivered.get(kind, ()) if self._delivered is not None else ()
            if resp.filtered_by_acls and known:
                kept = with_hidden(kind, listed, known)
                hidden.update((kind, _name(e)) for e in kept[len(listed) :])
                listed = kept
            entries[kind] = tuple(listed)
        if hidden and frozenset(hidden) != self._hidden_warned:
            log.warning(
                "dc %s: Consul's ACLs hide config entries the bridge uses (%s); keeping them - "
                "check the token's service:read",
                self.datacenter,
                ", ".join(f"{kind} {name!r}" for kind, name in sorted(hidden)),
            )
        self._hidden_warned = frozenset(hidden)
        return entries


def _count(entries: Entries) -> int:
    return sum(len(v) for v in entries.values())
