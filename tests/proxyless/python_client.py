"""A proxyless grpc-python client driven by the tests (the twin of ``tests/node/xds_client.js``).

Usage: ``GRPC_XDS_BOOTSTRAP=bootstrap.json python -m tests.proxyless.python_client TARGET``.
Prints JSON lines on stdout; the first is ``{"event": "ready", "grpcio": <version>}``. Then one
command per stdin line:

* ``call N [TARGET]``: N unary calls of ``/echo.Echo/Who`` (wait-for-ready, 5 s deadline each)
  on one long-lived channel per target (the first target by default); prints
  ``{"event": "calls", "answers": [...]}``, a failed call being ``error: <CODE>: <details>``;
* ``try N [TARGET]``: the same, failing fast (no wait-for-ready, 2 s deadline): what an
  application without wait-for-ready sees.

EOF ends the process (``GRPC_XDS_BOOTSTRAP`` is read once per process: one client, one node).
"""

from __future__ import annotations

import json
import sys

import grpc

METHOD = "/echo.Echo/Who"


def call(stub: grpc.UnaryUnaryMultiCallable[bytes, bytes], fail_fast: bool) -> str:
    try:
        reply = stub(b"", timeout=2 if fail_fast else 5, wait_for_ready=not fail_fast)
    except grpc.RpcError as exc:
        return f"error: {exc.code().name}: {exc.details()}"
    return reply.decode()


def main(default_target: str) -> None:
    channels: dict[str, grpc.Channel] = {}
    stubs: dict[str, grpc.UnaryUnaryMultiCallable[bytes, bytes]] = {}

    def stub(target: str) -> grpc.UnaryUnaryMultiCallable[bytes, bytes]:
        if target not in stubs:
            channels[target] = grpc.insecure_channel(target)
            stubs[target] = channels[target].unary_unary(METHOD)
        return stubs[target]

    stub(default_target)
    print(json.dumps({"event": "ready", "grpcio": grpc.__version__}), flush=True)
    try:
        for line in sys.stdin:
            command, *arguments = line.split()
            if command in ("call", "try"):
                count = int(arguments[0]) if arguments else 1
                target = arguments[1] if len(arguments) > 1 else default_target
                answers = [call(stub(target), command == "try") for _ in range(count)]
                print(json.dumps({"event": "calls", "answers": answers}), flush=True)
            elif command:
                print(json.dumps({"event": "error", "message": f"unknown {command!r}"}), flush=True)
    finally:
        for channel in channels.values():
            channel.close()


if __name__ == "__main__":
    main(sys.argv[1])
