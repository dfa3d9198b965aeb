"""Per service: the chain served, compiled from the current entries or kept from before.

:class:`ChainTable` holds the parsed config entries and, for every catalog service that has
entries, the chain it is served with. A service is recompiled only when something its chain
depends on changed: an entry it looked up (present or absent), a service it references coming or
going, or — for a chain that does not compile — any entry or catalog membership change.

When a chain does not compile (a quarantined entry, a route to a service that is not in the
catalog, a missing subset, a cycle), the service **keeps its last good chain** and the problems
are kept for logs and ``/debug/traffic``. A service that never had a good chain (e.g. the bridge
started with a bad entry) is served the chain compiled without the offending entries, which may
be no chain at all: the plain cluster, as without entries.

Pure state: no I/O, no protobuf.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..traffic import (
    KINDS,
    Chain,
    CompileResult,
    ConfigEntries,
    EntryKey,
    EntryProblem,
    Target,
    TargetCluster,
    compile_chain,
    parse_entries,
)

PROXY_DEFAULTS_KEY: EntryKey = ("proxy-defaults", "global")
_SERVICE_KINDS = tuple(k for k in KINDS if k != "proxy-defaults")


class State(enum.Enum):
    CURRENT = "current"  # compiled from the current entries
    LAST_GOOD = "last-good"  # the current entries do not compile: the last good chain is kept
    FALLBACK = "fallback"  # never compiled: compiled without the offending entries
    NONE = "none"  # never compiled, and nothing without them either: the plain cluster


@dataclass(frozen=True, slots=True)
class ServiceChain:
    """What one service is served with, and why."""

    chain: Chain | None
    state: State
    problems: tuple[EntryProblem, ...] = ()  # why the current entries do not compile
    left_out: tuple[EntryKey, ...] = ()  # FALLBACK: the entries compiled without

    def references(self) -> frozenset[str]:
        """Services the chain looked up or sends traffic to (a membership change of one of them
        may change how it compiles)."""
        if self.chain is None:
            return frozenset()
        return frozenset(name for _, name in self.chain.entries) | frozenset(
            service for service, _ in self.chain.watches()
        )


def changed_keys(old: ConfigEntries, new: ConfigEntries) -> set[EntryKey]:
    """Entries added, removed, changed or (un)quarantined between two tables."""
    keys: set[EntryKey] = set()
    for before, after in ((old.entries, new.entries), (old.quarantined, new.quarantined)):
        for key in before.keys() | after.keys():
            if before.get(key) != after.get(key):
                keys.add(key)
    return keys


class ChainTable:
    """The parsed entries and each service's chain (see the module docstring)."""

    def __init__(self) -> None:
        self.entries = ConfigEntries()
        self.datacenter = ""
        self.chains: dict[str, ServiceChain] = {}

    # ------------------------------------------------------------ inputs
    def set_entries(self, datacenter: str, bodies: Iterable[Mapping[str, Any]]) -> set[EntryKey]:
        """Take a new table of entries; returns the keys that changed (empty: nothing did)."""
        parsed = parse_entries(bodies)
        keys = changed_keys(self.entries, parsed)
        if datacenter != self.datacenter:
            keys.add(PROXY_DEFAULTS_KEY)  # compile everything again in the new datacenter
            self.datacenter = datacenter
        self.entries = parsed
        return keys

    def relevant(self, service: str) -> bool:
        """Whether ``service`` has any entry (usable or quarantined) that may shape it."""
        if self._has(PROXY_DEFAULTS_KEY):
            return True
        return any(self._has((kind, service)) for kind in _SERVICE_KINDS)

    def _has(self, key: EntryKey) -> bool:
        return key in self.entries.entries or key in self.entries.quarantined

    def affected(
        self, keys: Collection[EntryKey], membership: Collection[str], names: Collection[str]
    ) -> set[str]:
        """Catalog services to compile again after ``keys`` changed and the services in
        ``membership`` came or went."""
        if not keys and not membership:
            return set()
        if PROXY_DEFAULTS_KEY in keys:
            return set(names)
        out: set[str] = set()
        key_names = {name for _, name in keys}
        for service, served in self.chains.items():
            # A chain that does not compile may compile now; others if what they use changed.
            looked_up = set(served.chain.entries) if served.chain is not None else set()
            if (
                served.state is not State.CURRENT
                or looked_up.intersection(keys)
                or served.references() & (key_names | set(membership))
            ):
                out.add(service)
        out.update(key_names)
        out.update(s for s in membership if self.relevant(s))
        return out & set(names)

    # ------------------------------------------------------------ compiling
    def compile(self, services: Iterable[str], names: Collection[str]) -> set[str]:
        """Compile ``services`` against the catalog's service ``names``; drop the chains of
        services that left the catalog or have no entries any more. Returns the services whose
        served chain or problems changed."""
        changed: set[str] = set()
        for service in [s for s in self.chains if s not in names]:
            del self.chains[service]
            changed.add(service)
        for service in sorted(services):
            before = self.chains.get(service)
            after = self._compiled(service, names) if self.relevant(service) else None
            if after is None:
                self.chains.pop(service, None)
            else:
                self.chains[service] = after
            if after != before:
                changed.add(service)
        return changed

    def _compiled(self, service: str, names: Collection[str]) -> ServiceChain:
        result = self._compile(service, self.entries, names)
        if result.chain is not None:
            return ServiceChain(result.chain, State.CURRENT)
        before = self.chains.get(service)
        if before is not None and before.state in (State.CURRENT, State.LAST_GOOD):
            return ServiceChain(before.chain, State.LAST_GOOD, result.problems)
        return self._fallback(service, names, result.problems)

    def _fallback(
        self, service: str, names: Collection[str], problems: tuple[EntryProblem, ...]
    ) -> ServiceChain:
        """The chain without the entries named by the problems (repeatedly, a bounded number of
        times: each round leaves out at least one more entry)."""
        left_out: set[EntryKey] = set()
        pending = problems
        for _ in range(len(self.entries.entries) + len(self.entries.quarantined) + 1):
            keys = {p.key for p in pending} - left_out
            if not keys:
                break
            left_out |= keys
            result = self._compile(service, self.entries.without(left_out), names)
            if result.chain is not None:
                return ServiceChain(result.chain, State.FALLBACK, problems, tuple(sorted(left_out)))
            pending = result.problems
        return ServiceChain(None, State.NONE, problems, tuple(sorted(left_out)))

    def _compile(
        self, service: str, entries: ConfigEntries, names: Collection[str]
    ) -> CompileResult:
        return compile_chain(service, entries, datacenter=self.datacenter, known_services=names)

    # ------------------------------------------------------------ reading
    def served(self) -> list[tuple[str, Chain]]:
        """Every served chain, current ones first (their target clusters win a name clash with
        a kept one's), then by service name."""
        ordered = sorted(self.chains.items(), key=lambda i: (i[1].state is not State.CURRENT, i[0]))
        return [(service, s.chain) for service, s in ordered if s.chain is not None]

    def target_clusters(self) -> dict[Target, tuple[str, TargetCluster]]:
        """Every target cluster of the served chains by target, with the service whose chain
        defined it."""
        targets: dict[Target, tuple[str, TargetCluster]] = {}
        for service, chain in self.served():
            for cluster in chain.clusters:
                targets.setdefault(cluster.target, (service, cluster))
        return targets

    def problems(self) -> dict[str, tuple[EntryProblem, ...]]:
        """Per service whose current entries do not compile: why."""
        return {s: c.problems for s, c in sorted(self.chains.items()) if c.problems}
