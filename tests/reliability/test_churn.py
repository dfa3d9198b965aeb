"""Stream churn: thousands of xDS connect/disconnect cycles leave no per-stream or per-node state
behind (what memory that costs is measured by the benchmarks, not asserted here).

``make soak`` runs 5,000 cycles; ``make test`` (and CI) a shortened 600.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.tasks import within
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import until

pytestmark = pytest.mark.soak

ROOT = Path(__file__).resolve().parents[2]
SOAK = bool(os.environ.get("SOAK"))
CYCLES = 5000 if SOAK else 600

CLIENT = """
import asyncio, sys
import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from bridge.tasks import within

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"

async def cycle(channel, number):
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    node = base_pb2.Node(id=f"churn-{number}", cluster="churn")
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=node))
    response = await call.read()
    await call.write(discovery_pb2.DiscoveryRequest(
        type_url=CLUSTER, version_info=response.version_info, response_nonce=response.nonce))
    call.cancel()

async def main(target, first, count):
    async with grpc.aio.insecure_channel(target) as channel:
        for start in range(first, first + count, 50):
            batch = range(start, min(first + count, start + 50))
            await within(asyncio.gather(*(cycle(channel, n) for n in batch)), 60)
    print("done", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
"""


async def run_cycles(port: int, first: int, count: int) -> None:
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        f"127.0.0.1:{port}",
        str(first),
        str(count),
        stdout=asyncio.subprocess.PIPE,
        cwd=ROOT,
    )
    out, _ = await within(client.communicate(), 300)
    assert client.returncode == 0
    assert out.strip() == b"done"


async def drained(bridge: Bridge) -> None:
    """Every stream closed and every per-node piece of state released."""
    await until(lambda: not bridge.registry.streams, what="all streams closed")
    await until(lambda: not bridge.cache.snapshot_keys(), what="per-node snapshots released")


async def test_connect_disconnect_cycles_leak_nothing() -> None:
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        async with Bridge(bridge_config(consul)) as bridge:
            await until(lambda: bridge.readiness()[0], what="bridge ready")
            await run_cycles(bridge.xds_port, 0, CYCLES)
            await drained(bridge)

            assert bridge.discovery.active_streams == 0
            assert bridge.cache.listener_count() == 0
            assert bridge.cache.watched() == {}
            assert bridge.metrics.registry.get_sample_value("consul_xds_connected_clients") == 0
            acks = bridge.metrics.registry.get_sample_value(
                "consul_xds_acks_total", {"type": "cluster"}
            )
            assert acks == CYCLES  # every cycle really connected and was served
