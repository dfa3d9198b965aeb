"""Envoy's ``envoy.type.matcher.v3`` matchers applied to a node (CSDS ``node_matchers``).

A ``NodeMatcher`` selects a node when its ``node_id`` StringMatcher (if set) matches the node id
and every ``node_metadatas`` StructMatcher matches the node's metadata. Regular expressions use
Python's ``re`` (full match), close to RE2 for the patterns node ids use. A ``custom`` string
matcher (an extension) matches nothing.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

Matcher = Any  # xds-protos ships no stubs


def node_matches(matcher: Matcher, node: base_pb2.Node) -> bool:
    """Whether a ``NodeMatcher`` selects ``node``."""
    if matcher.HasField("node_id") and not string_matches(matcher.node_id, str(node.id)):
        return False
    return all(struct_matches(m, node.metadata) for m in matcher.node_metadatas)


def string_matches(matcher: Matcher, text: str) -> bool:
    """``StringMatcher``: exact, prefix, suffix, contains or safe_regex, with ignore_case."""
    kind = matcher.WhichOneof("match_pattern")
    if kind == "safe_regex":
        flags = re.IGNORECASE if matcher.ignore_case else 0
        return _regex(str(matcher.safe_regex.regex), flags).fullmatch(text) is not None
    if kind not in ("exact", "prefix", "suffix", "contains"):
        return False
    pattern = str(getattr(matcher, kind))
    if matcher.ignore_case:
        pattern, text = pattern.lower(), text.lower()
    if kind == "exact":
        return text == pattern
    if kind == "prefix":
        return text.startswith(pattern)
    if kind == "suffix":
        return text.endswith(pattern)
    return pattern in text


@lru_cache(maxsize=256)
def _regex(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def struct_matches(matcher: Matcher, struct: struct_pb2.Struct) -> bool:
    """``StructMatcher``: the value at ``path`` (keys into nested structs) matches ``value``."""
    value: struct_pb2.Value | None = None
    fields = struct.fields
    for depth, segment in enumerate(matcher.path):
        key = str(segment.key)
        if key not in fields:
            return _absent_matches(matcher.value)
        value = fields[key]
        if depth < len(matcher.path) - 1:
            if value.WhichOneof("kind") != "struct_value":
                return _absent_matches(matcher.value)
            fields = value.struct_value.fields
    if value is None:
        return False
    return value_matches(matcher.value, value)


def _absent_matches(matcher: Matcher) -> bool:
    kind = matcher.WhichOneof("match_pattern")
    return kind == "present_match" and not matcher.present_match


def value_matches(matcher: Matcher, value: struct_pb2.Value) -> bool:
    """``ValueMatcher`` against a ``google.protobuf.Value``."""
    kind = matcher.WhichOneof("match_pattern")
    have = value.WhichOneof("kind")
    if kind == "null_match":
        return have == "null_value"
    if kind == "present_match":
        return bool(matcher.present_match)
    if kind == "bool_match":
        return have == "bool_value" and value.bool_value == matcher.bool_match
    if kind == "string_match":
        return have == "string_value" and string_matches(matcher.string_match, value.string_value)
    if kind == "double_match":
        return have == "number_value" and _double_matches(matcher.double_match, value.number_value)
    if kind == "list_match":
        return have == "list_value" and any(
            value_matches(matcher.list_match.one_of, item) for item in value.list_value.values
        )
    if kind == "or_match":
        return any(value_matches(m, value) for m in matcher.or_match.value_matchers)
    return False


def _double_matches(matcher: Matcher, number: float) -> bool:
    if matcher.WhichOneof("match_pattern") == "exact":
        return bool(number == matcher.exact)
    return bool(matcher.range.start <= number < matcher.range.end)
