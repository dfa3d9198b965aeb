"""A whole bridge wired to the Consul double, and Envoy bootstraps that route by Host."""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bridge.app import Bridge, BridgeConfig
from bridge.bootstrap import BootstrapOptions, bootstrap_yaml
from bridge.consul_settings import settings_from_env
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends, get
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.waiting import eventually


def static_ingress(port: int, services: Iterable[str]) -> dict[str, Any]:
    """A static listener routing ``Host: <svc>`` to the cluster ``<svc>`` that comes from CDS.

    Used until per-node templates exist, so these tests exercise only Consul → CDS/EDS.
    """
    virtual_hosts = [
        {
            "name": svc,
            "domains": [svc, f"{svc}:*"],
            "routes": [{"match": {"prefix": "/"}, "route": {"cluster": svc, "timeout": "2s"}}],
        }
        for svc in services
    ]
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager"
        ".v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "route_config": {
            "name": "static_routes",
            "validate_clusters": False,
            "virtual_hosts": virtual_hosts,
        },
        "http_filters": [
            {
                "name": "envoy.filters.http.router",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
                },
            }
        ],
    }
    return {
        "name": "static_ingress",
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {
                "filters": [
                    {
                        "name": "envoy.filters.network.http_connection_manager",
                        "typed_config": manager,
                    }
                ]
            }
        ],
    }


def bridge_bootstrap(
    xds_port: int, node_id: str, ingress_port: int, services: Iterable[str]
) -> dict[str, Any]:
    bootstrap = ads_bootstrap(xds_port, node_id)
    bootstrap["dynamic_resources"].pop("lds_config")
    bootstrap["static_resources"]["listeners"] = [static_ingress(ingress_port, services)]
    return bootstrap


async def answers(port: int, host: str, requests: int = 12) -> collections.Counter[str]:
    """Which backends answered ``requests`` requests (failures counted as ``HTTP <status>``)."""
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(requests):
        status, body = await get(port, host=host)
        seen[body if status == 200 else f"HTTP {status}"] += 1
    return seen


@dataclass
class Stack:
    """The Consul double (dc1 + dc2), a bridge, a real Envoy and HTTP backends answering with
    their names. web-1 (node1) and web-2 (node2) are registered; web-dc2 and api-1 are not."""

    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    ingress: int
    backends: dict[str, Backend]

    async def traffic(self, host: str = "web") -> set[str]:
        return set(await answers(self.ingress, host))

    async def follows(
        self, expected: set[str], host: str = "web", what: str = "", timeout: float = 10.0
    ) -> None:
        await eventually(
            lambda: self.traffic(host),
            lambda seen: seen == expected,
            timeout=timeout,
            what=what or f"traffic to {host} reaching exactly {sorted(expected)}",
        )

    def register(self, instance: str, service: str = "web", **kwargs: object) -> None:
        self.consul.register(
            service,
            id=instance,
            address=str(kwargs.pop("address", "127.0.0.1")),
            port=self.backends[instance].port,
            check_status=kwargs.pop("check_status", "passing"),  # type: ignore[arg-type]
            node=str(kwargs.pop("node", "node1")),
            **kwargs,  # type: ignore[arg-type]
        )


def bridge_config(consul: ConsulDouble, **consul_overrides: object) -> BridgeConfig:
    overrides: dict[str, object] = {"wait": "2s", **consul_overrides}
    settings = settings_from_env({}, address=consul.url, **overrides)
    return BridgeConfig(consul=settings, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")


@contextlib.asynccontextmanager
async def running_stack(
    node_id: str, acl_tokens: dict[str, dict[str, Any]] | None = None, **consul_settings: object
) -> AsyncIterator[Stack]:
    names = ["web-1", "web-2", "web-dc2", "api-1"]
    async with (
        backends(*names) as started,
        ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",), acl_tokens=acl_tokens) as consul,
    ):
        by_name = {b.name: b for b in started}
        partial = Stack(consul, None, None, free_port(), by_name)  # type: ignore[arg-type]
        partial.register("web-1")
        partial.register("web-2", node="node2")
        config = bridge_config(consul, datacenters=("dc2",), **consul_settings)
        async with Bridge(config) as bridge:
            await eventually(lambda: _ready(bridge), timeout=10, what="bridge ready")
            bootstrap = bridge_bootstrap(bridge.xds_port, node_id, partial.ingress, ["web", "api"])
            async with Envoy(bootstrap) as envoy:
                partial.bridge = bridge
                partial.envoy = envoy
                yield partial


async def _ready(bridge: Bridge) -> bool:
    return bridge.readiness()[0]


def envoy_bootstrap(
    node_id: str, xds_ports: int | list[int], ingress: int, delta: bool = False
) -> dict[str, Any]:
    """What ``consul-xds-bridge bootstrap`` prints for an Envoy whose default-template ingress
    listens on 127.0.0.1:``ingress``; several ports are replicas of one bridge."""
    ports = [xds_ports] if isinstance(xds_ports, int) else xds_ports
    options = BootstrapOptions(
        node_id=node_id,
        node_cluster="edge",
        xds_port=ports[0],
        replicas=tuple(("127.0.0.1", port) for port in ports[1:]),
        metadata={"ingress_port": str(ingress), "ingress_address": "127.0.0.1"},
        delta=delta,
    )
    config: dict[str, Any] = yaml.safe_load(bootstrap_yaml(options))
    del config["admin"]  # the test harness picks a free admin port
    return config


def start_bridge(consul: ConsulDouble, templates: Path, xds_port: int) -> Bridge:
    """A bridge on a fixed xDS port (so Envoys reconnect to a restarted one) with templates."""
    config = bridge_config(consul)
    config.xds_listen = f"127.0.0.1:{xds_port}"
    return Bridge(config, TemplateSource(templates))
