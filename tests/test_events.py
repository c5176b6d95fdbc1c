"""Decoding: good events become columns; every kind of bad message is a dead letter."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import LimitSettings
from stream.ingest.rows import Message, decode

LIMITS = LimitSettings(max_message_bytes=2000, max_features_per_event=5, max_name_length=20)


def msgs(*values: bytes) -> list[Message]:
    return [Message(v, "events", 0, i, 1000.0 + i) for i, v in enumerate(values)]


def test_good_events_become_columns():
    batch = decode(msgs(
        b'{"model":"m","id":"a","ts":5,"features":{"x":1,"y":"red"},"prediction":0.2,"segment":"s"}',
        b'[{"model":"m","features":{"x":2.5,"z":null}},{"model":"n","features":{"x":true}}]',
        b'{"model":"m","ts":"2025-01-01T00:00:00Z","features":{"y":null}}',
    ), LIMITS)
    assert batch.dead_letters == []
    m = batch.models["m"]
    assert np.array_equal(m.numeric["x"], [1.0, 2.5, np.nan], equal_nan=True)
    assert m.categorical["y"] == ["red", None, None]
    assert np.array_equal(m.prediction, [0.2, np.nan, np.nan], equal_nan=True)
    assert m.ts.tolist() == [5.0, 1001.0, 1735689600.0]     # missing ts -> message timestamp
    assert m.offset.tolist() == [0, 1, 2] and m.ids == ["a", None, None]
    assert batch.models["n"].numeric["x"].tolist() == [1.0]
    assert batch.n_events == 4


@pytest.mark.parametrize("value,reason", [
    (b"not json", "invalid_json"),
    (b'{"model":"m","features":{"x":1e999}}', "invalid_json"),
    (b'"just a string"', "not_object"),
    (b"[1, 2]", "not_object"),
    (b"[]", "empty_array"),
    (b'{"features":{"x":1}}', "invalid_model"),
    (b'{"model":"bad model!","features":{"x":1}}', "invalid_model"),
    (b'{"model":"m","features":[1,2]}', "invalid_features"),
    (b'{"model":"m","features":{"x":{"nested":1}}}', "nested_value"),
    (b'{"model":"m","features":{"x":[1,2],"y":3}}', "nested_value"),     # not columnar: y is no list
    (b'{"model":"m","features":{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6}}', "too_many_features"),
    (b'{"model":"m","features":{"' + b"n" * 21 + b'":1}}', "invalid_name"),
    (b'{"model":"m","features":{"x":1},"prediction":{"p":1}}', "invalid_prediction"),
    (b'{"model":"m","features":{"x":1},"ts":"yesterday"}', "invalid_ts"),
    (b'{"model":"m","features":{"x":1},"ts":1764400000250}', "invalid_ts"),   # milliseconds
    (b'{"model":"m","features":{"x":1},"ts":-1e12}', "invalid_ts"),           # before year 1
    (b'{"model":"m","features":{"x":1},"ts":1e300}', "invalid_ts"),
    (b'{"model":"m","features":{"x":1},"segment":7}', "invalid_segment"),
    (b'{"model":"m","features":{"x":' + b"9" * 400 + b"}}", "invalid_json"),   # overflows to inf
    (b'{"model":"m","features":{"x":"' + b"a" * 3000 + b'"}}', "oversize"),
])
def test_bad_messages_are_dead_letters_with_reason(value, reason):
    good = b'{"model":"m","features":{"x":1}}'
    batch = decode(msgs(good, value, good), LIMITS)
    assert [d.reason for d in batch.dead_letters] == [reason]
    assert batch.dead_letters[0].message.value == value          # unchanged
    assert batch.dead_letters[0].message.offset == 1
    assert batch.models["m"].offset.tolist() == [0, 2]            # the good ones go on


@pytest.mark.parametrize("ts,ok", [
    (-62135596800, True), (-62135596801, False), (0, True), (253402300799.5, True),
    (253402300800, False), (1764400000.25, True), (1764400000250, False), (1.7644e18, False),
])
def test_event_times_are_epoch_seconds_of_the_years_1_to_9999(ts, ok):
    """The range RFC 3339 can write; an alert's times stay printable and one event far in
    the future cannot move a model's lifecycle clock (cooldowns, resolution) past every
    later event. Times in milliseconds (a common producer mistake) say so."""
    value = orjson.dumps({"model": "m", "features": {"x": 1}, "ts": ts})
    good, untimed = b'{"model":"m","features":{"x":1},"ts":5}', b'{"model":"m","features":{"x":1}}'
    for batch, third in ((decode(msgs(good, value, good), LIMITS), 5.0),
                         (decode(msgs(good, value, untimed), LIMITS), 1002.0)):   # a missing ts
        assert [d.reason for d in batch.dead_letters] == ([] if ok else ["invalid_ts"])
        assert batch.models["m"].ts.tolist() == ([5.0, float(ts), third] if ok else [5.0, third])
    if not ok and ts > 0:
        assert "milliseconds" in batch.dead_letters[0].detail


def test_a_bad_event_rejects_its_whole_array_message():
    batch = decode(msgs(b'[{"model":"m","features":{"x":1}},{"model":"m","features":{"x":{"a":0}}}]',
                        b'{"model":"m","features":{"x":2}}'), LIMITS)
    assert [d.reason for d in batch.dead_letters] == ["nested_value"]
    assert batch.models["m"].numeric["x"].tolist() == [2.0]


@pytest.mark.parametrize("field", ["feature", "prediction"])
@pytest.mark.parametrize("numbers,strings", [(99, 1), (1, 99), (3, 3), (0, 5), (5, 0)])
def test_numbers_and_strings_in_one_field_are_both_kept_per_row(field, numbers, strings):
    """Numbers and strings in one field of a batch: no dead letter; each kind in its own
    column, at its own rows (the monitor keeps the field's established type and counts the
    other: stream.monitor.quality), so that no batch boundary can change what is rejected."""
    def event(i: int, value) -> bytes:
        if field == "feature":
            return orjson.dumps({"model": "m", "features": {"x": value, "y": 1}})
        return orjson.dumps({"model": "m", "features": {"y": 1}, "prediction": value})

    values = [event(i, float(i)) for i in range(numbers)] + [event(i, f"c{i}") for i in range(strings)]
    mb = decode(msgs(*values), LimitSettings()).models["m"]
    assert mb.size == numbers + strings
    nums = mb.numeric.get("x") if field == "feature" else mb.prediction
    strs = mb.categorical.get("x") if field == "feature" else mb.prediction_class
    if numbers:
        assert nums[:numbers].tolist() == [float(i) for i in range(numbers)]
        assert np.isnan(nums[numbers:]).all()
    if strings:
        assert strs == [None] * numbers + [f"c{i}" for i in range(strings)]


def test_a_field_of_every_kind_of_value_splits_value_by_value():
    """Ints, floats, booleans, nulls and strings in one feature: its numbers (a boolean as 0/1)
    and NaN elsewhere, its strings and None elsewhere, row by row."""
    rng = np.random.default_rng(8)
    pool = [3, -7, 2.5, 1e300, True, False, None, "a", "", "1.5", 2 ** 62]
    col = [pool[i] for i in rng.integers(0, len(pool), 500)]
    mb = decode(msgs(*(orjson.dumps({"model": "m", "features": {"x": v, "y": 1}}) for v in col)),
                LimitSettings()).models["m"]
    expected = [np.nan if v is None or isinstance(v, str) else float(v) for v in col]
    assert np.array_equal(mb.numeric["x"], np.array(expected), equal_nan=True)
    assert mb.categorical["x"] == [v if isinstance(v, str) else None for v in col]


def test_model_limit_dead_letters_new_models():
    batch = decode(msgs(b'{"model":"a","features":{"x":1}}', b'{"model":"b","features":{"x":1}}'),
                   LIMITS, admit_model=lambda m: m == "a")
    assert [d.reason for d in batch.dead_letters] == ["model_limit"]
    assert list(batch.models) == ["a"]


def _dumps(value) -> bytes:
    return json.dumps(value).encode()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.text(max_size=10), children, max_size=5),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(_dumps),
                 st.dictionaries(st.sampled_from(["model", "features", "ts", "id", "prediction", "segment"]),
                                 json_values, max_size=6).map(_dumps)))
def test_fuzz_decoder_never_raises_and_accounts_for_every_message(value):
    good = b'{"model":"m","features":{"x":1}}'
    batch = decode(msgs(good, value), LIMITS)
    dead = {d.message.offset for d in batch.dead_letters}
    rows = {int(o) for mb in batch.models.values() for o in mb.offset}
    assert 0 in rows
    assert (1 in dead) != (1 in rows)            # each message is either processed or dead-lettered


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=300), json_values.map(_dumps),
                 st.dictionaries(st.sampled_from(["model", "id", "label", "ts", "prediction"]),
                                 json_values, max_size=5).map(_dumps)))
def test_fuzz_label_decoder_never_raises(value):
    from stream.ingest.labels import decode_labels
    from stream.monitor.performance import LabelDesk

    desk = LabelDesk(10, 100.0)
    desk.events([], [])
    decoded, dead = decode_labels([Message(value, "labels", 0, 0, 0.0)], LIMITS)
    joined, unjoined, _ = desk.labels(decoded, [0] * len(decoded))
    dead += unjoined
    assert sum(len(eb.errors) for eb in joined.values()) + len(dead) == 1


def _same_batches(a, b) -> None:
    assert a.n_events == b.n_events
    assert [(d.message.offset, d.reason) for d in a.dead_letters] == \
        [(d.message.offset, d.reason) for d in b.dead_letters]
    assert a.models.keys() == b.models.keys()
    for model, x in a.models.items():
        y = b.models[model]
        assert x.numeric.keys() == y.numeric.keys() and x.categorical == y.categorical
        for name, col in x.numeric.items():
            assert np.array_equal(col, y.numeric[name], equal_nan=True), name
        assert np.array_equal(x.prediction, y.prediction, equal_nan=True)
        assert x.prediction_class == y.prediction_class
        assert x.offset.tolist() == y.offset.tolist() and x.ids == y.ids
        assert x.partition.tolist() == y.partition.tolist() and x.topic.tolist() == y.topic.tolist()
        assert x.segments == y.segments
        assert np.array_equal(x.ts, y.ts)


@pytest.mark.parametrize("n_models", [3, 9])
@pytest.mark.parametrize("late_string", [False, True])
def test_large_batches_decode_in_pieces_exactly_as_whole(late_string, n_models, monkeypatch):
    """decode() splits big batches into pieces (not when a piece holds many models); the
    result is the whole batch's."""
    from stream.ingest import rows as events

    pieces = []
    decode_piece = events._decode
    monkeypatch.setattr(events, "_decode", lambda *a: pieces.append(len(a[0])) or decode_piece(*a))
    rng = np.random.default_rng(5)
    values = []
    for i in range(3 * events._DECODE_CHUNK + 17):
        model = "abcdefghi"[i % n_models]
        feats = {"x": float(rng.normal()), "y": int(rng.integers(9))}
        if i % 7 == 0:
            feats["z"] = "red" if i % 2 else None
        if late_string and i == 2500:
            feats["x"] = "oops"              # numeric in early pieces, a string here
        ev = {"model": model, "id": str(i), "features": feats,
              "prediction": ("yes" if i % 2 else "no") if model in "cf" else float(i)}
        values.append(json.dumps(ev).encode())
        if i % 500 == 3:
            values.append(b"{broken")
    batch = [Message(v, "events", 1, i, 1000.0 + i) for i, v in enumerate(values)]
    limits = LimitSettings()
    whole = decode_piece(batch, limits, lambda model: True)
    _same_batches(decode(batch, limits), whole)
    # few models: pieces of _DECODE_CHUNK; many: the first piece shows them and the batch is
    # decoded whole
    if n_models == 3:
        assert pieces[:4] == [events._DECODE_CHUNK] * 3 + [len(batch) - 3 * events._DECODE_CHUNK]
    else:
        assert pieces == [events._DECODE_CHUNK, len(batch)]
    pieces.clear()                           # told (by the last batch) that it is one piece
    _same_batches(decode(batch, limits, pieces=False), whole)
    assert pieces == [len(batch)]
    reasons = {d.reason for d in whole.dead_letters}
    assert "invalid_json" in reasons and "mixed_types" not in reasons


@pytest.mark.parametrize("odd", [b'{"model":"m","features":{}}, {"model":"m","features":{}}',
                                 b'  {"model":"m","features":{"x":1}}  ', b"1],[2", b""])
@pytest.mark.parametrize("at", [1, 1500])
def test_messages_that_are_not_one_json_value_are_judged_alone(odd, at):
    """Well-formed messages are parsed together as JSON arrays (of up to _DECODE_CHUNK, also
    in a batch decoded whole); a message that is two values, or a fragment, must not shift
    the others."""
    good = b'{"model":"m","features":{"x":3}}'
    values = [good] * (2 * at + 1)
    values[at] = odd
    batch = decode(msgs(*values), LIMITS, pieces=False)
    assert batch.models["m"].offset.tolist()[0] == 0 and batch.models["m"].offset.tolist()[-1] == 2 * at
    assert batch.models["m"].numeric["x"].tolist()[-1] == 3.0
    bad = [d.message.offset for d in batch.dead_letters]
    assert bad == ([] if odd.strip().startswith(b'{"model":"m","features":{"x":1}}') else [at])


@pytest.mark.parametrize("second", [{"b": 2.5, "a": 1}, {"a": 1, "c": 2.5}, {"a": 1},
                                    {"a": 1, "b": 2.5, "c": 3}, {"b": 4}])
def test_feature_columns_whatever_the_order_and_names_of_each_event(second):
    """Events listing the same features in another order, or other features, give each
    feature its own column (NaN where an event lacks it), as one by one."""
    first = {"a": 7, "b": 0.5}
    batch = decode(msgs(*(orjson.dumps({"model": "m", "features": f}) for f in
                          (first, second, first))), LIMITS)
    columns = batch.models["m"].numeric
    names = list(dict.fromkeys([*first, *second]))
    assert list(columns) == names
    for name in names:
        expected = [f.get(name, np.nan) for f in (first, second, first)]
        assert np.array_equal(columns[name], np.array(expected, dtype=float), equal_nan=True), name


@pytest.mark.parametrize("variant", ["uniform", "class_prediction", "bad_value", "other_names",
                                     "int_and_missing_ts"])
def test_columns_of_many_models_extracted_once_equal_each_models_own(variant, monkeypatch):
    """A batch of several models whose events all have the same numeric features has its
    columns extracted once and cut per model: exactly each model's own extraction (which
    runs whenever that would not be so)."""
    from stream.ingest import rows as events

    rng = np.random.default_rng(2)
    values = []
    for i in range(600):
        model = f"m{i % 7}"
        feats = {"x": float(rng.normal()), "y": int(rng.integers(5))}
        ev = {"model": model, "id": i if i % 2 else str(i), "features": feats, "prediction": float(i),
              "ts": 1.7e9 + i, "segment": "s" if i % 3 else None}
        if variant == "class_prediction" and model == "m3":
            ev["prediction"] = "yes"
        if variant == "bad_value" and i == 300:
            feats["x"] = [1, 2]
        if variant == "other_names" and model == "m5":
            feats["z"] = feats.pop("y")
        if variant == "int_and_missing_ts" and i % 5 == 0:
            ev["ts"] = None if i % 10 else int(1.7e9)
        values.append(orjson.dumps(ev))
    batch = [Message(v, "events", 1, i, 1000.0 + i) for i, v in enumerate(values)]
    shared_calls = []
    shared_columns = events._shared_columns
    monkeypatch.setattr(events, "_shared_columns",
                        lambda *a: shared_calls.append(shared_columns(*a)) or shared_calls[-1])
    once = decode(batch, LIMITS)
    monkeypatch.setattr(events, "_shared_columns", lambda *a: None)
    _same_batches(once, decode(batch, LIMITS))
    used = any(c is not None for c in shared_calls)
    assert used == (variant in ("uniform", "int_and_missing_ts"))
    assert [d.message.offset for d in once.dead_letters] == ([300] if variant == "bad_value" else [])


@pytest.mark.parametrize("n_models", [1, 4])
def test_null_feature_values_give_the_columns_of_the_feature_by_feature_path(n_models, monkeypatch):
    """Numbers and nulls take the one-matrix path: a null is NaN and a feature null in every
    event of a model's batch has no column, exactly as the feature-by-feature path decodes them
    (forced here by taking null out of the matrix path's types); with several models, one of
    them null throughout in a feature."""
    from stream.ingest import rows as events

    rng = np.random.default_rng(4)
    values = []
    for i in range(1500):
        model = f"m{i % n_models}"
        feats = {"x": float(rng.normal()), "y": int(rng.integers(5)), "z": None, "w": 1.5}
        if i % 3 == 0:
            feats["x"] = None
        if model != "m1" and i % 2:
            feats["w"] = None if i % 4 == 1 else 2
        values.append(orjson.dumps({"model": model, "id": str(i), "features": feats, "prediction": 0.5}))
    batch = [Message(v, "events", 0, i, 1000.0 + i) for i, v in enumerate(values)]
    fast = decode(batch, LIMITS)
    for mb in fast.models.values():
        assert "z" not in mb.numeric
        assert np.array_equal(np.isnan(mb.numeric["x"]), np.array(mb.ids, dtype=int) % 3 == 0)
    monkeypatch.setattr(events, "_NUMBER_TYPES", {int, float})
    _same_batches(fast, decode(batch, LIMITS))


def test_group_rows_equals_the_row_by_row_grouping():
    from stream.ingest.rows import _group_rows

    rng = np.random.default_rng(3)
    for n, k in ((0, 1), (1, 1), (7, 3), (500, 40)):
        models = [f"m{int(i)}" for i in rng.integers(0, k, size=n)]
        for keep in (range(n), sorted(rng.choice(n, size=n // 2, replace=False).tolist())):
            expected: dict[str, list[int]] = {}
            for i in keep:
                expected.setdefault(models[i], []).append(i)
            got = _group_rows(models, keep)
            assert got == expected and list(got) == list(expected)   # same order of models too


def _event_like():
    """Events as producers write them, with the edge values the typed decode must refuse or
    read exactly as JSON parsing does (huge integers, booleans, class names, RFC 3339 times,
    out-of-range times, empty or long names, extra fields)."""
    number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70),
                       st.sampled_from([0, -0.0, 2**53 + 1, 2**63, 2**64 - 1, 2**64]))
    value = st.one_of(number, st.none(), st.booleans(), st.sampled_from(["x", "1.5"]))
    name = st.sampled_from(["a", "b", "c", "", "n" * 130])
    optional = {
        "id": st.one_of(st.text(max_size=5), st.integers(-(2**65), 2**65), st.floats(allow_nan=False,
                        allow_infinity=False), st.none(), st.booleans()),
        "ts": st.one_of(st.floats(1.6e9, 1.8e9), st.integers(1_600_000_000, 1_800_000_000), st.none(),
                        st.sampled_from(["2024-05-01T10:00:00Z", "yesterday", 1e300, -1e20, True])),
        "prediction": st.one_of(number, st.none(), st.booleans(), st.sampled_from(["cat", "d" * 130, 1e308])),
        "segment": st.one_of(st.text(max_size=3), st.none(), st.integers(0, 3)),
        "model_version": st.one_of(st.sampled_from(["v1", "v2", "w" * 130]), st.none(), st.integers(0, 3)),
        "extra": st.one_of(st.none(), st.lists(st.integers(), max_size=2)),
    }
    return st.fixed_dictionaries(
        {"model": st.sampled_from(["m", "m", "n", "bad model!", "k" * 130, 3]),
         "features": st.one_of(st.dictionaries(name, value, max_size=4),
                               st.dictionaries(st.sampled_from(["a", "b"]), number | st.none(), min_size=2))},
        optional=optional)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(_event_like().map(_dumps), st.sampled_from([b"[]", b"{}", b"1,2", b"nope"])),
                min_size=1, max_size=25),
       st.booleans())
def test_the_typed_decode_gives_exactly_the_batch_of_the_json_decode(values, numeric_only):
    """Whatever the batch, decoding it with the typed decode first (the events then are
    typed objects) gives the very columns, rows and dead letters that parsing it as JSON
    gives (the typed decode refuses what it does not take exactly)."""
    if numeric_only:
        values = [v for v in values if b'"x"' not in v and b"true" not in v and b"false" not in v] or \
            [b'{"model":"m","features":{"a":1}}']
    _typed_as_json(values)


def _typed_as_json(values: list[bytes]) -> None:
    """The batch decoded with the typed decode first equals it decoded as JSON, to the
    rows, ids' types, versions and dead letters' details."""
    typed, untyped = decode(msgs(*values), LIMITS, typed=True), decode(msgs(*values), LIMITS, typed=False)
    assert not untyped.typed
    _same_batches(typed, untyped)
    assert [d.detail for d in typed.dead_letters] == [d.detail for d in untyped.dead_letters]
    for model, x in typed.models.items():
        y = untyped.models[model]
        assert x.index.tolist() == y.index.tolist() and x.versions == y.versions
        assert [type(i) for i in x.ids] == [type(i) for i in y.ids]


def test_a_numeric_batch_is_decoded_typed_and_a_categorical_one_as_json():
    numeric = [orjson.dumps({"model": "m", "id": str(i), "ts": 1.7e9 + i, "features": {"a": i, "b": None},
                             "prediction": 0.5}) for i in range(3000)]
    categorical = numeric[:10] + [b'{"model":"m","features":{"a":1,"c":"red"}}']
    batch = decode(msgs(*numeric), LIMITS)
    assert batch.typed and batch.n_events == 3000
    assert batch.models["m"].numeric["a"].tolist() == [float(i) for i in range(3000)]
    assert "b" not in batch.models["m"].numeric             # null in every row: no column
    assert not decode(msgs(*categorical), LIMITS).typed
    assert not decode(msgs(*numeric), LIMITS, typed=False).typed


def test_the_pipeline_tries_the_typed_decode_again_every_few_batches_after_a_refusal(monkeypatch):
    from stream import pipeline as pipeline_module
    from stream.config import load_settings

    tried = []
    real = pipeline_module.decode

    def spy(*args, **kwargs):
        tried.append(kwargs["typed"])
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline_module, "decode", spy)
    pipe = pipeline_module.Pipeline(load_settings(env={}))
    numeric = msgs(*[b'{"model":"m","features":{"a":%d}}' % i for i in range(20)])
    strings = msgs(*[b'{"model":"m","features":{"a":%d,"c":"red"}}' % i for i in range(20)])
    every = pipeline_module.RETRY_TYPED
    pipe.process(numeric)
    for _ in range(every + 1):
        pipe.process(strings)
    # refused: untried for RETRY_TYPED - 1 batches, then tried again (and refused again)
    assert tried == [True, True] + [False] * (every - 1) + [True]
    for _ in range(every):
        pipe.process(numeric)
    # a numeric stream again: taken at the next try, and from then on
    assert tried[every + 2:] == [False] * (every - 1) + [True]
    pipe.process(numeric)
    assert tried[-1] is True


def _typed_like():
    """Events of the kind the typed decode takes, with edge values: integers past 2**53 and
    at the ends of int64, -0.0, nulls, absent fields, times as texts, class names."""
    number = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(-(2**70), 2**70),
                       st.sampled_from([-0.0, 2**53 + 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1]))
    return st.fixed_dictionaries(
        {"model": st.sampled_from(["m", "n", "m.v2:x-y"]),
         "features": st.dictionaries(st.sampled_from(["a", "b", "c"]), number | st.none(), min_size=1)},
        optional={"id": st.one_of(st.text(max_size=4), st.integers(-(2**63), 2**63 - 1), st.none(),
                                  st.sampled_from([2**63, 2**64 - 1])),    # (orjson ints, not int64)
                  "ts": st.one_of(st.floats(1.6e9, 1.8e9), st.integers(1_600_000_000, 1_800_000_000),
                                  st.none(), st.just("2024-05-01T10:00:00.5+02:00")),
                  "prediction": st.one_of(number, st.none(), st.sampled_from(["cat", "dog"])),
                  "segment": st.one_of(st.sampled_from(["eu", "us"]), st.none()),
                  "model_version": st.one_of(st.sampled_from(["v1", "v2"]), st.none())})


@settings(max_examples=300, deadline=None)
@given(st.lists(_typed_like().map(_dumps), min_size=1, max_size=40))
def test_typed_events_give_exactly_the_columns_of_json_events(values):
    _typed_as_json(values)
