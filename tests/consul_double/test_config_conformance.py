"""Config entries and path decoding, checked against the double and (when a ``consul`` binary is
installed) a real ``consul agent -dev``. Entry names are unique per test: a real agent is shared
by the whole session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import pytest
from yarl import URL

from bridge.tasks import within

from .api import ConsulAPI, Reply

CONFIG = "/v1/config"


@pytest.fixture
async def entries(consul_api: ConsulAPI) -> AsyncIterator[list[tuple[str, str]]]:
    """(kind, name) of the entries a test wrote, deleted afterwards (routers first)."""
    written: list[tuple[str, str]] = []
    yield written
    order = ("service-router", "service-splitter", "service-resolver", "service-defaults")
    for kind in order:
        for k, n in written:
            if k == kind:
                await consul_api.request("DELETE", f"{CONFIG}/{k}/{n}")


async def put(
    api: ConsulAPI, written: list[tuple[str, str]], entry: dict[str, Any], **params: str
) -> Reply:
    reply = await api.put(CONFIG, entry, **params)
    if reply.status == 200:
        written.append((entry["Kind"], entry["Name"]))
    return reply


async def test_write_read_list_and_delete(
    consul_api: ConsulAPI, entries: list[tuple[str, str]], name: str
) -> None:
    api = consul_api
    for n in (f"{name}-b", f"{name}-a"):
        reply = await put(api, entries, {"Kind": "service-defaults", "Name": n, "Protocol": "HTTP"})
        assert (reply.status, reply.body) == (200, True)
    got = await api.get(f"{CONFIG}/service-defaults/{name}-a")
    assert got.status == 200
    entry = got.body
    assert (entry["Kind"], entry["Name"], entry["Protocol"]) == (
        "service-defaults",
        f"{name}-a",
        "http",
    )
    assert entry["CreateIndex"] == entry["ModifyIndex"] == got.index  # the latest write
    listed = await api.get(f"{CONFIG}/service-defaults")
    mine = [e["Name"] for e in listed.body if e["Name"].startswith(name)]
    assert mine == [f"{name}-a", f"{name}-b"]  # sorted by name
    assert listed.index == got.index
    deleted = await api.request("DELETE", f"{CONFIG}/service-defaults/{name}-a")
    assert (deleted.status, deleted.body) == (200, {})
    missing = await api.get(f"{CONFIG}/service-defaults/{name}-a")
    assert missing.status == 404
    assert missing.text.strip() == f'Config entry not found for "service-defaults" / "{name}-a"'
    assert missing.index > got.index  # the delete moved the table's index, reported on a 404
    again = await api.request("DELETE", f"{CONFIG}/service-defaults/{name}-a")
    assert again.status == 200  # deleting a missing entry is no error


async def test_one_index_for_the_whole_table_wakes_list_reads(
    consul_api: ConsulAPI, entries: list[tuple[str, str]], name: str
) -> None:
    api = consul_api
    await put(api, entries, {"Kind": "service-defaults", "Name": f"{name}-a", "Protocol": "http"})
    resolvers = await api.get(f"{CONFIG}/service-resolver")
    written = (await api.get(f"{CONFIG}/service-defaults/{name}-a")).body["ModifyIndex"]
    assert resolvers.index == written  # another kind reports the same table index
    blocked = await api.start_get(
        f"{CONFIG}/service-resolver", index=str(resolvers.index), wait="30s"
    )
    await put(api, entries, {"Kind": "service-defaults", "Name": f"{name}-b", "Protocol": "http"})
    woken = await within(blocked, 10)
    assert woken.status == 200
    assert woken.index > resolvers.index  # woken by a write of another kind...
    assert woken.body == resolvers.body  # ...with an unchanged body


async def test_check_and_set(
    consul_api: ConsulAPI, entries: list[tuple[str, str]], name: str
) -> None:
    api = consul_api
    entry = {"Kind": "service-defaults", "Name": name, "Protocol": "http"}
    assert (await put(api, entries, entry, cas="0")).body is True  # absent: created
    assert (await api.put(CONFIG, entry, cas="0")).body is False  # present: refused
    current = (await api.get(f"{CONFIG}/service-defaults/{name}")).body["ModifyIndex"]
    assert (await api.put(CONFIG, entry, cas=str(current + 1000))).body is False
    assert (await api.put(CONFIG, {**entry, "Protocol": "grpc"}, cas=str(current))).body is True
    after = (await api.get(f"{CONFIG}/service-defaults/{name}")).body
    assert (after["Protocol"], after["CreateIndex"]) == ("grpc", current)
    assert after["ModifyIndex"] > current
    path = f"{CONFIG}/service-defaults/{name}"
    for cas in ("0", str(current)):
        reply = await api.request("DELETE", path, params={"cas": cas})
        assert (reply.status, reply.body) == (200, False)
    reply = await api.request("DELETE", path, params={"cas": str(after["ModifyIndex"])})
    assert (reply.status, reply.body) == (200, True)
    assert (await api.get(path)).status == 404


async def test_decode_errors_are_400s(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Name": name}, "Payload does not contain a kind/Kind key at the top level"),
        ({"Kind": "no-such-kind", "Name": name}, "invalid config entry kind: no-such-kind"),
        (
            {"Kind": "service-defaults", "Name": name, "Protocoll": "http"},
            'invalid config key "Protocoll"',
        ),
    ]
    for body, words in cases:
        reply = await api.put(CONFIG, body)
        assert reply.status == 400, (body, reply.text)
        assert reply.text.startswith("Request decoding failed: "), reply.text
        assert words in reply.text, reply.text
    unknown = await api.get(f"{CONFIG}/no-such-kind")
    assert unknown.status == 500
    assert "invalid config entry kind: no-such-kind" in unknown.text


async def test_validation_and_graph_errors_are_500s(
    consul_api: ConsulAPI, entries: list[tuple[str, str]], name: str
) -> None:
    api = consul_api
    splits = [{"Weight": 90}, {"Weight": 20, "ServiceSubset": "v2"}]
    cases: list[tuple[dict[str, Any], str]] = [
        ({"Kind": "service-defaults", "Protocol": "http"}, "Name is required"),
        (
            {"Kind": "service-splitter", "Name": name, "Splits": splits},
            "the sum of all split weights must be 100, not 110.000000",
        ),
        (
            {"Kind": "proxy-defaults", "Name": "other"},
            'invalid name ("other"), only "global" is supported',
        ),
        (
            {"Kind": "service-resolver", "Name": name, "DefaultSubset": "v9"},
            'DefaultSubset "v9" is not a valid subset',
        ),
        (
            {"Kind": "service-splitter", "Name": name, "Splits": [{"Weight": 100}]},
            f'discovery chain "{name}" uses a protocol "tcp" that does not permit advanced '
            "routing or splitting behavior",
        ),
    ]
    for body, words in cases:
        reply = await api.put(CONFIG, body)
        assert (reply.status, reply.text.strip()) == (500, words), body
    # The order Consul requires: protocol first, then the splitter; undo in reverse.
    await put(api, entries, {"Kind": "service-defaults", "Name": name, "Protocol": "http"})
    subsets = {
        "v1": {"Filter": "Service.Meta.version == v1"},
        "v2": {"Filter": '"v2" in Service.Tags'},
    }
    assert (
        await put(api, entries, {"Kind": "service-resolver", "Name": name, "Subsets": subsets})
    ).body is True
    split = {
        "Kind": "service-splitter",
        "Name": name,
        "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
    }
    assert (await put(api, entries, split)).status == 200
    refused = await api.request("DELETE", f"{CONFIG}/service-defaults/{name}")
    assert refused.status == 500
    assert "does not permit advanced routing or splitting behavior" in refused.text
    missing = {**split, "Splits": [{"Weight": 100, "ServiceSubset": "v3"}]}
    reply = await api.put(CONFIG, missing)
    assert (reply.status, reply.text.strip()) == (
        500,
        f'service "{name}" does not have a subset named "v3"',
    )


async def test_shapes_durations_and_key_spellings(
    consul_api: ConsulAPI, entries: list[tuple[str, str]], name: str
) -> None:
    api = consul_api
    await put(api, entries, {"Kind": "service-defaults", "Name": name, "Protocol": "http"})
    resolver = {
        "kind": "service-resolver",  # lower-case and snake_case keys are accepted
        "name": name,
        "connect_timeout": "1500ms",
        "subsets": {"v1": {"filter": "Service.Meta.version == v1", "only_passing": True}},
        "default_subset": "v1",
    }
    reply = await api.put(CONFIG, resolver)
    assert reply.status == 200, reply.text
    entries.append(("service-resolver", name))
    got = (await api.get(f"{CONFIG}/service-resolver/{name}")).body
    assert got["ConnectTimeout"] == "1.5s"  # a Go duration string
    assert "RequestTimeout" not in got  # zero: omitted
    assert got["Subsets"] == {"v1": {"Filter": "Service.Meta.version == v1", "OnlyPassing": True}}
    assert got["DefaultSubset"] == "v1"
    router = {
        "Kind": "service-router",
        "Name": name,
        "Routes": [
            {
                "Match": {"HTTP": {"PathPrefix": "/admin", "Methods": ["get"]}},
                "Destination": {"ServiceSubset": "v1", "RequestTimeout": "2s", "NumRetries": 3},
            }
        ],
    }
    assert (await put(api, entries, router)).status == 200
    route = (await api.get(f"{CONFIG}/service-router/{name}")).body["Routes"][0]
    assert route["Match"]["HTTP"] == {"PathPrefix": "/admin", "Methods": ["GET"]}
    assert route["Destination"] == {"ServiceSubset": "v1", "RequestTimeout": "2s", "NumRetries": 3}


def _raw(api: ConsulAPI, path: str) -> URL:
    return URL(api.url + path, encoded=True)  # sent exactly as written


async def _raw_get(api: ConsulAPI, path: str) -> Reply:
    async with api.session.get(_raw(api, path)) as r:
        return Reply(r.status, dict(r.headers), await r.text())


async def test_service_names_are_percent_decoded_once(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    service = f"{name} x%y"  # a space and a percent sign
    await api.register({"Name": service, "ID": f"{name}-1"})
    once = "/v1/health/service/" + quote(service, safe="")
    reply = await api.wait_for(once, lambda r: r.status == 200 and len(r.body) == 1)
    assert reply.body[0]["Service"]["Service"] == service
    catalog = await _raw_get(api, "/v1/catalog/service/" + quote(service, safe=""))
    assert [e["ServiceName"] for e in catalog.body] == [service]
    twice = await _raw_get(api, "/v1/health/service/" + quote(quote(service, safe=""), safe=""))
    assert (twice.status, twice.body) == (200, [])  # "%2520" is the name "%20", not a space
