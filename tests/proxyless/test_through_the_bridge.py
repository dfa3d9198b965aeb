"""Real proxyless gRPC clients — grpc-python and Node ``@grpc/grpc-js-xds`` — through the whole
bridge: Consul double → bridge (the gRPC variant, the bundled templates' ``api_listener`` per
service) → ``xds:///<svc>``, with the bootstrap ``consul-xds-bridge bootstrap --grpc`` prints.

Every test runs with each client. Change → client latencies are measured (Consul write → the
first call showing the change, and → the node's EDS ACK) and printed (``pytest -s``), never
asserted.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.bootstrap import BootstrapOptions, grpc_bootstrap
from bridge.client_kinds import Language, classify
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.ports import free_port
from tests.support.waiting import eventually, until
from tests.templates.support import EchoServer, echo_servers
from xds_server import BaseObserver, StreamInfo
from xds_server.resource import ENDPOINT

from .clients import CLIENTS, ProxylessClient

pytestmark = pytest.mark.usefixtures("node_installed")

LANGUAGES = {"node": Language.NODE, "python": Language.CORE}
SERVERS = ("greeter-1", "greeter-2", "echo-1", "a", "b")


class AckTimes(BaseObserver):
    """When each node ACKed each type (monotonic clock)."""

    def __init__(self) -> None:
        self.acks: list[tuple[str, str, float]] = []

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        self.acks.append((stream.node_id, type_url, time.monotonic()))

    def first_after(self, node_id: str, type_url: str, since: float) -> float | None:
        return next(
            (t for n, u, t in self.acks if n == node_id and u == type_url and t >= since), None
        )


class Stack:
    """The Consul double, a bridge on a fixed xDS port (restartable) and gRPC echo servers."""

    def __init__(self, consul: ConsulDouble, servers: dict[str, EchoServer]) -> None:
        self.consul = consul
        self.servers = servers
        self.xds_port = free_port()
        self.acks = AckTimes()
        self.bridge: Bridge | None = None

    @property
    def running(self) -> Bridge:
        assert self.bridge is not None
        return self.bridge

    async def start(self) -> Bridge:
        config = bridge_config(self.consul)
        config.xds_listen = f"127.0.0.1:{self.xds_port}"
        bridge = self.bridge = Bridge(config, TemplateSource())
        bridge.registry.add_observer(self.acks)
        await bridge.start()

        async def ready() -> bool:
            return bridge.readiness()[0]

        await eventually(ready, timeout=10, what="bridge ready")
        return bridge

    async def stop(self) -> None:
        if self.bridge is not None:
            await self.bridge.stop()

    def register(self, server: str, service: str = "greeter", **options: object) -> None:
        address = str(options.pop("address", "127.0.0.1"))
        meta = {"xds-protocol": "grpc", **options.pop("meta", {})}  # type: ignore[dict-item]
        self.consul.register(
            service,
            id=f"{service}-{server}",
            address=address,
            port=self.servers[server].port,
            meta=meta,
            **options,  # type: ignore[arg-type]
        )

    def bootstrap(self, node_id: str, ignore_resource_deletion: bool = False) -> dict[str, object]:
        options = BootstrapOptions(
            node_id=node_id,
            node_cluster="proxyless",
            xds_port=self.xds_port,
            locality_region="dc1",
            ignore_resource_deletion=ignore_resource_deletion,
        )
        return grpc_bootstrap(options)

    def nacks(self) -> dict[str, float]:
        """The bridge's NACK counter, by type (every type it may count)."""
        registry = self.running.metrics.registry
        return {
            kind: registry.get_sample_value("consul_xds_nacks_total", {"type": kind}) or 0.0
            for kind in ("cluster", "endpoint", "listener", "route")
        }


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with echo_servers(*SERVERS) as servers, ConsulDouble(datacenter="dc1") as consul:
        built = Stack(consul, servers)
        built.register("greeter-1")
        built.register("greeter-2", node="node2")
        await built.start()
        try:
            yield built
        finally:
            await built.stop()


async def debug_resources(stack: Stack, query: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{stack.running.admin_port}/debug/resources?{query}"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        assert response.status == 200
        view: dict[str, Any] = await response.json()
        return view


def report(what: str, seconds: float | None) -> None:
    shown = "not seen" if seconds is None else f"{seconds * 1000:.1f} ms"
    print(f"\n[latency] {what}: {shown}")  # pytest -s shows the measurements


async def follows(
    client: ProxylessClient, expected: set[str], what: str, target: str = ""
) -> set[str]:
    async def answers() -> set[str]:
        return set(await client.calls(8, target=target))

    return await eventually(answers, lambda seen: seen == expected, timeout=30, what=what)


async def reaction(
    stack: Stack,
    client: ProxylessClient,
    node_id: str,
    change: Callable[[], None],
    accept: Callable[[set[str]], bool],
    what: str,
) -> None:
    """Make ``change`` and wait (bounded) until calls show it; print how long that took."""
    started = time.monotonic()
    change()
    answers: set[str] = set()
    while not accept(answers):  # back to back: each round trip is the resolution
        assert time.monotonic() - started < 10, f"{what}: calls still reach {answers}"
        answers = set(await client.calls(2))
    seen = time.monotonic() - started
    ack = stack.acks.first_after(node_id, ENDPOINT, started)
    report(f"{what}: Consul write → calls", seen)
    report(f"{what}: Consul write → EDS ACK", None if ack is None else ack - started)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_calls_reach_every_instance_and_follow_deregistration_and_checks(
    stack: Stack, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.variants")
    node_id = f"{kind}-follow"
    async with CLIENTS[kind]("xds:///greeter", stack.bootstrap(node_id), tmp_path) as client:
        await follows(client, {"greeter-1", "greeter-2"}, "calls reaching both greeters")
        [stream] = stack.running.registry.by_node(node_id)
        assert classify(stream.node).language is LANGUAGES[kind]
        assert stream.node_key == f"{node_id}~grpc"
        view = await debug_resources(stack, f"node={node_id}")
        assert (view["variant"], view["node_key"]) == ("grpc", f"{node_id}~grpc")
        [greeter] = view["resources"]["cluster"]["items"]
        assert "load_balancing_policy" in greeter["resource"]
        elsewhere = await debug_resources(stack, "node=not-connected&variant=grpc")
        assert (elsewhere["variant"], elsewhere["node_key"]) == ("grpc", "not-connected~grpc")

        await reaction(
            stack,
            client,
            node_id,
            lambda: stack.consul.deregister("greeter-greeter-2"),
            lambda seen: seen == {"greeter-1"},
            f"{kind}: deregistered greeter-2",
        )
        assert collections.Counter(await client.calls(10)) == {"greeter-1": 10}
        stack.register("greeter-2", node="node2")
        await follows(client, {"greeter-1", "greeter-2"}, "greeter-2 back")
        await reaction(
            stack,
            client,
            node_id,
            lambda: stack.consul.set_check_status("service:greeter-greeter-1", "critical"),
            lambda seen: seen == {"greeter-2"},
            f"{kind}: greeter-1's check failing",
        )
        assert collections.Counter(await client.calls(10)) == {"greeter-2": 10}
    assert stack.nacks() == dict.fromkeys(("cluster", "endpoint", "listener", "route"), 0.0)
    assert [r.getMessage() for r in caplog.records] == []  # nothing differs for these services


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_a_new_service_is_reached_on_a_new_channel(
    stack: Stack, tmp_path: Path, kind: str
) -> None:
    async with CLIENTS[kind]("xds:///greeter", stack.bootstrap(f"{kind}-new"), tmp_path) as client:
        await follows(client, {"greeter-1", "greeter-2"}, "calls reaching the greeters")
        stack.register("echo-1", service="echo")
        await follows(client, {"echo-1"}, "the new service", target="xds:///echo")


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_a_bridge_restart_fails_no_call(stack: Stack, tmp_path: Path, kind: str) -> None:
    node_id = f"{kind}-restart"
    async with CLIENTS[kind]("xds:///greeter", stack.bootstrap(node_id), tmp_path) as client:
        await follows(client, {"greeter-1", "greeter-2"}, "calls reaching both greeters")
        answers: list[str] = []
        restarted = asyncio.Event()

        async def keep_calling() -> None:
            while not restarted.is_set():
                answers.extend(await client.calls(4))
            answers.extend(await client.calls(20))

        calling = asyncio.create_task(keep_calling())
        await stack.stop()
        bridge = await stack.start()  # the same port: the client's xDS stream comes back
        await until(
            lambda: any(s.types.get(ENDPOINT) for s in bridge.registry.by_node(node_id)),
            timeout=60,
            what="the client back on the restarted bridge",
        )
        restarted.set()
        await calling
    assert set(answers) == {"greeter-1", "greeter-2"}, collections.Counter(answers)
    print(f"\n[calls] {kind}: {len(answers)} calls across the bridge restart, 0 failed")


POLICIES = ["round_robin", "least_request", "random", "ring_hash", "maglev"]
#: What each gRPC client uses instead, where that is not the policy asked for.
NEAREST = {"least_request": "round_robin", "random": "round_robin", "maglev": "ring_hash"}


@pytest.mark.parametrize("kind", sorted(CLIENTS))
async def test_every_meta_option_is_served_and_never_nacked(
    stack: Stack, tmp_path: Path, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.variants")
    for policy in POLICIES:
        for server in ("a", "b"):
            stack.register(server, f"lb-{policy}", meta={"xds-lb-policy": policy})
    stack.register("a", "weighted", weights={"Passing": 1, "Warning": 1})
    stack.register("b", "weighted", weights={"Passing": 3, "Warning": 1})
    stack.register("a", "dns")
    stack.register("b", "dns", address="localhost")
    node_id = f"{kind}-options"
    async with CLIENTS[kind]("xds:///greeter", stack.bootstrap(node_id), tmp_path) as client:
        for service in [*(f"lb-{p}" for p in POLICIES), "weighted"]:
            # ring_hash without a route hash policy hashes each call randomly (gRFC A42).
            await follows(client, {"a", "b"}, f"{service} reaching a and b", f"xds:///{service}")
        # Hostname instances: an aggregate cluster, IP-addressed ones first (gRFC A37).
        await follows(client, {"a"}, "dns reaching its IP instance", "xds:///dns")
        stack.consul.set_check_status("service:dns-a", "critical")
        await follows(client, {"b"}, "dns failing over to localhost", "xds:///dns")
        label = classify(stack.running.registry.by_node(node_id)[0].node).label
    assert stack.nacks() == dict.fromkeys(("cluster", "endpoint", "listener", "route"), 0.0)
    warnings = [r.getMessage() for r in caplog.records if r.getMessage().startswith(label)]
    for policy in POLICIES:
        about = [w for w in warnings if f"'lb-{policy}': xds-lb-policy" in w]
        if policy in NEAREST:
            assert about == [
                f"{label} clients: service 'lb-{policy}': xds-lb-policy {policy} has no "
                f"equivalent in {label}; it uses {NEAREST[policy]}"
            ]
        else:
            assert about == []
    assert any("'weighted': instances have different weights" in w for w in warnings), warnings
    assert any("'dns': gRPC clients reach its hostname-addressed" in w for w in warnings)


@pytest.mark.parametrize("kind", sorted(CLIENTS))
@pytest.mark.parametrize("a53", [True, False], ids=["ignore_resource_deletion", "deletion"])
async def test_calls_stop_reaching_a_service_that_left_and_resume_when_it_returns(
    stack: Stack, tmp_path: Path, kind: str, a53: bool
) -> None:
    """With gRFC A53 the client keeps a cluster the bridge stops sending; it was sent the
    service's endpoints emptied first, so what it keeps has none: calls fail instead of reaching
    the instance that left (which still runs). Without A53 the listener and cluster are gone."""
    stack.register("a", "solo")
    node_id = f"{kind}-left"
    bootstrap = stack.bootstrap(node_id, ignore_resource_deletion=a53)
    async with CLIENTS[kind]("xds:///solo", bootstrap, tmp_path) as client:
        await follows(client, {"a"}, "calls reaching the only instance")
        started = time.monotonic()
        stack.consul.deregister("solo-a")
        await until(
            lambda: "solo" not in stack.running.publisher.grpc.clusters,
            timeout=20,
            what="the cluster removed once the client took its emptied endpoints",
        )
        report(
            f"{kind}, A53 {a53}: last instance left → cluster removed", time.monotonic() - started
        )
        reached = stack.servers["a"].calls
        answers = await client.tries(8)
        assert all(answer.startswith("error: UNAVAILABLE") for answer in answers), answers
        assert stack.servers["a"].calls == reached
        stack.register("a", "solo")
        if kind == "node" and not a53:
            # grpc-js-xds 1.14.1 keeps a deleted resource's cached copy and drops an update equal
            # to it (xds-client.js: resourcesEqual before notifying), so a channel that saw the
            # cluster deleted never learns it is back; a channel watching anew gets the copy.
            port = stack.servers["a"].port
            await follows(client, {"a"}, "a new channel reaching it", f"xds:///solo:{port}")
            assert set(await client.tries(4)) == {
                "error: UNAVAILABLE: Cluster resource solo does not exist"
            }
        else:
            await follows(client, {"a"}, "calls reaching the instance back")
