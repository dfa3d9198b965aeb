"""The admin listener's ``/debug/*`` views of a running :class:`~bridge.app.Bridge` (the JSON is
built by :mod:`.debug`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from envoy.config.core.v3 import base_pb2

from . import debug
from .admin import JsonView

if TYPE_CHECKING:
    from .app import Bridge


def debug_views(bridge: Bridge) -> dict[str, JsonView]:
    """``/debug/clients``, ``/debug/resources?node=ID[&cluster=C]``,
    ``/debug/config_dump?node=ID[&cluster=C][&include_eds]`` (Envoy's ``/config_dump``
    shape), ``/debug/consul``, ``/debug/templates`` (sets and the latest error per key),
    ``/debug/traffic`` (config entries, and each service's compiled chain with any entry
    problem), ``/debug/quarantine`` (what the validation gate and NACKs keep from the nodes,
    and the config entries kept out of use)."""

    def clients(query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, debug.clients_view(bridge.registry)

    def node_key(query: Mapping[str, str]) -> tuple[str, str]:
        node_id = query.get("node", "")
        streams = bridge.registry.by_node(node_id)
        if streams:
            return node_id, streams[0].node_key
        # not connected: the key it would get (pass cluster= when keyed by cluster)
        node = base_pb2.Node(id=node_id, cluster=query.get("cluster", ""))
        return node_id, bridge.cache.node_key(node)

    def resources(query: Mapping[str, str]) -> tuple[int, Any]:
        if not query.get("node"):
            return 400, {"error": "missing query parameter: node=<node id>"}
        node_id, key = node_key(query)
        return 200, debug.resources_view(node_id, key, bridge.cache.get(key), bridge.quarantine)

    def config_dump(query: Mapping[str, str]) -> tuple[int, Any]:
        if not query.get("node"):
            return 400, {"error": "missing query parameter: node=<node id>"}
        node_id, key = node_key(query)
        streams = bridge.registry.by_node(node_id)
        include_eds = "include_eds" in query
        return 200, debug.config_dump_view(streams, bridge.cache.get(key), include_eds)

    def consul(query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, bridge.watcher.status()

    def templates(query: Mapping[str, str]) -> tuple[int, Any]:
        if bridge.templates is None:
            return 200, {"template_sets": [], "errors": {}}
        return 200, debug.templates_view(
            bridge.templates,
            bridge.publisher.refused_renders,
            bridge.publisher.refused_renders_total,
        )

    def quarantine(query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, debug.quarantine_view(
            bridge.quarantine, bridge.publisher.service_warnings, bridge.traffic.quarantined_view()
        )

    def traffic(query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, bridge.traffic.debug_view()

    return {
        "clients": clients,
        "resources": resources,
        "config_dump": config_dump,
        "consul": consul,
        "templates": templates,
        "quarantine": quarantine,
        "traffic": traffic,
    }
