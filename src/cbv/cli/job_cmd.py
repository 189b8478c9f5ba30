"""`cbv job submit FILE [--wait] | status ID | results ID [--output csv] | cancel ID`:
bulk jobs on a running `cbv serve` with `[jobs] enabled = true`, through its HTTP API."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, NoReturn, TextIO

import click
import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from cbv.cli.inputs import InputError, read_addresses
from cbv.config import ConfigError, load_config

POLL = 1.0  # seconds between progress looks while --wait
TIMEOUT = 30.0


def _fail(message: str) -> NoReturn:
    click.echo(f"cbv: error: {message}", err=True)
    sys.exit(2)


class Api:
    """The daemon's HTTP API: --url, else `server.http` of the config; --token, else
    `http.token`."""

    def __init__(self, config_path: Path | None, url: str | None, token: str | None) -> None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            _fail(str(exc))
        if url is None:
            endpoint = config.server.endpoints().get("http")
            if endpoint is None or endpoint.is_unix:
                _fail("no HTTP listener in the config (server.http); pass --url")
            host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
            url = f"http://{host}:{endpoint.port}"
        self.url = url.rstrip("/")
        chosen = token if token is not None else config.http.token
        headers = {"Authorization": f"Bearer {chosen}"} if chosen else {}
        self._client = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT,
                                    follow_redirects=False, trust_env=False)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            answer = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach cbv at {self.url}: {exc}")
        self._check(method, path, answer)
        return answer

    @staticmethod
    def _check(method: str, path: str, answer: httpx.Response) -> None:
        if answer.status_code >= 400:
            try:
                message = answer.json()["message"]
            except (ValueError, KeyError, TypeError):
                message = answer.text.strip()[:200]
            _fail(f"{method} {path}: {answer.status_code}: {message}")

    def copy(self, path: str, out: TextIO, **kwargs: Any) -> None:
        """A streamed answer written to `out` as it comes, however long."""
        try:
            with self._client.stream("GET", path, **kwargs) as answer:
                if answer.status_code >= 400:
                    answer.read()
                self._check("GET", path, answer)
                for chunk in answer.iter_text():
                    out.write(chunk)
        except httpx.HTTPError as exc:
            _fail(f"cannot reach cbv at {self.url}: {exc}")

    def status(self, job_id: str) -> dict[str, Any]:
        found: dict[str, Any] = self.request("GET", f"/v1/jobs/{job_id}").json()
        return found


def api_options(command: Any) -> Any:
    for option in (
        click.option("--config", "config_path", type=click.Path(path_type=Path),
                     help="TOML config file (its server.http and http.token)."),
        click.option("--url", default=None, help="cbv's HTTP API, e.g. http://127.0.0.1:8080."),
        click.option("--token", default=None, envvar="CBV_TOKEN",
                     help="Bearer token (default: http.token; also $CBV_TOKEN)."),
    ):
        command = option(command)
    return command


def _summary(status: dict[str, Any]) -> str:
    counts = ", ".join(f"{result} {n}" for result, n in status["counts"].items())
    eta = status.get("eta_seconds")
    return (f"{status['id']}  {status['state']}  {status['done']}/{status['total']} decided "
            f"({counts}); {status['waiting_on_budget']} waiting on budgets"
            + (f"; ETA {eta:.0f} s" if eta is not None else ""))


def _wait(api: Api, job_id: str) -> dict[str, Any]:
    status = api.status(job_id)
    progress = Progress("[progress.description]{task.description}", BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True), disable=not sys.stderr.isatty(),
                        transient=True)
    with progress:
        task = progress.add_task("verifying", total=status["total"])
        while status["state"] not in ("done", "cancelled"):
            eta = status.get("eta_seconds")
            progress.update(task, completed=status["done"], description=(
                f"{status['waiting_on_budget']} waiting on budgets"
                + (f", ETA {eta:.0f} s" if eta is not None else "")))
            time.sleep(POLL)
            status = api.status(job_id)
    return status


@click.group()
def job() -> None:
    """Bulk verification jobs on a running cbv serve (docs/jobs.md)."""


@job.command()
@api_options
@click.argument("input_file", metavar="FILE", type=click.File("r", encoding="utf-8"))
@click.option("--name", default="", help="A name shown in the job's status.")
@click.option("--webhook", default=None, help="A URL POSTed the job's status once done.")
@click.option("--wait", is_flag=True, help="Show progress until the job is done.")
def submit(config_path: Path | None, url: str | None, token: str | None, input_file: TextIO,
           name: str, webhook: str | None, wait: bool) -> None:
    """Submit FILE (one address a line, or CSV with an 'email' column; '-' for stdin);
    prints the job's id."""
    try:
        addresses = read_addresses(input_file.read(), input_file.name)
    except (InputError, UnicodeDecodeError) as exc:
        _fail(str(exc))
    if not addresses:
        _fail(f"{input_file.name}: no addresses")
    api = Api(config_path, url, token)
    params: dict[str, str] = {"name": name}
    if webhook:
        params["webhook"] = webhook
    answer = api.request("POST", "/v1/jobs", params=params, content=json.dumps(addresses),
                         headers={"Content-Type": "application/json"})
    job_id = answer.json()["id"]
    click.echo(job_id)
    if wait:
        click.echo(_summary(_wait(api, job_id)), err=True)


@job.command()
@api_options
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The status as one JSON object.")
def status(config_path: Path | None, url: str | None, token: str | None, job_id: str,
           as_json: bool) -> None:
    """How job ID is doing: state, counts by result, waits on budgets, ETA."""
    found = Api(config_path, url, token).status(job_id)
    click.echo(json.dumps(found) if as_json else _summary(found))


@job.command()
@api_options
@click.argument("job_id", metavar="ID")
@click.option("--output", type=click.Choice(["json", "csv"]), default="json",
              show_default=True, help="JSON lines (a Verdict with `attempts`) or CSV.")
def results(config_path: Path | None, url: str | None, token: str | None, job_id: str,
            output: str) -> None:
    """The final verdicts of job ID so far, in input order."""
    api = Api(config_path, url, token)
    accept = "text/csv" if output == "csv" else "application/x-ndjson"
    api.copy(f"/v1/jobs/{job_id}/results", sys.stdout, headers={"Accept": accept})


@job.command()
@api_options
@click.argument("job_id", metavar="ID")
def cancel(config_path: Path | None, url: str | None, token: str | None, job_id: str) -> None:
    """Cancel job ID; the verdicts it has keep."""
    click.echo(_summary(Api(config_path, url, token).request(
        "DELETE", f"/v1/jobs/{job_id}").json()))
