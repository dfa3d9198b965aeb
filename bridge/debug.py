"""JSON views for the admin listener's ``/debug/*`` endpoints (pure functions, no I/O)."""

from __future__ import annotations

import datetime
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
            "subscribed": state.subscribed[:50],
            "subscribed_count": len(state.subscribed),
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
    node_id: str, key: str, snapshot: Snapshot | None, variant: Variant = Variant.ENVOY
) -> dict[str, Any]:
    """What node key ``key`` is served: ``variant`` says which kind of client it is served as
    (``envoy``, or ``grpc``: the proxyless gRPC variant of the clusters and endpoints)."""
    if snapshot is None:
        return {"node": node_id, "node_key": key, "variant": str(variant), "resources": None}
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
    return {"node": node_id, "node_key": key, "variant": str(variant), "resources": out}


def config_dump_view(
    streams: list[StreamInfo], snapshot: Snapshot | None, include_eds: bool
) -> dict[str, Any]:
    """A node's snapshot as Envoy's ``/config_dump`` prints it; ``last_updated`` is when the
    node accepted each resource (when it is connected)."""
    updated = {
        type_url: state.acked_at for type_url, (_, state) in newest_per_type(streams).items()
    }
    return config_dump(snapshot, include_eds, updated)


def templates_view(source: TemplateSource) -> dict[str, Any]:
    return {
        "directory": str(source.directory),
        "template_sets": sorted(source.sets),
        "default_set": source.default_set,
        "failing_sets": source.failing_sets(),
        "held_edits": source.held_edits(),
        "render_errors_total": dict(source.render_errors_total),
        "errors": {
            key: {"template_set": e.template_set, "message": e.message, "at": _when(e.at)}
            for key, e in sorted(source.errors.items())
        },
    }
