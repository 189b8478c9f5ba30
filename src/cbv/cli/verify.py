"""`cbv verify`: verdicts for addresses given as arguments or in a file.

The engine, the config models and rich are imported when the command runs, not when
`cbv` starts: `cbv verify --help` and a syntax-only verdict stay quick for scripts that
call cbv once per address. Addresses that fail the syntax check get their verdict without
the engine being built at all, and without pydantic when the configuration sets nothing.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NoReturn, TextIO, TypeVar

import click

from cbv.cli.inputs import InputError, decode_text, read_addresses

if TYPE_CHECKING:
    from rich.console import Console

    from cbv.cli.render import Segments
    from cbv.config import Config
    from cbv.model import Verdict

Shown = TypeVar("Shown")

OUTPUT_FORMATS = ("text", "json", "csv")


def fail(message: str) -> NoReturn:
    """One clear line on stderr and exit status 2, never a traceback."""
    click.echo(f"cbv: error: {message}", err=True)
    sys.exit(2)


def load_or_fail(path: Path | None) -> Config | None:
    """The configuration, validated now, so that a broken file is reported whatever the
    addresses; None when it sets nothing (no file, or only comments): the built-in defaults,
    built only if an address needs the engine, so a syntax-only verdict imports no pydantic."""
    from cbv.config_file import ConfigError, config_source, read_config_file

    source = config_source(path)
    if source is None:
        return None
    try:
        data = read_config_file(source)
    except ConfigError as exc:
        fail(str(exc))
    return validated_or_fail(data, str(source)) if data else None


def validated_or_fail(data: dict[str, Any], source: str) -> Config:
    from cbv.config import ConfigError, config_from_dict

    try:
        return config_from_dict(data, source)
    except ConfigError as exc:
        fail(str(exc))


def output_format(as_json: bool, output: str | None, resume: bool) -> str:
    if as_json and output not in (None, "json"):
        fail(f"--json and --output {output} ask for different formats: give one of them")
    return output or ("json" if as_json or resume else "text")


def _formatter(output: str, to_json: Callable[[Shown], str], to_csv: Callable[[Shown], str],
               to_text: Callable[[Shown], Segments]) -> Callable[[Shown], None]:
    """Printing in `output` format: of Verdicts, or of cbv.cli.syntax_only's stand-ins."""
    from cbv.cli import render

    if output == "json":
        return lambda shown: click.echo(to_json(shown))
    if output == "csv":
        click.echo(render.csv_header())
        return lambda shown: click.echo(to_csv(shown))
    @functools.cache
    def console() -> Console:
        from rich.console import Console

        return Console(highlight=False)

    def rich_print(segments: Segments) -> None:
        console().print(render.styled(segments), soft_wrap=True)

    if may_colour(sys.stdout, os.environ):
        return lambda shown: rich_print(to_text(shown))

    def show_plain(shown: Shown) -> None:
        segments = to_text(shown)
        text = render.plain(segments)
        if text is None:
            rich_print(segments)
        else:
            print(text)

    return show_plain


def may_colour(stream: TextIO, environ: Mapping[str, str]) -> bool:
    """Whether rich might colour what goes to `stream`: a terminal, or an environment that
    says colours are wanted (TTY_COMPATIBLE, FORCE_COLOR). Otherwise the text is printed
    as rich would print it there, without importing rich: a script that runs `cbv verify`
    once per address pays for each import every time."""
    return "TTY_COMPATIBLE" in environ or "FORCE_COLOR" in environ or stream.isatty()


async def _verify_all(
    config: Config,
    addresses: list[str],
    transcript: bool,
    emit: Callable[[Verdict], None],
    use_cache: bool = True,
) -> None:
    """Verify concurrently, print in input order as soon as order allows; an address that
    meets a spent budget waits its turn (up to `jobs.retry_horizon`)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from cbv.cli.schedule import verify_in_turn
    from cbv.engine.assembly import assemble
    from cbv.engine.verifier import Verifier

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


@click.command()
@click.argument("addresses", nargs=-1)
@click.option("--config", "config_path", type=click.Path(path_type=Path), help="TOML config file.")
@click.option("--file", "input_file", type=click.File("rb"),
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
    input_file: BinaryIO | None,
    as_json: bool,
    output: str | None,
    transcript: bool,
    no_cache: bool,
    resume_path: Path | None,
) -> None:
    """Verify ADDRESSES by SMTP callout."""
    fmt = output_format(as_json, output, resume_path is not None)
    config = load_or_fail(config_path)
    items = list(addresses)
    if input_file is not None:
        name = "stdin" if input_file.name == "-" else str(input_file.name)
        try:
            items.extend(read_addresses(decode_text(input_file.read(), name), name))
        except InputError as exc:
            fail(str(exc))
    if not items:
        fail("no addresses given (pass them as arguments or with --file)")
    if resume_path is None:
        from cbv.cli import render
        from cbv.cli.syntax_only import SyntaxFailure, syntax_failures

        failures = syntax_failures(items)
        if failures is not None:
            show = _formatter(fmt, SyntaxFailure.to_json, SyntaxFailure.to_csv,
                              SyntaxFailure.to_text)
            for failure in failures:
                show(failure)
            return
        emit = _formatter(fmt, render.to_json, render.to_csv, render.to_text)
        _run_verify(config, items, transcript, emit, use_cache=not no_cache)
        return
    if fmt == "text":
        fail("--resume appends json or csv; choose --output json or csv")
    from cbv.cli.resume import decided, still_to_verify

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
    from cbv.cli import render

    render_line = render.to_csv if output == "csv" else render.to_json
    if output == "csv" and fresh:
        out.write(render.csv_header() + "\n")

    def append(verdict: Verdict) -> None:
        out.write(render_line(verdict) + "\n")
        out.flush()

    return append


def _run_verify(config: Config | None, items: list[str], transcript: bool,
                emit: Callable[[Verdict], None], use_cache: bool) -> None:
    """Verify with `config`, or with the built-in defaults when it is None."""
    import asyncio

    from cbv.config import ConfigError

    if config is None:
        config = validated_or_fail({}, "built-in defaults")
    try:
        asyncio.run(_verify_all(config, items, transcript, emit, use_cache=use_cache))
    except ConfigError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)
