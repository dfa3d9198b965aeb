"""Durations as Consul's config entry API returns them: Go duration strings or integer ns."""

from __future__ import annotations

import re

_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``"5s"``, ``"1m30s"``, ``"250ms"``, ``"0"``).

    Raises ``ValueError`` for anything Go's ``time.ParseDuration`` would refuse.
    """
    body, sign = text, 1.0
    if body[:1] in ("+", "-"):
        sign = -1.0 if body[0] == "-" else 1.0
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = 0.0, 0
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    return sign * total


def parse_duration_value(raw: object) -> float:
    """A JSON duration → seconds: a Go duration string, or a number of nanoseconds.

    Consul returns resolver and router timeouts as strings but passive health check and cookie
    durations as integer nanoseconds; both forms are read everywhere.
    """
    if isinstance(raw, bool):
        raise ValueError(f"expected a duration, got {raw!r}")
    if isinstance(raw, int | float):
        return float(raw) / 1e9
    if isinstance(raw, str):
        return parse_go_duration(raw.strip()) if raw.strip() else 0.0
    raise ValueError(f"expected a duration, got {type(raw).__name__}")
