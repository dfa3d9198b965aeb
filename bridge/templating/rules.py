"""Which template set a node gets: rules matching node id, cluster or metadata, first match wins.

Patterns are globs (``edge-*``) or, prefixed ``re:``, regular expressions that must match fully.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .context import NodeContext

_MATCH_KEYS = ("node_id", "node_cluster")


@dataclass(frozen=True, slots=True)
class Pattern:
    """A glob (``edge-*``) or, prefixed ``re:``, a regular expression that must match fully."""

    text: str
    regex: re.Pattern[str]

    @classmethod
    def parse(cls, text: str) -> Pattern:
        if text.startswith("re:"):
            try:
                return cls(text, re.compile(text[3:]))
            except re.error as exc:
                raise ValueError(f"bad regular expression {text[3:]!r}: {exc}") from None
        return cls(text, re.compile(fnmatch.translate(text)))

    def matches(self, value: str) -> bool:
        return self.regex.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class Rule:
    """All conditions must hold (node_id, node_cluster, metadata.<key>); → ``template_set``."""

    conditions: tuple[tuple[str, Pattern], ...]
    template_set: str

    def matches(self, node: NodeContext) -> bool:
        for key, pattern in self.conditions:
            value = _node_value(node, key)
            if value is None or not pattern.matches(value):
                return False
        return True


def _node_value(node: NodeContext, key: str) -> str | None:
    """The value a condition tests; None (matched by no pattern) when the metadata key is absent."""
    if key == "node_id":
        return node.id
    if key == "node_cluster":
        return node.cluster
    value: Any = node.metadata.get(key[len("metadata.") :])
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # Struct numbers are doubles: metadata 10001 matches "10001"
    return value if isinstance(value, str) else json.dumps(value)


def parse_rules(raw: Sequence[Mapping[str, Any]]) -> tuple[Rule, ...]:
    """Config ``templates.rules`` → rules; ValueError names the rule and the problem."""
    rules = []
    for index, item in enumerate(raw):
        match = item.get("match")
        template_set = item.get("template_set")
        if not isinstance(match, Mapping) or not match or not template_set:
            raise ValueError(f"rule {index}: needs a non-empty match and a template_set")
        conditions = []
        for key, pattern in match.items():
            if key not in _MATCH_KEYS and not (
                str(key).startswith("metadata.") and len(str(key)) > len("metadata.")
            ):
                raise ValueError(
                    f"rule {index}: cannot match on {key!r}; "
                    "use node_id, node_cluster or metadata.<key>"
                )
            try:
                conditions.append((str(key), Pattern.parse(str(pattern))))
            except ValueError as exc:
                raise ValueError(f"rule {index}: {key}: {exc}") from None
        rules.append(Rule(tuple(conditions), str(template_set)))
    return tuple(rules)


def select_set(rules: Sequence[Rule], node: NodeContext, default_set: str) -> str:
    """The template set of ``node``: the first matching rule's, else ``default_set``."""
    for rule in rules:
        if rule.matches(node):
            return rule.template_set
    return default_set
