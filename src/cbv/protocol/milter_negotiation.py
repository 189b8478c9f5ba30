"""Option negotiation: from the MTA's offer and what the filter needs, the reply.

Everything the filter does not need is switched off: a step it never looks at is not
sent (SMFIP_NO*), or, where the MTA cannot leave it out, sent without waiting for an
answer (SMFIP_NR_*). Steps the filter only watches go unanswered too. Only flags the MTA
offered are asked for: Sendmail drops a filter that asks for more.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from cbv.protocol.milter_commands import OptionNegotiation
from cbv.protocol.milter_responses import NegotiationReply
from cbv.protocol.milter_wire import (
    SMFI_PROT_VERSION,
    SMFI_PROT_VERSION_MIN,
    SMFI_V1_ACTS,
    SMFI_V1_PROT,
    SMFIF,
    SMFIM,
    SMFIP,
    MilterProtocolError,
)

NO_ACTIONS = SMFIF(0)
NO_FLAGS = SMFIP(0)


class Step(Enum):
    """A protocol step the MTA can leave out, and the step's no-reply flag."""

    CONNECT = (SMFIP.NOCONNECT, SMFIP.NR_CONN)
    HELO = (SMFIP.NOHELO, SMFIP.NR_HELO)
    MAIL = (SMFIP.NOMAIL, SMFIP.NR_MAIL)
    RCPT = (SMFIP.NORCPT, SMFIP.NR_RCPT)
    DATA = (SMFIP.NODATA, SMFIP.NR_DATA)
    UNKNOWN = (SMFIP.NOUNKNOWN, SMFIP.NR_UNKN)
    HEADER = (SMFIP.NOHDRS, SMFIP.NR_HDR)
    EOH = (SMFIP.NOEOH, SMFIP.NR_EOH)
    BODY = (SMFIP.NOBODY, SMFIP.NR_BODY)

    @property
    def leave_out(self) -> SMFIP:
        return self.value[0]

    @property
    def no_reply(self) -> SMFIP:
        return self.value[1]


@dataclass(frozen=True, slots=True)
class FilterNeeds:
    """What the filter does with a connection. End of message is always sent and always
    answered; every other step is either decided (answered, with a verdict), observed
    (seen, never answered) or not needed at all."""

    decide: frozenset[Step] = frozenset()
    observe: frozenset[Step] = frozenset()
    actions: SMFIF = NO_ACTIONS
    rejected_recipients: bool = False
    """SMFIP_RCPT_REJ: also see recipients the MTA has already rejected."""
    macros: Mapping[SMFIM, str] = field(default_factory=dict)
    """Macro lists to ask for (`{auth_authen} i`); dropped when the MTA cannot take them."""

    def __post_init__(self) -> None:
        both = self.decide & self.observe
        if both:
            names = ", ".join(sorted(step.name for step in both))
            raise ValueError(f"steps both decided and observed: {names}")

    @classmethod
    def for_verification(
        cls,
        *,
        at_recipient: bool,
        add_headers: bool = False,
        change_headers: bool = False,
        quarantine: bool = False,
    ) -> FilterNeeds:
        """cbv's milter: the verdict at MAIL (or at each RCPT, for call-forward or a late
        sender check), the client from CONNECT for logs and exclusions, headers only
        when one may have to be changed, never the body. Header changes and quarantine
        are sent at end of message, which every MTA sends and waits on."""
        decide = {Step.RCPT} if at_recipient else {Step.MAIL}
        observe = {Step.CONNECT} | ({Step.MAIL} if at_recipient else set())
        if change_headers:
            observe.add(Step.HEADER)
        actions = NO_ACTIONS
        if add_headers:
            actions |= SMFIF.ADDHDRS
        if change_headers:
            actions |= SMFIF.CHGHDRS
        if quarantine:
            actions |= SMFIF.QUARANTINE
        return cls(frozenset(decide), frozenset(observe), actions)


class NegotiationError(MilterProtocolError):
    """The MTA cannot give the filter what it needs; the connection should be closed."""

    def __init__(
        self, message: str, missing_actions: SMFIF = NO_ACTIONS, missing_protocol: SMFIP = NO_FLAGS
    ) -> None:
        super().__init__(message)
        self.missing_actions = missing_actions
        self.missing_protocol = missing_protocol


@dataclass(frozen=True, slots=True)
class Negotiated:
    """The agreement for one milter connection."""

    offer: OptionNegotiation
    reply: NegotiationReply

    def expects_reply(self, step: Step) -> bool:
        """Whether the MTA waits for an answer to this step."""
        return not self.reply.protocol & step.no_reply

    def allows(self, action: SMFIF) -> bool:
        return action in self.reply.actions


def negotiate(needs: FilterNeeds, offer: OptionNegotiation) -> Negotiated:
    """Raises NegotiationError when the MTA is too old or lacks a needed action."""
    if offer.version < SMFI_PROT_VERSION_MIN:
        raise NegotiationError(
            f"MTA speaks milter protocol version {offer.version}; "
            f"{SMFI_PROT_VERSION_MIN} or later is needed"
        )
    # libmilter reads an offer of nothing as the version 1 set.
    offered_actions = offer.actions or SMFI_V1_ACTS
    offered_protocol = offer.protocol or SMFI_V1_PROT

    missing = SMFIF(int(needs.actions) & ~int(offered_actions))
    if missing:
        raise NegotiationError(
            f"MTA does not offer milter actions {_names(missing)} "
            f"(offered 0x{int(offered_actions):x})",
            missing_actions=missing,
        )
    if needs.rejected_recipients and SMFIP.RCPT_REJ not in offered_protocol:
        raise NegotiationError(
            "MTA cannot send rejected recipients (SMFIP_RCPT_REJ not offered)",
            missing_protocol=SMFIP.RCPT_REJ,
        )

    protocol = SMFIP.RCPT_REJ if needs.rejected_recipients else NO_FLAGS
    for step in Step:
        if step in needs.decide:
            continue
        if step not in needs.observe and step.leave_out in offered_protocol:
            protocol |= step.leave_out
        elif step.no_reply in offered_protocol:
            protocol |= step.no_reply

    actions = needs.actions
    symbol_lists: tuple[tuple[int, str], ...] = ()
    if needs.macros and SMFIF.SETSYMLIST in offered_actions:
        actions |= SMFIF.SETSYMLIST
        symbol_lists = tuple(sorted(needs.macros.items()))

    version = min(offer.version, SMFI_PROT_VERSION)
    reply = NegotiationReply(version, actions, protocol, symbol_lists)
    return Negotiated(offer, reply)


def _names(flags: SMFIF) -> str:
    return ", ".join(f"SMFIF_{flag.name}" for flag in flags)
