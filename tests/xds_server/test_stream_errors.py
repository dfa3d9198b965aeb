"""A failure inside the server ends only the stream it hit, with INTERNAL and an ERROR log line
naming the node; every other client keeps being served."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.support.xds_client import DeltaClient, XdsClient, names_in
from tests.support.xds_resources import eds_cluster
from xds_server import (
    CLUSTER,
    ClientRegistry,
    DiscoveryServer,
    Listener,
    Snapshot,
    SnapshotCache,
    start_server,
)

BROKEN = "broken-node"
FINE = "fine-node"


def key_unless_broken(node: base_pb2.Node) -> str:
    """A node-grouping rule with a bug for one node (say, a metadata field it did not expect)."""
    if node.id == BROKEN:
        raise KeyError("group")
    return str(node.id)


class SnapshotsWithABadKey:
    """The cache's reading side, failing to read one node's snapshot."""

    def __init__(self, cache: SnapshotCache) -> None:
        self._cache = cache

    def node_key(self, node: base_pb2.Node) -> str:
        return self._cache.node_key(node)

    def get(self, key: str) -> Snapshot | None:
        if key == BROKEN:
            raise RuntimeError("snapshot store unavailable")
        return self._cache.get(key)

    def watch(self, node: base_pb2.Node, listener: Listener) -> str:
        return self._cache.watch(node, listener)

    def unwatch(self, key: str, listener: Listener) -> None:
        self._cache.unwatch(key, listener)


@pytest.fixture(params=["reading a request", "computing a response"])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    if request.param == "reading a request":
        cache = SnapshotCache(key_unless_broken)
        discovery = DiscoveryServer(cache, ClientRegistry())
    else:
        cache = SnapshotCache()
        discovery = DiscoveryServer(SnapshotsWithABadKey(cache), ClientRegistry())
    for node_id in (BROKEN, FINE):
        cache.set_snapshot(node_id, Snapshot.of([eds_cluster("web")]))
    server, port = await start_server(discovery, "127.0.0.1:0")
    yield f"127.0.0.1:{port}"
    await server.stop(grace=None)


def logged_error_about(caplog: pytest.LogCaptureFixture, node_id: str) -> bool:
    return any(
        record.levelno == logging.ERROR
        and record.name.startswith("xds_server")
        and node_id in record.getMessage()
        and record.exc_info is not None
        for record in caplog.records
    )


def connect(target: str, protocol: str, node_id: str) -> XdsClient | DeltaClient:
    return XdsClient(target, node_id) if protocol == "sotw" else DeltaClient(target, node_id)


def served_names(response: Any) -> list[str]:
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return [resource.name for resource in response.resources]
    return names_in(response)


@pytest.mark.parametrize("protocol", ["sotw", "delta"])
async def test_a_failing_stream_ends_with_internal_and_an_error_log(
    target: str, protocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="xds_server")
    async with connect(target, protocol, BROKEN) as client:
        await client.send(CLUSTER)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.recv()
        assert raised.value.code() == grpc.StatusCode.INTERNAL
    assert logged_error_about(caplog, BROKEN)
    async with connect(target, protocol, FINE) as client:
        await client.send(CLUSTER)
        assert served_names(await client.recv()) == ["web"]
