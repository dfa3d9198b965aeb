"""Bytes on the wire per change, SotW vs delta, for a 1,000-service catalog, both directions.

A SotW and a delta ADS client each subscribe to every cluster (wildcard) and every endpoint
assignment (by name), as Envoy does, through their own counting relay
(:class:`benchmarks.wire.Relay`). Then, one at a time: an endpoint change of one service, and a
new service (cluster + assignment, which the client then subscribes to). Per change and client:

* **on the wire** (the relay): every byte both ways from the change until the link is quiet:
  the response(s), the client's requests (a SotW ACK repeats every subscribed name; a delta ACK
  carries a nonce), HTTP/2 framing of every kind (DATA, WINDOW_UPDATE, PING) and the 5-byte
  gRPC message prefixes. Not counted: TCP/IP headers, and TLS (not used here);
* **messages**: the protobuf sizes of the requests and responses, and those plus the gRPC
  prefix and HTTP/2 DATA frame headers (:func:`benchmarks.wire.framed_size`), as a check.

The server (snapshot cache + discovery server, no Consul) and the clients share this process:
only bytes are measured, which do not depend on where the code runs.

Run: ``.venv/bin/python -m benchmarks.delta_bytes [--services 1000]``.
Writes ``benchmarks/results/delta_bytes.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from benchmarks.common import ImplausibleResult, Row, save_result, until
from benchmarks.wire import Relay, framed_size, relay
from tests.support.xds_client import node
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import CLUSTER, ENDPOINT
from xds_server.server import DiscoveryServer, start_server

NAME = "delta_bytes"
COUNTED = (
    "every byte between client and server both ways (relay): protobuf requests and responses, "
    "5-byte gRPC prefixes, HTTP/2 frames of every kind; not TCP/IP headers, no TLS"
)


class Stream:
    """One ADS stream (SotW or delta) that records the size of every message it sends/gets."""

    def __init__(self, port: int, delta: bool) -> None:
        self.delta = delta
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call: Any = (
            stub.DeltaAggregatedResources() if delta else stub.StreamAggregatedResources()
        )
        self.sent: list[int] = []
        self.received: list[int] = []
        self.latest: dict[str, Any] = {}

    async def send(self, request: Any) -> None:
        if not self.sent:  # the first request of a stream names the node
            request.node.CopyFrom(node("delta" if self.delta else "sotw"))
        self.sent.append(request.ByteSize())
        await self.call.write(request)

    async def recv(self, type_url: str) -> Any:
        async with asyncio.timeout(30):
            response = await self.call.read()
        if response is grpc.aio.EOF or response.type_url != type_url:
            raise ImplausibleResult(f"expected a {type_url} response, got {response!r:.200}")
        self.received.append(response.ByteSize())
        self.latest[type_url] = response
        return response

    async def request(self, type_url: str, names: list[str]) -> None:
        """A (re)subscription: SotW names every resource (and carries the last version and
        nonce of the type); delta names only what it adds."""
        if self.delta:
            await self.send(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=type_url, resource_names_subscribe=names
                )
            )
            return
        request = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=names)
        last = self.latest.get(type_url)
        if last is not None:
            request.version_info, request.response_nonce = last.version_info, last.nonce
        await self.send(request)

    async def ack(self, response: Any, names: list[str]) -> None:
        if self.delta:
            await self.send(
                discovery_pb2.DeltaDiscoveryRequest(
                    type_url=response.type_url, response_nonce=response.nonce
                )
            )
        else:
            await self.send(
                discovery_pb2.DiscoveryRequest(
                    type_url=response.type_url,
                    resource_names=names,
                    version_info=response.version_info,
                    response_nonce=response.nonce,
                )
            )

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


async def counted(
    stream: Stream, wire: Relay, step: Callable[[], Awaitable[None]]
) -> dict[str, int]:
    """Run ``step`` (a coroutine function) and count what it moved."""
    up, down = await wire.quiet()
    sent, received = len(stream.sent), len(stream.received)
    await step()
    up2, down2 = await wire.quiet()
    requests, responses = stream.sent[sent:], stream.received[received:]
    return {
        "wire_total": (up2 - up) + (down2 - down),
        "wire_requests": up2 - up,
        "wire_responses": down2 - down,
        "request_messages": len(requests),
        "request_bytes": sum(requests),
        "response_messages": len(responses),
        "response_bytes": sum(responses),
        "framed_bytes": sum(framed_size(n) for n in requests + responses),
    }


async def client_run(stream: Stream, wire: Relay, cache: SnapshotCache, names: list[str]) -> Any:
    key = "delta" if stream.delta else "sotw"
    everything = [*names, "new"]

    async def initial() -> None:
        await stream.request(CLUSTER, [])
        await stream.ack(await stream.recv(CLUSTER), [])
        await stream.request(ENDPOINT, names)
        await stream.ack(await stream.recv(ENDPOINT), names)

    async def endpoint_change() -> None:
        cache.update_resources(key, ENDPOINT, [load_assignment("svc7", [7777])])
        await stream.ack(await stream.recv(ENDPOINT), names)

    async def new_service() -> None:
        cache.update_resources(key, CLUSTER, [eds_cluster("new")])
        cache.update_resources(key, ENDPOINT, [load_assignment("new", [6000])])
        await stream.ack(await stream.recv(CLUSTER), [])
        await stream.request(ENDPOINT, ["new"] if stream.delta else everything)
        await stream.ack(await stream.recv(ENDPOINT), everything)

    return {
        "initial": await counted(stream, wire, initial),
        "endpoint_change": await counted(stream, wire, endpoint_change),
        "new_service": await counted(stream, wire, new_service),
    }


async def run(services: int) -> dict[str, Any]:
    cache = SnapshotCache()
    discovery = DiscoveryServer(cache)
    server, port = await start_server(discovery, "127.0.0.1:0")
    names = [f"svc{i}" for i in range(services)]
    resources = [eds_cluster(n) for n in names] + [
        load_assignment(n, [8000 + i % 1000, 9000 + i % 1000]) for i, n in enumerate(names)
    ]
    result: dict[str, Any] = {"services": services, "counted": COUNTED}
    try:
        for key in ("sotw", "delta"):
            cache.set_snapshot(key, Snapshot.of(resources))
            async with relay(port) as wire:
                stream = Stream(wire.port, delta=key == "delta")
                try:
                    result[key] = await client_run(stream, wire, cache, names)
                finally:
                    await stream.close()
                    await until(lambda: not discovery.active_streams, 10, "the stream's end")
    finally:
        await server.stop(None)
    return result


async def measure(quick: bool) -> dict[str, Any]:
    return {"cores": os.cpu_count(), **await run(100 if quick else 1000)}


def _text(side: dict[str, int]) -> str:
    return f"{side['wire_total']:,} B (requests {side['wire_requests']:,} B)"


def table_rows(result: dict[str, Any]) -> list[Row]:
    n = f"{result['services']:,} services"
    rows = []
    for phase, label in (
        ("endpoint_change", "an endpoint change"),
        ("new_service", "a new service"),
    ):
        sotw, delta = result["sotw"][phase], result["delta"][phase]
        rows.append(
            Row(
                f"delta_bytes.{phase}",
                f"bytes on the wire for {label}, both directions (responses + ACKs/requests, "
                f"gRPC + HTTP/2 framing), SotW vs delta ({n})",
                "(report)",
                f"SotW {_text(sotw)} vs delta {_text(delta)}",
                sotw["wire_total"],
                "B",
            )
        )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, default=1000)
    args = parser.parse_args()
    result = {"cores": os.cpu_count(), **await run(args.services)}
    save_result(NAME, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
