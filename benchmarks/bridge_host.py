"""The bridge under measurement, alone in a process of its own, driven over a pipe.

``python -m benchmarks.bridge_host`` builds the bridge as ``consul-xds-bridge serve`` does (the
settings table from ``CONSUL_XDS_BRIDGE_*`` variables, the template source, the bridge, and the
same ``gc.freeze()`` once the first read is done), starts it and prints one JSON line:
``{"xds_port", "admin_port", "pid", "started", "cpu_s"}``. It then answers one JSON request per
line on stdin with one JSON line on stdout, and stops the bridge when stdin closes:

* ``{"op": "ready"}``: waits for the first complete read → ``{"t", "cpu_s"}`` (when it was
  first seen ready, polled every 5 ms, and the process CPU time then);
* ``{"op": "stats", "gc": true, "modes": true}``: ``gc.collect()`` first if asked, then this
  process's ``rss`` and ``peak`` (bytes), ``cpu_s`` (user + system, all threads), open
  ``streams``, ``snapshot_keys``, the peak of concurrent Consul connections, the watch modes;
* ``{"op": "acks", "type_url", "after", "count", "timeout"}``: waits until ``count`` nodes ACKed
  that type at or after ``after`` (CLOCK_MONOTONIC, shared by every process of the machine)
  → ``{"acks": [[t, version, node_id], ...]}``, each node's first; older records are dropped;
* ``{"op": "histogram", "type": "endpoint"}``: the push-latency histogram's count and sum.

Nothing else runs in this process: the load (xDS clients, Consul writes) and the clocks that
start a measurement live in the benchmark's process. :class:`BridgeHost` is that side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.common import memory_bytes, until
from xds_server.tracking import BaseObserver, StreamInfo

REPO = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------ the child process
class _Acks(BaseObserver):
    """Every ACK as (monotonic time, type URL, version, node id), and at most one waiter.

    The waiter's count is kept up to date as ACKs arrive (constant work per ACK), so waiting
    for 5,000 streams costs the bridge process no more than the ACKs themselves."""

    def __init__(self) -> None:
        self.records: list[tuple[float, str, str, str]] = []
        self._type_url = ""
        self._first: dict[str, list[Any]] | None = None
        self._count = 0
        self._done = asyncio.Event()

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        record = (time.monotonic(), type_url, version, stream.node_id)
        self.records.append(record)
        self._note(record)

    def _note(self, record: tuple[float, str, str, str]) -> None:
        t, type_url, version, node = record
        first = self._first
        if first is None or type_url != self._type_url or node in first:
            return
        first[node] = [t, version, node]
        if len(first) >= self._count:
            self._done.set()

    async def wait(self, type_url: str, after: float, count: int) -> list[list[Any]]:
        """The first ACK of each node at or after ``after``, once ``count`` nodes ACKed."""
        self.records = [r for r in self.records if r[0] >= after]
        self._type_url, self._count, self._first = type_url, count, {}
        self._done.clear()
        try:
            for record in self.records:
                self._note(record)
            if len(self._first) < count:
                await self._done.wait()
            return list(self._first.values())
        finally:
            self._first = None


class _Host:
    def __init__(self) -> None:
        from bridge.app import Bridge, bridge_config
        from bridge.config import load
        from bridge.templating import template_source_from_config

        config = load({}, os.environ)
        logging.basicConfig(level=config["log.level"].upper(), stream=sys.stderr)
        settings = bridge_config(config)
        templates = template_source_from_config(config, settings.build)
        self.bridge = Bridge(settings, templates)
        self.acks = _Acks()
        self.bridge.registry.add_observer(self.acks)
        self.consul_peak = 0
        self._report: Callable[[int], None] | None = self.bridge.client.on_connections
        self.bridge.client.on_connections = self._connections
        self.ready = asyncio.Event()
        self.ready_at = (0.0, 0.0)

    def _connections(self, value: int) -> None:
        self.consul_peak = max(self.consul_peak, value)
        if self._report is not None:
            self._report(value)

    async def watch_ready(self) -> None:
        await until(lambda: self.bridge.readiness()[0], 24 * 3600, "ready", interval=0.005)
        self.ready_at = (time.monotonic(), time.process_time())
        self.ready.set()
        gc.collect()  # as serve does once ready: long-lived objects out of the GC's sight
        gc.freeze()

    async def handle(self, request: Mapping[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "ready":
            await self.ready.wait()
            return {"t": self.ready_at[0], "cpu_s": self.ready_at[1]}
        if op == "stats":
            if request.get("gc"):
                gc.collect()
            return {
                **memory_bytes(),
                "cpu_s": time.process_time(),
                "streams": len(self.bridge.registry.streams),
                "snapshot_keys": len(self.bridge.cache.snapshot_keys()),
                "consul_peak": self.consul_peak,
                "modes": self.bridge.watcher.status()["modes"] if request.get("modes") else {},
            }
        if op == "acks":
            acks = await self.acks.wait(request["type_url"], request["after"], request["count"])
            return {"acks": acks}
        if op == "histogram":
            registry = self.bridge.metrics.registry
            labels = {"type": request.get("type", "endpoint")}
            name = "consul_xds_push_latency_seconds"
            return {
                "count": registry.get_sample_value(f"{name}_count", labels) or 0.0,
                "sum": registry.get_sample_value(f"{name}_sum", labels) or 0.0,
            }
        raise ValueError(f"unknown op {op!r}")


def _reply(message: Mapping[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _serve() -> None:
    host = _Host()
    started, cpu = time.monotonic(), time.process_time()
    await host.bridge.start()
    watcher = asyncio.create_task(host.watch_ready(), name="bench-ready")
    bridge = host.bridge
    _reply(
        {
            "xds_port": bridge.xds_port,
            "admin_port": bridge.admin_port,
            "pid": os.getpid(),
            "started": started,
            "cpu_s": cpu,
        }
    )
    reader = asyncio.StreamReader(limit=2**20)
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        while line := await reader.readline():
            request = json.loads(line)
            try:
                async with asyncio.timeout(float(request.get("timeout", 120))):
                    _reply(await host.handle(request))
            except (TimeoutError, ValueError, KeyError) as exc:
                _reply({"error": f"{type(exc).__name__}: {exc}"})
    finally:
        watcher.cancel()
        await bridge.stop()


# ------------------------------------------------------------------ the benchmark's side
class BridgeHost:
    """The parent's handle on a bridge host process (see the module docs)."""

    def __init__(self, process: asyncio.subprocess.Process, info: dict[str, Any], log: Path):
        self.process = process
        self.info = info
        self.log = log
        self._lock = asyncio.Lock()

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def xds_port(self) -> int:
        return int(self.info["xds_port"])

    @property
    def admin_port(self) -> int:
        return int(self.info["admin_port"])

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    async def request(self, op: str, timeout: float = 120.0, **args: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        async with self._lock:
            message = {"op": op, "timeout": timeout, **args}
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            await self.process.stdin.drain()
            async with asyncio.timeout(timeout + 30):
                line = await self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the bridge host exited; its log:\n{self.log_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"bridge host {op}: {reply['error']}")
        return reply


def host_env(consul_url: str, **settings: str) -> dict[str, str]:
    """Environment for a host: ``settings`` are setting keys with ``_`` for ``.``, e.g.
    ``consul_max_connections="100"`` for ``consul.max_connections``."""
    env = {
        **os.environ,
        "CONSUL_XDS_BRIDGE_CONSUL_ADDRESS": consul_url,
        "CONSUL_XDS_BRIDGE_XDS_LISTEN": "127.0.0.1:0",
        "CONSUL_XDS_BRIDGE_ADMIN_LISTEN": "127.0.0.1:0",
        "CONSUL_XDS_BRIDGE_LOG_LEVEL": "warning",
    }
    env.update({f"CONSUL_XDS_BRIDGE_{k.upper()}": v for k, v in settings.items()})
    return env


@contextlib.asynccontextmanager
async def bridge_host(consul_url: str, **settings: str) -> AsyncIterator[BridgeHost]:
    """Start a bridge host against ``consul_url``; stop it (closing its stdin) on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-host-") as tmp:
        log = Path(tmp) / "bridge.log"
        with log.open("wb") as err:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "benchmarks.bridge_host",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                env=host_env(consul_url, **settings),
                cwd=REPO,
            )
        try:
            assert process.stdout is not None
            async with asyncio.timeout(120):
                first = await process.stdout.readline()
            if not first:
                raise RuntimeError(f"the bridge host did not start:\n{log.read_text()[-3000:]}")
            yield BridgeHost(process, json.loads(first), log)
        finally:
            await _stop(process)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    if process.stdin is not None:
        process.stdin.close()
    try:
        async with asyncio.timeout(20):
            await process.wait()
    except TimeoutError:
        process.kill()
        await process.wait()


if __name__ == "__main__":
    asyncio.run(_serve())
