"""`python -m bench compare`: cbv, Exim's own callout (`verify = sender/callout`) and
Postfix's own `reject_unverified_sender` against the same zoo of fake MX hosts, side by
side in docs/comparison.md.

The three see one world: the zoo's hosts (cbv.testing.zoo) on 127.0.N.x and one FakeDNS.
cbv is configured to ask the FakeDNS; Exim and Postfix use their libc resolver, so they
run in mount namespaces of their own whose /etc/resolv.conf names the FakeDNS on port 53
(bench.mail_servers). Nothing leaves loopback, and only `.test` names are asked about.

Each MTA is asked as a sending server would ask it: EHLO, MAIL FROM the sender, RCPT TO a
local recipient; its reply is its verdict. cbv's verdict goes through its default site
policy to the same accept / reject / defer. The peer tests run this script and compare
its table, latencies aside, with the committed docs/comparison.md.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import cbv
from bench.mail_servers import (
    EXIM_BINARY,
    Exim,
    Postfix,
    PrivateResolver,
    free_port,
    private_directory,
    unavailable,
)
from cbv.config import PolicyConfig, config_from_dict
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.model import Verdict
from cbv.policy.decision import decide
from cbv.policy.rules import merge_rules
from cbv.testing.zoo import SCENARIOS, Scenario, Zoo, start_zoo

DOCS = Path(__file__).resolve().parents[1] / "docs" / "comparison.md"
ZOO_SUBNET = 88
REPLY_TIMEOUT = 5  # seconds each verifier waits for a connection or a reply, alike for all
SETTLE_WITHIN = 60.0  # Postfix answers "in progress" until its probe is done
RECIPIENT = "postmaster@example.test"

# The scenarios, and the zoo's other verdicts an MTA's callout gets wrong.
COMPARED = (
    "accepted", "unknown", "unknown-plain", "policy-block", "greeting-5xx",
    "null-sender-refused", "all-senders-refused", "mailbox-full", "catch-all", "greylisting",
    "busy-421", "first-mx-dead", "null-mx", "nxdomain", "servfail", "tarpit",
)

# Why cbv's answer differs from an MTA's, where it does; a difference with no entry here
# stops the script, so the document never shows one unexplained.
WHY_CBV_DIFFERS = {
    "policy-block": "a 5.7.1 at RCPT refuses the verifier (a blocklist), not the address: "
                    "cbv says `unknown` and lets the mail through",
    "greeting-5xx": "a 5xx greeting refuses every client, so it says nothing about the "
                    "address: `unknown` for cbv, a hard failure for Exim, a deferral for Postfix",
    "null-sender-refused": "cbv tries its fallback sender (`postmaster@` its HELO name) and "
                           "gets its answer; Exim gives up on the refused `MAIL FROM:<>` "
                           "and fails the address (Postfix never sends `<>`)",
    "all-senders-refused": "every MAIL FROM refused is a policy against the verifier: "
                           "cbv says `unknown` (`sender_rejected`); both MTAs fail the address",
    "mailbox-full": "552 5.2.2 says the mailbox exists but is full: cbv says `unknown`, both "
                    "MTAs fail the address",
}

ACTIONS = {2: "accept", 4: "defer", 5: "reject"}


@dataclass(frozen=True)
class Outcome:
    """What a mail server using this verifier would answer the sending server."""

    action: str  # accept, reject or defer
    code: int
    latency_ms: float
    verdict: str = ""  # cbv's result / reason

    @property
    def cell(self) -> str:
        return f"{self.action} {self.code}"


def cbv_config(dns_host: str, zoo: Zoo) -> dict[str, dict[str, object]]:
    return {
        "dns": {"nameservers": [f"{dns_host}:53"], "timeout": REPLY_TIMEOUT},
        "callout": {"port": zoo.port, "helo_name": "verifier.cbv.test",
                    "connect_timeout": REPLY_TIMEOUT, "command_timeout": REPLY_TIMEOUT,
                    "total_timeout": 3 * REPLY_TIMEOUT},
        "security": {"allowed_target_networks": ["127.0.0.0/8"]},
        "cache": {"url": "memory://"},
        "limits": {"domain_burst": 1000, "mx_concurrency": 100, "ip_burst": 1000,
                   "network_burst": 1000, "provider_burst": 1000},
    }


async def ask_cbv(dns_host: str, zoo: Zoo, scenarios: Sequence[Scenario]) -> dict[str, Outcome]:
    rules = merge_rules(PolicyConfig())  # cbv's default site policy
    outcomes = {}
    async with Verifier(assemble(config_from_dict(cbv_config(dns_host, zoo)))) as verifier:
        for scenario in scenarios:
            started = time.perf_counter()
            verdict: Verdict = await verifier.verify(scenario.address())
            latency = (time.perf_counter() - started) * 1000
            decision = decide(verdict, rules)
            outcomes[scenario.name] = Outcome(
                decision.action.value, decision.code or 250, latency,
                f"{verdict.result.value} / {verdict.reason.value}")
    return outcomes


def ask_mta(port: int, sender: str) -> Outcome:
    """The reply to RCPT after MAIL FROM `sender`, asked again while Postfix says its
    probe is in progress; the latency runs from the first RCPT to the final reply."""
    with smtplib.SMTP("127.0.0.1", port, local_hostname="client.cbv.test",
                      timeout=SETTLE_WITHIN) as smtp:
        smtp.ehlo()
        started = time.perf_counter()
        while True:
            smtp.mail(sender)
            code, text = smtp.rcpt(RECIPIENT)
            smtp.rset()
            settling = b"Address verification in progress" in text
            if not settling or time.perf_counter() - started > SETTLE_WITHIN:
                break
            time.sleep(0.1)
        latency = (time.perf_counter() - started) * 1000
    return Outcome(ACTIONS[code // 100], code, latency)


async def ask_one_by_one(port: int, scenarios: Sequence[Scenario]) -> dict[str, Outcome]:
    return {s.name: await asyncio.to_thread(ask_mta, port, s.address()) for s in scenarios}


async def ask_all_at_once(port: int, scenarios: Sequence[Scenario]) -> dict[str, Outcome]:
    """Postfix's fresh probes each wait out its poll delay: they wait together."""
    outcomes = await asyncio.gather(
        *(asyncio.to_thread(ask_mta, port, s.address()) for s in scenarios))
    return {s.name: outcome for s, outcome in zip(scenarios, outcomes, strict=True)}


def exim_verifier(resolver: PrivateResolver, zoo: Zoo) -> Exim:
    return Exim(
        "verifier", resolver, free_port(),
        acl_rcpt=f"  require verify = sender/callout={REPLY_TIMEOUT}s\n",
        routers="dnslookup:\n  driver = dnslookup\n  transport = remote_smtp\n  no_more\n",
        transports=f"remote_smtp:\n  driver = smtp\n  port = {zoo.port}\n",
    )


def postfix_verifier(resolver: PrivateResolver, zoo: Zoo) -> Postfix:
    timeouts = "".join(f"smtp_{stage}_timeout = {REPLY_TIMEOUT}s\n"
                       for stage in ("connect", "helo", "mail", "rcpt"))
    return Postfix("verifier", resolver, f"""\
relay_domains = example.test
smtp_tcp_port = {zoo.port}
{timeouts}address_verify_poll_delay = 1s
unverified_sender_reject_code = 550
smtpd_recipient_restrictions = reject_unauth_destination, reject_unverified_sender
""", {free_port(): {}})


def versions() -> dict[str, str]:
    def first_line(command: list[str]) -> str:
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        return output.splitlines()[0]

    exim = first_line([str(EXIM_BINARY), "-C", "/dev/null", "-bV"]).split()[2]
    postfix = first_line(["postconf", "-dh", "mail_version"])
    return {"cbv": cbv.__version__, "Exim": exim, "Postfix": postfix}


@dataclass(frozen=True)
class Row:
    scenario: Scenario
    cbv: Outcome
    exim: Outcome
    postfix: Outcome

    @property
    def why_cbv_differs(self) -> str:
        if self.cbv.action == self.exim.action == self.postfix.action:
            return "—"
        if self.scenario.name not in WHY_CBV_DIFFERS:
            raise SystemExit(f"compare: cbv differs on {self.scenario.name!r} and "
                             "WHY_CBV_DIFFERS does not say why")
        return WHY_CBV_DIFFERS[self.scenario.name]


async def compare(log: Callable[[str], None]) -> list[Row]:
    scenarios = tuple(s for s in SCENARIOS if s.name in COMPARED)
    directory = private_directory("cbv-compare-")
    resolver = PrivateResolver(directory)
    zoo = await start_zoo(resolver.dns, scenarios, subnet=ZOO_SUBNET)
    exim, postfix = exim_verifier(resolver, zoo), postfix_verifier(resolver, zoo)
    try:
        exim.start()
        postfix.start()
        log("compare: cbv")
        by_cbv = await ask_cbv(resolver.dns.host, zoo, scenarios)
        log("compare: Exim")
        by_exim = await ask_one_by_one(exim.port, scenarios)
        log("compare: Postfix")
        by_postfix = await ask_all_at_once(next(iter(postfix.listeners)), scenarios)
    finally:
        exim.stop()
        postfix.stop()
        await zoo.stop()
        resolver.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return [Row(s, by_cbv[s.name], by_exim[s.name], by_postfix[s.name]) for s in scenarios]


HEADER = ("| scenario | what the sender's MX does | cbv's verdict | cbv | Exim | Postfix "
          "| cbv ms | Exim ms | Postfix ms | where cbv differs, and why |")
LATENCY_COLUMNS = (6, 7, 8)  # what varies from run to run; the rest is compared in CI


def render(rows: Sequence[Row], seconds: float) -> str:
    names = versions()
    lines = [
        "# Verdicts side by side: cbv, Exim and Postfix",
        "",
        f"`python -m bench compare`, run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC in "
        f"{seconds:.0f} s on Linux {platform.release()}: cbv {names['cbv']}, "
        f"Exim {names['Exim']}, Postfix {names['Postfix']} (Debian packages). The peer tests "
        "run it again and fail when this table, latencies aside, is no longer what they get.",
        "",
        "- The sender's MX hosts are the zoo of `cbv.testing.zoo` (what `cbv demo` shows) on "
        "127.0.N.x. The three verifiers see one fake DNS zone: cbv asks it directly, Exim and "
        "Postfix through their libc resolver.",
        f"- Exim: `require verify = sender/callout={REPLY_TIMEOUT}s` in its RCPT ACL. Postfix: "
        "`reject_unverified_sender` with `unverified_sender_reject_code = 550` (its default, "
        "450, only ever defers) and `address_verify_poll_delay = 1s` (3 s by default). "
        "cbv: the library under its default site policy (`on_fail = \"reject\"`, "
        "`on_transient = \"defer\"`, `unknown` accepted).",
        f"- Every connection and reply timeout is {REPLY_TIMEOUT} s for all three (by default "
        "cbv waits 10 s, Exim 30 s, Postfix 300 s for a greeting).",
        "- A cell is what the mail server using that verifier answers the sending server's "
        "RCPT: accept, reject (5xx) or defer (4xx), with the code. The latency runs from that "
        "RCPT to the answer; for cbv it is `Verifier.verify` alone (a listener adds well under "
        "a millisecond). Postfix answers \"in progress\" until its probe is done and is asked "
        "again every 100 ms: its latency is that of its final answer.",
        "",
        HEADER,
        "|---|---|---|---|---|---|--:|--:|--:|---|",
    ]
    for row in rows:
        cells = [f"`{row.scenario.name}`", row.scenario.description, row.cbv.verdict,
                 row.cbv.cell, row.exim.cell, row.postfix.cell,
                 f"{row.cbv.latency_ms:.1f}", f"{row.exim.latency_ms:.1f}",
                 f"{row.postfix.latency_ms:.0f}", row.why_cbv_differs]
        lines.append("| " + " | ".join(cells) + " |")
    differs = sum(1 for row in rows if row.why_cbv_differs != "—")
    lines += [
        "",
        f"cbv differs from at least one of them in {differs} of {len(rows)} scenarios, each "
        "time because the MX refused the verifier, or said something other than \"no such "
        "mailbox\": cbv fails an address only when the address itself is refused "
        "([verdicts.md](verdicts.md)). Where the MX says the mailbox does not exist, cannot "
        "answer yet, or the domain takes no mail, the three agree.",
        "",
    ]
    return "\n".join(lines)


def stable_rows(markdown: str) -> list[list[str]]:
    """The table's rows without the latency columns: what must not change between runs."""
    table = markdown[markdown.index(HEADER):].split("\n\n")[0].splitlines()[2:]
    return [[cell.strip() for n, cell in enumerate(line.strip("|").split(" | "))
             if n not in LATENCY_COLUMNS] for line in table]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench compare", description=__doc__)
    parser.add_argument("--output", type=Path, default=DOCS, help=f"default: {DOCS}")
    args = parser.parse_args(argv)
    reason = unavailable("postfix", "exim")
    if reason is not None:
        print(f"compare: cannot run Exim and Postfix here: {reason}", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows = asyncio.run(compare(lambda line: print(line, file=sys.stderr)))
    args.output.write_text(render(rows, time.monotonic() - started))
    print(f"compare: wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
