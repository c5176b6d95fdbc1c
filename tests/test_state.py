"""Model state round-trips: stop anywhere, restore, and the alerts are those of one run."""

from __future__ import annotations

import dataclasses

import numpy as np
import orjson
import pytest
from quality_streams import ar1
from test_feedback import allocation_stream
from test_seasonality import CONFIG, declared, faulty_day, grid_stream, labeled_stream, shifted_stream

from detectors import StateError
from stream.app.synthetic import DEMO_MODELS, events
from stream.config import load_settings
from stream.ingest.rows import Message
from stream.pipeline import Pipeline
from stream.state import dump_model, load_model


def mixed_stream() -> list[Message]:
    """Demo models (drift, categories), a seasonal model, a feedback loop with late labels, a
    dependent signal (its detectors fed block means) that shifts."""
    demo = [(e["ts"] - 1.7e9, orjson.dumps(e), "events")
            for _, e in events(DEMO_MODELS, 9000, seed=5, t0=1.7e9)]
    grid = [(orjson.loads(m.value)["ts"], m.value, "events") for m in grid_stream(20, 10.0, seed=1)]
    loop = [(orjson.loads(m.value)["ts"], m.value, m.topic) for m in allocation_stream(True, n=20_000)]
    x = ar1(30_000, 0.9, 3)
    x[20_000:] += 1.0
    sensor = [(i * 10.0, orjson.dumps({"model": "sensor", "ts": i * 10.0, "features": {"x": float(v)}}),
               "events") for i, v in enumerate(x)]
    items = sorted(demo + grid + loop + sensor, key=lambda x: (x[0], x[2] == "labels"))
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
    assert any(a["model"] == "sensor" for a in straight)
    first = Pipeline(settings, label_topics={"labels"})
    before = run(first, msgs[:cut])
    blobs = [dump_model(first, m) for m in first.models]
    second = Pipeline(settings, label_topics={"labels"})
    for blob in blobs:
        load_model(second, blob)
    after = run(second, msgs[cut:])
    assert [a["alert_id"] for a in before + after] == [a["alert_id"] for a in straight]
    assert before + after == straight


@pytest.mark.parametrize("cut", [3_000, 100_000])
def test_a_seasonal_error_stream_restores_exactly(tmp_path, cut):
    """Its profile is learned from the predictions' times, before (3,000) and after (100,000)
    the first whole periods; the accuracy falls on day 6."""
    settings = declared(tmp_path)
    msgs = labeled_stream(10_000, 7, seed=2, flip_from_day=6.0)
    straight = run(Pipeline(settings, label_topics={"labels"}), msgs, batch=500)
    assert [(a["signal"], a["stats"].get("seasonal")) for a in straight] == [("error", True)]
    first = Pipeline(settings, label_topics={"labels"})
    before = run(first, msgs[:cut], batch=500)
    second = Pipeline(settings, label_topics={"labels"})
    load_model(second, dump_model(first, "grid"))
    assert before + run(second, msgs[cut:], batch=500) == straight


@pytest.mark.parametrize("cut", [3_000, 15_000, 25_000, 50_000])
def test_references_learning_on_to_a_day_restore_exactly(cut):
    """At 20,000 events a day the references learn on to a day, keeping every other value past
    10,000 (cuts during it, before and after the stride doubles, and after); a state without
    the references' first times spans its day from its next values."""
    old = Pipeline(load_settings(env={}))
    day = shifted_stream(10_000, 1, shift_at_day=2.0, seed=2)
    run(old, day[:1500])
    signals = old.models["grid"].signals
    state = signals.state_dict()
    del state["first_ts"]
    signals.load_state(state)
    assert np.isnan(signals.first_ts).all()
    run(old, day[1500:])
    assert set(signals.first_ts.tolist()) == {orjson.loads(day[1500].value)["ts"]}
    settings = load_settings(env={})
    msgs = shifted_stream(20_000, 3, shift_at_day=2.0, seed=2)
    straight = run(Pipeline(settings), msgs, batch=500)
    assert {a["signal"] for a in straight} >= {"feature:x"}
    first = Pipeline(settings)
    before = run(first, msgs[:cut], batch=500)
    second = Pipeline(settings)
    load_model(second, dump_model(first, "grid"))
    assert before + run(second, msgs[cut:], batch=500) == straight


@pytest.mark.parametrize("cut", [2_000, 2_700])
def test_a_step_in_the_first_day_restores_exactly(cut):
    """The kept values' event times go with the state (cuts before the 2 sd step of hour 6 and
    between it and the warm-up that finds it); a state without them loads and its references
    go on learning, their steps judged by their values alone."""
    settings = load_settings(env={})
    msgs = faulty_day(1, 1.0, 2.0)
    straight = run(Pipeline(settings), msgs, batch=500)
    assert ("feature:x", "reference") in {(a["signal"], a["detector"]) for a in straight}
    first = Pipeline(settings)
    before = run(first, msgs[:cut], batch=500)
    assert first.models["grid"].signals.longer_ts
    second = Pipeline(settings)
    load_model(second, dump_model(first, "grid"))
    assert before + run(second, msgs[cut:], batch=500) == straight
    signals = first.models["grid"].signals
    state = signals.state_dict()
    del state["longer_ts"]
    signals.load_state(state)
    assert not signals.longer_ts and signals.longer
    run(first, msgs[cut:], batch=500)
    assert not signals.learning


def test_corrupt_state_is_refused(settings):
    p = Pipeline(settings)
    run(p, [Message(orjson.dumps({"model": "m", "ts": 1, "features": {"x": 1}}), "e", 0, 0, 0.0)])
    blob = dump_model(p, "m")
    with pytest.raises(StateError):
        load_model(Pipeline(settings), blob[:-3] + b"xyz")
    with pytest.raises(StateError):
        load_model(Pipeline(settings), b"garbage")


def test_a_state_tree_keeps_nan_and_infinities_and_older_headers_still_read():
    """The header is orjson's JSON (which has no NaN): non-finite floats go tagged and come
    back; a header written with NaN and Infinity tokens by the standard library still reads."""
    from detectors._state import pack
    from stream.state import KIND, decode, encode

    tree = {"a": [1.5, float("nan"), float("inf"), -float("inf"), np.float64("nan"), 0.1],
            "b": {"c": np.arange(3.0), "d": b"xy", "e": None, "f": True, "g": 2 ** 62}}
    back = decode(KIND, encode(KIND, tree))
    assert back["a"][0] == 1.5 and back["a"][5] == 0.1 and np.isnan(back["a"][1]) and np.isnan(back["a"][4])
    assert back["a"][2:4] == [float("inf"), -float("inf")]
    assert back["b"]["c"].tolist() == [0.0, 1.0, 2.0] and back["b"]["d"] == b"xy"
    assert back["b"]["e"] is None and back["b"]["f"] is True and back["b"]["g"] == 2 ** 62
    old = pack(KIND, {"tree": {"x": float("nan"), "y": [float("inf")]}}, {})
    assert b"NaN" in old and b"Infinity" in old
    got = decode(KIND, old)
    assert np.isnan(got["x"]) and got["y"] == [float("inf")]
    assert b"NaN" not in encode(KIND, tree) and b'"__float__":"nan"' in encode(KIND, tree)


def _waiting(settings, n: int) -> Pipeline:
    """A pipeline whose model has n predictions waiting for labels and n labeled ids, ids of
    36 characters (UUIDs): as a model gets with labels a month late."""
    import numpy as np

    from stream.types import ModelBatch

    p = Pipeline(settings, label_topics={"labels"})
    run(p, [Message(orjson.dumps({"model": "m", "ts": 1.7e9, "features": {"x": 1.0}}), "e", 0, 0, 0.0)])
    ids = [f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(2 * n)]
    scores = np.random.default_rng(0).random(2 * n)
    store = p.desk.store
    store.add(ModelBatch("m", {}, {}, scores, None, 1.7e9 + np.arange(2 * n), np.zeros(2 * n, dtype=np.int64),
                         np.arange(2 * n), np.full(2 * n, "e", dtype=object), ids, [None] * (2 * n)))
    store.take_many(["m"] * n, ids[:n], [0] * n)
    return p


def test_a_model_with_half_a_million_ids_waiting_or_labeled_restores_whole():
    """Its store's lists are far beyond the 16 MB a state header may hold: they go as bytes."""
    settings = load_settings(env={})
    p = _waiting(settings, 250_000)
    q = Pipeline(settings, label_topics={"labels"})
    load_model(q, dump_model(p, "m"))
    before, after = p.desk.store, q.desk.store
    assert list(after.pending["m"].items()) == list(before.pending["m"].items())
    assert list(after.labeled["m"]) == list(before.labeled["m"])
    assert (after.size, after.labeled_size) == (before.size, before.labeled_size) == (250_000, 250_000)


def test_a_store_state_of_json_lists_still_loads():
    """As states were written before the store's lists became bytes."""
    settings = load_settings(env={})
    p = _waiting(settings, 50)
    p.desk.store.pending["m"]["x"] = ("yes", 1.7e9, "v2")        # a class and a version
    state = p.model_state("m")
    store = state["store"]
    for key in ("ids", "predictions", "versions", "labeled"):
        store[key] = orjson.loads(store[key]) if isinstance(store[key], bytes) else store[key].tolist()
    q = Pipeline(settings, label_topics={"labels"})
    q.load_model_state(state)
    assert list(q.desk.store.pending["m"].items()) == list(p.desk.store.pending["m"].items())
    assert list(q.desk.store.labeled["m"]) == list(p.desk.store.labeled["m"])


def test_a_state_over_a_changelog_record_gives_up_its_oldest_waiting_predictions(caplog):
    """Else the record could not be written, the instance would stop and, restarted, grow
    the same state again."""
    from stream.kafka.changelog import Changelog, Shard

    settings = load_settings(env={})
    p = _waiting(settings, 20_000)
    whole = len(dump_model(p, "m"))
    store = p.desk.store
    pending, labeled = list(store.pending["m"]), list(store.labeled["m"])
    shard = Shard(p)
    shard.changed.add("m")
    changelog = Changelog("changelog", 1, max_value_bytes=whole // 3)
    with caplog.at_level("WARNING", logger="streamdrift"):
        [(_, key, value, _)] = changelog.records(("events", 0), shard)
    assert key == b"events:0:m" and len(value) <= whole // 3
    assert "over the" in caplog.text and "'m'" in caplog.text
    q = Pipeline(settings, label_topics={"labels"})
    load_model(q, value)
    kept_pending, kept_labeled = list(q.desk.store.pending["m"]), list(q.desk.store.labeled["m"])
    assert 0 < len(kept_pending) < len(pending) and kept_pending == pending[-len(kept_pending):]
    assert 0 < len(kept_labeled) < len(labeled) and kept_labeled == labeled[-len(kept_labeled):]
    assert store.evicted["size"] == len(pending) - len(kept_pending) == 20_000 - store.size
