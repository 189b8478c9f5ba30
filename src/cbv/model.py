"""The Verdict: one shape shared by the Python API, the CLI, the HTTP API and the cache."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, computed_field


class Result(StrEnum):
    PASS = "pass"  # noqa: S105 - a verdict, not a password
    FAIL = "fail"
    TRANSIENT = "transient"
    UNKNOWN = "unknown"


class Reason(StrEnum):
    ACCEPTED = "accepted"
    VRFY_ACCEPTED = "vrfy_accepted"
    MAILBOX_UNKNOWN = "mailbox_unknown"
    NO_MAIL_DOMAIN = "no_mail_domain"
    BAD_SYNTAX = "bad_syntax"
    GREYLISTED = "greylisted"
    TEMPFAIL = "tempfail"
    TIMEOUT = "timeout"
    CONNECTION_FAILED = "connection_failed"
    DNS_TEMPFAIL = "dns_tempfail"
    RATE_LIMITED = "rate_limited"
    POLICY_REJECTION = "policy_rejection"
    VERIFIER_REJECTED = "verifier_rejected"
    CLIENT_BLOCKED = "client_blocked"
    CLIENT_THROTTLED = "client_throttled"
    VERIFIER_BLOCKED = "verifier_blocked"
    SENDER_REJECTED = "sender_rejected"
    MAILBOX_FULL = "mailbox_full"
    TARGET_FORBIDDEN = "target_forbidden"
    SMTPUTF8_UNSUPPORTED = "smtputf8_unsupported"
    NOT_CHECKED = "not_checked"

    @property
    def result(self) -> Result:
        return REASON_RESULT[self]


REASON_RESULT: dict[Reason, Result] = {
    Reason.ACCEPTED: Result.PASS,
    Reason.VRFY_ACCEPTED: Result.PASS,
    Reason.MAILBOX_UNKNOWN: Result.FAIL,
    Reason.NO_MAIL_DOMAIN: Result.FAIL,
    Reason.BAD_SYNTAX: Result.FAIL,
    Reason.GREYLISTED: Result.TRANSIENT,
    Reason.TEMPFAIL: Result.TRANSIENT,
    Reason.TIMEOUT: Result.TRANSIENT,
    Reason.CONNECTION_FAILED: Result.TRANSIENT,
    Reason.DNS_TEMPFAIL: Result.TRANSIENT,
    Reason.RATE_LIMITED: Result.TRANSIENT,
    Reason.POLICY_REJECTION: Result.UNKNOWN,
    Reason.VERIFIER_REJECTED: Result.UNKNOWN,
    Reason.CLIENT_BLOCKED: Result.UNKNOWN,
    Reason.CLIENT_THROTTLED: Result.TRANSIENT,
    Reason.VERIFIER_BLOCKED: Result.UNKNOWN,
    Reason.SENDER_REJECTED: Result.UNKNOWN,
    Reason.MAILBOX_FULL: Result.UNKNOWN,
    Reason.TARGET_FORBIDDEN: Result.UNKNOWN,
    Reason.SMTPUTF8_UNSUPPORTED: Result.UNKNOWN,
    Reason.NOT_CHECKED: Result.UNKNOWN,
}

# Momentum's smtp_cbv_result: "pass" unless the address was permanently rejected.
# `unknown` says nothing against the address, so it maps to "pass" as Momentum's
# own callouts do for anything but a rejection of the address.
MOMENTUM_RESULT: dict[Result, str] = {
    Result.PASS: "pass",
    Result.FAIL: "error",
    Result.TRANSIENT: "transient",
    Result.UNKNOWN: "pass",
}


class Stage(StrEnum):
    SYNTAX = "syntax"
    DNS = "dns"
    CONNECT = "connect"
    BANNER = "banner"
    EHLO = "ehlo"
    STARTTLS = "starttls"
    VRFY = "vrfy"
    MAIL = "mail"
    RCPT = "rcpt"


class SmtpReply(BaseModel):
    """A server reply as the Verdict reports it: the text lines joined by newlines."""

    model_config = ConfigDict(frozen=True)

    code: int
    enhanced: str | None = None
    text: str = ""


class TranscriptLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    host: str
    direction: str  # "C" client to server, "S" server to client, "*" an event (connect, TLS)
    line: str
    at_ms: float


def utcnow() -> datetime:
    return datetime.now(UTC)


class Verdict(BaseModel):
    model_config = ConfigDict(frozen=True)

    address: str
    result: Result
    reason: Reason
    catch_all: bool | None = None
    mx: str | None = None
    ip: str | None = None
    port: int | None = None
    stage: Stage | None = None
    reply: SmtpReply | None = None
    sender: str | None = None
    cached: bool = False
    checked_at: datetime
    expires_at: datetime | None = None
    duration_ms: float = 0.0
    transcript: list[TranscriptLine] | None = None
    detail: str | None = None
    evidence: str | None = None  # the rule that decided, docs/verdicts.md "Evidence"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def smtp_cbv_result(self) -> str:
        return MOMENTUM_RESULT[self.result]
