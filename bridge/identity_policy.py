"""Which node fields select configuration, whether each is bound, and what a group render sees.

At start-up (:func:`check_identity`): with mTLS on, every field that chooses a node's snapshot
key (``xds.node_key``) or, with ``xds.require_node_san``, its template set (``templates.rules``)
must be bound by the certificate (:mod:`bridge.identity`) -- or be listed in
``xds.unbound_fields``, a deliberate choice that is logged as a WARNING at every start. Anything
else stops the bridge with a :class:`ConfigError` (exit status 2).

At run time (:class:`GroupNodes`): nodes sharing a snapshot key share the listeners and routes
rendered for the *first* node of the key. That node is reduced to what is bound or accepted
(:func:`reduce_node`) before the cache and the templates see it, so one member's unverified
metadata, cluster or locality never shapes the whole group's configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

from xds_server import ConfigWatcher, Listener, Snapshot

from .config import ConfigError
from .identity import CLUSTER, ID, METADATA, IdentityRule, is_field

NODE_KEY = "xds.node_key"
RULES = "templates.rules"
UNBOUND = "xds.unbound_fields"


def selecting_fields(node_key: str, rule_fields: Iterable[str]) -> dict[str, str]:
    """Node fields that select configuration → the setting through which they do.

    ``node_key``: ``id``, ``cluster`` or ``metadata:<key>``; ``rule_fields``: the keys the
    template rules match on (``node_id``, ``node_cluster``, ``metadata.<key>``).
    """
    fields: dict[str, str] = {}
    for key in rule_fields:
        if key == "node_cluster":
            fields.setdefault(CLUSTER, RULES)
        elif key.startswith(METADATA):
            fields.setdefault(key, RULES)
    if node_key == "cluster":
        fields[CLUSTER] = NODE_KEY
    elif node_key.startswith("metadata:"):
        fields[METADATA + node_key[len("metadata:") :]] = NODE_KEY
    return fields


@dataclass(frozen=True)
class IdentityPolicy:
    """The settings that decide what a client's certificate binds."""

    mtls: bool  # clients present certificates from xds.tls_client_ca
    require_node_san: bool
    rule: IdentityRule
    unbound_allowed: frozenset[str] = frozenset()  # xds.unbound_fields

    @property
    def group_fields(self) -> frozenset[str]:
        """What a shared snapshot may be rendered from: bound or deliberately accepted."""
        bound = self.rule.bound_fields if self.require_node_san else frozenset()
        return bound | self.unbound_allowed | {ID}


def check_identity(policy: IdentityPolicy, selecting: Mapping[str, str]) -> list[str]:
    """Raise :class:`ConfigError` for a field that selects config without being bound; return
    the warnings to log (fields accepted unbound, mTLS without the node id rule)."""
    for name in sorted(policy.unbound_allowed):
        if name == ID or not is_field(name):
            raise ConfigError(UNBOUND, f"{name!r}: expected cluster or metadata.<key>")
    if policy.rule.patterns and not policy.require_node_san:
        raise ConfigError("xds.identity_sans", "needs xds.require_node_san (and mTLS)")
    if not policy.mtls:
        return []
    warnings = []
    if policy.require_node_san:
        unbound = {f: s for f, s in selecting.items() if f not in policy.rule.bound_fields}
    else:
        warnings.append(
            "mTLS is on but xds.require_node_san is off: any client holding a certificate from "
            "xds.tls_client_ca may ask for any node's configuration"
        )
        unbound = {f: s for f, s in selecting.items() if s == NODE_KEY}
    for name, setting in sorted(unbound.items()):
        if name in policy.unbound_allowed:
            warnings.append(
                f"{setting} selects configuration by node {name}, which no certificate binds "
                f"(accepted by {UNBOUND}): any client with a certificate from xds.tls_client_ca "
                f"can claim any {name} and receive that group's configuration"
            )
            continue
        how = (
            f"bind it with a pattern in xds.identity_sans such as "
            f"spiffe://<trust-domain>/{{{name}}}/{{id}}"
            if policy.require_node_san
            else "turn on xds.require_node_san and bind it with xds.identity_sans"
        )
        raise ConfigError(
            setting,
            f"selects configuration by node {name}, which the client's certificate does not "
            f"bind: a client holding any certificate from xds.tls_client_ca could claim "
            f"another group's {name} and receive (and shape) its configuration. {how}, or "
            f"accept the risk with {UNBOUND}: [{name}]",
        )
    return warnings


def reduce_node(node: base_pb2.Node, kept: frozenset[str]) -> base_pb2.Node:
    """``node`` with only the fields in ``kept`` (and its id and user agent): metadata keys not
    kept, an unkept cluster, locality and dynamic parameters are dropped."""
    reduced = base_pb2.Node()
    reduced.CopyFrom(node)
    if CLUSTER not in kept:
        reduced.cluster = ""
    reduced.ClearField("locality")
    reduced.ClearField("dynamic_parameters")
    for key in list(reduced.metadata.fields):
        if METADATA + key not in kept:
            del reduced.metadata.fields[key]
    return reduced


class GroupNodes:
    """A :class:`ConfigWatcher` in front of the snapshot cache: the node a stream registers
    with is reduced to ``kept`` first, so a key's snapshot is built from verified fields only.
    (The stream's own record -- ``/debug/clients``, logs -- keeps what the client claimed.)"""

    def __init__(self, cache: ConfigWatcher, kept: frozenset[str]) -> None:
        self.cache = cache
        self.kept = kept

    def node_key(self, node: base_pb2.Node) -> str:
        return self.cache.node_key(reduce_node(node, self.kept))

    def get(self, key: str) -> Snapshot | None:
        return self.cache.get(key)

    def watch(self, node: base_pb2.Node, listener: Listener) -> str:
        return self.cache.watch(reduce_node(node, self.kept), listener)

    def unwatch(self, key: str, listener: Listener) -> None:
        self.cache.unwatch(key, listener)


def serving_cache(cache: ConfigWatcher, node_key: str, policy: IdentityPolicy) -> ConfigWatcher:
    """What the discovery server should serve from: with mTLS and shared keys (``node_key``
    other than ``id``), the :class:`GroupNodes` front; otherwise ``cache`` itself (a node's own
    snapshot may follow its own claims: they are bound to it, or nothing is bound at all)."""
    if policy.mtls and node_key != "id":
        return GroupNodes(cache, policy.group_fields)
    return cache
