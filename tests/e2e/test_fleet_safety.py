"""Fleet safety against a real Envoy: one bad input never makes a working fleet worse.

For each bad input (colliding service names, a connect timeout that rounds to zero, endpoint
weights the xDS API forbids, services with reserved names, hostile xDS clients during a
change): requests through Envoy to the other services never fail, the bad
input is reported where the operator looks (log, metric, /debug), a change made meanwhile still
reaches Envoy, and once the input is fixed changes flow again (bounded waits, no timings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bridge.app import Bridge, BridgeConfig
from bridge.consul_settings import settings_from_env
from bridge.tasks import within
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.backends import Backend, backends
from tests.support.bridge_env import envoy_bootstrap
from tests.support.envoy import Envoy
from tests.support.ports import free_port
from tests.support.waiting import eventually, until

pytestmark = pytest.mark.envoy

NODE = "edge-safety"
WAIT = 10.0  # a bounded wait: only stops a hang
BACKENDS = ("web-1", "web-2", "api-1", "new-1", "late-1", "bad-1")


class Load:
    """Requests through Envoy, one after another, until stopped; a request fails when it does
    not reach one of the backends expected for its host."""

    def __init__(self, port: int, expected: dict[str, set[str]]) -> None:
        self.port = port
        self.expected = expected
        self.ok = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self._stop.is_set():
                for host, bodies in self.expected.items():
                    url = f"http://127.0.0.1:{self.port}/"
                    try:
                        async with session.get(url, headers={"Host": host}) as response:
                            body = await response.text()
                            if response.status == 200 and body in bodies:
                                self.ok += 1
                            else:
                                self.failures.append(f"{host}: HTTP {response.status} {body!r}")
                    except aiohttp.ClientError as exc:
                        self.failures.append(f"{host}: {exc!r}")
                await asyncio.sleep(0.005)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


@dataclass
class Fleet:
    consul: ConsulDouble
    bridge: Bridge
    envoy: Envoy
    ingress: int
    backends: dict[str, Backend]
    session: aiohttp.ClientSession
    loads: list[Load] = field(default_factory=list)

    def register(self, instance: str, service: str, **kwargs: Any) -> None:
        backend = self.backends[instance]
        self.consul.register(service, id=instance, address="127.0.0.1", port=backend.port, **kwargs)

    def load(self, expected: dict[str, set[str]]) -> Load:
        load = Load(self.ingress, expected)
        load.start()
        self.loads.append(load)
        return load

    async def answer(self, host: str) -> tuple[int, str]:
        url = f"http://127.0.0.1:{self.ingress}/"
        async with self.session.get(url, headers={"Host": host}) as response:
            return response.status, await response.text()

    async def reaches(self, host: str, body: str, what: str = "") -> None:
        await eventually(
            lambda: self.answer(host),
            lambda got: got == (200, body),
            timeout=WAIT,
            what=what or f"Host {host} answered by {body}",
        )

    def quarantined(self, kind: str, reason: str) -> float:
        value = self.bridge.metrics.registry.get_sample_value(
            "consul_xds_quarantined_resources", {"type": kind, "reason": reason}
        )
        return value or 0.0

    def metric(self, name: str) -> float:
        return self.bridge.metrics.registry.get_sample_value(name) or 0.0

    async def debug(self, view: str) -> Any:
        url = f"http://127.0.0.1:{self.bridge.admin_port}/debug/{view}"
        async with self.session.get(url) as response:
            assert response.status == 200
            return await response.json()

    async def rejected_by_envoy(self) -> dict[str, int]:
        stats = await self.envoy.stats("update_rejected")
        return {name: value for name, value in stats.items() if value}

    async def changes_flow(self, instance: str, service: str) -> None:
        """A new service registered now reaches Envoy (nothing is frozen)."""
        self.register(instance, service)
        await self.reaches(service, instance, f"a change ({service} registered) reaching Envoy")


@pytest.fixture
async def fleet() -> AsyncIterator[Fleet]:
    async with (
        backends(*BACKENDS) as started,
        ConsulDouble() as consul,
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session,
    ):
        by_name = {b.name: b for b in started}
        for instance, service in (("web-1", "web"), ("web-2", "web"), ("api-1", "api")):
            consul.register(service, id=instance, address="127.0.0.1", port=by_name[instance].port)
        settings = settings_from_env({}, address=consul.url, wait="2s")
        config = BridgeConfig(consul=settings, xds_listen="127.0.0.1:0", admin_listen="127.0.0.1:0")
        async with Bridge(config, TemplateSource()) as bridge:
            await until(lambda: bridge.readiness()[0], WAIT, "bridge ready")
            ingress = free_port()
            async with Envoy(envoy_bootstrap(NODE, bridge.xds_port, ingress)) as envoy:
                fleet = Fleet(consul, bridge, envoy, ingress, by_name, session)
                for host, body in (("web", "web-1"), ("api", "api-1")):
                    await fleet.reaches(host, body)
                try:
                    yield fleet
                finally:
                    for load in fleet.loads:
                        await load.stop()


def warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and text in r.getMessage()
    ]


WEB_AND_API = {"web": {"web-1", "web-2"}, "api": {"api-1"}}


@pytest.mark.parametrize(
    ("name", "host", "answer"),
    [
        ("Web", "web", (200, "web-1|web-2")),  # a second spelling of web
        ("web.service.consul", "web.service.consul", (200, "web-1|web-2")),
    ],
)
async def test_colliding_service_names_keep_the_fleet_serving(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, name: str, host: str, answer: tuple[int, str]
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    load = fleet.load(WEB_AND_API)
    fleet.register("bad-1", name)
    await until(lambda: fleet.quarantined("virtual_host", "domain_collision") == 1, WAIT)
    (warning,) = warnings(caplog, f"virtual_host {name!r}")
    assert "(domain_collision): Service.Service: domain" in warning
    status, body = await fleet.answer(host)
    assert (status, body) in [(answer[0], b) for b in answer[1].split("|")]  # not bad-1
    (entry,) = (await fleet.debug("quarantine"))["entries"]
    assert (entry["name"], entry["service"]) == (name, name)
    assert entry["scopes"] == [f"key:{NODE}"]

    await fleet.changes_flow("new-1", "new")  # RDS is not frozen by the collision
    assert await fleet.rejected_by_envoy() == {}

    fleet.consul.deregister("bad-1")  # fixed
    await until(lambda: fleet.quarantined("virtual_host", "domain_collision") == 0, WAIT)
    await fleet.changes_flow("late-1", "late")
    await load.stop()
    assert load.failures == []
    assert load.ok > 0


async def test_a_connect_timeout_that_rounds_to_zero_never_reaches_envoy(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.publisher")
    load = fleet.load(WEB_AND_API)
    fleet.register("bad-1", "bad", meta={"xds-connect-timeout": "0.0000000001"})
    await fleet.reaches("bad", "bad-1")  # served, with the default timeout
    assert await connect_timeout(fleet.envoy, "bad") == "5s"
    (warning,) = warnings(caplog, "xds-connect-timeout='0.0000000001' is invalid")
    assert "rounds to 0s" in warning
    assert fleet.metric("consul_xds_service_warnings") == 1
    assert (await fleet.debug("quarantine"))["service_warnings"] == {"bad": [warning]}

    await fleet.changes_flow("new-1", "new")  # CDS is not frozen
    assert await fleet.rejected_by_envoy() == {}

    fleet.register("bad-1", "bad", meta={"xds-connect-timeout": "1s"})  # fixed
    await eventually(lambda: connect_timeout(fleet.envoy, "bad"), lambda t: t == "1s", WAIT)
    assert fleet.metric("consul_xds_service_warnings") == 0
    await fleet.changes_flow("late-1", "late")
    await load.stop()
    assert load.failures == []


async def test_endpoint_weights_the_xds_api_forbids_keep_the_last_good_endpoints(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    load = fleet.load(WEB_AND_API)
    heavy = {"Passing": 2**31, "Warning": 1}
    fleet.register("api-1", "api", weights=heavy)
    fleet.register("bad-1", "api", weights=heavy)  # the weights now add up beyond uint32
    await until(lambda: fleet.quarantined("endpoint", "invalid") == 1, WAIT)
    (warning,) = warnings(caplog, "endpoint 'api'")
    assert "Service.Weights" in warning
    assert "its last good version is served" in warning
    assert {(await fleet.answer("api"))[1] for _ in range(6)} == {"api-1"}  # as it was

    await fleet.changes_flow("new-1", "new")  # EDS is not frozen
    assert await fleet.rejected_by_envoy() == {}

    load.expected["api"].add("bad-1")
    fleet.register("bad-1", "api")  # fixed: ordinary weights
    fleet.register("api-1", "api")
    await until(lambda: fleet.quarantined("endpoint", "invalid") == 0, WAIT)
    await eventually(
        lambda: answers(fleet, "api"), lambda seen: seen == {"api-1", "bad-1"}, timeout=WAIT
    )
    await load.stop()
    assert load.failures == []


@pytest.mark.parametrize(
    ("name", "host"),
    [
        ("consul_xds_bridge", "consul_xds_bridge"),  # the bootstrap's xDS cluster
        ("*", "nope.example"),  # the xDS wildcard (and the template's catch-all domain)
    ],
)
async def test_a_service_with_a_reserved_name_is_never_served(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, name: str, host: str
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.quarantine")
    load = fleet.load(WEB_AND_API)
    fleet.register("bad-1", name)
    await until(lambda: fleet.quarantined("cluster", "reserved_name") == 1, WAIT)
    (warning,) = warnings(caplog, f"cluster {name!r} (reserved_name)")
    assert "Service.Service" in warning
    # No virtual host routes to the bootstrap's xDS cluster (nor catches all): 404.
    assert await fleet.answer(host) == (404, "no such service\n")
    assert name not in await fleet.envoy.active_clusters()
    (entry,) = (await fleet.debug("quarantine"))["entries"]
    assert (entry["reason"], entry["action"]) == ("reserved_name", "it is left out")
    resources = await fleet.debug(f"resources?node={NODE}")
    assert [e["name"] for e in resources["quarantined"]] == [name]

    await fleet.changes_flow("new-1", "new")
    fleet.consul.deregister("bad-1")  # renamed away
    await until(lambda: fleet.quarantined("cluster", "reserved_name") == 0, WAIT)
    await fleet.changes_flow("late-1", "late")
    await load.stop()
    assert load.failures == []


async def test_hostile_clients_during_a_change_delay_nobody(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xds_server.server")
    load = fleet.load({"web": {"web-1", "web-2"}})
    async with hostile_clients(fleet.bridge.xds_port) as refused:
        await until(lambda: hostile_streams(fleet) >= 14, WAIT, "the hostile streams open")
        fleet.consul.deregister("web-2")  # the change, while they run
        await eventually(lambda: answers(fleet, "web"), lambda s: s == {"web-1"}, timeout=WAIT)
        load.expected["web"] = {"web-1"}  # web-2 must not be reached any more
        await answers(fleet, "web")
        load.expected["web"] = {"web-1", "web-2"}
        fleet.register("web-2", "web")  # and back
        await eventually(
            lambda: answers(fleet, "web"), lambda s: s == {"web-1", "web-2"}, timeout=WAIT
        )
        await until(lambda: throttled(fleet), WAIT, "a flooder held back by its work budget")
        clients = (await fleet.debug("clients"))["clients"]
        assert any(c["throttled_seconds"] > 0 for c in clients if c["node_id"] == "flooder-0")
        assert warnings(caplog, "uses more than its share of the server's time")
        assert await within(refused, WAIT) == "oversized node refused: INVALID_ARGUMENT"
    await load.stop()
    assert load.failures == []


async def connect_timeout(envoy: Envoy, cluster: str) -> str:
    found = (await envoy.active_clusters()).get(cluster)
    return str(found["cluster"].get("connect_timeout", "")) if found else ""


async def answers(fleet: Fleet, host: str, requests: int = 8) -> set[str]:
    return {(await fleet.answer(host))[1] for _ in range(requests)}


def hostile_streams(fleet: Fleet) -> int:
    prefixes = ("flooder-", "subscriber-", "stuck-")
    return sum(1 for s in fleet.bridge.registry.streams.values() if s.node_id.startswith(prefixes))


def throttled(fleet: Fleet) -> bool:
    return any(s.throttled > 0 for s in fleet.bridge.registry.by_node("flooder-0"))


@contextlib.asynccontextmanager
async def hostile_clients(xds_port: int) -> AsyncIterator[asyncio.Future[str]]:
    """The hostile clients in their own process; yields the refusal line of the oversized
    node (a future)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.support.hostile_clients",
        f"127.0.0.1:{xds_port}",
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    stdout = process.stdout

    async def refusal() -> str:
        lines = _lines(stdout)
        async for line in lines:
            if line.startswith("oversized"):
                return line
        return ""

    try:
        async for line in _lines(stdout):
            if line == "started":
                break
        refused = asyncio.ensure_future(refusal())
        yield refused
    finally:
        process.kill()
        await process.wait()


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[str]:
    while line := await stream.readline():
        yield line.decode().strip()
