"""An xDS observer that records events and lets tests await them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bridge.tasks import within
from xds_server.tracking import BaseObserver, Nack, StreamInfo


@dataclass(frozen=True)
class Event:
    kind: str  # opened | closed | sent | acked | nacked
    node_id: str
    type_url: str = ""
    version: str = ""
    message: str = ""
    resources: int = 0


class Recorder(BaseObserver):
    def __init__(self) -> None:
        self.events: list[Event] = []
        self._changed = asyncio.Event()

    def _add(self, event: Event) -> None:
        self.events.append(event)
        self._changed.set()

    def stream_opened(self, stream: StreamInfo) -> None:
        self._add(Event("opened", stream.node_id))

    def stream_closed(self, stream: StreamInfo) -> None:
        self._add(Event("closed", stream.node_id))

    def response_sent(
        self,
        stream: StreamInfo,
        type_url: str,
        version: str,
        nonce: str,
        resources: int,
        origin_times: Iterable[float],
    ) -> None:
        self._add(Event("sent", stream.node_id, type_url, version, resources=resources))

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        self._add(Event("acked", stream.node_id, type_url, version))

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        self._add(Event("nacked", stream.node_id, type_url, nack.version, nack.message))

    def of(self, kind: str, type_url: str | None = None) -> list[Event]:
        return [
            e
            for e in self.events
            if e.kind == kind and (type_url is None or e.type_url == type_url)
        ]

    async def wait_for(
        self, predicate: Callable[[list[Event]], bool], timeout: float = 10.0, what: str = ""
    ) -> None:
        async def loop() -> None:
            while not predicate(self.events):
                self._changed.clear()
                await self._changed.wait()

        try:
            await within(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out waiting for {what or 'xDS events'}; events: {self.events[-20:]}"
            ) from None

    async def wait_acked(self, type_url: str, version: str, timeout: float = 10.0) -> None:
        await self.wait_for(
            lambda events: any(
                e.kind == "acked" and e.type_url == type_url and e.version == version
                for e in events
            ),
            timeout,
            f"ACK of {type_url} {version}",
        )
