"""`cbv serve`: the daemon mail servers ask."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import NoReturn

import click

from cbv.config import ConfigError, load_config
from cbv.servers.daemon import Daemon
from cbv.servers.event_loop import loop_factory
from cbv.servers.listen import ListenError
from cbv.servers.logs import configure_logging


def _fail(message: str) -> NoReturn:
    click.echo(f"cbv: error: {message}", err=True)
    sys.exit(2)


def _announce(line: str) -> None:
    click.echo(line)
    sys.stdout.flush()


@click.command()
@click.option("--config", "config_path", type=click.Path(path_type=Path),
              help="TOML config file (default: $CBV_CONFIG, /etc/cbv/cbv.toml, built-ins).")
def serve(config_path: Path | None) -> None:
    """Run the listeners named in the config until SIGTERM; SIGHUP reloads the config."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail(str(exc))
    configure_logging(config.log)
    try:
        with asyncio.Runner(loop_factory=loop_factory(config.server.event_loop)) as runner:
            runner.run(Daemon(config, config_path, _announce, configure_logging).run())
    except (ConfigError, ListenError) as exc:
        _fail(str(exc))
