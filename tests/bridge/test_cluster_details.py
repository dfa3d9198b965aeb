"""The details of the clusters and endpoints built from a service: what each Consul meta value
accepts, the DNS cluster's settings, metadata Envoy's subset load balancer and the templates
read, and the weights and priorities of endpoints."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, health_check_pb2
from google.protobuf import duration_pb2

from bridge.model import Check, Instance, ServiceView
from bridge.resources import (
    BuildSettings,
    build_service,
    endpoint_health,
    is_ip,
    load_assignment,
    parse_seconds,
    service_options,
)

HEALTHY, UNHEALTHY, DEGRADED = (
    health_check_pb2.HEALTHY,
    health_check_pb2.UNHEALTHY,
    health_check_pb2.DEGRADED,
)


def instance(
    number: int = 1,
    *,
    address: str = "",
    datacenter: str = "dc1",
    meta: dict[str, str] | None = None,
    status: str = "passing",
    passing: int = 1,
    warning: int = 1,
    tags: tuple[str, ...] = ("v1",),
) -> Instance:
    return Instance(
        service="web",
        id=f"web-{number}",
        node=f"node{number}",
        datacenter=datacenter,
        address=address or f"10.0.0.{number}",
        port=8000 + number,
        tags=tags,
        meta=tuple(sorted((meta or {}).items())),
        weight_passing=passing,
        weight_warning=warning,
        checks=(Check(f"service:web-{number}", "check", status, f"web-{number}"),),
    )


def view(*instances: Instance, datacenters: tuple[str, ...] = ("dc1",)) -> ServiceView:
    by_dc = {dc: tuple(i for i in instances if i.datacenter == dc) for dc in datacenters}
    return ServiceView("web", datacenters, by_dc)


def options_from(meta: dict[str, str]) -> tuple[object, list[str]]:
    return service_options(view(instance(meta=meta)), BuildSettings())


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("2s", 2.0), ("1.5", 1.5), (" 3s ", 3.0), ("3600", 3600.0), ("1ms", 0.001)],
)
def test_durations_in_meta_accept_ms_s_or_plain_seconds(text: str, seconds: float) -> None:
    assert parse_seconds(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["0", "0ms", "-1s", "3601", "3601s", "fast", "2m", ""])
def test_durations_outside_zero_to_an_hour_or_unparsable_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"must be between 0 and 1h|could not convert"):
        parse_seconds(text)


def test_ip_addresses_are_told_from_hostnames() -> None:
    assert is_ip("10.0.0.1")
    assert is_ip("::1")
    assert not is_ip("web.internal")
    assert not is_ip("10.0.0.256")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("round_robin", cluster_pb2.Cluster.ROUND_ROBIN),
        ("least_request", cluster_pb2.Cluster.LEAST_REQUEST),
        ("random", cluster_pb2.Cluster.RANDOM),
        ("ring_hash", cluster_pb2.Cluster.RING_HASH),
        ("maglev", cluster_pb2.Cluster.MAGLEV),
    ],
)
def test_every_lb_policy_is_available(policy: str, expected: int) -> None:
    built = build_service(view(instance(meta={"xds-lb-policy": policy})), BuildSettings())
    assert built.cluster.lb_policy == expected
    assert built.warnings == ()


def test_a_policy_or_protocol_that_does_not_exist_is_named_in_the_warning() -> None:
    built = build_service(
        view(instance(meta={"xds-lb-policy": "fastest", "xds-protocol": "http3"})),
        BuildSettings(),
    )
    assert built.cluster.lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    assert sorted(built.warnings) == [
        "service 'web': meta xds-lb-policy='fastest' is invalid (expected one of round_robin, "
        "least_request, random, ring_hash, maglev); default used",
        "service 'web': meta xds-protocol='http3' is invalid (expected http1, http2 or grpc); "
        "default used",
    ]


@pytest.mark.parametrize(("protocol", "http2"), [("http1", False), ("http2", True), ("grpc", True)])
def test_http2_and_grpc_services_get_http2_upstreams(protocol: str, http2: bool) -> None:
    built = build_service(view(instance(meta={"xds-protocol": protocol})), BuildSettings())
    assert built.warnings == ()  # each of them is a valid value
    cluster = built.cluster
    assert bool(cluster.typed_extension_protocol_options) is http2
    assert cluster.metadata.filter_metadata["consul"]["protocol"] == protocol


@pytest.mark.parametrize(
    ("key", "value", "accepted"),
    [
        ("xds-max-connections", "1", True),
        ("xds-max-connections", "0", False),
        ("xds-max-connections", str(2**32 - 1), True),
        ("xds-max-connections", str(2**32), False),
        ("xds-max-pending-requests", "0", False),
        ("xds-max-requests", "0", False),
        ("xds-max-retries", "0", True),
        ("xds-max-retries", "-1", False),
        ("xds-max-retries", "many", False),
    ],
)
def test_circuit_breaker_counts_have_their_minimum_and_maximum(
    key: str, value: str, accepted: bool
) -> None:
    built = build_service(view(instance(meta={key: value})), BuildSettings())
    field = key.removeprefix("xds-").replace("-", "_")
    thresholds = built.cluster.circuit_breakers.thresholds
    if accepted:
        assert getattr(thresholds[0], field).value == int(value)
        assert built.warnings == ()
    else:
        assert len(thresholds) == 0
        [warning] = built.warnings
        assert f"meta {key}={value!r} is invalid" in warning
        if value.lstrip("-").isdigit():
            minimum = 0 if key == "xds-max-retries" else 1
            assert f"expected an integer >= {minimum}" in warning


def test_all_circuit_breakers_share_one_threshold_entry() -> None:
    meta = {
        "xds-max-connections": "10",
        "xds-max-pending-requests": "20",
        "xds-max-requests": "30",
        "xds-max-retries": "4",
    }
    [thresholds] = build_service(
        view(instance(meta=meta)), BuildSettings()
    ).cluster.circuit_breakers.thresholds
    assert (
        thresholds.max_connections.value,
        thresholds.max_pending_requests.value,
        thresholds.max_requests.value,
        thresholds.max_retries.value,
    ) == (10, 20, 30, 4)


@pytest.mark.parametrize(("value", "accepted"), [("0", True), ("100", True), ("12.5", True),
                                                  ("101", False), ("-1", False)])  # fmt: skip
def test_the_panic_threshold_is_a_percentage(value: str, accepted: bool) -> None:
    built = build_service(view(instance(meta={"xds-panic-threshold": value})), BuildSettings())
    threshold = built.cluster.common_lb_config.healthy_panic_threshold.value
    if accepted:
        assert threshold == float(value)
        assert built.warnings == ()
    else:
        assert threshold == 0
        assert "expected a percentage from 0 to 100" in built.warnings[0]


def test_the_connect_timeout_defaults_to_the_settings() -> None:
    cluster = build_service(view(instance()), BuildSettings(connect_timeout=2.5)).cluster
    assert cluster.connect_timeout.ToMilliseconds() == 2500
    meta = {"xds-connect-timeout": "1.25"}
    timed = build_service(view(instance(meta=meta)), BuildSettings(connect_timeout=2.5)).cluster
    assert timed.connect_timeout.ToMilliseconds() == 1250


def test_disagreeing_instances_name_every_other_value_seen() -> None:
    instances = [
        instance(1, meta={"xds-protocol": "grpc"}),
        instance(2, meta={"xds-protocol": "http2"}),
        instance(3, meta={"xds-protocol": "grpc"}),
        instance(4, meta={"xds-protocol": "http1"}),
        instance(5, meta={}),
    ]
    options, warnings = service_options(view(*instances), BuildSettings())
    assert options.protocol == "grpc"
    assert warnings == [
        "service 'web': instances disagree on meta 'xds-protocol'; using 'grpc' "
        "(also seen: 'http1', 'http2')"
    ]


def test_a_dns_cluster_resolves_with_the_settings_refresh_rate() -> None:
    built = build_service(
        view(instance(1, address="web.internal"), instance(2)),
        BuildSettings(dns_refresh_rate=7.5, cluster_prefix="consul."),
    )
    cluster = built.cluster
    assert built.load_assignment is None
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.dns_lookup_family == cluster_pb2.Cluster.V4_PREFERRED
    assert cluster.dns_refresh_rate.ToMilliseconds() == 7500
    assert cluster.respect_dns_ttl is True
    assert not cluster.HasField("eds_cluster_config")
    assert cluster.load_assignment.cluster_name == "consul.web"
    hosts = [lb.endpoint.address.socket_address.address for lb in
             cluster.load_assignment.endpoints[0].lb_endpoints]  # fmt: skip
    assert hosts == ["web.internal", "10.0.0.2"]


def test_an_eds_cluster_reads_its_endpoints_over_ads_v3() -> None:
    cluster = build_service(view(instance()), BuildSettings()).cluster
    assert cluster.type == cluster_pb2.Cluster.EDS
    source = cluster.eds_cluster_config.eds_config
    assert source.HasField("ads")
    assert source.resource_api_version == config_source_pb2.V3
    assert not cluster.HasField("dns_refresh_rate")


def test_cluster_metadata_names_the_service_its_tags_and_protocol() -> None:
    cluster = build_service(
        view(instance(1, tags=("v2", "canary")), instance(2, tags=("v1",))), BuildSettings()
    ).cluster
    consul = cluster.metadata.filter_metadata["consul"]
    assert consul["service"] == "web"
    assert list(consul["tags"]) == ["canary", "v1", "v2"]
    assert consul["protocol"] == "http1"


def test_endpoints_carry_the_instance_node_and_meta_for_subset_load_balancing() -> None:
    built = build_service(
        view(instance(1, meta={"zone": "a", "version": "2"}), instance(2)), BuildSettings()
    )
    assert built.load_assignment is not None
    with_meta, without_meta = built.load_assignment.endpoints[0].lb_endpoints
    assert with_meta.endpoint.hostname == "node1"
    consul = with_meta.metadata.filter_metadata["consul"]
    assert (consul["id"], consul["node"], consul["datacenter"]) == ("web-1", "node1", "dc1")
    assert list(consul["tags"]) == ["v1"]
    assert dict(with_meta.metadata.filter_metadata["envoy.lb"]) == {"zone": "a", "version": "2"}
    assert "envoy.lb" not in without_meta.metadata.filter_metadata
    assert with_meta.endpoint.address.socket_address.port_value == 8001


def test_localities_are_weighted_for_grpc_clients_and_named_by_datacenter() -> None:
    built = build_service(
        view(instance(1), instance(2, datacenter="dc2"), datacenters=("dc1", "dc2")),
        BuildSettings(),
    )
    assert built.load_assignment is not None
    localities = built.load_assignment.endpoints
    assert [(lle.locality.region, lle.priority) for lle in localities] == [("dc1", 0), ("dc2", 1)]
    assert [lle.load_balancing_weight.value for lle in localities] == [1, 1]


def test_a_datacenter_whose_instances_all_lack_a_port_gets_no_locality() -> None:
    portless = Instance("web", "web-9", "node9", "dc1", "10.0.0.9", 0)
    built = build_service(
        view(portless, instance(2, datacenter="dc2"), datacenters=("dc1", "dc2")),
        BuildSettings(),
    )
    assert built.load_assignment is not None
    assert [(lle.locality.region, lle.priority) for lle in built.load_assignment.endpoints] == [
        ("dc2", 0)
    ]


@pytest.mark.parametrize(
    ("status", "passing", "warning", "warning_is_healthy", "expected"),
    [
        ("passing", 5, 2, True, (HEALTHY, 5)),
        ("passing", 0, 2, True, (HEALTHY, 1)),  # a weight is at least 1
        ("warning", 5, 2, True, (HEALTHY, 2)),
        ("warning", 5, 1, True, (HEALTHY, 1)),
        ("warning", 5, 0, True, (DEGRADED, 1)),
        ("warning", 5, -3, True, (DEGRADED, 1)),
        ("warning", 5, 2, False, (UNHEALTHY, 5)),
        ("critical", 5, 2, True, (UNHEALTHY, 5)),
        ("critical", 0, 2, True, (UNHEALTHY, 1)),
    ],
)
def test_endpoint_health_and_weight(
    status: str, passing: int, warning: int, warning_is_healthy: bool, expected: tuple[int, int]
) -> None:
    settings = BuildSettings(warning_is_healthy=warning_is_healthy)
    one = instance(status=status, passing=passing, warning=warning)
    assert endpoint_health(one, settings) == expected


def test_an_assignment_keeps_unhealthy_endpoints_with_their_status_unless_for_dns() -> None:
    services = view(instance(1, status="critical"), instance(2))
    eds, _ = load_assignment(services, BuildSettings())
    assert [lb.health_status for lb in eds.endpoints[0].lb_endpoints] == [UNHEALTHY, HEALTHY]
    dns, _ = load_assignment(services, BuildSettings(), dns=True)
    assert [lb.health_status for lb in dns.endpoints[0].lb_endpoints] == [HEALTHY]


def test_an_unhealthy_dns_host_does_not_hide_the_hosts_after_it() -> None:
    built = build_service(
        view(instance(1, address="down.internal", status="critical"), instance(2, address="up")),
        BuildSettings(),
    )
    hosts = [
        lb.endpoint.address.socket_address.address
        for lb in built.cluster.load_assignment.endpoints[0].lb_endpoints
    ]
    assert hosts == ["up"]


def test_an_instance_without_a_port_does_not_hide_the_instances_after_it() -> None:
    portless = Instance("web", "web-0", "node0", "dc1", "10.0.0.9", 0)
    built = build_service(view(portless, instance(1)), BuildSettings())
    assert built.load_assignment is not None
    [endpoint] = built.load_assignment.endpoints[0].lb_endpoints
    assert endpoint.endpoint.address.socket_address.address == "10.0.0.1"
    assert built.warnings == ("service 'web': instance 'web-0' has no port; left out",)


def test_a_dns_cluster_keeps_its_warnings() -> None:
    portless = Instance("web", "web-0", "node0", "dc1", "web.internal", 0)
    built = build_service(view(portless, instance(1, address="api.internal")), BuildSettings())
    assert built.load_assignment is None
    assert built.warnings == ("service 'web': instance 'web-0' has no port; left out",)


def test_every_failover_datacenter_gets_the_next_priority() -> None:
    built = build_service(
        view(
            instance(1),
            instance(2, datacenter="dc2"),
            instance(3, datacenter="dc3"),
            datacenters=("dc1", "dc2", "dc3"),
        ),
        BuildSettings(),
    )
    assert built.load_assignment is not None
    assert [lle.priority for lle in built.load_assignment.endpoints] == [0, 1, 2]


def test_a_datacenter_missing_from_the_view_is_skipped() -> None:
    partial = ServiceView("web", ("dc1", "dc2"), {"dc1": (instance(1),)})
    built = build_service(partial, BuildSettings())
    assert built.load_assignment is not None
    assert [lle.locality.region for lle in built.load_assignment.endpoints] == ["dc1"]


def test_timeouts_are_exact_to_the_nanosecond() -> None:
    meta = {"xds-connect-timeout": "2.5"}
    eds = build_service(view(instance(meta=meta)), BuildSettings()).cluster
    assert eds.connect_timeout == duration_pb2.Duration(seconds=2, nanos=500_000_000)
    dns = build_service(
        view(instance(1, address="web.internal")), BuildSettings(dns_refresh_rate=7.5)
    ).cluster
    assert dns.dns_refresh_rate == duration_pb2.Duration(seconds=7, nanos=500_000_000)
    assert dns.connect_timeout == duration_pb2.Duration(seconds=5)
