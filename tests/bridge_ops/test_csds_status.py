"""CSDS and ``consul-xds-bridge status`` with a real fleet: a real Envoy, a proxyless gRPC client
and a plain xDS client that rejects what it is sent, all on one bridge."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from bridge.app import Bridge, BridgeConfig
from bridge.consul_settings import settings_from_env
from bridge.tasks import within
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import envoy_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually
from tests.support.xds_client import XdsClient
from tests.templates.support import GrpcClient, echo_servers, grpc_bootstrap, grpc_client
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

pytestmark = pytest.mark.envoy

ENVOY, GRPC, NACKER = "edge-1", "grpc-1", "nacker-1"
#: What Envoy 1.40 sends back for a cluster with a negative connect timeout.
ENVOY_MESSAGE = "Invalid duration: Expected positive duration: goo.gle/debugproto  \nnanos: -5\n"
SYNCED = csds_pb2.ConfigStatus.SYNCED
ERROR = csds_pb2.ConfigStatus.ERROR


@dataclass
class Fleet:
    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    grpc: GrpcClient
    nacker: XdsClient

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.bridge.xds_port}"


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[Fleet]:
    async with (
        echo_servers("greeter-1") as servers,
        ConsulDouble(datacenter="dc1") as consul,
    ):
        consul.register("web", id="web-1", address="127.0.0.1", port=free_port())
        port = servers["greeter-1"].port
        meta = {"xds-protocol": "grpc"}
        consul.register("greeter", id="greeter-1", address="127.0.0.1", port=port, meta=meta)
        settings = settings_from_env({}, address=consul.url, wait="2s")
        config = BridgeConfig(consul=settings, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
        async with Bridge(config, node_config=TemplateSource()) as bridge:
            await eventually(lambda: _ready(bridge), what="bridge ready")
            bootstrap = grpc_bootstrap(bridge.xds_port, GRPC)
            async with (
                Envoy(envoy_bootstrap(ENVOY, bridge.xds_port, free_port())) as envoy,
                grpc_client("xds:///greeter", bootstrap, tmp_path) as client,
                XdsClient(f"127.0.0.1:{bridge.xds_port}", NACKER) as nacker,
            ):
                assert set(await client.calls(2)) == {"greeter-1"}
                await nacker.send(CLUSTER, ["*"])
                rejected = await nacker.recv()
                await nacker.send(CLUSTER, ["*"], "", rejected.nonce, error=ENVOY_MESSAGE)
                yield Fleet(consul, bridge, envoy, client, nacker)


async def _ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


async def fetch(target: str, request: Any = None) -> Any:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        return await stub.FetchClientStatus(request or csds_pb2.ClientStatusRequest(), timeout=5)


def by_node(response: Any) -> dict[str, Any]:
    return {str(config.node.id): config for config in response.config}


def statuses(config: Any) -> dict[tuple[str, str], int]:
    return {(e.type_url, e.name): e.config_status for e in config.generic_xds_configs}


def all_synced(response: Any, nodes: tuple[str, ...] = (ENVOY, GRPC)) -> bool:
    found = by_node(response)
    return all(node in found and set(statuses(found[node]).values()) == {SYNCED} for node in nodes)


async def status(*args: str) -> tuple[int, str, str]:
    """``consul-xds-bridge status`` in its own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "status",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await within(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_csds_reports_every_node_per_resource_including_a_nack(fleet: Fleet) -> None:
    response = await eventually(
        lambda: fetch(fleet.target), all_synced, what="Envoy and gRPC synced"
    )
    nodes = by_node(response)
    assert set(nodes) == {ENVOY, GRPC, NACKER}

    envoy = statuses(nodes[ENVOY])
    assert {name for (kind, name) in envoy if kind == CLUSTER} == {"web", "greeter"}
    assert {kind for kind, _ in envoy} == {CLUSTER, ENDPOINT, LISTENER, ROUTE}
    assert nodes[ENVOY].node.user_agent_name == "envoy"
    entry = next(e for e in nodes[ENVOY].generic_xds_configs if e.name == "web")
    assert entry.version_info
    assert entry.HasField("last_updated")
    assert entry.xds_config.type_url == CLUSTER  # the resource itself, unless excluded

    grpc_kinds = {kind for kind, _ in statuses(nodes[GRPC])}
    assert grpc_kinds >= {CLUSTER, ENDPOINT, LISTENER}  # its routes may be inline

    rejected = list(nodes[NACKER].generic_xds_configs)
    assert {e.name for e in rejected} == {"web", "greeter"}
    for e in rejected:
        assert e.config_status == ERROR
        assert e.client_status == 4  # NACKED
        assert e.version_info == ""  # it holds nothing
        assert e.error_state.details == ENVOY_MESSAGE
        assert e.error_state.version_info
        assert e.error_state.failed_configuration.type_url == CLUSTER


async def test_node_matchers_select_nodes_and_contents_can_be_left_out(fleet: Fleet) -> None:
    request = csds_pb2.ClientStatusRequest(exclude_resource_contents=True)
    request.node_matchers.add().node_id.prefix = "edge-"
    request.node_matchers.add().node_id.exact = NACKER
    response = await fetch(fleet.target, request)
    assert set(by_node(response)) == {ENVOY, NACKER}
    for config in response.config:
        for entry in config.generic_xds_configs:
            assert not entry.HasField("xds_config")
            assert not entry.error_state.HasField("failed_configuration")

    async with grpc.aio.insecure_channel(fleet.target) as channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        call = stub.StreamClientStatus()
        only_grpc = csds_pb2.ClientStatusRequest()
        only_grpc.node_matchers.add().node_id.safe_regex.regex = "grpc-[0-9]+"
        await call.write(only_grpc)
        answer = await within(call.read(), 5)
        assert set(by_node(answer)) == {GRPC}
        await call.write(csds_pb2.ClientStatusRequest())
        answer = await within(call.read(), 5)
        assert set(by_node(answer)) == {ENVOY, GRPC, NACKER}
        await call.done_writing()


async def test_status_fails_while_a_node_nacks_and_passes_once_it_accepts(fleet: Fleet) -> None:
    await eventually(lambda: fetch(fleet.target), all_synced, what="Envoy and gRPC synced")
    code, out, err = await status("--xds-address", fleet.target)
    assert code == 1, (out, err)
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert set(lines) == {ENVOY, GRPC, NACKER}
    assert out.splitlines()[0].split() == [
        "NODE", "CLUSTER", "AGENT", "CDS", "EDS", "LDS", "RDS", "REPLICA",
    ]  # fmt: skip
    assert lines[ENVOY].split()[3:8] == ["SYNCED", "SYNCED", "SYNCED", "SYNCED", fleet.target]
    assert "envoy/1.40" in lines[ENVOY]
    assert "NACKED (Invalid duration: Expected positive duration)" in lines[NACKER]
    assert "goo.gle" not in out
    assert f"node {NACKER} on {fleet.target}: cluster NACKED" in err

    code, out, _ = await status("--xds-address", fleet.target, "--node", NACKER)
    assert code == 1
    assert "nanos: -5" in out  # the detail view carries Envoy's whole message
    assert "ERROR" in out
    assert "NACKED" in out

    # The fix: a new cluster set reaches the client, which accepts it.
    fleet.consul.register("api", id="api-1", address="127.0.0.1", port=free_port())
    fixed = await fleet.nacker.recv()
    await fleet.nacker.ack(fixed, ["*"])
    await eventually(
        lambda: fetch(fleet.target),
        lambda r: all_synced(r, (ENVOY, GRPC, NACKER)),
        what="every node synced",
    )
    code, out, err = await status("--xds-address", fleet.target, "--stale-after", "1m")
    assert code == 0, (out, err)
    assert "NACKED" not in out


async def test_status_names_a_replica_it_cannot_read(fleet: Fleet) -> None:
    await eventually(lambda: fetch(fleet.target), all_synced, what="Envoy and gRPC synced")
    down = f"127.0.0.1:{free_port()}"
    code, out, err = await status(
        "--xds-address", fleet.target, "--xds-address", down, "--timeout", "2s"
    )
    assert code == 1  # the NACKing node is the worse news
    assert f"cannot read CSDS at {down}: UNAVAILABLE" in err
    assert NACKER in out


async def test_status_can_select_one_cluster(fleet: Fleet) -> None:
    await eventually(lambda: fetch(fleet.target), all_synced, what="Envoy and gRPC synced")
    code, out, err = await status("--xds-address", fleet.target, "--cluster", "edge")
    assert code == 0, (out, err)  # the NACKing node is in another cluster
    assert [line.split()[0] for line in out.splitlines()[1:]] == [ENVOY]
