"""Chain targets → Envoy clusters and endpoint assignments: subsets, failover, balancing,
timeouts, limits and outlier detection from config entries."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2

from bridge.model import ServiceView
from bridge.resources import HTTP_PROTOCOL_OPTIONS, BuildSettings, BuiltService, build_service
from bridge.traffic import Chain, Target, build_chain_clusters, target_cluster_name

from .helpers import (
    LOCAL,
    VERSIONED,
    addresses,
    compiled,
    defaults,
    health_entry,
    resolver,
    splitter,
    valid,
    versioned_web,
    view,
)

SETTINGS = BuildSettings()
TWO_DCS = {"web": view("web", {"dc1": versioned_web("dc1"), "dc2": versioned_web("dc2")})}
CANARY_SPLIT = splitter(
    "web", {"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}
)


def built(
    chain: Chain, catalog: dict[str, ServiceView] = TWO_DCS, **kw: Any
) -> dict[str, BuiltService]:
    settings = BuildSettings(**kw) if kw else SETTINGS
    out = {b.cluster.name: b for b in build_chain_clusters(chain, catalog, settings)}
    for b in out.values():
        assert valid(b.cluster)
        if b.load_assignment is not None:
            assert valid(b.load_assignment)
            assert b.load_assignment.cluster_name == b.cluster.name
    return out


def chain(*raw: dict[str, Any], **options: Any) -> Chain:
    result = compiled("web", *raw, **options)
    assert result.chain is not None, result.problems
    return result.chain


def test_without_entries_the_cluster_is_exactly_the_plain_one() -> None:
    # Same bytes, so switching a service over to the traffic package changes no version.
    service = TWO_DCS["web"]
    ours = built(chain())["web"]
    plain = build_service(service, SETTINGS)
    assert ours.cluster.SerializeToString(deterministic=True) == plain.cluster.SerializeToString(
        deterministic=True
    )
    assert ours.load_assignment == plain.load_assignment


def test_subset_clusters_hold_only_matching_instances() -> None:
    clusters = built(chain(defaults("web"), resolver("web", Subsets=VERSIONED), CANARY_SPLIT))
    assert set(clusters) == {"web~v1", "web~v2"}
    v2 = clusters["web~v2"].load_assignment
    assert v2 is not None
    # v2 instances only; the bridge's datacenter order (dc1, then dc2) still applies
    assert addresses(v2) == [(0, "10.1.0.2"), (1, "10.2.0.2")]
    assert clusters["web~v2"].cluster.type == cluster_pb2.Cluster.EDS


def test_a_subset_nothing_matches_gets_an_empty_assignment() -> None:
    subsets = {**VERSIONED, "v3": {"Filter": "Service.Meta.version == v3"}}
    clusters = built(
        chain(
            defaults("web"),
            resolver("web", Subsets=subsets),
            splitter("web", {"Weight": 100, "ServiceSubset": "v3"}),
        )
    )
    assignment = clusters["web~v3"].load_assignment
    assert assignment is not None
    assert list(assignment.endpoints) == []  # valid, and Envoy sends no traffic there


def test_only_passing_turns_warning_instances_unhealthy() -> None:
    warned = [health_entry("web-1", status="warning", meta={"version": "v1"})]
    catalog = {"web": view("web", {"dc1": warned})}
    strict = {"v1": {"Filter": "Service.Meta.version == v1", "OnlyPassing": True}}

    def health(subsets: dict[str, Any]) -> int:
        cla = built(chain(resolver("web", Subsets=subsets, DefaultSubset="v1")), catalog)["web~v1"]
        assert cla.load_assignment is not None
        return int(cla.load_assignment.endpoints[0].lb_endpoints[0].health_status)

    assert health(strict) == health_check_pb2.UNHEALTHY
    assert health(VERSIONED) == health_check_pb2.HEALTHY


def test_failover_levels_become_contiguous_priorities() -> None:
    three = {
        "web": view(
            "web",
            {
                "dc1": versioned_web("dc1", ["v1"]),  # no v2 here
                "dc2": versioned_web("dc2"),
                "dc3": versioned_web("dc3"),
            },
        )
    }
    failover = {"v2": {"Datacenters": ["dc3", "dc2"]}}
    clusters = built(
        chain(defaults("web"), resolver("web", Subsets=VERSIONED, Failover=failover), CANARY_SPLIT),
        three,
    )
    v2 = clusters["web~v2"].load_assignment
    assert v2 is not None
    # the empty local level is left out; the resolver's order replaces the bridge's
    assert addresses(v2) == [(0, "10.3.0.2"), (1, "10.2.0.2")]


def test_failover_to_another_service_lists_its_instances_after_ours() -> None:
    catalog = {
        "web": view("web", {"dc1": versioned_web("dc1", ["v1"])}),
        "backup": view(
            "backup", {"dc1": [health_entry("b-1", service="backup", address="10.9.0.1")]}
        ),
    }
    clusters = built(chain(resolver("web", Failover={"*": {"Service": "backup"}})), catalog)
    web = clusters["web"].load_assignment
    assert web is not None
    assert addresses(web) == [(0, "10.1.0.1"), (1, "10.9.0.1")]


def test_cluster_names_never_collide_with_plain_services() -> None:
    def name(subset: str, dc: str, prefix: str = "") -> str:
        return target_cluster_name(
            Target("web", subset, dc), LOCAL, BuildSettings(cluster_prefix=prefix)
        )

    assert name("", LOCAL) == "web"
    assert name("v2", LOCAL) == "web~v2"
    assert name("v2", "dc2") == "web~v2~dc2"
    assert name("", "dc2") == "web~~dc2"
    assert name("v2", LOCAL, prefix="consul/") == "consul/web~v2"
    redirected = built(chain(resolver("web", Redirect={"Datacenter": "dc2"})))
    assert set(redirected) == {"web~~dc2"}
    assert addresses(redirected["web~~dc2"].load_assignment) == [(0, "10.2.0.1"), (0, "10.2.0.2")]


def test_load_balancer_policies_and_their_settings() -> None:
    def cluster_for(lb: dict[str, Any]) -> cluster_pb2.Cluster:
        return built(chain(resolver("web", LoadBalancer=lb)))["web"].cluster

    ring = cluster_for(
        {
            "Policy": "ring_hash",
            "RingHashConfig": {"MinimumRingSize": 1024, "MaximumRingSize": 4096},
        }
    )
    assert ring.lb_policy == cluster_pb2.Cluster.RING_HASH
    assert ring.ring_hash_lb_config.minimum_ring_size.value == 1024
    assert ring.ring_hash_lb_config.maximum_ring_size.value == 4096
    least = cluster_for({"Policy": "least_request", "LeastRequestConfig": {"ChoiceCount": 3}})
    assert least.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert least.least_request_lb_config.choice_count.value == 3
    assert cluster_for({"Policy": "maglev"}).lb_policy == cluster_pb2.Cluster.MAGLEV
    assert cluster_for({"Policy": "random"}).lb_policy == cluster_pb2.Cluster.RANDOM
    assert cluster_for({"Policy": "round_robin"}).lb_policy == cluster_pb2.Cluster.ROUND_ROBIN
    bare_ring = cluster_for({"Policy": "ring_hash"})
    assert not bare_ring.HasField("ring_hash_lb_config")  # zeros are not copied through


def test_passive_health_check_becomes_outlier_detection() -> None:
    check = {
        "Interval": "5s",
        "MaxFailures": 3,
        "EnforcingConsecutive5xx": 80,
        "MaxEjectionPercent": 50,
        "BaseEjectionTime": "30s",
    }
    cluster = built(
        chain(defaults("web", UpstreamConfig={"Defaults": {"PassiveHealthCheck": check}}))
    )["web"].cluster
    detection = cluster.outlier_detection
    assert detection.interval.seconds == 5
    assert detection.consecutive_5xx.value == 3
    assert detection.enforcing_consecutive_5xx.value == 80
    assert detection.max_ejection_percent.value == 50
    assert detection.base_ejection_time.seconds == 30
    assert not built(chain(defaults("web")))["web"].cluster.HasField("outlier_detection")


def test_connect_timeout_resolver_first_then_upstream_then_service_meta() -> None:
    meta_says_3s = {
        "web": view("web", {"dc1": [health_entry("web-1", meta={"xds-connect-timeout": "3s"})]})
    }
    upstream = defaults("web", UpstreamConfig={"Defaults": {"ConnectTimeoutMs": 2000}})

    def timeout(*raw: dict[str, Any]) -> float:
        duration = built(chain(*raw), meta_says_3s)["web"].cluster.connect_timeout
        return float(duration.seconds + duration.nanos / 1e9)

    assert timeout(upstream, resolver("web", ConnectTimeout="750ms")) == 0.75
    assert timeout(upstream) == 2.0
    assert timeout() == 3.0
    default = built(chain(), {"web": view("web", {"dc1": versioned_web()})})["web"].cluster
    assert default.connect_timeout.seconds == SETTINGS.connect_timeout


def test_upstream_limits_become_circuit_breakers() -> None:
    limits = {"MaxConnections": 100, "MaxPendingRequests": 20, "MaxConcurrentRequests": 50}
    cluster = built(chain(defaults("web", UpstreamConfig={"Defaults": {"Limits": limits}})))[
        "web"
    ].cluster
    thresholds = cluster.circuit_breakers.thresholds[0]
    assert (thresholds.max_connections.value, thresholds.max_pending_requests.value) == (100, 20)
    assert thresholds.max_requests.value == 50


def test_http2_and_grpc_services_get_http2_upstreams() -> None:
    for protocol in ("http2", "grpc"):
        cluster = built(chain(defaults("web", protocol)))["web"].cluster
        options = http_protocol_options_pb2.HttpProtocolOptions()
        assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(options)
        assert options.explicit_http_config.HasField("http2_protocol_options")
    assert (
        HTTP_PROTOCOL_OPTIONS
        not in built(chain(defaults("web")))["web"].cluster.typed_extension_protocol_options
    )


def test_hostname_instances_make_a_dns_cluster_with_inline_endpoints() -> None:
    named = {
        "web": view(
            "web",
            {"dc1": [health_entry("web-1", address="web-1.internal", meta={"version": "v1"})]},
        )
    }
    b = built(chain(resolver("web", Subsets=VERSIONED, DefaultSubset="v1")), named)["web~v1"]
    assert b.load_assignment is None
    assert b.cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert b.cluster.load_assignment.cluster_name == "web~v1"


def test_instances_of_an_unwatched_datacenter_are_a_warning_not_an_error() -> None:
    clusters = built(chain(resolver("web", Redirect={"Datacenter": "dc9"})))
    assert clusters["web~~dc9"].load_assignment is not None
    assert any("'dc9' are not known" in w for w in clusters["web~~dc9"].warnings)
