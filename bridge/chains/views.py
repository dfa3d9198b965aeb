"""What templates and ``/debug/traffic`` see of the chains (pure functions, JSON out).

Templates get, per service with a non-default chain, its routes as Envoy route JSON (field names
as in Envoy YAML, ready for ``{{ route | tojson }}``) for Envoys and for proxyless gRPC clients,
and the clusters they use. The debug view shows, per service, the chain served (routes, legs,
clusters with their failover levels), where it comes from and what keeps the current entries
from compiling.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format

from ..resources import BuildSettings
from ..traffic import Chain, ChainRoute, EntryKey, EntryProblem, TargetCluster, build_routes
from ..traffic import target_cluster_name as cluster_of
from .table import ChainTable, ServiceChain


@dataclass(frozen=True, slots=True)
class RouteView:
    """One service's compiled routes as templates use them (canonical JSON text, so that views
    compare, hash and key render caches by content)."""

    service: str
    protocol: str
    routes_json: str  # Envoy routes, first match first, catch-all last
    grpc_routes_json: str  # the same for proxyless gRPC clients
    clusters: tuple[str, ...]  # every cluster the routes (either variant) use
    chain_json: str  # a summary for custom template sets (see chain_summary)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def route_view(chain: Chain, grpc: Chain, settings: BuildSettings) -> RouteView:
    """The view of ``chain`` (``grpc``: its gRPC reduction, :func:`bridge.traffic.grpc_chain`)."""
    routes = [_as_json(r) for r in build_routes(chain, settings)]
    grpc_routes = [_as_json(r) for r in build_routes(grpc, settings, grpc=True)]
    clusters = {
        cluster_of(c.target, chain.datacenter, settings) for c in (*chain.clusters, *grpc.clusters)
    }
    return RouteView(
        service=chain.service,
        protocol=chain.protocol,
        routes_json=_dumps(routes),
        grpc_routes_json=_dumps(grpc_routes),
        clusters=tuple(sorted(clusters)),
        chain_json=_dumps(chain_summary(chain, settings)),
    )


def _as_json(message: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(message, preserving_proto_field_name=True))


# ------------------------------------------------------------------ summaries
def chain_summary(chain: Chain, settings: BuildSettings) -> dict[str, Any]:
    """The chain in a few words: protocol, routes (match → cluster weights in percent) and the
    clusters with their failover levels."""
    return {
        "service": chain.service,
        "protocol": chain.protocol,
        "default": chain.default,
        "routes": [_route_summary(chain, r, settings) for r in chain.routes],
        "clusters": [_cluster_summary(chain, c, settings) for c in chain.clusters],
    }


def _route_summary(chain: Chain, route: ChainRoute, settings: BuildSettings) -> dict[str, Any]:
    legs = {
        cluster_of(leg.target, chain.datacenter, settings): leg.weight / 100
        for leg in route.legs
        if leg.weight > 0
    }
    match = "catch-all" if route.match is None else _match_text(route)
    origin = route.origin
    return {
        "match": match,
        "from": f"{origin.kind} {origin.name!r} {origin.field}" if origin else "",
        "split": route.split,
        "clusters": legs,
    }


def _match_text(route: ChainRoute) -> str:
    match = route.match
    assert match is not None
    parts = []
    if match.path_exact:
        parts.append(f"path == {match.path_exact}")
    elif match.path_prefix:
        parts.append(f"path prefix {match.path_prefix}")
    elif match.path_regex:
        parts.append(f"path matches {match.path_regex}")
    parts += [f"header {h.name}" for h in match.headers]
    parts += [f"query {q.name}" for q in match.query_params]
    if match.methods:
        parts.append("methods " + "|".join(match.methods))
    return ", ".join(parts) or "any"


def _cluster_summary(
    chain: Chain, cluster: TargetCluster, settings: BuildSettings
) -> dict[str, Any]:
    return {
        "name": cluster_of(cluster.target, chain.datacenter, settings),
        "target": str(cluster.target),
        "failover": [str(level.target) for level in cluster.failover],
        "resolver": cluster.resolver,
        "load_balancer": cluster.load_balancer.policy if cluster.load_balancer else "",
    }


def _problems(problems: tuple[EntryProblem, ...]) -> list[dict[str, str]]:
    return [
        {"kind": p.kind, "name": p.name, "field": p.field, "message": p.message, "text": str(p)}
        for p in problems
    ]


def debug_view(
    table: ChainTable,
    settings: BuildSettings,
    index: int,
    grpc_warnings: Mapping[str, tuple[EntryProblem, ...]],
) -> dict[str, Any]:
    """``/debug/traffic``: the entries read, the quarantined ones, and every service's chain."""
    entries = table.entries
    kinds: dict[str, list[str]] = {}
    for kind, name in sorted({*entries.entries, *entries.quarantined}):
        kinds.setdefault(kind, []).append(name)
    return {
        "datacenter": table.datacenter,
        "index": index,
        "entries": kinds,
        "quarantined": _problems(entries.problems),
        "services": {
            service: _service_view(
                served, settings, grpc_warnings.get(service, ()), present=entries.entries
            )
            for service, served in sorted(table.chains.items())
        },
    }


def _service_view(
    served: ServiceChain,
    settings: BuildSettings,
    grpc_warnings: tuple[EntryProblem, ...],
    present: Mapping[EntryKey, object],
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "state": served.state.value,
        "problems": _problems(served.problems),
        "left_out": [f"{kind} {name!r}" for kind, name in served.left_out],
        "grpc_dropped": _problems(grpc_warnings),
    }
    if served.chain is not None:
        view["chain"] = chain_summary(served.chain, settings)
        used = (key for key in served.chain.entries if key in present)
        view["entries"] = [f"{kind} {name!r}" for kind, name in used]
    return view
