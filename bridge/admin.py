"""The admin HTTP listener: health, readiness, Prometheus metrics and JSON debug views.

It binds to 127.0.0.1 by default. ``/debug/*`` can additionally require a bearer token.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .security import bearer_matches

log = logging.getLogger(__name__)

ReadyProbe = Callable[[], tuple[bool, str]]
JsonView = Callable[[Mapping[str, str]], tuple[int, Any]]


@dataclass
class AdminViews:
    ready: ReadyProbe
    metrics: CollectorRegistry | None = None
    debug: Mapping[str, JsonView] = field(default_factory=dict)  # name -> view(query)
    debug_token: str = ""
    redact: Callable[[str], str] = str  # applied to every /metrics and /debug body
    actions: Mapping[str, JsonView] = field(default_factory=dict)  # POST /debug/<name>


def admin_app(views: AdminViews | ReadyProbe) -> web.Application:
    """``/healthz``: 200 while the process serves requests. ``/readyz``: 200 once the first full
    read of Consul is published, 503 with the reason before. ``/metrics``: Prometheus text.
    ``/debug/<name>``: JSON views; ``POST /debug/<name>``: operator actions (same token, and
    never from a browser page: a request with an ``Origin`` header is refused)."""
    if not isinstance(views, AdminViews):
        views = AdminViews(ready=views)
    admin = views

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(request: web.Request) -> web.Response:
        is_ready, reason = admin.ready()
        return web.json_response(
            {"status": "ready" if is_ready else "not ready", "reason": reason},
            status=200 if is_ready else 503,
        )

    async def metrics(request: web.Request) -> web.Response:
        assert admin.metrics is not None
        body = admin.redact(generate_latest(admin.metrics).decode()).encode()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    def refused(request: web.Request) -> web.Response | None:
        given = request.headers.get("Authorization", "")
        if admin.debug_token and not bearer_matches(given, admin.debug_token):
            return web.json_response(
                {"error": "a bearer token is required for /debug"},
                status=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return None

    async def debug(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        view = admin.debug.get(request.match_info["name"])
        if view is None:
            return web.json_response(
                {"error": "unknown debug view", "views": sorted(admin.debug)}, status=404
            )
        status, body = view(request.query)
        return web.json_response(body, status=status, dumps=lambda v: admin.redact(_dumps(v)))

    async def action(request: web.Request) -> web.Response:
        refusal = refused(request)
        if refusal is not None:
            return refusal
        if "Origin" in request.headers:  # a browser: no web page may act for the operator
            return web.json_response({"error": "not from a browser"}, status=403)
        act = admin.actions.get(request.match_info["name"])
        if act is None:
            return web.json_response(
                {"error": "unknown debug action", "actions": sorted(admin.actions)}, status=404
            )
        status, body = act(request.query)
        return web.json_response(body, status=status, dumps=lambda v: admin.redact(_dumps(v)))

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if admin.metrics is not None:
        app.router.add_get("/metrics", metrics)
    app.router.add_get("/debug/{name}", debug)
    app.router.add_post("/debug/{name}", action)
    return app


def _dumps(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


async def start_admin(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Listen on ``host:port`` (never sharing the port: no SO_REUSEPORT); OSError when it
    cannot, with nothing left running."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_port=False)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = port
    for address in runner.addresses:
        bound = int(address[1])
        break
    log.info("admin listening on http://%s:%d", host if ":" not in host else f"[{host}]", bound)
    return runner, bound
