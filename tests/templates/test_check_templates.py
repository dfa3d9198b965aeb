"""``check-templates``: every set against the sample data, with the settings ``serve`` uses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.commands.check_templates import envoy_binary, main_check_templates
from bridge.config import load
from tests.support.cli import run_cli
from tests.support.envoy import envoy_binary as real_envoy

from .support import copy_sets


def strict_edge_set(root: Path) -> Path:
    """The bundled sets, with an edge set that needs ``vars.edge_domain`` (no default)."""
    directory = copy_sets(root / "sets", "default", "edge")
    routes = directory / "edge" / "routes.yaml.j2"
    text = routes.read_text()
    strict = text.replace('vars.edge_domain | default("edge.example")', "vars.edge_domain")
    assert strict != text
    routes.write_text(strict)
    return directory


def test_check_templates_accepts_the_bundled_sets(capsys: pytest.CaptureFixture[str]) -> None:
    assert main_check_templates(load()) == 0
    out = capsys.readouterr().out
    assert "default: OK" in out
    assert "edge: OK" in out


def test_check_templates_reports_broken_sets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_sets(tmp_path / "sets", "default", "edge")
    (directory / "edge" / "routes.yaml.j2").write_text("- name: edge_routes\n  bad_field: 1\n")
    assert main_check_templates(load({"templates.dir": str(directory)})) == 1
    out = capsys.readouterr().out
    assert "default: OK" in out
    assert "edge: FAILED" in out
    assert "bad_field" in out
    assert "routes.yaml.j2" in out


def test_check_templates_runs_envoy_validate_when_envoy_is_there(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert envoy_binary() == real_envoy()  # the test extra installs Envoy: it is never missing
    directory = copy_sets(tmp_path / "sets", "default")
    routes = directory / "default" / "routes.yaml.j2"
    # Valid protobuf, but Envoy refuses a domain shared by two virtual hosts.
    routes.write_text(routes.read_text().replace('domains: ["*"]', 'domains: ["web"]'))
    assert main_check_templates(load({"templates.dir": str(directory)})) == 1
    out = capsys.readouterr().out
    assert "default: FAILED" in out
    assert "envoy --mode validate" in out


def test_check_templates_takes_the_serve_config_file(tmp_path: Path) -> None:
    directory = strict_edge_set(tmp_path)
    # Without the configured vars the strict set cannot render...
    done = run_cli("check-templates", "--templates", str(directory))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "edge: FAILED" in done.stdout
    assert "edge_domain" in done.stdout
    # ... with the file serve reads (vars, rules, default set) it can.
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"templates:\n  dir: {directory}\n  default_set: default\n"
        "  rules:\n  - match: {node_cluster: 'edge-*'}\n    template_set: edge\n"
        "  vars: {edge_domain: corp.example}\n"
    )
    done = run_cli("check-templates", "--config", str(config))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "edge: OK" in done.stdout
    assert "default: OK" in done.stdout


def test_check_templates_names_a_default_set_or_rule_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    config = tmp_path / "bridge.yaml"
    config.write_text(
        f"templates:\n  dir: {directory}\n  default_set: main\n"
        "  rules:\n  - match: {node_id: 'x'}\n    template_set: ghost\n"
    )
    assert main_check_templates(load(config_file=config)) == 1
    out = capsys.readouterr().out
    assert "templates.default_set: template set 'main' does not exist" in out
    assert "templates.rules: template set 'ghost' does not exist" in out


def test_check_templates_exits_2_on_a_bad_setting(tmp_path: Path) -> None:
    config = tmp_path / "bridge.yaml"
    config.write_text("templates:\n  rules: [{match: {}, template_set: x}]\n")
    done = run_cli("check-templates", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.startswith("config error: templates.rules")
    assert len(done.stderr.strip().splitlines()) == 1
