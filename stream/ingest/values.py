"""Rules for single values that every input format shares: event times, feature values,
model names. Each rule raises :class:`~stream.errors.Rejected` naming the dead-letter reason."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..config import LimitSettings
from ..errors import Rejected
from ..types import MODEL_RE, ts_out_of_range


def parse_ts(value: Any) -> float:
    """Event time as epoch seconds (years 1-9999) from a number or an RFC 3339 string."""
    if isinstance(value, bool):
        raise Rejected("invalid_ts", "ts must be a number or an RFC 3339 string")
    if isinstance(value, (int, float)):
        try:
            value = float(value)
        except OverflowError:               # an integer beyond any float
            raise Rejected("invalid_ts", "ts is out of range") from None
        why = ts_out_of_range(value)
        if why is not None:
            raise Rejected("invalid_ts", why)
        return value
    if isinstance(value, str):
        try:
            text = value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise Rejected("invalid_ts", f"ts {value[:40]!r} is not RFC 3339") from None
        if dt.tzinfo is None:
            raise Rejected("invalid_ts", f"ts {value[:40]!r} has no time zone offset")
        return dt.timestamp()
    raise Rejected("invalid_ts", "ts must be a number or an RFC 3339 string")


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
