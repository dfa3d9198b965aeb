"""A dict with secondary indexes, the double's stand-in for a go-memdb table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Table(dict[K, V], Generic[K, V]):
    """A dict that keeps secondary indexes (``field(value)`` → ``{key: value}``) in step, so a
    read of one service, node or check id does not scan the whole catalog (the double serves
    catalogs of 100,000 instances). Entries are replaced, never mutated in an indexed field;
    only ``[k] = v``, ``del``, ``pop`` and ``clear`` change a table."""

    def __init__(self, **fields: Callable[[V], str]) -> None:
        super().__init__()
        self._fields = fields
        self._by: dict[str, dict[str, dict[K, V]]] = {f: {} for f in fields}
        self._order: list[Any] | None = []  # every key, sorted; None once keys came or went

    def ordered_keys(self) -> list[Any]:
        """Every key, sorted; re-sorted only after keys were added or removed (replacing an
        entry, e.g. a check status change, keeps the order of 100,000 checks)."""
        if self._order is None:
            self._order = sorted(self)
        return self._order

    def lookup(self, field_name: str, value: str) -> dict[K, V]:
        """The entries whose ``field_name`` is ``value``, in insertion order (do not mutate)."""
        return self._by[field_name].get(value, {})

    def __setitem__(self, key: K, value: V) -> None:
        old = dict.get(self, key)
        if key not in self:
            self._order = None
        super().__setitem__(key, value)
        for name, fn in self._fields.items():
            new_value = fn(value)
            if old is not None:
                old_value = fn(old)
                if old_value != new_value:
                    self._unindex(name, old_value, key)
            self._by[name].setdefault(new_value, {})[key] = value

    def _unindex(self, name: str, value: str, key: K) -> None:
        bucket = self._by[name].get(value)
        if bucket is not None:
            bucket.pop(key, None)
            if not bucket:
                del self._by[name][value]

    def __delitem__(self, key: K) -> None:
        old = self[key]
        super().__delitem__(key)
        self._order = None
        for name, fn in self._fields.items():
            self._unindex(name, fn(old), key)

    def pop(self, key: K, *default: Any) -> Any:
        if key in self:
            value = self[key]
            del self[key]
            return value
        if default:
            return default[0]
        raise KeyError(key)

    def clear(self) -> None:
        super().clear()
        self._by = {f: {} for f in self._fields}
        self._order = None

    def setdefault(self, *args: Any) -> Any:  # pragma: no cover - guarded, unused
        raise NotImplementedError("Table: use [key] = value")

    def update(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - guarded, unused
        raise NotImplementedError("Table: use [key] = value")

    def popitem(self) -> Any:  # pragma: no cover - guarded, unused
        raise NotImplementedError("Table: use del or pop")
