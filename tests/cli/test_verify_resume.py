"""`cbv verify --file F --resume OUT`: a killed run continues where it stopped."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from cbv.testing import MXScript, Reply
from tests.cli.test_verify_cli import run_cbv, write_config
from tests.world import World

ADDRESSES = ["alice@example.test", "bob@example.test", "not an address", "Carol@EXAMPLE.test"]


@pytest.fixture
async def mail_world(world: World) -> World:
    await world.mx("example.test", {"127.0.0.2": MXScript(
        rcpt=[("alice@example.test", Reply(250, "2.1.5 Ok"))])})
    return world


async def test_json_lines_already_in_out_are_skipped_and_the_rest_appended(
        mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    listing = tmp_path / "list.txt"
    listing.write_text("\n".join(ADDRESSES) + "\n")
    out = tmp_path / "out.jsonl"
    code, _, err = await run_cbv("verify", "--config", str(config), "--file", str(listing),
                                 "--resume", str(out))
    assert code == 0, err
    first = out.read_text().splitlines()
    assert [json.loads(line)["address"] for line in first] == [
        "alice@example.test", "bob@example.test", "not an address", "Carol@example.test"]
    out.write_text("\n".join(first[:2]) + "\n" + first[2][:20])  # killed mid-line
    code, _, err = await run_cbv("verify", "--config", str(config), "--file", str(listing),
                                 "--resume", str(out))
    assert code == 0, err
    again = out.read_text().splitlines()
    assert again[:2] == first[:2]
    assert sorted(json.loads(line)["address"] for line in again) == sorted(
        json.loads(line)["address"] for line in first)
    code, _, err = await run_cbv("verify", "--config", str(config), "--file", str(listing),
                                 "--resume", str(out))
    assert code == 0 and out.read_text().splitlines() == again


async def test_csv_is_resumed_under_one_header(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    out = tmp_path / "out.csv"
    for addresses in (ADDRESSES[:2], ADDRESSES):
        code, _, err = await run_cbv("verify", "--config", str(config), "--output", "csv",
                                     "--resume", str(out), *addresses)
        assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [row["address"] for row in rows] == [
        "alice@example.test", "bob@example.test", "not an address", "Carol@example.test"]


async def test_resume_refuses_the_text_format(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    code, _, err = await run_cbv("verify", "--config", str(config), "--output", "text",
                                 "--resume", str(tmp_path / "out"), "a@example.test")
    assert code == 2
    assert err == "cbv: error: --resume appends json or csv; choose --output json or csv\n"
