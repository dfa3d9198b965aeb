"""What the Consul client puts on the wire: service names encoded exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from bridge.consul import ConsulClient, service_path
from bridge.consul.global_mode import NOT_PASSING
from bridge.consul_settings import settings_from_env

AWKWARD = "a b/c%d"


@pytest.fixture
async def seen() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A server answering every GET with ``[]``; yields its URL and the requests it saw."""
    requests: list[web.Request] = []

    async def anything(request: web.Request) -> web.Response:
        requests.append(request)
        return web.json_response([], headers={"X-Consul-Index": "3"})

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        await runner.cleanup()


def test_a_service_name_is_one_path_segment_encoded_once() -> None:
    assert service_path(AWKWARD) == "/v1/health/service/a%20b%2Fc%25d"
    assert service_path("web") == "/v1/health/service/web"


async def test_the_request_path_is_sent_exactly_as_encoded(
    seen: tuple[str, list[web.Request]],
) -> None:
    url, requests = seen
    async with ConsulClient(settings_from_env({}, address=url)) as client:
        await client.get_json(service_path(AWKWARD), {"dc": "dc 2", "index": 7, "wait": "1s"})
    (request,) = requests
    assert request.raw_path.split("?")[0] == "/v1/health/service/a%20b%2Fc%25d"
    assert "%25" not in request.raw_path.replace("%25d", "")  # nothing encoded twice
    assert dict(request.query) == {"dc": "dc 2", "index": "7", "wait": "1s"}


async def test_a_filter_expression_arrives_unchanged(seen: tuple[str, list[web.Request]]) -> None:
    url, requests = seen
    async with ConsulClient(settings_from_env({}, address=url)) as client:
        await client.get_json("/v1/health/state/any", {"filter": NOT_PASSING})
    assert requests[0].query["filter"] == 'Status != "passing"'
