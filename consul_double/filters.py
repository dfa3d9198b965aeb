"""A subset of Consul's ``?filter=`` language (go-bexpr), enough for common selections.

Supported: ``Sel == "v"``, ``Sel != "v"``, ``"v" in Sel``, ``"v" not in Sel``, ``Sel is empty``,
``Sel is not empty``, ``Sel matches "re"``, ``Sel not matches "re"``, ``Sel contains "v"``,
combined with ``and``, ``or``, ``not`` and parentheses. Selectors are dotted paths into the JSON
shape of a result (``Service.Tags``, ``Node.Meta.rack``). Anything else, including selectors
that step through a list (``Checks.Status``), raises :class:`FilterError` (HTTP 400), so an
unsupported filter is never silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

Predicate = Callable[[Any], bool]
_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<op>==|!=|\(|\))|(?P<word>[A-Za-z0-9_.\-/:]+))'
)
_MISSING = object()


class FilterError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise FilterError(f"unexpected input at {pos}: {text[pos:]!r}")
        pos = match.end()
        if match.group("str") is not None:
            raw = match.group("str")
            value = raw[1:-1] if raw[0] == "`" else re.sub(r"\\(.)", r"\1", raw[1:-1])
            out.append(("str", value))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        else:
            out.append(("word", match.group("word")))
    return out


def _resolve(obj: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(obj, list):
            raise FilterError(f"selector {path!r} steps through a list: unsupported by the double")
        if not isinstance(obj, dict):
            return _MISSING
        obj = obj.get(part, _MISSING)
        if obj is _MISSING:
            return _MISSING
    return obj


def _equal(found: Any, value: str) -> bool:
    if isinstance(found, bool):
        return value.lower() == str(found).lower()
    if isinstance(found, int | float):
        try:
            return float(value) == float(found)
        except ValueError:
            return False
    return isinstance(found, str) and found == value


def _contains(found: Any, value: str) -> bool:
    if isinstance(found, list | dict):
        return value in found
    return isinstance(found, str) and value in found


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens = tokens
        self.pos = 0

    def peek(self, offset: int = 0) -> tuple[str, str] | None:
        i = self.pos + offset
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise FilterError("unexpected end of expression")
        self.pos += 1
        return tok

    def keyword(self, word: str, offset: int = 0) -> bool:
        tok = self.peek(offset)
        return tok is not None and tok[0] == "word" and tok[1].lower() == word

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise FilterError(f"expected {word!r}")
        self.pos += 1

    def parse(self) -> Predicate:
        pred = self.or_expr()
        if self.peek() is not None:
            raise FilterError(f"unexpected {self.peek()!r}")
        return pred

    def or_expr(self) -> Predicate:
        parts = [self.and_expr()]
        while self.keyword("or"):
            self.pos += 1
            parts.append(self.and_expr())
        return parts[0] if len(parts) == 1 else (lambda o: any(p(o) for p in parts))

    def and_expr(self) -> Predicate:
        parts = [self.unary()]
        while self.keyword("and"):
            self.pos += 1
            parts.append(self.unary())
        return parts[0] if len(parts) == 1 else (lambda o: all(p(o) for p in parts))

    def unary(self) -> Predicate:
        if self.keyword("not"):
            self.pos += 1
            inner = self.unary()
            return lambda o: not inner(o)
        if self.peek() == ("op", "("):
            self.pos += 1
            inner = self.or_expr()
            if self.take() != ("op", ")"):
                raise FilterError("expected ')'")
            return inner
        return self.match()

    def value(self) -> str:
        kind, text = self.take()
        if kind == "op":
            raise FilterError(f"expected a value, got {text!r}")
        return text

    def match(self) -> Predicate:
        first = self.take()
        if (
            first[0] == "str"
            or self.keyword("in")
            or (self.keyword("not") and self.keyword("in", 1))
        ):
            negate = self.keyword("not")
            self.pos += 1 if negate else 0
            self.expect_keyword("in")
            selector = self.selector()
            value = first[1]
            return lambda o: _contains(_resolve(o, selector), value) != negate
        if first[0] != "word":
            raise FilterError(f"expected a selector, got {first[1]!r}")
        selector = first[1]
        tok = self.peek()
        if tok in (("op", "=="), ("op", "!=")):
            self.pos += 1
            value = self.value()
            negate = tok == ("op", "!=")
            return lambda o: _equal(_resolve(o, selector), value) != negate
        if self.keyword("is"):
            self.pos += 1
            negate = self.keyword("not")
            self.pos += 1 if negate else 0
            self.expect_keyword("empty")
            return lambda o: _empty(_resolve(o, selector)) != negate
        negate = self.keyword("not")
        self.pos += 1 if negate else 0
        if self.keyword("matches"):
            self.pos += 1
            try:
                pattern = re.compile(self.value())
            except re.error as exc:
                raise FilterError(f"invalid regular expression: {exc}") from None
            return lambda o: _matches(_resolve(o, selector), pattern) != negate
        if self.keyword("contains"):
            self.pos += 1
            value = self.value()
            return lambda o: _contains(_resolve(o, selector), value) != negate
        raise FilterError(f"unsupported operator after {selector!r}")

    def selector(self) -> str:
        kind, text = self.take()
        if kind != "word":
            raise FilterError(f"expected a selector, got {text!r}")
        return text


def _empty(found: Any) -> bool:
    return found is _MISSING or found is None or (hasattr(found, "__len__") and len(found) == 0)


def _matches(found: Any, pattern: re.Pattern[str]) -> bool:
    return isinstance(found, str) and pattern.search(found) is not None


def compile_filter(text: str) -> Predicate:
    """Compile a filter expression; raises :class:`FilterError` for anything unsupported."""
    tokens = _tokenize(text)
    if not tokens:
        raise FilterError("empty filter expression")
    return _Parser(tokens).parse()
