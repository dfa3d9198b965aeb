"""What templates see: the node, the services and the free variables (pure: no files, no Jinja).

Services are described by :class:`ServiceContext`. Its *volatile* fields (``healthy``, ``total``,
``ports``) change with instances coming and going; they are part of a render's cache key only
when a template set names them (see :mod:`bridge.templating.reads`), so an endpoint-only change
re-renders nothing for sets that do not read them.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2, health_check_pb2
from google.protobuf import json_format

from ..model import Instance, ServiceView
from ..resources import BuildSettings, cluster_name, endpoint_health, service_options

#: Service fields that change with instances (not with the service set); keyed only when read.
VOLATILE_SERVICE_FIELDS: tuple[str, ...] = ("healthy", "total", "ports")

#: Node fields a template can read, in the order they enter a cache key.
NODE_FIELDS: tuple[str, ...] = (
    "id",
    "cluster",
    "metadata",
    "locality",
    "user_agent",
    "user_agent_version",
    "is_grpc",
    "is_envoy",
)


# ---------------------------------------------------------------- node
@dataclass(frozen=True, slots=True)
class NodeContext:
    """The requesting node, as templates see it (``node.id``, ``node.metadata.ingress_port``…)."""

    id: str
    cluster: str
    metadata: dict[str, Any] = field(hash=False, compare=False)
    locality: dict[str, str] = field(hash=False, compare=False)
    user_agent: str = ""
    user_agent_version: str = ""

    @property
    def is_grpc(self) -> bool:
        """A proxyless gRPC client (its xDS client reports a user agent starting with gRPC)."""
        return self.user_agent.lower().startswith("grpc")

    @property
    def is_envoy(self) -> bool:
        return self.user_agent.lower().startswith("envoy")

    def key_part(self, fields: Iterable[str]) -> tuple[tuple[str, str], ...]:
        """The values of ``fields`` (canonical JSON), for a render cache key."""
        return tuple(
            (name, json.dumps(getattr(self, name), sort_keys=True, default=str)) for name in fields
        )


def node_context(node: base_pb2.Node) -> NodeContext:
    version = node.user_agent_version
    if not version and node.HasField("user_agent_build_version"):
        version = str(node.user_agent_build_version.version)
    return NodeContext(
        id=str(node.id),
        cluster=str(node.cluster),
        metadata=json_format.MessageToDict(node.metadata),
        locality={
            "region": str(node.locality.region),
            "zone": str(node.locality.zone),
            "sub_zone": str(node.locality.sub_zone),
        },
        user_agent=str(node.user_agent_name),
        user_agent_version=str(version),
    )


# ---------------------------------------------------------------- services
class ChainRoutes(Protocol):
    """A service's compiled discovery chain, as templates use it (``bridge.chains.RouteView``)."""

    @property
    def routes_json(self) -> str: ...
    @property
    def grpc_routes_json(self) -> str: ...
    @property
    def clusters(self) -> tuple[str, ...]: ...
    @property
    def chain_json(self) -> str: ...


@dataclass(frozen=True, slots=True)
class ServiceContext:
    """One Consul service, as templates see it (``svc.name``, ``svc.cluster``, ``svc.protocol``…).

    ``meta`` is the service meta agreed by the instances (the most common value per key);
    ``datacenters`` lists the datacenters where the service has instances, in failover order;
    ``healthy`` counts the instances that receive traffic, ``total`` all of them, and ``ports``
    the distinct instance ports (sorted).

    A service whose Consul config entries make a (non-default) discovery chain has ``routes``
    and ``grpc_routes`` (Envoy route JSON for Envoys and for proxyless gRPC clients), ``chain``
    (a summary) and, in ``clusters``, every cluster those routes use.
    """

    name: str
    cluster: str
    protocol: str
    tags: tuple[str, ...]
    meta_items: tuple[tuple[str, str], ...]
    datacenters: tuple[str, ...]
    healthy: int
    total: int
    ports: tuple[int, ...]
    routes_json: str = ""  # "" when the service has no chain of its own
    grpc_routes_json: str = ""
    chain_clusters: tuple[str, ...] = ()
    chain_json: str = ""

    @property
    def meta(self) -> dict[str, str]:
        return dict(self.meta_items)

    @property
    def routes(self) -> list[dict[str, Any]]:
        """The chain's routes for Envoys (first match first), or [] without a chain."""
        return list(json.loads(self.routes_json)) if self.routes_json else []

    @property
    def grpc_routes(self) -> list[dict[str, Any]]:
        """The chain's routes for proxyless gRPC clients, or [] without a chain."""
        return list(json.loads(self.grpc_routes_json)) if self.grpc_routes_json else []

    @property
    def chain(self) -> dict[str, Any] | None:
        """The chain in a few words (protocol, routes with cluster weights, clusters)."""
        return dict(json.loads(self.chain_json)) if self.chain_json else None

    @property
    def clusters(self) -> tuple[str, ...]:
        """The service's cluster and every cluster its chain's routes use."""
        return (self.cluster, *(c for c in self.chain_clusters if c != self.cluster))

    @property
    def is_grpc(self) -> bool:
        """HTTP/2 upstream (meta ``xds-protocol`` grpc or http2)."""
        return self.protocol in ("grpc", "http2")

    def key_part(self, volatile: tuple[str, ...]) -> tuple[Any, ...]:
        """The fields a render may depend on: all stable ones and the ``volatile`` ones named."""
        stable = (self.name, self.cluster, self.protocol, self.tags, self.meta_items)
        chain = (self.routes_json, self.grpc_routes_json, self.chain_json)
        return (*stable, *chain, self.datacenters, *(getattr(self, name) for name in volatile))


def agreed_meta(instances: Iterable[Instance]) -> tuple[tuple[str, str], ...]:
    """Meta across instances: per key the most common value, ties → the smallest."""
    counts: dict[str, collections.Counter[str]] = {}
    for instance in instances:
        for key, value in instance.meta:
            counts.setdefault(key, collections.Counter())[value] += 1
    return tuple(
        (key, min(values.items(), key=lambda item: (-item[1], item[0]))[0])
        for key, values in sorted(counts.items())
    )


def service_context(
    view: ServiceView, settings: BuildSettings, chain: ChainRoutes | None = None
) -> ServiceContext:
    instances = list(view.all_instances())
    options, _warnings = service_options(view, settings)  # warnings: logged by the publisher
    healthy = sum(
        1 for i in instances if endpoint_health(i, settings)[0] != health_check_pb2.UNHEALTHY
    )
    return ServiceContext(
        name=view.name,
        cluster=cluster_name(view.name, settings),
        protocol=options.protocol,
        tags=view.tags,
        meta_items=agreed_meta(instances),
        datacenters=tuple(dc for dc in view.datacenters if view.instances.get(dc)),
        healthy=healthy,
        total=len(instances),
        ports=tuple(sorted({i.port for i in instances if i.port})),
        routes_json=chain.routes_json if chain is not None else "",
        grpc_routes_json=chain.grpc_routes_json if chain is not None else "",
        chain_clusters=chain.clusters if chain is not None else (),
        chain_json=chain.chain_json if chain is not None else "",
    )


class ServiceContexts:
    """Service contexts of a catalog, rebuilt only for services whose instances changed.

    ``token(volatile)`` is a small integer standing for the service list with the ``volatile``
    fields named: equal tokens mean equal lists, so a render cache key stays cheap to hash.
    """

    def __init__(self, settings: BuildSettings) -> None:
        self.settings = settings
        self._memo: dict[str, tuple[tuple[Any, ...], ServiceView, ServiceContext]] = {}
        self.services: tuple[ServiceContext, ...] = ()
        self._tokens: dict[tuple[Any, ...], int] = {}
        self._current: dict[tuple[str, ...], int] = {}
        self._next_token = 0

    def update(
        self, views: Sequence[ServiceView], chains: Mapping[str, ChainRoutes] | None = None
    ) -> None:
        """Bring the contexts in line with ``views`` and the services' compiled ``chains``
        (cheap when nothing changed)."""
        services: list[ServiceContext] = []
        memo: dict[str, tuple[tuple[Any, ...], ServiceView, ServiceContext]] = {}
        for view in views:
            # Catalog views share the instance tuples of unchanged services: identity suffices.
            chain = chains.get(view.name) if chains is not None else None
            instances = tuple((dc, id(view.instances.get(dc, ()))) for dc in view.datacenters)
            identity = (*instances, chain)
            old = self._memo.get(view.name)
            if old is not None and old[0] == identity:
                memo[view.name] = (identity, view, old[2])
            else:
                context = service_context(view, self.settings, chain)
                memo[view.name] = (identity, view, context)
            services.append(memo[view.name][2])
        self._memo = memo  # holding the views keeps the identities above from being reused
        new = tuple(services)
        if len(new) != len(self.services) or any(
            a is not b for a, b in zip(new, self.services, strict=True)
        ):
            self.services = new
            self._current.clear()

    def token(self, volatile: tuple[str, ...]) -> int:
        found = self._current.get(volatile)
        if found is not None:
            return found
        key = (volatile, *(s.key_part(volatile) for s in self.services))
        token = self._tokens.get(key)
        if token is None:
            if len(self._tokens) > 4096:
                self._tokens.clear()
            self._next_token += 1
            token = self._tokens[key] = self._next_token
        self._current[volatile] = token
        return token


# ---------------------------------------------------------------- the names a template sees
def template_context(
    node: NodeContext, services: Sequence[ServiceContext], variables: Mapping[str, Any]
) -> dict[str, Any]:
    """The names a template sees: ``node``, ``services``, ``service_names`` and ``vars``."""
    return {
        "node": node,
        "services": list(services),
        "service_names": [s.name for s in services],
        "vars": dict(variables),
    }
