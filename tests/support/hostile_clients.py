"""Hostile xDS clients, run in a process of their own (their client-side work must not land on
the bridge's event loop): ``python -m tests.support.hostile_clients TARGET`` opens

* ``--flooders`` streams that subscribe ``--names`` EDS names that do not exist and repeat the
  request as fast as gRPC lets them (SotW and delta alternately);
* ``--subscribers`` SotW streams naming as many, reading and ACKing every response (repeating
  every name, as SotW does);
* ``--stuck`` streams that ask for clusters and 50,000 endpoint names and never read;
* one stream whose node id is 1 MiB (refused).

It prints ``started`` once every stream was opened, and runs until killed.
"""

from __future__ import annotations

import argparse
import asyncio

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
OPTIONS = [("grpc.max_receive_message_length", 64 << 20)]


async def flooder(target: str, index: int, names: int) -> None:
    wanted = [f"ghost-{index}-{k}" for k in range(names)]
    node = base_pb2.Node(id=f"flooder-{index}", cluster="hostile")
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call: grpc.aio.StreamStreamCall  # type: ignore[type-arg]
        if index % 2:
            call = stub.DeltaAggregatedResources()
            first = discovery_pb2.DeltaDiscoveryRequest(
                type_url=EDS, resource_names_subscribe=wanted, node=node
            )
            again = discovery_pb2.DeltaDiscoveryRequest(
                type_url=EDS, resource_names_subscribe=wanted
            )
        else:
            call = stub.StreamAggregatedResources()
            first = discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=wanted, node=node)
            again = discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=wanted)
        await call.write(first)
        while True:
            await call.write(again)


async def subscriber(target: str, index: int, names: int) -> None:
    wanted = [f"ghost-{index}-{k}" for k in range(names)]
    node = base_pb2.Node(id=f"subscriber-{index}", cluster="hostile")
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        await call.write(
            discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=wanted, node=node)
        )
        while (response := await call.read()) is not grpc.aio.EOF:
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=EDS,
                    resource_names=wanted,
                    version_info=response.version_info,
                    response_nonce=response.nonce,
                )
            )


async def stuck(target: str, index: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        node = base_pb2.Node(id=f"stuck-{index}", cluster="hostile")
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CDS, node=node))
        names = [f"x{k}" for k in range(50_000)]
        await call.write(discovery_pb2.DiscoveryRequest(type_url=EDS, resource_names=names))
        await asyncio.Event().wait()  # never reads


async def oversized(target: str) -> None:
    async with grpc.aio.insecure_channel(target, options=OPTIONS) as channel:
        call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        node = base_pb2.Node(id="n" * (1 << 20))
        await call.write(discovery_pb2.DiscoveryRequest(type_url=CDS, node=node))
        try:
            await call.read()
        except grpc.aio.AioRpcError as exc:
            print(f"oversized node refused: {exc.code().name}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("target")
    parser.add_argument("--flooders", type=int, default=2)
    parser.add_argument("--subscribers", type=int, default=2)
    parser.add_argument("--stuck", type=int, default=10)
    parser.add_argument("--names", type=int, default=100_000)
    args = parser.parse_args()
    tasks = [asyncio.create_task(oversized(args.target))]
    tasks += [
        asyncio.create_task(flooder(args.target, i, args.names)) for i in range(args.flooders)
    ]
    tasks += [
        asyncio.create_task(subscriber(args.target, i, args.names)) for i in range(args.subscribers)
    ]
    tasks += [asyncio.create_task(stuck(args.target, i)) for i in range(args.stuck)]
    print("started", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main())
