"""The callout benchmark's plumbing, end to end at a tiny scale: no timing is asserted.

It starts the fast farm (a high port) and FakeDNS in their own processes, then the floor
and cbv each in a fresh process, as `python -m bench callout` does, without the slow
parts (py3-validate-email, which needs port 25, and the slow farm).
"""

import socket

from bench.__main__ import main as bench_main
from bench.callout import Scale, run
from bench.helpers import loopback_only, run_isolated

TINY = Scale(domains=10, per_domain=5, hosts=3, concurrency=20, py3ve=0, in_flight=0,
             single=False)


def test_every_address_gets_an_answer_from_the_floor_and_from_cbv() -> None:
    results = run(TINY, ports=(0,), py3ve=False, log=lambda _: None)

    floor, cbv = results["floor"], results["cbv"]
    assert floor["addresses"] == cbv["addresses"] == TINY.addresses
    assert sum(floor["outcomes"].values()) == TINY.addresses
    assert floor["outcomes"] == floor["expected"]  # the farm's rule, RCPT by RCPT
    assert floor["sessions"] == floor["rcpts"] == TINY.addresses
    assert sum(cbv["outcomes"].values()) == TINY.addresses
    assert cbv["outcomes"] == cbv["expected"]
    assert cbv["mismatches"] == 0
    assert cbv["dns_queries"] > 0
    assert results["skipped"] == {"py3ve": "not asked for"}


def test_dispatcher_lists_the_benchmarks(capsys) -> None:  # type: ignore[no-untyped-def]
    assert bench_main([]) == 0
    assert "callout" in capsys.readouterr().out


def _resolve_outside_the_farm() -> str:
    loopback_only({"mx00.farm.test": "127.0.1.1"})
    assert socket.getaddrinfo("mx00.farm.test", 25)[0][4][0] == "127.0.1.1"
    try:
        socket.getaddrinfo("example.com", 25)
    except socket.gaierror as exc:
        return str(exc)
    return "resolved"


def test_measuring_processes_never_reach_the_system_resolver() -> None:
    assert "refusing" in run_isolated(_resolve_outside_the_farm, timeout=30)
