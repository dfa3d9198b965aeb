"""One datacenter's catalog: nodes, services, checks and Consul-like index tables.

The index bookkeeping follows Consul's state store (``agent/consul/state/catalog.go``):

* every write that changes something takes the next raft index; a write that changes nothing
  (same check status and output, same node) takes none;
* table indexes ``nodes``, ``services``, ``checks`` move with their tables;
* ``service.<name>`` moves with that service's instances, its checks, and updates of the nodes
  (and node-level checks) its instances run on;
* when the last instance of a service goes away, ``service.<name>`` is dropped and
  ``service_last_extinction`` takes the index: reads of a missing service report it (or, if no
  service was ever removed, the catalog's maximum index).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Generic, TypeVar

STATUSES = ("passing", "warning", "critical")
SERF_CHECK = "serfHealth"
NODE_MAINT_CHECK = "_node_maintenance"
SERVICE_MAINT_PREFIX = "_service_maintenance:"
SERVICE_MAINT_DEFAULT = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
NODE_MAINT_DEFAULT = (
    "Maintenance mode is enabled for this node, but no reason was provided. "
    "This is a default message."
)
EXTINCTION = "service_last_extinction"
JSON = dict[str, Any]


class NotFoundError(KeyError):
    """An unknown node, service or check (HTTP 404 at the agent endpoints)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


@dataclass
class Node:
    name: str
    address: str
    datacenter: str
    id: str = ""
    tagged_addresses: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0

    def same(self, other: Node) -> bool:
        return (self.address, self.id, self.tagged_addresses, self.meta) == (
            other.address,
            other.id,
            other.tagged_addresses,
            other.meta,
        )

    def to_json(self) -> JSON:
        return {
            "ID": self.id,
            "Node": self.name,
            "Address": self.address,
            "Datacenter": self.datacenter,
            "TaggedAddresses": dict(self.tagged_addresses),
            "Meta": dict(self.meta),
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


@dataclass
class Service:
    node: str
    id: str
    name: str
    tags: list[str] = field(default_factory=list)
    address: str = ""
    port: int = 0
    meta: dict[str, str] = field(default_factory=dict)
    weights: dict[str, int] = field(default_factory=lambda: {"Passing": 1, "Warning": 1})
    tagged_addresses: dict[str, dict[str, Any]] = field(default_factory=dict)
    enable_tag_override: bool = False
    kind: str = ""
    create_index: int = 0
    modify_index: int = 0

    def to_json(self) -> JSON:
        """The ``NodeService`` shape of ``/v1/health/service`` (``Port`` omitted when 0)."""
        out: JSON = {}
        if self.kind:
            out["Kind"] = self.kind
        out.update(
            {
                "ID": self.id,
                "Service": self.name,
                "Tags": list(self.tags),
                "Address": self.address,
            }
        )
        if self.tagged_addresses:
            out["TaggedAddresses"] = {k: dict(v) for k, v in self.tagged_addresses.items()}
        out["Meta"] = dict(self.meta)
        if self.port:
            out["Port"] = self.port
        out.update(
            {
                "Weights": dict(self.weights),
                "EnableTagOverride": self.enable_tag_override,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                "Connect": {},
                "CreateIndex": self.create_index,
                "ModifyIndex": self.modify_index,
            }
        )
        return out

    def to_catalog_json(self, node: Node) -> JSON:
        """The flattened ``ServiceNode`` shape of ``/v1/catalog/service``."""
        out: JSON = {
            "ID": node.id,
            "Node": node.name,
            "Address": node.address,
            "Datacenter": node.datacenter,
            "TaggedAddresses": dict(node.tagged_addresses),
            "NodeMeta": dict(node.meta),
            "ServiceKind": self.kind,
            "ServiceID": self.id,
            "ServiceName": self.name,
            "ServiceTags": list(self.tags),
            "ServiceAddress": self.address,
            "ServiceWeights": dict(self.weights),
            "ServiceMeta": dict(self.meta),
            "ServicePort": self.port,
            "ServiceEnableTagOverride": self.enable_tag_override,
            "ServiceProxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "ServiceConnect": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }
        if self.tagged_addresses:
            out["ServiceTaggedAddresses"] = {k: dict(v) for k, v in self.tagged_addresses.items()}
        return out


@dataclass
class Check:
    node: str
    check_id: str
    name: str
    status: str = "critical"
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: list[str] = field(default_factory=list)
    type: str = ""
    ttl: str = ""
    create_index: int = 0
    modify_index: int = 0
    # The serialized JSON, keyed by (create, modify) index: a stored check is never changed in
    # place except for its indexes (``dataclasses.replace`` starts a copy without it).
    _cache: tuple[int, int, JSON, str] | None = field(
        default=None, init=False, repr=False, compare=False
    )
    _matches: tuple[JSON, dict[str, bool]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def _cached(self) -> tuple[int, int, JSON, str]:
        cached = self._cache
        if cached is None or cached[0] != self.create_index or cached[1] != self.modify_index:
            shape = self.to_json()
            cached = (self.create_index, self.modify_index, shape, json.dumps(shape))
            self._cache = cached
        return cached

    def json_shape(self) -> JSON:
        """``self.to_json()``, cached and shared: callers must not change it."""
        return self._cached()[2]

    def json_text(self) -> str:
        """``json.dumps(self.to_json())``, cached (lists of 100,000 checks stay cheap)."""
        return self._cached()[3]

    def matches(self, text: str, predicate: Callable[[Any], bool]) -> bool:
        """``predicate(self.to_json())`` for the filter ``text``, cached like the JSON."""
        shape = self._cached()[2]
        memo = self._matches
        if memo is None or memo[0] is not shape:
            memo = self._matches = (shape, {})
        found = memo[1].get(text)
        if found is None:
            found = memo[1][text] = bool(predicate(shape))
        return found

    def same(self, other: Check) -> bool:
        return (
            self.name,
            self.status,
            self.notes,
            self.output,
            self.service_id,
            self.service_name,
            self.service_tags,
            self.type,
            self.ttl,
        ) == (
            other.name,
            other.status,
            other.notes,
            other.output,
            other.service_id,
            other.service_name,
            other.service_tags,
            other.type,
            other.ttl,
        )

    def to_json(self) -> JSON:
        return {
            "Node": self.node,
            "CheckID": self.check_id,
            "Name": self.name,
            "Status": self.status,
            "Notes": self.notes,
            "Output": self.output,
            "ServiceID": self.service_id,
            "ServiceName": self.service_name,
            "ServiceTags": list(self.service_tags),
            "Type": self.type,
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
        }


def node_id(datacenter: str, name: str) -> str:
    """A stable node UUID, like the one an agent persists in its data dir."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{name}.{datacenter}.consul-double"))


def serf_check(node: str, status: str = "passing") -> Check:
    output = "Agent alive and reachable" if status == "passing" else "Agent not live or unreachable"
    return Check(node, SERF_CHECK, "Serf Health Status", status, output=output)


K = TypeVar("K")
V = TypeVar("V")


class _Table(dict[K, V], Generic[K, V]):
    """A dict that keeps secondary indexes (``field(value)`` → ``{key: value}``) in step, so a
    read of one service, node or check id does not scan the whole catalog (the double serves
    catalogs of 100,000 instances). Entries are replaced, never mutated in an indexed field;
    only ``[k] = v``, ``del``, ``pop`` and ``clear`` change a table."""

    def __init__(self, **fields: Callable[[V], str]) -> None:
        super().__init__()
        self._fields = fields
        self._by: dict[str, dict[str, dict[K, V]]] = {f: {} for f in fields}
        self._order: list[Any] | None = []  # every key, sorted; None once keys came or went

    def ordered_keys(self) -> list[Any]:
        """Every key, sorted; re-sorted only after keys were added or removed (replacing an
        entry, e.g. a check status change, keeps the order of 100,000 checks)."""
        if self._order is None:
            self._order = sorted(self)
        return self._order

    def lookup(self, field_name: str, value: str) -> dict[K, V]:
        """The entries whose ``field_name`` is ``value``, in insertion order (do not mutate)."""
        return self._by[field_name].get(value, {})

    def __setitem__(self, key: K, value: V) -> None:
        old = dict.get(self, key)
        if key not in self:
            self._order = None
        super().__setitem__(key, value)
        for name, fn in self._fields.items():
            new_value = fn(value)
            if old is not None:
                old_value = fn(old)
                if old_value != new_value:
                    self._unindex(name, old_value, key)
            self._by[name].setdefault(new_value, {})[key] = value

    def _unindex(self, name: str, value: str, key: K) -> None:
        bucket = self._by[name].get(value)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._by[name][value]

    def __delitem__(self, key: K) -> None:
        old = self[key]
        super().__delitem__(key)
        self._order = None
        for name, fn in self._fields.items():
            self._unindex(name, fn(old), key)

    def pop(self, key: K, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        super().clear()
        self._by = {f: {} for f in self._fields}
        self._order = None

    def setdefault(self, *args: Any) -> Any:  # pragma: no cover - guarded, unused
        raise NotImplementedError("_Table: use [key] = value")

    def update(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - guarded, unused
        raise NotImplementedError("_Table: use [key] = value")

    def popitem(self) -> Any:  # pragma: no cover - guarded, unused
        raise NotImplementedError("_Table: use del or pop")


def _service_key(svc: Service) -> str:
    return f"{svc.node}\0{svc.id}"


def _check_service_key(check: Check) -> str:
    return f"{check.node}\0{check.service_id}"


class _Txn:
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
        self.epoch = 0  # bumped by reset_index: blocked queries answer at once
        self.tables: dict[str, int] = {}
        self.nodes: dict[str, Node] = {}
        self.services: _Table[tuple[str, str], Service] = _Table(
            name=lambda s: s.name, node=lambda s: s.node, id=lambda s: s.id
        )
        self.checks: _Table[tuple[str, str], Check] = _Table(
            node=lambda c: c.node,
            node_service=_check_service_key,
            id=lambda c: c.check_id,
            service_name=lambda c: c.service_name if c.service_id else "",
            status=lambda c: c.status,
        )
        self._waiters: set[asyncio.Future[None]] = set()
        self._services_cache: tuple[tuple[int, int], dict[str, list[str]]] | None = None
        self._checks_cache: tuple[tuple[int, int], list[Check]] | None = None

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
    def write(self) -> Iterator[_Txn]:
        txn = _Txn(self)
        yield txn
        if txn.changed:
            self.raft_index = txn.idx
            self.notify()

    def reset_index(self) -> None:
        """Snapshot-restore simulation: every index becomes 1, blocked queries answer now."""
        self.raft_index = 1
        self.tables = dict.fromkeys(self.tables, 1)
        objects: list[Node | Service | Check] = [
            *self.nodes.values(),
            *self.services.values(),
            *self.checks.values(),
        ]
        for obj in objects:
            obj.create_index = obj.modify_index = 1
        self.epoch += 1
        self.notify()

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

    def _bump_node_services(self, txn: _Txn, node: str) -> None:
        txn.bump(*{f"service.{s.name}" for s in self.services_on(node)})

    def ensure_node(self, txn: _Txn, new: Node) -> Node:
        old = self.nodes.get(new.name)
        if old is not None and old.same(new):
            return old
        new.create_index = old.create_index if old is not None else txn.idx
        new.modify_index = txn.idx
        self.nodes[new.name] = new
        txn.bump("nodes")
        self._bump_node_services(txn, new.name)
        return new

    def ensure_service(self, txn: _Txn, svc: Service) -> None:
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

    def _after_instance_removed(self, txn: _Txn, name: str) -> None:
        if self.service_exists(name):
            txn.bump(f"service.{name}")
        else:
            self.tables.pop(f"service.{name}", None)
            txn.bump(EXTINCTION)

    def remove_service(self, txn: _Txn, node: str, service_id: str) -> None:
        svc = self.services.pop((node, service_id), None)
        if svc is None:
            raise NotFoundError(f"Unknown service ID {service_id!r}")
        for key in list(self.checks.lookup("node_service", _service_key(svc))):
            del self.checks[key]
            txn.bump("checks")
        txn.bump("services")
        self._after_instance_removed(txn, svc.name)

    def ensure_check(self, txn: _Txn, check: Check) -> bool:
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

    def _bump_for_check(self, txn: _Txn, check: Check) -> None:
        if check.service_id:
            txn.bump(f"service.{check.service_name}")
        else:
            self._bump_node_services(txn, check.node)

    def remove_check(self, txn: _Txn, node: str, check_id: str) -> None:
        check = self.checks.pop((node, check_id), None)
        if check is None:
            raise NotFoundError(f"Unknown check ID {check_id!r}")
        txn.bump("checks")
        if check.service_id and (node, check.service_id) in self.services:
            txn.bump(f"service.{check.service_name}")
        elif not check.service_id:
            self._bump_node_services(txn, node)

    def remove_node(self, txn: _Txn, node: str) -> None:
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
            # Every change of the services table bumps its index (or, on a reset, the epoch).
            key = (self.tables.get("services", 0), self.epoch)
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
            # Every change of the checks table bumps its index (or, on a reset, the epoch).
            key = (self.tables.get("checks", 0), self.epoch)
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
