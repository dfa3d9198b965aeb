"""A bad service or a bad render is quarantined alone: everyone else keeps flowing, the bad
piece keeps its last good version (or is left out), and the problem is on record until fixed."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2

from bridge import debug
from bridge.catalog import Catalog, ServiceUpdate
from bridge.metrics import QuarantineCollector
from bridge.publisher import Publisher
from bridge.quarantine import Quarantine
from bridge.templating import TemplateSource
from tests.support.xds_resources import http_listener
from tests.templates.support import envoy_node, instance, updates
from xds_server import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, SnapshotCache
from xds_server.resource import make_resource

NODE = "edge-1"


def published(publisher: Publisher, *changes: Sequence[ServiceUpdate]) -> None:
    for change in changes:
        publisher.submit(change)
        publisher.flush()


def watched(templates: Any = None) -> tuple[Publisher, SnapshotCache]:
    cache = SnapshotCache()
    publisher = Publisher(cache, node_config=templates, debounce=0)
    cache.watch(envoy_node(NODE, metadata={"ingress_port": 10000}), lambda types: None)
    publisher.set_datacenters(["dc1"])
    return publisher, cache


def served(cache: SnapshotCache, type_url: str) -> list[str]:
    snapshot = cache.get(NODE)
    assert snapshot is not None
    return sorted(snapshot.get(type_url))


def virtual_hosts(cache: SnapshotCache) -> list[str]:
    snapshot = cache.get(NODE)
    assert snapshot is not None
    return [v.name for v in snapshot.get(ROUTE)["ingress_routes"].message.virtual_hosts]  # type: ignore[attr-defined]


def gauge(quarantine: Quarantine) -> dict[tuple[str, str], float]:
    family, _warnings = QuarantineCollector(quarantine.counts).collect()
    return {(s.labels["type"], s.labels["reason"]): s.value for s in family.samples}


async def test_a_service_named_like_the_bootstraps_xds_cluster_is_never_served(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    publisher, cache = watched(TemplateSource())
    published(publisher, updates(instance("web", 1), instance("consul_xds_bridge", 2)))
    publisher.mark_ready()
    assert served(cache, CLUSTER) == served(cache, ENDPOINT) == ["web"]
    assert "consul_xds_bridge" not in virtual_hosts(cache)  # no route to the xDS port
    assert publisher.served.names() == ["web"]
    assert gauge(publisher.quarantine) == {("cluster", "reserved_name"): 1}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "cluster 'consul_xds_bridge' (reserved_name): Service.Service:" in warning
    assert "it is left out" in warning

    published(publisher, [ServiceUpdate("consul_xds_bridge", "dc1", None)])  # deregistered
    assert len(publisher.quarantine) == 0
    assert gauge(publisher.quarantine) == {}


async def test_an_invalid_service_keeps_its_last_good_version_and_the_rest_flows(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    publisher, cache = watched()
    published(publisher, updates(instance("web", 1), instance("api", 1)))
    publisher.mark_ready()
    good = cache.get(NODE).get(CLUSTER)["api"].version  # type: ignore[union-attr]

    heavy = [dataclasses.replace(instance("api", n), weight_passing=2**31) for n in (1, 2)]
    published(publisher, updates(*heavy), updates(instance("new", 1)))
    snapshot = cache.get(NODE)
    assert snapshot is not None
    assert sorted(snapshot.get(CLUSTER)) == ["api", "new", "web"]  # the new service flows
    assert snapshot.get(CLUSTER)["api"].version == good  # api keeps its last good version
    assert len(snapshot.get(ENDPOINT)["api"].message.endpoints[0].lb_endpoints) == 1  # type: ignore[attr-defined]
    assert gauge(publisher.quarantine) == {("endpoint", "invalid"): 1}
    (warning,) = [r.getMessage() for r in caplog.records]
    assert "endpoint 'api' (invalid): Service.Weights: endpoints[0].lb_endpoints:" in warning
    assert "its last good version is served" in warning

    published(publisher, updates(instance("api", 1), instance("api", 2)))  # fixed
    assert len(cache.get(NODE).get(ENDPOINT)["api"].message.endpoints[0].lb_endpoints) == 2  # type: ignore[union-attr]
    assert len(publisher.quarantine) == 0


async def test_colliding_service_names_drop_one_virtual_host_and_changes_keep_flowing() -> None:
    publisher, cache = watched(TemplateSource())
    published(publisher, updates(instance("web", 1)))
    publisher.mark_ready()
    published(publisher, updates(instance("Web", 2), instance("web.service.consul", 3)))
    assert virtual_hosts(cache) == ["web", "unknown_host"]
    assert served(cache, CLUSTER) == ["Web", "web", "web.service.consul"]  # nothing routes there
    assert gauge(publisher.quarantine) == {("virtual_host", "domain_collision"): 2}
    view = debug.quarantine_view(publisher.quarantine)
    assert {e["name"] for e in view["entries"]} == {"Web", "web.service.consul"}
    assert all(e["scopes"] == [f"key:{NODE}"] for e in view["entries"])

    published(publisher, updates(instance("api", 4)))  # a change during the collision
    assert virtual_hosts(cache) == ["api", "web", "unknown_host"]

    gone = ("Web", "web.service.consul")
    published(publisher, [ServiceUpdate(name, "dc1", None) for name in gone])
    assert len(publisher.quarantine) == 0


class BadPort:
    """Per-node resources: a good listener, then one Envoy would reject (port 70000)."""

    def __init__(self) -> None:
        self.port = 10000

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        listener = listener_pb2.Listener()
        listener.CopyFrom(http_listener("ingress", 10000, "routes").message)
        listener.address.socket_address.port_value = self.port
        return [make_resource(listener)]

    def key_released(self, key: str) -> None:
        pass


async def test_an_invalid_render_keeps_the_nodes_last_good_listeners() -> None:
    renders = BadPort()
    publisher, cache = watched(renders)
    published(publisher, updates(instance("web", 1)))
    publisher.mark_ready()
    good = cache.get(NODE).get(LISTENER).version  # type: ignore[union-attr]

    renders.port = 70000
    publisher.republish()
    assert cache.get(NODE).get(LISTENER).version == good  # type: ignore[union-attr]
    refused = publisher.refused_renders[NODE]
    assert "listener 'ingress' (invalid): rendered by the templates:" in refused.message
    assert "port_value: must be at most 65535" in refused.message
    assert sum(publisher.refused_renders_total.values()) == 1
    publisher.republish()  # the same refusal is counted once
    assert sum(publisher.refused_renders_total.values()) == 1

    renders.port = 10001
    publisher.republish()
    assert cache.get(NODE).get(LISTENER).version != good  # type: ignore[union-attr]
    assert NODE not in publisher.refused_renders
    assert len(publisher.quarantine) == 0


async def test_service_data_worked_around_is_counted_and_listed() -> None:
    publisher, cache = watched()
    bad = {"xds-connect-timeout": "0.0000000001"}
    published(publisher, updates(instance("web", 1, meta=bad)))
    publisher.mark_ready()
    assert cache.get(NODE).get(CLUSTER)["web"].message.connect_timeout.seconds == 5  # type: ignore[union-attr]
    (warning,) = publisher.service_warnings["web"]
    assert "xds-connect-timeout='0.0000000001' is invalid (rounds to 0s" in warning
    collector = QuarantineCollector(publisher.quarantine.counts, lambda: publisher.service_warnings)
    _quarantined, warnings = collector.collect()
    assert [s.value for s in warnings.samples] == [1]
    assert debug.quarantine_view(publisher.quarantine, publisher.service_warnings)[
        "service_warnings"
    ] == {"web": [warning]}
    published(publisher, updates(instance("web", 1, meta={"xds-connect-timeout": "1s"})))
    assert publisher.service_warnings == {}
