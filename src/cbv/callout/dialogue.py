"""One SMTP verification session as a sans-I/O state machine.

`Dialogue.steps()` is a generator: it yields actions (send these commands and
hand back their replies, upgrade to TLS, quit) and receives the replies. The
asyncio driver in `session.py` only moves bytes, so every decision made in a
session can be tested, fuzzed and read here without a socket.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

from cbv.address import Address
from cbv.callout.classify import (
    classify_catch_all_probe,
    classify_pre_rcpt_transient,
    classify_rcpt,
    vrfy_is_decisive,
)
from cbv.model import Reason, Stage
from cbv.protocol.smtp import Reply, encode_command, parse_ehlo_extensions


@dataclass(frozen=True, slots=True)
class Command:
    line: bytes
    stage: Stage


@dataclass(frozen=True, slots=True)
class Send:
    """Write these commands (pipelined when more than one), then return one reply each.

    An empty tuple means: only read one reply (the banner).
    """

    commands: tuple[Command, ...]
    stage: Stage


@dataclass(frozen=True, slots=True)
class StartTLS:
    """Upgrade the connection; the driver raises into the session if the handshake fails."""


@dataclass(frozen=True, slots=True)
class Quit:
    """Say QUIT and close; the verdicts are already decided."""


Action = Send | StartTLS | Quit
Steps = Generator[Action, list[Reply], None]


@dataclass(frozen=True, slots=True)
class Outcome:
    reason: Reason
    stage: Stage
    reply: Reply | None = None
    catch_all: bool | None = None
    sender: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class SessionSettings:
    helo_name: str
    senders: tuple[str, ...]  # "" is the null sender; tried in order when refused
    try_vrfy: bool = False
    starttls: bool = True
    probe_local_part: str | None = None  # catch-all probe, once per session
    max_rcpts: int = 10


@dataclass
class Dialogue:
    settings: SessionSettings
    addresses: Sequence[Address]
    sender_index: int = 0
    outcomes: dict[Address, Outcome] = field(default_factory=dict)
    host_failure: Outcome | None = None  # set when the next host should be tried
    catch_all: bool | None = None  # may start from what is already known of the domain
    vrfy_decisive: bool | None = None  # whether any VRFY got an answer that decides
    tls_active: bool = False
    current: Address | None = None
    _rcpts_sent: int = 0
    _probed: bool = False
    _transaction_open: bool = False

    @property
    def undecided(self) -> list[Address]:
        return [a for a in self.addresses if a not in self.outcomes]

    @property
    def sender(self) -> str:
        return self.settings.senders[self.sender_index]

    def steps(self) -> Steps:
        (banner,) = yield Send((), Stage.BANNER)
        if not banner.is_positive:
            self._host_refused(Stage.BANNER, banner)
        else:
            extensions = yield from self._greet()
            if extensions is not None:
                yield from self._verify_addresses(extensions)
        yield Quit()

    def connection_lost(self, stage: Stage, reason: Reason, detail: str) -> None:
        """The driver reports a timeout, a drop or a garbled reply at `stage`."""
        if stage in (Stage.RCPT, Stage.VRFY) and self.current in self.undecided:
            assert self.current is not None
            # Decided as if it had had a session of its own; the rest get a fresh session.
            self._decide(self.current, Outcome(reason, Stage.RCPT, detail=detail))
        elif self.host_failure is None and self.undecided:
            self.host_failure = Outcome(reason, stage, detail=detail)

    def _decide(self, address: Address, outcome: Outcome) -> None:
        self.outcomes[address] = outcome

    def _decide_all(self, outcome: Outcome) -> None:
        for address in self.undecided:
            self._decide(address, outcome)

    def _host_refused(self, stage: Stage, reply: Reply) -> None:
        """A refusal of the verifier itself: 4xx tries the next host, 5xx is final."""
        if reply.is_permanent:
            self._decide_all(Outcome(Reason.VERIFIER_REJECTED, stage, reply))
        else:
            self.host_failure = Outcome(classify_pre_rcpt_transient(reply), stage, reply)

    def _greet(self) -> Generator[Action, list[Reply], dict[str, str] | None]:
        helo = self.settings.helo_name
        (reply,) = yield _send("EHLO", helo, Stage.EHLO)
        if reply.is_permanent:
            (reply,) = yield _send("HELO", helo, Stage.EHLO)
            if not reply.is_positive:
                self._host_refused(Stage.EHLO, reply)
                return None
            return {}
        if not reply.is_positive:
            self._host_refused(Stage.EHLO, reply)
            return None
        extensions = parse_ehlo_extensions(reply)
        if self.tls_active or not self.settings.starttls or "STARTTLS" not in extensions:
            return extensions
        (reply,) = yield _send("STARTTLS", "", Stage.STARTTLS)
        if reply.code != 220:
            return extensions
        yield StartTLS()
        self.tls_active = True
        return (yield from self._greet())

    def _verify_addresses(self, extensions: dict[str, str]) -> Steps:
        pipelining = "PIPELINING" in extensions
        for address in list(self.addresses):
            if address in self.outcomes:
                continue
            if address.needs_smtputf8 and "SMTPUTF8" not in extensions:
                self._decide(address, Outcome(Reason.SMTPUTF8_UNSUPPORTED, Stage.EHLO))
                continue
            self.current = address
            if self.settings.try_vrfy:
                (reply,) = yield _send("VRFY", str(address), Stage.VRFY)
                decisive = vrfy_is_decisive(reply)
                self.vrfy_decisive = bool(self.vrfy_decisive) or decisive
                if decisive:
                    reason = Reason.VRFY_ACCEPTED if reply.is_positive else classify_rcpt(reply)
                    self._decide(address, Outcome(reason, Stage.VRFY, reply, self.catch_all))
                    continue
            if not (yield from self._transaction(address, pipelining)):
                return

    def _transaction(
        self, address: Address, pipelining: bool
    ) -> Generator[Action, list[Reply], bool]:
        """MAIL, catch-all probe and RCPT for one address; False ends the session."""
        smtputf8 = " SMTPUTF8" if address.needs_smtputf8 else ""
        needed = 1 if self._probed or self.settings.probe_local_part is None else 2
        while True:
            if self._rcpts_sent and self._rcpts_sent + needed > self.settings.max_rcpts:
                return False
            commands: list[Command] = []
            if self._transaction_open:
                commands.append(_command("RSET", "", Stage.MAIL))
            commands.append(_command("MAIL", f"FROM:<{self.sender}>{smtputf8}", Stage.MAIL))
            probe = self._probe_address(address)
            if probe is not None:
                commands.append(_command("RCPT", f"TO:<{probe}>", Stage.RCPT))
            commands.append(_command("RCPT", f"TO:<{address}>", Stage.RCPT))
            replies = yield from self._exchange(commands, pipelining)
            if self._transaction_open:
                rset = replies.pop(0)
                self._transaction_open = False
                if not rset.is_positive:
                    self.host_failure = Outcome(Reason.TEMPFAIL, Stage.MAIL, rset)
                    return False
            mail = replies.pop(0)
            if mail.is_positive:
                self._transaction_open = True
                break
            if mail.is_transient:
                self.host_failure = Outcome(classify_pre_rcpt_transient(mail), Stage.MAIL, mail)
                return False
            if self.sender_index + 1 >= len(self.settings.senders):
                self._decide_all(Outcome(Reason.SENDER_REJECTED, Stage.MAIL, mail))
                return False
            self.sender_index += 1
        if probe is not None:
            self._probed = True
            self.catch_all = classify_catch_all_probe(replies.pop(0))
        rcpt = replies.pop(0)
        self._decide(
            address,
            Outcome(classify_rcpt(rcpt), Stage.RCPT, rcpt, self.catch_all, self.sender),
        )
        return True

    def _probe_address(self, address: Address) -> str | None:
        local = self.settings.probe_local_part
        if local is None or self._probed:
            return None
        return f"{local}@{address.domain}"

    def _exchange(
        self, commands: list[Command], pipelining: bool
    ) -> Generator[Action, list[Reply], list[Reply]]:
        """Pipeline the group when the server allows it; otherwise stop after a failed MAIL."""
        if pipelining:
            self._rcpts_sent += sum(1 for c in commands if c.stage is Stage.RCPT)
            return (yield Send(tuple(commands), commands[-1].stage))
        replies: list[Reply] = []
        for command in commands:
            self._rcpts_sent += command.stage is Stage.RCPT
            (reply,) = yield Send((command,), command.stage)
            replies.append(reply)
            if command.line.startswith(b"MAIL") and not reply.is_positive:
                break
        return replies


def _command(verb: str, argument: str, stage: Stage) -> Command:
    return Command(encode_command(verb, argument), stage)


def _send(verb: str, argument: str, stage: Stage) -> Send:
    return Send((_command(verb, argument, stage),), stage)
