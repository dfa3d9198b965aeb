"""Chains through the publisher: subset clusters join the shared CDS/EDS sets, plain clusters take
the entries' settings and get them back when the entries go, only what changed is rebuilt, and
templates (Envoys and gRPC clients) get the compiled routes."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from bridge.catalog import ServiceUpdate
from bridge.chains import GrpcClusterVariants, Traffic
from bridge.config_entries import ConfigEntriesUpdate
from bridge.model import Instance
from bridge.publisher import Publisher
from bridge.resources import BuildSettings, build_service
from bridge.templating import TemplateSource
from tests.templates.support import envoy_node, grpc_node
from tests.traffic.helpers import LOCAL, VERSIONED, as_consul_returns, defaults, instance, resolver
from xds_server.cache import SnapshotCache
from xds_server.resource import CLUSTER, ENDPOINT, ROUTE

SETTINGS = BuildSettings()
SPLIT = {
    "Kind": "service-splitter",
    "Name": "web",
    "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
}
_index = itertools.count(100)


@dataclass
class Harness:
    publisher: Publisher
    traffic: Traffic
    cache: SnapshotCache

    def entries(self, *raw: dict[str, Any]) -> None:
        bodies = tuple(as_consul_returns(e) for e in raw)
        update = ConfigEntriesUpdate(LOCAL, bodies, time.monotonic(), next(_index))
        self.publisher.submit_entries(update)
        self.publisher.flush()

    def instances(self, service: str, *found: Instance) -> None:
        self.publisher.submit([ServiceUpdate(service, LOCAL, tuple(found), time.monotonic())])
        self.publisher.flush()

    def cluster(self, name: str) -> cluster_pb2.Cluster:
        message = self.publisher.clusters[name].message
        assert isinstance(message, cluster_pb2.Cluster)
        return message

    def endpoints(self, name: str) -> set[str]:
        message = self.publisher.endpoints[name].message
        assert isinstance(message, endpoint_pb2.ClusterLoadAssignment)
        return {
            f"{lb.endpoint.address.socket_address.address}"
            for locality in message.endpoints
            for lb in locality.lb_endpoints
        }

    def node_resources(self, node: Any) -> dict[str, Any]:
        key = self.cache.watch(node, lambda changed: None)
        snapshot = self.cache.get(key)
        assert snapshot is not None
        return {
            type_url: {name: r.message for name, r in snapshot.get(type_url).items()}
            for type_url in (CLUSTER, ENDPOINT, ROUTE)
        }


def harness() -> Harness:
    cache = SnapshotCache()
    traffic = Traffic(SETTINGS)
    templates = TemplateSource(traffic=traffic)
    nodes = GrpcClusterVariants(templates, lambda: traffic.grpc_variants)
    publisher = Publisher(cache, SETTINGS, nodes, debounce=0.0, traffic=traffic)
    publisher.set_datacenters([LOCAL])
    return Harness(publisher, traffic, cache)


def web(n: int, version: str) -> Instance:
    return instance(f"web-{n}", address=f"10.0.0.{n}", node=f"node{n}", meta={"version": version})


async def started() -> Harness:
    h = harness()
    h.instances("web", web(1, "v1"), web(2, "v1"), web(3, "v2"))
    h.instances("api", instance("api-1", service="api", address="10.0.1.1"))
    h.publisher.mark_ready()
    return h


async def test_subset_clusters_join_the_shared_sets_with_only_their_instances() -> None:
    h = await started()
    plain = h.publisher.clusters["web"].version
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    assert {"web", "web~v1", "web~v2", "api"} <= set(h.publisher.clusters)
    assert h.endpoints("web~v1") == {"10.0.0.1", "10.0.0.2"}
    assert h.endpoints("web~v2") == {"10.0.0.3"}
    assert h.publisher.clusters["web"].version == plain  # nothing in the entries shapes it

    h.instances("web", web(1, "v1"), web(2, "v2"), web(3, "v2"))
    assert h.endpoints("web~v2") == {"10.0.0.2", "10.0.0.3"}

    h.entries()  # every entry deleted
    assert set(h.publisher.clusters) == {"web", "api"}
    assert set(h.publisher.endpoints) == {"web", "api"}


async def test_entries_shape_the_plain_cluster_and_give_it_back_when_deleted() -> None:
    h = await started()
    check = {"Interval": "10s", "MaxFailures": 3, "EnforcingConsecutive5xx": 100}
    h.entries(defaults("web", UpstreamConfig={"Defaults": {"PassiveHealthCheck": check}}))
    assert h.cluster("web").outlier_detection.consecutive_5xx.value == 3
    h.entries()
    view = h.publisher.catalog.view("web")
    assert view is not None
    assert h.cluster("web") == build_service(view, SETTINGS).cluster


async def test_a_change_elsewhere_rebuilds_nothing_of_a_chain() -> None:
    h = await started()
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    before = {name: h.publisher.clusters[name] for name in ("web~v1", "web~v2")}
    h.instances("api", instance("api-2", service="api", address="10.0.1.2"))
    assert {name: h.publisher.clusters[name] for name in before} == before


async def test_envoys_get_the_compiled_routes_with_the_default_timeout() -> None:
    h = await started()
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    routes = h.node_resources(envoy_node())[ROUTE]["ingress_routes"]
    assert isinstance(routes, route_pb2.RouteConfiguration)
    hosts = {vh.name: json_format.MessageToDict(vh) for vh in routes.virtual_hosts}
    [route] = hosts["web"]["routes"]
    weights = {c["name"]: c["weight"] for c in route["route"]["weightedClusters"]["clusters"]}
    assert weights == {"web~v1": 9000, "web~v2": 1000}
    assert route["route"]["timeout"] == "15s"
    [plain] = hosts["api"]["routes"]
    assert plain["route"]["cluster"] == "api"


async def test_grpc_clients_get_the_grpc_routes_and_cluster_variants() -> None:
    h = await started()
    maglev = {"Policy": "maglev", "HashPolicies": [{"Field": "cookie", "FieldValue": "id"}]}
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED, LoadBalancer=maglev), SPLIT)
    envoy = h.node_resources(envoy_node())[CLUSTER]
    grpc = h.node_resources(grpc_node())[CLUSTER]
    assert envoy["web~v1"].lb_policy == cluster_pb2.Cluster.MAGLEV
    assert grpc["web~v1"].lb_policy == cluster_pb2.Cluster.RING_HASH
    # Plain services: the gRPC variant (shared by gRPC nodes), with gRPC's typed policy list.
    assert len(grpc["api"].load_balancing_policy.policies) == 1
    assert grpc["api"] is h.publisher.grpc.clusters["api"].message

    [context] = [s for s in h.traffic.views.values() if s.service == "web"]
    [route] = json.loads(context.grpc_routes_json)
    assert "hash_policy" not in route["route"]  # a cookie hash means nothing to gRPC
    assert route["route"]["weighted_clusters"]["clusters"][0]["name"] == "web~v1"


async def test_a_timeout_from_the_entries_is_kept_and_others_get_the_services_own() -> None:
    h = await started()
    router = {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [
            {
                "Match": {"HTTP": {"PathPrefix": "/slow"}},
                "Destination": {"ServiceSubset": "v2", "RequestTimeout": "3s"},
            }
        ],
    }
    h.entries(defaults("web"), resolver("web", Subsets=VERSIONED), router)
    routes = h.node_resources(envoy_node())[ROUTE]["ingress_routes"]
    [web_host] = [json_format.MessageToDict(vh) for vh in routes.virtual_hosts if vh.name == "web"]
    slow, rest = web_host["routes"]
    assert (slow["match"]["prefix"], slow["route"]["cluster"]) == ("/slow", "web~v2")
    assert slow["route"]["timeout"] == "3s"
    assert (rest["route"]["cluster"], rest["route"]["timeout"]) == ("web", "15s")
