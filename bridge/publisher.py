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
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

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
from .model import ServiceView
from .resources import BuildSettings, build_service, cluster_name
from .retirement import DeletionGate, Retirements
from .variants import GrpcVariant

log = logging.getLogger(__name__)


class NodeConfigSource(Protocol):
    """Per-node listeners, routes and extra clusters (implemented by the templates)."""

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        """Resources for ``key``; None keeps what the key has (e.g. after a template error)."""
        ...

    def key_released(self, key: str) -> None:
        """The last stream of ``key`` went: forget what is kept for it."""
        ...


class ResourceChanges(Protocol):
    """Changes to the shared cluster and endpoint sets (removals applied first)."""

    @property
    def clusters(self) -> Sequence[Resource]: ...
    @property
    def endpoints(self) -> Sequence[Resource]: ...
    @property
    def remove_clusters(self) -> Sequence[str]: ...
    @property
    def remove_endpoints(self) -> Sequence[str]: ...
    @property
    def names_changed(self) -> bool: ...


class TrafficSource(Protocol):
    """Consul's config entries → clusters and endpoints added to (or replacing plain ones in)
    the shared sets (implemented by :class:`bridge.chains.Traffic`)."""

    def set_entries(self, update: ConfigEntriesUpdate) -> bool:
        """Take a config entries table; whether anything changed."""
        ...

    def rebuild(self, changed: Mapping[str, float], catalog: Catalog) -> ResourceChanges:
        """The changes after the catalog's ``changed`` services and the entries taken."""
        ...


@dataclass(frozen=True, slots=True)
class _NodeExtras:
    """The last good per-node resources of one key."""

    clusters: tuple[Resource, ...]
    listeners: ResourceSet
    routes: ResourceSet

    @classmethod
    def of(cls, resources: Sequence[Resource]) -> _NodeExtras:
        return cls(
            clusters=tuple(r for r in resources if r.type_url == CLUSTER),
            listeners=ResourceSet(LISTENER, [r for r in resources if r.type_url == LISTENER]),
            routes=ResourceSet(ROUTE, [r for r in resources if r.type_url == ROUTE]),
        )


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
        deletion_gate: DeletionGate | None = None,
    ) -> None:
        """``on_rebuilt(publisher, seconds)`` is called after each rebuild (for metrics);
        ``traffic`` adds the clusters of Consul's config entries (None: no entries used);
        ``deletion_gate`` says when a service without instances may lose its cluster (None:
        at once)."""
        self.cache = cache
        self.traffic = traffic
        self.settings = settings or BuildSettings()
        self.node_config = node_config
        self.debounce = debounce
        self.on_rebuilt = on_rebuilt
        self.catalog = Catalog()
        self.ready = False
        self._clusters = ResourceSet(CLUSTER)
        self._endpoints = ResourceSet(ENDPOINT)
        self.grpc = GrpcVariant()
        self.retirements = Retirements(deletion_gate, self._retired)
        self._extras: dict[str, _NodeExtras] = {}  # per open key
        self._warned: dict[str, frozenset[str]] = {}  # per service: the warnings logged
        self._pending: list[ServiceUpdate] = []
        self._pending_entries: ConfigEntriesUpdate | None = None
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = float("-inf")
        self._retry = _Retry(self._retry_failed)
        self._unbuilt: dict[str, float] = {}  # services whose build failed -> origin time
        self._unpublished: set[str] = set()  # open keys whose snapshot failed
        cache.add_key_observer(self)

    # ------------------------------------------------------------ inputs
    def set_datacenters(self, datacenters: Sequence[str]) -> None:
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
            parts.append(f"services {_some(self._unbuilt)}")
        if self._unpublished:
            parts.append(f"node keys {_some(self._unpublished)}")
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
        self._extras.pop(key, None)
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
            emptied = self.retirements.emptied(service) if _no_instance(view) else None
            if view is None and self.retirements.may_go(service):
                remove.append(name)
                self.grpc.remove_service(service)
                self._warned.pop(service, None)
                services_changed = True
                continue
            if emptied is not None:  # no instance left: no endpoints, until its cluster goes
                built = emptied
                services_changed |= view is None
            else:
                assert view is not None  # gone from the catalog: it went, or it is emptied
                try:
                    built = build_service(view, self.settings)
                except Exception as exc:
                    _log_failure(failed_before, exc, "building service %r failed", service)
                    self._unbuilt[service] = origin
                    continue
                services_changed |= self.retirements.served(service, built)
            self.grpc.set_service(service, built, origin, leaving=emptied is not None)
            if name not in self._clusters:
                services_changed = True
            self._warn(service, built.warnings)
            upsert_clusters.append(make_resource(built.cluster, origin))
            if built.load_assignment is not None:
                upsert_endpoints.append(make_resource(built.load_assignment, origin))
            elif name in self._endpoints:  # now a DNS cluster: its assignment is inline
                self._endpoints = self._endpoints.with_changes(remove=[name])
        remove_endpoints = list(remove)
        extra = None
        if self.traffic is not None:  # after the plain services: chain versions win
            extra = self.traffic.rebuild(changed, self.catalog)
            upsert_clusters.extend(extra.clusters)
            upsert_endpoints.extend(extra.endpoints)
            remove.extend(extra.remove_clusters)
            remove_endpoints.extend(extra.remove_endpoints)
            services_changed |= extra.names_changed
        self._clusters = self._clusters.with_changes(upsert_clusters, remove)
        self._endpoints = self._endpoints.with_changes(upsert_endpoints, remove_endpoints)
        self.grpc.commit(self._endpoints, extra)
        if self.ready:
            self._publish_all(services_changed)
        if self._unbuilt:
            self._retry.schedule()
        if self.on_rebuilt is not None:
            self.on_rebuilt(self, time.perf_counter() - started)

    def _retired(self, service: str) -> None:
        """The deletion gate let a leaving service go: remove it (outside the gate's call)."""
        asyncio.get_running_loop().call_soon(self._rebuild, {service: time.monotonic()})

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
            _log_failure(failed_before, exc, "building node key %r's snapshot failed", key)
            self._unpublished.add(key)
            self._retry.schedule()
            return
        self._unpublished.discard(key)
        self.cache.set_snapshot(key, snapshot)

    def _snapshot(self, key: str, node: base_pb2.Node, services_changed: bool) -> Snapshot:
        clusters, endpoints = self._clusters, self._endpoints
        if self.grpc.is_grpc(key):
            clusters, endpoints = self.grpc.clusters, self.grpc.endpoints
        extras = self._extras.get(key)
        if self.node_config is not None:
            rendered = self.node_config.node_resources(key, node, self.catalog, services_changed)
            if rendered is not None:  # None: keep the last good listeners/routes
                extras = _NodeExtras.of(rendered)
                self._extras[key] = extras
            elif extras is None:
                # Never rendered for this key: its listeners, routes and template clusters are
                # unknown, and an empty LDS (or a CDS state without them) would remove what its
                # Envoys hold. Send none of them until a render succeeds; endpoints still flow.
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
    def clusters(self) -> ResourceSet:
        return self._clusters

    @property
    def endpoints(self) -> ResourceSet:
        return self._endpoints


def _no_instance(view: ServiceView | None) -> bool:
    return view is None or not any(True for _ in view.all_instances())


def _log_failure(again: bool, exc: Exception, what: str, name: str) -> None:
    """The first failure with its traceback; a repeated one in one line, at every retry."""
    if again:
        log.error(what + " again, retrying: %r", name, exc)
    else:
        log.exception(what + "; it is served as it was and retried", name)


def _some(names: Iterable[str], shown: int = 5) -> str:
    ordered = sorted(names)
    more = f" and {len(ordered) - shown} more" if len(ordered) > shown else ""
    return ", ".join(ordered[:shown]) + more


class _Retry:
    """Calls ``attempt`` again with exponential backoff while it reports failures."""

    FIRST = 0.1
    MAX = 10.0

    def __init__(self, attempt: Callable[[], bool]) -> None:
        self._attempt = attempt
        self._delay = self.FIRST
        self._handle: asyncio.TimerHandle | None = None
        self._running = False

    def schedule(self) -> None:
        """Try again after the current delay (no-op when already due, or when no event loop
        runs: the next publish tries again then)."""
        if self._handle is not None or self._running:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._handle = loop.call_later(self._delay, self._run)

    def _run(self) -> None:
        self._handle = None
        self._running = True
        try:
            failing = self._attempt()
        finally:
            self._running = False
        if failing:
            self._delay = min(self._delay * 2, self.MAX)
            self.schedule()
        else:
            self._delay = self.FIRST
