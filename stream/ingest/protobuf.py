"""Protobuf records in the Confluent wire format -> streamdrift events.

A message is the magic byte 0, the writer schema's id (4 bytes, big-endian), the index path of
its message type in the schema (zigzag varints: a count then the indexes; the single byte 0
for the first message type) and the Protobuf record. The schema is a .proto file's text from
the Schema Registry, compiled once per id with protoc (grpcio-tools' bundled one, the
``protobuf`` extra; the well-known types can be imported, other schema references cannot).
A record becomes a dict of plain values and is mapped to an event as
:mod:`stream.ingest.registry` says: every field is read (a proto3 field without presence
holds its default, 0 or "", when unset: a feature of value 0 is a 0), except that an unset
time (0) takes the message's timestamp; ``optional`` fields, wrappers and messages are None
(a missing value) when unset; a ``google.protobuf.Timestamp`` is epoch seconds, an enum its
name.

Bad frames, unknown schema ids, schemas that do not compile and records that do not decode
are dead letters with reasons (``invalid_frame``, ``unknown_schema``, ``not_protobuf_schema``,
``invalid_schema``, ``invalid_protobuf``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

from ..errors import Rejected
from ..types import Message
from .registry import RegistryAdapter, schema_id
from .seldon import varint

_WRAPPERS = {f"google.protobuf.{t}Value" for t in ("Double", "Float", "Int64", "UInt64", "Int32",
                                                    "UInt32", "Bool", "String", "Bytes")}


def _zigzag(buf: bytes, at: int) -> tuple[int, int]:
    """A zigzag-encoded varint at ``at``: (value, position after it)."""
    raw, at = varint(buf, at, "invalid_frame")
    return (raw >> 1) ^ -(raw & 1), at


def message_path(value: bytes) -> tuple[list[int], int]:
    """The message-type index path after the schema id, and where the record starts."""
    count, at = _zigzag(value, 5)
    if count == 0:
        return [0], at                     # (the first message type of the schema)
    if count < 0 or count > 32:
        raise Rejected("invalid_frame", f"message-type index of {count} levels")
    path = []
    for _ in range(count):
        i, at = _zigzag(value, at)
        if i < 0:
            raise Rejected("invalid_frame", "a negative message-type index")
        path.append(i)
    return path, at


def _compile(text: str) -> bytes:
    """A .proto file's text -> its serialized FileDescriptorSet (with its imports); Rejected
    when protoc refuses it."""
    import grpc_tools

    include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = os.path.join(tmp, "schema.proto"), os.path.join(tmp, "schema.desc")
        with open(src, "w", encoding="utf-8") as fh:
            fh.write(text)
        # (protoc as a child process: its errors go to its stderr, not to the service's)
        done = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp}", f"-I{include}",
                               "--include_imports", f"--descriptor_set_out={out}", src],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise Rejected("invalid_schema", (done.stderr.strip() or "protoc failed")[:500])
        with open(out, "rb") as fh:
            return fh.read()


class ProtobufAdapter(RegistryAdapter):
    """Decodes Confluent-framed Protobuf records into events (parameters: :class:`RegistryAdapter`).
    Its cache holds each schema's message types (by id) and message classes (by id and path)."""

    KIND = "PROTOBUF"

    def _file(self, sid: int) -> Any:
        from google.protobuf import descriptor_pb2, descriptor_pool  # (the protobuf extra)

        found = self.cache.get(sid)
        if found is None:
            files = descriptor_pb2.FileDescriptorSet.FromString(_compile(self.schema_text(sid)))
            pool = descriptor_pool.DescriptorPool()       # (one per schema: names may repeat)
            for proto in files.file:
                pool.Add(proto)
            main = files.file[-1]                          # (protoc lists the imports first)
            prefix = f"{main.package}." if main.package else ""
            found = [pool.FindMessageTypeByName(prefix + m.name) for m in main.message_type]
            self.cache[sid] = found
        return found

    def _class(self, sid: int, path: list[int]) -> Any:
        from google.protobuf import message_factory

        key = (sid, tuple(path))
        cls = self.cache.get(key)
        if cls is None:
            types = self._file(sid)
            desc = None
            for i in path:
                if i >= len(types):
                    raise Rejected("invalid_frame", f"schema {sid} has no message type at index path {path}")
                desc = types[i]
                # (the types declared in the schema: a map field's entry type is not one)
                types = [t for t in desc.nested_types if not t.GetOptions().map_entry]
            cls = self.cache[key] = message_factory.GetMessageClass(desc)
        return cls

    def _doc(self, msg: Message) -> dict:
        from google.protobuf.message import DecodeError

        v = msg.value
        sid = schema_id(v)
        path, start = message_path(v)
        cls = self._class(sid, path)
        try:
            record = cls.FromString(v[start:])
        except (DecodeError, RuntimeError, ValueError) as exc:
            raise Rejected("invalid_protobuf", f"not a record of schema {sid}: {exc}") from None
        doc = _plain_message(record)
        ts = self.records.fields.ts_field
        if doc.get(ts) == 0 and not _has_presence(record, ts):
            doc[ts] = None                          # (proto3: an unset time reads 0)
        return self.records.event(doc, msg)


def _has_presence(record: Any, name: str) -> bool:
    field = record.DESCRIPTOR.fields_by_name.get(name)
    return field is not None and field.has_presence


def _plain_message(record: Any) -> dict[str, Any]:
    """Every field of a record as plain values (see the module's docstring)."""
    return {f.name: _plain_field(record, f) for f in record.DESCRIPTOR.fields}


def _plain_field(record: Any, f: Any) -> Any:
    value = getattr(record, f.name)
    message = f.message_type
    if message is not None and message.GetOptions().map_entry:
        inner = message.fields_by_name["value"]
        return {str(k): _plain_value(v, inner) for k, v in value.items()}
    if _repeated(f):
        return [_plain_value(v, f) for v in value]
    if f.has_presence and not record.HasField(f.name):
        return None
    return _plain_value(value, f)


def _repeated(f: Any) -> bool:
    flag = getattr(f, "is_repeated", None)          # (protobuf >= 6.31; before it, the label)
    return bool(flag) if flag is not None else f.label == 3


def _plain_value(value: Any, f: Any) -> Any:
    message = f.message_type
    if message is not None:
        name = message.full_name
        if name == "google.protobuf.Timestamp":
            return value.seconds + value.nanos / 1e9
        if name in _WRAPPERS:
            return _plain_value(value.value, message.fields_by_name["value"])
        return _plain_message(value)
    if f.enum_type is not None:
        known = f.enum_type.values_by_number.get(value)
        return known.name if known is not None else value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
