"""The egress benchmark's plumbing at a tiny scale: every callout answered, both ways; no
timing is asserted."""

from bench.egress import report, run
from tests.egress.socks_server import require_microsocks


def test_direct_and_proxied_rounds_verify_every_address() -> None:
    require_microsocks()
    rows = run(count=20, concurrency=5, rounds=1, log=lambda _: None)
    assert [row["results"] for row in rows["direct"]] == [{"pass": 20}]
    assert [row["results"] for row in rows["socks5"]] == [{"pass": 20}]
    assert "Verdicts were the same in every round" in report(rows, 20, 5, 1,
                                                             "python -m bench egress")
