"""Open Inference Protocol tensors and KServe V1 payloads -> feature columns and predictions.

Tensors ``{"name", "shape", "datatype", "data"}`` are flattened row-major and split into
``shape[0]`` rows. One tensor per column (pandas content type) names the features; a single
2-D tensor takes ``[models.<name>] columns`` from the config (else ``f0``, ``f1``, ...).
Shared by the adapters (kserve, oip); every problem is a :class:`~stream.errors.Rejected`.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import chain
from typing import Any

from ..config import LimitSettings
from ..errors import Rejected
from .values import classify_value

_SCALARS = {int, float, str, bool, type(None)}     # feature values an event may carry


def _tensor_rows(t: Any) -> tuple[str, list[list[Any]]]:
    """One OIP tensor -> (name, rows); each row a list of its values (row-major)."""
    if not isinstance(t, dict) or not isinstance(t.get("shape"), list) or not isinstance(t.get("data"), list):
        raise Rejected("invalid_tensor", "a tensor needs name, shape, datatype and data")
    shape, data = t["shape"], t["data"]
    if not shape or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise Rejected("invalid_tensor", f"tensor {t.get('name')!r}: bad shape {shape!r}")
    while data and isinstance(data[0], list):          # nested data: flatten row-major
        data = [v for row in data for v in row]
    if len(data) != math.prod(shape):
        raise Rejected("invalid_tensor",
                           f"tensor {t.get('name')!r}: {len(data)} values for shape {shape}")
    n = shape[0]
    k = math.prod(shape[1:]) if len(shape) > 1 else 1
    return str(t.get("name", "")), [data[i * k:(i + 1) * k] for i in range(n)]


@lru_cache(maxsize=256)
def _default_names(width: int) -> tuple[str, ...]:
    return tuple(f"f{i}" for i in range(width))


def _columns_from_rows(rows: list, names: tuple[str, ...] | None) -> dict[str, list]:
    if not rows:
        raise Rejected("invalid_payload", "no rows")
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
        raise Rejected("invalid_payload", "the request payload must be a JSON object")
    if isinstance(payload.get("instances"), list):
        return _columns_from_rows(payload["instances"], names)
    if isinstance(payload.get("inputs"), list) and payload["inputs"]:
        tensors = [_tensor_rows(t) for t in payload["inputs"]]
        if len(tensors) == 1:
            return _columns_from_rows(tensors[0][1], names)
        n = {len(rows) for _, rows in tensors}
        if len(n) != 1:
            raise Rejected("invalid_tensor", "input tensors have different numbers of rows")
        cols = {}
        for name, rows in tensors:
            if any(len(r) != 1 for r in rows):
                raise Rejected("invalid_tensor", f"tensor {name!r}: one column per tensor expected")
            cols[name or f"f{len(cols)}"] = [r[0] for r in rows]
        return cols
    raise Rejected("invalid_payload", "a request needs 'instances' or 'inputs'")


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
        raise Rejected("invalid_payload", "the response payload must be a JSON object")
    if isinstance(payload.get("predictions"), list):
        return [_prediction(p) for p in payload["predictions"]]
    if isinstance(payload.get("outputs"), list) and payload["outputs"]:
        _, rows = _tensor_rows(payload["outputs"][0])
        return [_prediction(r) for r in rows]
    raise Rejected("invalid_payload", "a response needs 'predictions' or 'outputs'")


def to_doc(model: str, ident: str, ts: float | None, features: dict | None,
           preds: list | None, version: str | None = None) -> dict | list:
    """A columnar document (rows with features), or row events for predictions alone;
    ``version``: the model version (OIP's ``model_version``), if known."""
    extra: dict[str, Any] = {"model_version": version} if isinstance(version, str) and version else {}
    if not features:
        return [{"model": model, "id": f"{ident}-{i}", "features": {}, "prediction": p,
                 **({"ts": ts} if ts is not None else {}), **extra} for i, p in enumerate(preds or [])]
    n = len(next(iter(features.values())))
    if n == 1:                                  # one row (the common request): a plain event
        event: dict[str, Any] = {"model": model, "id": f"{ident}-0",
                                 "features": {k: v[0] for k, v in features.items()}}
        if preds is not None:
            if len(preds) != 1:
                raise Rejected("row_mismatch", f"1 request row but {len(preds)} predictions")
            event["prediction"] = preds[0]
        if ts is not None:
            event["ts"] = ts
        return event | extra
    doc: dict[str, Any] = {"model": model, "id": [f"{ident}-{i}" for i in range(n)], "features": features}
    if preds is not None:
        if len(preds) != n:
            raise Rejected("row_mismatch", f"{n} request rows but {len(preds)} predictions")
        doc["prediction"] = preds
    if ts is not None:
        doc["ts"] = ts
    return doc | extra


def check_features(features: dict[str, list], limits: LimitSettings) -> None:
    """The checks decoding makes of one event's features, for a request's columns: an
    Rejected names the first problem (the message is then dead-lettered as it is)."""
    if len(features) > limits.max_features_per_event:
        raise Rejected("too_many_features",
                           f"{len(features)} features > limit {limits.max_features_per_event}")
    if features and not 0 < min(map(len, features)) <= max(map(len, features)) <= limits.max_name_length:
        raise Rejected("invalid_name",
                           f"feature names must be 1..{limits.max_name_length} characters")
    if set(map(type, chain.from_iterable(features.values()))) <= _SCALARS:
        return                    # (parsed JSON numbers are always finite, ints within 64 bits)
    for name, values in features.items():
        for v in values:
            reason = classify_value(v)
            if reason is not None:
                raise Rejected(reason, f"feature {name!r}: {reason.replace('_', ' ')}")
