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
import gc
import gzip
import lzma
import sys
import time
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path
from typing import BinaryIO

import numpy as np
import orjson

from .config import Settings
from .errors import InputError, Rejected
from .ingest.values import parse_ts
from .monitor.reference import Profiles
from .pipeline import BatchResult, Pipeline, batch_size, collector_paused
from .types import TS_END, TS_MIN, Message

STDIN = "-"
CHUNK = 4096                          # lines a file is read and keyed by, when merged
_PARSE_LINES = 1024                   # lines parsed by one orjson call: their objects stay in
                                      # the CPU caches while their times are read
_NUMBERS = {float, int}                     # types of a time given as epoch seconds (not bool)
_COLLECT_EVERY = 64                   # batches between the replay's collections of cyclic garbage
_READ_BYTES = 1 << 16                 # bytes a file is read by
_BOM = b"\xef\xbb\xbf"                    # UTF-8 byte-order mark
_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}   # by file suffix
# what reading a damaged file raises (BadGzipFile is an OSError; truncated archives: EOFError)
_READ_ERRORS = (OSError, EOFError, lzma.LZMAError)


def read_chunks(path: str, size: int = CHUNK) -> Iterator[list[Message]]:
    """The messages of a JSONL file, ``size`` lines at a time: one per line (without its
    line ending or a leading UTF-8 byte-order mark), offset = line index.
    ``-`` is standard input; .gz, .bz2 and .xz files are decompressed. Raises InputError when
    the file cannot be read to its end, after the lines read whole before the fault."""
    for start, lines in _read_lines(path, size):
        yield _messages(lines, path, start)


def _read_lines(path: str, size: int) -> Iterator[tuple[int, list[bytes]]]:
    """:func:`read_chunks`'s lines as (offset of the first, lines)."""
    try:
        fh = (open(0, "rb", closefd=False) if path == STDIN
              else _OPENERS.get(Path(path).suffix.lower(), open)(path, "rb"))
    except _READ_ERRORS as exc:
        raise _unreadable(path, exc) from None
    fault = None
    start = 0
    rest: list[bytes] = []             # the pieces of a line begun in the blocks read last
    lines: list[bytes] = []
    cr = False                          # a carriage return read (Windows line endings?)
    with fh:
        while True:
            try:
                # one read of the file a block (each line copied once, by the split); a
                # fault loses no line read whole before it
                block = fh.read1(_READ_BYTES)
            except _READ_ERRORS as exc:
                fault, block = _unreadable(path, exc), b""
            if not block:
                if rest and fault is None:
                    lines.append(b"".join(rest))
                break
            cr = cr or b"\r" in block
            parts = block.split(b"\n")
            if rest:                    # (a long line's pieces are joined once)
                rest.append(parts[0])
                parts[0] = b"".join(rest)
            tail = parts.pop()
            rest = [tail] if tail else []
            lines += parts
            while len(lines) >= size:
                yield start, _cleaned(lines[:size], start, cr)
                start += size
                del lines[:size]
    for s in range(0, len(lines), size):
        yield start + s, _cleaned(lines[s:s + size], start + s, cr)
    if fault is not None:
        raise fault


def _unreadable(path: str, exc: BaseException) -> InputError:
    return InputError(f"{path}: cannot be read to its end ({exc})")


def _cleaned(lines: list[bytes], start: int, cr: bool) -> list[bytes]:
    """The lines from offset ``start`` on without the first line's UTF-8 byte-order mark
    (files saved by some Windows tools) and, if ``cr``, the carriage returns that end a line."""
    if start == 0 and lines and lines[0].startswith(_BOM):
        lines[0] = lines[0][len(_BOM):]
    return [line.rstrip(b"\r") for line in lines] if cr else lines


def _messages(lines: list[bytes], path: str, start: int, docs: list | None = None) -> list[Message]:
    """The lines as messages from offset ``start`` on, with their parsed documents if given
    (decoding takes them instead of parsing the lines again)."""
    with collector_paused():            # (acyclic tuples that live on: see Pipeline.process)
        return list(map(tuple.__new__, repeat(Message), zip(
            lines, repeat(path), repeat(0), range(start, start + len(lines)), repeat(0.0),
            repeat(None), repeat(None), repeat(None) if docs is None else docs)))


def _ts_key(line: bytes, fmt: str = "streamdrift") -> float:
    """The line's event time (epoch seconds or RFC 3339, as decoding reads it), or -inf.
    In a KServe CloudEvent it is the ``time`` attribute, in an OIP record ``parameters.ts``."""
    try:
        doc = orjson.loads(line)
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


def _ts_keys(lines: list[bytes], fmt: str) -> tuple[np.ndarray, list | None]:
    """:func:`_ts_key` of each line, and the lines' JSON documents (None: not parsed;
    all None: none was): lines parsed _PARSE_LINES at a time by one orjson call, plain
    numbers as times at once, line by line what is not (RFC 3339 texts, other formats)."""
    if len(lines) > _PARSE_LINES:
        parts = [_ts_keys(lines[i:i + _PARSE_LINES], fmt) for i in range(0, len(lines), _PARSE_LINES)]
        if all(d is None for _, d in parts):
            return np.concatenate([k for k, _ in parts]), None
        docs = [doc for k, d in parts for doc in (d if d is not None else repeat(None, k.size))]
        return np.concatenate([k for k, _ in parts]), docs
    keys = np.full(len(lines), -np.inf)
    docs = None
    if fmt == "streamdrift" and lines:
        try:
            docs = orjson.loads(b"[" + b",".join(lines) + b"]")
        except orjson.JSONDecodeError:
            docs = None
        if docs is not None and len(docs) != len(lines):   # (a line holding "1,2" parses as two)
            docs = None
    if docs is None:
        return np.array([_ts_key(line, fmt) for line in lines], dtype=np.float64), None
    raw = list(map(dict.get, docs, repeat("ts"))) if set(map(type, docs)) == {dict} \
        else [d.get("ts") if type(d) is dict else None for d in docs]
    if set(map(type, raw)) <= _NUMBERS:                # the common chunk: every time a number
        number, t = None, np.array(raw, dtype=np.float64)
    else:
        number = np.array([type(v) in _NUMBERS for v in raw], dtype=bool)
        t = np.array([v for v in raw if type(v) in _NUMBERS], dtype=np.float64)
    times = np.where((t >= TS_MIN) & (t < TS_END), t, -np.inf)        # (else not a time)
    if number is None:
        return times, docs
    keys[number] = times
    for i in np.flatnonzero(~number).tolist():
        if raw[i] is not None:
            keys[i] = _ts_key(lines[i], fmt)
    return keys, docs


def _despike(keys: np.ndarray, after: float | None, last: float) -> tuple[np.ndarray, float]:
    """A file's time keys with a line whose time is past the next line's given the time of
    its neighbours (the next line's, or the last readable one's if later): one line far
    ahead (a skewed clock) would otherwise hold the rest of its file back in the merge until
    the other file ran out. In-order lines and unreadable ones (-inf) are unchanged.
    ``after``: the key of the line after these (None: none); ``last``: the key given to the
    last readable line before them. Returns the keys and the new ``last``."""
    nxt = np.append(keys[1:], -np.inf if after is None else after)
    spikes = np.flatnonzero((keys != -np.inf) & (nxt != -np.inf) & (keys > nxt))
    readable = keys != -np.inf
    if spikes.size:
        keys = keys.copy()
        # the readable line before each line (-1: none in this chunk)
        before = np.maximum.accumulate(np.where(readable, np.arange(keys.size), -1))
        for i in spikes.tolist():        # (rare: skewed clocks)
            j = before[i - 1] if i else -1
            keys[i] = max(keys[j] if j >= 0 else last, nxt[i])
    if readable.any():
        last = float(keys[np.flatnonzero(readable)[-1]])
    return keys, last


def _keyed(path: str, fmt: str) -> Iterator[tuple[np.ndarray, list[Message]]]:
    """A file's lines chunk by chunk with their merge keys: despiked event times, raised to
    the file's running maximum (the order a merge by time puts the file's lines in). Raises
    InputError after the lines read before the fault."""
    chunks = _read_lines(path, CHUNK)
    held: list[Message] = []            # the last line read: its key waits for the next line's
    held_key = np.zeros(0)
    last = top = -np.inf
    fault = None
    while True:
        try:
            start, lines = next(chunks, (0, []))
        except InputError as exc:
            start, lines, fault = 0, [], exc
        with collector_paused():        # (the parsed lines would be rescanned: see Pipeline.process)
            chunk_keys, docs = _ts_keys(lines, fmt)
            chunk = _messages(lines, path, start, docs)
        keys = np.concatenate([held_key, chunk_keys])
        msgs = held + chunk
        if chunk:
            held, held_key = msgs[-1:], keys[-1:]
            keys, after, msgs = keys[:-1], float(keys[-1]), msgs[:-1]
        else:
            after = None
        if msgs:
            keys, last = _despike(keys, after, last)
            keys = np.maximum(np.maximum.accumulate(keys), top)
            top = float(keys[-1])
            yield keys, msgs
        if not chunk:
            break
    if fault is not None:
        raise fault


def _ordered(a: tuple[np.ndarray, list[Message]], b: tuple[np.ndarray, list[Message]]) -> list[Message]:
    """Two runs of (non-decreasing keys, messages) as one in key order; ``a``'s first on ties."""
    keys = np.concatenate([a[0], b[0]])
    kind = np.repeat([0, 1], [a[0].size, b[0].size])
    msgs = a[1] + b[1]
    return [msgs[i] for i in np.lexsort((np.arange(keys.size), kind, keys)).tolist()]


def merged(events: str, labels: str | None, fmt: str = "streamdrift") -> Iterator[list[Message]]:
    """The lines of the events file (in format ``fmt``) and of the labels file, merged by
    event time, in runs (lists) of consecutive lines: each file in its order, a line going
    before the other file's first line whose time is later than the latest time of its own
    file so far (events first on ties), as a merge of the two files' lines one by one would
    have it."""
    if labels is None:
        yield from read_chunks(events)
        return
    ev, lb = _keyed(events, fmt), _keyed(labels, "streamdrift")
    a = b = None
    try:
        a = next(ev, None)
        b = next(lb, None)
        while a is not None and b is not None:
            # what sorts before the end of either buffer is final: that buffer goes whole
            if a[0][-1] <= b[0][-1]:
                cut = int(np.searchsorted(b[0], a[0][-1], side="left"))
                yield _ordered(a, (b[0][:cut], b[1][:cut]))
                a, b = None, (b[0][cut:], b[1][cut:]) if cut < b[0].size else None
                a = next(ev, None)
                b = b if b is not None else next(lb, None)
            else:
                cut = int(np.searchsorted(a[0], b[0][-1], side="right"))
                yield _ordered((a[0][:cut], a[1][:cut]), b)
                a, b = (a[0][cut:], a[1][cut:]) if cut < a[0].size else None, None
                b = next(lb, None)
                a = a if a is not None else next(ev, None)
    except InputError:
        # what was read of both files still goes, in order; then the fault
        yield _ordered(a or (np.zeros(0), []), b or (np.zeros(0), []))
        raise
    for rest, it in ((a, ev), (b, lb)):
        while rest is not None:
            yield rest[1]
            rest = next(it, None)


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
    size = settings.kafka.batch_size
    n_lines = n_events = n_alerts = n_dead = 0
    t0 = time.perf_counter()
    batch: list[Message] = []

    def flush(result: BatchResult) -> BatchResult:
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
        return result

    fault = None
    last_event: Message | None = None
    n_batches = 0
    # the collector paused for the whole loop: the merge holds the parsed lines of the next
    # batches, which each young collection between batches would scan again; the cyclic
    # garbage a batch leaves (a few closures) is collected every _COLLECT_EVERY batches
    with collector_paused():
        try:
            for run in merged(events, labels, fmt):
                n_lines += len(run)
                batch += run
                start = 0                   # (whole batches are sliced off; the rest kept once a run)
                while len(batch) - start >= size:
                    part = batch[start:start + size]
                    start += size
                    last_event = _last_of(part, events, last_event)
                    done = flush(pipeline.process(part))
                    size = batch_size(settings.kafka, len(pipeline.models), len(part), done.n_events)
                    n_batches += 1
                    if n_batches % _COLLECT_EVERY == 0:
                        gc.collect()
                del batch[:start]
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
