"""Raw messages -> per-model column batches, and dead letters for whatever is malformed.

Input: a list of :class:`Message` (value bytes + where it came from). Output: an
:class:`EventBatch` with, per model, the feature columns as float64 arrays (NaN = missing),
the prediction column, and per row its source (partition, offset) and event time; plus one
:class:`DeadLetter` per bad message, carrying the raw bytes unchanged and the reason.

A message is a JSON object or a JSON array of objects. A message is bad as a whole when any
event in it is bad (it goes to the dead-letter topic unchanged, so nothing is lost or split).
Decoding is column-at-a-time: one list comprehension and one numpy conversion per feature and
batch, never Python arithmetic per value. String feature values are categories; their
indicator signals are built in stream.signals, not here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain, repeat
from operator import attrgetter, is_, itemgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson

from ..config import LimitSettings
from ..errors import Rejected
from ..types import MODEL_RE, DeadLetter, Message, ModelBatch, parsed_documents, times_in_range
from .columnar import concat, decode_columnar
from .values import INT64, classify_value, parse_ts

_NUMERIC_TYPES = {int, float, bool, type(None)}
_NUMBER_TYPES = {int, float, type(None)}       # (null: missing, NaN in the columns)
_VALUE, _TOPIC, _PARTITION, _OFFSET, _TIMESTAMP = (itemgetter(i) for i in range(5))   # Message fields
_MODEL = attrgetter("model")                    # of a typed event
_FIELDS = ("features", "ts", "prediction", "id", "segment", "model_version")
_GET = {key: attrgetter(key) for key in _FIELDS}    # a typed event's fields


@dataclass
class EventBatch:
    models: dict[str, ModelBatch] = field(default_factory=dict)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    n_events: int = 0
    typed: bool = False          # every message was decoded as a typed event (see _typed_events)


class _Event(msgspec.Struct, gc=False):
    """The common event as one typed decode checks it while parsing (see _typed_events):
    the base of :func:`_event_decoder`'s event, whose fields carry its limits."""


@lru_cache(maxsize=8)
def _event_decoder(max_features: int, max_name: int) -> msgspec.json.Decoder:
    """A decoder of a JSON array of events that accepts exactly the events the fast path
    accepts with these limits: a model name, numeric or null features (at most
    max_features), an integer (int64) or string id, a time as a number or a text, a
    prediction as a number or a class name (up to max_name characters, as a model version),
    a segment; other fields are ignored, as decoding ignores them. Feature names are checked
    by the columns' extraction, as for every batch (a constraint on each key here cost a
    third of the decode)."""
    short = Annotated[str, msgspec.Meta(max_length=max_name)]
    event = msgspec.defstruct("Event", [
        ("model", str),
        ("features", Annotated[dict[str, float | None], msgspec.Meta(max_length=max_features)]),
        ("id", str | INT64 | None, None),
        ("ts", float | str | None, None),
        ("prediction", float | short | None, None),
        ("segment", str | None, None),
        ("model_version", short | None, None)], bases=(_Event,), gc=False)
    return msgspec.json.Decoder(list[event])


def _check_event(ev: Any, limits: LimitSettings, valid_models: set[str]) -> None:
    """Cheap per-event structural checks; field values are checked column-wise later."""
    if type(ev) is not dict:
        raise Rejected("not_object", "each event must be a JSON object")
    model = ev.get("model")
    if type(model) is not str or model not in valid_models:
        if not isinstance(model, str) or not MODEL_RE.match(model) or len(model) > limits.max_name_length:
            raise Rejected("invalid_model", "model must be a string of 1..128 characters [A-Za-z0-9._:-]")
        valid_models.add(model)
    feats = ev.get("features")
    if type(feats) is not dict:
        raise Rejected("invalid_features", "features must be a JSON object")
    if len(feats) > limits.max_features_per_event:
        raise Rejected("too_many_features",
                   f"{len(feats)} features > limit {limits.max_features_per_event}")


def _parse_fast(messages: list[Message], limits: LimitSettings, typed: bool = True
                ) -> tuple[list[Any], list[int], bool, list[str]] | list[Any] | None:
    """The common batch, checked with C-level map()s only: every message one well-formed
    event object with a valid model and a features object within the limits; returned as
    (events, message index per event, whether every feature value is an int, a float or null,
    model per event). With ``typed``, the events of a batch of numeric features are checked
    by one typed decode instead (see _typed_events; they are then _Event objects, not dicts).
    Otherwise the parsed documents, or None when some message is not JSON or too large
    (then :func:`_parse` examines them one by one)."""
    values = list(map(_VALUE, messages))
    if not values or max(map(len, values)) > limits.max_message_bytes:
        return None
    parsed = parsed_documents(messages)
    if parsed is None and typed:
        events = _typed_events(values, limits)
        if events is not None:
            models = list(map(_MODEL, events))
            if _valid_models(models, limits):
                return events, list(range(len(events))), True, models
    docs: list[Any] = []
    models: list[Any] = []
    kinds: set[type] = set()
    common = True
    # one orjson call per piece of _DECODE_CHUNK messages joined as one array, even when the
    # batch is decoded whole, each piece checked right after: its objects are still in the
    # caches (docs/performance.md, Decoding)
    for i in range(0, len(values), _DECODE_CHUNK):
        if parsed is None:
            piece = values[i:i + _DECODE_CHUNK]
            try:
                part = orjson.loads(b"[" + b",".join(piece) + b"]")
            except orjson.JSONDecodeError:
                return None
            if len(part) != len(piece):
                return None                 # some message is not one JSON value: one by one
        else:
            part = parsed[i:i + _DECODE_CHUNK]
        docs += part
        if common:
            common = _common_piece(part, limits, models, kinds)
    if not common or list in kinds or not _valid_models(models, limits):
        return docs                         # columnar messages (or bad values): the slow path
    return docs, list(range(len(docs))), kinds <= _NUMBER_TYPES, models


def _valid_models(models: list[str], limits: LimitSettings) -> bool:
    """Whether every one of these model names is valid (checked once a distinct name)."""
    return all(MODEL_RE.match(m) and len(m) <= limits.max_name_length for m in set(models))


def _typed_events(values: list[bytes], limits: LimitSettings) -> list[_Event] | None:
    """Each message as a typed event, if each is one event of numeric (or null) features
    within the limits (see _event_decoder): decoded and checked in one pass a piece of
    _DECODE_CHUNK messages, no Python pass over the values. None otherwise (the batch goes
    the JSON way, which finds what the decoder refused, and why)."""
    decoder = _event_decoder(limits.max_features_per_event, limits.max_name_length)
    events: list[_Event] = []
    for i in range(0, len(values), _DECODE_CHUNK):
        piece = values[i:i + _DECODE_CHUNK]
        try:
            part = decoder.decode(b"[" + b",".join(piece) + b"]")
        except msgspec.DecodeError:         # (a ValidationError is one)
            return None
        if len(part) != len(piece):
            return None                     # some message is not one JSON value
        events += part
    return events


def _common_piece(docs: list[Any], limits: LimitSettings, models: list[Any], kinds: set[type]) -> bool:
    """Whether each of these documents is an event object whose model is a string and whose
    features are an object within the limit; adds their models to ``models`` and the types of
    their feature values to ``kinds``."""
    if set(map(type, docs)) != {dict}:
        return False
    feats = list(map(dict.get, docs, repeat("features")))
    if set(map(type, feats)) != {dict} or max(map(len, feats)) > limits.max_features_per_event:
        return False
    part = list(map(dict.get, docs, repeat("model")))
    if set(map(type, part)) != {str}:
        return False
    models += part
    kinds.update(map(type, chain.from_iterable(map(dict.values, feats))))
    return True


def _parse(messages: list[Message], limits: LimitSettings, out: EventBatch,
           columnar: list[tuple[int, dict]], typed: bool = True
           ) -> tuple[list[Any], list[int], bool, list[str]]:
    """Parse each message; return its events, per event the index of its message, whether
    all feature values are known to be ints or floats (False: not checked), and per event
    its model.
    Columnar messages are set aside in `columnar` as (message index, document).
    ``out.typed`` tells whether the events are typed (see _parse_fast)."""
    fast = _parse_fast(messages, limits, typed)
    if isinstance(fast, tuple):
        out.typed = bool(fast[0]) and isinstance(fast[0][0], _Event)
        return fast
    parsed = fast                               # documents already parsed, or None
    events: list[dict[str, Any]] = []
    owner: list[int] = []
    valid_models: set[str] = set()
    loads, max_bytes, max_feats = orjson.loads, limits.max_message_bytes, limits.max_features_per_event
    for mi, msg in enumerate(messages):
        value = msg.value
        try:
            if len(value) > max_bytes:
                raise Rejected("oversize", f"{len(value)} bytes > limit {max_bytes}")
            if parsed is not None:
                doc = parsed[mi]
            else:
                try:
                    doc = loads(value)
                except orjson.JSONDecodeError as exc:
                    raise Rejected("invalid_json", f"not JSON: {exc}") from None
            if type(doc) is dict and is_columnar(doc):
                columnar.append((mi, doc))
                continue
            if type(doc) is dict:
                # the common case, checked inline: a known model and a small features object
                model, feats = doc.get("model"), doc.get("features")
                if not (type(model) is str and model in valid_models and type(feats) is dict
                        and len(feats) <= max_feats):
                    _check_event(doc, limits, valid_models)
                events.append(doc)
                owner.append(mi)
                continue
            docs = doc if isinstance(doc, list) else [doc]
            if not docs:
                raise Rejected("empty_array", "an array message must hold at least one event")
            if len(docs) > limits.max_events_per_message:
                raise Rejected("too_many_events",
                           f"{len(docs)} events > limit {limits.max_events_per_message}")
            for ev in docs:
                _check_event(ev, limits, valid_models)
        except Rejected as bad:
            out.dead_letters.append(DeadLetter(msg, bad.reason, bad.detail))
            continue
        events.extend(docs)
        owner.extend([mi] * len(docs))
    return events, owner, False, [ev["model"] for ev in events]


_DECODE_CHUNK = 1024     # messages decoded at a time: their parsed objects stay in the caches
PIECE_MODELS = 4        # more models than this in the first piece: the batch is decoded whole


def decode(messages: list[Message], limits: LimitSettings,
           admit_model: Callable[[str], bool] = lambda model: True,
           pieces: bool | None = None, typed: bool = True) -> EventBatch:
    """Decode a batch of messages into per-model columns and dead letters.

    ``admit_model(model)`` says whether a model may be tracked (the model-count limit);
    messages with events of a refused model become dead letters "model_limit".

    Large batches are decoded in pieces of ``_DECODE_CHUNK`` messages whose columns are then
    joined: parsed JSON objects are large, and a piece's objects are still in the CPU caches
    when their columns are extracted. Not when a piece holds events of many models: each
    model's columns have a fixed cost per piece, so a batch whose first piece has more than
    ``PIECE_MODELS`` models is decoded whole (decoding the first piece again costs less than
    the joins it saves; docs/performance.md). ``pieces`` False decodes whole at once (a caller
    that saw many models in the previous batch), True always in pieces.

    ``typed``: try the typed decode first (see _typed_events); a caller whose last batch
    was not all typed events (categorical features, say) passes False, and the rest of a
    batch whose first piece was not goes the JSON way at once. ``EventBatch.typed`` tells.
    """
    if len(messages) <= _DECODE_CHUNK or pieces is False:
        return _decode(messages, limits, admit_model, typed)
    parts = [_decode(messages[:_DECODE_CHUNK], limits, admit_model, typed)]
    typed = parts[0].typed
    if pieces is None and len(parts[0].models) > PIECE_MODELS:
        # many models: each piece would cost every model its own columns, then a join
        return _decode(messages, limits, admit_model, typed)
    parts += [_decode(messages[i:i + _DECODE_CHUNK], limits, admit_model, typed)
              for i in range(_DECODE_CHUNK, len(messages), _DECODE_CHUNK)]
    for k, part in enumerate(parts[1:], start=1):        # message indexes of the whole batch
        for mb in part.models.values():
            mb.index = mb.index + k * _DECODE_CHUNK
    per_model: dict[str, list[ModelBatch]] = {}
    for part in parts:
        for model, mb in part.models.items():
            per_model.setdefault(model, []).append(mb)
    out = EventBatch()
    out.models = {model: concat(pieces) for model, pieces in per_model.items()}
    out.dead_letters = sorted((d for part in parts for d in part.dead_letters),
                              key=lambda d: (d.message.topic, d.message.partition, d.message.offset))
    out.n_events = sum(part.n_events for part in parts)
    out.typed = all(part.typed for part in parts)
    return out


def _decode(messages: list[Message], limits: LimitSettings,
            admit_model: Callable[[str], bool], typed: bool = True) -> EventBatch:
    """:func:`decode` of one piece."""
    out = EventBatch()
    columnar: list[tuple[int, dict]] = []
    events, owner, all_numbers, models = _parse(messages, limits, out, columnar, typed)
    sources = _Sources(messages)
    # group by model and type the columns; a bad value rejects its whole message
    bad_messages: dict[int, tuple[str, str]] = {}
    while True:
        keep = [i for i in range(len(events)) if owner[i] not in bad_messages] if bad_messages \
            else range(len(events))
        distinct = set(models[i] for i in keep) if bad_messages else set(models)
        groups = {distinct.pop(): keep} if len(distinct) == 1 else _group_rows(models, keep)
        found_bad = False
        batches: dict[str, ModelBatch] = {}
        shared = _shared_columns(events, owner, sources, limits, all_numbers) \
            if len(groups) > 1 and not bad_messages and _same_names(events, groups) else None
        for model, rows in groups.items():
            if not admit_model(model):
                for i in rows:
                    bad_messages.setdefault(owner[i], ("model_limit",
                                            f"model {model!r} is over the limit of tracked models"))
                found_bad = True
                continue
            if shared is not None:
                batches[model] = _rows_of(shared, model, rows)
                continue
            whole = len(rows) == len(events)          # the common batch: every event, in order
            try:
                batches[model] = _columns(model, events if whole else [events[i] for i in rows],
                                          np.array(owner if whole else [owner[i] for i in rows],
                                                   dtype=np.int64),
                                          sources, limits, all_numbers)
            except _BadRows as bad:
                for r, reason, detail in bad.rows:
                    bad_messages.setdefault(owner[rows[r]], (reason, detail))
                found_bad = True
        if not found_bad:
            break
    if columnar:
        _add_columnar(columnar, messages, limits, admit_model, batches, out)
    for mi, (reason, detail) in sorted(bad_messages.items()):
        out.dead_letters.append(DeadLetter(messages[mi], reason, detail))
    out.dead_letters.sort(key=lambda d: (d.message.topic, d.message.partition, d.message.offset))
    out.models = batches
    out.n_events = sum(b.size for b in batches.values())
    return out


def _shared_columns(events: list[dict[str, Any]], owner: list[int], sources: _Sources,
                    limits: LimitSettings, all_numbers: bool) -> ModelBatch | None:
    """The columns of a batch of several models extracted once for all its events, when each
    model's would be exactly its rows of them: every event has the same numeric features and
    no prediction is a class name. None otherwise (or if some row is bad: then each model's
    own extraction finds it)."""
    try:
        shared = _columns("", events, np.array(owner, dtype=np.int64), sources, limits,
                          all_numbers, uniform=True)
    except (_BadRows, _NotUniform):
        return None
    return shared if shared.prediction_class is None else None


def _same_names(events: list[dict[str, Any]], groups: dict[str, list[int]]) -> bool:
    """Whether the first events of the models name the same features (else no model's
    columns are the shared ones: models with their own feature names)."""
    firsts = _fields([events[rows[0]] for rows in groups.values() if rows], ("features",))[0]
    if not all(type(f) is dict for f in firsts):
        return True                     # (decided by the extraction)
    names = firsts[0].keys()
    return all(f.keys() == names for f in firsts)


def _group_rows(models: list[str], keep: range | list[int]) -> dict[str, list[int]]:
    """The rows in ``keep`` of each model (``models[row]``), ascending, models in order of
    first appearance; with C-level passes (a batch of many models has thousands of rows)."""
    kept = [models[i] for i in keep] if isinstance(keep, list) else models
    names = list(dict.fromkeys(kept))
    if not names:
        return {}
    code = dict(zip(names, range(len(names)), strict=True))
    codes = np.fromiter(map(code.__getitem__, kept), dtype=np.int64, count=len(kept))
    rows = np.asarray(keep, dtype=np.int64)[np.argsort(codes, kind="stable")]
    ends = np.cumsum(np.bincount(codes, minlength=len(names)))[:-1]
    return dict(zip(names, (part.tolist() for part in np.split(rows, ends)), strict=True))


def _rows_of(shared: ModelBatch, model: str, rows: list[int]) -> ModelBatch:
    """One model's rows of the columns extracted for a whole batch."""
    idx = np.array(rows, dtype=np.int64)
    return ModelBatch(
        model=model, numeric={name: col[idx] for name, col in shared.numeric.items()},
        categorical={}, prediction=shared.prediction[idx], prediction_class=None,
        ts=shared.ts[idx], partition=shared.partition[idx], offset=shared.offset[idx],
        topic=shared.topic[idx], ids=list(map(shared.ids.__getitem__, rows)),
        segments=list(map(shared.segments.__getitem__, rows)), index=shared.index[idx],
        versions=None if shared.versions is None else list(map(shared.versions.__getitem__, rows)))


def is_columnar(doc: dict) -> bool:
    """A message whose features are all lists carries many rows as columns."""
    feats = doc.get("features")
    return type(feats) is dict and bool(feats) and all(type(v) is list for v in feats.values())


def _add_columnar(columnar: list[tuple[int, dict]], messages: list[Message], limits: LimitSettings,
                  admit_model: Callable[[str], bool], batches: dict[str, ModelBatch],
                  out: EventBatch) -> None:
    """Decode columnar messages and merge them with the row events of their model (a model's
    pieces are ordered by source offset; a producer should use one format per model)."""
    pieces: dict[str, list[tuple[int, ModelBatch]]] = {}
    for model, mb in batches.items():
        pieces[model] = [(int(mb.offset[0]) if mb.size else 0, -1, mb)]
    for mi, doc in columnar:
        msg = messages[mi]
        try:
            mb = decode_columnar(doc, msg, limits)
            if not admit_model(mb.model):
                raise Rejected("model_limit", f"model {mb.model!r} is over the limit of tracked models")
        except Rejected as exc:
            out.dead_letters.append(DeadLetter(msg, exc.reason, exc.detail))
            continue
        mb.index = np.full(mb.size, mi, dtype=np.int64)
        pieces.setdefault(mb.model, []).append((msg.offset, mi, mb))
    for model, parts in pieces.items():
        parts.sort(key=lambda t: (t[0], t[1]))
        batches[model] = concat([p[2] for p in parts])


class _Sources:
    """Per-message source columns of a batch, indexed by message number."""

    def __init__(self, messages: list[Message]) -> None:
        n = len(messages)
        self.partition = np.fromiter(map(_PARTITION, messages), dtype=np.int64, count=n)
        self.offset = np.fromiter(map(_OFFSET, messages), dtype=np.int64, count=n)
        self.timestamp = np.fromiter(map(_TIMESTAMP, messages), dtype=np.float64, count=n)
        self.topic = np.array(list(map(_TOPIC, messages)), dtype=object)


def _check_names(names: list[str], feats: list[dict], limits: LimitSettings) -> None:
    """Rejects the events that have a feature name out of 1..max_name_length characters."""
    too_long = [nm for nm in names if not nm or len(nm) > limits.max_name_length]
    if too_long:
        bad_names = set(too_long)
        raise _BadRows([(r, "invalid_name", f"feature names must be 1..{limits.max_name_length} "
                         "characters") for r, f in enumerate(feats) if bad_names.intersection(f)])


class _NotUniform(Exception):
    """The events do not all have the same numeric features (see _columns' ``uniform``)."""


class _BadRows(Exception):
    """Rows (indices into the model's event list) that make their messages bad."""

    def __init__(self, rows: list[tuple[int, str, str]]) -> None:
        super().__init__(f"{len(rows)} bad rows")
        self.rows = rows


def _numbers_and_strings(col: list[Any]) -> tuple[np.ndarray, list[Any]] | None:
    """A column of numbers, strings and nulls as its numbers (NaN elsewhere) and its strings
    (None elsewhere), by C-level passes; None when some number is not finite as a float."""
    values = np.array(col, dtype=object)
    text = np.fromiter(map(isinstance, col, repeat(str)), dtype=bool, count=len(col))
    other = text | np.fromiter(map(is_, col, repeat(None)), dtype=bool, count=len(col))
    numbers = values.copy()
    numbers[other] = np.nan
    try:
        floats = numbers.astype(np.float64)
    except OverflowError:
        return None
    if not np.isfinite(floats[~other]).all():
        return None
    values[~text] = None
    return floats, values.tolist()


def _fields(evs: list[Any], keys: tuple[str, ...]) -> list[list[Any]]:
    """Per key, its value in each event (None where absent): events parsed as dicts, or
    typed events (all of one kind)."""
    if evs and isinstance(evs[0], _Event):
        return [list(map(_GET[key], evs)) for key in keys]
    return [list(map(dict.get, evs, repeat(key))) for key in keys]


def _rows_where(col: list[Any] | tuple, bad) -> list[int]:
    return [r for r, v in enumerate(col) if bad(v)]


def _columns(model: str, evs: list[dict[str, Any]], msg_index: np.ndarray, sources: _Sources,
             limits: LimitSettings, all_numbers: bool = False, uniform: bool = False) -> ModelBatch:
    """Columns of one model's events (evs, in arrival order; msg_index = their messages).
    ``all_numbers``: every feature value is already known to be an int, a float or null.
    ``uniform``: raise _NotUniform unless every event has the same numeric features, none null."""
    n = len(evs)
    feats, ts_raw, preds, ids, segments, versions = _fields(evs, _FIELDS)
    numeric: dict[str, np.ndarray] = {}
    categorical: dict[str, list[Any]] = {}
    bad: list[tuple[int, str, str]] = []
    # fast path: every event has the first event's feature names (as many, and each of them:
    # itemgetter raises KeyError otherwise), in any order, and only numbers or nulls: all values
    # in one C-level pass into an (n, width) matrix (a null is NaN)
    names = list(feats[0]) if n else []
    fast = bool(names) and set(map(len, feats)) == {len(names)} and (
        all_numbers or set(map(type, chain.from_iterable(map(dict.values, feats)))) <= _NUMBER_TYPES)
    if fast:
        _check_names(names, feats, limits)
        pick = itemgetter(*names)
        try:
            M = np.fromiter(map(pick, feats) if len(names) == 1 else
                            chain.from_iterable(map(pick, feats)), dtype=np.float64,
                            count=n * len(names)).reshape(n, len(names))
            null = np.isnan(M)
            if uniform and null.any():
                raise _NotUniform                # (a model's own rows may be null throughout)
            gone = null.all(axis=0).tolist()    # null in every event: no column, as below
            numeric = {nm: M[:, k] for k, nm in enumerate(names) if not gone[k]}
            names = []
        except (KeyError, OverflowError):
            fast = False
    if not fast:
        if uniform:
            raise _NotUniform
        names = list(dict.fromkeys(chain.from_iterable(feats)))    # in order of first appearance
        _check_names(names, feats, limits)
    for name in names:
        col = list(map(dict.get, feats, repeat(name)))
        kinds = set(map(type, col))
        if kinds == {type(None)}:
            continue                  # null in every event: no column (as absent; any batch)
        if kinds <= _NUMERIC_TYPES:
            try:
                arr = np.array(col, dtype=np.float64)
            except OverflowError:
                arr = None
            if arr is not None and np.isfinite(arr[~np.isnan(arr)]).all():
                numeric[name] = arr
                continue
        if kinds <= {str, type(None)}:
            categorical[name] = col
            continue
        if kinds <= _NUMERIC_TYPES | {str}:
            # numbers and strings: both columns, each with its own rows (the feature's type is
            # judged per value by the monitor: stream.monitor.quality), whatever the batch
            split = _numbers_and_strings(col)
            if split is not None:
                numeric[name], categorical[name] = split
                continue
        # a nested or out-of-range value: find the offending rows (only for this column)
        reasons = list(map(classify_value, col))
        bad.extend((r, reason, f"feature {name!r}: {reason.replace('_', ' ')}")
                   for r, reason in enumerate(reasons) if reason is not None)
    if bad:
        raise _BadRows(bad)
    pkinds = set(map(type, preds))
    if not pkinds <= _NUMERIC_TYPES | {str}:
        raise _BadRows([(r, "invalid_prediction", "prediction must be a number or a short string")
                        for r in _rows_where(preds, lambda v: isinstance(v, (dict, list)))])
    if str in pkinds and max(len(p) for p in preds if isinstance(p, str)) > limits.max_name_length:
        too_long_class = lambda v: isinstance(v, str) and len(v) > limits.max_name_length
        raise _BadRows([(r, "invalid_prediction", "prediction class name too long")
                        for r in _rows_where(preds, too_long_class)])
    if not set(map(type, segments)) <= {str, type(None)}:
        raise _BadRows([(r, "invalid_segment", "segment must be a string") for r in
                        _rows_where(segments, lambda v: v is not None and not isinstance(v, str))])
    vkinds = set(map(type, versions))
    if not vkinds <= {str, type(None)} or (str in vkinds and max(
            len(v) for v in versions if isinstance(v, str)) > limits.max_name_length):
        raise _BadRows([(r, "invalid_model_version", "model_version must be a short string") for r in
                        _rows_where(versions, lambda v: v is not None and (not isinstance(v, str) or
                                                                           len(v) > limits.max_name_length))])
    if not set(map(type, ids)) <= {str, int, type(None)}:
        raise _BadRows([(r, "invalid_id", "id must be a string or an integer") for r in
                        _rows_where(ids, lambda v: type(v) not in (str, int, type(None)))])
    prediction_class = None
    if pkinds <= _NUMERIC_TYPES:
        try:
            prediction = np.array(preds, dtype=np.float64)
        except OverflowError:
            raise _BadRows([(0, "invalid_prediction", "prediction out of range")]) from None
        if np.isinf(prediction).any():                  # (NaN: missing)
            raise _BadRows([(int(r), "invalid_prediction", "prediction must be finite")
                            for r in np.flatnonzero(np.isinf(prediction))])
    else:                           # classes (and maybe numbers: both columns, as for features)
        prediction = np.array([np.nan if p is None or isinstance(p, str) else p for p in preds],
                              dtype=np.float64)
        if np.isinf(prediction).any():
            raise _BadRows([(int(r), "invalid_prediction", "prediction must be finite")
                            for r in np.flatnonzero(np.isinf(prediction))])
        prediction_class = [p if isinstance(p, str) else None for p in preds]
    try:
        ts = np.array(ts_raw, dtype=np.float64) if set(map(type, ts_raw)) <= {int, float, type(None)} \
            else None
    except OverflowError:
        ts = None
    if ts is None or not times_in_range(ts):          # (also false for infinities)
        ts = np.empty(n)
        bad_ts = []
        for r, v in enumerate(ts_raw):
            try:
                ts[r] = np.nan if v is None else parse_ts(v)
            except Rejected as b:
                bad_ts.append((r, b.reason, b.detail))
        if bad_ts:
            raise _BadRows(bad_ts)
    missing = np.isnan(ts)
    if missing.any():
        ts[missing] = sources.timestamp[msg_index[missing]]
    return ModelBatch(
        model=model, numeric=numeric, categorical=categorical, prediction=prediction,
        prediction_class=prediction_class, ts=ts, partition=sources.partition[msg_index],
        offset=sources.offset[msg_index], topic=sources.topic[msg_index],
        ids=ids, segments=segments, index=msg_index, versions=versions if str in vkinds else None,
    )
