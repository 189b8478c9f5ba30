"""One callout within the limits: known-unreachable and known catch-all domains, the
domain's budget and the global cap are checked before the runner dials; what it learns
and decides is stored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType

from cbv.address import Address
from cbv.callout.runner import NOTHING_KNOWN, CalloutRunner
from cbv.engine.limits import GLOBAL_POOL, CalloutLimits
from cbv.engine.observer import VerifierObserver
from cbv.engine.verdict_store import VerdictStore
from cbv.model import Reason, Result, Stage, Verdict, utcnow

NO_VERDICTS: Mapping[Address, Verdict] = MappingProxyType({})


def _each(addresses: list[Address], verdict: Callable[[Address, str], Verdict], about: str
          ) -> dict[Address, Verdict]:
    """The same kind of verdict for every address. Out of `LimitedCallout.run`: a
    comprehension there would make `domain` and `detail` cells that every callout in
    flight keeps."""
    return {address: verdict(address, about) for address in addresses}


def rate_limited_verdict(address: Address, detail: str) -> Verdict:
    return Verdict(
        address=str(address),
        result=Result.TRANSIENT,
        reason=Reason.RATE_LIMITED,
        checked_at=utcnow(),
        detail=detail,
    )


def unreachable_verdict(address: Address, domain: str) -> Verdict:
    return Verdict(
        address=str(address),
        result=Result.TRANSIENT,
        reason=Reason.CONNECTION_FAILED,
        stage=Stage.CONNECT,
        cached=True,
        checked_at=utcnow(),
        detail=f"no mail exchanger of {domain} took a connection lately; not dialled again yet",
    )


def catch_all_verdict(address: Address, domain: str) -> Verdict:
    return Verdict(
        address=str(address),
        result=Result.PASS,
        reason=Reason.ACCEPTED,
        catch_all=True,
        stage=Stage.RCPT,
        cached=True,
        checked_at=utcnow(),
        detail=f"the mail exchangers of {domain} accept any address (catch-all, learned "
        "lately); not dialled",
    )


class LimitedCallout:
    """Runs callouts for groups of addresses of one domain, or says why it did not."""

    def __init__(
        self,
        runner: CalloutRunner,
        limits: CalloutLimits,
        store: VerdictStore,
        observer: VerifierObserver,
    ) -> None:
        self._runner = runner
        self._recheck_catch_all = runner.recheck_catch_all
        self._limits = limits
        self._store = store
        self._observer = observer

    async def run(
        self, addresses: list[Address], transcript: bool, use_cache: bool
    ) -> dict[Address, Verdict]:
        """Verdicts for `addresses` (all sharing one MX domain); with `use_cache`, guided by
        the domain's known facts and stored afterwards."""
        domain = self._runner.mx_domain(addresses[0])
        known = await self._store.known(domain) if use_cache else NOTHING_KNOWN
        if known.unreachable:
            return _each(addresses, unreachable_verdict, domain)
        if known.catch_all and not (transcript or self._recheck_catch_all):
            return _each(addresses, catch_all_verdict, domain)
        wait = await self._limits.budget.reserve(domain)
        if wait is None:
            self._observer.limit_refused(domain, "domain_budget")
            detail = f"callout budget for {domain} spent; not calling out now"
            return _each(addresses, rate_limited_verdict, detail)
        if wait:
            self._observer.limit_wait(domain, wait)
            await asyncio.sleep(wait)
        async with self._limits.in_flight.hold(GLOBAL_POOL) as admitted:
            if not admitted:
                self._observer.limit_refused(domain, "in_flight")
                detail = "too many callouts in flight; not calling out now"
                return _each(addresses, rate_limited_verdict, detail)
            self._observer.callout_started()
            started = time.perf_counter()
            verdicts: Mapping[Address, Verdict] = NO_VERDICTS  # no dict kept meanwhile
            try:
                report = await self._runner.run_report(addresses, transcript, known)
                verdicts = report.verdicts
            finally:
                self._observer.callout_finished(verdicts.values(),
                                                time.perf_counter() - started)
        if not use_cache:
            return report.verdicts
        await self._store.learn(domain, report.learned)
        return await self._store.keep(report.verdicts)
