"""The pure pipeline: alerts where drift is, none where it is not, deterministic output."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import orjson
import pytest

import stream.pipeline as pipeline_module
from stream.app.synthetic import DEMO_MODELS, ModelSpec, events
from stream.config import load_settings
from stream.ingest.rows import Message
from stream.monitor.signals import reference
from stream.pipeline import Pipeline


def run(pipeline: Pipeline, evs: list[dict], batch: int = 1000, topic: str = "events") -> list[dict]:
    msgs = [Message(orjson.dumps(e), topic, 0, i, 0.0) for i, e in enumerate(evs)]
    alerts = []
    for s in range(0, len(msgs), batch):
        alerts += pipeline.process(msgs[s:s + batch]).alerts
    return alerts


def test_drift_in_two_models_raises_alerts_only_there_and_after_the_change():
    evs = [e for _, e in events(DEMO_MODELS, 12_000, seed=3)]
    alerts = run(Pipeline(load_settings(env={})), evs)
    assert {a["status"] for a in alerts} == {"firing"}      # drift goes on: nothing resolves
    fired = {(a["model"], a["signal"]) for a in alerts}
    assert ("readmission", "feature:age") in fired and ("fraud", "feature:amount") in fired
    assert all(a["model"] != "churn" for a in alerts)
    for a in alerts:
        idx = int(evs[a["at"]["offset"]]["id"].rsplit("-", 1)[1])    # event index within its model
        spec = {m.name: m for m in DEMO_MODELS}[a["model"]]
        assert spec.drift_at <= idx < spec.drift_at + 2000, a
        assert a["kind"] == "data_drift" and a["status"] == "firing"
        assert a["stats"]["mean_after"] > a["stats"]["mean_before"]


def test_output_is_deterministic_and_independent_of_batching():
    evs = [e for _, e in events(DEMO_MODELS[:2], 9000, seed=4)]
    a = run(Pipeline(load_settings(env={})), evs, batch=1000)
    b = run(Pipeline(load_settings(env={})), evs, batch=1000)
    c = run(Pipeline(load_settings(env={})), evs, batch=777)
    assert a == b
    assert [x["alert_id"] for x in a] == [x["alert_id"] for x in c]
    assert len({x["alert_id"] for x in a}) == len(a)


def test_prediction_drift_has_its_own_kind():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.normal(0.3, 0.05, 5000), rng.normal(0.4, 0.05, 3000)])
    evs = [{"model": "m", "ts": i, "features": {}, "prediction": float(v)} for i, v in enumerate(p)]
    alerts = run(Pipeline(load_settings(env={})), evs)
    assert alerts and {a["kind"] for a in alerts} == {"prediction_drift"}
    assert all(a["at"]["offset"] >= 5000 for a in alerts)


def test_large_valued_and_tiny_valued_features_behave_alike():
    """Standardization: the same relative shift is found whatever the feature's units."""
    spec = ModelSpec("m", {"big": (1e9, 1e6), "tiny": (1e-6, 1e-7), "mid": (0, 1)},
                     {"big": 1.0, "tiny": 1.0, "mid": 1.0}, drift_at=5000)
    alerts = run(Pipeline(load_settings(env={})), [e for _, e in events([spec], 8000, seed=5)])
    first = {}
    for a in alerts:
        first.setdefault(a["signal"], a["at"]["offset"])
    first.pop("multivariate:reconstruction", None)          # (all three moved: so did their joint)
    assert set(first) == {"feature:big", "feature:tiny", "feature:mid"}
    assert all(5000 <= v < 5400 for v in first.values())


@pytest.mark.parametrize("glitch", [1e6, 1e200, -1e200])
def test_one_glitch_in_the_warm_up_does_not_blind_a_signal(glitch):
    """A single absurd value among a signal's warm-up values used to set its sd (1e200:
    infinite, with an overflow warning), so its z-scores stayed near 0 and a 1-sd shift
    later raised nothing. The glitch is now pulled in (30 robust sd's): the shift is found
    as on a clean stream, and the other signals are unaffected."""
    spec = ModelSpec("m", {"x": (10.0, 2.0), "y": (0.0, 1.0)}, {"x": 1.0}, drift_at=4000)
    evs = [e for _, e in events([spec], 7000, seed=8)]
    evs[10]["features"]["x"] = glitch
    with warnings.catch_warnings():
        warnings.simplefilter("error")                   # no overflow warning either
        alerts = run(Pipeline(load_settings(env={})), evs)
    fired = [a for a in alerts if a["status"] == "firing"]
    assert {a["signal"] for a in fired} == {"feature:x"}
    assert all(4000 <= a["at"]["offset"] < 4400 for a in fired)
    assert 1.5 < fired[0]["stats"]["sd_before"] < 3.0


def test_the_reference_of_well_behaved_warm_ups_is_the_plain_mean_and_sd():
    """Normal values, a rare 0/1 flag (median deviation 0) and a constant: exactly the plain
    statistics (the outlier rule changes nothing there)."""
    rng = np.random.default_rng(3)
    flag = np.zeros(1000)
    flag[::40] = 1.0
    for w in (rng.normal(50, 5, 1000), flag, np.full(1000, 7.0), rng.normal(0, 1, 1000) * 1e-8):
        mean, m2, sd = reference(w)
        assert mean == w.mean() and m2 == ((w - w.mean()) ** 2).sum()
        assert sd == max(np.sqrt(m2 / 999), 1e-9 * max(1.0, abs(mean)))


def test_a_drifting_signal_fires_once_per_episode():
    rng = np.random.default_rng(1)
    # a signal that jumps every 2000 events to a level far from its first one: one long
    # episode of drift, however many changes the detectors see in it
    levels = np.concatenate([[0.0], 3 + np.abs(rng.normal(0, 10, 19))])
    x = np.repeat(levels, 2000) + rng.normal(0, 1, 40_000)
    evs = [{"model": "m", "ts": i * 0.01, "features": {"x": float(v)}} for i, v in enumerate(x)]
    alerts = run(Pipeline(load_settings(env={})), evs)
    assert [a["status"] for a in alerts] == ["firing"]


def test_an_episode_resolves_when_the_values_return_and_a_new_shift_fires_again():
    rng = np.random.default_rng(2)
    level = np.zeros(30_000)
    level[5_000:12_000] = 2.0    # a shift that ends: one episode
    level[20_000:] = 5.0         # a second shift, long after: a new episode that stays open
    x = level + rng.normal(0, 1, level.size)
    evs = [{"model": "m", "ts": float(i), "features": {"x": float(v)}} for i, v in enumerate(x)]
    settings = load_settings(env={}, overrides={"detect.cooldown_s": 100.0})
    alerts = run(Pipeline(settings), evs)
    assert [a["status"] for a in alerts] == ["firing", "resolved", "firing"]
    first, resolved, second = alerts
    assert 5_000 <= first["at"]["offset"] < 5_500 and first["stats"]["effect_size"] > 1.5
    assert resolved["stats"]["episode_alert_id"] == first["alert_id"] and resolved["reason"] == "returned"
    assert 12_000 <= resolved["at"]["offset"] < 12_600 and abs(resolved["stats"]["effect_size"]) < 0.25
    assert resolved["severity"] == first["severity"] == "critical"
    assert resolved["alert_id"] != first["alert_id"]
    assert 20_000 <= second["at"]["offset"] < 20_500


def test_categorical_indicators_and_limits():
    evs = [{"model": "m", "ts": i, "features": {"c": "a" if i % 2 else "b"}} for i in range(3000)]
    evs += [{"model": "m", "ts": 3000 + i, "features": {"c": "new"}} for i in range(2000)]
    settings = load_settings(env={}, overrides={"limits.max_signals_per_model": 10})
    pipeline = Pipeline(settings)
    alerts = run(pipeline, evs)
    names = pipeline.models["m"].signals.names
    assert names == ["feature:c=__other__", "feature:c=a", "feature:c=b"]   # "new" came after warm-up
    assert {a["signal"] for a in alerts} >= {"feature:c=__other__", "feature:c=a"}
    assert all(a["at"]["offset"] >= 3000 for a in alerts)


def test_signal_limit_is_enforced():
    evs = [{"model": "m", "ts": i, "features": {f"f{k}": float(k) for k in range(30)}} for i in range(10)]
    pipeline = Pipeline(load_settings(env={}, overrides={"limits.max_signals_per_model": 7}))
    run(pipeline, evs)
    mon = pipeline.models["m"]
    assert mon.n_signals == 7 and mon.signals.dropped > 0
    assert all(d.n_features == 7 for d in mon.detectors.values())


def test_bonferroni_shares_the_models_delta_among_its_signals():
    evs = [{"model": "m", "ts": i, "features": {f"f{k}": float(k) for k in range(4)}, "prediction": 0.5}
           for i in range(10)]
    on = Pipeline(load_settings(env={}))
    run(on, evs)
    assert np.allclose(on.models["m"].detectors["adwin"].deltas, 1e-4 / 5)
    off = Pipeline(load_settings(env={}, overrides={"detect.adwin.bonferroni": False}))
    run(off, evs)
    assert np.allclose(off.models["m"].detectors["adwin"].deltas, 1e-4)


def test_string_predictions_are_class_indicators_with_prediction_drift():
    rng = np.random.default_rng(4)
    classes = np.where(np.arange(8000) < 5000, rng.choice(["a", "b"], 8000, p=[0.8, 0.2]),
                       rng.choice(["a", "b"], 8000, p=[0.4, 0.6]))
    evs = [{"model": "m", "ts": i, "features": {}, "prediction": str(c)} for i, c in enumerate(classes)]
    pipeline = Pipeline(load_settings(env={}))
    alerts = run(pipeline, evs)
    assert set(pipeline.models["m"].signals.names) == {"prediction=__other__", "prediction=a", "prediction=b"}
    assert alerts and {a["kind"] for a in alerts} == {"prediction_drift"}
    assert all(a["at"]["offset"] >= 5000 for a in alerts)


def test_model_limit_holds_within_one_batch_and_across_pieces():
    """A single batch of many new models (decoded in several pieces) admits no more than
    limits.max_models; the events of the others are dead letters "model_limit"."""
    pipeline = Pipeline(load_settings(env={}, overrides={"limits.max_models": 3}))
    msgs = [Message(orjson.dumps({"model": f"m{i % 7}", "features": {"x": float(i)}}), "events", 0, i, 0.0)
            for i in range(3000)]
    result = pipeline.process(msgs)
    assert sorted(pipeline.models) == ["m0", "m1", "m2"]
    assert {d.reason for d in result.dead_letters} == {"model_limit"}
    assert len(result.dead_letters) == sum(1 for i in range(3000) if i % 7 >= 3)
    assert result.n_events == 3000 - len(result.dead_letters)


def test_labels_with_their_own_prediction_respect_the_model_limit():
    pipeline = Pipeline(load_settings(env={}, overrides={"limits.max_models": 1}), label_topics={"labels"})
    events_ = [Message(orjson.dumps({"model": "tracked", "id": str(i), "features": {"x": 1.0},
                                     "prediction": 0.5}), "events", 0, i, 0.0) for i in range(10)]
    labels = [Message(orjson.dumps({"model": f"other{i}", "id": "a", "label": 1, "prediction": 0.9}),
                      "labels", 0, i, 0.0) for i in range(5)]
    labels.append(Message(orjson.dumps({"model": "tracked", "id": "3", "label": 1}), "labels", 0, 5, 0.0))
    result = pipeline.process(events_ + labels)
    assert sorted(pipeline.performance) == ["tracked"] and result.n_labels_joined == 1
    assert [d.reason for d in result.dead_letters] == ["model_limit"] * 5


def test_garbage_collector_paused_during_a_batch_and_restored_after(monkeypatch):
    evs = [e for _, e in events(DEMO_MODELS, 600, seed=5)]
    pipeline = Pipeline(load_settings(env={}))
    seen = []
    decode = pipeline_module.decode

    def spy(*args, **kwargs):
        seen.append(gc.isenabled())
        return decode(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "decode", spy)
    assert gc.isenabled()
    run(pipeline, evs[:300])
    assert gc.isenabled() and seen == [False]
    gc.disable()
    try:
        run(pipeline, evs[300:600])      # a host that disabled it keeps it disabled
        assert not gc.isenabled() and seen == [False, False]
    finally:
        gc.enable()
    bad = [Message(b"{}", "events", 0, 0, 0.0)]
    monkeypatch.setattr(pipeline_module, "decode", lambda *a, **k: 1 / 0)
    try:
        pipeline.process(bad)
    except ZeroDivisionError:
        pass
    assert gc.isenabled()                # restored after an error too


def test_signals_of_full_rows_take_the_same_values_as_signals_with_gaps():
    """Batches where every signal has every row take shortcuts (z-scores without warm-up
    bookkeeping once all signals are warm, recent values of all signals at once): the same
    numbers as the general path, which a signal without values forces on its neighbours."""
    from stream.monitor.signals import RECENT, SignalRegistry

    rng = np.random.default_rng(8)
    full, gappy = SignalRegistry(10, 50, 4.0), SignalRegistry(10, 50, 4.0)
    full.ensure(["a", "b", "c"])
    gappy.ensure(["a", "b", "c", "never"])
    for size in (30, 30, 7, 120, 1, 250):       # through the warm-up, then past RECENT rows
        X = rng.normal(3.0, 2.0, (size, 3))
        X[rng.random(X.shape) < 0.01] = 1e6      # clipped
        with_gap = np.concatenate([X, np.full((size, 1), np.nan)], axis=1)
        assert np.array_equal(full.standardize(X), gappy.standardize(with_gap)[:, :3], equal_nan=True)
        full.remember(X)
        gappy.remember(with_gap)
        assert np.array_equal(full.recent, gappy.recent[:, :3], equal_nan=True)
        assert full.recent_pos.tolist() == gappy.recent_pos[:3].tolist()
    assert full.n.min() >= 50 and (full.recent_pos >= RECENT).all()


def test_signals_with_gaps_score_the_same_in_one_batch_as_row_by_row():
    """A batch holding warm-ups (a columnar message of many rows) finds each signal's warm-up
    rows from its own values: its z-scores and last values are those of the same rows fed one
    at a time, whatever the gaps (a signal's warm-up takes its first values present)."""
    from stream.monitor.signals import SignalRegistry

    rng = np.random.default_rng(11)
    X = rng.normal(3.0, 2.0, (400, 4))
    X[rng.random(X.shape) < 0.3] = np.nan
    X[:, 3] = np.nan                              # a signal that never has a value
    X[:200, 2] = np.nan                           # one whose values start late
    whole, rows = SignalRegistry(10, 50, 4.0), SignalRegistry(10, 50, 4.0)
    for reg in (whole, rows):
        reg.ensure(["a", "b", "c", "d"])
    Z = whole.standardize(X)
    whole.remember(X)
    one = []
    for i in range(X.shape[0]):
        one.append(rows.standardize(X[i:i + 1]))
        rows.remember(X[i:i + 1])
    assert np.array_equal(Z, np.concatenate(one), equal_nan=True)
    for j in range(4):                            # (the rings, oldest first)
        assert np.array_equal(whole.recent_values(None, 0, j), rows.recent_values(None, 0, j))
    # the first row scored is the one after each signal's last warm-up value (none for "d")
    first = [int(np.flatnonzero(~np.isnan(X[:, j]))[int(whole.goal[j]) - 1]) + 1 for j in range(3)] + [400]
    assert whole.live_from.tolist() == first
    assert [int(np.argmax(~np.isnan(Z[:, j]))) for j in range(3)] == \
        [int(np.flatnonzero(~np.isnan(X[first[j]:, j]))[0]) + first[j] for j in range(3)]


def test_models_detected_together_alert_as_models_detected_one_by_one(monkeypatch):
    """The ADWIN detectors of a batch's models advance together (ADWIN.update_many): the
    alerts are exactly those of each model's detectors updated on their own."""
    evs = [e for _, e in events(DEMO_MODELS, 12000, seed=9)]
    together = run(Pipeline(load_settings(env={})), evs, batch=700)

    def one_by_one(detectors, Z):
        return [{name: det.update(z) for name, det in dets.items()}
                for dets, z in zip(detectors, Z, strict=True)]

    monkeypatch.setattr(pipeline_module, "detect_all", one_by_one)
    alone = run(Pipeline(load_settings(env={})), evs, batch=700)
    assert len({a["model"] for a in together}) >= 2        # drifts in several models
    assert together == alone
