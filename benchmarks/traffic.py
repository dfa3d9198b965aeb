"""Traffic through a real Envoy as the clock's stop, and a control plane run as its own process.

Used by B1 (:mod:`benchmarks.change_latency`), B4 (:mod:`benchmarks.peer_sovereign`) and the
operational latencies (:mod:`benchmarks.consul_recovery`, :mod:`benchmarks.template_reload`).

:class:`Probe` sends HTTP requests through one Envoy's listener back to back (``PROBE_PAUSE``
apart) and stops the clock at the first request whose answer proves a change: for an add, the
first request answered by ``web-2``; for a removal, the second of two consecutive ``web-1``
answers (Envoy's round robin over two hosts alternates strictly, so that cannot happen while
``web-2`` is still in), confirmed by ``CONFIRM`` ``web-1`` answers in a row. Each figure is late
by at most one probe interval (a few ms). The clock is this process's; the control planes run
elsewhere (:func:`control_plane`, :func:`serve_bridge`), so its work is never theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import spread, tree_cpu_seconds
from consul_double import ConsulDouble
from tests.support.backends import Backend
from tests.support.bridge_env import bridge_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIRM = 5  # consecutive web-1-only answers that confirm a removal
PROBE_PAUSE = 0.002  # seconds between probe requests through Envoy
CHANGE_TIMEOUT = 15.0  # per change; a change that never shows up fails the run
PAUSE_RANGE = (0.2, 1.2)  # seconds of random pause before each change
SEED = 7


@dataclass
class Probe:
    """Requests through one Envoy's listener with ``Host: web`` on one keep-alive session."""

    port: int
    session: aiohttp.ClientSession
    host: str = "web"
    sent: int = 0
    errors: int = 0

    async def answer(self, host: str | None = None) -> tuple[int, str]:
        self.sent += 1
        try:
            async with self.session.get(
                f"http://127.0.0.1:{self.port}/", headers={"Host": host or self.host}
            ) as response:
                return response.status, await response.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors += 1
            return 0, f"error {type(exc).__name__}"

    async def one(self) -> str:
        status, body = await self.answer()
        return body if status == 200 else f"HTTP {status}"

    async def settle(self, expected: set[str], timeout: float, what: str) -> None:
        """Wait until ``2 * CONFIRM`` consecutive answers cover exactly ``expected``."""
        deadline = time.monotonic() + timeout
        window: list[str] = []
        while time.monotonic() < deadline:
            window = [*window, await self.one()][-2 * CONFIRM :]
            if len(window) == 2 * CONFIRM and set(window) == expected:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"{what}: traffic never settled on {sorted(expected)}: {window}")

    async def follows(self, added: bool, started: float) -> float:
        """Milliseconds from ``started`` (perf_counter) until traffic shows the change."""
        proof: float | None = None
        run = 0
        while time.perf_counter() - started < CHANGE_TIMEOUT:
            sent_at = time.perf_counter()
            answer = await self.one()
            if added and answer == "web-2":
                return (sent_at - started) * 1000
            if not added:
                if answer == "web-1":
                    run += 1
                    if run == 2:  # two web-1 in a row: round robin no longer sees web-2
                        proof = sent_at
                    if run >= CONFIRM and proof is not None:
                        return (proof - started) * 1000
                else:
                    run, proof = 0, None
            await asyncio.sleep(PROBE_PAUSE)
        raise AssertionError(f"{'add' if added else 'removal'} not seen in {CHANGE_TIMEOUT}s")

    async def until(self, host: str, check: Callable[[int, str], bool], started: float) -> float:
        """Milliseconds from ``started`` until the first answer for ``host`` passing ``check``."""
        while time.perf_counter() - started < CHANGE_TIMEOUT:
            sent_at = time.perf_counter()
            if check(*await self.answer(host)):
                return (sent_at - started) * 1000
            await asyncio.sleep(PROBE_PAUSE)
        raise AssertionError(f"traffic for {host!r} did not change in {CHANGE_TIMEOUT}s")


@dataclass
class Catalog:
    """``web`` with instances ``web-1`` (node1) and ``web-2`` (node2) in the Consul double."""

    consul: ConsulDouble
    backends: dict[str, Backend]

    def register(self, name: str, node: str, **extra: Any) -> None:
        self.consul.register(
            "web", id=name, address="127.0.0.1", port=self.backends[name].port, node=node, **extra
        )

    def reset(self) -> None:
        """Both instances registered (the starting state of every phase)."""
        self.register("web-1", "node1")
        self.register("web-2", "node2")


# ------------------------------------------------------------------ control-plane processes
@contextlib.asynccontextmanager
async def control_plane(
    argv: list[str], env: Mapping[str, str], log: Path, cwd: Path
) -> AsyncIterator[int]:
    """A control plane subprocess (its own process group); yields its pid, stops it after.

    A process that exits early fails the caller's next step; its log says why."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            cwd=str(cwd),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc.pid
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(10):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


@dataclass(frozen=True)
class Served:
    """A running ``bridge serve`` process."""

    pid: int
    xds_port: int
    admin_port: int
    log: Path


@contextlib.asynccontextmanager
async def serve_bridge(consul_url: str, *extra_args: str, **env: str) -> AsyncIterator[Served]:
    """``python -m bridge serve`` against ``consul_url`` (log level warning) on free ports;
    ``env`` adds ``CONSUL_XDS_BRIDGE_*`` variables (``consul_wait="2s"`` → ``..._CONSUL_WAIT``)."""
    xds_port, admin_port = free_port(), free_port()
    variables = {
        **os.environ,
        "CONSUL_XDS_BRIDGE_CONSUL_ADDRESS": consul_url,
        "CONSUL_XDS_BRIDGE_XDS_LISTEN": f"127.0.0.1:{xds_port}",
        "CONSUL_XDS_BRIDGE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "CONSUL_XDS_BRIDGE_LOG_LEVEL": "warning",
        **{f"CONSUL_XDS_BRIDGE_{k.upper()}": v for k, v in env.items()},
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        log = Path(tmp) / "bridge.log"
        argv = [sys.executable, "-m", "bridge", "serve", *extra_args]
        async with control_plane(argv, variables, log, ROOT) as pid:
            yield Served(pid, xds_port, admin_port, log)


async def idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds the control plane spends staying current with nothing changing."""
    before = tree_cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return tree_cpu_seconds(pid) - before


async def run_changes(
    catalog: Catalog, probe: Probe, pid: int, changes: int
) -> tuple[list[float], float, float]:
    """``changes`` alternating removals/adds of web-2 after seeded random pauses: latencies
    (ms, Consul write → traffic follows), the control plane's CPU s, wall s."""
    pauses = random.Random(SEED)
    latencies: list[float] = []
    cpu_before, wall_before = tree_cpu_seconds(pid), time.perf_counter()
    for i in range(changes):
        await asyncio.sleep(pauses.uniform(*PAUSE_RANGE))
        added = i % 2 == 1
        started = time.perf_counter()
        if added:
            catalog.register("web-2", "node2")
        else:
            catalog.consul.deregister("web-2")
        latencies.append(await probe.follows(added, started))
    return latencies, tree_cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before


def phase_result(
    latencies: list[float],
    cpu: float,
    wall: float,
    idle: tuple[float, float],
    probe: Probe,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "idle_cpu_s": round(idle[0], 3),
        "idle_window_s": idle[1],
        "latency_ms": spread(latencies, 1),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_change": round(cpu / len(latencies) * 1000, 2),
        "phase_wall_s": round(wall, 2),
        "cpu_fraction_of_one_core": round(cpu / wall, 4),
        "probe_requests": probe.sent,
        "probe_errors": probe.errors,
        **extra,
    }


async def bridge_phase(
    catalog: Catalog, session: aiohttp.ClientSession, changes: int, idle_s: float
) -> tuple[list[float], dict[str, Any]]:
    """``bridge serve`` + one Envoy (static listener, CDS/EDS over ADS): idle CPU, then the
    changes."""
    ingress = free_port()
    catalog.reset()
    async with serve_bridge(catalog.consul.url) as bridge:
        bootstrap = bridge_bootstrap(bridge.xds_port, "bench-peer-bridge", ingress, ["web"])
        async with Envoy(bootstrap, name="bench-bridge-envoy"):
            probe = Probe(ingress, session)
            await probe.settle({"web-1", "web-2"}, 30, "bridge start")
            idle = (await idle_cpu(bridge.pid, idle_s), idle_s)
            latencies, cpu, wall = await run_changes(catalog, probe, bridge.pid, changes)
            return latencies, phase_result(latencies, cpu, wall, idle, probe)
