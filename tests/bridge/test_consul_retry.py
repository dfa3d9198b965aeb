"""Retries, failure state per watch, and watch tasks that are restarted after a crash."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.consul import ConsulError, WatchStatus
from bridge.consul.retry import Recovery, Retrier, backoff_delay, combined
from bridge.consul.supervise import supervise
from bridge.consul_settings import settings_from_env
from bridge.tasks import within


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    for failures, ceiling in [(1, 0.25), (2, 0.5), (3, 1.0), (4, 2.0), (10, 2.0), (100, 2.0)]:
        delays = {backoff_delay(failures, 0.25, 2.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (failures, delays)
        assert len(delays) > 1  # jittered


@pytest.mark.parametrize("failures", [0, 1, 3])
async def test_the_retrier_keeps_the_failure_bookkeeping(failures: int) -> None:
    settings = settings_from_env({}, backoff_base="10ms", backoff_max="20ms", min_interval=0)
    status = WatchStatus("/x", "dc1", "test")
    retrier = Retrier(settings, status, Recovery())
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts <= failures:
            raise ConsulError("server_error", "HTTP 500")
        return "ok"

    assert await retrier.call(flaky) == "ok"
    assert attempts == failures + 1
    assert status.error_count == failures
    assert status.failing == 0
    assert (status.last_error is not None) == (failures > 0)


async def test_each_retrier_keeps_its_own_failure_state() -> None:
    settings = settings_from_env({}, backoff_base="1ms", backoff_max="2ms", min_interval=0)
    recovery = Recovery()
    failing = Retrier(settings, WatchStatus("/a", "dc1", "w"), recovery)
    healthy = Retrier(settings, WatchStatus("/a", "dc1", "w"), recovery)
    calls = 0

    async def fails_twice() -> None:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConsulError("timeout", "timed out")

    async def fine() -> None:
        return None

    await failing.call(fails_twice)
    await healthy.call(fine)
    assert (failing.status.error_count, healthy.status.error_count) == (2, 0)
    shown = combined("/a", "dc1", "w", [failing.status, healthy.status])
    assert (shown.error_count, shown.failing, shown.last_error) == (2, 0, "timed out")


async def test_a_crashed_task_is_logged_at_error_and_restarted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_from_env({}, backoff_base="1ms", backoff_max="2ms")
    runs = 0
    done = asyncio.Event()

    async def crashes_twice() -> None:
        nonlocal runs
        runs += 1
        if runs <= 2:
            raise RuntimeError(f"bug {runs}")
        done.set()

    with caplog.at_level(logging.ERROR, logger="bridge.consul"):
        await within(supervise("watch /x", crashes_twice, settings), 5)
    assert done.is_set()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.exc_info[1].args for r in errors if r.exc_info and r.exc_info[1]] == [
        ("bug 1",),
        ("bug 2",),
    ]
    assert "watch /x crashed" in errors[0].getMessage()


async def test_a_supervised_task_still_ends_when_cancelled() -> None:
    settings = settings_from_env({})
    started = asyncio.Event()

    async def forever() -> None:
        started.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("watch /y", forever, settings))
    await within(started.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
