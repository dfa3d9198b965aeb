"""A compiled discovery chain: what one service's traffic does, ready to become Envoy config.

Routes (first match wins, a catch-all last) send requests to weighted legs; each leg names a
:class:`Target` — (service, subset, datacenter) after redirects and default subsets — and each
target is one Envoy cluster (:class:`TargetCluster`) with its failover levels.
"""

from __future__ import annotations

from dataclasses import dataclass

from .entries import (
    HTTP_LIKE,
    HeaderModifiers,
    HttpMatch,
    LoadBalancer,
    RouteDestination,
    Subset,
    UpstreamConfig,
)
from .problems import EntryKey, EntryProblem

FULL_WEIGHT = 10_000  # leg weights are in 1/100 of a percent


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """Where traffic ends up: instances of ``service`` in ``datacenter``, filtered by ``subset``."""

    service: str
    subset: str
    datacenter: str

    def __str__(self) -> str:
        prefix = f"{self.subset}." if self.subset else ""
        return f"{prefix}{self.service}.{self.datacenter}"


@dataclass(frozen=True, slots=True)
class Origin:
    """The entry field a piece of the chain came from (for warnings that name it)."""

    kind: str
    name: str
    field: str

    def warn(self, field: str, message: str) -> EntryProblem:
        path = f"{self.field}.{field}" if self.field and field else self.field or field
        return EntryProblem(self.kind, self.name, path, message)


@dataclass(frozen=True, slots=True)
class Level:
    """One priority level of a target cluster: a target's instances, filtered by its subset."""

    target: Target
    subset: Subset


@dataclass(frozen=True, slots=True)
class TargetCluster:
    """One Envoy cluster: the primary level, then the failover levels in order.

    ``failover`` empty means the bridge's own datacenter order applies (the local datacenter,
    then the configured failover datacenters), as for a plain service.
    """

    primary: Level
    failover: tuple[Level, ...]
    protocol: str
    connect_timeout: float | None
    request_timeout: float | None
    load_balancer: LoadBalancer | None
    upstream: UpstreamConfig | None
    upstream_from: str  # the service-defaults entry ``upstream`` came from ("" when none)
    resolver: str  # the service-resolver entry that shaped it ("" when none)

    @property
    def target(self) -> Target:
        return self.primary.target


@dataclass(frozen=True, slots=True)
class Leg:
    """A share of a route's traffic for one target, with the split's header changes."""

    target: Target
    weight: int
    request_headers: HeaderModifiers
    response_headers: HeaderModifiers
    origin: Origin | None  # the split it came from; None when the route is not split


@dataclass(frozen=True, slots=True)
class ChainRoute:
    match: HttpMatch | None  # None: every request (prefix "/")
    destination: RouteDestination | None  # the router's destination settings, if any
    legs: tuple[Leg, ...]
    split: bool  # through a splitter (weighted clusters), else one cluster
    hash_from: Target | None  # the cluster whose ring_hash/maglev hash policies the route carries
    request_timeout: float | None  # resolver RequestTimeout for a one-cluster route
    origin: Origin | None  # Routes[i] of the router; None for the catch-all


@dataclass(frozen=True, slots=True)
class Chain:
    service: str
    datacenter: str  # the local datacenter the chain was compiled in
    protocol: str
    routes: tuple[ChainRoute, ...]
    clusters: tuple[TargetCluster, ...]  # sorted by target; exactly what the routes use
    entries: tuple[EntryKey, ...]  # every entry looked up (present or not): recompile on change
    default: bool  # no router, splitter or resolver: the service's plain cluster, as today

    @property
    def http(self) -> bool:
        return self.protocol in HTTP_LIKE

    def cluster(self, target: Target) -> TargetCluster:
        return next(c for c in self.clusters if c.target == target)

    def watches(self) -> frozenset[tuple[str, str]]:
        """(service, datacenter) pairs whose instances the clusters need."""
        return frozenset(
            (level.target.service, level.target.datacenter)
            for cluster in self.clusters
            for level in (cluster.primary, *cluster.failover)
        )


@dataclass(frozen=True, slots=True)
class CompileResult:
    """A chain, or (None and) the problems that keep it from compiling."""

    chain: Chain | None
    problems: tuple[EntryProblem, ...] = ()
