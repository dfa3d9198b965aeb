"""A proxyless gRPC client in its own process (``GRPC_XDS_BOOTSTRAP`` is read once per process).

Usage: ``python -m tests.templates.grpc_client TARGET``. Reads one command per line from stdin:
``call N [key=value ...]`` makes N unary calls of ``/echo.Echo/Who`` (with that metadata) on one
long-lived channel and prints a JSON list of the answers (a failed call is reported as
``"error: <code>"``); EOF ends the process. The first line printed is ``ready``.
"""

from __future__ import annotations

import json
import sys

import grpc

METHOD = "/echo.Echo/Who"


Metadata = tuple[tuple[str, str | bytes], ...]


def call(stub: grpc.UnaryUnaryMultiCallable[bytes, bytes], metadata: Metadata) -> str:
    try:
        return stub(b"", timeout=5, wait_for_ready=True, metadata=metadata).decode()
    except grpc.RpcError as exc:
        return f"error: {exc.code().name}"


def main(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        stub: grpc.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(METHOD)
        print("ready", flush=True)
        for line in sys.stdin:
            command, *arguments = line.split()
            if command == "call":
                count = int(arguments[0]) if arguments else 1
                pairs = (a.partition("=") for a in arguments[1:])
                metadata: Metadata = tuple((key, value) for key, _, value in pairs)
                answers = [call(stub, metadata) for _ in range(count)]
                print(json.dumps(answers), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
