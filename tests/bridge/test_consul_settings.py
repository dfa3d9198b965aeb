"""ConsulSettings: Consul's standard environment read as Consul's CLI reads it, explicit
overrides, validation through the settings table, redaction."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.consul_settings import ConsulSettings, settings_from_env
from bridge.values import parse_address

TOKEN = "s3cr3t-0000-token"


def test_defaults_without_environment() -> None:
    s = settings_from_env({})
    assert (s.scheme, s.host, s.port) == ("http", "127.0.0.1", 8500)
    assert s.address == "http://127.0.0.1:8500"
    assert s.token == ""
    assert s.verify is True
    assert s.max_connections == 100
    assert s.wait == 60.0
    assert s.wait_param == "60s"
    assert s.exclude == ("consul",)
    assert s.request_timeout > 60.0 * 17 / 16
    assert (s.mass_removal_share, s.mass_removal_hold) == (0.5, 180.0)


@pytest.mark.parametrize(
    ("addr", "expected"),
    [
        ("consul.local:8500", ("http", "consul.local", 8500)),
        ("10.0.0.1", ("http", "10.0.0.1", 8500)),
        ("http://10.0.0.1:18500", ("http", "10.0.0.1", 18500)),
        ("https://consul.example:8501", ("https", "consul.example", 8501)),
        ("https://consul.example", ("https", "consul.example", 443)),
        ("[::1]:8500", ("http", "::1", 8500)),
        ("http://[fd00::1]:8500/", ("http", "fd00::1", 8500)),
    ],
)
def test_consul_http_addr_forms(addr: str, expected: tuple[str, str, int]) -> None:
    s = settings_from_env({"CONSUL_HTTP_ADDR": addr})
    assert (s.scheme, s.host, s.port) == expected


def test_ipv6_address_is_bracketed_in_urls() -> None:
    assert settings_from_env({"CONSUL_HTTP_ADDR": "[::1]:8500"}).address == "http://[::1]:8500"


def test_consul_http_ssl_turns_on_https_and_verify_can_be_disabled() -> None:
    env = {"CONSUL_HTTP_ADDR": "consul:8501", "CONSUL_HTTP_SSL": "true"}
    env |= {"CONSUL_HTTP_SSL_VERIFY": "false", "CONSUL_CACERT": "/ca.pem"}
    env |= {"CONSUL_CLIENT_CERT": "/c.pem", "CONSUL_CLIENT_KEY": "/k.pem"}
    env |= {"CONSUL_TLS_SERVER_NAME": "server.dc1.consul"}
    s = settings_from_env(env)
    assert s.address == "https://consul:8501"
    assert s.verify is False
    assert (s.ca_file, s.client_cert, s.client_key) == ("/ca.pem", "/c.pem", "/k.pem")
    assert s.tls_server_name == "server.dc1.consul"


def test_explicit_values_override_environment() -> None:
    env = {
        "CONSUL_HTTP_ADDR": "https://from-env:8501",
        "CONSUL_HTTP_TOKEN": "env-token",
        "CONSUL_HTTP_SSL_VERIFY": "false",
        "CONSUL_CACERT": "/env-ca.pem",
    }
    s = settings_from_env(
        env, address="http://flag:9500", token="flag-token", ssl_verify=True, ca_file="/ca.pem"
    )
    assert s.address == "http://flag:9500"
    assert s.token == "flag-token"
    assert s.verify is True
    assert s.ca_file == "/ca.pem"


def test_none_and_empty_overrides_mean_not_given() -> None:
    env = {"CONSUL_HTTP_ADDR": "env:8500", "CONSUL_HTTP_TOKEN": "env-token"}
    s = settings_from_env(env, address=None, token="", ca_file=None)
    assert (s.host, s.token, s.ca_file) == ("env", "env-token", None)


def test_token_file_wins_over_token_and_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    env = {"CONSUL_HTTP_TOKEN": "env-token", "CONSUL_HTTP_TOKEN_FILE": str(path)}
    assert settings_from_env(env).token == TOKEN
    assert settings_from_env(env, token="flag-token").token == "flag-token"
    assert settings_from_env({}, token="x", token_file=str(path)).token == TOKEN


def test_durations_lists_and_numbers_are_converted() -> None:
    s = settings_from_env(
        {},
        wait="1m30s",
        min_interval="250ms",
        backoff_max=5,
        datacenters="dc2, dc3,dc2",
        include=["web-*"],
        max_connections="40",
    )
    assert s.wait == 90.0
    assert s.wait_param == "90s"
    assert s.min_interval == 0.25
    assert s.backoff_max == 5.0
    assert s.datacenters == ("dc2", "dc3")
    assert s.include == ("web-*",)
    assert s.max_connections == 40
    assert settings_from_env({}, wait="1500ms").wait_param == "1500ms"


def test_mass_removal_guard_settings() -> None:
    s = settings_from_env({}, mass_removal_share="0.25", mass_removal_hold="90s")
    assert (s.mass_removal_share, s.mass_removal_hold) == (0.25, 90.0)
    env = {"CONSUL_XDS_BRIDGE_CONSUL_MASS_REMOVAL_HOLD": "0"}  # 0: the guard is off
    assert settings_from_env(env, mass_removal_share=1).mass_removal_hold == 0.0


@pytest.mark.parametrize(
    ("env", "overrides", "named"),
    [
        ({"CONSUL_HTTP_ADDR": "unix:///var/run/consul.sock"}, {}, "CONSUL_HTTP_ADDR"),
        ({"CONSUL_HTTP_ADDR": "ftp://consul:21"}, {}, "CONSUL_HTTP_ADDR"),
        ({"CONSUL_HTTP_ADDR": "consul:port"}, {}, "CONSUL_HTTP_ADDR"),
        ({"CONSUL_HTTP_ADDR": "consul:70000"}, {}, "CONSUL_HTTP_ADDR"),
        ({"CONSUL_HTTP_ADDR": "::1:8500"}, {}, "CONSUL_HTTP_ADDR"),
        ({"CONSUL_HTTP_SSL": "sometimes"}, {}, "CONSUL_HTTP_SSL"),
        ({"CONSUL_HTTP_SSL_VERIFY": "maybe"}, {}, "CONSUL_HTTP_SSL_VERIFY"),
        ({"CONSUL_HTTP_TOKEN_FILE": "/does/not/exist"}, {}, "CONSUL_HTTP_TOKEN_FILE"),
        ({"CONSUL_CLIENT_CERT": "/c.pem"}, {}, "consul.client_key.*CONSUL_CLIENT_CERT"),
        ({}, {"client_key": "/k.pem"}, "consul.client_cert"),
        ({}, {"wait": "forever"}, "wait"),
        ({}, {"wait": "11m"}, "wait"),
        ({}, {"max_connections": 1}, "max_connections"),
        ({}, {"max_connections": "many"}, "max_connections"),
        ({}, {"min_interval": -1}, "min_interval"),
        ({}, {"min_interval": "2m"}, "min_interval: 120s is longer than consul.wait"),
        ({}, {"wait": "inf"}, "wait"),
        ({}, {"backoff_base": "nan"}, "backoff_base"),
        ({}, {"backoff_base": "2s", "backoff_max": "1s"}, "backoff_max"),
        ({}, {"colour": "blue"}, "colour"),
        ({}, {"mass_removal_share": "1.5"}, "consul.mass_removal_share"),
        ({}, {"mass_removal_share": "nan"}, "consul.mass_removal_share"),
        ({}, {"mass_removal_share": "half"}, "consul.mass_removal_share"),
        ({}, {"mass_removal_hold": "-1s"}, "consul.mass_removal_hold"),
        ({"CONSUL_XDS_BRIDGE_CONSUL_MASS_REMOVAL_SHARE": "-0.1"}, {}, "MASS_REMOVAL_SHARE"),
    ],
)
def test_invalid_values_name_the_variable(
    env: dict[str, str], overrides: dict[str, object], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        settings_from_env(env, **overrides)


def test_empty_token_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  \n")
    named = r"consul\.token_file: .* is empty \(from environment variable CONSUL_HTTP_TOKEN_FILE\)"
    with pytest.raises(ValueError, match=named):
        settings_from_env({"CONSUL_HTTP_TOKEN_FILE": str(path)})


def test_token_never_in_repr_str_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    s = settings_from_env({"CONSUL_HTTP_TOKEN": TOKEN})
    assert s.token == TOKEN
    assert TOKEN not in repr(s)
    assert TOKEN not in str(s)
    assert "[redacted]" in repr(s)
    assert TOKEN not in f"{s} {s!r}"
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("test").info("settings: %s", s)
    assert TOKEN not in caplog.text
    assert "token=''" in repr(ConsulSettings())


def test_parse_address_keeps_scheme_unknown_without_prefix() -> None:
    assert parse_address("consul:8500") == (None, "consul", 8500)


@pytest.mark.parametrize(
    ("env", "address"),
    [
        ({"CONSUL_HTTP_ADDR": "consul:8501", "CONSUL_HTTP_SSL": "true"}, "https://consul:8501"),
        ({"CONSUL_HTTP_SSL": "1"}, "https://127.0.0.1:8500"),
        (
            {"CONSUL_HTTP_ADDR": "https://consul:8501", "CONSUL_HTTP_SSL": "false"},
            "https://consul:8501",
        ),
        # as Consul's CLI: once TLS is asked for, an http:// address does not turn it off
        ({"CONSUL_HTTP_ADDR": "http://consul:8501", "CONSUL_HTTP_SSL": "T"}, "https://consul:8501"),
        ({"CONSUL_HTTP_ADDR": "consul:8500", "CONSUL_HTTP_SSL": "false"}, "http://consul:8500"),
        ({"CONSUL_HTTP_ADDR": "consul:8500", "CONSUL_HTTP_SSL": ""}, "http://consul:8500"),
    ],
)
def test_consul_http_ssl_decides_the_scheme_like_consuls_cli(
    env: dict[str, str], address: str
) -> None:
    assert settings_from_env(env).address == address


def test_explicit_ssl_and_address_win_over_the_environment() -> None:
    env = {"CONSUL_HTTP_ADDR": "consul:8501", "CONSUL_HTTP_SSL": "true"}
    assert settings_from_env(env, ssl=False).address == "http://consul:8501"
    assert settings_from_env(env, address="other:8500", ssl="no").address == "http://other:8500"
    assert settings_from_env({}, address="other:8501", ssl=True).address == "https://other:8501"


def test_explicit_token_wins_over_a_token_file_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN)
    env = {"CONSUL_HTTP_TOKEN_FILE": str(path)}
    assert settings_from_env(env).token == TOKEN
    assert settings_from_env(env, token="explicit").token == "explicit"
    env = {"CONSUL_HTTP_TOKEN_FILE": str(tmp_path / "missing"), "CONSUL_HTTP_TOKEN": "t"}
    assert settings_from_env(env, token="explicit").token == "explicit"  # the file is not read


@pytest.mark.parametrize(
    ("name", "tags", "settings", "selected"),
    [
        ("web", (), {}, True),
        ("consul", (), {}, False),
        ("consul", (), {"exclude": ()}, True),
        ("web-api", (), {"include": ("web-*",)}, True),
        ("db", (), {"include": ("web-*",)}, False),
        ("web-internal", (), {"include": ("web-*",), "exclude": ("*-internal",)}, False),
        ("web", ("v1", "public"), {"include_tags": ("public",)}, True),
        ("web", ("v1",), {"include_tags": ("public",)}, False),
        ("web", ("canary-7",), {"exclude_tags": ("canary-*",)}, False),
        ("web", ("v1",), {"exclude_tags": ("canary-*",)}, True),
    ],
)
def test_matches(
    name: str, tags: tuple[str, ...], settings: dict[str, object], selected: bool
) -> None:
    assert settings_from_env({}, **settings).matches(name, tags) is selected
