"""Each kind of client gets its variant of the clusters and endpoints: Envoys what the bridge
always built, proxyless gRPC clients the gRPC variant, each shared by every node of that kind.
(Real gRPC clients through the whole bridge: ``tests/proxyless/test_through_the_bridge.py``.)"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from bridge.app import BridgeConfig, node_key_function
from bridge.catalog import Catalog
from bridge.chains import ClusterChanges
from bridge.client_kinds import Variant
from bridge.config_entries import ConfigEntriesUpdate
from bridge.consul_settings import settings_from_env
from bridge.publisher import Publisher
from bridge.render import node_of, render
from bridge.variants import GRPC_KEY_SUFFIX, MixedKeys, variant_node_key
from tests.support.xds_client import XdsClient, unpack_all
from tests.templates.support import updates
from xds_server import ClientRegistry, SnapshotCache, node_key_by_cluster, node_key_by_id
from xds_server.resource import CLUSTER, ENDPOINT, Resource, make_resource

from .serving import GRPC_NODE_AGENT, GRPC_PYTHON_AGENT, instance, serving

LEAST_REQUEST = {"xds-lb-policy": "least_request"}


def client(target: str, node_id: str, agent: tuple[str, str] | None = None) -> XdsClient:
    """A protocol client of node ``node_id`` in cluster ``edge``, an Envoy unless ``agent``."""
    xds = XdsClient(target, node_id)
    xds.node.cluster = "edge"
    xds.node.user_agent_name, xds.node.user_agent_version = agent or ("envoy", "")
    return xds


async def clusters_of(xds: XdsClient) -> dict[str, cluster_pb2.Cluster]:
    await xds.send(CLUSTER, ["*"])
    response = await xds.recv()
    return {c.name: c for c in unpack_all(response)}


def test_a_grpc_node_key_carries_its_variant_and_an_envoy_key_is_unchanged() -> None:
    envoy = base_pb2.Node(id="edge-1", cluster="edge", user_agent_name="envoy")
    grpc = base_pb2.Node(id="app-1", cluster="edge", user_agent_name=GRPC_NODE_AGENT[0])
    by_cluster = variant_node_key(node_key_by_cluster)
    assert by_cluster(envoy) == "edge"
    assert by_cluster(grpc) == "edge" + GRPC_KEY_SUFFIX
    assert variant_node_key(node_key_by_id)(grpc) == "app-1" + GRPC_KEY_SUFFIX


async def test_envoys_and_grpc_clients_of_one_group_get_their_own_variant() -> None:
    async with serving(node_key="cluster") as served:
        served.publish("lr", instance("lr", 1, meta=LEAST_REQUEST))
        served.publish("dns", instance("dns", 2), instance("dns", 3, address="backend.local"))
        served.publisher.mark_ready()
        async with (
            client(served.target, "edge-1") as envoy,
            client(served.target, "app-1", GRPC_NODE_AGENT) as grpc,
        ):
            for_envoy = await clusters_of(envoy)
            for_grpc = await clusters_of(grpc)
        assert sorted(for_envoy) == ["dns", "lr"]
        assert for_envoy["lr"].lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
        assert for_envoy["dns"].type == cluster_pb2.Cluster.STRICT_DNS
        assert sorted(for_grpc) == ["dns", "dns~dns~backend.local:8003", "dns~eds", "lr"]
        assert for_grpc["lr"].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # the unset default
        assert len(for_grpc["lr"].load_balancing_policy.policies) == 2
        assert for_grpc["dns"].cluster_type.name == "envoy.clusters.aggregate"


async def test_a_variant_is_serialized_once_and_shares_identical_assignments() -> None:
    async with serving() as served:
        served.publish("lr", instance("lr", 1, meta=LEAST_REQUEST), instance("lr", 2))
        served.publisher.mark_ready()
        assert len(served.publisher.grpc.clusters) == 0  # no gRPC client yet: nothing built
        async with (
            client(served.target, "app-1", GRPC_NODE_AGENT) as first,
            client(served.target, "app-2", GRPC_PYTHON_AGENT) as second,
            client(served.target, "edge-1") as envoy,
        ):
            for xds in (first, second, envoy):
                await clusters_of(xds)
            keys = {s.node_id: s.node_key for s in served.registry.streams.values()}
            one, two, edge = (served.cache.get(keys[n]) for n in ("app-1", "app-2", "edge-1"))
        assert one is not None
        assert two is not None
        assert edge is not None
        assert one.get(CLUSTER)["lr"] is two.get(CLUSTER)["lr"]  # one Resource, one packing
        assert one.get(CLUSTER)["lr"].version != edge.get(CLUSTER)["lr"].version
        assert one.get(ENDPOINT)["lr"] is edge.get(ENDPOINT)["lr"]  # the same assignment


async def test_differences_are_logged_once_per_service_and_client_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.variants")

    def about_least_request() -> list[str]:
        return [r.getMessage() for r in caplog.records if "least_request has no" in r.getMessage()]

    async with serving() as served:
        served.publish("lr", instance("lr", 1, meta=LEAST_REQUEST))
        served.publisher.mark_ready()
        async with client(served.target, "app-1", GRPC_NODE_AGENT) as node_client:
            await clusters_of(node_client)
            served.publish("lr", instance("lr", 1, meta=LEAST_REQUEST), instance("lr", 2))
            async with (
                client(served.target, "app-2", GRPC_NODE_AGENT) as same_kind,
                client(served.target, "app-3", GRPC_PYTHON_AGENT) as python,
            ):
                await clusters_of(same_kind)
                await clusters_of(python)
        assert about_least_request() == [
            "gRPC node 1.14.1 clients: service 'lr': xds-lb-policy least_request has no "
            "equivalent in gRPC node 1.14.1; it uses round_robin",
            "gRPC core/Python 1.85.3 clients: service 'lr': xds-lb-policy least_request has no "
            "equivalent in gRPC core/Python 1.85.3; it uses round_robin",
        ]


async def test_render_and_the_resource_view_say_which_variant_a_node_gets() -> None:
    config = BridgeConfig(consul=settings_from_env({}))
    catalog = updates(instance("lr", 1, meta=LEAST_REQUEST))
    as_grpc = await render(config, node_of("app-1", "", {}, grpc=True), ["dc1"], catalog)
    as_envoy = await render(config, node_of("edge-1", "", {}), ["dc1"], catalog)
    assert (as_grpc["variant"], as_grpc["node_key"]) == ("grpc", "app-1" + GRPC_KEY_SUFFIX)
    assert (as_envoy["variant"], as_envoy["node_key"]) == ("envoy", "edge-1")
    [grpc_cluster] = as_grpc["resources"]["cluster"]["items"]
    [envoy_cluster] = as_envoy["resources"]["cluster"]["items"]
    assert "load_balancing_policy" in grpc_cluster["resource"]
    assert envoy_cluster["resource"]["lb_policy"] == "LEAST_REQUEST"


async def test_a_stream_joining_a_key_of_the_other_kind_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.variants")
    registry = ClientRegistry()
    open_keys = {"edge": Variant.ENVOY}  # a key's first stream opens before it is classified
    registry.add_observer(MixedKeys(open_keys.get))
    grpc = base_pb2.Node(id="odd~grpc", user_agent_name=GRPC_NODE_AGENT[0])
    envoy = base_pb2.Node(id="edge-1", user_agent_name="envoy")
    registry.open("ADS", grpc, "app-1~grpc", "peer")  # the first stream of its key: no warning
    registry.open("ADS", envoy, "edge", "peer")
    registry.open("ADS", grpc, "edge", "peer")
    registry.open("ADS", grpc, "edge", "peer")
    [warning] = [r.getMessage() for r in caplog.records]
    assert "shares node key 'edge' with envoy nodes" in warning


class Chains:
    """A stand-in for the config-entry chains: each rebuild hands over what ``then`` holds."""

    def __init__(self) -> None:
        self.then = ClusterChanges()

    def set_entries(self, update: ConfigEntriesUpdate) -> bool:
        return True

    def rebuild(self, changed: Mapping[str, float], catalog: Catalog) -> ClusterChanges:
        out, self.then = self.then, ClusterChanges()
        return out


async def test_config_entry_chains_reach_grpc_clients_and_leave_plain_services_shaped() -> None:
    chains = Chains()
    cache = SnapshotCache(node_key_function("id"))
    publisher = Publisher(cache, debounce=0, traffic=chains)
    publisher.set_datacenters(["dc1"])
    lr = instance("lr", 1, meta=LEAST_REQUEST)
    publisher.submit(updates(lr))
    publisher.mark_ready()
    grpc_node = base_pb2.Node(id="app-1", user_agent_name=GRPC_NODE_AGENT[0])
    cache.watch(grpc_node, lambda changed: None)

    def chained(*resources: Resource, remove: Sequence[str] = ()) -> None:
        chains.then = ClusterChanges(
            clusters=[r for r in resources if r.type_url == CLUSTER],
            endpoints=[r for r in resources if r.type_url == ENDPOINT],
            remove_clusters=list(remove),
            remove_endpoints=list(remove),
        )
        publisher.submit_entries(ConfigEntriesUpdate("dc1", ()))
        publisher.flush()

    def grpc_cluster(name: str) -> cluster_pb2.Cluster:
        message = publisher.grpc.clusters[name].message
        assert isinstance(message, cluster_pb2.Cluster)
        return message

    subset = cluster_pb2.Cluster(name="v1.lr", type=cluster_pb2.Cluster.EDS)
    subset_endpoints = endpoint_pb2.ClusterLoadAssignment(cluster_name="v1.lr")
    chained(make_resource(subset), make_resource(subset_endpoints))
    assert publisher.grpc.clusters["v1.lr"] is publisher.clusters["v1.lr"]  # the same resource
    assert publisher.grpc.endpoints["v1.lr"] is publisher.endpoints["v1.lr"]

    plain = publisher.clusters["lr"]
    chained(make_resource(plain.message))  # a chain version identical to the plain cluster
    assert len(grpc_cluster("lr").load_balancing_policy.policies) == 2  # still gRPC-shaped

    shaped = cluster_pb2.Cluster()
    shaped.CopyFrom(plain.message)
    shaped.outlier_detection.consecutive_5xx.value = 3
    chained(make_resource(shaped))  # an entry shapes it: the chain's version, as for Envoys
    assert grpc_cluster("lr").outlier_detection.consecutive_5xx.value == 3

    chained(make_resource(plain.message), remove=["v1.lr"])  # no chain: the plain one back
    assert len(grpc_cluster("lr").load_balancing_policy.policies) == 2
    assert "v1.lr" not in publisher.grpc.clusters
    assert "v1.lr" not in publisher.grpc.endpoints
