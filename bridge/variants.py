"""Which variant of the shared clusters and endpoints a node key gets, and the gRPC variant itself.

Envoys get the clusters and endpoint assignments the publisher builds (:mod:`bridge.resources`);
proxyless gRPC clients get their gRPC variant (:mod:`bridge.grpc_shaping`): the same services in
a form every gRPC client accepts. Each variant is one pair of shared ``ResourceSet`` objects, so
a resource is serialized once per variant, not per node; an endpoint assignment that is the same
in both variants (every IP-addressed service) is the very same ``Resource`` in both.

* **Node keys never mix variants**: :func:`variant_node_key` gives a gRPC node the key its
  grouping (id, cluster, metadata) gives it plus :data:`GRPC_KEY_SUFFIX`, so an Envoy and a gRPC
  client of one group get separate snapshots (and separate template renders). A node key is
  classified by the node that opens it; a stream of the other kind joining it anyway (an Envoy
  whose id ends in the suffix, or a cache without :func:`variant_node_key`) is served the key's
  variant, with a WARNING (:class:`MixedKeys`).
* **Built only when used**: the gRPC variant is built when the first gRPC node key opens, and
  then kept in step with every service change.
* **Config-entry chains** (:mod:`bridge.chains`) add clusters and assignments to the Envoy
  sets; the gRPC variant takes the same ones (a chain cluster's gRPC form replaces it per gRPC
  node, :mod:`bridge.chains.node_source`), except where one is just the plain service's own
  resource (a chain version identical to it, or the plain one restored): there the service's
  gRPC form stays.
* **Warnings per client kind**: where a gRPC client does something other than what Envoy does
  for a service (:func:`~bridge.grpc_shaping.grpc_warnings`), a WARNING is logged once per
  service and client kind (language and version), while it lasts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from xds_server.cache import NodeKeyFunc
from xds_server.resource import CLUSTER, ENDPOINT, Resource, ResourceSet, make_resource
from xds_server.tracking import BaseObserver, StreamInfo

from .client_kinds import ClientKind, Variant, classify
from .grpc_shaping import GrpcService, policy_warning, shape_for_grpc
from .resources import BuiltService
from .sources import SetChanges

log = logging.getLogger(__name__)

#: Appended to a gRPC node's key: Envoys and gRPC clients never share a snapshot.
GRPC_KEY_SUFFIX = "~grpc"


def variant_node_key(base: NodeKeyFunc) -> NodeKeyFunc:
    """``base``'s key for Envoys; for gRPC clients the same key plus :data:`GRPC_KEY_SUFFIX`."""

    def key(node: base_pb2.Node) -> str:
        grouped = base(node)
        return grouped + GRPC_KEY_SUFFIX if classify(node).is_grpc else grouped

    return key


class KindWarnings:
    """Logs each warning once per (service, client kind) while it lasts."""

    def __init__(self, emit: Callable[[str], None] | None = None) -> None:
        self._emit = emit or (lambda text: log.warning("%s", text))
        self._logged: dict[tuple[str, str], frozenset[str]] = {}

    def update(self, service: str, kind: ClientKind, warnings: Sequence[str]) -> None:
        key = (service, kind.label)
        current = frozenset(warnings)
        for text in sorted(current - self._logged.get(key, frozenset())):
            self._emit(f"{kind.label} clients: {text}")
        if current:
            self._logged[key] = current
        else:
            self._logged.pop(key, None)

    def forget(self, service: str) -> None:
        for key in [key for key in self._logged if key[0] == service]:
            del self._logged[key]


@dataclass(slots=True)
class _Service:
    built: BuiltService
    origin: float | None
    leaving: bool  # its endpoints emptied before it goes: no warnings about it
    shaped: GrpcService | None = None
    clusters: frozenset[str] = frozenset()  # gRPC resource names it contributes
    endpoints: frozenset[str] = frozenset()


class GrpcVariant:
    """The gRPC variant of the shared CDS/EDS sets, and the client kind of every open node key.

    The publisher reports every service it builds (:meth:`set_service`) or removes
    (:meth:`remove_service`), then calls :meth:`commit` once per rebuild.
    """

    def __init__(self, warnings: KindWarnings | None = None) -> None:
        self.clusters = ResourceSet(CLUSTER)
        self.endpoints = ResourceSet(ENDPOINT)
        self.warnings = warnings or KindWarnings()
        self._services: dict[str, _Service] = {}
        self._dirty: set[str] = set()
        self._gone: dict[str, _Service] = {}  # removed since the last commit
        self._kinds: dict[str, ClientKind] = {}  # open node key -> its client kind
        self._active = False  # built once a gRPC node key opened
        self._owner: dict[str, str] = {}  # a service's plain cluster name -> the service
        #: Per type: the config-entry chains' resources, and the names changed since a commit.
        self._chains: dict[str, dict[str, Resource]] = {CLUSTER: {}, ENDPOINT: {}}
        self._chains_touched: dict[str, set[str]] = {CLUSTER: set(), ENDPOINT: set()}

    # ------------------------------------------------------------ node keys
    def key_opened(self, key: str, node: base_pb2.Node, envoy_endpoints: ResourceSet) -> Variant:
        """Classify ``key`` by ``node``; the first gRPC key builds the variant. Returns the
        key's variant."""
        kind = classify(node)
        first_of_kind = kind.is_grpc and kind.label not in self._connected_labels()
        self._kinds[key] = kind
        if kind.is_grpc and not self._active:
            self._active = True
            self._dirty.update(self._services)
            for type_url, layer in self._chains.items():
                self._chains_touched[type_url].update(layer)
            self.commit(envoy_endpoints)
        elif first_of_kind:
            for service, served in sorted(self._services.items()):
                self._warn(service, served, [kind])
        return kind.variant

    def key_released(self, key: str) -> None:
        self._kinds.pop(key, None)

    def variant_of(self, key: str) -> Variant:
        """The variant ``key`` is served (Envoy's for a key not open)."""
        return self.known_variant(key) or Variant.ENVOY

    def known_variant(self, key: str) -> Variant | None:
        """The variant of an open ``key`` (None: not open, or its first stream is opening)."""
        kind = self._kinds.get(key)
        return kind.variant if kind is not None else None

    def is_grpc(self, key: str) -> bool:
        return self.variant_of(key) is Variant.GRPC

    # ------------------------------------------------------------ services
    def set_service(
        self, service: str, built: BuiltService, origin: float | None, leaving: bool = False
    ) -> None:
        self._gone.pop(service, None)
        previous = self._services.get(service)
        served = _Service(built, origin, leaving)
        if previous is not None:
            served.clusters, served.endpoints = previous.clusters, previous.endpoints
        self._services[service] = served
        self._owner[str(built.cluster.name)] = service
        self._dirty.add(service)

    def remove_service(self, service: str) -> None:
        served = self._services.pop(service, None)
        if served is not None:
            self._gone[service] = served
            self._owner.pop(str(served.built.cluster.name), None)
        self._dirty.add(service)

    def commit(self, envoy_endpoints: ResourceSet, chains: SetChanges | None = None) -> None:
        """Apply the changes reported since the last commit and what the config-entry
        ``chains`` change (nothing is built while no gRPC node key was ever opened).
        ``envoy_endpoints`` lends its resources where both variants carry the same assignment,
        so it is serialized once."""
        if chains is not None:
            self._take_chains(chains)
        if not self._active:  # no gRPC node key yet: nothing built, nothing warned
            self._dirty.clear()
            self._gone.clear()
            for touched in self._chains_touched.values():
                touched.clear()
            return
        clusters: list[Resource] = []
        endpoints: list[Resource] = []
        remove_clusters: set[str] = set()
        remove_endpoints: set[str] = set()
        kinds = self._connected_kinds()
        for service in sorted(self._dirty):
            served = self._services.get(service)
            if served is None:
                gone = self._gone.get(service)
                if gone is not None:
                    remove_clusters |= gone.clusters
                    remove_endpoints |= gone.endpoints
                self.warnings.forget(service)
                continue
            try:
                shaped = shape_for_grpc(served.built)
            except Exception:  # a bug: the service's gRPC resources stay as they were
                log.exception("shaping service %r for gRPC clients failed", service)
                continue
            served.shaped = shaped
            new_clusters = [make_resource(c, served.origin) for c in shaped.clusters]
            new_endpoints = [
                _shared(a, envoy_endpoints) or make_resource(a, served.origin)
                for a in shaped.load_assignments
            ]
            cluster_names = frozenset(r.name for r in new_clusters)
            endpoint_names = frozenset(r.name for r in new_endpoints)
            remove_clusters |= served.clusters - cluster_names
            remove_endpoints |= served.endpoints - endpoint_names
            served.clusters, served.endpoints = cluster_names, endpoint_names
            clusters.extend(new_clusters)
            endpoints.extend(new_endpoints)
            self._warn(service, served, kinds)
        # A chain's resource wins over the service's own of the same name, as for Envoys.
        chain_clusters, chain_endpoints = self._chains[CLUSTER], self._chains[ENDPOINT]
        clusters = [r for r in clusters if r.name not in chain_clusters]
        endpoints = [r for r in endpoints if r.name not in chain_endpoints]
        remove_clusters -= chain_clusters.keys()
        remove_endpoints -= chain_endpoints.keys()
        for name in self._chains_touched[CLUSTER]:
            self._apply_chain(name, CLUSTER, clusters, remove_clusters)
        for name in self._chains_touched[ENDPOINT]:
            self._apply_chain(name, ENDPOINT, endpoints, remove_endpoints)
        self.clusters = self.clusters.with_changes(clusters, remove_clusters)  # removals first
        self.endpoints = self.endpoints.with_changes(endpoints, remove_endpoints)
        for touched in self._chains_touched.values():
            touched.clear()
        self._dirty.clear()
        self._gone.clear()

    # ------------------------------------------------------------ config-entry chains
    def _take_chains(self, chains: SetChanges) -> None:
        for type_url, upserts, removals in (
            (CLUSTER, chains.clusters, chains.remove_clusters),
            (ENDPOINT, chains.endpoints, chains.remove_endpoints),
        ):
            layer = self._chains[type_url]
            for resource in upserts:
                owner = self._owner.get(resource.name)
                served = self._services.get(owner) if owner is not None else None
                if served is not None and resource.message == _plain(served.built, type_url):
                    if layer.pop(resource.name, None) is not None:
                        self._dirty.add(str(owner))  # its own gRPC form comes back
                    continue
                layer[resource.name] = resource
                self._chains_touched[type_url].add(resource.name)
            for name in removals:
                if layer.pop(name, None) is None:
                    continue
                owner = self._owner.get(name)
                if owner is not None and owner in self._services:
                    self._dirty.add(owner)
                else:
                    self._chains_touched[type_url].add(name)

    def _apply_chain(
        self, name: str, type_url: str, upserts: list[Resource], removals: set[str]
    ) -> None:
        """A chain's ``name`` changed: upsert it, or remove it unless a service holds it."""
        layer = self._chains[type_url]
        if name in layer:
            upserts.append(layer[name])
            return
        owner = self._services.get(self._owner.get(name, ""))
        if owner is None:
            removals.add(name)
            return
        held = owner.clusters if type_url == CLUSTER else owner.endpoints
        if name not in held:
            removals.add(name)

    # ------------------------------------------------------------ internals
    def _connected_kinds(self) -> list[ClientKind]:
        by_label = {kind.label: kind for kind in self._kinds.values() if kind.is_grpc}
        return [by_label[label] for label in sorted(by_label)]

    def _connected_labels(self) -> set[str]:
        return {kind.label for kind in self._kinds.values() if kind.is_grpc}

    def _warn(self, service: str, served: _Service, kinds: Sequence[ClientKind]) -> None:
        shaped = served.shaped
        if served.leaving or shaped is None:  # leaving, or its shaping failed (logged)
            self.warnings.forget(service)
            return
        for kind in kinds:
            texts = list(shaped.warnings)
            policy = policy_warning(served.built, kind)
            if policy is not None:
                texts.append(policy)
            self.warnings.update(service, kind, texts)


def _plain(built: BuiltService, type_url: str) -> object:
    """The service's own Envoy resource of ``type_url`` (a cluster, or its assignment)."""
    return built.cluster if type_url == CLUSTER else built.load_assignment


def _shared(
    assignment: endpoint_pb2.ClusterLoadAssignment, envoy_endpoints: ResourceSet
) -> Resource | None:
    """The Envoy variant's resource for the very same assignment message, if it has it."""
    found: Resource | None = envoy_endpoints.get(str(assignment.cluster_name))
    if found is not None and found.message is assignment:
        return found
    return None


class MixedKeys(BaseObserver):
    """Warns (once per node key) when a stream of one kind joins a node key of the other.
    ``variant_of(key)`` is None for a key not open yet (its first stream decides its variant)."""

    def __init__(self, variant_of: Callable[[str], Variant | None]) -> None:
        self._variant_of = variant_of
        self._warned: set[str] = set()

    def stream_opened(self, stream: StreamInfo) -> None:
        kind = classify(stream.node)
        served = self._variant_of(stream.node_key)
        if served is None or kind.variant is served or stream.node_key in self._warned:
            return
        self._warned.add(stream.node_key)
        log.warning(
            "node %r (%s) shares node key %r with %s nodes and is served their %s variant of "
            "the clusters and endpoints; give it its own key",
            stream.node_id,
            kind.label,
            stream.node_key,
            served,
            served,
        )

    def stream_closed(self, stream: StreamInfo) -> None:
        self._warned.discard(stream.node_key)  # a mixed stream later is warned about again


__all__ = [
    "GRPC_KEY_SUFFIX",
    "GrpcVariant",
    "KindWarnings",
    "MixedKeys",
    "variant_node_key",
]
