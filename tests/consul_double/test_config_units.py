"""Units of the config entry codec: Go formatting, weak decoding, the filter grammar."""

from __future__ import annotations

import pytest

from consul_double.config_schema import (
    DecodeError,
    decode_entry,
    encode_entry,
    format_go_duration,
    json_float32,
)
from consul_double.filter_syntax import filter_syntax_error


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (5_000_000_000, "5s"),
        (1_500_000_000, "1.5s"),
        (250_000_000, "250ms"),
        (90_000_000_000, "1m30s"),
        (3_600_000_000_000, "1h0m0s"),
        (1_500, "1.5µs"),
    ],
)
def test_go_duration_strings(ns: int, text: str) -> None:
    assert format_go_duration(ns) == text


def test_float32_weights_print_like_go() -> None:
    assert json_float32(90.0) == 90
    assert json_float32(33.33000183105469) == 33.33


def test_weak_decoding_and_key_spellings() -> None:
    kind, body = decode_entry(
        {
            "kind": "service-router",
            "name": "web",
            "routes": [
                {
                    "match": {"http": {"path_prefix": "/"}},
                    "destination": {"num_retries": "3", "request_timeout": 2e9},
                }
            ],
        }
    )
    assert kind == "service-router"
    destination = body["Routes"][0]["Destination"]
    assert destination == {"NumRetries": 3, "RequestTimeout": 2_000_000_000}
    encoded = encode_entry(kind, {**body, "Kind": kind})
    assert encoded["Routes"][0]["Destination"]["RequestTimeout"] == "2s"


def test_decode_errors() -> None:
    with pytest.raises(DecodeError, match="Kind value in payload is not a string"):
        decode_entry({"Kind": 1})
    with pytest.raises(DecodeError, match=r"expected type 'uint32'"):
        decode_entry({"Kind": "service-router", "Routes": [{"Destination": {"NumRetries": {}}}]})
    with pytest.raises(DecodeError, match="namespaces are a consul enterprise feature"):
        decode_entry({"Kind": "service-defaults", "Name": "x", "Namespace": "ns"})
    with pytest.raises(DecodeError, match=r'invalid config key "Splits\[0\].Wieght"'):
        decode_entry({"Kind": "service-splitter", "Splits": [{"Wieght": 1}]})


@pytest.mark.parametrize(
    "expression",
    [
        "Service.Meta.version == v1",
        '"canary" in Service.Tags',
        '"canary" not in Service.Tags and Service.Meta.env != "prod"',
        'Node.Meta["topology.kubernetes.io/zone"] == "us-east-1a"',
        "not Checks.Status == critical",
        'Service.ID matches "^web-[0-9]+$" or (Service.Tags contains v2)',
        "Service.Meta is not empty",
    ],
)
def test_valid_filters(expression: str) -> None:
    assert filter_syntax_error(expression) == ""


@pytest.mark.parametrize(
    "expression",
    [
        "Service.Meta.version ==",
        "(Service.ID == a",
        "Service.Tags contains",
        "== v1",
        'Service.ID = "x"',
    ],
)
def test_invalid_filters(expression: str) -> None:
    assert filter_syntax_error(expression).startswith("1:")
