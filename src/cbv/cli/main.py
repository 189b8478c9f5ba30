"""The `cbv` command: a group whose subcommands are imported only when run."""

from __future__ import annotations

import click

from cbv.cli.group import CbvGroup
from cbv.gc_tuning import tune_for_many_connections

SUBCOMMANDS = {
    "verify": "cbv.cli.verify:verify",
    "cache": "cbv.cli.cache_cmd:cache",
    "demo": "cbv.cli.demo:demo",
    "serve": "cbv.cli.serve:serve",
    "job": "cbv.cli.job_cmd:job",
    "doctor": "cbv.cli.doctor:doctor",
}


@click.group(cls=CbvGroup, lazy=SUBCOMMANDS)
@click.version_option(package_name="cbv")
def cli() -> None:
    """cbv: SMTP callback verification of senders and recipients."""
    tune_for_many_connections()
