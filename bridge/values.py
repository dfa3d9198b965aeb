"""One parser per kind of setting value: durations, booleans, integers, ``host:port``, Consul
addresses, text, lists of names, choices.

Every parser takes what a flag, an environment variable or a YAML file gives (a string, or a
YAML scalar/list) and returns the value, or raises ``ValueError`` saying what is wrong. The
problem never names the setting: :mod:`bridge.config` adds the key and where the value came from.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

DEFAULT_CONSUL_PORT = 8500  # an address without scheme or port means Consul's HTTP port


@dataclass(frozen=True)
class Kind:
    """A kind of value: its parser, the ``--help`` placeholder and the README description."""

    metavar: str
    describe: str
    parse: Callable[[Any], Any]

    def __call__(self, value: Any) -> Any:
        return self.parse(value)


# --- durations: Go's time.ParseDuration syntax (as Consul reads them), or plain seconds --------

_GO_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0}
_GO_UNIT |= {"m": 60.0, "h": 3600.0}
_GO_TERM = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_GO_DURATION = re.compile(rf"[-+]?(?:{_GO_TERM.pattern})+")
_DURATION_HINT = "expected a duration like 250ms, 30s or 1m30s"


def parse_go_duration(text: str) -> float:
    """Seconds in a Go duration string (``"5s"``, ``"1m30s"``, ``"-250ms"``, ``"0"``); raises
    ``ValueError`` for anything Go's ``time.ParseDuration`` would refuse (a bare number too)."""
    text = text.strip()
    if text != "0" and not _GO_DURATION.fullmatch(text):
        raise ValueError(f"{_DURATION_HINT}, got {text!r}")
    total = sum(float(number) * _GO_UNIT[unit] for number, unit in _GO_TERM.findall(text))
    return -total if text.startswith("-") else total


def _seconds(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{_DURATION_HINT}, got {value!r}")
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"too large: {value!r}") from None
    text = str(value).strip()
    try:
        return parse_go_duration(text)
    except ValueError:
        pass
    try:
        return float(text)  # a plain number of seconds
    except ValueError:
        raise ValueError(f"{_DURATION_HINT}, got {value!r}") from None


def parse_duration(value: Any) -> float:
    """``250ms``, ``1m30s``, ``1.5h`` (Go syntax) or a number of seconds → finite seconds >= 0."""
    seconds = _seconds(value)
    if not math.isfinite(seconds):
        raise ValueError(f"must be a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"must not be negative, got {value!r}")
    return seconds


def go_duration(seconds: float) -> str:
    """Seconds → a Go duration in whole seconds or milliseconds (``60s``, ``1500ms``)."""
    millis = round(seconds * 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def duration(*, positive: bool = False, most: float = math.inf) -> Kind:
    """Durations in ``[0, most]`` (``(0, most]`` when ``positive``)."""
    low = "> 0" if positive else ">= 0"
    bound = "" if math.isinf(most) else f", at most {go_duration(most)}"

    def parse(value: Any) -> float:
        seconds = parse_duration(value)
        if (positive and seconds == 0) or seconds > most:
            raise ValueError(f"must be {low}{bound}, got {value!r}")
        return seconds

    return Kind("DURATION", f"duration {low}{bound}", parse)


# --- booleans: one set of words everywhere (Go's strconv.ParseBool, any case, plus yes/no/on/off)

_TRUE = frozenset({"1", "t", "true", "yes", "on"})
_FALSE = frozenset({"0", "f", "false", "no", "off"})


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"expected true or false, got {value!r}")


BOOL = Kind("BOOL", "true/false", parse_bool)


# --- integers ------------------------------------------------------------------------------


def integer(low: int, high: int) -> Kind:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {value!r}")
        try:
            number = int(value) if isinstance(value, float) else int(str(value).strip())
        except (ValueError, OverflowError):
            raise ValueError(f"expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise ValueError(f"expected {low}..{high}, got {number}")
        return number

    return Kind("N", f"integer {low}..{high}", parse)


PORT = integer(0, 65535)


# --- host:port and Consul addresses --------------------------------------------------------


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


class HostPort(NamedTuple):
    """``host:port`` or ``[v6]:port``; the host is kept without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{_bracketed(self.host)}:{self.port}"


class ConsulAddress(NamedTuple):
    """``[http[s]://]host[:port]``; ``scheme`` is None when the address names none."""

    scheme: str | None
    host: str
    port: int

    def __str__(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        return f"{prefix}{_bracketed(self.host)}:{self.port}"


def _split_host_port(text: str) -> tuple[str, str | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` → (host, port text or None)."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not host or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed IPv6 address {text!r}")
        return host, rest[1:] if rest else None
    if text.count(":") > 1:
        raise ValueError(f"IPv6 addresses need brackets, e.g. [::1]:8500; got {text!r}")
    host, sep, port = text.partition(":")
    if not host:
        raise ValueError(f"missing host in {text!r}")
    return host, port if sep else None


def _port(text: str, low: int) -> int:
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= 65535:
        raise ValueError(f"invalid port {text!r} (expected {low}..65535)")
    return int(text)


def parse_host_port(value: Any) -> HostPort:
    """``HOST:PORT`` or ``[V6]:PORT`` (port 0..65535; 0 lets a listener pick one)."""
    text = parse_text(value).strip()
    host, port = _split_host_port(text)
    if port is None:
        raise ValueError(f"expected HOST:PORT (e.g. 127.0.0.1:9102), got {text!r}")
    return HostPort(host, _port(port, 0))


HOST_PORT = Kind("HOST:PORT", "host:port or [v6]:port", parse_host_port)


def parse_address(value: Any) -> ConsulAddress:
    """``host[:port]``, ``http://host[:port]``, ``https://…``, ``[v6]:port`` (as CONSUL_HTTP_ADDR).

    Without a port: 8500 when the address has no scheme, else the scheme's port (80, 443).
    """
    text = parse_text(value).strip().rstrip("/")
    scheme: str | None = None
    if "://" in text:
        scheme, _, text = text.partition("://")
        scheme = scheme.lower()
        if scheme == "unix":
            raise ValueError(f"unix sockets are not supported, got {value!r}")
        if scheme not in ("http", "https"):
            raise ValueError(f"unsupported scheme {scheme!r} in {value!r}")
    if not text or "/" in text or "@" in text:
        raise ValueError(f"expected [http[s]://]host[:port], got {value!r}")
    host, port = _split_host_port(text)
    if port is not None:
        return ConsulAddress(scheme, host, _port(port, 1))
    return ConsulAddress(scheme, host, {"https": 443, "http": 80}.get(scheme or "", 8500))


ADDRESS = Kind("ADDRESS", "[http[s]://]host[:port]", parse_address)


# --- text, names, choices ------------------------------------------------------------------


def parse_text(value: Any) -> str:
    if isinstance(value, Mapping | list | tuple):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return str(value)


def parse_names(value: Any) -> tuple[str, ...]:
    """A YAML list or a comma-separated string → names, stripped, without empties or repeats."""
    if value is None:
        return ()
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [parse_text(item) for item in value]
    else:
        raise ValueError(f"expected a list or a comma-separated string, got {value!r}")
    return tuple(dict.fromkeys(item.strip() for item in items if item.strip()))


TEXT = Kind("TEXT", "text", parse_text)
PATH = Kind("PATH", "file path", parse_text)
NAMES = Kind("A,B", "list (YAML or comma-separated)", parse_names)


def one_of(*choices: str) -> Kind:
    """One of ``choices``, in any case (``DEBUG`` is ``debug``)."""

    def parse(value: Any) -> str:
        text = parse_text(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return text

    return Kind("{" + ",".join(choices) + "}", ", ".join(choices), parse)
