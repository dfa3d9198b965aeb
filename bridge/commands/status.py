"""``consul-xds-bridge status``: the fleet at a glance, read from each replica's CSDS.

One line per connected node and replica: id, cluster, user agent, and per type ``SYNCED``,
``STALE (age)``, ``NACKED (first line of Envoy's message)`` or ``-`` (not subscribed).
``--node ID`` prints that node's resources one by one. The exit status makes it usable in
CI/CD: 0 when every node is in sync, 1 when a node NACKed or is stale past ``--stale-after``,
3 when a replica could not be read (2 is a usage error).
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import grpc
from envoy.service.status.v3 import csds_pb2, csds_pb2_grpc

from xds_server.resource import ADS_ORDER, SHORT_NAMES

from ..logs import first_line
from ..values import HOST_PORT, Kind, duration

EXIT_OK, EXIT_UNHEALTHY, EXIT_UNREACHABLE = 0, 1, 3
_STATUS_NAMES = {1: "SYNCED", 2: "NOT_SENT", 3: "STALE", 4: "ERROR"}
_CLIENT_NAMES = {1: "REQUESTED", 2: "DOES_NOT_EXIST", 3: "ACKED", 4: "NACKED"}
COLUMNS = {"cluster": "CDS", "endpoint": "EDS", "listener": "LDS", "route": "RDS"}


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One node's state for one resource type."""

    state: str  # SYNCED | STALE | NACKED
    resources: int
    age: float | None = None  # STALE: seconds since the oldest unsynced version (if known)
    message: str = ""  # NACKED: Envoy's full message
    rejected: tuple[str, ...] = ()

    def cell(self) -> str:
        if self.state == "STALE":
            return "STALE" if self.age is None else f"STALE ({_age(self.age)})"
        if self.state == "NACKED":
            return f"NACKED ({first_line(self.message, 60) or 'no message'})"
        return self.state


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str
    cluster: str
    agent: str
    replica: str
    types: dict[str, TypeStatus] = field(default_factory=dict)

    def problems(self, stale_after: float) -> list[str]:
        """Why this node fails the check (empty: it passes)."""
        found = []
        for kind, status in self.types.items():
            if status.state == "NACKED":
                found.append(f"{kind} NACKED")
            elif status.state == "STALE" and (status.age or 0.0) >= stale_after:
                found.append(f"{kind} stale for {_age(status.age or 0.0)}")
        return found


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def agent_of(node: Any) -> str:
    agent = str(node.user_agent_name)
    if node.HasField("user_agent_build_version"):
        semver = node.user_agent_build_version.version
        version = f"{semver.major_number}.{semver.minor_number}.{semver.patch}"
    else:
        version = str(node.user_agent_version)
    return f"{agent}/{version}" if agent and version else agent or version or "?"


def node_status(config: Any, replica: str, now: float) -> NodeStatus:
    """A ClientConfig → the node's per-type summary."""
    per_type: dict[str, list[Any]] = {}
    for entry in config.generic_xds_configs:
        per_type.setdefault(SHORT_NAMES.get(entry.type_url, entry.type_url), []).append(entry)
    types = {kind: type_status(entries, now) for kind, entries in per_type.items()}
    return NodeStatus(
        str(config.node.id), str(config.node.cluster), agent_of(config.node), replica, types
    )


def type_status(entries: Sequence[Any], now: float) -> TypeStatus:
    errors = [e for e in entries if e.config_status == csds_pb2.ConfigStatus.ERROR]
    if errors:
        return TypeStatus(
            "NACKED",
            len(entries),
            message=str(errors[0].error_state.details),
            rejected=tuple(str(e.name) for e in errors),
        )
    pending = [
        e
        for e in entries
        if e.config_status in (csds_pb2.ConfigStatus.STALE, csds_pb2.ConfigStatus.NOT_SENT)
    ]
    if pending:
        times = [_seconds(e.last_updated) for e in pending if e.HasField("last_updated")]
        return TypeStatus("STALE", len(entries), age=now - min(times) if times else None)
    return TypeStatus("SYNCED", len(entries))


def _seconds(timestamp: Any) -> float:
    return float(timestamp.seconds) + float(timestamp.nanos) / 1e9


def table(nodes: Iterable[NodeStatus]) -> str:
    """The fleet, one line per node and replica, columns aligned."""
    rows = [["NODE", "CLUSTER", "AGENT", *COLUMNS.values(), "REPLICA"]]
    for node in nodes:
        cells = [node.types[k].cell() if k in node.types else "-" for k in COLUMNS]
        rows.append([node.node_id, node.cluster, node.agent, *cells, node.replica])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


def detail(config: Any, replica: str, now: float) -> str:
    """One node's resources, one per line, then the full text of its NACKs."""
    node = node_status(config, replica, now)
    lines = [
        f"node {node.node_id} (cluster {node.cluster or '-'}, {node.agent}) on {replica}",
        f"{'TYPE':9} {'NAME':40} {'STATUS':9} {'CLIENT':15} {'VERSION':34} UPDATED",
    ]
    nacks: dict[str, str] = {}
    for entry in sorted(config.generic_xds_configs, key=_entry_order):
        kind = SHORT_NAMES.get(entry.type_url, entry.type_url)
        status = _STATUS_NAMES.get(entry.config_status, "UNKNOWN")
        updated = "-"
        if entry.HasField("last_updated"):
            stamp = _seconds(entry.last_updated)
            updated = (
                datetime.datetime.fromtimestamp(stamp, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
                + f" ({_age(now - stamp)} ago)"
            )
        version = entry.version_info or "-"
        if entry.config_status == csds_pb2.ConfigStatus.ERROR:
            version += f" (rejected {entry.error_state.version_info or '?'})"
        lines.append(
            f"{kind:9} {entry.name:40} {status:9} "
            f"{_CLIENT_NAMES.get(entry.client_status, '-'):15} {version:34} {updated}"
        )
        if entry.config_status == csds_pb2.ConfigStatus.ERROR:
            nacks.setdefault(kind, str(entry.error_state.details))
    for kind, message in nacks.items():
        lines.append(f"\n{kind}: Envoy's message for the rejected version:\n{message.rstrip()}")
    return "\n".join(lines)


def _entry_order(entry: Any) -> tuple[int, str]:
    order = ADS_ORDER.index(entry.type_url) if entry.type_url in ADS_ORDER else len(ADS_ORDER)
    return order, str(entry.name)


@dataclass(frozen=True, slots=True)
class Tls:
    ca: str = ""
    cert: str = ""
    key: str = ""
    server_name: str = ""


def fetch(address: str, node_id: str, tls: Tls, timeout: float) -> csds_pb2.ClientStatusResponse:
    """One replica's FetchClientStatus (only ``node_id`` when given; without contents)."""
    request = csds_pb2.ClientStatusRequest(exclude_resource_contents=True)
    if node_id:
        request.node_matchers.add().node_id.exact = node_id
    options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", 256 * 1024 * 1024)]
    if tls.ca:
        credentials = grpc.ssl_channel_credentials(
            Path(tls.ca).read_bytes(),
            Path(tls.key).read_bytes() if tls.key else None,
            Path(tls.cert).read_bytes() if tls.cert else None,
        )
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(address, credentials, options)
    else:
        channel = grpc.insecure_channel(address, options)
    with channel:
        stub = csds_pb2_grpc.ClientStatusDiscoveryServiceStub(channel)
        response: csds_pb2.ClientStatusResponse = stub.FetchClientStatus(request, timeout=timeout)
        return response


def main_status(
    addresses: Sequence[str],
    node_id: str = "",
    stale_after: float = 30.0,
    timeout: float = 5.0,
    tls: Tls | None = None,
    cluster: str = "",
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    tls = tls or Tls()
    now = time.time()
    nodes: list[NodeStatus] = []
    configs: list[tuple[Any, str]] = []
    unreachable = False
    for address in addresses:
        try:
            response = fetch(address, node_id, tls, timeout)
        except grpc.RpcError as exc:
            print(
                f"status: cannot read CSDS at {address}: {exc.code().name}: {exc.details()}",
                file=err,
            )
            unreachable = True
            continue
        except OSError as exc:
            print(f"status: cannot read TLS files for {address}: {exc}", file=err)
            return 2
        for config in response.config:
            if cluster and config.node.cluster != cluster:
                continue
            configs.append((config, address))
            nodes.append(node_status(config, address, now))
    nodes.sort(key=lambda n: (n.node_id, n.replica))
    if node_id:
        if not configs:
            print(f"status: node {node_id!r} is not connected to {', '.join(addresses)}", file=err)
            return EXIT_UNREACHABLE if unreachable else EXIT_UNHEALTHY
        print("\n\n".join(detail(c, r, now) for c, r in configs), file=out)
    else:
        print(table(nodes), file=out)
    failing = [(n, p) for n in nodes if (p := n.problems(stale_after))]
    for node, problems in failing:
        print(f"status: node {node.node_id} on {node.replica}: {', '.join(problems)}", file=err)
    if failing:
        return EXIT_UNHEALTHY
    return EXIT_UNREACHABLE if unreachable else EXIT_OK


def add_status_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--xds-address",
        action="append",
        type=_typed(HOST_PORT),
        default=[],
        metavar="HOST:PORT",
        help="a bridge replica's xDS address (default 127.0.0.1:18000); repeat for replicas",
    )
    parser.add_argument("--node", default="", metavar="ID", help="one node's resources in detail")
    parser.add_argument("--cluster", default="", metavar="NAME", help="only nodes of this cluster")
    parser.add_argument(
        "--stale-after",
        type=_typed(STALE_AFTER),
        default=30.0,
        metavar="DURATION",
        help="a node stale this long fails the check (default 30s)",
    )
    parser.add_argument(
        "--timeout", type=_typed(TIMEOUT), default=5.0, metavar="DURATION", help="per replica"
    )
    parser.add_argument("--tls-ca", default="", help="CA file: read CSDS over TLS")
    parser.add_argument("--tls-cert", default="", help="client certificate (mTLS)")
    parser.add_argument("--tls-key", default="", help="client key (mTLS)")
    parser.add_argument("--tls-server-name", default="", help="expected name in the bridge's cert")


STALE_AFTER = duration()
TIMEOUT = duration(positive=True, most=600)


def _typed(kind: Kind) -> Any:
    def convert(text: str) -> Any:
        try:
            return kind(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def status_command(args: argparse.Namespace) -> int:
    addresses = [str(a) for a in args.xds_address] or ["127.0.0.1:18000"]
    tls = Tls(args.tls_ca, args.tls_cert, args.tls_key, args.tls_server_name)
    return main_status(addresses, args.node, args.stale_after, args.timeout, tls, args.cluster)
