"""Config entries as ``GET /v1/config/<kind>[/<name>]`` returns them → typed entries + problems.

Only the fields that shape traffic are read (see :mod:`bridge.traffic.entries`); Connect-only
fields, ``Meta`` and the raft indexes are ignored. A value of the wrong type, a subset filter
that does not parse and a namespace, partition, peer or sameness group (which the bridge does not
implement) are problems naming the entry and the field. Semantic rules (weights summing to 100,
regexes, retry conditions, ...) are :mod:`bridge.traffic.validate`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .entries import (
    KINDS,
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    SERVICE_RESOLVER,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    ConfigEntry,
    CookieConfig,
    Failover,
    FailoverTarget,
    HashPolicy,
    HeaderMatch,
    HeaderModifiers,
    HttpMatch,
    LoadBalancer,
    PassiveHealthCheck,
    ProxyDefaults,
    QueryParamMatch,
    Redirect,
    Route,
    RouteDestination,
    ServiceDefaults,
    ServiceResolver,
    ServiceRouter,
    ServiceSplitter,
    Split,
    Subset,
    UpstreamConfig,
    UpstreamLimits,
)
from .filters import FilterError, parse_filter
from .json_fields import EntryFields, JsonObject, join
from .problems import EntryProblem


def decode_entry(raw: Any) -> tuple[ConfigEntry | None, list[EntryProblem]]:
    """One entry's JSON → (the entry, or None when it is unusable; its problems)."""
    if not isinstance(raw, Mapping):
        return None, [EntryProblem("", "", "", f"expected a config entry object, got {raw!r:.80}")]
    kind = raw.get("Kind")
    name = raw.get("Name")
    if not isinstance(kind, str) or kind not in KINDS:
        shown = name if isinstance(name, str) else ""
        message = f"unknown config entry kind {kind!r} (known: {', '.join(KINDS)})"
        return None, [EntryProblem(str(kind or ""), shown, "Kind", message)]
    if not isinstance(name, str) or not name:
        return None, [EntryProblem(kind, "", "Name", "a config entry needs a Name")]
    fields = EntryFields(kind, name)
    entry = _DECODERS[kind](fields, raw)
    return entry, fields.problems


# ------------------------------------------------------------------ service-/proxy-defaults
def _headers(f: EntryFields, obj: JsonObject, key: str, path: str) -> HeaderModifiers:
    raw = f.object(obj, key, path)
    if raw is None:
        return HeaderModifiers()
    where = join(path, key)
    return HeaderModifiers(
        add=f.string_map(raw, "Add", where),
        set=f.string_map(raw, "Set", where),
        remove=f.strings(raw, "Remove", where),
    )


def _upstream(f: EntryFields, raw: JsonObject, path: str) -> UpstreamConfig:
    limits = f.object(raw, "Limits", path)
    check = f.object(raw, "PassiveHealthCheck", path)
    timeout_ms = f.integer(raw, "ConnectTimeoutMs", path, maximum=2**31 - 1)
    return UpstreamConfig(
        name=f.string(raw, "Name", path),
        connect_timeout=timeout_ms / 1000 if timeout_ms else None,
        limits=None if limits is None else _limits(f, limits, join(path, "Limits")),
        passive_health_check=None
        if check is None
        else _passive_check(f, check, join(path, "PassiveHealthCheck")),
    )


def _limits(f: EntryFields, raw: JsonObject, path: str) -> UpstreamLimits:
    big = 2**31 - 1
    return UpstreamLimits(
        max_connections=f.integer(raw, "MaxConnections", path, maximum=big),
        max_pending_requests=f.integer(raw, "MaxPendingRequests", path, maximum=big),
        max_concurrent_requests=f.integer(raw, "MaxConcurrentRequests", path, maximum=big),
    )


def _passive_check(f: EntryFields, raw: JsonObject, path: str) -> PassiveHealthCheck:
    return PassiveHealthCheck(
        interval=f.duration(raw, "Interval", path),
        max_failures=f.integer(raw, "MaxFailures", path) or 0,
        enforcing_consecutive_5xx=f.integer(raw, "EnforcingConsecutive5xx", path, maximum=100),
        max_ejection_percent=f.integer(raw, "MaxEjectionPercent", path, maximum=100),
        base_ejection_time=f.duration(raw, "BaseEjectionTime", path),
    )


def _service_defaults(f: EntryFields, raw: JsonObject) -> ServiceDefaults:
    upstream = f.object(raw, "UpstreamConfig")
    defaults = None
    overrides: list[UpstreamConfig] = []
    if upstream is not None:
        found = f.object(upstream, "Defaults", "UpstreamConfig")
        if found is not None:
            defaults = _upstream(f, found, "UpstreamConfig.Defaults")
        for where, item in f.objects(upstream, "Overrides", "UpstreamConfig"):
            f.unsupported(item, ("Namespace", "Partition", "Peer"), where)
            overrides.append(_upstream(f, item, where))
    return ServiceDefaults(
        name=f.name,
        protocol=f.string(raw, "Protocol").lower(),
        upstream_defaults=defaults,
        upstream_overrides=tuple(overrides),
    )


def _proxy_defaults(f: EntryFields, raw: JsonObject) -> ProxyDefaults:
    config = f.object(raw, "Config") or {}
    protocol = config.get("protocol")
    # Consul decodes Config.protocol weakly and ignores what does not decode (tcp then).
    return ProxyDefaults(
        name=f.name, protocol=protocol.lower() if isinstance(protocol, str) else ""
    )


# ------------------------------------------------------------------ service-resolver
def _subsets(f: EntryFields, raw: JsonObject) -> tuple[tuple[str, Subset], ...]:
    subsets = []
    for name, where, item in f.object_map(raw, "Subsets"):
        text = f.string(item, "Filter", where)
        parsed = None
        if text.strip():
            try:
                parsed = parse_filter(text)
            except FilterError as exc:
                f.problem(join(where, "Filter"), f"{exc} in {text!r}")
        subsets.append((name, Subset(parsed, f.boolean(item, "OnlyPassing", where))))
    return tuple(subsets)


def _failover(f: EntryFields, raw: JsonObject) -> tuple[tuple[str, Failover], ...]:
    table = []
    for key, where, item in f.object_map(raw, "Failover"):
        f.unsupported(item, ("Namespace", "SamenessGroup"), where)
        policy = f.object(item, "Policy", where)
        if policy is not None:
            f.unsupported(policy, ("Mode", "Regions"), join(where, "Policy"))
        targets = []
        for t_where, target in f.objects(item, "Targets", where):
            f.unsupported(target, ("Namespace", "Partition", "Peer"), t_where)
            targets.append(
                FailoverTarget(
                    service=f.string(target, "Service", t_where),
                    service_subset=f.string(target, "ServiceSubset", t_where),
                    datacenter=f.string(target, "Datacenter", t_where),
                )
            )
        failover = Failover(
            service=f.string(item, "Service", where),
            service_subset=f.string(item, "ServiceSubset", where),
            datacenters=f.strings(item, "Datacenters", where),
            targets=tuple(targets),
        )
        table.append((key, failover))
    return tuple(table)


def _hash_policy(f: EntryFields, raw: JsonObject, path: str) -> HashPolicy:
    cookie = f.object(raw, "CookieConfig", path)
    where = join(path, "CookieConfig")
    return HashPolicy(
        field=f.string(raw, "Field", path),
        field_value=f.string(raw, "FieldValue", path),
        cookie=None
        if cookie is None
        else CookieConfig(
            session=f.boolean(cookie, "Session", where),
            ttl=f.duration(cookie, "TTL", where),
            path=f.string(cookie, "Path", where),
        ),
        source_ip=f.boolean(raw, "SourceIP", path),
        terminal=f.boolean(raw, "Terminal", path),
    )


def _load_balancer(f: EntryFields, raw: JsonObject) -> LoadBalancer | None:
    lb = f.object(raw, "LoadBalancer")
    if lb is None:
        return None
    ring = f.object(lb, "RingHashConfig", "LoadBalancer") or {}
    least = f.object(lb, "LeastRequestConfig", "LoadBalancer") or {}
    ring_path, least_path = "LoadBalancer.RingHashConfig", "LoadBalancer.LeastRequestConfig"
    big = 2**63 - 1
    return LoadBalancer(
        policy=f.string(lb, "Policy", "LoadBalancer"),
        minimum_ring_size=f.integer(ring, "MinimumRingSize", ring_path, maximum=big) or 0,
        maximum_ring_size=f.integer(ring, "MaximumRingSize", ring_path, maximum=big) or 0,
        choice_count=f.integer(least, "ChoiceCount", least_path) or 0,
        hash_policies=tuple(
            _hash_policy(f, item, where)
            for where, item in f.objects(lb, "HashPolicies", "LoadBalancer")
        ),
    )


def _service_resolver(f: EntryFields, raw: JsonObject) -> ServiceResolver:
    redirect = f.object(raw, "Redirect")
    f.unsupported(raw, ("PrioritizeByLocality",))
    if redirect is not None:
        f.unsupported(redirect, ("Namespace", "Partition", "Peer", "SamenessGroup"), "Redirect")
    return ServiceResolver(
        name=f.name,
        default_subset=f.string(raw, "DefaultSubset"),
        subsets=_subsets(f, raw),
        redirect=None
        if redirect is None
        else Redirect(
            service=f.string(redirect, "Service", "Redirect"),
            service_subset=f.string(redirect, "ServiceSubset", "Redirect"),
            datacenter=f.string(redirect, "Datacenter", "Redirect"),
        ),
        failover=_failover(f, raw),
        connect_timeout=f.duration(raw, "ConnectTimeout"),
        request_timeout=f.duration(raw, "RequestTimeout"),
        load_balancer=_load_balancer(f, raw),
    )


# ------------------------------------------------------------------ service-splitter
def _service_splitter(f: EntryFields, raw: JsonObject) -> ServiceSplitter:
    splits = []
    for where, item in f.objects(raw, "Splits"):
        f.unsupported(item, ("Namespace", "Partition"), where)
        splits.append(
            Split(
                weight=f.number(item, "Weight", where),
                service=f.string(item, "Service", where),
                service_subset=f.string(item, "ServiceSubset", where),
                request_headers=_headers(f, item, "RequestHeaders", where),
                response_headers=_headers(f, item, "ResponseHeaders", where),
            )
        )
    return ServiceSplitter(name=f.name, splits=tuple(splits))


# ------------------------------------------------------------------ service-router
def _http_match(f: EntryFields, raw: JsonObject, path: str) -> HttpMatch | None:
    match = f.object(raw, "Match", path)
    http = None if match is None else f.object(match, "HTTP", join(path, "Match"))
    if http is None:
        return None
    where = join(path, "Match.HTTP")
    headers = tuple(
        HeaderMatch(
            name=f.string(h, "Name", hw),
            present=f.boolean(h, "Present", hw),
            exact=f.string(h, "Exact", hw),
            prefix=f.string(h, "Prefix", hw),
            suffix=f.string(h, "Suffix", hw),
            regex=f.string(h, "Regex", hw),
            invert=f.boolean(h, "Invert", hw),
        )
        for hw, h in f.objects(http, "Header", where)
    )
    params = tuple(
        QueryParamMatch(
            name=f.string(q, "Name", qw),
            present=f.boolean(q, "Present", qw),
            exact=f.string(q, "Exact", qw),
            regex=f.string(q, "Regex", qw),
        )
        for qw, q in f.objects(http, "QueryParam", where)
    )
    return HttpMatch(
        path_exact=f.string(http, "PathExact", where),
        path_prefix=f.string(http, "PathPrefix", where),
        path_regex=f.string(http, "PathRegex", where),
        case_insensitive=f.boolean(http, "CaseInsensitive", where),
        headers=headers,
        query_params=params,
        methods=tuple(m.upper() for m in f.strings(http, "Methods", where)),
    )


def _destination(f: EntryFields, raw: JsonObject, path: str) -> RouteDestination | None:
    dest = f.object(raw, "Destination", path)
    if dest is None:
        return None
    where = join(path, "Destination")
    f.unsupported(dest, ("Namespace", "Partition"), where)
    return RouteDestination(
        service=f.string(dest, "Service", where),
        service_subset=f.string(dest, "ServiceSubset", where),
        prefix_rewrite=f.string(dest, "PrefixRewrite", where),
        request_timeout=f.duration(dest, "RequestTimeout", where),
        idle_timeout=f.duration(dest, "IdleTimeout", where),
        num_retries=f.integer(dest, "NumRetries", where) or 0,
        retry_on_connect_failure=f.boolean(dest, "RetryOnConnectFailure", where),
        retry_on=f.strings(dest, "RetryOn", where),
        retry_on_status_codes=f.integers(dest, "RetryOnStatusCodes", where),
        request_headers=_headers(f, dest, "RequestHeaders", where),
        response_headers=_headers(f, dest, "ResponseHeaders", where),
    )


def _service_router(f: EntryFields, raw: JsonObject) -> ServiceRouter:
    routes = tuple(
        Route(match=_http_match(f, item, where), destination=_destination(f, item, where))
        for where, item in f.objects(raw, "Routes")
    )
    return ServiceRouter(name=f.name, routes=routes)


_DECODERS: dict[str, Any] = {
    SERVICE_DEFAULTS: _service_defaults,
    PROXY_DEFAULTS: _proxy_defaults,
    SERVICE_RESOLVER: _service_resolver,
    SERVICE_SPLITTER: _service_splitter,
    SERVICE_ROUTER: _service_router,
}
