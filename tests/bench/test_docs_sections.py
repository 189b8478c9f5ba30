"""Each benchmark rewrites only its own section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench.helpers import write_docs_section


def test_a_section_is_replaced_in_place_and_others_kept(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\n<!-- bench:cache -->\nkept\n<!-- /bench:cache -->\n")
    write_docs_section("policy", "first", docs)
    write_docs_section("policy", "second", docs)
    text = docs.read_text()
    assert "<!-- bench:policy -->\nsecond\n<!-- /bench:policy -->" in text
    assert "first" not in text
    assert "<!-- bench:cache -->\nkept\n<!-- /bench:cache -->" in text
    assert text.index("bench:cache") < text.index("bench:policy")


def test_a_missing_file_is_created(tmp_path: Path) -> None:
    docs = tmp_path / "docs" / "benchmarks.md"
    write_docs_section("callout", "figures", docs)
    expected = "# Benchmarks\n\n<!-- bench:callout -->\nfigures\n<!-- /bench:callout -->\n"
    assert docs.read_text() == expected
