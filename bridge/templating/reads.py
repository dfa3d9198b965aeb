"""Which node and service fields a template set's Jinja code reads (they key the render cache).

A set that reads only ``node.cluster`` renders once for a whole cluster of nodes; a set that does
not name ``healthy``, ``total`` or ``ports`` is not re-rendered when only endpoints change.
Reading is judged from Jinja's tokens, erring towards "reads everything" when unsure.
"""

from __future__ import annotations

from collections.abc import Iterable

import jinja2

from .context import NODE_FIELDS, VOLATILE_SERVICE_FIELDS

_LEXER = jinja2.Environment()


def _tokens(source: str) -> list[tuple[str, str]] | None:
    """(type, value) of the Jinja tokens of ``source`` (text outside tags is one ``data``
    token; string literals are ``string``); None when it does not lex."""
    try:
        return [(token.type, str(token.value)) for token in _LEXER.lexer.tokenize(source)]
    except jinja2.TemplateSyntaxError:
        return None


def node_fields_read(sources: Iterable[str]) -> tuple[str, ...]:
    """Node fields the sources may read: ``node.<field>`` and ``node["<field>"]`` in Jinja code.
    Any other use of the name ``node`` (aliasing it, passing it to a macro) means all fields;
    so does a source that does not lex."""
    used: set[str] = set()
    for source in sources:
        tokens = _tokens(source)
        if tokens is None:
            return NODE_FIELDS
        for index, (kind, value) in enumerate(tokens):
            if kind != "name" or value != "node":
                continue
            name = _field_after(tokens[index + 1 : index + 4])
            if name is None:
                return NODE_FIELDS
            used.add(name)
    return tuple(f for f in NODE_FIELDS if f in used)


def _field_after(follow: list[tuple[str, str]]) -> str | None:
    """``.<name>`` or ``["<name>"]`` at the start of ``follow`` → the name, else None."""
    kinds = [kind for kind, _value in follow]
    if kinds[:2] == ["dot", "name"] or kinds[:3] == ["lbracket", "string", "rbracket"]:
        return follow[1][1]
    return None


def volatile_fields_read(sources: Iterable[str]) -> tuple[str, ...]:
    """The volatile service fields named in Jinja code (as attributes, keys or strings — the
    latter covers ``map(attribute="healthy")``); all of them when a source does not lex."""
    named: set[str] = set()
    for source in sources:
        tokens = _tokens(source)
        if tokens is None:
            return VOLATILE_SERVICE_FIELDS
        named.update(value for kind, value in tokens if kind in ("name", "string"))
    return tuple(name for name in VOLATILE_SERVICE_FIELDS if name in named)
