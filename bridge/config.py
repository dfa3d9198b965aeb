"""Settings: one table, four sources. Precedence: flags > environment > config file > defaults.

Every setting has a dotted key (its place in the YAML config file), a parser that produces a
clear error, a default, and optionally a command-line flag and environment variables (Consul's
standard ``CONSUL_*`` variables where one exists, and always ``CONSUL_XDS_BRIDGE_<KEY>``).
The README's settings table is generated from :data:`SETTINGS` (``python -m bridge.config``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "CONSUL_XDS_BRIDGE_"


class ConfigError(ValueError):
    """A setting with a bad value; the message names the key, the source and the problem."""

    def __init__(self, key: str, problem: str, source: str = "") -> None:
        where = f" (from {source})" if source else ""
        super().__init__(f"{key}: {problem}{where}")
        self.key = key
        self.problem = problem


Parser = Callable[[Any], Any]

_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(ms|s|m|h))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration(value: Any) -> float:
    """``250ms``, ``2s``, ``1m30s`` or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 250ms or 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        if _DURATION.match(text):
            seconds = sum(float(n) * _UNIT[u] for n, u in _DURATION_PART.findall(text))
        else:
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(f"expected a duration like 250ms or 30s, got {value!r}") from None
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def integer(low: int, high: int) -> Parser:
    def parse(value: Any) -> int:
        if isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"expected {low}..{high}, got {number}")
        return number

    return parse


def string(value: Any) -> str:
    if isinstance(value, Mapping | list):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


def string_list(value: Any) -> tuple[str, ...]:
    """A YAML list, or a comma-separated string (flags and environment)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, list | tuple):
        return tuple(string(v) for v in value)
    raise ValueError(f"expected a list or a comma-separated string, got {value!r}")


def host_port(value: Any) -> str:
    text = string(value).strip()
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9102), got {value!r}")
    return text


def one_of(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        text = string(value)
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return parse


def node_key(value: Any) -> str:
    text = string(value)
    if text in ("id", "cluster") or (text.startswith("metadata:") and len(text) > 9):
        return text
    raise ValueError(f"expected id, cluster or metadata:<field>, got {value!r}")


def mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def rule_list(value: Any) -> tuple[dict[str, Any], ...]:
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


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Parser
    default: Any
    help: str
    flag: str | None = None
    env: tuple[str, ...] = ()
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
    Setting("consul.address", string, "http://127.0.0.1:8500",
            "Consul HTTP API address: host:port, http://…, https://…", "--consul-addr",
            ("CONSUL_HTTP_ADDR",)),
    Setting("consul.token", string, "", "Consul ACL token (prefer a token file)",
            env=("CONSUL_HTTP_TOKEN",), secret=True),
    Setting("consul.token_file", string, "", "File holding the Consul ACL token",
            "--consul-token-file", ("CONSUL_HTTP_TOKEN_FILE",)),
    Setting("consul.ca_file", string, "", "CA certificate to verify Consul's HTTPS certificate",
            "--consul-ca-file", ("CONSUL_CACERT",)),
    Setting("consul.client_cert", string, "", "Client certificate for Consul mTLS",
            "--consul-client-cert", ("CONSUL_CLIENT_CERT",)),
    Setting("consul.client_key", string, "", "Client key for Consul mTLS",
            "--consul-client-key", ("CONSUL_CLIENT_KEY",)),
    Setting("consul.ssl_verify", boolean, True, "Verify Consul's HTTPS certificate",
            "--consul-ssl-verify", ("CONSUL_HTTP_SSL_VERIFY",)),
    Setting("consul.tls_server_name", string, "", "Server name expected in Consul's certificate",
            "--consul-tls-server-name", ("CONSUL_TLS_SERVER_NAME",)),
    Setting("consul.datacenters", string_list, (),
            "Failover datacenters watched after the local one, in order", "--datacenters"),
    Setting("consul.max_connections", integer(2, 10_000), 100,
            "Cap on concurrent Consul HTTP connections (Consul allows 200 per client)",
            "--consul-max-connections"),
    Setting("consul.wait", duration, 60.0, "Blocking query wait time", "--consul-wait"),
    Setting("consul.min_interval", duration, 0.1,
            "Minimum spacing between two calls of one watch", "--consul-min-interval"),
    Setting("services.include", string_list, (), "Only these services (glob patterns)",
            "--include-services"),
    Setting("services.exclude", string_list, ("consul",), "Never these services (glob patterns)",
            "--exclude-services"),
    Setting("services.include_tags", string_list, (), "Only services with one of these tags",
            "--include-tags"),
    Setting("services.exclude_tags", string_list, (), "Never services with one of these tags",
            "--exclude-tags"),
    Setting("services.warning_is_healthy", boolean, True,
            "Consul 'warning' instances receive traffic (with Weights.Warning)",
            "--warning-is-healthy"),
    Setting("xds.listen", host_port, "0.0.0.0:18000", "gRPC xDS listen address", "--xds-listen"),
    Setting("xds.node_key", node_key, "id",
            "How Envoys share snapshots: id, cluster or metadata:<field>", "--node-key"),
    Setting("xds.debounce", duration, 0.01,
            "Changes within this window after a push are coalesced", "--debounce"),
    Setting("xds.max_streams", integer(1, 1_000_000), 50_000,
            "Open xDS streams accepted at once (more get RESOURCE_EXHAUSTED)",
            "--xds-max-streams"),
    Setting("xds.tls_cert", string, "",
            "Certificate (PEM chain) of the xDS listener; with xds.tls_key enables TLS",
            "--xds-tls-cert"),
    Setting("xds.tls_key", string, "", "Private key (PEM) of the xDS listener's certificate",
            "--xds-tls-key"),
    Setting("xds.tls_client_ca", string, "",
            "CA (PEM) that must have signed xDS clients' certificates (enables mTLS)",
            "--xds-tls-client-ca"),
    Setting("xds.require_node_san", boolean, False,
            "A client's node id must be a URI or DNS SAN of its certificate (needs mTLS)",
            "--xds-require-node-san"),
    Setting("admin.listen", host_port, "127.0.0.1:9102",
            "Admin HTTP listener (/healthz, /readyz, /metrics, /debug)", "--admin-listen"),
    Setting("admin.debug_token", string, "",
            "Bearer token required for /debug/* on the admin listener (empty: none)",
            secret=True),
    Setting("templates.dir", string, "", "Template sets directory (default: the bundled set)",
            "--templates"),
    Setting("templates.default_set", string, "default", "Template set used when no rule matches",
            "--default-template-set"),
    Setting("templates.rules", rule_list, (),
            "Selection rules: [{match: {node_cluster: 'edge-*'}, template_set: edge}]",
            file_only=True),
    Setting("templates.vars", mapping, {}, "Free variables available to templates as vars",
            file_only=True),
    Setting("log.level", one_of("debug", "info", "warning", "error"), "info", "Log level",
            "--log-level"),
    Setting("log.format", one_of("text", "json"), "text", "Log format", "--log-format"),
)  # fmt: skip

BY_KEY: Mapping[str, Setting] = {s.key: s for s in SETTINGS}


@dataclass(frozen=True)
class Config:
    values: Mapping[str, Any]
    sources: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def describe(self) -> dict[str, Any]:
        """Values with their sources, secrets masked (for logs and debug views)."""
        return {
            key: {
                "value": "[redacted]" if BY_KEY[key].secret and value else value,
                "source": self.sources.get(key, "default"),
            }
            for key, value in self.values.items()
        }


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if dotted in BY_KEY:
            flat[dotted] = value
        elif isinstance(value, Mapping):
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def read_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file → flat ``{dotted key: raw value}``; unknown keys are errors."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("config", f"{path} is not valid YAML: {exc}") from None
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
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        raw: Any = None
        source = "default"
        if flags.get(setting.key) is not None:
            raw, source = flags[setting.key], f"flag {setting.flag}"
        else:
            for name in setting.env_names:
                if env.get(name, "") != "":
                    raw, source = env[name], f"environment variable {name}"
                    break
            else:
                if setting.key in file_values:
                    raw, source = file_values[setting.key], f"config file {config_file}"
        if source == "default":
            values[setting.key] = setting.default
            continue
        try:
            values[setting.key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(setting.key, str(exc), source) from None
        sources[setting.key] = source
    return Config(values, sources)


def settings_table() -> str:
    """The README's settings table (Markdown)."""
    lines = [
        "| key (config file) | flag | environment | default | what |",
        "|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        default = s.default
        if isinstance(default, tuple):
            default = ",".join(default) or "—"
        elif default in ("", {}, ()):
            default = "—"
        env = ", ".join(f"`{e}`" for e in s.env_names) or "(file only)"
        flag = f"`{s.flag}`" if s.flag else "—"
        lines.append(f"| `{s.key}` | {flag} | {env} | `{default}` | {s.help} |")
    return "\n".join(lines)


def add_flags(parser: Any, settings: Sequence[Setting] = SETTINGS) -> None:
    """Add every setting's flag to an argparse parser (values stay strings; parsed in load)."""
    for s in settings:
        if s.flag:
            parser.add_argument(s.flag, dest=s.dest, default=None, metavar="VALUE", help=s.help)


def flags_from_namespace(namespace: Any) -> dict[str, Any]:
    return {s.key: getattr(namespace, s.dest, None) for s in SETTINGS if s.flag}


if __name__ == "__main__":
    print(settings_table())
