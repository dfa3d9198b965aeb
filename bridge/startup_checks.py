"""Security warnings at start-up: settings that work, but expose more than they should.

Each function returns the warning lines (empty: nothing to say); the bridge logs them at WARNING.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from collections.abc import Mapping

from .values import parse_host_port


def key_file_warnings(key_files: Mapping[str, str]) -> list[str]:
    """A private key (setting → path) that every user of the host may read."""
    warnings = []
    for setting, path in key_files.items():
        if not path:
            continue
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue  # unreadable files are the settings check's business
        if mode & stat.S_IROTH:
            warnings.append(
                f"{setting}: the private key {path} is readable by every user on this host "
                f"(mode {stat.S_IMODE(mode):04o}); restrict it, e.g. chmod 600"
            )
    return warnings


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def admin_warnings(listen: str, debug_token: str) -> list[str]:
    """An admin listener reachable from other hosts whose ``/debug/*`` needs no token."""
    host = parse_host_port(listen).host
    if is_loopback(host) or debug_token:
        return []
    return [
        f"admin.listen {listen} is not a loopback address and admin.debug_token is empty: "
        "anyone who can reach it reads /debug/* (node ids, every node's configuration, the "
        "Consul watches); set admin.debug_token (CONSUL_XDS_BRIDGE_ADMIN_DEBUG_TOKEN)"
    ]
