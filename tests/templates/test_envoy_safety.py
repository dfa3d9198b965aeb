"""Real Envoy: a template problem never takes an Envoy's listeners away.

* a bridge restarted with a broken template on disk: the Envoy keeps its listener and routes
  (0 failed requests), endpoints keep flowing, ``/readyz`` names the set, and fixing the file
  makes changes flow again;
* a listeners file emptied and rewritten slowly in place while serving: 0 failed requests, the
  Envoy's listener is never touched.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.templating import BUNDLED_DIR
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.bridge_env import answers, envoy_bootstrap, start_bridge
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until
from xds_server.resource import ENDPOINT

from .support import TrafficProbe

pytestmark = pytest.mark.envoy

log = logging.getLogger(__name__)

NODE = "edge-safety"
LISTENERS = "listeners.yaml.j2"
#: Envoy stats that move when a listener is added, changed or removed.
LISTENER_STATS = (
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "listener_manager.lds.update_rejected",
)


@dataclass
class World:
    consul: ConsulDouble
    templates: Path
    backends: dict[str, Backend]

    @property
    def listeners(self) -> Path:
        return self.templates / "default" / LISTENERS


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    templates = tmp_path / "templates"
    shutil.copytree(BUNDLED_DIR, templates)
    async with backends("web-1", "web-2") as started, ConsulDouble() as consul:
        by_name = {b.name: b for b in started}
        for name, backend in by_name.items():
            consul.register(
                "web", id=name, address="127.0.0.1", port=backend.port, check_status="passing"
            )
        yield World(consul, templates, by_name)


async def ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


async def subscribed_to_endpoints(bridge: Bridge, node_id: str) -> bool:
    """The node has a stream on ``bridge`` that asked for endpoints (a delta stream that holds
    the current ones is sent nothing, so an answer is not what to wait for)."""
    streams = bridge.registry.by_node(node_id)
    return bool(streams) and bool(streams[0].state(ENDPOINT).subscribed)


async def listener_stats(envoy: Envoy) -> dict[str, int]:
    stats = await envoy.stats("listener_manager")
    return {name: stats.get(name, 0) for name in LISTENER_STATS}


async def readyz(admin_port: int) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{admin_port}/readyz") as response,
    ):
        return response.status, json.loads(await response.text())


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_restart_with_a_broken_template_keeps_the_envoys_listener(
    world: World, delta: bool
) -> None:
    xds_port, ingress = free_port(), free_port()
    first = start_bridge(world.consul, world.templates, xds_port)
    await first.start()
    try:
        await eventually(lambda: ready(first), what="bridge ready")
        async with Envoy(envoy_bootstrap(NODE, xds_port, ingress, delta)) as envoy:
            await eventually(
                lambda: answers(ingress, "web"), lambda s: set(s) == {"web-1", "web-2"}
            )
            before = await listener_stats(envoy)
            good = world.listeners.read_text()
            async with TrafficProbe(ingress).running() as probe:
                await first.stop()
                world.listeners.write_text(good.replace("{%- endif %}", "{%- endfi %}"))
                second = start_bridge(world.consul, world.templates, xds_port)
                async with second:
                    # The Envoy reconnects and gets endpoints, nothing of what the template owns.
                    await eventually(
                        lambda: subscribed_to_endpoints(second, NODE),
                        timeout=20,
                        what="reconnected",
                    )
                    status, body = await readyz(second.admin_port)
                    assert status == 503
                    assert "default template set 'default' cannot render" in body["reason"]
                    assert LISTENERS in body["reason"]
                    assert NODE in second.templates.errors  # type: ignore[union-attr]
                    world.consul.deregister("web-2")  # endpoint changes still flow
                    await eventually(lambda: answers(ingress, "web"), lambda s: set(s) == {"web-1"})

                    # The fix (with a visible change) flows to the Envoy.
                    routes = world.templates / "default" / "routes.yaml.j2"
                    fixed_at = time.monotonic()
                    world.listeners.write_text(good)
                    routes.write_text(routes.read_text().replace("no such service", "unknown"))
                    await eventually(
                        lambda: get(ingress, host="nope"),
                        lambda answer: answer == (404, "unknown\n"),
                        timeout=20,
                        what="the fixed templates served by Envoy",
                    )
                    log.warning("fix → Envoy serves it: %.3fs", time.monotonic() - fixed_at)
                    await until(lambda: second.readiness()[0], what="ready after the fix")
            assert probe.failed == []
            assert probe.sent > 20
            assert await listener_stats(envoy) == before  # the listener was never touched
    finally:
        await first.stop()


async def test_an_emptied_then_slowly_rewritten_listeners_file_is_never_served(
    world: World,
) -> None:
    xds_port, ingress = free_port(), free_port()
    bridge = start_bridge(world.consul, world.templates, xds_port)
    async with bridge:
        source = bridge.templates
        assert source is not None
        await eventually(lambda: ready(bridge), what="bridge ready")
        async with Envoy(envoy_bootstrap(NODE, xds_port, ingress)) as envoy:
            await eventually(
                lambda: answers(ingress, "web"), lambda s: set(s) == {"web-1", "web-2"}
            )
            before = await listener_stats(envoy)
            good = world.listeners.read_text()

            def held() -> str:
                return source.held_edits().get("default", "")

            async with TrafficProbe(ingress).running() as probe:
                with world.listeners.open("w") as file:  # truncated: empty now
                    file.flush()
                    await until(lambda: "is empty" in held(), what="the empty file held")
                    file.write(good[: good.index("{%- else %}")])  # cut inside the if block
                    file.flush()
                    await until(lambda: "line" in held(), what="the half file held")
                    status, body = await readyz(bridge.admin_port)
                    assert (status, body["status"]) == (200, "ready")  # nothing changed
                    file.write(good[good.index("{%- else %}") :])
                await until(lambda: held() == "", what="the complete file read")
                await until(lambda: probe.sent > 20, what="traffic during the write")
            assert probe.failed == []
            assert await listener_stats(envoy) == before
            assert source.set_problems == {}
