"""The rules one entry must follow on its own (Consul's ``Validate``, plus what Envoy would refuse).

Consul checks most of these when an entry is written; the bridge checks them again because an
entry it cannot turn into valid Envoy config must be quarantined, never pushed (one bad regex or
header name makes Envoy reject a whole route configuration). Rules that need other entries
(subsets named elsewhere, redirect cycles, protocols) are the chain compiler's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from .entries import (
    HASH_BASED,
    ConfigEntry,
    HeaderModifiers,
    HttpMatch,
    LoadBalancer,
    ProxyDefaults,
    RouteDestination,
    ServiceDefaults,
    ServiceResolver,
    ServiceRouter,
    ServiceSplitter,
)
from .problems import EntryProblem
from .regex import re2_problem

SUBSET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
HEADER_NAME = re.compile(r"^[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
HEADER_VALUE = re.compile(r"^[^\x00\n\r]*$")
_LOOSE_NAME = re.compile(r"^:?[0-9a-zA-Z!#$%&'*+\-.^_|~`]+$")
METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"}
)
RETRY_ON = frozenset(
    {
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
    }
)
LB_POLICIES = frozenset({"", "random", "round_robin", "least_request", "ring_hash", "maglev"})
HASH_FIELDS = frozenset({"header", "cookie", "query_parameter"})
MAX_RING_SIZE = 8_388_608  # Envoy's limit on ring_hash_lb_config sizes
_PROTECTED_HEADERS = frozenset({"host"})  # plus every ":pseudo" header

Report = Callable[[str, str], None]


def validate_entry(entry: ConfigEntry) -> list[EntryProblem]:
    """Every rule ``entry`` breaks on its own, each naming the field."""
    problems: list[EntryProblem] = []

    def report(field: str, message: str) -> None:
        problems.append(EntryProblem(entry.kind, entry.name, field, message))

    if isinstance(entry, ProxyDefaults):
        if entry.name != "global":
            report("Name", f"proxy-defaults must be named 'global', not {entry.name!r}")
    elif isinstance(entry, ServiceDefaults):
        _service_defaults(entry, report)
    elif isinstance(entry, ServiceResolver):
        _resolver(entry, report)
    elif isinstance(entry, ServiceSplitter):
        _splitter(entry, report)
    else:
        _router(entry, report)
    return problems


# ------------------------------------------------------------------ shared
def _headers(mods: HeaderModifiers, path: str, report: Report) -> None:
    for name, value in (*mods.add, *mods.set):
        _header_name(name, path, report)
        if not HEADER_VALUE.match(value):
            report(path, f"header {name!r} has a value with a line break or NUL")
    for name in mods.remove:
        _header_name(name, f"{path}.Remove", report)


def _header_name(name: str, path: str, report: Report) -> None:
    if not HEADER_NAME.match(name):
        report(path, f"{name!r} is not a valid HTTP header name")
    elif name.lower() in _PROTECTED_HEADERS:
        report(path, f"header {name!r} cannot be modified")


def _matched_name(name: str, path: str, report: Report) -> None:
    """A header Envoy reads (pseudo-headers such as ``:authority`` included)."""
    if not name:
        report(path, "a header name is required")
    elif not _LOOSE_NAME.match(name):
        report(path, f"{name!r} is not a usable header name")


def _regex(pattern: str, path: str, report: Report) -> None:
    problem = re2_problem(pattern)
    if problem:
        report(path, f"{problem}: {pattern!r}")


def _exactly_one(values: Iterable[Any], names: str, path: str, report: Report) -> None:
    count = sum(1 for v in values if v)
    if count != 1:
        report(path, f"set exactly one of {names} (found {count})")


# ------------------------------------------------------------------ service-defaults
def _service_defaults(entry: ServiceDefaults, report: Report) -> None:
    configs = [("UpstreamConfig.Defaults", entry.upstream_defaults)]
    configs += [
        (f"UpstreamConfig.Overrides[{i}]", o) for i, o in enumerate(entry.upstream_overrides)
    ]
    for path, config in configs:
        if config is None:
            continue
        if path.endswith("Defaults") and config.name:
            report(f"{path}.Name", "Defaults must not have a Name")
        if not path.endswith("Defaults") and not config.name:
            report(f"{path}.Name", "an override needs the Name of the upstream it applies to")


# ------------------------------------------------------------------ service-resolver
def _resolver(entry: ServiceResolver, report: Report) -> None:
    names = {name for name, _ in entry.subsets}
    for name in names:
        if not SUBSET_NAME.match(name) or len(name) > 63:
            report(f"Subsets[{name}]", "a subset name must be a DNS label ([a-z0-9-], 63 chars)")
    if entry.default_subset and entry.default_subset not in names:
        report("DefaultSubset", f"{entry.default_subset!r} is not a defined subset")
    redirect = entry.redirect
    if redirect is not None:
        if entry.failover:
            report("Redirect", "Redirect and Failover cannot both be set")
        if not (redirect.service or redirect.service_subset or redirect.datacenter):
            report("Redirect", "a redirect must set Service, ServiceSubset or Datacenter")
        if redirect.service_subset and not redirect.service:
            report("Redirect.ServiceSubset", "a redirect to a subset must name its Service")
        same = redirect.service in ("", entry.name)
        if redirect.service_subset and same and redirect.service_subset not in names:
            report("Redirect.ServiceSubset", f"{redirect.service_subset!r} is not a defined subset")
    for key, failover in entry.failover:
        path = f"Failover[{key}]"
        if key != "*" and key not in names:
            report(path, f"{key!r} is neither '*' nor a defined subset")
        if not (
            failover.service or failover.service_subset or failover.datacenters or failover.targets
        ):
            report(path, "set one of Service, ServiceSubset, Datacenters or Targets")
        if failover.targets and (
            failover.datacenters or failover.service or failover.service_subset
        ):
            report(f"{path}.Targets", "Targets cannot be combined with Datacenters/Service/Subset")
        if any(not dc for dc in failover.datacenters):
            report(f"{path}.Datacenters", "datacenter names must not be empty")
        for i, target in enumerate(failover.targets):
            if not (target.service or target.service_subset or target.datacenter):
                report(f"{path}.Targets[{i}]", "a target must set Service, Subset or Datacenter")
    if entry.load_balancer is not None:
        _load_balancer(entry.load_balancer, report)


def _load_balancer(lb: LoadBalancer, report: Report) -> None:
    if lb.policy not in LB_POLICIES:
        known = ", ".join(sorted(p for p in LB_POLICIES if p))
        report("LoadBalancer.Policy", f"unknown policy {lb.policy!r} (known: {known})")
        return
    if (lb.minimum_ring_size or lb.maximum_ring_size) and lb.policy != "ring_hash":
        report("LoadBalancer.RingHashConfig", "only allowed with the ring_hash policy")
    for size, name in ((lb.minimum_ring_size, "Minimum"), (lb.maximum_ring_size, "Maximum")):
        if size > MAX_RING_SIZE:
            report(f"LoadBalancer.RingHashConfig.{name}RingSize", f"at most {MAX_RING_SIZE}")
    if lb.maximum_ring_size and lb.minimum_ring_size > lb.maximum_ring_size:
        report("LoadBalancer.RingHashConfig", "MinimumRingSize exceeds MaximumRingSize")
    if lb.choice_count and lb.policy != "least_request":
        report("LoadBalancer.LeastRequestConfig", "only allowed with the least_request policy")
    if lb.choice_count == 1:
        report("LoadBalancer.LeastRequestConfig.ChoiceCount", "must be at least 2")
    if lb.hash_policies and lb.policy not in HASH_BASED:
        report("LoadBalancer.HashPolicies", "only allowed with the ring_hash or maglev policy")
    for i, policy in enumerate(lb.hash_policies):
        path = f"LoadBalancer.HashPolicies[{i}]"
        if policy.source_ip:
            if policy.field or policy.field_value:
                report(path, "SourceIP cannot be combined with Field/FieldValue")
        elif policy.field not in HASH_FIELDS:
            report(f"{path}.Field", f"must be header, cookie or query_parameter: {policy.field!r}")
        elif not policy.field_value:
            report(f"{path}.FieldValue", f"a {policy.field} hash policy needs a FieldValue")
        elif policy.field == "header":
            _matched_name(policy.field_value, f"{path}.FieldValue", report)
        if policy.cookie is not None:
            if policy.field != "cookie":
                report(f"{path}.CookieConfig", "only allowed with Field 'cookie'")
            if policy.cookie.session and policy.cookie.ttl:
                report(f"{path}.CookieConfig", "Session and TTL cannot both be set")


# ------------------------------------------------------------------ service-splitter
def _splitter(entry: ServiceSplitter, report: Report) -> None:
    if not entry.splits:
        report("Splits", "a splitter needs at least one split")
        return
    seen: set[tuple[str, str]] = set()
    for i, split in enumerate(entry.splits):
        path = f"Splits[{i}]"
        if not 0 <= split.weight <= 100:
            report(f"{path}.Weight", f"must be from 0 to 100, got {split.weight:g}")
        key = (split.service or entry.name, split.service_subset)
        if key in seen:
            report(path, f"the split to {key[0]!r} subset {key[1]!r} appears twice")
        seen.add(key)
        _headers(split.request_headers, f"{path}.RequestHeaders", report)
        _headers(split.response_headers, f"{path}.ResponseHeaders", report)
    total = sum(round(split.weight * 100) for split in entry.splits)
    if total != 10000:
        report("Splits", f"the weights must sum to 100, not {total / 100:g}")


# ------------------------------------------------------------------ service-router
def _router(entry: ServiceRouter, report: Report) -> None:
    for i, route in enumerate(entry.routes):
        path = f"Routes[{i}]"
        if route.match is not None:
            _match(route.match, f"{path}.Match.HTTP", report)
        if route.destination is not None:
            _destination(route.destination, route.match, f"{path}.Destination", report)


def _match(match: HttpMatch, path: str, report: Report) -> None:
    paths = [match.path_exact, match.path_prefix, match.path_regex]
    if sum(1 for p in paths if p) > 1:
        report(path, "set at most one of PathExact, PathPrefix and PathRegex")
    for value, name in ((match.path_exact, "PathExact"), (match.path_prefix, "PathPrefix")):
        if value and not value.startswith("/"):
            report(f"{path}.{name}", f"must start with '/': {value!r}")
    if match.path_regex:
        _regex(match.path_regex, f"{path}.PathRegex", report)
    for i, header in enumerate(match.headers):
        where = f"{path}.Header[{i}]"
        _matched_name(header.name, f"{where}.Name", report)
        kinds = (header.present, header.exact, header.prefix, header.suffix, header.regex)
        _exactly_one(kinds, "Present, Exact, Prefix, Suffix, Regex", where, report)
        if header.regex:
            _regex(header.regex, f"{where}.Regex", report)
    for i, param in enumerate(match.query_params):
        where = f"{path}.QueryParam[{i}]"
        if not param.name:
            report(f"{where}.Name", "a query parameter match needs a Name")
        _exactly_one(
            (param.present, param.exact, param.regex), "Present, Exact, Regex", where, report
        )
        if param.regex:
            _regex(param.regex, f"{where}.Regex", report)
    seen: set[str] = set()
    for method in match.methods:
        if method not in METHODS:
            report(f"{path}.Methods", f"unknown HTTP method {method!r}")
        if method in seen:
            report(f"{path}.Methods", f"{method} is listed twice")
        seen.add(method)


def _destination(
    dest: RouteDestination, match: HttpMatch | None, path: str, report: Report
) -> None:
    if dest.prefix_rewrite and (match is None or not (match.path_exact or match.path_prefix)):
        report(f"{path}.PrefixRewrite", "only allowed with a PathExact or PathPrefix match")
    for value in dest.retry_on:
        if value not in RETRY_ON:
            report(f"{path}.RetryOn", f"unknown retry condition {value!r}")
    for code in dest.retry_on_status_codes:
        if not 100 <= code <= 599:
            report(f"{path}.RetryOnStatusCodes", f"{code} is not an HTTP status code")
    _headers(dest.request_headers, f"{path}.RequestHeaders", report)
    _headers(dest.response_headers, f"{path}.ResponseHeaders", report)
