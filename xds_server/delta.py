"""The incremental (delta) xDS protocol state of one stream, free of any I/O.

Shares the snapshot cache, the per-resource content-hash versions and the packed resources with
SotW. The rules (see ``shared/reference/xds-protocol.md``):

* the client's holdings are tracked per resource (name → version): seeded from
  ``initial_resource_versions`` on reconnect, so only what differs is sent;
* ``resource_names_subscribe`` / ``_unsubscribe`` are applied even when the request's nonce is
  stale; ACK/NACK accounting only applies to the latest nonce;
* LDS/CDS start as wildcard when the first request names nothing (or subscribes ``*``); EDS/RDS
  are named only;
* a response carries resources whose version differs from the client's, and
  ``removed_resources`` for resources that are gone and for subscribed names that do not exist;
* a NACKed version is not re-sent (the client's entry is recorded when sent); the next
  different version is;
* one response per type is outstanding at a time; ADS order CDS → EDS → LDS → RDS with cluster
  removals after pending route updates; a new or changed cluster (listener) makes its
  assignment (route configurations) go out again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import grpc
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
)
from .sotw import WILDCARD, Limits, ProtocolError, eds_name
from .tracking import ClientRegistry, StreamInfo

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _DeltaSubscription:
    type_url: str
    names: set[str] = field(default_factory=set)
    wildcard: bool = False
    started: bool = False
    dirty: bool = False
    awaiting_nonce: str | None = None
    sent_version: str | None = None
    client: dict[str, str] = field(default_factory=dict)  # what the client holds: name -> version
    told_missing: set[str] = field(default_factory=set)
    force: set[str] = field(default_factory=set)


def _visible_to_wildcard(resource: Resource) -> bool:
    return getattr(resource, "wildcard", True) is not False


class DeltaStream:
    """Protocol state of one delta stream (ADS, or a single type when ``fixed_type``)."""

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
        self.wakeup: Callable[[], None] | None = None
        self._subs: dict[str, _DeltaSubscription] = {}
        self._nonce = 0

    # ----------------------------------------------------------------- inputs
    def handle_request(self, request: discovery_pb2.DeltaDiscoveryRequest) -> bool:
        type_url = self._type_of(request)
        if self.info is None:
            self._open(request.node if request.HasField("node") else None)
        assert self.info is not None
        subscribe = list(request.resource_names_subscribe)
        unsubscribe = list(request.resource_names_unsubscribe)
        self._check_names(type_url, subscribe, unsubscribe)
        sub = self._subs.get(type_url)
        if sub is None:
            sub = self._subs[type_url] = _DeltaSubscription(type_url)
        nonce = request.response_nonce
        if nonce and nonce == sub.awaiting_nonce:
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
                self.registry.acked(self.info, type_url, version, nonce)
        if not sub.started:
            sub.started = True
            sub.dirty = True
            for name, version in request.initial_resource_versions.items():
                sub.client[name] = version
            if type_url in FULL_STATE_TYPES and (not subscribe or WILDCARD in subscribe):
                sub.wildcard = True
        for name in subscribe:
            if name == WILDCARD:
                sub.wildcard = sub.wildcard or type_url in FULL_STATE_TYPES
                sub.dirty = True
                continue
            if name not in sub.names:
                sub.names.add(name)
                sub.dirty = True
            # A (re-)subscription asks for the resource even if we believe the client has it,
            # unless the client said which version it holds (a reconnect): then only a
            # different version is sent.
            if name not in request.initial_resource_versions:
                sub.force.add(name)
            sub.told_missing.discard(name)
        for name in unsubscribe:
            if name == WILDCARD:
                sub.wildcard = False
            sub.names.discard(name)
            sub.force.discard(name)
            sub.told_missing.discard(name)
            if not sub.wildcard:
                sub.client.pop(name, None)
            sub.dirty = True
        state = self.info.state(type_url)
        state.subscribed = sorted(sub.names)
        state.wildcard = sub.wildcard
        return True

    def snapshot_changed(self, types: frozenset[str]) -> None:
        for type_url in types:
            sub = self._subs.get(type_url)
            if sub is not None and sub.started:
                sub.dirty = True

    def close(self) -> None:
        if self.info is not None:
            self.cache.unwatch(self.info.node_key, self._on_change)
            self.registry.close(self.info)
        self._subs.clear()

    # ---------------------------------------------------------------- outputs
    def next_responses(self) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        if self.info is None:
            return []
        snapshot = self.cache.get(self.info.node_key)
        if snapshot is None:
            return []
        responses = []
        for type_url in ADS_ORDER:
            sub = self._subs.get(type_url)
            if sub is None or not sub.started or not sub.dirty or sub.awaiting_nonce:
                continue
            upserts, removed = self._diff(sub, snapshot.get(type_url))
            if type_url == CLUSTER and removed and self._route_updates_pending():
                continue  # remove clusters after routes stopped pointing at them
            response = self._respond(sub, upserts, removed, snapshot.get(type_url))
            if response is not None:
                responses.append(response)
        return responses

    # -------------------------------------------------------------- internals
    def _type_of(self, request: discovery_pb2.DeltaDiscoveryRequest) -> str:
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

    def _check_names(self, type_url: str, subscribe: list[str], unsubscribe: list[str]) -> None:
        count = len(subscribe) + len(unsubscribe)
        if count > self.limits.max_names_per_request:
            raise ProtocolError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{count} resource names in one {SHORT_NAMES[type_url]} request; "
                f"the limit is {self.limits.max_names_per_request}",
            )
        for name in (*subscribe, *unsubscribe):
            if len(name) > self.limits.max_name_length:
                raise ProtocolError(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"a resource name of {len(name)} characters exceeds the limit of "
                    f"{self.limits.max_name_length}",
                )

    def _in_scope(self, sub: _DeltaSubscription, available: Mapping[str, Resource]) -> set[str]:
        scope = set(sub.names)
        if sub.wildcard:
            scope.update(n for n, r in available.items() if _visible_to_wildcard(r))
        return scope

    def _diff(
        self, sub: _DeltaSubscription, available: ResourceSet
    ) -> tuple[list[Resource], list[str]]:
        scope = self._in_scope(sub, available)
        upserts = []
        for name in sorted(scope):
            resource = available.get(name)
            if resource is None:
                continue
            if sub.client.get(name) != resource.version or name in sub.force:
                upserts.append(resource)
        removed = []
        for name in sorted(sub.client):
            if name not in available or name not in scope:
                removed.append(name)
        for name in sorted(sub.names):
            if name not in available and name not in sub.client and name not in sub.told_missing:
                removed.append(name)  # subscribed, but it does not exist (yet)
        return upserts, removed

    def _route_updates_pending(self) -> bool:
        for type_url in (LISTENER, ROUTE):
            sub = self._subs.get(type_url)
            if sub is not None and (sub.awaiting_nonce or (sub.dirty and sub.started)):
                return True
        return False

    def _respond(
        self,
        sub: _DeltaSubscription,
        upserts: list[Resource],
        removed: list[str],
        available: ResourceSet,
    ) -> discovery_pb2.DeltaDiscoveryResponse | None:
        sub.dirty = False
        sub.force.clear()
        if not upserts and not removed:
            return None
        for resource in upserts:
            sub.client[resource.name] = resource.version
            sub.told_missing.discard(resource.name)
        for name in removed:
            sub.client.pop(name, None)
            if name in sub.names:
                sub.told_missing.add(name)
        version = combined_version(sub.client.items())
        self._nonce += 1
        nonce = str(self._nonce)
        response = discovery_pb2.DeltaDiscoveryResponse(
            system_version_info=version,
            type_url=sub.type_url,
            nonce=nonce,
            removed_resources=removed,
        )
        for resource in upserts:
            entry = response.resources.add(name=resource.name, version=resource.version)
            entry.resource.CopyFrom(resource.packed)
        sub.sent_version = version
        sub.awaiting_nonce = nonce
        self._force_dependents(sub.type_url, upserts)
        assert self.info is not None
        origins = [r.origin_time for r in upserts if r.origin_time is not None]
        self.registry.sent(
            self.info, sub.type_url, version, nonce, len(upserts) + len(removed), origins
        )
        return response

    def _force_dependents(self, type_url: str, changed: list[Resource]) -> None:
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
