"""The pure rules: what is final, what is tried again and when, how lists are cut."""

from __future__ import annotations

from cbv.jobs.model import Entry, JobSpec, JobVerdict, WorkItem
from cbv.jobs.schedule import MAX_ATTEMPTS, plan
from cbv.jobs.service import work_items
from cbv.model import Reason, Verdict, utcnow

NOW = 1_000_000.0


def spec(delays: list[float], horizon: float = 1000.0) -> JobSpec:
    return JobSpec(id="j", retry_delays=delays, retry_horizon=horizon, total=4, created_at=NOW)


def verdict(address: str, reason: Reason) -> Verdict:
    return Verdict(address=address, result=reason.result, reason=reason, checked_at=utcnow())


ITEM = WorkItem("j", (Entry(0, "a@x.test"), Entry(1, "b@x.test", 2), Entry(2, "c@x.test"),
                      Entry(3, "d@x.test")))


def test_final_verdicts_retries_and_budget_waits_are_told_apart() -> None:
    verdicts = [verdict("a@x.test", Reason.ACCEPTED), verdict("b@x.test", Reason.GREYLISTED),
                verdict("c@x.test", Reason.RATE_LIMITED), verdict("d@x.test", Reason.TEMPFAIL)]
    decided = plan(spec([10, 20, 40]), ITEM, verdicts, NOW, budget_wait=5)
    assert [(f.index, JobVerdict.model_validate_json(f.line).attempts)
            for f in decided.finals] == [(0, 1)]
    later = {(entry.ready_at - NOW, tuple(e.index for e in entry.item.entries), entry.item.budget)
             for entry in decided.later}
    assert later == {(5, (2,), True), (10, (3,), False), (40, (1,), False)}
    retried = next(e for e in decided.later if e.item.entries[0].index == 1)
    assert retried.item.entries[0].attempts == 3


def test_past_the_horizon_the_last_verdict_is_final_with_its_attempts() -> None:
    verdicts = [verdict(e.address, Reason.GREYLISTED) for e in ITEM.entries]
    verdicts[2] = verdict("c@x.test", Reason.RATE_LIMITED)
    decided = plan(spec([300], horizon=100), ITEM, verdicts, NOW + 99, budget_wait=5)
    assert decided.later == []
    lines = [JobVerdict.model_validate_json(f.line) for f in decided.finals]
    assert [(line.reason, line.attempts) for line in lines] == [
        (Reason.GREYLISTED, 1), (Reason.GREYLISTED, 3), (Reason.RATE_LIMITED, 1),
        (Reason.GREYLISTED, 1)]


def test_attempts_are_bounded_whatever_the_delays() -> None:
    item = WorkItem("j", (Entry(0, "a@x.test", MAX_ATTEMPTS - 2),))
    again = plan(spec([0.01]), item, [verdict("a@x.test", Reason.GREYLISTED)], NOW, 5)
    assert [e.item.entries[0].attempts for e in again.later] == [MAX_ATTEMPTS - 1]
    item = WorkItem("j", (Entry(0, "a@x.test", MAX_ATTEMPTS - 1),))
    final = plan(spec([0.01]), item, [verdict("a@x.test", Reason.GREYLISTED)], NOW, 5)
    assert final.later == []
    assert JobVerdict.model_validate_json(final.finals[0].line).attempts == MAX_ATTEMPTS


def test_lists_are_cut_by_domain_into_session_sized_items_domains_interleaved() -> None:
    addresses = [f"u{i}@big.test" for i in range(5)] + ["a@Small.test", "b@small.test"]
    cut = work_items("j", addresses, per_item=2)
    assert [[e.index for e in item.entries] for item in cut] == [[0, 1], [5, 6], [2, 3], [4]]
