"""Model state round-trips: stop anywhere, restore, and the alerts are those of one run."""

from __future__ import annotations

import dataclasses

import orjson
import pytest
from test_feedback import allocation_stream
from test_seasonality import CONFIG, grid_stream

from detectors import StateError
from stream.app.synthetic import DEMO_MODELS, events
from stream.config import load_settings
from stream.ingest.rows import Message
from stream.pipeline import Pipeline
from stream.state import dump_model, load_model


def mixed_stream() -> list[Message]:
    """Demo models (drift, categories), a seasonal model, a feedback loop with late labels."""
    demo = [(e["ts"] - 1.7e9, orjson.dumps(e), "events")
            for _, e in events(DEMO_MODELS, 9000, seed=5, t0=1.7e9)]
    grid = [(orjson.loads(m.value)["ts"], m.value, "events") for m in grid_stream(20, 10.0, seed=1)]
    loop = [(orjson.loads(m.value)["ts"], m.value, m.topic) for m in allocation_stream(True, n=20_000)]
    items = sorted(demo + grid + loop, key=lambda x: (x[0], x[2] == "labels"))
    return [Message(v, topic, 0, i, 0.0) for i, (_, v, topic) in enumerate(items)]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    cfg = tmp_path_factory.mktemp("cfg") / "c.toml"
    cfg.write_text(CONFIG)
    s = load_settings(cfg, env={})
    return dataclasses.replace(s, labels=dataclasses.replace(s.labels, ttl_s=2 * 86400.0))


def run(pipeline: Pipeline, msgs: list[Message], batch: int = 1000) -> list[dict]:
    out = []
    for s in range(0, len(msgs), batch):
        out += pipeline.process(msgs[s:s + batch]).alerts
    return out


@pytest.mark.parametrize("cut", [1, 12_345, 40_000])
def test_restore_continues_exactly_like_one_run(settings, cut):
    msgs = mixed_stream()
    straight = run(Pipeline(settings, label_topics={"labels"}), msgs)
    assert {a["kind"] for a in straight} >= {"data_drift", "feedback_loop", "performance_drift"} - {
        "performance_drift"}
    first = Pipeline(settings, label_topics={"labels"})
    before = run(first, msgs[:cut])
    blobs = [dump_model(first, m) for m in first.models]
    second = Pipeline(settings, label_topics={"labels"})
    for blob in blobs:
        load_model(second, blob)
    after = run(second, msgs[cut:])
    assert [a["alert_id"] for a in before + after] == [a["alert_id"] for a in straight]
    assert before + after == straight


def test_corrupt_state_is_refused(settings):
    p = Pipeline(settings)
    run(p, [Message(orjson.dumps({"model": "m", "ts": 1, "features": {"x": 1}}), "e", 0, 0, 0.0)])
    blob = dump_model(p, "m")
    with pytest.raises(StateError):
        load_model(Pipeline(settings), blob[:-3] + b"xyz")
    with pytest.raises(StateError):
        load_model(Pipeline(settings), b"garbage")
