"""The image's HEALTHCHECK: GET /healthz on the admin listener wherever admin.listen put it.

Where the bridge listens is read as the bridge reads it: the ``--admin-listen`` flag of the
running command (``/proc/1/cmdline``: the entrypoint execs the bridge as PID 1), else
``CONSUL_XDS_BRIDGE_ADMIN_LISTEN``, else what the entrypoint chooses (port 9102). A wildcard
host (``0.0.0.0``, ``::``) is reached on loopback. Only the standard library: exit 0 healthy,
1 not. ``admin.listen`` set in a config file is not seen: set it with the variable instead.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

DEFAULT = "127.0.0.1:9102"
FLAG = "--admin-listen"


def from_command_line(arguments: list[str]) -> str | None:
    for i, argument in enumerate(arguments):
        if argument == FLAG and i + 1 < len(arguments):
            return arguments[i + 1]
        if argument.startswith(FLAG + "="):
            return argument[len(FLAG) + 1 :]
    return None


def admin_address(cmdline: Path, environ: dict[str, str]) -> str:
    try:
        arguments = cmdline.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        arguments = []
    return from_command_line(arguments) or environ.get("CONSUL_XDS_BRIDGE_ADMIN_LISTEN") or DEFAULT


def health_url(listen: str) -> str:
    host, _, port = listen.strip().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"


def main() -> int:
    cmdline = Path(os.environ.get("CONSUL_XDS_BRIDGE_HEALTHCHECK_CMDLINE", "/proc/1/cmdline"))
    url = health_url(admin_address(cmdline, dict(os.environ)))
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            healthy = response.status == 200
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}", file=sys.stderr)
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
