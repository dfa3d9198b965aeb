"""The discovery-chain check a config entry write or delete must pass before it is stored.

Consul's state store compiles, with the proposed change applied, the chain of the entry's
service and of every entry that links to it, and refuses the write when a chain does not
compile (``validateProposedConfigEntryInGraph`` in ``agent/consul/state/config_entry.go``; the
compiler is ``agent/consul/discoverychain/compile.go``; writing proxy-defaults checks every
chain that has a router, splitter or resolver). The double walks the same graph for the errors
that compile reports: inconsistent protocols, a router or splitter on a protocol that is not
HTTP-like, a subset that does not exist, circular splitter references and resolver redirects,
and redirect/subset/failover on a service with an external SNI. It builds no compiled chain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from .config_schema import fail, go_quote
from .config_validate import HTTP_LIKE

Key = tuple[str, str]  # (kind, name)
CHAIN_KINDS = ("service-router", "service-splitter", "service-resolver")
LOCAL_DC = "dc1"  # testCompileDiscoveryChain compiles in an arbitrary "dc1"


def check_change(
    current: Mapping[Key, dict[str, Any]], kind: str, name: str, proposed: dict[str, Any] | None
) -> None:
    """Raise (HTTP 500, Consul's words) if writing ``proposed`` (None: deleting) breaks a chain."""
    if kind == "proxy-defaults":
        chains = {n for (k, n) in current if k in CHAIN_KINDS}
    else:
        chains = {name} | {
            n for (k, n), body in current.items() if name in related_services(k, n, body)
        }
    entries = dict(current)
    if proposed is None:
        entries.pop((kind, name), None)
    else:
        entries[(kind, name)] = proposed
    for chain in sorted(chains):
        _Compiler(entries, chain).compile()


def related_services(kind: str, name: str, body: Mapping[str, Any]) -> set[str]:
    """``ListRelatedServices``: the services an entry links to (the table's "link" index)."""
    found: set[str] = set()
    if kind == "service-router":
        found.add(name)
        for route in body.get("Routes", []):
            if route.get("Destination") is not None:
                found.add(route["Destination"].get("Service") or name)
    elif kind == "service-splitter":
        found.update(s.get("Service") or name for s in body.get("Splits", []))
    elif kind == "service-resolver":
        if body.get("Redirect") is not None:
            found.add(body["Redirect"].get("Service") or name)
        for failover in body.get("Failover", {}).values():
            targets = failover.get("Targets", [])
            if not targets:
                found.add(failover.get("Service") or name)
            found.update(t.get("Service") or name for t in targets if not t.get("Peer"))
    if kind != "service-router":
        found.discard(name)
    return found


@dataclass(frozen=True)
class _Target:
    service: str
    subset: str = ""
    namespace: str = "default"
    partition: str = "default"
    datacenter: str = LOCAL_DC
    peer: str = ""

    @property
    def id(self) -> str:
        prefix = f"{self.subset}." if self.subset else ""
        where = f"external.{self.peer}" if self.peer else self.datacenter
        return f"{prefix}{self.service}.{self.namespace}.{self.partition}.{where}"

    def rewrite(self, opts: Mapping[str, Any]) -> _Target:
        """``rewriteTarget``: a new service drops the subset; set fields override."""
        t = self
        if opts.get("Service") and opts["Service"] != t.service:
            t = replace(t, service=opts["Service"], subset="")
        if opts.get("ServiceSubset"):
            t = replace(t, subset=opts["ServiceSubset"])
        if opts.get("Partition"):
            t = replace(t, partition=opts["Partition"])
        if opts.get("Namespace") or opts.get("Peer"):
            t = replace(t, namespace=opts.get("Namespace") or "default")
        if opts.get("Datacenter"):
            t = replace(t, datacenter=opts["Datacenter"])
        return replace(t, peer=opts.get("Peer", ""))


class _Compiler:
    def __init__(self, entries: Mapping[Key, dict[str, Any]], service: str) -> None:
        self.entries = entries
        self.service = service
        self.protocol = ""
        self.advanced = False
        self.nodes: dict[str, list[str]] = {}  # map key → next nodes (routers and splitters)
        self.resolved: set[str] = set()

    def compile(self) -> None:
        start = self._assemble()
        self._no_cycles(start, [])
        if self.advanced and self.protocol not in HTTP_LIKE:
            raise fail(
                f"discovery chain {go_quote(self.service)} uses a protocol "
                f"{go_quote(self.protocol)} that does not permit advanced routing or splitting "
                "behavior"
            )

    def _entry(self, kind: str, name: str) -> dict[str, Any] | None:
        return self.entries.get((kind, name))

    def _record_protocol(self, service: str) -> None:
        defaults = self._entry("service-defaults", service)
        if defaults is not None:
            protocol = str(defaults.get("Protocol", ""))
        else:
            proxy = self._entry("proxy-defaults", "global") or {}
            raw = (proxy.get("Config") or {}).get("protocol", "")
            protocol = raw if isinstance(raw, str) else ""
        protocol = protocol.lower() or "tcp"
        if not self.protocol:
            self.protocol = protocol
        elif self.protocol != protocol:
            raise fail(
                f"discovery chain {go_quote(self.service)} uses inconsistent protocols; service "
                f"{go_quote(service)} has {go_quote(protocol)} which is not "
                f"{go_quote(self.protocol)}"
            )

    def _assemble(self) -> str:
        router = self._entry("service-router", self.service)
        if router is None:
            return self._splitter_or_resolver(_Target(self.service))
        self.advanced = True
        self._record_protocol(self.service)
        key = f"router:{self.service}.default.default"
        nexts = self.nodes[key] = []
        for route in router.get("Routes", []):
            dest = route.get("Destination") or {}
            target = _Target(dest.get("Service") or self.service)
            if dest.get("ServiceSubset"):
                nexts.append(self._resolver(replace(target, subset=dest["ServiceSubset"])))
            else:
                nexts.append(self._splitter_or_resolver(target))
        nexts.append(self._splitter_or_resolver(_Target(self.service)))  # the catch-all
        return key

    def _splitter_or_resolver(self, target: _Target) -> str:
        return self._splitter(target.service) or self._resolver(target)

    def _splitter(self, service: str) -> str | None:
        key = f"splitter:{service}.default.default"
        if key in self.nodes:
            return key
        splitter = self._entry("service-splitter", service)
        if splitter is None:
            return None
        nexts = self.nodes[key] = []  # recorded before recursing: loops end here
        for split in splitter.get("Splits", []):
            other = split.get("Service") or service
            subset = split.get("ServiceSubset", "")
            if other != service and not subset:
                inner = self._splitter(other)
                if inner is not None:
                    nexts.append(inner)
                    continue
            nexts.append(self._resolver(_Target(other, subset)))
        self.advanced = True
        return key

    def _resolver(self, target: _Target, for_failover: bool = False) -> str:
        history: list[str] = []
        while True:
            key = f"resolver:{target.id}"
            if key in self.resolved:
                return key
            if not target.peer:
                self._record_protocol(target.service)
            resolver = self._entry("service-resolver", target.service) or {}
            if target.id in history:
                chain = " -> ".join([*history, target.id])
                raise fail(f"detected circular resolver redirect: [{chain}]")
            history.append(target.id)
            redirect = resolver.get("Redirect")
            if redirect is not None:
                moved = target.rewrite(redirect)
                if moved.id != target.id:
                    target = moved
                    continue
            if not target.subset and resolver.get("DefaultSubset"):
                target = replace(target, subset=resolver["DefaultSubset"])
                continue
            break
        if target.subset and target.subset not in resolver.get("Subsets", {}):
            raise fail(
                f"service {go_quote(target.service)} does not have a subset named "
                f"{go_quote(target.subset)}"
            )
        self._external_sni(target.service, resolver)
        key = f"resolver:{target.id}"
        if for_failover:
            return key
        self.resolved.add(key)
        failovers = resolver.get("Failover", {})
        failover = failovers.get(target.subset, failovers.get("*"))
        if failover is not None:
            for other in self._failover_targets(target, failover):
                self._resolver(other, for_failover=True)
        return key

    @staticmethod
    def _failover_targets(target: _Target, failover: Mapping[str, Any]) -> list[_Target]:
        options: list[Mapping[str, Any]]
        if failover.get("Datacenters"):
            options = [{**failover, "Datacenter": dc} for dc in failover["Datacenters"]]
        elif failover.get("Targets"):
            options = list(failover["Targets"])
        else:
            options = [failover]
        found = []
        for opts in options:
            picked = {k: opts.get(k) for k in ("Service", "ServiceSubset", "Namespace")}
            if not failover.get("Datacenters") or failover.get("Targets"):
                picked.update({k: opts.get(k) for k in ("Partition", "Datacenter", "Peer")})
            else:
                picked["Datacenter"] = opts["Datacenter"]
            moved = target.rewrite(picked)
            if moved.id != target.id:
                found.append(moved)
        return found

    def _external_sni(self, service: str, resolver: Mapping[str, Any]) -> None:
        defaults = self._entry("service-defaults", service) or {}
        if not defaults.get("ExternalSNI"):
            return
        for field, words in (
            ("Redirect", "redirects"),
            ("Subsets", "subsets"),
            ("Failover", "failover"),
        ):
            if resolver.get(field):
                raise fail(
                    f"service {go_quote(service)} has an external SNI set; cannot define {words} "
                    "for external services"
                )

    def _no_cycles(self, node: str, path: list[str]) -> None:
        """``detectCircularReferences`` over routers and splitters."""
        if node in path:
            raise fail(f"detected circular reference: [{' -> '.join([*path, node])}]")
        for following in self.nodes.get(node, []):
            self._no_cycles(following, [*path, node])
