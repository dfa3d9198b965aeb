"""Consul's filter expressions (go-bexpr) over one service instance: parse, check, evaluate.

The grammar (``or`` < ``and`` < ``not`` in binding strength, parentheses, and the match forms
``Sel == v``, ``Sel != v``, ``Sel is [not] empty``, ``v [not] in Sel``, ``Sel [not] contains v``,
``Sel [not] matches "re"``) is go-bexpr's. Selectors are checked against what the bridge knows of
an instance (:class:`bridge.model.Instance`), with go-bexpr's operator rules per type, so a filter
the bridge could not evaluate faithfully is refused when the entry is read, never guessed at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bridge.model import Instance

from .filter_grammar import And, Expr, FilterError, Match, Not, Or, parse_expression
from .regex import compile_re2, re2_problem

__all__ = ["SELECTORS", "FilterError", "SubsetFilter", "parse_filter"]

FieldType = Literal["string", "integer", "string list", "string map", "check list"]

#: The selectors the bridge can evaluate, with their go-bexpr type. ``Checks.<field>`` is true
#: when any of the instance's checks matches (go-bexpr's rule for a list of structs).
SELECTORS: dict[str, FieldType] = {
    "Node.Node": "string",
    "Node.Datacenter": "string",
    "Node.Meta": "string map",
    "Service.ID": "string",
    "Service.Service": "string",
    "Service.Tags": "string list",
    "Service.Address": "string",
    "Service.Port": "integer",
    "Service.Meta": "string map",
    "Service.Weights.Passing": "integer",
    "Service.Weights.Warning": "integer",
    "Checks": "check list",
    "Checks.CheckID": "string",
    "Checks.Name": "string",
    "Checks.Status": "string",
    "Checks.ServiceID": "string",
    "Checks.Output": "string",
}
_OPERATORS: dict[FieldType, frozenset[str]] = {
    "string": frozenset({"==", "!=", "in", "not in", "matches", "not matches"}),
    "integer": frozenset({"==", "!="}),
    "string list": frozenset({"in", "not in", "is empty", "is not empty"}),
    "string map": frozenset({"in", "not in", "is empty", "is not empty"}),
    "check list": frozenset({"is empty", "is not empty"}),
}
_NEGATED = frozenset({"!=", "not in", "not matches", "is not empty"})
_ROOTS = ("Node", "Service", "Checks")


@dataclass(frozen=True, slots=True)
class SubsetFilter:
    """A parsed and checked filter; :meth:`matches` evaluates it over one instance."""

    text: str
    expr: Expr

    def matches(self, instance: Instance) -> bool:
        return _evaluate(self.expr, instance)


def parse_filter(text: str) -> SubsetFilter:
    """Parse and check ``text``; raises :class:`FilterError` saying what is wrong and where."""
    expr = parse_expression(text)
    _check(expr)
    return SubsetFilter(text, expr)


# ------------------------------------------------------------------ checking
def _selector_type(path: tuple[str, ...]) -> FieldType:
    dotted = ".".join(path)
    if dotted in SELECTORS:
        return SELECTORS[dotted]
    if len(path) == 3 and SELECTORS.get(".".join(path[:2])) == "string map":
        return "string"  # Service.Meta.<key>, Node.Meta.<key>
    if path[0] not in _ROOTS:
        raise FilterError(
            f"unknown selector {dotted!r} (selectors start with Node, Service or Checks)"
        )
    raise FilterError(
        f"selector {dotted!r} is not supported by the bridge (supported: {', '.join(SELECTORS)}, "
        "Service.Meta.<key>, Node.Meta.<key>)"
    )


def _check(expr: Expr) -> None:
    if isinstance(expr, Not):
        _check(expr.operand)
    elif isinstance(expr, And | Or):
        for operand in expr.operands:
            _check(operand)
    else:
        kind = _selector_type(expr.selector)
        if expr.op not in _OPERATORS[kind]:
            allowed = ", ".join(sorted(_OPERATORS[kind]))
            raise FilterError(
                f"operator {expr.op!r} cannot be used with {'.'.join(expr.selector)} "
                f"(a {kind}; allowed: {allowed})"
            )
        if kind == "integer" and expr.value is not None:
            try:
                int(expr.value)
            except ValueError:
                raise FilterError(
                    f"{'.'.join(expr.selector)} is an integer; {expr.value!r} is not one"
                ) from None
        if expr.op in ("matches", "not matches") and expr.value is not None:
            problem = re2_problem(expr.value)
            if problem:
                raise FilterError(f"{'.'.join(expr.selector)} {expr.op}: {problem}")


# ------------------------------------------------------------------ evaluation
def _resolve(path: tuple[str, ...], inst: Instance) -> object:
    """The value a selector names: str, int, tuple, dict, list of check values, or None."""
    dotted = ".".join(path[:2])
    if dotted in ("Service.Meta", "Node.Meta"):
        table = dict(inst.meta if path[0] == "Service" else inst.node_meta)
        return table if len(path) == 2 else table.get(path[2])
    if path[0] == "Checks":
        if len(path) == 1:
            return inst.checks
        attribute = {
            "CheckID": "check_id",
            "Name": "name",
            "Status": "status",
            "ServiceID": "service_id",
            "Output": "output",
        }[path[1]]
        return [getattr(check, attribute) for check in inst.checks]
    return {
        "Node.Node": inst.node,
        "Node.Datacenter": inst.datacenter,
        "Service.ID": inst.id,
        "Service.Service": inst.service,
        "Service.Tags": inst.tags,
        "Service.Address": inst.address,
        "Service.Port": inst.port,
        "Service.Weights": inst.weight_passing if path[-1] == "Passing" else inst.weight_warning,
    }[dotted]


def _positive(op: str) -> str:
    return {"!=": "==", "not in": "in", "not matches": "matches", "is not empty": "is empty"}.get(
        op, op
    )


def _test(op: str, found: object, value: str | None) -> bool:
    """The positive form of ``op`` applied to one found value."""
    if op == "is empty":
        return len(found) == 0 if isinstance(found, tuple | dict | list) else False
    assert value is not None
    if op == "==":
        if isinstance(found, int):
            return found == int(value)
        return found == value
    if op == "in":
        if isinstance(found, dict):
            return value in found
        if isinstance(found, tuple):
            return value in found
        return isinstance(found, str) and value in found
    if op == "matches":
        return isinstance(found, str) and compile_re2(value).search(found) is not None
    raise AssertionError(op)


def _match(expr: Match, inst: Instance) -> bool:
    found = _resolve(expr.selector, inst)
    negated = expr.op in _NEGATED
    op = _positive(expr.op)
    if found is None:  # a missing map key: == / in / matches are false, their negations true
        return negated
    if expr.selector[0] == "Checks" and len(expr.selector) == 2:
        assert isinstance(found, list)  # any check: the operator applies per check
        return any(_test(op, item, expr.value) != negated for item in found)
    return _test(op, found, expr.value) != negated


def _evaluate(expr: Expr, inst: Instance) -> bool:
    if isinstance(expr, Not):
        return not _evaluate(expr.operand, inst)
    if isinstance(expr, And):
        return all(_evaluate(e, inst) for e in expr.operands)
    if isinstance(expr, Or):
        return any(_evaluate(e, inst) for e in expr.operands)
    return _match(expr, inst)
