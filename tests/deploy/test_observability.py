"""The Grafana dashboard and the Prometheus alert rules use only metrics a running bridge
exposes on /metrics, and cover what an operator watches."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Bridge
from bridge.templating import TemplateSource
from consul_double import ConsulDouble
from tests.support.bridge_env import bridge_config
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "consul-xds-bridge.json"
RULES = ROOT / "deploy" / "prometheus" / "consul-xds-bridge.rules.yaml"

#: Metrics another change adds (the NACK quarantine); listed until it is merged.
PENDING = {"consul_xds_quarantined_resources"}

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "summary": ("_sum", "_count"),
}
_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}  # fmt: skip


@pytest.fixture
async def exposed() -> set[str]:
    """Every series name a bridge with templates exposes on /metrics."""
    async with ConsulDouble(datacenter="dc1") as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080)
        async with Bridge(bridge_config(consul), TemplateSource()) as bridge:

            async def ready() -> bool:
                return bridge.readiness()[0]

            await eventually(ready, what="bridge ready")
            url = f"http://127.0.0.1:{bridge.admin_port}/metrics"
            async with aiohttp.ClientSession() as session, session.get(url) as response:
                text = await response.text()
    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
        names.update(sample.name for sample in family.samples)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range selectors
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        name = match.group()
        follows = expr[match.end() :].lstrip()[:1]
        if follows == "(" or name.lower() in _KEYWORDS:
            continue  # a function or a keyword
        found.add(name)
    return found


def dashboard_exprs() -> Iterator[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", variable["definition"])
            assert inner is not None
            yield variable["name"], inner.group(1)


def rule_exprs() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def test_the_expression_parser_finds_metric_names() -> None:
    assert metric_names(
        'histogram_quantile(0.99, sum by (le, type) (rate(a_bucket{job=~"$job"}[5m]))) > 1'
    ) == {"a_bucket"}
    assert metric_names("(time() - b > 300) unless on (instance, job) c") == {"b", "c"}


async def test_every_metric_the_dashboard_and_the_alerts_use_exists(exposed: set[str]) -> None:
    missing = {}
    used: set[str] = set()
    for where, expr in [*dashboard_exprs(), *rule_exprs()]:
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        used |= names
        unknown = names - exposed - PENDING
        if unknown:
            missing[where] = sorted(unknown)
    assert missing == {}
    assert used >= PENDING  # the pending one is really used; drop it from PENDING once merged
    assert PENDING.isdisjoint(exposed), "merged: remove it from PENDING"


def test_the_dashboard_covers_what_operators_watch() -> None:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    exprs = " ".join(expr for _, expr in dashboard_exprs())
    for metric in (
        "consul_xds_push_latency_seconds_bucket",
        "consul_xds_connected_clients",
        "consul_xds_nacks_total",
        "consul_xds_consul_requests_total",
        "consul_xds_consul_last_contact_seconds",
        "consul_xds_quarantined_resources",
    ):
        assert metric in exprs, metric
    assert {"0.5", "0.9", "0.99"} <= set(re.findall(r"histogram_quantile\(([0-9.]+)", exprs))
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"])
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24


def test_every_alert_has_a_severity_and_a_summary() -> None:
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
            assert rule["annotations"]["summary"], rule["alert"]
