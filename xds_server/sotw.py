"""The state-of-the-world (SotW) protocol state of one xDS stream, free of any I/O.

The gRPC layer feeds requests in (:meth:`SotwStream.handle_request`), tells the stream when its
snapshot changed (:meth:`SotwStream.snapshot_changed`), and writes whatever
:meth:`SotwStream.next_responses` returns. The rules it implements (see
``shared/reference/xds-protocol.md``):

* the node is taken from the first request and kept for the life of the stream;
* a request whose nonce is not the latest one sent for its type is stale and ignored;
* ``error_detail`` makes a request a NACK; a NACKed version is never sent again — only a
  different one is — and an ACK is never answered with the same resources;
* one response per type is outstanding at a time: the next one waits for the ACK/NACK of the
  previous one and then carries the newest state (a slow client never queues stale versions);
* LDS/CDS responses carry the full state (wildcard or the named set); EDS/RDS responses carry
  only named resources — just the ones the client does not have yet — and names that do not
  exist are answered with an empty resource;
* on ADS the order is CDS → EDS → LDS → RDS, and a CDS response that removes clusters waits
  until pending LDS/RDS updates (which may stop routing to those clusters) were answered;
* a cluster (listener) that is new or changed makes its ClusterLoadAssignment (route
  configurations) go out again, so nothing is left warming.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from .cache import SnapshotCache
from .resource import (
    ADS_ORDER,
    CLUSTER,
    ENDPOINT,
    FULL_STATE_TYPES,
    LISTENER,
    MESSAGE_CLASSES,
    ROUTE,
    SHORT_NAMES,
    Resource,
    ResourceSet,
    combined_version,
    empty_resource,
)
from .tracking import ClientRegistry, StreamInfo

log = logging.getLogger(__name__)

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

    max_names_per_request: int = 100_000
    max_name_length: int = 4096
    max_streams: int = 50_000  # open xDS streams on this server, all clients together


@dataclass(slots=True)
class _Subscription:
    type_url: str
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    named_ever: bool = False
    requested: bool = False
    dirty: bool = False
    awaiting_nonce: str | None = None  # set while a response waits for its ACK/NACK
    last_nonce: str | None = None
    sent_version: str | None = None
    sent: dict[str, str] = field(default_factory=dict)  # name -> version the client was sent
    force: set[str] = field(default_factory=set)  # names to send again even if unchanged


@functools.lru_cache(maxsize=4096)
def _placeholder(type_url: str, name: str) -> Resource:
    return empty_resource(type_url, name)


def eds_name(cluster: cluster_pb2.Cluster) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster waits for (None: not an EDS cluster)."""
    if cluster.type != cluster_pb2.Cluster.EDS:
        return None
    return str(cluster.eds_cluster_config.service_name or cluster.name)


class SotwStream:
    """Protocol state of one SotW stream (ADS, or a single-type service when ``fixed_type``)."""

    def __init__(
        self,
        cache: SnapshotCache,
        registry: ClientRegistry,
        method: str,
        peer: str,
        fixed_type: str | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.cache = cache
        self.registry = registry
        self.method = method
        self.peer = peer
        self.fixed_type = fixed_type
        self.limits = limits or Limits()
        self.info: StreamInfo | None = None
        self._subs: dict[str, _Subscription] = {}
        self._nonce = 0
        #: Called when a snapshot change makes responses due (the gRPC layer wakes its writer).
        self.wakeup: Callable[[], None] | None = None

    # ----------------------------------------------------------------- inputs
    @property
    def node_key(self) -> str | None:
        return self.info.node_key if self.info else None

    def handle_request(self, request: discovery_pb2.DiscoveryRequest) -> bool:
        """Apply one request. Returns False when it was stale (and so changed nothing)."""
        type_url = self._type_of(request)
        if self.info is None:
            self._open(request.node if request.HasField("node") else None)
        self._check_names(request, type_url)
        sub = self._subs.get(type_url)
        if sub is None:
            sub = self._subs[type_url] = _Subscription(type_url)
        if sub.last_nonce is not None and request.response_nonce != sub.last_nonce:
            log.debug(
                "stale %s request on stream %s (nonce %r, latest %r): ignored",
                SHORT_NAMES[type_url],
                self.info and self.info.stream_id,
                request.response_nonce,
                sub.last_nonce,
            )
            return False
        assert self.info is not None
        if sub.awaiting_nonce is not None:
            sub.awaiting_nonce = None
            version = sub.sent_version or ""
            if request.HasField("error_detail"):
                self.registry.nacked(self.info, type_url, version, request.error_detail.message)
                log.warning(
                    "node %r rejected %s version %s: %s",
                    self.info.node_id,
                    SHORT_NAMES[type_url],
                    version,
                    request.error_detail.message,
                )
            else:
                self.registry.acked(self.info, type_url, version, request.response_nonce)
        self._update_subscription(sub, request)
        return True

    def snapshot_changed(self, types: frozenset[str]) -> None:
        """The cache's listener: mark the affected subscriptions for recomputation."""
        for type_url in types:
            sub = self._subs.get(type_url)
            if sub is not None and sub.requested:
                sub.dirty = True

    def close(self) -> None:
        if self.info is not None:
            self.cache.unwatch(self.info.node_key, self._on_change)
            self.registry.close(self.info)
        self._subs.clear()

    # ---------------------------------------------------------------- outputs
    def next_responses(self) -> list[discovery_pb2.DiscoveryResponse]:
        """Everything that should be sent now, in ADS order."""
        if self.info is None:
            return []
        snapshot = self.cache.get(self.info.node_key)
        if snapshot is None:  # never serve an empty state before the first real one exists
            return []
        responses: list[discovery_pb2.DiscoveryResponse] = []
        for type_url in ADS_ORDER:
            sub = self._subs.get(type_url)
            if sub is None or not sub.requested or not sub.dirty or sub.awaiting_nonce:
                continue
            available = snapshot.get(type_url)
            resources, removed_any = self._select(sub, available)
            if type_url == CLUSTER and removed_any and self._route_updates_pending():
                # Routes that may still point at the removed clusters go first; CDS stays dirty
                # and is reconsidered when the LDS/RDS responses are answered.
                continue
            response = self._respond(sub, resources, available)
            if response is not None:
                responses.append(response)
        return responses

    # -------------------------------------------------------------- internals
    def _type_of(self, request: discovery_pb2.DiscoveryRequest) -> str:
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
        if self.wakeup is not None:
            self.wakeup()

    def _check_names(self, request: discovery_pb2.DiscoveryRequest, type_url: str) -> None:
        names = request.resource_names
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

    def _update_subscription(
        self, sub: _Subscription, request: discovery_pb2.DiscoveryRequest
    ) -> None:
        names = set(request.resource_names)
        explicit_wildcard = WILDCARD in names
        names.discard(WILDCARD)
        if names:
            sub.named_ever = True
        if sub.type_url in FULL_STATE_TYPES:
            wildcard = explicit_wildcard or (not names and not sub.named_ever)
        else:
            wildcard = False
        first = not sub.requested
        sub.requested = True
        if first:
            sub.dirty = True
        changed = wildcard != sub.wildcard or names != sub.names
        if changed:
            added = names - sub.names
            for gone in sub.names - names:
                sub.sent.pop(gone, None)
                sub.force.discard(gone)
            sub.force |= added
            sub.names = names
            sub.wildcard = wildcard
            sub.dirty = True
        if self.info is not None and (changed or first):  # an ACK usually repeats the names
            state = self.info.state(sub.type_url)
            state.subscribed = sorted(names)
            state.wildcard = wildcard

    def _select(
        self, sub: _Subscription, available: Mapping[str, Resource]
    ) -> tuple[dict[str, Resource], bool]:
        """The resources the client should hold for this type, and whether any were removed."""
        if sub.type_url in FULL_STATE_TYPES:
            if sub.wildcard:
                selected = dict(available)
            else:
                selected = {n: available[n] for n in sub.names if n in available}
            removed = any(name not in selected for name in sub.sent)
            return selected, removed
        selected = {}
        for name in sub.names:
            found = available.get(name)
            if found is None:
                if name in sub.sent and name not in sub.force:
                    # Gone from the snapshot, but the client holds it: its cluster/listener is
                    # about to be removed; emptying it first would only drop traffic early.
                    continue
                found = _placeholder(sub.type_url, name)
            selected[name] = found
        return selected, False

    def _route_updates_pending(self) -> bool:
        for type_url in (LISTENER, ROUTE):
            sub = self._subs.get(type_url)
            if sub is not None and (sub.awaiting_nonce or (sub.dirty and sub.requested)):
                return True
        return False

    def _respond(
        self, sub: _Subscription, selected: dict[str, Resource], available: ResourceSet
    ) -> discovery_pb2.DiscoveryResponse | None:
        sub.dirty = False
        full_state = sub.type_url in FULL_STATE_TYPES
        if len(selected) == len(available) and all(name in available for name in selected):
            version = available.version  # the whole set: its version is maintained already
        else:
            version = combined_version((name, r.version) for name, r in selected.items())
        changed = [
            r
            for name, r in selected.items()
            if sub.sent.get(name) != r.version or name in sub.force
        ]
        if full_state:
            if (
                sub.sent_version is not None
                and version == sub.sent_version
                and not (sub.force & selected.keys())
            ):
                return None
            to_send = list(selected.values())
        else:
            if not changed and sub.sent_version is not None:
                return None
            if not changed and not selected:
                return None  # an EDS/RDS stream that names nothing needs no answer
            to_send = changed
        self._nonce += 1
        nonce = str(self._nonce)
        response = discovery_pb2.DiscoveryResponse(
            version_info=version, type_url=sub.type_url, nonce=nonce
        )
        response.resources.extend(r.packed for r in to_send)
        if full_state:
            sub.sent = {name: r.version for name, r in selected.items()}
        else:
            sub.sent.update((r.name, r.version) for r in to_send)
        self._force_dependents(sub.type_url, changed)
        sub.force.clear()
        sub.sent_version = version
        sub.last_nonce = nonce
        sub.awaiting_nonce = nonce
        assert self.info is not None
        origins = [r.origin_time for r in changed if r.origin_time is not None]
        self.registry.sent(self.info, sub.type_url, version, nonce, len(to_send), origins)
        return response

    def _force_dependents(self, type_url: str, changed: list[Resource]) -> None:
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
