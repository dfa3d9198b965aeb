"""Hot reload: every edit made after the source was built is applied; watch failures are loud."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bridge.tasks import within
from bridge.templating import TemplateSource, TemplateWatcher

from .support import Changes, copy_sets


async def test_an_edit_made_before_watching_began_is_applied_when_it_begins(tmp_path: Path) -> None:
    directory = copy_sets(tmp_path / "sets", "default")
    calls = Changes()
    source = TemplateSource(directory, on_change=calls)
    routes = directory / "default" / "routes.yaml.j2"
    routes.write_text(routes.read_text().replace("no such service", "gone"))
    await source.start()
    try:
        await within(calls.wait(1), 10)
        assert "gone" in source.sets["default"].sources["routes.yaml.j2"]
    finally:
        await source.stop()


async def test_a_directory_that_cannot_be_watched_is_logged_as_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Changes()
    watcher = TemplateWatcher(tmp_path / "missing", reload=lambda: ["default"], on_change=calls)
    with caplog.at_level(logging.ERROR, logger="bridge.templating"):
        await watcher.start()
        await watcher.stop()  # returns once the watch task ended
    assert any(
        "missing" in r.getMessage() and "edits are not applied" in r.getMessage()
        for r in caplog.records
    )
    assert calls == []
