"""One blocking query against a scripted client: Consul's index rules and change detection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest

from bridge.consul import ConsulError, ConsulResponse
from bridge.consul.blocking import BlockingQuery, WatchContext, expect, next_index
from bridge.consul.client import Params
from bridge.consul.retry import Recovery
from bridge.consul_settings import settings_from_env

Answer = tuple[int, Any] | ConsulError  # (X-Consul-Index, body) or a failure


@dataclass
class Scripted:
    """A Consul client answering from a script, recording the parameters of each call."""

    answers: list[Answer]
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def get_json(
        self, path: str, params: Params | None = None, *, known_index: int = 0
    ) -> ConsulResponse:
        self.calls.append(dict(params.items() if isinstance(params, Mapping) else params or ()))
        answer = self.answers.pop(0)
        if isinstance(answer, ConsulError):
            raise answer
        index, body = answer
        return ConsulResponse(200, index, body, {"X-Consul-Index": str(index)}, 0.0)


def query(client: Scripted, dc_param: str | None = None) -> BlockingQuery:
    settings = settings_from_env(
        {}, wait="2s", min_interval=0, backoff_base="1ms", backoff_max="2ms"
    )
    context = WatchContext(client, settings, Recovery(), lambda resp: None, "dc1", dc_param)
    return BlockingQuery(context, "/v1/catalog/services", "catalog", expect(dict))


@pytest.mark.parametrize(
    ("previous", "returned", "expected"),
    [
        (0, 5, 5),  # first read
        (5, 5, 5),  # wait expired: same index
        (5, 9, 9),  # moved on
        (9, 4, 0),  # backwards: reset, the next read is immediate
        (0, 0, 1),  # 0 is used as 1: the next read blocks
        (3, 0, 0),  # 0 after a higher index is backwards too
        (1, 0, 1),  # 0 again after 1: still blocking, no busy loop
    ],
)
def test_next_index_follows_consuls_rules(previous: int, returned: int, expected: int) -> None:
    assert next_index(previous, returned) == expected


async def test_the_first_read_is_immediate_then_reads_block_on_the_index() -> None:
    client = Scripted([(5, {"web": []}), (7, {"web": [], "api": []})])
    watch = query(client, dc_param="dc2")
    assert (await watch.next_change())[1] is True
    assert (await watch.next_change())[0].body == {"web": [], "api": []}
    assert client.calls == [{"dc": "dc2"}, {"dc": "dc2", "index": 5, "wait": "2s"}]


async def test_an_index_of_zero_still_blocks() -> None:
    client = Scripted([(0, {}), (0, {}), (0, {"web": []})])
    watch = query(client)
    await watch.next_change()
    resp, changed = await watch.next_change()
    assert (resp.body, changed) == ({"web": []}, True)
    assert [c.get("index") for c in client.calls] == [None, 1, 1]


async def test_an_index_going_backwards_resets_to_an_immediate_read() -> None:
    client = Scripted([(9, {"a": []}), (4, {"b": []}), (6, {"c": []})])
    watch = query(client)
    await watch.next_change()
    assert (await watch.next_change())[0].body == {"b": []}
    assert watch.index == 0
    await watch.next_change()
    assert [c.get("index") for c in client.calls] == [None, 9, None]
    assert watch.index == 6


async def test_same_index_or_same_body_is_not_a_change_unless_index_bumps_are_asked() -> None:
    client = Scripted([(5, {"a": []}), (5, {"a": []}), (6, {"a": []}), (7, {"b": []})])
    watch = query(client)
    await watch.next_change()
    resp, changed = await watch.next_change()
    assert (resp.index, resp.body, changed) == (7, {"b": []}, True)
    client.answers = [(8, {"b": []})]
    assert (await watch.next_change(index_bumps=True))[1] is False


async def test_errors_and_bodies_of_the_wrong_shape_are_retried_and_counted() -> None:
    client = Scripted([ConsulError("server_error", "HTTP 500"), (3, ["not", "a", "dict"]), (4, {})])
    watch = query(client)
    resp, _ = await watch.next_change()
    assert resp.index == 4
    assert watch.status.error_count == 2
    assert watch.status.failing == 0
    assert "expected a JSON dict" in str(watch.status.last_error)


async def test_a_datacenter_reset_makes_the_next_read_immediate_and_counts_its_body() -> None:
    # The restored state may answer the old index number with other content.
    client = Scripted([(14, {"a": []}), (14, {"b": []})])
    watch = query(client)
    await watch.next_change()
    watch.context.resets.reset("a test")
    resp, changed = await watch.next_change()
    assert (resp.body, changed) == ({"b": []}, True)
    assert [c.get("index") for c in client.calls] == [None, None]


async def test_an_index_going_backwards_resets_the_whole_datacenter() -> None:
    client = Scripted([(9, {"a": []}), (4, {"b": []})])
    watch = query(client)
    await watch.next_change()
    await watch.next_change()
    assert watch.context.resets.count == 1
