"""Client Status Discovery Service (``envoy.service.status.v3``): what every connected node holds.

One :class:`ClientConfig` per connected node, with one ``GenericXdsConfig`` per resource it was
sent or asked for, from the server's side of the conversation:

* ``SYNCED``: the node ACKed the version the server has now (``client_status`` ``ACKED``, or
  ``DOES_NOT_EXIST`` for a subscribed name the server does not have);
* ``STALE``: a newer version was sent and not answered yet, or the server has a newer version it
  has not sent; ``last_updated`` is when it was sent (or when the server got it);
* ``NOT_SENT``: the node asked for it and never received a version;
* ``ERROR``: the node NACKed the latest version (``client_status`` ``NACKED``); ``error_state``
  carries Envoy's message, the rejected version and, with contents, the rejected resource.

``version_info`` is the version the node holds (empty when none). Resources are included as
``xds_config`` unless the request sets ``exclude_resource_contents``. ``node_matchers`` select
nodes by id (a ``StringMatcher``) and by node metadata (``StructMatcher``), OR-ed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from envoy.admin.v3 import config_dump_shared_pb2
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from .cache import ConfigWatcher
from .matching import node_matches
from .resource import ADS_ORDER, Resource, ResourceSet
from .tracking import ClientRegistry, StreamInfo, TypeState

SYNCED = csds_pb2.ConfigStatus.SYNCED
NOT_SENT = csds_pb2.ConfigStatus.NOT_SENT
STALE = csds_pb2.ConfigStatus.STALE
ERROR = csds_pb2.ConfigStatus.ERROR
_Status = config_dump_shared_pb2.ClientResourceStatus
ACKED, NACKED, REQUESTED, DOES_NOT_EXIST = (
    _Status.ACKED,
    _Status.NACKED,
    _Status.REQUESTED,
    _Status.DOES_NOT_EXIST,
)


@dataclass(frozen=True, slots=True)
class ResourceStatus:
    """One resource of one node, as CSDS reports it (times are wall-clock seconds)."""

    name: str
    version: str  # what the node holds ("" when nothing)
    config_status: int
    client_status: int
    updated: float | None = None
    rejected_version: str | None = None
    resource: Resource | None = None  # the server's current one (None: it has none)


def resource_statuses(
    state: TypeState,
    available: ResourceSet,
    now: float,
    monotonic_now: float,
) -> Iterator[ResourceStatus]:
    """Per resource of one stream and type: what the node holds against what the server has."""
    offered = state.offered or {}
    wanted = set(state.subscribed)
    if state.wildcard:
        wanted.update(available)
    for name in sorted(wanted | state.acked.keys() | offered.keys() | state.rejected.keys()):
        current: Resource | None = available.get(name)
        held = state.acked.get(name)
        version = held or ""
        acked_at = state.acked_at.get(name)
        if name in state.rejected:
            nack = state.last_nack
            yield ResourceStatus(
                name,
                version,
                ERROR,
                NACKED,
                nack.time if nack is not None else acked_at,
                state.rejected[name],
                current,
            )
        elif state.offered is not None and offered.get(name) != held:
            yield ResourceStatus(
                name, version, STALE, ACKED if held else REQUESTED, state.sent_at, None, current
            )
        elif current is None:
            if name in wanted:
                yield ResourceStatus(name, version, SYNCED, DOES_NOT_EXIST, acked_at)
            # else: the node holds something it no longer asks for; nothing to report
        elif held == current.version:
            yield ResourceStatus(name, version, SYNCED, ACKED, acked_at, None, current)
        elif name in wanted:
            since = _wall(current.origin_time, now, monotonic_now)
            config_status = STALE if held else NOT_SENT
            yield ResourceStatus(
                name, version, config_status, ACKED if held else REQUESTED, since, None, current
            )


def _wall(monotonic: float | None, now: float, monotonic_now: float) -> float | None:
    return None if monotonic is None else now - (monotonic_now - monotonic)


def newest_per_type(streams: Iterable[StreamInfo]) -> dict[str, tuple[StreamInfo, TypeState]]:
    """Of a node's streams, the newest one serving each type (a reconnect overlaps the old)."""
    found: dict[str, tuple[StreamInfo, TypeState]] = {}
    for stream in sorted(streams, key=lambda s: s.stream_id):
        for type_url, state in stream.types.items():
            found[type_url] = (stream, state)
    return found


def client_config(
    streams: list[StreamInfo],
    cache: ConfigWatcher,
    include_contents: bool = True,
    now: float | None = None,
    monotonic_now: float | None = None,
) -> csds_pb2.ClientConfig:
    """One node's ClientConfig, from its open streams (at least one)."""
    now = time.time() if now is None else now
    monotonic_now = time.monotonic() if monotonic_now is None else monotonic_now
    newest = max(streams, key=lambda s: s.stream_id)
    config = csds_pb2.ClientConfig()
    config.node.CopyFrom(newest.node)
    per_type = newest_per_type(streams)
    for type_url in sorted(per_type, key=_type_order):
        stream, state = per_type[type_url]
        snapshot = cache.get(stream.node_key)
        available = snapshot.get(type_url) if snapshot is not None else ResourceSet(type_url)
        for status in resource_statuses(state, available, now, monotonic_now):
            _add(config, type_url, status, state, include_contents)
    return config


def _type_order(type_url: str) -> tuple[int, str]:
    return (ADS_ORDER.index(type_url) if type_url in ADS_ORDER else len(ADS_ORDER), type_url)


def _add(
    config: csds_pb2.ClientConfig,
    type_url: str,
    status: ResourceStatus,
    state: TypeState,
    include_contents: bool,
) -> None:
    entry = config.generic_xds_configs.add(
        type_url=type_url,
        name=status.name,
        version_info=status.version,
        config_status=status.config_status,
        client_status=status.client_status,
    )
    if status.updated is not None:
        entry.last_updated.FromNanoseconds(int(status.updated * 1e9))
    if include_contents and status.resource is not None and status.config_status != ERROR:
        entry.xds_config.CopyFrom(status.resource.packed)
    if status.config_status == ERROR:
        nack = state.last_nack
        failure = entry.error_state
        failure.version_info = status.rejected_version or ""
        if nack is not None:
            failure.details = nack.message
            failure.last_update_attempt.FromNanoseconds(int(nack.time * 1e9))
        bad = status.resource
        if include_contents and bad is not None and bad.version == status.rejected_version:
            failure.failed_configuration.CopyFrom(bad.packed)


def client_status(
    registry: ClientRegistry, cache: ConfigWatcher, request: csds_pb2.ClientStatusRequest
) -> csds_pb2.ClientStatusResponse:
    """The answer to one ClientStatusRequest: every connected node the matchers select."""
    by_node: dict[str, list[StreamInfo]] = {}
    for stream in registry.streams.values():
        by_node.setdefault(stream.node_id, []).append(stream)
    response = csds_pb2.ClientStatusResponse()
    include = not request.exclude_resource_contents
    now, monotonic_now = time.time(), time.monotonic()
    for node_id in sorted(by_node):
        streams = by_node[node_id]
        node = max(streams, key=lambda s: s.stream_id).node
        if request.node_matchers and not any(node_matches(m, node) for m in request.node_matchers):
            continue
        response.config.append(client_config(streams, cache, include, now, monotonic_now))
    return response


class ClientStatusService(csds_pb2_grpc.ClientStatusDiscoveryServiceServicer):  # type: ignore[misc]
    """CSDS on the xDS server's port, reading the same registry and cache as the streams."""

    def __init__(self, registry: ClientRegistry, cache: ConfigWatcher) -> None:
        self._registry = registry
        self._cache = cache

    async def FetchClientStatus(
        self, request: csds_pb2.ClientStatusRequest, context: Any
    ) -> csds_pb2.ClientStatusResponse:
        return client_status(self._registry, self._cache, request)

    async def StreamClientStatus(
        self, requests: AsyncIterator[csds_pb2.ClientStatusRequest], context: Any
    ) -> AsyncIterator[csds_pb2.ClientStatusResponse]:
        async for request in requests:
            yield client_status(self._registry, self._cache, request)


def add_csds(registry: ClientRegistry, cache: ConfigWatcher, server: Any) -> None:
    """Register CSDS on a ``grpc.aio`` server."""
    csds_pb2_grpc.add_ClientStatusDiscoveryServiceServicer_to_server(
        ClientStatusService(registry, cache), server
    )
