"""CatalogWatcher against the Consul double: per-service mode, errors, outages, DCs, selection."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.consul import ConsulResponse
from bridge.model import Health
from consul_double import ConsulDouble
from tests.bridge.test_watcher_support import (
    CHANGES,
    Change,
    Recorder,
    Running,
    every_watch_held,
    register,
    watching,
    web_and_api,
)


@pytest.fixture
async def consul() -> AsyncIterator[ConsulDouble]:
    async with ConsulDouble(datacenter="dc1", extra_datacenters=("dc2",)) as double:
        yield double


@pytest.fixture
async def running(consul: ConsulDouble) -> AsyncIterator[Running]:
    web_and_api(consul)
    async with watching(consul) as run:
        await run.ready()
        yield run


def _statuses(run: Running, path_suffix: str) -> list[dict[str, object]]:
    return [w for w in run.watcher.status()["watches"] if str(w["path"]).endswith(path_suffix)]


async def test_initial_read_makes_ready_with_every_service(running: Running) -> None:
    rec = running.rec
    assert running.watcher.local_datacenter == "dc1"
    assert running.watcher.datacenters == ("dc1",)
    assert rec.ids("web") == {"web-1", "web-2"}
    assert rec.ids("api") == {"api-1"}
    assert ("consul", "dc1") not in rec.state  # excluded by default
    web1 = rec.instance("web", "web-1")
    assert web1 is not None
    assert (web1.address, web1.port, web1.node, web1.datacenter) == (
        "127.0.0.1",
        8080,
        "node1",
        "dc1",
    )
    assert web1.tags == ("v1",)
    assert web1.meta_dict == {"k": "v"}
    assert (web1.weight_passing, web1.weight_warning) == (3, 1)
    assert web1.health == Health.PASSING
    assert all(u.received_at > 0 for u in rec.updates)
    status = running.watcher.status()
    assert status["ready"] is True
    assert status["modes"] == {"dc1": "per-service"}
    assert {w["path"] for w in status["watches"]} >= {
        "/v1/catalog/services",
        "/v1/health/service/web",
        "/v1/health/service/api",
    }


@pytest.mark.parametrize("kind", list(CHANGES))
async def test_each_change_kind_produces_exactly_the_right_update(
    running: Running, kind: str
) -> None:
    await _assert_change(running, CHANGES[kind])


async def _assert_change(run: Running, change: Change) -> None:
    action, seen = change
    mark = run.rec.mark()
    action(run.consul)
    await run.until(lambda: seen(run.rec), what="the change to reach the watcher")
    updates = run.rec.since(mark)
    assert {u.name for u in updates} == {"web"}, updates
    assert all(u.instances for u in updates)  # never an empty or None update


async def test_service_maintenance_off_restores_health(running: Running) -> None:
    running.consul.set_service_maintenance("web-1", True, reason="deploy")
    await running.until(lambda: _health(running.rec, "web-1") == Health.MAINTENANCE)
    running.consul.set_service_maintenance("web-1", False)
    await running.until(lambda: _health(running.rec, "web-1") == Health.PASSING)
    running.consul.set_node_maintenance("node2", True)
    await running.until(lambda: _health(running.rec, "web-2") == Health.MAINTENANCE)
    running.consul.set_node_maintenance("node2", False)
    await running.until(lambda: _health(running.rec, "web-2") == Health.PASSING)


def _health(rec: Recorder, instance_id: str) -> Health | None:
    found = rec.instance("web", instance_id)
    return None if found is None else found.health


async def test_removed_service_becomes_none_and_new_service_appears(running: Running) -> None:
    running.consul.deregister("api-1")
    await running.until(lambda: running.rec.state.get(("api", "dc1"), ()) is None)
    register(running.consul, "db", "db-1", port=5432)
    await running.until(lambda: running.rec.ids("db") == {"db-1"})


async def test_unchanged_index_and_unchanged_body_are_not_updates(running: Running) -> None:
    consul, rec = running.consul, running.rec
    mark = rec.mark()
    requests = consul.stats.requests_total
    # Blocking queries expiring (wait=1s) return the same index: no update.
    await running.until(lambda: consul.stats.requests_total >= requests + 4, timeout=4)
    # Re-registering an instance unchanged bumps its index (and ModifyIndex) but not its content.
    register(consul, "api", "api-1", port=9090, node="node1")
    index = consul.index()
    await running.until(
        lambda: all(int(str(w["index"])) >= index for w in _statuses(running, "/api")),
        what="the api watch to see the new index",
    )
    assert rec.since(mark) == []


async def test_index_reset_still_delivers_changes(running: Running) -> None:
    consul = running.consul
    consul.reset_index()
    register(consul, "web", "web-1", port=7777)
    await running.until(lambda: _port(running.rec, "web-1") == 7777, what="change after reset")
    consul.deregister("web-2")  # a removal right after a reset is held (the guard's tests)...
    await running.until(lambda: _guard(running)["holding"], what="the removal held")
    assert running.rec.ids("web") == {"web-1", "web-2"}
    running.watcher.accept_removals()  # ... until an operator accepts it
    await running.until(lambda: running.rec.ids("web") == {"web-1"})


async def test_after_an_index_reset_the_watch_does_not_wait_for_the_old_index(
    consul: ConsulDouble,
) -> None:
    web_and_api(consul)
    for round_ in range(5):  # move the indexes well above what a reset leaves
        register(consul, "api", "api-1", port=9090, meta={"round": str(round_)})
    # Blocking queries wait up to 5 minutes: a watch still holding the pre-reset index would
    # not hear of any change for that long (Consul answers only once the index passes it).
    async with watching(consul, wait="5m") as run:
        await run.ready()
        before = max(int(str(w["index"])) for w in run.watcher.status()["watches"])
        # A reset wakes the queries Consul holds; one sent after it with an old index would
        # wait like any other (in Consul too). So every watch must be held when it happens.
        await every_watch_held(run)
        consul.reset_index()
        await run.until(
            lambda: all(int(str(w["index"])) < before for w in run.watcher.status()["watches"]),
            what="every watch to see the index go backwards",
        )
        register(consul, "web", "web-1", port=7777)
        await run.until(
            lambda: _port(run.rec, "web-1") == 7777, timeout=15, what="a change after the reset"
        )
        # a removal right after a reset is held by the mass-removal guard until accepted
        consul.deregister("api-1")
        await run.until(lambda: bool(run.watcher.problems()), timeout=15, what="removal held")
        run.watcher.accept_removals()
        await run.until(lambda: run.rec.ids("api") is None, timeout=15, what="a removal")


def _guard(run: Running) -> dict[str, Any]:
    guard: dict[str, Any] = run.watcher.status()["datacenter_status"]["dc1"]["removal_guard"]
    return guard


def _port(rec: Recorder, instance_id: str) -> int | None:
    found = rec.instance("web", instance_id)
    return None if found is None else found.port


@pytest.mark.parametrize(
    "fault",
    ["http 500", "dropped connections", "429", "invalid json"],
)
async def test_errors_are_retried_without_empty_updates_and_recover(
    running: Running, fault: str, caplog: pytest.LogCaptureFixture
) -> None:
    consul, rec = running.consul, running.rec
    caplog.set_level(logging.DEBUG, logger="bridge.consul")
    # A fault meets only the requests Consul receives from now on: the web watch's query that
    # Consul holds would still be answered normally, with whatever changed meanwhile. So it is
    # answered first, by a harmless change, and its next request meets the fault.
    await every_watch_held(running)
    prefix = "/v1/health/service/web"
    if fault == "http 500":
        consul.faults.error(status=500, body="No cluster leader", path_prefix=prefix)
    elif fault == "dropped connections":
        consul.faults.drop(path_prefix=prefix)
    elif fault == "429":
        consul.faults.too_many_requests(times=None, path_prefix=prefix)
    else:
        consul.faults.error(status=200, body="{not json", path_prefix=prefix)
    register(consul, "web", "web-1", port=8080, meta={"k": "v", "touched": "yes"})
    await running.until(
        lambda: _touched(rec, "web-1") and _web_errors(running) >= 1,
        what="the touch answered, then the web watch meeting the fault",
    )
    mark = rec.mark()
    with caplog.at_level(logging.DEBUG, logger="bridge.consul"):
        # A read Consul already holds is answered normally: change web only once the watch
        # meets the fault, or that read would carry the change.
        await running.until(lambda: _web_errors(running) >= 1, what="the web watch failing")
        consul.deregister("web-2")
        await running.until(
            lambda: _web_errors(running) >= 3, what="several failed attempts on the web watch"
        )
        assert rec.since(mark) == []  # the last known state is kept while erroring
        consul.faults.clear()
        await running.until(lambda: rec.ids("web") == {"web-1"}, what="recovery")
    assert all(u.instances for u in rec.since(mark))
    assert "retrying in" in caplog.text
    assert _statuses(running, "/web")[0]["failing"] == 0


def _touched(rec: Recorder, instance_id: str) -> bool:
    found = rec.instance("web", instance_id)
    return found is not None and found.meta_dict.get("touched") == "yes"


def _web_errors(run: Running) -> int:
    return sum(int(str(w["error_count"])) for w in _statuses(run, "/v1/health/service/web"))


async def test_a_hanging_request_times_out_and_is_retried(running: Running) -> None:
    consul, rec = running.consul, running.rec
    consul.faults.hang(times=1, path_prefix="/v1/health/service/web")
    await running.until(lambda: _web_errors(running) >= 1, timeout=6, what="a timed-out request")
    consul.deregister("web-2")
    await running.until(lambda: rec.ids("web") == {"web-1"}, timeout=5)
    assert "timed out" in str(_statuses(running, "/web")[0]["last_error"])


async def test_403_is_logged_as_an_acl_problem(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    running.consul.faults.error(status=403, body="Permission denied", times=2)
    running.consul.deregister("web-2")
    # A query Consul already holds may answer the change before any request meets the 403s;
    # the requests after it do meet them.
    await running.until(lambda: running.rec.ids("web") == {"web-1"}, what="the change")
    await running.until(lambda: "ACL token" in caplog.text, what="the 403 logged")
    assert "HTTP 403" in caplog.text


async def test_outage_keeps_state_then_recovers(running: Running) -> None:
    consul, rec = running.consul, running.rec
    mark = rec.mark()
    await consul.stop()
    await running.until(lambda: _web_errors(running) >= 2, what="errors during the outage")
    assert rec.since(mark) == []
    await consul.start()
    register(consul, "web", "web-3", port=8082)
    await running.until(lambda: rec.ids("web") == {"web-1", "web-2", "web-3"}, what="recovery")
    assert all(u.instances for u in rec.since(mark))


async def test_consul_down_at_start_is_not_fatal(consul: ConsulDouble) -> None:
    web_and_api(consul)
    await consul.stop()
    async with watching(consul) as run:
        await run.until(
            lambda: int(str(run.watcher.status()["watches"][0]["error_count"])) >= 2,
            what="failed attempts to reach the agent",
        )
        assert not run.watcher.ready.is_set()
        assert run.watcher.local_datacenter is None
        assert run.rec.updates == []
        await consul.start()
        await run.ready()
        assert run.rec.ids("web") == {"web-1", "web-2"}


async def test_several_datacenters_in_failover_order(consul: ConsulDouble) -> None:
    web_and_api(consul)
    register(consul, "web", "web-dc2", port=8090, datacenter="dc2")
    async with watching(consul, datacenters=("dc2",)) as run:
        await run.ready()
        rec = run.rec
        assert run.watcher.datacenters == ("dc1", "dc2")
        assert rec.ids("web", "dc2") == {"web-dc2"}
        assert rec.instance("web", "web-dc2", "dc2") is not None
        assert ("api", "dc2") not in rec.state
        mark = rec.mark()
        register(consul, "web", "web-dc2", port=8091, datacenter="dc2")
        await run.until(lambda: rec.instances("web", "dc2")[0].port == 8091)  # type: ignore[index]
        assert {(u.name, u.datacenter) for u in rec.since(mark)} == {("web", "dc2")}
        register(consul, "api", "api-dc2", datacenter="dc2")
        await run.until(lambda: rec.ids("api", "dc2") == {"api-dc2"})


async def test_selection_by_name_pattern_and_tags(consul: ConsulDouble) -> None:
    web_and_api(consul)
    register(consul, "web-admin", "admin-1", tags=["internal"])
    register(consul, "consul", "consul-1")
    # Deselecting web, the only service served, is a mass removal: the guard's share rule off.
    settings = {"include": ("web*",), "exclude_tags": ("internal",), "mass_removal_share": 1}
    async with watching(consul, **settings) as run:
        await run.ready()
        assert {name for name, _ in run.rec.state} == {"web"}
        # web-admin loses its excluded tag: selected; web gains it: deselected (None).
        register(consul, "web-admin", "admin-1", tags=["public"])
        register(consul, "web", "web-1", tags=["internal"])
        register(consul, "web", "web-2", tags=["internal"], node="node2")
        await run.until(lambda: run.rec.ids("web-admin") == {"admin-1"})
        await run.until(lambda: ("web", "dc1") in run.rec.state and run.rec.ids("web") is None)
        assert ("api", "dc1") not in run.rec.state


async def test_acl_filtered_results_warn_once(
    running: Running, caplog: pytest.LogCaptureFixture
) -> None:
    headers = {"X-Consul-Index": "7", "X-Consul-Results-Filtered-By-ACLs": "true"}
    filtered = ConsulResponse(200, 7, {}, headers, 1.0)
    with caplog.at_level(logging.WARNING, logger="bridge.consul"):
        running.watcher.observe(filtered)
        running.watcher.observe(filtered)
        running.watcher.observe(ConsulResponse(200, 8, {}, {"X-Consul-Index": "8"}, 2.0))
    warnings = [r for r in caplog.records if "Filtered-By-ACLs" in r.getMessage()]
    assert len(warnings) == 1
    assert "token problem" in warnings[0].getMessage()


async def test_token_is_never_logged(
    consul: ConsulDouble, caplog: pytest.LogCaptureFixture
) -> None:
    web_and_api(consul)
    consul.faults.error(status=403, body="ACL not found", times=3)
    with caplog.at_level(logging.DEBUG):
        async with watching(consul, token=SECRET_TOKEN) as run:
            await run.ready()
            run.watcher.status()
    assert "ACL" in caplog.text
    assert SECRET_TOKEN not in caplog.text
    assert SECRET_TOKEN not in repr(run.watcher.status())


SECRET_TOKEN = "tok-9f3e-secret-value"
