"""Per-node state lives as long as the node's streams: many distinct nodes connecting, being
served (SotW and delta, with per-node templates, ACKs and NACKs) and leaving put the memory held
by the bridge's own code back where it was."""

from __future__ import annotations

import gc
import logging
import tracemalloc
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import until
from tests.support.xds_client import DeltaClient, XdsClient
from xds_server import CLUSTER, LISTENER

ROOT = Path(__file__).resolve().parents[2]
SERVING_SIDE = (
    "xds_server/*",
    "bridge/app.py",
    "bridge/publisher.py",
    "bridge/metrics.py",
    "bridge/templat*",
    "bridge/logs.py",
    "bridge/debug.py",
)
BATCH = 25
#: Blocks the serving side may hold more after the churn than before it, whatever the number of
#: nodes (the last streams' gRPC buffers): a per-node leak shows as at least a block per node.
SLACK = 40


async def sotw_node(target: str, node_id: str) -> XdsClient:
    client = XdsClient(target, node_id)
    await client.send(CLUSTER)
    clusters = await client.recv()
    await client.nack(clusters, last_good="")
    await client.send(LISTENER)
    await client.ack(await client.recv())
    return client


async def delta_node(target: str, node_id: str) -> DeltaClient:
    client = DeltaClient(target, node_id)
    await client.send(CLUSTER)
    await client.ack(await client.recv())
    await client.send(LISTENER)
    await client.ack(await client.recv())
    return client


async def churn(bridge: Bridge, prefix: str, nodes: int) -> None:
    """Connect ``nodes`` distinct nodes in batches, serve them, disconnect them all."""
    target = f"127.0.0.1:{bridge.xds_port}"
    for start in range(0, nodes, BATCH):
        clients: list[XdsClient | DeltaClient] = []
        for number in range(start, min(nodes, start + BATCH)):
            node_id = f"{prefix}-{number}"
            if number % 2:
                clients.append(await delta_node(target, node_id))
            else:
                clients.append(await sotw_node(target, node_id))
        for client in clients:
            await client.close()
    await until(lambda: not bridge.registry.streams, what="every stream closed")
    await until(lambda: not bridge.cache.watched(), what="every node key released")


def blocks_held_by_the_bridge() -> int:
    """Memory blocks allocated by the serving side's code and still alive (the Consul side,
    whose in-flight blocking queries come and go, is left out)."""
    gc.collect()
    ours = [tracemalloc.Filter(True, str(ROOT / pattern)) for pattern in SERVING_SIDE]
    snapshot = tracemalloc.take_snapshot().filter_traces(ours)
    return sum(stat.count for stat in snapshot.statistics("filename"))


async def test_many_distinct_nodes_coming_and_going_leave_no_state_behind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR)  # the test's own log capture would hold the NACK warnings
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        async with Bridge(bridge_config(consul), TemplateSource()) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            tracemalloc.start()
            try:
                await churn(bridge, "warmup", 2 * BATCH)
                before = blocks_held_by_the_bridge()
                await churn(bridge, "node", 8 * BATCH)
                after = blocks_held_by_the_bridge()
            finally:
                tracemalloc.stop()

            assert after - before <= SLACK, f"{after - before} more blocks after 200 nodes"
            assert bridge.cache.snapshot_keys() == []
            assert bridge.cache.listener_count() == 0
            assert bridge.templates is not None
            assert bridge.templates.errors == {}
            assert bridge.publisher.problem is None
            assert bridge.metrics.registry.get_sample_value("consul_xds_connected_clients") == 0
