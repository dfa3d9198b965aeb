"""How the bridge reaches Consul and which services it watches: :class:`ConsulSettings`.

:func:`settings_from_env` reads Consul's standard environment variables (the ones the ``consul``
CLI and the Go API client read) and lets explicit values -- flags, the config file -- override
them. Every invalid value raises ``ValueError`` naming the variable (or setting) and the problem.

The ACL token is a secret: it never appears in ``repr()``/``str()`` of the settings, and the
client sends it only as the ``X-Consul-Token`` header, never in a URL.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500
MAX_WAIT = 600.0  # Consul caps blocking waits at 10 minutes
REDACTED = "[redacted]"

_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_TRUE = {"1", "t", "true", "yes", "on"}  # Go's strconv.ParseBool, plus yes/on
_FALSE = {"0", "f", "false", "no", "off"}


@dataclass(frozen=True)
class ConsulSettings:
    """Connection, timing and selection settings for the Consul watcher (immutable)."""

    scheme: str = "http"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    token: str = field(default="", repr=False)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = True
    tls_server_name: str | None = None
    datacenters: tuple[str, ...] = ()  # watched after the local datacenter, in failover order
    max_connections: int = 100
    wait: float = 60.0  # blocking query wait, seconds
    min_interval: float = 0.1  # minimum spacing between two calls of one watch, seconds
    backoff_base: float = 0.25  # first retry delay after an error, doubled each time
    backoff_max: float = 60.0
    request_margin: float = 5.0  # HTTP timeout = wait * 17/16 + this
    include: tuple[str, ...] = ()  # service name globs; empty: every service
    exclude: tuple[str, ...] = ("consul",)
    include_tags: tuple[str, ...] = ()  # tag globs; empty: no tag required
    exclude_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _validate(self)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={REDACTED if f.name == 'token' and self.token else getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"ConsulSettings({shown})"

    __str__ = __repr__

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def wait_param(self) -> str:
        """The wait as a Go duration for the ``wait`` query parameter (``2s``, ``1500ms``)."""
        millis = round(self.wait * 1000)
        return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"

    @property
    def request_timeout(self) -> float:
        """HTTP timeout of one request: Consul may hold a blocking query up to wait * 17/16."""
        return self.wait * 17 / 16 + self.request_margin

    def matches(self, service: str, tags: Iterable[str] = ()) -> bool:
        """Is this service selected? Name globs first, then tag globs (any tag matching)."""
        if self.include and not _any_match(self.include, (service,)):
            return False
        if _any_match(self.exclude, (service,)):
            return False
        tag_list = tuple(tags)
        if self.include_tags and not _any_match(self.include_tags, tag_list):
            return False
        return not _any_match(self.exclude_tags, tag_list)


def _any_match(patterns: Iterable[str], values: Iterable[str]) -> bool:
    values = tuple(values)
    return any(fnmatchcase(v, p) for p in patterns for v in values)


def _validate(s: ConsulSettings) -> None:
    if s.scheme not in ("http", "https"):
        raise ValueError(f"scheme: expected http or https, got {s.scheme!r}")
    if not s.host:
        raise ValueError("host: must not be empty")
    if not 0 < s.port <= 65535:
        raise ValueError(f"port: {s.port} is out of range 1-65535")
    if bool(s.client_cert) != bool(s.client_key):
        raise ValueError(
            "client_cert/client_key: set both or neither (CONSUL_CLIENT_CERT and CONSUL_CLIENT_KEY)"
        )
    if s.max_connections < 2:
        raise ValueError(f"max_connections: must be at least 2, got {s.max_connections}")
    if not 0 < s.wait <= MAX_WAIT:
        raise ValueError(f"wait: must be > 0 and at most 10m, got {s.wait}s")
    for name in ("min_interval", "backoff_base", "backoff_max", "request_margin"):
        if getattr(s, name) < 0:
            raise ValueError(f"{name}: must not be negative, got {getattr(s, name)}")
    if s.backoff_max < s.backoff_base:
        raise ValueError("backoff_max: must not be below backoff_base")
    if any(not dc for dc in s.datacenters):
        raise ValueError("datacenters: empty datacenter name")


# --- parsing helpers ------------------------------------------------------------------------


def parse_bool(value: str | bool, what: str) -> bool:
    if isinstance(value, bool):
        return value
    text = value.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{what}: expected true or false, got {value!r}")


def parse_duration(value: str | float, what: str) -> float:
    """``250ms``, ``2s``, ``1m30s`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration like 250ms or 60s, got {value!r}")
    if isinstance(value, int | float):
        return float(value)
    text = value.strip()
    if _DURATION.match(text):
        return sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what}: expected a duration like 250ms or 60s, got {value!r}") from None


def parse_address(value: str, what: str = "CONSUL_HTTP_ADDR") -> tuple[str | None, str, int]:
    """``host[:port]``, ``http://host[:port]``, ``https://…``, ``[v6]:port`` → (scheme, host, port).

    The scheme is None when the address has none (``CONSUL_HTTP_SSL`` then decides).
    """
    text = value.strip().rstrip("/")
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme == "unix":
            raise ValueError(f"{what}: unix sockets are not supported, got {value!r}")
        if scheme not in ("http", "https"):
            raise ValueError(f"{what}: unsupported scheme {scheme!r} in {value!r}")
    if not text or "/" in text or "@" in text:
        raise ValueError(f"{what}: expected [http[s]://]host[:port], got {value!r}")
    host, port_text = _split_host_port(text, what, value)
    if port_text is None:
        port = {"https": 443, "http": 80}.get(scheme or "", DEFAULT_PORT)
    elif port_text.isdigit() and 0 < int(port_text) <= 65535:
        port = int(port_text)
    else:
        raise ValueError(f"{what}: invalid port {port_text!r} in {value!r}")
    return scheme, host, port


def _split_host_port(text: str, what: str, value: str) -> tuple[str, str | None]:
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"{what}: malformed IPv6 address in {value!r}")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise ValueError(f"{what}: IPv6 addresses need brackets, e.g. [::1]:8500; got {value!r}")
    host, sep, port_text = text.partition(":")
    if not host:
        raise ValueError(f"{what}: missing host in {value!r}")
    return host, port_text if sep else None


def _read_token_file(path: str, what: str) -> str:
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"{what}: cannot read token file {path!r}: {exc.strerror}") from None
    if not token:
        raise ValueError(f"{what}: token file {path!r} is empty")
    return token


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, Iterable):
        items = [str(part).strip() for part in value]
    else:
        raise ValueError(f"{what}: expected a list of names, got {value!r}")
    return tuple(dict.fromkeys(i for i in items if i))


# --- settings_from_env ---------------------------------------------------------------------

_FIELDS = {f.name for f in fields(ConsulSettings)}
_ALIASES = {"ssl_verify": "verify"}
_EXTRA_OVERRIDES = {"address", "token_file", "ssl"}
_STRING_FIELDS = {"token", "ca_file", "client_cert", "client_key", "tls_server_name"}
_DURATION_FIELDS = {"wait", "min_interval", "backoff_base", "backoff_max", "request_margin"}
_LIST_FIELDS = {"datacenters", "include", "exclude", "include_tags", "exclude_tags"}
_ENV_FILES = {"CONSUL_CACERT": "ca_file", "CONSUL_CLIENT_CERT": "client_cert"}
_ENV_FILES |= {"CONSUL_CLIENT_KEY": "client_key", "CONSUL_TLS_SERVER_NAME": "tls_server_name"}


def settings_from_env(env: Mapping[str, str], **overrides: Any) -> ConsulSettings:
    """Consul's standard environment variables, overridden by explicit values.

    Environment: ``CONSUL_HTTP_ADDR``, ``CONSUL_HTTP_TOKEN``, ``CONSUL_HTTP_TOKEN_FILE``,
    ``CONSUL_HTTP_SSL``, ``CONSUL_HTTP_SSL_VERIFY``, ``CONSUL_CACERT``, ``CONSUL_CLIENT_CERT``,
    ``CONSUL_CLIENT_KEY``, ``CONSUL_TLS_SERVER_NAME``.

    ``overrides`` are any :class:`ConsulSettings` field, plus ``address`` (like
    ``CONSUL_HTTP_ADDR``), ``token_file``, ``ssl`` and ``ssl_verify`` (alias of ``verify``).
    ``None`` (and ``""`` for strings) means "not given". Durations accept ``2s``/``250ms`` or
    seconds; lists accept a sequence or a comma-separated string.

    Token precedence (as the ``consul`` CLI, where a token file wins over a token, and explicit
    values win over the environment): token_file > token > CONSUL_HTTP_TOKEN_FILE >
    CONSUL_HTTP_TOKEN.
    """
    given = _given(overrides)
    values: dict[str, Any] = {}
    _apply_address(values, env, given)
    _apply_token(values, env, given)
    _apply_tls(values, env, given)
    for key, value in given.items():
        if key in _EXTRA_OVERRIDES or key in values:
            continue
        values[key] = _convert(key, value)
    return ConsulSettings(**values)


def _given(overrides: Mapping[str, Any]) -> dict[str, Any]:
    given: dict[str, Any] = {}
    for key, value in overrides.items():
        key = _ALIASES.get(key, key)
        if key not in _FIELDS and key not in _EXTRA_OVERRIDES:
            raise ValueError(f"{key}: not a Consul setting")
        if value is None or (value == "" and (key in _STRING_FIELDS or key in _EXTRA_OVERRIDES)):
            continue
        given[key] = value
    return given


def _convert(key: str, value: Any) -> Any:
    if key in _DURATION_FIELDS:
        return parse_duration(value, key)
    if key in _LIST_FIELDS:
        return _strings(value, key)
    if key in ("port", "max_connections"):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ValueError(f"{key}: expected an integer, got {value!r}") from None
    if key == "verify":
        return parse_bool(value, key)
    return value


def _apply_address(values: dict[str, Any], env: Mapping[str, str], given: dict[str, Any]) -> None:
    scheme: str | None = None
    if "address" in given:
        scheme, values["host"], values["port"] = parse_address(str(given["address"]), "address")
    elif env.get("CONSUL_HTTP_ADDR"):
        scheme, values["host"], values["port"] = parse_address(env["CONSUL_HTTP_ADDR"])
    ssl: bool | None = None
    if "ssl" in given:
        ssl = parse_bool(given["ssl"], "ssl")
    elif env.get("CONSUL_HTTP_SSL"):
        ssl = parse_bool(env["CONSUL_HTTP_SSL"], "CONSUL_HTTP_SSL")
    if ssl:
        scheme = "https"
    elif ssl is False and scheme is None:
        scheme = "http"
    if scheme is not None:
        values["scheme"] = scheme
    for key in ("scheme", "host", "port"):
        if key in given:
            values[key] = _convert(key, given[key])


def _apply_token(values: dict[str, Any], env: Mapping[str, str], given: dict[str, Any]) -> None:
    if "token_file" in given:
        values["token"] = _read_token_file(str(given["token_file"]), "token_file")
    elif "token" in given:
        values["token"] = str(given["token"])
    elif env.get("CONSUL_HTTP_TOKEN_FILE"):
        values["token"] = _read_token_file(env["CONSUL_HTTP_TOKEN_FILE"], "CONSUL_HTTP_TOKEN_FILE")
    elif env.get("CONSUL_HTTP_TOKEN"):
        values["token"] = env["CONSUL_HTTP_TOKEN"].strip()


def _apply_tls(values: dict[str, Any], env: Mapping[str, str], given: dict[str, Any]) -> None:
    for var, key in _ENV_FILES.items():
        if key in given:
            values[key] = str(given[key])
        elif env.get(var):
            values[key] = env[var]
    if "verify" in given:
        values["verify"] = parse_bool(given["verify"], "ssl_verify")
    elif env.get("CONSUL_HTTP_SSL_VERIFY"):
        values["verify"] = parse_bool(env["CONSUL_HTTP_SSL_VERIFY"], "CONSUL_HTTP_SSL_VERIFY")


def with_overrides(settings: ConsulSettings, **changes: Any) -> ConsulSettings:
    """A copy of ``settings`` with some fields changed (converted like overrides)."""
    return replace(settings, **{k: _convert(k, v) for k, v in changes.items()})
