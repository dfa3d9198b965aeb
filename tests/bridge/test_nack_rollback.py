"""A NACK the gate did not foresee: the stream isolates the rejected resource, and the bridge
rolls that shared resource back to the version served before it, for every node, until its
content changes. Plain gRPC clients play the Envoys (SotW and delta)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2

from bridge.catalog import Catalog, ServiceUpdate
from bridge.publisher import Publisher
from bridge.rollback import NackReports
from tests.support.waiting import until
from tests.support.xds_client import DeltaClient, XdsClient, unpack_all
from tests.support.xds_resources import http_listener
from tests.templates.support import instance, updates
from xds_server import (
    CLUSTER,
    LISTENER,
    ClientRegistry,
    DiscoveryServer,
    Resource,
    SnapshotCache,
    start_server,
)


@dataclass
class Bridge:
    publisher: Publisher
    registry: ClientRegistry
    target: str

    def publish(self, *changes: list[ServiceUpdate]) -> None:
        for change in changes:
            self.publisher.submit(change)
            self.publisher.flush()

    def timeout_of(self, name: str) -> int:
        return int(self.publisher.clusters[name].message.connect_timeout.ToMilliseconds())  # type: ignore[attr-defined]


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    cache, registry = SnapshotCache(), ClientRegistry()
    publisher = Publisher(cache, debounce=0)
    registry.add_observer(NackReports(publisher, cap=2))
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    publisher.set_datacenters(["dc1"])
    yield Bridge(publisher, registry, f"127.0.0.1:{port}")
    await server.stop(None)


def web(ms: int, service: str = "web") -> list[ServiceUpdate]:
    return updates(instance(service, 1, meta={"xds-connect-timeout": f"{ms}ms"}))


def timeouts(response: Any) -> dict[str, int]:
    return {c.name: c.connect_timeout.ToMilliseconds() for c in unpack_all(response)}


async def test_sotw_a_rejected_cluster_is_rolled_back_for_every_node(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    bridge.publish(web(500), updates(instance("api", 1)))
    bridge.publisher.mark_ready()
    async with XdsClient(bridge.target, node_id="picky") as picky:
        await picky.send(CLUSTER)
        await picky.ack(await picky.recv())
        bridge.publish(web(600))  # valid for the gate, rejected by this node
        rejected = await picky.recv()
        await picky.send(
            CLUSTER, nonce=rejected.nonce, error="Error adding/updating cluster(s) web: nope"
        )
        await until(lambda: bridge.timeout_of("web") == 500, what="web rolled back")
        (entry,) = bridge.publisher.quarantine.view()
        assert (entry["type"], entry["name"], entry["reason"]) == ("cluster", "web", "nack")
        assert entry["source"] == "NACK from node 'picky'"
        assert entry["rule"] == "rejected by Envoy: Error adding/updating cluster(s) web: nope"
        assert entry["action"].startswith("rolled back to the version served before it")
        assert any("quarantined cluster 'web' (nack)" in r.getMessage() for r in caplog.records)

        async with XdsClient(bridge.target, node_id="late") as late:  # connects afterwards
            await late.send(CLUSTER)
            assert timeouts(await late.recv()) == {"api": 5000, "web": 500}

        bridge.publish(web(600), updates(instance("new", 1)))  # same web content: still held
        assert bridge.timeout_of("web") == 500
        bridge.publish(web(700))  # new content: tried again, the entry lifted
        assert bridge.timeout_of("web") == 700
        assert len(bridge.publisher.quarantine) == 0


async def test_delta_a_rejected_new_service_stays_served_and_is_reported(bridge: Bridge) -> None:
    bridge.publish(web(500))
    bridge.publisher.mark_ready()
    async with DeltaClient(bridge.target, node_id="picky") as picky:
        await picky.send(CLUSTER)
        await picky.ack(await picky.recv())
        bridge.publish(updates(instance("api", 1)))
        rejected = await picky.recv()
        await picky.send(CLUSTER, nonce=rejected.nonce, error="cluster api: unsupported")
        await until(lambda: len(bridge.publisher.quarantine) == 1, what="the NACK on record")
        (entry,) = bridge.publisher.quarantine.view()
        assert (entry["name"], entry["reason"]) == ("api", "nack")
        assert entry["action"].startswith("still served (no earlier version)")
        assert "api" in bridge.publisher.clusters  # a NACK never removes a resource


async def test_rollbacks_are_capped_per_type(bridge: Bridge) -> None:
    names = ["a", "b", "c"]
    bridge.publish(*(web(500, n) for n in names))
    bridge.publisher.mark_ready()
    async with XdsClient(bridge.target, node_id="hostile") as hostile:
        await hostile.send(CLUSTER)
        await hostile.ack(await hostile.recv())
        for name in names:  # rejects each change, naming it
            bridge.publish(web(600, name))
            response = await hostile.recv()
            await hostile.send(
                CLUSTER, nonce=response.nonce, error=f"Error adding/updating cluster(s) {name}: x"
            )
            await until(isolated(bridge, "hostile", name), what=f"{name} isolated")
        await until(lambda: bridge.timeout_of("b") == 500, what="b rolled back")
        assert [bridge.timeout_of(n) for n in names] == [500, 500, 600]  # the cap is 2


def isolated(bridge: Bridge, node_id: str, name: str) -> Callable[[], bool]:
    def check() -> bool:
        (stream,) = bridge.registry.by_node(node_id)
        return name in stream.state(CLUSTER).refused

    return check


class Listeners:
    """Per-node resources: one listener on ``port``."""

    def __init__(self) -> None:
        self.port = 10000

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        return [http_listener("ingress", self.port, "routes")]

    def key_released(self, key: str) -> None:
        pass


async def test_a_rejected_per_node_listener_is_on_record_while_it_is_served() -> None:
    cache, registry = SnapshotCache(), ClientRegistry()
    listeners = Listeners()
    publisher = Publisher(cache, node_config=listeners, debounce=0)
    registry.add_observer(NackReports(publisher))
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    try:
        publisher.submit(updates(instance("web", 1)))
        publisher.mark_ready()
        async with XdsClient(f"127.0.0.1:{port}", node_id="picky") as picky:
            await picky.send(LISTENER)
            response = await picky.recv()
            await picky.send(
                LISTENER,
                nonce=response.nonce,
                error="Error adding/updating listener(s) ingress: address in use",
            )
            await until(lambda: len(publisher.quarantine) == 1, what="the NACK on record")
            (entry,) = publisher.quarantine.view()
            assert (entry["type"], entry["reason"], entry["scopes"]) == (
                "listener",
                "nack",
                ["key:picky"],
            )
            listeners.port = 10001  # the template changed: the rejected version is gone
            publisher.republish()
            assert len(publisher.quarantine) == 0
    finally:
        await server.stop(None)
