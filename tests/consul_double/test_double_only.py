"""Behaviour specific to the double (test hooks, or setups a dev agent cannot provide)."""

from __future__ import annotations

import asyncio
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from bridge.tasks import within
from consul_double import ConsulDouble

from .api import ConsulAPI

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as double:
        double.register("web", id="web-1", port=8080, tags=["v1"], node="node1")
        double.register("web", id="web-2", port=8081, node="node2", node_address="127.0.0.2")
        double.register("api", id="api-1", port=9090, node="node1")
        yield double


@pytest.fixture
async def api(consul: ConsulDouble) -> AsyncIterator[ConsulAPI]:
    async with aiohttp.ClientSession() as session:
        yield ConsulAPI("double", consul.url, session, consul)


# -- index semantics of the in-process writes -------------------------------------------------


async def test_node_changes_bump_only_the_services_of_that_node(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    web, service_api = (
        await api.get("/v1/health/service/web"),
        await api.get("/v1/health/service/api"),
    )
    consul.set_node_check("node2", "critical")
    assert (await api.get("/v1/health/service/web")).index == consul.index() > web.index
    assert (await api.get("/v1/health/service/api")).index == service_api.index  # on node1 only
    serf = [
        c for c in (await api.get("/v1/health/node/node2")).body if c["CheckID"] == "serfHealth"
    ]
    assert serf[0]["Status"] == "critical"
    consul.set_node_maintenance("node1", True)
    assert (await api.get("/v1/health/service/api")).index == consul.index()
    assert (await api.get("/v1/health/service/web", passing="")).body == []


async def test_an_identical_check_update_is_not_a_write(consul: ConsulDouble) -> None:
    before = consul.index()
    consul.set_check_status("service:web-1", "passing")
    assert consul.index() == before
    consul.set_check_status("service:web-1", "passing", output="now with output")
    assert consul.index() == before + 1


async def test_reregistering_bumps_the_service_index(consul: ConsulDouble, api: ConsulAPI) -> None:
    before = await api.get("/v1/health/service/api")
    consul.register("api", id="api-1", port=9090, node="node1")
    after = await api.get("/v1/health/service/api")
    assert after.index > before.index
    assert after.body[0]["Service"]["ModifyIndex"] == after.index
    assert after.body[0]["Service"]["CreateIndex"] == before.body[0]["Service"]["CreateIndex"]


async def test_a_missing_service_reports_the_last_extinction_index(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    consul.deregister("api-1")
    extinct = consul.index()
    assert (await api.get("/v1/health/service/api")).index == extinct
    assert (await api.get("/v1/health/service/never")).index == extinct
    consul.register("db", id="db-1")  # a new service is not an extinction
    assert (await api.get("/v1/health/service/never")).index == extinct
    assert "api" not in (await api.get("/v1/catalog/services")).body


async def test_reset_index_answers_held_queries_with_the_old_state_then_blocks_low(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    before = await api.get("/v1/health/service/web")
    blocked = await api.start_get("/v1/health/service/web", index=str(before.index), wait="30s")
    consul.reset_index()
    reply = await within(blocked, 5)  # the abandoned store's answer: nothing changed
    assert (reply.index, reply.body) == (before.index, before.body)
    assert consul.index() == 1
    # The restored store's index stays below the client's: the query waits out its wait.
    again = await api.get("/v1/health/service/web", index=str(before.index), wait="200ms")
    assert again.index == 1
    assert again.body[0]["Service"]["ModifyIndex"] == 1
    consul.deregister("web-2")
    assert (await api.get("/v1/health/service/web")).index == 2
    held = await api.start_get("/v1/health/service/web", index=str(before.index), wait="300ms")
    consul.deregister("web-1")  # index 3: still below the client's
    assert (await held).index == 3


async def test_datacenters_have_separate_state_and_indexes(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    assert (await api.get("/v1/catalog/datacenters")).body == ["dc1", "dc2"]
    dc1 = await api.get("/v1/health/service/web")
    blocked = await api.start_get("/v1/health/service/web", index=str(dc1.index), wait="300ms")
    consul.register("web", id="web-9", port=1, node="far", datacenter="dc2")
    reply = await blocked
    assert reply.index == dc1.index  # a dc2 write does not wake dc1
    dc2 = await api.get("/v1/health/service/web", dc="dc2")
    assert [e["Service"]["ID"] for e in dc2.body] == ["web-9"]
    assert dc2.body[0]["Node"]["Datacenter"] == "dc2"
    assert dc2.index == consul.index("dc2") != consul.index("dc1")
    assert "web" in (await api.get("/v1/catalog/services", dc="dc2")).body


async def test_filter_subset_and_unsupported_filters(api: ConsulAPI) -> None:
    reply = await api.get("/v1/health/service/web", filter='"v1" in Service.Tags')
    assert [e["Service"]["ID"] for e in reply.body] == ["web-1"]
    reply = await api.get(
        "/v1/health/service/web", filter='Node.Node == "node2" and Service.Port == 8081'
    )
    assert [e["Service"]["ID"] for e in reply.body] == ["web-2"]
    reply = await api.get("/v1/catalog/services", filter='ServiceName matches "^ap"')
    assert reply.body == {"api": []}
    reply = await api.get("/v1/health/service/web", filter='Checks.Status == "passing"')
    assert reply.status == 400
    reply = await api.get("/v1/health/service/web", filter="Service.ID ~ 3")
    assert reply.status == 400


# -- fault injection --------------------------------------------------------------------------


async def test_error_faults_count_down_and_match_a_prefix(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    consul.faults.error(status=500, body="No cluster leader", times=2, path_prefix="/v1/health/")
    for _ in range(2):
        reply = await api.get("/v1/health/service/web")
        assert (reply.status, reply.text) == (500, "No cluster leader")
    assert (await api.get("/v1/catalog/services")).status == 200  # other prefix
    assert (await api.get("/v1/health/service/web")).status == 200  # budget spent
    consul.faults.error(status=403, body="Permission denied")
    assert (await api.get("/v1/catalog/services")).status == 403
    put = await api.put("/v1/agent/service/register", {"Name": "x"})
    assert put.status == 200  # faults apply to reads unless asked
    consul.faults.clear()
    assert (await api.get("/v1/catalog/services")).status == 200
    assert consul.stats.responses_by_status[500] == 2
    assert consul.stats.responses_by_status[403] == 1


async def test_a_200_fault_serves_a_broken_body(consul: ConsulDouble, api: ConsulAPI) -> None:
    consul.faults.error(status=200, body="{not json", times=1)
    reply = await api.get("/v1/health/service/web")
    assert (reply.status, reply.text) == (200, "{not json")
    assert reply.index >= 1


async def test_hang_until_cleared(consul: ConsulDouble, api: ConsulAPI) -> None:
    consul.faults.hang(times=1, path_prefix="/v1/health/service/web")
    hung = await api.start_get("/v1/health/service/web")
    assert not hung.done()
    assert (await api.get("/v1/health/service/web")).status == 200  # times=1: only the first
    consul.faults.clear()
    reply = await within(hung, 5)
    assert reply.status == 200


async def test_drop_closes_without_a_response(consul: ConsulDouble) -> None:
    consul.faults.drop(times=1)
    # A raw connection: aiohttp's client silently retries an idempotent request once.
    reader, writer = await asyncio.open_connection("127.0.0.1", consul.port)
    writer.write(b"GET /v1/catalog/services HTTP/1.1\r\nHost: consul\r\n\r\n")
    await writer.drain()
    assert await within(reader.read(), 5) == b""  # closed, not a byte of response
    writer.close()
    async with aiohttp.ClientSession() as s, s.get(consul.url + "/v1/catalog/services") as r:
        assert r.status == 200  # times=1: only the first request was dropped
    assert consul.stats.requests_total == 2
    assert sum(consul.stats.responses_by_status.values()) == 1


async def test_too_many_requests_fault(consul: ConsulDouble, api: ConsulAPI) -> None:
    consul.faults.too_many_requests(times=1)
    assert (await api.get("/v1/catalog/services")).status == 429
    assert (await api.get("/v1/catalog/services")).status == 200
    assert consul.stats.rejected_429 == 0  # that counter is for the connection cap


# -- connection cap ---------------------------------------------------------------------------


async def test_connections_above_the_per_client_cap_get_a_raw_429() -> None:
    async with (
        ConsulDouble(max_conns_per_client=3) as consul,
        aiohttp.ClientSession() as session,
    ):
        api = ConsulAPI("double", consul.url, session, consul)
        index = str(consul.index())
        # Two blocking queries on connections of their own, plus the session's connection
        # (start_get does a round trip on it): the cap of 3 is reached.
        blocked = [
            await api.start_get("/v1/catalog/services", index=index, wait="30s") for _ in range(2)
        ]
        assert consul.stats.current_connections == 3
        rejected = await (await api.start_get("/v1/catalog/services"))  # a 4th connection
        assert rejected.status == 429
        assert consul.stats.rejected_429 == 1
        consul.register("web", id="web-1")  # wakes the blocked queries
        replies = await within(asyncio.gather(*blocked), 5)
        assert all(r.status == 200 and r.index > int(index) for r in replies)
        assert consul.stats.max_concurrent_connections == 3


# -- ACLs -------------------------------------------------------------------------------------


async def test_acl_filtering_and_denials() -> None:
    tokens = {
        "reader": {"service_read": ["web*"], "node_read": True},
        "admin": {"service_read": "*", "node_read": True, "write": True},
    }
    async with ConsulDouble(acl_tokens=tokens) as consul, aiohttp.ClientSession() as session:
        consul.register("web", id="web-1")
        consul.register("db", id="db-1")
        api = ConsulAPI("double", consul.url, session, consul)
        reader = await api.get("/v1/catalog/services", token="reader")
        assert reader.body == {"web": []}
        assert reader.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
        admin = await api.request(
            "GET", "/v1/catalog/services", headers={"Authorization": "Bearer admin"}
        )
        assert set(admin.body) == {"consul", "web", "db"}
        assert "X-Consul-Results-Filtered-By-ACLs" not in admin.headers
        hidden = await api.request(
            "GET", "/v1/health/service/db", headers={"X-Consul-Token": "reader"}
        )
        assert hidden.body == []
        assert hidden.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
        assert (await api.get("/v1/health/service/web", token="reader")).body[0]["Service"]
        anonymous = await api.get("/v1/catalog/services")
        assert anonymous.body == {}
        unknown = await api.get("/v1/catalog/services", token="nope")
        assert (unknown.status, unknown.text) == (403, "ACL not found")
        denied = await api.put("/v1/agent/service/register", {"Name": "x"}, token="reader")
        assert denied.status == 403
        assert denied.text.startswith("Permission denied")
        allowed = await api.put("/v1/agent/service/register", {"Name": "x"}, token="admin")
        assert allowed.status == 200


# -- lifecycle --------------------------------------------------------------------------------


async def test_stop_and_start_on_the_same_port_keep_the_state(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    port, before = consul.port, await api.get("/v1/health/service/web")
    blocked = await api.start_get("/v1/health/service/web", index=str(before.index), wait="30s")
    await consul.stop()
    with pytest.raises(aiohttp.ClientError):
        await within(blocked, 5)  # in-flight requests are cut
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.get("/v1/health/service/web")
    await consul.start()
    assert consul.port == port
    after = await api.get("/v1/health/service/web")
    assert (after.index, after.body) == (before.index, before.body)


async def test_https(tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    async with ConsulDouble(ssl_context=server_ctx) as consul, aiohttp.ClientSession() as s:
        assert consul.url.startswith("https://127.0.0.1:")
        async with s.get(consul.url + "/v1/catalog/services", ssl=client_ctx) as resp:
            assert resp.status == 200
            assert "consul" in await resp.json()


async def test_command_line_runs_until_interrupted() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "consul_double",
        "--port",
        "0",
        "--extra-datacenters",
        "dc2,dc3",
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await within(proc.stdout.readline(), 10)).decode()
        url = line.split()[3]
        async with aiohttp.ClientSession() as s, s.get(url + "/v1/catalog/datacenters") as resp:
            assert await resp.json() == ["dc1", "dc2", "dc3"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert await within(proc.wait(), 10) == 0
