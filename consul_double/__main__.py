"""``python -m consul_double --port 8500``: serve a Consul double until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from pathlib import Path
from typing import Any

from .seed import seed
from .server import ConsulDouble


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m consul_double", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--port", type=int, default=8500, help="HTTP port (0: any free port)")
    parser.add_argument("--datacenter", default="dc1", help="the agent's datacenter")
    parser.add_argument(
        "--extra-datacenters",
        nargs="*",
        default=[],
        metavar="DC",
        help="other datacenters reachable with ?dc= (space or comma separated)",
    )
    parser.add_argument("--max-conns-per-client", type=int, default=200)
    parser.add_argument(
        "--seed-services",
        type=int,
        default=0,
        metavar="N",
        help="register N synthetic services at start (see consul_double.seed)",
    )
    parser.add_argument("--seed-instances", type=int, default=1, metavar="M", help="per service")
    parser.add_argument("--seed-nodes", type=int, default=100, metavar="K", help="spread over K")
    parser.add_argument(
        "--stop-on-eof",
        action="store_true",
        help="stop when standard input closes (a parent that dies takes the double with it)",
    )
    parser.add_argument(
        "--stats-file",
        default="",
        metavar="PATH",
        help="write the server's counters (JSON) at exit",
    )
    return parser


async def _serve(args: argparse.Namespace, counters: dict[str, Any]) -> None:
    extra = [dc for item in args.extra_datacenters for dc in item.split(",") if dc]
    double = ConsulDouble(
        datacenter=args.datacenter,
        extra_datacenters=extra,
        max_conns_per_client=args.max_conns_per_client,
        host=args.host,
        port=args.port,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    if args.stop_on_eof:
        await loop.connect_read_pipe(lambda: _EofProtocol(stop), sys.stdin)
    if args.seed_services > 0:
        seed(double, args.seed_services, args.seed_instances, args.seed_nodes)
    try:
        async with double:
            print(
                f"consul double serving {double.url} (datacenter {double.datacenter})", flush=True
            )
            await stop.wait()
    finally:
        stats = double.stats
        counters.update(
            requests_total=stats.requests_total,
            responses_by_status={str(k): v for k, v in stats.responses_by_status.items()},
            max_concurrent_connections=stats.max_concurrent_connections,
            rejected_429=stats.rejected_429,
        )


class _EofProtocol(asyncio.Protocol):
    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    counters: dict[str, Any] = {}
    try:
        asyncio.run(_serve(args, counters))
    finally:
        if args.stats_file:
            Path(args.stats_file).write_text(json.dumps(counters) + "\n")


if __name__ == "__main__":
    main()
