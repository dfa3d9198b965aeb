"""Watch Consul's catalog with blocking queries, under a hard cap on HTTP connections.

Every in-flight HTTP/1.1 blocking query holds one TCP connection, and a Consul agent refuses more
than ``limits.http_max_conns_per_client`` (200 by default) per client. The watcher therefore
never needs more than ``max_connections`` connections (the shared client's ``TCPConnector``
enforces the cap; the strategy below makes sure the cap is never the bottleneck), whatever the
number of services. The budget is split between the watched datacenters (local one first).

Per datacenter, one blocking ``/v1/catalog/services`` watch gives the selected service names, and
then one of two modes is used:

``per-service`` (the services fit the budget: ``selected <= budget - 2``, leaving one connection
    for the catalog watch and one spare): one blocking ``/v1/health/service/<name>`` watch per
    service. Consul keeps one index per service, so a write to one service wakes only its own
    watch: every change (instances, address, port, tags, meta, weights, check status, service or
    node maintenance, node checks) arrives in one round trip, with no wasted reads.

``global`` (too many services): two blocking trigger watches, ``/v1/catalog/services`` and
    ``/v1/health/state/any?filter=Status != "passing"`` (the checks that are not passing: every
    health change moves a check into, out of or within that list, and the body stays small where
    the full list would be megabytes re-read on every check change), plus a small pool of
    workers (``budget - 3``, at least one) re-reading individual services with non-blocking
    ``/v1/health/service/<name>`` reads.
    A change in the health-state body is attributed to its service (or, for a node-level check,
    to every service with an instance on that node) and re-read first. A catalog-body change
    (service added, removed, tags changed) is attributed the same way. But some changes -- a port,
    address, meta or weight change, a new instance without checks -- only bump the catalog index
    without changing any trigger body, so every catalog index bump also queues a *sweep*: a
    re-read of every selected service at the workers' bounded concurrency, behind the attributed
    re-reads. Sweeps coalesce (a service queued twice is read once), and a re-read answered with
    the service's last-read ``X-Consul-Index`` is not even decoded (Consul moves that index with
    every change of the service's instances, checks and nodes). The trade-off: connections
    stay bounded (catalog + health + workers) at the cost of more requests per change and a
    latency for unattributed changes of up to one sweep (services / workers round trips).
    Changes that affect no health (a passing check's output, a passing check added or removed)
    are picked up at the next sweep only.

Mode switches (with 10 % hysteresis) happen when the catalog grows or shrinks past the budget.

Blocking-query rules (consul-template, envoy-control): the first read is immediate (index 0);
later ones block with ``index`` (never below 1) and ``wait``; an index going backwards resets to
0; an unchanged index or an unchanged body is not a change; calls of one watch are spaced by
``min_interval``; errors (5xx, 429, 403, timeouts, resets, invalid JSON or shapes) are retried
forever with exponential backoff and jitter (tenacity), keeping the last known state -- an error
never produces an update. Updates produced together are delivered in one ``on_update`` call.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import consul.base
from tenacity import AsyncRetrying, RetryAction, RetryCallState, retry_if_exception_type

from .catalog import ServiceUpdate
from .consul_client import ConsulError, ConsulResponse
from .consul_settings import ConsulSettings
from .model import Instance, parse_health_service
from .tasks import cancel_and_wait

log = logging.getLogger(__name__)

__all__ = ["CatalogWatcher", "ServiceUpdate"]

PER_SERVICE = "per-service"
GLOBAL = "global"
# The health trigger lists only the checks that are not passing: every health change moves a
# check into, out of, or within that list, and the body stays small (10,000s of passing
# checks would make every check change a re-read of megabytes).
NOT_PASSING = 'Status != "passing"'
_RETRYABLE: tuple[type[BaseException], ...] = (ConsulError, consul.base.ConsulException)
# Reading /v1/agent/self through python-consul2 can also fail on a bad body.
_AGENT_RETRYABLE = (*_RETRYABLE, ValueError, KeyError, TypeError)
_PROBE_ERRORS: tuple[type[BaseException], ...] = (TimeoutError, *_RETRYABLE)


class Client(Protocol):
    async def get_json(
        self, path: str, params: Mapping[str, Any] | None = None, *, known_index: int = 0
    ) -> ConsulResponse: ...

    async def agent_self(self) -> Mapping[str, Any]: ...


Validator = Callable[[Any], str | None]


def _expect(kind: type) -> Validator:
    def validate(body: Any) -> str | None:
        return None if isinstance(body, kind) else f"expected a JSON {kind.__name__}"

    return validate


# --- one watch: status, retries, blocking-query rules ----------------------------------------


@dataclass
class WatchStatus:
    path: str
    datacenter: str
    mode: str
    index: int = 0
    last_change: float | None = None  # wall-clock time of the last change
    last_error: str | None = None
    error_count: int = 0
    failing: int = 0  # consecutive failures

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "dc": self.datacenter,
            "mode": self.mode,
            "index": self.index,
            "last_change": self.last_change,
            "last_error": self.last_error,
            "error_count": self.error_count,
            "failing": self.failing,
        }


class Recovery:
    """Ends every watch's backoff as soon as Consul answers again.

    Backoff grows to ``backoff_max`` (a minute) during a long outage; without this, changes made
    just after Consul came back would wait that long. Any successful call, or the prober of
    :meth:`CatalogWatcher.run` (one cheap ``/v1/status/leader`` read every
    ``RECOVERY_PROBE_INTERVAL`` while anything is backing off), wakes every sleeping retry; they
    retry within ``RECOVERY_SPREAD`` seconds of each other rather than all at once.
    """

    def __init__(self) -> None:
        self._recovered = asyncio.Event()
        self.backing_off = asyncio.Event()  # set while at least one retry sleeps
        self.sleepers = 0

    def succeeded(self) -> None:
        if self.sleepers:
            recovered, self._recovered = self._recovered, asyncio.Event()
            recovered.set()

    async def sleep(self, delay: float) -> None:
        recovered = self._recovered
        self.sleepers += 1
        self.backing_off.set()
        try:
            async with asyncio.timeout(delay):
                await recovered.wait()
        except TimeoutError:
            return
        finally:
            self.sleepers -= 1
            if not self.sleepers:
                self.backing_off.clear()
        await asyncio.sleep(random.uniform(0, RECOVERY_SPREAD))


RECOVERY_PROBE_INTERVAL = 0.5
RECOVERY_SPREAD = 0.2


class _Retrier:
    """Calls Consul until it answers; backoff with jitter, logs, status bookkeeping."""

    def __init__(
        self,
        settings: ConsulSettings,
        status: WatchStatus,
        retryable: tuple[type[BaseException], ...] = _RETRYABLE,
        recovery: Recovery | None = None,
    ) -> None:
        self.settings = settings
        self.status = status
        self.retryable = retryable
        self.recovery = recovery or Recovery()
        self._last_call = -1e9

    def backoff(self, state: RetryCallState) -> float:
        """``backoff_base`` doubling per failure up to ``backoff_max``, "equal jitter"."""
        return self._delay(state.attempt_number)

    def _delay(self, failures: int) -> float:
        ceiling = min(
            self.settings.backoff_max,
            self.settings.backoff_base * 2 ** min(failures - 1, 30),
        )
        return random.uniform(ceiling / 2, ceiling)

    async def call(self, fn: Callable[[], Any]) -> Any:
        # Fast path: one plain attempt. Tenacity's bookkeeping costs more than a loopback
        # request, and a global-mode sweep makes one call per service (10,000s).
        offset = 0
        if not self.status.failing:
            try:
                answer = await self._spaced(fn)
            except self.retryable as exc:
                # The first failure: logged and backed off exactly as tenacity would, which
                # then carries on from the second attempt.
                first = RetryCallState(AsyncRetrying(), fn, (), {})
                first.set_exception((type(exc), exc, exc.__traceback__))
                delay = self._delay(1)
                first.next_action = RetryAction(delay)
                self._failed(first)
                await self.recovery.sleep(delay)
                offset = 1
            else:
                self.recovery.succeeded()
                return answer
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(self.retryable),
            wait=lambda state: self._delay(state.attempt_number + offset),
            sleep=self.recovery.sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        result: Any = await retrying(self._spaced, fn)
        if self.status.failing:
            log.info(
                "Consul %s (dc %s) recovered after %d failed attempts",
                self.status.path,
                self.status.datacenter,
                self.status.failing,
            )
        self.status.failing = 0
        self.recovery.succeeded()
        return result

    async def _spaced(self, fn: Callable[[], Any]) -> Any:
        delay = self._last_call + self.settings.min_interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        self._last_call = time.monotonic()
        return await fn()

    def _failed(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        status = self.status
        status.error_count += 1
        status.failing += 1
        status.last_error = f"{exc}"[:300]
        # First failure, then every power of two: an outage does not flood the log.
        level = logging.WARNING if status.failing & (status.failing - 1) == 0 else logging.DEBUG
        if (isinstance(exc, ConsulError) and exc.kind == "acl_denied") or isinstance(
            exc, consul.base.ACLPermissionDenied
        ):
            log.log(
                level,
                "Consul denied %s (dc %s) with HTTP 403: the ACL token is missing, unknown or "
                "lacks read permission (service:read, node:read): %s; retrying in %.2fs",
                status.path,
                status.datacenter,
                exc,
                delay,
            )
            return
        log.log(
            level,
            "Consul request %s (dc %s) failed (%s attempt(s)): %s; retrying in %.2fs",
            status.path,
            status.datacenter,
            status.failing,
            exc,
            delay,
        )


class BlockingQuery:
    """One blocking-query watch of one Consul endpoint in one datacenter."""

    def __init__(
        self,
        client: Client,
        settings: ConsulSettings,
        path: str,
        status: WatchStatus,
        dc_param: str | None,
        validate: Validator,
        observe: Callable[[ConsulResponse], None],
        extra_params: Mapping[str, str] | None = None,
        recovery: Recovery | None = None,
    ) -> None:
        self.client = client
        self.extra_params = dict(extra_params or {})
        self.settings = settings
        self.path = path
        self.status = status
        self.dc_param = dc_param
        self.validate = validate
        self.observe = observe
        self.retrier = _Retrier(settings, status, recovery=recovery)
        self.index = 0
        self.body: Any = None
        self.has_body = False

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.extra_params)
        if self.dc_param:
            params["dc"] = self.dc_param
        if self.index >= 1:
            params["index"] = self.index
            params["wait"] = self.settings.wait_param
        return params

    async def _once(self) -> ConsulResponse:
        resp = await self.client.get_json(self.path, self.params())
        self.observe(resp)
        problem = self.validate(resp.body)
        if problem is not None:
            raise ConsulError("invalid_body", f"GET {self.path}: {problem}")
        return resp

    async def fetch(self) -> ConsulResponse:
        """One successful response (retrying errors forever); updates the index."""
        resp: ConsulResponse = await self.retrier.call(self._once)
        previous = self.index
        if resp.index < previous:
            log.info(
                "Consul index of %s (dc %s) went backwards (%d → %d): resetting",
                self.path,
                self.status.datacenter,
                previous,
                resp.index,
            )
            self.index = 0
        else:
            self.index = resp.index
        self.status.index = resp.index
        return resp

    async def next_change(self, index_bumps: bool = False) -> tuple[ConsulResponse, bool]:
        """Wait for the next change → (response, body changed).

        An unchanged index is never a change. An index change with an unchanged body is one
        only when ``index_bumps`` is set (the body-changed flag is then False).
        """
        while True:
            previous = self.index
            resp = await self.fetch()
            if self.has_body and previous >= 1 and resp.index == previous:
                continue
            body_changed = not self.has_body or resp.body != self.body
            self.body, self.has_body = resp.body, True
            if body_changed:
                self.status.last_change = time.time()
            if body_changed or index_bumps:
                return resp, body_changed


def _spawn(coro: Any, name: str) -> asyncio.Task[None]:
    task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("Consul watch task %s crashed", task.get_name(), exc_info=task.exception())


# --- one datacenter --------------------------------------------------------------------------


def _catalog_selection(
    body: Mapping[str, Any], settings: ConsulSettings
) -> dict[str, tuple[str, ...]]:
    selected: dict[str, tuple[str, ...]] = {}
    for name, raw_tags in body.items():
        tags = tuple(sorted({str(t) for t in raw_tags or ()}))
        if settings.matches(str(name), tags):
            selected[str(name)] = tags
    return selected


def _check_key(check: Mapping[str, Any]) -> tuple[str, str]:
    return str(check.get("Node", "")), str(check.get("CheckID", ""))


def _checks_by_key(body: Any) -> dict[tuple[str, str], Mapping[str, Any]]:
    return {_check_key(c): c for c in body if isinstance(c, Mapping)}


class _Datacenter:
    """The watches of one datacenter and the last state emitted for it."""

    def __init__(self, watcher: CatalogWatcher, name: str, is_local: bool, budget: int) -> None:
        self.watcher = watcher
        self.settings = watcher.settings
        self.name = name
        self.dc_param = None if is_local else name
        self.budget = budget
        self.capacity = max(0, budget - 2)  # per-service watches that fit
        self.mode = PER_SERVICE
        self.ready = asyncio.Event()
        self.selected: dict[str, tuple[str, ...]] = {}
        self.instances: dict[str, tuple[Instance, ...]] = {}
        self.unread: set[str] = set()
        self.read_index: dict[str, int] = {}  # X-Consul-Index of each service's last read
        self.by_node: dict[str, set[str]] = {}
        self.catalog = self._query("/v1/catalog/services", "catalog", _expect(dict))
        self.service_watches: dict[str, tuple[BlockingQuery, asyncio.Task[None]]] = {}
        self.global_tasks: list[asyncio.Task[None]] = []
        self.health: BlockingQuery | None = None
        self.checks: dict[tuple[str, str], Mapping[str, Any]] = {}
        self.reread_status = WatchStatus("/v1/health/service/*", name, "global-reread")
        self.urgent: dict[str, None] = {}
        self.sweep: dict[str, None] = {}
        self.wake = asyncio.Event()
        # Re-reads start once the health trigger has a baseline: a change landing between a
        # service's first read and that baseline would otherwise never be attributed.
        self.health_primed = asyncio.Event()

    def _query(
        self,
        path: str,
        mode: str,
        validate: Validator,
        extra_params: Mapping[str, str] | None = None,
    ) -> BlockingQuery:
        status = WatchStatus(path, self.name, mode)
        return BlockingQuery(
            self.watcher.client,
            self.settings,
            path,
            status,
            self.dc_param,
            validate,
            self.watcher.observe,
            extra_params,
            self.watcher.recovery,
        )

    def statuses(self) -> list[WatchStatus]:
        found = [self.catalog.status]
        found += [query.status for query, _ in self.service_watches.values()]
        if self.health is not None:
            found += [self.health.status, self.reread_status]
        return found

    async def run(self) -> None:
        try:
            while True:
                resp, body_changed = await self.catalog.next_change(index_bumps=True)
                if body_changed or self.mode == GLOBAL:
                    self.apply_catalog(resp, body_changed)
        finally:
            tasks = [task for _, task in self.service_watches.values()] + self.global_tasks
            self._stop_service_watches(list(self.service_watches))
            self._stop_global()
            await cancel_and_wait(tasks)

    # catalog → selection and mode

    def apply_catalog(self, resp: ConsulResponse, body_changed: bool) -> None:
        selected = _catalog_selection(resp.body, self.settings)
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
        self.unread.difference_update(removed)
        self.unread.update(added)
        for name in removed:
            self.forget(name, resp.received_at)
        self._stop_service_watches(removed)
        self._choose_mode()
        if self.mode == PER_SERVICE:
            self._start_service_watches(added)
        else:
            self._queue(added + retagged, urgent=True)
            self._queue(list(selected), urgent=False)
        self.check_ready()

    def _choose_mode(self) -> None:
        count = len(self.selected)
        if self.mode == PER_SERVICE and count > self.capacity:
            self._switch(GLOBAL)
        elif self.mode == GLOBAL and count <= self.capacity - max(1, self.capacity // 10):
            self._switch(PER_SERVICE)

    def _switch(self, mode: str) -> None:
        log.info(
            "dc %s: %d services selected, budget %d connections: switching to %s mode",
            self.name,
            len(self.selected),
            self.budget,
            mode,
        )
        self.mode = mode
        if mode == GLOBAL:
            self._stop_service_watches(list(self.service_watches))
            self._start_global()
        else:
            self._stop_global()
            self._start_service_watches(list(self.selected))

    # per-service mode

    def _start_service_watches(self, names: list[str]) -> None:
        for name in names:
            if name in self.service_watches:
                continue
            path = "/v1/health/service/" + quote(name, safe="")
            query = self._query(path, PER_SERVICE, _expect(list))
            task = _spawn(self._watch_service(name, query), f"watch {path} (dc {self.name})")
            self.service_watches[name] = (query, task)

    def _stop_service_watches(self, names: list[str]) -> None:
        for name in names:
            entry = self.service_watches.pop(name, None)
            if entry is not None:
                entry[1].cancel()

    async def _watch_service(self, name: str, query: BlockingQuery) -> None:
        while True:
            resp, _ = await query.next_change()
            self.service_read(name, resp)

    # global mode

    def _start_global(self) -> None:
        self.health = self._query(
            "/v1/health/state/any", "global-trigger", _expect(list), {"filter": NOT_PASSING}
        )
        self.checks = {}
        self.health_primed.clear()
        workers = max(1, self.budget - 3)
        self.global_tasks = [_spawn(self._watch_health(self.health), f"health (dc {self.name})")]
        self.global_tasks += [
            _spawn(self._reread_worker(), f"re-read (dc {self.name})") for _ in range(workers)
        ]
        self._queue(list(self.selected), urgent=False)

    def _stop_global(self) -> None:
        for task in self.global_tasks:
            task.cancel()
        self.global_tasks = []
        self.health = None
        self.urgent.clear()
        self.sweep.clear()

    async def _watch_health(self, query: BlockingQuery) -> None:
        first = True
        while True:
            resp, _ = await query.next_change()
            checks = _checks_by_key(resp.body)
            if not first:
                self._queue(self._affected(self.checks, checks), urgent=True)
            self.checks = checks
            first = False
            self.health_primed.set()

    def _affected(
        self,
        old: Mapping[tuple[str, str], Mapping[str, Any]],
        new: Mapping[tuple[str, str], Mapping[str, Any]],
    ) -> list[str]:
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
                    names.update(self.by_node.get(key[0], ()))
        return [n for n in names if n in self.selected]

    def _queue(self, names: list[str], urgent: bool) -> None:
        if self.mode != GLOBAL or not names:
            return
        target = self.urgent if urgent else self.sweep
        for name in names:
            target[name] = None
        self.wake.set()

    async def _next_queued(self) -> str:
        while True:
            for queue in (self.urgent, self.sweep):
                for name in queue:
                    del queue[name]
                    if queue is self.urgent:
                        self.sweep.pop(name, None)
                    return name
            self.wake.clear()
            await self.wake.wait()

    async def _reread_worker(self) -> None:
        retrier = _Retrier(self.settings, self.reread_status, recovery=self.watcher.recovery)
        await self.health_primed.wait()
        while True:
            name = await self._next_queued()
            if name not in self.selected:
                continue
            path = "/v1/health/service/" + quote(name, safe="")
            params = {"dc": self.dc_param} if self.dc_param else {}

            # A sweep re-reads every service: one whose index did not move is not decoded.
            known = self.read_index.get(name, 0) if name in self.instances else 0

            async def read(
                path: str = path, params: dict[str, Any] = params, known: int = known
            ) -> ConsulResponse:
                resp = await self.watcher.client.get_json(path, params, known_index=known)
                self.watcher.observe(resp)
                if not resp.unchanged and not isinstance(resp.body, list):
                    raise ConsulError("invalid_body", f"GET {path}: expected a JSON list")
                return resp

            resp = await retrier.call(read)
            self.reread_status.index = resp.index
            if name in self.selected and not resp.unchanged:
                self.service_read(name, resp)

    # results

    def service_read(self, name: str, resp: ConsulResponse) -> None:
        instances, problems = parse_health_service(resp.body, self.name)
        for problem in problems:
            log.warning("dc %s, service %s: %s", self.name, name, problem)
        self.unread.discard(name)
        self.read_index[name] = resp.index
        if not instances and self.instances.get(name) and resp.filtered_by_acls:
            # Every instance hidden by ACLs: a token that lost node:read/service:read looks
            # exactly like this. Dropping them would cut the service's traffic on a guess.
            log.warning(
                "dc %s, service %s: Consul's ACLs hide every instance "
                "(X-Consul-Results-Filtered-By-ACLs); keeping the %d last known - check the "
                "token's service:read and node:read",
                self.name,
                name,
                len(self.instances[name]),
            )
            self.check_ready()
            return
        if self.instances.get(name) != instances or name not in self.instances:
            self._index_nodes(name, self.instances.get(name, ()), instances)
            self.instances[name] = instances
            self.watcher.emit(ServiceUpdate(name, self.name, instances, resp.received_at))
            if self.mode == GLOBAL:
                self.reread_status.last_change = time.time()
        self.check_ready()

    def forget(self, name: str, received_at: float) -> None:
        self.read_index.pop(name, None)
        if name in self.instances:
            self._index_nodes(name, self.instances.pop(name), ())
            self.watcher.emit(ServiceUpdate(name, self.name, None, received_at))

    def _index_nodes(self, name: str, old: tuple[Instance, ...], new: tuple[Instance, ...]) -> None:
        for instance in old:
            services = self.by_node.get(instance.node)
            if services is not None:
                services.discard(name)
                if not services:
                    del self.by_node[instance.node]
        for instance in new:
            self.by_node.setdefault(instance.node, set()).add(name)

    def check_ready(self) -> None:
        if not self.ready.is_set() and self.catalog.has_body and not self.unread:
            self.ready.set()


# --- the watcher -----------------------------------------------------------------------------


@dataclass
class _Batch:
    updates: list[ServiceUpdate] = field(default_factory=list)
    scheduled: bool = False


class CatalogWatcher:
    """Watches the selected services of the local and configured datacenters.

    ``on_update`` receives lists of :class:`ServiceUpdate` (one call per batch of updates that
    arrived together). :meth:`run` runs until cancelled and retries every Consul error forever.
    """

    def __init__(
        self,
        client: Client,
        settings: ConsulSettings,
        on_update: Callable[[list[ServiceUpdate]], None],
    ) -> None:
        self.client = client
        self.settings = settings
        self.on_update = on_update
        self.local_datacenter: str | None = None
        self.datacenters: tuple[str, ...] = ()
        self.ready = asyncio.Event()
        self._agent_status = WatchStatus("/v1/agent/self", "", "agent")
        self._dcs: list[_Datacenter] = []
        self._batch = _Batch()
        self._acl_filtered_warned = False
        self._leaderless_warned = False
        self.recovery = Recovery()

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
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a
                # cancellation that arrives as the inner call finishes, and this task then
                # never ends (a bridge stopped while Consul fails hung forever).
                async with asyncio.timeout(RECOVERY_PROBE_INTERVAL * 4):
                    await self.client.get_json("/v1/status/leader")
            except _PROBE_ERRORS:
                pass
            else:
                self.recovery.succeeded()
            await asyncio.sleep(RECOVERY_PROBE_INTERVAL)

    async def _run(self) -> None:
        local = await self._local_datacenter()
        self.local_datacenter = local
        self.datacenters = tuple(dict.fromkeys((local, *self.settings.datacenters)))
        budgets = _split_budget(self.settings.max_connections, len(self.datacenters))
        self._dcs = [
            _Datacenter(self, dc, dc == local, budget)
            for dc, budget in zip(self.datacenters, budgets, strict=True)
        ]
        log.info(
            "watching Consul at %s: datacenters %s, up to %d connections",
            self.settings.address,
            ", ".join(self.datacenters),
            self.settings.max_connections,
        )
        try:
            async with asyncio.TaskGroup() as group:
                for dc in self._dcs:
                    group.create_task(dc.run(), name=f"consul-dc-{dc.name}")
                group.create_task(self._become_ready())
        finally:
            self.flush()

    async def _local_datacenter(self) -> str:
        retrier = _Retrier(
            self.settings, self._agent_status, _AGENT_RETRYABLE, recovery=self.recovery
        )
        name: str = await retrier.call(self._read_local_datacenter)
        self._agent_status.datacenter = name
        return name

    async def _read_local_datacenter(self) -> str:
        try:
            agent = await self.client.agent_self()
        except consul.base.ACLPermissionDenied:
            # Without agent:read, the first datacenter Consul lists (nearest first) is ours.
            resp = await self.client.get_json("/v1/catalog/datacenters")
            if isinstance(resp.body, list) and resp.body and isinstance(resp.body[0], str):
                log.warning(
                    "the Consul token cannot read /v1/agent/self (agent:read): assuming the "
                    "local datacenter is %s, the first of /v1/catalog/datacenters",
                    resp.body[0],
                )
                return resp.body[0]
            raise
        name = agent["Config"]["Datacenter"]
        if not isinstance(name, str) or not name:
            raise ValueError("/v1/agent/self: no Config.Datacenter")
        return name

    async def _become_ready(self) -> None:
        for dc in self._dcs:
            await dc.ready.wait()
        self.flush()
        self.ready.set()
        log.info("Consul catalog read once in every datacenter: ready")

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

    def emit(self, update: ServiceUpdate) -> None:
        """Queue an update; everything queued in one event-loop turn is delivered together."""
        self._batch.updates.append(update)
        if not self._batch.scheduled:
            self._batch.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        batch, self._batch = self._batch, _Batch()
        if not batch.updates:
            return
        try:
            self.on_update(batch.updates)
        except Exception:
            log.exception("on_update failed for %d updates", len(batch.updates))

    def status(self) -> dict[str, Any]:
        """For ``/debug/consul``: every watch with its index, last change and errors."""
        watches = [self._agent_status, *(s for dc in self._dcs for s in dc.statuses())]
        return {
            "address": self.settings.address,
            "local_datacenter": self.local_datacenter,
            "datacenters": list(self.datacenters),
            "ready": self.ready.is_set(),
            "max_connections": self.settings.max_connections,
            "modes": {dc.name: dc.mode for dc in self._dcs},
            "services": {dc.name: len(dc.selected) for dc in self._dcs},
            "watches": [w.as_dict() for w in watches],
        }


def _split_budget(total: int, parts: int) -> list[int]:
    """Connections per datacenter: an equal share each, the remainder to the local one."""
    share, extra = divmod(total, parts)
    return [share + (extra if i == 0 else 0) for i in range(parts)]
