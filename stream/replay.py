"""`streamdrift replay`: the run pipeline over JSONL files, no Kafka.

Each line of EVENTS.jsonl is one message; ``at.topic`` of an alert is the file's path as
given and ``at.offset`` the 0-based line index. With --labels, events and labels are merged
in ``ts`` order (events first on ties; lines without a readable ts keep their place relative
to their own file). Bad lines become dead-letter JSON lines
{"source", "offset", "reason", "detail", "value": base64 of the raw line}.
"""

from __future__ import annotations

import base64
import heapq
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import orjson

from .config import Settings
from .events import Message
from .pipeline import Pipeline


def read_lines(path: str) -> Iterator[Message]:
    """Messages of a JSONL file: one per line (without its line ending), offset = line index."""
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            yield Message(line.rstrip(b"\r\n"), path, 0, i, 0.0)


def _ts_key(msg: Message) -> float:
    try:
        doc = orjson.loads(msg.value)
        ts = doc.get("ts") if isinstance(doc, dict) else None
        return float(ts) if isinstance(ts, (int, float)) and not isinstance(ts, bool) else float("-inf")
    except (orjson.JSONDecodeError, ValueError, OverflowError):
        return float("-inf")


def merged(events: str, labels: str | None) -> Iterator[Message]:
    if labels is None:
        yield from read_lines(events)
        return
    # (ts, 0 for events / 1 for labels, line) gives "events first on ties"
    ev = ((_ts_key(m), 0, m.offset, m) for m in read_lines(events))
    lb = ((_ts_key(m), 1, m.offset, m) for m in read_lines(labels))
    for *_, m in heapq.merge(ev, lb, key=lambda t: t[:3]):
        yield m


def replay(settings: Settings, events: str, labels: str | None, out: BinaryIO,
           dead: BinaryIO | None, err=sys.stderr, fmt: str = "streamdrift",
           report: str | None = None) -> int:
    if not Path(events).is_file():
        print(f"streamdrift replay: {events}: no such file", file=err)
        return 2
    if labels is not None and not Path(labels).is_file():
        print(f"streamdrift replay: {labels}: no such file", file=err)
        return 2
    pipeline = Pipeline(settings, label_topics={labels} if labels else set(), formats={events: fmt})
    recorder = None
    if report is not None:
        from .report import ReportRecorder
        recorder = pipeline.recorder = ReportRecorder()
    batch_size = settings.kafka.batch_size
    n_lines = n_events = n_alerts = n_dead = 0
    t0 = time.perf_counter()
    batch: list[Message] = []

    def flush() -> None:
        nonlocal n_events, n_alerts, n_dead
        result = pipeline.process(batch)
        n_events += result.n_events
        for alert in result.alerts:
            out.write(orjson.dumps(alert) + b"\n")
        if recorder is not None:
            recorder.alerts.extend(result.alerts)
        n_alerts += len(result.alerts)
        for dl in result.dead_letters:
            n_dead += 1
            if dead is not None:
                dead.write(orjson.dumps({"source": dl.message.topic, "offset": dl.message.offset,
                                         "reason": dl.reason, "detail": dl.detail,
                                         "value": base64.b64encode(dl.message.value).decode()}) + b"\n")
        batch.clear()

    for msg in merged(events, labels):
        n_lines += 1
        batch.append(msg)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    out.flush()
    if recorder is not None:
        from .report import write_report
        write_report(report, recorder, events)
    elapsed = time.perf_counter() - t0
    rate = n_events / elapsed if elapsed > 0 else 0.0
    print(f"streamdrift replay: {n_lines} lines, {n_events} events, {n_alerts} alerts, "
          f"{n_dead} dead letters, {pipeline.n_labels} labels in {elapsed:.2f}s "
          f"({rate:,.0f} events/s)", file=err)
    return 0
