"""``make bench-quick``: every benchmark runs end to end at small sizes and reports every row.

No timing is asserted (speed targets live in the benchmarks): what is checked is that the run
succeeds, that each expected row is there with a plausible figure, and that the byte counts
are consistent with the framing they claim to include.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks.__main__ import MODULES

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(900)]

#: Rows whose headline figure must be a positive, finite number (quick sizes).
POSITIVE = (
    "B1.median",
    "B1.p99",
    "B2.ack_p99.10",
    "B2.cpu_per_change.10",
    "B2.ack_p99.100",
    "B2.cpu_per_change.100",
    "B2.memory_per_stream.100",
    "B3.initial_sync",
    "B3.peak_rss",
    "B3.consul_connections",
    "B3.check_change",
    "B3.port_change",
    "B3.sustained",
    "B3.sustained_cpu",
    "consul_push.spaced",
    "consul_push.back_to_back",
    "consul_recovery.HTTP_500_no_leader",
    "consul_recovery.connection_reset",
    "consul_recovery.Consul_down",
    "consul_recovery.index_reset",
    "core_push.median",
    "delta_bytes.endpoint_change",
    "delta_bytes.new_service",
    "template_render.10",
    "template_render.100",
    "template_reload.reload",
    "template_reload.envoy",
    "churn.cycle",
)
#: Rows whose figure may be zero or negative (a difference), but must be finite.
FINITE = ("churn.rss_growth",)


@pytest.fixture(scope="module")
def quick_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tmp_path_factory.mktemp("bench-quick")
    done = subprocess.run(
        ["make", "--no-print-directory", "bench-quick", f"BENCH_OUT={out}", "ARGS=--skip-peers"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=840,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    return done, out


def test_bench_quick_succeeds_and_says_the_peers_were_skipped(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    done, out = quick_run
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    assert summary["failures"] == []
    assert summary["skipped_peers"] == ["peer_sovereign"]
    assert "Peers skipped (--skip-peers): peer_sovereign" in (out / "SUMMARY.md").read_text()
    for name in MODULES:
        if name != "peer_sovereign":
            assert json.loads((out / f"{name}.json").read_text()), name


def test_every_expected_row_is_reported_with_a_plausible_figure(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _done, out = quick_run
    rows = {row["key"]: row for row in json.loads((out / "summary.json").read_text())["rows"]}
    table = (out / "SUMMARY.md").read_text()
    for key in POSITIVE + FINITE:
        assert key in rows, f"row {key} is missing: {sorted(rows)}"
        value = rows[key]["value"]
        assert isinstance(value, int | float), (key, value)
        assert math.isfinite(value), (key, value)
        if key in POSITIVE:
            assert value > 0, (key, value)
        assert f"| {rows[key]['what']} |" in table, key


def test_wire_bytes_include_requests_and_framing(
    quick_run: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    _done, out = quick_run
    result: dict[str, Any] = json.loads((out / "delta_bytes.json").read_text())
    for protocol in ("sotw", "delta"):
        for phase in ("initial", "endpoint_change", "new_service"):
            counted = result[protocol][phase]
            assert counted["request_messages"] >= 1, (protocol, phase)
            # The relay sees at least the messages, their gRPC prefixes and DATA frame headers.
            assert counted["wire_total"] >= counted["framed_bytes"], (protocol, phase, counted)
            assert counted["framed_bytes"] > counted["request_bytes"] + counted["response_bytes"]
            assert counted["wire_requests"] > counted["request_bytes"], (protocol, phase)
    # A SotW ACK names every subscribed assignment; a delta ACK carries a nonce.
    sotw, delta = result["sotw"]["endpoint_change"], result["delta"]["endpoint_change"]
    assert sotw["request_bytes"] > 3 * delta["request_bytes"]
