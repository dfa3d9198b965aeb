"""Durations as Consul's config entry API returns them: Go duration strings or integer ns."""

from __future__ import annotations

from ..values import parse_go_duration

__all__ = ["parse_duration_value", "parse_go_duration"]


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
