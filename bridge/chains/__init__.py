"""Consul's config entries at work: the chains of every service, served.

The pure compiler is :mod:`bridge.traffic`; this package keeps its results over time.

========================  ==================================================================
module                    job
========================  ==================================================================
``table``                 the parsed entries and each service's chain (current, last good)
``clusters``              target clusters → shared CDS/EDS changes; gRPC variants
``views``                 routes for templates, the ``/debug/traffic`` view
``traffic``               :class:`Traffic`: what the publisher, templates and admin use
``node_source``           gRPC nodes get the gRPC variants of chain clusters
========================  ==================================================================
"""

from .clusters import ChainClusters, ClusterChanges
from .node_source import GrpcClusterVariants, is_grpc_client
from .table import ChainTable, ServiceChain, State
from .traffic import Traffic
from .views import RouteView, chain_summary, route_view

__all__ = [
    "ChainClusters",
    "ChainTable",
    "ClusterChanges",
    "GrpcClusterVariants",
    "RouteView",
    "ServiceChain",
    "State",
    "Traffic",
    "chain_summary",
    "is_grpc_client",
    "route_view",
]
