"""Loading template sets: one directory per set, its files read and compiled by its own sandbox.

A set is a directory under the templates directory (default: the bundled ``templates/`` at the
top of the source tree) holding ``listeners.yaml.j2``, ``routes.yaml.j2`` and optionally
``clusters.yaml.j2`` (``.yml.j2`` and ``.json.j2`` work too); other files (``_macros.j2``...) can
be included or imported.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import jinja2
import jinja2.sandbox
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from .reads import node_fields_read, volatile_fields_read

log = logging.getLogger("bridge.templating")  # one logger for the package


def _bundled_dir() -> Path:
    """``templates/`` at the top of the source tree (a checkout or an editable install), else
    ``<prefix>/share/consul-xds-bridge/templates`` (where a wheel's data files would put it)."""
    in_tree = Path(__file__).resolve().parents[2] / "templates"
    installed = Path(sys.prefix) / "share" / "consul-xds-bridge" / "templates"
    return in_tree if in_tree.is_dir() or not installed.is_dir() else installed


#: The bundled template sets.
BUNDLED_DIR = _bundled_dir()

#: File stem → the message each item of its list is parsed into.
KINDS: Mapping[str, type[Message]] = {
    "listeners": listener_pb2.Listener,
    "routes": route_pb2.RouteConfiguration,
    "clusters": cluster_pb2.Cluster,
}
_SUFFIXES = (".yaml.j2", ".yml.j2", ".json.j2")


def _kind_of(filename: str) -> str | None:
    for suffix in _SUFFIXES:
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            return stem if stem in KINDS else None
    return None


@dataclass(slots=True)
class TemplateSet:
    """One set's files, compiled lazily by its own sandboxed environment."""

    name: str
    directory: Path
    sources: dict[str, str]  # file name → text (every file of the set)
    environment: jinja2.sandbox.SandboxedEnvironment
    generation: int
    node_fields: tuple[str, ...] = ()
    volatile: tuple[str, ...] = ()

    @property
    def render_files(self) -> list[tuple[str, str]]:
        """(file, kind) of the files rendered into resources, in kind order."""
        found = [(f, _kind_of(f)) for f in sorted(self.sources)]
        order = list(KINDS)
        return sorted(
            ((f, k) for f, k in found if k is not None), key=lambda fk: order.index(fk[1])
        )


def _environment(directory: Path) -> jinja2.sandbox.SandboxedEnvironment:
    # Immutable: templates cannot change lists/dicts they are given (shared between renders).
    environment = jinja2.sandbox.ImmutableSandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(directory.resolve())),
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        auto_reload=False,
    )
    environment.filters["tojson"] = _tojson
    environment.globals["fail"] = _fail
    return environment


def _fail(message: str) -> None:
    """``{{ fail("why") }}``: reject the render with a message (reported with file and line)."""
    raise jinja2.TemplateRuntimeError(str(message))


def _tojson(value: Any) -> str:
    """JSON without HTML escaping (Jinja's own ``tojson`` escapes ``<>&'`` for HTML)."""
    return json.dumps(value, sort_keys=True)


def read_set(name: str, directory: Path, generation: int) -> TemplateSet:
    sources = {
        path.relative_to(directory).as_posix(): path.read_text()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }
    return TemplateSet(
        name=name,
        directory=directory,
        sources=sources,
        environment=_environment(directory),
        generation=generation,
        node_fields=node_fields_read(sources.values()),
        volatile=volatile_fields_read(sources.values()),
    )


def set_directories(root: Path) -> dict[str, Path]:
    """Template set name → directory: the subdirectories with at least one rendered file."""
    if not root.is_dir():
        return {}
    return {
        child.name: child
        for child in sorted(root.iterdir())
        if child.is_dir()
        and not child.name.startswith((".", "_"))
        and any(_kind_of(f.name) for f in child.iterdir())
    }


class EditGate(Protocol):
    """Decides whether a set's new files replace the loaded ones now (see :mod:`.settling`)."""

    def admit(self, current: TemplateSet | None, fresh: TemplateSet) -> bool:
        """True: apply ``fresh`` now; False: keep ``current`` and read the files again later."""
        ...

    def forget(self, name: str) -> None:
        """The set is as loaded (or gone): drop what is pending for it."""
        ...


class _AdmitAll:
    def admit(self, current: TemplateSet | None, fresh: TemplateSet) -> bool:
        return True

    def forget(self, name: str) -> None:
        pass


class TemplateSets:
    """The sets under one directory, re-read on demand; a set whose files changed gets a new
    ``generation`` (so renders cached for the old files are never served again). ``gate``
    decides when an edit is applied (default: at once)."""

    def __init__(self, directory: Path, gate: EditGate | None = None) -> None:
        self.directory = directory
        self.by_name: dict[str, TemplateSet] = {}
        #: Sets whose files could not be read at the latest reload → why (they keep their
        #: previous files, if any).
        self.read_errors: dict[str, str] = {}
        self._gate = gate or _AdmitAll()
        self._generation = 0

    def reload(self) -> list[str]:
        """Re-read every set; returns the names of the sets added, changed or removed."""
        changed = []
        found = set_directories(self.directory)
        for name in list(self.by_name):
            if name not in found:
                del self.by_name[name]
                self._gate.forget(name)
                changed.append(name)
        self.read_errors = {}
        for name, directory in found.items():
            try:
                current = self.by_name.get(name)
                fresh = read_set(name, directory, self._generation + 1)
            except (OSError, UnicodeDecodeError) as exc:
                self.read_errors[name] = f"cannot read {directory}: {exc}"
                continue
            if current is not None and current.sources == fresh.sources:
                self._gate.forget(name)
                continue
            if not self._gate.admit(current, fresh):
                continue
            self._generation += 1
            self.by_name[name] = fresh
            changed.append(name)
        return changed
