"""Typed reads from one config entry's JSON, each bad value recorded as an :class:`EntryProblem`.

Reads never raise: a value of the wrong type is a problem naming its field, and the reader goes
on with the field's zero value so one pass reports every problem of an entry.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .durations import parse_duration_value
from .problems import EntryProblem

JsonObject = Mapping[str, Any]


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class EntryFields:
    """Reads the fields of one entry (``kind``/``name``) and collects what is wrong with them."""

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        self.problems: list[EntryProblem] = []

    def problem(self, field: str, message: str) -> None:
        self.problems.append(EntryProblem(self.kind, self.name, field, message))

    # -------------------------------------------------------------- scalars
    def string(self, obj: JsonObject, key: str, path: str = "") -> str:
        raw = obj.get(key)
        if raw is None:
            return ""
        if not isinstance(raw, str):
            self.problem(join(path, key), f"expected a string, got {raw!r}")
            return ""
        return raw

    def boolean(self, obj: JsonObject, key: str, path: str = "") -> bool:
        raw = obj.get(key)
        if raw is None:
            return False
        if not isinstance(raw, bool):
            self.problem(join(path, key), f"expected true or false, got {raw!r}")
            return False
        return raw

    def integer(
        self,
        obj: JsonObject,
        key: str,
        path: str = "",
        *,
        minimum: int = 0,
        maximum: int = 2**32 - 1,
    ) -> int | None:
        raw = obj.get(key)
        if raw is None:
            return None
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool):
            self.problem(join(path, key), f"expected an integer, got {raw!r}")
            return None
        if not minimum <= raw <= maximum:
            self.problem(join(path, key), f"must be from {minimum} to {maximum}, got {raw}")
            return None
        return raw

    def number(self, obj: JsonObject, key: str, path: str = "") -> float:
        raw = obj.get(key)
        if raw is None:
            return 0.0
        if not isinstance(raw, int | float) or isinstance(raw, bool):
            self.problem(join(path, key), f"expected a number, got {raw!r}")
            return 0.0
        return float(raw)

    def duration(self, obj: JsonObject, key: str, path: str = "") -> float | None:
        """Seconds, from a Go duration string or integer nanoseconds; None when absent."""
        raw = obj.get(key)
        if raw is None:
            return None
        try:
            seconds = parse_duration_value(raw)
        except ValueError as exc:
            self.problem(join(path, key), str(exc))
            return None
        if seconds < 0:
            self.problem(join(path, key), f"must not be negative, got {raw!r}")
            return None
        return seconds if seconds > 0 else None

    # -------------------------------------------------------------- collections
    def strings(self, obj: JsonObject, key: str, path: str = "") -> tuple[str, ...]:
        raw = obj.get(key)
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
            self.problem(join(path, key), f"expected a list of strings, got {raw!r}")
            return ()
        return tuple(raw)

    def integers(self, obj: JsonObject, key: str, path: str = "") -> tuple[int, ...]:
        raw = obj.get(key)
        if raw is None:
            return ()
        if not isinstance(raw, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in raw
        ):
            self.problem(join(path, key), f"expected a list of integers, got {raw!r}")
            return ()
        return tuple(raw)

    def string_map(self, obj: JsonObject, key: str, path: str = "") -> tuple[tuple[str, str], ...]:
        raw = obj.get(key)
        if raw is None:
            return ()
        if not isinstance(raw, Mapping) or not all(isinstance(v, str) for v in raw.values()):
            self.problem(join(path, key), f"expected an object of strings, got {raw!r}")
            return ()
        return tuple(sorted((str(k), v) for k, v in raw.items()))

    def object(self, obj: JsonObject, key: str, path: str = "") -> JsonObject | None:
        raw = obj.get(key)
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            self.problem(join(path, key), f"expected an object, got {raw!r}")
            return None
        return raw

    def objects(
        self, obj: JsonObject, key: str, path: str = ""
    ) -> Iterator[tuple[str, JsonObject]]:
        """(path, object) for each element of a list of objects."""
        raw = obj.get(key)
        if raw is None:
            return
        if not isinstance(raw, list):
            self.problem(join(path, key), f"expected a list, got {raw!r}")
            return
        for i, item in enumerate(raw):
            where = f"{join(path, key)}[{i}]"
            if isinstance(item, Mapping):
                yield where, item
            else:
                self.problem(where, f"expected an object, got {item!r}")

    def object_map(
        self, obj: JsonObject, key: str, path: str = ""
    ) -> Iterator[tuple[str, str, JsonObject]]:
        """(key, path, object) for each entry of an object of objects, sorted by key."""
        raw = self.object(obj, key, path)
        for name in sorted(raw or {}):
            where = f"{join(path, key)}[{name}]"
            item = (raw or {})[name]
            if isinstance(item, Mapping):
                yield str(name), where, item
            else:
                self.problem(where, f"expected an object, got {item!r}")

    # -------------------------------------------------------------- Enterprise and peering
    def unsupported(self, obj: JsonObject, keys: tuple[str, ...], path: str = "") -> None:
        """Fields the bridge does not implement (namespaces, partitions, peers, sameness groups):
        a problem when set to anything but empty or ``default``, never silently ignored."""
        for key in keys:
            value = obj.get(key)
            if value in (None, "", "default", {}, []):
                continue
            self.problem(join(path, key), f"{key} is not supported by the bridge (got {value!r})")
