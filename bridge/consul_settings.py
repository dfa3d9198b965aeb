"""How the bridge reaches Consul and which services it watches: :class:`ConsulSettings`.

Built from the settings table (:mod:`bridge.config`), which reads Consul's own variables as
Consul's CLI does: ``CONSUL_HTTP_ADDR`` (``https://`` means TLS), ``CONSUL_HTTP_SSL`` (true means
TLS, even for an ``http://`` address: TLS once asked for is never dropped), the token, the TLS
files and ``CONSUL_HTTP_SSL_VERIFY``. :func:`settings_from_env` is the same path for tests and
tools: an environment plus explicit values.

The ACL token is a secret: it never appears in ``repr()``/``str()`` of the settings, and the
client sends it only as the ``X-Consul-Token`` header, never in a URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from .config import DEFAULTS, SETTINGS, Config, ConfigError, load
from .values import go_duration, parse_duration

REDACTED = "[redacted]"
_ADDRESS = DEFAULTS["consul.address"]


@dataclass(frozen=True)
class ConsulSettings:
    """Connection, timing and selection settings for the Consul watcher (immutable)."""

    scheme: str = _ADDRESS.scheme or "http"
    host: str = _ADDRESS.host
    port: int = _ADDRESS.port
    token: str = field(default="", repr=False)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    verify: bool = DEFAULTS["consul.ssl_verify"]
    tls_server_name: str | None = None
    datacenters: tuple[str, ...] = DEFAULTS["consul.datacenters"]  # after the local one
    max_connections: int = DEFAULTS["consul.max_connections"]
    wait: float = DEFAULTS["consul.wait"]  # blocking query wait, seconds
    min_interval: float = DEFAULTS["consul.min_interval"]  # between two calls of one watch
    mass_removal_share: float = DEFAULTS["consul.mass_removal_share"]  # 0-1 of what is served
    mass_removal_hold: float = DEFAULTS["consul.mass_removal_hold"]  # seconds; 0: no guard
    backoff_base: float = 0.25  # first retry delay after an error, doubled each time
    backoff_max: float = 60.0
    request_margin: float = 5.0  # HTTP timeout = wait * 17/16 + this
    include: tuple[str, ...] = DEFAULTS["services.include"]  # name globs; empty: every service
    exclude: tuple[str, ...] = DEFAULTS["services.exclude"]
    include_tags: tuple[str, ...] = DEFAULTS["services.include_tags"]  # empty: none required
    exclude_tags: tuple[str, ...] = DEFAULTS["services.exclude_tags"]

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
        return go_duration(self.wait)

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


# --- from the settings table ---------------------------------------------------------------

# The table's Consul keys by their last part: ``max_connections`` → ``consul.max_connections``.
_KEYS: Mapping[str, str] = {
    s.key.rpartition(".")[2]: s.key
    for s in SETTINGS
    if s.key.startswith(("consul.", "services."))
    and s.key
    not in ("services.warning_is_healthy", "services.include_mesh_kinds", "consul.config_entries")
}
_AS_IS: tuple[str, ...] = ("datacenters", "max_connections", "wait", "min_interval")
_AS_IS += ("mass_removal_share", "mass_removal_hold")
_AS_IS += ("include", "exclude", "include_tags", "exclude_tags")
_UNSET_IS_NONE = ("ca_file", "client_cert", "client_key", "tls_server_name")


def consul_settings(config: Config) -> ConsulSettings:
    """The Consul part of the merged settings; raises :class:`ConfigError` for a bad token file."""
    address = config["consul.address"]
    values: dict[str, Any] = {name: config[_KEYS[name]] for name in _AS_IS}
    values |= {name: config[_KEYS[name]] or None for name in _UNSET_IS_NONE}
    return ConsulSettings(
        scheme="https" if config["consul.ssl"] else address.scheme or "http",
        host=address.host,
        port=address.port,
        token=_token(config),
        verify=config["consul.ssl_verify"],
        **values,
    )


def _token(config: Config) -> str:
    """A token file wins over a token from the same or a lower source, as in Consul's CLI."""
    file_key, token_key = "consul.token_file", "consul.token"
    if config[file_key] and config.layer(file_key) >= config.layer(token_key):
        path, source = config[file_key], config.source(file_key)
        try:
            token = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            problem = f"cannot read token file {path!r}: {exc.strerror or exc}"
            raise ConfigError(file_key, problem, source) from None
        except UnicodeDecodeError:
            raise ConfigError(file_key, f"token file {path!r} is not UTF-8 text", source) from None
        if not token:
            raise ConfigError(file_key, f"token file {path!r} is empty", source)
        return token
    return str(config[token_key]).strip()


# --- for tests and tools -------------------------------------------------------------------

_TUNABLES = ("backoff_base", "backoff_max", "request_margin")  # not user settings


def settings_from_env(env: Mapping[str, str], **overrides: Any) -> ConsulSettings:
    """Consul's standard environment variables, overridden by explicit values, through the table.

    ``overrides`` are named by the last part of a table key (``address``, ``token``,
    ``token_file``, ``ssl``, ``ssl_verify`` or ``verify``, ``max_connections``, ``wait``,
    ``include``, ...) plus ``backoff_base``, ``backoff_max`` and ``request_margin``; ``None`` and
    ``""`` mean "not given". Explicit values rank as flags. Raises ``ValueError`` naming the key.
    """
    flags: dict[str, Any] = {}
    tunables: dict[str, Any] = {}
    for name, value in overrides.items():
        name = "ssl_verify" if name == "verify" else name
        if name not in _KEYS and name not in _TUNABLES:
            raise ValueError(f"{name}: not a Consul setting")
        if value is None or (isinstance(value, str) and value == ""):
            continue
        if name in _KEYS:
            flags[_KEYS[name]] = value
            continue
        try:
            tunables[name] = parse_duration(value)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    settings = replace(consul_settings(load(flags, env)), **tunables)
    if settings.backoff_max < settings.backoff_base:
        raise ValueError("backoff_max: must not be below backoff_base")
    return settings
