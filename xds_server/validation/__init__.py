"""Check a resource against the validation rules carried in Envoy's own protos, before any node
sees it.

Envoy's API protos annotate their fields with protoc-gen-validate (PGV) rules
(``duration.gt = {}`` on ``Cluster.connect_timeout``, ``min_len: 1`` on names, ...).
Envoy rejects a whole xDS response when one resource breaks one of them, so the bridge evaluates
the same rules first and keeps the offending resource out. ``xds-protos`` ships the annotations
(the ``validate`` package); PyPI's ``protoc-gen-validate`` evaluator does not run on protobuf 7
(it reads ``FieldDescriptor.label``, which protobuf 7 removed), so this package reads the rules
itself. It implements the rules Envoy's protos use; rules it does not know are not guessed at.

Modules: :mod:`.walk` (which fields carry rules, and the walk through a message, packed ``Any``
included), :mod:`.scalars` (the rules on single values), :mod:`.domains` (the one rule PGV
cannot express that Envoy enforces on every route configuration: unique domains).
"""

from __future__ import annotations

from google.protobuf import message

from .domains import DroppedHost, check_route_domains
from .walk import MAX_DEPTH, MAX_PROBLEMS, check_message


class InvalidResource(ValueError):
    """A resource breaks one or more rules; ``problems`` names each field and rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def check(msg: message.Message) -> list[str]:
    """Every rule ``msg`` breaks, as ``path: what is wrong`` (empty when it is valid)."""
    problems: list[str] = []
    check_message(msg, "", problems, depth=0)
    return problems[:MAX_PROBLEMS]


def validate(msg: message.Message) -> None:
    """Raise :class:`InvalidResource` when ``msg`` breaks a rule."""
    problems = check(msg)
    if problems:
        raise InvalidResource(problems)


__all__ = [
    "MAX_DEPTH",
    "MAX_PROBLEMS",
    "DroppedHost",
    "InvalidResource",
    "check",
    "check_route_domains",
    "validate",
]
