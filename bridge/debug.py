"""JSON views for the admin listener's ``/debug/*`` endpoints (pure functions, no I/O)."""

from __future__ import annotations

import datetime
import heapq
from collections import Counter
from collections.abc import Mapping
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import json_format

from xds_server.cache import Snapshot
from xds_server.csds import newest_per_type
from xds_server.resource import ADS_ORDER, SHORT_NAMES
from xds_server.tracking import ClientRegistry, StreamInfo

from .client_kinds import Variant, as_grpc_client, classify
from .config_dump import config_dump
from .logs import first_line
from .node_keys import RefusedRender
from .quarantine import Quarantine
from .templating import TemplateSource


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC).isoformat(timespec="seconds")


def stream_view(stream: StreamInfo) -> dict[str, Any]:
    types: dict[str, Any] = {}
    for type_url in ADS_ORDER:
        state = stream.types.get(type_url)
        if state is None:
            continue
        nack = state.last_nack
        types[SHORT_NAMES[type_url]] = {
            "version_sent": state.version_sent,
            "version_acked": state.version_acked,
            "in_sync": state.version_sent is not None and state.version_sent == state.version_acked,
            "resources_sent": state.resources_sent,
            "wildcard": state.wildcard,
            "subscribed": heapq.nsmallest(50, state.names),
            "subscribed_count": len(state.names),
            "refused": state.refused[:50],
            "last_nack": None
            if nack is None
            else {
                "version": nack.version,
                "summary": first_line(nack.message),
                "message": nack.message,
                "resources": sorted(nack.resources)[:50],
                "at": _when(nack.time),
            },
        }
    return {
        "node_id": stream.node_id,
        "node_cluster": stream.node_cluster,
        "node_key": stream.node_key,
        "user_agent": stream.user_agent,
        "client": classify(stream.node).label,
        "api": stream.method,
        "peer": stream.peer,
        "since": _when(stream.connected_at),
        "throttled_seconds": round(stream.throttled, 3),
        "types": types,
    }


def clients_view(registry: ClientRegistry) -> dict[str, Any]:
    streams = sorted(registry.streams.values(), key=lambda s: (s.node_id, s.stream_id))
    return {"count": len(streams), "clients": [stream_view(s) for s in streams]}


def node_of(node_id: str, cluster: str = "", variant: str = "") -> base_pb2.Node:
    """The node a ``/debug/resources`` query describes (``variant=grpc``: a gRPC client)."""
    node = base_pb2.Node(id=node_id, cluster=cluster)
    return as_grpc_client(node) if variant == Variant.GRPC else node


def resources_view(
    node_id: str,
    key: str,
    snapshot: Snapshot | None,
    variant: Variant = Variant.ENVOY,
    quarantine: Quarantine | None = None,
) -> dict[str, Any]:
    """What node key ``key`` is served: ``variant`` says which kind of client it is served as
    (``envoy``, or ``grpc``: the proxyless gRPC variant of the clusters and endpoints); with
    ``quarantine``, what is kept from it, and why."""
    held_back = None if quarantine is None else quarantined_for_key(quarantine, key)
    head = {"node": node_id, "node_key": key, "variant": str(variant)}
    if snapshot is None:
        return {**head, "resources": None, "quarantined": held_back}
    out: dict[str, Any] = {}
    for type_url in ADS_ORDER:
        resources = snapshot.get(type_url)
        out[SHORT_NAMES[type_url]] = {
            "version": resources.version,
            "items": [
                {
                    "name": name,
                    "version": resource.version,
                    "resource": json_format.MessageToDict(
                        resource.message, preserving_proto_field_name=True
                    ),
                }
                for name, resource in sorted(resources.items())
            ],
        }
    return {**head, "resources": out, "quarantined": held_back}


def config_dump_view(
    streams: list[StreamInfo], snapshot: Snapshot | None, include_eds: bool
) -> dict[str, Any]:
    """A node's snapshot as Envoy's ``/config_dump`` prints it; ``last_updated`` is when the
    node accepted each resource (when it is connected)."""
    updated = {
        type_url: state.acked_at for type_url, (_, state) in newest_per_type(streams).items()
    }
    return config_dump(snapshot, include_eds, updated)


def templates_view(
    source: TemplateSource,
    refused: Mapping[str, RefusedRender] | None = None,
    refused_total: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Template sets and the latest error per node key; renders the validation gate refused
    (``refused``) are errors of their node key too."""
    errors: dict[str, Any] = {
        key: {"template_set": e.template_set, "message": e.message, "at": _when(e.at)}
        for key, e in source.errors.items()
    }
    for key, r in (refused or {}).items():
        errors.setdefault(
            key,
            {
                "template_set": None,
                "message": f"refused by the validation gate: {r.message}",
                "at": _when(r.at),
            },
        )
    totals = Counter(source.render_errors_total)
    totals.update(refused_total or {})
    return {
        "directory": str(source.directory),
        "template_sets": sorted(source.sets),
        "default_set": source.default_set,
        "failing_sets": source.failing_sets(),
        "held_edits": source.held_edits(),
        "render_errors_total": dict(totals),
        "errors": dict(sorted(errors.items())),
    }


def quarantine_view(
    quarantine: Quarantine,
    service_warnings: Mapping[str, list[str]] | None = None,
    config_entries: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything kept from the nodes: per resource, the reason, the source of the bad value,
    the rule, what is served instead, since when, and the scopes (service, node key, NACK,
    chain); the services' Consul data worked around (``service_warnings``: default values
    used); and the config entries kept out of use (``config_entries``, as counted by
    ``consul_xds_quarantined_config_entries``; their chains are in ``/debug/traffic``)."""
    entries = _entries(quarantine.view())
    return {
        "count": len(entries),
        "entries": entries,
        "service_warnings": dict(service_warnings or {}),
        "config_entries": dict(config_entries or {"invalid": [], "conflict": {}}),
    }


def quarantined_for_key(quarantine: Quarantine, key: str) -> list[dict[str, Any]]:
    """What is kept from one node key: every service's and NACK's entries, and its own."""
    own = f"key:{key}"
    return _entries(quarantine.view(lambda scope: not scope.startswith("key:") or scope == own))


def _entries(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**entry, "since": _when(entry["since"])} for entry in entries]
