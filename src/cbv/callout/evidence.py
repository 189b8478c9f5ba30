"""What the words of an SMTP reply say, family by family (docs/verdicts.md, "Evidence").

Every expression here is written in lower case and matched against lower-cased text.

Each family is one expression over the reply text. The classifier decides which family
outweighs which; this module only recognises wordings, as MTAs and providers publish them.
"""

from __future__ import annotations

import re

# The classifier hands in lower-cased text: `re` is several times faster without
# IGNORECASE on long alternations, and replies are read on every callout.
_I = re.NOFLAG

# The recipient exists but receives too much mail (Gmail's 4.2.1/5.2.1, Yahoo's 450).
RECIPIENT_BUSY = re.compile(
    r"(?:user|recipient|mailbox|account)\b.{0,60}\breceiving (?:mail|messages|email)"
    r"(?: too quickly| too fast| at a rate)|receiving mail too quickly|"
    r"recipient thread limit|mailbox (?:is )?(?:busy|locked)",
    _I,
)

# The server refuses our MAIL FROM, whatever stage it says so at.
SENDER_REFUSED = re.compile(
    r"sender address rejected|sender (?:verify|verification) failed|"
    r"(?:sender|envelope) (?:address|domain)?\s*(?:\[[^\]]*\]\s*)?"
    r"(?:has been |is )?(?:rejected|refused|denied|blocked|not allowed|blacklisted)|"
    r"domain of sender address|sender (?:domain|address) (?:.{0,60})?"
    r"(?:does not exist|not found|must resolve|unknown|invalid)|"
    r"your envelope sender|invalid sender|bad sender|unverified sender|"
    r"null (?:sender|return.?path)|bounces? (?:are |is )?not accepted|"
    r"mail from .{0,80}(?:rejected|refused|not allowed|denied)|"
    r"anti-?spoofing|\bspf\b|\bdmarc\b|sender is unauthenticated|"
    r"not authenticated to send|blocked senders|sender (?:is )?on .{0,20}(?:black|block)list|"
    r"envelope blocked|sender not (?:allowed|permitted|authorized)|"
    r"bounces? .{0,40}(?:more than one|multiple) recipients?",
    _I,
)

# The server limits how fast *we* send (per client, per hour): ask again later.
CLIENT_RATE = re.compile(
    r"sent to too many recipients|too many (?:recipients|messages|mails?|e-?mails|"
    r"connections|errors|invalid recipients|unknown recipients|bad recipients)\b"
    r".{0,40}(?:from|this|per|hour|minute|day|your|ip)|"
    r"too many (?:\w+ ){0,3}connections|rate.?limit|rate exceeded|"
    r"exceed(?:s|ed)? .{0,40}\brate\b|\brate\b.{0,30}exceed|sending rate|"
    r"connection rate|unusual rate|too (?:fast|quickly)|slow down|throttl|"
    r"(?:temporarily|permanently) (?:deferred|blocked)|deferred due to|"
    r"excessive (?:unknown recipients|volume)|unexpected volume|user complaints|"
    r"too much mail|max(?:imum)? (?:message|connection)s? (?:per|count)|"
    r"try again later, closing connection|(?:relay|sending|daily|hourly) (?:limit|quota)|"
    r"not in (?:the )?(?:white|allow)\s?list|dictionary attack|directory harvest",
    _I,
)

# The server refuses *us*: our IP, its reputation, its reverse DNS, our HELO.
CLIENT_BLOCKED = re.compile(
    r"client host|\bclient\b.{0,40}\b(?:rejected|blocked|denied|refused)|"
    r"your (?:ip|host|server|network|mail server|domain's ip)\b|"
    r"\bip(?:v[46])?(?: address)?\b.{0,60}"
    r"(?:blocked|listed|blacklisted|banned|not (?:allowed|authorized|permitted)|"
    r"rejected|refused|denied|not accepted|reputation|no ptr)|"
    r"(?:black|block|deny|ban)\s?-?list|blacklisted|blocklisted|\bdnsbl\b|\brbl\b|"
    r"\blisted (?:at|in|on|by)\b|\bis listed\b|spamhaus|spamcop|sorbs|uceprotect|"
    r"barracuda ?(?:reputation|central)|ipcheck\.proofpoint|sender ?score|"
    r"reputation|reverse (?:dns|hostname|lookup|address)|\brdns\b|\bptr\b|"
    r"helo|ehlo|hostname|dynamic(?:ally assigned)? ip|residential|dial.?up|"
    r"blocked using|connections? (?:will not be|is not|are not|not) accepted|"
    r"not accepting (?:mail|connections)|connection (?:refused|rejected|denied)|"
    r"\bbanned\b|open (?:relay|proxy)|is not allowed to (?:send|connect)|"
    r"part of their network|access denied, (?:banned|traffic not accepted)|"
    r"\[?\b\d{1,3}(?:\.\d{1,3}){3}\b\]?.{0,40}(?:blocked|listed|refused|denied|rejected|"
    r"not allowed|not permitted)",
    _I,
)

# The server says the mailbox (or its domain) does not exist or cannot receive mail.
MAILBOX_GONE = re.compile(
    r"user (?:is )?unknown|unknown (?:user|recipient|mailbox|address|local.?part|alias)|"
    r"no such (?:user|mailbox|recipient|address|account|person|local user)|"
    r"(?:does not|doesn't|do not|not) exist|invalid (?:recipient|mailbox|address|user|"
    r"account|e-?mail)|mailbox (?:unavailable|not found|disabled|inactive|is disabled|"
    r"is inactive|name not allowed)|recipient (?:unknown|not found|does not exist|invalid)|"
    r"no mailbox|unroute?able|user not found|address not found|not found by smtp|"
    r"account (?:is )?(?:disabled|closed|inactive|suspended|deleted|expired|"
    r"discontinued|has been disabled)|(?:doesn't|does not) have an? .{0,30}account|"
    r"is not a (?:known|valid) (?:user|mailbox|recipient|address)|"
    r"not (?:a )?(?:valid|known) (?:user|mailbox|recipient)|addressee unknown|"
    r"bad destination|no longer (?:active|valid|available|in use)|"
    r"(?:user|recipient|mailbox|address) (?:is )?(?:disabled|inactive|suspended|invalid)|"
    r"undeliverable address|mailbox .{0,20}(?:does not|doesn't) exist|"
    r"not listed in .{0,30}(?:directory|address list)|has been disabled|"
    r"non-?existent (?:domain|user|mailbox|address|recipient|account)",
    _I,
)

MAILBOX_FULL = re.compile(
    r"mailbox (?:is )?full|full mailbox|over ?quota|quota (?:exceeded|full)|"
    r"exceeded (?:its |the )?(?:storage|quota)|mailbox size limit|insufficient (?:mailbox )?"
    r"(?:storage|space) (?:for|in) (?:the )?(?:user|mailbox|recipient)|out of storage",
    _I,
)

# The server refuses this transaction or relationship for reasons of its own.
POLICY = re.compile(
    r"block|black.?list|deny.?list|\brbl\b|dnsbl|reputation|polic(?:y|ies)|"
    r"relay|not permitted|access denied|denied|refused|prohibited|spam|abuse|"
    r"rejected due to|too many|rate limit|banned|not authori[sz]ed|authentication required|"
    r"administrative|security|restricted|not allowed to (?:send|relay|mail|deliver)|"
    r"\bcontent\b|content filter",
    _I,
)

GREYLIST = re.compile(r"grey.?list|gray.?list|postgrey|greylisted|tarpit", _I)

# A 4xx that only asks to come back: greylisting without the word.
RETRY_LATER = re.compile(
    r"try again later|please retry|retry later|temporarily (?:deferred|rejected)|"
    r"come back later|resend (?:your message )?(?:at a )?later|"
    r"internal resource temporarily unavailable",
    _I,
)

# Limits on recipients per transaction (RFC 5321 4.5.3.1.10): a new transaction helps.
TOO_MANY_RECIPIENTS = re.compile(
    r"too many recipients|recipients? (?:limit|count) (?:exceeded|reached)|"
    r"separate transaction|size per transaction|recipients per (?:message|transaction)",
    _I,
)
PER_CLIENT_PERIOD = re.compile(r"\b(?:this|per|an?) (?:hour|minute|day)\b|\bhourly\b|\bdaily\b",
                               _I)

# Every wording of RECIPIENT_BUSY, SENDER_REFUSED, CLIENT_RATE and CLIENT_BLOCKED holds one
# of these words or matches OUTWEIGHING_HINT (each alternative needs one; tests check it on
# generated wordings). A text with none of them, as nearly every reply about a mailbox,
# is spared those four expressions and their ~30 µs.
OUTWEIGHING_WORDS = (
    "receiving", "busy", "locked", "limit",
    "sender", "envelope", "null ", "bounce", "mail from", "spoofing", "spf", "dmarc",
    "authenticated to send",
    "too many", "rate", "too fast", "too quickly", "slow down", "throttl", "temporarily",
    "permanently", "deferred", "excessive", "unexpected volume", "complaints",
    "too much mail", "max", "try again later", "quota", "list", "dictionary", "harvest",
    "client", "your ", "dnsbl", "rbl", "spam", "sorbs", "uceprotect", "barracuda",
    "proofpoint", "score", "reputation", "reverse", "rdns", "ptr", "helo", "ehlo",
    "hostname", "dynamic", "residential", "dial", "blocked", "accept", "connection",
    "banned", "open ", "allowed", "their network", "access denied",
)
OUTWEIGHING_HINT = re.compile(r"\bip|\d\.\d")  # "IP ... blocked", "192.0.2.1 ... listed"


def may_outweigh(text: str) -> bool:
    """False when none of the four expressions above can match `text`. The words are
    looked for by `map` in C, not by a loop of bytecodes: 10 µs against 13 for a Postfix
    "User unknown" reply, which holds none of them."""
    return any(map(text.__contains__, OUTWEIGHING_WORDS)) or (
        OUTWEIGHING_HINT.search(text) is not None)


# qmail and others write the enhanced code after the text: "... (#5.1.1)".
TRAILING_ENHANCED = re.compile(r"#([245])\.(\d{1,3})\.(\d{1,3})\b")
