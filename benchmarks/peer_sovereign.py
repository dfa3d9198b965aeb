"""B4, a peer side by side in one run: this bridge (gRPC push) vs sovereign (REST polling).

The same catalog and the same changes reach two real Envoys, one after the other in one run:

- **bridge**: ``python -m bridge serve`` in a process of its own (blocking queries on the Consul
  double, gRPC ADS to Envoy: CDS + EDS);
- **sovereign** 0.32.x (the Python Envoy control plane on PyPI), run with its own entry point
  (gunicorn + one uvicorn worker) from a separate venv (``.venv-bench-sovereign``, created on
  first use). Its built-in ``file`` source fetches the Consul double's health API over HTTP every
  ``source_config.refresh_rate`` seconds; Envoy polls CDS and EDS from it over REST every
  ``refresh_delay`` (config and templates in ``benchmarks/sovereign/``).

Both Envoys have the same static listener routing ``Host: web`` to the cluster ``web`` that the
control plane supplies. ``web`` has two instances in the Consul double (in this process, the
source of truth for both); each change deregisters or registers ``web-2`` in turn, after a
random pause (same seeded sequence for both, so changes do not phase-lock with a poll timer). The
clock starts at the write and stops when HTTP traffic through that Envoy follows
(:class:`benchmarks.traffic.Probe`).

CPU: user + system seconds of each control plane's process tree (from ``/proc/<pid>/stat``, 10 ms
ticks) over its idle window and its change phase; both run out of process, so the benchmark's
own work (Consul double, backends, HTTP probes) is in neither.

sovereign is installed first: if it cannot be installed or run, this benchmark fails (and
``make bench`` exits non-zero); only ``--skip-peers`` leaves it out. ``BENCH_SOVEREIGN_VENV`` and
``BENCH_SOVEREIGN_REQUIREMENT`` override the venv and the pip requirement.

Run: ``.venv/bin/python -m benchmarks.peer_sovereign [--quick]``.
Writes ``benchmarks/results/peer_sovereign.json``.
"""

from __future__ import annotations

import asyncio
import json
import os
import string
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.common import Row, save_result
from benchmarks.traffic import (
    CONFIRM,
    PAUSE_RANGE,
    PROBE_PAUSE,
    Catalog,
    Probe,
    bridge_phase,
    control_plane,
    idle_cpu,
    phase_result,
    run_changes,
)
from consul_double import ConsulDouble
from tests.support.backends import backends
from tests.support.bridge_env import static_ingress
from tests.support.envoy import Envoy
from tests.support.ports import free_port

NAME = "peer_sovereign"
PEER = True  # left out only with --skip-peers
ROOT = Path(__file__).resolve().parent.parent
SOVEREIGN_DIR = Path(__file__).parent / "sovereign"
SOVEREIGN_REQUIREMENT = "sovereign~=0.32.0"

#: sovereign's ``source_config.refresh_rate`` (integer seconds; 30 by default). 1 is the floor:
#: 0 would re-fetch the source back to back, synchronously, on sovereign's event loop.
SOURCE_REFRESH_S = 1
#: Envoy's REST ``refresh_delay`` for CDS and EDS from sovereign. ``typical`` is the 1 s that
#: Envoy's REST examples use; ``aggressive`` (full run only) shows how much of sovereign's latency
#: is Envoy's polling rather than sovereign's own source refresh.
PROFILES: dict[str, float] = {"typical": 1.0, "aggressive": 0.1}

IDLE_S = {True: 1.0, False: 10.0}  # by quick: seconds with no change, idle CPU read (first)


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
def sovereign_venv() -> Path:
    return Path(os.environ.get("BENCH_SOVEREIGN_VENV") or ROOT / ".venv-bench-sovereign")


def sovereign_requirement() -> str:
    return os.environ.get("BENCH_SOVEREIGN_REQUIREMENT") or SOVEREIGN_REQUIREMENT


def _run(argv: list[str], what: str, timeout: float) -> str:
    """Run a setup command; a failure says what could not be done and why."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{what}: {exc}") from None
    if done.returncode != 0:
        output = (done.stderr or done.stdout).strip()[-1500:]
        raise RuntimeError(f"{what}: exit status {done.returncode}: {output}")
    return done.stdout


def prepare_sovereign() -> tuple[Path, str]:
    """sovereign's entry point and version, installing it into its venv on first use."""
    venv = sovereign_venv()
    entry, python = venv / "bin" / "sovereign", venv / "bin" / "python"
    requirement = sovereign_requirement()
    if not entry.exists():
        what = f"cannot install sovereign ({requirement}) into {venv}"
        _run([sys.executable, "-m", "venv", str(venv)], what, 300)
        _run([str(python), "-m", "pip", "install", "--quiet", requirement], what, 900)
        if not entry.exists():
            raise RuntimeError(f"{what}: installed, but {entry} is missing")
    code = "import importlib.metadata as m; print(m.version('sovereign'))"
    version = _run([str(python), "-c", code], f"cannot run sovereign from {venv}", 60)
    return entry, version.strip()


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
    entry: Path,
) -> tuple[list[float], dict[str, Any]]:
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
        log = Path(tmp) / "sovereign.log"
        async with control_plane([str(entry)], env, log, Path(tmp)) as pid:
            bootstrap = sovereign_bootstrap(port, ingress, refresh_delay)
            async with Envoy(bootstrap, name="b4-sovereign-envoy") as envoy:
                probe = Probe(ingress, session)
                try:
                    await probe.settle({"web-1", "web-2"}, 60, "sovereign start")
                except AssertionError as exc:
                    tail = log.read_text(errors="replace")[-3000:]
                    raise AssertionError(f"{exc}\nsovereign log:\n{tail}\n{envoy.tail()}") from None
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
    # sovereign first: a peer that cannot be installed fails the run before anything is measured.
    entry, version = await asyncio.to_thread(prepare_sovereign)
    changes = 4 if quick else 20
    profiles = {"typical": PROFILES["typical"]} if quick else dict(PROFILES)
    result: dict[str, Any] = {
        "name": NAME,
        "cores": os.cpu_count(),
        "quick": quick,
        "changes": changes,
        "method": (
            "change = deregister/register of web-2 (of web-1, web-2) in the Consul double (in the "
            "benchmark's process); latency = the write until HTTP traffic through that control "
            "plane's Envoy follows (first web-2 answer; or 2nd of 2 consecutive web-1 answers, "
            f"confirmed by {CONFIRM} in a row); probes every ~{PROBE_PAUSE * 1000:g} ms; random "
            f"{PAUSE_RANGE[0]}-{PAUSE_RANGE[1]} s pause before each change; CPU = user+sys of "
            "the control plane's process tree (its own processes only) during its change phase"
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
            "requirement": sovereign_requirement(),
            "version": version,
            "transport": "Envoy REST polling (CDS + EDS); sovereign polls Consul's health API",
            "process": "sovereign (gunicorn, 1 uvicorn worker, access logs off)",
            "source_refresh_rate_s": SOURCE_REFRESH_S,
            "profiles": {},
        }
        result["sovereign"] = sovereign
        for profile, delay in profiles.items():
            lat, phase = await sovereign_phase(
                catalog, session, changes, IDLE_S[quick], delay, entry
            )
            key = "sovereign" if profile == "typical" else f"sovereign_{profile}"
            result["latencies_ms"][key] = [round(v, 2) for v in lat]
            sovereign["profiles"][profile] = {"envoy_refresh_delay_s": delay, **phase}
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


def table_rows(result: dict[str, Any]) -> list[Row]:
    bridge = result["bridge"]
    rows: list[Row] = []
    for profile, phase in result["sovereign"]["profiles"].items():
        ratio = result["ratios"][profile]
        label = f"refresh {phase['envoy_refresh_delay_s']:g} s"
        for stat in ("median", "p90"):
            rows.append(
                Row(
                    f"B4.latency_{stat}.{profile}",
                    f"B4 Consul write → traffic through that plane's Envoy follows, bridge "
                    f"(serve process, gRPC push) vs sovereign (REST poll, {label}), {stat}",
                    ">= 10x lower" if stat == "median" else "(report)",
                    f"{_ms(bridge['latency_ms'][stat])} vs {_ms(phase['latency_ms'][stat])}: "
                    f"{ratio[f'latency_{stat}_x']}x",
                    ratio[f"latency_{stat}_x"],
                    "x",
                )
            )
        rows.append(
            Row(
                f"B4.cpu_changes.{profile}",
                f"B4 control-plane process CPU (user+sys) over the change phase, bridge vs "
                f"sovereign ({label})",
                "(report)",
                f"{bridge['cpu_s']:.2f} s vs {phase['cpu_s']:.2f} s CPU over "
                f"{result['changes']} changes ({ratio['cpu_phase_x']}x); per wall second "
                f"{ratio['cpu_per_second_x']}x",
            )
        )
        rows.append(
            Row(
                f"B4.cpu_idle.{profile}",
                f"B4 control-plane process CPU with no changes, bridge vs sovereign ({label})",
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
        print(f"{row.what}: {row.measured}")


if __name__ == "__main__":
    asyncio.run(_main())
