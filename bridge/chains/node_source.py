"""Proxyless gRPC nodes get the gRPC variant of chain clusters that differ for them.

Clusters and endpoints are shared by every node, but a gRPC client refuses some load-balancing
settings an Envoy takes (maglev, random, least_request, non-header hash policies): where a chain
cluster's gRPC variant differs (:attr:`bridge.chains.ChainClusters.grpc_variants`), this
:class:`~bridge.publisher.NodeConfigSource` adds it to the per-node resources of gRPC nodes, and
per-node clusters replace shared ones of the same name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from envoy.config.core.v3 import base_pb2

from xds_server.resource import CLUSTER, Resource

from ..catalog import Catalog
from ..publisher import NodeConfigSource


def is_grpc_client(node: base_pb2.Node) -> bool:
    """A proxyless gRPC client: its xDS client's user agent starts with ``gRPC``."""
    return str(node.user_agent_name).lower().startswith("grpc")


class GrpcClusterVariants:
    """Wraps the node source (the templates): gRPC nodes also get the gRPC cluster variants."""

    def __init__(
        self, inner: NodeConfigSource, variants: Callable[[], Mapping[str, Resource]]
    ) -> None:
        self.inner = inner
        self.variants = variants

    def node_resources(
        self, key: str, node: base_pb2.Node, catalog: Catalog, services_changed: bool
    ) -> Sequence[Resource] | None:
        resources = self.inner.node_resources(key, node, catalog, services_changed)
        if resources is None or not is_grpc_client(node):
            return resources
        variants = self.variants()
        if not variants:
            return resources
        own = {r.name for r in resources if r.type_url == CLUSTER}  # the set's own win
        return (*resources, *(v for name, v in sorted(variants.items()) if name not in own))

    def key_released(self, key: str) -> None:
        self.inner.key_released(key)
