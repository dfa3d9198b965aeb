"""What kind of xDS client a node is, and what it accepts (pure functions, no I/O).

A node's ``user_agent_name`` / ``user_agent_version`` (and ``client_features``) tell an Envoy from
a proxyless gRPC client and, for gRPC, its language and version. Envoy gets the resources the
bridge builds; every gRPC client gets one shared *gRPC variant* of them
(:mod:`bridge.grpc_shaping`), so a resource is serialized once per variant, not per node. What
differs between gRPC languages — which load-balancing policy of a fallback list a client picks —
only changes the warnings, never the resource.

User agents as real clients send them (measured):

=========================  ===============================  ===============================
client                     ``user_agent_name``              ``user_agent_version``
=========================  ===============================  ===============================
Envoy 1.40                 ``envoy``                        (``user_agent_build_version``)
grpc-python 1.85           ``gRPC C-core linux Python``     ``C-core 58.0.0 Python 1.85.3``
``@grpc/grpc-js-xds`` 1.14 ``gRPC Node Pure JS``            ``1.14.1``
grpc-go, grpc-java         ``gRPC Go``, ``gRPC Java``       ``1.70.0``
=========================  ===============================  ===============================
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2

#: ``client_features`` every gRPC xDS client sends (gRFC A27 era); no Envoy sends it.
GRPC_CLIENT_FEATURE = "envoy.lb.does_not_support_overprovisioning"


class Variant(enum.StrEnum):
    """The resource variants the bridge serves: one per kind of client, shared by its nodes."""

    ENVOY = "envoy"
    GRPC = "grpc"


class Language(enum.StrEnum):
    ENVOY = "envoy"
    NODE = "node"  # @grpc/grpc-js-xds (pure JS)
    CORE = "core"  # C-core and its wrappers: C++, Python, Ruby, PHP, C#/Grpc.Core, Objective-C
    GO = "go"
    JAVA = "java"
    UNKNOWN = "unknown"  # a gRPC client of a language this table does not know


@dataclass(frozen=True, slots=True)
class ClientKind:
    variant: Variant
    language: Language
    version: tuple[int, ...] = ()  # the library's version (grpc-js-xds, grpcio, grpc-go, ...)
    wrapper: str = ""  # for C-core: the wrapping language as reported ("Python", "C++", ...)
    features: frozenset[str] = frozenset()

    @property
    def is_grpc(self) -> bool:
        return self.variant is Variant.GRPC

    @property
    def label(self) -> str:
        """``gRPC node 1.14.1``, ``gRPC core/Python 1.85.3``, ``envoy 1.40.0``."""
        version = ".".join(str(part) for part in self.version)
        if self.variant is Variant.ENVOY:
            return f"envoy {version}".strip()
        language = f"core/{self.wrapper}" if self.wrapper else str(self.language)
        return f"gRPC {language} {version}".strip()


_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_CORE_WRAPPED = re.compile(
    r"C-core\s+\S+\s+(?P<wrapper>\S+(?:\s\S+)*?)\s+(?P<version>\d+\.\d+\S*)$"
)


def parse_version(text: str) -> tuple[int, ...]:
    """The first ``major.minor[.patch]`` in ``text``; ``()`` when there is none."""
    match = _VERSION.search(text)
    if match is None:
        return ()
    return tuple(int(part) for part in match.groups() if part is not None)


def _envoy_version(node: base_pb2.Node) -> tuple[int, ...]:
    if node.HasField("user_agent_build_version"):
        semver = node.user_agent_build_version.version
        return (semver.major_number, semver.minor_number, semver.patch)
    return parse_version(str(node.user_agent_version))


def _grpc_language(name: str) -> Language:
    lowered = name.lower()
    if "node" in lowered:
        return Language.NODE
    if "c-core" in lowered or "c++" in lowered:
        return Language.CORE
    if re.search(r"\bgo\b", lowered):
        return Language.GO
    if "java" in lowered:
        return Language.JAVA
    return Language.UNKNOWN


def _core_version(version_text: str) -> tuple[str, tuple[int, ...]]:
    """``C-core 58.0.0 Python 1.85.3`` → (``Python``, (1, 85, 3)); plain C++ → the core version."""
    match = _CORE_WRAPPED.search(version_text.strip())
    if match is not None:
        return match.group("wrapper"), parse_version(match.group("version"))
    return "", parse_version(version_text)


def classify(node: base_pb2.Node) -> ClientKind:
    """Envoy or gRPC (and which gRPC) from what the node says about itself.

    A node with no recognisable user agent is served as an Envoy (what the bridge always did)
    unless its ``client_features`` carry the feature only gRPC clients send.
    """
    name = str(node.user_agent_name)
    features = frozenset(str(feature) for feature in node.client_features)
    lowered = name.strip().lower()
    if lowered == "envoy":
        return ClientKind(Variant.ENVOY, Language.ENVOY, _envoy_version(node), features=features)
    if lowered.startswith("grpc") or GRPC_CLIENT_FEATURE in features:
        language = _grpc_language(name)
        version_text = str(node.user_agent_version)
        if language is Language.CORE:
            wrapper, version = _core_version(version_text)
            return ClientKind(Variant.GRPC, language, version, wrapper, features)
        return ClientKind(Variant.GRPC, language, parse_version(version_text), features=features)
    return ClientKind(Variant.ENVOY, Language.ENVOY, _envoy_version(node), features=features)


def as_grpc_client(node: base_pb2.Node) -> base_pb2.Node:
    """``node`` as a proxyless gRPC client of unknown language describes itself (for ``render
    --grpc`` and ``/debug/resources?variant=grpc``: what such a client would be served)."""
    marked = base_pb2.Node()
    marked.CopyFrom(node)
    marked.user_agent_name = "gRPC"
    if GRPC_CLIENT_FEATURE not in marked.client_features:
        marked.client_features.append(GRPC_CLIENT_FEATURE)
    return marked


# ---------------------------------------------------------------- what each gRPC client implements
#: Endpoint-picking policies of ``Cluster.load_balancing_policy`` (gRFC A52) each gRPC language
#: implements (without experimental environment switches). Node and C-core are measured by the
#: test suite (``tests/proxyless``); Go and Java are from their gRFCs' "implemented in".
POLICIES_BY_LANGUAGE: Mapping[Language, frozenset[str]] = {
    # grpc-js-xds 1.14: ring_hash (A42) and round_robin; least_request is not implemented and
    # client_side_weighted_round_robin only with GRPC_EXPERIMENTAL_XDS_WRR_LB=true.
    Language.NODE: frozenset({"round_robin", "ring_hash"}),
    # C-core (grpcio 1.85): no least_request (A48 is Java and Go only).
    Language.CORE: frozenset({"round_robin", "ring_hash", "wrr"}),
    Language.GO: frozenset({"round_robin", "ring_hash", "least_request", "wrr"}),
    Language.JAVA: frozenset({"round_robin", "ring_hash", "least_request", "wrr"}),
    Language.UNKNOWN: frozenset({"round_robin"}),
}


def supported_policies(kind: ClientKind) -> frozenset[str]:
    """The gRFC A52 policies ``kind`` picks from a ``load_balancing_policy`` list."""
    return POLICIES_BY_LANGUAGE.get(kind.language, frozenset({"round_robin"}))
