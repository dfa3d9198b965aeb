"""What every endpoint of the double shares: request parsing, blocking, responses, errors."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .acl import Acl, Policy, UnknownTokenError
from .cluster import Cluster
from .definitions import UnknownDatacenterError
from .durations import parse_go_duration
from .faults import FaultInjector
from .filters import FilterError, Predicate, compile_filter
from .limits import Stats
from .state import Datacenter

NO_PATH = "No path to datacenter"  # agent/structs/errors.go ErrNoDCPath
DEFAULT_WAIT = 300.0  # 5m
MAX_WAIT = 600.0  # 10m


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


def datacenter(backend: Backend, request: web.Request) -> Datacenter:
    """The datacenter of ``?dc`` (default: the agent's); 500 when it cannot be reached."""
    name = request.query.get("dc") or None
    try:
        dc = backend.cluster.dc(name)
    except UnknownDatacenterError:
        raise ConsulHTTPError(500, NO_PATH) from None
    if not backend.cluster.reachable(dc.name):
        raise ConsulHTTPError(500, NO_PATH)
    return dc


def _token(request: web.Request) -> str:
    if request.query.get("token"):
        return request.query["token"]
    if request.headers.get("X-Consul-Token"):
        return request.headers["X-Consul-Token"]
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return ""


def resolve_policy(backend: Backend, request: web.Request) -> Policy:
    try:
        return backend.acl.resolve(_token(request))
    except UnknownTokenError:
        raise ConsulHTTPError(403, "ACL not found") from None


def flag(request: web.Request, name: str) -> bool:
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
    dc = datacenter(backend, request)
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
    policy = resolve_policy(backend, request)
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


async def block(
    backend: Backend,
    opts: ReadOptions,
    index: Callable[[], int],
    watch: Callable[[], object] | None = None,
) -> int:
    """Consul's blocking query (``agent/blockingquery/blockingquery.go``); returns the index
    to report.

    ``index()`` is the read's index; ``watch()`` what the read watches (default: the index),
    the query is re-run only when that changes. Without ``?index`` (or with an index lower than
    the current one) it answers at once; else it is held until a re-run finds an index above
    ``?index`` or the wait (plus up to wait/16 of jitter) expires, answering then with the same
    index. When the store it reads is abandoned (a snapshot restore: ``reset_index``), the
    query answers at once with what it read from the old store: the old index and body;
    the next query blocks on the restored store, whose lower index stays below the client's
    ``?index`` until writes push it past or the wait expires. A datacenter made unreachable
    fails its held queries with 500 "No path to datacenter".
    """
    dc = opts.dc
    current = index()
    if opts.min_index <= 0 or current > opts.min_index:
        return max(1, current)
    observe = watch or index
    seen = observe()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + opts.wait + backend.jitter.uniform(0, opts.wait / 16)
    while True:
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
        if dc.abandoned:
            break
        if not backend.cluster.reachable(dc.name):
            raise ConsulHTTPError(500, NO_PATH)
        now = observe()
        if now == seen:
            continue
        seen = now
        current = index()
        if current > opts.min_index:
            break
    return max(1, current)


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


def json_response(payload: Any) -> web.Response:
    return web.Response(text=json.dumps(payload), content_type="application/json")


# -- writes -----------------------------------------------------------------------------------


def writer(request: web.Request) -> Cluster:
    backend = request.app[BACKEND]
    if not resolve_policy(backend, request).write:
        raise ConsulHTTPError(403, "Permission denied")
    return backend.cluster


async def body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ConsulHTTPError(400, f"Request decode failed: {exc}") from None
