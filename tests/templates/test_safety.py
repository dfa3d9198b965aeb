"""Template problems never remove what nodes have: no empty or partial LDS/RDS, readiness that
names the failing set, ``serve`` refusing a default set that cannot render, settle periods."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.app import Bridge, BridgeConfig
from bridge.consul_settings import settings_from_env
from bridge.publisher import Publisher
from bridge.templating import Settle, TemplateSet, TemplateSource, parse_rules, unsettled_reason
from bridge.templating.sets import read_set
from tests.support.cli import run_cli
from tests.support.xds_client import XdsClient, names_in
from xds_server import DiscoveryServer, SnapshotCache, start_server
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER, ROUTE

from .support import copy_sets, envoy_node, instance, updates

LISTENERS = "listeners.yaml.j2"
BROKEN = "{%- if node.is_grpc %}\n- name: x\n"  # a write cut inside a block: does not compile


def broken_default(tmp_path: Path) -> Path:
    directory = copy_sets(tmp_path / "sets", "default", "edge")
    (directory / "default" / LISTENERS).write_text(BROKEN)
    return directory


# ---------------------------------------------------------------- a node never rendered
async def test_a_node_whose_set_never_rendered_gets_no_listeners_routes_or_clusters(
    tmp_path: Path,
) -> None:
    source = TemplateSource(broken_default(tmp_path))
    cache = SnapshotCache()
    publisher = Publisher(cache, node_config=source)
    publisher.submit(updates(instance("web", 1)))
    publisher.mark_ready()
    cache.watch(envoy_node("n1"), lambda changed: None)
    snapshot = cache.get("n1")
    assert snapshot is not None
    # Not "no listeners": nothing at all of what the template owns; endpoints still flow.
    assert snapshot.withheld == {CLUSTER, LISTENER, ROUTE}
    assert ENDPOINT not in snapshot.withheld
    assert "web" in snapshot.get(ENDPOINT)
    assert "n1" in source.errors


@asynccontextmanager
async def serving(source: TemplateSource) -> AsyncIterator[tuple[Publisher, str]]:
    cache = SnapshotCache()
    publisher = Publisher(cache, node_config=source, debounce=0.0)
    server, port = await start_server(DiscoveryServer(cache), "127.0.0.1:0")
    try:
        publisher.submit(updates(instance("web", 1)))
        publisher.mark_ready()
        yield publisher, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


async def test_over_xds_a_broken_set_sends_endpoints_only_and_the_fix_sends_the_rest(
    tmp_path: Path,
) -> None:
    directory = broken_default(tmp_path)
    source = TemplateSource(directory)
    async with serving(source) as (publisher, target), XdsClient(target, "n1") as client:
        client.node.user_agent_name = "envoy"
        await client.send(LISTENER, [])
        await client.send(ROUTE, ["ingress_routes"])
        await client.send(CLUSTER, [])
        await client.send(ENDPOINT, ["web"])
        eds = await client.recv()  # the first response of all: endpoints flow
        assert eds.type_url == ENDPOINT
        assert names_in(eds) == ["web"]
        await client.ack(eds, ["web"])

        copy_sets(tmp_path / "fixed", "default")
        good = (tmp_path / "fixed" / "default" / LISTENERS).read_text()
        (directory / "default" / LISTENERS).write_text(good)
        assert source.reload().changed == ("default",)
        publisher.republish()
        # Had anything of LDS/RDS/CDS been sent while the set was broken, it would come first.
        first: dict[str, list[str]] = {}
        for _ in range(6):  # CDS, EDS again for the (new to this client) cluster, LDS, RDS
            response = await client.recv()
            first.setdefault(response.type_url, names_in(response))
            subscribed = {ENDPOINT: ["web"], ROUTE: ["ingress_routes"]}
            await client.ack(response, subscribed.get(response.type_url, []))
            if LISTENER in first and ROUTE in first:
                break
        assert first[CLUSTER] == ["web"]
        assert first[LISTENER] == ["ingress_http"]
        assert first[ROUTE] == ["ingress_routes"]


# ---------------------------------------------------------------- readiness
def bridge_with(source: TemplateSource) -> Bridge:
    settings = settings_from_env({}, address="http://127.0.0.1:1")
    bridge = Bridge(BridgeConfig(consul=settings), source)
    bridge.publisher.mark_ready()
    return bridge


def test_readiness_is_503_naming_the_default_set_when_it_cannot_render(tmp_path: Path) -> None:
    bridge = bridge_with(TemplateSource(broken_default(tmp_path)))
    ready, reason = bridge.readiness()
    assert not ready
    assert reason.startswith("the default template set 'default' cannot render: ")
    assert LISTENERS in reason


def test_readiness_stays_200_for_another_set_and_names_it(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default", "edge")
    (directory / "edge" / "routes.yaml.j2").write_text("- name: edge_routes\n  bad: 1\n")
    rules = parse_rules([{"match": {"node_cluster": "edge-*"}, "template_set": "edge"}])
    bridge = bridge_with(TemplateSource(directory, rules=rules))
    ready, reason = bridge.readiness()
    assert ready
    assert reason.startswith("serving 0 services; template sets failing")
    assert "edge cannot render: template set 'edge', routes.yaml.j2" in reason


def test_readiness_stays_200_when_the_default_set_fails_for_one_node(tmp_path: Path) -> None:
    source = TemplateSource(copy_sets(tmp_path / "sets", "default"))
    bridge = bridge_with(source)
    bridge.cache.watch(envoy_node("odd", metadata={"ingress_port": "x"}), lambda changed: None)
    bridge.cache.watch(envoy_node("fine"), lambda changed: None)
    ready, reason = bridge.readiness()
    assert ready
    assert "default fails for 1 node key(s)" in reason
    assert "'odd'" in reason


def test_serve_exits_2_in_one_line_when_the_default_set_cannot_render(tmp_path: Path) -> None:
    directory = broken_default(tmp_path)
    done = run_cli(
        "serve",
        "--templates",
        str(directory),
        "--xds-listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--consul-addr",
        "http://127.0.0.1:1",
    )
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("config error: templates.dir: the default template set 'default' ")
    assert f"{LISTENERS}, line" in line


# ---------------------------------------------------------------- settle periods
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def edited(tset: TemplateSet, file: str, text: str | None) -> TemplateSet:
    """``tset`` with one file replaced (None: removed), as the next reload would read it."""
    sources = dict(tset.sources)
    if text is None:
        sources.pop(file)
    else:
        sources[file] = text
    directory = tset.directory.parent / f"{tset.name}-edit"
    directory.mkdir(exist_ok=True)
    for name in tset.sources:
        (directory / name).unlink(missing_ok=True)
    for name, content in sources.items():
        (directory / name).write_text(content)
    fresh = read_set(tset.name, directory, tset.generation + 1)
    assert fresh.sources == sources
    return fresh


@pytest.fixture
def loaded(tmp_path: Path) -> TemplateSet:
    directory = copy_sets(tmp_path / "sets", "default")
    return read_set("default", directory / "default", 1)


def test_ordinary_edits_and_first_loads_are_applied_at_once(loaded: TemplateSet) -> None:
    settle = Settle(2.0, Clock())
    assert settle.admit(None, edited(loaded, LISTENERS, ""))  # nothing to protect yet
    assert settle.admit(loaded, edited(loaded, "routes.yaml.j2", "[]\n"))
    assert settle.held == {}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", f"{LISTENERS} is empty"),
        ("  \n", f"{LISTENERS} is empty"),
        (None, f"{LISTENERS} was removed"),
        (BROKEN, f"template set 'default', {LISTENERS}, line"),
    ],
    ids=["empty", "blank", "removed", "cut-in-a-tag"],
)
def test_a_half_written_edit_is_applied_only_once_unchanged_for_the_period(
    loaded: TemplateSet, text: str | None, reason: str
) -> None:
    clock = Clock()
    settle = Settle(2.0, clock)
    fresh = edited(loaded, LISTENERS, text)
    assert (unsettled_reason(loaded, fresh) or "").startswith(reason)
    assert not settle.admit(loaded, fresh)
    assert settle.recheck_in() == 2.0
    clock.now += 1.5
    assert not settle.admit(loaded, fresh)
    assert settle.recheck_in() == pytest.approx(0.5)
    clock.now += 0.5
    assert settle.admit(loaded, fresh)
    assert settle.held == {}
    assert settle.recheck_in() is None


def test_a_file_still_being_written_restarts_the_period(loaded: TemplateSet) -> None:
    clock = Clock()
    settle = Settle(2.0, clock)
    assert not settle.admit(loaded, edited(loaded, LISTENERS, ""))
    clock.now += 1.9
    half = edited(loaded, LISTENERS, BROKEN)
    assert not settle.admit(loaded, half)  # different content: a new period
    clock.now += 1.9
    assert not settle.admit(loaded, half)
    settle.forget("default")  # the file is back as it was
    assert settle.held == {}
