"""The fields of the five discovery config entry kinds, in the order and with the JSON tags of
their Go structs (``agent/structs/config_entry.go``, ``config_entry_discoverychain.go``)."""

from __future__ import annotations

from .config_types import (
    ANY_MAP,
    BOOL,
    DURATION,
    DURATION_NS,
    FLOAT32,
    INT,
    OPAQUE,
    STR,
    STR_LIST,
    STR_MAP,
    UINT32,
    UINT32_LIST,
    UINT64,
    ListOf,
    MapOf,
    Struct,
    field,
    pointer,
    struct,
)

MESH_GATEWAY = struct(field("Mode", STR))
HEADER_MODIFIERS = struct(field("Add", STR_MAP), field("Set", STR_MAP), field("Remove", STR_LIST))
PASSIVE_HEALTH_CHECK = struct(
    field("Interval", DURATION_NS),
    field("MaxFailures", UINT32),
    field("EnforcingConsecutive5xx", UINT32, ptr=True),
    field("MaxEjectionPercent", UINT32, ptr=True),
    field("BaseEjectionTime", DURATION_NS, ptr=True),
)
UPSTREAM_LIMITS = struct(
    field("MaxConnections", INT, ptr=True),
    field("MaxPendingRequests", INT, ptr=True),
    field("MaxConcurrentRequests", INT, ptr=True),
)
UPSTREAM_CONFIG = struct(
    field("Name", STR),
    field("Peer", STR, omit=False),
    field("EnvoyListenerJSON", STR),
    field("EnvoyClusterJSON", STR),
    field("Protocol", STR),
    field("ConnectTimeoutMs", INT),
    pointer("Limits", UPSTREAM_LIMITS),
    pointer("PassiveHealthCheck", PASSIVE_HEALTH_CHECK),
    field("MeshGateway", MESH_GATEWAY),
    field("BalanceOutboundConnections", STR),
)
TRANSPARENT_PROXY = struct(field("OutboundListenerPort", INT), field("DialedDirectly", BOOL))
EXPOSE = struct(field("Checks", BOOL), field("Paths", OPAQUE))
ACCESS_LOGS = struct(
    field("Enabled", BOOL),
    field("DisableListenerLogs", BOOL),
    field("Type", STR),
    field("Path", STR),
    field("JSONFormat", STR),
    field("TextFormat", STR),
)
FAILOVER_POLICY = struct(field("Mode", STR), field("Regions", STR_LIST))
LOCALITY = struct(field("Mode", STR))

SERVICE_DEFAULTS = struct(
    field("Kind", STR, omit=False),
    field("Name", STR, omit=False),
    field("Protocol", STR, omit=False),
    field("Mode", STR),
    field("TransparentProxy", TRANSPARENT_PROXY),
    field("MutualTLSMode", STR),
    field("MeshGateway", MESH_GATEWAY),
    field("Expose", EXPOSE),
    field("ExternalSNI", STR),
    pointer(
        "UpstreamConfig",
        struct(field("Overrides", ListOf(UPSTREAM_CONFIG)), pointer("Defaults", UPSTREAM_CONFIG)),
    ),
    field("Destination", OPAQUE),
    field("MaxInboundConnections", INT),
    field("LocalConnectTimeoutMs", INT),
    field("LocalRequestTimeoutMs", INT),
    field("BalanceInboundConnections", STR),
    field("RateLimits", OPAQUE),
    field("EnvoyExtensions", OPAQUE),
    field("Meta", STR_MAP),
    field("Hash", UINT64),
)
PROXY_DEFAULTS = struct(
    field("Kind", STR, omit=False),
    field("Name", STR, omit=False),
    field("Config", ANY_MAP, omit=False),
    field("Mode", STR),
    field("TransparentProxy", TRANSPARENT_PROXY),
    field("MutualTLSMode", STR),
    field("MeshGateway", MESH_GATEWAY),
    field("Expose", EXPOSE),
    field("AccessLogs", ACCESS_LOGS),
    field("EnvoyExtensions", OPAQUE),
    pointer("FailoverPolicy", FAILOVER_POLICY),
    pointer("PrioritizeByLocality", LOCALITY),
    field("Meta", STR_MAP),
    field("Hash", UINT64),
)
ROUTE_DESTINATION = struct(
    field("Service", STR),
    field("ServiceSubset", STR),
    field("Namespace", STR),
    field("Partition", STR),
    field("PrefixRewrite", STR),
    field("RequestTimeout", DURATION),
    field("IdleTimeout", DURATION),
    field("NumRetries", UINT32),
    field("RetryOnConnectFailure", BOOL),
    field("RetryOn", STR_LIST),
    field("RetryOnStatusCodes", UINT32_LIST),
    pointer("RequestHeaders", HEADER_MODIFIERS),
    pointer("ResponseHeaders", HEADER_MODIFIERS),
)
HTTP_MATCH = struct(
    field("PathExact", STR),
    field("PathPrefix", STR),
    field("PathRegex", STR),
    field(
        "Header",
        ListOf(
            struct(
                field("Name", STR, omit=False),
                field("Present", BOOL),
                field("Exact", STR),
                field("Prefix", STR),
                field("Suffix", STR),
                field("Regex", STR),
                field("Invert", BOOL),
            )
        ),
    ),
    field(
        "QueryParam",
        ListOf(
            struct(
                field("Name", STR, omit=False),
                field("Present", BOOL),
                field("Exact", STR),
                field("Regex", STR),
            )
        ),
    ),
    field("Methods", STR_LIST),
)
SERVICE_ROUTER = struct(
    field("Kind", STR, omit=False),
    field("Name", STR, omit=False),
    field(
        "Routes",
        ListOf(
            struct(
                pointer("Match", struct(pointer("HTTP", HTTP_MATCH))),
                pointer("Destination", ROUTE_DESTINATION),
            )
        ),
        omit=False,
    ),
    field("Meta", STR_MAP),
)
SERVICE_SPLITTER = struct(
    field("Kind", STR, omit=False),
    field("Name", STR, omit=False),
    field(
        "Splits",
        ListOf(
            struct(
                field("Weight", FLOAT32, omit=False),
                field("Service", STR),
                field("ServiceSubset", STR),
                field("Namespace", STR),
                field("Partition", STR),
                pointer("RequestHeaders", HEADER_MODIFIERS),
                pointer("ResponseHeaders", HEADER_MODIFIERS),
            )
        ),
        omit=False,
    ),
    field("Meta", STR_MAP),
)
TARGET = struct(
    field("Service", STR),
    field("ServiceSubset", STR),
    field("Partition", STR),
    field("Namespace", STR),
    field("Datacenter", STR),
    field("Peer", STR),
)
SERVICE_RESOLVER = struct(
    field("ConnectTimeout", DURATION),
    field("RequestTimeout", DURATION),
    field("Kind", STR, omit=False),
    field("Name", STR, omit=False),
    field("DefaultSubset", STR),
    field("Subsets", MapOf(struct(field("Filter", STR), field("OnlyPassing", BOOL)))),
    pointer(
        "Redirect",
        struct(
            field("Service", STR),
            field("ServiceSubset", STR),
            field("Namespace", STR),
            field("Partition", STR),
            field("SamenessGroup", STR),
            field("Datacenter", STR),
            field("Peer", STR),
        ),
    ),
    field(
        "Failover",
        MapOf(
            struct(
                field("Service", STR),
                field("ServiceSubset", STR),
                field("Namespace", STR),
                field("SamenessGroup", STR),
                field("Datacenters", STR_LIST),
                field("Targets", ListOf(TARGET)),
                pointer("Policy", FAILOVER_POLICY),
            )
        ),
    ),
    pointer(
        "LoadBalancer",
        struct(
            field("Policy", STR),
            pointer(
                "RingHashConfig",
                struct(field("MinimumRingSize", UINT64), field("MaximumRingSize", UINT64)),
            ),
            pointer("LeastRequestConfig", struct(field("ChoiceCount", UINT32))),
            field(
                "HashPolicies",
                ListOf(
                    struct(
                        field("Field", STR),
                        field("FieldValue", STR),
                        pointer(
                            "CookieConfig",
                            struct(
                                field("Session", BOOL),
                                field("TTL", DURATION_NS),
                                field("Path", STR),
                            ),
                        ),
                        field("SourceIP", BOOL),
                        field("Terminal", BOOL),
                    )
                ),
            ),
        ),
    ),
    pointer("PrioritizeByLocality", LOCALITY),
    field("Meta", STR_MAP),
)

KINDS: dict[str, Struct] = {
    "service-defaults": SERVICE_DEFAULTS,
    "proxy-defaults": PROXY_DEFAULTS,
    "service-router": SERVICE_ROUTER,
    "service-splitter": SERVICE_SPLITTER,
    "service-resolver": SERVICE_RESOLVER,
}
# Kinds Consul knows (``MakeConfigEntry``) but the double does not model: writes are refused
# with a 400 that says so, reads of them answer as for an empty table.
OTHER_KINDS = frozenset(
    {
        "ingress-gateway",
        "terminating-gateway",
        "service-intentions",
        "mesh",
        "exported-services",
        "sameness-group",
        "api-gateway",
        "bound-api-gateway",
        "file-system-certificate",
        "inline-certificate",
        "http-route",
        "tcp-route",
        "jwt-provider",
    }
)
INDEX_KEYS = ("CreateIndex", "ModifyIndex")


def known_kind(kind: str) -> bool:
    return kind in KINDS or kind in OTHER_KINDS
