"""The callout benchmark's plumbing, end to end at a tiny scale: no timing is asserted.

It starts the fast farm (a high port) and FakeDNS in their own processes, then the floor
and cbv each in a fresh process, as `python -m bench callout` does, without the slow
parts (py3-validate-email, which needs port 25, and the slow farm).
"""

import socket

import pytest

from bench.__main__ import main as bench_main
from bench.callout import Scale, cpu_ratio, run, targets
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
    assert len(floor["cpu_rounds"]) == len(cbv["cpu_rounds"]) == 1


def _measured(cpu_rounds: list[float]) -> dict[str, object]:
    """A row as `run` leaves it: the fastest round's figures, every round's CPU per address."""
    return {"addresses": 1000, "cpu": cpu_rounds[0], "wall": 1.0, "cpu_rounds": cpu_rounds}


def test_a_cpu_ratio_pairs_each_round_with_the_floors_of_the_same_turn() -> None:
    # The machine slowed down in the second turn: 1.5 and 1.4 within a turn, where the
    # fastest rounds of each row (turn 1's floor, turn 3's cbv) would give 0.8.
    results = {"floor": _measured([0.30, 0.60, 0.45]),
               "cbv": _measured([0.45, 0.84, 0.24]),
               "cbv_single_mx": _measured([0.45, 0.84, 0.675])}

    ratio, ratios = cpu_ratio(results, "cbv_single_mx")
    assert ratio == pytest.approx(1.5) and ratios == pytest.approx([1.5, 1.4, 1.5])
    ratio, ratios = cpu_ratio(results, "cbv")
    assert ratio == pytest.approx(1.4) and ratios[2] == pytest.approx(0.24 / 0.45)
    measured = {target: text for target, text, _ in targets(results | {"skipped": {}})}
    assert any(text == "1.50x (rounds 1.50 / 1.40 / 1.50)" for text in measured.values())


def test_without_every_round_a_cpu_ratio_is_the_kept_rounds() -> None:
    results = {"floor": {"addresses": 10, "cpu": 0.002}, "cbv": {"addresses": 10, "cpu": 0.003}}

    ratio, ratios = cpu_ratio(results, "cbv")
    assert ratio == pytest.approx(1.5) and ratios == []


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
