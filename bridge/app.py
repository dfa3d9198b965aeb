"""The runnable bridge: Consul watcher → publisher → snapshot cache → xDS server, plus admin.

Consul being unreachable at start is not fatal: the watcher keeps retrying, ``/readyz`` answers
503, and no Envoy is sent anything until the first full read is published (an empty config
from a bridge that has not read Consul yet would wipe a fleet).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
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

from .admin import AdminViews, JsonView, admin_app, start_admin
from .chains import GrpcClusterVariants, Traffic
from .chains.metrics import QuarantinedEntriesCollector
from .config import Config, ConfigError
from .consul import CatalogWatcher, ConsulClient
from .consul.collector import DatacenterCollector
from .consul_settings import ConsulSettings, consul_settings
from .debug_views import debug_views
from .deletion_gate import AckGate
from .file_watch import FileWatch
from .identity import IdentityRule, parse_patterns
from .identity_policy import IdentityPolicy, check_identity, selecting_fields, serving_cache
from .listening import check_free, display, listen_error
from .logs import StreamEventLogger
from .metrics import (
    Metrics,
    QuarantineCollector,
    TemplateErrorsCollector,
    XdsMetricsObserver,
    package_version,
)
from .publisher import Publisher
from .quarantine import Quarantine
from .resources import BuildSettings
from .rollback import NackReports
from .secret_guard import Redactor
from .security import XdsTls, check_xds_tls
from .security_metrics import SecurityMetrics
from .service_kinds import without_mesh_kinds
from .startup_checks import admin_warnings, key_file_warnings
from .tasks import cancel_and_wait
from .templating import TemplateSource, TemplateWatcher, node_context, select_set
from .tls_reload import ConsulTls, ServerCertificates
from .values import parse_host_port
from .variants import MixedKeys, variant_node_key

log = logging.getLogger(__name__)


def node_key_function(spec: str) -> NodeKeyFunc:
    """``id`` | ``cluster`` | ``metadata:<field>``: how nodes are grouped into snapshots; a gRPC
    client's key is its group's plus ``~grpc`` (Envoys and gRPC clients never share one)."""
    return variant_node_key(_grouping(spec))


def _grouping(spec: str) -> NodeKeyFunc:
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
    xds_identity_sans: tuple[str, ...] = ()  # SAN patterns binding cluster / metadata fields
    xds_unbound_fields: tuple[str, ...] = ()  # fields accepted unbound (a deliberate risk)
    admin_debug_token: str = field(default="", repr=False)  # bearer token for /debug/*
    config_entries: bool = True  # read Consul's config entries and serve their routing
    include_mesh_kinds: bool = False  # serve connect-proxy and gateway instances as backends

    @property
    def xds_tls(self) -> XdsTls:
        return XdsTls(
            self.xds_tls_cert,
            self.xds_tls_key,
            self.xds_tls_client_ca,
            self.xds_require_node_san,
        )

    def identity_policy(self) -> IdentityPolicy:
        """Raises :class:`ConfigError` for a pattern that does not parse."""
        try:
            rule = IdentityRule(parse_patterns(self.xds_identity_sans))
        except ValueError as exc:
            raise ConfigError("xds.identity_sans", str(exc)) from None
        return IdentityPolicy(
            mtls=bool(self.xds_tls_client_ca),
            require_node_san=self.xds_require_node_san,
            rule=rule,
            unbound_allowed=frozenset(self.xds_unbound_fields),
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
        xds_identity_sans=config["xds.identity_sans"],
        xds_unbound_fields=config["xds.unbound_fields"],
        admin_debug_token=config["admin.debug_token"],
        config_entries=config["consul.config_entries"],
        include_mesh_kinds=config["services.include_mesh_kinds"],
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
        self.security_metrics = SecurityMetrics(self.metrics.registry)
        self.redact = Redactor()
        self.redact.add(config.consul.token, config.admin_debug_token)
        policy = config.identity_policy()
        rule_fields = [k for r in node_config.rules for k, _ in r.conditions] if node_config else []
        #: What start-up logs at WARNING (raises ConfigError for an unbound selecting field).
        self.security_warnings = check_identity(
            policy, selecting_fields(config.node_key, rule_fields)
        )
        self.registry = ClientRegistry()
        self.registry.add_observer(XdsMetricsObserver(self.metrics, self.registry))
        self.registry.add_observer(StreamEventLogger())
        self.cache = SnapshotCache(node_key_function(config.node_key))
        # Consul's config entries → chains: extra clusters for everyone, routes for templates,
        # gRPC variants of clusters for gRPC nodes.
        self.traffic = traffic = Traffic(config.build)
        node_source = (
            GrpcClusterVariants(node_config, lambda: traffic.grpc_variants)
            if node_config is not None
            else None
        )
        self.quarantine = Quarantine()
        self.metrics.registry.register(
            QuarantineCollector(self.quarantine.counts, lambda: self.publisher.service_warnings)
        )
        #: Lets a service without instances lose its cluster once clients took it emptied.
        self.deletion_gate = AckGate(self.registry)
        self.publisher = Publisher(
            self.cache,
            config.build,
            node_source,
            config.debounce,
            self._rebuilt,
            traffic=traffic if config.config_entries else None,
            quarantine=self.quarantine,
            set_of=_template_set_of(node_config),
            deletion_gate=self.deletion_gate,
        )
        self.registry.add_observer(NackReports(self.publisher))
        self.registry.add_observer(MixedKeys(self.publisher.grpc.known_variant))
        self.metrics.registry.register(QuarantinedEntriesCollector(traffic.quarantined_counts))
        self.discovery = DiscoveryServer(
            serving_cache(self.cache, config.node_key, policy),
            self.registry,
            Limits(max_streams=config.max_streams),
            authorize=self.security_metrics.counted(policy.rule.authorize)
            if config.xds_require_node_san
            else None,
        )
        self.templates = templates = node_config
        self.template_watcher: TemplateWatcher | None = None
        if templates is not None:
            templates.traffic = traffic
            # Every edit of the template files re-renders and re-publishes every node key.
            self.template_watcher = TemplateWatcher(
                templates.directory, templates.reload, self.publisher.republish
            )
            refused = self.publisher.refused_renders_total
            self.metrics.registry.register(
                TemplateErrorsCollector(lambda: templates.render_errors_total + refused)
            )
        self.consul_tls = ConsulTls(config.consul)
        self.client = ConsulClient(
            config.consul,
            on_request=self.metrics.consul_request,
            on_connections=self.metrics.consul_connections.set,
            ssl_context=self.consul_tls.context,
            scrub=self.redact,
        )
        submit = self.publisher.submit
        self.watcher = CatalogWatcher(
            self.client,
            config.consul,
            submit if config.include_mesh_kinds else without_mesh_kinds(submit),
            on_update_error=lambda exc: self.metrics.catalog_update_errors.inc(),
            on_config_entries=self.publisher.submit_entries if config.config_entries else None,
        )
        self.metrics.registry.register(DatacenterCollector(lambda: self.watcher.watched))
        self.xds_port = 0
        self.admin_port = 0
        self._grpc: grpc.aio.Server | None = None
        self._admin: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.certificates: ServerCertificates | None = None  # the xDS listener's, reloadable
        self._file_watches: list[FileWatch] = []

    def readiness(self) -> tuple[bool, str]:
        """Ready once the local datacenter was read and published, nothing is being retried
        and the default template set can render. The reason also names failover datacenters not
        read or not answering, removals held back, and failing non-default template sets (or a
        set failing for some nodes only): those do not take the replica out of service — other
        replicas would fail alike, and those nodes keep what they have."""
        blocking = []
        if not self.publisher.ready:
            blocking.append("waiting for the first complete read of the local Consul datacenter")
        elif self.publisher.problem is not None:
            blocking.append(self.publisher.problem)
        templates = self.templates
        failing = templates.failing_sets() if templates is not None else {}
        if templates is not None and templates.default_problem is not None:
            blocking.append(
                f"the default template set {templates.default_set!r} cannot render: "
                f"{templates.default_problem}"
            )
            failing.pop(templates.default_set, None)
        reasons = blocking or [f"serving {len(self.publisher.catalog)} services"]
        reasons.extend(self.watcher.problems())
        if failing:
            sets = "; ".join(f"{name} {why}" for name, why in failing.items())
            reasons.append(f"template sets failing (their nodes keep what they have): {sets}")
        return not blocking, "; ".join(reasons)

    async def start(self) -> None:
        """Bind the xDS and admin listeners (exclusively), then start watching Consul and the
        templates. A listener that cannot be bound raises :class:`ConfigError` naming its key,
        with nothing left running."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        xds_host, xds_port = parse_host_port(self.config.xds_listen)
        admin_host, admin_port = parse_host_port(self.config.admin_listen)
        self._warn_at_start()
        credentials = None
        if self.config.xds_tls.enabled:
            self.certificates = ServerCertificates(
                self.config.xds_tls,
                on_served=self.security_metrics.served,
                on_handshake=self.security_metrics.handshake,
            )
            credentials = self.certificates.credentials()
            self._file_watches.append(
                FileWatch(self.certificates.files, self.certificates.reload, "xDS TLS files")
            )
        self._file_watches.append(
            FileWatch(self.consul_tls.files, self.consul_tls.reload, "Consul TLS files")
        )
        check_free("xds.listen", xds_host, xds_port)
        check_free("admin.listen", admin_host, admin_port)
        try:
            self._grpc, self.xds_port = await start_server(
                self.discovery, display(xds_host, xds_port), credentials=credentials
            )
        except (OSError, RuntimeError) as exc:  # gRPC says RuntimeError("Failed to bind ...")
            raise listen_error("xds.listen", xds_host, xds_port, exc) from None
        for watch in self._file_watches:
            await watch.start()
        views = AdminViews(
            self.readiness,
            self.metrics.registry,
            self.debug_views(),
            debug_token=self.config.admin_debug_token,
            redact=self.redact,
            actions={"accept-removal": self._accept_removal},
        )
        try:
            self._admin, self.admin_port = await start_admin(
                admin_app(views), admin_host, admin_port
            )
        except OSError as exc:
            raise listen_error("admin.listen", admin_host, admin_port, exc) from None
        if self.templates is not None:
            for name, problem in sorted(self.templates.set_problems.items()):
                log.error("template set %r cannot render for the sample nodes: %s", name, problem)
        if self.template_watcher is not None:
            await self.template_watcher.start()
        self._tasks = [
            asyncio.create_task(self.watcher.run(), name="consul-watcher"),
            asyncio.create_task(self._become_ready(), name="readiness"),
        ]

    def reload_tls(self) -> None:
        """Re-read every TLS file now (SIGHUP); file changes are also picked up on their own."""
        log.info("reloading TLS files")
        if self.certificates is not None:
            self.certificates.reload()
        self.consul_tls.reload()

    def _warn_at_start(self) -> None:
        config = self.config
        keys = {"xds.tls_key": config.xds_tls_key}
        keys["consul.client_key"] = config.consul.client_key or ""
        for line in (
            self.security_warnings
            + key_file_warnings(keys)
            + admin_warnings(config.admin_listen, config.admin_debug_token)
        ):
            log.warning("security: %s", line)

    # ------------------------------------------------------------ operations hooks
    def _accept_removal(self, query: Mapping[str, str]) -> tuple[int, Any]:
        """``POST /debug/accept-removal``: publish the removals held by the guard now."""
        return 200, self.watcher.accept_removals()

    def _rebuilt(self, publisher: Publisher, seconds: float) -> None:
        self.metrics.snapshot_build.observe(seconds)
        self.metrics.resources.labels("cluster").set(len(publisher.clusters))
        self.metrics.resources.labels("endpoint").set(len(publisher.endpoints))
        self.metrics.catalog_services.set(len(publisher.catalog))

    def debug_views(self) -> dict[str, JsonView]:
        """The admin listener's ``/debug/*`` views (see :mod:`.debug_views`)."""
        return debug_views(self)

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
        watches, self._file_watches = self._file_watches, []
        for watch in watches:
            await watch.stop()
        if self.template_watcher is not None:
            await self.template_watcher.stop()
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


def _template_set_of(templates: TemplateSource | None) -> Callable[[base_pb2.Node], str]:
    """Which template set a node renders (refused renders are counted by it)."""
    if templates is None:
        return lambda node: ""
    return lambda node: select_set(templates.rules, node_context(node), templates.default_set)
