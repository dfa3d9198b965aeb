"""Keeping secrets (the Consul ACL token, the admin debug token) inside the process.

* :func:`redact` is the one scrubbing function for every text that leaves: log lines, the Consul
  errors shown by ``/debug/consul``, every admin body. It replaces each known secret, and any
  value following an ``X-Consul-Token`` or ``Authorization`` header name (as aiohttp's
  exception texts print request headers), with ``[redacted]``.
* :func:`refused_redirect` is the Consul client's redirect policy: none is followed. Consul's
  HTTP API does not redirect; a redirect comes from something in between (a proxy, a captive
  portal, an attacker), and following it would hand the ``X-Consul-Token`` header to whatever
  ``Location`` names -- possibly over plain HTTP. The error names only the target's origin.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

REDACTED = "[redacted]"
MIN_SECRET = 4  # shorter values would blank out ordinary words

_HEADER_VALUE = re.compile(
    r"""(?ix)
    ( (?:x-consul-token|authorization) ['"]? \s* [:=] \s* ['"]? (?:bearer\s+)? )
    ( [^'"\s,)>\]}]+ )
    """
)


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (at least 4 characters) and every token-header value
    replaced by ``[redacted]``."""
    for secret in sorted({s for s in secrets if s and len(s) >= MIN_SECRET}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return _HEADER_VALUE.sub(lambda m: m.group(1) + REDACTED, text)


@dataclass
class Redactor:
    """A set of secrets and :func:`redact` over them, as a callable ``text -> text``."""

    secrets: set[str] = field(default_factory=set, repr=False)

    def add(self, *values: str | None) -> None:
        self.secrets.update(v for v in values if v and len(v) >= MIN_SECRET)

    def __call__(self, text: str) -> str:
        return redact(text, self.secrets)


REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


def origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` (no path, query or credentials), or ``?``."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "?"
    if not parts.scheme or not host:
        return "(a relative location)" if url else "(no Location)"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}{port}"


def refused_redirect(method: str, path: str, status: int, location: str | None) -> str | None:
    """The error text for a redirect answer (None: ``status`` is not a redirect)."""
    if not 300 <= status < 400:
        return None
    return (
        f"{method} {path}: HTTP {status} redirect to {origin(location or '')} not followed: "
        "Consul does not redirect API requests, and following one would send the ACL token "
        "to wherever it points (check consul.address)"
    )
