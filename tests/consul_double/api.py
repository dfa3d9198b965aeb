"""An HTTP-only view of a Consul agent, real or double, for the conformance tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from consul_double import ConsulDouble

Params = dict[str, str] | list[tuple[str, str]]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text)

    @property
    def index(self) -> int:
        return int(self.headers["X-Consul-Index"])


@dataclass
class ConsulAPI:
    """An HTTP view of a Consul agent (real or double); tests use only this."""

    kind: str
    url: str
    session: aiohttp.ClientSession
    double: ConsulDouble | None = None
    registered: list[str] = field(default_factory=list)

    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        payload: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        async with self.session.request(
            method, self.url + path, params=params, json=payload, headers=headers
        ) as r:
            return Reply(r.status, dict(r.headers), await r.text())

    async def start_get(self, path: str, **params: str) -> asyncio.Task[Reply]:
        """Start a GET on a connection of its own; return once its request is on the wire and a
        round trip on another connection has completed (so the server has it in hand)."""
        sent = asyncio.Event()

        async def on_sent(*_: Any) -> None:
            sent.set()

        trace = aiohttp.TraceConfig()
        trace.on_request_headers_sent.append(on_sent)

        async def run() -> Reply:
            async with (
                aiohttp.ClientSession(trace_configs=[trace]) as session,
                session.get(self.url + path, params=params) as r,
            ):
                return Reply(r.status, dict(r.headers), await r.text())

        task = asyncio.create_task(run())
        await asyncio.wait([task, asyncio.create_task(sent.wait())], return_when="FIRST_COMPLETED")
        if not task.done():
            await self.get("/v1/status/leader")
        return task

    async def get(self, path: str, **params: str) -> Reply:
        return await self.request("GET", path, params)

    async def put(self, path: str, payload: Any = None, **params: str) -> Reply:
        return await self.request("PUT", path, params, payload)

    async def node_name(self) -> str:
        return str((await self.get("/v1/agent/self")).body["Config"]["NodeName"])

    async def register(self, definition: dict[str, Any]) -> None:
        reply = await self.put("/v1/agent/service/register", definition)
        assert reply.status == 200, reply.text
        keys = {k.lower(): v for k, v in definition.items()}
        self.registered.append(str(keys.get("id") or keys["name"]))

    async def wait_for(
        self, path: str, predicate: Callable[[Reply], bool], timeout: float = 10.0, **params: str
    ) -> Reply:
        """Follow ``path`` with blocking queries until ``predicate`` holds (agent writes reach
        a real catalog asynchronously)."""
        deadline = time.monotonic() + timeout
        reply = await self.get(path, **params)
        while not predicate(reply):
            assert time.monotonic() < deadline, f"timed out waiting on {path}: {reply.text}"
            reply = await self.get(path, index=str(reply.index), wait="2s", **params)
        return reply
