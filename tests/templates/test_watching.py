"""Hot reload: every edit is applied and republished; half-written files wait for their settle
period; watch failures are loud."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from bridge.tasks import within
from bridge.templating import Reloaded, TemplateSource, TemplateWatcher
from tests.support.waiting import until

from .support import Changes, copy_sets

LISTENERS = "listeners.yaml.j2"


@asynccontextmanager
async def watching(
    source: TemplateSource, on_change: Callable[[], None]
) -> AsyncIterator[TemplateWatcher]:
    watcher = TemplateWatcher(source.directory, source.reload, on_change)
    await watcher.start()
    try:
        yield watcher
    finally:
        await watcher.stop()


async def test_an_edit_made_before_watching_began_is_applied_when_it_begins(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    calls = Changes()
    source = TemplateSource(directory)
    routes = directory / "default" / "routes.yaml.j2"
    routes.write_text(routes.read_text().replace("no such service", "gone"))
    async with watching(source, calls):
        await within(calls.wait(1), 10)
        assert "gone" in source.sets["default"].sources["routes.yaml.j2"]


async def test_edits_are_applied_and_touching_a_file_changes_nothing(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    calls = Changes()
    source = TemplateSource(directory)
    async with watching(source, calls):
        routes = directory / "default" / "routes.yaml.j2"
        routes.write_text(routes.read_text().replace("no such service", "gone"))
        await within(calls.wait(1), 10)
        assert "gone" in source.sets["default"].sources["routes.yaml.j2"]
        # Rewriting a file with the same text is not a change; the next real edit is.
        routes.write_text(routes.read_text())
        listeners = directory / "default" / LISTENERS
        listeners.write_text(listeners.read_text() + "\n")
        assert await within(calls.wait(2), 10) == 2


async def test_an_emptied_file_is_held_then_applied_once_it_stays_empty(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    calls = Changes()
    source = TemplateSource(directory, settle=0.5)
    good = source.sets["default"].sources[LISTENERS]
    async with watching(source, calls):
        (directory / "default" / LISTENERS).write_text("")
        await until(lambda: "default" in source.held_edits(), 10, "the empty file held")
        assert source.held_edits() == {"default": f"{LISTENERS} is empty"}
        assert source.sets["default"].sources[LISTENERS] == good  # still serving the old file
        # No further file event: the watcher reads the files again when the period is over.
        await within(calls.wait(1), 10)
        assert source.sets["default"].sources[LISTENERS] == ""
        assert source.held_edits() == {}


async def test_a_slow_in_place_write_is_never_applied_half_written(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    source = TemplateSource(directory, settle=60)  # longer than the test: held edits stay held
    path = directory / "default" / LISTENERS
    good = path.read_text()
    final = good.replace("ingress_http", "ingress_main")
    applied: list[str] = []
    calls = Changes()

    def on_change() -> None:
        applied.append(source.sets["default"].sources[LISTENERS])
        calls()

    async with watching(source, on_change):
        with path.open("w") as file:  # truncates: the file is empty now
            file.flush()
            await until(lambda: "is empty" in source.held_edits().get("default", ""), 10)
            file.write(final[: final.index("{%- else %}")])  # cut inside the if block
            file.flush()
            await until(lambda: "line" in source.held_edits().get("default", ""), 10)
            assert source.sets["default"].sources[LISTENERS] == good
            file.write(final[final.index("{%- else %}") :])
        await within(calls.wait(1), 10)
    assert applied == [final]  # nothing in between was ever applied
    assert source.held_edits() == {}
    assert source.set_problems == {}


async def test_a_directory_that_cannot_be_watched_is_logged_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Changes()
    watcher = TemplateWatcher(
        tmp_path / "missing", reload=lambda: Reloaded(("default",)), on_change=calls
    )
    with caplog.at_level(logging.ERROR, logger="bridge.templating"):
        await watcher.start()
        await watcher.stop()  # returns once the watch task ended
    assert any(
        "missing" in r.getMessage() and "edits are not applied" in r.getMessage()
        for r in caplog.records
    )
    assert calls == []
