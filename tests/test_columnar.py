"""Columnar batches: many rows per message as columns, same results as row events."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.app.synthetic import DEMO_MODELS, events
from stream.config import LimitSettings, load_settings
from stream.ingest.rows import Message, decode
from stream.pipeline import Pipeline


def to_columnar(evs: list[dict], rows_per_message: int) -> list[bytes]:
    """Row events of one model -> columnar messages of `rows_per_message` rows."""
    out = []
    for s in range(0, len(evs), rows_per_message):
        part = evs[s:s + rows_per_message]
        names = list(part[0]["features"])
        out.append(orjson.dumps({
            "model": part[0]["model"], "ts": [e["ts"] for e in part], "id": [e["id"] for e in part],
            "features": {n: [e["features"].get(n) for e in part] for n in names},
            "prediction": [e["prediction"] for e in part]}))
    return out


def test_columnar_gives_the_same_detections_as_rows():
    evs = [e for _, e in events(DEMO_MODELS[:1], 12_000, seed=2)]
    rows = [Message(orjson.dumps(e), "events", 0, i, 0.0) for i, e in enumerate(evs)]
    cols = [Message(v, "events", 0, i, 0.0) for i, v in enumerate(to_columnar(evs, 1000))]

    by_rows = []
    p = Pipeline(load_settings(env={}))
    for s in range(0, len(rows), 3000):
        by_rows += [(a["signal"], a["detector"], a["at"]["ts"]) for a in p.process(rows[s:s + 3000]).alerts]
    by_cols = []
    p = Pipeline(load_settings(env={}))
    for s in range(0, len(cols), 3):
        by_cols += [(a["signal"], a["detector"], a["at"]["ts"]) for a in p.process(cols[s:s + 3]).alerts]
    assert by_rows and by_cols == by_rows


def test_columnar_decoding_and_mixing_with_rows():
    msgs = [Message(b'{"model":"m","features":{"x":1.5,"c":"a"},"ts":1}', "e", 0, 0, 10.0),
            Message(orjson.dumps({"model": "m", "ts": [2, 3, None], "features": {"x": [1, None, 3],
                                  "c": ["b", None, "a"]}, "prediction": [0.1, 0.2, 0.3],
                                  "segment": ["s", "s", None]}), "e", 0, 1, 20.0)]
    batch = decode(msgs, LimitSettings())
    mb = batch.models["m"]
    assert batch.dead_letters == []
    assert np.array_equal(mb.numeric["x"], [1.5, 1.0, np.nan, 3.0], equal_nan=True)
    assert mb.categorical["c"] == ["a", "b", None, "a"]
    assert mb.ts.tolist() == [1.0, 2.0, 3.0, 20.0]
    assert np.array_equal(mb.prediction, [np.nan, 0.1, 0.2, 0.3], equal_nan=True)
    assert mb.offset.tolist() == [0, 1, 1, 1] and mb.segments == [None, "s", "s", None]


@pytest.mark.parametrize("doc,reason", [
    ({"model": "m", "features": {"x": [1, 2], "y": [1]}}, "ragged_columns"),
    ({"model": "m", "features": {"x": [1, {"a": 1}]}}, "nested_value"),
    ({"model": "m", "features": {"x": [1, "a"]}}, "mixed_types"),
    ({"model": "m", "features": {"x": [1, 2]}, "ts": [1]}, "invalid_ts"),
    ({"model": "m", "features": {"x": [1, 2]}, "ts": [1, 1764400000250]}, "invalid_ts"),
    ({"model": "m", "features": {"x": [1, 2]}, "ts": 1764400000250}, "invalid_ts"),
    ({"model": "m", "features": {"x": [1, 2]}, "ts": [-1e12, None]}, "invalid_ts"),
    ({"model": "m", "features": {"x": [1, 2]}, "ts": [1.0, True]}, "invalid_ts"),
    ({"model": "m", "features": {"x": [1, 2]}, "prediction": [1, 2, 3]}, "invalid_prediction"),
    ({"model": "m", "features": {"x": list(range(20))}}, "too_many_events"),
    ({"model": "bad model", "features": {"x": [1]}}, "invalid_model"),
])
def test_bad_columnar_messages_are_dead_letters(doc, reason):
    limits = LimitSettings(max_events_per_message=10)
    good = Message(b'{"model":"m","features":{"x":1}}', "e", 0, 0, 0.0)
    batch = decode([good, Message(orjson.dumps(doc), "e", 0, 1, 0.0)], limits)
    assert [d.reason for d in batch.dead_letters] == [reason]
    assert batch.models["m"].offset.tolist() == [0]


@pytest.mark.parametrize("col", [
    [1.0, 2.5], [1, 2], [1, 2.5], [2 ** 63, 1], [1.0, True], [True, False], [1.0, None],
    [None, None], ["a", "b"], ["1.5", "2"], [1.0, "a"], [1.0, [2.0]], [[1.0], [2.0]],
    [1.0, {"a": 1}], [2 ** 64, 1],
])
def test_numeric_columns_as_by_value_types(col):
    """numpy's type discovery (the fast path) decides exactly as checking each value's type:
    ints, floats, bools and None (NaN) make a number column; names, nesting, mixes do not."""
    from stream.ingest.columnar import _NUMERIC, _numeric

    expected = np.array(col, dtype=np.float64) if set(map(type, col)) <= _NUMERIC else None
    got = _numeric("f", col, len(col))
    if expected is None:
        assert got is None
    else:
        assert got.dtype == np.float64 and np.array_equal(got, expected, equal_nan=True)
