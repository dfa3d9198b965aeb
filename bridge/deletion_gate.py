"""The running bridge's :class:`~bridge.retirement.DeletionGate`: it watches the xDS streams.

When a leaving service's emptied resources are published, every stream then open that holds one
of them — its subscription of that type is a wildcard or names it — must answer the first response
of that type sent after that moment: an ACK (it took the empty endpoints) or a NACK (it will not;
waiting longer changes nothing). A stream that ends counts as answered; streams opened later get
the emptied state anyway. When every stream answered, or after ``timeout`` seconds, the service's
cluster may go.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from xds_server.resource import SHORT_NAMES
from xds_server.tracking import BaseObserver, ClientRegistry, Nack, StreamInfo

log = logging.getLogger(__name__)

#: How long a leaving service's emptied cluster waits for clients that do not answer.
DELETION_TIMEOUT = 5.0

_Waiting = tuple[int, str]  # (stream id, type URL)


@dataclass(slots=True)
class _Leaving:
    done: Callable[[], None]
    started: float
    #: per stream and type: the nonce of the first response sent since (None: none sent yet)
    waiting: dict[_Waiting, str | None] = field(default_factory=dict)
    timer: asyncio.TimerHandle | asyncio.Handle | None = None


class AckGate(BaseObserver):
    """Lets a leaving service go once the streams holding it answered (see the module doc)."""

    def __init__(self, registry: ClientRegistry, timeout: float = DELETION_TIMEOUT) -> None:
        self.registry = registry
        self.timeout = timeout
        self._leaving: dict[str, _Leaving] = {}
        registry.add_observer(self)

    # ------------------------------------------------------------ DeletionGate
    def begin(
        self, service: str, names: Mapping[str, frozenset[str]], done: Callable[[], None]
    ) -> None:
        self.cancel(service)
        leaving = self._leaving[service] = _Leaving(done, time.monotonic())
        for stream in self.registry.streams.values():
            for type_url, held in names.items():
                state = stream.types.get(type_url)
                if state is not None and (state.wildcard or not held.isdisjoint(state.subscribed)):
                    leaving.waiting[(stream.stream_id, type_url)] = None
        loop = asyncio.get_running_loop()
        if leaving.waiting:
            leaving.timer = loop.call_later(self.timeout, self._finish, service, leaving)
        else:
            leaving.timer = loop.call_soon(self._finish, service, leaving)

    def cancel(self, service: str) -> None:
        leaving = self._leaving.pop(service, None)
        if leaving is not None and leaving.timer is not None:
            leaving.timer.cancel()

    @property
    def pending(self) -> dict[str, int]:
        """Leaving services and how many stream types they still wait for."""
        return {service: len(leaving.waiting) for service, leaving in self._leaving.items()}

    # ------------------------------------------------------------ Observer
    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        key = (stream.stream_id, type_url)
        for leaving in self._leaving.values():
            if key in leaving.waiting and leaving.waiting[key] is None:
                leaving.waiting[key] = nonce

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        self._answered((stream.stream_id, type_url), nonce)

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        # One response of a type is in flight at a time: a NACK answers the latest one sent.
        self._answered((stream.stream_id, type_url), None)

    def stream_closed(self, stream: StreamInfo) -> None:
        for service, leaving in list(self._leaving.items()):
            for key in [key for key in leaving.waiting if key[0] == stream.stream_id]:
                del leaving.waiting[key]
            self._settle(service, leaving)

    # ------------------------------------------------------------ internals
    def _answered(self, key: _Waiting, nonce: str | None) -> None:
        for service, leaving in list(self._leaving.items()):
            sent = leaving.waiting.get(key)
            if sent is not None and (nonce is None or nonce == sent):
                del leaving.waiting[key]
                self._settle(service, leaving)

    def _settle(self, service: str, leaving: _Leaving) -> None:
        if not leaving.waiting and self._leaving.get(service) is leaving:
            if leaving.timer is not None:
                leaving.timer.cancel()
            leaving.timer = asyncio.get_running_loop().call_soon(self._finish, service, leaving)

    def _finish(self, service: str, leaving: _Leaving) -> None:
        if self._leaving.get(service) is not leaving:
            return
        del self._leaving[service]
        seconds = time.monotonic() - leaving.started
        if leaving.waiting:
            log.info(
                "service %r: removing its cluster after %.1fs although %d stream(s) did not "
                "answer its emptied endpoints (%s)",
                service,
                seconds,
                len({stream_id for stream_id, _ in leaving.waiting}),
                ", ".join(sorted({SHORT_NAMES[t] for _, t in leaving.waiting})),
            )
        else:
            log.debug(
                "service %r: every client took its emptied endpoints in %.3fs", service, seconds
            )
        leaving.done()
