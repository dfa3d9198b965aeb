"""xDS resources as the cache holds them: message, packed ``Any`` and content-hash version.

A resource is serialized exactly once, when it is created; every stream that sends it reuses the
same packed ``Any``. Versions are content hashes of the deterministic serialization, so two
processes (a restart, a second replica) that build the same configuration agree on every version.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_PREFIX = "type.googleapis.com/"
CLUSTER = _PREFIX + "envoy.config.cluster.v3.Cluster"
ENDPOINT = _PREFIX + "envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = _PREFIX + "envoy.config.listener.v3.Listener"
ROUTE = _PREFIX + "envoy.config.route.v3.RouteConfiguration"

#: The order in which an ADS stream sends updates (make before break).
ADS_ORDER: tuple[str, ...] = (CLUSTER, ENDPOINT, LISTENER, ROUTE)

#: Short names used in metrics, logs and debug output.
SHORT_NAMES: Mapping[str, str] = {
    CLUSTER: "cluster",
    ENDPOINT: "endpoint",
    LISTENER: "listener",
    ROUTE: "route",
}

MESSAGE_CLASSES: Mapping[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
}

#: Types whose SotW responses carry the full state (a missing resource is deleted).
FULL_STATE_TYPES = frozenset({CLUSTER, LISTENER})

_MASK64 = (1 << 64) - 1


def content_hash(data: bytes) -> str:
    """A short, stable hex digest of ``data`` (64 bits: collisions are not a practical concern)."""
    return hashlib.blake2b(data, digest_size=8).hexdigest()


@functools.lru_cache(maxsize=1 << 16)
def _entry_hash(name: str, version: str) -> int:
    """One (name, version) pair's share of a combined version; memoized because every response
    to every stream sums these over the resources it selects."""
    digest = hashlib.blake2b(f"{name}\0{version}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def type_url_of(message: Message) -> str:
    return _PREFIX + message.DESCRIPTOR.full_name


def name_of(message: Message) -> str:
    """The xDS resource name of a message (``cluster_name`` for ClusterLoadAssignment)."""
    if isinstance(message, endpoint_pb2.ClusterLoadAssignment):
        return str(message.cluster_name)
    return str(message.name)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Resource:
    """One xDS resource, serialized once.

    ``origin_time`` is the monotonic time of the Consul response (or template edit) that produced
    this content; it is not part of the version and only feeds push-latency measurements.
    """

    type_url: str
    name: str
    message: Message = field(repr=False, compare=False)
    packed: any_pb2.Any = field(repr=False, compare=False)
    version: str
    origin_time: float | None = field(default=None, compare=False)

    @property
    def size(self) -> int:
        return len(self.packed.value)


def make_resource(message: Message, origin_time: float | None = None) -> Resource:
    """Wrap ``message``: pack it into an ``Any`` and hash its deterministic serialization."""
    payload = message.SerializeToString(deterministic=True)
    type_url = type_url_of(message)
    packed = any_pb2.Any(type_url=type_url, value=payload)
    return Resource(
        type_url=type_url,
        name=name_of(message),
        message=message,
        packed=packed,
        version=content_hash(payload),
        origin_time=origin_time,
    )


def empty_resource(type_url: str, name: str) -> Resource:
    """The answer to an EDS/RDS request for a name that does not exist (yet).

    Answering with an empty ClusterLoadAssignment / RouteConfiguration instead of silence keeps a
    cluster or listener that references it from warming forever (envoy #9934).
    """
    if type_url == ENDPOINT:
        return make_resource(endpoint_pb2.ClusterLoadAssignment(cluster_name=name))
    if type_url == ROUTE:
        return make_resource(route_pb2.RouteConfiguration(name=name))
    raise ValueError(f"no empty placeholder for {type_url}")


def combined_version(entries: Iterable[tuple[str, str]]) -> str:
    """The version of a set of (name, version) pairs, independent of their order."""
    total = 0
    for name, version in entries:
        total = (total + _entry_hash(name, version)) & _MASK64
    return f"{total:016x}"


class ResourceSet(Mapping[str, Resource]):
    """An immutable name → Resource map of one type, with an order-independent version.

    The version is maintained incrementally (a sum of per-entry hashes), so replacing one resource
    in a set of 10,000 does not rehash the other 9,999.
    """

    __slots__ = ("_items", "_sum", "type_url")

    def __init__(self, type_url: str, resources: Iterable[Resource] = ()) -> None:
        self.type_url = type_url
        self._items: dict[str, Resource] = {}
        total = 0
        for resource in resources:
            if resource.type_url != type_url:
                raise ValueError(
                    f"resource {resource.name!r} is a {resource.type_url}, not a {type_url}"
                )
            if resource.name in self._items:
                raise ValueError(
                    f"duplicate {SHORT_NAMES.get(type_url, type_url)} {resource.name!r}"
                )
            self._items[resource.name] = resource
            total = (total + _entry_hash(resource.name, resource.version)) & _MASK64
        self._sum = total

    @property
    def version(self) -> str:
        return f"{self._sum:016x}"

    def __getitem__(self, name: str) -> Resource:
        return self._items[name]

    def get(self, name: str, default: Any = None) -> Any:  # direct: called per name per response
        return self._items.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ResourceSet({SHORT_NAMES.get(self.type_url, self.type_url)}, n={len(self)})"

    def with_changes(
        self, upsert: Iterable[Resource] = (), remove: Iterable[str] = ()
    ) -> ResourceSet:
        """A new set with ``upsert`` added/replaced and ``remove`` dropped; self is unchanged."""
        items = dict(self._items)
        total = self._sum
        for name in remove:
            old = items.pop(name, None)
            if old is not None:
                total = (total - _entry_hash(old.name, old.version)) & _MASK64
        for resource in upsert:
            if resource.type_url != self.type_url:
                raise ValueError(
                    f"resource {resource.name!r} is a {resource.type_url}, not a {self.type_url}"
                )
            old = items.get(resource.name)
            if old is not None:
                if old.version == resource.version:
                    continue
                total = (total - _entry_hash(old.name, old.version)) & _MASK64
            items[resource.name] = resource
            total = (total + _entry_hash(resource.name, resource.version)) & _MASK64
        new = ResourceSet.__new__(ResourceSet)
        new.type_url = self.type_url
        new._items = items
        new._sum = total
        return new
