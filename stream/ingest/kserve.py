"""KServe InferenceLogger CloudEvents -> streamdrift events, requests paired with responses.

Binary mode: attributes in Kafka headers (``ce_type`` = ``org.kubeflow.serving.inference.request``
/ ``.response``, ``ce_id`` shared by a request and its response, ``ce_inferenceservicename`` =
the model, optional ``ce_time``), body = the payload. Structured mode (``content-type:
application/cloudevents+json``, or a JSON body with ``specversion``): the same attributes in
the body, payload in ``data`` (or ``data_base64``). Payloads: V1 ``{"instances": [...]}`` /
``{"predictions": [...]}`` or V2 (Open Inference Protocol) ``inputs`` / ``outputs``.

Requests and responses are paired by ``ce_id`` in a bounded store: features from the request
rows, prediction from the response. Whatever is evicted unpaired is emitted alone (nothing is
dropped), and the other half of a pair whose request or response was a dead letter goes on
alone at once (not after waiting in the store).
"""

from __future__ import annotations

import base64
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import orjson

from ..config import LimitSettings
from ..errors import Rejected, StateError
from ..types import Message
from .tensors import check_features, features_of, predictions_of, to_doc
from .values import parse_ts

REQUEST = "org.kubeflow.serving.inference.request"
RESPONSE = "org.kubeflow.serving.inference.response"
REJECTED = "streamdrift.rejected"   # pairing-store marker: this id's message of kind `part` was
                                    # a dead letter, so its other half goes on alone on arrival

Entry = tuple[str, Any, str, float | None]      # (ce type, features or predictions, model, time)
Docs = list[dict | list]


class KServeAdapter:
    """Pairs KServe request and response CloudEvents into events; owns the pairing store.

    Parameters
    ----------
    columns : model -> feature names of a single 2-D input tensor.
    limits : the event rules a request's features must keep.
    check_model : raises Rejected for a bad model name (shared with the other adapters).
    max_pending : events awaiting their pair, at most (older ones go on alone).
    """

    def __init__(self, columns: dict[str, tuple[str, ...]], limits: LimitSettings,
                 check_model: Callable[[str], None], max_pending: int = 100_000) -> None:
        self.columns = columns
        self.limits = limits
        self.check_model = check_model
        self.max_pending = max_pending
        self.pending: OrderedDict[str, Entry] = OrderedDict()
        self.evicted = 0
        self.changed = False            # pending changed since the last state_dict()

    def state_dict(self) -> dict:
        """The events awaiting their pair (JSON-able), for the changelog."""
        self.changed = False
        return {"version": 1, "evicted": self.evicted,
                "pending": [[ident, *entry] for ident, entry in self.pending.items()]}

    def load_state(self, state: Any) -> None:
        """Restore :meth:`state_dict` output; StateError when it is not one."""
        try:
            if state.get("version") != 1:
                raise ValueError(f"unknown version {state.get('version')!r}")
            self.pending = OrderedDict((str(ident), (kind, part, str(model), ts))
                                       for ident, kind, part, model, ts in state["pending"])
            self.evicted = int(state["evicted"])
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise StateError(f"adapter pairing state is unreadable: {exc}") from None
        self.changed = False

    def convert(self, msg: Message) -> tuple[Docs, Rejected | None]:
        """The documents this message lets go on (a pair completed, events evicted or released
        by a rejection), and its rejection if it is a dead letter."""
        try:
            kind, ident, model, ts, part = self._parse(msg)
        except _RejectedWithPair as exc:
            return self._rejected(*exc.pair), exc.rejection
        except Rejected as exc:
            return [], exc
        self.changed = True
        other = self.pending.pop(ident, None)
        if other is not None and other[0] == REJECTED:
            if other[1] != kind:        # the other half was a dead letter: this one goes alone
                return [self._alone(ident, (kind, part, model, ts))] + self._evict(), None
            other = None                # the same kind again (a retry): a fresh start
        if other is None:
            self.pending[ident] = (kind, part, model, ts)
            return self._evict(), None
        if other[0] == kind:
            self.pending[ident] = (kind, part, model, ts)    # a duplicate: keep the newer
            return [], Rejected("duplicate_ce_id", f"two {kind} events with id {ident!r}")
        features, preds = (part, other[1]) if kind == REQUEST else (other[1], part)
        req_ts = ts if kind == REQUEST else other[3]
        try:
            doc = to_doc(model, ident, req_ts if req_ts is not None else ts, features, preds)
        except Rejected as exc:        # rows and predictions do not match: this message is the
            return [self._alone(ident, other)] + self._evict(), exc  # dead letter, the other goes on
        return [doc] + self._evict(), None

    def _parse(self, msg: Message) -> tuple[str, str, str, float | None, Any]:
        """(ce type, id, model, time, features or predictions) of one CloudEvent."""
        headers = {k: (v.decode(errors="replace") if isinstance(v, bytes) else str(v))
                   for k, v in msg.headers} if msg.headers else {}
        try:
            body = orjson.loads(msg.value)
        except orjson.JSONDecodeError as exc:
            raise Rejected("invalid_json", f"not JSON: {exc}") from None
        if "ce_type" in headers:                                    # binary mode
            attrs: dict = {k[3:]: v for k, v in headers.items() if k.startswith("ce_")}
            payload = body
        elif isinstance(body, dict) and "specversion" in body:      # structured mode
            attrs = body                          # (only attributes are read from it)
            payload = body.get("data")
            if payload is None and isinstance(body.get("data_base64"), str):
                try:
                    payload = orjson.loads(base64.b64decode(body["data_base64"]))
                except ValueError:          # (binascii.Error and JSONDecodeError are ValueErrors)
                    raise Rejected("invalid_payload", "data_base64 is not base64 JSON") from None
        else:
            raise Rejected("not_cloudevent", "no ce_type header and no structured CloudEvent")
        kind, ident = attrs.get("type"), attrs.get("id")
        model = attrs.get("inferenceservicename") or str(attrs.get("source", "")).rstrip("/").split("/")[-1]
        if kind not in (REQUEST, RESPONSE):
            raise Rejected("unknown_ce_type", f"ce type {kind!r} is neither request nor response")
        if not ident or not model:
            raise Rejected("invalid_cloudevent", "a CloudEvent needs an id and a model name")
        self.check_model(model)
        ident = str(ident)
        ts = None
        try:
            if attrs.get("time"):
                try:
                    ts = parse_ts(attrs["time"])
                except Rejected:
                    raise Rejected("invalid_ts", f"time {attrs['time']!r} is not RFC 3339") from None
            if kind == REQUEST:
                part = features_of(payload, self.columns.get(model))
                check_features(part, self.limits)
            else:
                part = predictions_of(payload)
        except Rejected as exc:
            raise _RejectedWithPair(exc, (kind, ident, model, ts)) from None
        return kind, ident, model, ts, part

    def _rejected(self, kind: str, ident: str, model: str, ts: float | None) -> Docs:
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

    def drain(self) -> Docs:
        """Every event still awaiting its pair, alone, oldest first; the store is left empty.
        For an input that has ended (a replayed file): no pair can come any more."""
        docs = [self._alone(ident, entry) for ident, entry in self.pending.items()
                if entry[0] != REJECTED]
        self.pending.clear()
        self.changed = True
        return docs

    @staticmethod
    def _alone(ident: str, entry: Entry) -> dict | list:
        """The document of an unpaired request (features) or response (predictions)."""
        kind, part, model, ts = entry
        features, preds = (part, None) if kind == REQUEST else (None, part)
        return to_doc(model, ident, ts, features, preds)

    def _evict(self) -> Docs:
        """Unpaired events beyond the store's size are emitted alone (nothing is dropped);
        markers of rejected messages beyond it are forgotten."""
        docs = []
        while len(self.pending) > self.max_pending:
            ident, entry = self.pending.popitem(last=False)
            if entry[0] != REJECTED:
                self.evicted += 1
                docs.append(self._alone(ident, entry))
        return docs


class _RejectedWithPair(Exception):
    """A rejection of a message whose pair id is known (its other half must be released)."""

    def __init__(self, rejection: Rejected, pair: tuple[str, str, str, float | None]) -> None:
        super().__init__(rejection.detail)
        self.rejection, self.pair = rejection, pair
