"""The aiohttp application: Consul's HTTP API on top of :class:`~consul_double.cluster.Cluster`."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from aiohttp import web

from .acl import Policy
from .config_schema import ConfigEntryError
from .definitions import InvalidRequestError, UnknownDatacenterError
from .faults import Fault
from .filters import FilterError
from .http_common import (
    BACKEND,
    NO_PATH,
    Backend,
    ConsulHTTPError,
    ReadOptions,
    block,
    body,
    datacenter,
    flag,
    json_response,
    parse_read,
    read_response,
    resolve_policy,
    writer,
)
from .http_config import routes as config_routes
from .model import STATUSES, NotFoundError

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# -- read endpoints ---------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/v1/agent/self")
async def agent_self(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    resolve_policy(backend, request)
    cluster = backend.cluster
    dc = cluster.dc()
    node = dc.nodes[cluster.node_name]
    return json_response(
        {
            "Config": {
                "Datacenter": cluster.local,
                "PrimaryDatacenter": cluster.local,
                "NodeName": cluster.node_name,
                "NodeID": node.id,
                "Server": True,
                "Revision": "consul-double",
                "Version": "1.20.0",
            },
            "Coord": None,
            "Member": {
                "Name": cluster.node_name,
                "Addr": node.address,
                "Port": 8301,
                "Tags": {"dc": cluster.local, "role": "consul", "id": node.id},
                "Status": 1,
            },
            "Meta": {"consul-network-segment": ""},
        }
    )


@routes.get("/v1/status/leader")
async def status_leader(request: web.Request) -> web.Response:
    datacenter(request.app[BACKEND], request)
    return json_response("127.0.0.1:8300")


@routes.get("/v1/status/peers")
async def status_peers(request: web.Request) -> web.Response:
    datacenter(request.app[BACKEND], request)
    return json_response(["127.0.0.1:8300"])


@routes.get("/v1/catalog/datacenters")
async def catalog_datacenters(request: web.Request) -> web.Response:
    cluster = request.app[BACKEND].cluster
    return json_response([cluster.local, *sorted(n for n in cluster.dcs if n != cluster.local)])


@routes.get("/v1/catalog/services")
async def catalog_services(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    index = await block(backend, opts, lambda: opts.dc.table_index("services"))
    predicate, opts.predicate = opts.predicate, None
    try:
        services = opts.dc.catalog_services(predicate)  # the filter sees catalog instances
    except FilterError as exc:
        raise ConsulHTTPError(400, f"Failed to evaluate filter: {exc}") from None
    visible = {k: v for k, v in services.items() if opts.policy.can_read_service(k)}
    return read_response(opts, index, visible, len(visible) < len(services))


@routes.get("/v1/catalog/nodes")
async def catalog_nodes(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    index = await block(backend, opts, lambda: opts.dc.table_index("nodes"))
    nodes = [n.to_json() for n in sorted(opts.dc.nodes.values(), key=lambda n: n.name)]
    visible = nodes if opts.policy.node_read else []
    return read_response(opts, index, visible, len(visible) < len(nodes))


def _service_index(opts: ReadOptions, name: str) -> Callable[[], int]:
    return lambda: opts.dc.service_index(name, opts.dc.service_exists(name))


def _service_visible(policy: Policy, name: str) -> bool:
    return policy.can_read_service(name) and policy.node_read


@routes.get("/v1/catalog/service/{name:.+}")
async def catalog_service(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    index = await block(backend, opts, _service_index(opts, name))
    entries = opts.dc.catalog_service(name, request.query.getall("tag", []))
    visible = entries if _service_visible(opts.policy, name) else []
    return read_response(opts, index, visible, len(visible) < len(entries))


@routes.get("/v1/health/service/{name:.+}")
async def health_service(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    passing = flag(request, "passing")
    index = await block(backend, opts, _service_index(opts, name))
    entries = opts.dc.health_service(name, request.query.getall("tag", []), passing)
    visible = entries if _service_visible(opts.policy, name) else []
    return read_response(opts, index, visible, len(visible) < len(entries))


def _checks_response(opts: ReadOptions, index: int, checks: list[Any]) -> web.Response:
    policy = opts.policy
    visible = [
        c
        for c in checks
        if (policy.can_read_service(c.service_name) if c.service_id else policy.node_read)
    ]
    filtered = len(visible) < len(checks)
    if opts.predicate is None:  # the checks' cached JSON, joined: no per-request dumps
        text = "[" + ", ".join(c.json_text() for c in visible) + "]"
        return read_response(opts, index, None, filtered, text)
    predicate = opts.predicate
    try:  # each check's verdict is kept until the check changes
        payload = [c.json_shape() for c in visible if c.matches(opts.filter_text, predicate)]
    except FilterError as exc:
        raise ConsulHTTPError(400, f"Failed to evaluate filter: {exc}") from None
    return read_response(replace(opts, predicate=None), index, payload, filtered)


@routes.get("/v1/health/state/{state}")
async def health_state(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    state = request.match_info["state"]
    if state != "any" and state not in STATUSES:
        raise ConsulHTTPError(400, "Invalid state")
    opts = parse_read(backend, request)
    index = await block(backend, opts, lambda: opts.dc.table_index("checks"))
    statuses = _status_filter(opts.filter_text) if opts.policy.node_read else None
    if state == "any" and statuses is not None and opts.policy.all_services:
        # A plain status filter with nothing hidden by ACLs: only the checks in those statuses
        # can match, so the other 100,000s are not scanned (the filter still runs on the rest).
        return _checks_response(opts, index, opts.dc.checks_with_status(statuses))
    return _checks_response(opts, index, opts.dc.checks_in_state(state))


_STATUS_FILTER = re.compile(r'\s*Status\s*(==|!=)\s*"(passing|warning|critical)"\s*')


def _status_filter(text: str) -> tuple[str, ...] | None:
    """The statuses that ``Status == "x"`` / ``Status != "x"`` can match (None: another filter)."""
    found = _STATUS_FILTER.fullmatch(text) if text else None
    if found is None:
        return None
    op, status = found.groups()
    return (status,) if op == "==" else tuple(s for s in STATUSES if s != status)


@routes.get("/v1/health/checks/{name:.+}")
async def health_checks(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    index = await block(backend, opts, lambda: opts.dc.table_index("checks"))
    return _checks_response(opts, index, opts.dc.service_checks(name))


@routes.get("/v1/health/node/{node:.+}")
async def health_node(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    node = request.match_info["node"]
    index = await block(backend, opts, lambda: opts.dc.table_index("checks"))
    return _checks_response(opts, index, opts.dc.node_checks(node))


# -- write endpoints --------------------------------------------------------------------------


@routes.put("/v1/agent/service/register")
async def agent_service_register(request: web.Request) -> web.Response:
    cluster = writer(request)
    cluster.agent_register(await body(request))
    return web.Response(text="")


@routes.put("/v1/agent/service/deregister/{id}")
async def agent_service_deregister(request: web.Request) -> web.Response:
    writer(request).agent_deregister(request.match_info["id"])
    return web.Response(text="")


@routes.put(r"/v1/agent/check/{action:pass|warn|fail}/{id:.+}")
async def agent_check_ttl(request: web.Request) -> web.Response:
    cluster = writer(request)
    status = {"pass": "passing", "warn": "warning", "fail": "critical"}
    action = request.match_info["action"]
    cluster.agent_ttl_update(
        request.match_info["id"], status[action], request.query.get("note", "")
    )
    return web.Response(text="")


@routes.put(r"/v1/agent/check/update/{id:.+}")
async def agent_check_update(request: web.Request) -> web.Response:
    cluster = writer(request)
    payload = await body(request)
    fields = {str(k).lower(): v for k, v in payload.items()} if isinstance(payload, dict) else {}
    status = fields.get("status")
    if status not in STATUSES:
        raise ConsulHTTPError(400, f"Invalid check status: '{status}'")
    cluster.agent_ttl_update(request.match_info["id"], status, str(fields.get("output") or ""))
    return web.Response(text="")


def _enable(request: web.Request) -> bool:
    if "enable" not in request.query:
        raise ConsulHTTPError(400, "Missing value for enable")
    value = request.query["enable"].lower()
    if value not in ("true", "false", "1", "0", "t", "f"):
        raise ConsulHTTPError(400, "Invalid value for enable")
    return value in ("true", "1", "t")


@routes.put("/v1/agent/service/maintenance/{id}")
async def agent_service_maintenance(request: web.Request) -> web.Response:
    cluster = writer(request)
    enable = _enable(request)
    reason = request.query.get("reason", "")
    cluster.set_service_maintenance(request.match_info["id"], enable, reason)
    return web.Response(text="")


@routes.put("/v1/agent/maintenance")
async def agent_maintenance(request: web.Request) -> web.Response:
    cluster = writer(request)
    enable = _enable(request)
    cluster.set_node_maintenance(cluster.node_name, enable, request.query.get("reason", ""))
    return web.Response(text="")


@routes.put("/v1/catalog/register")
async def catalog_register(request: web.Request) -> web.Response:
    cluster = writer(request)
    payload = await body(request)
    try:
        cluster.catalog_register(payload)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, NO_PATH) from None
    return json_response(True)


@routes.put("/v1/catalog/deregister")
async def catalog_deregister(request: web.Request) -> web.Response:
    cluster = writer(request)
    payload = await body(request)
    try:
        cluster.catalog_deregister(payload)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, NO_PATH) from None
    return json_response(True)


# -- middleware: counters, faults, errors -----------------------------------------------------


async def _apply_fault(
    backend: Backend, request: web.Request, fault: Fault
) -> web.StreamResponse | None:
    """The response a fault imposes, or None to serve the request normally."""
    if fault.kind == "hang":
        await backend.faults.wait_released()
        return None
    if fault.kind == "drop":
        if request.transport is not None:
            request.transport.abort()
        await asyncio.Event().wait()  # cancelled once aiohttp sees the connection is gone
        return None
    response = web.Response(status=fault.status, text=fault.body)
    if fault.kind == "429":
        response.force_close()
    elif fault.status == 200:  # e.g. a body that is not JSON: look like a real read otherwise
        response.headers["X-Consul-Index"] = str(max(1, backend.cluster.dc().raft_index))
        response.headers["X-Consul-KnownLeader"] = "true"
        response.headers["Content-Type"] = "application/json"
    return response


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    backend = request.app[BACKEND]
    stats = backend.stats
    stats.requests_total += 1
    try:
        response: web.StreamResponse | None = None
        fault = backend.faults.take(request.method, request.path)
        if fault is not None:
            response = await _apply_fault(backend, request, fault)
        if response is None:
            response = await handler(request)
    except ConsulHTTPError as exc:
        response = web.Response(status=exc.status, text=exc.text)
    except ConfigEntryError as exc:
        response = web.Response(status=exc.status, text=exc.text)
    except InvalidRequestError as exc:
        response = web.Response(status=400, text=str(exc))
    except NotFoundError as exc:
        response = web.Response(status=404, text=str(exc))
    except web.HTTPException as exc:
        stats.responses_by_status[exc.status] += 1
        raise
    stats.responses_by_status[response.status] += 1
    return response


def build_app(backend: Backend) -> web.Application:
    app = web.Application(middlewares=[middleware], client_max_size=8 * 1024 * 1024)
    app[BACKEND] = backend
    app.add_routes(routes)
    app.add_routes(config_routes)
    return app
