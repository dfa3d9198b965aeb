"""Stopping while Consul fails: operators restart the bridge exactly when Consul misbehaves, so a
SIGTERM (or ``Bridge.stop``) must end it promptly whatever Consul is doing at that moment."""

from __future__ import annotations

import asyncio

import pytest

from bridge.app import Bridge, bridge_config
from bridge.config import load
from consul_double import ConsulDouble
from tests.support.cli import serving, terminate
from tests.support.waiting import until

# Generous: the bridge's own bound is far lower; this only keeps a hang from blocking the suite.
EXIT_BOUND = 20.0


def break_consul(consul: ConsulDouble, kind: str) -> None:
    if kind == "drop":
        consul.faults.drop()
    elif kind == "error":
        consul.faults.error(500)
    else:
        consul.faults.hang()


@pytest.mark.parametrize("kind", ["drop", "error", "hang"])
async def test_serve_exits_promptly_on_sigterm_while_consul_fails(kind: str) -> None:
    async with ConsulDouble(datacenter="dc1") as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        args = ("--consul-addr", consul.url, "--consul-wait", "2s")
        async with serving(*args, env={"PATH": ""}) as process:
            break_consul(consul, kind)
            # let the failing reads start (and, for errors, the backoff with its prober)
            await asyncio.sleep(0)
            stderr = await terminate(process, EXIT_BOUND)
    assert process.returncode == 0, stderr[-2000:]
    assert "did not end" not in stderr


async def start_break_stop(consul: ConsulDouble, kind: str, delay: float) -> None:
    settings = {
        "consul.address": consul.url,
        "consul.wait": "2s",
        "xds.listen": "127.0.0.1:0",
        "admin.listen": "127.0.0.1:0",
    }
    bridge = Bridge(bridge_config(load(settings, {})))
    await bridge.start()
    try:
        await until(lambda: bridge.readiness()[0], what="ready")
        break_consul(consul, kind)
        if kind == "error":
            await until(
                lambda: bridge.watcher.recovery.backing_off.is_set(), what="a watch backing off"
            )
        await asyncio.sleep(delay)
    finally:
        async with asyncio.timeout(EXIT_BOUND):
            await bridge.stop()
        consul.faults.clear()


@pytest.mark.parametrize("kind", ["drop", "error", "hang"])
async def test_bridge_stops_while_consul_fails_every_time(kind: str) -> None:
    """The race that hung a stop on Python 3.11 needs a cancellation to meet a finishing Consul
    call; many stops at different moments of the retry cycle make it likely to show."""
    async with ConsulDouble(datacenter="dc1") as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        for round_ in range(12):
            # stop at a different point of the retry cycle each round
            await start_break_stop(consul, kind, 0.013 * round_)
