"""A whole bridge wired to the Consul double, and Envoy bootstraps that route by Host."""

from __future__ import annotations

import collections
from collections.abc import Iterable
from typing import Any

from tests.support.backends import get
from tests.support.envoy import ads_bootstrap


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
