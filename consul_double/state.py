"""One datacenter's catalog: nodes, services, checks and Consul-like index tables.

The index bookkeeping follows Consul's state store (``agent/consul/state/catalog.go``):

* every write that changes something takes the next raft index; a write that changes nothing
  (same check status and output, same node) takes none;
* table indexes ``nodes``, ``services``, ``checks`` move with their tables;
* ``service.<name>`` moves with that service's instances, its checks, and updates of the nodes
  (and node-level checks) its instances run on;
* when the last instance of a service goes away, ``service.<name>`` is dropped and
  ``service_last_extinction`` takes the index: reads of a missing service report it (or, if no
  service was ever removed, the catalog's maximum index);
* config entries are one more table, ``config-entries`` (see :mod:`consul_double.config_store`).

A snapshot restore replaces the whole state store (``fsm.Restore`` in ``agent/consul/fsm``):
the double builds a new :class:`Datacenter` and *abandons* the old one, whose blocked queries
then answer with what they read from it (see :func:`consul_double.http_common.block`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from .config_store import ConfigEntry
from .model import (
    JSON,
    STATUSES,
    Check,
    Node,
    NotFoundError,
    Service,
)
from .table import Table

EXTINCTION = "service_last_extinction"


def _service_key(svc: Service) -> str:
    return f"{svc.node}\0{svc.id}"


def _check_service_key(check: Check) -> str:
    return f"{check.node}\0{check.service_id}"


class Txn:
    """Changes of one write; they all get the same raft index, taken only if something changed."""

    def __init__(self, store: Datacenter) -> None:
        self.store = store
        self.idx = store.raft_index + 1
        self.changed = False

    def bump(self, *keys: str) -> None:
        for key in keys:
            self.store.tables[key] = self.idx
        self.changed = True


class Datacenter:
    """Catalog state of one datacenter, plus the waiters blocked on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.raft_index = 0
        self.abandoned = False  # replaced by a restored store: blocked queries answer now
        self.tables: dict[str, int] = {}
        self.nodes: dict[str, Node] = {}
        self.services: Table[tuple[str, str], Service] = Table(
            name=lambda s: s.name, node=lambda s: s.node, id=lambda s: s.id
        )
        self.checks: Table[tuple[str, str], Check] = Table(
            node=lambda c: c.node,
            node_service=_check_service_key,
            id=lambda c: c.check_id,
            service_name=lambda c: c.service_name if c.service_id else "",
            status=lambda c: c.status,
        )
        self.config: dict[tuple[str, str], ConfigEntry] = {}  # (kind, name) → entry
        self._waiters: set[asyncio.Future[None]] = set()
        self._services_cache: tuple[int, dict[str, list[str]]] | None = None
        self._checks_cache: tuple[int, list[Check]] | None = None

    # -- waiting -----------------------------------------------------------------------------

    def waiter(self) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(fut)
        return fut

    def discard(self, fut: asyncio.Future[None]) -> None:
        self._waiters.discard(fut)

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    @contextmanager
    def write(self) -> Iterator[Txn]:
        txn = Txn(self)
        yield txn
        if txn.changed:
            self.raft_index = txn.idx
            self.notify()

    def abandon(self) -> None:
        """This store was replaced (snapshot restore, restart): wake every blocked query."""
        self.abandoned = True
        self.notify()

    def restored_with_low_indexes(self) -> Datacenter:
        """A new store with the same data where every index is 1 (a snapshot restore, or a
        server restarted with lower indexes); this store is left untouched."""
        new = Datacenter(self.name)
        new.raft_index = 1
        new.tables = dict.fromkeys(self.tables, 1)
        new.nodes = {k: replace(n, create_index=1, modify_index=1) for k, n in self.nodes.items()}
        for key, svc in self.services.items():
            new.services[key] = replace(svc, create_index=1, modify_index=1)
        for key, check in self.checks.items():
            new.checks[key] = replace(check, create_index=1, modify_index=1)
        new.config = {k: replace(e, create_index=1, modify_index=1) for k, e in self.config.items()}
        return new

    # -- indexes -----------------------------------------------------------------------------

    def table_index(self, *names: str) -> int:
        return max(1, *(self.tables.get(n, 0) for n in names))

    def catalog_max_index(self) -> int:
        return self.table_index("nodes", "services", "checks")

    def service_index(self, name: str, exists: bool) -> int:
        """``maxIndexForService``: the service's index, else the last extinction."""
        if not exists and EXTINCTION in self.tables:
            return max(1, self.tables[EXTINCTION])
        key = f"service.{name}"
        if key in self.tables:
            return max(1, self.tables[key])
        return self.catalog_max_index()

    def service_exists(self, name: str) -> bool:
        return bool(self.services.lookup("name", name))

    # -- writes ------------------------------------------------------------------------------

    def services_on(self, node: str) -> list[Service]:
        return list(self.services.lookup("node", node).values())

    def _bump_node_services(self, txn: Txn, node: str) -> None:
        txn.bump(*{f"service.{s.name}" for s in self.services_on(node)})

    def ensure_node(self, txn: Txn, new: Node) -> Node:
        old = self.nodes.get(new.name)
        if old is not None and old.same(new):
            return old
        new.create_index = old.create_index if old is not None else txn.idx
        new.modify_index = txn.idx
        self.nodes[new.name] = new
        txn.bump("nodes")
        self._bump_node_services(txn, new.name)
        return new

    def ensure_service(self, txn: Txn, svc: Service) -> None:
        if svc.node not in self.nodes:
            raise NotFoundError(f"Missing node registration for {svc.node!r}")
        key = (svc.node, svc.id)
        old = self.services.get(key)
        svc.create_index = old.create_index if old is not None else txn.idx
        svc.modify_index = txn.idx
        self.services[key] = svc
        txn.bump("services", f"service.{svc.name}")
        if old is not None and old.name != svc.name:
            self._after_instance_removed(txn, old.name)
        for check in list(self.checks.lookup("node_service", _service_key(svc)).values()):
            self.ensure_check(txn, replace(check))  # picks up the new name and tags

    def _after_instance_removed(self, txn: Txn, name: str) -> None:
        if self.service_exists(name):
            txn.bump(f"service.{name}")
        else:
            self.tables.pop(f"service.{name}", None)
            txn.bump(EXTINCTION)

    def remove_service(self, txn: Txn, node: str, service_id: str) -> None:
        svc = self.services.pop((node, service_id), None)
        if svc is None:
            raise NotFoundError(f"Unknown service ID {service_id!r}")
        for key in list(self.checks.lookup("node_service", _service_key(svc))):
            del self.checks[key]
            txn.bump("checks")
        txn.bump("services")
        self._after_instance_removed(txn, svc.name)

    def ensure_check(self, txn: Txn, check: Check) -> bool:
        """Upsert a check; returns whether it changed (an identical check is not a write)."""
        if check.node not in self.nodes:
            raise NotFoundError(f"Missing node registration for {check.node!r}")
        if check.status not in STATUSES:
            raise ValueError(f"Invalid check status: {check.status!r}")
        if check.service_id:
            svc = self.services.get((check.node, check.service_id))
            if svc is None:
                raise NotFoundError(f"Missing service registration {check.service_id!r}")
            check.service_name, check.service_tags = svc.name, list(svc.tags)
        key = (check.node, check.check_id)
        old = self.checks.get(key)
        if old is not None and old.same(check):
            return False
        check.create_index = old.create_index if old is not None else txn.idx
        check.modify_index = txn.idx
        self.checks[key] = check
        txn.bump("checks")
        self._bump_for_check(txn, check)
        return True

    def _bump_for_check(self, txn: Txn, check: Check) -> None:
        if check.service_id:
            txn.bump(f"service.{check.service_name}")
        else:
            self._bump_node_services(txn, check.node)

    def remove_check(self, txn: Txn, node: str, check_id: str) -> None:
        check = self.checks.pop((node, check_id), None)
        if check is None:
            raise NotFoundError(f"Unknown check ID {check_id!r}")
        txn.bump("checks")
        if check.service_id and (node, check.service_id) in self.services:
            txn.bump(f"service.{check.service_name}")
        elif not check.service_id:
            self._bump_node_services(txn, node)

    def remove_node(self, txn: Txn, node: str) -> None:
        if node not in self.nodes:
            return
        for svc in self.services_on(node):
            self.remove_service(txn, node, svc.id)
        for key in list(self.checks.lookup("node", node)):
            del self.checks[key]
            txn.bump("checks")
        del self.nodes[node]
        txn.bump("nodes")

    # -- lookups -----------------------------------------------------------------------------

    def find_service(self, service_id: str, node: str | None = None) -> Service:
        for svc in self.services.lookup("id", service_id).values():
            if node is None or svc.node == node:
                return svc
        raise NotFoundError(f"Unknown service ID {service_id!r}")

    def find_check(self, check_id: str, node: str | None = None) -> Check:
        for check in self.checks.lookup("id", check_id).values():
            if node is None or check.node == node:
                return check
        raise NotFoundError(f"Unknown check ID {check_id!r}")

    def checks_of(self, svc: Service) -> list[Check]:
        """Node-level checks first, then the service's own (as Consul orders them)."""
        node_checks = list(self.checks.lookup("node_service", f"{svc.node}\0").values())
        own = list(self.checks.lookup("node_service", _service_key(svc)).values())
        return sorted(node_checks, key=lambda c: c.check_id) + sorted(own, key=lambda c: c.check_id)

    # -- reads -------------------------------------------------------------------------------

    def instances(self, name: str, tags: Iterable[str] = ()) -> list[Service]:
        wanted = [t.lower() for t in tags]
        found = [
            s
            for s in self.services.lookup("name", name).values()
            if all(t in {x.lower() for x in s.tags} for t in wanted)
        ]
        return sorted(found, key=lambda s: (s.node, s.id))

    def health_service(self, name: str, tags: Iterable[str], passing: bool) -> list[JSON]:
        out = []
        for svc in self.instances(name, tags):
            checks = self.checks_of(svc)
            if passing and any(c.status != "passing" for c in checks):
                continue
            out.append(
                {
                    "Node": self.nodes[svc.node].to_json(),
                    "Service": svc.to_json(),
                    "Checks": [c.to_json() for c in checks],
                }
            )
        return out

    def catalog_service(self, name: str, tags: Iterable[str]) -> list[JSON]:
        return [s.to_catalog_json(self.nodes[s.node]) for s in self.instances(name, tags)]

    def catalog_services(
        self, predicate: Callable[[Any], bool] | None = None
    ) -> dict[str, list[str]]:
        if predicate is None:
            # Every change of the services table bumps its index (a reset makes a new store).
            key = self.tables.get("services", 0)
            if self._services_cache is None or self._services_cache[0] != key:
                self._services_cache = (key, self._catalog_services(None))
            return {name: list(tags) for name, tags in self._services_cache[1].items()}
        return self._catalog_services(predicate)

    def _catalog_services(self, predicate: Callable[[Any], bool] | None) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for svc in sorted(self.services.values(), key=lambda s: (s.name, s.node, s.id)):
            if predicate is not None and not predicate(svc.to_catalog_json(self.nodes[svc.node])):
                continue
            tags = out.setdefault(svc.name, [])
            tags.extend(t for t in svc.tags if t not in tags)
        return out

    def checks_in_state(self, state: str) -> list[Check]:
        if state == "any":
            # Every change of the checks table bumps its index (a reset makes a new store).
            key = self.tables.get("checks", 0)
            if self._checks_cache is None or self._checks_cache[0] != key:
                checks = self.checks  # keyed and ordered by (node, check id)
                self._checks_cache = (key, [checks[k] for k in checks.ordered_keys()])
            return list(self._checks_cache[1])
        found = [c for c in self.checks.values() if c.status == state]
        return sorted(found, key=lambda c: (c.node, c.check_id))

    def checks_with_status(self, statuses: Iterable[str]) -> list[Check]:
        found = [c for s in statuses for c in self.checks.lookup("status", s).values()]
        return sorted(found, key=lambda c: (c.node, c.check_id))

    def service_checks(self, name: str) -> list[Check]:
        found = [c for c in self.checks.lookup("service_name", name).values() if c.service_id]
        return sorted(found, key=lambda c: (c.node, c.check_id))

    def node_checks(self, node: str) -> list[Check]:
        return sorted(self.checks.lookup("node", node).values(), key=lambda c: c.check_id)
