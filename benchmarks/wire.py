"""Counting bytes on the wire: a loopback TCP relay, and the framing of gRPC messages.

:class:`Relay` sits between one xDS client and the server and counts every byte in each
direction: HTTP/2 frames of every kind (HEADERS, DATA, WINDOW_UPDATE, PING, SETTINGS) and the
gRPC messages inside them. Only TCP/IP headers (and TLS, not used here) are below it.

:func:`framed_size` is the computed side: a protobuf message of ``n`` bytes travels as a gRPC
length-prefixed message (5 more bytes) in at least one HTTP/2 DATA frame per 16,384 bytes (the
default ``SETTINGS_MAX_FRAME_SIZE``), each with a 9-byte frame header.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator

GRPC_PREFIX = 5  # compressed flag (1) + message length (4)
HTTP2_FRAME_HEADER = 9
HTTP2_MAX_FRAME = 16_384


def framed_size(message_bytes: int) -> int:
    """``message_bytes`` of protobuf + the gRPC prefix + HTTP/2 DATA frame headers."""
    payload = message_bytes + GRPC_PREFIX
    return payload + HTTP2_FRAME_HEADER * max(1, math.ceil(payload / HTTP2_MAX_FRAME))


class Relay:
    """A TCP relay on 127.0.0.1 to ``127.0.0.1:target``, counting bytes ``up`` (client →
    server) and ``down`` (server → client)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.up = 0
        self.down = 0
        self.port = 0
        self._moved = time.monotonic()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target)
        pipes = [
            asyncio.create_task(self._pipe(reader, upstream_writer, up=True)),
            asyncio.create_task(self._pipe(upstream_reader, writer, up=False)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.gather(*pipes, return_exceptions=True)  # close() cancels them
        finally:
            self._tasks.difference_update(pipes)
            writer.close()
            upstream_writer.close()

    async def _pipe(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, up: bool
    ) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65_536):
                if up:
                    self.up += len(data)
                else:
                    self.down += len(data)
                self._moved = time.monotonic()
                sink.write(data)
                await sink.drain()
        sink.close()

    async def quiet(self, for_s: float = 0.15, bound_s: float = 5.0) -> tuple[int, int]:
        """Wait until no byte moved for ``for_s`` seconds (at most ``bound_s``): (up, down)."""
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            idle = time.monotonic() - self._moved
            if idle >= for_s:
                break
            await asyncio.sleep(for_s - idle)
        return self.up, self.down

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@contextlib.asynccontextmanager
async def relay(target: int) -> AsyncIterator[Relay]:
    counted = Relay(target)
    await counted.start()
    try:
        yield counted
    finally:
        await counted.close()
