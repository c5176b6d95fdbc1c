"""Control messages: operators' requests on the control topic (``kafka.control_topic``).

``{"action": "rebaseline", "model": "m", "signal": "feature:age"?, "at": TIME?, "id": "..."}``:
the signal (or every signal of the model) learns a new reference from its next values (or from
event time ``at``, epoch seconds or RFC 3339). The topic is compacted with key ``model`` or
``model/signal``, so it keeps each target's latest request; ``id`` makes a request apply once.
"""

from __future__ import annotations

import time
import uuid

import orjson

from ..config import LimitSettings
from ..errors import Rejected
from ..types import Message, Rebaseline
from .values import check_model, parse_ts


def decode_control(msg: Message, limits: LimitSettings) -> Rebaseline:
    """One control message, or Rejected naming why not."""
    try:
        doc = orjson.loads(msg.value)
    except orjson.JSONDecodeError as exc:
        raise Rejected("invalid_json", f"not JSON: {exc}") from None
    if type(doc) is not dict:
        raise Rejected("not_object", "a control message must be a JSON object")
    if doc.get("action") != "rebaseline":
        raise Rejected("unknown_action", f"action {doc.get('action')!r} (known: rebaseline)")
    model = check_model(doc.get("model"), limits)
    signal = doc.get("signal") or ""
    if not isinstance(signal, str):
        raise Rejected("invalid_signal", "signal must be a string")
    at = float("nan") if doc.get("at") is None else parse_ts(doc["at"])
    ident = doc.get("id")
    if not isinstance(ident, str) or not ident:
        ident = f"{msg.topic}:{msg.partition}:{msg.offset}"
    return Rebaseline(model, signal, at, ident)


def encode_control(req: Rebaseline) -> tuple[bytes, bytes]:
    """(key, value) of a control message for ``req`` (a fresh id unless it has one)."""
    doc = {"action": "rebaseline", "model": req.model, "id": req.id or uuid.uuid4().hex,
           "requested_at": time.time()}
    if req.signal:
        doc["signal"] = req.signal
    if req.at == req.at:
        doc["at"] = req.at
    key = req.model + (f"/{req.signal}" if req.signal else "")
    return key.encode(), orjson.dumps(doc)


def parse_request(text: str) -> Rebaseline:
    """``MODEL[/SIGNAL][@TIME]`` (a command-line flag) -> a request; ValueError if malformed.
    The id is the text itself: the same flag applies once."""
    target, at_text = (text.rsplit("@", 1) + [""])[:2] if "@" in text else (text, "")
    model, _, signal = target.partition("/")
    limits = LimitSettings()
    try:
        check_model(model, limits)
        at = parse_ts(float(at_text) if at_text.replace(".", "", 1).lstrip("-").isdigit() else at_text) \
            if at_text else float("nan")
    except Rejected as exc:
        raise ValueError(exc.detail) from None
    return Rebaseline(model, signal, at, f"flag:{text}")
