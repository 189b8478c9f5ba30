"""The configuration snippets of docs/integrations/*.md, as the peer tests use them.

A snippet the tests run is marked in its guide by `<!-- tested: NAME -->` on the line
before its fenced block; the tests take it from there, changing only the addresses of
cbv's listeners to the ones the test started, so a guide cannot drift from what is proven.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "integrations"
MARKED = re.compile(r"<!-- tested: (?P<name>[\w-]+) -->\n```[\w-]*\n(?P<body>.*?)```", re.S)

# The addresses the guides use: cbv's default listeners, and a Redis.
DOCUMENTED = {
    "policy": "127.0.0.1:10040",
    "smtpcbd": "127.0.0.1:4571",
    "milter": "127.0.0.1:8890",
    "sendmail_milter": "8890@127.0.0.1",  # the milter's address as sendmail.mc writes it
    "redis": "redis://127.0.0.1:6379/0",
}


def snippets(guide: str) -> dict[str, str]:
    text = (GUIDES / f"{guide}.md").read_text()
    return {match["name"]: match["body"] for match in MARKED.finditer(text)}


def snippet(guide: str, name: str, **addresses: str) -> str:
    """The snippet `name` of `guide`.md with each documented address replaced by the test's:
    `snippet("postfix", "sender-restrictions", policy="127.0.0.1:40123")`."""
    body = snippets(guide)[name]
    for what, address in addresses.items():
        assert DOCUMENTED[what] in body, f"{guide}.md {name} does not name the {what} address"
        body = body.replace(DOCUMENTED[what], address)
    return body



def settings(guide: str, name: str, **addresses: str) -> dict[str, Any]:
    """A cbv.toml snippet, read as cbv reads it."""
    return tomllib.loads(snippet(guide, name, **addresses))
