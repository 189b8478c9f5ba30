"""`cbv cache stats | show ADDRESS | purge ADDRESS|@DOMAIN|--all | export --format jsonl |
cooling [--forget IP | --forget-all]`."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from cbv.address import AddressError, parse_address, parse_domain
from cbv.cache.backend import CacheBackend, CacheError
from cbv.cache.opening import open_cache
from cbv.cache.records import CachedVerdict, CacheStats, epoch_to_datetime
from cbv.config import ConfigError, load_config
from cbv.engine.cooldown import LocalCooldown, RedisCooldown, Standing

T = TypeVar("T")

config_option = click.option(
    "--config", "config_path", type=click.Path(path_type=Path), help="TOML config file."
)


def _fail(message: str) -> NoReturn:
    click.echo(f"cbv: error: {message}", err=True)
    sys.exit(2)


def _run(config_path: Path | None, operation: Callable[[CacheBackend], Awaitable[T]]) -> T:
    """Open the configured cache without any fallback (a dead Redis is an error here)."""

    async def main() -> T:
        backend = open_cache(load_config(config_path).cache, fall_back=False).backend
        try:
            return await operation(backend)
        finally:
            await backend.aclose()

    try:
        return asyncio.run(main())
    except (ConfigError, CacheError) as exc:
        _fail(str(exc))


def _record_json(record: CachedVerdict) -> str:
    data: dict[str, Any] = record.verdict.model_dump(mode="json", exclude={"transcript"})
    data["refresh_at"] = epoch_to_datetime(record.refresh_at).isoformat().replace("+00:00", "Z")
    return json.dumps(data)


@click.group()
def cache() -> None:
    """Inspect and purge cached verdicts and domain facts."""


@cache.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object.")
def stats(config_path: Path | None, as_json: bool) -> None:
    """How many verdicts the cache holds, by result."""

    async def collect(backend: CacheBackend) -> CacheStats:
        return await backend.stats()

    found = _run(config_path, collect)
    if as_json:
        click.echo(json.dumps(found.__dict__))
        return
    click.echo(f"backend            {found.backend}")
    click.echo(f"addresses          {found.addresses}")
    for result in ("pass", "fail", "transient", "unknown"):
        click.echo(f"  {result:<16} {found.by_result.get(result, 0)}")
    click.echo(f"awaiting refresh   {found.awaiting_refresh}")
    click.echo(f"domains with facts {found.domains_with_facts}")
    if found.size_bytes is not None:
        click.echo(f"size on disk       {found.size_bytes} bytes")


@cache.command()
@config_option
@click.argument("address")
def show(config_path: Path | None, address: str) -> None:
    """The cached verdict for ADDRESS as JSON, with its refresh_at; exit 1 if none."""
    try:
        parsed = parse_address(address)
    except AddressError as exc:
        _fail(f"{address!r}: {exc}")

    async def lookup(backend: CacheBackend) -> CachedVerdict | None:
        return await backend.get(parsed)

    record = _run(config_path, lookup)
    if record is None:
        click.echo(f"not cached: {parsed}", err=True)
        sys.exit(1)
    click.echo(_record_json(record))


def _purge_operation(target: str | None) -> Callable[[CacheBackend], Awaitable[int]]:
    """None means everything; raises AddressError for a bad ADDRESS or @DOMAIN."""
    if target is None:
        return lambda backend: backend.purge_all()
    if target.startswith("@"):
        domain = parse_domain(target[1:])
        return lambda backend: backend.purge_domain(domain)
    address = parse_address(target)
    return lambda backend: backend.purge_address(address)


@cache.command()
@config_option
@click.argument("target", required=False)
@click.option("--all", "everything", is_flag=True, help="Every verdict and domain fact.")
def purge(config_path: Path | None, target: str | None, everything: bool) -> None:
    """Forget ADDRESS, every address and fact of @DOMAIN, or --all."""
    if everything == (target is not None):
        _fail("purge takes one ADDRESS, one @DOMAIN, or --all")
    try:
        operation = _purge_operation(target)
    except AddressError as exc:
        _fail(f"{target!r}: {exc}")
    count = _run(config_path, operation)
    click.echo(f"purged {count} cached verdict{'' if count == 1 else 's'}")


@cache.command()
@config_option
@click.option("--format", "output_format", type=click.Choice(["jsonl"]), default="jsonl",
              show_default=True, help="One JSON object per cached verdict.")
def export(config_path: Path | None, output_format: str) -> None:
    """Every cached verdict, with its refresh_at."""

    async def dump(backend: CacheBackend) -> None:
        async for record in backend.export():
            click.echo(_record_json(record))

    _run(config_path, dump)


def _cooling_operation(
    forget: str | None, forget_all: bool
) -> Callable[[RedisCooldown], Awaitable[list[Standing] | int]]:
    if forget_all:
        return lambda cooldown: cooldown.purge()
    if forget is not None:
        address, via, egress = forget.partition(" via ")
        try:
            key = str(ipaddress.ip_address(address)) + via + egress
        except ValueError:
            _fail(f"{forget!r} is not an IP address (or 'IP via EGRESS', as listed)")
        return lambda cooldown: cooldown.purge(key)
    return lambda cooldown: cooldown.read_cooling()


@cache.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object per host.")
@click.option("--forget", metavar="IP", help="Forget this MX address's refusals (or those "
              "of 'IP via EGRESS', as listed): callouts to it may go again.")
@click.option("--forget-all", is_flag=True, help="Forget every MX address's refusals.")
def cooling(config_path: Path | None, as_json: bool, forget: str | None,
            forget_all: bool) -> None:
    """MX addresses cooling after refusing the verifier (shared through Redis)."""
    if forget is not None and forget_all:
        _fail("cooling takes --forget IP or --forget-all, not both")
    operation = _cooling_operation(forget, forget_all)

    async def main() -> list[Standing] | int:
        config = load_config(config_path)
        opened = open_cache(config.cache, fall_back=False)
        try:
            if opened.redis is None:
                raise ConfigError(
                    "cooling MX hosts are shared only through Redis ([cache] url = "
                    "\"redis://...\"); without it each daemon keeps its own (its status page "
                    "and /metrics show them)")
            limits = config.limits
            cooldown = RedisCooldown(opened.redis, limits.refusal_cooldown,
                                     LocalCooldown(limits.refusal_cooldown))
            return await operation(cooldown)
        finally:
            await opened.backend.aclose()

    try:
        found = asyncio.run(main())
    except (ConfigError, CacheError) as exc:
        _fail(str(exc))
    if isinstance(found, int):
        click.echo(f"forgot the refusals of {found} MX address{'' if found == 1 else 'es'}")
        return
    for host in found:
        until = epoch_to_datetime(host.until).isoformat().replace("+00:00", "Z")
        if as_json:
            click.echo(json.dumps({"ip": host.ip, "until": until, "refusals": host.strikes,
                                   "said": host.detail}))
        else:
            click.echo(f"{host.ip}  until {until}  refusals {host.strikes}  {host.detail}")
    if not found and not as_json:
        click.echo("no MX address is cooling")
