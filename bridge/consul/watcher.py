"""The orchestrator: which datacenters are watched, with how many connections, and when the
first complete read is done.

The local datacenter comes from ``/v1/agent/self`` (or, for a token without ``agent:read``,
the first of ``/v1/catalog/datacenters``, which Consul lists nearest first); then
``consul.datacenters`` follow in failover order. ``max_connections`` is split between them
(the remainder to the local one) and each :class:`~.datacenter.Datacenter` picks its own
strategy within its share. Every update is handed to ``on_update`` as soon as it is read: the
publisher's debounce is the one place where updates are coalesced.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
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


class CatalogWatcher:
    """Watches the selected services of the local and configured datacenters.

    ``on_update`` receives each :class:`ServiceUpdate` as it is read. If it raises, the error
    is logged at ERROR, counted in :meth:`status` and reported to ``on_update_error`` (what
    is served may then be stale). :meth:`run` runs until cancelled and retries every Consul
    error forever.
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
        self.recovery = Recovery()
        self.update_errors = 0
        self._agent = Retrier(settings, WatchStatus("/v1/agent/self", "", "agent"), self.recovery)
        self._dcs: list[Datacenter] = []
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
            self._entries = ConfigEntryWatch(self._context(local, True), self._deliver_entries)
        self._dcs = [
            Datacenter(self._context(dc, dc == local), budget, self._deliver)
            for dc, budget in zip(self.datacenters, budgets, strict=True)
        ]
        log.info(
            "watching Consul at %s: datacenters %s, up to %d connections",
            self.settings.address,
            ", ".join(self.datacenters),
            self.settings.max_connections,
        )
        async with asyncio.TaskGroup() as group:
            for dc in self._dcs:
                name = f"consul-dc-{dc.name}"
                group.create_task(supervise(name, dc.run, self.settings), name=name)
            if self._entries is not None:
                run_entries = self._entries.run
                name = "consul-config-entries"
                group.create_task(supervise(name, run_entries, self.settings), name=name)
            group.create_task(self._become_ready())

    def _context(self, datacenter: str, is_local: bool) -> WatchContext:
        return WatchContext(
            self.client,
            self.settings,
            self.recovery,
            self.observe,
            datacenter,
            None if is_local else datacenter,
        )

    async def _become_ready(self) -> None:
        for dc in self._dcs:
            await dc.ready.wait()
        if self._entries is not None:
            await self._entries.ready.wait()
        self.ready.set()
        log.info("Consul catalog read once in every datacenter: ready")

    def _deliver(self, update: ServiceUpdate) -> None:
        try:
            self.on_update([update])
        except Exception as exc:
            self.update_errors += 1
            log.exception(
                "on_update failed for service %s (dc %s): what is served may be stale",
                update.name,
                update.datacenter,
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
        watches = [self._agent.status, *(s for dc in self._dcs for s in dc.statuses())]
        if self._entries is not None:
            watches += self._entries.statuses()
        return {
            "address": self.settings.address,
            "local_datacenter": self.local_datacenter,
            "datacenters": list(self.datacenters),
            "ready": self.ready.is_set(),
            "max_connections": self.settings.max_connections,
            "modes": {dc.name: dc.mode for dc in self._dcs},
            "services": {dc.name: len(dc.selected) for dc in self._dcs},
            "update_errors": self.update_errors,
            "watches": [w.as_dict() for w in watches],
        }
