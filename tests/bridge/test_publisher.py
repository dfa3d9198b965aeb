"""What the publisher promises every node: nothing before the first complete Consul read,
versions that depend on content only, and services that go away taking their clusters along."""

from __future__ import annotations

import aiohttp

from bridge.app import Bridge
from bridge.catalog import ServiceUpdate
from bridge.model import Instance
from bridge.publisher import Publisher
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import until
from tests.support.xds_client import XdsClient, names_in
from xds_server.cache import SnapshotCache
from xds_server.resource import CLUSTER

NODE = "early-bird"


async def test_a_node_connecting_before_the_first_complete_read_gets_nothing_until_then() -> None:
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        # The catalog is listed, but no service's instances can be read yet.
        held = consul.faults.hang(path_prefix="/v1/health/service/")
        async with (
            Bridge(bridge_config(consul)) as bridge,
            XdsClient(f"127.0.0.1:{bridge.xds_port}", NODE) as client,
        ):
            await client.send(CLUSTER)
            await until(
                lambda: held.hits >= 1 and bool(bridge.registry.by_node(NODE)),
                what="the node's stream open while the first read is held",
            )
            status, body = await readyz(bridge)
            assert status == 503
            assert body["status"] == "not ready"
            assert "first complete read" in body["reason"]
            consul.faults.clear()
            # The first response the node ever gets is the real catalog, never an empty one
            # that would wipe its clusters.
            first = await client.recv(timeout=15)
            assert names_in(first) == ["web"]
            assert (await readyz(bridge))[0] == 200


async def readyz(bridge: Bridge) -> tuple[int, dict[str, str]]:
    url = f"http://127.0.0.1:{bridge.admin_port}/readyz"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        body: dict[str, str] = await response.json()
        return response.status, body


def instance(service: str, number: int, port: int = 8080) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{number}",
        node=f"node{number}",
        datacenter="dc1",
        address=f"10.0.0.{number}",
        port=port,
    )


def catalog_read_at(received_at: float) -> list[ServiceUpdate]:
    return [
        ServiceUpdate("web", "dc1", (instance("web", 1), instance("web", 2)), received_at),
        ServiceUpdate("api", "dc1", (instance("api", 3, port=9090),), received_at),
    ]


def published(updates: list[ServiceUpdate]) -> Publisher:
    publisher = Publisher(SnapshotCache(), debounce=0)
    publisher.set_datacenters(["dc1"])
    publisher.submit(updates)
    publisher.flush()
    publisher.mark_ready()
    return publisher


async def test_versions_depend_on_content_not_on_when_it_was_read() -> None:
    # Two replicas (or a restarted bridge) reading the same catalog at different moments.
    first = published(catalog_read_at(100.0))
    second = published(catalog_read_at(86_400.0))
    assert first.clusters.version == second.clusters.version
    assert first.endpoints.version == second.endpoints.version
    for name in ("web", "api"):
        assert first.clusters[name].version == second.clusters[name].version
        assert first.endpoints[name].version == second.endpoints[name].version
    # ... and content that differs has a different version.
    moved = published([*catalog_read_at(100.0)[:1], catalog_read_at(100.0)[1]])
    moved.submit([ServiceUpdate("api", "dc1", (instance("api", 3, port=9091),), 200.0)])
    moved.flush()
    assert moved.endpoints["api"].version != first.endpoints["api"].version
    assert moved.endpoints["web"].version == first.endpoints["web"].version


async def test_a_service_that_goes_away_takes_its_cluster_and_assignment_along() -> None:
    publisher = published(catalog_read_at(1.0))
    assert sorted(publisher.clusters) == ["api", "web"]
    publisher.submit([ServiceUpdate("web", "dc1", None, 2.0)])
    publisher.flush()
    assert sorted(publisher.clusters) == ["api"]
    assert sorted(publisher.endpoints) == ["api"]
