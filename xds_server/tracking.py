"""ACK/NACK tracking: what each connected node was sent, what it accepted, what it rejected.

Streams report events here; the operations layer (metrics, debug endpoints, logs) subscribes with
an :class:`Observer`. Nothing in this module does I/O.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from envoy.config.core.v3 import base_pb2

from .resource import FULL_STATE_TYPES

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Nack:
    version: str
    message: str
    time: float  # wall-clock seconds, for display
    #: the resources whose new version (or removal: "") the client rejected, name → version
    resources: Mapping[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class TypeState:
    """Per stream and type: the latest response sent, accepted and rejected, and per resource
    what the client holds (``acked``) and what it was offered and has not answered yet."""

    version_sent: str | None = None
    version_acked: str | None = None
    resources_sent: int = 0
    last_nack: Nack | None = None
    subscribed: list[str] = field(default_factory=list)
    wildcard: bool = False
    #: name → version the client accepted, and since when (wall clock)
    acked: dict[str, str] = field(default_factory=dict)
    acked_at: dict[str, float] = field(default_factory=dict)
    #: name → version the client holds once it accepts the response awaiting an answer
    offered: dict[str, str] | None = None
    sent_at: float | None = None  # wall clock of the response awaiting an answer
    #: name → version the client rejected (and does not hold), until a later one supersedes it
    rejected: dict[str, str] = field(default_factory=dict)

    def offer(self, holds: Mapping[str, str], now: float) -> None:
        """A response was sent: the client holds ``holds`` if it accepts it."""
        self.offered = dict(holds)
        self.sent_at = now

    def accept(self, now: float, resends_all: bool) -> None:
        """The response was ACKed. A version the client rejected before is held only when it
        was sent again (``resends_all``: SotW CDS/LDS send every resource each time); the
        server never re-sends a rejected version otherwise."""
        if self.offered is None:
            return
        holds, self.offered, self.sent_at = self.offered, None, None
        for name, bad in list(self.rejected.items()):
            if holds.get(name) != bad or resends_all:
                del self.rejected[name]  # superseded, or accepted this time
                continue
            previous = self.acked.get(name)
            if previous is None:
                del holds[name]
            else:
                holds[name] = previous
        old = self.acked
        self.acked = holds
        self.acked_at = {
            name: now if old.get(name) != version else self.acked_at.get(name, now)
            for name, version in holds.items()
        }

    def reject(self) -> dict[str, str]:
        """The response was NACKed: what it changed is rejected (returned; a removal has an
        empty version); the client keeps what it had."""
        if self.offered is None:
            return {}
        offered, self.offered, self.sent_at = self.offered, None, None
        rejected = {n: v for n, v in offered.items() if self.acked.get(n) != v}
        rejected.update((name, "") for name in self.acked if name not in offered)
        self.rejected.update(rejected)
        return rejected


@dataclass(slots=True)
class StreamInfo:
    """One connected xDS stream and the node behind it."""

    stream_id: int
    method: str
    node: base_pb2.Node
    node_key: str
    peer: str
    connected_at: float  # wall clock
    types: dict[str, TypeState] = field(default_factory=dict)

    @property
    def node_id(self) -> str:
        return str(self.node.id)

    @property
    def node_cluster(self) -> str:
        return str(self.node.cluster)

    @property
    def delta(self) -> bool:
        """Incremental xDS (a response carries only what changed)."""
        return self.method.startswith("Delta")

    @property
    def user_agent(self) -> str:
        """``name/version`` as the client reports it (e.g. ``envoy/1.40.0``)."""
        agent = str(self.node.user_agent_name)
        if self.node.HasField("user_agent_build_version"):
            semver = self.node.user_agent_build_version.version
            version = f"{semver.major_number}.{semver.minor_number}.{semver.patch}"
        else:
            version = str(self.node.user_agent_version)
        return f"{agent}/{version}" if version else agent

    def state(self, type_url: str) -> TypeState:
        found = self.types.get(type_url)
        if found is None:
            found = self.types[type_url] = TypeState()
        return found


class Observer(Protocol):
    """Hooks for the operations layer. Every method must be cheap and must not raise."""

    def stream_opened(self, stream: StreamInfo) -> None: ...

    def stream_closed(self, stream: StreamInfo) -> None: ...

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None: ...

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None: ...

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None: ...


class BaseObserver:
    """An :class:`Observer` that ignores everything; subclass and override what you need."""

    def stream_opened(self, stream: StreamInfo) -> None:
        pass

    def stream_closed(self, stream: StreamInfo) -> None:
        pass

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        pass

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        pass

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        pass


class ClientRegistry:
    """The connected streams, and fan-out of their events to observers."""

    def __init__(self) -> None:
        self._streams: dict[int, StreamInfo] = {}
        self._observers: list[Observer] = []
        self._ids = itertools.count(1)

    def add_observer(self, observer: Observer) -> None:
        self._observers.append(observer)

    @property
    def streams(self) -> Mapping[int, StreamInfo]:
        return self._streams

    def by_node(self, node_id: str) -> list[StreamInfo]:
        return [s for s in self._streams.values() if s.node_id == node_id]

    def open(self, method: str, node: base_pb2.Node, node_key: str, peer: str) -> StreamInfo:
        info = StreamInfo(
            stream_id=next(self._ids),
            method=method,
            node=node,
            node_key=node_key,
            peer=peer,
            connected_at=time.time(),
        )
        self._streams[info.stream_id] = info
        self._emit("stream_opened", info)
        return info

    def close(self, info: StreamInfo) -> None:
        if self._streams.pop(info.stream_id, None) is not None:
            self._emit("stream_closed", info)

    def sent(
        self,
        info: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float] = (),
        holds: Mapping[str, str] | None = None,
    ) -> None:
        """``holds``: name → version the client holds once it accepts this response."""
        state = info.state(type_url)
        state.version_sent = version
        state.resources_sent = resources
        if holds is not None:
            state.offer(holds, time.time())
        self._emit("response_sent", info, type_url, version, nonce, resources, tuple(origin_times))

    def acked(self, info: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        state = info.state(type_url)
        state.version_acked = version
        state.accept(time.time(), resends_all=type_url in FULL_STATE_TYPES and not info.delta)
        self._emit("acked", info, type_url, version, nonce)

    def nacked(self, info: StreamInfo, type_url: str, version: str, message: str) -> None:
        state = info.state(type_url)
        rejected = state.reject()
        nack = Nack(version=version, message=message, time=time.time(), resources=rejected)
        state.last_nack = nack
        self._emit("nacked", info, type_url, nack)

    def _emit(self, hook: str, *args: object) -> None:
        for observer in self._observers:
            try:
                getattr(observer, hook)(*args)
            except Exception:  # observers are diagnostics: never break a stream for them
                log.exception("xDS observer %r failed in %s", observer, hook)
