"""Rendering one set for one node: sandboxed Jinja2 → YAML (or JSON) → checked protobuf resources.

Each rendered file is a list of ``Listener`` / ``RouteConfiguration`` / ``Cluster`` objects in
protobuf's JSON mapping (typed ``Any`` via ``"@type"``). Unknown fields and wrong types are errors
that name the set, the file and the line.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import jinja2
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message

from xds_server.resource import Resource, make_resource

from .checks import check_consistency
from .errors import TemplateError
from .sets import KINDS, TemplateSet

#: Extensions whose messages may appear as typed ``Any`` in templates (imported for ParseDict).
_EXTENSION_MODULES = (
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.http.cors.v3.cors_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
    "envoy.extensions.filters.http.health_check.v3.health_check_pb2",
    "envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2",
    "envoy.extensions.filters.http.grpc_web.v3.grpc_web_pb2",
    "envoy.extensions.filters.http.buffer.v3.buffer_pb2",
    "envoy.extensions.filters.http.lua.v3.lua_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.access_loggers.stream.v3.stream_pb2",
    "envoy.extensions.access_loggers.file.v3.file_pb2",
    "envoy.extensions.retry.host.previous_hosts.v3.previous_hosts_pb2",
)
for _module in _EXTENSION_MODULES:
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)


#: libyaml's safe loader when PyYAML was built with it (about 10x faster), else the Python one.
_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _rendered_line(text: str, index: int) -> int | None:
    """The line (1-based, in the rendered output) where top-level list item ``index`` starts."""
    try:
        document = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if isinstance(document, yaml.SequenceNode) and index < len(document.value):
        return int(document.value[index].start_mark.line) + 1
    return None


def _excerpt(text: str, line: int | None) -> str:
    if not line:
        return ""
    lines = text.splitlines()
    if 0 < line <= len(lines) and lines[line - 1].strip():
        return f" (rendered line {line}: {lines[line - 1].strip()[:120]!r})"
    return f" (rendered line {line})"


def render_file(
    tset: TemplateSet, file: str, kind: str, context: Mapping[str, Any]
) -> list[Message]:
    """Render one file and parse its list; TemplateError names the file and line."""
    try:
        text = tset.environment.get_template(file).render(context)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(tset.name, exc.name or file, exc.lineno, exc.message or "") from None
    except jinja2.TemplateError as exc:  # UndefinedError, SecurityError, …
        raise TemplateError(tset.name, *_template_location(exc, tset, file), str(exc)) from None
    except Exception as exc:  # a filter or test raising on bad input (e.g. int overflow)
        raise TemplateError(tset.name, *_template_location(exc, tset, file), repr(exc)) from None
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = f"rendered output is not valid YAML: {getattr(exc, 'problem', exc)}"
        raise TemplateError(tset.name, file, None, problem + _excerpt(text, line)) from None
    if data is None:
        return []
    if not isinstance(data, list):
        raise TemplateError(
            tset.name, file, None, f"must render a list of {kind}, got {type(data).__name__}"
        )
    messages = []
    message_class = KINDS[kind]
    for index, item in enumerate(data):
        message = message_class()
        try:
            if not isinstance(item, dict):
                raise json_format.ParseError(f"expected a mapping, got {type(item).__name__}")
            json_format.ParseDict(item, message)
        except json_format.ParseError as exc:
            line = _rendered_line(text, index)
            name = item.get("name") if isinstance(item, dict) else None
            what = f"{kind} item {index}" + (f" ({name!r})" if name else "")
            raise TemplateError(
                tset.name, file, None, f"{what}: {exc}{_excerpt(text, line)}"
            ) from None
        messages.append(message)
    return messages


def _template_location(exc: BaseException, tset: TemplateSet, file: str) -> tuple[str, int | None]:
    """(file, line) of a render-time error: the innermost template frame of the traceback
    (Jinja rewrites it to template file names and lines), which may be an imported file."""
    location: tuple[str, int | None] = (file, None)
    directory = str(tset.directory.resolve())
    tb = exc.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.startswith(directory + os.sep):
            location = (Path(filename).relative_to(directory).as_posix(), tb.tb_lineno)
        tb = tb.tb_next
    return location


def render_set(
    tset: TemplateSet, context: Mapping[str, Any], known_clusters: Iterable[str]
) -> tuple[Resource, ...]:
    """Render every file of ``tset`` into checked resources (TemplateError otherwise)."""
    rendered: dict[str, list[Message]] = {}
    for file, kind in tset.render_files:
        rendered.setdefault(kind, []).extend(render_file(tset, file, kind, context))
    check_consistency(tset, rendered, known_clusters)
    now = time.monotonic()
    return tuple(make_resource(m, now) for kind in KINDS for m in rendered.get(kind, ()))
