"""The admin listener's ``/debug/*`` views of a running :class:`~bridge.app.Bridge` (the JSON is
built by :mod:`.debug`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from . import debug
from .admin import JsonView
from .client_kinds import Variant, classify

if TYPE_CHECKING:
    from .app import Bridge


def debug_views(bridge: Bridge) -> dict[str, JsonView]:
    """``/debug/clients``, ``/debug/resources?node=ID[&cluster=C][&variant=grpc]``,
    ``/debug/config_dump?node=ID[&cluster=C][&include_eds]`` (Envoy's ``/config_dump``
    shape), ``/debug/consul``, ``/debug/templates`` (sets and the latest error per key),
    ``/debug/traffic`` (config entries, and each service's compiled chain with any entry
    problem), ``/debug/quarantine`` (what the validation gate and NACKs keep from the nodes,
    and the config entries kept out of use)."""

    def clients(query: Mapping[str, str]) -> tuple[int, Any]:
        return 200, debug.clients_view(bridge.registry)

    def node_key(query: Mapping[str, str]) -> tuple[str, str, Variant]:
        """The node id, its node key and the variant it is served."""
        node_id = query.get("node", "")
        streams = bridge.registry.by_node(node_id)
        if streams:
            key = streams[0].node_key
            return node_id, key, bridge.publisher.grpc.variant_of(key)
        # not connected: the key it would get (pass cluster= when keyed by cluster,
        # variant=grpc for a proxyless gRPC client)
        node = debug.node_of(node_id, query.get("cluster", ""), query.get("variant", ""))
        return node_id, bridge.cache.node_key(node), classify(node).variant

    def resources(query: Mapping[str, str]) -> tuple[int, Any]:
        if not query.get("node"):
            return 400, {"error": "missing query parameter: node=<node id>"}
        node_id, key, variant = node_key(query)
        return 200, debug.resources_view(
            node_id, key, bridge.cache.get(key), variant, bridge.quarantine
        )

    def config_dump(query: Mapping[str, str]) -> tuple[int, Any]:
        if not query.get("node"):
            return 400, {"error": "missing query parameter: node=<node id>"}
        node_id, key, _ = node_key(query)
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
