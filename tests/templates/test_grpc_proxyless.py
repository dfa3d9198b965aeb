"""Proxyless gRPC: a grpc-python client with ``GRPC_XDS_BOOTSTRAP`` pointing at the bridge calls
``xds:///<svc>`` and reaches the gRPC servers registered in the Consul double."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.app import Bridge, BridgeConfig
from bridge.consul_settings import settings_from_env
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.waiting import eventually

from .support import EchoServer, GrpcClient, echo_servers, grpc_bootstrap, grpc_client


@dataclass
class GrpcStack:
    consul: ConsulDouble
    bridge: Bridge
    servers: dict[str, EchoServer]

    def register(self, name: str) -> None:
        self.consul.register(
            "greeter",
            id=name,
            address="127.0.0.1",
            port=self.servers[name].port,
            meta={"xds-protocol": "grpc"},
        )


@pytest.fixture
async def stack() -> AsyncIterator[GrpcStack]:
    async with (
        echo_servers("greeter-1", "greeter-2") as servers,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        settings = settings_from_env({}, address=consul.url, wait="2s")
        config = BridgeConfig(consul=settings, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
        stack = GrpcStack(consul, None, servers)  # type: ignore[arg-type]
        stack.register("greeter-1")
        stack.register("greeter-2")
        async with Bridge(config, node_config=TemplateSource()) as bridge:
            stack.bridge = bridge

            async def ready() -> bool:
                return bridge.readiness()[0]

            await eventually(ready, timeout=10, what="bridge ready")
            yield stack


async def _answers(client: GrpcClient) -> set[str]:
    return set(await client.calls(8))


async def test_xds_target_reaches_registered_servers_and_follows_changes(
    stack: GrpcStack, tmp_path: Path
) -> None:
    bootstrap = grpc_bootstrap(stack.bridge.xds_port, "grpc-client-1")
    async with grpc_client("xds:///greeter", bootstrap, tmp_path) as client:
        await eventually(
            lambda: _answers(client),
            lambda seen: seen == {"greeter-1", "greeter-2"},
            timeout=20,
            what="calls reaching both greeters",
        )
        [info] = stack.bridge.registry.by_node("grpc-client-1")
        assert info.node.user_agent_name.lower().startswith("grpc")

        stack.consul.deregister("greeter-2")
        await eventually(
            lambda: _answers(client),
            lambda seen: seen == {"greeter-1"},
            timeout=10,
            what="calls leaving the deregistered greeter-2",
        )
        stack.register("greeter-2")
        stack.consul.set_check_status("service:greeter-1", "critical")
        await eventually(
            lambda: _answers(client),
            lambda seen: seen == {"greeter-2"},
            timeout=10,
            what="calls moving to greeter-2 when greeter-1 fails",
        )
        answers = collections.Counter(await client.calls(10))
        assert answers == {"greeter-2": 10}


async def test_target_with_port_is_served_too(stack: GrpcStack, tmp_path: Path) -> None:
    port = stack.servers["greeter-1"].port
    bootstrap = grpc_bootstrap(stack.bridge.xds_port, "grpc-client-2")
    async with grpc_client(f"xds:///greeter:{port}", bootstrap, tmp_path) as client:
        await eventually(
            lambda: _answers(client),
            lambda seen: seen == {"greeter-1", "greeter-2"},
            timeout=20,
            what="calls through the <svc>:<port> listener",
        )
