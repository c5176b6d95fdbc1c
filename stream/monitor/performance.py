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
Labels are far fewer than events, so they are joined one by one here (not a per-value hot
path); the error stream itself goes through the vectorized detectors.
"""

from __future__ import annotations

import bisect
import heapq
import math
import sys
from collections import OrderedDict
from dataclasses import dataclass, field
from itertools import compress, islice, repeat
from operator import ge, is_not
from typing import Any, NamedTuple

import numpy as np
import orjson

from ..config import Settings
from ..ingest.labels import LabelBatch
from ..types import DeadLetter, Message, ModelBatch
from .alerts import make_alert
from .dependence import DAY_EXTEND
from .detection import DETECTORS
from .drift import DriftStates, Transition, hit_matrix
from .estimate import Calibration
from .reference import Profile, Profiles
from .signals import SignalRegistry

_NUMBERS = {int, float, bool}
SCORED = 1000          # recent labels the estimate is scored on (enough that its noise stays small)


@dataclass
class ErrorBatch:
    """Joined labels of one model, in arrival order."""
    errors: np.ndarray = field(default_factory=lambda: np.zeros(0))       # per label (float64)
    binary: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # 0/1 error (accuracy) or not (MAE)
    ts: list[float] = field(default_factory=list)         # label arrival (event time)
    prediction_ts: list[float] = field(default_factory=list)
    predictions: list[Any] = field(default_factory=list)   # the joined prediction (score/class)
    messages: list[Message] = field(default_factory=list)
    versions: list[Any] = field(default_factory=list)      # model version of the prediction
    positions: list[int] = field(default_factory=list)     # the label's message position

    def only(self, rows: list[int]) -> ErrorBatch:
        """These rows, as an ErrorBatch of their own."""
        pick = lambda values: [values[i] for i in rows]                       # noqa: E731
        return ErrorBatch(self.errors[rows], self.binary[rows], pick(self.ts), pick(self.prediction_ts),
                          pick(self.predictions), pick(self.messages), pick(self.versions),
                          pick(self.positions))


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
        # (OrderedDicts: expiry and eviction take the oldest entry in O(1) at any size)
        self.pending: dict[str, OrderedDict[Any, tuple[Any, float]]] = {}   # model -> id -> (prediction, ts)
        self.labeled: dict[str, OrderedDict[Any, None]] = {}   # model -> ids labeled already
        self.size = 0                   # predictions pending, all models
        self.labeled_size = 0
        self.evicted = {"ttl": 0, "size": 0}
        # the current batch's predictions: (model, id) -> position of their message; a label
        # at an earlier position of the batch cannot take them (it came first)
        self.fresh: dict[str, dict[Any, int]] = {}

    def add(self, batch: ModelBatch, positions: np.ndarray | None = None) -> None:
        """Remember the batch's (id, prediction, ts) for events that have both; ``positions``:
        each row's message position in the batch (labels see only predictions before them)."""
        preds = batch.prediction_class if batch.prediction_class is not None else batch.prediction.tolist()
        pending = self.pending.setdefault(batch.model, OrderedDict())
        before = len(pending)
        ids, ts = batch.ids, batch.ts.tolist()
        versions = batch.versions if batch.versions is not None else [None] * len(ids)
        fresh = self.fresh.setdefault(batch.model, {}) if positions is not None else None
        missing = (np.isnan(batch.prediction).any() if batch.prediction_class is None
                   else any(p is None or p != p for p in preds))
        if not missing and None not in ids and len(set(ids)) == len(ids):
            # distinct ids, every one with a prediction: re-added ids move to the end
            if not pending.keys().isdisjoint(ids):
                for ident in ids:
                    pending.pop(ident, None)
            pending.update(zip(ids, zip(preds, ts, versions, strict=True), strict=True))
            if fresh is not None:
                fresh.update(zip(ids, positions.tolist(), strict=True))
        else:
            pos = positions.tolist() if positions is not None else repeat(None)
            for ident, pred, t, at, version in zip(ids, preds, ts, pos, versions, strict=False):
                if ident is None or pred is None or pred != pred:
                    continue
                pending.pop(ident, None)
                pending[ident] = (pred, t, version)
                if fresh is not None:
                    fresh[ident] = at
        self.size += len(pending) - before
        if self.size > self.max_size:
            self.evicted["size"] += _shrink(self.pending, self.size - self.max_size)
            self.size = self.max_size

    def oldest_ts(self) -> float:
        """The event time of the oldest prediction waiting (inf: none); a clock cannot expire
        anything before it passes this plus the time-to-live."""
        heads = [next(iter(pending.values()))[1] for pending in self.pending.values() if pending]
        return min(heads) if heads else float("inf")

    def expire(self, now_ts: float, before: int | None = None) -> list[tuple[str, Any, float]]:
        """Drop the oldest predictions (insertion order) while they are older than the
        time-to-live at clock ``now_ts`` (event time), stopping at a prediction of this batch
        at position ``before`` or later; returns their (model, prediction, ts): these never
        received a label."""
        limit = now_ts - self.ttl_s
        expired = []
        fresh = self.fresh
        for model, pending in self.pending.items():
            mine = fresh.get(model, {})
            while pending:
                ident, (pred, ts, _) = next(iter(pending.items()))
                if ts >= limit or (before is not None and mine.get(ident, -1) >= before):
                    break
                pending.popitem(last=False)
                expired.append((model, pred, ts))
        self.size -= len(expired)
        self.evicted["ttl"] += len(expired)
        return expired

    def settle(self) -> None:
        """The batch is over: its predictions are visible to every later label."""
        self.fresh.clear()

    def take(self, model: str, ident: Any, at: int | None = None) -> tuple[Any, float] | None | str:
        """The prediction for (model, id) and its time; "duplicate" if already labeled; None
        (also when it arrived at position ``at`` of this batch or later)."""
        return self.take_many([model], [ident], [sys.maxsize if at is None else at])[0]

    def take_many(self, models: list[str], idents: list[Any], positions: list[int]) -> list[Any]:
        """:meth:`take` of each (model, id, position), in order."""
        pend, fresh, labeled = self.pending, self.fresh, self.labeled
        excess = self.labeled_size + len(idents) - self.max_size      # evictions, at most
        if len(set(models)) == 1 and (excess <= 0 or self._evicts_apart(models[0], idents, excess)):
            model = models[0]
            mine = fresh.get(model) or {}
            if not any(map(ge, map(mine.get, idents, repeat(-1)), positions)):
                # one model, nothing this batch added asked for early, no labeled id evicted
                # that the takes touch: the takes at once (an id taken twice finds itself
                # labeled the second time), then the evictions
                hits = list(map((pend.get(model) or {}).pop, idents, repeat(None)))
                taken = list(compress(idents, map(is_not, hits, repeat(None))))
                labeled.setdefault(model, OrderedDict()).update(zip(taken, repeat(None)))
                self.size -= len(taken)
                self.labeled_size += len(taken)
                if len(taken) < len(hits):
                    done = labeled[model]
                    hits = [hit if hit is not None else "duplicate" if ident in done else None
                            for ident, hit in zip(idents, hits, strict=True)]
                if self.labeled_size > self.max_size:
                    _shrink(labeled, self.labeled_size - self.max_size)
                    self.labeled_size = self.max_size
                return hits
        hits: list[Any] = []
        append = hits.append
        # at the bound each take evicts one labeled id, of the largest model: the models'
        # sizes in a heap, built at the first eviction
        rank: dict[str, int] = {}
        heap: list[tuple[int, int, str]] | None = None
        for model, ident, at in zip(models, idents, positions, strict=True):
            mine = fresh.get(model)
            if mine and mine.get(ident, -1) >= at:
                append(None)
                continue
            pending = pend.get(model)
            hit = pending.pop(ident, None) if pending else None
            if hit is None:
                append("duplicate" if ident in labeled.get(model, ()) else None)
                continue
            append(hit)
            self.size -= 1
            done = labeled.get(model)
            if done is None:
                done = labeled[model] = OrderedDict()
                heap = None                         # (a new name: the places change)
            done[ident] = None
            self.labeled_size += 1
            if heap is not None:
                heapq.heappush(heap, (-len(done), rank[model], model))
            if self.labeled_size > self.max_size:
                if self.labeled_size - self.max_size == 1:
                    if heap is None:
                        rank = _ranks(labeled)
                        heap = [(-len(d), rank[m], m) for m, d in labeled.items()]
                        heapq.heapify(heap)
                    _evict_one(labeled, heap)
                else:
                    _shrink(labeled, self.labeled_size - self.max_size)
                    heap = None
                self.labeled_size = self.max_size
        return hits

    def _evicts_apart(self, model: str, idents: list[Any], excess: int) -> bool:
        """Whether ``model``'s takes of ``idents``, evicting up to ``excess`` labeled ids,
        may evict once after all of them: the model holds the most labeled ids by more than
        the takes (every eviction, one by one or at once, is its oldest) and none of its
        ``excess`` oldest is among ``idents`` (no take sees an eviction, none re-labels an
        id due for one)."""
        done = self.labeled.get(model)
        if done is None or len(done) < excess:
            return False
        others = max((len(d) for m, d in self.labeled.items() if m != model), default=0)
        return others < len(done) - len(idents) and set(islice(done, excess)).isdisjoint(idents)

    def trim(self, model: str, keep: float) -> tuple[int, int] | None:
        """Keep the newest ``keep`` share (0..1) of the model's waiting predictions (the
        others counted as evicted for size) and of its labeled ids; returns how many of each
        are left, or None when it holds neither."""
        pending, labeled = self.pending.get(model) or OrderedDict(), self.labeled.get(model) or OrderedDict()
        if not pending and not labeled:
            return None
        dropped = _drop_oldest(pending, keep)
        self.size -= dropped
        self.evicted["size"] += dropped
        self.labeled_size -= _drop_oldest(labeled, keep)
        return len(pending), len(labeled)

    def model_state(self, model: str) -> dict[str, Any]:
        """One model's waiting predictions and labeled ids (a checkpoint holds a model whole).
        The lists are JSON bytes, the times (and scores, when all are floats) arrays: a
        store holds up to millions of entries, and a state's header (its JSON values other
        than bytes and arrays) is limited to 16 MB (detectors/_state.py)."""
        pending = self.pending.get(model, {})
        values = list(pending.values())
        preds = [v[0] for v in values]
        return {"ids": orjson.dumps(list(pending)),
                "predictions": np.array(preds, dtype=np.float64) if set(map(type, preds)) <= {float}
                else orjson.dumps(preds),
                "ts": np.array([v[1] for v in values], dtype=np.float64),
                "versions": orjson.dumps([v[2] for v in values]),
                "labeled": orjson.dumps(list(self.labeled.get(model, ())))}

    def load_model_state(self, model: str, state: dict[str, Any]) -> None:
        """Put back one model's :meth:`model_state` (also one whose lists are JSON lists, as
        states written before they were bytes)."""
        ids, preds, versions, labeled = (_listed(state.get(key)) for key in
                                         ("ids", "predictions", "versions", "labeled"))
        self.size -= len(self.pending.get(model, ()))
        self.labeled_size -= len(self.labeled.get(model, ()))
        entries = zip(preds, state["ts"].tolist(), versions or [None] * len(ids), strict=True)
        self.pending[model] = OrderedDict(zip(ids, entries, strict=True))
        self.labeled[model] = OrderedDict.fromkeys(labeled)
        self.size += len(self.pending[model])
        self.labeled_size += len(self.labeled[model])


def _listed(value: bytes | np.ndarray | list | None) -> list:
    """A list of :meth:`PredictionStore.model_state`: JSON bytes, an array or a list."""
    if isinstance(value, bytes):
        return orjson.loads(value)
    return value.tolist() if isinstance(value, np.ndarray) else list(value or ())


def _drop_oldest(entries: OrderedDict, keep: float) -> int:
    """Drop all but the newest ``keep`` share (0..1) of ``entries``; returns how many went."""
    drop = len(entries) - int(len(entries) * keep)
    for _ in range(drop):
        entries.popitem(last=False)
    return drop


def _ranks(per_model: dict[str, OrderedDict]) -> dict[str, int]:
    """Each model's place among the names, last name first (how :func:`_shrink` breaks a
    tie of sizes)."""
    return {m: r for r, m in enumerate(sorted(per_model, reverse=True))}


def _evict_one(per_model: dict[str, OrderedDict], heap: list[tuple[int, int, str]]) -> None:
    """``_shrink(per_model, 1)``, the largest model found in ``heap``: (-size, rank, model)
    entries, one at least with each model's current size (the others are stale)."""
    while -heap[0][0] != len(per_model[heap[0][2]]):
        heapq.heappop(heap)
    _, r, model = heap[0]
    entries = per_model[model]
    entries.popitem(last=False)
    heapq.heapreplace(heap, (-len(entries), r, model))


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


def error_of(pred: Any, label: Any) -> tuple[float, bool]:
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


def errors_of(preds: list[Any], labels: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`error_of` of each (prediction, label) pair as arrays (errors, binary); at once
    when all are numbers."""
    if set(map(type, preds)) <= _NUMBERS and set(map(type, labels)) <= _NUMBERS:
        p = np.array(preds, dtype=np.float64)
        y = np.array(labels, dtype=np.float64)
        binary = ((y == 0) | (y == 1)) & (p >= 0) & (p <= 1)
        return np.where(binary, ((p >= 0.5) != (y == 1)).astype(np.float64), np.abs(p - y)), binary
    pairs = [error_of(pred, label) for pred, label in zip(preds, labels, strict=True)]
    return (np.array([e for e, _ in pairs], dtype=np.float64).reshape(-1),
            np.array([b for _, b in pairs], dtype=bool).reshape(-1))


class Outcome(NamedTuple):
    """A prediction's fate, at a position of the batch: labeled, or aged out unlabeled."""
    position: int
    model: str
    prediction: Any
    labeled: bool


class LabelDesk:
    """Predictions waiting for their labels, joined in arrival order.

    Every decision depends on the input alone, never on batch boundaries: a label takes only
    a prediction that arrived before it; the store's clock at a position is the second
    largest event time of the events before it (one event with a skewed clock cannot move it
    and expire every prediction); a prediction is too old for a label when the clock at the
    label is past its time plus ``ttl_s``, and ages out (unlabeled) at the first event where
    that holds (or when an older one waiting before it does).

    Parameters
    ----------
    max_size : predictions waiting, at most, all models together.
    ttl_s : event-time seconds a prediction waits for its label.
    """

    def __init__(self, max_size: int, ttl_s: float) -> None:
        self.store = PredictionStore(max_size, ttl_s)
        self.ttl_s = ttl_s
        self.top = float("-inf")              # the largest event time so far
        self.now = float("-inf")              # the clock: the second largest
        self._pos = np.zeros(0, dtype=np.int64)   # this batch's events: positions (sorted) ...
        self._clock = np.zeros(0)                 # ... and the clock after each
        self._before = float("-inf")              # the clock before the batch
        self._last: dict[str, int] = {}           # model -> position of its last outcome

    def events(self, batches: list[ModelBatch], positions: list[np.ndarray]) -> None:
        """The batch's events (each row's message position): remember their predictions and
        run the clock over them in arrival order."""
        for mb, pos in zip(batches, positions, strict=True):
            self.store.add(mb, pos)
        self._before = self.now
        self._last = {}
        if not batches:
            self._pos, self._clock = np.zeros(0, dtype=np.int64), np.zeros(0)
            return
        pos = np.concatenate(positions)
        order = np.argsort(pos, kind="stable")
        ts = np.concatenate([mb.ts for mb in batches])[order]
        top = np.maximum.accumulate(np.concatenate([[self.top], ts]))
        # second largest so far: max(previous second, min(value, previous largest)), exactly
        clock = np.maximum.accumulate(np.concatenate([[self.now], np.minimum(ts, top[:-1])]))
        self._pos, self._clock = pos[order], clock[1:]
        self.top, self.now = float(top[-1]), float(clock[-1])

    def clock_at(self, position: int) -> float:
        """The clock just before message ``position`` of the batch."""
        k = int(np.searchsorted(self._pos, position, side="left"))
        return self._before if k == 0 else float(self._clock[k - 1])

    def _expire(self, now: float, before: int | None, out: list[Outcome]) -> None:
        for model, pred, ts in self.store.expire(now, before):
            # it aged out at the first event whose clock passed ts + ttl (not before the last
            # one of its model that waited before it)
            due = ts + self.ttl_s
            k = int(np.searchsorted(self._clock, due, side="right"))
            at = -1 if self._before > due or k >= self._pos.size else int(self._pos[k])
            at = max(at, self._last.get(model, -1))
            self._last[model] = at
            out.append(Outcome(at, model, pred, False))

    def labels(self, batch: LabelBatch, positions: list[int]
               ) -> tuple[dict[str, ErrorBatch], list[DeadLetter], list[Outcome]]:
        """Join the batch's labels (at these message positions, ascending) to the predictions
        that came before them; then age out what the batch's clock expires. Returns the
        joins by model (each join is a labeled outcome at its label's position), the labels
        that cannot be joined, and the predictions aged out."""
        dead: list[DeadLetter] = []
        expired: list[Outcome] = []
        store, last = self.store, self._last
        # the clock at each label, at once; a label whose clock cannot expire the oldest
        # waiting prediction skips the store's scan (takes only make the oldest younger)
        k = np.searchsorted(self._pos, np.asarray(positions, dtype=np.int64), side="left")
        clocks = np.where(k == 0, self._before, self._clock[np.maximum(k - 1, 0)] if self._clock.size
                          else self._before).tolist()
        due = store.oldest_ts() + self.ttl_s
        joins: list[int] = []                         # the labels joined, and their
        preds: list[Any] = []                         # predictions, prediction times, versions
        pred_ts: list[float] = []
        versions: list[Any] = []
        n, lo = len(batch), 0
        while lo < n:
            if clocks[lo] > due:
                self._expire(clocks[lo], positions[lo], expired)
                due = store.oldest_ts() + self.ttl_s
            # the clock rises: the labels before hi cannot expire anything
            hi = bisect.bisect_right(clocks, due, lo + 1)
            hits = store.take_many(batch.models[lo:hi], batch.idents[lo:hi], positions[lo:hi])
            own = batch.predictions[lo:hi]
            if own.count(None) == len(own) and None not in hits and "duplicate" not in hits:
                joins.extend(range(lo, hi))
                p, t, v = zip(*hits, strict=True)
                preds.extend(p)
                pred_ts.extend(t)
                versions.extend(v)
                last.update(zip(batch.models[lo:hi], positions[lo:hi], strict=True))
            else:
                for i, hit, mine in zip(range(lo, hi), hits, own, strict=True):
                    model = batch.models[i]
                    if mine is not None:
                        joined = (mine, batch.ts[i], hit[2] if type(hit) is tuple else None)
                    elif type(hit) is tuple:
                        joined = hit
                    else:
                        which = f"id {batch.idents[i]!r} of {model!r}"
                        dead.append(DeadLetter(batch.messages[i], *(
                            ("duplicate_label", f"{which} was labeled already") if hit == "duplicate"
                            else ("unknown_id", f"no pending prediction for {which}"))))
                        continue
                    joins.append(i)
                    preds.append(joined[0])
                    pred_ts.append(joined[1])
                    versions.append(joined[2])
                    last[model] = positions[i]
            lo = hi
        rows: dict[str, list[int]] = {}
        models = [batch.models[i] for i in joins]
        if len(set(models)) == 1:
            rows[models[0]] = list(range(len(joins)))
        else:
            for r, model in enumerate(models):
                rows.setdefault(model, []).append(r)
        every = len(joins) == len(batch)
        labels, ts, messages, at = (values if every else [values[i] for i in joins]
                                    for values in (batch.labels, batch.ts, batch.messages, positions))
        out = {}
        for model, r in rows.items():
            whole = len(r) == len(joins)
            pick = lambda values: values if whole else [values[i] for i in r]   # noqa: E731, B023
            eb_preds = pick(preds)
            errors, binary = errors_of(eb_preds, pick(labels))
            out[model] = ErrorBatch(errors, binary, pick(ts), pick(pred_ts), eb_preds,
                                    pick(messages), pick(versions), pick(at))
        return out, dead, expired

    def close(self) -> list[Outcome]:
        """The batch is over: what its clock expires ages out; its predictions settle."""
        outcomes: list[Outcome] = []
        self._expire(self.now, None, outcomes)
        self.store.settle()
        return outcomes


class PerformanceMonitor:
    """A model's error stream (joined labels), watched by ADWIN: performance_drift alerts.

    Parameters
    ----------
    model : the model's name.
    settings : the service's settings (detect, labels).
    """

    SIGNAL = "error"

    def __init__(self, model: str, settings: Settings, profiles: Profiles | None = None) -> None:
        d = settings.detect
        self.model = model
        self.profiles = profiles
        self.version: str | None = None       # the model version whose predictions it judges
        own = settings.models.get(model)
        season = own.seasonality if own is not None else None
        if season is not None and not season.covers("prediction"):
            season = None
        # a model's accuracy varies with the cycle of its score: with a seasonal score, its
        # error stream is seasonal too, in the predictions' time
        # (its warm-up may learn on to a day as far as the features' may: labels come as often)
        self.signals = SignalRegistry(1, settings.labels.warmup, d.clip_z, season=season,
                                      day_reach=DAY_EXTEND * d.warmup)
        self.signals.ensure([self.SIGNAL])
        self.adwin = DETECTORS["adwin"].make(d)
        self.adwin.add_features(1)
        self.states = DriftStates(["adwin"], d.min_effect, d.significance, d.confidence,
                                  d.min_values, d.cooldown_s)
        self.states.add(1)
        self.binary = True
        self.n_labels = 0
        self.estimating = settings.estimate.enabled
        self.warmup = settings.labels.warmup
        self.pairs = np.zeros((0, 2))          # (score, label) of the first joined labels
        self.calibration: Calibration | None = None   # fitted from them (None: not yet)
        self.fitted_at: int | None = None      # this batch: the position of the label that made it
        self.scored = np.full((SCORED, 2), np.nan)    # (estimated, real) correctness of recent labels
        self.scored_pos = 0
        self._take(profiles.of(model) if profiles is not None else None)

    def _take(self, profile: Profile | None) -> None:
        if profile is not None and self.SIGNAL in profile.signals:
            self.signals.use_profile({self.SIGNAL: profile.signals[self.SIGNAL]}, {})
        if profile is not None and profile.calibration is not None and self.estimating:
            self.calibration = Calibration.from_profile(profile.calibration)

    def state_dict(self) -> dict[str, Any]:
        return {"binary": self.binary, "n_labels": self.n_labels, "signals": self.signals.state_dict(),
                "adwin": self.adwin.to_bytes(), "states": self.states.state_dict(), "version": self.version,
                "pairs": self.pairs, "scored": self.scored, "scored_pos": self.scored_pos,
                "calibration": None if self.calibration is None else self.calibration.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.binary, self.n_labels = bool(state["binary"]), int(state["n_labels"])
        self.signals.load_state(state["signals"])
        self.adwin = DETECTORS["adwin"].from_bytes(state["adwin"])
        self.states.load_state(state["states"])
        self.version = state["version"]
        if "pairs" in state:               # (a state written before the estimate existed: afresh)
            self.pairs, self.scored = state["pairs"], state["scored"]
            self.scored_pos = int(state["scored_pos"])
        self.calibration = None
        if state.get("calibration") is not None:
            self.calibration = Calibration.from_state(state["calibration"])

    @property
    def estimate_bias(self) -> float:
        """Estimated minus real accuracy over the recent labels judged by a calibration (NaN:
        none yet)."""
        est, real, n = self.estimate_score()
        return est - real if n else float("nan")

    def estimate_score(self) -> tuple[float, float, int]:
        """(estimated accuracy, real accuracy, labels) of the last SCORED labeled predictions
        with a calibration ((NaN, NaN, 0): none yet)."""
        ok = ~np.isnan(self.scored[:, 0])
        if not ok.any():
            return float("nan"), float("nan"), 0
        return float(self.scored[ok, 0].mean()), float(self.scored[ok, 1].mean()), int(ok.sum())

    def _calibrate(self, eb: ErrorBatch) -> None:
        """Labelled scores: the first ``warmup`` fit the calibration (at the label that
        completes them); later ones score the estimate against the real outcome."""
        if set(map(type, eb.predictions)) <= {int, float}:
            p = np.array(eb.predictions, dtype=np.float64)
        else:
            p = np.array([v if isinstance(v, (int, float)) and not isinstance(v, bool) else np.nan
                          for v in eb.predictions], dtype=np.float64)
        ok = (p >= 0) & (p <= 1) & eb.binary
        if not ok.any():
            return
        correct = 1.0 - eb.errors
        y = np.where(correct > 0, p >= 0.5, p < 0.5).astype(float)
        rows = np.flatnonzero(ok)
        if self.calibration is None:
            need = self.warmup - self.pairs.shape[0]
            take = rows[:need]
            self.pairs = np.concatenate([self.pairs, np.column_stack([p[take], y[take]])])
            if self.pairs.shape[0] < self.warmup:
                return
            self.calibration = Calibration.fit(self.pairs[:, 0], self.pairs[:, 1])
            self.fitted_at = eb.positions[int(take[-1])] if eb.positions else -1
            rows = rows[need:]
        if rows.size:
            est = self.calibration.expected_correct(p[rows])
            k = min(rows.size, SCORED)
            pos = (self.scored_pos + np.arange(k)) % SCORED
            self.scored[pos] = np.column_stack([est[-k:], correct[rows][-k:]])
            self.scored_pos += k

    @property
    def error_level(self) -> float:
        """Mean error of the recent labels (error rate for 0/1 errors), NaN before any."""
        ring = self.signals.recent[:, 0]
        ring = ring[~np.isnan(ring)]
        return float(ring.mean()) if ring.size else float("nan")

    def new_version(self, version: str, batch: ModelBatch, row: int, alerts: list[dict]) -> None:
        """A new model version: its error stream starts over (its profile's reference, else a
        new warm-up); the labels of the earlier versions' predictions no longer count."""
        self.rebaseline(batch, row, alerts, "model_version")
        self.version = version
        self.pairs, self.calibration = np.zeros((0, 2)), None      # the new version's scores
        self._take(self.profiles.of(self.model, version) if self.profiles is not None else None)

    def rebaseline(self, batch: ModelBatch, row: int, alerts: list[dict],
                   reason: str = "rebaselined") -> None:
        """The error stream learns a new reference from its next labels; an open episode
        resolves with ``reason``, at the events' ``row`` where it was applied."""
        t = self.states.rebaseline(0, row, float(self.signals.cz_mean[0]), reason)
        if t is not None:
            alerts.extend(self.states.alerts([t], lambda t: make_alert(
                model=self.model, signal=self.SIGNAL, detector=t.detector, ts=float(batch.ts[row]),
                topic=batch.topic[row], partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                stats={"n_before": int(self.signals.n[0]), "n_after": t.n, "effect_size": round(t.effect, 6)},
                status="resolved", reason=reason, model_version=self.version)))
        self.signals.reset(0)
        self.adwin.reset_features([0])

    def process(self, eb: ErrorBatch, alerts: list[dict]) -> int:
        """Feed a model's joined labels; appends alerts, returns the detections that raised none.
        Labels of another version's predictions do not count (the stream is the version's)."""
        return PerformanceMonitor.process_all([self], [eb], alerts)

    @staticmethod
    def process_all(monitors: list[PerformanceMonitor], batches: list[ErrorBatch], alerts: list[dict]) -> int:
        """:meth:`process` of each monitor's joined labels, their error streams' ADWINs
        advanced together (one numpy step for all the models, as their events' detectors)."""
        ready = [(mon, prepared) for mon, prepared in
                 ((mon, mon._prepare(eb)) for mon, eb in zip(monitors, batches, strict=True))
                 if prepared is not None]
        inputs = [mon.signals.detector_input(Z) for mon, (_, _, Z) in ready]
        masks = DETECTORS["adwin"].cls.update_many([mon.adwin for mon, _ in ready], inputs)
        return sum(mon._finish(eb, X, Z, mask, alerts)
                   for (mon, (eb, X, Z)), mask in zip(ready, masks, strict=True))

    def _prepare(self, eb: ErrorBatch) -> tuple[ErrorBatch, np.ndarray, np.ndarray] | None:
        """The labels that count (None: none), their errors X and z-scores Z (labels x 1)."""
        self.fitted_at = None
        if self.version is not None:
            keep = [i for i, v in enumerate(eb.versions) if v is None or v == self.version]
            if len(keep) < len(eb.errors):
                eb = eb.only(keep)
            if not keep:
                return None
        if self.estimating:
            self._calibrate(eb)
        X = eb.errors[:, None]
        self.binary = bool(eb.binary.all())
        reg = self.signals
        if reg.profile is not None and self.n_labels == 0 and not reg.profile.columns:
            reg.profile.add_column(0)       # (with the first label: a stream saved without it stays so)
        self.n_labels += X.shape[0]
        if reg.profile is None and not reg.learning:
            return eb, X, reg.standardize(X)             # (times matter to warm-ups and cycles only)
        ts = np.asarray(eb.prediction_ts, dtype=np.float64)
        return eb, X, reg.standardize(X, np.where(np.isfinite(ts), ts, np.asarray(eb.ts, dtype=np.float64)))

    def _finish(self, eb: ErrorBatch, X: np.ndarray, Z: np.ndarray, mask: np.ndarray,
                alerts: list[dict]) -> int:
        """Alerts from the error stream's ADWIN ``mask`` and drift state."""
        reg = self.signals
        hit = hit_matrix({"adwin": mask}, ["adwin"])
        for j in reg.take_stepped():
            self.states.compare(j, "reference")
        ts = np.asarray(eb.ts, dtype=np.float64)
        transitions = self.states.step(Z, X, hit, ts, reg.cz_mean, reg.long_run_sd, reg.n_ref)
        alerts.extend(self.states.alerts(transitions, lambda t: self._alert(eb, t)))
        reg.remember(X)
        quiet, self.states.quiet = self.states.quiet, 0
        return quiet

    def _alert(self, eb: ErrorBatch, t: Transition) -> dict:
        reg, row = self.signals, t.row
        before, after = float(reg.mean[0]), t.raw_mean
        if self.binary:
            stats = {"accuracy_before": 1.0 - before, "accuracy_after": 1.0 - after}
        else:
            stats = {"mae_before": before, "mae_after": after}
        stats.update({"n_before": int(reg.n[0]), "n_after": t.n, "effect_size": round(t.effect, 6),
                      "since_ts": t.since_ts, "prediction_ts": eb.prediction_ts[row],
                      "label_delay_s": eb.ts[row] - eb.prediction_ts[row]})
        if reg.is_seasonal(0):
            stats["seasonal"] = True                 # (effect_size: in residual sd)
        msg = eb.messages[row]
        return make_alert(model=self.model, signal=self.SIGNAL, detector=t.detector, ts=eb.ts[row],
                          topic=msg.topic, partition=msg.partition, offset=msg.offset, stats=stats,
                          status=t.status, reason=t.reason, model_version=self.version)
