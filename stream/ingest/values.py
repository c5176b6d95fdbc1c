"""Rules for single values that every input format shares: event times, feature values,
model names. Each rule raises :class:`~stream.errors.Rejected` naming the dead-letter reason."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

from ..config import LimitSettings
from ..errors import Rejected
from ..types import MODEL_RE, event_time

# an integer a typed decode accepts: int64 (orjson reads integers up to 2**64 - 1; those
# beyond int64 go the JSON way)
INT64 = Annotated[int, msgspec.Meta(ge=-(1 << 63), le=(1 << 63) - 1)]


def parse_ts(value: Any) -> float:
    """Event time as epoch seconds (years 1-9999) from a number or an RFC 3339 string."""
    try:
        return event_time(value)
    except ValueError as exc:
        raise Rejected("invalid_ts", str(exc)) from None


def classify_value(v: Any) -> str | None:
    """None if v is an acceptable feature value, else the dead-letter reason."""
    if v is None or isinstance(v, (bool, str)):
        return None
    if isinstance(v, (int, float)):
        try:
            f = float(v)
        except OverflowError:
            return "non_finite_value"
        return None if f == f and abs(f) != float("inf") else "non_finite_value"
    return "nested_value"


def check_model(model: Any, limits: LimitSettings) -> str:
    """The model name, if it is one (a string of 1..max_name_length [A-Za-z0-9._:-])."""
    if not isinstance(model, str) or not MODEL_RE.match(model) or len(model) > limits.max_name_length:
        shown = f"{model[:40]!r}" if isinstance(model, str) else "model"
        raise Rejected("invalid_model", f"{shown}: must be a string of 1..{limits.max_name_length} "
                       "characters [A-Za-z0-9._:-]")
    return model
