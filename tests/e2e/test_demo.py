"""``make demo ARGS=--once``: the README's walk-through runs start to finish on this machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.envoy


def test_make_demo_once_walks_through_and_exits_cleanly() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "demo", "ARGS=--once"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "CONSUL_XDS_DEMO_PORTS": "any"},
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = done.stdout.splitlines()

    def line(start: str) -> str:
        return next(text for text in lines if text.strip().startswith(start))

    assert "web-1" in line("HTTP through Envoy (Host: web)")
    assert "greeter-1" in line("gRPC through Envoy (greeter)")
    assert "HTTP 404" in line("unknown host")
    assert "traffic moved within" in line("2. deregistered web-2")
    after_move = lines[lines.index(line("2. deregistered web-2")) + 1]
    assert "web-1" in after_move
    assert "web-2" not in after_move
    assert "mean" in line("3. bridge-measured push latency")
    assert "header route in traffic within" in line("entries written")
    split = line("HTTP (Host: web) x100")
    assert "web-1" in split
    assert "web-canary" in split
    assert "HTTP" not in split.split("x100:")[1]  # no errors while the entries change
    assert "web-canary x6" in line("with header x-canary: yes")
