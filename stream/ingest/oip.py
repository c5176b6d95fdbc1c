"""Open Inference Protocol (V2) JSON records -> streamdrift events.

A record ``{"model_name", "inputs": [...], "outputs": [...], "id"?, "parameters": {"ts"?}}``
is one message; its rows become events (features from the inputs, predictions from the
outputs). Stateless: a record holds both halves.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ..config import LimitSettings
from ..errors import Rejected
from ..types import Message
from .tensors import check_features, features_of, predictions_of, to_doc
from .values import parse_ts


class OIPAdapter:
    """Converts OIP records; ``check_model`` raises Rejected for a bad model name."""

    def __init__(self, columns: dict[str, tuple[str, ...]], limits: LimitSettings,
                 check_model: Callable[[str], None]) -> None:
        self.columns = columns
        self.limits = limits
        self.check_model = check_model

    def convert(self, msg: Message) -> tuple[list[dict | list], Rejected | None]:
        try:
            return [self._doc(msg)], None
        except Rejected as exc:
            return [], exc

    def _doc(self, msg: Message) -> dict | list:
        try:
            body = orjson.loads(msg.value)
        except orjson.JSONDecodeError as exc:
            raise Rejected("invalid_json", f"not JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("model_name"), str):
            raise Rejected("invalid_payload", "an OIP record needs model_name and inputs")
        model = body["model_name"]
        self.check_model(model)
        features = features_of({"inputs": body.get("inputs")}, self.columns.get(model))
        check_features(features, self.limits)
        preds = predictions_of({"outputs": body["outputs"]}) if body.get("outputs") else None
        params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
        ts = params.get("ts")
        if ts is not None:
            try:
                ts = parse_ts(ts)
            except Rejected:
                raise Rejected("invalid_ts", "parameters.ts must be epoch seconds or RFC 3339") from None
        return to_doc(model, str(body.get("id", f"{msg.partition}-{msg.offset}")), ts, features, preds,
                      body.get("model_version"))
