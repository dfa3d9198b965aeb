"""Pure helpers of the double: Go durations and the ``?filter`` subset."""

from __future__ import annotations

import pytest

from consul_double.durations import parse_go_duration
from consul_double.filters import FilterError, compile_filter


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10.0), ("100ms", 0.1), ("5m", 300.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("0", 0.0)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "10", "s", "1x", "1m 30s", "ms10"])
def test_invalid_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


ENTRY = {
    "Node": {"Node": "node1", "Meta": {"rack": "r1"}},
    "Service": {"ID": "web-1", "Tags": ["v1", "canary"], "Port": 8080, "EnableTagOverride": False},
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ('Service.ID == "web-1"', True),
        ("Service.ID != web-1", False),
        ('"canary" in Service.Tags', True),
        ('"prod" not in Service.Tags', True),
        ("Service.Port == 8080 and Node.Meta.rack == r1", True),
        ('Service.ID == "x" or not (Node.Node == "node2")', True),
        ("Service.Tags is not empty and Node.Meta.zone is empty", True),
        ('Service.ID matches "^web-[0-9]+$"', True),
        ("Service.EnableTagOverride == false", True),
    ],
)
def test_filter_expressions(expression: str, expected: bool) -> None:
    assert compile_filter(expression)(ENTRY) is expected


@pytest.mark.parametrize(
    "expression", ["", "Service.ID ==", 'Service.ID < "a"', "(Service.ID == a", 'x matches "("']
)
def test_unsupported_or_invalid_filters_are_errors(expression: str) -> None:
    with pytest.raises(FilterError):
        compile_filter(expression)


def test_filters_do_not_step_through_lists() -> None:
    predicate = compile_filter('Checks.Status == "passing"')
    with pytest.raises(FilterError, match="list"):
        predicate({"Checks": [{"Status": "passing"}]})
