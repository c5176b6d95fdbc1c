"""Columnar batches: one message carries many rows as columns, decoded straight into arrays.

    {"model": "m", "ts": [...], "id": [...], "features": {"age": [...], "ward": [...]},
     "prediction": [...], "segment": [...]}

Every list has one entry per row (null = missing); ``ts`` may also be a single number (all
rows) or absent (the message timestamp). Numeric columns become float64 arrays in one numpy
call each, string columns categorical; no Python object per row is built for numbers. A
message is rejected whole (dead letter) when a column has the wrong length or bad values.
"""

from __future__ import annotations

from itertools import chain

import numpy as np

from ..config import LimitSettings
from ..errors import Rejected
from ..types import TS_END, TS_MIN, Message, ModelBatch, times_in_range, ts_out_of_range
from .values import check_model, parse_ts

_NUMERIC = {int, float, bool, type(None)}


def _numeric(name: str, col: list, n: int) -> np.ndarray | None:
    """The column as float64 if every value is a number, bool or None (NaN); else None."""
    arr = None
    if col and type(col[0]) in (float, int):   # (a column of names would be copied for nothing)
        try:
            arr = np.array(col)      # numpy's own type discovery: one C pass, no type() per value
        except (ValueError, OverflowError):
            pass
    if arr is not None and arr.ndim == 1 and arr.dtype.kind in "fi":   # ints and floats only
        arr = arr.astype(np.float64, copy=False)
        if np.isinf(arr).any():
            raise Rejected("non_finite_value", f"{name}: non-finite number")
        return arr
    kinds = set(map(type, col))      # the rest (None, bools, names, nesting) checked by type
    if not kinds <= _NUMERIC:
        return None
    try:
        arr = np.array(col, dtype=np.float64)
    except OverflowError:
        raise Rejected("non_finite_value", f"{name}: number out of range") from None
    if np.isinf(arr).any():
        raise Rejected("non_finite_value", f"{name}: non-finite number")
    return arr


def decode_columnar(doc: dict, msg: Message, limits: LimitSettings) -> ModelBatch:
    """One columnar message -> a ModelBatch (rows all from this message); Rejected if bad."""
    model = check_model(doc.get("model"), limits)
    feats: dict[str, list] = doc["features"]
    if len(feats) > limits.max_features_per_event:
        raise Rejected("too_many_features", f"{len(feats)} features > limit")
    lengths = {len(v) for v in feats.values()}
    if len(lengths) != 1:
        raise Rejected("ragged_columns", "all feature columns must have the same length")
    n = lengths.pop()
    if n == 0 or n > limits.max_events_per_message:
        raise Rejected("too_many_events", f"{n} rows (limit {limits.max_events_per_message})")

    def column(key: str) -> list | None:
        v = doc.get(key)
        if v is None:
            return None
        if type(v) is not list or len(v) != n:
            raise Rejected(f"invalid_{key}", f"{key} must be a list of {n} entries")
        return v

    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, list] = {}
    for name, col in feats.items():
        if not name or len(name) > limits.max_name_length:
            raise Rejected("invalid_name", "feature names must be 1..128 characters")
        if all(v is None for v in col):
            continue                  # null in every row: no column (as absent)
        arr = _numeric(name, col, n)
        if arr is not None:
            numeric[name] = arr
        elif set(map(type, col)) <= {str, type(None)}:
            categorical[name] = col
        else:
            raise Rejected("nested_value" if any(isinstance(v, (dict, list)) for v in col)
                                else "mixed_types", f"feature {name!r}: bad values")
    preds = column("prediction")
    prediction, prediction_class = np.full(n, np.nan), None
    if preds is not None:
        arr = _numeric("prediction", preds, n)
        if arr is not None:
            prediction = arr
        elif set(map(type, preds)) <= {str, type(None)}:
            prediction_class = preds
        else:
            raise Rejected("invalid_prediction", "prediction must be numbers or class strings")
    raw_ts = doc.get("ts")
    if raw_ts is None:
        ts = np.full(n, msg.timestamp)
    elif type(raw_ts) is list:
        # (true/false are numbers for features, not times: parse_ts refuses them, as in rows)
        ts = _numeric("ts", column("ts"), n) if bool not in set(map(type, raw_ts)) else None
        if ts is None:
            ts = np.array([np.nan if v is None else parse_ts(v) for v in raw_ts])
        if not times_in_range(ts):
            first = float(ts[(ts < TS_MIN) | (ts >= TS_END)][0])
            raise Rejected("invalid_ts", str(ts_out_of_range(first)))
        ts = np.where(np.isnan(ts), msg.timestamp, ts)
    else:
        ts = np.full(n, parse_ts(raw_ts))
    ids = column("id") or [None] * n
    if not set(map(type, ids)) <= {str, int, type(None)}:
        raise Rejected("invalid_id", "ids must be strings or integers")
    raw_version = doc.get("model_version")
    versions = None
    if raw_version is not None:
        versions = [raw_version] * n if isinstance(raw_version, str) else column("model_version")
        if not set(map(type, versions)) <= {str, type(None)}:
            raise Rejected("invalid_model_version", "model_version must be a string (or a list of them)")
    segments = column("segment") or [None] * n
    if not set(map(type, segments)) <= {str, type(None)}:
        raise Rejected("invalid_segment", "segments must be strings")
    return ModelBatch(model=model, numeric=numeric, categorical=categorical, prediction=prediction,
                      prediction_class=prediction_class, ts=ts,
                      partition=np.full(n, msg.partition, dtype=np.int64),
                      offset=np.full(n, msg.offset, dtype=np.int64),
                      topic=np.full(n, msg.topic, dtype=object), ids=list(ids), segments=list(segments),
                      versions=None if versions is None else list(versions))


def concat(pieces: list[ModelBatch]) -> ModelBatch:
    """Rows of several batches of one model, in order; missing columns are NaN / None."""
    if len(pieces) == 1:
        return pieces[0]
    sizes = [p.size for p in pieces]
    numeric_names = list(dict.fromkeys(k for p in pieces for k in p.numeric))
    cat_names = list(dict.fromkeys(k for p in pieces for k in p.categorical))
    parts = list(zip(pieces, sizes, strict=True))
    numeric = {k: np.concatenate([p.numeric.get(k, np.full(s, np.nan)) for p, s in parts])
               for k in numeric_names}
    # lists joined at C level (chain), not by a comprehension: a batch has thousands of rows
    categorical = {k: list(chain.from_iterable(p.categorical.get(k) or [None] * s for p, s in parts))
                   for k in cat_names}
    classes = None
    if any(p.prediction_class is not None for p in pieces):
        classes = list(chain.from_iterable(
            p.prediction_class if p.prediction_class is not None else [None] * s for p, s in parts))
    return ModelBatch(
        model=pieces[0].model, numeric=numeric, categorical=categorical,
        prediction=np.concatenate([p.prediction for p in pieces]), prediction_class=classes,
        ts=np.concatenate([p.ts for p in pieces]),
        partition=np.concatenate([p.partition for p in pieces]),
        offset=np.concatenate([p.offset for p in pieces]),
        topic=np.concatenate([p.topic for p in pieces]),
        ids=list(chain.from_iterable(p.ids for p in pieces)),
        segments=list(chain.from_iterable(p.segments for p in pieces)),
        index=None if any(p.index is None for p in pieces) else np.concatenate([p.index for p in pieces]),
        versions=None if all(p.versions is None for p in pieces) else list(chain.from_iterable(
            p.versions if p.versions is not None else [None] * s for p, s in parts)))
