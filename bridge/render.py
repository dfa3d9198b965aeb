"""``consul-xds-bridge render``: exactly the resources one node would receive now (as the
bridge's JSON, or with ``--format config_dump`` as that node's Envoy ``/config_dump`` prints it).

The catalog comes from Consul (one complete read, as ``serve`` does before it becomes ready) or
from a saved catalog file: a JSON object ``{"<datacenter>": {"<service>": [...]}}`` whose lists
are ``/v1/health/service/<service>`` bodies; the first datacenter is the local one. The resources
then go through the same publisher and templates as in ``serve``. A proxyless gRPC node
(``render --grpc``) gets the gRPC variant of the clusters and endpoints, as in ``serve``; the
output says which variant it is (``"variant": "envoy"`` or ``"grpc"``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from envoy.config.core.v3 import base_pb2

from xds_server.cache import SnapshotCache

from .app import BridgeConfig, node_key_function
from .catalog import ServiceUpdate
from .client_kinds import as_grpc_client
from .config_dump import config_dump
from .consul import CatalogWatcher, ConsulClient
from .consul_settings import ConsulSettings
from .debug import resources_view
from .model import parse_health_service
from .publisher import Publisher
from .sources import NodeConfigSource
from .tasks import cancel_and_wait


class RenderError(Exception):
    """The catalog could not be read; the message says why."""


def catalog_from_file(path: str | Path) -> tuple[list[str], list[ServiceUpdate]]:
    """A saved catalog file → (datacenters, local first; one update per service and dc)."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RenderError(f"cannot read catalog file {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise RenderError(f"catalog file {path} is not JSON: {exc}") from None
    return catalog_from_data(data, str(path))


def catalog_from_data(data: Any, source: str = "catalog") -> tuple[list[str], list[ServiceUpdate]]:
    if not isinstance(data, Mapping) or not all(isinstance(v, Mapping) for v in data.values()):
        raise RenderError(f'{source}: expected {{"<datacenter>": {{"<service>": [entries]}}}}')
    now = time.monotonic()
    updates: list[ServiceUpdate] = []
    for datacenter, services in data.items():
        for name, body in services.items():
            instances, problems = parse_health_service(body, datacenter)
            if problems:
                raise RenderError(f"{source}: {datacenter}/{name}: {'; '.join(problems)}")
            updates.append(ServiceUpdate(name, datacenter, instances, now))
    return list(data), updates


async def catalog_from_consul(
    settings: ConsulSettings, timeout: float = 30.0
) -> tuple[list[str], list[ServiceUpdate]]:
    """One complete read of the selected services, as ``serve`` makes before it is ready."""
    updates: list[ServiceUpdate] = []
    client = ConsulClient(settings)
    watcher = CatalogWatcher(client, settings, updates.extend)
    task = asyncio.create_task(watcher.run())
    try:
        async with asyncio.timeout(timeout):
            await watcher.complete.wait()  # every datacenter, not only the local one
    except TimeoutError:
        raise RenderError(
            f"no complete read of Consul at {settings.address} within {timeout:g}s "
            "(see the log for the errors)"
        ) from None
    finally:
        await cancel_and_wait([task])
        await client.close()
    return list(watcher.datacenters), updates


def node_of(
    node_id: str, node_cluster: str, metadata: Mapping[str, str], grpc: bool = False
) -> base_pb2.Node:
    """The node to render for; ``grpc``: a proxyless gRPC client."""
    node = base_pb2.Node(id=node_id, cluster=node_cluster)
    node.metadata.update(dict(metadata))
    return as_grpc_client(node) if grpc else node


async def render(
    config: BridgeConfig,
    node: base_pb2.Node,
    datacenters: Sequence[str],
    updates: Sequence[ServiceUpdate],
    node_config: NodeConfigSource | None = None,
    output: str = "resources",
    include_eds: bool = False,
) -> dict[str, Any]:
    """The node's snapshot built from ``updates``: as ``/debug/resources`` shows it, or with
    ``output="config_dump"`` as Envoy's ``/config_dump`` (endpoints with ``include_eds``)."""
    cache = SnapshotCache(node_key_function(config.node_key))
    publisher = Publisher(cache, config.build, node_config, debounce=0.0)
    publisher.set_datacenters(datacenters)
    publisher.submit(updates)
    publisher.mark_ready()
    key = cache.watch(node, lambda changed: None)
    if output == "config_dump":
        return config_dump(cache.get(key), include_eds)
    return resources_view(node.id, key, cache.get(key), publisher.grpc.variant_of(key))
