"""B2 fan-out: one endpoint change in Consul pushed to N concurrent ADS streams.

Three kinds of process: the bridge (:mod:`benchmarks.bridge_host`: the bridge as ``serve``
builds it, alone), the xDS clients (``benchmarks.fanout_client``, up to 1,000 streams per
process, each ACKing like Envoy) and this one (the Consul double, 20 services x 3 instances,
and the clocks). Each change re-registers one instance of ``svc0`` on a new port, ``SPACING_S``
after the previous one was ACKed everywhere; per size:

* latency: the Consul write (this process) → each stream's EDS ACK arriving at the bridge
  (p50/p99/max over streams and changes), and → each client receiving the update;
* the bridge's push-latency histogram (Consul response → ACK, the bridge's own view);
* bridge CPU per change: user + system time of the bridge process, all threads, from just
  before the write until the last stream ACKed (median over changes);
* memory per idle stream: the bridge process's RSS after ``gc.collect()`` with every stream
  synced (CDS + EDS) minus the same with only the first tenth connected, divided by the other
  nine tenths (so one-time costs of the first connections are not counted). Implausible
  figures (< 1 KiB or > 10 MiB per stream) fail the run; sizes below ``MEMORY_MIN_STREAMS``
  streams are under the resolution of RSS and report no memory figure.

Run: ``.venv/bin/python -m benchmarks.fanout [--quick]``; writes ``benchmarks/results/fanout.json``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from typing import Any

from benchmarks.bridge_host import BridgeHost, bridge_host
from benchmarks.common import KIB, MIB, ImplausibleResult, Row, check_range, save_result, spread
from consul_double import ConsulDouble

NAME = "fanout"
PER_PROCESS = 1000
SERVICES = 20
MEMORY_MIN_STREAMS = 100
#: Pause before each change: more than consul.min_interval (0.1 s between two calls of one
#: watch), so that every change finds the bridge's blocking query held by Consul.
SPACING_S = 0.25
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


async def start_clients(target: str, streams: int, first: int) -> list[asyncio.subprocess.Process]:
    clients = []
    for start in range(first, first + streams, PER_PROCESS):
        count = min(PER_PROCESS, first + streams - start)
        clients.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.fanout_client", target, str(count), str(start),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        )  # fmt: skip
    for client in clients:
        assert client.stdout is not None
        async with asyncio.timeout(300):
            line = await client.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"a client process failed to sync: {line!r}")
    return clients


async def client_records(clients: list[asyncio.subprocess.Process]) -> list[list[Any]]:
    records: list[list[Any]] = []
    for client in clients:
        assert client.stdin is not None
        assert client.stdout is not None
        client.stdin.write(b"report\n")
        await client.stdin.drain()
        async with asyncio.timeout(60):
            records.extend(json.loads(await client.stdout.read()))
            await client.wait()
    return records


def register(consul: ConsulDouble, service: int, instance: int, port: int) -> None:
    consul.register(
        f"svc{service}",
        id=f"svc{service}-{instance}",
        address=f"10.0.{service}.{instance + 1}",
        port=port,
        node=f"node{instance}",
    )


async def idle_memory(host: BridgeHost, target: str, streams: int) -> tuple[list[Any], int | None]:
    """Connect every stream; the bridge's RSS per idle stream (None below the resolution)."""
    warm = max(1, streams // 10)
    clients = await start_clients(target, warm, 0)
    before = await host.request("stats", gc=True)
    clients += await start_clients(target, streams - warm, warm)
    after = await host.request("stats", gc=True)
    if after["streams"] != streams:
        raise ImplausibleResult(f"{after['streams']} streams open at the bridge, not {streams}")
    if streams < MEMORY_MIN_STREAMS:
        return clients, None
    per_stream = (after["rss"] - before["rss"]) / (streams - warm)
    check_range(f"bridge RSS per idle stream ({streams} streams)", per_stream, KIB, 10 * MIB, "B")
    return clients, int(per_stream)


async def one_size(streams: int, changes: int) -> dict[str, Any]:
    async with ConsulDouble() as consul:
        for service in range(SERVICES):
            for instance in range(3):
                register(consul, service, instance, 8000 + 10 * service + instance)
        async with bridge_host(consul.url, consul_wait="60s") as host:
            await host.request("ready")
            clients: list[asyncio.subprocess.Process] = []
            try:
                clients, per_stream = await idle_memory(host, f"127.0.0.1:{host.xds_port}", streams)
                starts: dict[str, float] = {}
                bridge_side: list[float] = []
                cpu_ms: list[float] = []
                for change in range(changes):
                    await asyncio.sleep(SPACING_S)
                    cpu = (await host.request("stats"))["cpu_s"]
                    started = time.monotonic()
                    register(consul, 0, 0, 20000 + change)
                    reply = await host.request("acks", type_url=ENDPOINT, after=started,
                                               count=streams)  # fmt: skip
                    cpu_ms.append(((await host.request("stats"))["cpu_s"] - cpu) * 1000)
                    for t, version, _node in reply["acks"]:
                        starts.setdefault(version, started)
                        bridge_side.append((t - started) * 1000)
                histogram = await host.request("histogram", type="endpoint")
                records = await client_records(clients)
            finally:
                for client in clients:
                    if client.returncode is None:
                        client.kill()
                        await client.wait()
    client_side = [(t - starts[v]) * 1000 for _, t, v in records if v in starts]
    cpu = statistics.median(cpu_ms)
    return {
        "streams": streams,
        "changes": changes,
        "versions": len(starts),
        "write_to_bridge_ack_ms": spread(bridge_side),
        "write_to_client_received_ms": spread(client_side),
        "histogram": {
            "observations": int(histogram["count"]),
            "mean_ms": round(histogram["sum"] / max(histogram["count"], 1) * 1000, 2),
        },
        "cpu_ms_per_change": round(cpu, 2),
        "cpu_us_per_stream_per_change": round(cpu * 1000 / streams, 1),
        "bytes_per_idle_stream": per_stream,
        "latencies_ms": {"all_acked": [round(v, 1) for v in bridge_side]},
    }


async def measure(quick: bool) -> dict[str, Any]:
    sizes = (10, 100) if quick else (100, 1000, 5000)
    changes = 3 if quick else 10
    return {"sizes": [await one_size(streams, changes) for streams in sizes]}


def table_rows(result: dict[str, Any]) -> list[Row]:
    rows = []
    for size in result["sizes"]:
        n = size["streams"]
        acked = size["write_to_bridge_ack_ms"]
        rows.append(
            Row(
                f"B2.ack_p99.{n}",
                f"B2 Consul write → all {n:,} streams' EDS ACKs at the bridge (p99; bridge in "
                "its own process, clients in others)",
                "<= 1 s" if n == 1000 else "(report)",
                f"{acked['p99']:.0f} ms (p50 {acked['median']:.0f} ms); clients received: p99 "
                f"{size['write_to_client_received_ms']['p99']:.0f} ms",
                acked["p99"],
                "ms",
            )
        )
        rows.append(
            Row(
                f"B2.cpu_per_change.{n}",
                f"B2 bridge process CPU (user+sys) per change, write → last ACK, {n:,} streams",
                "grows only with sending",
                f"{size['cpu_ms_per_change']:.0f} ms "
                f"({size['cpu_us_per_stream_per_change']:.0f} µs per stream)",
                size["cpu_ms_per_change"],
                "ms",
            )
        )
        if size["bytes_per_idle_stream"] is not None:
            rows.append(
                Row(
                    f"B2.memory_per_stream.{n}",
                    f"B2 bridge process RSS per idle ADS stream after gc.collect(), {n:,} "
                    "streams (marginal over the first tenth)",
                    "—",
                    f"{size['bytes_per_idle_stream'] / KIB:.0f} KiB",
                    size["bytes_per_idle_stream"] / KIB,
                    "KiB",
                    low=1.0,
                    high=10 * 1024.0,
                )
            )
    return rows


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({"sizes": [{**s, "latencies_ms": "..."} for s in output["sizes"]]}, indent=2))
