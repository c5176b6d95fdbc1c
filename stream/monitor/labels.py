"""Late labels -> error stream per model (performance drift).

Events that carry an ``id`` and a ``prediction`` are remembered in a bounded store per model
(size limit over all models, the largest evicted first, and time-to-live in event time;
evictions are counted). A label event
``{"model", "id", "label", "ts"?, "prediction"?}`` joins its prediction by (model, id), or
brings the prediction itself. The error of each joined label is:

* binary score in [0, 1] with label 0/1 (or false/true): (score >= 0.5) != label
* class (string prediction): class != label (compared as strings)
* a label written as text of a number or of true/false, for a number predicted: that number
* otherwise (regression): |prediction - label|

Errors enter the model's error stream when the label arrives, never before (a 30-day outcome
counts on day 30), and each carries the time of its prediction for the alert's statistics.
Labels are far fewer than events, so they are handled one by one here (not a per-value hot
path); the error stream itself goes through the vectorized detectors.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import orjson

from ..config import LimitSettings
from ..ingest.rows import MODEL_RE, DeadLetter, Message, ModelBatch, parse_ts


@dataclass
class ErrorBatch:
    """Joined labels of one model, in arrival order."""
    errors: list[float] = field(default_factory=list)
    binary: list[bool] = field(default_factory=list)      # 0/1 error (accuracy) or not (MAE)
    ts: list[float] = field(default_factory=list)         # label arrival (event time)
    prediction_ts: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)   # the joined prediction (score/class)
    messages: list[Message] = field(default_factory=list)


class PredictionStore:
    """Predictions waiting for their labels, one insertion-ordered dict per model (so that a
    model's entries are found without scanning the others'), bounded by size (all models
    together) and by age (event time).

    Over the size limit, the oldest predictions of the models holding the most go first: a
    model that floods the store evicts its own predictions before anyone else's.
    """

    def __init__(self, max_size: int, ttl_s: float) -> None:
        self.max_size = max_size
        self.ttl_s = ttl_s
        self.pending: dict[str, OrderedDict[Any, tuple[Any, float]]] = {}   # model -> id -> (prediction, ts)
        self.labeled: dict[str, OrderedDict[Any, None]] = {}   # model -> ids labeled already
        self.size = 0                   # predictions pending, all models
        self.labeled_size = 0
        self.evicted = {"ttl": 0, "size": 0}

    def add(self, batch: ModelBatch) -> None:
        """Remember the batch's (id, prediction, ts) for events that have both."""
        preds = batch.prediction_class if batch.prediction_class is not None else batch.prediction.tolist()
        pending = self.pending.setdefault(batch.model, OrderedDict())
        before = len(pending)
        for ident, pred, ts in zip(batch.ids, preds, batch.ts.tolist(), strict=True):
            if ident is None or pred is None or pred != pred:
                continue
            pending.pop(ident, None)
            pending[ident] = (pred, ts)
        self.size += len(pending) - before
        if self.size > self.max_size:
            self.evicted["size"] += _shrink(self.pending, self.size - self.max_size)
            self.size = self.max_size

    def expire(self, now_ts: float) -> list[tuple[str, Any]]:
        """Drop predictions older than the time-to-live (by event time); returns their
        (model, prediction): these never received a label."""
        limit = now_ts - self.ttl_s
        expired = []
        for model, pending in self.pending.items():
            while pending:
                ident, (pred, ts) = next(iter(pending.items()))
                if ts >= limit:
                    break
                pending.popitem(last=False)
                expired.append((model, pred))
        self.size -= len(expired)
        self.evicted["ttl"] += len(expired)
        return expired

    def take(self, model: str, ident: Any) -> tuple[Any, float] | None | str:
        """The prediction for (model, id) and its time; "duplicate" if already labeled; None."""
        pending = self.pending.get(model)
        hit = pending.pop(ident, None) if pending else None
        if hit is None:
            return "duplicate" if ident in self.labeled.get(model, ()) else None
        self.size -= 1
        self.labeled.setdefault(model, OrderedDict())[ident] = None
        self.labeled_size += 1
        if self.labeled_size > self.max_size:
            _shrink(self.labeled, self.labeled_size - self.max_size)
            self.labeled_size = self.max_size
        return hit

    def restore(self, model: str, pending: list[tuple[Any, Any, float]], labeled: list[Any]) -> None:
        """Put back a model's (id, prediction, ts) and labeled ids from a checkpoint."""
        self.size -= len(self.pending.get(model, ()))
        self.labeled_size -= len(self.labeled.get(model, ()))
        self.pending[model] = OrderedDict((ident, (pred, ts)) for ident, pred, ts in pending)
        self.labeled[model] = OrderedDict.fromkeys(labeled)
        self.size += len(self.pending[model])
        self.labeled_size += len(self.labeled[model])


def _shrink(per_model: dict[str, OrderedDict], excess: int) -> int:
    """Drop ``excess`` oldest entries, taken from the largest models first; returns excess."""
    left = excess
    while left > 0:
        sizes = sorted(((len(d), m) for m, d in per_model.items()), reverse=True)
        model_size, model = sizes[0]
        runner_up = sizes[1][0] if len(sizes) > 1 else 0
        n = min(left, max(1, model_size - runner_up))     # down to the next largest
        entries = per_model[model]
        for _ in range(n):
            entries.popitem(last=False)
        left -= n
    return excess


def _label_number(label: str) -> float | bool | None:
    """A label written as text of a number ("1", "0.5") or of a truth value ("true"), or None."""
    text = label.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _error(pred: Any, label: Any) -> tuple[float, bool]:
    if isinstance(label, str) and not isinstance(pred, str):
        # a number predicted, a label written as text ("1", "true": labels from CSV files)
        number = _label_number(label)
        if number is not None:
            label = number
    if isinstance(pred, str) or isinstance(label, str):
        return float(str(pred) != str(label)), True
    if isinstance(label, bool) or label in (0, 1):
        if 0.0 <= pred <= 1.0:
            return float((pred >= 0.5) != bool(label)), True
    return abs(float(pred) - float(label)), False


def join_labels(messages: list[Message], store: PredictionStore, limits: LimitSettings,
                ) -> tuple[dict[str, ErrorBatch], list[DeadLetter]]:
    """Decode label messages and join them to stored predictions."""
    out: dict[str, ErrorBatch] = {}
    dead: list[DeadLetter] = []
    for msg in messages:
        try:
            if len(msg.value) > limits.max_message_bytes:
                raise ValueError("oversize", f"{len(msg.value)} bytes > limit")
            try:
                doc = orjson.loads(msg.value)
            except orjson.JSONDecodeError as exc:
                raise ValueError("invalid_json", f"not JSON: {exc}") from None
            if type(doc) is not dict:
                raise ValueError("not_object", "a label must be a JSON object")
            model, ident, label = doc.get("model"), doc.get("id"), doc.get("label")
            if not isinstance(model, str) or not MODEL_RE.match(model):
                raise ValueError("invalid_model", "model must be a string of 1..128 [A-Za-z0-9._:-]")
            if type(ident) not in (str, int):
                raise ValueError("invalid_id", "a label needs an id (string or integer)")
            if not isinstance(label, (int, float, str)) or (isinstance(label, float) and label != label):
                raise ValueError("invalid_label", "label must be a number, a boolean or a string")
            ts = msg.timestamp
            if doc.get("ts") is not None:
                try:
                    ts = parse_ts(doc["ts"])
                except Exception:
                    raise ValueError("invalid_ts", "ts must be epoch seconds or RFC 3339") from None
            if "prediction" in doc and doc["prediction"] is not None:
                pred = doc["prediction"]
                if not isinstance(pred, (int, float, str)):
                    raise ValueError("invalid_prediction", "prediction must be a number or a string")
                pred_ts = ts
                store.take(model, ident)          # its event, if stored, is labeled now
            else:
                hit = store.take(model, ident)
                if hit == "duplicate":
                    raise ValueError("duplicate_label", f"id {ident!r} of {model!r} was labeled already")
                if hit is None:
                    raise ValueError("unknown_id", f"no pending prediction for id {ident!r} of {model!r}")
                pred, pred_ts = hit
            err, binary = _error(pred, label)
        except ValueError as exc:
            reason, detail = exc.args if len(exc.args) == 2 else ("invalid_label", str(exc))
            dead.append(DeadLetter(msg, reason, detail))
            continue
        eb = out.setdefault(model, ErrorBatch())
        eb.errors.append(err)
        eb.binary.append(binary)
        eb.ts.append(ts)
        eb.prediction_ts.append(pred_ts)
        eb.predictions.append(pred)
        eb.messages.append(msg)
    return out, dead

