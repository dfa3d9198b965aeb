"""How ``status`` summarises a node's CSDS report per type, and when it fails the check."""

from __future__ import annotations

from envoy.service.status.v3 import csds_pb2

from bridge.commands.status import node_status, table
from xds_server.resource import CLUSTER, ENDPOINT, LISTENER

NOW = 1_000_000.0


def config(*entries: tuple[str, str, int, float | None]) -> csds_pb2.ClientConfig:
    found = csds_pb2.ClientConfig()
    found.node.id = "edge-1"
    found.node.cluster = "edge"
    found.node.user_agent_name = "envoy"
    found.node.user_agent_build_version.version.major_number = 1
    found.node.user_agent_build_version.version.minor_number = 40
    for type_url, name, status, updated in entries:
        entry = found.generic_xds_configs.add(type_url=type_url, name=name, config_status=status)
        if updated is not None:
            entry.last_updated.FromNanoseconds(int(updated * 1e9))
        if status == csds_pb2.ConfigStatus.ERROR:
            entry.error_state.details = "Error adding/updating listener(s) l1: bad port\nmore"
    return found


def test_each_type_is_synced_stale_with_its_age_or_nacked() -> None:
    status = csds_pb2.ConfigStatus
    node = node_status(
        config(
            (CLUSTER, "web", status.SYNCED, NOW - 500),
            (ENDPOINT, "web", status.STALE, NOW - 95),
            (ENDPOINT, "api", status.NOT_SENT, NOW - 5),
            (LISTENER, "l1", status.ERROR, NOW - 1),
            (LISTENER, "l2", status.SYNCED, NOW - 1),
        ),
        "10.0.0.5:18000",
        NOW,
    )
    assert node.agent == "envoy/1.40.0"
    cells = {kind: s.cell() for kind, s in node.types.items()}
    assert cells == {
        "cluster": "SYNCED",
        "endpoint": "STALE (95s)",  # the oldest version not in sync
        "listener": "NACKED (Error adding/updating listener(s) l1: bad port)",
    }
    assert node.problems(stale_after=120) == ["listener NACKED"]
    assert node.problems(stale_after=60) == ["endpoint stale for 95s", "listener NACKED"]
    lines = table([node]).splitlines()
    assert lines[0].split() == ["NODE", "CLUSTER", "AGENT", "CDS", "EDS", "LDS", "RDS", "REPLICA"]
    assert lines[1].startswith("edge-1  edge     envoy/1.40.0  SYNCED  STALE (95s)  NACKED (")
    assert lines[1].endswith("  -    10.0.0.5:18000")
    assert lines[0].index("RDS") == lines[1].index("-    10.0.0.5")


def test_a_node_in_sync_passes() -> None:
    synced = csds_pb2.ConfigStatus.SYNCED
    node = node_status(config((CLUSTER, "web", synced, None)), "r", NOW)
    assert node.problems(stale_after=0) == []
