"""`streamdrift replay`: the run pipeline over JSONL files, no Kafka.

Each line of EVENTS.jsonl is one message; ``at.topic`` of an alert is the file's path as
given and ``at.offset`` the 0-based line index. Files ending in .gz, .bz2 or .xz are read
decompressed; ``-`` reads standard input (one of the two inputs at most). A file that cannot
be read to its end (e.g. a truncated archive) stops the replay with exit code 2 and a message
naming it, after the lines read before the fault were processed. With --labels, events and
labels are merged in event-time order (``ts``, or a KServe CloudEvent's ``time``, an OIP
record's ``parameters.ts``; events first on ties; lines without a readable time keep their
place relative to their own file, and a line whose time is past the next line's goes at its
neighbours' time). At the end of the file, adapter events still awaiting
their pair go on alone. Bad lines become dead-letter JSON lines
{"source", "offset", "reason", "detail", "value": base64 of the raw line}.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import heapq
import lzma
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from .config import Settings
from .errors import InputError, Rejected
from .ingest.values import parse_ts
from .monitor.reference import Profiles
from .pipeline import BatchResult, Pipeline
from .types import Message

STDIN = "-"
_BOM = b"\xef\xbb\xbf"                    # UTF-8 byte-order mark
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}   # by file suffix
# what reading a damaged file raises (BadGzipFile is an OSError; truncated archives: EOFError)
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError)


def read_lines(path: str) -> Iterator[Message]:
    """Messages of a JSONL file: one per line (without its line ending or a leading UTF-8
    byte-order mark), offset = line index.
    ``-`` is standard input; .gz, .bz2 and .xz files are decompressed. Raises InputError when
    the file cannot be read to its end (the lines before the fault were yielded)."""
    try:
        with (open(0, "rb", closefd=False) if path == STDIN
              else _OPENERS.get(Path(path).suffix.lower(), open)(path, "rb")) as fh:
            for i, line in enumerate(fh):
                if i == 0 and line.startswith(_BOM):    # (files saved by some Windows tools)
                    line = line[len(_BOM):]
                yield Message(line.rstrip(b"\r\n"), path, 0, i, 0.0)
    except _READ_ERRORS as exc:
        raise InputError(f"{path}: cannot be read to its end ({exc})") from None


def _ts_key(msg: Message, fmt: str = "streamdrift") -> float:
    """The line's event time (epoch seconds or RFC 3339, as decoding reads it), or -inf.
    In a KServe CloudEvent it is the ``time`` attribute, in an OIP record ``parameters.ts``."""
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError:
        return float("-inf")
    if not isinstance(doc, dict):
        return float("-inf")
    if fmt == "kserve":
        ts = doc.get("time")
    elif fmt == "oip":
        ts = doc["parameters"].get("ts") if isinstance(doc.get("parameters"), dict) else None
    else:
        ts = doc.get("ts")
        if isinstance(ts, list):                # a columnar message: its first row's time
            ts = next((t for t in ts if t is not None), None)
    if ts is None:
        return float("-inf")
    try:
        return parse_ts(ts)
    except Rejected:                    # not a time: decoding dead-letters the line
        return float("-inf")


def merged(events: str, labels: str | None, fmt: str = "streamdrift") -> Iterator[Message]:
    """The lines of the events file (in format ``fmt``) and of the labels file, merged by
    event time."""
    if labels is None:
        yield from read_lines(events)
        return
    # (ts, 0 for events / 1 for labels, line) gives "events first on ties"
    ev = _despiked((_ts_key(m, fmt), 0, m.offset, m) for m in read_lines(events))
    lb = _despiked((_ts_key(m), 1, m.offset, m) for m in read_lines(labels))
    for *_, m in heapq.merge(ev, lb, key=lambda t: t[:3]):
        yield m


def _despiked(keyed: Iterator[tuple[float, int, int, Message]]
              ) -> Iterator[tuple[float, int, int, Message]]:
    """A file's (time, kind, line, message) with a line whose time is past the next line's
    given the time of its neighbours (the next line's, or the last one's if later): one line
    far ahead (a skewed clock) would otherwise hold the rest of its file back in the merge
    until the other file ran out. In-order lines and unreadable ones (-inf) are unchanged."""
    last = float("-inf")                 # the last readable line's key
    pending = None
    for item in keyed:
        if pending is not None:
            t = pending[0]
            if t != float("-inf") and item[0] != float("-inf") and t > item[0]:
                pending = (max(last, item[0]), *pending[1:])
            if pending[0] != float("-inf"):
                last = pending[0]
            yield pending
        pending = item
    if pending is not None:
        yield pending


def _last_of(batch: list[Message], events: str, last: Message | None) -> Message | None:
    """The batch's last message from the events file, else ``last``."""
    return next((m for m in reversed(batch) if m.topic == events), last)


def input_problem(events: str, labels: str | None) -> str | None:
    """Why these inputs cannot be replayed, or None."""
    for path in (events, labels):
        if path is not None and path != STDIN and not Path(path).is_file():
            return f"{path}: no such file"
    if events == labels == STDIN:
        return "events and labels cannot both be standard input"
    return None


def replay(settings: Settings, events: str, labels: str | None, out: BinaryIO,
           dead: BinaryIO | None, err=sys.stderr, fmt: str = "streamdrift",
           recorder=None, profiles: Profiles | None = None) -> int:
    """Replay the files through one pipeline; returns the exit code (0, or 2 for an input
    that is missing or cannot be read to its end). ``recorder``, if given, is attached to the
    pipeline and gets every alert (a backtest report's recorder)."""
    problem = input_problem(events, labels)
    if problem is not None:
        print(f"streamdrift replay: {problem}", file=err)
        return 2
    pipeline = Pipeline(settings, label_topics={labels} if labels else set(), formats={events: fmt},
                        profiles=profiles)
    pipeline.recorder = recorder
    batch_size = settings.kafka.batch_size
    n_lines = n_events = n_alerts = n_dead = 0
    t0 = time.perf_counter()
    batch: list[Message] = []

    def flush(result: BatchResult) -> None:
        nonlocal n_events, n_alerts, n_dead
        n_events += result.n_events
        for alert in result.alerts:
            out.write(orjson.dumps(alert) + b"\n")
        if recorder is not None:
            recorder.alerts.extend(result.alerts)
            recorder.versions.extend(result.versions)
        n_alerts += len(result.alerts)
        for dl in result.dead_letters:
            n_dead += 1
            if dead is not None:
                dead.write(orjson.dumps({"source": dl.message.topic, "offset": dl.message.offset,
                                         "reason": dl.reason, "detail": dl.detail,
                                         "value": base64.b64encode(dl.message.value).decode()}) + b"\n")

    fault = None
    last_event: Message | None = None
    try:
        for msg in merged(events, labels, fmt):
            n_lines += 1
            batch.append(msg)
            if len(batch) >= batch_size:
                last_event = _last_of(batch, events, last_event)
                flush(pipeline.process(batch))
                batch.clear()
    except InputError as exc:
        fault = exc                     # what was read before it is still processed
    if batch:
        last_event = _last_of(batch, events, last_event)
        flush(pipeline.process(batch))
    if last_event is not None:          # adapters: what still awaits its pair goes on alone
        flush(pipeline.end_of_input(last_event))
    out.flush()
    if recorder is not None:
        recorder.scores = {m: perf.estimate_score() for m, perf in pipeline.performance.items()
                           if perf.estimate_score()[2]}
    elapsed = time.perf_counter() - t0
    rate = n_events / elapsed if elapsed > 0 else 0.0
    print(f"streamdrift replay: {n_lines} lines, {n_events} events, {n_alerts} alerts, "
          f"{n_dead} dead letters, {pipeline.n_labels} labels in {elapsed:.2f}s "
          f"({rate:,.0f} events/s)", file=err)
    if fault is not None:
        print(f"streamdrift replay: {fault}", file=err)
        return 2
    return 0
