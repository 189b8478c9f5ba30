"""`cbv verify` as a user runs it: a subprocess with a config file, against the fakes."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import pytest

from cbv.testing import FakeDNS, MXScript, Reply
from cbv.testing.zoo import SCENARIOS
from tests.world import World

CBV = [sys.executable, "-m", "cbv.cli"]


def write_config(path: Path, world: World) -> Path:
    head = world.toml(world.farms[-1].port, "command_timeout = 2.0\ntotal_timeout = 5.0")
    path.write_text(head + '[cache]\nurl = "memory://"\n')
    return path


async def run_cbv(*args: str, stdin: bytes | None = None, columns: int = 200
                  ) -> tuple[int, str, str]:
    env = {**os.environ, "COLUMNS": str(columns), "CBV_CONFIG": ""}
    process = await asyncio.create_subprocess_exec(
        *CBV, *args, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def mail_world(world: World) -> World:
    await world.mx("example.test", {"127.0.0.2": MXScript(
        rcpt=[("alice@example.test", Reply(250, "2.1.5 Ok")),
              ("blocked@example.test", Reply(550, "5.7.1 blocked by policy"))])})
    world.dns.set_nxdomain("gone.test")
    return world


async def test_json_lines_in_input_order(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    addresses = ["alice@example.test", "bob@example.test", "x@gone.test", "not an address",
                 "blocked@example.test"]
    code, out, err = await run_cbv("verify", "--config", str(config), "--json", *addresses)
    assert code == 0, err
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [v["address"] for v in verdicts] == addresses
    assert [(v["result"], v["reason"]) for v in verdicts] == [
        ("pass", "accepted"), ("fail", "mailbox_unknown"), ("fail", "no_mail_domain"),
        ("fail", "bad_syntax"), ("unknown", "policy_rejection"),
    ]
    assert verdicts[0]["smtp_cbv_result"] == "pass" and verdicts[0]["mx"] == "mx1.example.test"
    assert verdicts[0]["transcript"] is None


async def test_transcript_and_readable_output(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    code, out, _ = await run_cbv("verify", "--config", str(config), "--transcript",
                                 "alice@example.test")
    assert code == 0
    assert "alice@example.test  PASS  accepted" in out
    assert "C: RCPT TO:<alice@example.test>" in out and "S: 250 2.1.5 Ok" in out
    assert "at rcpt by code:250" in out


async def test_file_input_plain_and_csv_output(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    listing = tmp_path / "list.txt"
    listing.write_text("# senders\nalice@example.test\n\nbob@example.test\n")
    code, out, _ = await run_cbv("verify", "--config", str(config), "--file", str(listing),
                                 "--output", "csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("address,result,reason")
    assert lines[1].startswith("alice@example.test,pass,accepted")
    assert lines[2].startswith("bob@example.test,fail,mailbox_unknown")


async def test_csv_input_with_email_column_from_stdin(mail_world: World, tmp_path: Path) -> None:
    config = write_config(tmp_path / "cbv.toml", mail_world)
    data = b"name,email\nAlice,alice@example.test\nBob,bob@example.test\n"
    code, out, _ = await run_cbv("verify", "--config", str(config), "--file", "-", "--json",
                                 stdin=data)
    assert code == 0
    assert [json.loads(line)["address"] for line in out.splitlines()] == [
        "alice@example.test", "bob@example.test"]


@pytest.mark.parametrize(
    ("args", "config_text", "message"),
    [
        (["verify"], None, "no addresses given"),
        (["verify", "--config", "{tmp}/missing.toml", "a@b.test"], None, "no such file"),
        (["verify", "--config", "{tmp}/bad.toml", "a@b.test"], "[callout]\nbogus = 1\n",
         "callout.bogus: unknown key"),
        (["verify", "--config", "{tmp}/bad.toml", "a@b.test"], "[callout\n", "invalid TOML"),
        (["verify", "--config", "{tmp}/bad.toml", "not an address"], "[callout]\nbogus = 1\n",
         "callout.bogus: unknown key"),
        (["verify", "--config", "{tmp}/bad.toml", "--json", "not an address"], "[callout\n",
         "invalid TOML"),
        (["verify", "--config", "{tmp}/bad.toml", "a@b.test"], "[callout]\nport = 'x'\n",
         "callout.port"),
        (["verify", "--file", "{tmp}/bad.csv"], None, "needs an 'email' column"),
        (["verify", "--file", "{tmp}/photo.png"], None,
         "photo.png: not a text file (not UTF-8: byte 0x89 at offset 0)"),
        (["verify", "--file", "{tmp}/nul.txt"], None, "nul.txt: not a text file (it holds NUL"),
        (["verify", "--file"], None, "cbv: error: Option '--file' requires an argument"),
        (["verify", "--output", "xml", "a@b.test"], None,
         "cbv: error: Invalid value for '--output': 'xml' is not one of 'text', 'json', 'csv' "
         "(see 'python -m cbv.cli verify --help')"),
        (["verify", "--json", "--output", "csv", "a@b.test"], None,
         "--json and --output csv ask for different formats"),
        (["cache", "show"], None, "cbv: error: Missing argument 'ADDRESS' "
         "(see 'python -m cbv.cli cache show --help')"),
        (["verfiy", "a@b.test"], None, "cbv: error: No such command 'verfiy'"),
    ],
)
async def test_bad_input_is_one_clear_line(tmp_path: Path, fake_dns: FakeDNS, args: list[str],
                                           config_text: str | None, message: str) -> None:
    if config_text is not None:
        (tmp_path / "bad.toml").write_text(config_text)
    (tmp_path / "bad.csv").write_text("name,mail\nx,y\n")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (tmp_path / "nul.txt").write_bytes(b"a@b.test\n\x00\x00\n")
    code, _, err = await run_cbv(*(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert code == 2
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


async def test_demo_shows_every_scenario_as_expected() -> None:
    code, out, err = await run_cbv("demo")
    assert code == 0, err
    assert "unexpected" not in out
    for name in ("accepted", "policy-block", "greylisting", "null-mx", "forbidden", "tarpit"):
        assert name in out


async def test_demo_without_the_test_kit_says_what_to_install() -> None:
    """`pip install cbv` leaves out dnslib, which the demo's fakes need (`cbv[testing]`)."""
    without_dnslib = ("import sys; sys.modules['dnslib'] = None; "
                      "from cbv.cli.main import cli; cli(['demo'])")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", without_dnslib, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env={**os.environ, "CBV_CONFIG": ""},
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    assert out == b""
    assert err.decode() == ("cbv: error: cbv demo runs the test kit, which needs dnslib: "
                            "pip install 'cbv[testing]'\n")


async def test_a_syntax_only_verdict_needs_no_network(tmp_path: Path) -> None:
    code, out, err = await run_cbv("verify", "--json", "not an address", "two@@at.test")
    assert code == 0, err
    assert [(v["result"], v["reason"], v["stage"]) for v in map(json.loads, out.splitlines())
            ] == [("fail", "bad_syntax", "syntax")] * 2


async def test_demo_fits_80_columns_without_cutting_anything() -> None:
    code, out, err = await run_cbv("demo", columns=80)
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "\u2026" not in out, "nothing is cut with an ellipsis"
    for scenario in SCENARIOS:
        assert scenario.name in out
    assert "zen.spamhaus.org" in out, "the deciding reply is wrapped, not cut"
