"""Two pure rules of the Consul side: the index of the next blocking read, and which services of
a /v1/catalog/services body the settings select (with their tags)."""

from __future__ import annotations

from typing import Any

from bridge.consul.blocking import next_index
from bridge.consul.services import catalog_selection
from bridge.consul_settings import settings_from_env


def test_an_index_at_or_above_the_previous_one_is_the_next_index() -> None:
    for previous, returned in ((0, 1), (1, 1), (7, 7), (7, 8), (7, 10**12)):
        assert next_index(previous, returned) == returned


def test_an_index_below_the_previous_one_resets_to_an_immediate_read() -> None:
    for previous, returned in ((2, 1), (8, 7), (10**12, 5)):
        assert next_index(previous, returned) == 0


def test_an_index_below_one_counts_as_one() -> None:
    assert next_index(0, 0) == 1
    assert next_index(0, -5) == 1  # a broken header must never become a busy loop
    assert next_index(1, -5) == 1
    assert next_index(2, 0) == 0  # ... but below the previous index it is still a reset


def test_selected_services_come_with_their_tags_sorted_once_each() -> None:
    body: dict[str, Any] = {"web": ["v2", "canary", "v2"], "api": None, "db": [], "cache": [7]}
    settings = settings_from_env({})
    assert catalog_selection(body, settings) == {
        "web": ("canary", "v2"),
        "api": (),
        "db": (),
        "cache": ("7",),
    }


def test_the_settings_decide_by_name_and_tag() -> None:
    body: dict[str, Any] = {
        "consul": [],
        "web": ["public"],
        "web-admin": ["internal"],
        "api": ["public"],
    }
    assert set(catalog_selection(body, settings_from_env({}))) == {"web", "web-admin", "api"}
    by_name = settings_from_env({}, include=["web*"])
    assert catalog_selection(body, by_name) == {"web": ("public",), "web-admin": ("internal",)}
    by_tag = settings_from_env({}, exclude_tags=["internal"])
    assert catalog_selection(body, by_tag) == {"web": ("public",), "api": ("public",)}
    assert catalog_selection({}, by_tag) == {}
