"""xDS stream churn for :mod:`benchmarks.churn`: ``count`` connect/disconnect cycles.

Each cycle opens an ADS stream on a shared channel, asks for clusters (node ``churn-<n>``), reads
the response, ACKs it and cancels the stream; cycles run ``BATCH`` at a time. Prints one JSON
line: ``{"seconds": wall time of all cycles, "cycle_ms": [open → response received, ...]}``.

Run by :mod:`benchmarks.churn` as ``python -m benchmarks.churn_client TARGET FIRST COUNT``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
BATCH = 50


async def cycle(channel: grpc.aio.Channel, number: int) -> float:
    started = time.perf_counter()
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    node = base_pb2.Node(id=f"churn-{number}", cluster="churn")
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=node))
    response = await call.read()
    if response is grpc.aio.EOF:
        raise RuntimeError(f"stream {number} ended without a response")
    elapsed = (time.perf_counter() - started) * 1000
    await call.write(
        discovery_pb2.DiscoveryRequest(
            type_url=CLUSTER, version_info=response.version_info, response_nonce=response.nonce
        )
    )
    call.cancel()
    return elapsed


async def main(target: str, first: int, count: int) -> None:
    cycle_ms: list[float] = []
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(target) as channel:
        for start in range(first, first + count, BATCH):
            batch = range(start, min(first + count, start + BATCH))
            async with asyncio.timeout(60):
                cycle_ms += await asyncio.gather(*(cycle(channel, n) for n in batch))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "cycle_ms": [round(v, 3) for v in cycle_ms]}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
