"""Logging setup: one line per event, text or JSON, secrets never printed.

Secrets (the Consul token) are registered with :func:`register_secret`; every record's final
message is scrubbed of them before it is formatted, whatever logger produced it.

JSON lines carry, besides ``message``, the structured fields a caller passes with
``extra={...}`` under the names in :data:`FIELDS` (``node_id``, ``dc``, ``path``, ``type``, ...),
so a log pipeline can filter on them without parsing the text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any

from xds_server.resource import SHORT_NAMES
from xds_server.tracking import BaseObserver, Nack, StreamInfo

from . import secret_guard

_SECRETS: set[str] = set()
REDACTED = "[redacted]"


def register_secret(value: str | None) -> None:
    """Never print ``value`` (ignored when empty or too short to be a real secret)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """The one redaction (:func:`bridge.secret_guard.redact`) over the registered secrets."""
    return secret_guard.redact(text, _SECRETS)


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        original = record.getMessage()
        message = redact(original)
        if message != original:
            record.msg = message
            record.args = None
        return True


#: Structured fields a JSON line carries when the caller passes them with ``extra=``.
FIELDS = (
    "node_id",
    "node_cluster",
    "peer",
    "api",
    "type",
    "version",
    "resources",
    "dc",
    "path",
    "service",
    "template_set",
    "backoff_seconds",
)


def fields(**values: object) -> dict[str, object]:
    """``extra=`` for a log call: the structured fields, None values left out."""
    return {key: value for key, value in values.items() if value is not None}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


def configure(level: str = "info", fmt: str = "text") -> None:
    """Configure the root logger for the CLI (tests use pytest's capture instead)."""
    if fmt not in ("text", "json"):
        raise ValueError(f"log_format: expected text or json, got {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"log_level: expected debug, info, warning or error, got {level!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # grpc and aiohttp are chatty at info level
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


_DEBUGPROTO = "goo.gle/debugproto"  # protobuf's marker in Envoy's text dumps: not a message
FIRST_LINE_LIMIT = 300
NAMES_SHOWN = 5


def first_line(message: str, limit: int = FIRST_LINE_LIMIT) -> str:
    """The first meaningful line of an Envoy error (its messages embed multi-line proto dumps,
    introduced by protobuf's ``goo.gle/debugproto`` marker)."""
    for line in message.splitlines():
        line = line.replace(_DEBUGPROTO, "").strip().rstrip(":").rstrip()
        if line:
            return line if len(line) <= limit else line[: limit - 1] + "…"
    return ""


def names_list(names: Mapping[str, str] | list[str], shown: int = NAMES_SHOWN) -> str:
    """``a, b, c and 4 more``."""
    ordered = sorted(names)
    text = ", ".join(ordered[:shown])
    return text + (f" and {len(ordered) - shown} more" if len(ordered) > shown else "")


class StreamEventLogger(BaseObserver):
    """One log line per client connect, disconnect and NACK.

    A NACK is a WARNING with the first line of Envoy's message and the rejected resources; the
    full message is logged at DEBUG (and kept in ``/debug/clients``).
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("bridge.xds")

    def _fields(self, stream: StreamInfo) -> dict[str, object]:
        return fields(
            node_id=stream.node_id,
            node_cluster=stream.node_cluster,
            peer=stream.peer,
            api=stream.method,
        )

    def stream_opened(self, stream: StreamInfo) -> None:
        self.log.info(
            "client connected: node %r (cluster %r, %s) from %s over %s",
            stream.node_id,
            stream.node_cluster,
            stream.user_agent or "unknown agent",
            stream.peer,
            stream.method,
            extra=self._fields(stream),
        )

    def stream_closed(self, stream: StreamInfo) -> None:
        self.log.info(
            "client disconnected: node %r from %s (%s)",
            stream.node_id,
            stream.peer,
            stream.method,
            extra=self._fields(stream),
        )

    def nacked(self, stream: StreamInfo, type_url: str, nack: Nack) -> None:
        kind = SHORT_NAMES.get(type_url, type_url)
        extra = {
            **self._fields(stream),
            **fields(type=kind, version=nack.version, resources=sorted(nack.resources)[:50]),
        }
        self.log.warning(
            "node %r rejected %s version %s (%s): %s",
            stream.node_id,
            kind,
            nack.version,
            names_list(nack.resources) if nack.resources else "no resource changed",
            first_line(nack.message) or "(no message)",
            extra=extra,
        )
        self.log.debug(
            "node %r: Envoy's full message for %s version %s:\n%s",
            stream.node_id,
            kind,
            nack.version,
            nack.message,
            extra=extra,
        )
