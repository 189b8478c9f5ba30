"""Routes, the pool's turns, rests and budgets, without any network."""

from __future__ import annotations

import pytest

from cbv.config import ConfigError, config_from_dict
from cbv.egress.health import RefusalTracker, RestRule
from cbv.egress.pool import FAILED_RETRY, EgressPool, EgressState, NoEgress
from cbv.egress.routes import EgressRoutes
from cbv.egress.table import Egress, egresses_from_config
from cbv.engine.egress_ledger import LocalLedger

RULE = RestRule(rest_after=3, window=600.0, rest=1800.0)
A = Egress("a", "a.example.net", ("192.0.2.1",))
B = Egress("b", "b.example.net", ("192.0.2.2",))
C = Egress("c", "c.example.net", ("192.0.2.3",))


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def pool(routes: dict[str, list[str]], clock: Clock, *egresses: Egress) -> EgressPool:
    chosen = egresses or (A, B, C)
    return EgressPool(chosen, EgressRoutes(chosen, routes), LocalLedger(RULE, clock))


def test_no_egress_configured_is_one_direct_egress_as_today() -> None:
    (only,) = egresses_from_config(config_from_dict({"callout": {"helo_name": "v.test"}}).callout)
    assert (only.name, only.sources, only.proxy, only.helo_name) == ("direct", (), None, "v.test")


def test_the_short_form_proxy_is_one_proxy_egress() -> None:
    config = config_from_dict({"callout": {"proxy": "socks5://10.0.0.5:1080"}})
    (only,) = egresses_from_config(config.callout)
    assert only.name == "proxy" and str(only.proxy) == "socks5://10.0.0.5:1080"


@pytest.mark.parametrize(("callout", "words"), [
    ({"proxy": "socks4://h:1"}, "only socks5://"),
    ({"egress": [{"name": "a"}, {"name": "a"}]}, "'a' is used twice"),
    ({"egress": [{"name": "a"}], "egress_routes": {"*": "b"}}, "no egress is named 'b'"),
    ({"egress": [{"name": "a", "source_address": "192.0.2.300"}]}, "is not an IP address"),
    ({"egress": [{"name": "a", "source_address": ["::1", "::2"]}]}, "at most one IPv4"),
    ({"egress": [{"name": "a b"}]}, "letters, digits"),
    ({"egress": [{"name": "a"}], "proxy": "socks5://h:1"}, "not both"),
    ({"egress": [{"name": "a", "daily_budget": 0}]}, "greater than or equal to 1"),
    ({"egress_routes": {"x.test": []}}, "at least one egress"),
])
def test_bad_egress_settings_are_one_clear_line(callout: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        config_from_dict({"callout": callout})
    assert "\n" not in str(caught.value)


def test_an_egress_naming_no_address_leaves_from_the_callout_source_address() -> None:
    config = config_from_dict({"callout": {"source_address": "192.0.2.9", "egress": [
        {"name": "a"}, {"name": "b", "source_address": "192.0.2.10"},
        {"name": "c", "proxy": "socks5://10.0.0.5:1080"}]}})
    sources = [egress.sources for egress in egresses_from_config(config.callout)]
    assert sources == [("192.0.2.9",), ("192.0.2.10",), ()]


def test_the_most_specific_route_wins_and_matches_mail_exchangers() -> None:
    routes = EgressRoutes((A, B, C), {"*": ["a"], "google.com": ["b"], "mail.google.com": ["c"]})
    assert routes.pool_for("example.org", ["mx.example.org"]) == ("*", (A,))
    assert routes.pool_for("corp.example", ["aspmx.l.google.com"]) == ("google.com", (B,))
    assert routes.pool_for("x.mail.google.com", []) == ("mail.google.com", (C,))
    assert routes.pool_for("notgoogle.com", [])[0] == "*"


def test_without_a_default_route_every_egress_is_the_pool() -> None:
    assert EgressRoutes((A, B), {"x.test": ["b"]}).pool_for("y.test", []) == ("*", (A, B))


async def test_a_pool_is_used_in_turn() -> None:
    egresses = pool({"*": ["a", "b"]}, Clock(), A, B)
    chosen = [await egresses.choose("example.org", []) for _ in range(4)]
    assert chosen == [A, B, A, B]


async def test_a_daily_budget_hands_traffic_to_the_next_egress_until_the_next_day() -> None:
    clock = Clock()
    thrifty = Egress("a", "a.example.net", daily_budget=2)
    egresses = pool({"*": ["a", "b"]}, clock, thrifty, B)
    assert await egresses.choose("x.test", [], tried={"b"}) == thrifty
    assert await egresses.choose("x.test", [], tried={"b"}) == thrifty
    refused = await egresses.choose("x.test", [], tried={"b"})
    assert isinstance(refused, NoEgress) and "a daily budget spent" in refused.detail
    assert egresses.state("a") is EgressState.OVER_BUDGET
    assert await egresses.choose("x.test", []) == B
    clock.now += 86_400
    assert await egresses.choose("x.test", [], tried={"b"}) == thrifty
    assert egresses.state("a") is EgressState.ACTIVE


async def test_a_per_minute_budget_refills_over_the_minute() -> None:
    clock = Clock()
    slow = Egress("a", "a.example.net", per_minute=2)
    egresses = pool({}, clock, slow)
    assert [await egresses.choose("x.test", []) for _ in range(2)] == [slow, slow]
    assert isinstance(await egresses.choose("x.test", []), NoEgress)
    clock.now += 30
    assert await egresses.choose("x.test", []) == slow


def test_refusals_by_one_provider_count_once() -> None:
    tracker = RefusalTracker(RULE)
    for host in ("mx1.example.com", "mx2.example.com", "mx3.example.com"):
        assert tracker.refused("a", host, 0.0) == 0.0
    assert not tracker.resting("a", 1.0)


def test_providers_under_one_public_suffix_count_apart() -> None:
    tracker = RefusalTracker(RULE)
    hosts = [f"mx.{name}.co.uk" for name in ("one", "two", "three")]
    assert [tracker.refused("a", host, 0.0) for host in hosts][-1] == RULE.rest


def test_refusals_by_several_hosts_within_the_window_make_it_rest() -> None:
    tracker = RefusalTracker(RULE)
    assert tracker.refused("a", "mx.one.test", 0.0) == 0.0
    assert tracker.refused("a", "mx.two.test", 700.0) == 0.0  # the first has left the window
    assert tracker.refused("a", "mx.three.test", 710.0) == 0.0
    assert tracker.refused("a", "mx.four.test", 720.0) == RULE.rest
    assert tracker.resting("a", 720.0 + RULE.rest - 1)
    assert not tracker.resting("a", 720.0 + RULE.rest)
    assert not tracker.resting("b", 720.0)


async def test_a_resting_egress_gives_its_traffic_to_the_next_one() -> None:
    clock = Clock()
    egresses = pool({"*": ["a", "b"]}, clock, A, B)
    for host in ("mx.one.test", "mx.two.test", "mx.three.test"):
        await egresses.refused(A, host)
    assert egresses.state("a") is EgressState.RESTING
    assert [await egresses.choose("x.test", []) for _ in range(3)] == [B, B, B]
    clock.now += RULE.rest
    assert A in [await egresses.choose("x.test", []) for _ in range(2)]


def test_a_bad_proxy_url_never_shows_its_password() -> None:
    with pytest.raises(ConfigError, match="bad port") as caught:
        config_from_dict({"callout": {"proxy": "socks5://cbv:hunter2@10.0.0.5:99999"}})
    assert "hunter2" not in str(caught.value) and "cbv:***@" in str(caught.value)


def test_an_egress_dials_each_family_from_its_own_address() -> None:
    dual = Egress("dual", "v.example.net", ("192.0.2.1", "2001:db8::1"))
    assert dual.source_for("198.51.100.7") == "192.0.2.1"
    assert dual.source_for("2001:db8:25::25") == "2001:db8::1"
    assert Egress("any", "v.example.net").source_for("2001:db8::25") is None


def test_an_ipv4_only_egress_cannot_dial_ipv6_and_says_so() -> None:
    with pytest.raises(OSError, match="egress a has no IPv6 source address"):
        A.source_for("2001:db8::25")


async def test_a_failed_egress_goes_last_until_its_retry_time() -> None:
    clock = Clock()
    egresses = EgressPool((A, B), EgressRoutes((A, B), {"*": ["a", "b"]}),
                          LocalLedger(RULE, clock), clock=clock)
    egresses.failed(A, "egress a: cannot reach its proxy")
    assert egresses.state("a") is EgressState.FAILING
    assert [await egresses.choose("x.test", []) for _ in range(2)] == [B, B]
    assert await egresses.choose("x.test", [], tried={"b"}) == A  # no one else is left
    clock.now += FAILED_RETRY
    assert A in [await egresses.choose("x.test", []) for _ in range(2)]
    egresses.succeeded(A)
    assert egresses.state("a") is EgressState.ACTIVE
