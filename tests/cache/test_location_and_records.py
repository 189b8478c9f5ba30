"""cache.url parsing, lifetimes by result, and the rule that keeps a pass over a tempfail."""

from __future__ import annotations

import pytest

from cbv.cache.records import keeps_previous
from cbv.cache_location import CacheKind, parse_cache_location
from cbv.config import ConfigError, config_from_dict
from cbv.model import Reason
from tests.cache.helpers import LIFETIMES, T0, record, verdict


@pytest.mark.parametrize(
    ("url", "kind", "detail"),
    [
        ("", CacheKind.SQLITE, ""),
        ("memory://", CacheKind.MEMORY, ""),
        ("sqlite:///var/lib/cbv/cache.sqlite3", CacheKind.SQLITE, "/var/lib/cbv/cache.sqlite3"),
        ("sqlite://", CacheKind.SQLITE, ""),
        ("redis://127.0.0.1:6379/2", CacheKind.REDIS, "redis://127.0.0.1:6379/2"),
        ("redis+cluster://127.0.0.1:7000,127.0.0.1:7001", CacheKind.REDIS_CLUSTER,
         (("127.0.0.1", 7000), ("127.0.0.1", 7001))),
    ],
)
def test_cache_urls(url: str, kind: CacheKind, detail: object) -> None:
    location = parse_cache_location(url)
    assert location.kind is kind
    assert detail in ("", location.path, location.url, location.nodes)


@pytest.mark.parametrize(
    ("cache", "message"),
    [
        ({"url": "mysql://db"}, "config: cache.url: unsupported scheme 'mysql'"),
        ({"url": "localhost:6379"}, "config: cache.url: 'localhost:6379' is not a URL"),
        ({"url": "redis://127.0.0.1:99999/0"}, "config: cache.url: bad port"),
        ({"url": "redis://127.0.0.1:6379/x"}, "config: cache.url: the database in"),
        ({"url": "redis+cluster://127.0.0.1"}, "config: cache.url: redis+cluster nodes"),
        ({"url": "memory://", "path": "/tmp/x"}, "config: cache: set cache.url or cache.path"),
        ({"pass_ttl": 10, "pass_refresh": 20}, "config: cache: pass_refresh must not exceed"),
        ({"colour": "red"}, "config: cache.colour: unknown key"),
    ],
)
def test_bad_cache_settings_are_one_line_errors_naming_the_key(
    cache: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"cache": cache})
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_bad_limits_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^config: limits.domain_overrides: rate for"):
        config_from_dict({"limits": {"domain_overrides": {"example.test": 0}}})


@pytest.mark.parametrize(
    ("reason", "expires_in", "refresh_in"),
    [
        (Reason.ACCEPTED, 7 * 86_400, 86_400),
        (Reason.MAILBOX_UNKNOWN, 3 * 3_600, 3 * 3_600),
        (Reason.GREYLISTED, 300, 300),
        (Reason.POLICY_REJECTION, 3_600, 3_600),
    ],
)
def test_lifetimes_by_result(reason: Reason, expires_in: float, refresh_in: float) -> None:
    stored = LIFETIMES.record(verdict("a@example.test", reason), T0)
    assert stored is not None
    assert (stored.expires_at - T0, stored.refresh_at - T0) == (expires_in, refresh_in)
    assert stored.verdict.cached is True
    assert stored.verdict.expires_at is not None
    assert stored.verdict.expires_at.timestamp() == stored.expires_at


@pytest.mark.parametrize("reason", [Reason.RATE_LIMITED, Reason.BAD_SYNTAX, Reason.NOT_CHECKED])
def test_verdicts_that_say_nothing_lasting_are_not_stored(reason: Reason) -> None:
    assert LIFETIMES.record(verdict("a@example.test", reason), T0) is None


def test_a_transient_answer_never_replaces_a_valid_pass_or_fail() -> None:
    tempfail = verdict("a@example.test", Reason.TEMPFAIL)
    passed = record("a@example.test", Reason.ACCEPTED)
    failed = record("a@example.test", Reason.MAILBOX_UNKNOWN)
    unknown = record("a@example.test", Reason.POLICY_REJECTION)
    assert keeps_previous(passed, tempfail, T0 + 86_400)
    assert keeps_previous(failed, tempfail, T0 + 60)
    assert not keeps_previous(failed, tempfail, T0 + 3 * 3_600)  # expired: nothing to keep
    assert not keeps_previous(unknown, tempfail, T0 + 60)
    assert not keeps_previous(passed, verdict("a@example.test", Reason.MAILBOX_UNKNOWN), T0)
    assert not keeps_previous(None, tempfail, T0)
