"""go-bexpr's grammar as a small recursive-descent parser: filter text → expression tree.

    expression := or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not" not | "(" or ")" | match
    match      := selector ("==" | "!=") value
                | selector "is" ["not"] "empty"
                | selector ["not"] ("contains" | "matches") value
                | value ["not"] "in" selector
    selector   := identifier ("." identifier | "." digits | "[" string "]")*
    value      := string | number | selector (a bare word such as v1 stands for itself)
    string     := "..." (Go escapes) | `...` (raw)

Identifiers are ``[A-Za-z][A-Za-z0-9_]*``; keywords need white space or a parenthesis around them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["And", "Expr", "FilterError", "Match", "Not", "Or", "parse_expression"]


class FilterError(ValueError):
    """A filter that does not parse or that the bridge cannot evaluate."""


@dataclass(frozen=True, slots=True)
class Match:
    selector: tuple[str, ...]
    op: str  # == != in "not in" "is empty" "is not empty" matches "not matches"
    value: str | None = None


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class And:
    operands: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Or:
    operands: tuple[Expr, ...]


Expr = Match | Not | And | Or

_IDENT = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?=[\s)]|$)")
_DIGITS = re.compile(r"[0-9]+")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPES |= {"\\": "\\", "'": "'", '"': '"'}


def parse_expression(text: str) -> Expr:
    """Parse a whole filter; raises :class:`FilterError` naming the position of the problem."""
    parser = _Parser(text)
    expr = parser.or_expr()
    parser.skip()
    if parser.pos < len(text):
        parser.fail("unexpected input")
    return expr


@dataclass(frozen=True, slots=True)
class _Atom:
    """What starts a match: a selector (also usable as a bare value) or a literal value."""

    selector: tuple[str, ...] | None
    literal: str | None

    @property
    def raw(self) -> str:
        return self.literal if self.literal is not None else ".".join(self.selector or ())


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> None:
        shown = self.text[self.pos : self.pos + 20] or "end of filter"
        raise FilterError(f"{what} at position {self.pos + 1} ({shown!r})")

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def keyword(self, word: str) -> bool:
        """Consume ``word`` when it comes next as a whole word."""
        self.skip()
        end = self.pos + len(word)
        if self.text.startswith(word, self.pos) and not _IDENT.match(self.text[end : end + 1]):
            if end < len(self.text) and self.text[end] not in " \t\r\n()":
                return False
            self.pos = end
            return True
        return False

    def symbol(self, sym: str) -> bool:
        self.skip()
        if self.text.startswith(sym, self.pos):
            self.pos += len(sym)
            return True
        return False

    def or_expr(self) -> Expr:
        operands = [self.and_expr()]
        while self.keyword("or"):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Expr:
        operands = [self.not_expr()]
        while self.keyword("and"):
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Expr:
        if self.keyword("not"):
            return Not(self.not_expr())
        if self.symbol("("):
            inner = self.or_expr()
            if not self.symbol(")"):
                self.fail("expected ')'")
            return inner
        return self.match()

    def match(self) -> Expr:
        atom = self.atom()
        start = self.pos
        if self.keyword("in"):
            return Match(self.selector(), "in", atom.raw)
        if self.keyword("not"):
            for word in ("in", "contains", "matches"):
                if self.keyword(word):
                    break
            else:
                self.fail("expected 'in', 'contains' or 'matches' after 'not'")
            if word == "in":
                return Match(self.selector(), "not in", atom.raw)
            return Match(self._selector_of(atom, start), f"not {_op(word)}", self.value())
        selector = self._selector_of(atom, start)
        if self.symbol("=="):
            return Match(selector, "==", self.value())
        if self.symbol("!="):
            return Match(selector, "!=", self.value())
        if self.keyword("is"):
            negated = self.keyword("not")
            if not self.keyword("empty"):
                self.fail("expected 'empty'")
            return Match(selector, "is not empty" if negated else "is empty")
        for word in ("contains", "matches"):
            if self.keyword(word):
                return Match(selector, _op(word), self.value())
        self.fail("expected an operator (==, !=, in, contains, matches, is empty)")
        raise AssertionError  # fail() raised

    def _selector_of(self, atom: _Atom, where: int) -> tuple[str, ...]:
        if atom.selector is None:
            self.pos = where
            self.fail("a literal value must be followed by 'in' or 'not in'")
        assert atom.selector is not None
        return atom.selector

    def atom(self) -> _Atom:
        self.skip()
        if self.text[self.pos : self.pos + 1] in ('"', "`"):
            return _Atom(None, self.string())
        number = _NUMBER.match(self.text, self.pos)
        if number:
            self.pos = number.end()
            return _Atom(None, number.group())
        return _Atom(self.selector(), None)

    def value(self) -> str:
        return self.atom().raw

    def selector(self) -> tuple[str, ...]:
        self.skip()
        first = _IDENT.match(self.text, self.pos)
        if first is None:
            self.fail("expected a selector")
        assert first is not None
        parts = [first.group()]
        self.pos = first.end()
        while True:
            if self.text.startswith(".", self.pos):
                self.pos += 1
                part = _IDENT.match(self.text, self.pos) or _DIGITS.match(self.text, self.pos)
                if part is None:
                    self.fail("expected a name after '.'")
                assert part is not None
                parts.append(part.group())
                self.pos = part.end()
            elif self.text.startswith("[", self.pos):
                self.pos += 1
                self.skip()
                if self.text[self.pos : self.pos + 1] not in ('"', "`"):
                    self.fail("expected a quoted key inside [ ]")
                parts.append(self.string())
                if not self.symbol("]"):
                    self.fail("expected ']'")
            else:
                return tuple(parts)

    def string(self) -> str:
        quote = self.text[self.pos]
        end = self.text.find(quote, self.pos + 1)
        if end < 0:
            self.fail("unterminated string")
        body = self.text[self.pos + 1 : end]
        self.pos = end + 1
        return body if quote == "`" else self._unescape(body)

    def _unescape(self, body: str) -> str:
        out: list[str] = []
        i = 0
        while i < len(body):
            char = body[i]
            if char != "\\":
                out.append(char)
                i += 1
                continue
            code = body[i + 1 : i + 2]
            if code in _ESCAPES:
                out.append(_ESCAPES[code])
                i += 2
            elif code in ("x", "u", "U"):
                width = {"x": 2, "u": 4, "U": 8}[code]
                digits = body[i + 2 : i + 2 + width]
                if len(digits) != width or not all(c in "0123456789abcdefABCDEF" for c in digits):
                    self.fail(f"invalid escape \\{code}{digits} in string")
                out.append(chr(int(digits, 16)))
                i += 2 + width
            else:
                self.fail(f"invalid escape \\{code} in string")
        return "".join(out)


def _op(word: str) -> str:
    return "in" if word == "contains" else word
