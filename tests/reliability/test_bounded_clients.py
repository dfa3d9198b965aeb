"""Bounded clients: an oversized node is refused naming the limit, and what a client sends
(node ids, NACK messages, type URLs) reaches log lines and debug views cut to a sane length."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import grpc
import pytest
from envoy.config.core.v3 import base_pb2

from tests.conftest import XdsServer
from tests.support.waiting import until
from tests.support.xds_client import XdsClient
from tests.support.xds_resources import eds_cluster
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER

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
