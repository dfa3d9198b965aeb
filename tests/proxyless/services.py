"""Services as the bridge builds them, served straight from a snapshot cache to real clients."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf.message import Message

from bridge.model import Check, Instance, ServiceView
from bridge.resources import BuildSettings, BuiltService, build_service
from tests.conftest import XdsServer
from xds_server.cache import Snapshot
from xds_server.resource import make_resource


def instance(
    service: str,
    name: str,
    port: int,
    address: str = "127.0.0.1",
    meta: dict[str, str] | None = None,
    status: str = "passing",
    weight: int = 1,
) -> Instance:
    return Instance(
        service=service,
        id=name,
        node=f"node-{name}",
        datacenter="dc1",
        address=address,
        port=port,
        meta=tuple(sorted({"xds-protocol": "grpc", **(meta or {})}.items())),
        weight_passing=weight,
        checks=(Check(f"service:{name}", "check", status, name),),
    )


def built(service: str, instances: Sequence[Instance]) -> BuiltService:
    view = ServiceView(service, ("dc1",), {"dc1": tuple(instances)})
    return build_service(view, BuildSettings())


def api_listener(name: str, cluster: str) -> listener_pb2.Listener:
    """What the bundled templates give a gRPC client for ``xds:///<name>``."""
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    manager.route_config.name = name
    vhost = manager.route_config.virtual_hosts.add(name=name, domains=["*"])
    route = vhost.routes.add()
    route.match.prefix = ""
    route.route.cluster = cluster
    router = manager.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name=name)
    listener.api_listener.api_listener.Pack(manager)
    return listener


def serve(xds: XdsServer, node_id: str, messages: Iterable[Message]) -> None:
    xds.cache.set_snapshot(node_id, Snapshot.of(make_resource(m) for m in messages))


def nacks(xds: XdsServer, node_id: str) -> list[str]:
    """Every NACK message the node's streams sent, by type (``Cluster: ...``)."""
    return [
        f"{type_url.rsplit('.', 1)[-1]}: {state.last_nack.message}"
        for info in xds.registry.by_node(node_id)
        for type_url, state in info.types.items()
        if state.last_nack is not None
    ]
