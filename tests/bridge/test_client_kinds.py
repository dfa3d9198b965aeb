"""A node's user agent and client features → which variant it gets and what it implements."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2

from bridge.client_kinds import (
    GRPC_CLIENT_FEATURE,
    ClientKind,
    Language,
    Variant,
    classify,
    parse_version,
    supported_policies,
)


def node(name: str = "", version: str = "", features: tuple[str, ...] = ()) -> base_pb2.Node:
    return base_pb2.Node(
        id="n", user_agent_name=name, user_agent_version=version, client_features=list(features)
    )


def test_envoy_with_a_build_version() -> None:
    envoy = base_pb2.Node(id="e", user_agent_name="envoy")
    envoy.user_agent_build_version.version.major_number = 1
    envoy.user_agent_build_version.version.minor_number = 36
    envoy.user_agent_build_version.version.patch = 2
    kind = classify(envoy)
    assert kind == ClientKind(Variant.ENVOY, Language.ENVOY, (1, 36, 2))
    assert not kind.is_grpc
    assert kind.label == "envoy 1.36.2"


@pytest.mark.parametrize(
    ("name", "version", "language", "wrapper", "parsed", "label"),
    [
        ("gRPC Node Pure JS", "1.14.1", Language.NODE, "", (1, 14, 1), "gRPC node 1.14.1"),
        (
            "gRPC C-core linux Python",
            "C-core 58.0.0 Python 1.85.3",
            Language.CORE,
            "Python",
            (1, 85, 3),
            "gRPC core/Python 1.85.3",
        ),
        ("gRPC C-core linux C++", "58.0.0", Language.CORE, "", (58, 0, 0), "gRPC core 58.0.0"),
        ("gRPC Go", "1.70.0", Language.GO, "", (1, 70, 0), "gRPC go 1.70.0"),
        ("gRPC Java", "1.68.1", Language.JAVA, "", (1, 68, 1), "gRPC java 1.68.1"),
        ("grpc-dotnet", "2.60", Language.UNKNOWN, "", (2, 60), "gRPC unknown 2.60"),
    ],
)
def test_grpc_clients_as_they_report_themselves(
    name: str,
    version: str,
    language: Language,
    wrapper: str,
    parsed: tuple[int, ...],
    label: str,
) -> None:
    kind = classify(node(name, version, (GRPC_CLIENT_FEATURE,)))
    assert kind.variant is Variant.GRPC
    assert (kind.language, kind.wrapper, kind.version, kind.label) == (
        language,
        wrapper,
        parsed,
        label,
    )
    assert GRPC_CLIENT_FEATURE in kind.features


def test_a_node_without_user_agent_is_served_as_envoy_unless_it_sends_the_grpc_feature() -> None:
    assert classify(node()).variant is Variant.ENVOY
    assert classify(node("my-test-client")).variant is Variant.ENVOY
    assert classify(node(features=(GRPC_CLIENT_FEATURE,))).variant is Variant.GRPC


def test_what_each_language_implements() -> None:
    def policies(name: str, version: str = "1.0") -> frozenset[str]:
        return supported_policies(classify(node(name, version)))

    assert policies("gRPC Node Pure JS") == {"round_robin", "ring_hash"}
    assert "least_request" not in policies(
        "gRPC C-core linux Python", "C-core 58.0.0 Python 1.85.3"
    )
    assert "least_request" in policies("gRPC Java")
    assert policies("gRPC Rust") == {"round_robin"}


def test_parse_version() -> None:
    assert parse_version("v1.2.3-rc1") == (1, 2, 3)
    assert parse_version("1.40") == (1, 40)
    assert parse_version("dev") == ()
