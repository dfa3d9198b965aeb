"""ConsulClient against a tiny aiohttp server: headers, errors, the connection cap, TLS."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
import trustme
from aiohttp import web

from bridge.consul import ConsulClient, ConsulError
from bridge.consul_settings import settings_from_env
from bridge.tasks import within

TOKEN = "tok-1234-secret"


@dataclass
class Server:
    url: str
    seen: list[web.Request] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)
    three_in_flight: asyncio.Event = field(default_factory=asyncio.Event)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    state = Server(url="")

    async def health(request: web.Request) -> web.Response:
        state.seen.append(request)
        return web.json_response(
            [{"Service": {"Service": "web"}}],
            headers={"X-Consul-Index": "42", "X-Consul-Results-Filtered-By-ACLs": "true"},
        )

    async def agent_self(request: web.Request) -> web.Response:
        state.seen.append(request)
        return web.json_response({"Config": {"Datacenter": "dc7"}})

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="No cluster leader")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(text="{not json", headers={"X-Consul-Index": "3"})

    async def slow(request: web.Request) -> web.Response:
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        if state.in_flight >= 3:
            state.three_in_flight.set()
        await state.release.wait()
        state.in_flight -= 1
        return web.json_response([], headers={"X-Consul-Index": "1"})

    app = web.Application()
    app.router.add_get("/v1/health/service/web", health)
    app.router.add_get("/v1/agent/self", agent_self)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/garbage", garbage)
    app.router.add_get("/slow", slow)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    yield state
    await runner.cleanup()


async def test_token_travels_as_header_and_response_headers_are_exposed(server: Server) -> None:
    async with ConsulClient(settings_from_env({}, address=server.url, token=TOKEN)) as client:
        resp = await client.get_json("/v1/health/service/web", {"dc": "dc2", "token": TOKEN})
    assert resp.status == 200
    assert resp.index == 42
    assert resp.filtered_by_acls is True
    assert resp.body == [{"Service": {"Service": "web"}}]
    request = server.seen[0]
    assert request.headers["X-Consul-Token"] == TOKEN
    assert TOKEN not in str(request.url)
    assert request.query["dc"] == "dc2"


async def test_explicit_settings_win_over_consuls_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Consul's own clients let these override; the settings layer already read them.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "env-token")
    monkeypatch.setenv("CONSUL_HTTP_ADDR", "elsewhere")
    async with ConsulClient(settings_from_env({}, address=server.url, token=TOKEN)) as client:
        agent = await client.get_json("/v1/agent/self")
    assert agent.body["Config"]["Datacenter"] == "dc7"
    assert server.seen[0].headers["X-Consul-Token"] == TOKEN


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/status/500", "server_error"),
        ("/status/429", "rate_limited"),
        ("/status/403", "acl_denied"),
        ("/status/400", "client_error"),
        ("/garbage", "invalid_json"),
    ],
)
async def test_errors_have_kinds_and_are_reported(server: Server, path: str, kind: str) -> None:
    outcomes: list[str] = []
    settings = settings_from_env({}, address=server.url)
    async with ConsulClient(
        settings, on_request=lambda outcome, dc: outcomes.append(outcome)
    ) as client:
        with pytest.raises(ConsulError) as caught:
            await client.get_json(path)
    assert caught.value.kind == kind
    assert outcomes == [kind]


async def test_connection_refused_is_a_connection_error() -> None:
    settings = settings_from_env({}, address="127.0.0.1:1")
    async with ConsulClient(settings) as client:
        with pytest.raises(ConsulError) as caught:
            await client.get_json("/v1/agent/self")
    assert caught.value.kind == "connection"


async def test_timeout_is_wait_based_and_reported(server: Server) -> None:
    settings = settings_from_env({}, address=server.url, wait="100ms", request_margin=0.05)
    async with ConsulClient(settings) as client:
        with pytest.raises(ConsulError) as caught:
            await client.get_json("/slow")
    assert caught.value.kind == "timeout"
    server.release.set()


async def test_connections_are_capped_and_counted(server: Server) -> None:
    counts: list[int] = []
    settings = settings_from_env({}, address=server.url, max_connections=3)
    async with ConsulClient(settings, on_connections=counts.append) as client:
        tasks = [asyncio.create_task(client.get_json("/slow")) for _ in range(10)]
        await within(server.three_in_flight.wait(), 5)
        await asyncio.sleep(0.05)  # give a fourth request the chance to (wrongly) get through
        assert client.connections_in_use == 3
        server.release.set()
        results = await asyncio.gather(*tasks)
    assert len(results) == 10
    assert server.max_in_flight == 3
    assert max(counts) == 3
    assert client.connections_in_use == 0


async def test_mutual_tls_with_ca_client_cert_key_and_server_name() -> None:
    ca = trustme.CA()
    server_cert = ca.issue_cert("server.dc1.consul")
    client_cert = ca.issue_cert("bridge@example")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    peers: list[object] = []

    async def handler(request: web.Request) -> web.Response:
        peers.append(request.transport.get_extra_info("peercert") if request.transport else None)
        # Consul answers /v1/status/leader with the leader's address as a JSON string
        return web.json_response("127.0.0.1:8300", headers={"X-Consul-Index": "5"})

    app = web.Application()
    app.router.add_get("/v1/status/leader", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_ctx)
    await site.start()
    port = runner.addresses[0][1]
    try:
        with (
            ca.cert_pem.tempfile() as ca_file,
            client_cert.private_key_and_cert_chain_pem.tempfile() as both,
        ):
            env = {"CONSUL_HTTP_ADDR": f"https://127.0.0.1:{port}", "CONSUL_CACERT": ca_file}
            env |= {"CONSUL_CLIENT_CERT": both, "CONSUL_CLIENT_KEY": both}
            env |= {"CONSUL_TLS_SERVER_NAME": "server.dc1.consul"}
            async with ConsulClient(settings_from_env(env)) as client:
                resp = await client.get_json("/v1/status/leader")
            assert resp.body == "127.0.0.1:8300"
            assert peers
            assert peers[0]
            # Without the expected server name (or the CA), verification fails: a connection
            # error, not a crash.
            for drop in ("CONSUL_TLS_SERVER_NAME", "CONSUL_CACERT"):
                async with ConsulClient(settings_from_env(env | {drop: ""})) as client:
                    with pytest.raises(ConsulError) as caught:
                        await client.get_json("/v1/status/leader")
                assert caught.value.kind == "connection"
            env |= {"CONSUL_TLS_SERVER_NAME": "", "CONSUL_HTTP_SSL_VERIFY": "false"}
            async with ConsulClient(settings_from_env(env)) as client:
                assert (await client.get_json("/v1/status/leader")).index == 5
    finally:
        await runner.cleanup()


def test_unreadable_tls_files_are_a_clear_error() -> None:
    settings = settings_from_env({"CONSUL_HTTP_ADDR": "https://c:8501", "CONSUL_CACERT": "/no"})
    with pytest.raises(ValueError, match="CONSUL_CACERT"):
        ConsulClient(settings)
