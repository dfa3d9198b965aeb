"""Settings: one table, four sources. Precedence: flags > environment > config file > defaults.

Every setting has a dotted key (its place in the YAML config file), a kind of value (one parser
per kind, :mod:`bridge.values`), a default, and optionally a command-line flag and environment
variables (Consul's own ``CONSUL_*`` variable where one exists, and always
``CONSUL_XDS_BRIDGE_<KEY>``). Each value is parsed, defaulted and checked here, once; a bad one
raises :class:`ConfigError` naming the key and where the value came from. The table is also the
source of ``--help`` and of the README's settings table (``python -m bridge.config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import yaml

from .values import (
    ADDRESS,
    BOOL,
    HOST_PORT,
    NAMES,
    PATH,
    TEXT,
    Kind,
    duration,
    go_duration,
    integer,
    one_of,
    parse_text,
)

ENV_PREFIX = "CONSUL_XDS_BRIDGE_"
MAX_WAIT = 600.0  # Consul caps blocking waits at 10 minutes


class ConfigError(ValueError):
    """A setting with a bad value; the message names the key, the source and the problem."""

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        where = f" (from {source})" if source else ""
        super().__init__(f"{key}: {problem}{where}")
        self.key = key
        self.problem = problem


# --- kinds only one setting has ------------------------------------------------------------


def _node_key(value: Any) -> str:
    text = parse_text(value)
    if text in ("id", "cluster") or (text.startswith("metadata:") and len(text) > 9):
        return text
    raise ValueError(f"expected id, cluster or metadata:<field>, got {value!r}")


def _mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _rule_list(value: Any) -> tuple[dict[str, Any], ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError(f"expected a list of rules, got {type(value).__name__}")
    rules = []
    for index, rule in enumerate(value):
        if not isinstance(rule, Mapping):
            raise ValueError(f"rule {index}: expected a mapping with match and template_set")
        unknown = set(rule) - {"match", "template_set"}
        if unknown:
            raise ValueError(f"rule {index}: unknown keys {sorted(unknown)}")
        if not isinstance(rule.get("match"), Mapping) or not rule.get("template_set"):
            raise ValueError(f"rule {index}: needs match (a mapping) and template_set")
        rules.append({"match": dict(rule["match"]), "template_set": str(rule["template_set"])})
    return tuple(rules)


def _share(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number from 0 to 1, got {value!r}")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise ValueError(f"expected a number from 0 to 1, got {value!r}") from None
    if not 0.0 <= number <= 1.0:  # NaN fails this too
        raise ValueError(f"expected a number from 0 to 1, got {value!r}")
    return number


NODE_KEY = Kind("SPEC", "id, cluster or metadata:<field>", _node_key)
SHARE = Kind("SHARE", "number 0..1", _share)
MAPPING = Kind("MAPPING", "mapping", _mapping)
RULES = Kind("RULES", "list of rules", _rule_list)


# --- the table -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    key: str
    kind: Kind
    default: Any  # as a user would write it; parsed by ``kind`` like any other value
    help: str
    flag: str | None = None
    env: tuple[str, ...] = ()  # other variables read after CONSUL_XDS_BRIDGE_<KEY>
    file_only: bool = False
    secret: bool = False

    @property
    def env_names(self) -> tuple[str, ...]:
        if self.file_only:
            return ()
        own = ENV_PREFIX + self.key.upper().replace(".", "_")
        return (own, *self.env)

    @property
    def dest(self) -> str:
        return self.key.replace(".", "__")


SETTINGS: tuple[Setting, ...] = (
    Setting("consul.address", ADDRESS, "http://127.0.0.1:8500",
            "Consul HTTP API address: host[:port], http://…, https://…, [v6]:port",
            "--consul-addr", ("CONSUL_HTTP_ADDR",)),
    Setting("consul.ssl", BOOL, False,
            "Talk HTTPS to Consul (an https:// address does too; true upgrades http://, "
            "as Consul's CLI does)", "--consul-ssl", ("CONSUL_HTTP_SSL",)),
    Setting("consul.token", TEXT, "", "Consul ACL token (prefer a token file)",
            env=("CONSUL_HTTP_TOKEN",), secret=True),
    Setting("consul.token_file", PATH, "",
            "File holding the Consul ACL token (wins over a token from the same source)",
            "--consul-token-file", ("CONSUL_HTTP_TOKEN_FILE",)),
    Setting("consul.ca_file", PATH, "", "CA certificate to verify Consul's HTTPS certificate",
            "--consul-ca-file", ("CONSUL_CACERT",)),
    Setting("consul.client_cert", PATH, "", "Client certificate for Consul mTLS",
            "--consul-client-cert", ("CONSUL_CLIENT_CERT",)),
    Setting("consul.client_key", PATH, "", "Client key for Consul mTLS",
            "--consul-client-key", ("CONSUL_CLIENT_KEY",)),
    Setting("consul.ssl_verify", BOOL, True, "Verify Consul's HTTPS certificate",
            "--consul-ssl-verify", ("CONSUL_HTTP_SSL_VERIFY",)),
    Setting("consul.tls_server_name", TEXT, "", "Server name expected in Consul's certificate",
            "--consul-tls-server-name", ("CONSUL_TLS_SERVER_NAME",)),
    Setting("consul.datacenters", NAMES, (),
            "Failover datacenters watched after the local one, in order", "--datacenters"),
    Setting("consul.max_connections", integer(2, 10_000), 100,
            "Cap on concurrent Consul HTTP connections (Consul allows 200 per client)",
            "--consul-max-connections"),
    Setting("consul.wait", duration(positive=True, most=MAX_WAIT), "60s",
            "Blocking query wait time", "--consul-wait"),
    Setting("consul.min_interval", duration(), "100ms",
            "Minimum spacing between two calls of one watch (at most consul.wait)",
            "--consul-min-interval"),
    Setting("consul.mass_removal_share", SHARE, 0.5,
            "A Consul read removing more than this share of a datacenter's served services or "
            "endpoints (within consul.mass_removal_hold) is held", "--mass-removal-share"),
    Setting("consul.mass_removal_hold", duration(most=86_400.0), "3m",
            "How long a held removal must stay unchanged before it is published (also after "
            "an index reset); 0 turns the guard off", "--mass-removal-hold"),
    Setting("consul.config_entries", BOOL, True,
            "Read Consul's discovery config entries (service-defaults, proxy-defaults, "
            "service-resolver, -splitter, -router) and serve the routing they describe",
            "--config-entries"),
    Setting("services.include", NAMES, (), "Only these services (glob patterns)",
            "--include-services"),
    Setting("services.exclude", NAMES, ("consul",), "Never these services (glob patterns)",
            "--exclude-services"),
    Setting("services.include_tags", NAMES, (), "Only services with one of these tags",
            "--include-tags"),
    Setting("services.exclude_tags", NAMES, (), "Never services with one of these tags",
            "--exclude-tags"),
    Setting("services.warning_is_healthy", BOOL, True,
            "Consul 'warning' instances receive traffic (with Weights.Warning)",
            "--warning-is-healthy"),
    Setting("services.include_mesh_kinds", BOOL, False,
            "Serve instances whose Kind is connect-proxy, mesh-gateway, terminating-gateway, "
            "ingress-gateway or api-gateway as ordinary backends", "--include-mesh-kinds"),
    Setting("xds.listen", HOST_PORT, "0.0.0.0:18000", "gRPC xDS listen address",
            "--xds-listen"),
    Setting("xds.node_key", NODE_KEY, "id",
            "How Envoys share snapshots: id, cluster or metadata:<field>", "--node-key"),
    Setting("xds.debounce", duration(), "10ms",
            "Changes within this window after a push are coalesced (at most consul.wait)",
            "--debounce"),
    Setting("xds.max_streams", integer(1, 1_000_000), 50_000,
            "Open xDS streams accepted at once (more get RESOURCE_EXHAUSTED)",
            "--xds-max-streams"),
    Setting("xds.tls_cert", PATH, "",
            "Certificate (PEM chain) of the xDS listener; with xds.tls_key enables TLS",
            "--xds-tls-cert"),
    Setting("xds.tls_key", PATH, "", "Private key (PEM) of the xDS listener's certificate",
            "--xds-tls-key"),
    Setting("xds.tls_client_ca", PATH, "",
            "CA (PEM) that must have signed xDS clients' certificates (enables mTLS)",
            "--xds-tls-client-ca"),
    Setting("xds.require_node_san", BOOL, False,
            "A client's node id must be a URI or DNS SAN of its certificate (needs mTLS)",
            "--xds-require-node-san"),
    Setting("xds.identity_sans", NAMES, (),
            "SAN patterns binding node fields to the client certificate, e.g. "
            "spiffe://mesh/{cluster}/{id} (see docs/security.md)", "--xds-identity-sans"),
    Setting("xds.unbound_fields", NAMES, (),
            "Node fields (cluster, metadata.<key>) accepted as claimed though they select "
            "config under mTLS: a deliberate risk, warned at start", "--xds-unbound-fields"),
    Setting("admin.listen", HOST_PORT, "127.0.0.1:9102",
            "Admin HTTP listener (/healthz, /readyz, /metrics, /debug)", "--admin-listen"),
    Setting("admin.debug_token", TEXT, "",
            "Bearer token required for /debug/* on the admin listener (empty: none)",
            secret=True),
    Setting("templates.dir", PATH, "", "Template sets directory (default: the bundled set)",
            "--templates"),
    Setting("templates.default_set", TEXT, "default", "Template set used when no rule matches",
            "--default-template-set"),
    Setting("templates.rules", RULES, None,
            "Selection rules: [{match: {node_cluster: 'edge-*'}, template_set: edge}]",
            file_only=True),
    Setting("templates.vars", MAPPING, None, "Free variables available to templates as vars",
            file_only=True),
    Setting("log.level", one_of("debug", "info", "warning", "error"), "info",
            "Log level (any case)", "--log-level"),
    Setting("log.format", one_of("text", "json"), "text", "Log format", "--log-format"),
)  # fmt: skip

BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}
DEFAULTS: Mapping[str, Any] = {s.key: s.kind(s.default) for s in SETTINGS}


class Layer(IntEnum):
    """Where a value came from; a higher layer wins."""

    DEFAULT = 0
    FILE = 1
    ENV = 2
    FLAG = 3


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)  # absent: the default
    layers: Mapping[str, Layer] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def source(self, key: str) -> str:
        return self.sources.get(key, "default")

    def layer(self, key: str) -> Layer:
        return self.layers.get(key, Layer.DEFAULT)

    def describe(self) -> dict[str, Any]:
        """Values with their sources, secrets masked (for logs and debug views)."""
        return {
            key: {
                "value": "[redacted]" if BY_KEY[key].secret and value else value,
                "source": self.source(key),
            }
            for key, value in self.values.items()
        }


# --- reading the sources -------------------------------------------------------------------


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted not in BY_KEY and isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _parse_file(path: str | Path) -> Any:
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("config", f"{path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from None


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file → flat ``{dotted key: raw value}``; unknown keys are errors."""
    data = _parse_file(path)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError("config", f"{path} must hold a mapping at the top level")
    flat = _flatten(data)
    for key in flat:
        if key not in BY_KEY:
            close = [k for k in BY_KEY if k.split(".")[-1] == key.split(".")[-1]]
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigError(key, f"unknown setting in {path}{hint}")
    return flat


def _given(
    setting: Setting,
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    file_values: Mapping[str, Any],
    config_file: str | Path | None,
) -> tuple[Any, Layer, str] | None:
    """The raw value of the highest source that sets it, its layer and its name; None: unset."""
    if flags.get(setting.key) is not None:
        source = f"flag {setting.flag}" if setting.flag else "an explicit value"
        return flags[setting.key], Layer.FLAG, source
    for name in setting.env_names:
        if env.get(name, "") != "":
            return env[name], Layer.ENV, f"environment variable {name}"
    if setting.key in file_values:
        return file_values[setting.key], Layer.FILE, f"config file {config_file}"
    return None


def load(
    flags: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    config_file: str | Path | None = None,
) -> Config:
    """Merge the sources (flags > env > file > defaults), parsing and checking every value.

    ``flags`` maps dotted keys to values given on the command line (absent or None: not given).
    """
    flags = flags or {}
    env = env or {}
    file_values = read_file(config_file) if config_file else {}
    values = dict(DEFAULTS)
    sources: dict[str, str] = {}
    layers: dict[str, Layer] = {}
    for setting in SETTINGS:
        given = _given(setting, flags, env, file_values, config_file)
        if given is None:
            continue
        raw, layers[setting.key], sources[setting.key] = given
        try:
            values[setting.key] = setting.kind(raw)
        except ValueError as exc:
            raise ConfigError(setting.key, str(exc), sources[setting.key]) from None
    config = Config(values, sources, layers)
    check_combinations(config)
    return config


def check_combinations(config: Config) -> None:
    """What no single value shows: spacing longer than the blocking wait, half a key pair."""
    wait = config["consul.wait"]
    for key in ("consul.min_interval", "xds.debounce"):
        if config[key] > wait:
            problem = (
                f"{go_duration(config[key])} is longer than consul.wait "
                f"({go_duration(wait)}, from {config.source('consul.wait')})"
            )
            raise ConfigError(key, problem, config.source(key))
    cert, key = "consul.client_cert", "consul.client_key"
    if bool(config[cert]) != bool(config[key]):
        present, missing = (cert, key) if config[cert] else (key, cert)
        raise ConfigError(missing, f"missing, but {present} is set", config.source(present))


# --- the table for people: README and --help ------------------------------------------------


def shown(value: Any) -> str:
    """A default as the README and ``--help`` show it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value) or "—"
    if value is None or value == "":
        return "—"
    return str(value)


def flag_help(setting: Setting) -> str:
    """``--help`` text of a setting's flag: what it does, its default and environment names."""
    env = ", ".join(setting.env_names)
    return f"{setting.help} [default: {shown(setting.default)}; env: {env}]".replace("%", "%%")


def settings_table() -> str:
    """The README's settings table (Markdown)."""
    lines = [
        "| key (config file) | flag | environment | default | value | what |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        env = ", ".join(f"`{e}`" for e in s.env_names) or "(file only)"
        flag = f"`{s.flag}`" if s.flag else "—"
        if s.flag and s.kind is BOOL:
            flag = f"`{s.flag}`, `--no-{s.flag[2:]}`"
        cells = (f"`{s.key}`", flag, env, f"`{shown(s.default)}`", s.kind.describe, s.help)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(settings_table())
