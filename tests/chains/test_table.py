"""Each service's chain over time: compiled when what it depends on changes, the last good one
kept when the entries stop compiling, and a fallback for a service that never compiled."""

from __future__ import annotations

from typing import Any

from bridge.chains import ChainTable, State
from tests.traffic.helpers import LOCAL, VERSIONED, as_consul_returns, defaults, resolver, splitter

SPLIT = splitter(
    "web",
    {"Weight": 90, "ServiceSubset": "v1"},
    {"Weight": 10, "ServiceSubset": "v2"},
)
NAMES = {"web", "api", "db"}


def table_with(*raw: dict[str, Any], names: set[str] = NAMES) -> tuple[ChainTable, set[str]]:
    table = ChainTable()
    keys = table.set_entries(LOCAL, [as_consul_returns(e) for e in raw])
    compiled = table.compile(table.affected(keys, names, names), names)
    return table, compiled


def update(table: ChainTable, *raw: dict[str, Any], through_consul: bool = True) -> set[str]:
    bodies = [as_consul_returns(e) if through_consul else e for e in raw]
    keys = table.set_entries(LOCAL, bodies)
    return table.compile(table.affected(keys, (), NAMES), NAMES)


def test_services_without_entries_have_no_chain() -> None:
    table, compiled = table_with(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    assert compiled == {"web"}
    assert set(table.chains) == {"web"}
    assert table.chains["web"].state is State.CURRENT


def test_proxy_defaults_give_every_service_a_chain() -> None:
    proxy = {"Kind": "proxy-defaults", "Name": "global", "Config": {"protocol": "http"}}
    table, compiled = table_with(proxy)
    assert compiled == NAMES
    chain = table.chains["db"].chain
    assert chain is not None
    assert chain.protocol == "http"


def test_only_services_whose_chain_used_a_changed_entry_are_compiled_again() -> None:
    table, _ = table_with(
        defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT, resolver("api")
    )
    web_before = table.chains["web"]
    assert update(
        table,
        defaults("web"),
        resolver("web", Subsets=VERSIONED),
        SPLIT,
        resolver("api", ConnectTimeout="2s"),
    ) == {"api"}
    assert table.chains["web"] is web_before


def test_an_entry_that_stops_compiling_keeps_the_last_good_chain() -> None:
    table, _ = table_with(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    good = table.chains["web"].chain
    bad_filter = resolver("web", Subsets={**VERSIONED, "v2": {"Filter": 'Node.Address == "x"'}})
    assert update(table, defaults("web"), bad_filter, SPLIT) == {"web"}
    served = table.chains["web"]
    assert served.state is State.LAST_GOOD
    assert served.chain is good
    assert "Node.Address" in str(served.problems[0])
    assert table.problems() == {"web": served.problems}

    update(table, defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    assert table.chains["web"].state is State.CURRENT
    assert table.problems() == {}


def test_a_service_that_never_compiled_is_served_without_the_offending_entries() -> None:
    route_to_nowhere = {
        "Kind": "service-router",
        "Name": "web",
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/x"}}, "Destination": {"Service": "nope"}}],
    }
    table, _ = table_with(
        defaults("web"),
        defaults("nope"),
        resolver("web", Subsets=VERSIONED),
        SPLIT,
        route_to_nowhere,
    )
    served = table.chains["web"]
    assert served.state is State.FALLBACK
    assert served.left_out == (("service-router", "web"),)
    assert served.chain is not None
    assert len(served.chain.routes) == 1  # the splitter's catch-all, without the router


def test_an_entry_refused_when_read_leaves_a_default_chain_when_there_is_nothing_to_keep() -> None:
    table = ChainTable()
    bad = {"Kind": "service-resolver", "Name": "web", "ConnectTimeout": "soon"}
    keys = table.set_entries(LOCAL, [bad])  # as a broken Consul (or a bug) could list it
    table.compile(table.affected(keys, NAMES, NAMES), NAMES)
    served = table.chains["web"]
    assert served.state is State.FALLBACK
    assert served.chain is not None
    assert served.chain.default  # the plain cluster, as without entries
    assert table.entries.problems[0].field == "ConnectTimeout"


def test_a_route_to_a_missing_service_compiles_once_that_service_registers() -> None:
    to_db = splitter("web", {"Weight": 50}, {"Weight": 50, "Service": "db"})
    table, _ = table_with(defaults("web"), defaults("db"), to_db, names={"web"})
    states = [table.chains["web"].state]
    compiled = table.compile(table.affected(set(), {"db"}, NAMES), NAMES)
    assert "web" in compiled
    states.append(table.chains["web"].state)
    # db leaving again: web keeps the chain that sends half its traffic there
    remaining = NAMES - {"db"}
    table.compile(table.affected(set(), {"db"}, remaining), remaining)
    states.append(table.chains["web"].state)
    assert states == [State.FALLBACK, State.CURRENT, State.LAST_GOOD]


def test_deleting_every_entry_of_a_service_drops_its_chain() -> None:
    table, _ = table_with(defaults("web"), resolver("web", Subsets=VERSIONED), SPLIT)
    assert update(table) == {"web"}
    assert table.chains == {}
