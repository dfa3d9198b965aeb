"""Template edits at run time: file write → reload applied, and file write → Envoy serves it.

* **write → reload**: a :class:`~bridge.templating.TemplateWatcher` reloading a copy of the
  bundled ``default`` set, alone in this process (no bridge). The clock starts at the write of
  ``routes.yaml.j2`` and stops when the watcher calls its ``on_change`` (the edit parsed and
  applied; the bridge republishes from there).
* **write → Envoy**: ``bridge serve --templates DIR`` in a process of its own, one real Envoy
  whose listener and routes come from that set (as ``consul-xds-bridge bootstrap`` makes it),
  the Consul double and a backend in this process. Each edit changes the body of the set's 404
  answer; the clock starts at the write and stops at the first request through Envoy for an
  unknown host answered with the new body (:class:`benchmarks.traffic.Probe`).

Run: ``.venv/bin/python -m benchmarks.template_reload [--quick]``.
Writes ``benchmarks/results/template_reload.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import Row, save_result, spread
from benchmarks.traffic import ROOT, Probe, serve_bridge
from bridge.templating import TemplateSource, TemplateWatcher
from consul_double import ConsulDouble
from tests.support.backends import backends
from tests.support.bridge_env import envoy_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.templates.support import Changes

NAME = "template_reload"
BUNDLED = ROOT / "templates"
ORIGINAL_404 = "no such service"
PAUSE_S = 0.3  # between edits, so that each is its own change


def default_set_copy(tmp: str) -> Path:
    directory = Path(tmp) / "sets"
    shutil.copytree(BUNDLED / "default", directory / "default")
    return directory


def edit(directory: Path, body: str) -> None:
    routes = directory / "default" / "routes.yaml.j2"
    text = (BUNDLED / "default" / "routes.yaml.j2").read_text()
    routes.write_text(text.replace(ORIGINAL_404, body))


def answers(body: str) -> Callable[[int, str], bool]:
    """Whether an answer is the set's 404 with ``body``."""
    return lambda status, text: status == 404 and text == f"{body}\n"


async def write_to_reload(edits: int) -> list[float]:
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="bench-templates-") as tmp:
        directory = default_set_copy(tmp)
        applied = Changes()
        source = TemplateSource(directory)
        watcher = TemplateWatcher(source.directory, source.reload, applied)
        await watcher.start()
        try:
            # a first edit, applied once the watch is up (the watcher catches up on start)
            edit(directory, "warm-up")
            async with asyncio.timeout(10):
                await applied.wait(1)
            for i in range(edits):
                await asyncio.sleep(PAUSE_S)
                count = len(applied)
                started = time.monotonic()
                edit(directory, f"gone {i}")
                async with asyncio.timeout(10):
                    await applied.wait(count + 1)
                latencies.append((applied[-1] - started) * 1000)
        finally:
            await watcher.stop()
    return latencies


async def write_to_envoy(edits: int) -> list[float]:
    latencies: list[float] = []
    timeout = aiohttp.ClientTimeout(total=5)
    with tempfile.TemporaryDirectory(prefix="bench-templates-") as tmp:
        directory = default_set_copy(tmp)
        async with (
            backends("web-1") as (web,),
            ConsulDouble() as consul,
            aiohttp.ClientSession(timeout=timeout) as session,
        ):
            consul.register("web", id="web-1", address="127.0.0.1", port=web.port)
            async with serve_bridge(consul.url, templates_dir=str(directory)) as bridge:
                ingress = free_port()
                bootstrap = envoy_bootstrap("bench-templates", bridge.xds_port, ingress)
                async with Envoy(bootstrap, name="bench-template-envoy"):
                    probe = Probe(ingress, session)
                    await probe.settle({"web-1"}, 30, "the bridge's listener and routes")
                    for i in range(edits):
                        await asyncio.sleep(PAUSE_S)
                        body = f"unknown service {i}"
                        started = time.perf_counter()
                        edit(directory, body)
                        latencies.append(await probe.until("nope", answers(body), started))
    return latencies


async def measure(quick: bool) -> dict[str, Any]:
    edits = 3 if quick else 20
    reload = await write_to_reload(edits)
    envoy = await write_to_envoy(edits)
    return {
        "cores": os.cpu_count(),
        "edits": edits,
        "write_to_reload_ms": spread(reload),
        "write_to_envoy_ms": spread(envoy),
        "latencies_ms": {
            "template_write_to_reload": [round(v, 2) for v in reload],
            "template_write_to_envoy": [round(v, 2) for v in envoy],
        },
    }


def table_rows(result: dict[str, Any]) -> list[Row]:
    reload, envoy = result["write_to_reload_ms"], result["write_to_envoy_ms"]
    n = result["edits"]
    return [
        Row(
            "template_reload.reload",
            f"template file write → edit applied by the template source (benchmark process, no "
            f"bridge), {n} edits",
            "(report)",
            f"median {reload['median']:.0f} ms, max {reload['max']:.0f} ms",
            reload["median"],
            "ms",
        ),
        Row(
            "template_reload.envoy",
            f"template file write → Envoy answers with the new route (bridge = serve process), "
            f"{n} edits",
            "(report)",
            f"median {envoy['median']:.0f} ms, max {envoy['max']:.0f} ms",
            envoy["median"],
            "ms",
        ),
    ]


if __name__ == "__main__":
    output = asyncio.run(measure("--quick" in sys.argv))
    save_result(NAME, output)
    print(json.dumps({k: v for k, v in output.items() if k != "latencies_ms"}, indent=2))
