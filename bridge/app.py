"""The runnable bridge: Consul watcher → publisher → snapshot cache → xDS server, plus admin.

Consul being unreachable at start is not fatal: the watcher keeps retrying, ``/readyz`` answers
503, and no Envoy is sent anything until the first full read is published (an empty config
from a bridge that has not read Consul yet would wipe a fleet).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from envoy.config.core.v3 import base_pb2

from xds_server import (
    ClientRegistry,
    DiscoveryServer,
    Limits,
    NodeKeyFunc,
    SnapshotCache,
    node_key_by_cluster,
    node_key_by_id,
    node_key_by_metadata,
    start_server,
)

from . import debug
from .admin import AdminViews, JsonView, admin_app, start_admin
from .config import Config
from .consul_client import ConsulClient
from .consul_settings import ConsulSettings, consul_settings
from .logs import StreamEventLogger
from .metrics import Metrics, TemplateErrorsCollector, XdsMetricsObserver, package_version
from .publisher import Publisher
from .resources import BuildSettings
from .security import XdsTls, authorize_node_by_san, check_xds_tls, server_credentials
from .tasks import cancel_and_wait
from .templating import TemplateSource
from .values import parse_host_port
from .watcher import CatalogWatcher

log = logging.getLogger(__name__)


def node_key_function(spec: str) -> NodeKeyFunc:
    """``id`` | ``cluster`` | ``metadata:<field>``: how Envoys are grouped into snapshots."""
    if spec == "id":
        return node_key_by_id
    if spec == "cluster":
        return node_key_by_cluster
    if spec.startswith("metadata:") and spec[len("metadata:") :]:
        return node_key_by_metadata(spec[len("metadata:") :])
    raise ValueError(f"node_key: expected id, cluster or metadata:<field>, got {spec!r}")


@dataclass
class BridgeConfig:
    consul: ConsulSettings
    xds_listen: str = "0.0.0.0:18000"
    admin_listen: str = "127.0.0.1:9102"
    node_key: str = "id"
    debounce: float = 0.01
    max_streams: int = 50_000
    build: BuildSettings = field(default_factory=BuildSettings)
    xds_tls_cert: str = ""  # PEM files; cert and key together enable TLS on the xDS listener
    xds_tls_key: str = ""
    xds_tls_client_ca: str = ""  # clients must present a certificate signed by this CA (mTLS)
    xds_require_node_san: bool = False  # a client's node id must be one of its cert's SANs
    admin_debug_token: str = field(default="", repr=False)  # bearer token for /debug/*

    @property
    def xds_tls(self) -> XdsTls:
        return XdsTls(
            self.xds_tls_cert,
            self.xds_tls_key,
            self.xds_tls_client_ca,
            self.xds_require_node_san,
        )


def bridge_config(config: Config) -> BridgeConfig:
    """The merged settings table (flags > env > file > defaults) → the parts' configuration.

    Raises :class:`ConfigError` naming the key when a setting cannot be used.
    """
    bridge = BridgeConfig(
        consul=consul_settings(config),
        xds_listen=str(config["xds.listen"]),
        admin_listen=str(config["admin.listen"]),
        node_key=config["xds.node_key"],
        debounce=config["xds.debounce"],
        max_streams=config["xds.max_streams"],
        build=BuildSettings(warning_is_healthy=config["services.warning_is_healthy"]),
        xds_tls_cert=config["xds.tls_cert"],
        xds_tls_key=config["xds.tls_key"],
        xds_tls_client_ca=config["xds.tls_client_ca"],
        xds_require_node_san=config["xds.require_node_san"],
        admin_debug_token=config["admin.debug_token"],
    )
    check_xds_tls(bridge.xds_tls)
    return bridge


class Bridge:
    """All the parts, started and stopped together."""

    def __init__(self, config: BridgeConfig, node_config: TemplateSource | None = None) -> None:
        """``node_config``: the templates making per-node listeners and routes (None: nodes get
        clusters and endpoints only)."""
        self.config = config
        self.metrics = Metrics(version=package_version())
        self.registry = ClientRegistry()
        self.registry.add_observer(XdsMetricsObserver(self.metrics, self.registry))
        self.registry.add_observer(StreamEventLogger())
        self.cache = SnapshotCache(node_key_function(config.node_key))
        self.publisher = Publisher(
            self.cache, config.build, node_config, config.debounce, self._rebuilt
        )
        self.discovery = DiscoveryServer(
            self.cache,
            self.registry,
            Limits(max_streams=config.max_streams),
            authorize=authorize_node_by_san if config.xds_require_node_san else None,
        )
        self.templates = templates = node_config
        if templates is not None:
            templates.on_change = self.publisher.republish
            self.metrics.registry.register(
                TemplateErrorsCollector(lambda: templates.render_errors_total)
            )
        self.client = ConsulClient(
            config.consul,
            on_request=self.metrics.consul_request,
            on_connections=self.metrics.consul_connections.set,
        )
        self.watcher = CatalogWatcher(self.client, config.consul, self.publisher.submit)
        self.xds_port = 0
        self.admin_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def readiness(self) -> tuple[bool, str]:
        if not self.publisher.ready:
            return False, "waiting for the first complete read of the Consul catalog"
        problem = self.publisher.problem
        if problem is not None:
            return False, problem
        return True, f"serving {len(self.publisher.catalog)} services"

    async def start(self) -> None:
        xds_host, xds_port = parse_host_port(self.config.xds_listen)
        admin_host, admin_port = parse_host_port(self.config.admin_listen)
        self._grpc, self.xds_port = await start_server(
            self.discovery,
            f"[{xds_host}]:{xds_port}" if ":" in xds_host else f"{xds_host}:{xds_port}",
            credentials=server_credentials(self.config.xds_tls),
        )
        views = AdminViews(
            self.readiness,
            self.metrics.registry,
            self.debug_views(),
            debug_token=self.config.admin_debug_token,
        )
        self._admin, self.admin_port = await start_admin(admin_app(views), admin_host, admin_port)
        if self.templates is not None:
            await self.templates.start()
        self._tasks = [
            asyncio.create_task(self.watcher.run(), name="consul-watcher"),
            asyncio.create_task(self._become_ready(), name="readiness"),
        ]

    # ------------------------------------------------------------ operations hooks
    def _rebuilt(self, publisher: Publisher, seconds: float) -> None:
        self.metrics.snapshot_build.observe(seconds)
        self.metrics.resources.labels("cluster").set(len(publisher.clusters))
        self.metrics.resources.labels("endpoint").set(len(publisher.endpoints))
        self.metrics.catalog_services.set(len(publisher.catalog))

    def debug_views(self) -> dict[str, JsonView]:
        """``/debug/clients``, ``/debug/resources?node=ID[&cluster=C]``,
        ``/debug/config_dump?node=ID[&cluster=C][&include_eds]`` (Envoy's ``/config_dump``
        shape), ``/debug/consul``, ``/debug/templates`` (sets and the latest error per key)."""

        def clients(query: Mapping[str, str]) -> tuple[int, Any]:
            return 200, debug.clients_view(self.registry)

        def node_key(query: Mapping[str, str]) -> tuple[str, str]:
            node_id = query.get("node", "")
            streams = self.registry.by_node(node_id)
            if streams:
                return node_id, streams[0].node_key
            # not connected: the key it would get (pass cluster= when keyed by cluster)
            node = base_pb2.Node(id=node_id, cluster=query.get("cluster", ""))
            return node_id, self.cache.node_key(node)

        def resources(query: Mapping[str, str]) -> tuple[int, Any]:
            if not query.get("node"):
                return 400, {"error": "missing query parameter: node=<node id>"}
            node_id, key = node_key(query)
            return 200, debug.resources_view(node_id, key, self.cache.get(key))

        def config_dump(query: Mapping[str, str]) -> tuple[int, Any]:
            if not query.get("node"):
                return 400, {"error": "missing query parameter: node=<node id>"}
            node_id, key = node_key(query)
            streams = self.registry.by_node(node_id)
            include_eds = "include_eds" in query
            return 200, debug.config_dump_view(streams, self.cache.get(key), include_eds)

        def consul(query: Mapping[str, str]) -> tuple[int, Any]:
            return 200, self.watcher.status()

        def templates(query: Mapping[str, str]) -> tuple[int, Any]:
            if self.templates is None:
                return 200, {"template_sets": [], "errors": {}}
            return 200, debug.templates_view(self.templates)

        return {
            "clients": clients,
            "resources": resources,
            "config_dump": config_dump,
            "consul": consul,
            "templates": templates,
        }

    async def _become_ready(self) -> None:
        await self.watcher.ready.wait()
        self.publisher.set_datacenters(self.watcher.datacenters)
        self.publisher.mark_ready()
        log.info(
            "ready: %d services from datacenters %s",
            len(self.publisher.catalog),
            ", ".join(self.watcher.datacenters),
        )

    async def stop(self) -> None:
        """Close xDS streams, cancel Consul requests, stop the admin listener (idempotent)."""
        tasks, self._tasks = self._tasks, []
        await cancel_and_wait(tasks)
        if self.templates is not None:
            await self.templates.stop()
        if self._grpc is not None:
            grpc_server, self._grpc = self._grpc, None
            await grpc_server.stop(grace=1.0)
        if self._admin is not None:
            admin, self._admin = self._admin, None
            await admin.cleanup()
        await self.client.close()

    async def __aenter__(self) -> Bridge:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
