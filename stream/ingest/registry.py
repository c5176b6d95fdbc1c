"""Schema Registry records -> streamdrift events, for the formats that use one (Avro, Protobuf).

A message in the Confluent wire format is the magic byte 0, the writer schema's id (4 bytes,
big-endian) and the record (Protobuf: after the index of its message type). The schema is
fetched once per id from a Confluent-compatible Schema Registry (``GET /schemas/ids/<id>``:
Confluent's, or Apicurio's ``/apis/ccompat/v7``) and cached for the life of the process; a
decoded record is mapped to an event by the ``[registry]`` field names: model (or a fixed
``registry.model``), id, ts, features (a map or record; without that field every other field
is a feature) and prediction. A registry that cannot be reached is not the message's fault:
:class:`RegistryUnavailable` stops the batch (nothing is committed; the service exits and is
restarted, and reads it again).
"""

from __future__ import annotations

import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import orjson

from ..config import LimitSettings, RegistrySettings
from ..errors import Rejected, StreamdriftError
from ..types import Message
from .tensors import check_features
from .values import parse_ts


class RegistryUnavailable(StreamdriftError):
    """The Schema Registry did not answer (not the message's fault)."""


class SchemaRegistry:
    """Schemas by id from a Confluent-compatible registry, cached (ids are immutable)."""

    _shared: dict[str, SchemaRegistry] = {}
    _lock = threading.Lock()

    def __init__(self, url: str, timeout_s: float) -> None:
        self.url, self.timeout_s = url.rstrip("/"), timeout_s
        self.schemas: dict[int, tuple[str, str]] = {}     # id -> (schemaType, schema text)
        self.unknown: set[int] = set()

    @classmethod
    def shared(cls, url: str, timeout_s: float) -> SchemaRegistry:
        """One client (and cache) per registry URL in the process (every partition's pipeline)."""
        with cls._lock:
            if url not in cls._shared:
                cls._shared[url] = cls(url, timeout_s)
            return cls._shared[url]

    def schema(self, schema_id: int) -> tuple[str, str] | None:
        """(schemaType, schema) of an id; None when the registry does not know it."""
        if schema_id in self.schemas:
            return self.schemas[schema_id]
        if schema_id in self.unknown:
            return None
        try:
            with urllib.request.urlopen(f"{self.url}/schemas/ids/{schema_id}", timeout=self.timeout_s) as r:
                body = orjson.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                self.unknown.add(schema_id)
                return None
            raise RegistryUnavailable(f"schema registry {self.url}: HTTP {exc.code} for schema id "
                                      f"{schema_id}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise RegistryUnavailable(f"schema registry {self.url} unreachable: {exc}") from None
        found = (str(body.get("schemaType", "AVRO")), str(body.get("schema", "")))
        self.schemas[schema_id] = found
        return found


def plain(v: Any) -> Any:
    """A record's logical values as event values (numbers, strings)."""
    if isinstance(v, datetime):
        return v.timestamp()
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return v


def schema_id(value: bytes) -> int:
    """The schema id of a Confluent-framed message, or Rejected("invalid_frame")."""
    if len(value) < 5 or value[0] != 0:
        raise Rejected("invalid_frame", "not the Confluent wire format (magic byte 0, a 4-byte "
                       "schema id, the record)")
    return struct.unpack_from(">I", value, 1)[0]


class RecordMapper:
    """Decoded records (dicts of plain values) -> events, by the ``[registry]`` field names.

    Parameters
    ----------
    fields : the ``[registry]`` table.
    limits : the event rules a record's features must keep.
    check_model : raises Rejected for a bad model name (shared with the other adapters).
    """

    def __init__(self, fields: RegistrySettings, limits: LimitSettings,
                 check_model: Callable[[str], None]) -> None:
        self.fields, self.limits, self.check_model = fields, limits, check_model

    def event(self, record: dict, msg: Message) -> dict:
        f = self.fields
        model = record.get(f.model_field) or f.model
        if not isinstance(model, str) or not model:
            raise Rejected("invalid_model", f"no model: field {f.model_field!r} is missing and "
                           "registry.model is not set")
        self.check_model(model)
        taken = {f.model_field, f.id_field, f.ts_field, f.features_field, f.prediction_field}
        raw = record.get(f.features_field)
        if isinstance(raw, dict):
            features = {str(k): plain(x) for k, x in raw.items()}
        else:
            features = {k: plain(x) for k, x in record.items() if k not in taken}
        check_features({k: [x] for k, x in features.items()}, self.limits)
        event: dict[str, Any] = {"model": model, "features": features,
                                 "id": str(record.get(f.id_field) or f"{msg.partition}-{msg.offset}")}
        ts = record.get(f.ts_field)
        if ts is not None:
            ts = plain(ts)
            if isinstance(ts, (int, float)) and ts > 1e11:      # (epoch milliseconds)
                ts = ts / 1000.0
            event["ts"] = parse_ts(ts)
        elif msg.timestamp > 0:
            event["ts"] = msg.timestamp
        pred = record.get(f.prediction_field)
        if pred is not None:
            event["prediction"] = plain(pred)
        return event


class RegistryAdapter:
    """What the adapters of registry formats share: the schema cache and the record mapping.
    A subclass names its schema type (``KIND``) and decodes a message in ``_doc``, keeping
    what it builds from a schema in ``cache``.

    Parameters
    ----------
    registry : the ``[registry]`` table: URL, timeout and the record's field names.
    limits : the event rules a record's features must keep.
    check_model : raises Rejected for a bad model name (shared with the other adapters).
    """

    KIND = ""

    def __init__(self, registry: RegistrySettings, limits: LimitSettings,
                 check_model: Callable[[str], None]) -> None:
        self.records = RecordMapper(registry, limits, check_model)
        self.registry = SchemaRegistry.shared(registry.url, registry.timeout_s) if registry.url else None
        self.cache: dict[Any, Any] = {}     # what a subclass derives from a schema, by its key

    def convert(self, msg: Message) -> tuple[list[dict | list], Rejected | None]:
        try:
            return [self._doc(msg)], None
        except Rejected as exc:
            return [], exc

    def _doc(self, msg: Message) -> dict:
        raise NotImplementedError

    def schema_text(self, sid: int) -> str:
        """The text of schema ``sid``, which must be of this adapter's kind."""
        if self.registry is None:
            raise RegistryUnavailable(f"format {self.KIND.lower()} needs registry.url")
        found = self.registry.schema(sid)
        if found is None:
            raise Rejected("unknown_schema", f"schema id {sid} is not in the registry")
        kind, text = found
        if kind.upper() != self.KIND:
            raise Rejected(f"not_{self.KIND.lower()}_schema", f"schema id {sid} is {kind}, not {self.KIND}")
        return text
