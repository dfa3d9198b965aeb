"""Helpers for the watcher tests (no tests here): a recorder of updates, a running watcher,
bounded waiting driven by update callbacks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from bridge.catalog import ServiceUpdate
from bridge.consul import CatalogWatcher, ConsulClient
from bridge.consul_settings import ConsulSettings, settings_from_env
from bridge.model import Health, Instance
from bridge.tasks import within
from consul_double import ConsulDouble

Key = tuple[str, str]  # (service, datacenter)


@dataclass
class Recorder:
    """The watcher's ``on_update``: keeps every batch and the resulting state."""

    batches: list[list[ServiceUpdate]] = field(default_factory=list)
    state: dict[Key, tuple[Instance, ...] | None] = field(default_factory=dict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def __call__(self, updates: list[ServiceUpdate]) -> None:
        self.batches.append(list(updates))
        for u in updates:
            self.state[(u.name, u.datacenter)] = u.instances
        self.changed.set()

    @property
    def updates(self) -> list[ServiceUpdate]:
        return [u for batch in self.batches for u in batch]

    def mark(self) -> int:
        return len(self.updates)

    def since(self, mark: int) -> list[ServiceUpdate]:
        return self.updates[mark:]

    def instances(self, name: str, dc: str = "dc1") -> tuple[Instance, ...] | None:
        return self.state.get((name, dc))

    def instance(self, name: str, instance_id: str, dc: str = "dc1") -> Instance | None:
        return next((i for i in self.instances(name, dc) or () if i.id == instance_id), None)

    def ids(self, name: str, dc: str = "dc1") -> set[str] | None:
        found = self.instances(name, dc)
        return None if found is None else {i.id for i in found}


async def eventually(
    rec: Recorder, predicate: Callable[[], bool], timeout: float = 5.0, what: str = ""
) -> None:
    """Wait (bounded) until ``predicate`` holds, re-checking on every update (and every 20 ms
    for conditions that no update signals, such as request counters)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        rec.changed.clear()
        with contextlib.suppress(TimeoutError):
            await within(rec.changed.wait(), min(0.02, remaining))


def fast_settings(consul: ConsulDouble, **overrides: Any) -> ConsulSettings:
    values: dict[str, Any] = {
        "address": consul.url,
        "wait": "1s",
        "min_interval": 0.01,
        "backoff_base": 0.02,
        "backoff_max": 0.2,
        "request_margin": 0.5,
    }
    values.update(overrides)
    return settings_from_env({}, **values)


@dataclass
class Running:
    consul: ConsulDouble
    watcher: CatalogWatcher
    rec: Recorder
    client: ConsulClient
    task: asyncio.Task[None]

    async def until(
        self, predicate: Callable[[], bool], timeout: float = 5.0, what: str = ""
    ) -> None:
        await eventually(self.rec, predicate, timeout, what)

    async def ready(self, timeout: float = 5.0) -> None:
        await within(self.watcher.ready.wait(), timeout)


def held_queries(consul: ConsulDouble) -> int:
    """Requests the double has accepted and not answered yet: the blocking queries it holds."""
    return consul.stats.requests_total - sum(consul.stats.responses_by_status.values())


async def every_watch_held(run: Running) -> None:
    """Wait until Consul holds a blocking query of every watch. A fault or a reset injected
    from then on meets the requests that follow their answers (a held query is answered as it
    was accepted, as in Consul)."""
    watches = [w for w in run.watcher.status()["watches"] if w["path"] != "/v1/agent/self"]
    await run.until(
        lambda: held_queries(run.consul) == len(watches),
        what=f"Consul holding a query of each of the {len(watches)} watches",
    )


@contextlib.asynccontextmanager
async def watching(consul: ConsulDouble, **overrides: Any) -> AsyncIterator[Running]:
    settings = fast_settings(consul, **overrides)
    client = ConsulClient(settings)
    rec = Recorder()
    watcher = CatalogWatcher(client, settings, rec)
    task = asyncio.create_task(watcher.run())
    try:
        yield Running(consul, watcher, rec, client, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.close()


def register(
    consul: ConsulDouble,
    service: str,
    instance_id: str,
    *,
    port: int = 8080,
    address: str = "127.0.0.1",
    node: str = "node1",
    tags: list[str] | None = None,
    meta: dict[str, str] | None = None,
    weights: dict[str, int] | None = None,
    check_status: str = "passing",
    datacenter: str | None = None,
) -> None:
    consul.register(
        service,
        id=instance_id,
        address=address,
        port=port,
        tags=["v1"] if tags is None else tags,
        meta={"k": "v"} if meta is None else meta,
        weights={"Passing": 3, "Warning": 1} if weights is None else weights,
        check_status=check_status,
        node=node,
        node_address="127.0.0.1" if node == "node1" else "127.0.0.2",
        datacenter=datacenter,
    )


def web_and_api(consul: ConsulDouble, datacenter: str | None = None) -> None:
    """web-1 (node1), web-2 (node2) and api-1 (node1)."""
    register(consul, "web", "web-1", port=8080, node="node1", datacenter=datacenter)
    register(consul, "web", "web-2", port=8081, node="node2", datacenter=datacenter)
    register(consul, "api", "api-1", port=9090, node="node1", datacenter=datacenter)


def _web(instance_id: str, test: Callable[[Instance], bool]) -> Callable[[Recorder], bool]:
    def check(rec: Recorder) -> bool:
        found = rec.instance("web", instance_id)
        return found is not None and test(found)

    return check


Change = tuple[Callable[[ConsulDouble], None], Callable[[Recorder], bool]]

# Every kind of change the watcher must reflect: what to do in Consul, what "seen" means.
# Each touches only the service "web".
CHANGES: dict[str, Change] = {
    "add instance": (
        lambda c: register(c, "web", "web-3", port=8082, node="node2"),
        lambda r: r.ids("web") == {"web-1", "web-2", "web-3"},
    ),
    "remove instance": (lambda c: c.deregister("web-2"), lambda r: r.ids("web") == {"web-1"}),
    "port": (
        lambda c: register(c, "web", "web-1", port=9999),
        _web("web-1", lambda i: i.port == 9999),
    ),
    "address": (
        lambda c: register(c, "web", "web-1", address="10.1.2.3"),
        _web("web-1", lambda i: i.address == "10.1.2.3"),
    ),
    "tags": (
        lambda c: register(c, "web", "web-1", tags=["v1", "canary"]),
        _web("web-1", lambda i: set(i.tags) == {"v1", "canary"}),
    ),
    "meta": (
        lambda c: register(c, "web", "web-1", meta={"k": "changed"}),
        _web("web-1", lambda i: i.meta_dict == {"k": "changed"}),
    ),
    "weights": (
        lambda c: register(c, "web", "web-1", weights={"Passing": 7, "Warning": 2}),
        _web("web-1", lambda i: (i.weight_passing, i.weight_warning) == (7, 2)),
    ),
    "check status": (
        lambda c: c.set_check_status("service:web-1", "warning"),
        _web("web-1", lambda i: i.health == Health.WARNING),
    ),
    "service maintenance": (
        lambda c: c.set_service_maintenance("web-1", True, reason="deploy"),
        _web("web-1", lambda i: i.health == Health.MAINTENANCE),
    ),
    "node maintenance": (
        lambda c: c.set_node_maintenance("node2", True, reason="reboot"),
        _web("web-2", lambda i: i.health == Health.MAINTENANCE),
    ),
    "node check": (
        lambda c: c.set_node_check("node2", "critical"),
        _web("web-2", lambda i: i.health == Health.CRITICAL),
    ),
}
