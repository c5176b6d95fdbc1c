"""Input adapters: what serving stacks already emit -> streamdrift's columnar batches.

Selected per topic (``[kafka.formats]`` in the config, ``replay --format``):

* ``kserve``: KServe InferenceLogger CloudEvents. Binary mode: attributes in Kafka headers
  (``ce_type`` = ``org.kubeflow.serving.inference.request`` / ``.response``, ``ce_id`` shared
  by a request and its response, ``ce_inferenceservicename`` = the model, optional
  ``ce_time``), body = the payload. Structured mode (``content-type:
  application/cloudevents+json``, or a JSON body with ``specversion``): the same attributes
  in the body, payload in ``data``. Payloads: V1 ``{"instances": [...]}`` /
  ``{"predictions": [...]}`` or V2 (Open Inference Protocol) ``inputs`` / ``outputs``.
  Requests and responses are paired by ``ce_id`` in a bounded store: features from the request
  rows, prediction from the response; whatever is evicted unpaired is still emitted alone,
  and the other half of a pair whose request or response was a dead letter goes on alone at
  once (not after waiting in the store).
* ``oip``: Open Inference Protocol (V2) JSON records ``{"model_name", "inputs": [...],
  "outputs": [...]}`` (``id``, ``parameters.ts`` optional).

Tensors ``{"name", "shape", "datatype", "data"}`` are flattened row-major and split into
``shape[0]`` rows. One tensor per column (pandas content type) names the features; a single
2-D tensor takes ``[models.<name>] columns`` from the config (else ``f0``, ``f1``, ...).
Each converted message keeps its source position, so alerts and dead letters point at it.
Problems of one message (not JSON, not a CloudEvent, a bad tensor, a bad model name, a
request's nested feature value, too many or too-long feature names) make that
message a dead letter at conversion, with its own raw bytes. A converted message that decoding
rejects later (e.g. a feature's type mixing numbers and names within a batch) is dead-lettered
as the message it came from (:meth:`Converter.convert_with_origins`).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from functools import lru_cache
from itertools import chain
from typing import Any

import orjson

from detectors._state import StateError

from ..config import LimitSettings
from .rows import MODEL_RE, DeadLetter, Message, classify_value, parse_ts

FORMATS = ("streamdrift", "kserve", "oip")
_SCALARS = {int, float, str, bool, type(None)}     # feature values an event may carry
_KNOWN_MODELS = 10_000     # model names remembered as valid (the check is then skipped)
REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
REJECTED = "streamdrift.rejected"   # pairing-store marker: this id's message of kind `part` was
                                    # a dead letter, so its other half goes on alone on arrival


class AdapterError(ValueError):
    """A message that cannot be converted. ``emitted``: documents that go on anyway (the
    waiting other half of a rejected KServe message)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail
        self.emitted: list[dict | list] = []


def _tensor_rows(t: Any) -> tuple[str, list[list[Any]]]:
    """One OIP tensor -> (name, rows); each row a list of its values (row-major)."""
    if not isinstance(t, dict) or not isinstance(t.get("shape"), list) or not isinstance(t.get("data"), list):
        raise AdapterError("invalid_tensor", "a tensor needs name, shape, datatype and data")
    shape, data = t["shape"], t["data"]
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise AdapterError("invalid_tensor", f"tensor {t.get('name')!r}: bad shape {shape!r}")
    while data and isinstance(data[0], list):          # nested data: flatten row-major
        data = [v for row in data for v in row]
    if len(data) != math.prod(shape):
        raise AdapterError("invalid_tensor",
                           f"tensor {t.get('name')!r}: {len(data)} values for shape {shape}")
    n = shape[0]
    k = math.prod(shape[1:]) if len(shape) > 1 else 1
    return str(t.get("name", "")), [data[i * k:(i + 1) * k] for i in range(n)]


@lru_cache(maxsize=256)
def _default_names(width: int) -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(width))


def _columns_from_rows(rows: list, names: tuple[str, ...] | None) -> dict[str, list]:
    if not rows:
        raise AdapterError("invalid_payload", "no rows")
    if len(rows) == 1:                          # the common single-row request, kept cheap
        row = rows[0]
        if isinstance(row, dict):
            return {k: [v] for k, v in row.items()}
        row = row if isinstance(row, list) else [row]
        cols = names if names and len(names) == len(row) else _default_names(len(row))
        return {c: [v] for c, v in zip(cols, row, strict=True)}
    if all(isinstance(r, dict) for r in rows):
        keys = list(dict.fromkeys(k for r in rows for k in r))
        return {k: [r.get(k) for r in rows] for k in keys}
    rows = [r if isinstance(r, list) else [r] for r in rows]
    width = max(len(r) for r in rows)
    cols = names if names and len(names) == width else _default_names(width)
    return {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(cols)}


def features_of(payload: Any, names: tuple[str, ...] | None) -> dict[str, list]:
    """Feature columns of a request payload (V1 instances or V2 inputs)."""
    if not isinstance(payload, dict):
        raise AdapterError("invalid_payload", "the request payload must be a JSON object")
    if isinstance(payload.get("instances"), list):
        return _columns_from_rows(payload["instances"], names)
    if isinstance(payload.get("inputs"), list) and payload["inputs"]:
        tensors = [_tensor_rows(t) for t in payload["inputs"]]
        if len(tensors) == 1:
            return _columns_from_rows(tensors[0][1], names)
        n = {len(rows) for _, rows in tensors}
        if len(n) != 1:
            raise AdapterError("invalid_tensor", "input tensors have different numbers of rows")
        cols = {}
        for name, rows in tensors:
            if any(len(r) != 1 for r in rows):
                raise AdapterError("invalid_tensor", f"tensor {name!r}: one column per tensor expected")
            cols[name or f"f{len(cols)}"] = [r[0] for r in rows]
        return cols
    raise AdapterError("invalid_payload", "a request needs 'instances' or 'inputs'")


def _prediction(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) == 1:
            return _prediction(value[0])
        if len(value) == 2 and all(isinstance(v, (int, float)) for v in value):
            return value[1]                             # [p(0), p(1)]: the positive class score
        if value and all(isinstance(v, (int, float)) for v in value):
            return str(max(range(len(value)), key=value.__getitem__))   # argmax as the class
        return None
    return value if isinstance(value, (int, float, str)) and not isinstance(value, bool) else None


def predictions_of(payload: Any) -> list:
    """Predictions, one per row, of a response payload (V1 predictions or V2 outputs)."""
    if not isinstance(payload, dict):
        raise AdapterError("invalid_payload", "the response payload must be a JSON object")
    if isinstance(payload.get("predictions"), list):
        return [_prediction(p) for p in payload["predictions"]]
    if isinstance(payload.get("outputs"), list) and payload["outputs"]:
        _, rows = _tensor_rows(payload["outputs"][0])
        return [_prediction(r) for r in rows]
    raise AdapterError("invalid_payload", "a response needs 'predictions' or 'outputs'")


def _doc(model: str, ident: str, ts: float | None, features: dict | None,
         preds: list | None) -> dict | list:
    """A columnar document (rows with features), or row events for predictions alone."""
    if not features:
        return [{"model": model, "id": f"{ident}-{i}", "features": {}, "prediction": p,
                 **({"ts": ts} if ts is not None else {})} for i, p in enumerate(preds or [])]
    n = len(next(iter(features.values())))
    if n == 1:                                  # one row (the common request): a plain event
        event: dict[str, Any] = {"model": model, "id": f"{ident}-0",
                                 "features": {k: v[0] for k, v in features.items()}}
        if preds is not None:
            if len(preds) != 1:
                raise AdapterError("row_mismatch", f"1 request row but {len(preds)} predictions")
            event["prediction"] = preds[0]
        if ts is not None:
            event["ts"] = ts
        return event
    doc: dict[str, Any] = {"model": model, "id": [f"{ident}-{i}" for i in range(n)], "features": features}
    if preds is not None:
        if len(preds) != n:
            raise AdapterError("row_mismatch", f"{n} request rows but {len(preds)} predictions")
        doc["prediction"] = preds
    if ts is not None:
        doc["ts"] = ts
    return doc


def check_features(features: dict[str, list], limits: LimitSettings) -> None:
    """The checks decoding makes of one event's features, for a request's columns: an
    AdapterError names the first problem (the message is then dead-lettered as it is)."""
    if len(features) > limits.max_features_per_event:
        raise AdapterError("too_many_features",
                           f"{len(features)} features > limit {limits.max_features_per_event}")
    if features and not 0 < min(map(len, features)) <= max(map(len, features)) <= limits.max_name_length:
        raise AdapterError("invalid_name",
                           f"feature names must be 1..{limits.max_name_length} characters")
    if set(map(type, chain.from_iterable(features.values()))) <= _SCALARS:
        return                    # (parsed JSON numbers are always finite, ints within 64 bits)
    for name, values in features.items():
        for v in values:
            reason = classify_value(v)
            if reason is not None:
                raise AdapterError(reason, f"feature {name!r}: {reason.replace('_', ' ')}")


def check_model(model: str, limits: LimitSettings) -> None:
    if not MODEL_RE.match(model) or len(model) > limits.max_name_length:
        raise AdapterError("invalid_model",
                           f"model {model[:40]!r}: must be 1..128 characters [A-Za-z0-9._:-]")


class Converter:
    """Converts adapter-format messages into streamdrift columnar messages."""

    def __init__(self, formats: dict[str, str], columns: dict[str, tuple[str, ...]],
                 max_pending: int = 100_000, limits: LimitSettings | None = None) -> None:
        self.formats = formats
        self.columns = columns
        self.limits = limits or LimitSettings()
        # ce_id -> (ce type, features or predictions, model, time) of events awaiting their pair
        self.pending: OrderedDict[str, tuple[str, Any, str, float | None]] = OrderedDict()
        self.max_pending = max_pending
        self.evicted = 0
        self.changed = False            # pending changed since the last dump()
        self._valid_models: set[str] = set()   # model names that passed check_model

    def dump(self) -> bytes:
        """The events awaiting their pair (JSON), for the changelog; see :meth:`load`."""
        self.changed = False
        return orjson.dumps({"version": 1, "evicted": self.evicted,
                             "pending": [[ident, *entry] for ident, entry in self.pending.items()]})

    def load(self, blob: bytes) -> None:
        """Restore the events awaiting their pair from :meth:`dump` output."""
        try:
            doc = orjson.loads(blob)
            if doc.get("version") != 1:
                raise ValueError(f"unknown version {doc.get('version')!r}")
            self.pending = OrderedDict((str(ident), (kind, part, str(model), ts))
                                       for ident, kind, part, model, ts in doc["pending"])
            self.evicted = int(doc["evicted"])
        except (orjson.JSONDecodeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"adapter pairing state is unreadable: {exc}") from None
        self.changed = False

    def convert(self, messages: list[Message]) -> tuple[list[Message], list[DeadLetter]]:
        """(streamdrift messages, dead letters of the messages that could not be converted)."""
        out, dead, _ = self.convert_with_origins(messages)
        return out, dead

    def convert_with_origins(self, messages: list[Message]
                             ) -> tuple[list[Message], list[DeadLetter], dict[int, Message]]:
        """:meth:`convert`, and for each converted message (by ``id``) the message it came
        from, so that a dead letter of decoding carries the raw bytes that arrived."""
        out: list[Message] = []
        dead: list[DeadLetter] = []
        origins: dict[int, Message] = {}
        for msg in messages:
            fmt = self.formats.get(msg.topic, "streamdrift")
            if fmt == "streamdrift":
                out.append(msg)
                continue
            try:
                docs = self._kserve(msg) if fmt == "kserve" else self._oip(msg)
            except AdapterError as exc:
                dead.append(DeadLetter(msg, exc.reason, exc.detail))
                docs = exc.emitted
            for d in docs:
                converted = Message(orjson.dumps(d), *msg[1:])     # (cheaper than _replace)
                origins[id(converted)] = msg
                out.append(converted)
        return out, dead, origins

    # -- KServe CloudEvents
    def _kserve(self, msg: Message) -> list[dict | list]:
        headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                   for k, v in msg.headers} if msg.headers else {}
        try:
            body = orjson.loads(msg.value)
        except orjson.JSONDecodeError as exc:
            raise AdapterError("invalid_json", f"not JSON: {exc}") from None
        if "ce_type" in headers:                                    # binary mode
            attrs = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
            payload = body
        elif isinstance(body, dict) and "specversion" in body:      # structured mode
            attrs = body                          # (only attributes are read from it)
            payload = body.get("data")
            if payload is None and isinstance(body.get("data_base64"), str):
                import base64
                try:
                    payload = orjson.loads(base64.b64decode(body["data_base64"]))
                except Exception:
                    raise AdapterError("invalid_payload", "data_base64 is not base64 JSON") from None
        else:
            raise AdapterError("not_cloudevent", "no ce_type header and no structured CloudEvent")
        kind, ident = attrs.get("type"), attrs.get("id")
        model = attrs.get("inferenceservicename") or str(attrs.get("source", "")).rstrip("/").split("/")[-1]
        if kind not in (REQUEST, RESPONSE):
            raise AdapterError("unknown_ce_type", f"ce type {kind!r} is neither request nor response")
        if not ident or not model:
            raise AdapterError("invalid_cloudevent", "a CloudEvent needs an id and a model name")
        self._check_model(model)
        ts = None
        try:
            if attrs.get("time"):
                try:
                    ts = parse_ts(attrs["time"])
                except Exception:
                    raise AdapterError("invalid_ts", f"time {attrs['time']!r} is not RFC 3339") from None
            if kind == REQUEST:
                part = features_of(payload, self.columns.get(model))
                check_features(part, self.limits)
            else:
                part = predictions_of(payload)
        except AdapterError as exc:
            exc.emitted = self._rejected(kind, str(ident), model, ts)
            raise
        self.changed = True
        other = self.pending.pop(str(ident), None)
        if other is not None and other[0] == REJECTED:
            if other[1] != kind:        # the other half was a dead letter: this one goes alone
                return [self._alone(str(ident), (kind, part, model, ts))] + self._evict()
            other = None                # the same kind again (a retry): a fresh start
        if other is None:
            self.pending[str(ident)] = (kind, part, model, ts)
            return self._evict()
        if other[0] == kind:
            self.pending[str(ident)] = (kind, part, model, ts)    # a duplicate: keep the newer
            raise AdapterError("duplicate_ce_id", f"two {kind} events with id {ident!r}")
        features, preds = (part, other[1]) if kind == REQUEST else (other[1], part)
        req_ts = ts if kind == REQUEST else other[3]
        try:
            doc = _doc(model, str(ident), req_ts if req_ts is not None else ts, features, preds)
        except AdapterError as exc:        # rows and predictions do not match: this message is
            exc.emitted = [self._alone(str(ident), other)] + self._evict()   # the dead letter,
            raise                          # the one that waited goes on alone
        return [doc] + self._evict()

    def _check_model(self, model: str) -> None:
        """check_model, skipped for names that passed it (up to _KNOWN_MODELS remembered)."""
        if model not in self._valid_models:
            check_model(model, self.limits)
            if len(self._valid_models) < _KNOWN_MODELS:
                self._valid_models.add(model)

    def _rejected(self, kind: str, ident: str, model: str, ts: float | None) -> list[dict | list]:
        """A request or response of pair ``ident`` is a dead letter. Its other half, if
        waiting, goes on alone now; else a marker makes it go alone as soon as it arrives (not
        wait in the store until evicted). Returns the documents emitted now."""
        self.changed = True
        other = self.pending.get(ident)
        if other is not None and other[0] not in (kind, REJECTED):
            del self.pending[ident]
            return [self._alone(ident, other)]
        if other is not None and other[0] == kind:
            return []           # a valid message of the same kind (a duplicate id) keeps waiting
        self.pending[ident] = (REJECTED, kind, model, ts)
        return self._evict()

    def drain(self) -> list[dict | list]:
        """Every event still awaiting its pair, alone, oldest first; the store is left empty.
        For an input that has ended (a replayed file): no pair can come any more."""
        docs = [self._alone(ident, entry) for ident, entry in self.pending.items()
                if entry[0] != REJECTED]
        self.pending.clear()
        self.changed = True
        return docs

    @staticmethod
    def _alone(ident: str, entry: tuple[str, Any, str, float | None]) -> dict | list:
        """The document of an unpaired request (features) or response (predictions)."""
        kind, part, model, ts = entry
        return _doc(model, ident, ts, part, None) if kind == REQUEST else _doc(model, ident, ts, None, part)

    def _evict(self) -> list[dict | list]:
        """Unpaired events beyond the store's size are emitted alone (nothing is dropped);
        markers of rejected messages beyond it are forgotten."""
        docs = []
        while len(self.pending) > self.max_pending:
            ident, entry = self.pending.popitem(last=False)
            if entry[0] != REJECTED:
                self.evicted += 1
                docs.append(self._alone(ident, entry))
        return docs

    # -- Open Inference Protocol records
    def _oip(self, msg: Message) -> list[dict | list]:
        try:
            body = orjson.loads(msg.value)
        except orjson.JSONDecodeError as exc:
            raise AdapterError("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("model_name"), str):
            raise AdapterError("invalid_payload", "an OIP record needs model_name and inputs")
        model = body["model_name"]
        self._check_model(model)
        features = features_of({"inputs": body.get("inputs")}, self.columns.get(model))
        check_features(features, self.limits)
        preds = predictions_of({"outputs": body["outputs"]}) if body.get("outputs") else None
        params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        ts = params.get("ts")
        if ts is not None:
            try:
                ts = parse_ts(ts)
            except Exception:
                raise AdapterError("invalid_ts", "parameters.ts must be epoch seconds or RFC 3339") from None
        return [_doc(model, str(body.get("id", f"{msg.partition}-{msg.offset}")), ts, features, preds)]
