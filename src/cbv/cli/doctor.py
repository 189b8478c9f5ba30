"""`cbv doctor`: a table of checks (or JSON lines); exit status 0 only when all pass."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from cbv.config import ConfigError, load_config
from cbv.dns.resolver import DnspythonResolver
from cbv.doctor.checks import Finding
from cbv.doctor.lookups import DnspythonDoctorDns
from cbv.doctor.run import examine


def _table(findings: list[Finding]) -> Table:
    table = Table(show_lines=False)
    for column in ("egress", "check", "", "found", "fix"):
        table.add_column(column, overflow="fold")
    for finding in findings:
        mark = "[green]ok[/]" if finding.ok else "[red]FAIL[/]"
        table.add_row(finding.subject, finding.check, mark, finding.detail, finding.fix)
    return table


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per check.")
def doctor(config_path: Path | None, as_json: bool) -> None:
    """Check each egress (HELO, PTR, blocklists, port 25), the fallback sender and the cache.

    Exit status 0 when nothing is wrong, 1 when a check failed, 2 for a bad config.
    """
    try:
        config = load_config(config_path)
        findings = asyncio.run(examine(config, DnspythonDoctorDns(config.dns),
                                       DnspythonResolver(config.dns)))
    except ConfigError as exc:
        click.echo(f"cbv: error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        for finding in findings:
            click.echo(json.dumps(finding.as_dict()))
    else:
        Console(highlight=False).print(_table(findings))
        failed = sum(not finding.ok for finding in findings)
        click.echo(f"{failed} of {len(findings)} checks failed" if failed
                   else f"all {len(findings)} checks passed")
    sys.exit(0 if all(finding.ok for finding in findings) else 1)
