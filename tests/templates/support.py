"""Helpers of the template tests: catalogs, nodes, gRPC echo servers, a gRPC client process and
a traffic probe through Envoy."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
from envoy.config.core.v3 import base_pb2

from bridge.catalog import Catalog, ServiceUpdate
from bridge.model import Check, Instance
from bridge.tasks import within
from bridge.templating import BUNDLED_DIR
from tests.support.backends import get

REPO = Path(__file__).resolve().parents[2]


def instance(
    service: str,
    n: int,
    port: int = 8080,
    dc: str = "dc1",
    status: str = "passing",
    meta: dict[str, str] | None = None,
    tags: Iterable[str] = (),
) -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{n}",
        node=f"node{n}",
        datacenter=dc,
        address=f"10.0.0.{n}",
        port=port,
        tags=tuple(tags),
        meta=tuple(sorted((meta or {}).items())),
        checks=(Check(f"service:{service}-{n}", "check", status, f"{service}-{n}"),),
    )


def catalog_of(*instances: Instance, datacenters: Iterable[str] = ("dc1", "dc2")) -> Catalog:
    catalog = Catalog(list(datacenters))
    catalog.apply(updates(*instances))
    return catalog


def updates(*instances: Instance) -> list[ServiceUpdate]:
    grouped: dict[tuple[str, str], list[Instance]] = {}
    for inst in instances:
        grouped.setdefault((inst.service, inst.datacenter), []).append(inst)
    return [ServiceUpdate(name, dc, tuple(items)) for (name, dc), items in grouped.items()]


def envoy_node(
    node_id: str = "envoy-1", cluster: str = "edge", metadata: dict[str, Any] | None = None
) -> base_pb2.Node:
    node = base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="envoy")
    node.metadata.update(metadata or {})
    return node


def grpc_node(node_id: str = "grpc-1", cluster: str = "clients") -> base_pb2.Node:
    return base_pb2.Node(id=node_id, cluster=cluster, user_agent_name="gRPC Python")


class Changes(list[float]):
    """An ``on_change`` callback that records when it was called; tests await the n-th call."""

    def __init__(self) -> None:
        super().__init__()
        self._called = asyncio.Event()

    def __call__(self) -> None:
        self.append(time.monotonic())
        self._called.set()

    async def wait(self, count: int) -> int:
        """Wait until called at least ``count`` times; returns the number of calls."""
        while len(self) < count:
            self._called.clear()
            await self._called.wait()
        return len(self)


def copy_sets(destination: Path, *names: str) -> Path:
    """A writable copy of bundled template sets (default: all of them) under ``destination``."""
    for name in names or tuple(p.name for p in BUNDLED_DIR.iterdir() if p.is_dir()):
        shutil.copytree(BUNDLED_DIR / name, destination / name)
    return destination


# ---------------------------------------------------------------- gRPC
class EchoServer:
    """A gRPC server on loopback whose ``/echo.Echo/Who`` answers with its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.calls = 0
        self._server: grpc.aio.Server | None = None

    async def _who(self, request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        self.calls += 1
        return self.name.encode()

    async def start(self) -> EchoServer:
        handler = grpc.method_handlers_generic_handler(
            "echo.Echo", {"Who": grpc.unary_unary_rpc_method_handler(self._who)}
        )
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((handler,))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=None)
            self._server = None


@asynccontextmanager
async def echo_servers(*names: str) -> AsyncIterator[dict[str, EchoServer]]:
    servers = {name: await EchoServer(name).start() for name in names}
    try:
        yield servers
    finally:
        for server in servers.values():
            await server.stop()


def grpc_bootstrap(xds_port: int, node_id: str, cluster: str = "grpc-clients") -> dict[str, Any]:
    return {
        "xds_servers": [
            {
                "server_uri": f"127.0.0.1:{xds_port}",
                "channel_creds": [{"type": "insecure"}],
                "server_features": ["xds_v3"],
            }
        ],
        "node": {"id": node_id, "cluster": cluster, "locality": {"region": "dc1"}},
    }


class GrpcClient:
    """``tests.templates.grpc_client`` in a subprocess, driven over stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def _line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        raw = await within(self.process.stdout.readline(), timeout)
        if not raw:
            raise AssertionError(f"gRPC client exited with {await self.process.wait()}")
        return raw.decode().strip()

    async def calls(
        self, count: int = 8, timeout: float = 30, metadata: Mapping[str, str] | None = None
    ) -> list[str]:
        assert self.process.stdin is not None
        pairs = "".join(f" {key}={value}" for key, value in (metadata or {}).items())
        self.process.stdin.write(f"call {count}{pairs}\n".encode())
        await self.process.stdin.drain()
        answers: list[str] = json.loads(await self._line(timeout))
        return answers


@asynccontextmanager
async def grpc_client(
    target: str, bootstrap: dict[str, Any], workdir: Path
) -> AsyncIterator[GrpcClient]:
    path = workdir / "grpc-bootstrap.json"
    path.write_text(json.dumps(bootstrap))
    env = {**os.environ, "GRPC_XDS_BOOTSTRAP": str(path), "PYTHONPATH": str(REPO)}
    log = (workdir / "grpc-client.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.templates.grpc_client",
        target,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=log,
        cwd=str(REPO),
        env=env,
    )
    client = GrpcClient(process)
    try:
        assert await client._line(30) == "ready"
        yield client
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await within(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()
        log.close()


# ---------------------------------------------------------------- traffic through Envoy
@dataclass
class TrafficProbe:
    """Requests through an Envoy listener, back to back until stopped (bounded); every answer
    that is not a 200 from a backend, and every refused or broken connection, is a failure."""

    port: int
    host: str = "web"
    sent: int = 0
    failed: list[str] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self, limit: int = 50_000) -> None:
        while not self._stop.is_set() and self.sent < limit:
            try:
                status, body = await get(self.port, host=self.host)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status, body = 0, repr(exc)
            self.sent += 1
            if status != 200:
                self.failed.append(f"{status}: {body[:80]}")
            await asyncio.sleep(0.005)  # pacing: about 100 requests a second at most

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TrafficProbe]:
        task = asyncio.create_task(self.run())
        try:
            yield self
        finally:
            self._stop.set()
            await task
