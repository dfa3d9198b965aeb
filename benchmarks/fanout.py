"""B2 fan-out: one endpoint change pushed to N concurrent ADS streams.

The bridge's serving path (publisher → snapshot cache → xDS server, with the metrics observer)
runs in this process; the N clients run in separate processes (``benchmarks.fanout_client``, up
to 1,000 streams each) and ACK like Envoy. For each change the clock starts when the publisher
receives the catalog update; reported per size:

* client side: when each client received the EDS update (CLOCK_MONOTONIC is shared by processes);
* bridge side: when each stream's ACK arrived (p50/p99/max), cross-checked with the bridge's own
  push-latency histogram;
* the bridge's CPU time per change (this process only: the clients are elsewhere), total and per
  stream, and RSS per idle stream.

Run: ``.venv/bin/python -m benchmarks.fanout [--quick]``; writes ``benchmarks/results/fanout.json``.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections.abc import Iterable
from typing import Any

from benchmarks.common import percentile, rss_bytes, save_result
from bridge.catalog import ServiceUpdate
from bridge.metrics import Metrics, XdsMetricsObserver
from bridge.model import Instance
from bridge.publisher import Publisher
from bridge.resources import BuildSettings
from bridge.tasks import within
from xds_server.cache import SnapshotCache
from xds_server.resource import ENDPOINT
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import BaseObserver, ClientRegistry, StreamInfo

NAME = "fanout"
PER_PROCESS = 1000
SERVICES = 20


def spread(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(statistics.median(values), 2),
        "p99": round(percentile(values, 0.99), 2),
        "max": round(max(values), 2),
    }


class AckTimes(BaseObserver):
    """Monotonic time of every EDS ACK, by version."""

    def __init__(self) -> None:
        self.by_version: dict[str, list[float]] = {}
        self.changed = asyncio.Event()

    def acked(self, stream: StreamInfo, type_url: str, version: str, nonce: str) -> None:
        if type_url == ENDPOINT:
            self.by_version.setdefault(version, []).append(time.monotonic())
            self.changed.set()

    async def wait_count(self, version: str, count: int, timeout: float) -> None:
        async def loop() -> None:
            while len(self.by_version.get(version, ())) < count:
                self.changed.clear()
                await self.changed.wait()

        await within(loop(), timeout)


def instances(service: str, port: int) -> tuple[Instance, ...]:
    return tuple(
        Instance(service, f"{service}-{i}", f"node{i}", "dc1", f"10.0.0.{i + 1}", port + i)
        for i in range(3)
    )


def catalog_updates(ports: Iterable[tuple[str, int]]) -> list[ServiceUpdate]:
    now = time.monotonic()
    return [ServiceUpdate(name, "dc1", instances(name, port), now) for name, port in ports]


async def start_clients(target: str, streams: int) -> list[asyncio.subprocess.Process]:
    clients = []
    for first in range(0, streams, PER_PROCESS):
        count = min(PER_PROCESS, streams - first)
        clients.append(
            await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.fanout_client", target, str(count), str(first),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            )
        )  # fmt: skip
    for client in clients:
        assert client.stdout is not None
        line = await within(client.stdout.readline(), 300)
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
        records.extend(json.loads(await within(client.stdout.read(), 60)))
        await client.wait()
    return records


async def one_size(streams: int, changes: int) -> dict[str, Any]:
    cache = SnapshotCache()
    registry = ClientRegistry()
    metrics = Metrics()
    registry.add_observer(XdsMetricsObserver(metrics, registry))
    acks = AckTimes()
    registry.add_observer(acks)
    publisher = Publisher(cache, BuildSettings(), debounce=0.0)
    publisher.set_datacenters(["dc1"])
    publisher.submit(catalog_updates((f"svc{i}", 8000 + 10 * i) for i in range(SERVICES)))
    publisher.mark_ready()
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    clients: list[asyncio.subprocess.Process] = []
    try:
        baseline = rss_bytes()
        clients = await start_clients(f"127.0.0.1:{port}", streams)
        loaded = rss_bytes()
        starts: dict[str, float] = {}
        bridge_side: list[float] = []
        cpu_ms: list[float] = []
        for change in range(changes):
            started, cpu = time.monotonic(), time.process_time()
            publisher.submit(catalog_updates([("svc0", 20000 + change)]))
            publisher.flush()
            version = cache.get(cache.snapshot_keys()[0]).version(ENDPOINT)  # type: ignore[union-attr]
            await acks.wait_count(version, streams, timeout=120)
            cpu_ms.append((time.process_time() - cpu) * 1000)
            starts[version] = started
            bridge_side += [(t - started) * 1000 for t in acks.by_version[version]]
        records = await client_records(clients)
        client_side = [(t - starts[v]) * 1000 for _, t, v in records if v in starts]
        observed = metrics.registry.get_sample_value(
            "consul_xds_push_latency_seconds_count", {"type": "endpoint"}
        )
        histogram_sum = metrics.registry.get_sample_value(
            "consul_xds_push_latency_seconds_sum", {"type": "endpoint"}
        )
        return {
            "streams": streams,
            "changes": changes,
            "client_received_ms": spread(client_side),
            "bridge_acked_ms": spread(bridge_side),
            "histogram": {
                "observations": int(observed or 0),
                "mean_ms": round((histogram_sum or 0) / (observed or 1) * 1000, 2),
            },
            "cpu_ms_per_change": round(statistics.median(cpu_ms), 2),
            "cpu_us_per_stream_per_change": round(statistics.median(cpu_ms) * 1000 / streams, 1),
            "bytes_per_idle_stream": int((loaded - baseline) / streams),
            "latencies_ms": {"all_acked": [round(v, 1) for v in bridge_side]},
        }
    finally:
        for client in clients:
            if client.returncode is None:
                client.kill()
                await client.wait()
        await server.stop(None)


async def measure(quick: bool) -> dict[str, Any]:
    sizes = (10, 100) if quick else (100, 1000, 5000)
    changes = 3 if quick else 10
    return {"sizes": [await one_size(streams, changes) for streams in sizes]}


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for size in result["sizes"]:
        target = "<= 1 s" if size["streams"] == 1000 else "(report)"
        acked = size["bridge_acked_ms"]
        rows.append(
            (
                f"B2 one endpoint change → all {size['streams']:,} streams ACKed (p99)",
                target,
                f"{acked['p99']:.0f} ms (p50 {acked['p50']:.0f} ms); client-side p99 "
                f"{size['client_received_ms']['p99']:.0f} ms",
            )
        )
        rows.append(
            (
                f"B2 bridge CPU per change, {size['streams']:,} streams",
                "grows only with sending",
                f"{size['cpu_ms_per_change']:.0f} ms "
                f"({size['cpu_us_per_stream_per_change']:.0f} µs per stream)",
            )
        )
        rows.append(
            (
                f"B2 memory per idle stream, {size['streams']:,} streams",
                "—",
                f"{size['bytes_per_idle_stream'] / 1024:.0f} KiB",
            )
        )
    return rows


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({"sizes": [{**s, "latencies_ms": "..."} for s in output["sizes"]]}, indent=2))
