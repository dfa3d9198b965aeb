"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from xds_server.cache import SnapshotCache
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import ClientRegistry


@dataclass
class XdsServer:
    cache: SnapshotCache
    registry: ClientRegistry
    discovery: DiscoveryServer
    server: grpc.aio.Server
    port: int

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture
async def xds() -> AsyncIterator[XdsServer]:
    """A discovery server on a free loopback port, serving a fresh snapshot cache."""
    cache = SnapshotCache()
    registry = ClientRegistry()
    discovery = DiscoveryServer(cache, registry)
    server, port = await start_server(discovery, "127.0.0.1:0")
    yield XdsServer(cache, registry, discovery, server, port)
    await server.stop(grace=None)
