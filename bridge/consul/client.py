"""The one HTTP client for every Consul request the bridge makes.

One ``aiohttp.ClientSession`` whose ``TCPConnector(limit=max_connections)`` caps the concurrent
connections (every in-flight blocking query holds one, and a Consul agent refuses more than
``limits.http_max_conns_per_client``, 200 by default, per client) and carries the TLS context
(CA, client certificate, server name). :meth:`ConsulClient.get_json` returns the decoded body
with the headers a blocking-query client needs (``X-Consul-Index``, ``X-Consul-KnownLeader``,
``X-Consul-Results-Filtered-By-ACLs``).

Paths are sent exactly as given: callers percent-encode what goes into a path segment once
(:func:`service_path`), and the URL is built with ``encoded=True`` so nothing encodes it again.
The ACL token travels only in the ``X-Consul-Token`` header, never in a URL that could be logged.
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import aiohttp
from yarl import URL

from ..consul_errors import NOT_CONSUL, consul_shape_problem, describe_consul_error
from ..consul_settings import ConsulSettings
from ..secret_guard import redact, refused_redirect

Params = Mapping[str, Any] | Sequence[tuple[str, Any]]
OutcomeHook = Callable[[str, str], None]  # (outcome, datacenter; "" for the local one)
ConnectionsHook = Callable[[int], None]


class ConsulError(Exception):
    """A failed Consul request. ``kind`` is a short label for logs and metrics.

    Kinds: ``timeout``, ``connection``, ``redirect`` (3xx: never followed), ``invalid_json``,
    ``invalid_body`` (JSON of the wrong shape), ``acl_denied`` (403), ``rate_limited`` (429),
    ``server_error`` (5xx), ``client_error`` (other 4xx).
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


class Client(Protocol):
    """What the watches need of a Consul client (tests substitute their own)."""

    async def get_json(
        self, path: str, params: Params | None = None, *, known_index: int = 0
    ) -> ConsulResponse: ...


def service_path(name: str) -> str:
    """``/v1/health/service/<name>`` with the name percent-encoded once (``/`` included)."""
    return "/v1/health/service/" + quote(name, safe="")


def request_url(address: str, path: str, query: Sequence[tuple[str, Any]]) -> URL:
    """The URL for an already encoded ``path``: nothing in it is encoded a second time."""
    text = address + path
    if query:
        text += "?" + urlencode(query)
    return URL(text, encoded=True)


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


class ConsulClient:
    """The bridge's Consul HTTP client: one session, bounded connections, TLS, token header."""

    def __init__(
        self,
        settings: ConsulSettings,
        *,
        on_request: OutcomeHook | None = None,
        on_connections: ConnectionsHook | None = None,
        ssl_context: Callable[[], ssl.SSLContext | None] | None = None,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        """``on_request(outcome, dc)`` is called once per request (``ok`` or the error kind);
        ``on_connections(n)`` whenever the number of connections held by requests changes;
        ``ssl_context()`` gives the TLS context for new connections (default: one built from
        ``settings`` once); ``scrub(text)`` redacts error texts (default: the token)."""
        self.settings = settings
        self.on_request = on_request
        self.on_connections = on_connections
        self._ssl = build_ssl_context(settings) if ssl_context is None else ssl_context()
        self._ssl_context = ssl_context or (lambda: self._ssl)
        self._scrub = scrub or (lambda text: redact(text, [settings.token]))
        self._session: aiohttp.ClientSession | None = None
        self._in_use = 0

    @property
    def max_connections(self) -> int:
        return self.settings.max_connections

    @property
    def connections_in_use(self) -> int:
        """Connections currently held by a request (idle keep-alive ones not counted)."""
        return self._in_use

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

    def _report(self, outcome: str, params: Params | None) -> None:
        if self.on_request is not None:
            self.on_request(outcome, _dc(params))

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> ConsulClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _get(self, path: str, params: Params | None) -> tuple[int, Mapping[str, str], bytes]:
        """One GET → (status, headers, body). Transport errors (timeouts, refused or reset
        connections) raise :class:`ConsulError`; HTTP error statuses are returned."""
        query, token = _without_token(params)
        headers = {"X-Consul-Token": token} if token else {}
        holder: dict[str, bool] = {}
        extra: dict[str, Any] = {}
        context = self._ssl_context()
        if context is not None:
            extra["ssl"] = context  # the current one: renewed files reach new connections
            if self.settings.tls_server_name:
                extra["server_hostname"] = self.settings.tls_server_name
        try:
            async with self._get_session().get(
                request_url(self.settings.address, path, query),
                headers=headers,
                trace_request_ctx=holder,
                allow_redirects=False,  # the token must not follow a Location anywhere
                **extra,
            ) as resp:
                return resp.status, resp.headers, await resp.read()
        except TimeoutError:
            self._report("timeout", params)
            raise ConsulError("timeout", f"GET {path}: timed out") from None
        except (aiohttp.ClientError, OSError) as exc:
            self._report("connection", params)
            text = describe_consul_error(exc, _dc(params), path)
            raise ConsulError("connection", self._scrub(text)) from None
        finally:
            if holder.get("held"):
                self._set_in_use(self._in_use - 1)

    async def get_json(
        self, path: str, params: Params | None = None, *, known_index: int = 0
    ) -> ConsulResponse:
        """GET a JSON endpoint. Raises :class:`ConsulError` for anything but a 200 with JSON.

        ``path`` is sent as given (already percent-encoded). ``known_index``: the
        ``X-Consul-Index`` of the body the caller already has. When the answer carries that
        same index, its body is not decoded (``unchanged`` is set): for
        ``/v1/health/service/<name>`` Consul moves that index with every change of the
        service's instances, their checks and their nodes, so the body is the same.
        """
        status, headers, raw = await self._get(path, params)
        received_at = time.monotonic()
        redirect = refused_redirect("GET", path, status, headers.get("Location"))
        if redirect is not None:
            self._report("redirect", params)
            raise ConsulError("redirect", self._scrub(redirect), status)
        if status != 200:
            kind = error_kind(status)
            self._report(kind, params)
            text = self._scrub(raw.decode("utf-8", "replace").strip())
            raise ConsulError(kind, f"GET {path}: HTTP {status}: {text:.200}", status)
        index = _index(headers)
        if known_index > 0 and index == known_index:
            self._report("ok", params)
            return ConsulResponse(status, index, None, headers, received_at, unchanged=True)
        try:
            body = json.loads(raw)
        except ValueError:
            self._report("invalid_json", params)
            text = self._scrub(f"{raw!r}")
            not_json = f"{NOT_CONSUL}: the answer is not JSON ({text:.80})"
            raise ConsulError("invalid_json", f"GET {path}: {not_json}") from None
        shape = consul_shape_problem(path, body)
        if shape is not None:
            self._report("invalid_json", params)
            raise ConsulError("invalid_json", f"GET {path}: {shape}")
        self._report("ok", params)
        return ConsulResponse(status, index, body, headers, received_at)


def _dc(params: Params | None) -> str:
    """The ``?dc=`` of a request ("" for the local datacenter)."""
    pairs = params.items() if isinstance(params, Mapping) else (params or ())
    return next((str(value) for key, value in pairs if key == "dc" and value), "")


def _index(headers: Mapping[str, str]) -> int:
    try:
        return max(0, int(headers.get("X-Consul-Index", "0")))
    except ValueError:
        return 0
