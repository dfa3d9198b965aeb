"""All config entries the bridge read, split into usable ones and quarantined ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .decode import decode_entry
from .entries import (
    PROXY_DEFAULTS,
    SERVICE_DEFAULTS,
    SERVICE_RESOLVER,
    SERVICE_ROUTER,
    SERVICE_SPLITTER,
    ConfigEntry,
    ProxyDefaults,
    ServiceDefaults,
    ServiceResolver,
    ServiceRouter,
    ServiceSplitter,
)
from .problems import EntryKey, EntryProblem
from .validate import validate_entry

_E = TypeVar("_E", bound=ConfigEntry)


@dataclass(frozen=True, slots=True)
class ConfigEntries:
    """Usable entries by (kind, name) and, apart, the problems of each quarantined entry.

    A quarantined entry is not usable, and it is not absent either: a chain that needs it does not
    compile (see :func:`bridge.traffic.chain.compile_chain`), so the service keeps its last good
    routing instead of silently losing its splitter or router.
    """

    entries: Mapping[EntryKey, ConfigEntry] = field(default_factory=dict)
    quarantined: Mapping[EntryKey, tuple[EntryProblem, ...]] = field(default_factory=dict)

    @property
    def problems(self) -> tuple[EntryProblem, ...]:
        return tuple(p for key in sorted(self.quarantined) for p in self.quarantined[key])

    def _get(self, kind: str, name: str, cls: type[_E]) -> _E | None:
        entry = self.entries.get((kind, name))
        return entry if isinstance(entry, cls) else None

    def service_defaults(self, name: str) -> ServiceDefaults | None:
        return self._get(SERVICE_DEFAULTS, name, ServiceDefaults)

    def proxy_defaults(self) -> ProxyDefaults | None:
        return self._get(PROXY_DEFAULTS, "global", ProxyDefaults)

    def resolver(self, name: str) -> ServiceResolver | None:
        return self._get(SERVICE_RESOLVER, name, ServiceResolver)

    def splitter(self, name: str) -> ServiceSplitter | None:
        return self._get(SERVICE_SPLITTER, name, ServiceSplitter)

    def router(self, name: str) -> ServiceRouter | None:
        return self._get(SERVICE_ROUTER, name, ServiceRouter)

    def without(self, keys: Iterable[EntryKey]) -> ConfigEntries:
        """These entries minus ``keys`` (usable or quarantined): what a chain would be without
        them, e.g. to serve something for a service that has no last good routing yet."""
        drop = set(keys)
        return ConfigEntries(
            {k: v for k, v in self.entries.items() if k not in drop},
            {k: v for k, v in self.quarantined.items() if k not in drop},
        )


def parse_entries(bodies: Iterable[Any]) -> ConfigEntries:
    """Config entry JSON objects (any kinds, e.g. the bodies of ``GET /v1/config/<kind>``
    concatenated) → usable entries and quarantined ones. Never raises."""
    entries: dict[EntryKey, ConfigEntry] = {}
    quarantined: dict[EntryKey, list[EntryProblem]] = {}
    for raw in bodies:
        entry, problems = decode_entry(raw)
        if entry is not None and not problems:
            problems = validate_entry(entry)
        key = (entry.kind, entry.name) if entry is not None else _key_of(problems)
        if key in entries or key in quarantined:
            problems = [*problems, EntryProblem(*key, "", "the entry appears twice; both ignored")]
            entries.pop(key, None)
        if problems or entry is None:
            quarantined.setdefault(key, []).extend(problems)
        else:
            entries[key] = entry
    return ConfigEntries(entries, {k: tuple(v) for k, v in quarantined.items()})


def _key_of(problems: list[EntryProblem]) -> EntryKey:
    first = problems[0]
    return (first.kind, first.name)
