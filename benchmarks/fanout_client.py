"""Simulated xDS clients for the fan-out benchmark: ``count`` ADS streams that behave like Envoy.

Each stream subscribes to every cluster (wildcard CDS), then to the endpoint assignments of the
clusters it got (EDS by name), and ACKs every response. Prints ``ready`` once every stream holds
its initial config, then records when each stream receives an EDS update; on a line on stdin it
prints those records as JSON (``[[stream, monotonic time, version], ...]``) and exits.

Run by :mod:`benchmarks.fanout` as ``python -m benchmarks.fanout_client TARGET COUNT FIRST``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from bridge.tasks import within

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

Record = tuple[int, float, str]


async def stream(
    channel: grpc.aio.Channel, number: int, ready: asyncio.Event, records: list[Record]
) -> None:
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
    node = base_pb2.Node(id=f"fanout-{number}", cluster="fanout", user_agent_name="bench")
    await call.write(discovery_pb2.DiscoveryRequest(type_url=CLUSTER, node=node))
    names: list[str] = []
    synced = set()
    while True:
        response = await call.read()
        if response is grpc.aio.EOF:
            return
        if response.type_url == ENDPOINT and ENDPOINT in synced:
            records.append((number, time.monotonic(), response.version_info))
        ack = discovery_pb2.DiscoveryRequest(
            type_url=response.type_url,
            version_info=response.version_info,
            response_nonce=response.nonce,
        )
        if response.type_url == CLUSTER:
            for packed in response.resources:
                cluster = cluster_pb2.Cluster()
                packed.Unpack(cluster)
                names.append(cluster.name)
            await call.write(ack)
            if CLUSTER not in synced:
                synced.add(CLUSTER)
                await call.write(
                    discovery_pb2.DiscoveryRequest(type_url=ENDPOINT, resource_names=names)
                )
            continue
        ack.resource_names.extend(names)
        await call.write(ack)
        synced.add(ENDPOINT)
        if len(synced) == 2:
            ready.set()


async def resilient_stream(
    channel: grpc.aio.Channel, number: int, ready: asyncio.Event, records: list[Record]
) -> None:
    """Like Envoy: a stream that fails is opened again, after a short backoff."""
    for attempt in range(6):
        try:
            await stream(channel, number, ready, records)
            return
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.1 * 2**attempt)


async def main(target: str, count: int, first: int) -> None:
    records: list[Record] = []
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, count // 250))]
    readies = [asyncio.Event() for _ in range(count)]
    tasks = [
        asyncio.create_task(
            resilient_stream(channels[i % len(channels)], first + i, readies[i], records)
        )
        for i in range(count)
    ]
    await within(asyncio.gather(*(r.wait() for r in readies)), 300)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps(records), flush=True)
    for task in tasks:
        task.cancel()
    for channel in channels:
        await channel.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
