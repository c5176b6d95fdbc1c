"""Feedback loops: a self-reinforcing allocation is flagged; a stationary uneven one is not."""

from __future__ import annotations

import numpy as np
import orjson

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
    series = pipeline.models["m"].concentration.watch.series
    assert series[-1] < series[0]


def test_stationary_uneven_allocation_with_unbiased_labels_raises_nothing():
    _, alerts = run(allocation_stream(reinforcing=False, seed=1))
    assert alerts == []
