"""The gRPC variant of a service: only what gRPC clients accept, and a warning wherever it differs
from what Envoy gets. (Real clients accepting it: ``tests/proxyless/test_grpc_variant.py``.)"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2

from bridge.client_kinds import classify
from bridge.grpc_shaping import chosen_policy, grpc_warnings, shape_for_grpc
from bridge.model import Check, Instance, ServiceView
from bridge.resources import BuildSettings, BuiltService, build_service

NODE = classify(base_pb2.Node(user_agent_name="gRPC Node Pure JS", user_agent_version="1.14.1"))
JAVA = classify(base_pb2.Node(user_agent_name="gRPC Java", user_agent_version="1.68.1"))


def inst(
    n: int,
    *,
    address: str = "",
    meta: dict[str, str] | None = None,
    status: str = "passing",
    weight: int = 1,
    dc: str = "dc1",
) -> Instance:
    return Instance(
        service="web",
        id=f"web-{n}",
        node=f"node{n}",
        datacenter=dc,
        address=address or f"10.0.0.{n}",
        port=8000 + n,
        meta=tuple(sorted((meta or {}).items())),
        weight_passing=weight,
        checks=(Check(f"service:web-{n}", "c", status, f"web-{n}"),),
    )


def service(*instances: Instance, datacenters: tuple[str, ...] = ("dc1",)) -> BuiltService:
    by_dc = {dc: tuple(i for i in instances if i.datacenter == dc) for dc in datacenters}
    return build_service(ServiceView("web", datacenters, by_dc), BuildSettings())


def policy_names(cluster: cluster_pb2.Cluster) -> list[str]:
    return [
        p.typed_extension_config.name.rsplit(".", 1)[-1]
        for p in cluster.load_balancing_policy.policies
    ]


def test_round_robin_eds_service_keeps_its_name_and_shared_endpoints() -> None:
    built = service(inst(1), inst(2))
    shaped = shape_for_grpc(built)
    [cluster] = shaped.clusters
    assert cluster.name == "web"
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.eds_config.HasField("ads")
    assert policy_names(cluster) == ["round_robin"]
    assert shaped.load_assignments == (built.load_assignment,)  # the shared resource, as is
    assert shaped.warnings == ()


def test_only_fields_grpc_reads_are_kept() -> None:
    meta = {
        "xds-protocol": "grpc",
        "xds-connect-timeout": "2s",
        "xds-panic-threshold": "20",
        "xds-max-requests": "100",
        "xds-max-connections": "10",
    }
    [cluster] = shape_for_grpc(service(inst(1, meta=meta))).clusters
    present = {field.name for field, _ in cluster.ListFields()}
    assert present == {
        "name",
        "type",
        "eds_cluster_config",
        "load_balancing_policy",
        "circuit_breakers",
        "metadata",
    }
    [threshold] = cluster.circuit_breakers.thresholds
    assert [f.name for f, _ in threshold.ListFields()] == ["max_requests"]
    assert threshold.max_requests.value == 100


def test_policies_become_fallback_lists_every_grpc_client_can_pick_from() -> None:
    def shaped(policy: str) -> cluster_pb2.Cluster:
        return shape_for_grpc(service(inst(1, meta={"xds-lb-policy": policy}))).clusters[0]

    assert policy_names(shaped("least_request")) == ["least_request", "round_robin"]
    assert policy_names(shaped("ring_hash")) == ["ring_hash", "round_robin"]
    assert policy_names(shaped("maglev")) == ["ring_hash", "round_robin"]
    assert policy_names(shaped("random")) == ["round_robin"]
    ring = ring_hash_pb2.RingHash()
    shaped("ring_hash").load_balancing_policy.policies[
        0
    ].typed_extension_config.typed_config.Unpack(ring)
    assert ring.hash_function == ring_hash_pb2.RingHash.XX_HASH  # gRPC rejects DEFAULT_HASH
    least = least_request_pb2.LeastRequest()
    shaped("least_request").load_balancing_policy.policies[
        0
    ].typed_extension_config.typed_config.Unpack(least)
    assert least.choice_count.value == 2


def test_warning_names_the_policy_a_client_uses_instead() -> None:
    built = service(inst(1, meta={"xds-lb-policy": "least_request"}))
    assert chosen_policy("least_request", NODE) == "round_robin"
    assert chosen_policy("least_request", JAVA) == "least_request"
    assert grpc_warnings(built, NODE) == [
        "service 'web': xds-lb-policy least_request has no equivalent in gRPC node 1.14.1; "
        "it uses round_robin"
    ]
    assert grpc_warnings(built, JAVA) == []
    maglev = service(inst(1, meta={"xds-lb-policy": "maglev"}))
    assert "it uses ring_hash" in grpc_warnings(maglev, NODE)[0]
    random = service(inst(1, meta={"xds-lb-policy": "random"}))
    assert "it uses round_robin" in grpc_warnings(random, JAVA)[0]


def test_settings_grpc_ignores_are_warned_once_per_service() -> None:
    built = service(
        inst(1, weight=3, meta={"xds-panic-threshold": "10", "xds-max-retries": "3"}),
        inst(2, weight=1),
        inst(3, status="warning"),  # Weights.Warning 1: HEALTHY, no DEGRADED
    )
    warnings = shape_for_grpc(built).warnings
    assert len(warnings) == 3
    assert "different weights" in warnings[0]
    assert "xds-panic-threshold" in warnings[1]
    assert "ignored: max_retries" in warnings[2]
    hashing = service(inst(1, weight=3, meta={"xds-lb-policy": "ring_hash"}), inst(2))
    assert shape_for_grpc(hashing).warnings == ()  # ring_hash honours weights


def test_hostnames_become_an_aggregate_of_logical_dns_clusters() -> None:
    built = service(inst(1, address="db.example.com"), inst(2, address="db.example.com"))
    shaped = shape_for_grpc(built)
    aggregate, dns, _ = shaped.clusters
    assert aggregate.name == "web"
    assert aggregate.cluster_type.name == "envoy.clusters.aggregate"
    config = aggregate_pb2.ClusterConfig()
    aggregate.cluster_type.typed_config.Unpack(config)
    assert list(config.clusters) == ["web~dns~db.example.com:8001", "web~dns~db.example.com:8002"]
    assert dns.type == cluster_pb2.Cluster.LOGICAL_DNS
    [locality] = dns.load_assignment.endpoints
    [endpoint] = locality.lb_endpoints
    assert endpoint.endpoint.address.socket_address.address == "db.example.com"
    assert shaped.load_assignments == ()
    assert "failover order" in shaped.warnings[0]
    one = shape_for_grpc(service(inst(1, address="db.example.com")))
    assert [c.name for c in one.clusters] == ["web", "web~dns~db.example.com:8001"]
    assert one.warnings == ()  # one hostname: the client balances what it resolves


def test_mixed_addresses_put_ip_instances_first_with_their_own_endpoints() -> None:
    built = service(
        inst(1, address="10.0.0.1"),
        inst(2, address="db.example.com"),
        inst(3, address="10.0.0.3", status="critical"),
        inst(4, address="10.0.1.4", dc="dc2"),
        datacenters=("dc1", "dc2"),
    )
    shaped = shape_for_grpc(built)
    assert [c.name for c in shaped.clusters] == ["web", "web~eds", "web~dns~db.example.com:8002"]
    [assignment] = shaped.load_assignments
    assert assignment.cluster_name == "web~eds"
    by_priority = {
        loc.priority: [e.endpoint.address.socket_address.address for e in loc.lb_endpoints]
        for loc in assignment.endpoints
    }
    assert by_priority == {0: ["10.0.0.1"], 1: ["10.0.1.4"]}  # the critical one left out
    assert policy_names(shaped.clusters[1]) == ["round_robin"]


def test_no_healthy_instance_leaves_an_empty_eds_child() -> None:
    built = service(inst(1, address="db.example.com", status="critical"))
    shaped = shape_for_grpc(built)
    assert [c.name for c in shaped.clusters] == ["web", "web~eds"]
    [assignment] = shaped.load_assignments
    assert list(assignment.endpoints) == []
