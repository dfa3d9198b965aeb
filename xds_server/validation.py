"""Check a resource against the validation rules carried in Envoy's own protos, before any node
sees it.

Envoy's API protos annotate their fields with protoc-gen-validate (PGV) rules
(``duration.gt = {}`` on ``Cluster.connect_timeout``, ``min_len: 1`` on names, ...).
Envoy rejects a whole xDS response when one resource breaks one of them, so the bridge evaluates
the same rules first and keeps the offending resource out. ``xds-protos`` ships the annotations
(the ``validate`` package); PyPI's ``protoc-gen-validate`` evaluator does not run on protobuf 7
(it reads ``FieldDescriptor.label``, which protobuf 7 removed), so this module reads the rules
itself. It implements the rules Envoy's protos use; rules it does not know are not guessed at.

Packed ``Any`` fields (``typed_config``) are unpacked and checked too when their type is known.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2, descriptor, duration_pb2, message, message_factory
from google.protobuf import descriptor_pool as pool_module
from validate import validate_pb2

FieldDescriptor = descriptor.FieldDescriptor

MAX_PROBLEMS = 20  # per resource: enough to fix it, never an unbounded list


class InvalidResource(ValueError):
    """A resource breaks one or more rules; ``problems`` names each field and rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check(msg: message.Message) -> list[str]:
    """Every rule ``msg`` breaks, as ``path: what is wrong`` (empty when it is valid)."""
    problems: list[str] = []
    _check_message(msg, "", problems, depth=0)
    return problems[:MAX_PROBLEMS]


def validate(msg: message.Message) -> None:
    """Raise :class:`InvalidResource` when ``msg`` breaks a rule."""
    problems = check(msg)
    if problems:
        raise InvalidResource(problems)


def check_route_domains(config: route_pb2.RouteConfiguration) -> dict[str, str]:
    """Virtual hosts whose domains collide with an earlier virtual host's: {name: problem}.

    Envoy refuses a whole route configuration in which two virtual hosts (or one, twice) claim
    the same domain ("Only unique values for domains are permitted"); it compares domains
    lower-cased, so ``Web`` and ``web`` collide. The first claimant keeps the domain.
    """
    owner: dict[str, str] = {}
    collisions: dict[str, str] = {}
    for vhost in config.virtual_hosts:
        claimed: set[str] = set()
        for domain in vhost.domains:
            key = domain.lower()
            first = owner.get(key)
            if first is not None and vhost.name not in collisions:
                collisions[vhost.name] = (
                    f"domain {domain.lower()!r} is also claimed by virtual host {first!r}"
                )
            elif key in claimed and vhost.name not in collisions:
                collisions[vhost.name] = f"domain {domain.lower()!r} is listed twice"
            claimed.add(key)
        if vhost.name not in collisions:
            for key in claimed:
                owner[key] = vhost.name
    return collisions


# --------------------------------------------------------------------------- the walk

MAX_DEPTH = 64  # Envoy's own limit on nesting is far below protobuf's 100


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    field: FieldDescriptor
    rules: validate_pb2.FieldRules | None
    is_message: bool
    is_map: bool


@dataclass(frozen=True, slots=True)
class _MessagePlan:
    by_number: dict[int, _FieldPlan]  # fields with rules or sub-messages
    unset_problems: tuple[tuple[int, str], ...]  # (field number, problem) when left unset
    required_oneofs: tuple[str, ...]


@cache
def _plan(desc: descriptor.Descriptor) -> _MessagePlan | None:
    """What to check in messages of this type, computed once per type; None: nothing.

    Only set fields are walked (``ListFields``, done in C); a field left unset breaks a rule only
    when its default value does, which is decided here once.
    """
    opts = desc.GetOptions()
    if opts.Extensions[validate_pb2.disabled] or opts.Extensions[validate_pb2.ignored]:
        return None
    by_number: dict[int, _FieldPlan] = {}
    unset: list[tuple[int, str]] = []
    for field in desc.fields:
        fopts = field.GetOptions()
        rules = (
            fopts.Extensions[validate_pb2.rules] if fopts.HasExtension(validate_pb2.rules) else None
        )
        sub = field.message_type
        is_map = sub is not None and bool(sub.GetOptions().map_entry)
        if rules is None and sub is None:
            continue
        plan = _FieldPlan(field, rules, sub is not None, is_map)
        by_number[field.number] = plan
        # a member of a oneof is checked only when it is the one set
        if rules is not None and field.containing_oneof is None:
            problem = _unset_problem(plan)
            if problem:
                unset.append((field.number, problem))
    oneofs = tuple(o.name for o in desc.oneofs if o.GetOptions().Extensions[validate_pb2.required])
    return _MessagePlan(by_number, tuple(unset), oneofs)


def _unset_problem(fp: _FieldPlan) -> str | None:
    """What is wrong with ``fp``'s field when it is left unset (its default), if anything."""
    assert fp.rules is not None
    which = fp.rules.WhichOneof("type")
    if which == "message" and fp.rules.message.skip:
        return None
    if not fp.field.is_repeated and fp.is_message:
        return "value is required" if _required(fp.rules) else None
    problems: list[str] = []
    if fp.field.is_repeated:
        if which == "repeated":
            _check_repeated([], fp, fp.rules.repeated, "", problems, 0)
        elif which == "map":
            _check_map({}, fp, fp.rules.map, "", problems, 0)
    else:
        _check_value(fp.field.default_value, fp.rules, fp.field, "", problems)
    return problems[0].removeprefix(": ") if problems else None


def _check_message(msg: message.Message, path: str, problems: list[str], depth: int) -> None:
    if len(problems) >= MAX_PROBLEMS:
        return
    if depth > MAX_DEPTH:
        problems.append(f"{path or '.'}: nested deeper than {MAX_DEPTH} levels")
        return
    if isinstance(msg, any_pb2.Any):
        inner = _unpack(msg)
        if inner is not None:
            _check_message(inner, path, problems, depth + 1)
        return
    plan = _plan(msg.DESCRIPTOR)
    if plan is None:
        return
    for name in plan.required_oneofs:
        if msg.WhichOneof(name) is None:
            problems.append(f"{_join(path, name)}: one of its fields is required")
    present = msg.ListFields()
    if plan.unset_problems:
        numbers = {field.number for field, _ in present}
        for number, problem in plan.unset_problems:
            if number not in numbers:
                name = plan.by_number[number].field.name
                problems.append(f"{_join(path, name)}: {problem}")
    for field, value in present:
        fp = plan.by_number.get(field.number)
        if fp is not None:
            _check_field(value, fp, _join(path, field.name), problems, depth)


def _check_field(value: Any, fp: _FieldPlan, path: str, problems: list[str], depth: int) -> None:
    """A field that is set (present, non-default or non-empty)."""
    rules = fp.rules
    which = rules.WhichOneof("type") if rules is not None else None
    if which == "message" and rules is not None and rules.message.skip:
        return
    if fp.field.is_repeated:
        if which == "repeated" and rules is not None:
            _check_repeated(value, fp, rules.repeated, path, problems, depth)
        elif which == "map" and rules is not None:
            _check_map(value, fp, rules.map, path, problems, depth)
        elif fp.is_map:
            if _map_values_are_messages(fp):
                for key in value:
                    _check_message(value[key], f"{path}[{key}]", problems, depth + 1)
        elif fp.is_message:
            for i, item in enumerate(value):
                _check_message(item, f"{path}[{i}]", problems, depth + 1)
        return
    if rules is not None:
        _check_value(value, rules, fp.field, path, problems)
    if fp.is_message:
        _check_message(value, path, problems, depth + 1)


def _required(rules: validate_pb2.FieldRules) -> bool:
    which = rules.WhichOneof("type")
    if which == "message":
        return bool(rules.message.required)
    if which in ("duration", "timestamp", "any"):
        return bool(getattr(rules, which).required)
    return False


def _map_values_are_messages(fp: _FieldPlan) -> bool:
    return _entry_field(fp.field, "value").message_type is not None


def _entry_field(field: FieldDescriptor, name: str) -> FieldDescriptor:
    """The ``key`` or ``value`` field of a map field's entry type."""
    entry = field.message_type
    assert entry is not None, field.full_name
    return entry.fields_by_name[name]


def _check_repeated(
    value: Any,
    fp: _FieldPlan,
    rules: validate_pb2.RepeatedRules,
    path: str,
    problems: list[str],
    depth: int,
) -> None:
    n = len(value)
    if rules.ignore_empty and n == 0:
        return
    if rules.HasField("min_items") and n < rules.min_items:
        problems.append(f"{path}: at least {rules.min_items} item(s) required, got {n}")
    if rules.HasField("max_items") and n > rules.max_items:
        problems.append(f"{path}: at most {rules.max_items} item(s) allowed, got {n}")
    if rules.unique and not fp.is_message:
        seen: set[Any] = set()
        for item in value:
            if item in seen:
                problems.append(f"{path}: items must be unique ({item!r} repeats)")
                break
            seen.add(item)
    item_rules = rules.items if rules.HasField("items") else None
    for i, item in enumerate(value):
        item_path = f"{path}[{i}]"
        if item_rules is not None:
            _check_value(item, item_rules, fp.field, item_path, problems)
        if fp.is_message:
            _check_message(item, item_path, problems, depth + 1)


def _check_map(
    value: Any,
    fp: _FieldPlan,
    rules: validate_pb2.MapRules,
    path: str,
    problems: list[str],
    depth: int,
) -> None:
    n = len(value)
    if rules.ignore_empty and n == 0:
        return
    if rules.HasField("min_pairs") and n < rules.min_pairs:
        problems.append(f"{path}: at least {rules.min_pairs} entries required, got {n}")
    if rules.HasField("max_pairs") and n > rules.max_pairs:
        problems.append(f"{path}: at most {rules.max_pairs} entries allowed, got {n}")
    messages = _map_values_are_messages(fp)
    for key in value:
        item_path = f"{path}[{key}]"
        if rules.HasField("keys"):
            key_field = _entry_field(fp.field, "key")
            _check_value(key, rules.keys, key_field, item_path + " (key)", problems)
        if rules.HasField("values"):
            value_field = _entry_field(fp.field, "value")
            _check_value(value[key], rules.values, value_field, item_path, problems)
        if messages:
            _check_message(value[key], item_path, problems, depth + 1)


# --------------------------------------------------------------------------- scalar rules

_WRAPPERS = {
    f"google.protobuf.{name}Value"
    for name in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}
_NUMERIC = {
    "float", "double", "int32", "int64", "uint32", "uint64", "sint32", "sint64",
    "fixed32", "fixed64", "sfixed32", "sfixed64",
}  # fmt: skip


def _check_value(
    value: Any,
    rules: validate_pb2.FieldRules,
    field: FieldDescriptor,
    path: str,
    problems: list[str],
) -> None:
    which = rules.WhichOneof("type")
    if which is None or which == "message":
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


def _unpack(value: any_pb2.Any) -> message.Message | None:
    """The message packed in ``value``, or None when its type is not known to this process."""
    name = value.type_url.rpartition("/")[2]
    try:
        desc = pool_module.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    inner = message_factory.GetMessageClass(desc)()
    try:
        inner.ParseFromString(value.value)
    except message.DecodeError:
        return None
    return inner


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name
