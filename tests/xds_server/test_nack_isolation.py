"""One NACK never freezes a type: the rejected resource is found (named in the message, alone, or
by bisecting what changed), refused for that node and reported; everything else keeps flowing.
Plain gRPC clients play Envoy, rejecting any response that carries a bad resource."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.support.xds_client import DeltaClient, XdsClient, unpack_all
from tests.support.xds_resources import eds_cluster, route_config
from xds_server import Limits, Resource
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import CLUSTER, ROUTE
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import BaseObserver, ClientRegistry, StreamInfo

NODE = "client-1"
ROUNDS = 30  # bounded conversations: far more than any isolation here needs


class Rejections(BaseObserver):
    """What the streams isolated as rejected: (type, name, version)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, str, str]] = []

    def resource_rejected(
        self, stream: StreamInfo, type_url: str, resource: Resource, message: str
    ) -> None:
        self.found.append((type_url, resource.name, resource.version))


class Server:
    def __init__(self, cache: SnapshotCache, registry: ClientRegistry, port: int) -> None:
        self.cache = cache
        self.registry = registry
        self.rejections = Rejections()
        registry.add_observer(self.rejections)
        self.target = f"127.0.0.1:{port}"

    def set(self, *resources: Resource) -> None:
        self.cache.set_snapshot(NODE, Snapshot.of(resources))


async def serving(limits: Limits | None = None) -> AsyncIterator[Server]:
    cache, registry = SnapshotCache(), ClientRegistry()
    grpc_server, port = await start_server(DiscoveryServer(cache, registry, limits), "127.0.0.1:0")
    yield Server(cache, registry, port)
    await grpc_server.stop(None)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async for started in serving():
        yield started


def timeouts(response: Any) -> dict[str, int]:
    """Cluster name → connect timeout in ms, as a response carries them."""
    return {c.name: c.connect_timeout.ToMilliseconds() for c in unpack_all(response)}


def clusters(**timeouts_ms: int) -> list[Resource]:
    return [eds_cluster(name, ms) for name, ms in timeouts_ms.items()]


async def until_accepted(
    client: XdsClient, bad: Callable[[Any], bool], message: str = "rejected"
) -> tuple[Any, int]:
    """Play an Envoy that NACKs every response ``bad`` says is bad, until one is accepted;
    returns it and how many were rejected."""
    for rejected in range(ROUNDS):
        response = await client.recv()
        if not bad(response):
            await client.ack(response)
            return response, rejected
        await client.nack(response, last_good="")
    raise AssertionError(f"no response was accepted in {ROUNDS} rounds")


async def test_sotw_a_named_culprit_is_refused_and_the_rest_flows(server: Server) -> None:
    server.set(*clusters(a=500, b=500, c=500))
    async with XdsClient(server.target) as client:
        await client.send(CLUSTER)
        await client.ack(await client.recv())
        server.set(*clusters(a=500, b=600, c=0, d=500))
        bad = await client.recv()
        assert timeouts(bad) == {"a": 500, "b": 600, "c": 0, "d": 500}
        await client.send(
            CLUSTER,
            version="",
            nonce=bad.nonce,
            error="Error adding/updating cluster(s) c: Proto constraint validation failed "
            '(ClusterValidationError.ConnectTimeout: value must be greater than 0s): name: "c"',
        )
        after = await client.recv()
        assert timeouts(after) == {"a": 500, "b": 600, "c": 500, "d": 500}  # c as it was
        await client.ack(after)
        assert [(t, n) for t, n, _ in server.rejections.found] == [(CLUSTER, "c")]
        (stream,) = server.registry.by_node(NODE)
        assert stream.state(CLUSTER).refused == ["c"]

        server.set(*clusters(a=500, b=600, c=0, d=500, e=500))  # changes keep flowing
        assert timeouts(await client.recv())["e"] == 500
        await client.ack(client.latest[CLUSTER])
        server.set(*clusters(a=500, b=600, c=700, d=500, e=500))  # c fixed: sent again
        assert timeouts(await client.recv())["c"] == 700


async def test_sotw_an_unnamed_culprit_is_found_by_bisection(server: Server) -> None:
    names = [f"c{i}" for i in range(8)]
    server.set(*clusters(**dict.fromkeys(names, 500)))
    async with XdsClient(server.target) as client:
        await client.send(CLUSTER)
        await client.ack(await client.recv())
        changed = dict.fromkeys(names, 600) | {"c5": 0}
        server.set(*clusters(**changed))

        def has_zero(response: Any) -> bool:
            return 0 in timeouts(response).values()

        state: dict[str, int] = {}
        nacks = 0
        while state != dict.fromkeys(names, 600) | {"c5": 500}:
            accepted, rejected = await until_accepted(client, has_zero)
            state, nacks = timeouts(accepted), nacks + rejected
            assert nacks < ROUNDS
        assert [(t, n) for t, n, _ in server.rejections.found] == [(CLUSTER, "c5")]
        assert nacks <= 2 * len(names).bit_length()  # a bisection, not one try per resource


async def test_sotw_rds_names_the_route_configuration(server: Server) -> None:
    server.set(route_config("r1", {"a": "a"}), route_config("r2", {"b": "b"}))
    async with XdsClient(server.target) as client:
        await client.send(ROUTE, ["r1", "r2"])
        await client.ack(await client.recv(), ["r1", "r2"])
        server.set(route_config("r1", {"a": "a", "x": "a"}), route_config("r2", {"b": "b2"}))
        bad = await client.recv()
        await client.send(
            ROUTE,
            ["r1", "r2"],
            nonce=bad.nonce,
            error="Only unique values for domains are permitted. Duplicate entry of domain b "
            "in route r2",
        )
        retried = await client.recv()
        assert server.rejections.found[0][:2] == (ROUTE, "r2")
        assert [r.name for r in unpack_all(retried)] == ["r1"]  # r1 goes out, r2 stays as it was


async def test_a_node_that_rejects_everything_is_bounded() -> None:
    limits = Limits(nack_isolations=3)
    async for server in serving(limits):
        server.set(*clusters(a=500, b=500, c=500, d=500, e=500))
        async with XdsClient(server.target) as client:
            await client.send(CLUSTER)
            pending = [await client.recv()]
            responses = 0
            while pending:  # bounded: the stream stops answering this node's NACKs
                responses += 1
                assert responses <= limits.nack_isolations + 1
                await client.nack(pending.pop(), last_good="")
                pending += await cds_before_probe(client, f"probe-{responses}")
            assert len(server.rejections.found) <= limits.nack_isolations
            server.set(*clusters(a=501, b=500, c=500, d=500, e=500))  # new content still goes
            assert (await client.recv()).type_url == CLUSTER


async def cds_before_probe(client: XdsClient, probe: str) -> list[Any]:
    """Ask for a new route name (always answered) and return the CDS responses sent first."""
    previous = client.latest.get(ROUTE)
    await client.send(
        ROUTE,
        [probe],
        previous.version_info if previous else "",
        previous.nonce if previous else "",
    )
    received = []
    while (response := await client.recv()).type_url != ROUTE:
        received.append(response)
    await client.ack(response, [probe])
    return received


async def test_delta_the_named_resource_is_refused_and_the_rest_flows(server: Server) -> None:
    server.set(*clusters(a=500, b=500, c=500))
    async with DeltaClient(server.target) as client:
        await client.send(CLUSTER)
        await client.ack(await client.recv())
        server.set(*clusters(a=500, b=600, c=0))
        bad = await client.recv()
        assert sorted(r.name for r in bad.resources) == ["b", "c"]
        await client.send(
            CLUSTER, nonce=bad.nonce, error="Error adding/updating cluster(s) c: bad timeout"
        )
        retried = await client.recv()
        assert [r.name for r in retried.resources] == ["b"]
        await client.ack(retried)
        assert [(t, n) for t, n, _ in server.rejections.found] == [(CLUSTER, "c")]
        server.set(*clusters(a=500, b=600, c=0, d=500))
        assert [r.name for r in (await client.recv()).resources] == ["d"]


async def test_delta_an_unnamed_culprit_is_found_by_bisection(server: Server) -> None:
    names = [f"c{i}" for i in range(6)]
    server.set(*clusters(**dict.fromkeys(names, 500)))
    async with DeltaClient(server.target) as client:
        await client.send(CLUSTER)
        await client.ack(await client.recv())
        server.set(*clusters(**dict.fromkeys(names, 600) | {"c2": 0}))
        applied: set[str] = set()
        for _ in range(ROUNDS):
            response = await client.recv()
            carried = {c.name: c.connect_timeout.ToMilliseconds() for c in _delta(response)}
            if 0 in carried.values():
                await client.send(CLUSTER, nonce=response.nonce, error="rejected")
                continue
            applied |= set(carried)
            await client.ack(response)
            if applied == set(names) - {"c2"}:
                break
        assert applied == set(names) - {"c2"}
        assert [(t, n) for t, n, _ in server.rejections.found] == [(CLUSTER, "c2")]


def _delta(response: Any) -> list[Any]:
    out = []
    for entry in response.resources:
        cluster = type(eds_cluster("x").message)()
        entry.resource.Unpack(cluster)
        out.append(cluster)
    return out
