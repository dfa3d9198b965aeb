"""Consul's discovery config entries (service-defaults, proxy-defaults, service-resolver,
service-splitter, service-router) → compiled chains → Envoy clusters, endpoints and routes.

Everything here is pure: JSON in, typed values and protobuf messages out, no I/O. The flow::

    entries = parse_entries(bodies)                 # typed entries; bad ones quarantined
    result = compile_chain("web", entries, datacenter="dc1", known_services=names)
    if result.chain is not None:                    # else: result.problems, keep the last good
        built = build_chain_clusters(result.chain, catalog, settings)   # CDS + EDS
        routes = build_routes(result.chain, settings)                   # one virtual host's routes
        routes, built, warnings = grpc_resources(result.chain, catalog, settings)  # gRPC clients

See docs/traffic-management.md for the supported fields, the filter grammar and cluster names.
"""

from .chain import compile_chain
from .chain_model import (
    FULL_WEIGHT,
    Chain,
    ChainRoute,
    CompileResult,
    Leg,
    Level,
    Origin,
    Target,
    TargetCluster,
)
from .clusters import build_chain_clusters, build_target_cluster
from .entries import (
    KINDS,
    ConfigEntry,
    ProxyDefaults,
    ServiceDefaults,
    ServiceResolver,
    ServiceRouter,
    ServiceSplitter,
)
from .entry_set import ConfigEntries, parse_entries
from .filters import SELECTORS, FilterError, SubsetFilter, parse_filter
from .grpc import grpc_chain, grpc_resources
from .naming import target_cluster_name
from .problems import EntryKey, EntryProblem
from .routes import build_routes

__all__ = [
    "FULL_WEIGHT",
    "KINDS",
    "SELECTORS",
    "Chain",
    "ChainRoute",
    "CompileResult",
    "ConfigEntries",
    "ConfigEntry",
    "EntryKey",
    "EntryProblem",
    "FilterError",
    "Leg",
    "Level",
    "Origin",
    "ProxyDefaults",
    "ServiceDefaults",
    "ServiceResolver",
    "ServiceRouter",
    "ServiceSplitter",
    "SubsetFilter",
    "Target",
    "TargetCluster",
    "build_chain_clusters",
    "build_routes",
    "build_target_cluster",
    "compile_chain",
    "grpc_chain",
    "grpc_resources",
    "parse_entries",
    "parse_filter",
    "target_cluster_name",
]
