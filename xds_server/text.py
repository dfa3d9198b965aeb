"""Untrusted text shown to operators (log lines, debug views, metric labels), cut to a length
that keeps a line a line: a 4 MiB node id or NACK message must not become a 4 MiB log line."""

from __future__ import annotations

#: Node ids, names and values in log lines and debug views.
SHORT = 120
#: Messages (an Envoy NACK's error detail) in log lines and debug views.
LONG = 1024


def clip(text: str, limit: int = SHORT) -> str:
    """``text`` when it fits in ``limit`` characters, else its start and how much was cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…(+{len(text) - limit} chars)"
