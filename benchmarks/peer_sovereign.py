"""B4, a peer side by side in one run: this bridge (gRPC push) vs sovereign (REST polling).

The same catalog and the same changes reach two real Envoys, one after the other in one run:

- **bridge**: ``python -m bridge serve`` in a subprocess (blocking queries on the Consul double,
  gRPC ADS to Envoy: CDS + EDS);
- **sovereign** 0.32.x (the Python Envoy control plane on PyPI), run with its own entry point
  (gunicorn + one uvicorn worker) from a separate venv (``.venv-bench-sovereign``, created on
  first use). Its built-in ``file`` source fetches the Consul double's health API over HTTP every
  ``source_config.refresh_rate`` seconds; Envoy polls CDS and EDS from it over REST every
  ``refresh_delay`` (config and templates in ``benchmarks/sovereign/``).

Both Envoys have the same static listener routing ``Host: web`` to the cluster ``web`` that the
control plane supplies. ``web`` has two instances in the Consul double (one in-process source of
truth for both); each change deregisters or registers ``web-2`` in turn, after a random pause
(same seeded sequence for both, so changes do not phase-lock with a poll timer). The clock stops
when HTTP traffic through that Envoy follows, at the first request whose answer proves it: for an
add, the first request answered by ``web-2``; for a removal, the second of two consecutive
``web-1`` answers (Envoy's round robin over two hosts alternates strictly, so that cannot happen
while ``web-2`` is still in), confirmed by ``CONFIRM`` ``web-1`` answers in a row. Probe requests
go out back to back with a ``PROBE_PAUSE`` pause; each figure is late by at most one probe
interval (a few ms), the same for both control planes.

CPU: user + system seconds of each control plane's process tree (from ``/proc/<pid>/stat``)
over its change phase; both run out of process, so the benchmark's own work (Consul double,
backends, HTTP probes) is excluded from both.

Run: ``.venv/bin/python -m benchmarks.peer_sovereign [--quick]``.
Writes ``benchmarks/results/peer_sovereign.json``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import percentile, save_result
from bridge.tasks import within
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends
from tests.support.bridge_env import bridge_bootstrap, static_ingress
from tests.support.envoy import Envoy
from tests.support.ports import free_port

NAME = "peer_sovereign"
ROOT = Path(__file__).resolve().parent.parent
SOVEREIGN_DIR = Path(__file__).parent / "sovereign"
SOVEREIGN_VENV = ROOT / ".venv-bench-sovereign"
SOVEREIGN_REQUIREMENT = "sovereign~=0.32.0"

#: sovereign's ``source_config.refresh_rate`` (integer seconds; 30 by default). 1 is the floor:
#: 0 would re-fetch the source back to back, synchronously, on sovereign's event loop.
SOURCE_REFRESH_S = 1
#: Envoy's REST ``refresh_delay`` for CDS and EDS from sovereign. ``typical`` is the 1 s that
#: Envoy's REST examples use; ``aggressive`` (full run only) shows how much of sovereign's latency
#: is Envoy's polling rather than sovereign's own source refresh.
PROFILES: dict[str, float] = {"typical": 1.0, "aggressive": 0.1}

CONFIRM = 5  # consecutive web-1-only answers that confirm a removal
PROBE_PAUSE = 0.002  # seconds between probe requests through Envoy
CHANGE_TIMEOUT = 15.0  # per change; a change that never shows up fails the run
PAUSE_RANGE = (0.2, 1.2)  # seconds of random pause before each change
SEED = 7
IDLE_S = {True: 3.0, False: 10.0}  # by quick: seconds with no change, idle CPU read (first)


NOTES = [
    "Both control planes run out of process, one after the other, against the same in-process "
    "Consul double and the same seeded change sequence; each has its own Envoy (--concurrency 1).",
    "sovereign's latency floor is its source refresh (integer seconds, 1 = minimum usable) plus "
    "Envoy's REST refresh_delay; the 'aggressive' profile (refresh_delay 0.1 s) isolates the "
    "source refresh: the median falls to about half a source period.",
    "In sovereign's favour: 1 gunicorn worker (its default is 2 x cores + 1, each polling the "
    "source), access and application logs off, a 1 s source refresh (default 30 s).",
    "CPU is read in 10 ms clock ticks: with one Envoy and two instances both control planes "
    "are nearly idle, so the CPU ratios are coarse; REST polling cost grows with Envoys x "
    "resource types / refresh_delay, the bridge's with changes x subscribed streams.",
]


# ------------------------------------------------------------------------------- helpers
def ensure_sovereign_venv() -> Path:
    """The sovereign venv's entry point, creating the venv and installing sovereign if needed."""
    entry = SOVEREIGN_VENV / "bin" / "sovereign"
    if entry.exists():
        return entry
    subprocess.run([sys.executable, "-m", "venv", str(SOVEREIGN_VENV)], check=True, timeout=300)
    pip = SOVEREIGN_VENV / "bin" / "pip"
    subprocess.run([str(pip), "install", "--quiet", SOVEREIGN_REQUIREMENT], check=True, timeout=900)
    if not entry.exists():
        raise RuntimeError(f"sovereign installed but {entry} is missing")
    return entry


def prepare_sovereign() -> str:
    """Make sure sovereign is installed; its version."""
    ensure_sovereign_venv()
    python = SOVEREIGN_VENV / "bin" / "python"
    out = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('sovereign'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (gunicorn master + workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU seconds of ``root``'s process tree (children still running)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in _tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def summary(latencies: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(latencies), 1),
        "p90": round(percentile(latencies, 0.9), 1),
        "max": round(max(latencies), 1),
    }


@contextlib.asynccontextmanager
async def process(argv: list[str], env: dict[str, str], log: Path, cwd: Path) -> AsyncIterator[int]:
    """A control plane subprocess (its own process group); yields its pid, stops it after."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=env,
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
                await within(proc.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()


# ------------------------------------------------------------------------------- probing
@dataclass
class Probe:
    """Requests through one Envoy's listener with ``Host: web`` on one keep-alive session."""

    port: int
    session: aiohttp.ClientSession
    sent: int = 0
    errors: int = 0

    async def one(self) -> str:
        self.sent += 1
        try:
            async with self.session.get(
                f"http://127.0.0.1:{self.port}/", headers={"Host": "web"}
            ) as response:
                body = await response.text()
                return body if response.status == 200 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.errors += 1
            return f"error {type(exc).__name__}"

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
        """Milliseconds from ``started`` until traffic shows the change (see module docs)."""
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


@dataclass
class Catalog:
    consul: ConsulDouble
    backends: dict[str, Backend]

    def register(self, name: str, node: str) -> None:
        self.consul.register(
            "web", id=name, address="127.0.0.1", port=self.backends[name].port, node=node
        )

    def reset(self) -> None:
        """Both instances registered (the starting state of every phase)."""
        self.register("web-1", "node1")
        self.register("web-2", "node2")


async def idle_cpu(pid: int, seconds: float) -> float:
    """CPU seconds the control plane spends staying current with nothing changing."""
    before = cpu_seconds(pid)
    await asyncio.sleep(seconds)
    return cpu_seconds(pid) - before


async def run_changes(
    catalog: Catalog, probe: Probe, pid: int, changes: int
) -> tuple[list[float], float, float]:
    """``changes`` alternating removals/adds of web-2: latencies (ms), CPU s, wall s."""
    pauses = random.Random(SEED)
    latencies: list[float] = []
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    for i in range(changes):
        await asyncio.sleep(pauses.uniform(*PAUSE_RANGE))
        added = i % 2 == 1
        started = time.perf_counter()
        if added:
            catalog.register("web-2", "node2")
        else:
            catalog.consul.deregister("web-2")
        latencies.append(await probe.follows(added, started))
    return latencies, cpu_seconds(pid) - cpu_before, time.perf_counter() - wall_before


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
        "latency_ms": summary(latencies),
        "cpu_s": round(cpu, 3),
        "cpu_ms_per_change": round(cpu / len(latencies) * 1000, 2),
        "phase_wall_s": round(wall, 2),
        "cpu_fraction_of_one_core": round(cpu / wall, 4),
        "probe_requests": probe.sent,
        "probe_errors": probe.errors,
        **extra,
    }


# ------------------------------------------------------------------------------- phases
async def bridge_phase(
    catalog: Catalog, session: aiohttp.ClientSession, changes: int, idle_s: float
) -> tuple[list[float], dict[str, Any]]:
    xds_port, admin_port, ingress = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "CONSUL_XDS_BRIDGE_CONSUL_ADDRESS": catalog.consul.url,
        "CONSUL_XDS_BRIDGE_XDS_LISTEN": f"127.0.0.1:{xds_port}",
        "CONSUL_XDS_BRIDGE_ADMIN_LISTEN": f"127.0.0.1:{admin_port}",
        "CONSUL_XDS_BRIDGE_LOG_LEVEL": "warning",
    }
    catalog.reset()
    with tempfile.TemporaryDirectory(prefix="b4-bridge-") as tmp:
        argv = [sys.executable, "-m", "bridge", "serve"]
        async with process(argv, env, Path(tmp) / "bridge.log", ROOT) as pid:
            bootstrap = bridge_bootstrap(xds_port, "bench-peer-bridge", ingress, ["web"])
            async with Envoy(bootstrap, name="b4-bridge-envoy"):
                probe = Probe(ingress, session)
                await probe.settle({"web-1", "web-2"}, 30, "bridge start")
                idle = (await idle_cpu(pid, idle_s), idle_s)
                latencies, cpu, wall = await run_changes(catalog, probe, pid, changes)
                return latencies, phase_result(latencies, cpu, wall, idle, probe)


def sovereign_bootstrap(port: int, ingress: int, refresh_delay: str) -> dict[str, Any]:
    """Envoy polling CDS (and, through the clusters, EDS) from sovereign over REST."""
    return {
        "node": {"id": "bench-peer-sovereign", "cluster": "bench"},
        "dynamic_resources": {
            "cds_config": {
                "resource_api_version": "V3",
                "api_config_source": {
                    "api_type": "REST",
                    "transport_api_version": "V3",
                    "cluster_names": ["sovereign"],
                    "refresh_delay": refresh_delay,
                },
            }
        },
        "static_resources": {
            "clusters": [
                {
                    "name": "sovereign",
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "load_assignment": {
                        "cluster_name": "sovereign",
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {
                                                    "address": "127.0.0.1",
                                                    "port_value": port,
                                                }
                                            }
                                        }
                                    }
                                ]
                            }
                        ],
                    },
                }
            ],
            "listeners": [static_ingress(ingress, ["web"])],
        },
    }


async def sovereign_phase(
    catalog: Catalog,
    session: aiohttp.ClientSession,
    changes: int,
    idle_s: float,
    refresh_delay_s: float,
) -> tuple[list[float], dict[str, Any]]:
    entry = SOVEREIGN_VENV / "bin" / "sovereign"
    port, ingress = free_port(), free_port()
    refresh_delay = f"{refresh_delay_s:g}s"
    catalog.reset()
    with tempfile.TemporaryDirectory(prefix="b4-sovereign-") as tmp:
        config = Path(tmp) / "sovereign.yaml"
        template = string.Template((SOVEREIGN_DIR / "sovereign.yaml.in").read_text())
        config.write_text(
            template.substitute(
                consul_url=catalog.consul.url,
                source_refresh_rate=SOURCE_REFRESH_S,
                refresh_delay=refresh_delay,
                template_dir=str(SOVEREIGN_DIR),
            )
        )
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", tmp),
            "SOVEREIGN_CONFIG": f"file://{config}",
            "SOVEREIGN_HOST": "127.0.0.1",
            "SOVEREIGN_PORT": str(port),
            "SOVEREIGN_WORKERS": "1",
        }
        async with process([str(entry)], env, Path(tmp) / "sovereign.log", Path(tmp)) as pid:
            bootstrap = sovereign_bootstrap(port, ingress, refresh_delay)
            async with Envoy(bootstrap, name="b4-sovereign-envoy") as envoy:
                probe = Probe(ingress, session)
                try:
                    await probe.settle({"web-1", "web-2"}, 60, "sovereign start")
                except AssertionError as exc:
                    log = (Path(tmp) / "sovereign.log").read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{exc}\nsovereign log:\n{log}\n{envoy.tail()}") from None
                idle = (await idle_cpu(pid, idle_s), idle_s)
                latencies, cpu, wall = await run_changes(catalog, probe, pid, changes)
                rejected = await envoy.stat("cluster_manager.cds.update_rejected")
                return latencies, phase_result(
                    latencies, cpu, wall, idle, probe, envoy_cds_rejected=rejected
                )


# ------------------------------------------------------------------------------- measure
def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 1) if b > 0 else None


async def measure(quick: bool) -> dict[str, Any]:
    changes = 4 if quick else 20
    profiles = {"typical": PROFILES["typical"]} if quick else dict(PROFILES)
    result: dict[str, Any] = {
        "name": NAME,
        "cores": os.cpu_count(),
        "quick": quick,
        "changes": changes,
        "method": (
            "change = deregister/register of web-2 (of web-1, web-2) in the in-process Consul "
            "double; latency = change until HTTP traffic through that control plane's Envoy "
            f"follows (first web-2 answer; or 2nd of 2 consecutive web-1 answers, confirmed by "
            f"{CONFIRM} in a row); probes "
            f"every ~{PROBE_PAUSE * 1000:g} ms; random {PAUSE_RANGE[0]}-{PAUSE_RANGE[1]} s pause "
            "before each change; CPU = user+sys of the control plane's process tree "
            "during its change phase"
        ),
        "latencies_ms": {},
        "notes": NOTES,
    }
    timeout = aiohttp.ClientTimeout(total=5)
    async with (
        backends("web-1", "web-2") as started,
        ConsulDouble() as consul,
        aiohttp.ClientSession(timeout=timeout) as session,
    ):
        catalog = Catalog(consul, {b.name: b for b in started})
        latencies, bridge = await bridge_phase(catalog, session, changes, IDLE_S[quick])
        result["latencies_ms"]["bridge"] = [round(v, 2) for v in latencies]
        result["bridge"] = {
            "transport": "gRPC ADS (SotW), push; Consul blocking queries",
            "process": "python -m bridge serve (defaults; log level warning)",
            **bridge,
        }
        sovereign: dict[str, Any] = {
            "requirement": SOVEREIGN_REQUIREMENT,
            "transport": "Envoy REST polling (CDS + EDS); sovereign polls Consul's health API",
            "process": "sovereign (gunicorn, 1 uvicorn worker, access logs off)",
            "source_refresh_rate_s": SOURCE_REFRESH_S,
            "profiles": {},
        }
        result["sovereign"] = sovereign
        try:
            sovereign["version"] = await asyncio.to_thread(prepare_sovereign)
            for profile, delay in profiles.items():
                lat, phase = await sovereign_phase(catalog, session, changes, IDLE_S[quick], delay)
                key = "sovereign" if profile == "typical" else f"sovereign_{profile}"
                result["latencies_ms"][key] = [round(v, 2) for v in lat]
                sovereign["profiles"][profile] = {"envoy_refresh_delay_s": delay, **phase}
        except Exception as exc:  # reported, not raised: the bridge's figures still stand
            sovereign["error"] = f"{type(exc).__name__}: {exc}"[:4000]
    result["ratios"] = ratios(result)
    return result


def ratios(result: dict[str, Any]) -> dict[str, Any]:
    bridge = result["bridge"]
    out: dict[str, Any] = {}
    for profile, phase in result["sovereign"].get("profiles", {}).items():
        out[profile] = {
            "latency_median_x": _ratio(
                phase["latency_ms"]["median"], bridge["latency_ms"]["median"]
            ),
            "latency_p90_x": _ratio(phase["latency_ms"]["p90"], bridge["latency_ms"]["p90"]),
            "latency_max_x": _ratio(phase["latency_ms"]["max"], bridge["latency_ms"]["max"]),
            "cpu_phase_x": _ratio(phase["cpu_s"], bridge["cpu_s"]),
            "idle_cpu_x": _ratio(phase["idle_cpu_s"], bridge["idle_cpu_s"]),
            "cpu_per_second_x": _ratio(
                phase["cpu_fraction_of_one_core"], bridge["cpu_fraction_of_one_core"]
            ),
        }
    return out


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 100 else f"{value:,.1f} ms"


def table_rows(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    bridge = result["bridge"]
    sovereign = result.get("sovereign", {})
    if "typical" not in sovereign.get("profiles", {}):
        error = sovereign.get("error", "not measured")
        return [
            (
                "B4 change→traffic, bridge vs sovereign (median)",
                ">= 10x lower",
                f"bridge {_ms(bridge['latency_ms']['median'])}; sovereign failed: {error[:120]}",
            )
        ]
    rows: list[tuple[str, str, str]] = []
    for profile, phase in sovereign["profiles"].items():
        ratio = result["ratios"][profile]
        label = f"refresh {phase['envoy_refresh_delay_s']:g} s"
        for stat in ("median", "p90"):
            rows.append(
                (
                    f"B4 change→traffic, bridge vs sovereign ({label}, {stat})",
                    ">= 10x lower" if stat == "median" else "(report)",
                    f"{_ms(bridge['latency_ms'][stat])} vs {_ms(phase['latency_ms'][stat])}: "
                    f"{ratio[f'latency_{stat}_x']}x",
                )
            )
        rows.append(
            (
                f"B4 control-plane CPU during changes, bridge vs sovereign ({label})",
                "(report)",
                f"{bridge['cpu_s']:.2f} s vs {phase['cpu_s']:.2f} s CPU over "
                f"{result['changes']} changes ({ratio['cpu_phase_x']}x); per wall second "
                f"{ratio['cpu_per_second_x']}x",
            )
        )
        rows.append(
            (
                f"B4 control-plane CPU with no changes, bridge vs sovereign ({label})",
                "(report)",
                f"{bridge['idle_cpu_s']:.2f} s vs {phase['idle_cpu_s']:.2f} s CPU "
                f"in {phase['idle_window_s']:g} s",
            )
        )
    return rows


async def _main() -> None:
    result = await measure(quick="--quick" in sys.argv)
    save_result(NAME, result)
    print(json.dumps(result, indent=2))
    for row in table_rows(result):
        print(" | ".join(row))


if __name__ == "__main__":
    asyncio.run(_main())
