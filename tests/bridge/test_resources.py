"""Consul JSON → Envoy clusters and endpoints: what an operator's Consul data turns into."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from bridge.model import Health, ServiceView, parse_health_service
from bridge.resources import HTTP_PROTOCOL_OPTIONS, BuildSettings, build_service


def entry(
    instance_id: str,
    *,
    service: str = "web",
    address: str = "10.0.0.1",
    node_address: str = "10.9.9.9",
    node: str = "node1",
    port: int = 8080,
    status: str = "passing",
    weights: dict[str, int] | None = None,
    meta: dict[str, str] | None = None,
    node_checks: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    """One element of /v1/health/service/<name>, shaped as Consul returns it."""
    checks = [
        {"CheckID": "serfHealth", "Name": "Serf", "Status": "passing", "ServiceID": ""},
        {
            "CheckID": f"service:{instance_id}",
            "Name": "check",
            "Status": status,
            "ServiceID": instance_id,
        },
    ]
    checks += [{"CheckID": cid, "Status": st, "ServiceID": ""} for cid, st in node_checks]
    return {
        "Node": {"Node": node, "Address": node_address, "Datacenter": "dc1", "Meta": {}},
        "Service": {
            "ID": instance_id,
            "Service": service,
            "Tags": ["v1"],
            "Address": address,
            "Port": port,
            "Meta": meta or {},
            "Weights": weights or {"Passing": 1, "Warning": 1},
        },
        "Checks": checks,
    }


def view(*per_dc: tuple[str, list[dict[str, Any]]], name: str = "web") -> ServiceView:
    instances = {dc: parse_health_service(body, dc)[0] for dc, body in per_dc}
    return ServiceView(name=name, datacenters=tuple(dc for dc, _ in per_dc), instances=instances)


def endpoints(cla: endpoint_pb2.ClusterLoadAssignment) -> dict[str, tuple[int, int, int]]:
    """address:port → (health status, weight, priority)."""
    return {
        f"{lb.endpoint.address.socket_address.address}:"
        f"{lb.endpoint.address.socket_address.port_value}": (
            lb.health_status,
            lb.load_balancing_weight.value,
            locality.priority,
        )
        for locality in cla.endpoints
        for lb in locality.lb_endpoints
    }


HEALTHY, UNHEALTHY, DEGRADED = (
    health_check_pb2.HEALTHY,
    health_check_pb2.UNHEALTHY,
    health_check_pb2.DEGRADED,
)


def test_one_eds_cluster_and_assignment_per_service_named_after_it() -> None:
    built = build_service(view(("dc1", [entry("web-1")])), BuildSettings())
    assert built.cluster.name == "web"
    assert built.cluster.type == cluster_pb2.Cluster.EDS
    assert built.cluster.eds_cluster_config.eds_config.HasField("ads")
    assert built.load_assignment is not None
    assert built.load_assignment.cluster_name == "web"
    assert built.warnings == ()
    prefixed = build_service(view(("dc1", [entry("web-1")])), BuildSettings(cluster_prefix="c."))
    assert prefixed.cluster.name == "c.web"
    assert prefixed.load_assignment is not None
    assert prefixed.load_assignment.cluster_name == "c.web"


def test_service_address_wins_and_node_address_is_the_fallback() -> None:
    built = build_service(
        view(("dc1", [entry("web-1", address="10.0.0.5"), entry("web-2", address="")])),
        BuildSettings(),
    )
    assert built.load_assignment is not None
    assert set(endpoints(built.load_assignment)) == {"10.0.0.5:8080", "10.9.9.9:8080"}


def test_health_states_map_to_envoy_health_and_weights() -> None:
    body = [
        entry("a", address="10.0.0.1", weights={"Passing": 10, "Warning": 3}),
        entry("b", address="10.0.0.2", status="warning", weights={"Passing": 10, "Warning": 3}),
        entry("c", address="10.0.0.3", status="critical"),
        entry("d", address="10.0.0.4", status="warning", weights={"Passing": 5, "Warning": 0}),
        entry("e", address="10.0.0.5", node_checks=(("_node_maintenance", "critical"),)),
        entry("f", address="10.0.0.6", node_checks=(("_service_maintenance:f", "critical"),)),
        entry("g", address="10.0.0.7", node_checks=(("disk", "critical"),)),
    ]
    built = build_service(view(("dc1", body)), BuildSettings())
    assert built.load_assignment is not None
    got = {
        addr.split(":")[0]: (h, w) for addr, (h, w, _) in endpoints(built.load_assignment).items()
    }
    assert got == {
        "10.0.0.1": (HEALTHY, 10),
        "10.0.0.2": (HEALTHY, 3),
        "10.0.0.3": (UNHEALTHY, 1),
        "10.0.0.4": (DEGRADED, 1),  # Weights.Warning 0: only used when nothing better is left
        "10.0.0.5": (UNHEALTHY, 1),
        "10.0.0.6": (UNHEALTHY, 1),
        "10.0.0.7": (UNHEALTHY, 1),
    }


def test_a_check_status_the_bridge_does_not_know_is_never_taken_for_passing() -> None:
    body = [
        entry("a", address="10.0.0.1"),
        entry("b", address="10.0.0.2", status="degraded"),  # not a Consul status (yet)
        entry("c", address="10.0.0.3", status=""),
    ]
    instances, problems = parse_health_service(body, "dc1")
    assert problems == []
    assert [i.health for i in instances] == [Health.PASSING, Health.CRITICAL, Health.CRITICAL]
    built = build_service(view(("dc1", body)), BuildSettings())
    assert built.load_assignment is not None
    got = {addr.split(":")[0]: h for addr, (h, _, _) in endpoints(built.load_assignment).items()}
    assert got == {
        "10.0.0.1": HEALTHY,
        "10.0.0.2": UNHEALTHY,
        "10.0.0.3": UNHEALTHY,
    }


def test_warning_can_be_treated_as_unhealthy() -> None:
    built = build_service(
        view(("dc1", [entry("a", status="warning")])), BuildSettings(warning_is_healthy=False)
    )
    assert built.load_assignment is not None
    assert [h for h, _, _ in endpoints(built.load_assignment).values()] == [UNHEALTHY]


def test_datacenters_become_localities_with_failover_priorities() -> None:
    built = build_service(
        view(
            ("dc1", [entry("local", address="10.0.0.1")]),
            ("dc-empty", []),
            ("dc2", [entry("remote", address="10.2.0.1")]),
        ),
        BuildSettings(),
    )
    assert built.load_assignment is not None
    localities = [(lle.locality.region, lle.priority) for lle in built.load_assignment.endpoints]
    assert localities == [("dc1", 0), ("dc2", 1)]  # priorities stay contiguous
    assert built.cluster.common_lb_config.healthy_panic_threshold.value == 0


def test_hostname_addresses_make_a_dns_cluster_without_unhealthy_hosts() -> None:
    body = [
        entry("a", address="api.internal.example"),
        entry("b", address="10.0.0.2"),
        entry("c", address="down.internal.example", status="critical"),
    ]
    built = build_service(view(("dc1", body)), BuildSettings())
    assert built.load_assignment is None
    cluster = built.cluster
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.load_assignment.cluster_name == "web"
    assert set(endpoints(cluster.load_assignment)) == {"api.internal.example:8080", "10.0.0.2:8080"}


def test_meta_sets_protocol_timeout_lb_policy_and_circuit_breakers() -> None:
    meta = {
        "xds-protocol": "grpc",
        "xds-connect-timeout": "250ms",
        "xds-lb-policy": "least_request",
        "xds-max-connections": "64",
        "xds-max-retries": "0",
        "xds-panic-threshold": "50",
    }
    cluster = build_service(view(("dc1", [entry("a", meta=meta)])), BuildSettings()).cluster
    options = http_protocol_options_pb2.HttpProtocolOptions()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
    assert options.explicit_http_config.HasField("http2_protocol_options")
    assert cluster.connect_timeout.ToMilliseconds() == 250
    assert cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    thresholds = cluster.circuit_breakers.thresholds[0]
    assert thresholds.max_connections.value == 64
    assert thresholds.HasField("max_retries")
    assert thresholds.max_retries.value == 0
    assert cluster.common_lb_config.healthy_panic_threshold.value == 50


def test_invalid_meta_warns_and_keeps_the_default() -> None:
    built = build_service(
        view(("dc1", [entry("a", meta={"xds-protocol": "smtp", "xds-connect-timeout": "-1s"})])),
        BuildSettings(connect_timeout=2.0),
    )
    assert not built.cluster.typed_extension_protocol_options
    assert built.cluster.connect_timeout.ToSeconds() == 2
    assert len(built.warnings) == 2
    assert all("service 'web': meta xds-" in w and "default used" in w for w in built.warnings)


def test_conflicting_meta_resolves_to_the_majority_with_a_warning() -> None:
    body = [
        entry("a", address="10.0.0.1", meta={"xds-lb-policy": "random"}),
        entry("b", address="10.0.0.2", meta={"xds-lb-policy": "maglev"}),
        entry("c", address="10.0.0.3", meta={"xds-lb-policy": "random"}),
    ]
    built = build_service(view(("dc1", body)), BuildSettings())
    assert built.cluster.lb_policy == cluster_pb2.Cluster.RANDOM
    assert built.warnings == (
        "service 'web': instances disagree on meta 'xds-lb-policy'; using 'random' "
        "(also seen: 'maglev')",
    )
    tie = build_service(view(("dc1", body[:2])), BuildSettings())
    reversed_tie = build_service(view(("dc1", body[1::-1])), BuildSettings())
    assert tie.cluster.lb_policy == reversed_tie.cluster.lb_policy == cluster_pb2.Cluster.MAGLEV


def test_instances_without_a_port_are_left_out_with_a_warning() -> None:
    built = build_service(
        view(("dc1", [entry("a", address="10.0.0.1"), entry("b", port=0)])), BuildSettings()
    )
    assert built.load_assignment is not None
    assert set(endpoints(built.load_assignment)) == {"10.0.0.1:8080"}
    assert built.warnings == ("service 'web': instance 'b' has no port; left out",)


def test_building_is_deterministic() -> None:
    body = [entry("b", address="10.0.0.2"), entry("a", address="10.0.0.1")]
    first = build_service(view(("dc1", body)), BuildSettings())
    second = build_service(view(("dc1", list(reversed(body)))), BuildSettings())
    assert first.cluster.SerializeToString(deterministic=True) == second.cluster.SerializeToString(
        deterministic=True
    )
    assert first.load_assignment == second.load_assignment


def test_a_connect_timeout_that_rounds_to_zero_or_is_not_finite_is_refused() -> None:
    for raw in ("0.0000000001", "0.0000000004s", "nan", "inf", "1e400", "0", "0ms"):
        built = build_service(
            view(("dc1", [entry("a", meta={"xds-connect-timeout": raw})])),
            BuildSettings(connect_timeout=2.0),
        )
        assert built.cluster.connect_timeout.ToSeconds() == 2, raw
        (warning,) = built.warnings
        assert warning.startswith(f"service 'web': meta xds-connect-timeout={raw!r} is invalid")
    tiny = build_service(
        view(("dc1", [entry("a", meta={"xds-connect-timeout": "0.0000000006"})])), BuildSettings()
    )
    assert tiny.cluster.connect_timeout.nanos == 1  # rounded, never truncated to 0


def test_long_meta_values_are_cut_in_warnings() -> None:
    built = build_service(
        view(("dc1", [entry("a", meta={"xds-lb-policy": "x" * 100_000})])), BuildSettings()
    )
    (warning,) = built.warnings
    assert len(warning) < 400
    assert "chars)" in warning
