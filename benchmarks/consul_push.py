"""Consul change → Envoy ACK, end to end: Consul double → bridge → real Envoy.

Each change is a write to the Consul double (deregister, register, check critical, check
passing, in turn); the clock stops when Envoy has ACKed an EDS version that carries it. Two runs:
changes spaced by ``--spacing`` seconds (an operator's pace), and back to back (each write right
after the previous ACK), where the watch's ``consul.min_interval`` (100 ms between calls of one
watch, to protect Consul) is the floor. Also reports the bridge's own histogram (Consul response
→ ACK) and the Consul connections used.

Run: ``.venv/bin/python -m benchmarks.consul_push [--changes 60] [--spacing 0.25]``.
Writes ``benchmarks/results/consul_push.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2

from benchmarks.common import percentile, save_result
from tests.support.bridge_env import running_stack
from tests.support.recorder import Event, Recorder
from xds_server.resource import ENDPOINT

NODE = "bench-consul"


def healthy_ports(stack: Any) -> set[int]:
    resource = stack.bridge.publisher.endpoints.get("web")
    if resource is None:
        return set()
    assert isinstance(resource.message, endpoint_pb2.ClusterLoadAssignment)
    return {
        lb.endpoint.address.socket_address.port_value
        for locality in resource.message.endpoints
        for lb in locality.lb_endpoints
        if lb.health_status == health_check_pb2.HEALTHY
    }


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(latencies), 2),
        "p90": round(percentile(latencies, 0.9), 2),
        "max": round(max(latencies), 2),
    }


async def run(changes: int, spacing: float) -> dict[str, Any]:
    async with running_stack(NODE) as stack:
        recorder = Recorder()
        stack.bridge.registry.add_observer(recorder)
        key = stack.bridge.registry.by_node(NODE)[0].node_key
        web1, web2 = stack.backends["web-1"].port, stack.backends["web-2"].port
        steps: list[tuple[Callable[[], None], set[int]]] = [
            (lambda: stack.consul.deregister("web-2"), {web1}),
            (lambda: stack.register("web-2", node="node2"), {web1, web2}),
            (lambda: stack.consul.set_check_status("service:web-2", "critical"), {web1}),
            (lambda: stack.consul.set_check_status("service:web-2", "passing"), {web1, web2}),
        ]
        spaced: list[float] = []
        back_to_back: list[float] = []
        for i in range(2 * changes):
            latencies = spaced if i < changes else back_to_back
            if i < changes:
                await asyncio.sleep(spacing)
            change, expected = steps[i % len(steps)]
            mark = len(recorder.events)
            started = time.perf_counter()
            change()

            def arrived(
                events: list[Event], expected: set[int] = expected, mark: int = mark
            ) -> bool:
                if healthy_ports(stack) != expected:
                    return False
                snapshot = stack.bridge.cache.get(key)
                current = snapshot.version(ENDPOINT) if snapshot else ""
                return any(
                    e.kind == "acked" and e.type_url == ENDPOINT and e.version == current
                    for e in events[mark:]
                )

            await recorder.wait_for(arrived, what=f"change {i} acked")
            latencies.append((time.perf_counter() - started) * 1000)
        histogram = stack.bridge.metrics.push_latency.labels("endpoint")
        samples = {s.name: s.value for m in histogram.collect() for s in m.samples}
        count = samples.get("consul_xds_push_latency_seconds_count", 0.0)
        total = samples.get("consul_xds_push_latency_seconds_sum", 0.0)
        return {
            "changes": changes,
            "spacing_s": spacing,
            "write_to_envoy_ack_ms_spaced": summary(spaced),
            "write_to_envoy_ack_ms_back_to_back": summary(back_to_back),
            "bridge_histogram_consul_response_to_ack_ms": {
                "observations": int(count),
                "mean": round(total / count * 1000, 2) if count else None,
            },
            "consul_connections": {
                "max_concurrent": stack.consul.stats.max_concurrent_connections,
                "watched_services": 1,
                "datacenters": 2,
            },
        }


NAME = "consul_push"


async def measure(quick: bool) -> dict[str, Any]:
    return {"cores": os.cpu_count(), **await run(8 if quick else 60, 0.25)}


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    spaced = result["write_to_envoy_ack_ms_spaced"]
    burst = result["write_to_envoy_ack_ms_back_to_back"]
    return [
        (
            f"Consul write → Envoy ACK, {result['changes']} changes "
            f"{result['spacing_s']:g} s apart",
            "(report)",
            f"median {spaced['median']:.1f} ms, p90 {spaced['p90']:.1f}, max {spaced['max']:.1f}",
        ),
        (
            "Consul write → Envoy ACK, back-to-back writes",
            "(report)",
            f"median {burst['median']:.1f} ms (consul.min_interval 100 ms between calls)",
        ),
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--spacing", type=float, default=0.25)
    args = parser.parse_args()
    result = {"cores": os.cpu_count(), **await run(args.changes, args.spacing)}
    save_result("consul_push", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
