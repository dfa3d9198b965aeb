"""Per-client TCP connection limit (``limits.http_max_conns_per_client``) and server counters.

The asyncio protocol factory of the aiohttp server is wrapped: a connection above the per-IP cap
never reaches aiohttp; it gets a raw ``HTTP/1.1 429 Too Many Requests`` and is closed, as the
Consul agent does.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

REJECTION = b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@dataclass
class Stats:
    """``consul.stats``; plain counters, safe to read at any time.

    ``requests_total`` counts HTTP requests that reached the server (faulted ones included);
    ``responses_by_status`` counts answers by status (a dropped request has none; connections
    refused by the per-client cap count as 429 there and in ``rejected_429``).
    """

    requests_total: int = 0
    responses_by_status: Counter[int] = field(default_factory=Counter)
    current_connections: int = 0
    max_concurrent_connections: int = 0
    rejected_429: int = 0
    connections_by_client: Counter[str] = field(default_factory=Counter)


class ConnectionLimiter:
    """Counts open connections per client IP, admits up to ``max_per_client`` of them."""

    def __init__(self, max_per_client: int, stats: Stats) -> None:
        self.max_per_client = max_per_client
        self.stats = stats
        self.transports: set[asyncio.BaseTransport] = set()

    def factory(self, inner: Callable[[], asyncio.BaseProtocol]) -> Callable[[], asyncio.Protocol]:
        return lambda: _LimitedProtocol(self, inner)

    def admit(self, client: str, transport: asyncio.BaseTransport) -> bool:
        stats = self.stats
        if self.max_per_client > 0 and stats.connections_by_client[client] >= self.max_per_client:
            stats.rejected_429 += 1
            stats.responses_by_status[429] += 1
            return False
        stats.connections_by_client[client] += 1
        stats.current_connections += 1
        stats.max_concurrent_connections = max(
            stats.max_concurrent_connections, stats.current_connections
        )
        self.transports.add(transport)
        return True

    def release(self, client: str, transport: asyncio.BaseTransport) -> None:
        self.transports.discard(transport)
        self.stats.current_connections -= 1
        self.stats.connections_by_client[client] -= 1
        if self.stats.connections_by_client[client] <= 0:
            del self.stats.connections_by_client[client]

    def abort_all(self) -> None:
        for transport in list(self.transports):
            transport.abort()  # type: ignore[attr-defined]


class _LimitedProtocol(asyncio.Protocol):
    """Admits the connection and delegates to aiohttp's protocol, or rejects it with a 429."""

    def __init__(
        self, limiter: ConnectionLimiter, inner: Callable[[], asyncio.BaseProtocol]
    ) -> None:
        self._limiter = limiter
        self._inner_factory = inner
        self._inner: asyncio.Protocol | None = None
        self._transport: asyncio.Transport | None = None
        self._client = ""
        self._close_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if isinstance(peer, tuple) and peer else "unknown"
        if not self._limiter.admit(self._client, transport):
            transport.write(REJECTION)
            # Close once the request arrived (closing earlier makes the kernel answer the
            # client's request with a RST that can hide the 429), or after a short grace.
            self._close_timer = asyncio.get_running_loop().call_later(0.5, transport.close)
            return
        inner = self._inner_factory()
        assert isinstance(inner, asyncio.Protocol)
        self._inner = inner
        inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
        elif self._transport is not None:
            self._transport.close()

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        if self._inner is not None:
            assert self._transport is not None
            self._limiter.release(self._client, self._transport)
            self._inner.connection_lost(exc)
