"""Label messages -> label records: ``{"model", "id", "label", "ts"?, "prediction"?}``.

A label names the event it is about by (model, id); it may bring that event's prediction
itself (when the app joined it). Bad labels are :class:`~stream.errors.Rejected`.
Most models get a label for every prediction eventually: a batch's labels are parsed by one
orjson call (one by one only when some message is not JSON), then checked as dicts.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from ..config import LimitSettings
from ..errors import Rejected
from ..types import DeadLetter, Message
from .values import check_model, parse_ts


class Label(NamedTuple):
    model: str
    ident: str | int
    label: int | float | str      # (bools are ints)
    ts: float                     # arrival, event time (epoch seconds)
    prediction: Any               # the prediction it brings, or None
    message: Message


def decode_label(msg: Message, limits: LimitSettings) -> Label:
    """One label message, or Rejected naming why not."""
    if len(msg.value) > limits.max_message_bytes:
        raise Rejected("oversize", f"{len(msg.value)} bytes > limit {limits.max_message_bytes}")
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"not JSON: {exc}") from None
    return _label(doc, msg, limits, set())


def _label(doc: Any, msg: Message, limits: LimitSettings, models: set[str]) -> Label:
    """A parsed label message's record, or Rejected; ``models``: names checked already."""
    if type(doc) is not dict:
        raise Rejected("not_object", "a label must be a JSON object")
    model, ident, label = doc.get("model"), doc.get("id"), doc.get("label")
    if model not in models:
        check_model(model, limits)
        models.add(model)
    if type(ident) not in (str, int):
        raise Rejected("invalid_id", "a label needs an id (string or integer)")
    if not isinstance(label, (int, float, str)) or (isinstance(label, float) and label != label):
        raise Rejected("invalid_label", "label must be a number, a boolean or a string")
    ts = doc.get("ts")
    ts = msg.timestamp if ts is None else parse_ts(ts)
    pred = doc.get("prediction")
    if pred is not None and not isinstance(pred, (int, float, str)):
        raise Rejected("invalid_prediction", "prediction must be a number or a string")
    return Label(model, ident, label, ts, pred, msg)


def decode_labels(messages: list[Message], limits: LimitSettings) -> tuple[list[Label], list[DeadLetter]]:
    """The batch's labels in order, and a dead letter for each bad one."""
    labels: list[Label] = []
    dead: list[DeadLetter] = []
    values = [m.value for m in messages]
    docs = None
    if all(len(v) <= limits.max_message_bytes for v in values):
        try:
            docs = orjson.loads(b"[" + b",".join(values) + b"]")
            if len(docs) != len(messages):     # (a message holding "1,2" parses as two)
                docs = None
        except orjson.JSONDecodeError:
            docs = None
    models: set[str] = set()
    for i, msg in enumerate(messages):
        try:
            labels.append(_label(docs[i], msg, limits, models) if docs is not None
                          else decode_label(msg, limits))
        except Rejected as exc:
            dead.append(DeadLetter(msg, exc.reason, exc.detail))
    return labels, dead
