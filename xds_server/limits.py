"""Bounds on what one xDS client may ask of the server, so that a few hostile or broken clients
cannot take it down or delay everyone else: names per subscription and their length, open
streams, the size of the node a stream opens with, and how much NACK isolation work one stream
may cause. Exceeding a request bound ends only that stream, with a status naming the limit.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2


@dataclass(slots=True)
class Limits:
    """Bounds on what one client may ask for (protect the server from hostile clients)."""

    max_names_per_request: int = 100_000  # also: names one subscription may hold
    max_name_length: int = 4096
    # Names that do not exist answered per response (empty EDS/RDS placeholders, delta
    # removals): a subscription of 100,000 unknown names is answered in bounded steps.
    max_absent_per_response: int = 1000
    max_streams: int = 50_000  # open xDS streams on this server, all clients together
    # The node a stream opens with (UTF-8 bytes; a longer one is refused with INVALID_ARGUMENT).
    max_node_id_bytes: int = 512
    max_node_cluster_bytes: int = 512
    max_node_metadata_bytes: int = 16 * 1024  # serialized
    max_node_bytes: int = 256 * 1024  # the whole Node (an Envoy 1.40 lists ~60 KB of extensions)
    # Event loop time (see .budget): one stream may take a share of each second, and a burst;
    # streams whose work takes longer than heavy_threshold share heavy_share between them.
    stream_share: float = 0.1
    stream_burst: float = 0.25  # seconds
    heavy_threshold: float = 0.002  # seconds
    heavy_share: float = 0.25
    # NACK isolation (see .isolation), per stream and type.
    nack_isolations: int = 32  # steps (a culprit found or a bisection) per window
    nack_window: float = 60.0  # seconds
    max_refused: int = 64  # resources refused at a time


def node_problem(node: base_pb2.Node, limits: Limits) -> str | None:
    """What makes ``node`` too big to serve, naming the field and the limit (None: fine)."""
    sizes = (
        ("node.id", len(node.id.encode()), limits.max_node_id_bytes),
        ("node.cluster", len(node.cluster.encode()), limits.max_node_cluster_bytes),
        ("node.metadata", node.metadata.ByteSize(), limits.max_node_metadata_bytes),
        ("the node", node.ByteSize(), limits.max_node_bytes),
    )
    for what, size, limit in sizes:
        if size > limit:
            return f"{what} is {size} bytes; the limit is {limit} bytes"
    return None


def kept_node(node: base_pb2.Node) -> base_pb2.Node:
    """What a stream keeps of its node: a copy (not a view into the first request, which may
    carry 100,000 names) without ``extensions`` (Envoy lists every extension it was built with,
    ~60 KB per stream, and nothing here reads them)."""
    kept = base_pb2.Node()
    kept.CopyFrom(node)
    kept.ClearField("extensions")
    return kept
