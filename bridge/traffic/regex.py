"""Regular expressions written for RE2 (Consul filters, Envoy ``safe_regex``), checked in Python.

Envoy compiles route regexes with RE2 and rejects the whole route configuration when one does not
compile; Consul evaluates ``matches`` with Go's RE2-compatible ``regexp``. Python's ``re`` accepts
a superset of RE2 in some places (look-around, back-references) and lacks a few RE2 escapes, so a
pattern is accepted here only when it uses neither. What remains unchecked is RE2's program-size
limit (Envoy refuses very large regexes); keep route regexes short.
"""

from __future__ import annotations

import re
from functools import cache

_NOT_RE2 = (
    (re.compile(r"\(\?<?[=!]"), "look-around assertions"),
    (re.compile(r"\(\?>"), "atomic groups"),
    (re.compile(r"\(\?\("), "conditional groups"),
    (re.compile(r"\(\?P="), "back-references"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]"), "back-references"),
    (re.compile(r"[*+?}]\+"), "possessive quantifiers"),
    (re.compile(r"(?<!\\)(?:\\\\)*\\[pP]"), "Unicode class escapes (\\p)"),
)


def re2_problem(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable RE2 regular expression, or None when it is."""
    for finder, what in _NOT_RE2:
        if finder.search(pattern):
            return f"{what} are not supported (RE2 syntax)"
    try:
        re.compile(_to_python(pattern))
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    return None


@cache
def compile_re2(pattern: str) -> re.Pattern[str]:
    """A pattern that :func:`re2_problem` accepted, compiled for Python's ``re``."""
    return re.compile(_to_python(pattern))


def _to_python(pattern: str) -> str:
    # RE2's end-of-text \z is Python's \Z (Python has no \z).
    return re.sub(r"(?<!\\)((?:\\\\)*)\\z", r"\1\\Z", pattern)
