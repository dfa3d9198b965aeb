"""A service losing its last instance: every client is sent its endpoints emptied first, and only
once the streams holding it answered (or a timeout passed) does its cluster go — so a client that
ignores resource deletion (gRFC A53) is left with no endpoints rather than the old ones.
(With a real gRPC client: ``tests/proxyless/test_through_the_bridge.py``.)"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from bridge.catalog import ServiceUpdate
from bridge.retirement import emptied, emptied_names
from tests.proxyless.services import built
from tests.support.waiting import until
from tests.support.xds_client import XdsClient, names_in, unpack_all
from xds_server.resource import CLUSTER, ENDPOINT

from .serving import GRPC_NODE_AGENT, Serving, instance, serving

AGENTS = {"envoy": ("envoy", ""), "grpc": GRPC_NODE_AGENT}


async def synced(served: Serving, agent: str, service: str = "web") -> XdsClient:
    """A client holding ``service``'s cluster and endpoints, both ACKed (as Envoy subscribes:
    CDS wildcard; as gRPC does: CDS by name)."""
    xds = XdsClient(served.target, f"{agent}-1")
    xds.node.user_agent_name, xds.node.user_agent_version = AGENTS[agent]
    cds_names = ["*"] if agent == "envoy" else [service]
    await xds.send(CLUSTER, cds_names)
    cds = await xds.recv()
    assert service in names_in(cds)
    await xds.ack(cds, cds_names)
    await xds.send(ENDPOINT, [service])
    eds = await xds.recv()
    assert names_in(eds) == [service]
    await xds.ack(eds, [service])
    return xds


def endpoints_of(response: Any) -> dict[str, int]:
    return {
        a.cluster_name: sum(len(loc.lb_endpoints) for loc in a.endpoints)
        for a in unpack_all(response)
    }


@pytest.mark.parametrize("agent", sorted(AGENTS))
async def test_endpoints_are_emptied_and_taken_before_the_cluster_goes(agent: str) -> None:
    async with serving() as served:
        served.publish("web", instance("web", 1))
        served.publisher.mark_ready()
        async with await synced(served, agent) as xds:
            served.publish("web")  # its last instance left
            emptied_eds = await xds.recv()
            assert endpoints_of(emptied_eds) == {"web": 0}
            assert "web" in served.publisher.clusters  # the cluster waits for the answer
            assert served.gate.pending == {"web": 1}
            await xds.ack(emptied_eds, ["web"])
            cds = await xds.recv()
            assert cds.type_url == CLUSTER
            assert "web" not in names_in(cds)
            assert "web" not in served.publisher.clusters
            assert "web" not in served.publisher.grpc.clusters
            assert served.gate.pending == {}


async def test_a_client_that_never_answers_holds_the_cluster_only_until_the_timeout() -> None:
    async with serving(deletion_timeout=0.2) as served:
        served.publish("web", instance("web", 1))
        served.publisher.mark_ready()
        async with await synced(served, "envoy") as xds:
            served.publish("web")
            assert endpoints_of(await xds.recv()) == {"web": 0}  # never ACKed
            await until(lambda: "web" not in served.publisher.clusters, what="cluster removed")


@pytest.mark.parametrize("answer", ["nack", "stream closed"])
async def test_a_nack_or_a_closed_stream_counts_as_answered(answer: str) -> None:
    async with serving() as served:
        served.publish("web", instance("web", 1))
        served.publisher.mark_ready()
        xds = await synced(served, "envoy")
        served.publish("web")
        emptied_eds = await xds.recv()
        if answer == "nack":
            await xds.nack(emptied_eds, "", ["web"])
        else:
            await xds.close()
        await until(lambda: "web" not in served.publisher.clusters, what="cluster removed")
        await xds.close()


async def test_a_service_back_before_its_cluster_went_keeps_it() -> None:
    async with serving() as served:
        served.publish("web", instance("web", 1))
        served.publisher.mark_ready()
        async with await synced(served, "grpc") as xds:
            served.publish("web")
            emptied_eds = await xds.recv()
            served.publish("web", instance("web", 2))  # back, before the client answered
            assert served.gate.pending == {}
            await xds.ack(emptied_eds, ["web"])
            assert endpoints_of(await xds.recv()) == {"web": 1}
            assert "web" in served.publisher.clusters
            assert "web" in served.publisher.grpc.clusters


async def test_a_dns_service_loses_its_inline_endpoints_first() -> None:
    hostname = instance("dns", 1, address="backend.local")
    async with serving() as served:
        served.publish("dns", hostname)
        served.publisher.mark_ready()
        async with XdsClient(served.target, "edge-1") as xds:
            xds.node.user_agent_name = "envoy"
            await xds.send(CLUSTER, ["*"])
            cds = await xds.recv()
            await xds.ack(cds, ["*"])
            served.publish("dns")
            emptied_cds = await xds.recv()
            [cluster] = unpack_all(emptied_cds)
            assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
            assert len(cluster.load_assignment.endpoints) == 0
            await xds.ack(emptied_cds, ["*"])
            assert names_in(await xds.recv()) == []


async def test_a_service_listed_without_instances_is_served_emptied_until_it_leaves() -> None:
    async with serving() as served:
        served.publish("web", instance("web", 1, meta={"xds-lb-policy": "maglev"}))
        served.publisher.mark_ready()
        async with await synced(served, "envoy") as xds:
            served.publisher.submit([ServiceUpdate("web", "dc1", (), 2.0)])  # listed, no instance
            served.publisher.flush()
            emptied_eds = await xds.recv()
            assert endpoints_of(emptied_eds) == {"web": 0}
            await xds.ack(emptied_eds, ["web"])
            await until(lambda: served.gate.pending == {}, what="the gate let it go")
            # Still in Consul's catalog: kept, with its settings (not reset to defaults).
            kept = served.publisher.clusters["web"].message
            assert isinstance(kept, cluster_pb2.Cluster)
            assert kept.lb_policy == cluster_pb2.Cluster.MAGLEV
            served.publish("web")  # and now gone: its clients took the empty endpoints already
            assert "web" not in served.publisher.clusters


def test_what_emptying_changes_is_what_clients_must_take() -> None:
    ip_only = built("web", [instance("web", 1)])
    assert emptied_names(ip_only) == {ENDPOINT: frozenset({"web"})}
    assert emptied_names(emptied(ip_only)) == {}  # nothing left to take
    mixed = built("web", [instance("web", 1), instance("web", 2, address="backend.local")])
    assert emptied_names(mixed) == {CLUSTER: frozenset({"web"}), ENDPOINT: frozenset({"web~eds"})}
    only_hostname = built("web", [instance("web", 2, address="backend.local")])
    assert emptied_names(only_hostname) == {CLUSTER: frozenset({"web"})}
