"""The `cbv` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from cbv.cli import render
from cbv.cli.cache_cmd import cache
from cbv.cli.demo import demo
from cbv.cli.inputs import InputError, read_addresses
from cbv.cli.job_cmd import job
from cbv.cli.serve import serve
from cbv.config import Config, ConfigError, load_config
from cbv.engine.assembly import assemble
from cbv.engine.verifier import Verifier
from cbv.gc_tuning import tune_for_many_connections
from cbv.model import Verdict

OUTPUT_FORMATS = ("text", "json", "csv")


def fail(message: str) -> None:
    """One clear line on stderr and exit status 2, never a traceback."""
    click.echo(f"cbv: error: {message}", err=True)
    sys.exit(2)


def load_or_fail(path: Path | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        fail(str(exc))
    raise AssertionError("unreachable")


@click.group()
@click.version_option(package_name="cbv")
def cli() -> None:
    """cbv: SMTP callback verification of senders and recipients."""
    tune_for_many_connections()


def _formatter(output: str, console: Console) -> Callable[[Verdict], None]:
    if output == "json":
        return lambda verdict: click.echo(render.to_json(verdict))
    if output == "csv":
        click.echo(render.csv_header())
        return lambda verdict: click.echo(render.to_csv(verdict))
    return lambda verdict: console.print(render.to_text(verdict), soft_wrap=True)


async def _verify_all(
    config: Config,
    addresses: list[str],
    transcript: bool,
    emit: Callable[[Verdict], None],
    use_cache: bool = True,
) -> None:
    """Verify concurrently, print in input order as soon as order allows."""
    done: dict[int, Verdict] = {}
    next_index = 0
    show_progress = len(addresses) > 1 and sys.stderr.isatty()
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=not show_progress,
        transient=True,
    )
    async with Verifier(assemble(config)) as verifier:
        with progress:
            task = progress.add_task("verifying", total=len(addresses))
            async for index, verdict in verifier.iter_verify(
                addresses, transcript=transcript, use_cache=use_cache
            ):
                done[index] = verdict
                progress.advance(task)
                while next_index in done:
                    emit(done.pop(next_index))
                    next_index += 1


@cli.command()
@click.argument("addresses", nargs=-1)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--file", "input_file", type=click.File("r", encoding="utf-8"),
              help="Addresses, one per line, or CSV with an 'email' column ('-' for stdin).")
@click.option("--json", "as_json", is_flag=True, help="One JSON Verdict per line.")
@click.option("--output", type=click.Choice(OUTPUT_FORMATS), default=None,
              help="Output format (text, json lines, csv).")
@click.option("--transcript", is_flag=True, help="Include the SMTP dialogue.")
@click.option("--no-cache", is_flag=True, help="Neither use nor store cached verdicts.")
def verify(
    addresses: tuple[str, ...],
    config_path: Path | None,
    input_file: TextIO | None,
    as_json: bool,
    output: str | None,
    transcript: bool,
    no_cache: bool,
) -> None:
    """Verify ADDRESSES by SMTP callout."""
    config = load_or_fail(config_path)
    items = list(addresses)
    if input_file is not None:
        try:
            items.extend(read_addresses(input_file.read(), input_file.name))
        except (InputError, UnicodeDecodeError) as exc:
            fail(str(exc))
    if not items:
        fail("no addresses given (pass them as arguments or with --file)")
    fmt = output or ("json" if as_json else "text")
    emit = _formatter(fmt, Console(highlight=False))
    try:
        asyncio.run(_verify_all(config, items, transcript, emit, use_cache=not no_cache))
    except ConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


cli.add_command(demo)
cli.add_command(cache)
cli.add_command(serve)
cli.add_command(job)
