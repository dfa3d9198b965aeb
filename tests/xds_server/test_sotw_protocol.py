"""SotW protocol rules, checked with a plain gRPC client that controls every request.

"No response" is proven by ordering: after the request that must go unanswered, a request of
another type is sent; the next message on the stream must be that other type's response.
"""

from __future__ import annotations

from functools import partial

import grpc
import pytest

from tests.conftest import XdsServer
from tests.support.recorder import Event, Recorder
from tests.support.xds_client import XdsClient, names_in, unpack_all
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

NODE = "client-1"


def snapshot(clusters: list[str], ports: dict[str, list[int]] | None = None) -> Snapshot:
    ports = ports or {}
    resources = [eds_cluster(c) for c in clusters]
    resources += [load_assignment(c, ports.get(c, [8000])) for c in clusters]
    resources += [http_listener("ingress", 10000, "routes"), route_config("routes", {})]
    return Snapshot.of(resources)


async def prove_silence(client: XdsClient) -> None:
    """The stream had nothing queued: a request for a new route name is answered next."""
    previous = client.latest.get(ROUTE)
    probes = [f"silence-probe-{len(client.latest)}-{previous.nonce if previous else 0}"]
    await client.send(
        ROUTE,
        probes,
        previous.version_info if previous else "",
        previous.nonce if previous else "",
    )
    response = await client.recv()
    assert response.type_url == ROUTE, f"unexpected {response.type_url} response"
    await client.ack(response, probes)


async def test_wildcard_cds_gets_full_state_and_ack_gets_no_response(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER)
        response = await client.recv()
        assert sorted(names_in(response)) == ["a", "b"]
        assert response.version_info == xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]
        await client.ack(response)
        await prove_silence(client)


async def test_stale_nonce_is_ignored(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        await client.ack(first, ["a"])
        # A request naming a new resource but carrying an old nonce changes nothing.
        await client.send(ENDPOINT, ["a", "b"], first.version_info, nonce="not-the-latest")
        await prove_silence(client)
        # The same request with the current nonce is honoured.
        await client.send(ENDPOINT, ["a", "b"], first.version_info, nonce=first.nonce)
        second = await client.recv()
        assert names_in(second) == ["b"]


async def test_wildcard_to_named_to_empty_cds(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b", "c"]))
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER, ["*"])
        wildcard = await client.recv()
        assert sorted(names_in(wildcard)) == ["a", "b", "c"]
        await client.send(CLUSTER, ["b"], wildcard.version_info, wildcard.nonce)
        named = await client.recv()
        assert names_in(named) == ["b"]
        await client.send(CLUSTER, [], named.version_info, named.nonce)
        emptied = await client.recv()
        assert names_in(emptied) == []
        await client.ack(emptied)
        # Unsubscribed from everything: new clusters are not pushed.
        xds.cache.set_snapshot(NODE, snapshot(["a", "b", "c", "d"]))
        await prove_silence(client)


async def test_named_cds_remembers_missing_names_and_pushes_them_when_they_appear(
    xds: XdsServer,
) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER, ["a", "later"])
        first = await client.recv()
        assert names_in(first) == ["a"]
        await client.ack(first, ["a", "later"])
        xds.cache.set_snapshot(NODE, snapshot(["a", "later", "unrelated"]))
        pushed = await client.recv()
        assert sorted(names_in(pushed)) == ["a", "later"]


async def test_eds_unknown_name_gets_empty_assignment_then_real_one(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send(ENDPOINT, ["ghost"])
        first = await client.recv()
        (placeholder,) = unpack_all(first)
        assert placeholder.cluster_name == "ghost"
        assert len(placeholder.endpoints) == 0
        await client.ack(first, ["ghost"])
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("ghost", [9000])])
        pushed = await client.recv()
        (real,) = unpack_all(pushed)
        assert real.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value == 9000


async def test_newly_subscribed_names_are_sent_even_if_unchanged(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    async with XdsClient(xds.target) as client:
        await client.send(ENDPOINT, ["a"])
        r1 = await client.recv()
        await client.send(ENDPOINT, ["a", "b"], r1.version_info, r1.nonce)
        r2 = await client.recv()
        assert names_in(r2) == ["b"]
        await client.send(ENDPOINT, ["a"], r2.version_info, r2.nonce)
        await prove_silence(client)
        await client.send(ENDPOINT, ["a", "b"], r2.version_info, r2.nonce)
        r3 = await client.recv()
        assert names_in(r3) == ["b"]


async def test_eds_pushes_only_the_changed_assignment(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b", "c"]))
    async with XdsClient(xds.target) as client:
        await client.send(ENDPOINT, ["a", "b", "c"])
        r1 = await client.recv()
        assert sorted(names_in(r1)) == ["a", "b", "c"]
        await client.ack(r1, ["a", "b", "c"])
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("b", [8001])])
        r2 = await client.recv()
        assert names_in(r2) == ["b"]
        assert r2.version_info != r1.version_info


async def test_nacked_version_is_never_resent_but_next_change_is(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER)
        good = await client.recv()
        await client.ack(good)
        xds.cache.set_snapshot(NODE, snapshot(["a", "bad"]))
        bad = await client.recv()
        # While the client considers it, the content moves on and comes back: when the NACK
        # arrives the stream has CDS to reconsider, and the content is the rejected one.
        xds.cache.set_snapshot(NODE, snapshot(["a", "other"]))
        xds.cache.set_snapshot(NODE, snapshot(["a", "bad"]))
        await client.nack(bad, last_good=good.version_info)
        await prove_silence(client)
        tracked = xds.registry.by_node(NODE)[0].types[CLUSTER]
        assert tracked.last_nack is not None
        assert tracked.last_nack.version == bad.version_info
        assert tracked.version_acked == good.version_info
        # The same content published again sends nothing: the next response is the next
        # different content, not the rejected one once more.
        xds.cache.set_snapshot(NODE, snapshot(["a", "bad"]))
        xds.cache.set_snapshot(NODE, snapshot(["a", "fixed"]))
        fixed = await client.recv()
        assert sorted(names_in(fixed)) == ["a", "fixed"]


async def test_ads_orders_cds_eds_lds_rds_and_removes_clusters_last(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    async with XdsClient(xds.target) as client:
        responses = {}
        for type_url, names in (
            (CLUSTER, []),
            (ENDPOINT, ["a", "b"]),
            (LISTENER, []),
            (ROUTE, ["routes"]),
        ):
            await client.send(type_url, names)
            responses[type_url] = await client.recv()
            await client.ack(responses[type_url], names)
        # One change touching every type: clusters added, so CDS leads.
        changed = snapshot(["a", "b", "c"], {"a": [8001]})
        changed = changed.replace(
            changed.get(ROUTE).with_changes([route_config("routes", {"x": "a"})])
        )
        changed = changed.replace(
            changed.get(LISTENER).with_changes([http_listener("ingress", 10001, "routes")])
        )
        xds.cache.set_snapshot(NODE, changed)
        order = []
        subscribed = {CLUSTER: [], ENDPOINT: ["a", "b"], LISTENER: [], ROUTE: ["routes"]}
        for _ in range(4):
            response = await client.recv()
            order.append(response.type_url)
            await client.ack(response, subscribed[response.type_url])
        assert order == [CLUSTER, ENDPOINT, LISTENER, ROUTE]
        # Removing cluster "b" and the route to it: the route update goes out first, and the
        # cluster removal only after the route update was answered.
        removal = snapshot(["a", "c"], {"a": [8001]})
        removal = removal.replace(removal.get(ROUTE).with_changes([route_config("routes", {})]))
        removal = removal.replace(
            removal.get(LISTENER).with_changes([http_listener("ingress", 10001, "routes")])
        )
        xds.cache.set_snapshot(NODE, removal)
        route_update = await client.recv()
        assert route_update.type_url == ROUTE
        await client.ack(route_update, ["routes"])
        cds_update = await client.recv()
        assert cds_update.type_url == CLUSTER
        assert sorted(names_in(cds_update)) == ["a", "c"]


async def test_changed_cluster_resends_its_assignment(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER)
        cds = await client.recv()
        await client.ack(cds)
        await client.send(ENDPOINT, ["a"])
        eds = await client.recv()
        await client.ack(eds, ["a"])
        # The cluster changes, its endpoints do not: the assignment follows the cluster anyway.
        xds.cache.update_resources(NODE, CLUSTER, [eds_cluster("a", connect_timeout_ms=750)])
        assert (await client.recv()).type_url == CLUSTER
        again = await client.recv()
        assert again.type_url == ENDPOINT
        assert names_in(again) == ["a"]


async def test_no_response_before_the_node_has_a_snapshot(xds: XdsServer) -> None:
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER)
        await client.send(LISTENER)
        xds.cache.set_snapshot(NODE, snapshot(["a"]))
        first = await client.recv()
        assert first.type_url == CLUSTER
        assert names_in(first) == ["a"]


async def test_unknown_type_url_ends_the_stream_with_invalid_argument(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target) as client:
        await client.send("type.googleapis.com/envoy.config.nope.v3.Nope")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.recv()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "envoy.config.nope.v3.Nope" in (raised.value.details() or "")
    # The server is still up for everyone else.
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER)
        assert names_in(await client.recv()) == ["a"]


async def test_missing_node_ends_the_stream_with_invalid_argument(xds: XdsServer) -> None:
    async with XdsClient(xds.target) as client:
        await client.send(CLUSTER, with_node=False)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.recv()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "node" in (raised.value.details() or "")


async def test_missing_type_url_on_ads_is_rejected(xds: XdsServer) -> None:
    async with XdsClient(xds.target) as client:
        await client.send("")
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.recv()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_malformed_request_bytes_get_a_grpc_error(xds: XdsServer) -> None:
    channel = grpc.aio.insecure_channel(xds.target)
    call = channel.stream_stream(
        "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources",
        request_serializer=lambda raw: raw,
        response_deserializer=lambda raw: raw,
    )()
    await call.write(b"\xff\xff\xff\xff\x0f garbage")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call.read()
    assert raised.value.code() != grpc.StatusCode.OK
    await channel.close()


async def test_per_type_service_rejects_another_type(xds: XdsServer) -> None:
    method = "/envoy.service.cluster.v3.ClusterDiscoveryService/StreamClusters"
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with XdsClient(xds.target, method=method) as client:
        await client.send("")  # type_url may be omitted on a single-type stream
        assert names_in(await client.recv()) == ["a"]
    async with XdsClient(xds.target, method=method) as client:
        await client.send(LISTENER)
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await client.recv()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def closed_count_is(expected: int, events: list[Event]) -> bool:
    return sum(1 for e in events if e.kind == "closed") == expected


async def test_stream_state_is_released_when_streams_end(xds: XdsServer) -> None:
    recorder = Recorder()
    xds.registry.add_observer(recorder)
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    for round_ in range(1, 4):
        clients = [XdsClient(xds.target, node_id=NODE) for _ in range(50)]
        for client in clients:
            await client.send(CLUSTER)
        for client in clients:
            await client.recv()
        assert len(xds.registry.streams) == 50
        assert xds.cache.listener_count() == 50
        for client in clients:
            await client.close()
        await recorder.wait_for(partial(closed_count_is, 50 * round_), what="streams closed")
        assert len(xds.registry.streams) == 0
        assert xds.discovery.active_streams == 0
        assert xds.cache.listener_count() == 0
