"""Config entries for proxyless gRPC clients: a real grpc-python client (``xds:///greeter``) gets
the gRPC variant of the compiled routes — splits and header matches — and clusters it accepts."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from bridge.app import Bridge
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import eventually
from tests.templates.support import (
    EchoServer,
    GrpcClient,
    echo_servers,
    grpc_bootstrap,
    grpc_client,
)

BOUND = 20.0
SUBSETS = {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2"},
}


@dataclass
class GrpcStack:
    consul: ConsulDouble
    bridge: Bridge
    servers: dict[str, EchoServer]


@pytest.fixture
async def stack() -> AsyncIterator[GrpcStack]:
    async with (
        echo_servers("greeter-1", "greeter-2") as servers,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        for name, version in (("greeter-1", "v1"), ("greeter-2", "v2")):
            consul.register(
                "greeter",
                id=name,
                address="127.0.0.1",
                port=servers[name].port,
                meta={"xds-protocol": "grpc", "version": version},
            )
        consul.put_config_entry({"Kind": "service-defaults", "Name": "greeter", "Protocol": "grpc"})
        consul.put_config_entry({"Kind": "service-resolver", "Name": "greeter", "Subsets": SUBSETS})
        async with Bridge(bridge_config(consul), TemplateSource()) as bridge:

            async def ready() -> bool:
                return bridge.readiness()[0]

            await eventually(ready, timeout=BOUND, what="bridge ready")
            yield GrpcStack(consul, bridge, servers)


async def reaches(client: GrpcClient, expected: set[str], what: str, **metadata: str) -> None:
    async def answers() -> set[str]:
        return set(await client.calls(10, metadata=metadata))

    await eventually(answers, lambda seen: seen == expected, timeout=BOUND, what=what)


async def test_grpc_clients_follow_splits_and_header_routes(
    stack: GrpcStack, tmp_path: Path
) -> None:
    bootstrap = grpc_bootstrap(stack.bridge.xds_port, "grpc-traffic-1")
    async with grpc_client("xds:///greeter", bootstrap, tmp_path) as client:
        await reaches(client, {"greeter-1", "greeter-2"}, "both greeters without routing")

        splits = [{"Weight": 100, "ServiceSubset": "v2"}, {"Weight": 0, "ServiceSubset": "v1"}]
        stack.consul.put_config_entry(
            {"Kind": "service-splitter", "Name": "greeter", "Splits": splits}
        )
        await reaches(client, {"greeter-2"}, "the split: every call to v2")

        route = {
            "Match": {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "old"}]}},
            "Destination": {"ServiceSubset": "v1"},
        }
        stack.consul.put_config_entry(
            {"Kind": "service-router", "Name": "greeter", "Routes": [route]}
        )
        await reaches(client, {"greeter-1"}, "the header route to v1", **{"x-canary": "old"})
        assert set(await client.calls(10)) == {"greeter-2"}  # everything else: the split


async def test_grpc_clients_get_a_cluster_they_accept_when_envoys_get_maglev(
    stack: GrpcStack, tmp_path: Path
) -> None:
    hashing = {
        "Policy": "maglev",
        "HashPolicies": [{"Field": "header", "FieldValue": "x-user"}],
    }
    stack.consul.put_config_entry(
        {
            "Kind": "service-resolver",
            "Name": "greeter",
            "Subsets": SUBSETS,
            "LoadBalancer": hashing,
        }
    )
    bootstrap = grpc_bootstrap(stack.bridge.xds_port, "grpc-traffic-2")
    async with grpc_client("xds:///greeter", bootstrap, tmp_path) as client:
        # Ring hash on x-user: one user always reaches the same greeter.
        answers = collections.Counter(await client.calls(10, metadata={"x-user": "ada"}))
        assert list(answers.values()) == [10], answers
        [info] = stack.bridge.registry.by_node("grpc-traffic-2")
        assert all(state.last_nack is None for state in info.types.values())
        shared = stack.bridge.publisher.clusters["greeter"].message
        assert isinstance(shared, cluster_pb2.Cluster)
        assert shared.lb_policy == cluster_pb2.Cluster.MAGLEV  # what Envoys get
