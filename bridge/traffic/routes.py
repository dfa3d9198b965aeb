"""A compiled chain → the ``envoy.config.route.v3.Route`` list of the service's virtual host.

Routes keep the router's order with the catch-all last. Matches: PathExact → ``path``,
PathPrefix → ``prefix``, PathRegex → ``safe_regex``, none → prefix ``/``; CaseInsensitive →
``case_sensitive: false``; headers → ``string_match`` (exact, prefix, suffix, safe_regex) or
``present_match``, with ``invert_match``; Methods → one ``:method`` regex ``GET|POST``; query
parameters → ``string_match`` or ``present_match``. A split becomes ``weighted_clusters`` (weights
in 1/100 of a percent; zero-weight splits left out) with each split's header changes; otherwise one
``cluster``. Destination: PrefixRewrite → ``prefix_rewrite``; RequestTimeout → ``timeout`` (for a
route to one cluster without one, the resolver's RequestTimeout); IdleTimeout → ``idle_timeout``;
NumRetries, RetryOn, RetryOnConnectFailure (``connect-failure``) and RetryOnStatusCodes
(``retriable-status-codes``) → ``retry_policy``; header changes → the route's
``request_headers_to_add``/``_remove`` and ``response_headers_*`` (Add appends, Set overwrites).
Hash policies of a ring_hash/maglev resolver go on the route action.

For proxyless gRPC clients (``grpc=True``) the timeout goes into ``max_stream_duration`` (gRFC A31);
use :func:`bridge.traffic.grpc.grpc_chain` first to drop what gRPC cannot do.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2

from bridge.resources import BuildSettings

from .chain_model import Chain, ChainRoute
from .entries import HashPolicy, HeaderMatch, HeaderModifiers, HttpMatch, RouteDestination
from .naming import target_cluster_name

_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


def build_routes(
    chain: Chain,
    settings: BuildSettings,
    *,
    default_timeout: float | None = None,
    grpc: bool = False,
) -> list[rc.Route]:
    """The routes of ``chain.service``'s virtual host, first match first.

    ``default_timeout`` applies to routes that get no timeout from the entries (None: Envoy's
    default, 15 s).
    """
    return [_route(chain, r, settings, default_timeout, grpc) for r in chain.routes]


def _route(
    chain: Chain,
    chain_route: ChainRoute,
    settings: BuildSettings,
    default_timeout: float | None,
    grpc: bool,
) -> rc.Route:
    route = rc.Route(match=_match(chain_route.match))
    action = route.route
    legs = [leg for leg in chain_route.legs if leg.weight > 0]
    if chain_route.split:
        for leg in legs:
            weighted = action.weighted_clusters.clusters.add(
                name=target_cluster_name(leg.target, chain.datacenter, settings)
            )
            weighted.weight.value = leg.weight
            _request_headers(weighted, leg.request_headers)
            _response_headers(weighted, leg.response_headers)
    else:
        action.cluster = target_cluster_name(legs[0].target, chain.datacenter, settings)
    dest = chain_route.destination
    timeout = (dest.request_timeout if dest else None) or chain_route.request_timeout
    timeout = timeout or default_timeout
    if timeout:
        if grpc:
            action.max_stream_duration.max_stream_duration.FromNanoseconds(round(timeout * 1e9))
        else:
            action.timeout.FromNanoseconds(round(timeout * 1e9))
    if dest is not None:
        _destination(route, dest)
    if chain_route.hash_from is not None:
        lb = chain.cluster(chain_route.hash_from).load_balancer
        if lb is not None and lb.hash_based:
            action.hash_policy.extend(_hash_policy(p) for p in lb.hash_policies)
    return route


def _match(match: HttpMatch | None) -> rc.RouteMatch:
    out = rc.RouteMatch()
    if match is None:
        out.prefix = "/"
        return out
    if match.path_exact:
        out.path = match.path_exact
    elif match.path_regex:
        out.safe_regex.CopyFrom(_regex(match.path_regex))
    else:
        out.prefix = match.path_prefix or "/"
    if match.case_insensitive:
        out.case_sensitive.value = False
    out.headers.extend(_header_match(h) for h in match.headers)
    if match.methods:
        methods = rc.HeaderMatcher(name=":method")
        methods.string_match.safe_regex.CopyFrom(_regex("|".join(match.methods)))
        out.headers.append(methods)
    for param in match.query_params:
        matcher = out.query_parameters.add(name=param.name)
        if param.present:
            matcher.present_match = True
        elif param.regex:
            matcher.string_match.safe_regex.CopyFrom(_regex(param.regex))
        else:
            matcher.string_match.exact = param.exact
    return out


def _regex(pattern: str) -> regex_pb2.RegexMatcher:
    return regex_pb2.RegexMatcher(regex=pattern)


def _header_match(header: HeaderMatch) -> rc.HeaderMatcher:
    out = rc.HeaderMatcher(name=header.name, invert_match=header.invert)
    if header.present:
        out.present_match = True
    elif header.regex:
        out.string_match.safe_regex.CopyFrom(_regex(header.regex))
    elif header.exact:
        out.string_match.exact = header.exact
    elif header.prefix:
        out.string_match.prefix = header.prefix
    else:
        out.string_match.suffix = header.suffix
    return out


def _destination(route: rc.Route, dest: RouteDestination) -> None:
    action = route.route
    if dest.prefix_rewrite:
        action.prefix_rewrite = dest.prefix_rewrite
    if dest.idle_timeout:
        action.idle_timeout.FromNanoseconds(round(dest.idle_timeout * 1e9))
    if dest.retries:
        policy = action.retry_policy
        if dest.num_retries:
            policy.num_retries.value = dest.num_retries
        conditions = list(dest.retry_on)
        if dest.retry_on_connect_failure and "connect-failure" not in conditions:
            conditions.append("connect-failure")
        if dest.retry_on_status_codes:
            conditions.append("retriable-status-codes")
            policy.retriable_status_codes.extend(dest.retry_on_status_codes)
        policy.retry_on = ",".join(conditions)
    _request_headers(route, dest.request_headers)
    _response_headers(route, dest.response_headers)


def _options(mods: HeaderModifiers) -> list[base_pb2.HeaderValueOption]:
    options = []
    for pairs, action in ((mods.add, _APPEND), (mods.set, _OVERWRITE)):
        for key, value in pairs:
            option = base_pb2.HeaderValueOption(append_action=action)
            option.header.key = key
            option.header.value = value
            options.append(option)
    return options


def _request_headers(
    target: rc.Route | rc.WeightedCluster.ClusterWeight, mods: HeaderModifiers
) -> None:
    target.request_headers_to_add.extend(_options(mods))
    target.request_headers_to_remove.extend(mods.remove)


def _response_headers(
    target: rc.Route | rc.WeightedCluster.ClusterWeight, mods: HeaderModifiers
) -> None:
    target.response_headers_to_add.extend(_options(mods))
    target.response_headers_to_remove.extend(mods.remove)


def _hash_policy(policy: HashPolicy) -> rc.RouteAction.HashPolicy:
    out = rc.RouteAction.HashPolicy(terminal=policy.terminal)
    if policy.source_ip:
        out.connection_properties.source_ip = True
    elif policy.field == "header":
        out.header.header_name = policy.field_value
    elif policy.field == "query_parameter":
        out.query_parameter.name = policy.field_value
    else:
        out.cookie.name = policy.field_value
        cookie = policy.cookie
        if cookie is not None:
            if cookie.session:
                out.cookie.ttl.SetInParent()  # ttl 0: Envoy issues a session cookie
            elif cookie.ttl:
                out.cookie.ttl.FromNanoseconds(round(cookie.ttl * 1e9))
            out.cookie.path = cookie.path
    return out
