"""``python -m consul_double --port 8500``: serve a Consul double until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal

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
    return parser


async def _serve(args: argparse.Namespace) -> None:
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
    async with double:
        print(f"consul double serving {double.url} (datacenter {double.datacenter})", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    asyncio.run(_serve(_parser().parse_args(argv)))


if __name__ == "__main__":
    main()
