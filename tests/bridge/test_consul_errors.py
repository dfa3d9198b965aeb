"""Consul failures read as one line: the cause first, then the datacenter and the path."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from bridge.consul_errors import consul_shape_problem, describe_consul_error
from tests.support.ports import free_port

PATH = "/v1/health/service/web"


async def failure(url: str, *, as_json: bool = False) -> BaseException:
    """What a real aiohttp request to ``url`` raises (decoding the body as JSON if asked)."""
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            if as_json:
                await response.json(content_type=None)
            response.raise_for_status()
    except Exception as exc:
        return exc
    raise AssertionError("no failure")


@pytest.fixture
async def not_consul() -> AsyncIterator[str]:
    """An HTTP server that is not Consul: HTML at /, a JSON list at /list, 403 at /denied."""

    async def html(request: web.Request) -> web.Response:
        return web.Response(text="<html>hello</html>", content_type="text/html")

    async def listing(request: web.Request) -> web.Response:
        return web.json_response(["a", "b"])

    async def denied(request: web.Request) -> web.Response:
        return web.Response(status=403, text="ACL not found")

    app = web.Application()
    app.router.add_get("/", html)
    app.router.add_get("/list", listing)
    app.router.add_get("/denied", denied)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_a_refused_connection_names_the_address_dc_and_path() -> None:
    port = free_port()  # nothing listens there
    exc = await failure(f"http://127.0.0.1:{port}{PATH}")
    text = describe_consul_error(exc, "dc1", PATH)
    assert text == f"connection refused by 127.0.0.1:{port} (dc dc1, {PATH})"


async def test_a_wrapper_raised_from_the_transport_error_is_described_by_its_cause() -> None:
    port = free_port()
    root = await failure(f"http://127.0.0.1:{port}/")

    class Wrapped(Exception):
        pass

    try:
        try:
            raise root
        except aiohttp.ClientError:
            raise Wrapped(f"GET /: {root!r}") from None  # as the Consul client wraps it
    except Wrapped as exc:
        text = describe_consul_error(exc, "", "/v1/catalog/services")
    assert text.startswith("connection refused by 127.0.0.1:")
    assert text.endswith("(local dc, /v1/catalog/services)")
    assert "ConnectionKey" not in text


async def test_an_http_server_that_is_not_consul_is_named_as_such(not_consul: str) -> None:
    exc = await failure(f"{not_consul}/", as_json=True)
    assert describe_consul_error(exc, "dc1", "/v1/catalog/services") == (
        "not a Consul HTTP API: the answer is not JSON (dc dc1, /v1/catalog/services)"
    )
    async with aiohttp.ClientSession() as session, session.get(f"{not_consul}/list") as response:
        body = await response.json()
    try:
        body["Service"]  # what reading a health entry from a list of strings does
    except TypeError as exc:
        text = describe_consul_error(exc, "dc1", PATH)
    assert (
        text == f"not a Consul HTTP API: the answer is JSON of an unexpected shape (dc dc1, {PATH})"
    )
    assert consul_shape_problem("/v1/catalog/services", body) is not None
    assert consul_shape_problem(PATH, body) == "not a Consul HTTP API: expected a list of objects"


async def test_http_statuses_and_timeouts_read_as_their_meaning(not_consul: str) -> None:
    exc = await failure(f"{not_consul}/denied")
    assert describe_consul_error(exc, "dc2", PATH).startswith("permission denied (403)")
    with pytest.raises(TimeoutError) as timeout:
        async with asyncio.timeout(0):
            await asyncio.sleep(1)
    assert describe_consul_error(timeout.value, "dc1", PATH) == (
        f"no answer within the request timeout (dc dc1, {PATH})"
    )


def test_consul_shaped_bodies_pass_the_shape_check() -> None:
    assert consul_shape_problem("/v1/agent/self", {"Config": {"Datacenter": "dc1"}}) is None
    assert consul_shape_problem("/v1/catalog/services", {"web": ["v1"], "consul": []}) is None
    assert consul_shape_problem(PATH, [{"Service": {}, "Node": {}, "Checks": []}]) is None
    assert consul_shape_problem("/v1/status/leader", "10.0.0.1:8300") is None
    assert consul_shape_problem("/v1/agent/self", json.loads("[]")) is not None


def test_an_unknown_error_keeps_its_type_and_first_line() -> None:
    exc = RuntimeError("something odd\nwith a second line")
    assert describe_consul_error(exc, "dc1", PATH) == (
        f"RuntimeError: something odd (dc dc1, {PATH})"
    )
