"""Binding the bridge's listeners exclusively, and saying in one line why one cannot be bound.

Two bridges must never share a port: with ``SO_REUSEPORT`` the kernel would split Envoys between
them. The xDS server is started without it (``grpc.so_reuseport`` 0) and the admin listener never
asks for it, so a port in use is an error at start, reported with the setting's key.
"""

from __future__ import annotations

import errno
import socket

from .config import ConfigError

_HINTS = {
    errno.EADDRINUSE: "the port is in use (another bridge, or another process, listens there)",
    errno.EADDRNOTAVAIL: "not an address of this host",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def display(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _why(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"not an IP address or a name this host resolves ({exc.strerror or exc})"
    return _HINTS.get(exc.errno or 0, exc.strerror or str(exc))


def bind_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on now (None: it can), found by binding a probe
    socket as a listener would (``SO_REUSEADDR``: connections in TIME_WAIT do not count, a
    listening socket does)."""
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        return _why(exc)
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return _why(exc)
    return None


def check_free(key: str, host: str, port: int) -> None:
    """Raise :class:`ConfigError` naming ``key`` when ``host:port`` cannot be listened on
    (before a server tries: gRPC would add lines of its own to the one-line error)."""
    problem = bind_problem(host, port)
    if problem is not None:
        raise ConfigError(key, f"cannot listen on {display(host, port)}: {problem}")


def listen_error(key: str, host: str, port: int, fallback: BaseException) -> ConfigError:
    """The start-up error for a listener that could not be bound: the key, the address, why."""
    why = bind_problem(host, port) or " ".join(str(fallback).split()) or type(fallback).__name__
    return ConfigError(key, f"cannot listen on {display(host, port)}: {why}")
