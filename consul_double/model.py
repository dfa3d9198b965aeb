"""The catalog's records as Consul serializes them: nodes, service instances and checks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
