"""``make demo``: Consul, the bridge, a real Envoy and sample backends, walked through.

Starts everything on loopback: ``consul agent -dev`` when ``consul`` is on PATH, else the
project's Consul double. Registers an HTTP service (three instances) and a gRPC service through
Consul's HTTP API, sends HTTP and gRPC requests through Envoy, moves traffic by deregistering an
instance, reports the push latency the bridge measured, then writes Consul config entries for a
90/10 canary split and a header route to the canary. Then it keeps running until Ctrl-C
(``--once``: exit after the walk-through, as the tests do).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import IO, Any

import aiohttp
import grpc
from aiohttp import web

from consul_double import ConsulDouble

BIN = Path(sys.executable).parent
GRPC_METHOD = "/demo.Greeter/Hello"


def port_or_free(preferred: int) -> int:
    """``preferred`` when it is free, else any free port. ``CONSUL_XDS_DEMO_PORTS=any`` skips
    the preferred ports altogether (the tests set it, so that two test runs on one machine never
    race for 8500/18000/...)."""
    if os.environ.get("CONSUL_XDS_DEMO_PORTS") == "any":
        preferred = 0
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
            return int(sock.getsockname()[1])
        except OSError:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])


def say(text: str = "") -> None:
    print(text, flush=True)


class Backends:
    """Sample HTTP and gRPC instances answering with their own name."""

    def __init__(self) -> None:
        self.runners: list[web.AppRunner] = []
        self.grpc_servers: list[grpc.aio.Server] = []

    async def http(self, name: str) -> int:
        async def handle(request: web.Request) -> web.Response:
            return web.Response(text=f"{name}\n")

        app = web.Application()
        app.router.add_get("/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self.runners.append(runner)
        return int(runner.addresses[0][1])

    async def grpc(self, name: str) -> int:
        async def hello(request: bytes, context: Any) -> bytes:
            return name.encode()

        handler = grpc.method_handlers_generic_handler(
            "demo.Greeter", {"Hello": grpc.unary_unary_rpc_method_handler(hello)}
        )
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((handler,))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self.grpc_servers.append(server)
        return port

    async def stop(self) -> None:
        for runner in self.runners:
            await runner.cleanup()
        for server in self.grpc_servers:
            await server.stop(None)


@contextlib.asynccontextmanager
async def consul_agent(port: int, workdir: Path) -> AsyncIterator[tuple[str, str]]:
    """A Consul HTTP API on ``port``: (url, what it is)."""
    binary = shutil.which("consul")
    if binary is None:
        async with ConsulDouble(datacenter="dc1", port=port) as double:
            yield double.url, "Consul (double)"
        return
    log = _log_file(workdir / "consul.log")
    process = await asyncio.create_subprocess_exec(
        binary, "agent", "-dev", "-bind", "127.0.0.1", "-client", "127.0.0.1",
        "-http-port", str(port), "-grpc-port", "-1", "-dns-port", "-1",
        "-serf-lan-port", str(port_or_free(18301)), "-serf-wan-port", str(port_or_free(18302)),
        "-server-port", str(port_or_free(18300)),
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as session:
            await wait_http(f"{url}/v1/status/leader", session, accept=lambda body: len(body) > 2)
        yield url, f"Consul ({binary} agent -dev)"
    finally:
        process.terminate()
        await process.wait()


async def register(
    session: aiohttp.ClientSession, consul: str, name: str, instance: str, port: int, **meta: str
) -> None:
    body = {"Name": name, "ID": instance, "Address": "127.0.0.1", "Port": port, "Meta": meta}
    async with session.put(f"{consul}/v1/agent/service/register", json=body) as response:
        response.raise_for_status()


async def write_entry(session: aiohttp.ClientSession, consul: str, entry: dict[str, Any]) -> None:
    """``consul config write``: one config entry through ``PUT /v1/config``."""
    async with session.put(f"{consul}/v1/config", json=entry) as response:
        if response.status != 200:
            raise RuntimeError(f"writing {entry['Kind']} {entry['Name']}: {await response.text()}")


async def deregister(session: aiohttp.ClientSession, consul: str, instance: str) -> None:
    async with session.put(f"{consul}/v1/agent/service/deregister/{instance}") as response:
        response.raise_for_status()


def _log_file(path: Path) -> IO[str]:
    return path.open("w")  # closed when the demo's processes exit


async def wait_http(
    url: str,
    session: aiohttp.ClientSession,
    seconds: float = 30,
    accept: Callable[[str], bool] = lambda body: True,
    host: str | None = None,
) -> None:
    deadline = time.monotonic() + seconds
    headers = {"Host": host} if host else {}
    while time.monotonic() < deadline:
        with contextlib.suppress(aiohttp.ClientError, OSError):
            async with session.get(url, headers=headers) as response:
                if response.status == 200 and accept(await response.text()):
                    return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not answer 200 within {seconds:.0f}s")


def counted(seen: collections.Counter[str]) -> str:
    return ", ".join(f"{name} x{count}" for name, count in sorted(seen.items()))


async def sample(
    session: aiohttp.ClientSession, port: int, host: str, n: int = 6, **headers: str
) -> str:
    seen: collections.Counter[str] = collections.Counter()
    for _ in range(n):
        try:
            url = f"http://127.0.0.1:{port}/"
            sent = {"Host": host, **{k.replace("_", "-"): v for k, v in headers.items()}}
            async with session.get(url, headers=sent) as r:
                seen[(await r.text()).strip() if r.status == 200 else f"HTTP {r.status}"] += 1
        except aiohttp.ClientError as exc:
            seen[type(exc).__name__] += 1
    return counted(seen)


async def sample_grpc(port: int, authority: str, n: int = 4) -> str:
    """gRPC calls through Envoy's listener; Envoy routes them by ``:authority``."""
    seen: collections.Counter[str] = collections.Counter()
    options = [("grpc.default_authority", authority)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        hello: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(GRPC_METHOD)
        for _ in range(n):
            try:
                seen[(await hello(b"", timeout=5)).decode()] += 1
            except grpc.aio.AioRpcError as exc:
                seen[f"gRPC {exc.code().name}"] += 1
    return counted(seen)


async def push_latency(session: aiohttp.ClientSession, admin: str) -> str:
    async with session.get(f"{admin}/metrics") as response:
        text = await response.text()
    total = count = 0.0
    for line in text.splitlines():
        match = re.match(
            r'consul_xds_push_latency_seconds_(sum|count)\{type="endpoint"\} (\S+)', line
        )
        if match:
            if match.group(1) == "sum":
                total = float(match.group(2))
            else:
                count = float(match.group(2))
    if not count:
        return "no observation yet"
    return f"mean {total / count * 1000:.1f} ms over {int(count)} endpoint pushes"


SUBSETS = {
    "v1": {"Filter": "Service.Meta.version == v1"},
    "v2": {"Filter": "Service.Meta.version == v2"},
}


async def until_answers(
    session: aiohttp.ClientSession, ingress: int, expected: str, what: str, **headers: str
) -> None:
    """Wait (10 s at most) until 6 requests in a row get ``expected``."""
    deadline = time.monotonic() + 10
    while await sample(session, ingress, "web", 6, **headers) != expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not reach Envoy within 10 s")


async def canary(
    session: aiohttp.ClientSession, consul: str, ingress: int, backends: Backends
) -> None:
    """Step 4: a canary instance of web, then config entries: 90/10 split, header route."""
    port = await backends.http("web-canary")
    await register(session, consul, "web", "web-canary", port, version="v2")
    deadline = time.monotonic() + 10
    while "web-canary" not in await sample(session, ingress, "web", 6):
        if time.monotonic() > deadline:
            raise RuntimeError("web-canary did not get traffic within 10 s")
    say("4. web-canary (meta version=v2) registered, then Consul config entries written:")
    say("   service-defaults (http), service-resolver (subsets v1, v2 by meta version),")
    say("   service-splitter (v1 90 %, v2 10 %), service-router (x-canary: yes → v2)")
    started = time.perf_counter()
    defaults = {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}
    await write_entry(session, consul, defaults)
    resolver = {"Kind": "service-resolver", "Name": "web", "Subsets": SUBSETS}
    await write_entry(session, consul, resolver)
    split = [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}]
    await write_entry(session, consul, {"Kind": "service-splitter", "Name": "web", "Splits": split})
    match = {"HTTP": {"Header": [{"Name": "x-canary", "Exact": "yes"}]}}
    route = {"Match": match, "Destination": {"ServiceSubset": "v2"}}
    await write_entry(session, consul, {"Kind": "service-router", "Name": "web", "Routes": [route]})
    await until_answers(session, ingress, "web-canary x6", "the header route", x_canary="yes")
    routed_ms = (time.perf_counter() - started) * 1000
    say(f"   entries written → header route in traffic within {routed_ms:.0f} ms")
    say(f"   HTTP (Host: web) x100:           {await sample(session, ingress, 'web', 100)}")
    canary_only = await sample(session, ingress, "web", 6, x_canary="yes")
    say(f"   with header x-canary: yes:       {canary_only}")


async def start_process(*args: str, log: IO[str] | int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(*args, stdout=log, stderr=log)


async def main(once: bool) -> int:
    envoy = shutil.which("envoy") or str(BIN / "envoy")
    bridge = str(BIN / "consul-xds-bridge")
    ports = {
        name: port_or_free(preferred)
        for name, preferred in (
            ("consul", 8500), ("xds", 18000), ("admin", 9102), ("ingress", 10000),
            ("envoy_admin", 19000),
        )
    }  # fmt: skip
    workdir = Path(tempfile.mkdtemp(prefix="consul-xds-demo-"))
    processes: list[asyncio.subprocess.Process] = []
    backends = Backends()
    admin = f"http://127.0.0.1:{ports['admin']}"
    ingress = ports["ingress"]
    timeout = aiohttp.ClientTimeout(total=5)
    try:
        async with (
            consul_agent(ports["consul"], workdir) as (consul, consul_kind),
            aiohttp.ClientSession(timeout=timeout) as session,
        ):
            for name in ("web-1", "web-2", "web-3"):
                port = await backends.http(name)
                await register(session, consul, "web", name, port, version="v1")
            await register(
                session, consul, "greeter", "greeter-1", await backends.grpc("greeter-1"),
                **{"xds-protocol": "grpc"},
            )  # fmt: skip
            processes.append(
                await start_process(
                    bridge, "serve", "--consul-addr", consul,
                    "--xds-listen", f"127.0.0.1:{ports['xds']}",
                    "--admin-listen", f"127.0.0.1:{ports['admin']}",
                    log=_log_file(workdir / "bridge.log"),
                )
            )  # fmt: skip
            boot = await asyncio.create_subprocess_exec(
                bridge, "bootstrap", "--node-id", "demo-envoy", "--node-cluster", "demo",
                "--xds-address", f"127.0.0.1:{ports['xds']}",
                "--admin-port", str(ports["envoy_admin"]),
                "--metadata", f"ingress_port={ingress}",
                "--metadata", "ingress_address=127.0.0.1",
                stdout=asyncio.subprocess.PIPE,
            )  # fmt: skip
            config, _ = await boot.communicate()
            if boot.returncode:
                raise RuntimeError("consul-xds-bridge bootstrap failed")
            (workdir / "envoy.yaml").write_bytes(config)
            processes.append(
                await start_process(
                    envoy, "-c", str(workdir / "envoy.yaml"), "--disable-hot-restart",
                    "--log-path", str(workdir / "envoy.log"), "--log-level", "warn",
                    log=asyncio.subprocess.DEVNULL,
                )
            )  # fmt: skip
            await wait_http(f"{admin}/readyz", session)
            await wait_http(f"http://127.0.0.1:{ports['envoy_admin']}/ready", session)
            await wait_http(f"http://127.0.0.1:{ingress}/", session, seconds=10, host="web")
            say("consul-xds-bridge demo — everything on 127.0.0.1")
            say(f"  {consul_kind:<16} {consul}")
            say(f"  bridge           xDS :{ports['xds']}, admin {admin}")
            say(f"  Envoy            listener :{ingress}, admin :{ports['envoy_admin']}")
            say(f"  logs             {workdir}")
            say()
            say("1. Consul has 'web' (web-1, web-2, web-3) and the gRPC service 'greeter'")
            say(f"   HTTP through Envoy (Host: web):  {await sample(session, ingress, 'web')}")
            say(f"   gRPC through Envoy (greeter):    {await sample_grpc(ingress, 'greeter')}")
            say(f"   unknown host:                    {await sample(session, ingress, 'nope', 1)}")
            started = time.perf_counter()
            await deregister(session, consul, "web-2")
            deadline = time.monotonic() + 10
            while "web-2" in await sample(session, ingress, "web", 3):
                if time.monotonic() > deadline:
                    raise RuntimeError("traffic still reaches web-2 10 s after deregistering it")
            moved_ms = (time.perf_counter() - started) * 1000
            say(f"2. deregistered web-2 → traffic moved within {moved_ms:.0f} ms")
            say(f"   HTTP through Envoy (Host: web):  {await sample(session, ingress, 'web')}")
            say(f"3. bridge-measured push latency: {await push_latency(session, admin)}")
            await canary(session, consul, ingress, backends)
            say()
            say("Try next:")
            say(f"  curl -H 'Host: web' http://127.0.0.1:{ingress}/")
            say(f"  curl {admin}/debug/clients      # what each Envoy was sent and ACKed")
            say(f"  curl {admin}/metrics | grep consul_xds_")
            say(f"  curl {admin}/debug/traffic      # config entries and compiled chains")
            say(f"  curl -H 'Host: web' -H 'x-canary: yes' http://127.0.0.1:{ingress}/")
            say(f"  curl -X PUT {consul}/v1/agent/service/deregister/web-1")
            if once:
                return 0
            say("\nRunning until Ctrl-C.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            return 0
    finally:
        for process in processes:
            if process.returncode is None:
                process.terminate()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(10):
                        await process.wait()
        await backends.stop()
        if once:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after the walk-through")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(parser.parse_args().once)))
