"""Consul request failures as one readable line: the cause first, then the datacenter and path.

``describe_consul_error(exc, "dc1", "/v1/health/service/web")`` turns what aiohttp, the JSON
decoder or a body of the wrong shape raise into, e.g.::

    connection refused by 127.0.0.1:1 (dc dc1, /v1/health/service/web)
    not a Consul HTTP API: the answer is not JSON (dc dc1, /v1/catalog/services)

The exception chain is followed (``__cause__``, else ``__context__``), so a wrapper raised
``from`` (or while handling) the transport error is described by that error. Pure: no I/O.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any

import aiohttp

NOT_CONSUL = "not a Consul HTTP API"
MAX_DETAIL = 200

#: HTTP statuses Consul answers with, and what they mean to an operator.
_STATUS = {
    400: "Consul refused the request as malformed (400)",
    403: "permission denied (403): the ACL token lacks read rights here",
    404: "not found (404)",
    429: "rate limited by Consul (429)",
    500: "Consul server error (500)",
    502: "bad gateway (502) between the bridge and Consul",
    503: "Consul unavailable (503): no leader or the agent is starting",
    504: "gateway timeout (504) between the bridge and Consul",
}


def describe_consul_error(exc: BaseException, datacenter: str, path: str) -> str:
    """One line: the cause, then ``(dc <datacenter>, <path>)``."""
    where = f"dc {datacenter}" if datacenter else "local dc"
    return f"{_cause(exc)} ({where}, {path or '/'})"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and what caused it, outermost first (bounded: chains can loop)."""
    chain = [exc]
    while len(chain) < 10:
        inner = chain[-1].__cause__ or chain[-1].__context__
        if inner is None or inner in chain:
            break
        chain.append(inner)
    return chain


def _cause(exc: BaseException) -> str:
    chain = _chain(exc)
    for link in chain:  # the outermost failure the bridge knows (wrappers of ours are skipped)
        found = _known(link)
        if found is not None:
            return found
    status = _status_of(chain)
    if status is not None:
        return _STATUS.get(status, f"HTTP {status} from Consul")
    return _plain(exc)


def _status_of(chain: list[BaseException]) -> int | None:
    for link in chain:
        status = getattr(link, "status", None)
        if isinstance(status, int) and status >= 400:
            return status
    return None


def _known(exc: BaseException) -> str | None:
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of {_address(exc)} not accepted: {_reason(exc.certificate_error)}"
    if isinstance(exc, aiohttp.ClientConnectorSSLError | aiohttp.ClientSSLError):
        return f"TLS handshake with {_address(exc)} failed: {_reason(exc.os_error)}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{_os_reason(exc.os_error)} {_address(exc)}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "Consul closed the connection before answering"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "the answer was cut short"
    if isinstance(exc, aiohttp.ClientResponseError):
        return _STATUS.get(exc.status, f"HTTP {exc.status} from Consul")
    if isinstance(exc, TimeoutError):
        return "no answer within the request timeout"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed: {_reason(exc)}"
    if isinstance(exc, json.JSONDecodeError | aiohttp.ContentTypeError | UnicodeDecodeError):
        return f"{NOT_CONSUL}: the answer is not JSON"
    if isinstance(exc, TypeError | KeyError | IndexError | AttributeError):
        return f"{NOT_CONSUL}: the answer is JSON of an unexpected shape"
    if isinstance(exc, ConnectionResetError):
        return "the connection was reset"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror).lower()
    return None


def _address(exc: Any) -> str:
    host, port = getattr(exc, "host", ""), getattr(exc, "port", None)
    if not host:
        return "Consul"
    host = f"[{host}]" if ":" in host else host
    return f"{host}:{port}" if port else host


def _os_reason(error: OSError | None) -> str:
    """``connection refused by`` / ``cannot resolve`` ... reading well before an address."""
    if error is None:
        return "cannot connect to"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused by"
    text = str(error.strerror or error).lower()
    if "name or service not known" in text or "nodename nor servname" in text:
        return "cannot resolve"
    if isinstance(error, TimeoutError) or "timed out" in text:
        return "connect timed out to"
    return f"cannot connect ({text}) to"


def _reason(error: Any) -> str:
    reason = getattr(error, "verify_message", None) or getattr(error, "reason", None)
    return _short(str(reason or error))


def _plain(exc: BaseException) -> str:
    text = _short(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _short(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= MAX_DETAIL else line[: MAX_DETAIL - 1] + "…"


def consul_shape_problem(path: str, body: Any) -> str | None:
    """Why ``body`` cannot be Consul's answer to ``path`` (None: it can). Checks the endpoints
    the bridge reads, so a bridge pointed at another HTTP server says so at once."""
    if path.startswith("/v1/agent/self"):
        ok = isinstance(body, Mapping) and isinstance(body.get("Config"), Mapping)
        return None if ok else f"{NOT_CONSUL}: /v1/agent/self has no Config object"
    if path.startswith("/v1/catalog/services"):
        ok = isinstance(body, Mapping) and all(isinstance(v, list) for v in body.values())
        return None if ok else f"{NOT_CONSUL}: expected an object of service → tags"
    if path.startswith(("/v1/health/service/", "/v1/health/state/")):
        ok = isinstance(body, list) and all(isinstance(e, Mapping) for e in body)
        return None if ok else f"{NOT_CONSUL}: expected a list of objects"
    if path.startswith("/v1/status/leader"):
        return None if isinstance(body, str) else f"{NOT_CONSUL}: the leader is not a string"
    return None
