"""The aiohttp application: Consul's HTTP API on top of :class:`~consul_double.cluster.Cluster`."""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from aiohttp import web

from .acl import Acl, Policy, UnknownTokenError
from .cluster import Cluster, InvalidRequestError, UnknownDatacenterError
from .durations import parse_go_duration
from .faults import Fault, FaultInjector
from .filters import FilterError, Predicate, compile_filter
from .limits import Stats
from .model import STATUSES, NotFoundError
from .state import Datacenter

DEFAULT_WAIT = 300.0  # 5m
MAX_WAIT = 600.0  # 10m
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ConsulHTTPError(Exception):
    """An error answered as Consul does: a status and a plain-text message."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass
class Backend:
    cluster: Cluster
    acl: Acl
    faults: FaultInjector
    stats: Stats
    jitter: random.Random = field(default_factory=random.Random)


BACKEND = web.AppKey("backend", Backend)


@dataclass
class ReadOptions:
    dc: Datacenter
    min_index: int
    wait: float
    consistency: str
    policy: Policy
    predicate: Predicate | None
    filter_text: str = ""


# -- request parsing --------------------------------------------------------------------------


def _datacenter(backend: Backend, request: web.Request) -> Datacenter:
    try:
        return backend.cluster.dc(request.query.get("dc") or None)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, "No path to datacenter") from None


def _token(request: web.Request) -> str:
    if request.query.get("token"):
        return request.query["token"]
    if request.headers.get("X-Consul-Token"):
        return request.headers["X-Consul-Token"]
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


def _policy(backend: Backend, request: web.Request) -> Policy:
    try:
        return backend.acl.resolve(_token(request))
    except UnknownTokenError:
        raise ConsulHTTPError(403, "ACL not found") from None


def _flag(request: web.Request, name: str) -> bool:
    """Consul's presence flags: ``?passing`` or ``?passing=true`` (``=false`` turns it off)."""
    if name not in request.query:
        return False
    value = request.query[name].lower()
    if value in ("", "1", "t", "true"):
        return True
    if value in ("0", "f", "false"):
        return False
    raise ConsulHTTPError(400, f"Invalid value for ?{name}")


def parse_read(backend: Backend, request: web.Request) -> ReadOptions:
    """``?dc``, ``?index``/``?wait``, consistency flags, the ACL token and ``?filter``."""
    dc = _datacenter(backend, request)
    wait = DEFAULT_WAIT
    if request.query.get("wait"):
        try:
            wait = parse_go_duration(request.query["wait"])
        except ValueError:
            raise ConsulHTTPError(400, "Invalid wait time") from None
        if wait <= 0:
            wait = DEFAULT_WAIT
        wait = min(wait, MAX_WAIT)
    min_index = 0
    if request.query.get("index"):
        raw = request.query["index"]
        if not raw.isdigit() or int(raw) >= 2**64:
            raise ConsulHTTPError(400, "Invalid index")
        min_index = int(raw)
    consistency = "leader"
    if "stale" in request.query:
        consistency = "stale"
    if "consistent" in request.query:
        if consistency == "stale":
            raise ConsulHTTPError(
                400, "Cannot specify ?stale with ?consistent, conflicting semantics."
            )
        consistency = "consistent"
    policy = _policy(backend, request)
    predicate = None
    if "filter" in request.query and request.query["filter"].strip():
        try:
            predicate = compile_filter(request.query["filter"])
        except FilterError as exc:
            raise ConsulHTTPError(
                400, f"Failed to create boolean expression evaluator: {exc}"
            ) from None
    text = request.query.get("filter", "").strip() if predicate is not None else ""
    return ReadOptions(dc, min_index, wait, consistency, policy, predicate, text)


# -- blocking and responses -------------------------------------------------------------------


async def block(backend: Backend, opts: ReadOptions, index: Callable[[], int]) -> int:
    """Hold the request until ``index()`` exceeds ``?index``, the wait (plus up to wait/16 of
    jitter) expires, or the datacenter's indexes are reset; return the index to report."""
    dc = opts.dc
    if opts.min_index > 0:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + opts.wait + backend.jitter.uniform(0, opts.wait / 16)
        epoch = dc.epoch
        while index() <= opts.min_index and dc.epoch == epoch:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            fut = dc.waiter()
            try:
                async with asyncio.timeout(remaining):
                    await fut
            except TimeoutError:
                break
            finally:
                dc.discard(fut)
    return max(1, index())


def read_response(
    opts: ReadOptions, index: int, payload: Any, filtered: bool, text: str | None = None
) -> web.Response:
    """``text``, when given, is ``json.dumps(payload)`` already (used only without a filter)."""
    if opts.predicate is not None:
        text = None
        predicate = opts.predicate
        try:
            if isinstance(payload, list):
                payload = [item for item in payload if predicate(item)]
        except FilterError as exc:
            raise ConsulHTTPError(400, f"Failed to evaluate filter: {exc}") from None
    headers = {
        "X-Consul-Index": str(index),
        "X-Consul-KnownLeader": "true",
        "X-Consul-LastContact": "0",
        "X-Consul-Effective-Consistency": opts.consistency,
    }
    if filtered:
        headers["X-Consul-Results-Filtered-By-ACLs"] = "true"
    if text is None:
        text = json.dumps(payload)
    return web.Response(text=text, content_type="application/json", headers=headers)


def _json(payload: Any) -> web.Response:
    return web.Response(text=json.dumps(payload), content_type="application/json")


# -- read endpoints ---------------------------------------------------------------------------

routes = web.RouteTableDef()


@routes.get("/v1/agent/self")
async def agent_self(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    _policy(backend, request)
    cluster = backend.cluster
    dc = cluster.dc()
    node = dc.nodes[cluster.node_name]
    return _json(
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
    _datacenter(request.app[BACKEND], request)
    return _json("127.0.0.1:8300")


@routes.get("/v1/status/peers")
async def status_peers(request: web.Request) -> web.Response:
    _datacenter(request.app[BACKEND], request)
    return _json(["127.0.0.1:8300"])


@routes.get("/v1/catalog/datacenters")
async def catalog_datacenters(request: web.Request) -> web.Response:
    cluster = request.app[BACKEND].cluster
    return _json([cluster.local, *sorted(n for n in cluster.dcs if n != cluster.local)])


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


@routes.get("/v1/catalog/service/{name}")
async def catalog_service(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    index = await block(backend, opts, _service_index(opts, name))
    entries = opts.dc.catalog_service(name, request.query.getall("tag", []))
    visible = entries if _service_visible(opts.policy, name) else []
    return read_response(opts, index, visible, len(visible) < len(entries))


@routes.get("/v1/health/service/{name}")
async def health_service(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    passing = _flag(request, "passing")
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


@routes.get("/v1/health/checks/{name}")
async def health_checks(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    name = request.match_info["name"]
    index = await block(backend, opts, lambda: opts.dc.table_index("checks"))
    return _checks_response(opts, index, opts.dc.service_checks(name))


@routes.get("/v1/health/node/{node}")
async def health_node(request: web.Request) -> web.Response:
    backend = request.app[BACKEND]
    opts = parse_read(backend, request)
    node = request.match_info["node"]
    index = await block(backend, opts, lambda: opts.dc.table_index("checks"))
    return _checks_response(opts, index, opts.dc.node_checks(node))


# -- write endpoints --------------------------------------------------------------------------


def _writer(request: web.Request) -> Cluster:
    backend = request.app[BACKEND]
    if not _policy(backend, request).write:
        raise ConsulHTTPError(403, "Permission denied")
    return backend.cluster


async def _body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConsulHTTPError(400, f"Request decode failed: {exc}") from None


@routes.put("/v1/agent/service/register")
async def agent_service_register(request: web.Request) -> web.Response:
    cluster = _writer(request)
    cluster.agent_register(await _body(request))
    return web.Response(text="")


@routes.put("/v1/agent/service/deregister/{id}")
async def agent_service_deregister(request: web.Request) -> web.Response:
    _writer(request).agent_deregister(request.match_info["id"])
    return web.Response(text="")


@routes.put(r"/v1/agent/check/{action:pass|warn|fail}/{id:.+}")
async def agent_check_ttl(request: web.Request) -> web.Response:
    cluster = _writer(request)
    status = {"pass": "passing", "warn": "warning", "fail": "critical"}
    action = request.match_info["action"]
    cluster.agent_ttl_update(
        request.match_info["id"], status[action], request.query.get("note", "")
    )
    return web.Response(text="")


@routes.put(r"/v1/agent/check/update/{id:.+}")
async def agent_check_update(request: web.Request) -> web.Response:
    cluster = _writer(request)
    body = await _body(request)
    fields = {str(k).lower(): v for k, v in body.items()} if isinstance(body, dict) else {}
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
    cluster = _writer(request)
    enable = _enable(request)
    reason = request.query.get("reason", "")
    cluster.set_service_maintenance(request.match_info["id"], enable, reason)
    return web.Response(text="")


@routes.put("/v1/agent/maintenance")
async def agent_maintenance(request: web.Request) -> web.Response:
    cluster = _writer(request)
    enable = _enable(request)
    cluster.set_node_maintenance(cluster.node_name, enable, request.query.get("reason", ""))
    return web.Response(text="")


@routes.put("/v1/catalog/register")
async def catalog_register(request: web.Request) -> web.Response:
    cluster = _writer(request)
    body = await _body(request)
    try:
        cluster.catalog_register(body)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, "No path to datacenter") from None
    return _json(True)


@routes.put("/v1/catalog/deregister")
async def catalog_deregister(request: web.Request) -> web.Response:
    cluster = _writer(request)
    body = await _body(request)
    try:
        cluster.catalog_deregister(body)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, "No path to datacenter") from None
    return _json(True)


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
    return app
