"""HTTP-only conformance tests: each runs against the double and against a real
``consul agent -dev`` (skipped when no binary is installed)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bridge.tasks import within

from .api import ConsulAPI, Reply

HEALTH = "/v1/health/service/"


def ids(reply: Reply) -> set[str]:
    return {entry["Service"]["ID"] for entry in reply.body}


def check_of(entry: dict[str, Any], check_id: str) -> dict[str, Any]:
    found = [c for c in entry["Checks"] if c["CheckID"] == check_id]
    assert found, f"no check {check_id} in {entry['Checks']}"
    check: dict[str, Any] = found[0]
    return check


async def ttl_service(
    api: ConsulAPI, name: str, instance: str, status: str = "passing", **extra: Any
) -> None:
    await api.register(
        {"Name": name, "ID": instance, "Check": {"TTL": "10m", "Status": status}, **extra}
    )


async def visible(api: ConsulAPI, name: str, *instances: str) -> Reply:
    want = set(instances)
    return await api.wait_for(HEALTH + name, lambda r: r.status == 200 and ids(r) == want)


async def settled(api: ConsulAPI, name: str, instance: str, check: str, status: str) -> Reply:
    """Wait until ``check`` of ``instance`` has ``status`` in the catalog."""

    def ok(reply: Reply) -> bool:
        for entry in reply.body:
            if entry["Service"]["ID"] == instance:
                return any(c["CheckID"] == check and c["Status"] == status for c in entry["Checks"])
        return False

    return await api.wait_for(HEALTH + name, ok)


async def test_registered_service_is_in_catalog_and_health(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    await ttl_service(api, name, f"{name}-1", Tags=["v1", "canary"], Port=8080, Meta={"k": "v"})
    await ttl_service(api, name, f"{name}-2", Tags=["v1"], Port=8081, Address="10.0.0.7")
    reply = await visible(api, name, f"{name}-1", f"{name}-2")
    node = await api.node_name()

    services = (await api.get("/v1/catalog/services")).body
    assert services["consul"] == []
    assert sorted(services[name]) == ["canary", "v1"]  # deduplicated

    entry = next(e for e in reply.body if e["Service"]["ID"] == f"{name}-1")
    assert entry["Node"]["Node"] == node
    assert entry["Node"]["Datacenter"] == "dc1"
    assert {"ID", "Address", "TaggedAddresses", "Meta"} <= entry["Node"].keys()
    svc = entry["Service"]
    assert (svc["Service"], svc["Port"], svc["Meta"]) == (name, 8080, {"k": "v"})
    assert sorted(svc["Tags"]) == ["canary", "v1"]
    serf = check_of(entry, "serfHealth")
    assert (serf["ServiceID"], serf["Status"]) == ("", "passing")
    own = check_of(entry, f"service:{name}-1")
    assert (own["ServiceID"], own["ServiceName"], own["Status"]) == (f"{name}-1", name, "passing")

    catalog = (await api.get(f"/v1/catalog/service/{name}")).body
    by_id = {e["ServiceID"]: e for e in catalog}
    assert by_id[f"{name}-2"]["ServiceAddress"] == "10.0.0.7"
    assert by_id[f"{name}-2"]["ServicePort"] == 8081
    assert by_id[f"{name}-1"]["Node"] == node


async def test_weights_default_and_address_empty_when_not_given(
    consul_api: ConsulAPI, name: str
) -> None:
    await consul_api.register({"Name": name})  # no ID, no address, no port, no check
    reply = await visible(consul_api, name, name)
    svc = reply.body[0]["Service"]
    assert svc["Weights"] == {"Passing": 1, "Warning": 1}
    assert svc["Address"] == ""  # clients fall back to Node.Address
    assert reply.body[0]["Node"]["Address"]
    assert svc.get("Port", 0) == 0
    assert [c["CheckID"] for c in reply.body[0]["Checks"]] == ["serfHealth"]


async def test_index_headers_on_reads(consul_api: ConsulAPI, name: str) -> None:
    for path in (
        "/v1/catalog/services",
        HEALTH + name,  # a missing service too
        f"/v1/catalog/service/{name}",
        "/v1/health/state/any",
        f"/v1/health/checks/{name}",
    ):
        reply = await consul_api.get(path)
        assert reply.status == 200, (path, reply.text)
        assert reply.index > 0, path
        assert reply.headers["X-Consul-KnownLeader"] == "true"
        assert "X-Consul-LastContact" in reply.headers
    stale = await consul_api.get("/v1/catalog/services", stale="")
    assert stale.headers["X-Consul-Effective-Consistency"] == "stale"


async def test_blocking_query_returns_after_a_write_to_its_service(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    await ttl_service(api, name, f"{name}-1")
    before = await settled(api, name, f"{name}-1", f"service:{name}-1", "passing")
    blocked = asyncio.create_task(api.get(HEALTH + name, index=str(before.index), wait="30s"))
    await api.get("/v1/status/leader")  # a round trip: the blocking query is in by now
    assert not blocked.done()
    await api.put(f"/v1/agent/check/fail/service:{name}-1", note="broken")
    reply = await within(blocked, 10)  # woken by the write, not by the 30 s wait
    assert reply.index > before.index
    if check_of(reply.body[0], f"service:{name}-1")["Status"] != "critical":  # agent sync lag
        reply = await settled(api, name, f"{name}-1", f"service:{name}-1", "critical")
    assert check_of(reply.body[0], f"service:{name}-1")["Output"] == "broken"


async def test_a_write_to_another_service_does_not_wake_a_blocking_query(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    other = f"{name}-other"
    await ttl_service(api, name, f"{name}-1")
    await ttl_service(api, other, f"{other}-1")
    before = await settled(api, name, f"{name}-1", f"service:{name}-1", "passing")
    await settled(api, other, f"{other}-1", f"service:{other}-1", "passing")
    started = time.monotonic()
    blocked = asyncio.create_task(api.get(HEALTH + name, index=str(before.index), wait="1s"))
    await api.get("/v1/status/leader")
    await api.put(f"/v1/agent/check/fail/service:{other}-1")
    await settled(api, other, f"{other}-1", f"service:{other}-1", "critical")
    reply = await blocked
    assert time.monotonic() - started >= 0.9  # held until the wait expired
    assert reply.index == before.index
    assert reply.body == before.body


async def test_wait_expiry_returns_the_same_index(consul_api: ConsulAPI, name: str) -> None:
    await ttl_service(consul_api, name, f"{name}-1")
    before = await visible(consul_api, name, f"{name}-1")
    started = time.monotonic()
    reply = await consul_api.get(HEALTH + name, index=str(before.index), wait="200ms")
    elapsed = time.monotonic() - started
    assert reply.status == 200
    assert reply.index == before.index
    assert elapsed >= 0.19  # held for the wait (how much longer is up to the machine's load)


async def test_invalid_wait_or_index_is_a_400(consul_api: ConsulAPI) -> None:
    for params in ({"wait": "10"}, {"wait": "soon"}, {"wait": "5x"}):
        reply = await consul_api.get("/v1/catalog/services", index="1", **params)
        assert (reply.status, reply.text.strip()) == (400, "Invalid wait time"), params
    for index in ("abc", "-1", "1.5"):
        reply = await consul_api.get("/v1/catalog/services", index=index)
        assert (reply.status, reply.text.strip()) == (400, "Invalid index"), index
    for wait in ("1m30s", "100ms", "0.5s"):
        reply = await consul_api.get("/v1/catalog/services", wait=wait)
        assert reply.status == 200, wait


async def test_stale_with_consistent_is_a_400(consul_api: ConsulAPI) -> None:
    reply = await consul_api.get("/v1/catalog/services", stale="", consistent="")
    assert reply.status == 400


async def test_passing_drops_warning_critical_and_maintenance(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    for instance, status in (("ok", "passing"), ("warn", "warning"), ("bad", "critical")):
        await ttl_service(api, name, f"{name}-{instance}", status)
    await ttl_service(api, name, f"{name}-maint")
    await visible(api, name, *(f"{name}-{i}" for i in ("ok", "warn", "bad", "maint")))
    reply = await api.put(f"/v1/agent/service/maintenance/{name}-maint", enable="true")
    assert reply.status == 200
    passing = await api.wait_for(
        HEALTH + name, lambda r: ids(r) == {f"{name}-ok"}, passing="", timeout=10
    )
    assert ids(passing) == {f"{name}-ok"}
    everything = await api.get(HEALTH + name)
    assert len(everything.body) == 4


async def test_service_maintenance_is_a_critical_check(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    instance = f"{name}-1"
    await ttl_service(api, name, instance)
    await visible(api, name, instance)
    maint = f"_service_maintenance:{instance}"
    await api.put(f"/v1/agent/service/maintenance/{instance}", enable="true", reason="deploy")
    reply = await settled(api, name, instance, maint, "critical")
    check = check_of(reply.body[0], maint)
    assert (check["Notes"], check["ServiceID"]) == ("deploy", instance)
    await api.put(f"/v1/agent/service/maintenance/{instance}", enable="false")
    reply = await api.wait_for(
        HEALTH + name, lambda r: all(c["CheckID"] != maint for c in r.body[0]["Checks"])
    )
    assert check_of(reply.body[0], f"service:{instance}")["Status"] == "passing"
    bad = await api.put(f"/v1/agent/service/maintenance/{instance}")
    assert bad.status == 400  # enable is required


async def test_node_maintenance_applies_to_every_service_of_the_node(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    await ttl_service(api, name, f"{name}-1")
    await visible(api, name, f"{name}-1")
    await api.put("/v1/agent/maintenance", enable="true", reason="kernel upgrade")
    try:
        reply = await api.wait_for(
            HEALTH + name,
            lambda r: any(c["CheckID"] == "_node_maintenance" for c in r.body[0]["Checks"]),
        )
        check = check_of(reply.body[0], "_node_maintenance")
        assert (check["Status"], check["ServiceID"]) == ("critical", "")
        assert (await api.get(HEALTH + name, passing="1")).body == []
    finally:
        await api.put("/v1/agent/maintenance", enable="false")
    reply = await api.wait_for(HEALTH + name, lambda r: ids(r) == {f"{name}-1"}, passing="")
    assert all(c["Status"] == "passing" for c in reply.body[0]["Checks"])


async def test_tag_filter_requires_every_tag(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    await ttl_service(api, name, f"{name}-a", Tags=["v1", "canary"])
    await ttl_service(api, name, f"{name}-b", Tags=["v1"])
    await visible(api, name, f"{name}-a", f"{name}-b")
    assert ids(await api.get(HEALTH + name, tag="v1")) == {f"{name}-a", f"{name}-b"}
    assert ids(await api.get(HEALTH + name, tag="canary")) == {f"{name}-a"}
    reply = await api.request("GET", HEALTH + name, params=[("tag", "v1"), ("tag", "canary")])
    assert ids(reply) == {f"{name}-a"}
    assert ids(await api.get(HEALTH + name, tag="nope")) == set()
    catalog = await api.get(f"/v1/catalog/service/{name}", tag="canary")
    assert [e["ServiceID"] for e in catalog.body] == [f"{name}-a"]


async def test_deregister_removes_the_instance(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    await ttl_service(api, name, f"{name}-1")
    await ttl_service(api, name, f"{name}-2")
    before = await visible(api, name, f"{name}-1", f"{name}-2")
    assert (await api.put(f"/v1/agent/service/deregister/{name}-1")).status == 200
    one = await api.wait_for(HEALTH + name, lambda r: ids(r) == {f"{name}-2"})
    assert one.index > before.index
    await api.put(f"/v1/agent/service/deregister/{name}-2")
    gone = await api.wait_for(HEALTH + name, lambda r: r.body == [])
    assert gone.index >= one.index  # the extinction index: never backwards, never 0
    services = await api.wait_for("/v1/catalog/services", lambda r: name not in r.body)
    assert "consul" in services.body


async def test_ttl_check_pass_warn_fail_and_update(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    instance = f"{name}-1"
    check = f"service:{instance}"
    await api.register({"Name": name, "ID": instance, "Check": {"TTL": "10m"}})
    await settled(api, name, instance, check, "critical")  # no Status: starts critical
    for action, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical")):
        reply = await api.put(f"/v1/agent/check/{action}/{check}", note=f"{action} note")
        assert reply.status == 200, reply.text
        done = await settled(api, name, instance, check, status)
        assert check_of(done.body[0], check)["Output"] == f"{action} note"
    reply = await api.put(f"/v1/agent/check/update/{check}", {"Status": "warning", "Output": "hm"})
    assert reply.status == 200, reply.text
    done = await settled(api, name, instance, check, "warning")
    assert check_of(done.body[0], check)["Output"] == "hm"
    state = await api.get("/v1/health/state/warning")
    assert check in {c["CheckID"] for c in state.body}
    assert all(c["Status"] == "warning" for c in state.body)


async def test_several_checks_get_numbered_ids_and_keys_are_case_insensitive(
    consul_api: ConsulAPI, name: str
) -> None:
    api = consul_api
    definition = {
        "name": name,
        "id": f"{name}-1",
        "port": 9000,
        "checks": [{"ttl": "10m", "status": "passing"}, {"TTL": "10m", "Status": "warning"}],
    }
    await api.register(definition)
    reply = await api.wait_for(
        HEALTH + name, lambda r: len(r.body) == 1 and len(r.body[0]["Checks"]) == 3
    )
    statuses = {c["CheckID"]: c["Status"] for c in reply.body[0]["Checks"]}
    assert statuses[f"service:{name}-1:1"] == "passing"
    assert statuses[f"service:{name}-1:2"] == "warning"
    assert reply.body[0]["Service"]["Port"] == 9000
    checks = await api.get(f"/v1/health/checks/{name}")
    assert {c["CheckID"] for c in checks.body} == {f"service:{name}-1:1", f"service:{name}-1:2"}


async def test_catalog_register_and_deregister(consul_api: ConsulAPI, name: str) -> None:
    api = consul_api
    node = f"{name}-node"
    body = {
        "Node": node,
        "Address": "192.0.2.10",
        "Service": {"Service": name, "ID": f"{name}-x", "Port": 80},
        "Check": {"CheckID": f"{name}-chk", "Name": "external", "ServiceID": f"{name}-x"},
    }
    reply = await api.put("/v1/catalog/register", body)
    assert (reply.status, reply.body) == (200, True)
    try:
        health = await api.get(HEALTH + name)
        entry = health.body[0]
        assert entry["Node"]["Address"] == "192.0.2.10"
        assert [(c["CheckID"], c["Status"]) for c in entry["Checks"]] == [
            (f"{name}-chk", "critical")  # no status given: critical; no serfHealth here
        ]
        node_checks = await api.get(f"/v1/health/node/{node}")
        assert [c["CheckID"] for c in node_checks.body] == [f"{name}-chk"]
    finally:
        reply = await api.put("/v1/catalog/deregister", {"Node": node})
    assert reply.status == 200
    assert (await api.get(HEALTH + name)).body == []
    bad = await api.put("/v1/catalog/register", {"Address": "192.0.2.10"})
    assert bad.status == 400


async def test_unknown_datacenter_is_a_500(consul_api: ConsulAPI) -> None:
    reply = await consul_api.get("/v1/health/service/web", dc="nowhere")
    assert reply.status == 500
    assert "No path to datacenter" in reply.text
    datacenters = (await consul_api.get("/v1/catalog/datacenters")).body
    assert "dc1" in datacenters


async def test_agent_self_reports_the_local_datacenter(consul_api: ConsulAPI) -> None:
    reply = await consul_api.get("/v1/agent/self")
    assert reply.status == 200
    config = reply.body["Config"]
    assert config["Datacenter"] == "dc1"
    assert config["NodeName"]
    leader = await consul_api.get("/v1/status/leader")
    assert leader.body  # a known leader ("ip:port")
