"""Settings: precedence, parsing errors that name the key and source, the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import SETTINGS, ConfigError, duration, load, settings_table

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
    assert config["xds.listen"] == "0.0.0.0:19000"
    assert config["admin.listen"] == "127.0.0.1:9102"
    assert config.sources["consul.max_connections"] == "flag --consul-max-connections"
    assert "CONSUL_XDS_BRIDGE_CONSUL_WAIT" in config.sources["consul.wait"]
    assert str(config_file) in config.sources["xds.listen"]


def test_consul_standard_environment_variables_are_read() -> None:
    config = load(env={"CONSUL_HTTP_ADDR": "https://consul:8501", "CONSUL_HTTP_TOKEN": "s3cr3t"})
    assert config["consul.address"] == "https://consul:8501"
    assert config["consul.token"] == "s3cr3t"
    assert config.describe()["consul.token"]["value"] == "[redacted]"


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"consul.wait": "soon"}, {}, "consul.wait: expected a duration"),
        ({"consul.max_connections": "500000"}, {}, "consul.max_connections: expected 2..10000"),
        ({}, {"CONSUL_HTTP_SSL_VERIFY": "maybe"}, "consul.ssl_verify: expected true or false"),
        ({"xds.listen": "18000"}, {}, "xds.listen: expected HOST:PORT"),
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
    assert "(from " in str(raised.value)


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


def test_template_rules_are_checked(tmp_path: Path) -> None:
    config_file = tmp_path / "bridge.yaml"
    config_file.write_text("templates:\n  rules:\n    - match: {node_cluster: 'edge-*'}\n")
    with pytest.raises(ConfigError, match=r"templates\.rules: rule 0: needs match"):
        load(config_file=config_file)


def test_durations() -> None:
    assert duration("250ms") == 0.25
    assert duration("1m30s") == 90.0
    assert duration(2) == 2.0


def test_readme_settings_table_is_complete_and_current() -> None:
    readme = README.read_text()
    assert settings_table() in readme, "regenerate with: python -m bridge.config"
    for setting in SETTINGS:
        assert f"`{setting.key}`" in readme
