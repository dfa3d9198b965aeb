"""The scalar rules of protoc-gen-validate: numbers, strings, bytes, enums, durations, ``Any``
type lists, as Envoy's protos use them. A rule this module does not know is not guessed at.

Each check appends ``path: what is wrong, got <value>`` to ``problems``.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from functools import cache
from typing import Any, cast

from google.protobuf import any_pb2, descriptor, duration_pb2, message
from validate import validate_pb2

FieldDescriptor = descriptor.FieldDescriptor

_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_NUMERIC = {
    "float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64",
}  # fmt: skip


def check_value(
    value: Any,
    rules: validate_pb2.FieldRules,
    field: FieldDescriptor,
    path: str,
    problems: list[str],
) -> None:
    which = rules.WhichOneof("type")
    if which is None:
        return
    if isinstance(value, message.Message) and value.DESCRIPTOR.full_name in _WRAPPERS:
        value = cast(Any, value).value  # PGV applies scalar rules to a wrapper's value
    if which in _NUMERIC:
        _check_number(value, getattr(rules, which), path, problems)
    elif which == "string":
        _check_string(value, rules.string, path, problems)
    elif which == "bytes":
        _check_bytes(value, rules.bytes, path, problems)
    elif which == "enum":
        _check_enum(value, rules.enum, field, path, problems)
    elif which == "bool":
        if rules.bool.HasField("const") and value != rules.bool.const:
            problems.append(f"{path}: must be {rules.bool.const}")
    elif which == "duration":
        _check_duration(value, rules.duration, path, problems)
    elif which == "any":
        _check_any(value, rules.any, path, problems)


def _bounds(r: Any, convert: Callable[[Any], float] | None = None) -> dict[str, float]:
    return {
        k: convert(getattr(r, k)) if convert else getattr(r, k)
        for k in ("gt", "gte", "lt", "lte")
        if r.HasField(k)
    }


_WORDS = {"gt": "greater than", "gte": "at least", "lt": "less than", "lte": "at most"}


def _range_problem(
    value: float, bounds: dict[str, float], show: Callable[[float], str]
) -> str | None:
    """PGV's range semantics: a lower bound (gt/gte) below an upper one (lt/lte) asks for a value
    inside the range; a lower bound above the upper one asks for a value outside it."""
    low = next(((k, bounds[k]) for k in ("gt", "gte") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("lt", "lte") if k in bounds), None)
    above = low is None or (value > low[1] if low[0] == "gt" else value >= low[1])
    below = high is None or (value < high[1] if high[0] == "lt" else value <= high[1])
    if low is not None and high is not None and low[1] > high[1]:
        if above or below:
            return None
        return f"must be outside {show(high[1])} .. {show(low[1])}"
    if not above and low is not None:
        return f"must be {_WORDS[low[0]]} {show(low[1])}"
    if not below and high is not None:
        return f"must be {_WORDS[high[0]]} {show(high[1])}"
    return None


def _check_number(value: float, r: Any, path: str, problems: list[str]) -> None:
    if getattr(r, "ignore_empty", False) and value == 0:
        return
    if isinstance(value, float) and not math.isfinite(value):
        problems.append(f"{path}: must be a finite number, got {value}")
        return
    if r.HasField("const") and value != r.const:
        problems.append(f"{path}: must equal {r.const}, got {value}")
    if r.__getattribute__("in") and value not in r.__getattribute__("in"):
        problems.append(f"{path}: must be one of {list(r.__getattribute__('in'))}, got {value}")
    if value in r.not_in:
        problems.append(f"{path}: must not be {value}")
    problem = _range_problem(value, _bounds(r), str)
    if problem:
        problems.append(f"{path}: {problem}, got {value}")


_HEADER_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
_HEADER_VALUE = re.compile(r"^[^\x00-\x08\x0A-\x1F\x7F]*$")
_LOOSE_HEADER = re.compile(r"^[^\x00\n\r]*$")
_HOSTNAME_LABEL = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?$")


@cache
def _pattern(text: str) -> re.Pattern[str] | None:
    try:
        return re.compile(text)
    except re.error:  # RE2 syntax Python lacks: not guessed at
        return None


def _check_string(value: str, r: validate_pb2.StringRules, path: str, problems: list[str]) -> None:
    set_rules = r.ListFields()  # only the rules this field has cost anything
    if not set_rules or (r.ignore_empty and not value):
        return
    n = len(value)
    for rule, expected in set_rules:
        name = rule.name
        if name == "min_len":
            failed, what = n < expected, f"must be at least {expected} character(s)"
        elif name == "max_len":
            failed, what = n > expected, f"must be at most {expected} characters"
        elif name == "len":
            failed, what = n != expected, f"must be {expected} characters long"
        elif name == "min_bytes":
            failed, what = len(value.encode()) < expected, f"must be at least {expected} bytes"
        elif name == "max_bytes":
            failed, what = len(value.encode()) > expected, f"must be at most {expected} bytes"
        elif name == "const":
            failed, what = value != expected, f"must equal {expected!r}"
        elif name == "prefix":
            failed, what = not value.startswith(expected), f"must start with {expected!r}"
        elif name == "suffix":
            failed, what = not value.endswith(expected), f"must end with {expected!r}"
        elif name == "contains":
            failed, what = expected not in value, f"must contain {expected!r}"
        elif name == "not_contains":
            failed, what = expected in value, f"must not contain {expected!r}"
        elif name == "in":
            failed, what = value not in expected, f"must be one of {list(expected)}"
        elif name == "not_in":
            failed, what = value in expected, "is not allowed"
        elif name == "pattern":
            pattern = _pattern(expected)
            failed = pattern is not None and not pattern.search(value)
            what = f"must match {expected!r}"
        elif name in _WELL_KNOWN:
            failed, what = not _well_known(value, r, name), f"must be a valid {name}"
        else:  # strict, ignore_empty: modifiers
            continue
        if failed:
            shown = repr(value) if n <= 80 else repr(value[:77] + "...")
            problems.append(f"{path}: {what}, got {shown}")


_WELL_KNOWN = {
    "email", "hostname", "ip", "ipv4", "ipv6", "uri", "uri_ref", "address", "uuid",
    "well_known_regex",
}  # fmt: skip


def _well_known(value: str, r: validate_pb2.StringRules, kind: str) -> bool:
    if kind == "well_known_regex":
        strict = r.strict if r.HasField("strict") else True
        if r.well_known_regex == validate_pb2.HTTP_HEADER_NAME:
            return bool((_HEADER_NAME if strict else _LOOSE_HEADER).match(value))
        if r.well_known_regex == validate_pb2.HTTP_HEADER_VALUE:
            return bool((_HEADER_VALUE if strict else _LOOSE_HEADER).match(value))
        return True
    if not getattr(r, kind):
        return True
    if kind in ("ip", "ipv4", "ipv6"):
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            return False
        return kind == "ip" or (addr.version == 4) == (kind == "ipv4")
    if kind in ("hostname", "address"):
        if kind == "address":
            try:
                ipaddress.ip_address(value)
                return True
            except ValueError:
                pass
        host = value[:-1] if value.endswith(".") else value
        return 0 < len(host) <= 253 and all(_HOSTNAME_LABEL.match(p) for p in host.split("."))
    return True  # email, uri, uuid: not used by the Envoy resources the bridge builds


def _check_bytes(value: bytes, r: validate_pb2.BytesRules, path: str, problems: list[str]) -> None:
    if r.ignore_empty and not value:
        return
    if r.HasField("min_len") and len(value) < r.min_len:
        problems.append(f"{path}: must be at least {r.min_len} bytes")
    if r.HasField("max_len") and len(value) > r.max_len:
        problems.append(f"{path}: must be at most {r.max_len} bytes")


def _check_enum(
    value: int,
    r: validate_pb2.EnumRules,
    field: FieldDescriptor,
    path: str,
    problems: list[str],
) -> None:
    enum = field.enum_type
    if r.defined_only and enum is not None and value not in enum.values_by_number:
        problems.append(f"{path}: {value} is not a defined {enum.name} value")
    if r.HasField("const") and value != r.const:
        problems.append(f"{path}: must equal {r.const}, got {value}")
    allowed = r.__getattribute__("in")
    if allowed and value not in allowed:
        problems.append(f"{path}: must be one of {list(allowed)}, got {value}")
    if value in r.not_in:
        problems.append(f"{path}: must not be {value}")


def _seconds(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


def _show_seconds(s: float) -> str:
    return f"{s:g}s"


def _check_duration(
    value: duration_pb2.Duration, r: validate_pb2.DurationRules, path: str, problems: list[str]
) -> None:
    if value.nanos and (value.seconds > 0 > value.nanos or value.seconds < 0 < value.nanos):
        problems.append(f"{path}: seconds and nanos must have the same sign")
        return
    if abs(value.nanos) >= 1_000_000_000 or abs(value.seconds) > 315_576_000_000:
        problems.append(f"{path}: duration out of range")
        return
    s = _seconds(value)
    if r.HasField("const") and s != _seconds(r.const):
        problems.append(f"{path}: must equal {_show_seconds(_seconds(r.const))}")

    problem = _range_problem(s, _bounds(r, _seconds), _show_seconds)
    if problem:
        problems.append(f"{path}: {problem}, got {_show_seconds(s)}")


def _check_any(
    value: any_pb2.Any, r: validate_pb2.AnyRules, path: str, problems: list[str]
) -> None:
    allowed = r.__getattribute__("in")
    if allowed and value.type_url not in allowed:
        problems.append(f"{path}: type {value.type_url!r} is not allowed here")
    if value.type_url in r.not_in:
        problems.append(f"{path}: type {value.type_url!r} is not allowed here")
