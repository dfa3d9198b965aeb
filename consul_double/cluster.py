"""The datacenters of a double and every write operation, shared by the HTTP API and the
in-process helpers of :class:`~consul_double.ConsulDouble`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from .definitions import (
    InvalidRequestError,
    UnknownDatacenterError,
    lower_keys,
    port_of,
    service_of,
    status_of,
    str_map,
    weights_of,
)
from .durations import parse_go_duration
from .model import (
    NODE_MAINT_CHECK,
    NODE_MAINT_DEFAULT,
    SERF_CHECK,
    SERVICE_MAINT_DEFAULT,
    SERVICE_MAINT_PREFIX,
    Check,
    Node,
    NotFoundError,
    Service,
    node_id,
    serf_check,
)
from .state import Datacenter

BOOTSTRAP_INDEX = 10  # a real server has applied a few raft entries before serving the catalog
CHECK_TYPES = ("ttl", "http", "tcp", "grpc", "args", "script", "h2ping", "udp", "alias", "os")


class Cluster:
    """All datacenters of the double; ``local`` is the agent's own."""

    def __init__(self, local: str, extra: Iterable[str], node_name: str) -> None:
        self.local = local
        self.node_name = node_name
        self.dcs: dict[str, Datacenter] = {}
        self.unreachable: set[str] = set()
        for name in (local, *extra):
            if name not in self.dcs:
                self.dcs[name] = self._booted(name)

    def _booted(self, name: str) -> Datacenter:
        """A datacenter as a freshly started server has it: its server node and ``consul``."""
        dc = Datacenter(name)
        dc.raft_index = BOOTSTRAP_INDEX
        self._bootstrap(dc, self.node_name if name == self.local else f"{self.node_name}-{name}")
        return dc

    def _bootstrap(self, dc: Datacenter, server: str) -> None:
        with dc.write() as txn:
            dc.ensure_node(txn, self._agent_node(dc, server, "127.0.0.1"))
            dc.ensure_check(txn, serf_check(server))
        with dc.write() as txn:
            meta = {"raft_version": "3", "serf_protocol_current": "2", "version": "1.20.0"}
            dc.ensure_service(txn, Service(server, "consul", "consul", port=8300, meta=meta))

    @staticmethod
    def _agent_node(dc: Datacenter, name: str, address: str) -> Node:
        lan_wan = {"lan": address, "lan_ipv4": address, "wan": address, "wan_ipv4": address}
        return Node(name, address, dc.name, node_id(dc.name, name), lan_wan, {})

    def dc(self, name: str | None = None) -> Datacenter:
        dc = self.dcs.get(name or self.local)
        if dc is None:
            raise UnknownDatacenterError(name)
        return dc

    # -- faults of whole datacenters ---------------------------------------------------------

    def reachable(self, name: str) -> bool:
        return name not in self.unreachable

    def set_reachable(self, name: str, reachable: bool) -> None:
        """Cut (or restore) the WAN path to a datacenter: its reads answer 500 "No path to
        datacenter", queries held on it fail at once; its state is kept."""
        dc = self.dc(name)
        if name == self.local:
            raise ValueError("the agent's own datacenter is always reachable: stop() the double")
        if reachable:
            self.unreachable.discard(name)
        else:
            self.unreachable.add(name)
            dc.notify()

    def restore_low_indexes(self, name: str | None = None) -> None:
        """A snapshot restore: same data, every index 1, the old store abandoned."""
        old = self.dc(name)
        self.dcs[old.name] = old.restored_with_low_indexes()
        old.abandon()

    def wipe(self, name: str | None = None) -> None:
        """The datacenter's servers restarted with no data: a freshly booted store replaces the
        old one (abandoned); secondaries then replicate the primary's (now empty) entries."""
        old = self.dc(name)
        self.dcs[old.name] = self._booted(old.name)
        old.abandon()

    # -- in-process helpers ------------------------------------------------------------------

    def register(
        self,
        name: str,
        *,
        id: str | None = None,  # the public keyword is "id", as in Consul
        address: str = "",
        port: int = 0,
        tags: Iterable[str] | None = None,
        meta: Mapping[str, str] | None = None,
        weights: Mapping[str, int] | None = None,
        check_status: str | None = "passing",
        node: str = "node1",
        node_address: str = "127.0.0.1",
        datacenter: str | None = None,
    ) -> str:
        dc = self.dc(datacenter)
        service_id = id or name
        svc = Service(
            node,
            service_id,
            name,
            tags=list(tags or []),
            address=address,
            port=port_of(port),
            meta=dict(meta or {}),
            weights=weights_of(weights),
        )
        checks = []
        if check_status is not None:
            check_name = f"Service '{name}' check"
            status = status_of(check_status)
            check_id = f"service:{service_id}"
            checks.append(
                Check(
                    node, check_id, check_name, status, service_id=service_id, type="ttl", ttl="30s"
                )
            )
        with dc.write() as txn:
            existing = dc.nodes.get(node)
            if existing is None or existing.address != node_address:
                dc.ensure_node(txn, self._agent_node(dc, node, node_address))
            if (node, SERF_CHECK) not in dc.checks:
                dc.ensure_check(txn, serf_check(node))
            self._replace_service(dc, txn, svc, checks)
        return service_id

    @staticmethod
    def _replace_service(dc: Datacenter, txn: Any, svc: Service, checks: list[Check]) -> None:
        """Agent-style (re-)registration: the service and exactly its defined checks
        (maintenance checks, owned by the agent, are kept)."""
        dc.ensure_service(txn, svc)
        keep = {c.check_id for c in checks}
        for check in list(dc.checks.lookup("node_service", f"{svc.node}\0{svc.id}").values()):
            if check.check_id not in keep and not check.check_id.startswith(SERVICE_MAINT_PREFIX):
                dc.remove_check(txn, svc.node, check.check_id)
        for check in checks:
            dc.ensure_check(txn, check)

    def deregister(self, service_id: str, datacenter: str | None = None) -> None:
        dc = self.dc(datacenter)
        svc = self._agent_service(dc, service_id)
        with dc.write() as txn:
            dc.remove_service(txn, svc.node, svc.id)

    def set_check_status(
        self, check_id: str, status: str, output: str = "", datacenter: str | None = None
    ) -> None:
        dc = self.dc(datacenter)
        check = self._agent_check(dc, check_id)
        with dc.write() as txn:
            dc.ensure_check(txn, replace(check, status=status_of(status), output=output))

    def set_service_maintenance(
        self, service_id: str, enable: bool, reason: str = "", datacenter: str | None = None
    ) -> None:
        dc = self.dc(datacenter)
        svc = self._agent_service(dc, service_id)
        check_id = SERVICE_MAINT_PREFIX + svc.id
        with dc.write() as txn:
            if not enable:
                if (svc.node, check_id) in dc.checks:
                    dc.remove_check(txn, svc.node, check_id)
                return
            if (svc.node, check_id) in dc.checks:
                return  # already in maintenance: the agent keeps the first reason
            check = Check(
                svc.node,
                check_id,
                "Service Maintenance Mode",
                "critical",
                notes=reason or SERVICE_MAINT_DEFAULT,
                service_id=svc.id,
                type="maintenance",
            )
            dc.ensure_check(txn, check)

    def set_node_maintenance(
        self, node: str, enable: bool, reason: str = "", datacenter: str | None = None
    ) -> None:
        dc = self.dc(datacenter)
        if node not in dc.nodes:
            raise NotFoundError(f"Unknown node {node!r}")
        with dc.write() as txn:
            present = (node, NODE_MAINT_CHECK) in dc.checks
            if not enable and present:
                dc.remove_check(txn, node, NODE_MAINT_CHECK)
            elif enable and not present:
                notes = reason or NODE_MAINT_DEFAULT
                check = Check(node, NODE_MAINT_CHECK, "Node Maintenance Mode", "critical", notes)
                check.type = "maintenance"
                dc.ensure_check(txn, check)

    def set_node_check(self, node: str, status: str, datacenter: str | None = None) -> None:
        dc = self.dc(datacenter)
        if node not in dc.nodes:
            raise NotFoundError(f"Unknown node {node!r}")
        with dc.write() as txn:
            dc.ensure_check(txn, serf_check(node, status_of(status)))

    # -- agent lookups: the agent's own node first, then any node (see the package docs) -----

    def _agent_service(self, dc: Datacenter, service_id: str) -> Service:
        try:
            return dc.find_service(service_id, self.node_name)
        except NotFoundError:
            return dc.find_service(service_id)

    def _agent_check(self, dc: Datacenter, check_id: str) -> Check:
        try:
            return dc.find_check(check_id, self.node_name)
        except NotFoundError:
            return dc.find_check(check_id)

    # -- HTTP write endpoints ----------------------------------------------------------------

    def agent_register(self, body: Any) -> None:
        """``PUT /v1/agent/service/register`` on the agent's own node."""
        d = lower_keys(body)
        name = d.get("name")
        if not name or not isinstance(name, str):
            raise InvalidRequestError("Missing service name")
        node = self.node_name
        service_id = str(d.get("id") or name)
        svc = service_of(node, service_id, name, d)
        defs = []
        if d.get("check"):
            defs.append(d["check"])
        defs.extend(d.get("checks") or [])
        checks = []
        for n, raw in enumerate(defs, start=1):
            default_id = f"service:{service_id}" if len(defs) == 1 else f"service:{service_id}:{n}"
            checks.append(self._agent_check_def(raw, svc, default_id))
        dc = self.dc()
        with dc.write() as txn:
            self._replace_service(dc, txn, svc, checks)

    @staticmethod
    def _agent_check_def(raw: Any, svc: Service, default_id: str) -> Check:
        c = lower_keys(raw)
        kinds = [k for k in CHECK_TYPES if c.get(k)]
        if not kinds:
            raise InvalidRequestError(
                "Invalid check: one of TTL, HTTP, TCP, GRPC, Args is required"
            )
        kind = "script" if kinds[0] == "args" else kinds[0]
        ttl = ""
        if kind == "ttl":
            ttl = str(c["ttl"])
            try:
                if parse_go_duration(ttl) <= 0:
                    raise ValueError(ttl)
            except ValueError:
                raise InvalidRequestError(f"Invalid check: TTL {ttl!r} must be > 0") from None
        return Check(
            svc.node,
            str(c.get("checkid") or c.get("id") or default_id),
            str(c.get("name") or f"Service '{svc.name}' check"),
            status_of(c.get("status")),
            notes=str(c.get("notes") or ""),
            service_id=svc.id,
            type=kind,
            ttl=ttl,
        )

    def agent_deregister(self, service_id: str) -> None:
        self.deregister(service_id)

    def agent_ttl_update(self, check_id: str, status: str, output: str) -> None:
        dc = self.dc()
        check = self._agent_check(dc, check_id)
        if check.type != "ttl":
            raise InvalidRequestError(f'CheckID "{check_id}" does not have associated TTL')
        self.set_check_status(check_id, status, output)

    def catalog_register(self, body: Any) -> None:
        """``PUT /v1/catalog/register``: node, optional service and checks, in one write."""
        d = lower_keys(body)
        dc = self.dc(d.get("datacenter") or None)
        node_name = d.get("node")
        if not node_name:
            raise InvalidRequestError("Must provide node")
        address = d.get("address")
        if not address:
            raise InvalidRequestError("Must provide address")
        node = Node(
            str(node_name),
            str(address),
            dc.name,
            id=str(d.get("id") or ""),
            tagged_addresses=str_map(d.get("taggedaddresses"), "TaggedAddresses"),
            meta=str_map(d.get("nodemeta"), "NodeMeta"),
        )
        svc = None
        if d.get("service"):
            s = lower_keys(d["service"])
            name = s.get("service")
            if not name:
                raise InvalidRequestError("Must provide service name")
            svc = service_of(node.name, str(s.get("id") or name), str(name), s)
        raw_checks = ([d["check"]] if d.get("check") else []) + list(d.get("checks") or [])
        checks = []
        for raw in raw_checks:
            c = lower_keys(raw)
            check_id = str(c.get("checkid") or c.get("name") or "")
            if not check_id:
                raise InvalidRequestError("Missing check ID")
            checks.append(
                Check(
                    node.name,
                    check_id,
                    str(c.get("name") or check_id),
                    status_of(c.get("status")),
                    notes=str(c.get("notes") or ""),
                    output=str(c.get("output") or ""),
                    service_id=str(c.get("serviceid") or ""),
                    type=str(c.get("type") or ""),
                )
            )
        with dc.write() as txn:
            if not (d.get("skipnodeupdate") and node.name in dc.nodes):
                dc.ensure_node(txn, node)
            if svc is not None:
                dc.ensure_service(txn, svc)
            for check in checks:
                dc.ensure_check(txn, check)

    def catalog_deregister(self, body: Any) -> None:
        """``PUT /v1/catalog/deregister``: a service, a check, or the whole node."""
        d = lower_keys(body)
        dc = self.dc(d.get("datacenter") or None)
        node = d.get("node")
        if not node:
            raise InvalidRequestError("Must provide node")
        with dc.write() as txn:
            if d.get("serviceid"):
                if (node, d["serviceid"]) in dc.services:
                    dc.remove_service(txn, node, str(d["serviceid"]))
            elif d.get("checkid"):
                if (node, d["checkid"]) in dc.checks:
                    dc.remove_check(txn, node, str(d["checkid"]))
            else:
                dc.remove_node(txn, str(node))
