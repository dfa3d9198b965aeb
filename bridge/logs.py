"""Logging setup: one line per event, text or JSON, secrets never printed.

Secrets (the Consul token) are registered with :func:`register_secret`; every record's final
message is scrubbed of them before it is formatted, whatever logger produced it.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from xds_server.tracking import BaseObserver, StreamInfo

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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
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


class StreamEventLogger(BaseObserver):
    """One log line per client connect and disconnect (NACKs are logged by the serving side)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("bridge.xds")

    def stream_opened(self, stream: StreamInfo) -> None:
        self.log.info(
            "client connected: node %r (cluster %r, %s) from %s over %s",
            stream.node_id,
            stream.node_cluster,
            stream.user_agent or "unknown agent",
            stream.peer,
            stream.method,
        )

    def stream_closed(self, stream: StreamInfo) -> None:
        self.log.info(
            "client disconnected: node %r from %s (%s)", stream.node_id, stream.peer, stream.method
        )
