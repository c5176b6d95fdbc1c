"""Every alert (which, where, and its content) is a function of the input alone: replay with any
batch size gives the same alerts, over a stream with every kind of signal."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.config import load_settings
from stream.pipeline import Pipeline
from stream.types import Message

CONFIG = """
[detect]
warmup = 300
[labels]
warmup = 100
ttl_s = 400.0
[feedback]
window = 40
warmup = 5
label_min_per_band = 20
[quality]
block = 50
[models.grid.seasonality]
period = "1000s"
bins = 10
periods = 2
min_per_bin = 10
[[rebaseline]]
model = "cls"
at = 9000.5
"""


def every_kind(n: int = 12_000, seed: int = 0) -> list[Message]:
    """Events of four models and labels of one, merged in time order (events first on ties):
    a transient mean shift, a new category, a feature that goes null, one that turns into
    strings, one that freezes, a new feature, class predictions whose mix changes (and a
    re-baseline), a seasonal model with a shift, segments that concentrate, labels that grow
    wrong and come only for high scores."""
    rng = np.random.default_rng(seed)
    items: list[tuple[float, int, str, dict]] = []
    weights = np.ones(6)
    for i in range(n):
        t = float(i)
        x = rng.normal() + (1.5 if 3000 <= i < 6000 else 0.0)
        cat = "new" if i >= 5000 and rng.random() < 0.3 else str(rng.choice(["a", "b", "c"]))
        feats = {"x": x, "y": rng.normal(10, 2), "c": cat,
                 "f": None if i >= 7000 else rng.normal(),
                 "g": f"{rng.normal():.3f}" if i >= 8000 else rng.normal(),
                 "s": 4.25 if i >= 9000 else rng.normal()}
        if i >= 8500:
            feats["late"] = 1.0
        score = float(1 / (1 + np.exp(-rng.normal())))
        p = weights ** 2 / (weights ** 2).sum()
        segment = f"s{rng.choice(6, p=p)}"
        if i >= 6000 and score >= 0.5:
            weights[int(segment[1:])] += 0.05
        items.append((t, 0, "events", {"model": "m", "id": f"m{i}", "ts": t, "features": feats,
                                       "prediction": score, "segment": segment}))
        if score >= 0.6 or i < 4000:                       # labels only where the model acted
            wrong = rng.random() < (0.1 if i < 5000 else 0.45)
            items.append((t + 150.0, 1, "labels", {"model": "m", "id": f"m{i}", "ts": t + 150.0,
                                                   "label": int((score >= 0.5) != wrong)}))
        klass = str(rng.choice(["p", "q"], p=[0.8, 0.2] if i < 4000 else [0.4, 0.6]))
        items.append((t, 0, "events", {"model": "cls", "ts": t, "features": {"z": rng.normal()},
                                       "prediction": klass}))
        load = 50 + 5 * np.sin(2 * np.pi * t / 1000.0) + rng.normal() + (2.0 if i >= 7000 else 0.0)
        items.append((t, 0, "events", {"model": "grid", "ts": t, "features": {"load": float(load)}}))
    items.sort(key=lambda it: (it[0], it[1]))
    offsets = {"events": 0, "labels": 0}
    msgs = []
    for _, _, topic, doc in items:
        msgs.append(Message(orjson.dumps(doc), topic, 0, offsets[topic], 0.0))
        offsets[topic] += 1
    return msgs


def cuts(n: int, batch: int | str) -> list[int]:
    """Where batches of ``n`` messages start: every ``batch``, or for "mixed" at random sizes
    of 1 to 16 (seeded), so that every kind of transition meets batch edges of every kind."""
    if batch != "mixed":
        return list(range(0, n, batch))
    ends = np.cumsum(np.random.default_rng(7).integers(1, 17, n))
    return [0, *ends[ends < n].tolist()]


def replay(msgs: list[Message], batch: int | str, settings) -> tuple[list[dict], list[tuple]]:
    pipeline = Pipeline(settings, label_topics={"labels"})
    alerts, dead = [], []
    starts = cuts(len(msgs), batch)
    for s, e in zip(starts, [*starts[1:], len(msgs)], strict=True):
        result = pipeline.process(msgs[s:e])
        alerts += result.alerts
        dead += [(d.message.topic, d.message.offset, d.reason) for d in result.dead_letters]
    return alerts, dead


@pytest.fixture(scope="module")
def stream_and_reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "c.toml"
    path.write_text(CONFIG)
    settings = load_settings(path, env={})
    msgs = every_kind()
    return msgs, settings, replay(msgs, 5000, settings)


def test_the_stream_has_every_kind_of_alert(stream_and_reference):
    _, _, (alerts, _) = stream_and_reference
    kinds = {(a["kind"], a.get("check") or a["signal"].split(":")[0].split("=")[0], a["status"])
             for a in alerts}
    for expected in [("data_drift", "feature", "firing"), ("data_drift", "feature", "resolved"),
                     ("prediction_drift", "prediction", "firing"),
                     ("prediction_drift", "prediction", "resolved"),     # the re-baseline
                     ("performance_drift", "error", "firing"), ("feedback_loop", "segments", "firing"),
                     ("feedback_loop", "labels", "firing"), ("data_quality", "missing", "firing"),
                     ("data_quality", "type", "firing"), ("data_quality", "stuck", "firing"),
                     ("data_quality", "new_feature", "firing")]:
        assert expected in kinds, (expected, sorted(kinds))
    assert any(a["model"] == "grid" and a["stats"].get("seasonal") for a in alerts)


@pytest.mark.parametrize("batch", ["mixed", 777])
def test_any_batch_size_gives_the_same_alerts_and_dead_letters(stream_and_reference, batch):
    msgs, settings, reference = stream_and_reference
    assert replay(msgs, batch, settings) == reference
