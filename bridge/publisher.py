"""Catalog → resources → snapshots: the one place where the bridge changes what Envoys get.

Clusters and endpoints are the same for every node: they live in two shared
:class:`~xds_server.resource.ResourceSet` objects, rebuilt per *changed service* only, and every
node key's snapshot points at them. Listeners and routes are per node key and come from a
:class:`NodeConfigSource` (the templates; none means the nodes get no listeners/routes).

Bursts of Consul updates are coalesced: the first change after a quiet period is published at
once (no added latency), changes arriving within ``debounce`` seconds of a publish wait for the
end of that window and go out together.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
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
from .resources import BuildSettings, build_service, cluster_name

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
    """Keeps the snapshot cache in step with the catalog."""

    def __init__(
        self,
        cache: SnapshotCache,
        settings: BuildSettings | None = None,
        node_config: NodeConfigSource | None = None,
        debounce: float = 0.01,
        on_rebuilt: Callable[[Publisher, float], None] | None = None,
    ) -> None:
        """``on_rebuilt(publisher, seconds)`` is called after each rebuild (for metrics)."""
        self.cache = cache
        self.settings = settings or BuildSettings()
        self.node_config = node_config
        self.debounce = debounce
        self.catalog = Catalog()
        self._clusters = ResourceSet(CLUSTER)
        self._endpoints = ResourceSet(ENDPOINT)
        self._nodes: dict[str, base_pb2.Node] = {}
        self._extras: dict[str, _NodeExtras] = {}
        self._pending: list[ServiceUpdate] = []
        self._flush_handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._last_flush = float("-inf")
        self._warned: set[str] = set()
        self.ready = False
        self.on_rebuilt = on_rebuilt
        cache.key_opened = self._key_opened
        cache.key_released = self._key_released

    # ------------------------------------------------------------ inputs
    def set_datacenters(self, datacenters: Sequence[str]) -> None:
        changed = self.catalog.set_datacenters(datacenters)
        if changed:
            self._rebuild({name: time.monotonic() for name in changed})

    def submit(self, updates: Iterable[ServiceUpdate]) -> None:
        """Queue watcher updates; they are published now or at the end of the debounce window."""
        self._pending.extend(updates)
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
        if changed:
            self._rebuild(changed)

    def mark_ready(self) -> None:
        """The first full read of Consul is done: start serving (never before)."""
        if self.ready:
            return
        self.flush()
        self.ready = True
        for key in self.cache.watched_keys():
            node = self._nodes.get(key)
            if node is not None:
                self._publish_key(key, node, services_changed=True)

    def republish(self) -> None:
        """Re-render and re-publish every node key (e.g. after a template change)."""
        if self.ready:
            self._publish_all(services_changed=True)

    # ------------------------------------------------------------ building
    def _rebuild(self, changed: dict[str, float]) -> None:
        started = time.perf_counter()
        upsert_clusters: list[Resource] = []
        upsert_endpoints: list[Resource] = []
        remove: list[str] = []
        services_changed = False
        for service, origin in sorted(changed.items()):
            view = self.catalog.view(service)
            name = cluster_name(service, self.settings)
            if view is None:
                remove.append(name)
                services_changed = True
                continue
            if name not in self._clusters:
                services_changed = True
            built = build_service(view, self.settings)
            for warning in built.warnings:
                if warning not in self._warned:
                    self._warned.add(warning)
                    log.warning("%s", warning)
            upsert_clusters.append(make_resource(built.cluster, origin))
            if built.load_assignment is not None:
                upsert_endpoints.append(make_resource(built.load_assignment, origin))
            elif name in self._endpoints:  # now a DNS cluster: its assignment is inline
                self._endpoints = self._endpoints.with_changes(remove=[name])
        self._clusters = self._clusters.with_changes(upsert_clusters, remove)
        self._endpoints = self._endpoints.with_changes(upsert_endpoints, remove)
        if self.ready:
            self._publish_all(services_changed)
        if self.on_rebuilt is not None:
            self.on_rebuilt(self, time.perf_counter() - started)

    def _publish_all(self, services_changed: bool) -> None:
        for key in self.cache.snapshot_keys():
            self._publish_key(key, self._nodes.get(key), services_changed)

    def _publish_key(self, key: str, node: base_pb2.Node | None, services_changed: bool) -> None:
        extras = self._extras.get(key)
        if self.node_config is not None and node is not None:
            rendered = self.node_config.node_resources(key, node, self.catalog, services_changed)
            if rendered is not None:  # None: keep the last good listeners/routes
                extras = _NodeExtras.of(rendered)
                self._extras[key] = extras
        clusters = self._clusters
        if extras is not None and extras.clusters:
            clusters = clusters.with_changes(extras.clusters)
        snapshot = Snapshot(
            {
                CLUSTER: clusters,
                ENDPOINT: self._endpoints,
                LISTENER: extras.listeners if extras else ResourceSet(LISTENER),
                ROUTE: extras.routes if extras else ResourceSet(ROUTE),
            }
        )
        self.cache.set_snapshot(key, snapshot)

    # ------------------------------------------------------------ node keys
    def _key_opened(self, key: str, node: base_pb2.Node) -> None:
        self._nodes[key] = node
        if self.ready:
            self._publish_key(key, node, services_changed=True)

    def _key_released(self, key: str) -> None:
        self._nodes.pop(key, None)
        self._extras.pop(key, None)
        self.cache.clear(key)
        if self.node_config is not None:
            self.node_config.key_released(key)

    @property
    def clusters(self) -> ResourceSet:
        return self._clusters

    @property
    def endpoints(self) -> ResourceSet:
        return self._endpoints
