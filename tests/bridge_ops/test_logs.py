"""Log lines an operator reads: NACKs in one line naming the resources, JSON with fields."""

from __future__ import annotations

import json
import logging

import pytest
from envoy.config.core.v3 import base_pb2

from bridge.logs import JsonFormatter, StreamEventLogger, first_line, names_list
from xds_server.resource import CLUSTER
from xds_server.tracking import ClientRegistry

#: Envoy 1.40's message for a cluster with a negative connect timeout (a proto dump follows).
ENVOY_MESSAGE = "Invalid duration: Expected positive duration: goo.gle/debugproto  \nnanos: -5\n"


def test_first_line_of_envoy_messages() -> None:
    assert first_line(ENVOY_MESSAGE) == "Invalid duration: Expected positive duration"
    assert first_line('goo.gle/debugproto\nname: "x"\n') == 'name: "x"'
    assert first_line("\n\n  Error adding/updating listener(s) l1: boom\nmore") == (
        "Error adding/updating listener(s) l1: boom"
    )
    assert first_line("") == ""
    assert len(first_line("x" * 1000)) == 300


def test_names_list_is_bounded() -> None:
    assert names_list(["b", "a"]) == "a, b"
    assert names_list([f"c{n}" for n in range(8)]) == "c0, c1, c2, c3, c4 and 3 more"


def nack_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    registry = ClientRegistry()
    registry.add_observer(StreamEventLogger())
    node = base_pb2.Node(id="edge-1", cluster="edge")
    stream = registry.open("ADS", node, "edge-1", "ipv4:127.0.0.1:5000")
    registry.sent(stream, CLUSTER, "v1", "1", 2, holds={"web": "h1", "api": "h2"})
    with caplog.at_level(logging.DEBUG, logger="bridge.xds"):
        registry.nacked(stream, CLUSTER, "v1", ENVOY_MESSAGE)
    return [r for r in caplog.records if "rejected" in r.getMessage() or "full" in r.getMessage()]


def test_a_nack_is_one_warning_line_with_the_resources_and_the_full_text_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warning, debug = nack_records(caplog)
    assert warning.levelno == logging.WARNING
    assert warning.getMessage() == (
        "node 'edge-1' rejected cluster version v1 (api, web): "
        "Invalid duration: Expected positive duration"
    )
    assert debug.levelno == logging.DEBUG
    assert "nanos: -5" in debug.getMessage()


def test_json_lines_carry_structured_fields(caplog: pytest.LogCaptureFixture) -> None:
    warning, _ = nack_records(caplog)
    entry = json.loads(JsonFormatter().format(warning))
    assert entry["level"] == "warning"
    assert entry["node_id"] == "edge-1"
    assert entry["node_cluster"] == "edge"
    assert entry["type"] == "cluster"
    assert entry["version"] == "v1"
    assert entry["resources"] == ["api", "web"]
    assert entry["api"] == "ADS"

    record = logging.LogRecord("bridge.watcher", logging.WARNING, __file__, 1, "x", None, None)
    record.__dict__.update({"dc": "dc2", "path": "/v1/health/service/web"})
    entry = json.loads(JsonFormatter().format(record))
    assert (entry["dc"], entry["path"]) == ("dc2", "/v1/health/service/web")
    assert "node_id" not in entry
