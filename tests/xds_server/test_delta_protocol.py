"""Delta protocol rules with a plain gRPC client."""

from __future__ import annotations

from envoy.config.route.v3 import route_pb2

from tests.conftest import XdsServer
from tests.support.waiting import until
from tests.support.xds_client import DeltaClient, delta_versions
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

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
        # While the client considers it, the route moves on and comes back: when the NACK
        # arrives the stream has RDS to reconsider, and the content is the rejected one.
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"y": "a"})])
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"x": "a"})])
        await client.send(ROUTE, nonce=bad.nonce, error="rejected")
        await client.send(ENDPOINT, ["a"])  # answered next: the route was not re-sent
        assert (await client.recv()).type_url == ENDPOINT
        state = xds.registry.by_node(NODE)[0].types[ROUTE]
        assert state.last_nack is not None
        # The same content published again sends nothing: the next route response is the next
        # different content.
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"x": "a"})])
        xds.cache.update_resources(NODE, ROUTE, [route_config("r", {"z": "a"})])
        fixed = await client.recv()
        assert fixed.type_url == ROUTE
        (entry,) = fixed.resources
        route = route_pb2.RouteConfiguration()
        entry.resource.Unpack(route)
        assert [vhost.name for vhost in route.virtual_hosts] == ["z"]


def full_snapshot(clusters: list[str], routes: dict[str, str]) -> Snapshot:
    """Clusters with their assignments, one listener and its route configuration."""
    base = snapshot(clusters)
    return Snapshot.of(
        [
            *base.get(CLUSTER).values(),
            *base.get(ENDPOINT).values(),
            http_listener("ingress", 10000, "routes"),
            route_config("routes", routes),
        ]
    )


async def subscribe_all(client: DeltaClient, clusters: list[str]) -> None:
    """CDS and LDS as wildcard, EDS and RDS by name; every first response ACKed."""
    for type_url, names in (
        (CLUSTER, []),
        (ENDPOINT, clusters),
        (LISTENER, []),
        (ROUTE, ["routes"]),
    ):
        await client.send(type_url, names)
        response = await client.recv()
        assert response.type_url == type_url
        await client.ack(response)


async def test_ads_removes_clusters_only_after_pending_route_updates(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, full_snapshot(["a", "b"], {"a": "a", "b": "b"}))
    async with DeltaClient(xds.target) as client:
        await subscribe_all(client, ["a", "b"])
        # Cluster "b" goes, and so does the route to it: the route update must reach the
        # client (and be answered) before "b" is removed, or requests still routed to "b" fail.
        xds.cache.set_snapshot(NODE, full_snapshot(["a"], {"a": "a"}))
        while True:
            response = await client.recv()
            assert response.type_url != CLUSTER, "cluster removed before the route update"
            await client.ack(response)
            if response.type_url == ROUTE:
                break
        removal = await client.recv()
        assert removal.type_url == CLUSTER
        assert list(removal.removed_resources) == ["b"]
        assert delta_versions(removal) == {}


async def test_changed_cluster_resends_its_assignment(xds: XdsServer) -> None:
    xds.cache.set_snapshot(NODE, snapshot(["a", "b"]))
    async with DeltaClient(xds.target) as client:
        await client.send(CLUSTER)
        await client.ack(await client.recv())
        await client.send(ENDPOINT, ["a", "b"])
        await client.ack(await client.recv())
        # Cluster "a" changes, its endpoints do not: Envoy re-warms a changed cluster and waits
        # for its assignment, so the assignment must follow (and only that one).
        xds.cache.update_resources(NODE, CLUSTER, [eds_cluster("a", connect_timeout_ms=750)])
        changed = await client.recv()
        assert changed.type_url == CLUSTER
        assert sorted(delta_versions(changed)) == ["a"]
        again = await client.recv()
        assert again.type_url == ENDPOINT
        assert sorted(delta_versions(again)) == ["a"]
