"""The bridge's model of Consul's catalog: plain, immutable values parsed from Consul JSON.

Data flows one way: Consul JSON → these values (:func:`parse_health_service`) → Envoy resources
(:mod:`bridge.resources`). Nothing here does I/O.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

NODE_MAINTENANCE_CHECK = "_node_maintenance"
SERVICE_MAINTENANCE_PREFIX = "_service_maintenance:"


class Health(enum.IntEnum):
    """Aggregate health of one service instance, worst check wins (ordered by severity)."""

    PASSING = 0
    WARNING = 1
    CRITICAL = 2
    MAINTENANCE = 3


_STATUS = {"passing": Health.PASSING, "warning": Health.WARNING, "critical": Health.CRITICAL}


@dataclass(frozen=True, slots=True)
class Check:
    check_id: str
    name: str
    status: str  # passing | warning | critical (as Consul reports it)
    service_id: str  # "" for a node-level check
    output: str = ""

    @property
    def health(self) -> Health:
        if self.check_id == NODE_MAINTENANCE_CHECK or self.check_id.startswith(
            SERVICE_MAINTENANCE_PREFIX
        ):
            return Health.MAINTENANCE
        # An unknown status is treated as critical: never send traffic on a guess.
        return _STATUS.get(self.status, Health.CRITICAL)


@dataclass(frozen=True, slots=True)
class Instance:
    """One registered instance of a service, as seen in one datacenter."""

    service: str
    id: str
    node: str
    datacenter: str
    address: str  # Service.Address, else Node.Address; may be a hostname
    port: int
    tags: tuple[str, ...] = ()
    meta: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs
    node_meta: tuple[tuple[str, str], ...] = ()  # for subset filters on Node.Meta
    weight_passing: int = 1
    weight_warning: int = 1
    checks: tuple[Check, ...] = ()
    kind: str = ""  # Service.Kind: "" for a typical service, else connect-proxy, mesh-gateway, ...

    @property
    def health(self) -> Health:
        return max((c.health for c in self.checks), default=Health.PASSING)

    @property
    def meta_dict(self) -> dict[str, str]:
        return dict(self.meta)


@dataclass(frozen=True, slots=True)
class ServiceView:
    """Everything the bridge knows of one service name, across datacenters.

    ``datacenters`` lists the datacenters in failover order: the local one first, then the
    configured failover datacenters. ``instances`` maps each of them to its instances (sorted by
    node and id); a datacenter where the service does not exist maps to an empty tuple.
    """

    name: str
    datacenters: tuple[str, ...]
    instances: Mapping[str, tuple[Instance, ...]] = field(default_factory=dict)

    def all_instances(self) -> Iterable[Instance]:
        for dc in self.datacenters:
            yield from self.instances.get(dc, ())

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(sorted({t for i in self.all_instances() for t in i.tags}))


def _pairs(raw: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, Mapping):
        return ()
    return tuple(sorted((str(k), "" if v is None else str(v)) for k, v in raw.items()))


def _weight(raw: Any, key: str) -> int:
    if isinstance(raw, Mapping):
        value = raw.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 1


def parse_instance(entry: Mapping[str, Any], datacenter: str | None = None) -> Instance:
    """One element of ``GET /v1/health/service/<name>`` → :class:`Instance`.

    Raises ``ValueError`` naming the problem when the entry is not usable.
    """
    node = entry.get("Node") or {}
    service = entry.get("Service") or {}
    if not isinstance(node, Mapping) or not isinstance(service, Mapping):
        raise ValueError("health entry without Node/Service objects")
    name = service.get("Service")
    if not isinstance(name, str) or not name:
        raise ValueError("health entry without Service.Service")
    address = service.get("Address") or node.get("Address") or ""
    if not isinstance(address, str) or not address:
        raise ValueError(f"instance {service.get('ID')!r} of {name!r} has no address")
    port = service.get("Port", 0) or 0
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"instance {service.get('ID')!r} of {name!r} has invalid port {port!r}")
    checks = tuple(
        Check(
            check_id=str(c.get("CheckID", "")),
            name=str(c.get("Name", "")),
            status=str(c.get("Status", "")),
            service_id=str(c.get("ServiceID", "") or ""),
            output=str(c.get("Output", "") or ""),
        )
        for c in entry.get("Checks") or ()
        if isinstance(c, Mapping)
    )
    tags = service.get("Tags") or ()
    return Instance(
        service=name,
        id=str(service.get("ID") or name),
        node=str(node.get("Node", "")),
        datacenter=str(datacenter or node.get("Datacenter") or ""),
        address=address,
        port=port,
        tags=tuple(str(t) for t in tags) if isinstance(tags, Sequence) else (),
        meta=_pairs(service.get("Meta")),
        node_meta=_pairs(node.get("Meta")),
        weight_passing=_weight(service.get("Weights"), "Passing"),
        weight_warning=_weight(service.get("Weights"), "Warning"),
        checks=checks,
        kind=str(service.get("Kind") or ""),
    )


def parse_health_service(
    body: Any, datacenter: str | None = None
) -> tuple[tuple[Instance, ...], list[str]]:
    """A ``/v1/health/service/<name>`` body → (instances sorted by node and id, problems).

    Entries that cannot be used are skipped and described in ``problems``; the rest is kept.
    """
    if not isinstance(body, list):
        return (), [f"expected a JSON array, got {type(body).__name__}"]
    instances: list[Instance] = []
    problems: list[str] = []
    for entry in body:
        if not isinstance(entry, Mapping):
            problems.append(f"skipped a non-object entry: {entry!r:.80}")
            continue
        try:
            instances.append(parse_instance(entry, datacenter))
        except ValueError as exc:
            problems.append(f"skipped an instance: {exc}")
    instances.sort(key=lambda i: (i.node, i.id))
    return tuple(instances), problems
