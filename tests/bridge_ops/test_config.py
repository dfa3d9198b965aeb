"""Settings: precedence, one parser per kind, errors that name the key and its source, the
README table and ``--help`` generated from the one table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bridge.app import bridge_config
from bridge.cli import main
from bridge.config import SETTINGS, ConfigError, load, settings_table
from bridge.values import parse_bool, parse_duration, parse_host_port
from tests.support.cli import run_cli

README = Path(__file__).resolve().parents[2] / "README.md"


def test_precedence_is_flags_then_env_then_file_then_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text(
        "consul:\n  wait: 30s\n  max_connections: 50\nxds:\n  listen: 0.0.0.0:19000\n"
    )
    config = load(
        flags={"consul.max_connections": "20"},
        env={"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "10s"},
        config_file=config_file,
    )
    assert config["consul.max_connections"] == 20
    assert config["consul.wait"] == 10.0
    assert str(config["xds.listen"]) == "0.0.0.0:19000"
    assert str(config["admin.listen"]) == "127.0.0.1:9102"
    assert config.sources["consul.max_connections"] == "flag --consul-max-connections"
    assert "CONSUL_XDS_BRIDGE_CONSUL_WAIT" in config.sources["consul.wait"]
    assert str(config_file) in config.sources["xds.listen"]


def test_consul_standard_environment_variables_are_read() -> None:
    config = load(env={"CONSUL_HTTP_ADDR": "https://consul:8501", "CONSUL_HTTP_TOKEN": "s3cr3t"})
    assert str(config["consul.address"]) == "https://consul:8501"
    assert config["consul.token"] == "s3cr3t"
    assert config.describe()["consul.token"]["value"] == "[redacted]"


def test_consul_http_ssl_reaches_the_bridge_config() -> None:
    env = {"CONSUL_HTTP_ADDR": "consul:8501", "CONSUL_HTTP_SSL": "true"}
    assert bridge_config(load({}, env)).consul.address == "https://consul:8501"
    assert bridge_config(load({"consul.ssl": False}, env)).consul.address == "http://consul:8501"
    file_env = {"CONSUL_XDS_BRIDGE_CONSUL_SSL": "yes", "CONSUL_HTTP_ADDR": "consul"}
    assert bridge_config(load({}, file_env)).consul.address == "https://consul:8500"


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"consul.wait": "soon"}, {}, "consul.wait: expected a duration"),
        ({"consul.max_connections": "500000"}, {}, "consul.max_connections: expected 2..10000"),
        ({}, {"CONSUL_HTTP_SSL_VERIFY": "maybe"}, "consul.ssl_verify: expected true or false"),
        ({}, {"CONSUL_HTTP_SSL": "sometimes"}, "consul.ssl: expected true or false"),
        ({"xds.listen": "18000"}, {}, "xds.listen: expected HOST:PORT"),
        ({"xds.listen": "::1:18000"}, {}, "xds.listen: IPv6 addresses need brackets"),
        ({"admin.listen": "127.0.0.1:65536"}, {}, "admin.listen: invalid port '65536'"),
        ({}, {"CONSUL_HTTP_ADDR": "consul:99999"}, "consul.address: invalid port '99999'"),
        ({}, {"CONSUL_HTTP_ADDR": "ftp://consul"}, "consul.address: unsupported scheme"),
        ({"xds.node_key": "zone"}, {}, "xds.node_key: expected id, cluster or metadata:<field>"),
        ({"log.format": "xml"}, {}, "log.format: expected one of text, json"),
    ],
)
def test_bad_values_name_the_key_and_the_source(
    flags: dict[str, str], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        load(flags=flags, env=env)
    assert str(raised.value).startswith(expected)
    source = f"(from environment variable {next(iter(env))})" if env else "(from flag --"
    assert source in str(raised.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "inf"}, "consul.wait: must be a finite duration"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "nan"}, "consul.wait: must be a finite duration"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "1e999"}, "consul.wait: must be a finite duration"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "0s"}, "consul.wait: must be > 0"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_WAIT": "11m"}, "consul.wait: must be > 0, at most 600s"),
        ({"CONSUL_XDS_BRIDGE_XDS_DEBOUNCE": "-5ms"}, "xds.debounce: must not be negative"),
        ({"CONSUL_XDS_BRIDGE_XDS_DEBOUNCE": "2m"}, "xds.debounce: 120s is longer than consul"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_MIN_INTERVAL": "1h"}, "consul.min_interval: 3600s is longer"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_MAX_CONNECTIONS": "inf"}, "consul.max_connections: expected"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_MAX_CONNECTIONS": "-3"}, "consul.max_connections: expected"),
        ({"CONSUL_XDS_BRIDGE_XDS_MAX_STREAMS": "0"}, "xds.max_streams: expected 1..1000000"),
    ],
)
def test_non_finite_and_absurd_values_are_rejected(env: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as raised:
        load(env=env)
    assert str(raised.value).startswith(expected)
    assert f"(from environment variable {next(iter(env))})" in str(raised.value)


def test_a_debounce_longer_than_the_wait_names_both_sources(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("xds:\n  debounce: 3s\n")
    with pytest.raises(ConfigError) as raised:
        load({"consul.wait": "2s"}, {}, config_file)
    message = str(raised.value)
    assert message.startswith("xds.debounce: 3s is longer than consul.wait (2s, from flag")
    assert message.endswith(f"(from config file {config_file})")


def test_a_bad_value_in_the_config_file_names_the_file(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("consul:\n  min_interval: .inf\n")
    with pytest.raises(ConfigError, match=rf"consul\.min_interval: .*config file {config_file}"):
        load(config_file=config_file)


def test_unknown_and_misplaced_file_keys_are_errors(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("consul:\n  addres: http://x:8500\n")
    with pytest.raises(ConfigError, match=r"consul\.addres: unknown setting"):
        load(config_file=config_file)
    config_file.write_text("wait: 10s\n")
    with pytest.raises(ConfigError, match=r"did you mean consul\.wait"):
        load(config_file=config_file)
    config_file.write_text("consul: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(config_file=config_file)
    config_file.write_bytes(b"consul:\n  address: \xff\xfe\n")
    with pytest.raises(ConfigError, match=f"{config_file} is not UTF-8 text"):
        load(config_file=config_file)


def test_template_rules_are_checked(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("templates:\n  rules:\n    - match: {node_cluster: 'edge-*'}\n")
    with pytest.raises(ConfigError, match=r"templates\.rules: rule 0: needs match"):
        load(config_file=config_file)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("1m30s", 90.0),
        ("1h30m", 5400.0),
        ("1.5s", 1.5),
        (".5s", 0.5),
        ("500us", 0.0005),
        ("500µs", 0.0005),
        ("0", 0.0),
        ("2", 2.0),
        (2, 2.0),
        (0.25, 0.25),
    ],
)
def test_durations_use_gos_syntax_or_plain_seconds(text: Any, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "1d", "1 s", "s", "5m-3s", True, "-1s", "inf", "nan"])
def test_bad_durations_are_refused(text: Any) -> None:
    with pytest.raises(ValueError, match=r"duration|negative"):
        parse_duration(text)


def test_one_set_of_boolean_words() -> None:
    for word in ("1", "t", "true", "TRUE", "True", "yes", "on"):
        assert parse_bool(word) is True
    for word in ("0", "f", "false", "FALSE", "no", "Off"):
        assert parse_bool(word) is False
    with pytest.raises(ValueError, match="expected true or false"):
        parse_bool("maybe")


def test_host_port_forms() -> None:
    assert parse_host_port("0.0.0.0:18000") == ("0.0.0.0", 18000)
    assert parse_host_port("[::]:0") == ("::", 0)
    assert str(parse_host_port("[fd00::1]:9102")) == "[fd00::1]:9102"
    assert parse_host_port("edge.local:80") == ("edge.local", 80)


def test_log_levels_are_case_insensitive() -> None:
    assert load(env={"CONSUL_XDS_BRIDGE_LOG_LEVEL": "DEBUG"})["log.level"] == "debug"
    assert load({"log.format": "JSON"})["log.format"] == "json"


def test_readme_settings_table_is_complete_and_current() -> None:
    readme = README.read_text()
    assert settings_table() in readme, "regenerate with: python -m bridge.config"
    for setting in SETTINGS:
        assert f"`{setting.key}`" in readme


def test_help_shows_every_flag_with_its_default_and_environment_names(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    for setting in SETTINGS:
        if setting.flag:
            assert setting.flag in text
            for name in setting.env_names:
                assert name in text
    assert "[default: 60s; env: CONSUL_XDS_BRIDGE_CONSUL_WAIT]" in text
    assert "--no-warning-is-healthy" in text


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        (["--debounce", "inf"], {}, "xds.debounce: must be a finite duration"),
        (["--consul-wait", "nan"], {}, "consul.wait: must be a finite duration"),
        (["--xds-listen", "127.0.0.1:70000"], {}, "xds.listen: invalid port '70000'"),
        (["--consul-ssl", "maybe"], {}, "consul.ssl: expected true or false"),
        ([], {"CONSUL_HTTP_ADDR": "consul:0"}, "consul.address: invalid port '0'"),
        ([], {"CONSUL_XDS_BRIDGE_XDS_MAX_STREAMS": "-1"}, "xds.max_streams: expected 1..1000000"),
        ([], {"CONSUL_XDS_BRIDGE_LOG_LEVEL": "loud"}, "log.level: expected one of debug"),
    ],
)
def test_serve_exits_2_naming_the_key_and_its_source(
    args: list[str],
    env: dict[str, str],
    named: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert named in err
    source = f"flag {args[0]}" if args else f"environment variable {next(iter(env))}"
    assert f"(from {source})" in err


def test_serve_exits_2_naming_a_config_file_it_cannot_decode(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["serve", "--config", str(config_file)]) == 2
    err = capsys.readouterr().err
    assert f"{config_file} is not UTF-8 text" in err
    assert "Traceback" not in err


def _render(catalog: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    done = run_cli("render", "--node-id", "edge-1", "--catalog", str(catalog), *args, env=env)
    assert done.returncode == 0, done.stderr
    (assignment,) = json.loads(done.stdout)["resources"]["endpoint"]["items"]
    return {
        lb["endpoint"]["address"]["socket_address"]["port_value"]
        for locality in assignment["resource"]["endpoints"]
        for lb in locality["lb_endpoints"]
        if lb.get("health_status", "HEALTHY") == "HEALTHY"
    }


def _entry(instance: str, port: int, status: str) -> dict[str, Any]:
    return {
        "Node": {"Node": "node1", "Address": "127.0.0.1", "Datacenter": "dc1"},
        "Service": {"ID": instance, "Service": "web", "Address": "", "Port": port},
        "Checks": [{"CheckID": f"service:{instance}", "Status": status, "ServiceID": instance}],
    }


def test_boolean_flags_are_switches_and_log_levels_any_case(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog.json"
    entries = [_entry("web-1", 8080, "passing"), _entry("web-2", 8081, "warning")]
    catalog.write_text(json.dumps({"dc1": {"web": entries}}))
    env = {"CONSUL_XDS_BRIDGE_LOG_LEVEL": "DEBUG", "PATH": ""}
    assert _render(catalog, "--warning-is-healthy", env=env) == {8080, 8081}
    assert _render(catalog, "--no-warning-is-healthy", env=env) == {8080}
    assert _render(catalog, "--warning-is-healthy", "off", env=env) == {8080}


def test_bootstrap_ports_and_addresses_use_the_same_parsers() -> None:
    done = run_cli("bootstrap", "--node-id", "a", "--node-cluster", "b", "--admin-port", "99999")
    assert done.returncode == 2
    assert "--admin-port: expected 0..65535, got 99999" in done.stderr
    done = run_cli("bootstrap", "--node-id", "a", "--node-cluster", "b", "--xds-address", "::1:1")
    assert done.returncode == 2
    assert "--xds-address: IPv6 addresses need brackets" in done.stderr
    done = run_cli(
        "bootstrap", "--node-id", "a", "--node-cluster", "b", "--xds-address", "[::1]:18000"
    )
    assert done.returncode == 0, done.stderr
    assert "address: ::1" in done.stdout
