"""The ``consul-xds-bridge`` command line, run as a user runs it (a separate process)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from consul_double import ConsulDouble
from tests.support.cli import run_cli as run
from tests.support.cli import serving, terminate


def health_entry(instance: str, port: int, status: str = "passing") -> dict[str, Any]:
    return {
        "Node": {"Node": "node1", "Address": "127.0.0.1", "Datacenter": "dc1"},
        "Service": {"ID": instance, "Service": "web", "Address": "", "Port": port},
        "Checks": [{"CheckID": f"service:{instance}", "Status": status, "ServiceID": instance}],
    }


def test_version() -> None:
    done = run("version")
    assert done.returncode == 0
    assert done.stdout.startswith("consul-xds-bridge ")


def test_bootstrap_prints_yaml_for_the_node() -> None:
    done = run("bootstrap", "--node-id", "edge-1", "--node-cluster", "edge", "--metadata", "a=b")
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config["node"]["id"] == "edge-1"
    assert config["node"]["cluster"] == "edge"
    assert config["node"]["metadata"] == {"a": "b"}


def test_bootstrap_rejects_a_bad_address_with_status_2() -> None:
    done = run("bootstrap", "--node-id", "a", "--node-cluster", "b", "--xds-address", "nope")
    assert done.returncode == 2
    assert "--xds-address" in done.stderr


def test_serve_exits_2_naming_the_bad_setting(tmp_path: Path) -> None:
    done = run("serve", "--consul-max-connections", "1")
    assert done.returncode == 2
    assert "consul.max_connections" in done.stderr
    assert "flag --consul-max-connections" in done.stderr
    config = tmp_path / "bridge.yaml"
    config.write_text("xds:\n  listen: nowhere\n")
    done = run("serve", "--config", str(config))
    assert done.returncode == 2
    assert "xds.listen" in done.stderr
    assert str(config) in done.stderr
    done = run("serve", "--templates", str(tmp_path / "missing"))
    assert done.returncode == 2
    assert "templates" in done.stderr


def test_render_prints_what_a_node_would_receive_from_a_saved_catalog(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text(
        json.dumps({"dc1": {"web": [health_entry("web-1", 8080), health_entry("web-2", 8081)]}})
    )
    done = run("render", "--node-id", "edge-1", "--node-cluster", "edge", "--catalog", str(catalog))
    assert done.returncode == 0, done.stderr
    output = json.loads(done.stdout)
    resources = output["resources"]
    assert [c["name"] for c in resources["cluster"]["items"]] == ["web"]
    (assignment,) = resources["endpoint"]["items"]
    ports = {
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for locality in assignment["resource"]["endpoints"]
        for lb in locality["lb_endpoints"]
    }
    assert ports == {8080, 8081}
    assert [item["name"] for item in resources["listener"]["items"]] == ["ingress_http"]
    assert [item["name"] for item in resources["route"]["items"]] == ["ingress_routes"]


def test_render_reports_a_broken_catalog_file(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    catalog.write_text("[1, 2]")
    done = run("render", "--node-id", "edge-1", "--catalog", str(catalog))
    assert done.returncode == 1
    assert str(catalog) in done.stderr


def test_check_templates_accepts_the_bundled_sets() -> None:
    done = run("check-templates")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "default" in done.stdout


async def test_serve_becomes_ready_and_shuts_down_cleanly_on_sigterm() -> None:
    async with ConsulDouble(datacenter="dc1") as consul:
        consul.register("web", id="web-1", address="127.0.0.1", port=8080, check_status="passing")
        env = {"CONSUL_HTTP_TOKEN": "s3cr3t-token-value", "PATH": ""}
        async with serving("--consul-addr", consul.url, "--log-format", "json", env=env) as process:
            stderr = await terminate(process, 20)
    assert process.returncode == 0
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines]
    assert any(m.startswith("ready: 1 services") for m in messages), messages
    assert any(m.startswith("shutting down") for m in messages), messages
    assert "s3cr3t-token-value" not in stderr
