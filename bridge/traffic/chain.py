"""Discovery chain compilation as Consul documents it: router → splitter → resolver → targets.

For a service S: S's router (if any) gives routes in order plus a catch-all; each route goes to
its destination's splitter (when it names no subset) or resolver. A splitter's splits go to other
splitters (flattened: weights multiply, header changes merge) or to resolvers. A resolver applies,
in order, its Redirect (restarting with the new service's resolver), its DefaultSubset, and checks
the subset exists; its Failover (for the subset, else ``*``) lists further targets, each through
its own resolver's Redirect and DefaultSubset but not its Failover. No entries at all: one target,
the service itself. Every service touched must share one protocol (service-defaults ``Protocol``,
else proxy-defaults ``Config.protocol``, else tcp), and only http, http2 and grpc allow routers
and splitters. Namespaces, partitions and peers are refused when the entries are read.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from fractions import Fraction

from .chain_model import (
    FULL_WEIGHT,
    Chain,
    ChainRoute,
    CompileResult,
    Leg,
    Level,
    Origin,
    Target,
    TargetCluster,
)
from .entries import (
    HTTP_LIKE,
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    SERVICE_RESOLVER,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    HeaderModifiers,
    LoadBalancer,
    ServiceResolver,
    Subset,
    UpstreamConfig,
    merge_headers,
)
from .entry_set import ConfigEntries
from .naming import SEPARATOR as RESERVED
from .problems import EntryKey, EntryProblem


def compile_chain(
    service: str,
    entries: ConfigEntries,
    *,
    datacenter: str,
    known_services: Collection[str] | None = None,
    upstream_source: str | None = None,
) -> CompileResult:
    """Compile ``service``'s chain in the local ``datacenter``. Never raises.

    ``known_services``: when given, a router, splitter or redirect that sends traffic to a service
    not in it is a problem. ``upstream_source``: the service-defaults entry whose
    ``UpstreamConfig`` (Overrides for the target, else Defaults) applies — the edge acting as that
    service; None: each target service's own ``UpstreamConfig.Defaults``.
    """
    compiler = _Compiler(service, entries, datacenter, known_services, upstream_source)
    try:
        return CompileResult(compiler.compile())
    except _Failed as failed:
        return CompileResult(None, tuple(failed.problems))


class _Failed(Exception):
    def __init__(self, problems: list[EntryProblem]) -> None:
        super().__init__("; ".join(map(str, problems)))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class _Split:
    """A splitter's traffic, flattened: exact shares of the whole and header changes."""

    share: Fraction
    target: Target
    request_headers: HeaderModifiers
    response_headers: HeaderModifiers
    origin: Origin


class _Compiler:
    def __init__(
        self,
        service: str,
        entries: ConfigEntries,
        datacenter: str,
        known: Collection[str] | None,
        upstream_source: str | None,
    ) -> None:
        self.service = service
        self.entries = entries
        self.dc = datacenter
        self.known = known
        self.upstream_source = upstream_source
        self.protocol = ""
        self.consulted: set[EntryKey] = set()
        self.clusters: dict[Target, TargetCluster] = {}
        self.splitters: dict[str, tuple[_Split, ...]] = {}
        self.advanced: list[EntryKey] = []  # routers and splitters used

    # ------------------------------------------------------------------ entry access
    def _lookup(self, kind: str, name: str) -> None:
        self.consulted.add((kind, name))
        problems = self.entries.quarantined.get((kind, name))
        if problems:
            raise _Failed(list(problems))

    def _fail(self, origin: Origin, message: str) -> _Failed:
        return _Failed([origin.warn("", message)])

    def _resolver(self, service: str) -> ServiceResolver | None:
        self._lookup(SERVICE_RESOLVER, service)
        return self.entries.resolver(service)

    def _require(self, service: str, origin: Origin) -> None:
        if RESERVED in service:
            raise self._fail(origin, f"service names containing {RESERVED!r} are not supported")
        if self.known is not None and service not in self.known:
            raise self._fail(origin, f"service {service!r} does not exist in the catalog")

    # ------------------------------------------------------------------ protocol
    def _protocol_of(self, service: str) -> str:
        self._lookup(SERVICE_DEFAULTS, service)
        defaults = self.entries.service_defaults(service)
        if defaults is not None:
            return defaults.protocol or "tcp"
        self._lookup(PROXY_DEFAULTS, "global")
        proxy = self.entries.proxy_defaults()
        return (proxy.protocol if proxy is not None else "") or "tcp"

    def _record_protocol(self, service: str) -> None:
        protocol = self._protocol_of(service)
        if not self.protocol:
            self.protocol = protocol
        elif protocol != self.protocol:
            raise self._fail(
                Origin(SERVICE_DEFAULTS, service, "Protocol"),
                f"chain {self.service!r} uses inconsistent protocols: service {service!r} has "
                f"{protocol!r}, not {self.protocol!r}",
            )

    # ------------------------------------------------------------------ assembly
    def compile(self) -> Chain:
        self._lookup(SERVICE_ROUTER, self.service)
        router = self.entries.router(self.service)
        routes: list[ChainRoute] = []
        if router is not None:
            self.advanced.append((SERVICE_ROUTER, router.name))
            self._record_protocol(self.service)
            for i, route in enumerate(router.routes):
                origin = Origin(SERVICE_ROUTER, router.name, f"Routes[{i}]")
                dest = route.destination
                service = (dest.service if dest else "") or self.service
                subset = dest.service_subset if dest else ""
                self._require(service, replace(origin, field=f"{origin.field}.Destination"))
                chain_route = self._route_to(service, subset, origin)
                routes.append(replace(chain_route, match=route.match, destination=dest))
        routes.append(self._route_to(self.service, "", None))
        if self.advanced and self.protocol not in HTTP_LIKE:
            raise self._fail(
                Origin(*self.advanced[0], ""),
                f"chain {self.service!r} uses protocol {self.protocol!r}, which does not allow "
                "routing or splitting (set Protocol to http, http2 or grpc in service-defaults)",
            )
        home = Target(self.service, "", self.dc)
        default = not self.advanced and set(self.clusters) == {home}
        default = default and self.entries.resolver(self.service) is None
        return Chain(
            service=self.service,
            datacenter=self.dc,
            protocol=self.protocol,
            routes=tuple(routes),
            clusters=tuple(self.clusters[t] for t in sorted(self.clusters)),
            entries=tuple(sorted(self.consulted)),
            default=default,
        )

    def _route_to(self, service: str, subset: str, origin: Origin | None) -> ChainRoute:
        """A route to a service's splitter (no subset named) or straight to its resolver."""
        where = origin or Origin(SERVICE_RESOLVER, service, "")
        if not subset:
            self._lookup(SERVICE_SPLITTER, service)
            if self.entries.splitter(service) is not None:
                splits = self._splitter(service, (), where)
                legs = _legs(splits)
                # One route action has one set of hash policies: the first hashing resolver's.
                hashing = (leg.target for leg in legs if self._hashes(leg.target))
                return ChainRoute(None, None, legs, True, next(hashing, None), None, origin)
        target = self._resolve(Target(service, subset, self.dc), where)
        leg = Leg(target, FULL_WEIGHT, HeaderModifiers(), HeaderModifiers(), None)
        hash_from = target if self._hashes(target) else None
        timeout = self.clusters[target].request_timeout
        return ChainRoute(None, None, (leg,), False, hash_from, timeout, origin)

    def _hashes(self, target: Target) -> bool:
        lb = self.clusters[target].load_balancer
        return lb is not None and lb.hash_based

    def _splitter(self, service: str, stack: tuple[str, ...], origin: Origin) -> tuple[_Split, ...]:
        if service in stack:
            cycle = " -> ".join((*stack, service))
            raise self._fail(origin, f"circular reference between splitters: {cycle}")
        if service in self.splitters:
            return self.splitters[service]
        splitter = self.entries.splitter(service)
        assert splitter is not None
        self.advanced.append((SERVICE_SPLITTER, service))
        out: list[_Split] = []
        for i, split in enumerate(splitter.splits):
            here = Origin(SERVICE_SPLITTER, service, f"Splits[{i}]")
            share = Fraction(round(split.weight * 100), FULL_WEIGHT)
            target_service = split.service or service
            self._require(target_service, replace(here, field=f"{here.field}.Service"))
            if target_service != service and not split.service_subset:
                self._lookup(SERVICE_SPLITTER, target_service)
                if self.entries.splitter(target_service) is not None:
                    inner = self._splitter(target_service, (*stack, service), here)
                    out.extend(
                        _Split(
                            share * child.share,
                            child.target,
                            merge_headers(split.request_headers, child.request_headers),
                            merge_headers(child.response_headers, split.response_headers),
                            child.origin,
                        )
                        for child in inner
                    )
                    continue
            target = self._resolve(Target(target_service, split.service_subset, self.dc), here)
            out.append(_Split(share, target, split.request_headers, split.response_headers, here))
        self.splitters[service] = tuple(out)
        return self.splitters[service]

    # ------------------------------------------------------------------ resolution
    def _resolve_level(
        self, target: Target, origin: Origin
    ) -> tuple[Target, Subset, ServiceResolver | None]:
        """Redirects and default subset applied; the subset checked to exist."""
        history: list[Target] = []
        while True:
            self._record_protocol(target.service)
            resolver = self._resolver(target.service)
            if target in history:
                cycle = " -> ".join(str(t) for t in (*history, target))
                raise self._fail(
                    Origin(SERVICE_RESOLVER, target.service, "Redirect"),
                    f"circular resolver redirect: {cycle}",
                )
            history.append(target)
            if resolver is not None and resolver.redirect is not None:
                redirect = resolver.redirect
                if redirect.service:
                    where = Origin(SERVICE_RESOLVER, resolver.name, "Redirect.Service")
                    self._require(redirect.service, where)
                moved = _rewrite(
                    target, redirect.service, redirect.service_subset, redirect.datacenter
                )
                if moved != target:
                    target, origin = moved, Origin(SERVICE_RESOLVER, resolver.name, "Redirect")
                    continue
            if not target.subset and resolver is not None and resolver.default_subset:
                target = replace(target, subset=resolver.default_subset)
                origin = Origin(SERVICE_RESOLVER, resolver.name, "DefaultSubset")
                continue
            break
        subset = Subset()
        if target.subset:
            found = resolver.subset(target.subset) if resolver is not None else None
            if found is None:
                raise self._fail(
                    origin,
                    f"service {target.service!r} does not have a subset named {target.subset!r}",
                )
            subset = found
        return target, subset, resolver

    def _resolve(self, wanted: Target, origin: Origin) -> Target:
        target, subset, resolver = self._resolve_level(wanted, origin)
        if target in self.clusters:
            return target
        failover = self._failover(target, resolver) if resolver is not None else ()
        lb = resolver.load_balancer if resolver is not None else None
        upstream = self._upstream(target.service)
        self.clusters[target] = TargetCluster(
            primary=Level(target, subset),
            failover=failover,
            protocol=self.protocol,
            connect_timeout=resolver.connect_timeout if resolver else None,
            request_timeout=resolver.request_timeout if resolver else None,
            load_balancer=_effective_lb(lb),
            upstream=upstream,
            upstream_from=(self.upstream_source or target.service) if upstream else "",
            resolver=resolver.name if resolver else "",
        )
        return target

    def _failover(self, target: Target, resolver: ServiceResolver) -> tuple[Level, ...]:
        """The resolver's failover for the target's subset (else ``*``), in order, each level
        through its own resolver's redirect and default subset; never the target itself."""
        spec = resolver.failover_for(target.subset)
        if spec is None:
            return ()
        key = target.subset if dict(resolver.failover).get(target.subset) else "*"
        here = Origin(SERVICE_RESOLVER, resolver.name, f"Failover[{key}]")
        if spec.datacenters:
            wanted = [
                _rewrite(target, spec.service, spec.service_subset, dc) for dc in spec.datacenters
            ]
        elif spec.targets:
            wanted = [
                _rewrite(target, t.service, t.service_subset, t.datacenter) for t in spec.targets
            ]
        else:
            wanted = [_rewrite(target, spec.service, spec.service_subset, "")]
        levels: dict[Target, Level] = {}
        for candidate in wanted:
            if candidate != target:
                level_target, subset, _ = self._resolve_level(candidate, here)
                if level_target != target:
                    levels.setdefault(level_target, Level(level_target, subset))
        return tuple(levels.values())

    def _upstream(self, service: str) -> UpstreamConfig | None:
        source = self.upstream_source or service
        self._lookup(SERVICE_DEFAULTS, source)
        defaults = self.entries.service_defaults(source)
        if defaults is None:
            return None
        if self.upstream_source is None:
            return defaults.upstream_defaults
        override = next((o for o in defaults.upstream_overrides if o.name == service), None)
        return _merge_upstream(defaults.upstream_defaults, override)


def _effective_lb(lb: LoadBalancer | None) -> LoadBalancer | None:
    """A LoadBalancer without a Policy changes nothing (Envoy's default balancing stays)."""
    return None if lb is None or not lb.policy else lb


def _rewrite(target: Target, service: str, subset: str, datacenter: str) -> Target:
    """Consul's rewriteTarget: a different service drops the subset; set fields override."""
    if service and service != target.service:
        target = Target(service, "", target.datacenter)
    if subset:
        target = replace(target, subset=subset)
    if datacenter:
        target = replace(target, datacenter=datacenter)
    return target


def _merge_upstream(
    base: UpstreamConfig | None, override: UpstreamConfig | None
) -> UpstreamConfig | None:
    if base is None or override is None:
        return override or base
    return UpstreamConfig(
        name=override.name,
        connect_timeout=override.connect_timeout or base.connect_timeout,
        limits=override.limits or base.limits,
        passive_health_check=override.passive_health_check or base.passive_health_check,
    )


def _legs(splits: tuple[_Split, ...]) -> tuple[Leg, ...]:
    """Exact shares → integer weights summing to FULL_WEIGHT (largest remainder first); splits to
    the same target with the same header changes are merged into one leg."""
    merged: dict[tuple[Target, HeaderModifiers, HeaderModifiers], _Split] = {}
    for split in splits:
        key = (split.target, split.request_headers, split.response_headers)
        if key in merged:
            merged[key] = replace(merged[key], share=merged[key].share + split.share)
        else:
            merged[key] = split
    parts = list(merged.values())
    exact = [p.share * FULL_WEIGHT for p in parts]
    weights = [int(x) for x in exact]
    by_remainder = sorted(range(len(parts)), key=lambda i: (-(exact[i] - weights[i]), i))
    for i in by_remainder[: FULL_WEIGHT - sum(weights)]:
        weights[i] += 1
    return tuple(
        Leg(p.target, w, p.request_headers, p.response_headers, p.origin)
        for p, w in zip(parts, weights, strict=True)
    )
