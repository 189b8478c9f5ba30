"""The Postfix policy listener (`check_policy_service`): many requests per connection."""

from __future__ import annotations

import logging
import time

from cbv.identity_memo import IdentityMemo
from cbv.policy import Action, Decision, RequestContext, RequestKind
from cbv.policy.decision import decide_error
from cbv.protocol.postfix_policy import (
    DUNNO,
    MalformedRequest,
    PolicyEvent,
    PolicyRequest,
    RequestParser,
    defer_if_permit_action,
    encode_action,
    external_address,
    hold_action,
    prepend_action,
    reply_action,
    warn_action,
)
from cbv.servers.connection import ConnectionTracker, RequestConnection
from cbv.servers.logs import DECISIONS, OwnFields, event
from cbv.servers.runtime import Answered, Runtime

LOG = logging.getLogger("cbv.policy")
REQUEST_TYPE = "smtpd_access_policy"
POSTFIX_DEFER_CODE = 450  # what DEFER_IF_PERMIT answers with
KINDS = {"MAIL": RequestKind.MAIL, "RCPT": RequestKind.RCPT}
DUNNO_BYTES = encode_action(DUNNO)
POLICY_FIELDS = OwnFields("instance", "recipient", "client")
# Cached decisions are shared by every request that finds them; forgotten all at once past it.
ANSWERS: IdentityMemo[Decision | None, tuple[str, bytes]] = IdentityMemo(4096)


def context_of(request: PolicyRequest) -> RequestContext:
    get = request.attributes.get
    return RequestContext(
        KINDS.get(get("protocol_state", "").upper(), RequestKind.OTHER),
        external_address(get("sender", "")),
        external_address(get("recipient", "")),
        get("client_address", ""),
        get("sasl_username", ""),
    )


def postfix_action(decision: Decision | None) -> str:
    """One action per answer, so of the headers only the first can be prepended; a subject
    tag cannot be applied through this protocol at all."""
    if decision is None:
        return DUNNO
    if decision.dry_run:
        if decision.action is Action.ACCEPT:
            return DUNNO
        return warn_action(f"cbv dry run: would {decision.action.value} <{decision.address}>: "
                           f"{decision.reply}")
    if decision.action is Action.REJECT and decision.code:
        return reply_action(decision.code, decision.enhanced, decision.text)
    if decision.action is Action.DEFER and decision.code:
        if decision.code == POSTFIX_DEFER_CODE:
            return defer_if_permit_action(decision.enhanced, decision.text)
        return reply_action(decision.code, decision.enhanced, decision.text)
    if decision.action is Action.QUARANTINE:
        return hold_action(decision.text)
    if decision.headers:
        name, value = decision.headers[0]
        return prepend_action(name, value)
    return DUNNO


class PolicyConnection(RequestConnection[PolicyEvent]):
    listener = "policy"

    def __init__(self, runtime: Runtime, tracker: ConnectionTracker) -> None:
        super().__init__(runtime, tracker, RequestParser())

    async def answer(self, request: PolicyEvent) -> bytes:
        started = time.perf_counter()
        if isinstance(request, MalformedRequest) or request.request not in ("", REQUEST_TYPE):
            why = (request.reason if isinstance(request, MalformedRequest)
                   else f"unknown request type {request.request!r}")
            event(LOG, logging.WARNING, "malformed policy request", reason=why)
            self._runtime.telemetry.failed("policy", "malformed_request")
            generation = self._runtime.generation
            refused = decide_error("", generation.policy.rules.default,
                                   generation.config.server.fail_open, "malformed_request")
            return encode_action(postfix_action(refused))
        return await self.decided(
            context_of(request),
            lambda answered, _: self._respond(request, answered, started),
            request.instance,
        )

    def answer_now(self, request: PolicyEvent) -> bytes | None:
        """Every request asks: its attributes are read without the properties' calls."""
        if isinstance(request, MalformedRequest):
            return None
        get = request.attributes.get
        if get("request", "") not in ("", REQUEST_TYPE):
            return None
        started = time.perf_counter()
        answered = self._runtime.generation.answer_at_once(context_of(request),
                                                          get("instance", ""))
        return None if answered is None else self._respond(request, answered, started)

    def _respond(self, request: PolicyRequest, answered: Answered, started: float) -> bytes:
        decision = answered.decision
        action, answer = answer_of(decision)
        seconds = time.perf_counter() - started
        self._runtime.telemetry.answered("policy", decision, seconds)
        if decision is not None and DECISIONS.wanted():
            get = request.attributes.get
            DECISIONS.write(
                decision if decision.cached else None,  # a cached one is remembered
                lambda: {"listener": "policy", **decision.log_fields(), "answer": action},
                POLICY_FIELDS,
                (get("instance", ""), get("recipient", ""), get("client_address", "")),
                seconds)
        return answer


def answer_of(decision: Decision | None) -> tuple[str, bytes]:
    """The action and the answer's bytes; a cached decision's are made once."""
    known = ANSWERS.by_id.get(id(decision))
    if known is not None:
        return known
    action = postfix_action(decision)
    made = action, DUNNO_BYTES if action == DUNNO else encode_action(action)
    if decision is not None and decision.cached:
        ANSWERS.remember(decision, made)
    return made
