"""The stack of the traffic-management tests: the Consul double (dc1 + dc2), a bridge with the
default templates, a real Envoy on the default set's ingress listener, and HTTP backends that
answer with their name, count their hits and can be told to fail."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

from bridge.app import Bridge
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config, envoy_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually

#: A bound on waiting for a change to reach traffic, not a speed target (the machine is shared).
BOUND = 20.0


@dataclass
class Backend:
    """An HTTP server answering every request with its name (header ``x-path``: the path it
    was asked for), or with ``status`` when that is set to an error."""

    name: str
    status: int = 200
    hits: int = 0
    paths: list[str] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        self.paths.append(request.path_qs)
        headers = {"x-backend": self.name, "x-path": request.path_qs}
        return web.Response(status=self.status, text=self.name, headers=headers)

    async def start(self) -> Backend:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@dataclass
class Answer:
    status: int
    body: str
    path: str  # what the backend saw ("" when no backend answered)


@dataclass
class TrafficStack:
    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    ingress: int
    backends: dict[str, Backend]
    session: aiohttp.ClientSession

    def register(
        self,
        instance: str,
        service: str,
        version: str = "",
        datacenter: str | None = None,
        **meta: str,
    ) -> None:
        if version:
            meta["version"] = version
        self.consul.register(
            service,
            id=instance,
            address="127.0.0.1",
            port=self.backends[instance].port,
            meta=meta,
            node=f"node-{instance}",
            datacenter=datacenter,
        )

    def put(self, entry: Mapping[str, Any]) -> None:
        assert self.consul.put_config_entry(entry)

    async def get(
        self, host: str, path: str = "/", headers: Mapping[str, str] | None = None
    ) -> Answer:
        url = f"http://127.0.0.1:{self.ingress}{path}"
        async with self.session.get(url, headers={"Host": host, **(headers or {})}) as response:
            body = await response.text()
            return Answer(response.status, body, response.headers.get("x-path", ""))

    async def counts(
        self,
        host: str,
        requests: int = 12,
        path: str = "/",
        headers: Mapping[str, str] | None = None,
        concurrency: int = 1,
    ) -> collections.Counter[str]:
        """Who answered: backend names, or ``HTTP <status>`` for an error."""
        seen: collections.Counter[str] = collections.Counter()
        remaining = iter(range(requests))

        async def worker() -> None:
            for _ in remaining:
                answer = await self.get(host, path, headers)
                seen[answer.body if answer.status == 200 else f"HTTP {answer.status}"] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return seen

    async def follows(
        self,
        expected: set[str],
        host: str = "web",
        headers: Mapping[str, str] | None = None,
        path: str = "/",
        what: str = "",
    ) -> None:
        """Wait (bounded) until the answers come from exactly ``expected``."""

        async def seen() -> set[str]:
            return set(await self.counts(host, 12, path, headers))

        await eventually(
            seen,
            lambda found: found == expected,
            timeout=BOUND,
            what=what or f"traffic to {host} {dict(headers or {})} reaching {sorted(expected)}",
        )

    async def nacks(self) -> int:
        stats = await self.envoy.stats("update_rejected")
        return sum(v for k, v in stats.items() if k.endswith("update_rejected"))


@contextlib.asynccontextmanager
async def traffic_stack(node_id: str, *names: str) -> AsyncIterator[TrafficStack]:
    """A running stack with backends ``names`` started (none registered yet)."""
    started = [await Backend(name).start() for name in names]
    try:
        async with (
            ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as consul,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        ):
            config = bridge_config(consul, datacenters=("dc2",))
            async with Bridge(config, TemplateSource()) as bridge:

                async def ready() -> bool:
                    return bridge.readiness()[0]

                await eventually(ready, timeout=BOUND, what="bridge ready")
                ingress = free_port()
                async with Envoy(envoy_bootstrap(node_id, bridge.xds_port, ingress)) as envoy:
                    yield TrafficStack(
                        consul, bridge, envoy, ingress, {b.name: b for b in started}, session
                    )
    finally:
        for backend in started:
            await backend.stop()
