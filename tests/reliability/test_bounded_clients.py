"""Bounded clients: an oversized node is refused naming the limit, what a client sends (node
ids, NACK messages, type URLs) reaches log lines and debug views cut to a sane length, and a
subscription of thousands of unknown names is answered in bounded steps."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2

from tests.conftest import XdsServer
from tests.support.waiting import until
from tests.support.xds_client import DeltaClient, XdsClient, names_in
from tests.support.xds_resources import eds_cluster
from xds_server import ClientRegistry, DiscoveryServer, Limits, SnapshotCache, start_server
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT

LINE = 2000  # no log line about a client is longer than this


async def refusal(xds: XdsServer, node: base_pb2.Node) -> grpc.aio.AioRpcError:
    async with XdsClient(xds.target) as client:
        client.node = node
        await client.send(CLUSTER)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await client.recv()
    return refused.value


@pytest.mark.parametrize(
    ("field", "node"),
    [
        ("node.id", base_pb2.Node(id="n" * 600_000)),
        ("node.cluster", base_pb2.Node(id="edge-1", cluster="c" * 513)),
        ("node.metadata", base_pb2.Node(id="edge-1")),
    ],
)
async def test_an_oversized_node_is_refused_naming_the_limit(
    xds: XdsServer, field: str, node: base_pb2.Node, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    if field == "node.metadata":
        node.metadata.update({f"k{i}": "v" * 100 for i in range(200)})
    error = await refusal(xds, node)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    limit = {"node.id": 512, "node.cluster": 512, "node.metadata": 16384}[field]
    assert f"{field} is " in str(error.details())
    assert f"the limit is {limit} bytes" in str(error.details())
    assert xds.registry.streams == {}
    assert caplog.records
    assert all(len(r.getMessage()) < LINE for r in caplog.records)


async def test_a_node_at_the_limits_is_served(xds: XdsServer) -> None:
    xds.cache.set_snapshot("n" * 512, Snapshot.of([eds_cluster("web")]))
    node = base_pb2.Node(id="n" * 512, cluster="c" * 512)
    async with XdsClient(xds.target) as client:
        client.node = node
        await client.send(CLUSTER)
        assert len((await client.recv()).resources) == 1
        (stream,) = xds.registry.streams.values()
        assert not stream.node.extensions  # the stream keeps a trimmed copy of its node


@pytest.fixture
async def nacking_node(xds: XdsServer) -> AsyncIterator[XdsClient]:
    node_id = "x" * 500
    xds.cache.set_snapshot(node_id, Snapshot.of([eds_cluster("web")]))
    async with XdsClient(xds.target, node_id=node_id) as client:
        yield client


async def test_huge_nack_messages_are_cut_in_logs_and_debug(
    xds: XdsServer, nacking_node: XdsClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await nacking_node.send(CLUSTER)
    response = await nacking_node.recv()
    await nacking_node.send(
        CLUSTER, nonce=response.nonce, error="Error adding/updating cluster(s) " + "y" * 3_000_000
    )
    (stream,) = xds.registry.streams.values()
    await until(lambda: stream.state(CLUSTER).last_nack is not None, what="the NACK read")
    nack = stream.state(CLUSTER).last_nack
    assert nack is not None
    assert len(nack.message) < LINE
    assert [r for r in caplog.records if "rejected" in r.getMessage()]
    assert all(len(r.getMessage()) < LINE for r in caplog.records)


async def test_names_that_do_not_exist_are_answered_in_bounded_steps() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("client-1", Snapshot.of([eds_cluster("web")]))
    limits = Limits(max_absent_per_response=1000)
    server, port = await start_server(
        DiscoveryServer(cache, ClientRegistry(), limits), "127.0.0.1:0"
    )
    ghosts = [f"ghost-{i}" for i in range(2500)]
    try:
        async with XdsClient(f"127.0.0.1:{port}") as sotw:
            await sotw.send(ENDPOINT, ghosts)
            answered: list[str] = []
            for _ in range(3):  # 1,000 + 1,000 + 500 placeholders, one response at a time
                response = await sotw.recv()
                assert len(response.resources) <= 1000
                answered += names_in(response)
                await sotw.ack(response, ghosts)
            assert sorted(answered) == sorted(ghosts)
        async with DeltaClient(f"127.0.0.1:{port}") as delta:
            await delta.send(ENDPOINT, subscribe=ghosts)
            removed: list[str] = []
            for _ in range(3):
                response = await delta.recv()
                assert len(response.removed_resources) <= 1000
                removed += response.removed_resources
                await delta.ack(response)
            assert sorted(removed) == sorted(ghosts)
    finally:
        await server.stop(None)
