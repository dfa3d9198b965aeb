"""The five discovery config entry kinds as typed, immutable values (what the bridge reads of them).

Fields keep Consul's meaning; durations are seconds (``None``: not set). Only the fields that shape
clusters, routes and endpoints are kept; Connect-only settings are not read at all. Maps are kept
as tuples of ``(key, value)`` pairs sorted by key, so values compare and hash by content.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .filters import SubsetFilter

SERVICE_DEFAULTS = "service-defaults"
PROXY_DEFAULTS = "proxy-defaults"
SERVICE_RESOLVER = "service-resolver"
SERVICE_SPLITTER = "service-splitter"
SERVICE_ROUTER = "service-router"
KINDS = (SERVICE_DEFAULTS, PROXY_DEFAULTS, SERVICE_RESOLVER, SERVICE_SPLITTER, SERVICE_ROUTER)

HTTP_LIKE = frozenset({"http", "http2", "grpc"})
HASH_BASED = frozenset({"ring_hash", "maglev"})


# ------------------------------------------------------------------ shared pieces
@dataclass(frozen=True, slots=True)
class HeaderModifiers:
    """``RequestHeaders`` / ``ResponseHeaders``: Add appends, Set overwrites, Remove deletes."""

    add: tuple[tuple[str, str], ...] = ()
    set: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.add or self.set or self.remove)


NO_HEADERS = HeaderModifiers()


def merge_headers(base: HeaderModifiers, override: HeaderModifiers) -> HeaderModifiers:
    """``base`` then ``override`` (override wins on a name both add or set), as Consul merges a
    parent split's header changes into a nested splitter's splits."""
    add = dict(base.add) | dict(override.add)
    set_ = dict(base.set) | dict(override.set)
    remove = base.remove + tuple(n for n in override.remove if n not in base.remove)
    return HeaderModifiers(tuple(sorted(add.items())), tuple(sorted(set_.items())), remove)


# ------------------------------------------------------------------ service-defaults
@dataclass(frozen=True, slots=True)
class PassiveHealthCheck:
    """``UpstreamConfig.*.PassiveHealthCheck`` → Envoy outlier detection."""

    interval: float | None = None
    max_failures: int = 0
    enforcing_consecutive_5xx: int | None = None
    max_ejection_percent: int | None = None
    base_ejection_time: float | None = None


@dataclass(frozen=True, slots=True)
class UpstreamLimits:
    max_connections: int | None = None
    max_pending_requests: int | None = None
    max_concurrent_requests: int | None = None


@dataclass(frozen=True, slots=True)
class UpstreamConfig:
    """How a calling proxy treats one upstream (``UpstreamConfig.Defaults`` or an Override)."""

    name: str = ""  # set on Overrides only: the upstream service it applies to
    connect_timeout: float | None = None  # ConnectTimeoutMs
    limits: UpstreamLimits | None = None
    passive_health_check: PassiveHealthCheck | None = None


@dataclass(frozen=True, slots=True)
class ServiceDefaults:
    name: str
    protocol: str = ""  # lower-cased; "" means not set
    upstream_defaults: UpstreamConfig | None = None
    upstream_overrides: tuple[UpstreamConfig, ...] = ()
    kind: ClassVar[str] = SERVICE_DEFAULTS


@dataclass(frozen=True, slots=True)
class ProxyDefaults:
    name: str = "global"
    protocol: str = ""  # Config.protocol, lower-cased
    kind: ClassVar[str] = PROXY_DEFAULTS


# ------------------------------------------------------------------ service-resolver
@dataclass(frozen=True, slots=True)
class Subset:
    filter: SubsetFilter | None = None  # None: every instance
    only_passing: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    service: str = ""
    service_subset: str = ""
    datacenter: str = ""


@dataclass(frozen=True, slots=True)
class FailoverTarget:
    service: str = ""
    service_subset: str = ""
    datacenter: str = ""


@dataclass(frozen=True, slots=True)
class Failover:
    service: str = ""
    service_subset: str = ""
    datacenters: tuple[str, ...] = ()
    targets: tuple[FailoverTarget, ...] = ()


@dataclass(frozen=True, slots=True)
class CookieConfig:
    session: bool = False
    ttl: float | None = None
    path: str = ""


@dataclass(frozen=True, slots=True)
class HashPolicy:
    field: str = ""  # header | cookie | query_parameter ("" with source_ip)
    field_value: str = ""
    cookie: CookieConfig | None = None
    source_ip: bool = False
    terminal: bool = False


@dataclass(frozen=True, slots=True)
class LoadBalancer:
    policy: str = ""  # "" | random | round_robin | least_request | ring_hash | maglev
    minimum_ring_size: int = 0
    maximum_ring_size: int = 0
    choice_count: int = 0
    hash_policies: tuple[HashPolicy, ...] = ()

    @property
    def hash_based(self) -> bool:
        return self.policy in HASH_BASED


@dataclass(frozen=True, slots=True)
class ServiceResolver:
    name: str
    default_subset: str = ""
    subsets: tuple[tuple[str, Subset], ...] = ()
    redirect: Redirect | None = None
    failover: tuple[tuple[str, Failover], ...] = ()  # key: a subset name or "*"
    connect_timeout: float | None = None
    request_timeout: float | None = None
    load_balancer: LoadBalancer | None = None
    kind: ClassVar[str] = SERVICE_RESOLVER

    def subset(self, name: str) -> Subset | None:
        return dict(self.subsets).get(name)

    def failover_for(self, subset: str) -> Failover | None:
        """The failover that applies to ``subset``: its own entry, else ``*``."""
        table = dict(self.failover)
        return table.get(subset) or table.get("*")


# ------------------------------------------------------------------ service-splitter
@dataclass(frozen=True, slots=True)
class Split:
    weight: float
    service: str = ""  # "" means the splitter's own service
    service_subset: str = ""
    request_headers: HeaderModifiers = NO_HEADERS
    response_headers: HeaderModifiers = NO_HEADERS


@dataclass(frozen=True, slots=True)
class ServiceSplitter:
    name: str
    splits: tuple[Split, ...] = ()
    kind: ClassVar[str] = SERVICE_SPLITTER


# ------------------------------------------------------------------ service-router
@dataclass(frozen=True, slots=True)
class HeaderMatch:
    name: str
    present: bool = False
    exact: str = ""
    prefix: str = ""
    suffix: str = ""
    regex: str = ""
    invert: bool = False


@dataclass(frozen=True, slots=True)
class QueryParamMatch:
    name: str
    present: bool = False
    exact: str = ""
    regex: str = ""


@dataclass(frozen=True, slots=True)
class HttpMatch:
    path_exact: str = ""
    path_prefix: str = ""
    path_regex: str = ""
    case_insensitive: bool = False
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    methods: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RouteDestination:
    service: str = ""  # "" means the router's own service
    service_subset: str = ""
    prefix_rewrite: str = ""
    request_timeout: float | None = None
    idle_timeout: float | None = None
    num_retries: int = 0
    retry_on_connect_failure: bool = False
    retry_on: tuple[str, ...] = ()
    retry_on_status_codes: tuple[int, ...] = ()
    request_headers: HeaderModifiers = NO_HEADERS
    response_headers: HeaderModifiers = NO_HEADERS

    @property
    def retries(self) -> bool:
        return bool(
            self.num_retries
            or self.retry_on_connect_failure
            or self.retry_on
            or self.retry_on_status_codes
        )


@dataclass(frozen=True, slots=True)
class Route:
    match: HttpMatch | None = None  # None: every request
    destination: RouteDestination | None = None  # None: the router's own service


@dataclass(frozen=True, slots=True)
class ServiceRouter:
    name: str
    routes: tuple[Route, ...] = ()
    kind: ClassVar[str] = SERVICE_ROUTER


ConfigEntry = ServiceDefaults | ProxyDefaults | ServiceResolver | ServiceSplitter | ServiceRouter
