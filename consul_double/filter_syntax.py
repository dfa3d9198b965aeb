"""The go-bexpr grammar, checked for syntax only (what a service-resolver write checks).

Grammar from hashicorp/go-bexpr ``grammar.peg`` (see also Consul's ``api-docs/features/filtering``):
``or`` of ``and`` of ``not``/parenthesised/match expressions; a match is ``Sel == v``,
``Sel != v``, ``Sel is [not] empty``, ``v [not] in Sel``, ``Sel [not] contains v``,
``Sel [not] matches v``; selectors are dotted identifiers with ``["key"]`` indexing; values
are quoted or backquoted strings, numbers or bare words.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_FILTER_TOKEN = re.compile(
    r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|`[^`]*`)|(?P<num>-?\d+(?:\.\d+)?\b)'
    r"|(?P<op>==|!=|\(|\)|\[|\]|\.)|(?P<id>[A-Za-z_][A-Za-z0-9_\-]*))"
)
_KEYWORDS = ("and", "or", "not", "in", "is", "empty", "contains", "matches")


def filter_syntax_error(text: str) -> str:
    """ "" when ``text`` parses as a go-bexpr expression, else a description of where it fails.

    Like ``bexpr.CreateEvaluator(filter, nil)`` at write time: only the grammar is checked,
    selectors are not (a filter naming an unknown field fails later, when the health query runs).
    """
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        found = _FILTER_TOKEN.match(stripped, pos)
        if found is None or found.end() == pos:
            return f"1:{pos + 1} ({pos}): no match found"
        kind = found.lastgroup or ""
        tokens.append((kind, found.group(kind), found.start(kind)))
        pos = found.end()
    parser = _FilterParser(tokens, len(stripped))
    try:
        parser.or_expr()
        if parser.i != len(tokens):
            parser.fail()
    except _FilterSyntaxError as exc:
        return str(exc)
    return ""


class _FilterSyntaxError(Exception):
    pass


class _FilterParser:
    def __init__(self, tokens: list[tuple[str, str, int]], end: int) -> None:
        self.tokens, self.i, self.end = tokens, 0, end

    def fail(self) -> None:
        at = self.tokens[self.i][2] if self.i < len(self.tokens) else self.end
        raise _FilterSyntaxError(f"1:{at + 1} ({at}): no match found")

    def peek(self, value: str) -> bool:
        return self.i < len(self.tokens) and self.tokens[self.i][1] == value

    def take(self, value: str) -> bool:
        if self.peek(value):
            self.i += 1
            return True
        return False

    def _series(self, word: str, operand: Callable[[], None]) -> None:
        operand()
        while self.take(word):
            operand()

    def or_expr(self) -> None:
        self._series("or", self.and_expr)

    def and_expr(self) -> None:
        self._series("and", self.unary)

    def unary(self) -> None:
        if self.take("not"):
            self.unary()
        elif self.take("("):
            self.or_expr()
            if not self.take(")"):
                self.fail()
        else:
            self.match()

    def match(self) -> None:
        if self.i < len(self.tokens) and self.tokens[self.i][0] in ("str", "num"):
            self.i += 1  # "value" [not] in Selector
            self.take("not")
            if not self.take("in"):
                self.fail()
            self.selector()
            return
        self.selector()
        if self.take("==") or self.take("!="):
            self.value()
        elif self.take("is"):
            self.take("not")
            if not self.take("empty"):
                self.fail()
        else:
            self.take("not")
            if self.take("in"):  # a bare word before "in" was the value: a selector follows
                self.selector()
            elif self.take("contains") or self.take("matches"):
                self.value()
            else:
                self.fail()

    def selector(self) -> None:
        if not self._ident():
            self.fail()
        while True:
            if self.take("."):
                if not self._ident():
                    self.fail()
            elif self.take("["):
                if not (self.i < len(self.tokens) and self.tokens[self.i][0] == "str"):
                    self.fail()
                self.i += 1
                if not self.take("]"):
                    self.fail()
            else:
                return

    def _ident(self) -> bool:
        if self.i < len(self.tokens):
            kind, value, _ = self.tokens[self.i]
            if kind == "id" and value not in _KEYWORDS:
                self.i += 1
                return True
        return False

    def value(self) -> None:
        if self.i < len(self.tokens) and self.tokens[self.i][0] in ("str", "num"):
            self.i += 1
        elif not self._ident():
            self.fail()
