"""One shared HTTP client for every Consul request the bridge makes.

python-consul2's own asyncio client opens a new aiohttp session (and TCP connection) per request
and cannot present a client certificate. :class:`ConsulClient` replaces it: it *is* a
python-consul2 ``HTTPClient`` (so ``consul.aio.Consul`` endpoints work on top of it, see
:attr:`ConsulClient.api`) built on ONE ``aiohttp.ClientSession`` whose
``TCPConnector(limit=max_connections)`` caps the concurrent connections and carries the TLS
context. The watcher uses :meth:`ConsulClient.get_json`, which also returns the response headers a
blocking-query client needs (``X-Consul-Index``, ``X-Consul-KnownLeader``,
``X-Consul-Results-Filtered-By-ACLs``).

The ACL token travels only in the ``X-Consul-Token`` header (a ``token`` query parameter given by
a python-consul2 endpoint is moved there), so it is never part of a URL that could be logged.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import aiohttp
import consul.aio
import consul.base

from .consul_settings import ConsulSettings

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
OutcomeHook = Callable[[str], None]
ConnectionsHook = Callable[[int], None]


class ConsulError(Exception):
    """A failed Consul request. ``kind`` is a short label for logs and metrics.

    Kinds: ``timeout``, ``connection``, ``invalid_json``, ``acl_denied`` (403),
    ``rate_limited`` (429), ``server_error`` (5xx), ``client_error`` (other 4xx).
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status


@dataclass(frozen=True)
class ConsulResponse:
    status: int
    index: int  # X-Consul-Index, 0 when absent or invalid
    body: Any  # the decoded JSON
    headers: Mapping[str, str]
    received_at: float  # time.monotonic() when the response was complete
    #: True when the caller said which index it already has and Consul answered that same
    #: index: the body was not decoded (``body`` is None).
    unchanged: bool = False

    @property
    def filtered_by_acls(self) -> bool:
        return self.headers.get("X-Consul-Results-Filtered-By-ACLs", "").lower() == "true"

    @property
    def known_leader(self) -> bool | None:
        value = self.headers.get("X-Consul-KnownLeader")
        return None if value is None else value.lower() == "true"


def build_ssl_context(settings: ConsulSettings) -> ssl.SSLContext | None:
    """The TLS context for an https Consul address (None for http)."""
    if settings.scheme != "https":
        return None
    try:
        context = ssl.create_default_context(cafile=settings.ca_file or None)
        if settings.client_cert:
            context.load_cert_chain(settings.client_cert, settings.client_key or None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"Consul TLS files (CONSUL_CACERT/CLIENT_CERT/CLIENT_KEY): {exc}") from exc
    if not settings.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def error_kind(status: int) -> str:
    if status == 403:
        return "acl_denied"
    if status == 429:
        return "rate_limited"
    if status >= 500:
        return "server_error"
    return "client_error"


def _without_token(params: Params | None) -> tuple[list[tuple[str, Any]], str | None]:
    items = list(params.items()) if isinstance(params, Mapping) else list(params or ())
    token = next((str(v) for k, v in items if k == "token" and v), None)
    return [(k, v) for k, v in items if k != "token"], token


# The endpoint namespaces the bridge may use (ACL and discovery-chain ones warn when created).
_ENDPOINTS = {
    "agent": "Agent", "catalog": "Catalog", "health": "Health", "kv": "KV", "status": "Status",
    "coordinate": "Coordinate", "event": "Event", "query": "Query", "session": "Session",
}  # fmt: skip


class _BridgeConsul(consul.aio.Consul):  # type: ignore[misc]
    """python-consul2's asyncio API object, talking through our shared :class:`ConsulClient`.

    ``consul.base.Consul.__init__`` is deliberately not called: it re-reads ``CONSUL_HTTP_ADDR``
    and ``CONSUL_HTTP_TOKEN`` from the process environment and lets them override explicit
    settings (and rejects valid addresses such as a bare host name). The endpoint namespaces it
    would create are created here instead, all bound to our client.
    """

    def __init__(self, client: ConsulClient) -> None:
        self._loop = asyncio.get_running_loop()
        self.scheme = client.scheme
        self.dc = None
        self.consistency = "default"
        self.token = client.settings.token
        self.http = self.http_connect(client)
        for attr, cls_name in _ENDPOINTS.items():
            if hasattr(consul.base.Consul, cls_name):
                setattr(self, attr, getattr(consul.base.Consul, cls_name)(self))

    def http_connect(self, client: Any, *args: Any, **kwargs: Any) -> ConsulClient:
        assert isinstance(client, ConsulClient)
        return client


class ConsulClient(consul.base.HTTPClient):  # type: ignore[misc]
    """The bridge's Consul HTTP client: one session, bounded connections, TLS, token header."""

    def __init__(
        self,
        settings: ConsulSettings,
        *,
        on_request: OutcomeHook | None = None,
        on_connections: ConnectionsHook | None = None,
    ) -> None:
        super().__init__(
            host=settings.host,
            port=settings.port,
            scheme=settings.scheme,
            verify=settings.verify,
            timeout=settings.request_timeout,
        )
        self.base_uri = settings.address  # brackets IPv6 hosts
        self.settings = settings
        self.on_request = on_request
        self.on_connections = on_connections
        self._ssl = build_ssl_context(settings)
        self._session: aiohttp.ClientSession | None = None
        self._api: _BridgeConsul | None = None
        self._in_use = 0

    # --- session ------------------------------------------------------------------------------

    @property
    def max_connections(self) -> int:
        return self.settings.max_connections

    @property
    def connections_in_use(self) -> int:
        """Connections currently held by a request (idle keep-alive ones not counted)."""
        return self._in_use

    @property
    def api(self) -> Any:
        """A ``consul.aio.Consul`` sharing this client (create it inside the event loop)."""
        if self._api is None:
            self._api = _BridgeConsul(self)
        return self._api

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            trace = aiohttp.TraceConfig()
            trace.on_connection_create_end.append(self._connection_acquired)
            trace.on_connection_reuseconn.append(self._connection_acquired)
            connector = aiohttp.TCPConnector(
                limit=self.settings.max_connections,
                limit_per_host=0,
                ssl=self._ssl if self._ssl is not None else True,
                enable_cleanup_closed=True,
            )
            headers = {"X-Consul-Token": self.settings.token} if self.settings.token else {}
            self._session = aiohttp.ClientSession(
                connector=connector,
                headers=headers,
                trace_configs=[trace],
                timeout=aiohttp.ClientTimeout(total=self.settings.request_timeout),
            )
        return self._session

    async def _connection_acquired(
        self, session: aiohttp.ClientSession, ctx: SimpleNamespace, params: object
    ) -> None:
        holder = ctx.trace_request_ctx
        if isinstance(holder, dict) and not holder.get("held"):
            holder["held"] = True
            self._set_in_use(self._in_use + 1)

    def _set_in_use(self, value: int) -> None:
        self._in_use = value
        if self.on_connections is not None:
            self.on_connections(value)

    def _report(self, outcome: str) -> None:
        if self.on_request is not None:
            self.on_request(outcome)

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ConsulClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- requests -----------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        params: Params | None = None,
        data: str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One request → (status, headers, body). Raises :class:`ConsulError` on transport errors
        (timeouts, refused or reset connections); HTTP error statuses are returned."""
        query, token = _without_token(params)
        all_headers = dict(headers or {})
        if token:
            all_headers["X-Consul-Token"] = token
        url = self.uri(path, query)
        holder: dict[str, bool] = {}
        extra: dict[str, Any] = {}
        if self._ssl is not None and self.settings.tls_server_name:
            extra["server_hostname"] = self.settings.tls_server_name
        try:
            async with self._get_session().request(
                method, url, data=data, headers=all_headers, trace_request_ctx=holder, **extra
            ) as resp:
                body = await resp.read()
                return resp.status, resp.headers, body
        except TimeoutError:
            self._report("timeout")
            raise ConsulError("timeout", f"{method} {path}: timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._report("connection")
            raise ConsulError("connection", f"{method} {path}: {exc!r:.200}") from None
        finally:
            if holder.get("held"):
                self._set_in_use(self._in_use - 1)

    async def get_json(
        self, path: str, params: Params | None = None, *, known_index: int = 0
    ) -> ConsulResponse:
        """GET a JSON endpoint. Raises :class:`ConsulError` for anything but a 200 with JSON.

        ``known_index``: the ``X-Consul-Index`` of the body the caller already has. When the
        answer carries that same index, its body is not decoded (``unchanged`` is set): for
        ``/v1/health/service/<name>`` Consul moves that index with every change of the
        service's instances, their checks and their nodes, so the body is the same.
        """
        status, headers, raw = await self.request("GET", path, params)
        received_at = time.monotonic()
        if status != 200:
            kind = error_kind(status)
            self._report(kind)
            text = raw.decode("utf-8", "replace").strip()
            raise ConsulError(kind, f"GET {path}: HTTP {status}: {text:.200}", status)
        index = _index(headers)
        if known_index > 0 and index == known_index:
            self._report("ok")
            return ConsulResponse(status, index, None, headers, received_at, unchanged=True)
        try:
            body = json.loads(raw)
        except ValueError:
            self._report("invalid_json")
            raise ConsulError("invalid_json", f"GET {path}: invalid JSON: {raw!r:.80}") from None
        self._report("ok")
        return ConsulResponse(status, index, body, headers, received_at)

    async def agent_self(self) -> Mapping[str, Any]:
        """``GET /v1/agent/self`` through python-consul2 (raises ConsulError or its exceptions)."""
        result: Mapping[str, Any] = await self.api.agent.self()
        return result

    # --- python-consul2 HTTPClient interface --------------------------------------------------

    async def _call(
        self, callback: Callable[[Any], Any], method: str, path: str, **kwargs: Any
    ) -> Any:
        status, headers, raw = await self.request(method, path, **kwargs)
        self._report("ok" if status < 400 else error_kind(status))
        text = raw.decode("utf-8", "replace")
        return callback(consul.base.Response(status, headers, text, raw))

    async def get(
        self, callback: Callable[[Any], Any], path: str, params: Params | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return await self._call(callback, "GET", path, params=params, headers=headers)

    async def put(
        self, callback: Callable[[Any], Any], path: str, params: Params | None = None,
        data: str = "", headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return await self._call(callback, "PUT", path, params=params, data=data, headers=headers)

    async def delete(
        self, callback: Callable[[Any], Any], path: str, params: Params | None = None,
        data: str = "", headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return await self._call(callback, "DELETE", path, params=params, data=data, headers=headers)

    async def post(
        self, callback: Callable[[Any], Any], path: str, params: Params | None = None,
        data: str = "", headers: Mapping[str, str] | None = None,
    ) -> Any:  # fmt: skip
        return await self._call(callback, "POST", path, params=params, data=data, headers=headers)


def _index(headers: Mapping[str, str]) -> int:
    try:
        return max(0, int(headers.get("X-Consul-Index", "0")))
    except ValueError:
        return 0
