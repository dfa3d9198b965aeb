"""The serving side against a real Envoy over ADS: traffic, updates, removal, NACKs."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from tests.conftest import XdsServer
from tests.support.backends import Backend, backends, get
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.waiting import eventually
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, make_resource

pytestmark = pytest.mark.envoy

NODE = "edge-1"


@pytest.fixture
def recorder(xds: XdsServer) -> Recorder:
    recorder = Recorder()
    xds.registry.add_observer(recorder)
    return recorder


@pytest.fixture
async def two_backends() -> AsyncIterator[list[Backend]]:
    async with backends("web-a", "web-b") as started:
        yield started


def base_resources(listen: int, web_port: int) -> list[Resource]:
    return [
        eds_cluster("web"),
        load_assignment("web", [web_port]),
        http_listener("ingress", listen, "routes"),
        route_config("routes", {"web": "web"}),
    ]


async def body_via(listen: int, host: str = "web") -> str:
    status, body = await get(listen, host=host)
    return body if status == 200 else f"HTTP {status}"


async def test_envoy_receives_config_and_routes_traffic(
    xds: XdsServer, two_backends: list[Backend]
) -> None:
    listen = free_port()
    xds.cache.set_snapshot(NODE, Snapshot.of(base_resources(listen, two_backends[0].port)))
    async with Envoy(ads_bootstrap(xds.port, NODE)) as envoy:
        assert await get(listen, host="web") == (200, "web-a")
        assert (await get(listen, host="unknown"))[0] == 404
        assert await envoy.stat("cluster_manager.cds.update_rejected") == 0
        client = xds.registry.by_node(NODE)[0]
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            state = client.types[type_url]
            assert state.version_acked == state.version_sent
            assert state.last_nack is None


async def test_one_load_assignment_update_moves_traffic_and_sends_only_eds(
    xds: XdsServer, two_backends: list[Backend], recorder: Recorder
) -> None:
    web_a, web_b = two_backends
    listen = free_port()
    xds.cache.set_snapshot(NODE, Snapshot.of(base_resources(listen, web_a.port)))
    async with Envoy(ads_bootstrap(xds.port, NODE)):
        assert await body_via(listen) == "web-a"
        sent_before = len(recorder.of("sent"))

        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("web", [web_b.port])])
        eds_version = xds.cache.get(NODE).version(ENDPOINT)  # type: ignore[union-attr]
        await recorder.wait_acked(ENDPOINT, eds_version)
        assert await body_via(listen) == "web-b"
        assert [e.type_url for e in recorder.of("sent")[sent_before:]] == [ENDPOINT]


async def test_removed_cluster_goes_and_readded_cluster_does_not_stay_warming(
    xds: XdsServer, two_backends: list[Backend], recorder: Recorder
) -> None:
    web_a, web_b = two_backends
    listen = free_port()
    api = [eds_cluster("api"), load_assignment("api", [web_b.port])]
    routes_with_api = route_config("routes", {"web": "web", "api": "api"})
    resources = base_resources(listen, web_a.port)[:3] + api + [routes_with_api]
    xds.cache.set_snapshot(NODE, Snapshot.of(resources))
    async with Envoy(ads_bootstrap(xds.port, NODE)) as envoy:
        assert await body_via(listen, "api") == "web-b"

        # Remove the api service: its route first, then its cluster (the server orders this).
        xds.cache.update_resources(NODE, ROUTE, [route_config("routes", {"web": "web"})])
        xds.cache.update_resources(NODE, CLUSTER, remove=["api"])
        await eventually(envoy.active_clusters, lambda c: "api" not in c, what="api removed")
        assert await body_via(listen, "api") == "HTTP 404"
        assert await body_via(listen, "web") == "web-a"

        # Re-add it with unchanged endpoints: Envoy must get the assignment again and not warm.
        xds.cache.update_resources(NODE, CLUSTER, [api[0]])
        xds.cache.update_resources(NODE, ROUTE, [routes_with_api])
        await eventually(envoy.active_clusters, lambda c: "api" in c, what="api active again")
        assert await envoy.warming_clusters() == {}
        assert await envoy.stat("cluster_manager.warming_clusters") == 0
        assert await body_via(listen, "api") == "web-b"


async def test_rejected_config_is_nacked_once_not_resent_and_previous_config_keeps_serving(
    xds: XdsServer, two_backends: list[Backend], recorder: Recorder
) -> None:
    web_a, web_b = two_backends
    listen = free_port()
    xds.cache.set_snapshot(NODE, Snapshot.of(base_resources(listen, web_a.port)))
    async with Envoy(ads_bootstrap(xds.port, NODE)) as envoy:
        assert await body_via(listen) == "web-a"
        good_cds = xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]

        broken = cluster_pb2.Cluster(name="broken", type=cluster_pb2.Cluster.EDS)
        broken.eds_cluster_config.eds_config.ads.SetInParent()
        broken.connect_timeout.FromMilliseconds(-5)  # Envoy requires a positive timeout
        xds.cache.update_resources(NODE, CLUSTER, [make_resource(broken)])
        await recorder.wait_for(lambda ev: any(e.kind == "nacked" for e in ev), what="a NACK")
        nack = recorder.of("nacked")[0]
        assert nack.type_url == CLUSTER
        assert "positive duration" in nack.message
        tracked = xds.registry.by_node(NODE)[0].types[CLUSTER]
        assert tracked.last_nack is not None
        assert tracked.last_nack.message == nack.message
        assert tracked.version_acked == good_cds

        # An unrelated change goes through; by the time it is ACKed, CDS was not re-sent.
        cds_sends = len(recorder.of("sent", CLUSTER))
        xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("web", [web_b.port])])
        await recorder.wait_acked(ENDPOINT, xds.cache.get(NODE).version(ENDPOINT))  # type: ignore[union-attr]
        assert len(recorder.of("sent", CLUSTER)) == cds_sends
        assert len(recorder.of("nacked")) == 1
        assert await envoy.stat("cluster_manager.cds.update_rejected") == 1
        assert await body_via(listen) == "web-b"

        # The next different cluster set is sent and accepted.
        xds.cache.update_resources(NODE, CLUSTER, [eds_cluster("broken")])
        fixed = xds.cache.get(NODE).version(CLUSTER)  # type: ignore[union-attr]
        await recorder.wait_acked(CLUSTER, fixed)
        assert tracked.version_acked == fixed
        assert "broken" in await envoy.active_clusters()
