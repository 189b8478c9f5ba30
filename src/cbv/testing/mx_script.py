"""What a ScriptedMX says at each step of the SMTP dialogue."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Literal, get_args

from cbv.testing.replies import AnyReply, Reply

Stage = Literal[
    "banner", "ehlo", "helo", "starttls", "vrfy", "mail", "rcpt", "data", "rset", "noop", "quit"
]
STAGES: frozenset[str] = frozenset(get_args(Stage))

# (fnmatch pattern on the lower-cased address, reply); the first match wins
Rule = tuple[str, AnyReply]

BANNER = Reply(220, "{name} ESMTP Postfix")
HELO = Reply(250, "{name}")
STARTTLS_READY = Reply(220, "2.0.0 Ready to start TLS")
VRFY_DEFAULT = Reply(252, "2.0.0 Cannot VRFY user, but will accept message and attempt delivery")
MAIL_OK = Reply(250, "2.1.0 Ok")
RCPT_OK = Reply(250, "2.1.5 Ok")
RCPT_UNKNOWN = Reply(
    550, "5.1.1 <{addr}>: Recipient address rejected: User unknown in local recipient table"
)
GREYLISTED = Reply(
    450,
    "4.2.0 <{addr}>: Recipient address rejected: Greylisted, "
    "see http://postgrey.schweikert.ch/help/{name}.html",
)
DATA_OK = Reply(250, "2.0.0 Ok: queued as 4F00DCAFE")
UNKNOWN_COMMAND = Reply(500, "5.5.2 Error: command not recognized")
TOO_MANY_RECIPIENTS = Reply(452, "4.5.3 Error: too many recipients")


@dataclass
class MXScript:
    """Defaults act like a stock Postfix that knows no users; tests override what they probe.

    `banner=None` is a tarpit that never greets. `catch_all` accepts every recipient no rule
    matched. `{addr}` in a reply's text becomes the address the command named. Greylisting,
    when configured, is applied to every RCPT before the rules, keyed by recipient address
    across connections; an address passes once every configured condition (seconds waited,
    attempt number) is met.
    `drop_at` closes the connection instead of answering that stage, `reset_at` aborts it
    with a TCP RST; both come after the stage's delay. `max_rcpts_per_transaction` answers
    `too_many_rcpts_reply` to each RCPT past the limit. `sender_refused_at_rcpt` refuses
    matching senders at RCPT instead of at MAIL, as Postfix does with smtpd_delay_reject.
    """

    banner: AnyReply | None = BANNER
    banner_delay: float = 0.0
    ehlo: AnyReply | None = None  # None: capabilities built from the switches below
    helo: AnyReply = HELO
    starttls: bool = False
    starttls_reply: AnyReply = STARTTLS_READY
    starttls_break: bool = False
    advertise_vrfy: bool = False
    vrfy: Sequence[Rule] = field(default_factory=list)
    vrfy_reply_default: AnyReply = VRFY_DEFAULT
    mail: Sequence[Rule] = field(default_factory=list)
    mail_reply_default: AnyReply = MAIL_OK
    rcpt: Sequence[Rule] = field(default_factory=list)
    rcpt_reply_default: AnyReply = RCPT_UNKNOWN
    catch_all: bool = False
    rcpt_accept_reply: AnyReply = RCPT_OK
    max_rcpts_per_transaction: int | None = None
    too_many_rcpts_reply: AnyReply = TOO_MANY_RECIPIENTS
    sender_refused_at_rcpt: Sequence[Rule] = field(default_factory=list)
    greylist_seconds: float | None = None
    greylist_attempts: int | None = None
    greylist_reply: AnyReply = GREYLISTED
    data_reply: AnyReply = DATA_OK
    unknown_reply: AnyReply = UNKNOWN_COMMAND
    delays: dict[str, float] = field(default_factory=dict)
    drop_at: Stage | None = None
    reset_at: Stage | None = None

    def __post_init__(self) -> None:
        named = {*self.delays, self.drop_at, self.reset_at} - {None}
        unknown = named - STAGES
        if unknown:
            raise ValueError(f"unknown stages {sorted(map(str, unknown))}; use {sorted(STAGES)}")

    @property
    def greylisting(self) -> bool:
        return self.greylist_seconds is not None or self.greylist_attempts is not None

    def delay(self, stage: Stage) -> float:
        extra = self.banner_delay if stage == "banner" else 0.0
        return self.delays.get(stage, 0.0) + extra

    def ehlo_reply(self, tls_active: bool) -> AnyReply:
        if self.ehlo is not None:
            return self.ehlo
        keywords = ["PIPELINING", "SIZE 10240000"]
        if self.advertise_vrfy:
            keywords.append("VRFY")
        if self.starttls and not tls_active:
            keywords.append("STARTTLS")
        keywords += ["ENHANCEDSTATUSCODES", "8BITMIME"]
        return Reply(250, ["{name}", *keywords])

    def vrfy_reply(self, addr: str) -> AnyReply:
        return first_match(self.vrfy, addr) or self.vrfy_reply_default

    def mail_reply(self, sender: str) -> AnyReply:
        """The null sender is the empty address, so the pattern "" matches only it."""
        return first_match(self.mail, sender) or self.mail_reply_default

    def rcpt_reply(self, addr: str) -> AnyReply:
        ruled = first_match(self.rcpt, addr)
        if ruled is not None:
            return ruled
        return self.rcpt_accept_reply if self.catch_all else self.rcpt_reply_default


def first_match(rules: Sequence[Rule], addr: str) -> AnyReply | None:
    """The reply of the first rule whose pattern matches `addr`, case-insensitively."""
    key = addr.lower()
    return next((reply for pattern, reply in rules if fnmatchcase(key, pattern.lower())), None)
