"""Logs as admins read them: one line per event, JSON when a machine reads stderr."""

from __future__ import annotations

import asyncio
import io
import json
import json.encoder as json_encoder
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache, partial
from operator import attrgetter
from typing import TextIO

from cbv.config import LogConfig
from cbv.identity_memo import IdentityMemo

LOGGER = "cbv"
DECISION_LOGGER = "cbv.decision"
FIELDS = "cbv_fields"  # the `extra` key that carries an event's structured fields
_HANDLER_NAME = "cbv-serve"
_FOREIGN = ("asyncio", "py.warnings")
_WRITE_AFTER_LOSS = "socket.send() raised exception."


def fields_of(record: logging.LogRecord) -> dict[str, object]:
    found = getattr(record, FIELDS, None)
    return found if isinstance(found, dict) else {}


@lru_cache(maxsize=4)
def _second(epoch_second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))


_MILLISECONDS = tuple(f".{millisecond:03d}Z" for millisecond in range(1000))


def _timestamp(created: float) -> str:
    """UTC with milliseconds (as a LogRecord's `msecs`); a busy daemon logs many lines in
    the same second. Half the time of formatting the milliseconds each time."""
    second = int(created)
    return _second(second) + _MILLISECONDS[int((created - second) * 1000)]


def _line_encoder() -> Callable[[object], str]:
    """JSON as `json.dumps(ensure_ascii=False, separators=(",", ":"), default=str)` writes
    it. Built once: `dumps` builds an encoder for every call with options, and
    `JSONEncoder.encode` its C scanner for every call (1.9 µs for a decision's own fields,
    1.1 µs with the scanner built once). Without the cycle check: a line's fields are flat."""
    scanner: Callable[..., Callable[[object, int], Iterable[str]]] | None = getattr(
        json_encoder, "c_make_encoder", None)  # not in typeshed
    if scanner is None:  # a Python without the C accelerator
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode
    encode = scanner(None, str, json_encoder.encode_basestring, None, ":", ",",
                     False, False, True)
    return lambda value: "".join(encode(value, 0))


encode_json = _line_encoder()


@lru_cache(maxsize=256)
def _head(level: str, logger: str, message: str) -> str:
    """What follows the time: the same few combinations, over and over."""
    name, said = encode_json(logger), encode_json(message)
    return f'"level":"{level.lower()}","logger":{name},"event":{said}'


_DECISION_HEAD = _head("INFO", DECISION_LOGGER, "decision")
_TEXT_DECISION_HEAD = "INFO decision"


def json_fields(fields: dict[str, object]) -> str:
    """The fields as a JSON line carries them after its head: `"name":value,...`."""
    return encode_json(fields)[1:-1]


def json_line(created: float, level: str, logger: str, message: str,
              fields: dict[str, object]) -> str:
    head = f'{{"time":"{_timestamp(created)}",{_head(level, logger, message)}'
    encoded = json_fields(fields)
    return f"{head},{encoded}}}" if encoded else f"{head}}}"


def _text_value(text: str) -> str:
    """Quoted where a reader could not tell where it ends, or it would break the line."""
    return json.dumps(text) if not text or " " in text or not text.isprintable() else text


def text_fields(fields: dict[str, object]) -> str:
    parts = []
    for name, value in fields.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        parts.append(f"{name}={_text_value(text)}")
    return " ".join(parts)


def text_line(created: float, level: str, logger: str, message: str,
              fields: dict[str, object]) -> str:
    head = f"{_timestamp(created)} {level} {message}"
    encoded = text_fields(fields)
    return f"{head} {encoded}" if encoded else head


class OwnFields:
    """The fields a listener adds to each of its decision lines, after the decision's: the
    same names every time, text values, then the milliseconds the request took (three
    decimals). Its line in each format is a short `%` template made once, completed by the
    time, the decision's fields (encoded once for a cached decision) and the request's own
    values. The long part goes in as a value, copied whole: `%` scans its template a
    character at a time."""

    __slots__ = ("json", "names", "text")

    def __init__(self, *texts: str) -> None:
        self.names = (*texts, "duration_ms")
        named = [(_percent_kept(name), "%s") for name in texts] + [("duration_ms", "%.3f")]
        own = ",".join(f"{encode_json(name)}:{value}" for name, value in named)
        self.json = f'{{"time":"%s",%s{own}}}'
        self.text = "%s %s" + " ".join(f"{name}={value}" for name, value in named)

    def as_dict(self, texts: tuple[str, ...], seconds: float) -> dict[str, object]:
        return dict(zip(self.names, (*texts, round(seconds * 1000, 3)), strict=True))


def _percent_kept(text: str) -> str:
    return text.replace("%", "%%")


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How a decision's line is made in one format: its shared fields encoded once, ahead
    of the request's own, and the line's template."""

    shared: Callable[[dict[str, object]], str]  # the head and the shared fields, separated
    text: Callable[[str], str]  # a request's own text, as a line carries it
    template: Callable[[OwnFields], str]


def _json_shared(fields: dict[str, object]) -> str:
    return f"{_DECISION_HEAD},{json_fields(fields)}," if fields else f"{_DECISION_HEAD},"


def _text_shared(fields: dict[str, object]) -> str:
    if fields:
        return f"{_TEXT_DECISION_HEAD} {text_fields(fields)} "
    return f"{_TEXT_DECISION_HEAD} "


JSON_LINES = LineFormat(_json_shared, json_encoder.encode_basestring, attrgetter("json"))
TEXT_LINES = LineFormat(_text_shared, _text_value, attrgetter("text"))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = fields_of(record)
        if record.exc_info:
            fields = {**fields, "error": self.formatException(record.exc_info)}
        return json_line(record.created, record.levelname, record.name, record.getMessage(),
                         fields)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = text_line(record.created, record.levelname, record.name, record.getMessage(),
                         fields_of(record))
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class LineHandler(logging.StreamHandler[TextIO]):
    """One line per record. While an event loop runs, lines are handed in batches (every
    50 ms, or 256 KB) to a thread of its own, which writes and flushes them: a write the
    kernel holds back (dirty pages on a busy disk, a slow reader of a pipe) holds that
    thread, never the event loop. (The policy listener's p99 at half its maximum rate was
    8-14 ms in four of eight runs of `bench policy` on this machine's disk before, 1.1-2.5
    ms in five of six after.) Nothing is dropped: past `MAX_PENDING` bytes not yet
    written, the loop waits for the writer. Without a running loop (start-up, exit, tests)
    a line is written and flushed at once, after any the stopped loop left.

    A batch is joined and encoded in the loop, and the thread only writes the bytes to the
    stream's binary buffer: while that thread ran Python (the text layer's encoding), the
    event loop waited for the interpreter lock at every system call it made, and a cached
    policy decision cost 50-62 µs of the daemon's CPU instead of 44-47 (logging to
    /dev/null; 33-35 µs without the decision line)."""

    HAND_OVER_AFTER = 0.05  # seconds: a line waits at most this long for the writer
    # Characters: a busy daemon's lines go sooner, in batches. Each batch costs the event
    # loop a wait for the interpreter lock while the thread takes it: at 20,000 decisions a
    # second, 64 KB batches made 0.10 context switches per decision, 256 KB 0.03.
    HAND_OVER_SIZE = 256 * 1024
    MAX_PENDING = 4 * 1024 * 1024

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._batch: list[str] = []  # lines not yet handed to the writer
        self._batch_size = 0
        self._batcher = 0  # the thread whose event loop batches the lines
        self._writing = 0  # bytes (or characters) handed to the writer, not yet written
        self._counting = threading.Lock()  # `_writing` changes in both threads
        # The stream's own lock, not the handler's: `handle()` takes that one in the event
        # loop for every record, and a write held back by the kernel must not hold it.
        self._stream_lock = threading.Lock()
        self._last: Future[None] | None = None
        self._writer: ThreadPoolExecutor | None = None
        self._due: asyncio.TimerHandle | None = None  # the batch's hand-over by time
        self._timed: asyncio.AbstractEventLoop | None = None  # the loop `_due` is on

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if not self.write_line(line):
            self.handleError(record)

    def write_line(self, line: str) -> bool:
        """Write a line formatted already, as `emit` writes a record's; False if the
        stream refused it."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            if self._batch and threading.get_ident() == self._batcher:
                return self._drain(line)  # the loop that batched those has stopped
            return self._write_now([line])
        self._batch.append(line)
        self._batch_size += len(line)
        if self._timed is not loop:  # a new batch, or one a stopped loop left
            self._batcher = threading.get_ident()
            self._timed = loop
            self._due = loop.call_later(self.HAND_OVER_AFTER, self._hand_over_due)
        if self._batch_size > self.HAND_OVER_SIZE:
            self._stop_timer()
            self._hand_over()
        return True

    def flush(self) -> None:
        """Everything logged so far written and flushed, when no event loop runs (at exit,
        as logging does); while one runs, the lines are on their way already."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._drain()

    def close(self) -> None:
        self._drain()
        if self._writer is not None:
            self._writer.shutdown(wait=True)
            self._writer = None
        super().close()

    def _drain(self, *more: str) -> bool:
        """What the writer has, then the batch and `more`, written before this returns."""
        self._wait_for_writer()
        return self._write_now([*self._take_batch(), *more])

    def _take_batch(self) -> list[str]:
        lines, self._batch, self._batch_size = self._batch, [], 0
        return lines

    def _stop_timer(self) -> None:
        """A batch handed over by size takes its timer with it. Left armed, each such timer
        handed the batches after it over early, and again every 50 ms while lines kept
        coming: a busy daemon handed over three times as many batches as it filled, each
        a write and a wait of the writer for the interpreter lock (docs/benchmarks.md)."""
        due, self._due, self._timed = self._due, None, None
        if due is not None:
            due.cancel()

    def _hand_over_due(self) -> None:
        self._due, self._timed = None, None
        self._hand_over()

    def _hand_over(self) -> None:
        lines = self._take_batch()
        if not lines:
            return
        data = self._encoded(lines)
        size = len(data)
        with self._counting:
            self._writing += size
        if self._writer is None:
            self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cbv-log")
        self._last = self._writer.submit(self._write_handed, data, size)
        if self._writing > self.MAX_PENDING:  # by size or by time: the bound holds for both
            self._wait_for_writer()

    def _encoded(self, lines: list[str]) -> bytes | str:
        """The lines as the stream's binary buffer takes them, a character its encoding
        lacks escaped rather than the line lost; as text for a stream without one (in
        memory)."""
        text = self.terminator.join(lines) + self.terminator
        stream = self.stream
        if not isinstance(getattr(stream, "buffer", None), io.BufferedIOBase):
            return text
        errors = stream.errors if stream.errors not in (None, "strict") else "backslashreplace"
        return text.encode(stream.encoding, errors)

    def _write_handed(self, data: bytes | str, size: int) -> None:
        self._write(data)
        with self._counting:
            self._writing -= size

    def _wait_for_writer(self) -> None:
        last, self._last = self._last, None
        if last is not None:
            last.result()

    def _write_now(self, lines: list[str]) -> bool:
        return not lines or self._write(self._encoded(lines))

    def _write(self, data: bytes | str) -> bool:
        stream = self.stream
        with self._stream_lock:
            try:
                if isinstance(data, str):
                    stream.write(data)
                    stream.flush()
                else:
                    stream.flush()  # whatever the text layer holds goes first
                    stream.buffer.write(data)
                    stream.buffer.flush()
            except (OSError, ValueError):  # the stream is gone: as logging does
                return False
        return True


SHARED_REMEMBERED = 4096  # decisions whose shared fields are kept encoded; all forgotten past it


class DecisionLog:
    """The line per decision, by far the daemon's most frequent: written straight into the
    stream of the handler `configure_logging` set up, as its formatter would write the
    line, but without building a LogRecord or going through the logger's handler chain
    (together about 11 µs of a cached decision's 80). The line is one `%` format of the
    listener's template (`OwnFields`), made as the request is answered; a cached
    decision's fields are encoded once. The handler hands the lines over in batches to a
    thread of its own, and writes what is left at exit as logging does.

    The level still decides (`wanted()`). Where that handler is not the only one of the
    "cbv" logger (an application embedding cbv, tests capturing records), or before
    `configure_logging`, each decision goes through logging like any other line."""

    def __init__(self) -> None:
        self._cbv = logging.getLogger(LOGGER)
        self._logger = logging.getLogger(DECISION_LOGGER)
        self._handler: LineHandler | None = None
        self._form = JSON_LINES
        self._shared: IdentityMemo[object, str] = IdentityMemo(SHARED_REMEMBERED)
        # Whether the level lets decisions through: asked for every decision, so without a
        # frame of its own.
        self.wanted: Callable[[], bool] = partial(self._logger.isEnabledFor, logging.INFO)

    def use(self, handler: LineHandler, form: LineFormat) -> None:
        self._handler, self._form = handler, form
        self._shared.clear()

    def write(self, key: object, shared: Callable[[], dict[str, object]], own: OwnFields,
              texts: tuple[str, ...], seconds: float) -> None:
        """One decision's line, once `wanted()` said so: the `shared` fields, then `own`'s
        names with `texts` and `seconds`. A cached decision is the same object for every
        request that finds it: with it as `key` (and `shared` the same fields for every
        line written with it) they are encoded once, not per line; with None, every time."""
        handler, handlers = self._handler, self._cbv.handlers
        if (handler is not None and len(handlers) == 1 and handlers[0] is handler
                and not self._logger.handlers):
            form = self._form
            encoded = self._shared.by_id.get(id(key))
            if encoded is None:
                encoded = form.shared(shared())
                if key is not None:
                    self._shared.remember(key, encoded)
            if handler.write_line(form.template(own) % (
                    _timestamp(time.time()), encoded, *map(form.text, texts), seconds * 1000)):
                return
        self._logger.info("decision", extra={FIELDS: {**shared(), **own.as_dict(texts, seconds)}})


DECISIONS = DecisionLog()


def configure_logging(config: LogConfig, stream: TextIO | None = None) -> None:
    """Idempotent, so a reload can change the level or format.

    The daemon logs every decision, so what the formats never show is not gathered:
    the caller's file and line, thread and process names (the logging HOWTO's
    "Optimization" settings).
    """
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    out = stream or sys.stderr
    json_lines = config.format == "json" or (config.format == "auto" and not out.isatty())
    handler = LineHandler(out)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    logger = logging.getLogger(LOGGER)
    _use_handler(logger, handler)
    DECISIONS.use(handler, JSON_LINES if json_lines else TEXT_LINES)
    logger.setLevel(config.level.upper())
    # The event loop's own messages and Python's warnings in the same format, so that in
    # JSON mode every line on stderr is JSON.
    for name in _FOREIGN:
        foreign = logging.getLogger(name)
        _use_handler(foreign, handler)
        foreign.setLevel(max(logging.WARNING, logger.level))
    handler.addFilter(_drop_noise)
    logging.captureWarnings(True)


def _use_handler(logger: logging.Logger, handler: logging.Handler) -> None:
    for old in [h for h in logger.handlers if h.get_name() == _HANDLER_NAME]:
        logger.removeHandler(old)
    logger.addHandler(handler)
    logger.propagate = False


def _drop_noise(record: logging.LogRecord) -> bool:
    """asyncio's "socket.send() raised exception." comes once per write into a socket
    already gone, thousands of times for one pipelining client that resets; the listener
    logs that client's going once itself."""
    return not (record.name == "asyncio" and record.msg == _WRITE_AFTER_LOSS)


def event(logger: logging.Logger, level: int, message: str, **fields: object) -> None:
    """One log line: a short message and its structured fields."""
    if logger.isEnabledFor(level):
        logger.log(level, message, extra={FIELDS: fields})


def failure(logger: logging.Logger, message: str, error: BaseException, **fields: object
            ) -> None:
    """An error of cbv's own, with its traceback: something to report, not to tune."""
    fields["error"] = f"{type(error).__name__}: {error}"
    logger.error(message, exc_info=error, extra={FIELDS: fields})
