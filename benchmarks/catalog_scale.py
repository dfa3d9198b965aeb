"""B3 catalog scale: 10,000 services x 10 instances in the Consul double, one xDS client.

Three processes: the Consul double (``python -m consul_double --seed-services``), the bridge
(:mod:`benchmarks.bridge_host`, the bridge as ``serve`` builds it, alone in its process) and
this one (one xDS client that decodes the 10,000-resource responses, and the writer of
changes). CPU and memory figures are the bridge process's own: the client's decoding is not in
them. The double refuses (429) any connection of the bridge above the cap
(``consul.max_connections``), so any excess would show. Figures:

* initial sync: the bridge host calling ``bridge.start()`` → the bridge ready (every selected
  service read; polled every 5 ms in the bridge process), and the bridge's CPU time meanwhile;
* the bridge process's RSS: before the start, once ready, with the client subscribed, at the end
  after ``gc.collect()``, and its peak (VmHWM) over the whole run;
* concurrent Consul connections: the bridge's own peak (counted in the bridge) and 429s;
* single-instance change → the client has the EDS update carrying it (and ACKed it), with all
  services watched: check-status flips (attributed through the health trigger) and port
  changes (which only bump the catalog index, so they wait for a sweep);
* N changes/s for D seconds, health flapping (a random instance fails; once 50 are critical
  the longest-failed one recovers), writes sent on schedule whatever the bridge does: latency
  from each write's scheduled instant to the client having it, and the bridge process's CPU
  time (user + system, all threads) over the window, as % of one core.

Single changes are measured one at a time (write, wait until the client has it, 200 ms pause).
The bridge runs with ``consul.max_connections`` 100 and ``consul.min_interval`` 100 ms (the
defaults); ``--min-interval S`` and ``--duration S`` run a variant (printed, not written).

Run: ``.venv/bin/python -m benchmarks.catalog_scale [--quick]``.
Writes ``benchmarks/results/catalog_scale.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from benchmarks.bridge_host import BridgeHost, bridge_host
from benchmarks.common import MIB, Row, check_range, mib, percentile, save_result, until
from benchmarks.scale_load import BigClient, Pending, Watcher, Writer
from bridge.tasks import within
from consul_double import seed
from xds_server.resource import CLUSTER

NAME = "catalog_scale"
REPO = Path(__file__).resolve().parent.parent
NODE_ID = "bench-catalog-scale"
CAP = 100  # consul.max_connections (the default)


@dataclass(frozen=True)
class Size:
    services: int
    instances: int
    nodes: int
    single_changes: int
    sweep_changes: int
    rate: float  # changes per second, sustained
    duration: float  # seconds
    sync_timeout: float
    min_interval: float = 0.1  # consul.min_interval (the default)


QUICK = Size(500, 3, 50, 5, 2, 20.0, 3.0, 60.0)
FULL = Size(10_000, 10, 1_000, 20, 5, 100.0, 60.0, 300.0)


# ------------------------------------------------------------------ the Consul double process
@contextlib.asynccontextmanager
async def consul_process(size: Size, stats_file: Path) -> AsyncIterator[str]:
    """``python -m consul_double`` seeded with the catalog; yields its URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consul_double",
        "--port", "0",
        "--max-conns-per-client", str(CAP),
        "--seed-services", str(size.services),
        "--seed-instances", str(size.instances),
        "--seed-nodes", str(size.nodes),
        "--stats-file", str(stats_file),
        "--stop-on-eof",  # if this process dies, the double goes too
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=REPO,  # the repository: ``-m consul_double`` finds the double
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = await within(proc.stdout.readline(), 300)
        text = line.decode().strip()
        if not text.startswith("consul double serving "):
            raise RuntimeError(f"the Consul double did not start: {text!r}")
        yield text.split()[3]
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await within(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


# ------------------------------------------------------------------ figures
def summary(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "median": None, "p90": None, "p99": None, "max": None}
    return {
        "count": len(values),
        "median": round(statistics.median(values), 1),
        "p90": round(percentile(values, 0.9), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
    }


def progress(message: str) -> None:
    """One line on stderr, so a long run shows where it is."""
    print(f"[{NAME} {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def measure(quick: bool) -> dict[str, Any]:
    return await measure_size(QUICK if quick else FULL)


async def measure_size(size: Size) -> dict[str, Any]:
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "consul-stats.json"
        progress(f"seeding {size.services} x {size.instances} in the Consul double")
        async with consul_process(size, stats_file) as url:
            result = await _measure(size, url, rng)
        consul_stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
    result["consul_double"] = consul_stats
    result["consul_connections"]["rejected_429"] = consul_stats.get("rejected_429")
    result["consul_connections"]["double_max_concurrent_incl_writer"] = consul_stats.get(
        "max_concurrent_connections"
    )
    return result


async def _measure(size: Size, url: str, rng: random.Random) -> dict[str, Any]:
    settings = {
        "consul_wait": "60s",
        "consul_max_connections": str(CAP),
        "consul_min_interval": str(size.min_interval),
    }
    async with bridge_host(url, **settings) as host:
        return await _with_bridge(size, url, rng, host)


async def _with_bridge(
    size: Size, url: str, rng: random.Random, host: BridgeHost
) -> dict[str, Any]:
    started = await host.request("stats")
    ready = await host.request("ready", timeout=size.sync_timeout)
    sync_s = ready["t"] - host.info["started"]
    sync_cpu_s = ready["cpu_s"] - host.info["cpu_s"]
    progress(f"bridge ready after {sync_s:.1f} s")
    at_ready = await host.request("stats", modes=True)
    writer = Writer(url, size.services, size.instances, size.nodes)
    client = BigClient(f"127.0.0.1:{host.xds_port}", NODE_ID)
    watcher = Watcher(client)
    reader: asyncio.Task[None] | None = None
    try:
        subscribed = time.perf_counter()
        await client.send(CLUSTER)
        reader = asyncio.create_task(watcher.run(), name="xds-client")
        await until(
            lambda: len(watcher.eds_seen) >= size.services or reader.done(),
            size.sync_timeout,
            "the client's first EDS",
        )
        if reader.done():
            reader.result()
        subscribe_s = time.perf_counter() - subscribed
        progress(f"client has {len(watcher.eds_seen)} assignments after {subscribe_s:.1f} s")
        at_subscribed = await host.request("stats")

        single: list[float] = []
        sweep: list[float] = []
        lost = 0
        for kind, count, into in (
            ("check", size.single_changes, single),
            ("port", size.sweep_changes, sweep),
        ):
            for _ in range(count):
                lost += await _one_change(size, rng, writer, watcher, kind, into)
                await asyncio.sleep(0.2)
            progress(f"{count} single {kind} changes: {[round(v) for v in into]} ms")

        before = await host.request("stats")
        sustained, sustained_lost, writes_s, wall_s, drained = await _sustained(
            size, rng, writer, watcher
        )
        after = await host.request("stats")
        cpu_s = after["cpu_s"] - before["cpu_s"]
        at_end = await host.request("stats", gc=True)
    finally:
        if reader is not None:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader
        await client.close()
        await writer.close()
    peak = max(at_end["peak"], at_ready["peak"])
    check_range("bridge peak RSS", peak, 10 * MIB, 64 * 2**30, "B")
    return {
        "cores": os.cpu_count(),
        "services": size.services,
        "instances_per_service": size.instances,
        "nodes": size.nodes,
        "consul_min_interval_s": size.min_interval,
        "bridge_process": "benchmarks.bridge_host (the bridge as serve builds it, alone)",
        "initial_sync_s": round(sync_s, 2),
        "initial_sync_cpu_s": round(sync_cpu_s, 2),
        "client_subscribe_s": round(subscribe_s, 2),
        "watcher_modes": at_ready["modes"],
        "rss_mib": {
            "before_start": mib(started["rss"]),
            "ready": mib(at_ready["rss"]),
            "client_subscribed": mib(at_subscribed["rss"]),
            "end_after_gc": mib(at_end["rss"]),
            "peak": mib(peak),
        },
        "consul_connections": {"cap": CAP, "bridge_peak": at_end["consul_peak"]},
        "single_change_ms": summary(single),
        "sweep_change_ms": summary(sweep),
        "single_lost": lost,
        "sustained": {
            "rate_per_s": size.rate,
            "duration_s": size.duration,
            "changes": int(size.rate * size.duration),
            "writes_took_s": round(writes_s, 2),
            "all_arrived": drained,
            "lost": sustained_lost,
            "latency_ms": summary(sustained),
            "bridge_cpu_s": round(cpu_s, 2),
            "window_s": round(wall_s, 2),
            "cpu_pct_of_one_core": round(100 * cpu_s / wall_s, 1),
        },
        "latencies_ms": {
            "single_change": [round(v, 2) for v in single],
            "sweep_change": [round(v, 2) for v in sweep],
            "sustained": [round(v, 2) for v in sustained],
        },
        "xds_responses": watcher.responses,
    }


async def _one_change(
    size: Size, rng: random.Random, writer: Writer, watcher: Watcher, kind: str, into: list[float]
) -> int:
    """One change, then wait until the client has it; the number of changes lost (0 or 1)."""
    i, j = rng.randrange(size.services), rng.randrange(size.instances)
    t0 = time.perf_counter()
    if kind == "check":
        health, port = await writer.flip_check(i, j)
    else:
        health, port = await writer.move_port(i, j)
    address = seed.instance_address(i, j)
    watcher.expect(Pending(seed.service_name(i), address, health, port, t0, into))
    if await watcher.wait_all(60):
        return 0
    lost = watcher.waiting()
    watcher.pending.clear()
    return lost


async def _sustained(
    size: Size, rng: random.Random, writer: Writer, watcher: Watcher
) -> tuple[list[float], int, float, float, bool]:
    """``rate`` changes/s for ``duration`` s: health flapping (a random instance fails; once
    FLAPPING are critical the longest-failed one recovers, as in a mostly healthy fleet).
    Writes go out on schedule without waiting for each other; a change's clock starts at its
    scheduled instant, so a late write counts against it.
    → (latencies ms, lost, seconds the writes took, window seconds, all arrived)."""
    sustained: list[float] = []
    total = int(size.rate * size.duration)
    writes: list[asyncio.Task[None]] = []
    wall0 = time.perf_counter()
    for k in range(total):
        t0 = wall0 + k / size.rate
        delay = t0 - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        i, j = writer.next_flap(rng, watcher.pending)
        url, health, port = writer.flip(i, j)
        address = seed.instance_address(i, j)
        watcher.expect(Pending(seed.service_name(i), address, health, port, t0, sustained))
        writes.append(asyncio.create_task(writer.put(url)))
    await asyncio.gather(*writes)
    writes_s = time.perf_counter() - wall0
    progress(f"{total} sustained writes in {writes_s:.1f} s; waiting for the last ones")
    drained = await watcher.wait_all(60)
    wall_s = time.perf_counter() - wall0
    lost = watcher.waiting()
    watcher.pending.clear()
    return sustained, lost, writes_s, wall_s, drained


def _fmt(value: Any, unit: str) -> str:
    return "n/a" if value is None else f"{value:,} {unit}".strip()


def table_rows(result: dict[str, Any]) -> list[Row]:
    size = f"{result['services']:,} services x {result['instances_per_service']}"
    conns = result["consul_connections"]
    single, sweep = result["single_change_ms"], result["sweep_change_ms"]
    sustained = result["sustained"]
    lat = sustained["latency_ms"]
    return [
        Row(
            "B3.initial_sync",
            f"B3 initial sync, {size}: bridge start → ready (every service read), bridge process",
            "<= 30 s",
            f"{result['initial_sync_s']} s ({result['initial_sync_cpu_s']} s CPU)",
            result["initial_sync_s"],
            "s",
        ),
        Row(
            "B3.peak_rss",
            f"B3 bridge process peak RSS (VmHWM, whole run), {size}",
            "<= 1 GiB",
            f"{result['rss_mib']['peak']} MiB (after gc at the end: "
            f"{result['rss_mib']['end_after_gc']} MiB)",
            result["rss_mib"]["peak"],
            "MiB",
        ),
        Row(
            "B3.consul_connections",
            "B3 Consul connections: bridge's peak concurrent (cap) / 429s from the double",
            f"<= {conns['cap']} / 0",
            f"{conns['bridge_peak']} / {conns.get('rejected_429')}",
            conns["bridge_peak"],
            "connections",
            high=conns["cap"],
        ),
        Row(
            "B3.check_change",
            "B3 one check change: Consul write → xDS client has the EDS update (median/p90/max)",
            "reported",
            f"{_fmt(single['median'], '')}/{_fmt(single['p90'], '')}/{_fmt(single['max'], 'ms')}",
            single["median"],
            "ms",
        ),
        Row(
            "B3.port_change",
            "B3 one port change (waits for a sweep): Consul write → client has it (median/max)",
            "reported",
            f"{_fmt(sweep['median'], '')}/{_fmt(sweep['max'], 'ms')}",
            sweep["median"],
            "ms",
        ),
        Row(
            "B3.sustained",
            f"B3 {sustained['rate_per_s']:g} changes/s for {sustained['duration_s']:g} s: "
            "scheduled write → client has it (median/p99/max)",
            "reported",
            f"{_fmt(lat['median'], '')}/{_fmt(lat['p99'], '')}/{_fmt(lat['max'], 'ms')}"
            f", lost {sustained['lost']}",
            lat["median"],
            "ms",
        ),
        Row(
            "B3.sustained_cpu",
            "B3 bridge process CPU (user+sys, all threads) at that rate",
            "reported",
            f"{sustained['cpu_pct_of_one_core']} % of one core",
            sustained["cpu_pct_of_one_core"],
            "%",
        ),
    ]


async def main() -> None:
    size = QUICK if "--quick" in sys.argv else FULL
    if "--duration" in sys.argv:  # a shorter sustained phase (for before/after comparisons)
        size = replace(size, duration=float(sys.argv[sys.argv.index("--duration") + 1]))
    if "--min-interval" in sys.argv:  # consul.min_interval (spacing of watches and re-reads)
        size = replace(size, min_interval=float(sys.argv[sys.argv.index("--min-interval") + 1]))
    result = await measure_size(size)
    if size in (QUICK, FULL):  # a variant (overridden settings) is printed only
        save_result(NAME, result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
