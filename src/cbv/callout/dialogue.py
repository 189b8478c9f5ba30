"""One SMTP verification session as a sans-I/O state machine.

`Dialogue.steps()` is a generator: it yields actions (send these commands and
hand back their replies, upgrade to TLS, quit) and receives the replies. A lost
connection (refused, timed out, dropped, garbled) is thrown into it as
`ConnectionLost`, so every state change of a session happens inside `steps()`.
The asyncio driver in `session.py` only moves bytes, so every decision made in a
session can be tested, fuzzed and read here without a socket.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Final

from cbv.address import Address
from cbv.callout.classify import (
    Judgement,
    classify_catch_all_probe,
    is_too_many_recipients,
    judge_rcpt,
    judge_refusal_of_host,
    judge_sender_refusal,
    judge_transient,
    refuses_sender,
    vrfy_is_decisive,
)
from cbv.model import Reason, Stage
from cbv.protocol.smtp import Reply, encode_command, parse_ehlo_extensions


@dataclass(slots=True)
class Send:
    """Write `data` (one command, or several pipelined), then return one reply for each
    of `stages`, the stage of each command in order. The banner is read with nothing
    written: `Send(b"", (Stage.BANNER,))`.

    Bytes and stages rather than an object per command: every callout in flight keeps
    its Send while the replies are awaited.

    `quits`: QUIT ends `data` (RFC 2920 allows it last in a pipelined group); its reply
    is not one of `stages`, the driver reads it at `Quit` as if QUIT were written then."""

    data: Final[bytes]
    stages: Final[tuple[Stage, ...]]
    quits: Final[bool] = False

    def lines(self) -> list[bytes]:
        """Each command as written, CR LF included (no command holds CR or LF)."""
        return [line + b"\r\n" for line in self.data.split(b"\r\n")[:-1]]


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the connection to TLS and send back no replies. If the handshake fails,
    the driver drops this dialogue and the runner starts a new one with the same host
    in plain text (`starttls=False`)."""


@dataclass(slots=True)
class Quit:
    """Say QUIT and close; the verdicts are already decided. `said`: QUIT went with the
    last transaction, only its reply is left to read."""

    said: Final[bool] = False


Action = Send | StartTLS | Quit
_KEYWORDS_READ = ("PIPELINING", "SMTPUTF8", "STARTTLS", "VRFY")  # what a session asks of EHLO
QUIT = encode_command("QUIT")
Steps = Generator[Action, list[Reply], None]


class ConnectionLost(Exception):
    """Thrown into `steps()` by the driver: no connection, a timeout, a drop or a
    garbled reply at `stage`."""

    def __init__(self, stage: Stage, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.stage = stage
        self.reason = reason
        self.detail = detail


def lose_connection(steps: Steps, lost: ConnectionLost) -> None:
    """Tell a started dialogue that its connection is gone; the dialogue ends there."""
    try:
        steps.throw(lost)
    except StopIteration:
        return
    raise RuntimeError("the dialogue went on after its connection was lost")


@dataclass(slots=True)
class Outcome:
    reason: Final[Reason]
    stage: Final[Stage]
    reply: Final[Reply | None] = None
    catch_all: Final[bool | None] = None
    sender: Final[str | None] = None
    detail: Final[str | None] = None
    evidence: Final[str | None] = None  # the classification rule that decided, when a reply did


def _judged(judgement: Judgement, stage: Stage, reply: Reply, catch_all: bool | None = None,
            sender: str | None = None) -> Outcome:
    return Outcome(judgement.reason, stage, reply, catch_all, sender, evidence=judgement.rule)


@dataclass(slots=True)
class SessionSettings:
    helo_name: Final[str]
    senders: Final[tuple[str, ...]]  # "" is the null sender; tried in order when refused
    try_vrfy: Final[bool] = False  # VRFY first, when the EHLO reply advertises it
    force_vrfy: Final[bool] = False  # VRFY first even when not advertised
    starttls: Final[bool] = True
    probe_local_part: Final[str | None] = None  # catch-all probe, once per session
    max_rcpts: Final[int] = 10
    mx_host: Final[str] = ""  # the MX host name, for provider signatures
    one_recipient_per_transaction: Final[bool] = False  # known: the probe needs its own transaction


@dataclass(slots=True)
class Dialogue:
    settings: SessionSettings
    addresses: Sequence[Address]
    sender_index: int = 0
    outcomes: dict[Address, Outcome] = field(default_factory=dict)
    host_failure: Outcome | None = None  # set when the next host should be tried
    catch_all: bool | None = None  # may start from what is already known of the domain
    vrfy_decisive: bool | None = None  # whether any VRFY got an answer that decides
    one_recipient_per_transaction: bool | None = None  # learned from a 452 after the probe
    unfinished: bool = False  # QUIT went too soon: a new session to this host goes on
    tls_active: bool = False
    current: Address | None = None
    _rcpts_sent: int = 0
    _probed: bool = False
    _transaction_open: bool = False
    _quit_said: bool = False

    @property
    def undecided(self) -> list[Address]:
        outcomes, undecided = self.outcomes, []
        for address in self.addresses:  # a comprehension made `self` a cell per session
            if address not in outcomes:
                undecided.append(address)
        return undecided

    @property
    def sender(self) -> str:
        return self.settings.senders[self.sender_index]

    def steps(self) -> Steps:
        """The session from the banner (the first action, yielded before the driver
        connects) to QUIT; ends early when `ConnectionLost` is thrown in.

        The addresses are asked in this frame, not in a generator of its own: each frame
        is memory that every callout in flight keeps while it waits for a RCPT reply."""
        try:
            greeted = yield from self._banner()
            extensions = (yield from self._greet()) if greeted else None
            if extensions is not None:
                pipelining = "PIPELINING" in extensions
                vrfy = self._vrfy_first(extensions)
                last = self.addresses[-1]
                for address in self.addresses:
                    if address in self.outcomes:
                        continue
                    if address.needs_smtputf8 and "SMTPUTF8" not in extensions:
                        self._decide(address, Outcome(Reason.SMTPUTF8_UNSUPPORTED, Stage.EHLO))
                        continue
                    self.current = address
                    if vrfy:
                        (reply,) = yield _send("VRFY", str(address), Stage.VRFY)
                        if self._vrfy_decided(address, reply):
                            continue
                    if not (yield from self._transaction(address, pipelining,
                                                         address is last)):
                        break
            yield Quit(self._quit_said)
        except ConnectionLost as lost:
            self._connection_lost(lost)

    def _banner(self) -> Generator[Action, list[Reply], bool]:
        """Whether the server greets us; the banner goes with this frame, not kept in
        `steps()` while the session waits for its later replies."""
        (banner,) = yield Send(b"", (Stage.BANNER,))
        if not banner.is_positive:
            self._host_refused(Stage.BANNER, banner)
        return banner.is_positive

    def abandon(self, lost: ConnectionLost) -> None:
        """End a session that never got its connection (no slot free for the host); its
        state changes in `steps()` as for any lost connection."""
        steps = self.steps()
        next(steps)
        lose_connection(steps, lost)

    def _connection_lost(self, lost: ConnectionLost) -> None:
        if lost.stage in (Stage.RCPT, Stage.VRFY) and self.current in self.undecided:
            assert self.current is not None
            # Decided as if it had had a session of its own; the rest get a fresh session.
            self._decide(self.current, Outcome(lost.reason, Stage.RCPT, detail=lost.detail))
        elif self.host_failure is None and self.undecided:
            self.host_failure = Outcome(lost.reason, lost.stage, detail=lost.detail)

    def _decide(self, address: Address, outcome: Outcome) -> None:
        self.outcomes[address] = outcome

    def _decide_all(self, outcome: Outcome) -> None:
        for address in self.undecided:
            self._decide(address, outcome)

    def _host_refused(self, stage: Stage, reply: Reply) -> None:
        """A refusal of the verifier itself: 4xx tries the next host, 5xx is final."""
        judged = _judged(judge_refusal_of_host(reply), stage, reply)
        if reply.is_permanent:
            self._decide_all(judged)
        else:
            self.host_failure = judged

    def _greet(self) -> Generator[Action, list[Reply], tuple[str, ...] | None]:
        """The EHLO keywords the session reads that the server advertised (a small tuple
        kept while the session goes on, not the parsed reply), or None when refused."""
        helo = self.settings.helo_name
        (reply,) = yield _send("EHLO", helo, Stage.EHLO)
        if reply.is_permanent:
            (reply,) = yield _send("HELO", helo, Stage.EHLO)
            if not reply.is_positive:
                self._host_refused(Stage.EHLO, reply)
                return None
            return ()
        if not reply.is_positive:
            self._host_refused(Stage.EHLO, reply)
            return None
        extensions = _keywords_read(reply)
        if self.tls_active or not self.settings.starttls or "STARTTLS" not in extensions:
            return extensions
        (reply,) = yield _send("STARTTLS", "", Stage.STARTTLS)
        if reply.code != 220:
            return extensions
        yield StartTLS()
        self.tls_active = True
        return (yield from self._greet())

    def _vrfy_first(self, extensions: tuple[str, ...]) -> bool:
        settings = self.settings
        return settings.force_vrfy or (settings.try_vrfy and "VRFY" in extensions)

    def _vrfy_decided(self, address: Address, reply: Reply) -> bool:
        """Whether the VRFY reply decides `address` (and, if so, decide it)."""
        decisive = vrfy_is_decisive(reply)
        self.vrfy_decisive = bool(self.vrfy_decisive) or decisive
        if not decisive:
            return False
        judgement = judge_rcpt(reply, self.settings.mx_host)
        if reply.is_positive:
            judgement = Judgement(Reason.VRFY_ACCEPTED, judgement.rule)
        self._decide(address, _judged(judgement, Stage.VRFY, reply, self.catch_all))
        return True

    def _transaction(
        self, address: Address, pipelining: bool, last: bool
    ) -> Generator[Action, list[Reply], bool]:
        """The catch-all probe and RCPT for one address, in as many transactions as the
        server needs; False ends the session.

        Every transaction is sent from this frame (no generator of its own), so a callout
        waiting for its RCPT replies keeps one frame here, not two.

        With PIPELINING, the session's `last` address goes with QUIT: a round trip less
        for nearly every callout. Should the server then want another transaction (our
        sender refused, one recipient per transaction), the session is over: it is left
        `unfinished`, and the runner's next session to the host goes on from there, with
        the next sender or the probe on its own, so a rare refusal costs a connection."""
        smtputf8 = address.needs_smtputf8
        probe = self._probe_address(address)
        alone = self.settings.one_recipient_per_transaction or self.one_recipient_per_transaction
        if probe is None:
            rcpts: tuple[str, ...] = (str(address),)
        else:
            rcpts = (probe,) if alone else (probe, str(address))
        while True:
            if self._quit_said:  # the replies call for another transaction: QUIT is gone
                self.unfinished = True
                return False
            quits = pipelining and last and (probe is None or not alone)
            send = self._transaction_send(rcpts, smtputf8, quits)
            if send is None:
                return False
            if pipelining:
                self._rcpts_sent += len(rcpts)
                self._quit_said = quits
                answers = yield send
            else:
                answers = yield from self._one_by_one(send)
            del send
            replies = self._rcpt_replies(answers)
            if replies is None:
                return False
            if not replies:
                continue  # our sender was refused at MAIL: the next one, the same recipients
            rcpt = replies[-1]
            if probe is not None:
                self._learn_catch_all(replies[0])
                probe = None
                if len(rcpts) == 1:  # the probe went alone; now the address
                    rcpts = (str(address),)
                    continue
                if is_too_many_recipients(rcpt):
                    # RFC 5321 4.5.3.1.10: the address gets a transaction of its own.
                    self.one_recipient_per_transaction = True
                    rcpts = (str(address),)
                    continue
            if refuses_sender(rcpt) and self._has_next_sender:
                # A refusal of our MAIL FROM reported at RCPT: the next sender, as at MAIL.
                self.sender_index += 1
                rcpts = (str(address),)
                continue
            judgement = judge_rcpt(rcpt, self.settings.mx_host)
            self._decide(address, _judged(judgement, Stage.RCPT, rcpt, self.catch_all,
                                          self.sender))
            return True

    @property
    def _has_next_sender(self) -> bool:
        return self.sender_index + 1 < len(self.settings.senders)

    def _learn_catch_all(self, reply: Reply) -> None:
        self._probed = True
        self.catch_all = classify_catch_all_probe(reply, self.settings.mx_host)

    def _transaction_send(self, rcpts: tuple[str, ...], smtputf8: bool, quits: bool
                          ) -> Send | None:
        """RSET (after a transaction), MAIL FROM and RCPT TO for each of `rcpts`, and QUIT
        if it `quits`; None when they would go past the session's recipient limit."""
        if self._rcpts_sent and self._rcpts_sent + len(rcpts) > self.settings.max_rcpts:
            return None
        extension = " SMTPUTF8" if smtputf8 else ""
        rset = (encode_command("RSET"),) if self._transaction_open else ()
        return Send(
            b"".join((*rset, encode_command("MAIL", f"FROM:<{self.sender}>{extension}"),
                      *(encode_command("RCPT", f"TO:<{rcpt}>") for rcpt in rcpts),
                      *((QUIT,) if quits else ()))),
            (*(Stage.MAIL for _ in rset), Stage.MAIL, *(Stage.RCPT for _ in rcpts)),
            quits,
        )

    def _rcpt_replies(self, replies: list[Reply]) -> list[Reply] | None:
        """The RCPT replies of a transaction whose MAIL was accepted; empty when our sender
        was refused and the next one is to be tried; None when the session must end."""
        if self._transaction_open:
            rset = replies.pop(0)
            self._transaction_open = False
            if not rset.is_positive:
                self.host_failure = _judged(judge_transient(rset), Stage.MAIL, rset)
                return None
        mail = replies.pop(0)
        if mail.is_positive:
            self._transaction_open = True
            return replies
        if mail.is_transient:
            self.host_failure = _judged(judge_transient(mail), Stage.MAIL, mail)
            return None
        if not self._has_next_sender:
            self._decide_all(_judged(judge_sender_refusal(mail), Stage.MAIL, mail))
            return None
        self.sender_index += 1
        return []

    def _probe_address(self, address: Address) -> str | None:
        local = self.settings.probe_local_part
        if local is None or self._probed:
            return None
        return f"{local}@{address.domain}"

    def _one_by_one(self, batch: Send) -> Generator[Action, list[Reply], list[Reply]]:
        """A server without PIPELINING: one command at a time, none after a failed MAIL."""
        replies: list[Reply] = []
        for line, stage in zip(batch.lines(), batch.stages, strict=True):
            self._rcpts_sent += stage is Stage.RCPT
            (reply,) = yield Send(line, (stage,))
            replies.append(reply)
            if line.startswith(b"MAIL") and not reply.is_positive:
                break
        return replies


def _keywords_read(ehlo: Reply) -> tuple[str, ...]:
    advertised = parse_ehlo_extensions(ehlo)
    return tuple(keyword for keyword in _KEYWORDS_READ if keyword in advertised)


def _send(verb: str, argument: str, stage: Stage) -> Send:
    return Send(encode_command(verb, argument), (stage,))
