"""The orchestrator: which datacenters are watched, with how many connections, what becomes
of their reads, and when the bridge is ready.

The local datacenter comes from ``/v1/agent/self`` (or, for a token without ``agent:read``,
the first of ``/v1/catalog/datacenters``, which Consul lists nearest first); then
``consul.datacenters`` follow in failover order. ``max_connections`` is split between them
(the remainder to the local one) and each :class:`~.datacenter.Datacenter` picks its own
strategy within its share. Per datacenter, a :class:`~.probe.DatacenterProbe` tells whether it
answers and notices index resets (:class:`~.resets.IndexResets`), and a
:class:`~.guard.RemovalGuard` holds back reads that would remove too much at once. What passes
the guard is handed to ``on_update`` as soon as it is read: the publisher's debounce is the one
place where updates are coalesced.

The local datacenter's discovery config entries are watched too when ``on_config_entries`` is
given (:mod:`.config_entries`, with connections from the local budget).

Readiness is the local datacenter's: once it was read completely (and its config entries, when
watched) the bridge is ready. A failover
datacenter that cannot be read (``No path to datacenter``) is reported and retried, and its
endpoints join when it answers; it never holds back the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..catalog import ServiceUpdate
from ..config_entries import ConfigEntriesUpdate
from ..consul_settings import ConsulSettings
from ..tasks import cancel_and_wait
from .blocking import WatchContext
from .client import Client, ConsulError, ConsulResponse
from .config_entries import CONNECTIONS as CONFIG_ENTRY_CONNECTIONS
from .config_entries import ConfigEntryWatch
from .datacenter import Datacenter
from .guard import GuardPolicy, RemovalGuard
from .probe import DatacenterProbe
from .readiness import datacenter_problems
from .resets import IndexResets
from .retry import RECOVERY_PROBE_INTERVAL, Recovery, Retrier, WatchStatus
from .supervise import supervise

log = logging.getLogger(__name__)

OnUpdate = Callable[[list[ServiceUpdate]], None]
OnConfigEntries = Callable[[ConfigEntriesUpdate], None]


async def read_local_datacenter(client: Client) -> str:
    """The agent's datacenter; raises :class:`ConsulError` when it cannot be told."""
    try:
        agent = (await client.get_json("/v1/agent/self")).body
    except ConsulError as exc:
        if exc.kind != "acl_denied":
            raise
        # Without agent:read, the first datacenter Consul lists (nearest first) is ours.
        listed = (await client.get_json("/v1/catalog/datacenters")).body
        if not (isinstance(listed, list) and listed and isinstance(listed[0], str)):
            raise
        log.warning(
            "the Consul token cannot read /v1/agent/self (agent:read): assuming the local "
            "datacenter is %s, the first of /v1/catalog/datacenters",
            listed[0],
        )
        return listed[0]
    config = agent.get("Config") if isinstance(agent, dict) else None
    name = config.get("Datacenter") if isinstance(config, dict) else None
    if not isinstance(name, str) or not name:
        raise ConsulError("invalid_body", "GET /v1/agent/self: no Config.Datacenter")
    return name


def split_budget(total: int, parts: int) -> list[int]:
    """Connections per datacenter: an equal share each, the remainder to the local one."""
    share, extra = divmod(total, parts)
    return [share + (extra if i == 0 else 0) for i in range(parts)]


@dataclass
class Watched:
    """One datacenter: its watches, its probe, its index resets and its removal guard."""

    name: str
    is_local: bool
    datacenter: Datacenter
    probe: DatacenterProbe
    resets: IndexResets
    guard: RemovalGuard

    @property
    def read(self) -> bool:
        """Read completely once."""
        return self.datacenter.ready.is_set()

    def status(self) -> dict[str, Any]:
        return {
            "local": self.is_local,
            "read": self.read,
            **self.probe.state.as_dict(),
            "index_resets": self.resets.count,
            "last_index_reset": self.resets.last,
            "removal_guard": self.guard.status(),
        }


class CatalogWatcher:
    """Watches the selected services of the local and configured datacenters.

    ``on_update`` receives the updates of each read that the datacenter's removal guard lets
    through. If it raises, the error is logged at ERROR, counted in :meth:`status` and reported
    to ``on_update_error`` (what is served may then be stale). :meth:`run` runs until cancelled
    and retries every Consul error forever. :attr:`ready` is set once the local datacenter was
    read completely, :attr:`complete` once every datacenter was.
    """

    def __init__(
        self,
        client: Client,
        settings: ConsulSettings,
        on_update: OnUpdate,
        on_update_error: Callable[[BaseException], None] | None = None,
        on_config_entries: OnConfigEntries | None = None,
    ) -> None:
        """``on_config_entries``: when given, the local datacenter's config entries are watched
        too (:mod:`.config_entries`, with connections from its budget), each changed table is
        handed to it, and readiness waits for their first read."""
        self.client = client
        self.settings = settings
        self.on_update = on_update
        self.on_update_error = on_update_error
        self.local_datacenter: str | None = None
        self.datacenters: tuple[str, ...] = ()
        self.ready = asyncio.Event()
        self.complete = asyncio.Event()
        self.recovery = Recovery()  # the agent's and the local datacenter's
        self.policy = GuardPolicy(settings.mass_removal_share, settings.mass_removal_hold)
        self.update_errors = 0
        self._agent = Retrier(settings, WatchStatus("/v1/agent/self", "", "agent"), self.recovery)
        self._watched: list[Watched] = []
        self.on_config_entries = on_config_entries
        self._entries: ConfigEntryWatch | None = None
        self._acl_filtered_warned = False
        self._leaderless_warned = False

    async def run(self) -> None:
        prober = asyncio.create_task(self._probe_while_backing_off(), name="consul-recovery")
        try:
            await self._run()
        finally:
            await cancel_and_wait([prober])

    async def _probe_while_backing_off(self) -> None:
        """While any watch backs off, ask Consul every ``RECOVERY_PROBE_INTERVAL`` whether it is
        back (one connection, one tiny read); when it is, every backoff ends."""
        while True:
            await self.recovery.backing_off.wait()
            try:
                async with asyncio.timeout(RECOVERY_PROBE_INTERVAL * 4):
                    await self.client.get_json("/v1/status/leader")
            except (TimeoutError, ConsulError):
                pass
            else:
                self.recovery.succeeded()
            await asyncio.sleep(RECOVERY_PROBE_INTERVAL)

    async def _run(self) -> None:
        local = await self._agent.call(partial(read_local_datacenter, self.client))
        self._agent.status.datacenter = local
        self.local_datacenter = local
        self.datacenters = tuple(dict.fromkeys((local, *self.settings.datacenters)))
        budgets = split_budget(self.settings.max_connections, len(self.datacenters))
        if self.on_config_entries is not None:
            budgets[0] -= min(CONFIG_ENTRY_CONNECTIONS, max(0, budgets[0] - 2))
        self._watched = [
            self._watch(dc, budget, dc == local)
            for dc, budget in zip(self.datacenters, budgets, strict=True)
        ]
        if self.on_config_entries is not None:
            local_context = self._watched[0].datacenter.context
            self._entries = ConfigEntryWatch(local_context, self._deliver_entries)
        log.info(
            "watching Consul at %s: datacenters %s, up to %d connections",
            self.settings.address,
            ", ".join(self.datacenters),
            self.settings.max_connections,
        )
        async with asyncio.TaskGroup() as group:
            for watched in self._watched:
                for what, run in (("dc", watched.datacenter.run), ("probe", watched.probe.run)):
                    name = f"consul-{what}-{watched.name}"
                    group.create_task(supervise(name, run, self.settings), name=name)
            if self._entries is not None:
                name = "consul-config-entries"
                entries = self._entries.run
                group.create_task(supervise(name, entries, self.settings), name=name)
            group.create_task(self._become_ready())

    def _watch(self, datacenter: str, budget: int, is_local: bool) -> Watched:
        resets = IndexResets(datacenter, partial(self._index_reset, datacenter))
        context = WatchContext(
            self.client,
            self.settings,
            # A failover datacenter's backoff ends when it answers, not when the local one does.
            self.recovery if is_local else Recovery(),
            self.observe,
            datacenter,
            None if is_local else datacenter,
            resets,
        )
        guard = RemovalGuard(datacenter, self.policy, self._deliver)
        return Watched(
            datacenter,
            is_local,
            Datacenter(context, budget, guard.offer),
            DatacenterProbe(context),
            resets,
            guard,
        )

    def _index_reset(self, datacenter: str, what: str) -> None:
        for watched in self._watched:
            if watched.name == datacenter:
                watched.guard.index_reset()
                watched.datacenter.index_reset()

    async def _become_ready(self) -> None:
        local, *failover = self._watched
        await local.datacenter.ready.wait()
        if self._entries is not None:
            await self._entries.ready.wait()
        self.ready.set()
        log.info("Consul catalog of the local datacenter %s read once: ready", local.name)
        for watched in failover:
            await watched.datacenter.ready.wait()
        self.complete.set()
        if failover:
            log.info("Consul catalog read once in every datacenter")

    def _deliver(self, updates: list[ServiceUpdate]) -> None:
        try:
            self.on_update(updates)
        except Exception as exc:
            self.update_errors += 1
            log.exception(
                "on_update failed for services %s (dc %s): what is served may be stale",
                ", ".join(sorted({u.name for u in updates})[:5]),
                ", ".join(sorted({u.datacenter for u in updates})),
            )
            if self.on_update_error is not None:
                self.on_update_error(exc)

    def _deliver_entries(self, update: ConfigEntriesUpdate) -> None:
        assert self.on_config_entries is not None
        try:
            self.on_config_entries(update)
        except Exception as exc:
            self.update_errors += 1
            log.exception(
                "on_config_entries failed (dc %s): what is served may be stale", update.datacenter
            )
            if self.on_update_error is not None:
                self.on_update_error(exc)

    # ------------------------------------------------------------ operators and reports
    def accept_removals(self) -> dict[str, Any]:
        """The operator accepts the held removals: every datacenter publishes them now."""
        accepted = {w.name: w.guard.accept() for w in self._watched}
        held = {dc: s for dc, s in accepted.items() if s["services_held"]}
        log.warning(
            "an operator accepted the held removals: %s",
            "; ".join(f"dc {dc}: {s['services_held']} services" for dc, s in held.items())
            or "nothing was held",
        )
        return {"accepted": accepted}

    def problems(self) -> list[str]:
        """What an operator should know while the bridge serves (for ``/readyz``)."""
        return datacenter_problems(w.status() | {"name": w.name} for w in self._watched)

    @property
    def watched(self) -> list[Watched]:
        return list(self._watched)

    def observe(self, resp: ConsulResponse) -> None:
        """Headers every response carries: warn (once) about ACL filtering and leaderless reads."""
        if resp.filtered_by_acls and not self._acl_filtered_warned:
            self._acl_filtered_warned = True
            log.warning(
                "Consul filtered results by ACLs (X-Consul-Results-Filtered-By-ACLs: true): "
                "the token cannot see every service or node; a missing or empty catalog may be "
                "a token problem, not an outage"
            )
        if resp.known_leader is False and not self._leaderless_warned:
            self._leaderless_warned = True
            log.warning("Consul answered without a known leader (X-Consul-KnownLeader: false)")

    def status(self) -> dict[str, Any]:
        """For ``/debug/consul``: every watch with its index, last change and errors."""
        dcs = [w.datacenter for w in self._watched]
        watches = [self._agent.status, *(s for dc in dcs for s in dc.statuses())]
        if self._entries is not None:
            watches += self._entries.statuses()
        return {
            "address": self.settings.address,
            "local_datacenter": self.local_datacenter,
            "datacenters": list(self.datacenters),
            "ready": self.ready.is_set(),
            "max_connections": self.settings.max_connections,
            "modes": {dc.name: dc.mode for dc in dcs},
            "services": {dc.name: len(dc.selected) for dc in dcs},
            "datacenter_status": {w.name: w.status() for w in self._watched},
            "update_errors": self.update_errors,
            "watches": [w.as_dict() for w in watches],
        }
