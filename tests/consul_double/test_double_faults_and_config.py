"""Double-only behaviour: whole-datacenter faults (lose_state, unreachable datacenters),
config entry replication, single-entry wake-ups and the in-process config helpers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.tasks import within
from consul_double import ConfigEntryError, ConsulDouble

from .api import ConsulAPI

SPLITTER = {
    "Kind": "service-splitter",
    "Name": "web",
    "Splits": [{"Weight": 90, "ServiceSubset": "v1"}, {"Weight": 10, "ServiceSubset": "v2"}],
}
RESOLVER = {
    "Kind": "service-resolver",
    "Name": "web",
    "Subsets": {
        "v1": {"Filter": "Service.Meta.version == v1"},
        "v2": {"Filter": "Service.Meta.version == v2"},
    },
}


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as double:
        double.register("web", id="web-1", port=8080, node="node1")
        double.register("web", id="web-9", port=8080, node="far", datacenter="dc2")
        yield double


@pytest.fixture
async def api(consul: ConsulDouble) -> AsyncIterator[ConsulAPI]:
    async with aiohttp.ClientSession() as session:
        yield ConsulAPI("double", consul.url, session, consul)


def http_web(consul: ConsulDouble) -> None:
    consul.put_config_entry({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
    consul.put_config_entry(RESOLVER)
    consul.put_config_entry(SPLITTER)


async def test_lose_state_is_a_restart_with_no_data_on_the_same_port(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    http_web(consul)
    consul.faults.error(status=503, body="kept", path_prefix="/v1/status/peers")
    port, before = consul.port, await api.get("/v1/health/service/web")
    services = await api.get("/v1/catalog/services")
    blocked = await api.start_get("/v1/health/service/web", index=str(before.index), wait="30s")
    await consul.lose_state()
    with pytest.raises(aiohttp.ClientError):
        await within(blocked, 5)  # a restart cuts every connection
    assert consul.port == port
    after = await api.get("/v1/catalog/services")
    assert after.body == {"consul": []}
    assert after.index < services.index  # indexes restarted low
    assert (await api.get("/v1/health/service/web")).body == []
    assert (await api.get("/v1/config/service-splitter")).body == []
    assert (await api.get("/v1/config/service-splitter", dc="dc2")).body == []  # replicated
    assert (await api.get("/v1/status/peers")).status == 503  # faults survive
    dc2 = await api.get("/v1/health/service/web", dc="dc2")
    assert [e["Service"]["ID"] for e in dc2.body] == ["web-9"]  # another datacenter's catalog


async def test_a_secondary_losing_state_re_replicates_the_primary(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    http_web(consul)
    await consul.lose_state("dc2")
    assert (await api.get("/v1/health/service/web", dc="dc2")).body == []
    splitters = await api.get("/v1/config/service-splitter", dc="dc2")
    assert [e["Name"] for e in splitters.body] == ["web"]
    assert (await api.get("/v1/health/service/web")).body != []  # dc1 untouched


async def test_an_unreachable_datacenter_answers_no_path_until_healed(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    before = await api.get("/v1/health/service/web", dc="dc2")
    blocked = await api.start_get(
        "/v1/health/service/web", dc="dc2", index=str(before.index), wait="30s"
    )
    consul.set_datacenter_reachable("dc2", False)
    failed = await within(blocked, 5)
    assert (failed.status, failed.text) == (500, "No path to datacenter")
    reply = await api.get("/v1/catalog/services", dc="dc2")
    assert (reply.status, reply.text) == (500, "No path to datacenter")
    assert (await api.get("/v1/catalog/datacenters")).body == ["dc1", "dc2"]
    assert (await api.get("/v1/health/service/web")).status == 200  # the local one serves
    consul.register("web", id="web-8", port=1, node="far", datacenter="dc2")
    consul.set_datacenter_reachable("dc2", True)
    healed = await api.get("/v1/health/service/web", dc="dc2")
    assert {e["Service"]["ID"] for e in healed.body} == {"web-8", "web-9"}
    with pytest.raises(ValueError, match="always reachable"):
        consul.set_datacenter_reachable("dc1", False)


async def test_config_writes_go_to_the_primary_and_replicate_with_their_own_indexes(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    reply = await api.put(
        "/v1/config", {"Kind": "service-defaults", "Name": "web", "Protocol": "http"}, dc="dc2"
    )
    assert reply.body is True
    primary = consul.config_entry("service-defaults", "web")
    copy = consul.config_entry("service-defaults", "web", datacenter="dc2")
    assert primary is not None
    assert copy is not None
    assert copy["Protocol"] == primary["Protocol"] == "http"
    assert copy["ModifyIndex"] == consul.index("dc2")
    assert primary["ModifyIndex"] == consul.index("dc1")


async def test_a_single_entry_read_wakes_only_for_its_entry(
    consul: ConsulDouble, api: ConsulAPI
) -> None:
    consul.put_config_entry({"Kind": "service-defaults", "Name": "web", "Protocol": "http"})
    path = "/v1/config/service-defaults/web"
    first = await api.get(path)
    held = await api.start_get(path, index=str(first.index), wait="300ms")
    consul.put_config_entry({"Kind": "service-defaults", "Name": "api", "Protocol": "http"})
    same = await held
    assert (same.index, same.body) == (first.index, first.body)  # not woken: its wait expired
    latest = (await api.get("/v1/config/service-defaults")).index
    held = await api.start_get(path, index=str(latest), wait="30s")
    consul.put_config_entry({"Kind": "service-defaults", "Name": "web", "Protocol": "grpc"})
    changed = await within(held, 5)
    assert changed.body["Protocol"] == "grpc"
    missing = await api.get("/v1/config/service-router/web")
    held = await api.start_get(
        "/v1/config/service-router/web", index=str(missing.index), wait="30s"
    )
    consul.put_config_entry({"Kind": "service-router", "Name": "web"})
    created = await within(held, 5)
    assert (created.status, created.body["Routes"]) == (200, None)  # nil slice: null


async def test_in_process_helpers_refuse_as_consul_does(consul: ConsulDouble) -> None:
    with pytest.raises(ConfigEntryError) as refused:
        consul.put_config_entry(SPLITTER)  # the subsets are checked before the protocol
    assert (refused.value.status, refused.value.text) == (
        500,
        'service "web" does not have a subset named "v1"',
    )
    consul.put_config_entry(RESOLVER)
    with pytest.raises(ConfigEntryError) as tcp:
        consul.put_config_entry(SPLITTER)
    assert "does not permit advanced routing" in tcp.value.text
    with pytest.raises(ConfigEntryError) as bad:
        consul.put_config_entry({"Kind": "service-router", "Name": "web", "Routez": []})
    assert (bad.value.status, bad.value.text) == (
        400,
        'Request decoding failed: 1 error occurred:\n\t* invalid config key "Routez"\n\n',
    )
    http_web(consul)
    entry = consul.config_entry("service-splitter", "web")
    assert entry is not None
    assert [s["Weight"] for s in entry["Splits"]] == [90, 10]
    assert (
        consul.delete_config_entry("service-splitter", "web", cas=entry["ModifyIndex"] + 1) is False
    )
    assert consul.delete_config_entry("service-splitter", "web") is True
    assert consul.config_entry("service-splitter", "web") is None
    assert consul.put_config_entry({"Kind": "proxy-defaults", "Config": {"protocol": "http"}})
    proxy = consul.config_entry("proxy-defaults", "global")
    assert proxy is not None
    assert proxy["Name"] == "global"


async def test_graph_errors_name_the_cycle_and_the_protocols(consul: ConsulDouble) -> None:
    for name in ("a", "b"):
        consul.put_config_entry({"Kind": "service-defaults", "Name": name, "Protocol": "http"})
    consul.put_config_entry(
        {
            "Kind": "service-splitter",
            "Name": "a",
            "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "b"}],
        }
    )
    with pytest.raises(ConfigEntryError) as cycle:
        consul.put_config_entry(
            {
                "Kind": "service-splitter",
                "Name": "b",
                "Splits": [{"Weight": 50}, {"Weight": 50, "Service": "a"}],
            }
        )
    # Either chain may report it first (Consul checks them in map order).
    assert cycle.value.text in {
        f"detected circular reference: [splitter:{x}.default.default -> "
        f"splitter:{y}.default.default -> splitter:{x}.default.default]"
        for x, y in (("a", "b"), ("b", "a"))
    }
    with pytest.raises(ConfigEntryError) as mixed:
        consul.put_config_entry({"Kind": "service-defaults", "Name": "b", "Protocol": "grpc"})
    assert mixed.value.text == (
        'discovery chain "a" uses inconsistent protocols; '
        'service "b" has "grpc" which is not "http"'
    )
    consul.put_config_entry({"Kind": "service-resolver", "Name": "c", "Redirect": {"Service": "d"}})
    with pytest.raises(ConfigEntryError) as loop:
        consul.put_config_entry(
            {"Kind": "service-resolver", "Name": "d", "Redirect": {"Service": "c"}}
        )
    assert loop.value.text in {
        f"detected circular resolver redirect: [{x}.default.default.dc1 -> "
        f"{y}.default.default.dc1 -> {x}.default.default.dc1]"
        for x, y in (("c", "d"), ("d", "c"))
    }


async def test_config_reads_are_filtered_by_acls() -> None:
    tokens = {"reader": {"service_read": ["web*"], "node_read": True}}
    async with ConsulDouble(acl_tokens=tokens) as consul, aiohttp.ClientSession() as session:
        for name in ("web", "db"):
            consul.put_config_entry({"Kind": "service-defaults", "Name": name, "Protocol": "http"})
        consul.put_config_entry({"Kind": "proxy-defaults", "Config": {"protocol": "http"}})
        api = ConsulAPI("double", consul.url, session, consul)
        listed = await api.get("/v1/config/service-defaults", token="reader")
        assert [e["Name"] for e in listed.body] == ["web"]  # dropped silently
        denied = await api.get("/v1/config/service-defaults/db", token="reader")
        assert (denied.status, denied.text) == (403, "Permission denied")
        missing = await api.get("/v1/config/service-router/other", token="reader")
        assert missing.status == 403  # refused before looking
        proxy = await api.get("/v1/config/proxy-defaults/global", token="reader")
        assert proxy.status == 200  # proxy-defaults needs no permission
        write = await api.put(
            "/v1/config", {"Kind": "service-defaults", "Name": "x"}, token="reader"
        )
        assert write.status == 403
