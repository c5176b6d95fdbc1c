"""Late labels: joins, error streams, performance_drift, bounded store, bad labels."""

from __future__ import annotations

import json

import msgspec
import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import load_settings
from stream.ingest.rows import Message
from stream.monitor.performance import PredictionStore
from stream.monitor.performance import error_of as _error
from stream.pipeline import Pipeline
from stream.types import ModelBatch

DAY = 86400.0


def stream(n: int, error_rate_after: float, change_at: int, seed: int = 0, delay: float = 30 * DAY):
    """Events (a score per id) and their labels `delay` later, merged in ts order.

    Labels agree with the score (error rate 10%) until prediction `change_at`, then disagree
    with probability `error_rate_after`."""
    rng = np.random.default_rng(seed)
    score = rng.random(n)
    err_p = np.where(np.arange(n) < change_at, 0.1, error_rate_after)
    wrong = rng.random(n) < err_p
    label = np.where(wrong, score < 0.5, score >= 0.5).astype(int)
    items = []
    for i in range(n):
        t = i * 600.0                                       # an event every 10 minutes
        items.append((t, 0, orjson.dumps({"model": "m", "id": f"p{i}", "ts": t, "features": {"x": 1.0},
                                           "prediction": float(score[i])})))
        items.append((t + delay, 1, orjson.dumps({"model": "m", "id": f"p{i}", "ts": t + delay,
                                                  "label": int(label[i])})))
    items.sort(key=lambda x: (x[0], x[1]))
    return [Message(v, "labels" if kind else "events", 0, k, 0.0) for k, (_, kind, v) in enumerate(items)]


def run(msgs, **overrides):
    pipeline = Pipeline(load_settings(env={}, overrides=overrides), label_topics={"labels"})
    alerts, dead = [], []
    for s in range(0, len(msgs), 1000):
        r = pipeline.process(msgs[s:s + 1000])
        alerts += r.alerts
        dead += r.dead_letters
    return pipeline, alerts, dead


def test_accuracy_decay_shows_as_performance_drift_when_the_labels_arrive():
    msgs = stream(12_000, error_rate_after=0.4, change_at=6_000)
    pipeline, alerts, dead = run(msgs)
    assert dead == []
    perf = [a for a in alerts if a["kind"] == "performance_drift"]
    assert perf and perf[0]["status"] == "firing" and perf[0]["signal"] == "error"
    a = perf[0]
    change_ts = 6_000 * 600.0
    assert a["stats"]["prediction_ts"] >= change_ts                   # attributed to the prediction
    assert a["stats"]["prediction_ts"] < change_ts + 1_000 * 600.0
    assert a["at"]["ts"] >= change_ts + 30 * DAY                     # never before its label came
    assert a["stats"]["label_delay_s"] == 30 * DAY
    assert 0.85 < a["stats"]["accuracy_before"] < 0.95
    assert a["stats"]["accuracy_after"] < a["stats"]["accuracy_before"]
    assert 0.55 < 1 - pipeline.performance["m"].error_level < 0.75
    assert all(x["kind"] != "data_drift" for x in alerts)


def test_stable_accuracy_raises_nothing():
    _, alerts, dead = run(stream(12_000, error_rate_after=0.1, change_at=6_000, seed=3))
    assert alerts == [] and dead == []


def test_bad_labels_are_dead_letters_with_reasons():
    msgs = [Message(orjson.dumps({"model": "m", "id": "a", "ts": 1, "features": {}, "prediction": 0.7}),
                    "events", 0, 0, 0.0)]
    bad = [b'{"model":"m","id":"zzz","label":1}', b'{"model":"m","id":"a","label":1}',
           b'{"model":"m","id":"a","label":0}', b'{"model":"m","id":"b","label":{"x":1}}',
           b'{"model":"m","label":1}', b'{"model":"no good","id":"a","label":1}', b"nope",
           b'{"model":"m","id":"c","label":1,"ts":"never"}', b'{"model":"m","id":"c","label":1,"ts":1e13}']
    msgs += [Message(v, "labels", 0, i + 1, 0.0) for i, v in enumerate(bad)]
    _, _, dead = run(msgs)
    assert [(d.message.offset, d.reason) for d in dead] == [
        (1, "unknown_id"), (3, "duplicate_label"), (4, "invalid_label"), (5, "invalid_id"),
        (6, "invalid_model"), (7, "invalid_json"), (8, "invalid_ts"), (9, "invalid_ts")]


def test_one_event_with_a_skewed_clock_does_not_expire_the_waiting_predictions():
    """The store's clock followed the largest event time: one event a year ahead expired
    every prediction waiting for its label (30-day TTL here), and their labels were dead
    letters (unknown_id). It now follows each batch's median event time."""
    events = [Message(orjson.dumps({"model": "m", "id": f"p{i}", "ts": 1.7e9 + i,
                                    "features": {"x": 1.0}, "prediction": 0.8}), "events", 0, i, 0.0)
              for i in range(2000)]
    events[700] = events[700]._replace(value=orjson.dumps(
        {"model": "m", "id": "skewed", "ts": 1.7e9 + 365 * DAY, "features": {"x": 1.0}}))
    labels = [Message(orjson.dumps({"model": "m", "id": f"p{i}", "ts": 1.7e9 + 2000 + i, "label": 1}),
                      "labels", 0, i, 0.0) for i in range(2000) if i != 700]
    _, _, dead = run(events + labels, **{"labels.ttl_s": 30 * DAY})
    assert dead == []


def test_the_store_clock_is_the_second_largest_event_time_so_far():
    """One event with a skewed clock (a year ahead) cannot move the clock and expire every
    prediction waiting for its label; the clock at a position counts only the events before
    it, whatever the batch."""
    from stream.monitor.performance import LabelDesk

    def clocks(ts_batches, start=None):
        desk = LabelDesk(10, 1.0)
        if start is not None:
            desk.top, desk.now = start
        out = []
        for ts in ts_batches:
            batch = _batch(np.array(ts, dtype=float))
            desk.events([batch], [np.arange(len(ts))])
            out.append([desk.clock_at(p) for p in range(len(ts) + 1)])
        return out, desk.now

    assert clocks([[101.0, 102.0, 103.0]], (100.0, 100.0)) == ([[100.0, 100.0, 101.0, 102.0]], 102.0)
    assert clocks([[101.0, 5e9, 102.0]], (100.0, 100.0))[1] == 102.0        # the stray is ignored
    assert clocks([[5e9]], (100.0, 100.0))[1] == 100.0                       # alone in its batch too
    assert clocks([[101.0], [6e9, 5e9]], (100.0, 100.0))[1] == 5e9           # two are a real jump
    assert clocks([[50.0, 60.0]], (100.0, 100.0))[1] == 100.0                # never backwards
    assert clocks([[7.0]])[1] == float("-inf") and clocks([[7.0, 8.0]])[1] == 7.0
    # the same events in one batch or three: the same clock at every position
    whole, _ = clocks([[3.0, 9.0, 4.0, 8.0, 5.0, 10.0]])
    parts, _ = clocks([[3.0, 9.0], [4.0, 8.0], [5.0, 10.0]])
    assert [c for part in parts for c in part[1:]] == whole[0][1:]


def _batch(ts: np.ndarray):
    from stream.types import ModelBatch

    n = ts.size
    return ModelBatch("m", {}, {}, np.full(n, np.nan), None, ts, np.zeros(n, dtype=np.int64),
                      np.arange(n), np.full(n, "t", dtype=object), [None] * n, [None] * n)


def test_store_is_bounded_by_size_and_age():
    store = PredictionStore(max_size=3, ttl_s=100.0)
    msgs = [Message(orjson.dumps({"model": "m", "id": i, "ts": float(i * 10), "features": {},
                                  "prediction": 0.5}), "events", 0, i, 0.0) for i in range(5)]
    from stream.config import LimitSettings
    from stream.ingest.rows import decode
    store.add(decode(msgs, LimitSettings()).models["m"])
    assert store.evicted["size"] == 2 and list(store.pending["m"]) == [2, 3, 4]
    store.expire(now_ts=135.0)                      # keeps predictions from ts >= 35
    assert store.evicted["ttl"] == 2 and list(store.pending["m"]) == [4] and store.size == 1


def test_store_over_its_size_evicts_the_largest_models_oldest_first():
    from stream.config import LimitSettings
    from stream.ingest.rows import decode

    def batch(model, ids):
        msgs = [Message(orjson.dumps({"model": model, "id": i, "ts": 1.0, "features": {},
                                      "prediction": 0.5}), "events", 0, i, 0.0) for i in ids]
        return decode(msgs, LimitSettings()).models[model]

    store = PredictionStore(max_size=10, ttl_s=100.0)
    store.add(batch("small", range(3)))
    store.add(batch("flood", range(100, 120)))      # 23 > 10: the flooding model pays
    assert store.size == 10 and store.evicted["size"] == 13
    assert list(store.pending["small"]) == [0, 1, 2]
    assert list(store.pending["flood"]) == list(range(113, 120))
    assert store.take("small", 1) == (0.5, 1.0, None) and store.take("small", 1) == "duplicate"
    assert store.take("flood", 100) is None and store.size == 9


def test_error_definitions():
    assert _error(0.8, 1) == (0.0, True) and _error(0.8, 0) == (1.0, True)
    assert _error(0.5, True) == (0.0, True)
    assert _error("cat", "dog") == (1.0, True) and _error("cat", "cat") == (0.0, True)
    assert _error(3.5, 5.0) == (1.5, False)
    assert _error(7.0, 1) == (6.0, False)           # a score outside [0, 1] is a regression
    # labels as text (from CSV files): numbers for a number predicted, so "1" is not a class
    assert _error(0.9, "1") == (0.0, True) and _error(0.9, " 0 ") == (1.0, True)
    assert _error(0.2, "true") == (1.0, True) and _error(0.2, "False") == (0.0, True)
    assert _error(3.5, "5") == (1.5, False)
    assert _error(0.9, "yes") == (1.0, True) and _error(0.9, "nan") == (1.0, True)   # classes
    assert _error("1", 1) == (0.0, True)                            # a class predicted: as text


def test_a_batch_of_labels_checked_as_columns_reads_as_message_by_message():
    """The columnar check of a batch of good labels gives what decoding each alone gives;
    one bad label sends the batch message by message, and only it is a dead letter."""
    from stream.ingest.labels import _columns, decode_label, decode_labels

    limits = load_settings(env={}).limits
    rng = np.random.default_rng(3)
    docs = [{"model": f"m{i % 3}", "id": [f"p{i}", i][i % 2], "label": [0, 1, True, 0.5, "cat"][i % 5],
             **({"ts": [1.7e9 + i, int(1.7e9) + i, "2024-01-01T00:00:00Z"][i % 3]} if i % 4 else {}),
             **({"prediction": [0.25, "dog", 3][i % 3]} if i % 7 == 0 else {})} for i in range(200)]
    rng.shuffle(docs)
    msgs = [Message(orjson.dumps(d), "labels", 0, i, 1.6e9 + i) for i, d in enumerate(docs)]
    assert _columns([orjson.loads(m.value) for m in msgs], msgs, limits) is not None   # (as columns)
    batch, dead = decode_labels(msgs, limits)
    one_by_one = [decode_label(m, limits) for m in msgs]
    assert not dead and batch.index == list(range(len(msgs)))
    assert list(zip(batch.models, batch.idents, batch.labels, batch.ts, batch.predictions, batch.messages,
                    strict=True)) == [tuple(lab) for lab in one_by_one]
    bad = msgs[:50] + [Message(orjson.dumps({"model": "m", "id": 1.5, "label": 1}), "labels", 0, 99, 0.0)]
    batch, dead = decode_labels(bad, limits)
    assert batch.index == list(range(50))
    assert [(d.reason, d.message.offset) for d in dead] == [("invalid_id", 99)]


def test_errors_of_a_batch_are_the_errors_one_by_one():
    from stream.monitor.performance import errors_of

    preds = [0.2, 0.7, 0.5, 1.0, 0.0, 3.5, -1.0, 0.9, True, "cat", 0.6, 2]
    labels = [0, 1, 0, True, False, 3, 1, 1.0, 1, "cat", "1", 0]
    for p, y in ((preds[:9], labels[:9]), (preds, labels)):      # numbers only (at once), mixed
        errors, binary = errors_of(p, y)
        assert list(zip(errors, binary, strict=True)) == [_error(a, b) for a, b in zip(p, y, strict=True)]


def test_selection_outcomes_counted_at_once_pause_where_one_by_one_would_check():
    from stream.monitor.feedback import SelectionWatch

    rng = np.random.default_rng(5)
    scores = [float(s) if k else "cls" for s, k in zip(rng.random(500), rng.random(500) > 0.1, strict=True)]
    labeled = rng.random(500) < np.where(np.array([s if isinstance(s, float) else 0 for s in scores]) > 0.5,
                                         0.9, 0.2)
    watch, ref = SelectionWatch(5, 10, 0.5), SelectionWatch(5, 10, 0.5)
    seen = []
    for at, flagged in watch.outcomes(scores, labeled, 7):
        seen.append((at, flagged, watch.labeled.tolist(), watch.unlabeled.tolist()))
    want = []
    for i, (s, y) in enumerate(zip(scores, labeled, strict=True)):
        if isinstance(s, float):
            (ref.labeled if y else ref.unlabeled)[min(int(s * 5), 4)] += 1
            ref.total += 1
            if ref.total % 7 == 0:
                want.append((i, ref.flagged() is not None, ref.labeled.tolist(), ref.unlabeled.tolist()))
    assert seen == want and any(f for _, f, *_ in want) and not all(f for _, f, *_ in want)
    assert watch.labeled.tolist() == ref.labeled.tolist() and watch.total == ref.total


class _OneByOne:
    """The store's takes as their definition: one label after the other, each over the
    bound evicting one labeled id, the oldest of the model holding the most (ties: the
    last name)."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.pending: dict[str, dict] = {}
        self.labeled: dict[str, dict] = {}
        self.labeled_size = 0

    def add(self, model: str, ids: list[int]) -> None:
        pending = self.pending.setdefault(model, {})
        for ident in ids:
            pending.pop(ident, None)
            pending[ident] = (0.5, 1.0, None)

    def take(self, model: str, ident: int):
        hit = self.pending.get(model, {}).pop(ident, None)
        if hit is None:
            return "duplicate" if ident in self.labeled.get(model, ()) else None
        self.labeled.setdefault(model, {})[ident] = None
        self.labeled_size += 1
        if self.labeled_size > self.max_size:
            largest = max((len(d), m) for m, d in self.labeled.items())[1]
            del self.labeled[largest][next(iter(self.labeled[largest]))]
            self.labeled_size = self.max_size
        return hit


@pytest.mark.parametrize("seed", range(6))
def test_takes_at_the_bound_evict_as_one_label_after_the_other(seed):
    """Labels taken many at a time (one model's run, or several models') answer and evict
    exactly as one by one: a re-sent prediction id labeled again, a duplicate, an unknown
    id, an id labeled long ago (evicted or not) right when its model is at the bound."""
    import random

    rng = random.Random(seed)
    store, ref = PredictionStore(max_size=40, ttl_s=1e9), _OneByOne(40)
    sent: list[tuple[str, int]] = []
    for step in range(400):
        model = rng.choices(["a", "b", "c"], weights=[8, 1, 1] if seed % 2 else [2, 2, 1])[0]
        ids = rng.sample(range(step * 10, step * 10 + 10), rng.randint(1, 5))
        if sent and rng.random() < 0.3:               # a prediction id sent again
            old_model, old = rng.choice(sent[-80:])
            if old_model == model and old not in ids:
                ids.append(old)
        n = len(ids)
        store.add(ModelBatch(model, {}, {}, np.full(n, 0.5), None, np.ones(n), np.zeros(n, dtype=np.int64),
                             np.arange(n), np.full(n, "t", dtype=object), ids, [None] * n))
        ref.add(model, ids)
        sent += [(model, i) for i in ids]
        labels = [(model, i) for i in ids] + [rng.choice(sent[-12:]) if rng.random() < 0.7
                                              else rng.choice(sent[-70:]) for _ in range(rng.randint(0, 4))]
        rng.shuffle(labels)
        if rng.random() < 0.6:                        # one model's run
            labels = [(model, i) for m, i in labels if m == model] + [(model, -1)]
        hits = store.take_many([m for m, _ in labels], [i for _, i in labels], [0] * len(labels))
        assert store.evicted["size"] == 0, step
        assert hits == [ref.take(m, i) for m, i in labels], step
        assert {m: list(d) for m, d in store.labeled.items() if d} == \
            {m: list(d) for m, d in ref.labeled.items() if d}, step
    assert store.evicted["size"] == 0 and store.labeled_size == ref.labeled_size == 40


_number = st.one_of(st.integers(-(2**65), 2**65), st.floats(allow_nan=False, allow_infinity=False),
                    st.booleans(), st.sampled_from([0, 1, -0.0, 2**63 - 1, 2**63, 2**64 - 1]))
_label_doc = st.fixed_dictionaries(
    {"model": st.sampled_from(["m", "n.v2", "bad model!", 7]),
     "id": st.one_of(st.text(max_size=3), st.integers(-(2**65), 2**65), st.floats(0, 9), st.none(),
                     st.booleans()),
     "label": st.one_of(_number, st.sampled_from(["cat", ""]), st.none(), st.just([1]))},
    optional={"ts": st.one_of(st.floats(1.6e9, 1.8e9), st.integers(1_600_000_000, 1_800_000_000),
                              st.sampled_from(["2024-05-01T10:00:00Z", "never", True, 1e300]), st.none()),
              "prediction": st.one_of(_number, st.sampled_from(["dog"]), st.none(), st.just({})),
              "extra": st.integers()})


@settings(max_examples=300, deadline=None)
@given(st.lists(_label_doc, min_size=1, max_size=20), st.booleans())
def test_the_typed_label_decode_gives_exactly_what_json_parsing_gives(docs, plain):
    """Decoding a batch of labels with the typed decode first gives the very labels (values
    and their types) and dead letters that parsing it as JSON gives."""
    from stream.ingest import labels as labels_module

    if plain:                       # (mostly labels the typed decode takes)
        docs = [{**d, "model": "m", "id": str(d["id"]), "label": 1} for d in docs]
    limits = load_settings(env={}).limits
    msgs = [Message(json.dumps(d).encode(), "labels", 0, i, 1.6e9 + i) for i, d in enumerate(docs)]
    typed, dead = labels_module.decode_labels(msgs, limits)

    class Refuses:
        def decode(self, _):
            raise msgspec.ValidationError("refused")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(labels_module, "_TYPED", Refuses())
        parsed, parsed_dead = labels_module.decode_labels(msgs, limits)
    columns = ("models", "idents", "labels", "ts", "predictions", "index")
    for name in columns:
        a, b = getattr(typed, name), getattr(parsed, name)
        assert a == b and [type(v) for v in a] == [type(v) for v in b], name
    assert typed.messages == parsed.messages
    assert [(d.reason, d.detail, d.message.offset) for d in dead] == \
        [(d.reason, d.detail, d.message.offset) for d in parsed_dead]
