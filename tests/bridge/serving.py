"""A publisher served by a real discovery server, wired as the bridge wires them (no Consul):
node keys by variant, the ACK-watching deletion gate, and helpers to publish instances."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from bridge.app import node_key_function
from bridge.catalog import ServiceUpdate
from bridge.deletion_gate import AckGate
from bridge.model import Check, Instance
from bridge.publisher import Publisher
from xds_server import ClientRegistry, DiscoveryServer, SnapshotCache, start_server

GRPC_NODE_AGENT = ("gRPC Node Pure JS", "1.14.1")
GRPC_PYTHON_AGENT = ("gRPC C-core linux Python", "C-core 58.0.0 Python 1.85.3")


def instance(
    service: str,
    n: int,
    address: str = "",
    meta: dict[str, str] | None = None,
    weight: int = 1,
    status: str = "passing",
) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{n}",
        node=f"node{n}",
        datacenter="dc1",
        address=address or f"10.0.0.{n}",
        port=8000 + n,
        meta=tuple(sorted((meta or {}).items())),
        weight_passing=weight,
        checks=(Check(f"service:{service}-{n}", "c", status, f"{service}-{n}"),),
    )


@dataclass
class Serving:
    publisher: Publisher
    cache: SnapshotCache
    registry: ClientRegistry
    gate: AckGate
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, service: str, *instances: Instance) -> None:
        """``service`` now has exactly ``instances`` (none: it left the catalog)."""
        self.publisher.submit([ServiceUpdate(service, "dc1", tuple(instances) or None, 1.0)])
        self.publisher.flush()


@asynccontextmanager
async def serving(node_key: str = "id", deletion_timeout: float = 30.0) -> AsyncIterator[Serving]:
    cache = SnapshotCache(node_key_function(node_key))
    registry = ClientRegistry()
    gate = AckGate(registry, timeout=deletion_timeout)
    publisher = Publisher(cache, debounce=0, deletion_gate=gate)
    publisher.set_datacenters(["dc1"])
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    try:
        yield Serving(publisher, cache, registry, gate, port)
    finally:
        await server.stop(grace=None)
