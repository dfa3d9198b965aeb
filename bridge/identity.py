"""What a client certificate vouches for beyond the node id: SAN patterns binding node fields.

With ``xds.require_node_san`` a client's node id must be one of its certificate's SANs. The other
fields that choose a node's configuration -- ``node.cluster`` and node metadata keys, through
``xds.node_key`` and the template rules -- are whatever the client claims, unless a pattern of
``xds.identity_sans`` binds them to the certificate::

    spiffe://mesh/{cluster}/{id}          URI SAN spiffe://mesh/payments/pay-1
                                          → cluster must be "payments", id "pay-1"
    {id}.{metadata.team}.nodes.example    DNS SAN edge-1.blue.nodes.example
                                          → id "edge-1", metadata team "blue"

A placeholder is ``{id}``, ``{cluster}`` or ``{metadata.<key>}`` and stands for one URI path
segment (no ``/``) or one DNS label (no ``.``). A pattern with ``://`` is matched against the
URI SANs, exactly; any other against the DNS SANs, without regard to case (as DNS compares), and
never against a wildcard SAN. A client is allowed when one of its SANs matches one pattern and
every field that pattern captures equals what the node claims; its id must also be bound, by
the pattern (``{id}``) or by being one of the SANs. Everything here is pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from .security import DNS_SANS, URI_SANS, authorize_node_by_san, node_id_in_sans

ID = "id"
CLUSTER = "cluster"
METADATA = "metadata."

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def is_field(name: str) -> bool:
    """``id``, ``cluster`` or ``metadata.<key>``: the node fields a pattern can bind."""
    return name in (ID, CLUSTER) or (name.startswith(METADATA) and len(name) > len(METADATA))


def claimed(node: base_pb2.Node, name: str) -> str | None:
    """What ``node`` claims for field ``name`` (None: a metadata key absent or not a string)."""
    if name == ID:
        return str(node.id)
    if name == CLUSTER:
        return str(node.cluster)
    value = node.metadata.fields.get(name[len(METADATA) :])
    if value is None or value.WhichOneof("kind") != "string_value":
        return None
    return str(value.string_value)


@dataclass(frozen=True)
class SanPattern:
    """One ``xds.identity_sans`` entry, compiled."""

    text: str
    uri: bool  # matched against URI SANs (else DNS SANs)
    regex: re.Pattern[str]
    fields: tuple[str, ...]  # the placeholders, in order

    @classmethod
    def parse(cls, text: str) -> SanPattern:
        """Raise ValueError naming the problem (unknown or repeated placeholder, no
        placeholder, stray braces, two placeholders with nothing between them)."""
        uri = "://" in text
        segment = "[^/]+" if uri else "[^.]+"
        parts = _PLACEHOLDER.split(text)  # literal, name, literal, name, ..., literal
        literals, names = parts[0::2], parts[1::2]
        if any("{" in lit or "}" in lit for lit in literals):
            raise ValueError(f"{text!r}: braces only around a placeholder such as {{cluster}}")
        if not names:
            raise ValueError(f"{text!r}: no placeholder ({{id}}, {{cluster}}, {{metadata.<key>}})")
        regex = re.escape(literals[0])
        for index, name in enumerate(names):
            if not is_field(name):
                raise ValueError(
                    f"{text!r}: unknown placeholder {{{name}}}; "
                    "use {id}, {cluster} or {metadata.<key>}"
                )
            if name in names[:index]:
                raise ValueError(f"{text!r}: placeholder {{{name}}} appears twice")
            if index and not literals[index]:
                raise ValueError(f"{text!r}: two placeholders need something between them")
            regex += f"(?P<g{index}>{segment})" + re.escape(literals[index + 1])
        flags = 0 if uri else re.IGNORECASE
        return cls(text, uri, re.compile(regex, flags), tuple(names))

    def match(self, san: str) -> dict[str, str] | None:
        """The fields ``san`` binds through this pattern (None: it does not match)."""
        if not self.uri and san.startswith("*"):
            return None  # a wildcard certificate binds nothing
        found = self.regex.fullmatch(san)
        if found is None:
            return None
        return {name: found.group(f"g{i}") for i, name in enumerate(self.fields)}

    def same(self, bound: str, claim: str | None) -> bool:
        if claim is None:
            return False
        return bound == claim if self.uri else bound.casefold() == claim.casefold()


def parse_patterns(texts: Iterable[str]) -> tuple[SanPattern, ...]:
    return tuple(SanPattern.parse(text) for text in texts)


def _texts(values: Sequence[bytes] | None) -> list[str]:
    return [v.decode("utf-8", errors="replace") for v in values or ()]


@dataclass(frozen=True)
class IdentityRule:
    """The ``xds.require_node_san`` check with the ``xds.identity_sans`` patterns."""

    patterns: tuple[SanPattern, ...] = ()

    @property
    def bound_fields(self) -> frozenset[str]:
        """Fields no client can choose freely: the id, and what *every* pattern captures (a
        field one pattern leaves out is free for a certificate matching that pattern)."""
        if not self.patterns:
            return frozenset({ID})
        common = set(self.patterns[0].fields)
        for pattern in self.patterns[1:]:
            common &= set(pattern.fields)
        return frozenset(common | {ID})

    def authorize(
        self, node: base_pb2.Node, auth_context: Mapping[str, Sequence[bytes]]
    ) -> str | None:
        """None when the certificate vouches for what ``node`` claims, else why not."""
        if not self.patterns:
            return authorize_node_by_san(node, auth_context)
        if not auth_context.get("x509_pem_cert"):
            return f"node {node.id!r}: the client presented no certificate"
        uris = _texts(auth_context.get(URI_SANS))
        dns = _texts(auth_context.get(DNS_SANS))
        id_is_a_san = node_id_in_sans(str(node.id), uris, dns)
        problems = []
        for pattern in self.patterns:
            for san in uris if pattern.uri else dns:
                fields = pattern.match(san)
                if fields is None:
                    continue
                wrong = [
                    f"{name} {claimed(node, name)!r} (the certificate says {value!r})"
                    for name, value in fields.items()
                    if not pattern.same(value, claimed(node, name))
                ]
                if ID not in fields and not id_is_a_san:
                    wrong.append(f"id {node.id!r} (not a SAN of the certificate)")
                if not wrong:
                    return None
                kind = "URI" if pattern.uri else "DNS"
                problems.append(
                    f"{kind}:{san} matches {pattern.text!r}, but the node claims "
                    + ", ".join(wrong)
                )
        if not problems:
            sans = [f"URI:{u}" for u in uris] + [f"DNS:{d}" for d in dns]
            problems.append(
                f"none of the certificate's SANs ({', '.join(sans) or 'none'}) matches "
                f"xds.identity_sans ({', '.join(p.text for p in self.patterns)})"
            )
        return (
            f"node {node.id!r} (cluster {node.cluster!r}) is refused: "
            + "; ".join(problems)
            + ". With xds.require_node_san a client may claim only what its certificate binds"
        )
