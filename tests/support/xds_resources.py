"""Minimal Envoy resources for serving-side tests (the product builds its own from Consul)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from xds_server.resource import Resource, make_resource


def _ads_source() -> Any:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def eds_cluster(name: str, connect_timeout_ms: int = 500, ads: bool = True) -> Resource:
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    cluster.connect_timeout.FromMilliseconds(connect_timeout_ms)
    if ads:
        cluster.eds_cluster_config.eds_config.CopyFrom(_ads_source())
    else:
        cluster.eds_cluster_config.eds_config.CopyFrom(_grpc_source())
    return make_resource(cluster)


def _grpc_source() -> Any:
    source = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    api = source.api_config_source
    api.api_type = config_source_pb2.ApiConfigSource.GRPC
    api.transport_api_version = config_source_pb2.V3
    api.grpc_services.add().envoy_grpc.cluster_name = "xds_cluster"
    return source


def load_assignment(
    name: str, ports: Sequence[int], host: str = "127.0.0.1", weight: int | None = None
) -> Resource:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    if ports:
        locality = cla.endpoints.add()
        for port in ports:
            lb = locality.lb_endpoints.add()
            lb.endpoint.address.socket_address.address = host
            lb.endpoint.address.socket_address.port_value = port
            if weight is not None:
                lb.load_balancing_weight.value = weight
    return make_resource(cla)


def route_config(name: str, routes: dict[str, str]) -> Resource:
    """``routes`` maps a Host (domain) to a cluster name; other hosts get 404."""
    config = route_pb2.RouteConfiguration(name=name)
    for domain, cluster in sorted(routes.items()):
        vhost = config.virtual_hosts.add(name=domain, domains=[domain, f"{domain}:*"])
        route = vhost.routes.add()
        route.match.prefix = "/"
        route.route.cluster = cluster
    return make_resource(config)


def http_listener(name: str, port: int, route_name: str, ads: bool = True) -> Resource:
    manager = hcm_pb2.HttpConnectionManager(stat_prefix=name)
    manager.rds.route_config_name = route_name
    manager.rds.config_source.CopyFrom(_ads_source() if ads else _grpc_source())
    router = manager.http_filters.add(name="envoy.filters.http.router")
    router.typed_config.Pack(router_pb2.Router())
    listener = listener_pb2.Listener(name=name)
    listener.address.socket_address.address = "127.0.0.1"
    listener.address.socket_address.port_value = port
    chain = listener.filter_chains.add()
    hcm_filter = chain.filters.add(name="envoy.filters.network.http_connection_manager")
    hcm_filter.typed_config.Pack(manager)
    return make_resource(listener)
