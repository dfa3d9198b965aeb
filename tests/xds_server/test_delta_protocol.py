"""Delta protocol rules with a plain gRPC client."""

from __future__ import annotations

from tests.conftest import XdsServer
from tests.support.waiting import until
from tests.support.xds_client import DeltaClient, delta_versions
from tests.support.xds_resources import eds_cluster, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, ROUTE

NODE = "client-1"


def snapshot(clusters: list[str], port: int = 8000) -> Snapshot:
    return Snapshot.of(
        [eds_cluster(c) for c in clusters] + [load_assignment(c, [port]) for c in clusters]
    )


async def test_reconnect_with_initial_versions_gets_only_what_differs(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b", "c"]))
    async with DeltaClient(xds.target) as first:
        await first.send(CLUSTER)
        initial = await first.recv()
        held = delta_versions(initial)
        assert sorted(held) == ["a", "b", "c"]
    # While disconnected: b changes, c goes, d appears.
    changed = snapshot(["a", "b", "d"])
    changed = changed.replace(changed.get(CLUSTER).with_changes([eds_cluster("b", 900)]))
    xds.cache.set_snapshot(NODE, changed)
    async with DeltaClient(xds.target) as second:
        await second.send(CLUSTER, initial=held)
        update = await second.recv()
        assert sorted(delta_versions(update)) == ["b", "d"]
        assert list(update.removed_resources) == ["c"]
    # Nothing changed since: a reconnect with current versions gets no resources at all.
    current = {name: r.version for name, r in changed.get(CLUSTER).items()}
    async with DeltaClient(xds.target) as third:
        await third.send(CLUSTER, initial=current)
        await third.send(ROUTE, ["probe"])  # answered next: proves CDS had nothing to send
        response = await third.recv()
        assert response.type_url == ROUTE


async def test_named_resubscription_on_reconnect_sends_only_what_differs(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    held = {name: r.version for name, r in xds.cache.get(NODE).get(ENDPOINT).items()}  # type: ignore[union-attr]
    xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("b", [9999])])
    async with DeltaClient(xds.target) as client:
        await client.send(ENDPOINT, subscribe=["a", "b"], initial=held)
        update = await client.recv()
        assert sorted(delta_versions(update)) == ["b"]  # "a" is held at the current version


async def test_named_subscriptions_missing_names_and_unsubscribe(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with DeltaClient(xds.target) as client:
        await client.send(ENDPOINT, ["a", "ghost"])
        first = await client.recv()
        assert sorted(delta_versions(first)) == ["a"]
        assert list(first.removed_resources) == ["ghost"]
        await client.ack(first)
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("ghost", [9000])])
        appeared = await client.recv()
        assert sorted(delta_versions(appeared)) == ["ghost"]
        await client.ack(appeared)
        await client.send(ENDPOINT, unsubscribe=["a"], nonce=appeared.nonce)
        (stream,) = xds.registry.by_node(NODE)
        await until(lambda: stream.state(ENDPOINT).subscribed == ["ghost"], what="unsubscribed")
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("a", [9001])])
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("ghost", [9002])])
        only_ghost = await client.recv()
        assert sorted(delta_versions(only_ghost)) == ["ghost"]


async def test_subscription_with_stale_nonce_is_honoured(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    async with DeltaClient(xds.target) as client:
        await client.send(ENDPOINT, ["a"])
        first = await client.recv()
        await client.ack(first)
        await client.send(ENDPOINT, ["b"], nonce="stale-nonce")
        second = await client.recv()
        assert sorted(delta_versions(second)) == ["b"]


async def test_nacked_version_is_not_resent(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a"]))
    async with DeltaClient(xds.target) as client:
        await client.send(ROUTE, ["r"])
        await client.ack(await client.recv())
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"x": "a"})])
        bad = await client.recv()
        await client.send(ROUTE, nonce=bad.nonce, error="rejected")
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"x": "a"})])  # same again
        await client.send(ENDPOINT, ["a"])  # answered next: the route was not re-sent
        assert (await client.recv()).type_url == ENDPOINT
        state = xds.registry.by_node(NODE)[0].types[ROUTE]
        assert state.last_nack is not None
