"""The Consul token never leaves the process: no redirect is followed (a recorder on another port
sees nothing), and every output surface -- the log, ``/metrics``, ``/debug/*``, ``/readyz`` --
is free of it under redirects, redirect loops and error bodies that echo the request."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from bridge.app import Bridge, BridgeConfig
from bridge.consul import ConsulClient, ConsulError
from bridge.consul_settings import settings_from_env
from bridge.secret_guard import REDACTED, Redactor, origin, redact, refused_redirect
from tests.support.waiting import until

TOKEN = "c0n5ul-acl-70ken-8f7e6d5c4b3a"
DEBUG_TOKEN = "adm1n-debug-70ken-1a2b3c4d"


def test_redact_known_secrets_and_token_headers() -> None:
    assert redact(f"token {TOKEN} twice {TOKEN}", [TOKEN]) == f"token {REDACTED} twice {REDACTED}"
    assert redact("short abc stays", ["abc"]) == "short abc stays"  # too short to be a secret
    # what aiohttp's exceptions print: the request headers, whatever the token is
    printed = "headers=<CIMultiDictProxy('Host': 'x', 'X-Consul-Token': 'unknown-1234')>"
    assert redact(printed, []) == (
        f"headers=<CIMultiDictProxy('Host': 'x', 'X-Consul-Token': '{REDACTED}')>"
    )
    assert redact("authorization: Bearer abc.def", []) == f"authorization: Bearer {REDACTED}"
    assert redact("X-Consul-Token=t0k", []) == f"X-Consul-Token={REDACTED}"
    # a secret that contains another is replaced whole
    scrub = Redactor()
    scrub.add("secret-1234", "secret-1234-longer", "", None)
    assert scrub("x secret-1234-longer y") == f"x {REDACTED} y"
    assert "secret" not in repr(scrub)


def test_a_redirect_is_refused_naming_only_the_target_origin() -> None:
    assert refused_redirect("GET", "/v1/x", 200, None) is None
    text = refused_redirect("GET", "/v1/x", 307, "http://user:pw@evil.example:8080/p?token=t")
    assert text is not None
    assert "HTTP 307 redirect to http://evil.example:8080 not followed" in text
    assert "pw" not in text
    assert "token=t" not in text
    assert origin("/relative") == "(a relative location)"
    assert origin("") == "(no Location)"
    assert origin("https://[::1]:8501/x") == "https://[::1]:8501"


@dataclass
class FakeConsul:
    """A loopback HTTP server in front of which the bridge thinks Consul is, and a recorder on
    another port that redirects point to."""

    mode: str = "redirect"
    url: str = ""
    recorder_url: str = ""
    recorded: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0


@contextlib.asynccontextmanager
async def fake_consul() -> AsyncIterator[FakeConsul]:
    state = FakeConsul()

    async def consul(request: web.Request) -> web.StreamResponse:
        state.requests += 1
        if state.mode == "redirect":  # 302 to another host:port
            raise web.HTTPFound(state.recorder_url + request.path_qs)
        if state.mode == "downgrade":  # 307 keeps the method; http instead of https
            raise web.HTTPTemporaryRedirect(state.recorder_url + request.path_qs)
        if state.mode == "loop":
            raise web.HTTPFound(state.url + request.path_qs)
        headers = "\n".join(f"{k}: {v}" for k, v in request.headers.items())
        return web.Response(status=500, text=f"upstream failed for request:\n{headers}")

    async def recorder(request: web.Request) -> web.Response:
        state.recorded.append(dict(request.headers))
        return web.json_response({})

    runners = []
    for handler in (consul, recorder):
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
    state.url, state.recorder_url = (
        f"http://127.0.0.1:{runner.addresses[0][1]}" for runner in runners
    )
    try:
        yield state
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.mark.parametrize("mode", ["redirect", "downgrade", "loop"])
async def test_the_client_follows_no_redirect(mode: str) -> None:
    async with fake_consul() as server:
        server.mode = mode
        settings = settings_from_env({}, address=server.url, token=TOKEN)
        outcomes: list[str] = []
        async with ConsulClient(
            settings, on_request=lambda outcome, dc: outcomes.append(outcome)
        ) as client:
            with pytest.raises(ConsulError) as caught:
                await client.get_json("/v1/agent/self")
        assert caught.value.kind == "redirect"
        assert outcomes == ["redirect"]
        assert server.requests == 1  # not even a loop is followed
        assert server.recorded == []
        assert TOKEN not in str(caught.value)


async def outputs(bridge: Bridge) -> dict[str, str]:
    """Every admin surface's status, headers and body, by path."""
    paths = ["/healthz", "/readyz", "/metrics", "/debug/clients", "/debug/consul"]
    paths += ["/debug/templates", "/debug/resources?node=edge-1", "/debug/nope"]
    bodies = {}
    bearer = {"Authorization": f"bearer {DEBUG_TOKEN}"}  # any case: RFC 7235
    async with aiohttp.ClientSession(headers=bearer) as session:
        for path in paths:
            async with session.get(f"http://127.0.0.1:{bridge.admin_port}{path}") as response:
                bodies[path] = f"{response.status} {dict(response.headers)} {await response.text()}"
    assert bodies["/debug/consul"].startswith("200 ")
    return bodies


async def test_no_output_surface_shows_the_token_under_redirects_and_echoes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: dict[str, str] = {}
    async with fake_consul() as server:
        settings = settings_from_env(
            {}, address=server.url, token=TOKEN, wait="2s", backoff_base="50ms", backoff_max="0.2s"
        )  # retries stay frequent: each fault is seen within a fraction of a second
        config = BridgeConfig(
            consul=settings,
            xds_listen="127.0.0.1:0",
            admin_listen="127.0.0.1:0",
            admin_debug_token=DEBUG_TOKEN,
        )
        async with Bridge(config) as bridge:
            for mode, mark in [
                ("redirect", "HTTP 302 redirect to"),
                ("downgrade", "HTTP 307 redirect to"),
                ("loop", f"HTTP 302 redirect to {server.url} not followed"),
                ("echo", "HTTP 500"),
            ]:
                server.mode = mode
                await until(
                    lambda mark=mark: any(mark in e for e in last_errors(bridge)),  # type: ignore[misc]
                    what=f"{mode}: {mark!r} in /debug/consul",
                )
                seen |= {f"{mode} {path}": body for path, body in (await outputs(bridge)).items()}
    echoed = seen["echo /debug/consul"]
    assert f"X-Consul-Token: {REDACTED}" in echoed  # the echo arrived, scrubbed
    redirects = 'consul_xds_consul_requests_total{dc="local",outcome="redirect"}'
    assert redirects in seen["loop /metrics"]
    assert server.recorded == []  # nothing ever reached the redirect target
    logged = caplog.text + "\n".join(
        f"{r.getMessage()} {r.exc_text or ''} {r.args!r}" for r in caplog.records
    )
    assert "redirect to" in logged
    assert "HTTP 500" in logged
    for secret in (TOKEN, DEBUG_TOKEN):
        assert secret not in logged
        for where, body in seen.items():
            assert secret not in body, where


def last_errors(bridge: Bridge) -> list[str]:
    return [w["last_error"] or "" for w in bridge.watcher.status()["watches"]]
