"""A proxyless gRPC client in its own process (``GRPC_XDS_BOOTSTRAP`` is read once per process).

Usage: ``python -m tests.templates.grpc_client TARGET``. Reads one command per line from stdin:
``call N`` makes N unary calls of ``/echo.Echo/Who`` on one long-lived channel and prints a JSON
list of the answers (a failed call is reported as ``"error: <code>"``); EOF ends the process.
The first line printed is ``ready``.
"""

from __future__ import annotations

import json
import sys

import grpc

METHOD = "/echo.Echo/Who"


def call(stub: grpc.UnaryUnaryMultiCallable[bytes, bytes]) -> str:
    try:
        return stub(b"", timeout=5, wait_for_ready=True).decode()
    except grpc.RpcError as exc:
        return f"error: {exc.code().name}"


def main(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        print("ready", flush=True)
        for line in sys.stdin:
            command, _, argument = line.strip().partition(" ")
            if command == "call":
                answers = [call(stub) for _ in range(int(argument or "1"))]
                print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
