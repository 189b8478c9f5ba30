"""What the site policy knows about a request, whichever mail server asked."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class RequestKind(StrEnum):
    MAIL = "mail"  # the sender was just given (Postfix protocol_state MAIL)
    RCPT = "rcpt"  # a recipient was given (protocol_state RCPT)
    LOOKUP = "lookup"  # a direct question about one sender (smtpcbd, HTTP)
    OTHER = "other"  # CONNECT, HELO, DATA...: nothing to verify


@dataclass(slots=True)
class RequestContext:
    kind: RequestKind
    sender: str
    recipient: str = ""
    client_address: str = ""
    sasl_username: str = ""
