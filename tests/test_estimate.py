"""Accuracy estimated from calibrated scores before the labels arrive (signal
``estimated_accuracy``)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.app.profile import profile
from stream.config import load_settings
from stream.monitor.estimate import ESTIMATE, Calibration, isotonic
from stream.pipeline import Pipeline
from stream.types import Message

DAY = 86400.0
N, AT, DT, DELAY = 16_000, 8_000, 60.0, 3 * DAY     # an event a minute, labels 3 days later


def stream(covariate_shift: bool = False, flip_labels: bool = False, seed: int = 0,
           miscalibrated: bool = False) -> tuple[list[Message], float]:
    """A binary classifier p = sigmoid(x / 2) on x ~ N(0, 3) (mostly sure); from event AT on,
    x ~ N(0, 1) near its boundary (``covariate_shift``) or the labels flip (``flip_labels``,
    same inputs). Labels follow the true probability, DELAY after their event. Returns the
    messages in time order and the time the first label of a changed event arrives."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 3, N)
    if covariate_shift:
        x[AT:] = rng.normal(0, 1, N - AT)
    p = 1 / (1 + np.exp(-x / 2))
    y = (rng.random(N) < p).astype(int)
    if flip_labels:
        y[AT:] = 1 - y[AT:]
    score = p ** 3 if miscalibrated else p             # (a model whose scores are too low)
    items = []
    for i in range(N):
        t = i * DT
        items.append((t, 0, {"model": "m", "id": f"e{i}", "ts": t, "features": {"x": float(x[i])},
                             "prediction": float(score[i])}))
        items.append((t + DELAY, 1, {"model": "m", "id": f"e{i}", "ts": t + DELAY, "label": int(y[i])}))
    items.sort(key=lambda it: (it[0], it[1]))
    msgs = [Message(orjson.dumps(d), "labels" if kind else "events", 0, k, 0.0)
            for k, (_, kind, d) in enumerate(items)]
    return msgs, AT * DT + DELAY


def run(msgs: list[Message], batch: int = 2000, **overrides) -> tuple[Pipeline, list[dict]]:
    pipeline = Pipeline(load_settings(env={}, overrides=overrides), label_topics={"labels"})
    alerts = []
    for s in range(0, len(msgs), batch):
        alerts += pipeline.process(msgs[s:s + batch]).alerts
    return pipeline, alerts


def test_a_shift_to_where_the_model_is_unsure_is_found_before_any_label():
    msgs, first_label = stream(covariate_shift=True)
    pipeline, alerts = run(msgs)
    est = [a for a in alerts if a["signal"] == ESTIMATE]
    assert est and est[0]["status"] == "firing"
    a = est[0]
    assert a["kind"] == "performance_drift" and a["estimated"] is True
    assert AT * DT <= a["at"]["ts"] < first_label                       # before the labels could say
    assert 0.68 < a["stats"]["accuracy_before"] < 0.78                  # sigmoid(|x|/2), x ~ N(0, 3)
    assert a["stats"]["accuracy_after"] < a["stats"]["accuracy_before"] - 0.1
    # and when the labels come, they agree
    assert any(x["signal"] == "error" and x["status"] == "firing" and x["at"]["ts"] >= first_label
               for x in alerts)
    assert abs(pipeline.performance["m"].estimate_bias) < 0.05         # the estimate was right


def test_a_pure_concept_change_is_not_estimated_but_the_labels_find_it():
    """The same inputs, other labels: the scores look as sure as ever, so the estimate stays
    (what it assumes, see the README); the joined labels catch it."""
    msgs, first_label = stream(flip_labels=True)
    pipeline, alerts = run(msgs)
    assert [a for a in alerts if a["signal"] == ESTIMATE] == []
    err = [a for a in alerts if a["signal"] == "error"]
    assert err and err[0]["status"] == "firing" and err[0]["at"]["ts"] >= first_label
    assert "estimated" not in err[0]
    assert pipeline.performance["m"].estimate_bias > 0.3                # scored: it was far off


def test_stable_scores_are_quiet_and_estimated_well():
    pipeline, alerts = run(stream(seed=3)[0])
    assert alerts == []
    assert pipeline.models["m"].estimated_accuracy == pytest.approx(0.73, abs=0.03)
    assert abs(pipeline.performance["m"].estimate_bias) < 0.03


def test_miscalibrated_scores_are_calibrated_first():
    """Scores p^3 (too low): raw, max(q, 1 - q) would be badly off; the isotonic map, fitted on
    the first joined labels and kept because it beats them, brings the estimate to the truth."""
    pipeline, alerts = run(stream(seed=4, miscalibrated=True)[0])
    assert alerts == []
    perf = pipeline.performance["m"]
    assert perf.calibration is not None and perf.calibration.x is not None
    assert abs(perf.estimate_bias) < 0.04


@pytest.mark.parametrize("batch", [1, 333])
def test_the_estimate_starts_where_the_calibration_was_made_whatever_the_batches(batch):
    msgs, _ = stream(covariate_shift=True, seed=5)
    msgs = msgs[:12_000]
    assert run(msgs, batch)[1] == run(msgs, 6000)[1]


def test_labelled_training_data_gives_the_calibration(tmp_path):
    """A profile built from a file with labels carries the calibration and the estimate's
    reference: the estimate runs from the first event, with no label joined yet."""
    rng = np.random.default_rng(6)
    x = rng.normal(0, 3, 20_000)
    p = 1 / (1 + np.exp(-x / 2))
    train = tmp_path / "train.jsonl"
    y = rng.random(x.size) < p
    docs = [{"model": "m", "features": {"x": float(a)}, "prediction": float(b), "label": int(c)}
            for a, b, c in zip(x, p, y, strict=True)]
    train.write_bytes(b"".join(orjson.dumps(d) + b"\n" for d in docs))
    profiles, _ = profile(load_settings(env={}), [str(train)])
    assert profiles.of("m").calibration is not None and ESTIMATE in profiles.of("m").signals
    pipeline = Pipeline(load_settings(env={}), profiles=profiles)
    msgs, _ = stream(covariate_shift=True, seed=7)
    events = [m for m in msgs if m.topic == "events"][:AT + 2000]
    alerts = pipeline.process(events).alerts
    est = [a for a in alerts if a["signal"] == ESTIMATE]
    assert est and est[0]["stats"]["reference"] == "profile" and est[0]["at"]["ts"] >= AT * DT


def test_calibration_maps():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    x, y = isotonic(p, np.array([0.0, 1.0, 0.0, 1.0]))
    assert x.tolist() == [0.1, 0.1, 0.2, 0.3, 0.4, 0.4]                  # the middle pair pooled
    assert y.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0, 1.0]
    raw = Calibration()                                                   # identity
    assert raw.expected_correct(np.array([0.9, 0.2, np.nan, 1.5])).tolist()[:2] == pytest.approx([0.9, 0.8])
    assert np.isnan(raw.expected_correct(np.array([1.5]))[0])            # not a probability
    rng = np.random.default_rng(0)
    s = rng.random(4000)
    good = Calibration.fit(s, (rng.random(4000) < s).astype(float))
    assert good.x is None                                                 # calibrated already: kept raw
    bad = Calibration.fit(s, (rng.random(4000) < s ** 0.3).astype(float))
    assert bad.x is not None and np.all(np.diff(bad.y) >= 0)


def test_the_backtest_report_scores_the_estimate(tmp_path):
    """A real replay process with labels: the report says how the estimate fared against them,
    and the estimated alert is in the alerts file."""
    import subprocess
    import sys

    msgs, _ = stream(covariate_shift=True, seed=8)
    for topic in ("events", "labels"):
        (tmp_path / f"{topic}.jsonl").write_bytes(b"".join(m.value + b"\n" for m in msgs if m.topic == topic))
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(tmp_path / "events.jsonl"),
                           "--labels", str(tmp_path / "labels.jsonl"), "--report", str(tmp_path / "r.html"),
                           "--out", str(tmp_path / "alerts.jsonl")], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "r.html").read_text()
    assert "accuracy estimated from the scores" in text and "estimate bias" in text
    alerts = [orjson.loads(line) for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert any(a["signal"] == ESTIMATE and a.get("estimated") for a in alerts)
