"""The `cbv` command."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from cbv.cli import render
from cbv.cli.cache_cmd import cache
from cbv.cli.demo import demo
from cbv.cli.doctor import doctor
from cbv.cli.inputs import InputError, read_addresses
from cbv.cli.job_cmd import job
from cbv.cli.resume import decided, still_to_verify
from cbv.cli.schedule import verify_in_turn
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
    """Verify concurrently, print in input order as soon as order allows; an address that
    meets a spent budget waits its turn (up to `jobs.retry_horizon`)."""
    done: dict[int, Verdict] = {}
    next_index = 0
    show_progress = len(addresses) > 1 and sys.stderr.isatty()
    progress = Progress(
        "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True),
        disable=not show_progress, transient=True,
    )
    async with Verifier(assemble(config)) as verifier:
        with progress:
            task = progress.add_task("verifying", total=len(addresses))

            def waiting(count: int) -> None:
                progress.update(task, description=f"{count} waiting on budgets"
                                if count else "verifying")

            async for index, verdict in verify_in_turn(
                verifier, addresses, transcript=transcript, use_cache=use_cache,
                horizon=config.jobs.retry_horizon,
                budget_interval=60.0 / config.limits.domain_per_minute, waiting=waiting,
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
@click.option("--resume", "resume_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append verdicts to this file (json or csv), skipping the addresses it "
                   "already holds: a killed run continues where it stopped.")
def verify(
    addresses: tuple[str, ...],
    config_path: Path | None,
    input_file: TextIO | None,
    as_json: bool,
    output: str | None,
    transcript: bool,
    no_cache: bool,
    resume_path: Path | None,
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
    fmt = output or ("json" if as_json or resume_path else "text")
    if resume_path is None:
        emit = _formatter(fmt, Console(highlight=False))
        _run_verify(config, items, transcript, emit, use_cache=not no_cache)
        return
    if fmt == "text":
        fail("--resume appends json or csv; choose --output json or csv")
    try:
        items = still_to_verify(items, decided(resume_path, fmt))
        with resume_path.open("a", encoding="utf-8") as out:
            emit = _appender(fmt, out, fresh=out.tell() == 0)
            if items:
                _run_verify(config, items, transcript, emit, use_cache=not no_cache)
    except OSError as exc:
        fail(f"{resume_path}: {exc.strerror or exc}")


def _appender(output: str, out: TextIO, fresh: bool) -> Callable[[Verdict], None]:
    """Each verdict written and flushed at once, so a kill loses at most the line under way."""
    render_line = render.to_csv if output == "csv" else render.to_json
    if output == "csv" and fresh:
        out.write(render.csv_header() + "\n")

    def append(verdict: Verdict) -> None:
        out.write(render_line(verdict) + "\n")
        out.flush()

    return append


def _run_verify(config: Config, items: list[str], transcript: bool,
                emit: Callable[[Verdict], None], use_cache: bool) -> None:
    try:
        asyncio.run(_verify_all(config, items, transcript, emit, use_cache=use_cache))
    except ConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


cli.add_command(demo)
cli.add_command(cache)
cli.add_command(serve)
cli.add_command(job)
cli.add_command(doctor)
