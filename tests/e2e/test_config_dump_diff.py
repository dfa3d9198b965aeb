"""``/debug/config_dump`` and ``render --format config_dump`` against a real Envoy's
``/config_dump?include_eds``: after :func:`bridge.config_dump.normalise` (times, versions, static
sections and order dropped) the dynamic resources are identical, SotW and delta."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.config_dump import normalise
from bridge.tasks import within
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config, envoy_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.envoy

NODE = "dump-edge"
SECTIONS = {"ClustersConfigDump", "EndpointsConfigDump", "ListenersConfigDump", "RoutesConfigDump"}


@dataclass
class Setup:
    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    ingress: int

    async def bridge_dump(self, query: str = "&include_eds") -> Any:
        url = f"http://127.0.0.1:{self.bridge.admin_port}/debug/config_dump?node={NODE}{query}"
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            assert response.status == 200
            return await response.json()

    def in_sync(self) -> bool:
        streams = self.bridge.registry.by_node(NODE)
        states = [s for stream in streams for s in stream.types.values()]
        return len(states) == 4 and all(
            s.version_sent == s.version_acked and s.offered is None for s in states
        )


def register(consul: ConsulDouble) -> None:
    """Instances covering what the bridge puts in an assignment: weights, metadata, health
    states, a second datacenter (priority 1), a gRPC service."""
    consul.register(
        "web", id="web-1", address="127.0.0.1", port=free_port(), meta={"version": "v2"},
        weights={"Passing": 3, "Warning": 1},
    )  # fmt: skip
    consul.register("web", id="web-2", address="127.0.0.1", port=free_port(), node="node2",
                    check_status="warning")  # fmt: skip
    consul.register("web", id="web-3", address="127.0.0.1", port=free_port(), node="node3",
                    check_status="critical")  # fmt: skip
    consul.register("web", id="web-dc2", address="127.0.0.1", port=free_port(), datacenter="dc2")
    consul.register("greeter", id="greeter-1", address="127.0.0.1", port=free_port(),
                    meta={"xds-protocol": "grpc"})  # fmt: skip


@pytest.fixture(params=["sotw", "delta"])
async def setup(request: pytest.FixtureRequest) -> AsyncIterator[Setup]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as consul:
        register(consul)
        config = bridge_config(consul, datacenters=("dc2",))
        async with Bridge(config, TemplateSource()) as bridge:
            await eventually(lambda: _ready(bridge), what="bridge ready")
            ingress = free_port()
            bootstrap = envoy_bootstrap(NODE, bridge.xds_port, ingress, request.param == "delta")
            async with Envoy(bootstrap) as envoy:
                found = Setup(consul, bridge, envoy, ingress)

                async def synced() -> bool:
                    return found.in_sync()

                await eventually(synced, what="every type ACKed")
                yield found


async def _ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


async def test_the_bridge_s_config_dump_matches_envoy_s_dynamic_resources(setup: Setup) -> None:
    theirs = normalise(await setup.envoy.config_dump(include_eds=True))
    ours = normalise(await setup.bridge_dump())
    assert set(ours) == SECTIONS
    assert all(ours[section] for section in SECTIONS)
    assert ours == theirs

    # Without include_eds, as Envoy: no endpoints section.
    without = await setup.bridge_dump(query="")
    kinds = [c["@type"].rsplit(".", 1)[-1] for c in without["configs"]]
    assert kinds == ["ClustersConfigDump", "ListenersConfigDump", "RoutesConfigDump"]
    assert normalise(without) == normalise(await setup.envoy.config_dump())

    # last_updated is when the node accepted each resource.
    (cluster,) = [
        c for c in without["configs"][0]["dynamic_active_clusters"] if c["cluster"]["name"] == "web"
    ]
    assert cluster["last_updated"].endswith("Z")
    assert cluster["version_info"]

    # After a change, both still agree.
    setup.consul.deregister("web-2")

    async def changed_and_synced() -> bool:
        dump = normalise(await setup.bridge_dump())
        return dump != ours and setup.in_sync()

    await eventually(changed_and_synced, what="the change ACKed")
    assert normalise(await setup.bridge_dump()) == normalise(
        await setup.envoy.config_dump(include_eds=True)
    )


async def test_render_prints_the_config_dump_envoy_will_have(setup: Setup, tmp_path: Path) -> None:
    """A catalog saved from Consul, rendered offline, equals what the Envoy holds."""
    catalog: dict[str, dict[str, Any]] = {"dc1": {}, "dc2": {}}
    async with aiohttp.ClientSession() as session:
        for dc in catalog:
            for service in ("web", "greeter"):
                url = f"{setup.consul.url}/v1/health/service/{service}?dc={dc}"
                async with session.get(url) as response:
                    catalog[dc][service] = await response.json()
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "render", "--node-id", NODE, "--node-cluster", "edge",
        "--metadata", f"ingress_port={setup.ingress}", "--metadata", "ingress_address=127.0.0.1",
        "--catalog", str(path), "--format", "config_dump", "--include-eds",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await within(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    rendered = normalise(json.loads(out))
    assert set(rendered) == SECTIONS
    assert rendered == normalise(await setup.envoy.config_dump(include_eds=True))
