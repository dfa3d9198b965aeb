"""Consul services → Envoy ``Cluster`` and ``ClusterLoadAssignment`` (pure functions, no I/O).

One service becomes one cluster named ``<cluster_prefix><service>`` (no prefix by default) and,
when every instance address is an IP, one ClusterLoadAssignment of the same name served over EDS.
A service with any hostname address (Consul allows them; EDS needs IPs) becomes a ``STRICT_DNS``
cluster whose endpoints are inline, so Envoy resolves the names itself and never NACKs.

Health: passing → HEALTHY; warning → HEALTHY with ``Weights.Warning`` (or UNHEALTHY when
``warning_is_healthy`` is off; DEGRADED when ``Weights.Warning`` is 0); critical, maintenance and
failing node checks → UNHEALTHY. Datacenters become localities (region = datacenter) with
priorities in failover order: the local datacenter is priority 0, so Envoy fails over only
when local instances are unhealthy. Envoy's panic mode is off by default (a failed instance
gets no traffic, however few healthy ones are left); ``xds-panic-threshold`` turns it back on.

Per-service settings come from Consul service meta (keys in :data:`META_KEYS`). When instances
disagree, the most common value wins (ties: the smallest), with a warning; a value that does not
parse is a warning and the default is used.
"""

from __future__ import annotations

import collections
import ipaddress
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2, protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, struct_pb2

from xds_server.text import clip

from .model import Health, Instance, ServiceView

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

#: Consul service meta keys the bridge reads, with what they accept.
META_KEYS: Mapping[str, str] = {
    "xds-protocol": "http1 | http2 | grpc (grpc means HTTP/2 upstream)",
    "xds-connect-timeout": "connect timeout: 250ms, 2s, or seconds",
    "xds-lb-policy": "round_robin | least_request | random | ring_hash | maglev",
    "xds-max-connections": "circuit breaker: max connections (integer >= 1)",
    "xds-max-pending-requests": "circuit breaker: max pending requests (integer >= 1)",
    "xds-max-requests": "circuit breaker: max concurrent requests (integer >= 1)",
    "xds-max-retries": "circuit breaker: max concurrent retries (integer >= 0)",
    "xds-panic-threshold": "Envoy's healthy panic threshold in percent (0 = off, the default)",
}

_LB_POLICIES: Mapping[str, Any] = {
    "round_robin": cluster_pb2.Cluster.ROUND_ROBIN,
    "least_request": cluster_pb2.Cluster.LEAST_REQUEST,
    "random": cluster_pb2.Cluster.RANDOM,
    "ring_hash": cluster_pb2.Cluster.RING_HASH,
    "maglev": cluster_pb2.Cluster.MAGLEV,
}

_CIRCUIT_BREAKER_FIELDS: Mapping[str, str] = {
    "xds-max-connections": "max_connections",
    "xds-max-pending-requests": "max_pending_requests",
    "xds-max-requests": "max_requests",
    "xds-max-retries": "max_retries",
}


@dataclass(frozen=True, slots=True)
class BuildSettings:
    """How services become clusters (the bridge's configuration, not Consul's)."""

    cluster_prefix: str = ""
    warning_is_healthy: bool = True
    connect_timeout: float = 5.0
    dns_refresh_rate: float = 5.0


@dataclass(frozen=True, slots=True)
class BuiltService:
    """The resources of one service; ``load_assignment`` is None for a DNS cluster."""

    cluster: cluster_pb2.Cluster
    load_assignment: endpoint_pb2.ClusterLoadAssignment | None
    warnings: tuple[str, ...] = ()


@dataclass(slots=True)
class _ServiceOptions:
    protocol: str = "http1"
    connect_timeout: float = 5.0
    lb_policy: str = "round_robin"
    panic_threshold: float = 0.0
    circuit_breakers: dict[str, int] = field(default_factory=dict)


def cluster_name(service: str, settings: BuildSettings) -> str:
    """The Envoy cluster (and ClusterLoadAssignment) name of a Consul service."""
    return settings.cluster_prefix + service


def is_ip(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


# ---------------------------------------------------------------- value parsing
def parse_seconds(text: str) -> float:
    """``250ms``, ``2s``, ``1.5`` → seconds, more than 0 at the nanosecond precision of a
    protobuf ``Duration`` and at most 1h; ValueError otherwise.

    A value such as ``0.0000000001`` is positive as a float but becomes ``0s`` on the wire,
    which Envoy refuses (and with it the whole CDS update).
    """
    value = text.strip()
    factor = 1.0
    if value.endswith("ms"):
        value, factor = value[:-2], 0.001
    elif value.endswith("s"):
        value = value[:-1]
    seconds = float(value) * factor
    if not math.isfinite(seconds):
        raise ValueError("must be a finite number of seconds")
    if not 0 < seconds <= 3600:
        raise ValueError("must be between 0 and 1h")
    if nanoseconds(seconds) < 1:
        raise ValueError("rounds to 0s at nanosecond precision; it must be more than 0")
    return seconds


def nanoseconds(seconds: float) -> int:
    """Seconds → the nearest whole nanosecond (a protobuf ``Duration``'s precision)."""
    return round(seconds * 1e9)


def _parse_protocol(text: str) -> str:
    if text not in ("http1", "http2", "grpc"):
        raise ValueError("expected http1, http2 or grpc")
    return text


def _parse_lb_policy(text: str) -> str:
    if text not in _LB_POLICIES:
        raise ValueError(f"expected one of {', '.join(_LB_POLICIES)}")
    return text


def _parse_count(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        number = int(text)
        if not minimum <= number <= 2**32 - 1:
            raise ValueError(f"expected an integer >= {minimum}")
        return number

    return parse


def _parse_percent(text: str) -> float:
    number = float(text)
    if not 0 <= number <= 100:
        raise ValueError("expected a percentage from 0 to 100")
    return number


def _agreed_value(service: str, key: str, view: ServiceView, warnings: list[str]) -> str | None:
    """The value of meta ``key`` across instances: the most common, ties → the smallest."""
    counts = collections.Counter(
        value for inst in view.all_instances() for k, value in inst.meta if k == key
    )
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    if len(ranked) > 1:
        others = ", ".join(repr(clip(v)) for v, _ in ranked[1:6])
        warnings.append(
            f"service {service!r}: instances disagree on meta {key!r}; "
            f"using {clip(ranked[0][0])!r} (also seen: {others})"
        )
    return ranked[0][0]


def service_options(
    view: ServiceView, settings: BuildSettings
) -> tuple[_ServiceOptions, list[str]]:
    """Read the per-service settings from service meta; returns (options, warnings)."""
    options = _ServiceOptions(connect_timeout=settings.connect_timeout)
    warnings: list[str] = []

    def read(key: str, parse: Callable[[str], Any]) -> Any:
        raw = _agreed_value(view.name, key, view, warnings)
        if raw is None:
            return None
        try:
            return parse(raw)
        except ValueError as exc:
            warnings.append(
                f"service {view.name!r}: meta {key}={clip(raw)!r} is invalid ({exc}); default used"
            )
            return None

    if (protocol := read("xds-protocol", _parse_protocol)) is not None:
        options.protocol = protocol
    if (timeout := read("xds-connect-timeout", parse_seconds)) is not None:
        options.connect_timeout = timeout
    if (policy := read("xds-lb-policy", _parse_lb_policy)) is not None:
        options.lb_policy = policy
    if (panic := read("xds-panic-threshold", _parse_percent)) is not None:
        options.panic_threshold = panic
    for key, field_name in _CIRCUIT_BREAKER_FIELDS.items():
        minimum = 0 if field_name == "max_retries" else 1
        if (count := read(key, _parse_count(minimum))) is not None:
            options.circuit_breakers[field_name] = count
    return options, warnings


# ---------------------------------------------------------------- endpoints
#: The largest load balancing weight Envoy's UInt32Value can carry (Consul allows any integer).
MAX_WEIGHT = 2**32 - 1


def endpoint_health(instance: Instance, settings: BuildSettings) -> tuple[int, int]:
    """(Envoy HealthStatus, load balancing weight from 1 to :data:`MAX_WEIGHT`) of one
    instance."""
    health = instance.health
    if health == Health.PASSING:
        return health_check_pb2.HEALTHY, _weight(instance.weight_passing)
    if health == Health.WARNING and settings.warning_is_healthy:
        if instance.weight_warning <= 0:
            return health_check_pb2.DEGRADED, 1
        return health_check_pb2.HEALTHY, _weight(instance.weight_warning)
    return health_check_pb2.UNHEALTHY, _weight(instance.weight_passing)


def _weight(value: int) -> int:
    return min(max(1, value), MAX_WEIGHT)


def _endpoint_metadata(instance: Instance) -> base_pb2.Metadata:
    metadata = base_pb2.Metadata()
    consul = struct_pb2.Struct()
    consul.update(
        {
            "id": instance.id,
            "node": instance.node,
            "datacenter": instance.datacenter,
            "tags": list(instance.tags),
        }
    )
    metadata.filter_metadata["consul"].CopyFrom(consul)
    if instance.meta:  # service meta, where Envoy's subset load balancer looks
        metadata.filter_metadata["envoy.lb"].update(dict(instance.meta))
    return metadata


def _lb_endpoint(instance: Instance, settings: BuildSettings) -> endpoint_components_pb2.LbEndpoint:
    status, weight = endpoint_health(instance, settings)
    endpoint = endpoint_components_pb2.LbEndpoint(health_status=status)
    endpoint.load_balancing_weight.value = weight
    socket = endpoint.endpoint.address.socket_address
    socket.address = instance.address
    socket.port_value = instance.port
    endpoint.endpoint.hostname = instance.node
    endpoint.metadata.CopyFrom(_endpoint_metadata(instance))
    return endpoint


def load_assignment(
    view: ServiceView, settings: BuildSettings, dns: bool = False
) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[str]]:
    """Instances by datacenter → localities with contiguous priorities in failover order.

    For a DNS cluster (``dns``), instances that are not healthy are left out: Envoy resolves
    and load-balances every inline host, whatever health status it carries.
    """
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name(view.name, settings))
    warnings: list[str] = []
    priority = 0
    for datacenter in view.datacenters:
        endpoints = []
        for instance in view.instances.get(datacenter, ()):
            if instance.port == 0:
                warnings.append(
                    f"service {view.name!r}: instance {clip(instance.id)!r} has no port; left out"
                )
                continue
            if max(instance.weight_passing, instance.weight_warning) > MAX_WEIGHT:
                warnings.append(
                    f"service {view.name!r}: instance {clip(instance.id)!r} has Weights above "
                    f"{MAX_WEIGHT}; capped"
                )
            endpoint = _lb_endpoint(instance, settings)
            if dns and endpoint.health_status == health_check_pb2.UNHEALTHY:
                continue
            endpoints.append(endpoint)
        if not endpoints:
            continue
        locality = assignment.endpoints.add(priority=priority)
        locality.locality.region = datacenter
        locality.load_balancing_weight.value = 1  # gRPC clients ignore localities without one
        locality.lb_endpoints.extend(endpoints)
        priority += 1
    return assignment, warnings


# ---------------------------------------------------------------- clusters
def _http2_options() -> any_pb2.Any:
    options = http_protocol_options_pb2.HttpProtocolOptions()
    options.explicit_http_config.http2_protocol_options.CopyFrom(
        protocol_pb2.Http2ProtocolOptions()
    )
    packed = any_pb2.Any()
    packed.Pack(options)
    return packed


def _ads_config() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def build_cluster(
    view: ServiceView, settings: BuildSettings, options: _ServiceOptions, dns: bool
) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=cluster_name(view.name, settings),
        lb_policy=_LB_POLICIES[options.lb_policy],
    )
    cluster.connect_timeout.FromNanoseconds(nanoseconds(options.connect_timeout))
    cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
        percent_pb2.Percent(value=options.panic_threshold)
    )
    if dns:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        cluster.dns_refresh_rate.FromNanoseconds(nanoseconds(settings.dns_refresh_rate))
        cluster.respect_dns_ttl = True
    else:
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(_ads_config())
    if options.protocol in ("http2", "grpc"):
        cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(_http2_options())
    if options.circuit_breakers:
        thresholds = circuit_breaker_pb2.CircuitBreakers.Thresholds()
        for field_name, value in sorted(options.circuit_breakers.items()):
            getattr(thresholds, field_name).value = value
        cluster.circuit_breakers.thresholds.append(thresholds)
    metadata = struct_pb2.Struct()
    metadata.update({"service": view.name, "tags": list(view.tags), "protocol": options.protocol})
    cluster.metadata.filter_metadata["consul"].CopyFrom(metadata)
    return cluster


def build_service(view: ServiceView, settings: BuildSettings) -> BuiltService:
    """One Consul service (all datacenters) → its Envoy resources and any warnings."""
    options, warnings = service_options(view, settings)
    dns = any(not is_ip(i.address) for i in view.all_instances())
    assignment, endpoint_warnings = load_assignment(view, settings, dns)
    warnings.extend(endpoint_warnings)
    cluster = build_cluster(view, settings, options, dns)
    if dns:
        cluster.load_assignment.CopyFrom(assignment)
        return BuiltService(cluster, None, tuple(warnings))
    return BuiltService(cluster, assignment, tuple(warnings))
