"""An xDS v3 management server: a snapshot cache served over SotW and delta gRPC streams.

Knows nothing of Consul. The owner of the configuration writes :class:`Snapshot` objects into a
:class:`SnapshotCache` (one per node key) and observes node keys opening and closing
(:class:`KeyObserver`); a :class:`DiscoveryServer` serves the cache on ADS and the per-type
services; a :class:`ClientRegistry` reports what every stream was sent, ACKed and NACKed to its
:class:`Observer` objects.

Modules: ``resource`` (resources, sets, versions), ``cache`` (snapshots per node key),
``stream`` (the protocol rules SotW and delta share), ``sotw`` and ``delta`` (what each adds),
``server`` (the gRPC services), ``tracking`` (per-stream ACK/NACK state and observers).
"""

from .cache import (
    ConfigWatcher,
    KeyObserver,
    Listener,
    NodeKeyFunc,
    Snapshot,
    SnapshotCache,
    node_key_by_cluster,
    node_key_by_id,
    node_key_by_metadata,
)
from .limits import Limits
from .resource import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    ROUTE,
    SHORT_NAMES,
    Resource,
    ResourceSet,
    make_resource,
)
from .server import Authorize, DiscoveryServer, add_to_server, start_server
from .stream import ProtocolError
from .tracking import BaseObserver, ClientRegistry, Nack, Observer, StreamInfo, TypeState

__all__ = [
    "ADS_ORDER",
    "CLUSTER",
    "ENDPOINT",
    "LISTENER",
    "ROUTE",
    "SHORT_NAMES",
    "Authorize",
    "BaseObserver",
    "ClientRegistry",
    "ConfigWatcher",
    "DiscoveryServer",
    "KeyObserver",
    "Limits",
    "Listener",
    "Nack",
    "NodeKeyFunc",
    "Observer",
    "ProtocolError",
    "Resource",
    "ResourceSet",
    "Snapshot",
    "SnapshotCache",
    "StreamInfo",
    "TypeState",
    "add_to_server",
    "make_resource",
    "node_key_by_cluster",
    "node_key_by_id",
    "node_key_by_metadata",
    "start_server",
]
