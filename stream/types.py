"""Records that cross the layers: a message in, a model's column batch, a dead letter out.

Imports nothing of streamdrift's own: every other module may import it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from operator import itemgetter
from typing import Any, NamedTuple

import numpy as np

MODEL_RE = re.compile(r"[A-Za-z0-9._:-]{1,128}\Z")
# event times are epoch seconds within the years RFC 3339 can write, 0001-9999 (UTC)
TS_MIN = -62135596800.0      # 0001-01-01T00:00:00Z
TS_END = 253402300800.0      # 10000-01-01T00:00:00Z, excluded


class Message(NamedTuple):
    """One Kafka message (or one line of a replayed file). A NamedTuple: cheap to create."""
    value: bytes
    topic: str
    partition: int
    offset: int
    timestamp: float          # seconds since the epoch (Kafka message timestamp), 0.0 if none
    headers: tuple | None = None   # Kafka headers ((name, bytes), ...), for the adapters
    key: bytes | None = None       # the Kafka key, for the adapters (Seldon's request id)
    # the value's JSON document when the reader parsed it already (a replay merging files by
    # time reads each line's time), else None
    parsed: Any = None

    def with_value(self, value: bytes) -> Message:
        """This message with another value (and so without the old value's parse)."""
        return Message(value, self.topic, self.partition, self.offset, self.timestamp, self.headers, self.key)


_PARSED = itemgetter(7)                # Message.parsed


def parsed_documents(messages: list[Message]) -> list[Any] | None:
    """The messages' JSON documents if their reader parsed every one, else None."""
    docs = list(map(_PARSED, messages))
    return None if None in docs else docs


@dataclass(frozen=True)
class DeadLetter:
    """A message that cannot be used, with why: it goes to the dead-letter topic unchanged."""
    message: Message
    reason: str               # short machine-readable reason, e.g. "invalid_json"
    detail: str               # human-readable explanation


@dataclass
class ModelBatch:
    """The events of one model in one batch, as columns (row = event, arrival order)."""
    model: str
    numeric: dict[str, np.ndarray]          # feature name -> float64 (n,), NaN = missing
    categorical: dict[str, list[Any]]       # feature name -> values (str or None) per row
    prediction: np.ndarray                  # float64 (n,), NaN = none or not numeric
    prediction_class: list[Any] | None      # string predictions per row, if any
    ts: np.ndarray                          # float64 (n,) event time, epoch seconds
    partition: np.ndarray                   # int64 (n,)
    offset: np.ndarray                      # int64 (n,)
    topic: np.ndarray                       # object (n,): source topic per row
    ids: list[Any]                          # per row: id or None
    segments: list[Any]                     # per row: segment or None
    index: np.ndarray | None = None         # int64 (n,): each row's message in the decoded list
    versions: list[Any] | None = None       # per row: model_version or None (None: no row has one)

    @property
    def size(self) -> int:
        return int(self.ts.size)

    def rows(self, start: int, stop: int) -> ModelBatch:
        """Rows start..stop-1, as a batch of their own."""
        return self.select(slice(start, stop))

    def select(self, sl: slice | np.ndarray) -> ModelBatch:
        """These rows (a slice, or an array of row indexes), as a batch of their own."""
        if not isinstance(sl, slice):
            pick = lambda values: [values[i] for i in sl.tolist()]                 # noqa: E731
            return ModelBatch(
                model=self.model, numeric={k: v[sl] for k, v in self.numeric.items()},
                categorical={k: pick(v) for k, v in self.categorical.items()},
                prediction=self.prediction[sl],
                prediction_class=None if self.prediction_class is None else pick(self.prediction_class),
                ts=self.ts[sl], partition=self.partition[sl], offset=self.offset[sl], topic=self.topic[sl],
                ids=pick(self.ids), segments=pick(self.segments),
                index=None if self.index is None else self.index[sl],
                versions=None if self.versions is None else pick(self.versions))
        return ModelBatch(
            model=self.model, numeric={k: v[sl] for k, v in self.numeric.items()},
            categorical={k: v[sl] for k, v in self.categorical.items()},
            prediction=self.prediction[sl],
            prediction_class=None if self.prediction_class is None else self.prediction_class[sl],
            ts=self.ts[sl], partition=self.partition[sl], offset=self.offset[sl], topic=self.topic[sl],
            ids=self.ids[sl], segments=self.segments[sl],
            index=None if self.index is None else self.index[sl],
            versions=None if self.versions is None else self.versions[sl])


@dataclass(frozen=True)
class Rebaseline:
    """An operator's "accept the new normal": the signal (every signal of the model when
    ``signal`` is empty; a feature's name covers its category indicators) learns a new
    reference from its values at or after event time ``at`` (NaN: from the model's next
    batch). ``id`` makes it apply once, however often it is read again."""
    model: str
    signal: str = ""
    at: float = float("nan")
    id: str = ""

    def covers(self, signal: str) -> bool:
        return not self.signal or signal == self.signal or signal.startswith(self.signal + "=")


def ts_out_of_range(value: float) -> str | None:
    """Why a number is not an event time (epoch seconds in the years 1-9999), or None."""
    if value != value or value in (float("inf"), float("-inf")):
        return "ts must be finite"
    if TS_MIN <= value < TS_END:
        return None
    hint = " (sent in milliseconds, microseconds or nanoseconds?)" if TS_END <= value < 1e20 else ""
    return f"ts {value:.6g} is not epoch seconds of the years 1-9999{hint}"


def times_in_range(ts: np.ndarray) -> bool:
    """Whether every value of ts that is not NaN (missing) is a valid event time."""
    if ts.size == 0:
        return True
    lo, hi = ts.min(), ts.max()                 # NaN if any is missing: then value by value
    if lo == lo and hi == hi:
        return bool(TS_MIN <= lo and hi < TS_END)
    return not ((ts < TS_MIN) | (ts >= TS_END)).any()


def event_time(value: Any) -> float:
    """Event time as epoch seconds (years 1-9999) from a number or an RFC 3339 string;
    ValueError saying why not."""
    if isinstance(value, bool):
        raise ValueError("ts must be a number or an RFC 3339 string")
    if isinstance(value, (int, float)):
        try:
            value = float(value)
        except OverflowError:               # an integer beyond any float
            raise ValueError("ts is out of range") from None
        why = ts_out_of_range(value)
        if why is not None:
            raise ValueError(why)
        return value
    if isinstance(value, str):
        try:
            text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"ts {value[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise ValueError(f"ts {value[:40]!r} has no time zone offset")
        return dt.timestamp()
    raise ValueError("ts must be a number or an RFC 3339 string")
