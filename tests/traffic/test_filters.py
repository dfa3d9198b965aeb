"""Subset filters: Consul's filter language over one instance, as an operator writes it."""

from __future__ import annotations

import re

import pytest

from bridge.model import Instance
from bridge.traffic import FilterError, parse_filter

from .helpers import instance

CANARY = instance(
    "web-7",
    address="10.0.0.7",
    port=8443,
    node="rack2-node",
    datacenter="dc2",
    tags=("canary", "blue"),
    meta={"version": "v2", "app-version": "2.1.0"},
    node_meta={"zone": "us-east-1a", "topology.kubernetes.io/zone": "east-a"},
    status="warning",
    weights={"Passing": 5, "Warning": 2},
)
STABLE = instance("web-1", tags=("stable",), meta={"version": "v1"})


def matches(text: str, inst: Instance) -> bool:
    return parse_filter(text).matches(inst)


@pytest.mark.parametrize(
    "text",
    [
        "Service.Meta.version == v2",  # a bare word value
        'Service.Meta.version == "v2"',
        "Service.Meta.version == `v2`",  # a raw string
        'Service.Meta["app-version"] == "2.1.0"',  # a key that is no identifier
        '"canary" in Service.Tags',
        "canary in Service.Tags",
        "Service.Tags contains canary",
        '"stable" not in Service.Tags',
        "Service.Tags not contains stable",
        "Service.Meta.version != v1",
        "Service.Meta.missing != anything",  # a missing key is "not equal"
        '"missing" not in Service.Meta',
        "version in Service.Meta",  # map membership is about keys
        "Service.Meta is not empty",
        "Service.Tags is not empty",
        'Service.ID matches "^web-[0-9]+$"',
        'Service.ID not matches "^api-"',
        '"eb-" in Service.ID',  # on a string, in is a substring test
        "Service.Service == web",
        "Service.Port == 8443",
        "Service.Port != 80",
        'Service.Address == "10.0.0.7"',
        "Service.Weights.Passing == 5",
        "Service.Weights.Warning == 2",
        'Node.Node == "rack2-node"',
        "Node.Datacenter == dc2",
        'Node.Meta.zone == "us-east-1a"',
        'Node.Meta["topology.kubernetes.io/zone"] == "east-a"',
        "Checks.Status == warning",  # any check
        "Checks.Status != warning",  # any check (the Serf check passes)
        "Checks.Name == http",
        'Checks.CheckID == "service:web-7"',
        'Checks.ServiceID == "web-7"',
        "Checks is not empty",
        "not Service.Meta.version == v1",
        "not not Service.Meta.version == v2",
        "Service.Meta.version == v2 and canary in Service.Tags",
        "Service.Meta.version == v1 or canary in Service.Tags",
        "(Service.Meta.version == v1 or Service.Meta.version == v2) and Service.Port == 8443",
        "( Service.Meta.version == v2 )",
        "not (Service.Meta.version == v1)",
    ],
)
def test_filters_that_select_the_canary(text: str) -> None:
    assert matches(text, CANARY)


@pytest.mark.parametrize(
    "text",
    [
        "Service.Meta.version == v1",
        "Service.Meta.missing == anything",  # a missing key is never equal
        '"missing" in Service.Meta',
        '"canary" not in Service.Tags',
        "Service.Tags is empty",
        "Service.Meta is empty",
        'Service.ID matches "^api-"',
        'Service.Meta.missing matches ".*"',
        "Service.Port == 80",
        "Node.Datacenter == dc1",
        "Checks.Status == critical",
        "Checks is empty",
        "not Checks.Status == warning",  # "no check is warning" is false
        "Service.Meta.version == v2 and stable in Service.Tags",
        "Service.Meta.version == v1 or stable in Service.Tags",
    ],
)
def test_filters_that_leave_the_canary_out(text: str) -> None:
    assert not matches(text, CANARY)


def test_precedence_is_not_then_and_then_or() -> None:
    # "a or b and c" is "a or (b and c)": true through a alone.
    text = "Service.Meta.version == v1 or canary in Service.Tags and Service.Port == 1"
    assert matches(text, STABLE)
    assert not matches(text, CANARY)
    # "not a and b" is "(not a) and b"
    assert matches("not Service.Meta.version == v1 and canary in Service.Tags", CANARY)


def test_escapes_in_double_quoted_strings() -> None:
    tabbed = instance("web-9", meta={"note": "a\tb"})
    assert matches('Service.Meta.note == "a\\tb"', tabbed)
    assert not matches("Service.Meta.note == `a\\tb`", tabbed)  # raw strings keep the backslash


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("Service.Kind == typical", "not supported by the bridge"),
        ('Node.Address == "10.0.0.1"', "not supported by the bridge"),
        ("Service.ID == web-7", "unexpected input"),  # a bare word stops at the dash
        ("Service.Connect.Native == true", "not supported by the bridge"),
        ("Foo.Bar == 1", "unknown selector"),
        ("Service.Tags == canary", "operator '==' cannot be used"),
        ("Service.Meta.version is empty", "operator 'is empty' cannot be used"),
        ("Service.Port contains 8", "operator 'in' cannot be used"),
        ("Checks == x", "operator '==' cannot be used"),
        ("Service.Port == eighty", "is an integer"),
        ('Service.ID matches "(?=web)"', "look-around"),
        ('Service.ID matches "(unclosed"', "invalid regular expression"),
        ("Service.ID ==", "expected a selector"),
        ("Service.ID", "expected an operator"),
        ('"x" == Service.ID', "followed by 'in'"),
        ("Service.ID == x and", "expected a selector"),
        ("(Service.ID == x", "expected ')'"),
        ('Service.ID == "open', "unterminated string"),
        ('Service.ID == "bad \\q escape"', "invalid escape"),
        ("Service.ID == 1.2.3", "expected a selector"),  # versions must be quoted
        ("Service.ID == x )", "unexpected input"),
        ("", "expected a selector"),
    ],
)
def test_filters_the_bridge_refuses_say_why(text: str, words: str) -> None:
    with pytest.raises(FilterError, match=re.escape(words)):
        parse_filter(text)


def test_bare_words_that_start_like_keywords_are_values() -> None:
    tagged = instance("web-3", tags=("notable", "inside", "order"))
    assert matches("notable in Service.Tags and inside in Service.Tags", tagged)
    assert matches("Service.Tags contains order", tagged)
    assert not matches("orange in Service.Tags or andy in Service.Tags", tagged)
