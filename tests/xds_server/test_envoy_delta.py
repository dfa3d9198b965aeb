"""Incremental (delta) xDS against a real Envoy with ``api_type: DELTA_GRPC``."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from tests.conftest import XdsServer
from tests.support.backends import backends, get
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.waiting import eventually
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import CLUSTER, ENDPOINT, ROUTE, make_resource

pytestmark = pytest.mark.envoy

NODE = "delta-1"


async def test_delta_envoy_gets_config_follows_changes_and_nacks_once(xds: XdsServer) -> None:
    recorder = Recorder()
    xds.registry.add_observer(recorder)
    listen = free_port()
    async with backends("web-a", "web-b", "api-a") as (web_a, web_b, api_a):
        xds.cache.set_snapshot(
            NODE,
            Snapshot.of(
                [
                    eds_cluster("web"),
                    load_assignment("web", [web_a.port]),
                    http_listener("ingress", listen, "routes"),
                    route_config("routes", {"web": "web"}),
                ]
            ),
        )
        async with Envoy(ads_bootstrap(xds.port, NODE, delta=True)) as envoy:
            assert await get(listen, host="web") == (200, "web-a")
            assert xds.registry.by_node(NODE)[0].method == "Delta ADS"

            # One endpoint change: one resource sent.
            sent_before = len(recorder.of("sent"))
            xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("web", [web_b.port])])
            await eventually(lambda: get(listen, host="web"), lambda r: r == (200, "web-b"))
            new_sends = recorder.of("sent")[sent_before:]
            assert [(e.type_url, e.resources) for e in new_sends] == [(ENDPOINT, 1)]

            # A new service appears, then goes: its traffic follows.
            xds.cache.update_resources(NODE, CLUSTER, [eds_cluster("api")])
            xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("api", [api_a.port])])
            xds.cache.update_resources(
                NODE, ROUTE, [route_config("routes", {"web": "web", "api": "api"})]
            )
            await eventually(lambda: get(listen, host="api"), lambda r: r == (200, "api-a"))
            xds.cache.update_resources(NODE, ROUTE, [route_config("routes", {"web": "web"})])
            xds.cache.update_resources(NODE, CLUSTER, remove=["api"])
            await eventually(envoy.active_clusters, lambda c: "api" not in c)
            assert (await get(listen, host="api"))[0] == 404
            # ... and comes back without warming.
            xds.cache.update_resources(NODE, CLUSTER, [eds_cluster("api")])
            await eventually(envoy.active_clusters, lambda c: "api" in c)
            assert await envoy.warming_clusters() == {}

            # A rejected cluster: one NACK, not re-sent, previous config keeps serving.
            broken = cluster_pb2.Cluster(name="broken", type=cluster_pb2.Cluster.EDS)
            broken.eds_cluster_config.eds_config.ads.SetInParent()
            broken.connect_timeout.FromMilliseconds(-5)
            xds.cache.update_resources(NODE, CLUSTER, [make_resource(broken)])
            await recorder.wait_for(lambda ev: any(e.kind == "nacked" for e in ev))
            cds_sends = len(recorder.of("sent", CLUSTER))
            xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("web", [web_a.port])])
            await eventually(lambda: get(listen, host="web"), lambda r: r == (200, "web-a"))
            assert len(recorder.of("sent", CLUSTER)) == cds_sends
            assert len(recorder.of("nacked")) == 1
