"""Avro records in the Confluent wire format -> streamdrift events.

A message is the magic byte 0, the writer schema's id (4 bytes, big-endian) and the Avro
binary record; the schema comes from the Schema Registry and the record is mapped to an event
as :mod:`stream.ingest.registry` says, decoded with fastavro.

Bad frames, unknown schema ids and records that do not decode are dead letters with reasons
(``invalid_frame``, ``unknown_schema``, ``not_avro_schema``, ``invalid_avro``).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from typing import Any

import orjson

from ..config import LimitSettings, RegistrySettings
from ..errors import Rejected
from ..types import Message
from .registry import RegistryAdapter, schema_id


class AvroAdapter(RegistryAdapter):
    """Decodes Confluent-framed Avro records into events (stateless but for the schema cache).

    Parameters
    ----------
    registry : the ``[registry]`` table: URL, timeout and the record's field names.
    limits : the event rules a record's features must keep.
    check_model : raises Rejected for a bad model name (shared with the other adapters).
    """

    KIND = "AVRO"

    def __init__(self, registry: RegistrySettings, limits: LimitSettings,
                 check_model: Callable[[str], None]) -> None:
        super().__init__(registry, limits, check_model)
        self._parsed: dict[int, Any] = {}

    def _reader(self, sid: int) -> Any:
        import fastavro  # (the avro extra; checked at start)

        parsed = self._parsed.get(sid)
        if parsed is None:
            try:
                parsed = fastavro.parse_schema(orjson.loads(self.schema_text(sid)))
            except (fastavro.schema.SchemaParseException, ValueError, TypeError) as exc:  # JSON: ValueError
                raise Rejected("invalid_schema", f"schema id {sid}: {exc}") from None
            self._parsed[sid] = parsed
        return parsed

    def _doc(self, msg: Message) -> dict:
        import fastavro

        v = msg.value
        sid = schema_id(v)
        schema = self._reader(sid)
        buf = io.BytesIO(v[5:])
        try:
            record = fastavro.schemaless_reader(buf, schema, None)
        except (EOFError, ValueError, TypeError, IndexError, UnicodeDecodeError, struct.error) as exc:
            raise Rejected("invalid_avro", f"not a record of schema {sid}: {exc!r}") from None
        if buf.tell() != len(v) - 5:
            raise Rejected("invalid_avro", f"{len(v) - 5 - buf.tell()} bytes after a record of schema {sid}")
        if not isinstance(record, dict):
            raise Rejected("invalid_avro", f"schema {sid} is not a record schema")
        return self.records.event(record, msg)
