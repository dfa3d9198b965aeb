"""The fields of the five discovery config entry kinds, decoded and encoded as Consul does.

Decoding follows ``DecodeConfigEntry`` in ``agent/structs/config_entry.go`` (mapstructure with
``WeaklyTypedInput`` and the ``HookTranslateKeys`` / ``StringToTimeDurationHookFunc`` hooks):
keys match field names case-insensitively or in snake_case, ``"5"`` decodes into an integer,
durations are Go duration strings or integer nanoseconds, and keys that match no field are
``invalid config key`` errors (``validateUnusedKeys`` in ``agent/structs/config_entry_ce.go``),
``CreateIndex``/``ModifyIndex``/``Kind`` excepted, ``*namespace`` keys being an Enterprise
feature. Encoding follows Go's ``encoding/json`` on the struct definitions of
``agent/structs/config_entry.go`` and ``config_entry_discoverychain.go``: ``omitempty`` fields
are left out when zero, struct-valued fields are always present, nil slices and maps without
``omitempty`` are ``null``, resolver and router timeouts are duration strings (their custom
``MarshalJSON``) while passive-health-check and cookie durations are integer nanoseconds.

Connect-only nested settings (``Destination``, ``RateLimits``, ``EnvoyExtensions``, expose paths)
are kept as given and returned verbatim (:data:`OPAQUE`): the double does not type-check them.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from .config_kinds import INDEX_KEYS, KINDS, OTHER_KINDS
from .config_types import (
    ANY_MAP,
    BOOL,
    DURATION,
    DURATION_NS,
    FLOAT32,
    INT,
    OPAQUE,
    STR,
    STR_LIST,
    STR_MAP,
    UINT32,
    UINT32_LIST,
    FieldType,
    ListOf,
    MapOf,
    Struct,
)
from .durations import parse_go_duration


class DecodeError(ValueError):
    """A body Consul cannot decode (HTTP 400 ``Request decoding failed: ...``)."""


class ConfigEntryError(Exception):
    """A config entry request Consul refuses: ``status`` and the plain-text body it answers
    (Normalize, Validate and graph errors are 500s: ``agent/http.go`` ``wrap``)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def fail(message: str) -> ConfigEntryError:
    """A Normalize, Validate or graph error: HTTP 500 with the message as the body."""
    return ConfigEntryError(500, message)


# -- decoding --------------------------------------------------------------------------------


class _Decoder:
    def __init__(self) -> None:
        self.errors: list[str] = []
        self.unused: list[str] = []

    def struct(self, raw: Any, struct_: Struct, path: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            self._unconvertible(path or "", "struct", raw)
            return {}
        out: dict[str, Any] = {}
        used: set[str] = set()
        for field in struct_.fields:
            key = _find_key(raw, field.name)
            if key is None:
                continue
            used.add(key)
            value = raw[key]
            if value is None:
                continue  # JSON null leaves the field at its zero value
            where = f"{path}.{field.name}" if path else field.name
            out[field.name] = self.value(value, field.type, where)
        for key in raw:
            if key not in used:
                self.unused.append(f"{path}.{key}" if path else str(key))
        return out

    def value(self, raw: Any, type_: FieldType, path: str) -> Any:
        if isinstance(type_, Struct):
            return self.struct(raw, type_, path)
        if isinstance(type_, ListOf):
            items = raw if isinstance(raw, list) else [raw]  # HookWeakDecodeFromSlice
            return [self.struct(item, type_.item, f"{path}[{i}]") for i, item in enumerate(items)]
        if isinstance(type_, MapOf):
            if not isinstance(raw, dict):
                self._unconvertible(path, "map", raw)
                return {}
            return {str(k): self.struct(v, type_.item, f"{path}[{k}]") for k, v in raw.items()}
        return self.scalar(raw, type_, path)

    def scalar(self, raw: Any, type_: str, path: str) -> Any:
        if type_ == OPAQUE:
            return raw
        if type_ == ANY_MAP:
            if isinstance(raw, dict):
                return raw
            return self._unconvertible(path, type_, raw)
        if type_ == STR_MAP:
            if isinstance(raw, dict):
                return {str(k): self.scalar(v, STR, f"{path}[{k}]") for k, v in raw.items()}
            return self._unconvertible(path, type_, raw)
        if type_ in (STR_LIST, UINT32_LIST):
            item = STR if type_ == STR_LIST else UINT32
            items = raw if isinstance(raw, list) else [raw]
            return [self.scalar(v, item, f"{path}[{i}]") for i, v in enumerate(items)]
        if type_ == STR:
            if isinstance(raw, str):
                return raw
            if isinstance(raw, bool):
                return "1" if raw else "0"
            if isinstance(raw, int | float):
                return _go_number(raw)
            return self._unconvertible(path, type_, raw)
        if type_ == BOOL:
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, int | float):
                return raw != 0
            if isinstance(raw, str):
                parsed = _parse_bool(raw)
                if parsed is None:
                    return self._fail(f"cannot parse '{path}' as bool: invalid syntax")
                return parsed
            return self._unconvertible(path, type_, raw)
        if type_ == FLOAT32:
            if isinstance(raw, bool):
                return 1.0 if raw else 0.0
            if isinstance(raw, int | float):
                return float32(float(raw))
            if isinstance(raw, str):
                try:
                    return float32(float(raw) if raw else 0.0)
                except ValueError:
                    return self._fail(f"cannot parse '{path}' as float: invalid syntax")
            return self._unconvertible(path, type_, raw)
        if type_ in (DURATION, DURATION_NS):
            if isinstance(raw, str):
                try:
                    return round(parse_go_duration(raw) * 1e9) if raw else 0
                except ValueError:
                    return self._fail(f"error decoding '{path}': time: invalid duration {raw!r}")
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return int(raw)
            return self._unconvertible(path, "time.Duration", raw)
        # integers
        if isinstance(raw, int | float):  # bools too: true is 1
            value = int(raw)
        elif isinstance(raw, str):
            try:
                value = int(raw) if raw else 0
            except ValueError:
                return self._fail(f"cannot parse '{path}' as {type_}: invalid syntax")
        else:
            return self._unconvertible(path, type_, raw)
        if type_ != INT and value < 0:
            return self._fail(f"cannot parse '{path}', {value} overflows {type_}")
        return value

    def _fail(self, message: str) -> None:
        self.errors.append(message)

    def _unconvertible(self, path: str, type_: str, raw: Any) -> None:
        got = _go_type_of(raw)
        self._fail(
            f"'{path}' expected type '{type_}', got unconvertible type '{got}', value: '{raw}'"
        )


def _go_type_of(raw: Any) -> str:
    """The Go type ``encoding/json`` gives a JSON value decoded into ``interface{}``."""
    if isinstance(raw, dict):
        return "map[string]interface {}"
    if isinstance(raw, list):
        return "[]interface {}"
    if isinstance(raw, str):
        return "string"
    if isinstance(raw, bool):
        return "bool"
    return "float64"


def _find_key(raw: dict[str, Any], name: str) -> str | None:
    """The key of ``raw`` that decodes into field ``name``: the name itself, a case variant
    (mapstructure's fold), or its snake_case alias (``service_subset``)."""
    if name in raw:
        return name
    lowered = name.lower()
    for key in raw:
        if not isinstance(key, str):
            continue
        if key.lower() == lowered or (key.islower() and key.replace("_", "") == lowered):
            return key
    return None


def decode_entry(raw: Any) -> tuple[str, dict[str, Any]]:
    """``(kind, fields)`` of a ``PUT /v1/config`` body; :class:`DecodeError` as Consul words it."""
    if not isinstance(raw, dict):
        raise DecodeError("json: cannot unmarshal into Go value of type map[string]interface {}")
    kind = raw["Kind"] if "Kind" in raw else raw.get("kind", _ABSENT)
    if kind is _ABSENT:
        raise DecodeError("Payload does not contain a kind/Kind key at the top level")
    if not isinstance(kind, str):
        raise DecodeError("Kind value in payload is not a string")
    if kind not in KINDS:
        if kind in OTHER_KINDS:
            raise DecodeError(f"config entry kind {kind!r} is not modelled by the consul double")
        raise DecodeError(f"invalid config entry kind: {kind}")
    decoder = _Decoder()
    body = decoder.struct(raw, KINDS[kind], "")
    if decoder.errors:
        raise DecodeError(_mapstructure_errors(decoder.errors))
    problems = [_unused_problem(k) for k in decoder.unused if k not in (*INDEX_KEYS, "kind")]
    if problems:
        raise DecodeError(multierror(problems))
    body.pop("Kind", None)
    return kind, body


_ABSENT = object()


def _unused_problem(key: str) -> str:
    if key.lower().endswith("namespace"):
        return f"invalid config key {go_quote(key)}, namespaces are a consul enterprise feature"
    return f"invalid config key {go_quote(key)}"


def _mapstructure_errors(errors: list[str]) -> str:
    points = "\n".join(f"* {e}" for e in errors)
    return f"{len(errors)} error(s) decoding:\n\n{points}"


def multierror(errors: list[str]) -> str:
    """go-multierror's default format."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


# -- encoding --------------------------------------------------------------------------------


def encode_entry(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The entry as ``encoding/json`` writes the Go struct (without the raft indexes)."""
    return _encode_struct(body, KINDS[kind])


def _encode_struct(value: dict[str, Any], struct_: Struct) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in struct_.fields:
        present = field.name in value
        item = value.get(field.name)
        if isinstance(field.type, Struct):
            if field.pointer:
                if present:
                    out[field.name] = _encode_struct(item or {}, field.type)
            else:  # a struct value: never omitted by encoding/json
                out[field.name] = _encode_struct(item or {}, field.type)
            continue
        if isinstance(field.type, ListOf):
            if item:
                out[field.name] = [_encode_struct(v, field.type.item) for v in item]
            elif not field.omitempty:
                out[field.name] = [] if present else None
            continue
        if isinstance(field.type, MapOf):
            if item:
                out[field.name] = {k: _encode_struct(v, field.type.item) for k, v in item.items()}
            elif not field.omitempty:
                out[field.name] = {} if present else None
            continue
        if field.pointer:
            if present:
                out[field.name] = _encode_scalar(item, field.type)
            continue
        if not present or _is_zero(item, field.type):
            if not field.omitempty:
                out[field.name] = _zero(field.type)
            continue
        out[field.name] = _encode_scalar(item, field.type)
    return out


def _encode_scalar(value: Any, type_: str) -> Any:
    if type_ == DURATION:
        return format_go_duration(int(value))
    if type_ == FLOAT32:
        return json_float32(float(value))
    return value


def _is_zero(value: Any, type_: str) -> bool:
    if type_ in (STR_MAP, ANY_MAP, STR_LIST, UINT32_LIST):
        return not value
    if type_ == OPAQUE:
        return value is None or value in ("", 0, False) or value == [] or value == {}
    return not value


def _zero(type_: str) -> Any:
    if type_ == STR:
        return ""
    if type_ in (STR_MAP, ANY_MAP, STR_LIST, UINT32_LIST, OPAQUE):
        return None
    if type_ == BOOL:
        return False
    return 0


# -- Go formatting helpers -------------------------------------------------------------------


def float32(value: float) -> float:
    """``value`` rounded to the nearest float32, as Go stores a ``float32`` field."""
    result: float = struct.unpack("f", struct.pack("f", value))[0]
    return result


def json_float32(value: float) -> float | int:
    """The number ``encoding/json`` writes for a float32: the shortest decimal that reads back
    as the same float32 (``90``, ``33.33``)."""
    if math.isfinite(value) and value == int(value):
        return int(value)
    for digits in range(1, 10):
        text = f"{value:.{digits}g}"
        if float32(float(text)) == value:
            return float(text)
    return value


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()``: ``5s``, ``1m30s``, ``1.5s``, ``250ms``, ``1h0m0s``."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1e9) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def _go_number(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


def _parse_bool(text: str) -> bool | None:
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    return None


def go_quote(text: str) -> str:
    """Go's ``%q`` for ordinary strings."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
