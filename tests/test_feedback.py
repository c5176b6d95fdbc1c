"""Feedback loops: a self-reinforcing allocation is flagged; a stationary uneven one is not, nor
one that follows a declared cycle."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import orjson
import pytest

from stream.config import load_settings
from stream.ingest.rows import Message
from stream.pipeline import Pipeline

STEP = 60.0                 # an event a minute
DELAY = 86400.0             # labels come a day later


def allocation_stream(reinforcing: bool, n: int = 60_000, k: int = 8, seed: int = 0) -> list[Message]:
    """Events with a segment and a score, and their labels, merged in time order.

    reinforcing: segments get attention in proportion to the labels they produced so far
    (p_s grows with labels_s), and only scores >= 0.7 ever get a label (the model acted).
    stationary: a fixed uneven (Zipf) allocation, labels for a random 30% of predictions."""
    rng = np.random.default_rng(seed)
    zipf = 1.0 / np.arange(1, k + 1)
    p = np.full(k, 1.0 / k) if reinforcing else zipf / zipf.sum()
    weight = np.ones(k)
    items = []
    for start in range(0, n, 500):
        seg = rng.choice(k, 500, p=p)
        score = rng.beta(2, 2, 500)
        labeled = score >= 0.7 if reinforcing else rng.random(500) < 0.3
        for i in range(500):
            t = (start + i) * STEP
            ident = f"e{start + i}"
            items.append((t, 0, "events", orjson.dumps({
                "model": "m", "id": ident, "ts": t, "segment": f"s{seg[i]}",
                "features": {"x": float(rng.normal())}, "prediction": float(score[i])})))
            if labeled[i]:
                items.append((t + DELAY, 1, "labels", orjson.dumps({
                    "model": "m", "id": ident, "ts": t + DELAY, "label": int(rng.random() < score[i])})))
        if reinforcing:
            weight += np.bincount(seg[labeled], minlength=k) * 0.05
            p = weight ** 2 / (weight ** 2).sum()
    items.sort(key=lambda x: (x[0], x[1]))
    return [Message(v, topic, 0, i, 0.0) for i, (_, _, topic, v) in enumerate(items)]


def run(msgs):
    settings = load_settings(env={}, overrides={"labels.ttl_s": 2 * DELAY})
    pipeline = Pipeline(settings, label_topics={"labels"})
    alerts = []
    for s in range(0, len(msgs), 1000):
        alerts += pipeline.process(msgs[s:s + 1000]).alerts
    return pipeline, [a for a in alerts if a["kind"] == "feedback_loop"]


def test_self_reinforcing_allocation_raises_feedback_loop():
    pipeline, alerts = run(allocation_stream(reinforcing=True))
    signals = {a["signal"] for a in alerts if a["status"] == "firing"}
    assert signals == {"segments:entropy", "labels:selection"}, alerts
    entropy = next(a for a in alerts if a["signal"] == "segments:entropy")
    assert entropy["stats"]["entropy"] < entropy["stats"]["entropy_before"]
    selection = next(a for a in alerts if a["signal"] == "labels:selection")
    stats = selection["stats"]
    assert stats["labeled_share_min"] < 0.05 and stats["labeled_share_max"] > 0.95   # labels only
    assert stats["labeled_share_by_band"][-1] > 0.95                                 # where it acted
    watch = pipeline.models["m"].concentration.watch
    assert watch.last < watch.ref_mean and watch.windows == 60_000 // 200
    assert watch.series == []               # (the reference's windows are not kept once it is learned)


def test_stationary_uneven_allocation_with_unbiased_labels_raises_nothing():
    _, alerts = run(allocation_stream(reinforcing=False, seed=1))
    assert alerts == []


def timezone_stream(per_day: int, days: int, seed: int, concentrate_from_day: float | None = None
                    ) -> list[Message]:
    """Events of a model in 5 regions whose shares of a day's events follow their time zones
    (each peaks at its own hour), so where its positive predictions go cycles daily. From
    ``concentrate_from_day`` on, its positives concentrate on region 0 (its scores there rise
    and elsewhere fall, by one logit a day)."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    t = np.sort(rng.uniform(0, days * 86400.0, n))
    phase = 2 * np.pi * t / 86400.0
    w = np.stack([1 + 0.9 * np.sin(phase - k * 2 * np.pi / 5) for k in range(5)], axis=1)
    region = (rng.random(n)[:, None] > np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)).sum(axis=1)
    logit = rng.normal(size=n) + 0.2 * region
    if concentrate_from_day is not None:
        days_in = np.maximum(t / 86400.0 - concentrate_from_day, 0.0)
        logit += np.where(region == 0, days_in, -days_in)
    score = 1 / (1 + np.exp(-logit))
    return [Message(orjson.dumps({"model": "m", "ts": float(t[i]), "segment": f"r{region[i]}",
                                  "features": {"x": float(rng.normal())}, "prediction": float(score[i])}),
                    "events", 0, i, 0.0) for i in range(n)]


def feedback_alerts(msgs: list[Message], config: str = "") -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "c.toml"
        path.write_text(config)
        pipeline = Pipeline(load_settings(path, env={}))
    alerts = []
    for s in range(0, len(msgs), 1000):
        alerts += pipeline.process(msgs[s:s + 1000]).alerts
    return [a for a in alerts if a["kind"] == "feedback_loop"]


DAILY = '[models.m.seasonality]\nperiod = "1d"\n'


@pytest.mark.parametrize("seed", [2, 3])
def test_segments_whose_shares_follow_the_declared_cycle_raise_no_feedback_loop(seed):
    """The entropy's reference is the one expected at each hour; without the declaration, at
    30,000 events a day, these streams' daily swing of the entropy fires the signal (on day
    2: its reference spans the first day, but Page-Hinkley sums the 75 windows of a half-day's
    trough). At 10,000 a day the undeclared reference spans the day and the troughs are 25
    windows."""
    msgs = timezone_stream(30_000, 4, seed)
    assert [a["signal"] for a in feedback_alerts(msgs)][:1] == ["segments:entropy"]
    assert feedback_alerts(msgs, DAILY) == []
    assert feedback_alerts(timezone_stream(10_000, 8, seed)) == []


def test_a_concentration_on_top_of_the_cycle_is_found():
    alerts = feedback_alerts(timezone_stream(10_000, 8, 1, concentrate_from_day=5.0), DAILY)
    assert [(a["status"], a["signal"]) for a in alerts] == [("firing", "segments:entropy")]
    day = alerts[0]["at"]["ts"] / 86400.0
    assert 5.0 < day < 7.0
    assert alerts[0]["stats"]["entropy"] < alerts[0]["stats"]["entropy_before"]


@pytest.mark.parametrize("cut", [20_000, 60_000])
def test_a_seasonal_entropy_reference_restores_exactly(tmp_path, cut):
    """Cut while the reference learns (day 2) and after (day 6): the same alerts as one run."""
    from stream.state import dump_model, load_model

    path = tmp_path / "c.toml"
    path.write_text(DAILY)
    settings = load_settings(path, env={})
    msgs = timezone_stream(10_000, 7, 1, concentrate_from_day=5.0)

    def run_on(pipeline: Pipeline, part: list[Message]) -> list[dict]:
        return [a for s in range(0, len(part), 1000) for a in pipeline.process(part[s:s + 1000]).alerts]

    straight = run_on(Pipeline(settings), msgs)
    assert "segments:entropy" in {a["signal"] for a in straight}
    first = Pipeline(settings)
    before = run_on(first, msgs[:cut])
    second = Pipeline(settings)
    load_model(second, dump_model(first, "m"))
    assert before + run_on(second, msgs[cut:]) == straight


def test_a_concentration_state_that_kept_every_window_still_loads():
    """As states were written when the watch kept every window's entropy."""
    from stream.monitor.feedback import ConcentrationWatch

    old = ConcentrationWatch(200, 10, 20.0, 0.25)
    state = old.state_dict()
    for key in ("series_ts", "knots", "windows", "last"):
        del state[key]
    state.update(series=[0.9] * 11 + [0.7], ref_mean=0.9, ref_sd=0.05)
    watch = ConcentrationWatch(200, 10, 20.0, 0.25)
    watch.load_state(state)
    assert (watch.windows, watch.last, watch.series, watch.expected(0.0)) == (12, 0.7, [], 0.9)
