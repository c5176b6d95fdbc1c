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
from typing import Any

import orjson

from ..errors import Rejected
from ..types import Message
from .registry import RegistryAdapter, schema_id


class AvroAdapter(RegistryAdapter):
    """Decodes Confluent-framed Avro records into events (parameters: :class:`RegistryAdapter`)."""

    KIND = "AVRO"

    def _reader(self, sid: int) -> Any:
        import fastavro  # (the avro extra; checked at start)

        parsed = self.cache.get(sid)
        if parsed is None:
            try:
                parsed = fastavro.parse_schema(orjson.loads(self.schema_text(sid)))
            except (fastavro.schema.SchemaParseException, ValueError, TypeError) as exc:  # JSON: ValueError
                raise Rejected("invalid_schema", f"schema id {sid}: {exc}") from None
            self.cache[sid] = parsed
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
