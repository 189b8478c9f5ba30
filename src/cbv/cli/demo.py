"""`cbv demo`: every kind of verdict, from a zoo of fake MX hosts on loopback."""

from __future__ import annotations

import asyncio
import sys
from typing import TYPE_CHECKING

import click
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from cbv.cli.render import RESULT_STYLES
from cbv.config import Config, config_from_dict
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.model import Verdict

if TYPE_CHECKING:
    from cbv.testing.zoo import Scenario

TEST_KIT_MISSING = "cbv demo runs the test kit, which needs {name}: pip install 'cbv[testing]'"


def demo_config(nameserver: str, port: int) -> Config:
    """Only loopback is dialled; timeouts short so the tarpit ends the demo quickly."""
    from cbv.testing.zoo import ZOO_LIMITS

    return config_from_dict({
        "dns": {"nameservers": [nameserver], "timeout": 2.0},
        "callout": {"port": port, "helo_name": "verifier.demo.test", "command_timeout": 1.5,
                    "connect_timeout": 1.5, "total_timeout": 5.0},
        "security": {"allowed_target_networks": ["127.0.0.0/8"]},
        "cache": {"url": "memory://"},
        "limits": ZOO_LIMITS,
    }, "demo")


async def run_demo() -> list[tuple[Scenario, Verdict]]:
    from cbv.testing.fake_dns import FakeDNS  # the test kit, an extra: imported when used
    from cbv.testing.zoo import SCENARIOS, start_zoo

    with FakeDNS() as dns:
        async with await start_zoo(dns) as zoo, Verifier(
            assemble(demo_config(dns.nameserver, zoo.port))
        ) as verifier:
            verdicts = await asyncio.gather(*(verifier.verify(s.address()) for s in SCENARIOS))
    return list(zip(SCENARIOS, verdicts, strict=True))


def render_table(rows: list[tuple[Scenario, Verdict]]) -> Table:
    """Two lines a row, wrapped rather than cut, so it reads in an 80-column terminal."""
    table = Table(title="cbv demo: one fake mail exchanger per behaviour, all on loopback",
                  caption="addresses are alice@<scenario>.zoo.test", box=box.SIMPLE_HEAD,
                  show_lines=True)
    table.add_column("scenario\n[dim]what the MX does[/dim]", width=21)
    table.add_column("verdict\n[dim]reason at stage[/dim]", width=19)
    table.add_column("deciding reply or detail", min_width=20, overflow="fold")
    table.add_column("ms", justify="right", no_wrap=True, min_width=4)
    for scenario, verdict in rows:
        reply = verdict.reply
        shown = " ".join(
            part for part in (str(reply.code), reply.enhanced or "", reply.text) if part
        ) if reply else (verdict.detail or "")
        style = RESULT_STYLES[verdict.result]
        result = f"[{style}]{verdict.result.value}[/{style}]"
        if verdict.catch_all:
            result += " [magenta]catch-all[/magenta]"
        reason = verdict.reason.value
        if verdict.stage:
            reason += f" at {verdict.stage.value}"
        if verdict.reason is not scenario.expected:
            reason += " [red](unexpected)[/red]"
        table.add_row(
            f"{scenario.name}\n[dim]{escape(scenario.description)}[/dim]",
            f"{result}\n[dim]{reason}[/dim]", escape(shown.replace("\n", " / ")),
            f"{verdict.duration_ms:.0f}",
        )
    return table


@click.command()
def demo() -> None:
    """Verify one address per MX behaviour against fakes on loopback; no network needed."""
    try:
        import cbv.testing  # noqa: F401 - only to learn whether its packages are installed
    except ImportError as exc:
        click.echo(f"cbv: error: {TEST_KIT_MISSING.format(name=exc.name)}", err=True)
        sys.exit(2)
    rows = asyncio.run(run_demo())
    console = Console(highlight=False)
    console.print(render_table(rows))
    unexpected = [s.name for s, v in rows if v.reason is not s.expected]
    if unexpected:
        console.print(f"[red]unexpected verdicts: {', '.join(unexpected)}[/red]")
