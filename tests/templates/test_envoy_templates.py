"""Real Envoy: listeners and routes from the template sets, over LDS/RDS from the bridge."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge, BridgeConfig
from bridge.consul_settings import settings_from_env
from bridge.templating import TemplateSource, parse_rules
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.bridge_env import answers
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.waiting import eventually, until

from .support import copy_sets

pytestmark = pytest.mark.envoy


@dataclass
class Stack:
    consul: ConsulDouble
    bridge: Bridge
    source: TemplateSource
    backends: dict[str, Backend]
    directory: Path

    def register(self, name: str, service: str = "web", **kwargs: Any) -> None:
        self.consul.register(
            service, id=name, address="127.0.0.1", port=self.backends[name].port, **kwargs
        )

    def envoy(self, node_id: str, cluster: str = "ingress") -> tuple[Envoy, int]:
        port = free_port()
        metadata = {"ingress_port": port, "ingress_address": "127.0.0.1"}
        bootstrap = ads_bootstrap(self.bridge.xds_port, node_id, cluster, metadata)
        return Envoy(bootstrap, name=node_id), port


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    directory = copy_sets(tmp_path / "templates")
    async with (
        backends("web-1", "web-2", "api-1") as started,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        rules = parse_rules([{"match": {"node_cluster": "edge-*"}, "template_set": "edge"}])
        source = TemplateSource(directory, rules=rules)
        settings = settings_from_env({}, address=consul.url, wait="2s")
        config = BridgeConfig(consul=settings, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
        async with Bridge(config, node_config=source) as bridge:
            stack = Stack(consul, bridge, source, {b.name: b for b in started}, directory)
            stack.register("web-1")
            stack.register("web-2", node="node2")
            stack.register("api-1", service="api")

            async def ready() -> bool:
                return bridge.readiness()[0] and len(bridge.publisher.catalog) == 2

            await eventually(ready, timeout=10, what="bridge ready with web and api")
            yield stack  # the bridge started its template watcher: edits from now on apply


async def reaches(port: int, host: str, expected: set[str], what: str = "") -> None:
    async def seen() -> set[str]:
        return set(await answers(port, host, requests=8))

    await eventually(seen, lambda s: s == expected, timeout=10, what=what or f"{host} → {expected}")


async def listener_names(envoy: Envoy) -> list[str]:
    dump = await envoy.config_dump("dynamic_listeners")
    return sorted(item["name"] for item in dump.get("configs", []))


async def test_default_set_routes_by_service_names_and_404s_unknown_hosts(stack: Stack) -> None:
    envoy, port = stack.envoy("ingress-1")
    async with envoy:
        assert await listener_names(envoy) == ["ingress_http"]
        for host in ("web", "web.service.consul", f"web:{port}", "web.service.dc1.consul:80"):
            await reaches(port, host, {"web-1", "web-2"})
        await reaches(port, "api.service.consul", {"api-1"})
        assert await get(port, host="nope") == (404, "no such service\n")
        assert await get(port, host="web.service.dc9.consul") == (404, "no such service\n")
        assert await envoy.stat("listener_manager.lds.update_rejected") == 0
        assert await envoy.stat("http.ingress_http.rds.ingress_routes.update_rejected") == 0


async def test_node_whose_cluster_matches_a_rule_gets_that_set(stack: Stack) -> None:
    edge, edge_port = stack.envoy("edge-1", cluster="edge-west")
    plain, plain_port = stack.envoy("ingress-2")
    async with edge, plain:
        assert await listener_names(edge) == ["edge_http"]
        assert await listener_names(plain) == ["ingress_http"]
        await reaches(edge_port, "web.edge.example", {"web-1", "web-2"})
        assert (await get(edge_port, host="web"))[0] == 404  # not a domain of the edge set
        await reaches(plain_port, "web", {"web-1", "web-2"})


async def _edit(stack: Stack, file: str, text: str) -> None:
    """Write a set file and wait (bounded, generously) until the source serves it: the bridge
    re-published every node in the same step."""
    (stack.directory / "default" / file).write_text(text)
    await until(lambda: stack.source.sets["default"].sources[file] == text, 15.0, f"{file} loaded")


async def test_broken_edit_is_rejected_and_a_fixed_edit_applied(stack: Stack) -> None:
    envoy, port = stack.envoy("ingress-3")
    async with envoy:
        await reaches(port, "web", {"web-1", "web-2"})
        routes = stack.directory / "default" / "routes.yaml.j2"
        good = routes.read_text()

        # A template that does not compile is held (it may be a write in progress)...
        routes.write_text(good.replace("{%- endfor %}", "{%- endfro %}", 1))

        def held() -> str:
            return stack.source.held_edits().get("default", "")

        await until(lambda: "routes.yaml.j2, line" in held(), 10, "the broken edit held")
        # ... one that compiles but renders an unknown field is applied, and fails per node.
        await _edit(stack, "routes.yaml.j2", good.replace("virtual_hosts:", "virtual_hostz:"))
        assert held() == ""
        error = stack.source.errors["ingress-3"]
        assert "virtual_hostz" in error.message
        assert "ingress-3" in error.message
        assert stack.source.render_errors_total["default"] >= 1
        # Traffic is unaffected: the node kept its last good listeners and routes.
        for _ in range(3):
            assert set(await answers(port, "web", requests=8)) == {"web-1", "web-2"}
        assert await get(port, host="nope") == (404, "no such service\n")

        await _edit(stack, "routes.yaml.j2", good.replace("no such service", "unknown service"))
        assert "ingress-3" not in stack.source.errors

        async def not_found() -> tuple[int, str]:
            return await get(port, host="nope")

        await eventually(not_found, lambda r: r == (404, "unknown service\n"), what="fixed edit")
        await reaches(port, "web", {"web-1", "web-2"})
        assert await envoy.stat("listener_manager.lds.update_rejected") == 0


async def test_new_services_get_virtual_hosts_without_template_edits(stack: Stack) -> None:
    envoy, port = stack.envoy("ingress-4")
    async with backends("db-1") as extra, envoy:
        stack.backends.update({b.name: b for b in extra})
        assert (await get(port, host="db"))[0] == 404
        stack.register("db-1", service="db")
        await reaches(port, "db.service.consul", {"db-1"})
