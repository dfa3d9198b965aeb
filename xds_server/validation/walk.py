"""The walk: every field of a message that carries a protoc-gen-validate rule, or a message to
descend into, with its path (``filter_chains[0].filters[0].typed_config.stat_prefix``).

What to check in a message type is planned once per type (:func:`_plan`); only the fields that
are set are walked (``ListFields``, done in C), and a field left unset breaks a rule only when
its default value does, which is decided in the plan. Packed ``Any`` values are unpacked and
walked when their type is known to this process. Rules on single values are in
:mod:`.scalars`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import any_pb2, descriptor, message, message_factory
from google.protobuf import descriptor_pool as pool_module
from validate import validate_pb2

from .scalars import check_value

FieldDescriptor = descriptor.FieldDescriptor

MAX_PROBLEMS = 20  # per resource: enough to fix it, never an unbounded list

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
    # ``message`` rules are a field of FieldRules of their own, not in its ``type`` oneof
    if fp.rules.HasField("message") and fp.rules.message.skip:
        return None
    which = fp.rules.WhichOneof("type")
    if not fp.field.is_repeated and fp.is_message:
        return "value is required" if _required(fp.rules) else None
    problems: list[str] = []
    if fp.field.is_repeated:
        if which == "repeated":
            _check_repeated([], fp, fp.rules.repeated, "", problems, 0)
        elif which == "map":
            _check_map({}, fp, fp.rules.map, "", problems, 0)
    else:
        check_value(fp.field.default_value, fp.rules, fp.field, "", problems)
    return problems[0].removeprefix(": ") if problems else None


def check_message(msg: message.Message, path: str, problems: list[str], depth: int) -> None:
    if len(problems) >= MAX_PROBLEMS:
        return
    if depth > MAX_DEPTH:
        problems.append(f"{path or '.'}: nested deeper than {MAX_DEPTH} levels")
        return
    if isinstance(msg, any_pb2.Any):
        inner = _unpack(msg)
        if inner is not None:
            check_message(inner, path, problems, depth + 1)
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
    if rules is not None and rules.HasField("message") and rules.message.skip:
        return
    if fp.field.is_repeated:
        if which == "repeated" and rules is not None:
            _check_repeated(value, fp, rules.repeated, path, problems, depth)
        elif which == "map" and rules is not None:
            _check_map(value, fp, rules.map, path, problems, depth)
        elif fp.is_map:
            if _map_values_are_messages(fp):
                for key in value:
                    check_message(value[key], f"{path}[{key}]", problems, depth + 1)
        elif fp.is_message:
            for i, item in enumerate(value):
                check_message(item, f"{path}[{i}]", problems, depth + 1)
        return
    if rules is not None:
        check_value(value, rules, fp.field, path, problems)
    if fp.is_message:
        check_message(value, path, problems, depth + 1)


def _required(rules: validate_pb2.FieldRules) -> bool:
    if rules.HasField("message") and rules.message.required:
        return True
    which = rules.WhichOneof("type")
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
            check_value(item, item_rules, fp.field, item_path, problems)
        if fp.is_message:
            check_message(item, item_path, problems, depth + 1)


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
            check_value(key, rules.keys, key_field, item_path + " (key)", problems)
        if rules.HasField("values"):
            value_field = _entry_field(fp.field, "value")
            check_value(value[key], rules.values, value_field, item_path, problems)
        if messages:
            check_message(value[key], item_path, problems, depth + 1)


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
