"""A compiled chain's targets → Envoy ``Cluster`` + ``ClusterLoadAssignment`` (pure functions).

Each target is its own cluster (names in :mod:`bridge.traffic.naming`), built like a plain
service's cluster (:mod:`bridge.resources`: health, weights, service meta settings, hostname
addresses as STRICT_DNS) with the entries on top:

* endpoints: the target's instances in its datacenter that match the subset filter; a subset that
  matches nothing gets an empty assignment (no traffic, no NACK). ``OnlyPassing``: instances with a
  warning check are unhealthy too.
* failover: priority levels in one assignment — the target at priority 0, then each failover
  target in order (empty levels left out, priorities stay contiguous). Envoy and proxyless gRPC
  both implement priorities, and one cluster per target keeps CDS small; Envoy's aggregate
  cluster would need one more cluster per target and an extension gRPC clients may lack. Without a
  resolver ``Failover`` a target in the local datacenter keeps the bridge's datacenter order.
* resolver ``ConnectTimeout`` (else ``UpstreamConfig`` ``ConnectTimeoutMs``) → ``connect_timeout``;
  ``LoadBalancer`` → ``lb_policy`` with ring-hash sizes or least-request choice count;
  ``UpstreamConfig`` ``Limits`` → circuit breakers; ``PassiveHealthCheck`` → ``outlier_detection``;
  protocol http2/grpc → HTTP/2 to the upstream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Protocol, TypeVar

from envoy.config.cluster.v3 import cluster_pb2, outlier_detection_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from bridge.model import Instance, ServiceView
from bridge.resources import (
    BuildSettings,
    BuiltService,
    build_cluster,
    is_ip,
    load_assignment,
    service_options,
)

from .chain_model import Chain, Level, TargetCluster
from .entries import PassiveHealthCheck, UpstreamLimits
from .naming import target_cluster_name

if TYPE_CHECKING:  # what this module uses of bridge.resources' (private) per-service options
    from _typeshed import DataclassInstance

    class _ServiceOptions(DataclassInstance, Protocol):
        circuit_breakers: dict[str, int]


_Options = TypeVar("_Options", bound="_ServiceOptions")

_LIMITS = (
    ("max_connections", "max_connections"),
    ("max_pending_requests", "max_pending_requests"),
    ("max_concurrent_requests", "max_requests"),
)


def build_chain_clusters(
    chain: Chain, catalog: Mapping[str, ServiceView], settings: BuildSettings
) -> list[BuiltService]:
    """Every cluster the chain's routes use, with its endpoints, in target order."""
    return [build_target_cluster(c, chain.datacenter, catalog, settings) for c in chain.clusters]


def build_target_cluster(
    target: TargetCluster,
    local_datacenter: str,
    catalog: Mapping[str, ServiceView],
    settings: BuildSettings,
) -> BuiltService:
    """One target's cluster and assignment; warnings name what could not be known or used."""
    name = target_cluster_name(target.target, local_datacenter, settings)
    warnings: list[str] = []
    levels = _levels(target, local_datacenter, catalog)
    selected = [(level, _instances(level, catalog, warnings)) for level in levels]
    dns = any(not is_ip(i.address) for _, found in selected for i in found)

    service = target.target.service
    full_view = catalog.get(service) or ServiceView(service, ())
    options, option_warnings = service_options(full_view, settings)
    warnings.extend(option_warnings)
    options = _with_entries(options, target)
    own: dict[str, tuple[Instance, ...]] = {}  # the target service's own instances, for metadata
    for level, found in selected:
        if level.target.service == service:
            own[level.target.datacenter] = own.get(level.target.datacenter, ()) + found
    cluster = build_cluster(ServiceView(service, tuple(own), own), settings, options, dns)
    cluster.name = name
    _apply_lb(cluster, target)
    if target.upstream is not None and target.upstream.passive_health_check is not None:
        cluster.outlier_detection.CopyFrom(_outlier(target.upstream.passive_health_check))
    if target.target.subset or target.target.datacenter != local_datacenter or target.resolver:
        consul = cluster.metadata.filter_metadata["consul"]
        consul.update({"subset": target.target.subset, "datacenter": target.target.datacenter})
        consul.update({"resolver": target.resolver})

    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for level, found in selected:
        only_passing = level.subset.only_passing
        level_settings = replace(settings, warning_is_healthy=False) if only_passing else settings
        dc = level.target.datacenter
        view = ServiceView(level.target.service, (dc,), {dc: found})
        part, part_warnings = load_assignment(view, level_settings, dns)
        warnings.extend(part_warnings)
        for locality in part.endpoints:
            assignment.endpoints.append(locality)
            assignment.endpoints[-1].priority = len(assignment.endpoints) - 1
    if dns:
        cluster.load_assignment.CopyFrom(assignment)
        return BuiltService(cluster, None, tuple(warnings))
    return BuiltService(cluster, assignment, tuple(warnings))


def _levels(
    target: TargetCluster, local_datacenter: str, catalog: Mapping[str, ServiceView]
) -> list[Level]:
    if target.failover or target.target.datacenter != local_datacenter:
        return [target.primary, *target.failover]
    view = catalog.get(target.target.service)
    order = view.datacenters if view is not None and view.datacenters else (local_datacenter,)
    return [Level(replace(target.target, datacenter=dc), target.primary.subset) for dc in order]


def _instances(
    level: Level, catalog: Mapping[str, ServiceView], warnings: list[str]
) -> tuple[Instance, ...]:
    service, dc = level.target.service, level.target.datacenter
    view = catalog.get(service)
    if view is None or dc not in view.datacenters:
        warnings.append(f"instances of service {service!r} in datacenter {dc!r} are not known")
        return ()
    found = view.instances.get(dc, ())
    subset_filter = level.subset.filter
    if subset_filter is None:
        return found
    return tuple(i for i in found if subset_filter.matches(i))


def _with_entries(options: _Options, target: TargetCluster) -> _Options:
    """The service's meta-derived options with the config entries' settings on top."""
    changes: dict[str, object] = {}
    if target.protocol in ("http2", "grpc"):
        changes["protocol"] = target.protocol
    upstream = target.upstream
    timeout = target.connect_timeout or (upstream.connect_timeout if upstream else None)
    if timeout:
        changes["connect_timeout"] = timeout
    if target.load_balancer is not None and target.load_balancer.policy:
        changes["lb_policy"] = target.load_balancer.policy
    if upstream is not None and upstream.limits is not None:
        changes["circuit_breakers"] = options.circuit_breakers | _limits(upstream.limits)
    return replace(options, **changes)


def _limits(limits: UpstreamLimits) -> dict[str, int]:
    out = {}
    for attribute, envoy_field in _LIMITS:
        value = getattr(limits, attribute)
        if value is not None and value > 0:
            out[envoy_field] = value
    return out


def _apply_lb(cluster: cluster_pb2.Cluster, target: TargetCluster) -> None:
    lb = target.load_balancer
    if lb is None:
        return
    if lb.policy == "ring_hash":
        if lb.minimum_ring_size:
            cluster.ring_hash_lb_config.minimum_ring_size.value = lb.minimum_ring_size
        if lb.maximum_ring_size:
            cluster.ring_hash_lb_config.maximum_ring_size.value = lb.maximum_ring_size
    elif lb.policy == "least_request" and lb.choice_count:
        cluster.least_request_lb_config.choice_count.value = lb.choice_count


def _outlier(check: PassiveHealthCheck) -> outlier_detection_pb2.OutlierDetection:
    detection = outlier_detection_pb2.OutlierDetection()
    if check.interval:
        detection.interval.FromNanoseconds(round(check.interval * 1e9))
    if check.max_failures:
        detection.consecutive_5xx.value = check.max_failures
    if check.enforcing_consecutive_5xx is not None:
        detection.enforcing_consecutive_5xx.value = check.enforcing_consecutive_5xx
    if check.max_ejection_percent is not None:
        detection.max_ejection_percent.value = check.max_ejection_percent
    if check.base_ejection_time:
        detection.base_ejection_time.FromNanoseconds(round(check.base_ejection_time * 1e9))
    return detection
