"""Serving-core benchmark: snapshot change → real Envoy ACK, and memory per idle ADS stream.

Run: ``.venv/bin/python -m benchmarks.core_push [--changes 200] [--streams 1000]``.
Writes ``benchmarks/results/core_push.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from typing import Any

from benchmarks.common import percentile, rss_bytes, save_result
from bridge.tasks import within
from tests.support.envoy import Envoy, ads_bootstrap
from tests.support.ports import free_port
from tests.support.recorder import Recorder
from tests.support.xds_resources import eds_cluster, http_listener, load_assignment, route_config
from xds_server.cache import Snapshot, SnapshotCache
from xds_server.resource import ENDPOINT
from xds_server.server import DiscoveryServer, start_server
from xds_server.tracking import ClientRegistry

CLIENT_SCRIPT = """
import asyncio, sys
from tests.support.xds_client import XdsClient
from xds_server.resource import CLUSTER
async def main(target, count):
    clients = [XdsClient(target, node_id=f"idle-{i}") for i in range(count)]
    for c in clients:
        await c.send(CLUSTER)
    for c in clients:
        r = await c.recv(timeout=60)
        await c.ack(r)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


async def push_latency(changes: int) -> dict[str, Any]:
    cache = SnapshotCache()
    registry = ClientRegistry()
    recorder = Recorder()
    registry.add_observer(recorder)
    server, port = await start_server(DiscoveryServer(cache, registry), "127.0.0.1:0")
    node = "bench"
    cache.set_snapshot(
        node,
        Snapshot.of(
            [eds_cluster(f"svc{i}") for i in range(50)]
            + [load_assignment(f"svc{i}", [8000 + i]) for i in range(50)]
            + [http_listener("ingress", free_port(), "routes"), route_config("routes", {})]
        ),
    )
    latencies: list[float] = []
    async with Envoy(ads_bootstrap(port, node)):
        for i in range(changes):
            started = time.perf_counter()
            cache.update_resources(node, ENDPOINT, [load_assignment(f"svc{i % 50}", [9000 + i])])
            version = cache.get(node).version(ENDPOINT)  # type: ignore[union-attr]
            await recorder.wait_acked(ENDPOINT, version)
            latencies.append((time.perf_counter() - started) * 1000)
    await server.stop(None)
    return {
        "changes": changes,
        "median_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(percentile(latencies, 0.99), 3),
        "max_ms": round(max(latencies), 3),
    }


async def stream_memory(streams: int) -> dict[str, Any]:
    cache = SnapshotCache()
    registry = ClientRegistry()
    discovery = DiscoveryServer(cache, registry)
    server, port = await start_server(discovery, "127.0.0.1:0")
    for i in range(streams):
        cache.set_snapshot(f"idle-{i}", Snapshot.of([eds_cluster("a"), eds_cluster("b")]))
    baseline = rss_bytes()
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT_SCRIPT,
        f"127.0.0.1:{port}",
        str(streams),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    assert client.stdin is not None
    line = await within(client.stdout.readline(), 120)
    assert line.strip() == b"ready", line
    loaded = rss_bytes()
    connected = len(registry.streams)
    client.stdin.write(b"\n")
    await client.stdin.drain()
    await client.wait()
    await server.stop(None)
    return {
        "streams": streams,
        "connected": connected,
        "rss_baseline_mib": round(baseline / 2**20, 1),
        "rss_with_streams_mib": round(loaded / 2**20, 1),
        "bytes_per_idle_stream": int((loaded - baseline) / max(1, streams)),
    }


NAME = "core_push"


async def measure(quick: bool) -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "push_latency": await push_latency(20 if quick else 200),
        "stream_memory": await stream_memory(50 if quick else 1000),
    }


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    push, memory = result["push_latency"], result["stream_memory"]
    return [
        (
            f"snapshot change → real Envoy ACK, serving core ({push['changes']} changes)",
            "(report)",
            f"median {push['median_ms']:.2f} ms, p99 {push['p99_ms']:.2f} ms",
        ),
        (
            f"memory per idle ADS stream, serving core ({memory['streams']:,} streams)",
            "(report)",
            f"{memory['bytes_per_idle_stream'] / 1024:.0f} KiB",
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=200)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    result = {
        "cores": os.cpu_count(),
        "push_latency": await push_latency(args.changes),
        "stream_memory": await stream_memory(args.streams),
    }
    save_result("core_push", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
