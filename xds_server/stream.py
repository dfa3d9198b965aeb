"""What one xDS stream's protocol state holds for both SotW and delta, free of any I/O.

The gRPC layer feeds requests in (:meth:`XdsStream.handle_request`) and writes whatever
:meth:`XdsStream.next_responses` returns; snapshot changes only call the ``wakeup`` it was given.
The rules shared by both protocols live here; :mod:`.sotw` and :mod:`.delta` add only how their
requests change a subscription and how their responses are built:

* the node is taken from the first request and kept for the life of the stream;
* per type, a subscription: wildcard and named, names that do not exist yet are remembered;
* limits on what one request may name;
* one response per type is in flight at a time; its ACK (or NACK, by ``error_detail``) is
  accounted before the next one is computed, from the newest snapshot;
* make before break: CDS → EDS → LDS → RDS, and a CDS response that removes clusters waits
  until pending LDS/RDS updates (which may stop routing to those clusters) were answered;
* a cluster (listener) that is new or changed makes its ClusterLoadAssignment (route
  configurations) go out again, so nothing is left warming.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2

from .cache import ConfigWatcher, Snapshot
from .resource import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    LISTENER,
    MESSAGE_CLASSES,
    ROUTE,
    SHORT_NAMES,
    Resource,
    ResourceSet,
)
from .tracking import ClientRegistry, StreamInfo

log = logging.getLogger(__name__)

# xds-protos ships no type stubs: requests and responses are typed as Any.
Request: TypeAlias = Any
Response: TypeAlias = Any

WILDCARD = "*"


class ProtocolError(Exception):
    """A request the server refuses; the stream ends with ``code`` and this message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Limits:
    """Bounds on what one client may ask for (protect the server from hostile clients)."""

    max_names_per_request: int = 100_000  # also: names one subscription may hold
    max_name_length: int = 4096
    max_streams: int = 50_000  # open xDS streams on this server, all clients together


@dataclass(slots=True)
class Subscription:
    """What one stream asked for of one type, and what it was sent."""

    type_url: str
    names: set[str] = field(default_factory=set)  # named explicitly
    wildcard: bool = False
    active: bool = False  # the client asked for this type
    dirty: bool = False  # a response may be due
    nonce: str | None = None  # of the latest response
    awaiting: bool = False  # the latest response is not answered yet
    version: str | None = None  # of the latest response
    held: dict[str, str] = field(default_factory=dict)  # what the client holds: name -> version
    force: set[str] = field(default_factory=set)  # names to send again even if unchanged

    def subscribe(self, name: str, resend: bool = True) -> None:
        """Add ``name``; ``resend`` sends it even if the client seems to hold it already."""
        if name not in self.names:
            self.names.add(name)
            self.dirty = True
        if resend:
            self.force.add(name)

    def unsubscribe(self, name: str, forget: bool = True) -> None:
        """Drop ``name``; ``forget`` also forgets that the client holds it."""
        self.names.discard(name)
        self.force.discard(name)
        if forget:
            self.held.pop(name, None)
        self.dirty = True


class Plan(Protocol):
    """A protocol's answer-to-be for one type; ``removes``: it deletes resources."""

    @property
    def removes(self) -> bool: ...


SubT = TypeVar("SubT", bound=Subscription)
PlanT = TypeVar("PlanT", bound=Plan)


def eds_name(cluster: cluster_pb2.Cluster) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster waits for (None: not an EDS cluster)."""
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return str(cluster.eds_cluster_config.service_name or cluster.name)


class XdsStream(ABC, Generic[SubT, PlanT]):
    """Protocol state of one stream (ADS, or a single-type service when ``fixed_type``)."""

    def __init__(
        self,
        cache: ConfigWatcher,
        registry: ClientRegistry,
        method: str,
        peer: str,
        wakeup: Callable[[], None],
        fixed_type: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        """``wakeup`` is called when a snapshot change makes responses due."""
        self.cache = cache
        self.registry = registry
        self.method = method
        self.peer = peer
        self.fixed_type = fixed_type
        self.limits = limits or Limits()
        self.info: StreamInfo | None = None
        self._wakeup = wakeup
        self._subs: dict[str, SubT] = {}
        self._nonce = 0

    # ----------------------------------------------------------------- inputs
    def handle_request(self, request: Request) -> bool:
        """Apply one request. Returns False when it was stale (and so changed nothing)."""
        type_url = self._type_of(request)
        if self.info is None:
            self._open(request.node if request.HasField("node") else None)
        self._check_names(type_url, self._names_in(request))
        sub = self._subs.get(type_url)
        if sub is None:
            sub = self._subs[type_url] = self._subscription(type_url)
        applied = self._apply(sub, request)
        if len(sub.names) > self.limits.max_names_per_request:
            raise ProtocolError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(sub.names)} {SHORT_NAMES[type_url]} names subscribed; "
                f"the limit is {self.limits.max_names_per_request}",
            )
        return applied

    def snapshot_changed(self, types: frozenset[str]) -> None:
        """The cache's listener: mark the affected subscriptions for recomputation."""
        for type_url in types:
            sub = self._subs.get(type_url)
            if sub is not None and sub.active:
                sub.dirty = True

    def close(self) -> None:
        if self.info is not None:
            self.cache.unwatch(self.info.node_key, self._on_change)
            self.registry.close(self.info)
        self._subs.clear()

    # ---------------------------------------------------------------- outputs
    def next_responses(self) -> list[Response]:
        """Everything that should be sent now, in ADS order."""
        if self.info is None:
            return []
        snapshot = self.cache.get(self.info.node_key)
        if snapshot is None:  # never serve an empty state before the first real one exists
            return []
        responses = []
        for type_url in ADS_ORDER:
            sub = self._subs.get(type_url)
            if sub is None or not sub.active or not sub.dirty or sub.awaiting:
                continue
            if type_url in snapshot.withheld:  # not known yet: the client keeps what it has
                continue
            available = snapshot.get(type_url)
            plan = self._plan(sub, available)
            if type_url == CLUSTER and plan.removes and self._route_updates_pending(snapshot):
                # Routes that may still point at the removed clusters go first; CDS stays dirty
                # and is reconsidered when the LDS/RDS responses are answered.
                continue
            response = self._respond(sub, plan, available)
            if response is not None:
                responses.append(response)
        return responses

    # ------------------------------------------------- what each protocol adds
    @abstractmethod
    def _subscription(self, type_url: str) -> SubT:
        """A new, empty subscription of this protocol."""

    @abstractmethod
    def _names_in(self, request: Request) -> Collection[str]:
        """Every resource name ``request`` carries (checked against the limits)."""

    @abstractmethod
    def _apply(self, sub: SubT, request: Request) -> bool:
        """Account the request's ACK/NACK and apply its subscription change."""

    @abstractmethod
    def _plan(self, sub: SubT, available: ResourceSet) -> PlanT:
        """What the client should be sent of this type now."""

    @abstractmethod
    def _respond(self, sub: SubT, plan: PlanT, available: ResourceSet) -> Response | None:
        """The response carrying ``plan`` (None: nothing to send); records it as sent."""

    # ------------------------------------------------------ shared bookkeeping
    def _settle(self, sub: SubT, request: Request) -> None:
        """If ``request`` answers the response in flight, account it as an ACK or a NACK."""
        if not sub.awaiting or request.response_nonce != sub.nonce:
            return
        assert self.info is not None
        sub.awaiting = False
        version = sub.version or ""
        if request.HasField("error_detail"):  # logged by the registry's observers
            self.registry.nacked(self.info, sub.type_url, version, request.error_detail.message)
        else:
            self.registry.acked(self.info, sub.type_url, version, request.response_nonce)

    def _show_subscription(self, sub: SubT) -> None:
        """Publish the subscription to the tracking state (debug views)."""
        assert self.info is not None
        state = self.info.state(sub.type_url)
        state.subscribed = sorted(sub.names)
        state.wildcard = sub.wildcard

    def _sent(self, sub: SubT, version: str, count: int, changed: list[Resource]) -> str:
        """Record a response of ``count`` resources (``changed`` of them new to the client) as
        in flight; returns its nonce."""
        assert self.info is not None
        self._nonce += 1
        nonce = str(self._nonce)
        sub.version = version
        sub.nonce = nonce
        sub.awaiting = True
        self._resend_dependents(sub.type_url, changed)
        origins = [r.origin_time for r in changed if r.origin_time is not None]
        self.registry.sent(self.info, sub.type_url, version, nonce, count, origins, sub.held)
        return nonce

    # -------------------------------------------------------------- internals
    def _type_of(self, request: Request) -> str:
        type_url = str(request.type_url)
        if self.fixed_type is not None:
            if type_url and type_url != self.fixed_type:
                raise ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"this stream serves {self.fixed_type}, not {type_url}",
                )
            return self.fixed_type
        if not type_url:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, "ADS requests must carry a type_url"
            )
        if type_url not in MESSAGE_CLASSES:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT, f"unsupported resource type {type_url!r}"
            )
        return type_url

    def _open(self, node: base_pb2.Node | None) -> None:
        if node is None or not node.id:
            raise ProtocolError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "the first request of a stream must carry a node with a non-empty id",
            )
        key = self.cache.node_key(node)
        self.info = self.registry.open(self.method, node, key, self.peer)
        self.cache.watch(node, self._on_change)

    def _on_change(self, types: frozenset[str]) -> None:
        self.snapshot_changed(types)
        self._wakeup()

    def _check_names(self, type_url: str, names: Collection[str]) -> None:
        if len(names) > self.limits.max_names_per_request:
            raise ProtocolError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{len(names)} resource names in one {SHORT_NAMES[type_url]} request; "
                f"the limit is {self.limits.max_names_per_request}",
            )
        for name in names:
            if len(name) > self.limits.max_name_length:
                raise ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a resource name of {len(name)} characters exceeds the limit of "
                    f"{self.limits.max_name_length}",
                )

    def _route_updates_pending(self, snapshot: Snapshot) -> bool:
        for type_url in (LISTENER, ROUTE):
            sub = self._subs.get(type_url)
            if sub is None or (type_url in snapshot.withheld and not sub.awaiting):
                continue
            if sub.awaiting or (sub.dirty and sub.active):
                return True
        return False

    def _resend_dependents(self, type_url: str, changed: list[Resource]) -> None:
        """New or changed clusters/listeners warm until their EDS/RDS data arrives: resend it."""
        if not changed:
            return
        if type_url == CLUSTER:
            eds = self._subs.get(ENDPOINT)
            if eds is None:
                return
            for resource in changed:
                name = eds_name(resource.message)
                if name is not None and name in eds.names:
                    eds.force.add(name)
                    eds.dirty = True
        elif type_url == LISTENER:
            rds = self._subs.get(ROUTE)
            if rds is not None and rds.names:
                rds.force |= rds.names
                rds.dirty = True
