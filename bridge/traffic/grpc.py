"""The same chain for proxyless gRPC clients: what gRPC cannot do is dropped, with a warning.

gRPC's xDS client implements weighted clusters, path and header matching (gRFC A28), retries on
gRPC status codes (A44), timeouts through ``max_stream_duration`` (A31), ring-hash balancing on
headers (A42), priorities in endpoint assignments and outlier detection by success rate or failure
percentage (A50). It ignores or refuses the rest, so for a gRPC client:

* a route with query parameter matches never matches (A28): left out;
* ``Methods``: gRPC calls are POSTs, so a route that allows POST loses the method match and one
  that does not is left out;
* ``CaseInsensitive``, ``PrefixRewrite``, ``IdleTimeout`` and all request/response header changes
  are dropped;
* ``RetryOn`` keeps only cancelled, deadline-exceeded, internal, resource-exhausted and
  unavailable; ``RetryOnConnectFailure`` and ``RetryOnStatusCodes`` are dropped; gRPC caps an RPC
  at 5 attempts;
* load balancing: maglev becomes ring_hash, random and least_request become round_robin; only
  header hash policies are kept;
* ``PassiveHealthCheck`` MaxFailures (consecutive 5xx) has no effect on gRPC clients.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from envoy.config.route.v3 import route_components_pb2 as rc

from bridge.model import ServiceView
from bridge.resources import BuildSettings, BuiltService

from .chain_model import Chain, ChainRoute, Leg, Origin, Target, TargetCluster
from .clusters import build_chain_clusters
from .entries import (
    NO_HEADERS,
    SERVICE_DEFAULTS,
    SERVICE_RESOLVER,
    HttpMatch,
    LoadBalancer,
    RouteDestination,
)
from .problems import EntryProblem
from .routes import build_routes

GRPC_RETRY_ON = frozenset(
    {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}
)
GRPC_MAX_RETRIES = 4  # gRPC allows at most 5 attempts per RPC (gRFC A6/A44)
_LB_FOR_GRPC = {"maglev": "ring_hash", "random": "round_robin", "least_request": "round_robin"}


def grpc_resources(
    chain: Chain,
    catalog: Mapping[str, ServiceView],
    settings: BuildSettings,
    *,
    default_timeout: float | None = None,
) -> tuple[list[rc.Route], list[BuiltService], tuple[EntryProblem, ...]]:
    """Routes and clusters of ``chain`` for proxyless gRPC clients, and what was dropped."""
    reduced, warnings = grpc_chain(chain)
    routes = build_routes(reduced, settings, default_timeout=default_timeout, grpc=True)
    return routes, build_chain_clusters(reduced, catalog, settings), warnings


def grpc_chain(chain: Chain) -> tuple[Chain, tuple[EntryProblem, ...]]:
    """``chain`` without what gRPC clients cannot do; one warning per dropped setting."""
    warnings: list[EntryProblem] = []
    clusters = {c.target: _cluster(c, warnings) for c in chain.clusters}
    routes = []
    for route in chain.routes:
        kept = _route(route, warnings)
        if kept is not None:
            routes.append(kept)
    used = {leg.target for route in routes for leg in route.legs}
    reduced = replace(
        chain,
        routes=tuple(routes),
        clusters=tuple(c for t, c in clusters.items() if t in used),
    )
    return reduced, tuple(dict.fromkeys(warnings))


# ------------------------------------------------------------------ routes
def _route(route: ChainRoute, warnings: list[EntryProblem]) -> ChainRoute | None:
    origin = route.origin
    match = route.match
    if match is not None and origin is not None:
        match = _match(match, origin, warnings)
        if match is None:
            return None
    dest = route.destination
    if dest is not None and origin is not None:
        dest = _destination(dest, replace(origin, field=f"{origin.field}.Destination"), warnings)
    legs = _legs(route.legs, warnings)
    return replace(route, match=match, destination=dest, legs=legs)


def _match(match: HttpMatch, origin: Origin, warnings: list[EntryProblem]) -> HttpMatch | None:
    where = replace(origin, field=f"{origin.field}.Match.HTTP")
    if match.query_params:
        warnings.append(
            where.warn("QueryParam", "gRPC never matches query parameters; route left out")
        )
        return None
    if match.methods and "POST" not in match.methods:
        warnings.append(
            where.warn("Methods", "gRPC calls are POST requests; route left out for gRPC")
        )
        return None
    if match.case_insensitive:
        warnings.append(
            where.warn("CaseInsensitive", "gRPC matches paths case-sensitively; dropped")
        )
    return replace(match, methods=(), case_insensitive=False)


def _destination(
    dest: RouteDestination, where: Origin, warnings: list[EntryProblem]
) -> RouteDestination:
    dropped = {
        "PrefixRewrite": bool(dest.prefix_rewrite),
        "IdleTimeout": bool(dest.idle_timeout),
        "RequestHeaders": bool(dest.request_headers),
        "ResponseHeaders": bool(dest.response_headers),
        "RetryOnConnectFailure": dest.retry_on_connect_failure,
        "RetryOnStatusCodes": bool(dest.retry_on_status_codes),
    }
    for field, present in dropped.items():
        if present:
            warnings.append(where.warn(field, "not supported by gRPC clients; dropped"))
    retry_on = tuple(r for r in dest.retry_on if r in GRPC_RETRY_ON)
    for condition in dest.retry_on:
        if condition not in GRPC_RETRY_ON:
            warnings.append(
                where.warn(
                    "RetryOn", f"gRPC retries only on gRPC status codes; {condition!r} dropped"
                )
            )
    num_retries = dest.num_retries
    if num_retries > GRPC_MAX_RETRIES and retry_on:
        warnings.append(
            where.warn("NumRetries", f"gRPC caps retries at {GRPC_MAX_RETRIES} per RPC")
        )
    return replace(
        dest,
        prefix_rewrite="",
        idle_timeout=None,
        request_headers=NO_HEADERS,
        response_headers=NO_HEADERS,
        retry_on_connect_failure=False,
        retry_on_status_codes=(),
        retry_on=retry_on,
        num_retries=num_retries if retry_on else 0,
    )


def _legs(legs: tuple[Leg, ...], warnings: list[EntryProblem]) -> tuple[Leg, ...]:
    """Header changes dropped; legs to the same target then merged."""
    merged: dict[Target, Leg] = {}
    for leg in legs:
        for field, mods in (
            ("RequestHeaders", leg.request_headers),
            ("ResponseHeaders", leg.response_headers),
        ):
            if mods and leg.origin is not None:
                warnings.append(leg.origin.warn(field, "not supported by gRPC clients; dropped"))
        plain = replace(leg, request_headers=NO_HEADERS, response_headers=NO_HEADERS)
        if leg.target in merged:
            plain = replace(plain, weight=plain.weight + merged[leg.target].weight)
        merged[leg.target] = plain
    return tuple(merged.values())


# ------------------------------------------------------------------ clusters
def _cluster(cluster: TargetCluster, warnings: list[EntryProblem]) -> TargetCluster:
    check = cluster.upstream.passive_health_check if cluster.upstream else None
    if check is not None and check.max_failures:
        warnings.append(
            EntryProblem(
                SERVICE_DEFAULTS,
                cluster.upstream_from,
                "UpstreamConfig.PassiveHealthCheck.MaxFailures",
                "gRPC clients eject on success rate and failure percentage only (gRFC A50); "
                "consecutive failures apply to Envoy only",
            )
        )
    lb = cluster.load_balancer
    if lb is None:
        return cluster
    return replace(cluster, load_balancer=_load_balancer(lb, cluster.resolver, warnings))


def _load_balancer(lb: LoadBalancer, resolver: str, warnings: list[EntryProblem]) -> LoadBalancer:
    where = Origin(SERVICE_RESOLVER, resolver, "LoadBalancer")
    policy = _LB_FOR_GRPC.get(lb.policy, lb.policy)
    if policy != lb.policy:
        warnings.append(
            where.warn("Policy", f"gRPC clients do not implement {lb.policy}; {policy} used")
        )
    kept = []
    for i, hash_policy in enumerate(lb.hash_policies):
        if hash_policy.field == "header" and not hash_policy.source_ip:
            kept.append(hash_policy)
        else:
            what = "SourceIP" if hash_policy.source_ip else hash_policy.field
            warnings.append(
                where.warn(f"HashPolicies[{i}]", f"gRPC hashes on headers only; {what} dropped")
            )
    least = policy == "least_request"
    return replace(
        lb,
        policy=policy,
        hash_policies=tuple(kept) if policy == "ring_hash" else (),
        choice_count=lb.choice_count if least else 0,
        minimum_ring_size=lb.minimum_ring_size if policy == "ring_hash" else 0,
        maximum_ring_size=lb.maximum_ring_size if policy == "ring_hash" else 0,
    )
