"""The compatibility scenario, run by ``make compat`` against every supported Envoy (``ENVOY_BIN``
picks the binary; ``ENVOY_EXPECT_VERSION`` makes sure it is the one meant) and by ``make test``
against the installed Envoy and the oldest supported one.

Consul double → bridge (bundled templates) → a real Envoy, SotW and delta: instances registered
get traffic, a deregistered one stops getting it, a new service is routed and a service whose last
instance leaves is removed; every meta option the bridge documents (each ``xds-lb-policy``, HTTP/2,
connect timeout, circuit breakers, panic threshold) and a hostname-addressed instance (STRICT_DNS)
work — and no version NACKs anything.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.app import Bridge
from bridge.client_kinds import classify
from bridge.templating import BUNDLED_DIR
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.bridge_env import answers, envoy_bootstrap, start_bridge
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually

pytestmark = pytest.mark.envoy

POLICIES = ("least_request", "random", "ring_hash", "maglev")
OPTIONS = {  # every documented meta option but the protocol
    "xds-connect-timeout": "2s",
    "xds-max-requests": "100",
    "xds-max-connections": "100",
    "xds-max-pending-requests": "100",
    "xds-max-retries": "3",
    "xds-panic-threshold": "10",
}


class Scenario:
    def __init__(
        self,
        consul: ConsulDouble,
        bridge: Bridge,
        envoy: Envoy,
        ingress: int,
        node: str,
        backends: dict[str, Backend],
    ) -> None:
        self.backends = backends
        self.consul = consul
        self.bridge = bridge
        self.envoy = envoy
        self.ingress = ingress
        self.node = node

    async def follows(self, host: str, expected: set[str], what: str) -> None:
        await eventually(
            lambda: answers(self.ingress, host),
            lambda seen: set(seen) == expected,
            timeout=15,
            what=f"{what} (Envoy {await self.version()})",
        )

    async def version(self) -> str:
        info = await self.envoy.admin_json("/server_info")
        return str(info["version"]).split("/")[1]

    def nacks(self) -> list[str]:
        return [
            f"{type_url}: {state.last_nack.message}"
            for info in self.bridge.registry.by_node(self.node)
            for type_url, state in info.types.items()
            if state.last_nack is not None
        ]


def register(consul: ConsulDouble, service: str, backend: Backend, **kwargs: object) -> None:
    consul.register(
        service,
        id=backend.name,
        address=str(kwargs.pop("address", "127.0.0.1")),
        port=backend.port,
        check_status="passing",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["sotw", "delta"])
async def scenario(request: pytest.FixtureRequest) -> AsyncIterator[Scenario]:
    delta = request.param == "delta"
    node = f"compat-{request.param}"
    names = ["web-1", "web-2", "api-1", "dns-1", *(f"{p}-1" for p in POLICIES)]
    xds_port, ingress = free_port(), free_port()
    async with backends(*names) as started, ConsulDouble(datacenter="dc1") as consul:
        by_name = {backend.name: backend for backend in started}
        register(consul, "web", by_name["web-1"])
        register(consul, "web", by_name["web-2"], node="node2")
        for policy in POLICIES:
            register(consul, policy, by_name[f"{policy}-1"], meta={"xds-lb-policy": policy})
        async with start_bridge(consul, Path(BUNDLED_DIR), xds_port) as bridge:
            await eventually(lambda: _ready(bridge), what="bridge ready")
            async with Envoy(envoy_bootstrap(node, xds_port, ingress, delta=delta)) as envoy:
                yield Scenario(consul, bridge, envoy, ingress, node, by_name)


async def _ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


async def test_the_envoy_under_test_is_the_one_meant(scenario: Scenario) -> None:
    version = await scenario.version()
    expected = os.environ.get("ENVOY_EXPECT_VERSION", "")
    if expected:
        assert version == expected
    [stream] = scenario.bridge.registry.by_node(scenario.node)
    kind = classify(stream.node)
    assert kind.label == f"envoy {version}"


async def test_register_traffic_deregister_traffic_leaves(scenario: Scenario) -> None:
    consul = scenario.consul
    await scenario.follows("web", {"web-1", "web-2"}, "both instances get traffic")
    consul.deregister("web-2")
    await scenario.follows("web", {"web-1"}, "traffic leaves the deregistered instance")
    register(consul, "web", scenario.backends["web-2"], node="node2")
    await scenario.follows("web", {"web-1", "web-2"}, "a registered instance gets traffic")
    consul.set_check_status("service:web-1", "critical")
    await scenario.follows("web", {"web-2"}, "traffic leaves a failing instance")
    assert scenario.nacks() == []
    assert await scenario.envoy.stat("cluster_manager.cds.update_rejected") == 0


async def test_services_come_and_go_with_every_option_and_a_hostname(scenario: Scenario) -> None:
    consul = scenario.consul
    for policy in POLICIES:
        await scenario.follows(policy, {f"{policy}-1"}, f"xds-lb-policy {policy}")
    assert (await get(scenario.ingress, host="api"))[0] == 404
    register(consul, "api", scenario.backends["api-1"], meta=OPTIONS)
    await scenario.follows("api", {"api-1"}, "a new service with every option")
    register(consul, "dns", scenario.backends["dns-1"], address="localhost")
    await scenario.follows("dns", {"dns-1"}, "a hostname-addressed instance (STRICT_DNS)")
    # HTTP/2 upstream (the test backends speak HTTP/1.1 only: the cluster is checked, not used)
    consul.register("h2", id="h2-1", address="127.0.0.1", port=9, meta={"xds-protocol": "http2"})
    await eventually(scenario.envoy.active_clusters, lambda c: "h2" in c, what="h2 cluster")

    consul.deregister("api-1")  # its last instance: the service leaves
    await eventually(scenario.envoy.active_clusters, lambda c: "api" not in c, what="api removed")
    assert (await get(scenario.ingress, host="api"))[0] == 404
    assert await scenario.envoy.warming_clusters() == {}
    assert scenario.nacks() == []
    assert await scenario.envoy.stat("cluster_manager.cds.update_rejected") == 0
