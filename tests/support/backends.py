"""Small HTTP backends on loopback that answer with their own name."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohttp import web


class Backend:
    """An aiohttp server whose every response body is its name."""

    def __init__(self, name: str, host: str = "127.0.0.1") -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.requests = 0
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        return web.Response(text=self.name, headers={"x-backend": self.name})

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = _bound_port(self._runner)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@asynccontextmanager
async def backends(*names: str) -> AsyncIterator[list[Backend]]:
    started = [await Backend(name).start() for name in names]
    try:
        yield started
    finally:
        for backend in started:
            await backend.stop()


async def get(port: int, path: str = "/", host: str | None = None) -> tuple[int, str]:
    """One request to ``127.0.0.1:port`` (through Envoy); returns status and body."""
    headers = {"Host": host} if host else {}
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://127.0.0.1:{port}{path}", headers=headers) as response,
    ):
        return response.status, await response.text()


def _bound_port(runner: web.AppRunner) -> int:
    for address in runner.addresses:
        return int(address[1])
    raise RuntimeError("backend is not listening")
