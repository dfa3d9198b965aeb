"""Template rendering benchmark: one render of the default set, and 1,000 node keys of one group.

Run: ``.venv/bin/python -m benchmarks.template_render [--services 100] [--nodes 1000]``.
Writes ``benchmarks/results/template_render.json``.

Measured, for a catalog of ``--services`` services with 3 instances each:

* ``render_ms``: one uncached render of the default set for an Envoy (listeners + routes,
  parsed and checked), the median of several fresh sources;
* ``group_first_ms`` / ``group_total_ms``: ``node_resources`` for ``--nodes`` node keys of one
  group (distinct ids, same cluster and metadata) — one render, then cache hits;
* ``endpoint_change_ms``: all node keys again after an instance goes critical (no re-render);
* ``renders``: renders done in the group run (1 expected).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from typing import Any

from envoy.config.core.v3 import base_pb2

from benchmarks.common import Row, save_result
from bridge.catalog import Catalog, ServiceUpdate
from bridge.model import Check, Instance
from bridge.templating import TemplateSource


def _instance(service: str, n: int, status: str = "passing") -> Instance:
    return Instance(
        service=service,
        id=f"{service}-{n}",
        node=f"node{n}",
        datacenter="dc1",
        address=f"10.0.{n // 250}.{n % 250 + 1}",
        port=8080,
        checks=(Check(f"service:{service}-{n}", "c", status, f"{service}-{n}"),),
    )


def catalog_of(services: int) -> Catalog:
    catalog = Catalog(["dc1"])
    catalog.apply(
        ServiceUpdate(f"svc-{s}", "dc1", tuple(_instance(f"svc-{s}", s * 3 + i) for i in range(3)))
        for s in range(services)
    )
    return catalog


def node(i: int) -> base_pb2.Node:
    return base_pb2.Node(id=f"envoy-{i}", cluster="ingress", user_agent_name="envoy")


def run(services: int, nodes: int) -> dict[str, Any]:
    catalog = catalog_of(services)
    single = []
    for _ in range(7):
        source = TemplateSource()
        started = time.perf_counter()
        assert source.node_resources("one", node(0), catalog, True) is not None
        single.append(time.perf_counter() - started)

    source = TemplateSource()
    started = time.perf_counter()
    source.node_resources("envoy-0", node(0), catalog, True)
    first = time.perf_counter() - started
    for i in range(1, nodes):
        source.node_resources(f"envoy-{i}", node(i), catalog, False)
    total = time.perf_counter() - started

    catalog.apply([ServiceUpdate("svc-0", "dc1", (_instance("svc-0", 0, "critical"),))])
    started = time.perf_counter()
    for i in range(nodes):
        source.node_resources(f"envoy-{i}", node(i), catalog, False)
    endpoint_change = time.perf_counter() - started
    return {
        "services": services,
        "nodes": nodes,
        "render_ms": round(statistics.median(single) * 1000, 2),
        "group_first_ms": round(first * 1000, 2),
        "group_total_ms": round(total * 1000, 2),
        "endpoint_change_ms": round(endpoint_change * 1000, 2),
        "renders": source.renders_total["default"],
        "python": platform.python_version(),
    }


NAME = "template_render"


async def measure(quick: bool) -> dict[str, Any]:
    sizes = [10, 100] if quick else [10, 100, 1000]
    return {"sizes": [run(count, 1000) for count in sizes]}


def table_rows(result: dict[str, Any]) -> list[Row]:
    return [
        Row(
            f"template_render.{size['services']}",
            f"template render of the default set in the benchmark process (no bridge), "
            f"{size['services']:,} services",
            "(report)",
            f"one render {size['render_ms']:.1f} ms; {size['nodes']:,} nodes of one group: "
            f"{size['renders']} render(s), {size['group_total_ms']:.0f} ms; instance change: "
            f"{size['endpoint_change_ms']:.0f} ms, no render",
            size["render_ms"],
            "ms",
        )
        for size in result["sizes"]
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--services", type=int, nargs="*", default=[10, 100, 1000])
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    results = [run(count, args.nodes) for count in args.services]
    save_result("template_render", results)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
