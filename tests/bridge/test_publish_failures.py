"""A publish that fails is never a silently stale catalog: it is logged, the bridge reports
not-ready with what is stale, and it is retried until it succeeds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence

import pytest
from envoy.config.core.v3 import base_pb2

import bridge.publisher
from bridge.app import Bridge
from bridge.catalog import Catalog
from bridge.model import ServiceView
from bridge.publisher import Publisher
from bridge.resources import BuildSettings, BuiltService, build_service
from bridge.tasks import within
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import until
from tests.support.xds_resources import http_listener
from tests.templates.support import envoy_node, instance, updates
from xds_server import CLUSTER, LISTENER, Resource, SnapshotCache

NODE = "edge-1"


class CrashingTemplates:
    """Per-node resources whose first ``crashes`` renders raise (a bug, not a template error)."""

    def __init__(self, crashes: int) -> None:
        self.crashes = crashes

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        if self.crashes:
            self.crashes -= 1
            raise RuntimeError("renderer crashed")
        return [http_listener("ingress", 10000, "routes")]

    def key_released(self, key: str) -> None:
        pass


def published_event(cache: SnapshotCache, key: str) -> asyncio.Event:
    """Set when ``key``'s snapshot is first published (or changes)."""
    event = asyncio.Event()
    cache.add_listener(key, lambda types: event.set())
    return event


async def test_a_node_snapshot_that_fails_to_build_is_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="bridge.publisher")
    cache = SnapshotCache()
    publisher = Publisher(cache, node_config=CrashingTemplates(crashes=2), debounce=0)
    published = published_event(cache, NODE)
    cache.watch(envoy_node(NODE), lambda types: None)
    publisher.submit(updates(instance("web", 1)))
    publisher.mark_ready()

    assert cache.get(NODE) is None  # nothing half-built was served
    assert publisher.problem is not None
    assert NODE in publisher.problem
    assert any(NODE in r.getMessage() and r.exc_info for r in caplog.records)

    await within(published.wait(), 10)
    snapshot = cache.get(NODE)
    assert snapshot is not None
    assert sorted(snapshot.get(LISTENER)) == ["ingress"]
    assert sorted(snapshot.get(CLUSTER)) == ["web"]
    assert publisher.problem is None


class BuildFault:
    """Makes building one service raise (a bug meeting unexpected data) until cleared."""

    def __init__(self, service: str, build: Callable[[ServiceView, BuildSettings], BuiltService]):
        self.service = service
        self.build = build
        self.active = True

    def __call__(self, view: ServiceView, settings: BuildSettings) -> BuiltService:
        if self.active and view.name == self.service:
            raise ValueError(f"cannot build {view.name}")
        return self.build(view, settings)


@pytest.fixture
def build_fault(monkeypatch: pytest.MonkeyPatch) -> BuildFault:
    fault = BuildFault("api", build_service)
    monkeypatch.setattr(bridge.publisher, "build_service", fault)
    return fault


async def test_a_service_that_fails_to_build_turns_the_bridge_not_ready_until_a_retry_works(
    build_fault: BuildFault,
) -> None:
    async with ConsulDouble() as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        consul.register("api", id="api-1", address="127.0.0.1", port=9090, check_status="passing")
        async with Bridge(bridge_config(consul)) as running:
            await until(lambda: running.publisher.ready, what="the first complete read")
            ready, reason = running.readiness()
            assert not ready
            assert "api" in reason
            assert sorted(running.publisher.clusters) == ["web"]  # the rest is served

            build_fault.active = False
            await until(lambda: running.readiness()[0], what="a retry that works")
            assert sorted(running.publisher.clusters) == ["api", "web"]
