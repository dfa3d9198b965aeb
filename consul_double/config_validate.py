"""``Normalize`` and ``Validate`` of the config entry kinds, with Consul's messages.

Sources: ``agent/structs/config_entry.go`` (service-defaults, proxy-defaults, upstream config,
passive health checks and limits) and ``agent/structs/config_entry_discoverychain.go`` (router,
splitter, resolver). The server runs both before the raft apply
(``agent/consul/config_endpoint.go`` ``Apply``); their errors reach the HTTP client as a 500
with the message as plain text (``agent/http.go`` ``wrap``). What the double checks is listed
here; the rest of Consul's checks (Meta sizes, Enterprise-only fields, Connect-only settings)
are not made.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from .config_schema import fail as _fail
from .config_schema import float32, go_quote, multierror
from .resolver_validate import check_service_resolver

HTTP_LIKE = ("http", "http2", "grpc")  # ``IsProtocolHTTPLike``
_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE")
_RETRY_ON = (
    "5xx",
    "gateway-error",
    "reset",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
)


def normalize_and_validate(kind: str, body: dict[str, Any]) -> None:
    """Apply ``Normalize`` then ``Validate`` to a decoded entry in place."""
    _CHECKS[kind](body)


def normalize_name(kind: str, name: str) -> str:
    """The name a delete or read of ``kind`` stands for (proxy-defaults: always ``global``)."""
    if kind == "proxy-defaults":
        _proxy_name(name)
        return "global"
    return name


def _proxy_name(name: str) -> None:
    if name not in ("", "global"):
        raise _fail(f'invalid name ({go_quote(name)}), only "global" is supported')


def _set_hash(body: dict[str, Any]) -> None:
    # Consul hashes the struct with hashstructure; the double hashes the canonical JSON (a
    # different number, with the same property: it changes with the content).
    content = {k: v for k, v in body.items() if k != "Hash"}
    digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).digest()
    body["Hash"] = int.from_bytes(digest[:8], "big")


# -- service-defaults and proxy-defaults -----------------------------------------------------


def _service_defaults(body: dict[str, Any]) -> None:
    body["Protocol"] = str(body.get("Protocol", "")).lower()
    upstream = body.get("UpstreamConfig")
    problems: list[str] = []
    if upstream is not None:
        for override in upstream.get("Overrides", []):
            _normalize_upstream(override)
        if "Defaults" in upstream:
            _normalize_upstream(upstream["Defaults"])
    _set_hash(body)
    name = body.get("Name", "")
    if not name:
        raise _fail("Name is required")
    if name == "*":
        raise _fail("service-defaults name must be the name of a service, and not a wildcard")
    if body.get("BalanceInboundConnections", "") not in ("", "exact_balance"):
        value = body["BalanceInboundConnections"]
        problems.append(f"invalid value for balance_inbound_connections: {value}")
    if upstream is not None and body.get("Destination") is not None:
        problems.append(
            "UpstreamConfig and Destination are mutually exclusive for service defaults"
        )
        raise _fail(multierror(problems))
    if upstream is not None:
        for override in upstream.get("Overrides", []):
            error = _upstream_problem(override, named=True)
            if error:
                label = override.get("Name", "")
                problems.append(f"error in upstream override for {label}: {error}")
        if "Defaults" in upstream:
            error = _upstream_problem(upstream["Defaults"], named=False)
            if error:
                problems.append(f"error in upstream defaults: {error}")
    mode = body.get("MutualTLSMode", "")
    if mode not in ("", "strict", "permissive"):
        raise _fail(
            f'Invalid MutualTLSMode {go_quote(mode)}. Must be one of "", "strict", or "permissive".'
        )
    if problems:
        raise _fail(multierror(problems))


def _normalize_upstream(config: dict[str, Any]) -> None:
    if "Protocol" in config:
        config["Protocol"] = str(config["Protocol"]).lower()
    if config.get("ConnectTimeoutMs", 0) < 0:
        config["ConnectTimeoutMs"] = 0


def _upstream_problem(config: dict[str, Any], *, named: bool) -> str:
    name = config.get("Name", "")
    if named and not name:
        return "Name is required"
    if named and name == "*":
        return "Wildcard name is not supported"
    if not named and name:
        return "Name must be empty"
    problems = []
    check = config.get("PassiveHealthCheck")
    if check is not None:
        if check.get("Interval", 0) < 0:
            problems.append("passive health check interval cannot be negative")
        elif check.get("EnforcingConsecutive5xx", 0) > 100:
            problems.append(
                "passive health check enforcing_consecutive_5xx must be a percentage "
                "between 0 and 100"
            )
        elif check.get("MaxEjectionPercent", 0) > 100:
            problems.append(
                "passive health check max_ejection_percent must be a percentage between 0 and 100"
            )
        elif check.get("BaseEjectionTime", 0) < 0:
            problems.append("passive health check base_ejection_time cannot be negative")
    limits = config.get("Limits")
    if limits is not None:
        for key, words in (
            ("MaxConnections", "max connections"),
            ("MaxPendingRequests", "max pending requests"),
            ("MaxConcurrentRequests", "max concurrent requests"),
        ):
            if limits.get(key, 0) < 0:
                problems.append(f"{words} cannot be negative")
                break
    balance = config.get("BalanceOutboundConnections", "")
    if balance not in ("", "exact_balance"):
        problems.append(f"invalid value for balance_outbound_connections: {balance}")
    return multierror(problems) if problems else ""


def _proxy_defaults(body: dict[str, Any]) -> None:
    _proxy_name(body.get("Name", ""))
    body["Name"] = "global"
    _set_hash(body)


# -- service-router --------------------------------------------------------------------------


def _service_router(body: dict[str, Any]) -> None:
    routes = body.get("Routes", [])
    for route in routes:
        methods = route.get("Match", {}).get("HTTP", {}).get("Methods")
        if methods:
            route["Match"]["HTTP"]["Methods"] = [m.upper() for m in methods]
    if not body.get("Name"):
        raise _fail("Name is required")
    for i, route in enumerate(routes):
        prefix_rewrite_ok = False
        http = route.get("Match", {}).get("HTTP")
        if http is not None:
            prefix_rewrite_ok = _check_http_match(i, http)
        destination = route.get("Destination")
        if destination is not None:
            if destination.get("PrefixRewrite") and not prefix_rewrite_ok:
                raise _fail(
                    f"Route[{i}] cannot make use of PrefixRewrite without configuring either "
                    "PathExact or PathPrefix"
                )
            for condition in destination.get("RetryOn", []):
                if condition not in _RETRY_ON:
                    raise _fail(
                        f"Route[{i}] contains an invalid retry condition: {go_quote(condition)}"
                    )


def _check_http_match(i: int, http: dict[str, Any]) -> bool:
    """Validate one route's HTTP match; True when it allows a PrefixRewrite."""
    paths = 0
    for key in ("PathExact", "PathPrefix"):
        if http.get(key):
            paths += 1
            if not http[key].startswith("/"):
                raise _fail(f"Route[{i}] {key} doesn't start with '/': {go_quote(http[key])}")
    if http.get("PathRegex"):
        paths += 1
    if paths > 1:
        raise _fail(
            f"Route[{i}] should only contain at most one of PathExact, PathPrefix, or PathRegex"
        )
    for j, header in enumerate(http.get("Header", [])):
        if not header.get("Name"):
            raise _fail(f"Route[{i}] Header[{j}] missing required Name field")
        parts = sum(bool(header.get(k)) for k in ("Present", "Exact", "Regex", "Prefix", "Suffix"))
        if parts != 1:
            raise _fail(
                f"Route[{i}] Header[{j}] should only contain one of Present, Exact, Prefix, "
                "Suffix, or Regex"
            )
    for j, param in enumerate(http.get("QueryParam", [])):
        if not param.get("Name"):
            raise _fail(f"Route[{i}] QueryParam[{j}] missing required Name field")
        if sum(bool(param.get(k)) for k in ("Present", "Exact", "Regex")) != 1:
            raise _fail(
                f"Route[{i}] QueryParam[{j}] should only contain one of Present, Exact, or Regex"
            )
    seen: set[str] = set()
    for method in http.get("Methods", []):
        if method not in _METHODS:
            raise _fail(f"Route[{i}] Methods contains an invalid method {go_quote(method)}")
        if method in seen:
            raise _fail(f"Route[{i}] Methods contains {go_quote(method)} more than once")
        seen.add(method)
    return bool(http.get("PathExact") or http.get("PathPrefix"))


# -- service-splitter ------------------------------------------------------------------------


def scaled_weight(weight: float) -> int:
    """``scaleWeight``: a weight in units of 0.01% (the float32 product, rounded)."""
    return int(round(float32(weight * 100.0)))  # noqa: RUF046 - Go's math.Round semantics


def _service_splitter(body: dict[str, Any]) -> None:
    splits = body.get("Splits", [])
    for split in splits:
        split["Weight"] = float32(scaled_weight(split.get("Weight", 0.0)) / 100.0)
    name = body.get("Name", "")
    if not name:
        raise _fail("Name is required")
    if not splits:
        raise _fail("no splits configured")
    seen: set[tuple[str, str, str, str]] = set()
    for split in splits:
        key = (
            split.get("Service") or name,
            split.get("ServiceSubset", ""),
            split.get("Namespace", ""),
            split.get("Partition", ""),
        )
        if key in seen:
            service, subset, namespace, partition = (go_quote(k) for k in key)
            raise _fail(
                "split destination occurs more than once: "
                f"service={service}, subset={subset}, namespace={namespace}, partition={partition}"
            )
        seen.add(key)
    total = sum(scaled_weight(s.get("Weight", 0.0)) for s in splits)
    if total != 10000:
        raise _fail(f"the sum of all split weights must be 100, not {float32(total / 100):f}")


_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "service-defaults": _service_defaults,
    "proxy-defaults": _proxy_defaults,
    "service-router": _service_router,
    "service-splitter": _service_splitter,
    "service-resolver": check_service_resolver,
}
