"""Label messages -> label records: ``{"model", "id", "label", "ts"?, "prediction"?}``.

A label names the event it is about by (model, id); it may bring that event's prediction
itself (when the app joined it). Bad labels are :class:`~stream.errors.Rejected`.
Most models get a label for every prediction eventually: a batch's labels are parsed by one
typed decode that checks their types as it parses (or, when it refuses one, by one orjson
call, then checked column by column); message by message only when one of them is bad
(which then finds which, and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter
from typing import Any, NamedTuple

import msgspec
import orjson

from ..config import LimitSettings
from ..errors import Rejected
from ..types import TS_END, TS_MIN, DeadLetter, Message, event_time, parsed_documents
from .values import INT64, check_model, parse_ts

_IDS = {str, int}
_LABELS = {int, float, str, bool}
_PREDICTIONS = {type(None), int, float, str, bool}
_NUMBERS = {int, float}
_VALUE = attrgetter("value")


class _Label(msgspec.Struct, gc=False):
    """A label message as one typed decode checks it while parsing: what :func:`_columns`
    accepts, but integers beyond int64 (orjson's reach 2**64 - 1); other fields ignored."""

    model: str
    id: str | INT64
    label: bool | INT64 | float | str
    ts: float | str | None = None
    prediction: bool | INT64 | float | str | None = None


_TYPED = msgspec.json.Decoder(list[_Label])
_FIELDS = tuple(map(attrgetter, ("model", "id", "label", "ts", "prediction")))


class Label(NamedTuple):
    model: str
    ident: str | int
    label: int | float | str      # (bools are ints)
    ts: float                     # arrival, event time (epoch seconds)
    prediction: Any               # the prediction it brings, or None
    message: Message


@dataclass
class LabelBatch:
    """A batch's good labels as columns, in arrival order; ``index``: each one's place in the
    messages decoded."""
    models: list[str] = field(default_factory=list)
    idents: list[str | int] = field(default_factory=list)
    labels: list[int | float | str] = field(default_factory=list)
    ts: list[float] = field(default_factory=list)        # arrival, event time (epoch seconds)
    predictions: list[Any] = field(default_factory=list)  # the prediction each brings, or None
    messages: list[Message] = field(default_factory=list)
    index: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.models)

    @classmethod
    def of(cls, labels: list[Label], index: list[int]) -> LabelBatch:
        if not labels:
            return cls()
        models, idents, values, ts, preds, messages = (list(c) for c in zip(*labels, strict=True))
        return cls(models, idents, values, ts, preds, messages, index)


def decode_label(msg: Message, limits: LimitSettings) -> Label:
    """One label message, or Rejected naming why not."""
    if len(msg.value) > limits.max_message_bytes:
        raise Rejected("oversize", f"{len(msg.value)} bytes > limit {limits.max_message_bytes}")
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"not JSON: {exc}") from None
    return _label(doc, msg, limits)


def _label(doc: Any, msg: Message, limits: LimitSettings) -> Label:
    """A parsed label message's record, or Rejected."""
    if type(doc) is not dict:
        raise Rejected("not_object", "a label must be a JSON object")
    model, ident, label = doc.get("model"), doc.get("id"), doc.get("label")
    check_model(model, limits)
    if type(ident) not in _IDS:
        raise Rejected("invalid_id", "a label needs an id (string or integer)")
    if not isinstance(label, (int, float, str)) or (isinstance(label, float) and label != label):
        raise Rejected("invalid_label", "label must be a number, a boolean or a string")
    ts = doc.get("ts")
    ts = msg.timestamp if ts is None else parse_ts(ts)
    pred = doc.get("prediction")
    if pred is not None and not isinstance(pred, (int, float, str)):
        raise Rejected("invalid_prediction", "prediction must be a number or a string")
    return Label(model, ident, label, ts, pred, msg)


def _columns(docs: list[Any], messages: list[Message], limits: LimitSettings) -> LabelBatch | None:
    """Every label of the batch as columns if all of them are good, else None. Same rules as
    :func:`_label`: JSON holds no NaN, so a float label is never one. ``docs``: parsed
    documents, or typed labels (whose types the decode checked)."""
    if docs and type(docs[0]) is _Label:
        models, idents, labels, stamps, preds = (list(map(get, docs)) for get in _FIELDS)
    else:
        if set(map(type, docs)) != {dict}:
            return None
        models, idents, labels, stamps, preds = (list(map(dict.get, docs, repeat(key)))
                                                 for key in ("model", "id", "label", "ts", "prediction"))
        if set(map(type, models)) != {str} or not set(map(type, idents)) <= _IDS \
                or not set(map(type, labels)) <= _LABELS or not set(map(type, preds)) <= _PREDICTIONS:
            return None
    try:
        for model in set(models):
            check_model(model, limits)
    except Rejected:
        return None
    kinds = set(map(type, stamps))
    if kinds <= _NUMBERS:
        times = stamps if kinds == {float} else list(map(float, stamps))
        if not (TS_MIN <= min(times) and max(times) < TS_END):     # (JSON holds no NaN)
            return None
    else:
        try:
            times = [m.timestamp if v is None else event_time(v)
                     for v, m in zip(stamps, messages, strict=True)]
        except ValueError:
            return None
    return LabelBatch(models, idents, labels, times, preds, messages, list(range(len(docs))))


def decode_labels(messages: list[Message], limits: LimitSettings) -> tuple[LabelBatch, list[DeadLetter]]:
    """The batch's good labels in order, and a dead letter for each bad one."""
    values = list(map(_VALUE, messages))
    if values and max(map(len, values)) <= limits.max_message_bytes:
        docs = parsed_documents(messages)
        if docs is None:
            joined = b"[" + b",".join(values) + b"]"
            try:                            # the common batch: typed labels, checked as parsed
                docs = _TYPED.decode(joined)
            except msgspec.DecodeError:     # (a ValidationError is one)
                try:
                    docs = orjson.loads(joined)
                except orjson.JSONDecodeError:
                    docs = None
        if docs is not None and len(docs) == len(messages):   # (a message holding "1,2" parses as two)
            batch = _columns(docs, messages, limits)
            if batch is not None:
                return batch, []
    labels: list[Label] = []
    index: list[int] = []
    dead: list[DeadLetter] = []
    for i, msg in enumerate(messages):
        try:
            labels.append(decode_label(msg, limits))
            index.append(i)
        except Rejected as exc:
            dead.append(DeadLetter(msg, exc.reason, exc.detail))
    return LabelBatch.of(labels, index), dead
