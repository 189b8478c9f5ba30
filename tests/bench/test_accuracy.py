"""The accuracy corpus stays right, and docs/accuracy.md stays what the bench writes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bench.accuracy import (
    DOCS,
    CorpusError,
    Score,
    load_corpus,
    main,
    render,
    verify_corpus,
)
from cbv.model import Result, Verdict

CASES = load_corpus()


@pytest.fixture(scope="module")
def verdicts() -> list[Verdict]:
    return asyncio.run(verify_corpus(CASES))


def test_the_corpus_is_large_sourced_and_labelled() -> None:
    assert len(CASES) >= 300
    assert len({case.provider for case in CASES}) >= 15
    assert all(case.source.startswith("https://") and case.why for case in CASES)


def test_cbv_is_right_on_the_corpus_and_never_fails_a_sender_wrongly(
    verdicts: list[Verdict],
) -> None:
    cbv = Score("cbv", tuple(v.result for v in verdicts))
    wrong = [(c.id, v.result.value, v.evidence) for c, v, right
             in zip(CASES, verdicts, cbv.right(CASES), strict=True) if not right]
    assert cbv.false_fails(CASES) == 0, wrong
    assert sum(cbv.right(CASES)) >= 0.99 * len(CASES), wrong
    assert all(v.evidence for v in verdicts)
    assert any(v.result is Result.FAIL for v in verdicts)


def test_docs_accuracy_is_what_the_bench_writes(verdicts: list[Verdict]) -> None:
    assert DOCS.read_text(encoding="utf-8") == render(CASES, verdicts), (
        "docs/accuracy.md is stale: run `.venv/bin/python -m bench accuracy`")


@pytest.mark.parametrize(
    ("line", "message"),
    [("not json", "corpus line 1: Expecting value"),
     ('{"id": "a"}', "corpus line 1: missing or unknown value 'provider'"),
     (json.dumps({"id": "a", "provider": "p", "source": "https://x.test", "stage": "data",
                  "code": 550, "lines": ["x"], "want": ["fail"], "why": "w"}),
      "corpus line 1: stage 'data' is not one of banner, ehlo, mail, rcpt"),
     (json.dumps({"id": "a", "provider": "p", "source": "https://x.test", "stage": "rcpt",
                  "code": 550, "lines": ["x"], "want": ["maybe"], "why": "w"}),
      "corpus line 1: missing or unknown value 'maybe'")],
)
def test_a_bad_corpus_line_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    corpus = tmp_path / "replies.jsonl"
    corpus.write_text(line + "\n")
    with pytest.raises(CorpusError) as caught:
        load_corpus(corpus)
    assert str(caught.value) == message
    assert main(["--corpus", str(corpus), "--output", str(tmp_path / "out.md")]) == 2
    assert capsys.readouterr().out == f"accuracy: {message}\n"
