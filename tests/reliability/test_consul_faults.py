"""Consul misbehaving: no request through Envoy fails, and changes flow again when it is back.

Each fault is injected into every read of the Consul double while the bridge watches it; a
change made during the fault (web-2 deregistered) must reach Envoy once Consul answers normally
again (how fast is measured by the benchmarks, not here).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from consul_double import ConsulDouble
from tests.support.backends import get
from tests.support.bridge_env import Stack, running_stack
from tests.support.waiting import eventually, until

pytestmark = pytest.mark.envoy

NODE = "edge-faults"
TOKEN = "bridge-token"
READ_ALL = {"service_read": "*", "node_read": True}
#: A bound on waiting for recovery, not a speed target: generous for a loaded machine.
RECOVERY_BOUND = 30.0

FAULTS: dict[str, Callable[[ConsulDouble], object]] = {
    "HTTP 500 no leader": lambda c: c.faults.error(500, "No cluster leader"),
    "hang": lambda c: c.faults.hang(),
    "connection reset": lambda c: c.faults.drop(),
    "HTTP 429": lambda c: c.faults.too_many_requests(),
}


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    async with running_stack(NODE, acl_tokens={TOKEN: READ_ALL}, token=TOKEN) as started:
        await started.follows({"web-1", "web-2"})
        yield started


async def touch(stack: Stack, round_: int) -> None:
    """Make every watch observe a harmless change, so that the reads it makes next are made
    under whatever fault or policy is now in place (a blocking query already held by Consul is
    answered as it was accepted)."""
    catalog_size = stack.bridge.watcher.status()["services"]["dc1"]
    stack.register("api-1", service="api", meta={"touch": str(round_)})
    stack.register("web-1", meta={"touch": str(round_)})

    def web_1_touched() -> bool:
        view = stack.bridge.publisher.catalog.view("web")
        found = [i for i in view.all_instances() if i.id == "web-1"] if view else []
        return bool(found) and ("touch", str(round_)) in found[0].meta

    def catalog_grew() -> bool:
        return bool(stack.bridge.watcher.status()["services"]["dc1"] > catalog_size)

    await until(lambda: web_1_touched() and catalog_grew(), what="watches re-armed")


async def no_request_fails(stack: Stack, requests: int = 150) -> int:
    failures = 0
    for _ in range(requests):
        status, _body = await get(stack.ingress, host="web")
        failures += status != 200
        await asyncio.sleep(0.002)
    return failures


async def recovers(stack: Stack) -> None:
    """Traffic shows the change made during the fault (web-2 gone)."""
    await stack.follows({"web-1"}, timeout=RECOVERY_BOUND, what="the change made during the fault")


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_consul_fault_fails_no_request_and_recovers(stack: Stack, fault: str) -> None:
    injected = FAULTS[fault](stack.consul)
    await touch(stack, 1)
    stack.consul.deregister("web-2")  # a change Consul cannot tell the bridge yet
    await until(lambda: injected.hits >= 2, what=f"the bridge meeting the fault ({fault})")  # type: ignore[attr-defined]
    assert await no_request_fails(stack) == 0
    assert {"web-1", "web-2"} == await stack.traffic()  # the last known state is kept
    stack.consul.faults.clear()
    await recovers(stack)


async def test_consul_down_for_a_while_then_back(stack: Stack) -> None:
    await stack.consul.stop()
    stack.consul.deregister("web-2")
    await until(
        lambda: any(w["failing"] >= 3 for w in stack.bridge.watcher.status()["watches"]),
        timeout=30,
        what="the bridge backing off",
    )
    assert await no_request_fails(stack) == 0
    await stack.consul.start()
    await recovers(stack)


async def test_index_reset_keeps_serving_and_changes_still_arrive(stack: Stack) -> None:
    stack.consul.reset_index()
    stack.consul.deregister("web-2")
    assert await no_request_fails(stack, 50) == 0
    # A removal right after an index reset is held (test_consul_state.py) until accepted.
    await until(lambda: stack.bridge.watcher.problems() != [], what="the removal held")
    stack.bridge.watcher.accept_removals()
    await recovers(stack)


async def test_acl_filtered_empty_reads_keep_the_last_known_state(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bridge.consul")
    stack.consul.acl.set_policy(TOKEN, {})  # the token can no longer see anything
    await touch(stack, 1)
    stack.consul.deregister("web-2")  # the reads that notice come back empty
    await eventually(
        lambda: _logged(caplog, "ACLs hide every instance"), what="the filtered read noticed"
    )
    assert await no_request_fails(stack) == 0
    assert {"web-1", "web-2"} == await stack.traffic()
    stack.consul.acl.set_policy(TOKEN, READ_ALL)  # the operator fixes the token
    # Consul moves no index when a policy changes, and the read it holds was accepted under
    # the old policy: what happened while web was hidden arrives with web's next changes.
    rounds = iter(range(2, 1000))

    async def change_web_and_look() -> set[str]:
        stack.register("web-1", meta={"touch": str(next(rounds))})
        return await stack.traffic()

    await eventually(
        change_web_and_look,
        lambda seen: seen == {"web-1"},
        interval=0.2,
        what="web-2's deregistration, with web's next changes once the token reads again",
    )


async def _logged(caplog: pytest.LogCaptureFixture, text: str) -> bool:
    return any(text in record.getMessage() for record in caplog.records)
