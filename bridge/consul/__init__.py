"""The Consul side of the bridge: read the catalog with blocking queries, under a connection cap.

========================  ==================================================================
module                    job
========================  ==================================================================
``client``                the one HTTP client (session, connection cap, TLS, token header)
``retry``                 backoff, early end of backoffs when Consul is back, failure state
``blocking``              one blocking query: index rules, spacing, change detection
``resets``                index resets of a datacenter: every watch reads again from index 0
``probe``                 one cheap read per datacenter and second: reachable? index reset?
``guard``                 the mass-removal guard between the watches and the publisher
``services``              the selection and what was last read of each service
``strategy``              the interface of the two watch strategies and the rule picking one
``per_service``           one blocking watch per service
``global_mode``           health trigger + catalog sweeps + a pool of re-read workers
``datacenter``            one datacenter: catalog watch, selection, its strategy
``supervise``             watch tasks restarted (with backoff) after a crash
``watcher``               the orchestrator: datacenters, connection budget, readiness
``readiness``             what ``/readyz`` says about the datacenters
``collector``             the datacenters' Prometheus metrics
========================  ==================================================================
"""

from .client import (
    Client,
    ConsulClient,
    ConsulError,
    ConsulResponse,
    build_ssl_context,
    service_path,
)
from .retry import WatchStatus
from .strategy import GLOBAL, PER_SERVICE
from .watcher import CatalogWatcher, OnUpdate

__all__ = [
    "GLOBAL",
    "PER_SERVICE",
    "CatalogWatcher",
    "Client",
    "ConsulClient",
    "ConsulError",
    "ConsulResponse",
    "OnUpdate",
    "WatchStatus",
    "build_ssl_context",
    "service_path",
]
