"""Target clusters of the served chains → the Envoy clusters and assignments added to the shared
CDS/EDS sets, rebuilt only where something changed.

A target cluster is rebuilt when its definition changed (a recompiled chain) or when instances
of a service it takes endpoints from changed. A target that is the service itself in the local
datacenter has the plain cluster's name: its chain version replaces the plain one (they are
byte-identical unless an entry shapes it, e.g. outlier detection from service-defaults), and
when no chain needs it any more the plain cluster is restored.

Proxyless gRPC clients cannot use every load-balancing setting (:mod:`bridge.traffic.grpc`);
where the gRPC variant of a target cluster differs, it is kept apart in :attr:`grpc_variants`,
and gRPC nodes get it instead of the shared one (:mod:`bridge.chains.node_source`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from xds_server.resource import Resource, make_resource

from ..catalog import Catalog
from ..model import ServiceView
from ..resources import BuildSettings, build_service
from ..traffic import Target, TargetCluster, build_target_cluster, target_cluster_name

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ClusterChanges:
    """What to change in the shared sets (removals first, then upserts)."""

    clusters: list[Resource] = field(default_factory=list)
    endpoints: list[Resource] = field(default_factory=list)
    remove_clusters: list[str] = field(default_factory=list)
    remove_endpoints: list[str] = field(default_factory=list)
    names_changed: bool = False

    def __bool__(self) -> bool:
        return bool(self.clusters or self.endpoints or self.remove_clusters)


@dataclass(frozen=True, slots=True)
class _Built:
    definition: TargetCluster
    grpc: TargetCluster
    services: frozenset[str]  # whose instances it takes endpoints from


def services_of(cluster: TargetCluster) -> frozenset[str]:
    return frozenset(level.target.service for level in (cluster.primary, *cluster.failover))


class ChainClusters:
    """The built target clusters (see the module docstring)."""

    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings
        self._built: dict[str, _Built] = {}
        self._warned: dict[str, frozenset[str]] = {}
        #: Cluster name → the gRPC variant, where it differs from the shared cluster.
        self.grpc_variants: dict[str, Resource] = {}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._built)

    def update(
        self,
        targets: Mapping[Target, TargetCluster],
        grpc_targets: Mapping[Target, TargetCluster],
        datacenter: str,
        catalog: Catalog,
        changed: Mapping[str, float],
        origin: float,
    ) -> ClusterChanges:
        """Bring the built clusters in line with ``targets`` (their gRPC variants in
        ``grpc_targets``), given the services whose instances changed (``changed``: name →
        when). ``origin`` dates changes that come from the entries."""
        out = ClusterChanges()
        wanted: dict[str, tuple[Target, TargetCluster]] = {
            target_cluster_name(t, datacenter, self.settings): (t, c) for t, c in targets.items()
        }
        for name in sorted(set(self._built) - set(wanted)):
            self._drop(name, self._built.pop(name).definition.target, datacenter, catalog, out)
        for name, (target, definition) in sorted(wanted.items()):
            grpc = grpc_targets.get(target, definition)
            services = services_of(definition)
            before = self._built.get(name)
            touched = [changed[s] for s in services if s in changed]
            same = before is not None and (before.definition, before.grpc) == (definition, grpc)
            if same and not touched:
                continue
            when = min(touched) if touched else origin
            try:
                self._build(name, definition, grpc, catalog, datacenter, when, out)
            except Exception:  # a bug: keep what was served; not recorded, so retried
                log.exception("building cluster %s failed; it is served as it was", name)
                continue
            out.names_changed |= before is None
            self._built[name] = _Built(definition, grpc, services)
        return out

    def _build(
        self,
        name: str,
        definition: TargetCluster,
        grpc: TargetCluster,
        catalog: Catalog,
        datacenter: str,
        when: float,
        out: ClusterChanges,
    ) -> None:
        views = _views(catalog, services_of(definition))
        built = build_target_cluster(definition, datacenter, views, self.settings)
        variant = None
        if grpc != definition:
            variant = build_target_cluster(grpc, datacenter, views, self.settings).cluster
        self._warn(name, built.warnings)
        out.clusters.append(make_resource(built.cluster, when))
        if built.load_assignment is not None:
            out.endpoints.append(make_resource(built.load_assignment, when))
        else:  # a DNS cluster: its endpoints are inline
            out.remove_endpoints.append(name)
        if variant is not None:
            self.grpc_variants[name] = make_resource(variant, when)
        else:
            self.grpc_variants.pop(name, None)

    def _drop(
        self, name: str, target: Target, datacenter: str, catalog: Catalog, out: ClusterChanges
    ) -> None:
        """No chain needs ``name`` any more: the plain cluster again, or nothing."""
        self.grpc_variants.pop(name, None)
        self._warned.pop(name, None)
        view = catalog.view(target.service)
        if not target.subset and target.datacenter == datacenter and view is not None:
            plain = build_service(view, self.settings)
            out.clusters.append(make_resource(plain.cluster))
            if plain.load_assignment is not None:
                out.endpoints.append(make_resource(plain.load_assignment))
            return
        out.remove_clusters.append(name)
        out.remove_endpoints.append(name)
        out.names_changed = True

    def _warn(self, name: str, warnings: Iterable[str]) -> None:
        """Each warning of a target cluster once while it lasts."""
        current = frozenset(warnings)
        for warning in sorted(current - self._warned.get(name, frozenset())):
            log.warning("cluster %s: %s", name, warning)
        self._warned[name] = current


def _views(catalog: Catalog, services: Iterable[str]) -> dict[str, ServiceView]:
    return {s: v for s in services if (v := catalog.view(s)) is not None}
