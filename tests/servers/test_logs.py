"""`cbv serve`'s log configuration: in JSON mode every line on stderr is JSON, the event
loop's own messages and Python's warnings included."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import Context
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cbv.config import LogConfig
from cbv.servers import logs
from cbv.servers.logs import (
    DECISIONS,
    FIELDS,
    LineHandler,
    OwnFields,
    configure_logging,
    encode_json,
    event,
)
from tests.waiting import until

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

TOUCHED = ("cbv", "asyncio", "py.warnings")


@contextmanager
def configured(config: LogConfig) -> Iterator[io.StringIO]:
    """Logs configured into a buffer; the loggers as they were afterwards."""
    saved = [(logging.getLogger(name), logging.getLogger(name).handlers[:],
              logging.getLogger(name).level, logging.getLogger(name).propagate)
             for name in TOUCHED]
    buffer = io.StringIO()
    configure_logging(config, buffer)
    try:
        yield buffer
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    with configured(LogConfig(format="json", level="info")) as buffer:
        yield buffer


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    for handler in logging.getLogger("cbv").handlers:
        handler.flush()
    return [json.loads(line) for line in buffer.getvalue().splitlines()]


def test_asyncio_messages_and_warnings_are_json_lines(stream: io.StringIO) -> None:
    event(logging.getLogger("cbv.server"), logging.INFO, "started", where="here")
    try:
        raise ConnectionAbortedError("boom")
    except ConnectionAbortedError as exc:
        logging.getLogger("asyncio").error("Exception in callback", exc_info=exc)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("something old", DeprecationWarning, stacklevel=1)

    logged = lines(stream)
    assert [(entry["logger"], entry["event"]) for entry in logged[:2]] == [
        ("cbv.server", "started"), ("asyncio", "Exception in callback")]
    assert "ConnectionAbortedError: boom" in str(logged[1]["error"])
    assert logged[2]["logger"] == "py.warnings"
    assert "something old" in str(logged[2]["event"])
    assert len(logged) == 3


def test_writes_into_a_socket_already_gone_are_not_logged(stream: io.StringIO) -> None:
    for _ in range(100):
        logging.getLogger("asyncio").warning("socket.send() raised exception.")
    logging.getLogger("asyncio").warning("something else")
    assert [entry["event"] for entry in lines(stream)] == ["something else"]


def test_asyncio_debug_chatter_stays_out(stream: io.StringIO) -> None:
    logging.getLogger("asyncio").debug("Using selector: EpollSelector")
    assert lines(stream) == []


DECIDED: dict[str, object] = {"listener": "policy", "address": "a@b.test", "result": "pass",
                              "cached": True, "answer": "DUNNO"}
OWN = OwnFields("instance", "recipient")
TEXTS = ("1b2c.0", "bob smith@b.test")  # a space: quoted in text lines
LOGGED: dict[str, object] = {**DECIDED, "instance": "1b2c.0", "recipient": "bob smith@b.test",
                             "duration_ms": 0.25}


def write_decided(key: object = None) -> None:
    DECISIONS.write(key, lambda: DECIDED, OWN, TEXTS, 0.00025)


def logged_decision(fields: dict[str, object] = LOGGED) -> None:
    logging.getLogger("cbv.decision").info("decision", extra={FIELDS: fields})


@pytest.mark.parametrize("form", ["json", "text"])
def test_a_decision_written_directly_reads_as_one_logged(form: Literal["json", "text"]) -> None:
    with configured(LogConfig(format=form, level="info")) as buffer:
        assert DECISIONS.wanted()
        write_decided()
        logged_decision()
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    written, logged = buffer.getvalue().splitlines()
    assert as_logged(written, form) == as_logged(logged, form)


@pytest.mark.parametrize("form", ["json", "text"])
def test_shared_fields_encoded_once_read_as_logged(form: Literal["json", "text"]) -> None:
    """A cached decision's fields are encoded once and reused: its lines still read
    exactly as logged ones, the first and the later ones alike."""
    key = object()
    with configured(LogConfig(format=form, level="info")) as buffer:
        for _ in range(2):
            write_decided(key)
        DECISIONS.write(key, lambda: DECIDED, OwnFields(), (), 0.5)
        DECISIONS.write(None, lambda: {}, OwnFields(), (), 0.5)
        logged_decision()
        logged_decision({**DECIDED, "duration_ms": 500.0})
        logged_decision({"duration_ms": 500.0})
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    first, again, shorter, alone, logged, logged_shorter, logged_alone = [
        as_logged(line, form) for line in buffer.getvalue().splitlines()]
    assert first == again == logged
    assert shorter == logged_shorter
    assert alone == logged_alone


def test_a_key_remembers_its_shared_fields_not_an_equal_key_s() -> None:
    first, equal = [1], [1]
    with configured(LogConfig(format="json", level="info")) as buffer:
        for key, answer in ((first, "first"), (equal, "equal"), (first, "not read again")):
            DECISIONS.write(key, lambda answer=answer: {"answer": answer},  # type: ignore[misc]
                            OwnFields(), (), 0.0)
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    assert [json.loads(line)["answer"] for line in buffer.getvalue().splitlines()] == [
        "first", "equal", "first"]


# Fields' names are the code's own: printable, without spaces (text lines do not quote them).
NAMES = st.text(min_size=1, max_size=12).filter(lambda name: name.isprintable()
                                                 and " " not in name)


@pytest.mark.parametrize("form", ["json", "text"])
@given(named=st.lists(NAMES, unique=True, max_size=4)
       .filter(lambda names: "duration_ms" not in names)
       .flatmap(lambda names: st.tuples(st.just(names),
                                        st.lists(st.text(), min_size=len(names),
                                                 max_size=len(names)))),
       shared=st.dictionaries(NAMES, st.text() | st.booleans(), max_size=3),
       seconds=st.floats(min_value=0, max_value=1e9))
def test_any_decision_line_reads_as_the_formatter_writes_it(
        form: Literal["json", "text"], named: tuple[list[str], list[str]],
        shared: dict[str, object], seconds: float) -> None:
    """Whatever its names and texts (a `%`, quotes, spaces), a line made from the templates
    is the line the logging formatter writes of the same fields."""
    names, texts = named
    assume(not set(shared) & {*names, "duration_ms"})
    own = OwnFields(*names)
    with configured(LogConfig(format=form, level="info")) as buffer:
        DECISIONS.write(None, lambda: shared, own, tuple(texts), seconds)
        logged_decision({**shared, **own.as_dict(tuple(texts), seconds)})
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    written, logged = buffer.getvalue().split("\n")[:2]
    assert as_logged(written, form) == as_logged(logged, form)


def test_a_text_line_quotes_a_text_that_would_break_it() -> None:
    with configured(LogConfig(format="text", level="info")) as buffer:
        DECISIONS.write(None, lambda: {"listener": "milter"}, OwnFields("recipient", "client"),
                        ("a\nb@example.test", "tab\there"), 0.0)
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    [line] = buffer.getvalue().splitlines()
    assert line.endswith(
        ' INFO decision listener=milter recipient="a\\nb@example.test" client="tab\\there"'
        " duration_ms=0.000")


def as_logged(line: str, form: str) -> tuple[str, float]:
    """The line without its time, byte for byte, and its duration (the last field): the
    direct line writes three decimals, the formatter as Python writes the float."""
    without_time = line.split('",', 1)[1] if form == "json" else line.split(" ", 1)[1]
    rest, _, duration = without_time.rpartition("duration_ms")
    return rest, float(duration.lstrip('":=').rstrip("}"))


class TimerRecordingLoop(asyncio.SelectorEventLoop):
    """Keeps every timer armed with `call_later`, to see which are armed still."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[asyncio.TimerHandle] = []

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: object,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        timer = super().call_later(delay, callback, *args, context=context)
        self.timers.append(timer)
        return timer


def test_a_batch_handed_over_by_size_takes_its_timer_with_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Left armed, each such timer would hand the batches after it over early, and again
    every `HAND_OVER_AFTER` while lines kept coming: a busy daemon handed over three times
    as many batches as it filled."""
    monkeypatch.setattr(LineHandler, "HAND_OVER_AFTER", 3600.0)
    stream = io.StringIO()
    handler = LineHandler(stream)
    full = "x" * LineHandler.HAND_OVER_SIZE

    async def write() -> list[asyncio.TimerHandle]:
        for number in range(5):
            assert handler.write_line(f"{number} {full}")  # a batch of its own, handed over
        assert handler.write_line("the next batch")
        loop = asyncio.get_running_loop()
        assert isinstance(loop, TimerRecordingLoop)
        return [timer for timer in loop.timers if not timer.cancelled()]

    with asyncio.Runner(loop_factory=TimerRecordingLoop) as runner:
        armed = runner.run(write())
    assert len(armed) == 1  # the next batch's own
    handler.close()
    assert [line[:1] for line in stream.getvalue().splitlines()] == [*"01234", "t"]


def test_a_batch_a_stopped_loop_left_is_handed_over_in_time_by_the_next_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LineHandler, "HAND_OVER_AFTER", 0.01)
    stream = io.StringIO()
    handler = LineHandler(stream)

    async def write(line: str) -> None:
        assert handler.write_line(line)

    asyncio.run(write("left"))  # its loop stops before the batch's time is up

    async def write_and_see_it_written() -> None:
        await write("next")
        await until(lambda: stream.getvalue() == "left\nnext\n", "the batch handed over")

    asyncio.run(write_and_see_it_written())
    handler.close()


class Clock:
    """`time` as the log module reads it, at a time the test sets."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.strftime = time.strftime
        self.gmtime = time.gmtime

    def time(self) -> float:
        return self.now


def test_a_decision_line_carries_the_time_of_the_decision_not_of_its_writing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(1_767_225_600.25)  # 2026-01-01T00:00:00.250Z
    monkeypatch.setattr(logs, "time", clock)
    with configured(LogConfig(format="json", level="info")) as buffer:

        async def decide() -> None:
            DECISIONS.write(object(), lambda: {"listener": "policy"}, OwnFields(), (), 0.0)
            clock.now += 2.5  # the batch is handed over later

        asyncio.run(decide())
        for handler in logging.getLogger("cbv").handlers:
            handler.flush()
    [line] = buffer.getvalue().splitlines()
    assert json.loads(line)["time"] == "2026-01-01T00:00:00.250Z"


async def test_a_decision_line_counts_its_request_s_fields_in_its_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client's long fields are handed over (and the memory they hold let go) as soon as
    they fill a batch, however few lines hold them, not when the batch's time is up."""
    monkeypatch.setattr(LineHandler, "HAND_OVER_AFTER", 3600.0)
    with configured(LogConfig(format="json", level="info")) as buffer:
        DECISIONS.write(object(), lambda: {"listener": "policy"}, OwnFields("recipient"),
                        ("r" * LineHandler.HAND_OVER_SIZE,), 0.0)
        await until(lambda: len(buffer.getvalue()) > LineHandler.HAND_OVER_SIZE,
                    "the line handed over and written")
    [line] = buffer.getvalue().splitlines()
    assert json.loads(line)["recipient"] == "r" * LineHandler.HAND_OVER_SIZE


def test_decisions_follow_the_log_level() -> None:
    with configured(LogConfig(format="json", level="warning")):
        assert not DECISIONS.wanted()


class Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_decisions_reach_another_handler_as_records(stream: io.StringIO) -> None:
    """An application that adds its own handler gets decisions as it gets any record."""
    capture = Captured()
    logging.getLogger("cbv").addHandler(capture)
    write_decided()
    assert [(record.name, record.getMessage()) for record in capture.records] == [
        ("cbv.decision", "decision")]
    assert [entry["event"] for entry in lines(stream)] == ["decision"]


class HeldStream(io.StringIO):
    """A stream whose writes the kernel holds back (a busy disk, a slow pipe reader) until
    `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    def write(self, text: str) -> int:
        self.entered.set()
        if not self.release.wait(timeout=60):  # a loop held by the write never sets it
            raise TimeoutError("the write was held for good")
        return super().write(text)


async def test_a_write_held_back_holds_the_writer_not_the_event_loop() -> None:
    stream = HeldStream()
    handler = LineHandler(stream)
    handler.write_line("first")
    await asyncio.sleep(0)  # the turn is over: its line goes to the writer
    await asyncio.get_running_loop().run_in_executor(None, stream.entered.wait)
    for number in range(100):  # the loop goes on while that write is held
        assert handler.write_line(f"line {number}")
        await asyncio.sleep(0)
    assert stream.getvalue() == ""
    stream.release.set()
    handler.close()
    assert stream.getvalue().splitlines() == ["first", *(f"line {n}" for n in range(100))]


class HeldFile(io.RawIOBase):
    """A file whose writes the kernel holds back until `release` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.entered = threading.Event()
        self.release = threading.Event()

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        self.entered.set()
        if not self.release.wait(timeout=60):  # a loop held by the write never sets it
            raise TimeoutError("the write was held for good")
        chunk = bytes(data)
        self.written += chunk
        return len(chunk)


async def test_a_file_held_back_holds_the_writer_and_gets_every_line_encoded() -> None:
    raw = HeldFile()
    stream = io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8")
    handler = LineHandler(stream)
    handler.write_line("first, from dédé@exemple.test")
    await asyncio.get_running_loop().run_in_executor(None, raw.entered.wait)
    for number in range(100):  # the loop goes on while that write is held
        assert handler.write_line(f"line {number}")
        await asyncio.sleep(0)
    assert raw.written == b""
    raw.release.set()
    handler.close()
    assert raw.written.decode("utf-8").splitlines() == [
        "first, from dédé@exemple.test", *(f"line {n}" for n in range(100))]


def test_a_character_the_stream_cannot_encode_is_escaped_not_lost(tmp_path: Path) -> None:
    path = tmp_path / "cbv.log"
    with path.open("w", encoding="ascii") as stream:
        handler = LineHandler(stream)
        assert handler.write_line("from dédé@exemple.test")
        handler.close()
    assert path.read_text("ascii") == "from d\\xe9d\\xe9@exemple.test\n"


def test_without_an_event_loop_a_line_is_written_at_once() -> None:
    stream = io.StringIO()
    handler = LineHandler(stream)
    assert handler.write_line("now")
    assert stream.getvalue() == "now\n"
    handler.close()


def test_lines_a_stopped_loop_left_come_before_the_next_ones() -> None:
    stream = io.StringIO()
    handler = LineHandler(stream)

    async def serve() -> None:
        handler.write_line("decided")

    asyncio.run(serve())
    assert handler.write_line("stopped")
    assert stream.getvalue().splitlines() == ["decided", "stopped"]
    handler.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12)


@given(st.dictionaries(st.text(), JSON_VALUES, max_size=6))
def test_a_line_s_fields_encode_as_json_dumps_writes_them(fields: dict[str, object]) -> None:
    assert encode_json(fields) == json.dumps(fields, ensure_ascii=False, separators=(",", ":"),
                                       default=str)


def test_a_value_json_cannot_carry_is_written_as_its_text() -> None:
    assert encode_json({"at": Path("/var/log")}) == '{"at":"/var/log"}'
