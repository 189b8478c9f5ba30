"""The integration guides' snippets: each marked one is well formed and run by a peer test.

The peer tests read the snippets from the guides themselves (tests/peers/guides.py); this
checks what they cannot: that no marked snippet goes unused, that every cbv.toml snippet
is a valid configuration, and that Sendmail's guide configures the milter that Postfix's
does.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from cbv.config import config_from_dict
from tests.peers.guides import DOCUMENTED, GUIDES, settings, snippet, snippets

GUIDE_NAMES = ("postfix", "exim", "qpsmtpd", "sendmail")
PEER_TESTS = Path(__file__).parent


def all_marked() -> list[tuple[str, str]]:
    return [(guide, name) for guide in GUIDE_NAMES for name in snippets(guide)]


@pytest.mark.parametrize("guide", GUIDE_NAMES)
def test_every_marker_comes_right_before_a_fenced_block(guide: str) -> None:
    text = (GUIDES / f"{guide}.md").read_text()
    markers = re.findall(r"<!-- tested: [\w-]+ -->", text)
    assert markers
    assert len(markers) == len(snippets(guide))


@pytest.mark.parametrize(("guide", "name"), all_marked())
def test_every_marked_snippet_is_used_by_a_test(guide: str, name: str) -> None:
    tests = [path.read_text() for path in PEER_TESTS.glob("test_*.py")]
    assert any(f'"{guide}"' in text and f'"{name}"' in text for text in tests)


@pytest.mark.parametrize(("guide", "name"), [
    (guide, name) for guide, name in all_marked() if name.startswith("cbv-")])
def test_every_cbv_snippet_is_a_valid_configuration(guide: str, name: str) -> None:
    config_from_dict(tomllib.loads(snippet(guide, name)), f"{guide}.md {name}")


def test_sendmail_asks_the_milter_that_postfix_proves() -> None:
    assert settings("sendmail", "cbv-milter") == settings("postfix", "cbv-milter")
    host, port = DOCUMENTED["milter"].split(":")
    assert f"S=inet:{port}@{host}," in snippet("sendmail", "mc")
