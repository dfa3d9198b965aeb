"""Connect sidecars and gateways are not ordinary backends: their instances are left out unless
``services.include_mesh_kinds`` is on."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.app import Bridge
from bridge.catalog import ServiceUpdate
from bridge.model import Instance, parse_health_service
from bridge.service_kinds import MESH_KINDS, served_update
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import eventually


def instance(instance_id: str, kind: str = "") -> Instance:
    return Instance("web", instance_id, "node1", "dc1", "10.0.0.1", 8080, kind=kind)


def test_the_kind_is_read_from_consul() -> None:
    body = [
        {
            "Node": {"Node": "n1", "Address": "10.0.0.1", "Meta": {"rack": "r1"}},
            "Service": {"ID": "p1", "Service": "web-sidecar-proxy", "Kind": "connect-proxy"},
            "Checks": [],
        }
    ]
    [parsed], problems = parse_health_service(body, "dc1")
    assert problems == []
    assert parsed.kind == "connect-proxy"
    assert parsed.node_meta == (("rack", "r1"),)


def test_mesh_kind_instances_are_left_out_and_a_service_of_only_them_is_not_served() -> None:
    mixed = ServiceUpdate("web", "dc1", (instance("web-1"), instance("gw", "mesh-gateway")))
    assert served_update(mixed).instances == (instance("web-1"),)
    for kind in MESH_KINDS:
        only = ServiceUpdate("web", "dc1", (instance("p", kind),))
        assert served_update(only).instances is None
    plain = ServiceUpdate("web", "dc1", (instance("web-1"),))
    assert served_update(plain) is plain
    empty = ServiceUpdate("web", "dc1", ())
    assert served_update(empty) is empty


async def register(consul: ConsulDouble, body: dict[str, object]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{consul.url}/v1/agent/service/register", json=body) as response,
    ):
        response.raise_for_status()


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1") as double:
        await register(double, {"Name": "web", "ID": "web-1", "Port": 8080})
        proxy = {
            "Kind": "connect-proxy",
            "Name": "web-sidecar-proxy",
            "ID": "web-1-sidecar",
            "Port": 21000,
            "Proxy": {"DestinationServiceName": "web"},
        }
        await register(double, proxy)
        gateway = {"Kind": "mesh-gateway", "Name": "web", "ID": "web-gw", "Port": 8443}
        await register(double, gateway)
        yield double


@pytest.mark.parametrize("include", [False, True])
async def test_the_bridge_serves_mesh_kinds_only_when_asked(
    consul: ConsulDouble, include: bool
) -> None:
    config = bridge_config(consul)
    config.include_mesh_kinds = include
    async with Bridge(config) as bridge:

        async def ready() -> bool:
            return bridge.readiness()[0]

        await eventually(ready, timeout=10, what="bridge ready")
        catalog = bridge.publisher.catalog
        view = catalog.view("web")
        assert view is not None
        ids = {i.id for i in view.all_instances()}
        if include:
            assert ids == {"web-1", "web-gw"}
            assert "web-sidecar-proxy" in catalog
        else:
            assert ids == {"web-1"}
            assert "web-sidecar-proxy" not in catalog
            assert "web-sidecar-proxy" not in bridge.publisher.clusters
