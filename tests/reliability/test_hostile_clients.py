"""Slow and hostile xDS clients: nobody can stall the others or take the server down."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future
from dataclasses import dataclass

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.rpc import status_pb2
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from tests.support.xds_client import XdsClient
from tests.support.xds_resources import eds_cluster, load_assignment
from xds_server import Limits
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import ClientRegistry

#: What a hostile request may earn: a clean refusal, never an internal error.
CLEAN_REFUSALS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.PERMISSION_DENIED,
}


@dataclass
class Server:
    cache: SnapshotCache
    registry: ClientRegistry
    target: str


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    cache = SnapshotCache()
    registry = ClientRegistry()
    limits = Limits(max_names_per_request=100, max_name_length=64)
    grpc_server, port = await start_server(DiscoveryServer(cache, registry, limits), "127.0.0.1:0")
    yield Server(cache, registry, f"127.0.0.1:{port}")
    await grpc_server.stop(None)


def big_snapshot(round_: int, clusters: int = 300) -> Snapshot:
    return Snapshot.of(
        [eds_cluster(f"svc-{i}-{'x' * 200}", 500 + round_) for i in range(clusters)]
        + [load_assignment("svc-0", [8000 + round_])]
    )


async def test_a_client_that_never_reads_does_not_delay_others(server: Server) -> None:
    for node in ("stuck", "healthy"):
        server.cache.set_snapshot(node, big_snapshot(0))
    stuck = XdsClient(server.target, node_id="stuck")
    await stuck.send(CLUSTER)  # ... and never reads a response nor ACKs
    async with XdsClient(server.target, node_id="healthy") as healthy:
        await healthy.send(CLUSTER)
        await healthy.ack(await healthy.recv())
        for round_ in range(1, 30):  # ~100 KB of clusters per change, to both nodes
            for node in ("stuck", "healthy"):
                server.cache.set_snapshot(node, big_snapshot(round_))
            response = await healthy.recv(timeout=5)
            assert response.version_info == server.cache.get("healthy").version(CLUSTER)  # type: ignore[union-attr]
            await healthy.ack(response)
    (stuck_stream,) = server.registry.by_node("stuck")
    # One response in flight per type: nothing queues up behind a client that does not answer.
    assert stuck_stream.state(CLUSTER).version_acked is None
    assert stuck_stream.state(CLUSTER).version_sent == big_snapshot(0).version(CLUSTER)
    await stuck.close()


async def test_limits_on_names_and_message_size_give_clear_errors(server: Server) -> None:
    server.cache.set_snapshot("client-1", big_snapshot(0, clusters=3))
    async with XdsClient(server.target) as client:
        await client.send(ENDPOINT, [f"n{i}" for i in range(101)])
        with pytest.raises(grpc.aio.AioRpcError) as too_many:
            await client.recv()
    assert too_many.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "101 resource names" in str(too_many.value.details())
    assert "limit is 100" in str(too_many.value.details())

    async with XdsClient(server.target) as client:
        await client.send(ENDPOINT, ["n" * 65])
        with pytest.raises(grpc.aio.AioRpcError) as too_long:
            await client.recv()
    assert too_long.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "65 characters" in str(too_long.value.details())

    async with XdsClient(server.target) as client:
        await client.send(ENDPOINT, ["n" * 60] * 80_000)  # ~5 MB, over the 4 MiB message limit
        with pytest.raises(grpc.aio.AioRpcError) as too_big:
            await client.recv()
    assert too_big.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    async with XdsClient(server.target) as client:  # and the server still serves
        await client.send(CLUSTER)
        assert len((await client.recv()).resources) == 3


async def send_then_recv(client: XdsClient) -> None:
    await client.send(CLUSTER)
    await client.recv()


async def test_streams_beyond_the_limit_are_refused_and_the_rest_keep_working() -> None:
    cache = SnapshotCache()
    cache.set_snapshot("client-1", big_snapshot(0, clusters=2))
    grpc_server, port = await start_server(
        DiscoveryServer(cache, ClientRegistry(), Limits(max_streams=2)), "127.0.0.1:0"
    )
    target = f"127.0.0.1:{port}"
    try:
        async with XdsClient(target) as first, XdsClient(target) as second:
            for client in (first, second):
                await client.send(CLUSTER)
                await client.ack(await client.recv())
            async with XdsClient(target) as third:
                # the refusal may end the call before the request is written, or after
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await send_then_recv(third)
            assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "the limit is 2" in str(refused.value.details())
            cache.set_snapshot("client-1", big_snapshot(1, clusters=2))
            assert len((await first.recv()).resources) == 2  # the open streams are unaffected
    finally:
        await grpc_server.stop(None)


# ------------------------------------------------------------------ property-based fuzzing
@pytest.fixture
def threaded_server() -> Iterator[str]:
    """A discovery server on its own event loop thread, for synchronous hypothesis tests."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    cache = SnapshotCache()
    for node in ("fuzz", "client-1"):
        cache.set_snapshot(node, big_snapshot(0, clusters=3))
    limits = Limits(max_names_per_request=1000, max_name_length=256)
    started: Future[tuple[grpc.aio.Server, int]] = asyncio.run_coroutine_threadsafe(
        start_server(DiscoveryServer(cache, ClientRegistry(), limits), "127.0.0.1:0"), loop
    )
    grpc_server, port = started.result(timeout=10)
    yield f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(grpc_server.stop(None), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


TYPE_URLS = st.one_of(
    st.sampled_from([CLUSTER, ENDPOINT, LISTENER, ROUTE, "", "type.googleapis.com/nope"]),
    st.text(max_size=80),
)
NAMES = st.one_of(
    st.lists(st.text(max_size=40), max_size=20),
    st.lists(st.sampled_from(["*", "svc-0", "ghost", ""]), max_size=5),
    st.integers(min_value=900, max_value=1200).map(lambda n: [f"n{i}" for i in range(n)]),
)


@st.composite
def requests(draw: st.DrawFn) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=draw(TYPE_URLS),
        resource_names=draw(NAMES),
        version_info=draw(st.text(max_size=30)),
        response_nonce=draw(st.one_of(st.just(""), st.text(max_size=10), st.just("1"))),
    )
    node = draw(st.sampled_from(["none", "empty", "fuzz"]))
    if node != "none":
        request.node.CopyFrom(base_pb2.Node(id="" if node == "empty" else "fuzz"))
    if draw(st.booleans()):
        request.error_detail.CopyFrom(
            status_pb2.Status(code=draw(st.integers(-5, 50)), message=draw(st.text(max_size=200)))
        )
    return request


#: Generous: an answer takes milliseconds; only a server that hangs gets anywhere near this.
STREAM_DEADLINE = 15.0


def send_and_finish(target: str, sequence: list[discovery_pb2.DiscoveryRequest]) -> None:
    """Send ``sequence`` and close the sending side: the server must answer and end the stream
    (OK, or a clean refusal), never hang it or fail internally."""
    with grpc.insecure_channel(target) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources(iter(sequence), timeout=STREAM_DEADLINE)
        code, details = grpc.StatusCode.OK, ""
        try:
            for response in call:
                assert response.type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE)
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
    assert code in CLEAN_REFUSALS | {grpc.StatusCode.OK}, (code, details)


def test_random_requests_get_answers_or_clean_errors_and_the_server_keeps_serving(
    threaded_server: str,
) -> None:
    fuzz = settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        # no shrinking: against a hanging server every attempt would wait out the deadline
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )(given(sequence=st.lists(requests(), min_size=1, max_size=4))(send_and_finish))
    fuzz(threaded_server)

    # After all of that, a well-behaved client is served as usual.
    with grpc.insecure_channel(threaded_server) as channel:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        request = discovery_pb2.DiscoveryRequest(
            type_url=CLUSTER, node=base_pb2.Node(id="client-1")
        )
        call = stub.StreamAggregatedResources(iter([request]), timeout=STREAM_DEADLINE)
        assert len(next(call).resources) == 3
        call.cancel()
