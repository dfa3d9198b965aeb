"""The gRPC variant of a service's resources: what a proxyless gRPC client accepts (pure functions).

The bridge builds every service for Envoy (:mod:`bridge.resources`). Real gRPC clients NACK parts
of that (measured with ``@grpc/grpc-js-xds`` 1.14.1 and grpcio 1.85.3):

* ``lb_policy`` LEAST_REQUEST, MAGLEV, RANDOM — Node: ``load_balancing_policy unset and
  unsupported lb_policy: LEAST_REQUEST``; C-core: ``field:lb_policy error:LB policy is not
  supported``;
* ``type: STRICT_DNS`` (a service with a hostname-addressed instance) — Node: ``Unsupported type
  STRICT_DNS``; C-core: ``field:type error:unknown discovery type``.

:func:`shape_for_grpc` turns a :class:`~bridge.resources.BuiltService` into one variant that every
gRPC client accepts:

* the policy as ``load_balancing_policy`` (gRFC A52) with typed policies, as a *fallback list*:
  a client uses the first entry it implements (least_request → [least_request, round_robin],
  ring_hash and maglev → [ring_hash (XX_HASH), round_robin], random → [round_robin]), so one
  resource serves every gRPC language;
* only fields gRPC reads: name, discovery type, EDS config, metadata, the DEFAULT
  ``max_requests`` circuit breaker (gRFC A32) — no ``lb_policy`` enum, ``common_lb_config``,
  HTTP protocol options or DNS settings;
* hostname instances (gRFC A37): an aggregate cluster ``<name>`` whose children are an EDS
  cluster ``<name>~eds`` of the IP-addressed instances (its own ClusterLoadAssignment) and one
  ``LOGICAL_DNS`` cluster ``<name>~dns~<host>:<port>`` per hostname — in failover order, which
  is what an aggregate cluster means (a WARNING says so when there is more than one child).

:func:`grpc_warnings` says, per service and per kind of gRPC client, where a setting has no exact
gRPC equivalent and what the client does instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2
from envoy.config.core.v3 import base_pb2, config_source_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from google.protobuf.message import Message

from .client_kinds import ClientKind, supported_policies
from .resources import BuiltService, is_ip

AGGREGATE_CLUSTER_TYPE = "envoy.clusters.aggregate"
EDS_CHILD_SUFFIX = "~eds"
DNS_CHILD_INFIX = "~dns~"

#: Envoy's ``Cluster.lb_policy`` → the bridge's name of it (``xds-lb-policy`` values).
ENVOY_POLICY_NAMES = {
    cluster_pb2.Cluster.ROUND_ROBIN: "round_robin",
    cluster_pb2.Cluster.LEAST_REQUEST: "least_request",
    cluster_pb2.Cluster.RANDOM: "random",
    cluster_pb2.Cluster.RING_HASH: "ring_hash",
    cluster_pb2.Cluster.MAGLEV: "maglev",
}

#: ``xds-lb-policy`` → the gRPC policies offered, in the order a client should prefer them.
GRPC_POLICY_CHOICES: dict[str, tuple[str, ...]] = {
    "round_robin": ("round_robin",),
    "least_request": ("least_request", "round_robin"),
    "ring_hash": ("ring_hash", "round_robin"),
    "maglev": ("ring_hash", "round_robin"),  # gRPC has no maglev: the other consistent hash
    "random": ("round_robin",),  # gRPC has no random: an even spread without load feedback
}

_HASHING = frozenset({"ring_hash", "maglev"})


@dataclass(frozen=True, slots=True)
class GrpcService:
    """The gRPC variant of one service.

    ``clusters`` starts with the cluster named like the Envoy one (what routes point at), then any
    children; ``load_assignments`` are the EDS resources gRPC clients need for them (the shared
    one, unchanged, for a plain EDS service); ``warnings`` hold for every gRPC client.
    """

    clusters: tuple[cluster_pb2.Cluster, ...]
    load_assignments: tuple[endpoint_pb2.ClusterLoadAssignment, ...]
    warnings: tuple[str, ...] = ()


# ---------------------------------------------------------------- load-balancing policies
def _typed_policy(name: str) -> tuple[str, Message]:
    if name == "round_robin":
        return "envoy.load_balancing_policies.round_robin", round_robin_pb2.RoundRobin()
    if name == "least_request":
        config = least_request_pb2.LeastRequest()
        config.choice_count.value = 2
        return "envoy.load_balancing_policies.least_request", config
    if name == "ring_hash":
        # gRPC accepts only XX_HASH; DEFAULT_HASH (0) is NACKed by grpc-js-xds.
        return "envoy.load_balancing_policies.ring_hash", ring_hash_pb2.RingHash(
            hash_function=ring_hash_pb2.RingHash.XX_HASH
        )
    raise ValueError(f"no typed gRPC policy for {name!r}")


def load_balancing_policy(names: Sequence[str]) -> cluster_pb2.LoadBalancingPolicy:
    """``Cluster.load_balancing_policy`` offering ``names`` in order (gRFC A52)."""
    policy = cluster_pb2.LoadBalancingPolicy()
    for name in names:
        extension_name, config = _typed_policy(name)
        entry = policy.policies.add()
        entry.typed_extension_config.name = extension_name
        entry.typed_extension_config.typed_config.Pack(config)
    return policy


def requested_policy(cluster: cluster_pb2.Cluster) -> str:
    """The bridge's name of the policy an Envoy cluster asks for."""
    return ENVOY_POLICY_NAMES.get(cluster.lb_policy, "round_robin")


def chosen_policy(requested: str, kind: ClientKind) -> str:
    """The policy ``kind`` ends up using for ``requested`` (round_robin when nothing else fits)."""
    supported = supported_policies(kind)
    for name in GRPC_POLICY_CHOICES.get(requested, ("round_robin",)):
        if name in supported:
            return name
    return "round_robin"


# ---------------------------------------------------------------- clusters
def _grpc_cluster(source: cluster_pb2.Cluster, name: str) -> cluster_pb2.Cluster:
    """The fields of ``source`` that gRPC reads, under ``name``, with a typed policy list."""
    cluster = cluster_pb2.Cluster(name=name)
    choices = GRPC_POLICY_CHOICES.get(requested_policy(source), ("round_robin",))
    cluster.load_balancing_policy.CopyFrom(load_balancing_policy(choices))
    for threshold in source.circuit_breakers.thresholds:
        if threshold.priority == base_pb2.DEFAULT and threshold.HasField("max_requests"):
            kept = circuit_breaker_pb2.CircuitBreakers.Thresholds()
            kept.max_requests.CopyFrom(threshold.max_requests)
            cluster.circuit_breakers.thresholds.append(kept)
    cluster.metadata.CopyFrom(source.metadata)
    return cluster


def _ads() -> config_source_pb2.ConfigSource:
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.V3,
    )


def _eds_cluster(source: cluster_pb2.Cluster, name: str) -> cluster_pb2.Cluster:
    cluster = _grpc_cluster(source, name)
    cluster.type = cluster_pb2.Cluster.EDS
    cluster.eds_cluster_config.eds_config.CopyFrom(_ads())
    return cluster


def _dns_cluster(source: cluster_pb2.Cluster, host: str, port: int) -> cluster_pb2.Cluster:
    cluster = _grpc_cluster(source, f"{source.name}{DNS_CHILD_INFIX}{host}:{port}")
    cluster.type = cluster_pb2.Cluster.LOGICAL_DNS
    cluster.load_assignment.cluster_name = cluster.name
    endpoint = cluster.load_assignment.endpoints.add().lb_endpoints.add().endpoint
    endpoint.address.socket_address.address = host
    endpoint.address.socket_address.port_value = port
    return cluster


def _aggregate_cluster(source: cluster_pb2.Cluster, children: Iterable[str]) -> cluster_pb2.Cluster:
    cluster = _grpc_cluster(source, source.name)
    cluster.cluster_type.name = AGGREGATE_CLUSTER_TYPE
    cluster.cluster_type.typed_config.Pack(aggregate_pb2.ClusterConfig(clusters=list(children)))
    return cluster


# ---------------------------------------------------------------- hostname instances
def _socket(endpoint: endpoint_components_pb2.LbEndpoint) -> tuple[str, int]:
    address = endpoint.endpoint.address.socket_address
    return str(address.address), int(address.port_value)


def split_by_address(
    inline: endpoint_pb2.ClusterLoadAssignment, eds_name: str
) -> tuple[endpoint_pb2.ClusterLoadAssignment, list[tuple[str, int]]]:
    """A DNS cluster's inline endpoints → (the IP-addressed ones as an EDS resource named
    ``eds_name``, priorities kept contiguous; the distinct hostnames in priority order)."""
    assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=eds_name)
    hostnames: list[tuple[str, int]] = []
    for locality in sorted(inline.endpoints, key=lambda item: item.priority):
        ip_endpoints = []
        for endpoint in locality.lb_endpoints:
            host, port = _socket(endpoint)
            if is_ip(host):
                ip_endpoints.append(endpoint)
            elif (host, port) not in hostnames:
                hostnames.append((host, port))
        if ip_endpoints:
            kept = assignment.endpoints.add()
            kept.CopyFrom(locality)
            del kept.lb_endpoints[:]
            kept.lb_endpoints.extend(ip_endpoints)
    priorities = sorted({locality.priority for locality in assignment.endpoints})
    for locality in assignment.endpoints:
        locality.priority = priorities.index(locality.priority)
    return assignment, hostnames


def _shape_dns(built: BuiltService, service: str) -> GrpcService:
    source = built.cluster
    eds_name = source.name + EDS_CHILD_SUFFIX
    assignment, hostnames = split_by_address(source.load_assignment, eds_name)
    clusters: list[cluster_pb2.Cluster] = []
    assignments: list[endpoint_pb2.ClusterLoadAssignment] = []
    if assignment.endpoints or not hostnames:
        clusters.append(_eds_cluster(source, eds_name))
        assignments.append(assignment)
    clusters.extend(_dns_cluster(source, host, port) for host, port in hostnames)
    warnings = []
    if len(clusters) > 1:
        names = ", ".join(f"{host}:{port}" for host, port in hostnames)
        order = "after the IP-addressed ones" if assignment.endpoints else "one after another"
        warnings.append(
            f"service {service!r}: gRPC clients reach its hostname-addressed instances ({names}) "
            f"through an aggregate cluster (gRFC A37), in failover order {order}, not "
            "load-balanced with each other"
        )
    aggregate = _aggregate_cluster(source, (cluster.name for cluster in clusters))
    return GrpcService((aggregate, *clusters), tuple(assignments), tuple(warnings))


# ---------------------------------------------------------------- the variant and its warnings
def service_name(cluster: cluster_pb2.Cluster) -> str:
    consul = cluster.metadata.filter_metadata.get("consul")
    if consul is not None and "service" in consul.fields:
        return str(consul.fields["service"].string_value)
    return str(cluster.name)


def shape_for_grpc(built: BuiltService) -> GrpcService:
    """The resources of ``built`` that every gRPC client accepts (see the module docstring)."""
    service = service_name(built.cluster)
    if built.cluster.type in (cluster_pb2.Cluster.STRICT_DNS, cluster_pb2.Cluster.LOGICAL_DNS):
        shaped = _shape_dns(built, service)
    else:
        cluster = _eds_cluster(built.cluster, built.cluster.name)
        assignments = (built.load_assignment,) if built.load_assignment is not None else ()
        shaped = GrpcService((cluster,), assignments)
    return GrpcService(
        shaped.clusters,
        shaped.load_assignments,
        (*shaped.warnings, *_setting_warnings(built, service)),
    )


def _endpoints(built: BuiltService) -> list[endpoint_components_pb2.LbEndpoint]:
    assignment = built.load_assignment or built.cluster.load_assignment
    return [endpoint for locality in assignment.endpoints for endpoint in locality.lb_endpoints]


def _setting_warnings(built: BuiltService, service: str) -> list[str]:
    """Settings every gRPC client ignores or treats differently from Envoy."""
    cluster = built.cluster
    warnings = []
    endpoints = _endpoints(built)
    healthy = [e for e in endpoints if e.health_status == health_check_pb2.HEALTHY]
    weights = {e.load_balancing_weight.value for e in healthy}
    if len(weights) > 1 and requested_policy(cluster) not in _HASHING:
        warnings.append(
            f"service {service!r}: instances have different weights; gRPC's round_robin and "
            "least_request ignore endpoint weights (only ring_hash uses them), so gRPC clients "
            "give every healthy instance an equal share"
        )
    if any(e.health_status == health_check_pb2.DEGRADED for e in endpoints):
        warnings.append(
            f"service {service!r}: instances in Consul 'warning' with Weights.Warning 0 are "
            "DEGRADED; gRPC clients never use them (Envoy does when healthy ones run short)"
        )
    if cluster.common_lb_config.healthy_panic_threshold.value > 0:
        warnings.append(
            f"service {service!r}: xds-panic-threshold has no gRPC equivalent; gRPC clients "
            "never send to unhealthy instances"
        )
    ignored = sorted(
        {
            field.name
            for threshold in cluster.circuit_breakers.thresholds
            for field, _ in threshold.ListFields()
            if field.name not in ("priority", "max_requests")
        }
    )
    if ignored:
        warnings.append(
            f"service {service!r}: gRPC clients apply only the max_requests circuit breaker; "
            f"ignored: {', '.join(ignored)}"
        )
    return warnings


def policy_warning(built: BuiltService, kind: ClientKind) -> str | None:
    """What ``kind`` uses instead of the service's ``xds-lb-policy`` (None: that very policy)."""
    requested = requested_policy(built.cluster)
    chosen = chosen_policy(requested, kind)
    if chosen == requested:
        return None
    return (
        f"service {service_name(built.cluster)!r}: xds-lb-policy {requested} has no equivalent "
        f"in {kind.label}; it uses {chosen}"
    )


def grpc_warnings(built: BuiltService, kind: ClientKind) -> list[str]:
    """What ``kind`` does differently from Envoy for this service: the shaping warnings plus
    the load-balancing policy it ends up with when that is not the one asked for."""
    warnings = list(shape_for_grpc(built).warnings)
    policy = policy_warning(built, kind)
    if policy is not None:
        warnings.append(policy)
    return warnings
