"""Seldon Core 2 topics -> streamdrift events: Open Inference Protocol protobuf messages.

Seldon Core 2 writes a model's inference requests to ``seldon.<namespace>.model.<name>.inputs``
and its responses to ``....outputs``: protobuf ``ModelInferRequest`` / ``ModelInferResponse``
of the Open Inference Protocol (KServe v2 gRPC). The model is the topic's ``<name>``; a request
and its response are paired by request id (the message's ``id``, else the Kafka key) in the
KServe adapter's bounded store. Tensors are read from their typed ``contents`` or from
``raw_input_contents`` / ``raw_output_contents`` (little-endian, by datatype; BYTES as 4-byte
length-prefixed strings), then go the OIP tensors' way (:mod:`stream.ingest.tensors`).

The wire format is decoded here (no protobuf runtime): field numbers as in the public
``grpc_predict_v2.proto``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..errors import Rejected
from ..types import Message
from .kserve import REQUEST, RESPONSE, KServeAdapter, _RejectedWithPair
from .tensors import check_features, features_of, predictions_of

# raw contents: OIP datatype -> numpy dtype (little-endian)
RAW_DTYPES = {"BOOL": "?", "UINT8": "u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
              "INT8": "i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
              "FP16": "<f2", "FP32": "<f4", "FP64": "<f8"}
# InferTensorContents: field number -> (name, decoding of a packed run)
CONTENTS = {1: "bool", 2: "int32", 3: "int64", 4: "uint32", 5: "uint64", 6: "fp32", 7: "fp64", 8: "bytes"}


def model_of_topic(topic: str) -> tuple[str, str] | None:
    """(model, "inputs" | "outputs") of a Seldon Core 2 model topic, else None."""
    parts = topic.split(".")
    if len(parts) >= 5 and parts[-3] == "model" and parts[-1] in ("inputs", "outputs"):
        return parts[-2], parts[-1]
    return None


def varint(buf: bytes, i: int, reason: str = "invalid_protobuf") -> tuple[int, int]:
    """The unsigned varint at ``i``: (value, position after it); Rejected(reason) if cut."""
    shift = result = 0
    while True:
        if i >= len(buf) or shift > 63:
            raise Rejected(reason, "a varint runs past the message")
        b = buf[i]
        result |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return result, i
        shift += 7


def fields(buf: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of a protobuf message: ints for varints and fixed
    widths (as raw bytes for 32/64-bit), bytes for length-delimited fields."""
    i, n = 0, len(buf)
    while i < n:
        key, i = varint(buf, i)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise Rejected("invalid_protobuf", "field number 0")
        if wire == 0:
            value, i = varint(buf, i)
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 2:
            size, i = varint(buf, i)
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise Rejected("invalid_protobuf", f"wire type {wire} (groups are not used by OIP)")
        if i > n:
            raise Rejected("invalid_protobuf", "a field runs past the message")
        yield number, wire, value


def _varints(blob: bytes) -> list[int]:
    out, i = [], 0
    while i < len(blob):
        v, i = varint(blob, i)
        out.append(v)
    return out


def _contents(buf: bytes) -> list:
    """InferTensorContents -> its values (one kind of contents is set)."""
    values: list = []
    for number, wire, v in fields(buf):
        kind = CONTENTS.get(number)
        if kind is None:
            continue
        if kind == "bytes":
            values.append(v.decode("utf-8", errors="replace"))
        elif kind in ("fp32", "fp64"):
            width, fmt = (4, "<f4") if kind == "fp32" else (8, "<f8")
            if wire == 2:
                if len(v) % width:
                    raise Rejected("invalid_protobuf", f"{kind} contents of {len(v)} bytes")
                values.extend(np.frombuffer(v, fmt).tolist())
            else:
                values.append(float(np.frombuffer(v, fmt)[0]))
        else:
            ints = _varints(v) if wire == 2 else [v]
            if kind in ("int32", "int64"):
                ints = [x - (1 << 64) if x >= 1 << 63 else x for x in ints]
            values.extend(bool(x) for x in ints) if kind == "bool" else values.extend(ints)
    return values


def _tensor(buf: bytes) -> dict[str, Any]:
    """InferInputTensor / InferOutputTensor -> {"name", "datatype", "shape", "data"}."""
    t: dict[str, Any] = {"name": "", "datatype": "", "shape": [], "data": []}
    for number, wire, v in fields(buf):
        if number == 1 and wire == 2:
            t["name"] = v.decode("utf-8", errors="replace")
        elif number == 2 and wire == 2:
            t["datatype"] = v.decode("utf-8", errors="replace")
        elif number == 3:
            dims = _varints(v) if wire == 2 else [v]
            t["shape"].extend(x - (1 << 64) if x >= 1 << 63 else x for x in dims)
        elif number == 5 and wire == 2:
            t["data"] = _contents(v)
    return t


def _raw(blob: bytes, datatype: str, name: str) -> list:
    """raw_*_contents of one tensor, by its datatype."""
    if datatype == "BYTES":
        out, i = [], 0
        while i < len(blob):
            if i + 4 > len(blob):
                raise Rejected("invalid_tensor", f"tensor {name!r}: truncated BYTES element")
            (size,) = struct.unpack_from("<I", blob, i)
            out.append(blob[i + 4:i + 4 + size].decode("utf-8", errors="replace"))
            i += 4 + size
        if i != len(blob):
            raise Rejected("invalid_tensor", f"tensor {name!r}: truncated BYTES element")
        return out
    dtype = RAW_DTYPES.get(datatype)
    if dtype is None:
        raise Rejected("invalid_tensor", f"tensor {name!r}: unknown datatype {datatype!r}")
    if len(blob) % np.dtype(dtype).itemsize:
        raise Rejected("invalid_tensor", f"tensor {name!r}: {len(blob)} raw bytes for {datatype}")
    return np.frombuffer(blob, dtype).tolist()


def decode(buf: bytes, kind: str) -> tuple[str, str, list[dict[str, Any]]]:
    """A ModelInferRequest (``kind`` "inputs") or ModelInferResponse ("outputs") ->
    (id, model_name, tensors with their data)."""
    tensor_field, raw_field = (5, 7) if kind == "inputs" else (5, 6)
    ident = model = ""
    tensors: list[dict[str, Any]] = []
    raw: list[bytes] = []
    for number, wire, v in fields(buf):
        if wire != 2:
            continue
        if number == 1:
            model = v.decode("utf-8", errors="replace")
        elif number == 3:
            ident = v.decode("utf-8", errors="replace")
        elif number == tensor_field:
            tensors.append(_tensor(v))
        elif number == raw_field:
            raw.append(v)
    if raw:
        if len(raw) != len(tensors):
            raise Rejected("invalid_tensor", f"{len(raw)} raw contents for {len(tensors)} tensors")
        for t, blob in zip(tensors, raw, strict=True):
            t["data"] = _raw(blob, t["datatype"], t["name"])
    return ident, model, tensors


class SeldonAdapter(KServeAdapter):
    """Pairs Seldon Core 2 requests (``.inputs`` topics) with responses (``.outputs``)."""

    def _parse(self, msg: Message) -> tuple[str, str, str, float | None, Any]:
        where = model_of_topic(msg.topic)
        if where is None:
            raise Rejected("not_seldon_topic",
                           f"topic {msg.topic!r} is not seldon.<ns>.model.<name>.inputs|outputs")
        model, side = where
        what = "ModelInferRequest" if side == "inputs" else "ModelInferResponse"
        try:
            ident, _, tensors = decode(msg.value, side)
        except (struct.error, ValueError) as exc:
            raise Rejected("invalid_protobuf", f"not a {what}: {exc}") from None
        if not ident and msg.key:
            ident = msg.key.decode("utf-8", errors="replace")
        if not ident:
            raise Rejected("invalid_payload", "no request id (neither the message's id nor a Kafka key)")
        if not tensors:
            raise Rejected("invalid_payload", f"a {what} without tensors")
        self.check_model(model)
        kind = REQUEST if side == "inputs" else RESPONSE
        ts = msg.timestamp if msg.timestamp > 0 else None
        try:
            if kind == REQUEST:
                part = features_of({"inputs": tensors}, self.columns.get(model))
                check_features(part, self.limits)
            else:
                part = predictions_of({"outputs": tensors})
        except Rejected as exc:
            raise _RejectedWithPair(exc, (kind, ident, model, ts)) from None
        return kind, ident, model, ts, part
