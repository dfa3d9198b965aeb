"""The Node proxyless client (``@grpc/grpc-js-xds``) through the whole bridge: Consul double →
bridge (bundled templates: an ``api_listener`` per service) → ``xds:///<svc>``, with the
bootstrap ``consul-xds-bridge bootstrap --grpc`` prints. (grpc-python: ``tests/templates``.)"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.bootstrap import BootstrapOptions, grpc_bootstrap
from bridge.client_kinds import Language, classify
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import eventually
from tests.templates.support import EchoServer, echo_servers

from .node_client import NodeClient, node_client

pytestmark = pytest.mark.usefixtures("node_installed")


@dataclass
class Stack:
    consul: ConsulDouble
    bridge: Bridge
    servers: dict[str, EchoServer]

    def register(self, name: str, service: str = "greeter") -> None:
        self.consul.register(
            service,
            id=name,
            address="127.0.0.1",
            port=self.servers[name].port,
            meta={"xds-protocol": "grpc"},
        )

    def bootstrap(self, node_id: str) -> dict[str, object]:
        options = BootstrapOptions(
            node_id=node_id, node_cluster="node-clients", xds_port=self.bridge.xds_port
        )
        return grpc_bootstrap(options)


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with (
        echo_servers("greeter-1", "greeter-2", "echo-1") as servers,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        partial = Stack(consul, None, servers)  # type: ignore[arg-type]
        partial.register("greeter-1")
        partial.register("greeter-2")
        async with Bridge(bridge_config(consul), node_config=TemplateSource()) as bridge:
            partial.bridge = bridge

            async def ready() -> bool:
                return bridge.readiness()[0]

            await eventually(ready, timeout=10, what="bridge ready")
            yield partial


async def follows(client: NodeClient, expected: set[str], what: str) -> None:
    async def answers() -> set[str]:
        return set(await client.calls(8))

    await eventually(answers, lambda seen: seen == expected, timeout=20, what=what)


async def test_node_client_reaches_every_instance_and_follows_consul(
    stack: Stack, tmp_path: Path
) -> None:
    async with node_client("xds:///greeter", stack.bootstrap("node-1"), tmp_path) as client:
        await follows(client, {"greeter-1", "greeter-2"}, "calls reaching both greeters")
        [info] = stack.bridge.registry.by_node("node-1")
        kind = classify(info.node)
        assert kind.is_grpc
        assert kind.language is Language.NODE
        assert kind.label == f"gRPC node {client.versions['grpc_js_xds']}"

        stack.consul.deregister("greeter-2")
        await follows(client, {"greeter-1"}, "calls leaving the deregistered greeter-2")
        stack.register("greeter-2")
        stack.consul.set_check_status("service:greeter-1", "critical")
        await follows(client, {"greeter-2"}, "calls leaving the failing greeter-1")
        assert collections.Counter(await client.calls(10)) == {"greeter-2": 10}
        assert all(state.last_nack is None for state in info.types.values())


async def test_a_new_service_is_reached_on_a_new_channel(stack: Stack, tmp_path: Path) -> None:
    stack.register("echo-1", service="echo")
    async with node_client("xds:///echo", stack.bootstrap("node-2"), tmp_path) as client:
        await follows(client, {"echo-1"}, "calls reaching the new service")
