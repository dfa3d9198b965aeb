"""A real Envoy configured with separate CDS/EDS/LDS/RDS streams instead of ADS."""

from __future__ import annotations

import pytest

from tests.conftest import XdsServer
from tests.support.backends import backends, get
from tests.support.envoy import Envoy, per_type_bootstrap
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot
from xds_server.resource import ENDPOINT

pytestmark = pytest.mark.envoy

NODE = "sidecar-1"


async def test_separate_streams_serve_config_and_updates(xds: XdsServer) -> None:
    recorder = Recorder()
    xds.registry.add_observer(recorder)
    listen = free_port()
    async with backends("web-a", "web-b") as (web_a, web_b):
        xds.cache.set_snapshot(
            NODE,
            Snapshot.of(
                [
                    eds_cluster("web", ads=False),
                    load_assignment("web", [web_a.port]),
                    http_listener("ingress", listen, "routes", ads=False),
                    route_config("routes", {"web": "web"}),
                ]
            ),
        )
        async with Envoy(per_type_bootstrap(xds.port, NODE)):
            assert await get(listen, host="web") == (200, "web-a")
            methods = sorted({s.method for s in xds.registry.streams.values()})
            assert methods == ["CDS", "EDS", "LDS", "RDS"]

            xds.cache.update_resources(NODE, ENDPOINT, [load_assignment("web", [web_b.port])])
            await recorder.wait_acked(ENDPOINT, xds.cache.get(NODE).version(ENDPOINT))  # type: ignore[union-attr]
            assert await get(listen, host="web") == (200, "web-b")
