"""A problem with a service's data is logged once while it lasts (so memory follows the catalog
of today, not every problem ever seen), and again when it comes back."""

from __future__ import annotations

import logging

import pytest

from bridge.publisher import Publisher
from tests.templates.support import instance, updates
from xds_server import SnapshotCache


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> int:
    return sum(1 for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage())


async def test_a_service_warning_is_logged_once_while_it_lasts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.publisher")
    publisher = Publisher(SnapshotCache(), debounce=0)
    bogus = {"xds-lb-policy": "fastest"}

    def publish(*ports: int, meta: dict[str, str] | None = None) -> None:
        publisher.submit(
            updates(*(instance("web", n, port=p, meta=meta) for n, p in enumerate(ports)))
        )
        publisher.flush()

    publish(8080, meta=bogus)
    publish(8080, 8081, meta=bogus)  # another change, the same problem
    assert warnings_about(caplog, "xds-lb-policy='fastest'") == 1

    publish(8080, 8081)  # fixed
    publish(8080, 8081, meta=bogus)  # and broken again
    assert warnings_about(caplog, "xds-lb-policy='fastest'") == 2

    publish(0)  # a different problem: an instance without a port
    assert warnings_about(caplog, "has no port") == 1
