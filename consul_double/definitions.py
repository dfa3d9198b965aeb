"""Service, check and node definitions as the write endpoints take them (keys matched
case-insensitively, as Consul's decoder does), and the errors of malformed ones."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import STATUSES, Service


class UnknownDatacenterError(KeyError):
    pass


class InvalidRequestError(ValueError):
    """A malformed write (HTTP 400)."""


def lower_keys(raw: Any) -> dict[str, Any]:
    """Consul matches JSON keys case-insensitively (and accepts snake_case): normalize them."""
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("Request decode failed: expected a JSON object")
    return {str(k).replace("_", "").lower(): v for k, v in raw.items()}


def str_map(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
        raise InvalidRequestError(f"Request decode failed: {what} must map strings to strings")
    return {str(k): v for k, v in raw.items()}


def tags_of(raw: Any) -> list[str]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, str) for t in raw):
        raise InvalidRequestError("Request decode failed: Tags must be a list of strings")
    return list(raw)


def weights_of(raw: Any) -> dict[str, int]:
    if raw is None:
        return {"Passing": 1, "Warning": 1}
    w = lower_keys(raw)
    try:
        passing, warning = int(w.get("passing", 0)), int(w.get("warning", 0))
    except (TypeError, ValueError):
        raise InvalidRequestError("Request decode failed: Weights must be integers") from None
    if passing < 1:
        raise InvalidRequestError("Passing must be greater than 0")
    return {"Passing": passing, "Warning": warning}


def port_of(raw: Any) -> int:
    try:
        port = int(raw or 0)
    except (TypeError, ValueError):
        raise InvalidRequestError("Request decode failed: Port must be an integer") from None
    if not 0 <= port <= 65535:
        raise InvalidRequestError(f"Invalid port {port}")
    return port


def status_of(raw: Any, default: str = "critical") -> str:
    status = raw or default
    if status not in STATUSES:
        raise InvalidRequestError(f"Invalid check status: {status!r}")
    return str(status)


def tagged_addresses_of(raw: Any) -> dict[str, dict[str, Any]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise InvalidRequestError("Request decode failed: TaggedAddresses must be an object")
    out = {}
    for key, value in raw.items():
        v = lower_keys(value)
        out[str(key)] = {"Address": str(v.get("address", "")), "Port": port_of(v.get("port"))}
    return out


def service_of(node: str, service_id: str, name: str, d: Mapping[str, Any]) -> Service:
    """A service definition (keys lower-cased), as the agent and catalog endpoints take it."""
    return Service(
        node,
        service_id,
        name,
        tags=tags_of(d.get("tags")),
        address=str(d.get("address") or ""),
        port=port_of(d.get("port")),
        meta=str_map(d.get("meta"), "Meta"),
        weights=weights_of(d.get("weights")),
        tagged_addresses=tagged_addresses_of(d.get("taggedaddresses")),
        enable_tag_override=bool(d.get("enabletagoverride", False)),
        kind=str(d.get("kind") or ""),
    )
