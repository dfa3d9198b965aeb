"""Catalog → resources → snapshots: the one place where the bridge changes what Envoys get.

Clusters and endpoints are the same for every node of one kind: Envoys share two
:class:`~xds_server.resource.ResourceSet` objects, rebuilt per *changed service* only, proxyless
gRPC clients the two of their variant (:class:`~bridge.variants.GrpcVariant`), and every node
key's snapshot points at its variant's pair. Listeners and routes are per node key and come from
a :class:`NodeConfigSource` (the templates; none means the nodes get no listeners/routes).

A service that loses its last instance is first served with no endpoints, in every variant; its
cluster goes once the clients took that (:mod:`bridge.retirement`).

Bursts of Consul updates are coalesced: the first change after a quiet period is published at
once (no added latency), changes arriving within ``debounce`` seconds of a publish wait for the
end of that window and go out together.

Nothing reaches a node without passing the validation gate (:mod:`.gate`): a service whose
resources break a rule is quarantined alone (its last good version stays served, or it is left
out) and the templates see the *served* catalog (:attr:`Publisher.served`), so no route points
at a cluster that is not served; what the templates render for a node key is checked too (a
virtual host claiming a domain another holds is dropped; an invalid resource makes the key keep
its last good listeners and routes). Every problem is filed in the :class:`Quarantine`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from envoy.config.core.v3 import base_pb2

from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    Resource,
    ResourceSet,
    make_resource,
)

from .catalog import Catalog, ServiceUpdate
from .config_entries import ConfigEntriesUpdate
from .gate import check_service
from .node_keys import NodeKeys, RefusedRender
from .publish_steps import gate_chain, no_instance, serve_view
from .quarantine import Quarantine
from .resources import BuildSettings, build_service, cluster_name
from .retirement import DeletionGate, Retirements
from .retry import Retry, log_failure, some
from .rollback import SHARED_TYPES, Rollbacks, chain_scope, nack_problem
from .sources import NodeConfigSource, TrafficSource
from .variant_safety import GatedChanges, keep_rollbacks, roll_back_grpc
from .variants import GrpcVariant

log = logging.getLogger(__name__)


class Publisher:
    """Keeps the snapshot cache in step with the catalog.

    It is the cache's key observer (a node key's first stream makes its snapshot; the last one
    going drops it). A publish that fails (an exception building a service or a node key's
    snapshot) is logged at ERROR and retried with backoff; until a retry succeeds,
    :attr:`problem` says what is stale (the bridge reports not-ready with it).
    """

    def __init__(
        self,
        cache: SnapshotCache,
        settings: BuildSettings | None = None,
        node_config: NodeConfigSource | None = None,
        debounce: float = 0.01,
        on_rebuilt: Callable[[Publisher, float], None] | None = None,
        traffic: TrafficSource | None = None,
        quarantine: Quarantine | None = None,
        set_of: Callable[[base_pb2.Node], str] = lambda node: "",
        deletion_gate: DeletionGate | None = None,
    ) -> None:
        """``on_rebuilt(publisher, seconds)`` is called after each rebuild (for metrics);
        ``traffic`` adds the clusters of Consul's config entries (None: no entries used);
        ``quarantine`` receives what the gate keeps from the nodes; ``set_of(node)`` names the
        template set a node uses (refused renders are counted by it); ``deletion_gate`` says
        when a service without instances may lose its cluster (None: at once)."""
        self.cache = cache
        self.traffic = traffic
        self.settings = settings or BuildSettings()
        self.node_config = node_config
        self.debounce = debounce
        self.on_rebuilt = on_rebuilt
        self.quarantine = quarantine if quarantine is not None else Quarantine()
        self.catalog = Catalog()
        #: The services whose resources are served, as last served (what templates see).
        self.served = Catalog()
        self.keys = NodeKeys(self.quarantine, set_of)
        self.rollbacks = Rollbacks(self.quarantine)
        self.ready = False
        self._clusters = ResourceSet(CLUSTER)
        self._endpoints = ResourceSet(ENDPOINT)
        self.grpc = GrpcVariant()
        self.retirements = Retirements(deletion_gate, self._retired)
        self._warned: dict[str, frozenset[str]] = {}  # per service: the warnings logged
        self._pending: list[ServiceUpdate] = []
        self._pending_entries: ConfigEntriesUpdate | None = None
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = float("-inf")
        self._retry = Retry(self._retry_failed)
        self._unbuilt: dict[str, float] = {}  # services whose build failed -> origin time
        self._unpublished: set[str] = set()  # open keys whose snapshot failed
        cache.add_key_observer(self)

    # ------------------------------------------------------------ inputs
    def set_datacenters(self, datacenters: Sequence[str]) -> None:
        self.served.set_datacenters(datacenters)
        changed = self.catalog.set_datacenters(datacenters)
        if changed:
            self._rebuild({name: time.monotonic() for name in changed})

    def submit(self, updates: Iterable[ServiceUpdate]) -> None:
        """Queue watcher updates; they are published now or at the end of the debounce window."""
        self._pending.extend(updates)
        self._schedule()

    def submit_entries(self, update: ConfigEntriesUpdate) -> None:
        """Queue a config entries table (the newest wins); published like catalog updates."""
        self._pending_entries = update
        self._schedule()

    def _schedule(self) -> None:
        if self._flush_handle is not None:
            return
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self.debounce - loop.time()
        if wait <= 0:
            self._flush_handle = loop.call_soon(self.flush)
        else:
            self._flush_handle = loop.call_later(wait, self.flush)

    def flush(self) -> None:
        """Publish everything queued (also called directly by tests and at startup)."""
        self._flush_handle = None
        try:
            self._last_flush = asyncio.get_running_loop().time()
        except RuntimeError:
            self._last_flush = time.monotonic()
        pending, self._pending = self._pending, []
        changed = self.catalog.apply(pending)
        entries, self._pending_entries = self._pending_entries, None
        entries_changed = False
        if entries is not None and self.traffic is not None:
            entries_changed = self.traffic.set_entries(entries)
        if changed or entries_changed:
            self._rebuild(changed)

    def mark_ready(self) -> None:
        """The first full read of Consul is done: start serving (never before)."""
        if self.ready:
            return
        self.flush()
        self.ready = True
        self._publish_all(services_changed=True)

    def republish(self) -> None:
        """Re-render and re-publish every node key (e.g. after a template change)."""
        if self.ready:
            self._publish_all(services_changed=True)

    @property
    def problem(self) -> str | None:
        """What could not be published and is being retried (None: everything is current)."""
        parts = []
        if self._unbuilt:
            parts.append(f"services {some(self._unbuilt)}")
        if self._unpublished:
            parts.append(f"node keys {some(self._unpublished)}")
        if not parts:
            return None
        return f"publishing failed for {' and '.join(parts)}; retrying"

    # ------------------------------------------------------------ node keys (KeyObserver)
    def key_opened(self, key: str, node: base_pb2.Node) -> None:
        self.grpc.key_opened(key, node, self._endpoints)
        if self.ready:
            self._publish_key(key, node, services_changed=True)

    def key_released(self, key: str) -> None:
        self.grpc.key_released(key)
        self.keys.release(key)
        self._unpublished.discard(key)
        self.cache.clear(key)
        if self.node_config is not None:
            self.node_config.key_released(key)

    # ------------------------------------------------------------ building
    def _rebuild(self, changed: dict[str, float]) -> None:
        started = time.perf_counter()
        changed = {**self._unbuilt, **changed}  # what failed before is tried again
        upsert_clusters: list[Resource] = []
        upsert_endpoints: list[Resource] = []
        remove: list[str] = []
        services_changed = False
        for service, origin in sorted(changed.items()):
            failed_before = self._unbuilt.pop(service, None) is not None
            view = self.catalog.view(service)
            name = cluster_name(service, self.settings)
            emptied = self.retirements.emptied(service) if no_instance(view) else None
            if view is None and self.retirements.may_go(service):
                remove.append(name)
                self.grpc.remove_service(service)
                self._warned.pop(service, None)
                self.quarantine.clear(f"service:{service}")
                for type_url in SHARED_TYPES:
                    self.rollbacks.forget(type_url, name)
                services_changed |= serve_view(self.served, service, None)
                continue
            if emptied is not None:  # no instance left: no endpoints, until its cluster goes
                built = emptied
            else:
                assert view is not None  # gone from the catalog: it went, or it is emptied
                try:
                    built = build_service(view, self.settings)
                except Exception as exc:
                    log_failure(failed_before, exc, "building service %r failed", service)
                    self._unbuilt[service] = origin
                    continue
            self._warn(service, built.warnings)
            problems = check_service(service, built, kept=name in self._clusters)
            self.quarantine.set(f"service:{service}", problems)
            if problems:  # its last good version (if any) stays served, and seen by templates
                continue
            services_changed |= serve_view(self.served, service, view)
            if emptied is None:
                services_changed |= self.retirements.served(service, built)
            self.grpc.set_service(service, built, origin, leaving=emptied is not None)
            services_changed |= name not in self._clusters
            cluster = make_resource(built.cluster, origin)
            if self.rollbacks.admit(self._clusters, cluster):
                upsert_clusters.append(cluster)
            if built.load_assignment is not None:
                assignment = make_resource(built.load_assignment, origin)
                if self.rollbacks.admit(self._endpoints, assignment):
                    upsert_endpoints.append(assignment)
            elif name in self._endpoints:  # now a DNS cluster: its assignment is inline
                self._endpoints = self._endpoints.with_changes(remove=[name])
        remove_endpoints = list(remove)
        gated = None
        if self.traffic is not None:  # after the plain services: chain versions win
            # Chains see the served catalog, as templates do: never a service the gate refused.
            extra = self.traffic.rebuild(changed, self.served)
            refused = gate_chain(
                self.quarantine, self.rollbacks, self._clusters, extra.clusters, upsert_clusters
            )
            refused |= gate_chain(
                self.quarantine, self.rollbacks, self._endpoints, extra.endpoints, upsert_endpoints
            )
            if refused:  # the served version stays, not the plain one built above
                upsert_clusters = [r for r in upsert_clusters if r.name not in refused]
                upsert_endpoints = [r for r in upsert_endpoints if r.name not in refused]
            for type_url, names in (
                (CLUSTER, extra.remove_clusters),
                (ENDPOINT, extra.remove_endpoints),
            ):
                for gone in names:
                    self.quarantine.clear(chain_scope(type_url, gone))
                    self.rollbacks.forget(type_url, gone)
            remove.extend(extra.remove_clusters)
            remove_endpoints.extend(extra.remove_endpoints)
            services_changed |= extra.names_changed
            gated = GatedChanges.of(  # the gRPC variant takes the chains as the gate lets them
                extra.clusters,
                extra.endpoints,
                extra.remove_clusters,
                extra.remove_endpoints,
                [*upsert_clusters, *upsert_endpoints],
            )
        self._clusters = self._clusters.with_changes(upsert_clusters, remove)
        self._endpoints = self._endpoints.with_changes(upsert_endpoints, remove_endpoints)
        self.grpc.commit(self._endpoints, gated)
        envoy_sets = {CLUSTER: self._clusters, ENDPOINT: self._endpoints}
        keep_rollbacks(self.grpc, self.rollbacks.rolled_back, envoy_sets)
        if self.ready:
            self._publish_all(services_changed)
        if self._unbuilt:
            self._retry.schedule()
        if self.on_rebuilt is not None:
            self.on_rebuilt(self, time.perf_counter() - started)

    def _retired(self, service: str) -> None:
        """The deletion gate let a leaving service go: remove it (outside the gate's call)."""
        asyncio.get_running_loop().call_soon(self._rebuild, {service: time.monotonic()})

    def rejected(
        self, type_url: str, resource: Resource, source: str, message: str, node_key: str
    ) -> None:
        """A node rejected ``resource`` (isolated by its stream): roll a shared one back to the
        version served before it (see :mod:`.rollback`); done outside the stream's call."""
        args = (type_url, resource, source, message, node_key)
        try:
            asyncio.get_running_loop().call_soon(self._roll_back, *args)
        except RuntimeError:
            self._roll_back(*args)

    def _roll_back(
        self, type_url: str, resource: Resource, source: str, message: str, node_key: str
    ) -> None:
        shared = {CLUSTER: self._clusters, ENDPOINT: self._endpoints}.get(type_url)
        served = shared.get(resource.name) if shared is not None else None
        # A gRPC node rejecting the gRPC variant's own form of a shared resource: no earlier
        # version of that form is known, so it is not rolled back.
        grpc_own = served is not None and served.version != resource.version
        if shared is None or served is None or (grpc_own and self.grpc.is_grpc(node_key)):
            action = "refused by the nodes that reject it (per-node resources are not rolled back)"
            self.keys.nacked(node_key, resource, nack_problem(resource, source, message, action))
            return
        replacement = self.rollbacks.reject(shared, resource, source, message)
        if replacement is None:
            return
        if type_url == CLUSTER:
            self._clusters = self._clusters.with_changes([replacement])
        else:
            self._endpoints = self._endpoints.with_changes([replacement])
        # the very same resource served to gRPC nodes (a shared assignment) goes back too
        roll_back_grpc(self.grpc, type_url, resource.version, replacement)
        if self.ready:
            self._publish_all(services_changed=False)

    def _warn(self, service: str, warnings: Sequence[str]) -> None:
        """Log each warning of ``service`` once while it lasts."""
        current = frozenset(warnings)
        for warning in sorted(current - self._warned.get(service, frozenset())):
            log.warning("%s", warning)
        if current:
            self._warned[service] = current
        else:
            self._warned.pop(service, None)

    def _publish_all(self, services_changed: bool) -> None:
        for key, node in self.cache.watched().items():
            self._publish_key(key, node, services_changed)

    def _publish_key(self, key: str, node: base_pb2.Node, services_changed: bool) -> None:
        try:
            snapshot = self._snapshot(key, node, services_changed)
        except Exception as exc:
            failed_before = key in self._unpublished
            log_failure(failed_before, exc, "building node key %r's snapshot failed", key)
            self._unpublished.add(key)
            self._retry.schedule()
            return
        self._unpublished.discard(key)
        self.cache.set_snapshot(key, snapshot)

    def _snapshot(self, key: str, node: base_pb2.Node, services_changed: bool) -> Snapshot:
        clusters, endpoints = self._clusters, self._endpoints
        if self.grpc.is_grpc(key):
            clusters, endpoints = self.grpc.clusters, self.grpc.endpoints
        extras = self.keys.extras.get(key)
        if self.node_config is not None:
            rendered = self.node_config.node_resources(key, node, self.served, services_changed)
            if rendered is not None:  # None: keep the last good listeners/routes
                names, generation = self.served.names(), self.served.generation
                extras = self.keys.accept(key, node, rendered, names, generation)
            if extras is None:
                # Never rendered for this key (or every render so far was refused by the gate):
                # its listeners, routes and template clusters are unknown, and an empty LDS (or a
                # CDS state without them) would remove what its Envoys hold. Send none of them
                # until a render succeeds and passes the gate; endpoints still flow.
                return Snapshot(
                    {CLUSTER: clusters, ENDPOINT: endpoints},
                    withheld=frozenset({CLUSTER, LISTENER, ROUTE}),
                )
        if extras is not None and extras.clusters:
            clusters = clusters.with_changes(extras.clusters)
        return Snapshot(
            {
                CLUSTER: clusters,
                ENDPOINT: endpoints,
                LISTENER: extras.listeners if extras else ResourceSet(LISTENER),
                ROUTE: extras.routes if extras else ResourceSet(ROUTE),
            }
        )

    def _retry_failed(self) -> bool:
        """Build and publish again what failed; returns whether anything still fails."""
        if self._unbuilt:
            self._rebuild({})
        if self.ready and self._unpublished:
            watched = self.cache.watched()
            for key in sorted(self._unpublished):
                node = watched.get(key)
                if node is None:
                    self._unpublished.discard(key)
                else:
                    self._publish_key(key, node, services_changed=True)
        return bool(self._unbuilt or self._unpublished)

    @property
    def refused_renders(self) -> dict[str, RefusedRender]:
        """Per node key, the latest render the validation gate refused."""
        return self.keys.refused_renders

    @property
    def refused_renders_total(self) -> Counter[str]:
        """Refused renders by template set."""
        return self.keys.refused_renders_total

    @property
    def service_warnings(self) -> dict[str, list[str]]:
        """Current problems with services' Consul data that were worked around (a meta value
        that does not parse, an instance without a port): by service."""
        return {service: sorted(warnings) for service, warnings in sorted(self._warned.items())}

    @property
    def clusters(self) -> ResourceSet:
        return self._clusters

    @property
    def endpoints(self) -> ResourceSet:
        return self._endpoints
