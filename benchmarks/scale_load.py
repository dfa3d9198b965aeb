"""B3's load: the xDS client that times changes, and the writer that makes them in Consul.

Both run in the benchmark's process, never in the bridge's (:mod:`benchmarks.catalog_scale`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import aiohttp
import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc

from bridge.tasks import within
from consul_double import seed
from tests.support.xds_client import XdsClient
from xds_server.resource import CLUSTER, ENDPOINT

HEALTHY = health_check_pb2.HEALTHY
UNHEALTHY = health_check_pb2.UNHEALTHY
MAX_MESSAGE = 512 * 2**20
FLAPPING = 50  # instances critical at once during the sustained phase


# ------------------------------------------------------------------ the xDS client
@dataclass
class Pending:
    cluster: str
    address: str
    health: int  # the Envoy health status expected
    port: int
    started: float
    into: list[float]


@dataclass
class Watcher:
    """Reads every response, ACKs it, and times the pending changes it carries."""

    client: XdsClient
    clusters: list[str] = field(default_factory=list)
    pending: dict[str, list[Pending]] = field(default_factory=dict)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    eds_seen: set[str] = field(default_factory=set)
    responses: int = 0

    def expect(self, change: Pending) -> None:
        self.pending.setdefault(change.cluster, []).append(change)

    def waiting(self) -> int:
        return sum(len(v) for v in self.pending.values())

    async def run(self) -> None:
        while True:
            response = await self.client.recv(timeout=3600)
            self.responses += 1
            done: list[Pending] = []
            if response.type_url == CLUSTER:
                names = []
                for packed in response.resources:
                    cluster = cluster_pb2.Cluster()
                    packed.Unpack(cluster)
                    names.append(cluster.name)
                self.clusters = names
                await self.client.ack(response)
                await self.client.send(ENDPOINT, names)
                continue
            if response.type_url == ENDPOINT:
                for packed in response.resources:
                    assignment = endpoint_pb2.ClusterLoadAssignment()
                    packed.Unpack(assignment)
                    self.eds_seen.add(assignment.cluster_name)
                    waiting = self.pending.get(assignment.cluster_name)
                    if waiting:
                        done += self._carried(assignment, waiting)
            await self.client.ack(response, self.clusters if response.type_url == ENDPOINT else ())
            now = time.perf_counter()
            for change in done:
                change.into.append((now - change.started) * 1000)
            if done:
                self.arrived.set()

    def _carried(
        self, assignment: endpoint_pb2.ClusterLoadAssignment, waiting: list[Pending]
    ) -> list[Pending]:
        by_address = {
            lb.endpoint.address.socket_address.address: lb
            for locality in assignment.endpoints
            for lb in locality.lb_endpoints
        }
        done = []
        for change in list(waiting):
            lb = by_address.get(change.address)
            if (
                lb is not None
                and lb.health_status == change.health
                and lb.endpoint.address.socket_address.port_value == change.port
            ):
                waiting.remove(change)
                done.append(change)
        if not waiting:
            del self.pending[assignment.cluster_name]
        return done

    async def wait_all(self, timeout: float) -> bool:
        deadline = time.perf_counter() + timeout
        while self.pending:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return False
            self.arrived.clear()
            with contextlib.suppress(TimeoutError):
                await within(self.arrived.wait(), remaining)
        return True


class BigClient(XdsClient):
    """:class:`XdsClient` whose channel accepts the 10,000-resource responses."""

    def __init__(self, target: str, node_id: str) -> None:
        super().__init__(target, node_id)
        self.call.cancel()
        old = self.channel
        self._old_channel = old
        self.channel = grpc.aio.insecure_channel(
            target,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_MESSAGE),
            ],
        )
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(
            self.channel
        ).StreamAggregatedResources()

    async def close(self) -> None:
        await super().close()
        await self._old_channel.close()


# ------------------------------------------------------------------ writes to Consul
class Writer:
    """Changes one instance at a time through the double's HTTP API (from 127.0.0.2, so its
    connection is not counted against the bridge's per-client cap)."""

    def __init__(self, url: str, services: int, instances: int, nodes: int) -> None:
        self.url = url
        self.services, self.instances, self.nodes = services, instances, nodes
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=8, local_addr=("127.0.0.2", 0))
        )
        self.critical: dict[tuple[int, int], None] = {}  # insertion-ordered
        self.moved: set[tuple[int, int]] = set()

    def next_flap(self, rng: random.Random, busy: Mapping[str, object]) -> tuple[int, int]:
        """The instance to flip next: the oldest critical one once FLAPPING are, else a new one
        (never one of a service that still has a change in flight)."""
        if len(self.critical) >= FLAPPING:
            for i, j in self.critical:  # insertion order: oldest first
                if seed.service_name(i) not in busy:
                    return i, j
        while True:
            i, j = rng.randrange(self.services), rng.randrange(self.instances)
            if seed.service_name(i) not in busy and (i, j) not in self.critical:
                return i, j

    def flip(self, i: int, j: int) -> tuple[str, int, int]:
        """Decide the instance's next check status → (check URL, expected health, port)."""
        fail = (i, j) not in self.critical
        if fail:
            self.critical[(i, j)] = None
        else:
            del self.critical[(i, j)]
        action = "fail" if fail else "pass"
        url = f"{self.url}/v1/agent/check/{action}/service:{seed.instance_id(i, j)}"
        return url, (UNHEALTHY if fail else HEALTHY), self.port(i, j)

    async def put(self, url: str) -> None:
        async with self.session.put(url) as resp:
            resp.raise_for_status()

    async def flip_check(self, i: int, j: int) -> tuple[int, int]:
        """Toggle the instance's TTL check; returns (expected Envoy health, port)."""
        url, health, port = self.flip(i, j)
        await self.put(url)
        return health, port

    def port(self, i: int, j: int) -> int:
        return seed.instance_port(j) + (1000 if (i, j) in self.moved else 0)

    async def move_port(self, i: int, j: int) -> tuple[int, int]:
        """Re-register the instance on another port (only the catalog index moves)."""
        (self.moved.discard if (i, j) in self.moved else self.moved.add)((i, j))
        node = seed.node_of(i, j, self.instances, self.nodes)
        body = {
            "Node": node,
            "Address": seed.node_address(node),
            "SkipNodeUpdate": True,
            "Service": {
                "ID": seed.instance_id(i, j),
                "Service": seed.service_name(i),
                "Address": seed.instance_address(i, j),
                "Port": self.port(i, j),
            },
        }
        async with self.session.put(f"{self.url}/v1/catalog/register", json=body) as resp:
            resp.raise_for_status()
        return (UNHEALTHY if (i, j) in self.critical else HEALTHY), self.port(i, j)

    async def close(self) -> None:
        await self.session.close()
