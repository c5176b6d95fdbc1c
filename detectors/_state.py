"""Versioned, checksummed serialization of detector state.

Layout of a blob (all integers little-endian)::

    magic   b"SDDS"                      4 bytes
    version u16                          format version (FORMAT_VERSION)
    kind    u8 length + ASCII            detector class name, e.g. "ADWIN"
    header  u32 length + JSON (UTF-8)    parameters, scalars and array descriptors
    arrays  raw little-endian bytes      in the order the header lists them
    crc32   u32                          of everything before it

Corrupt, truncated or foreign bytes raise :class:`StateError` with the reason.
The format holds numbers and strings only: loading never evaluates anything.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")

MAGIC = b"SDDS"
FORMAT_VERSION = 1
_ALLOWED_DTYPES = {"<f8", "<f4", "<i8", "|b1", "|u1"}
_MAX_HEADER = 16 * 1024 * 1024


class StateError(ValueError):
    """Raised when bytes do not hold a valid, compatible detector state."""


def pack(kind: str, header: dict[str, Any], arrays: dict[str, np.ndarray],
         dumps: Callable[[Any], bytes] | None = None) -> bytes:
    """Serialize `header` (JSON-able) and named numpy `arrays` under detector `kind`.
    ``dumps``: another JSON encoder of the header (to bytes), for a caller whose header holds
    no NaN or infinity; by default the standard library's, which writes them as NaN and
    Infinity."""
    specs = []
    payload = []
    for name, arr in arrays.items():
        a = np.ascontiguousarray(arr)
        dtype = a.dtype.newbyteorder("<") if a.dtype.byteorder not in ("|", "<") else a.dtype
        a = a.astype(dtype, copy=False)
        if a.dtype.str not in _ALLOWED_DTYPES:
            raise TypeError(f"array {name!r}: dtype {a.dtype} is not serializable")
        specs.append({"name": name, "dtype": a.dtype.str, "shape": list(a.shape)})
        payload.append(a.tobytes())
    meta = {"header": header, "arrays": specs}
    head = json.dumps(meta, allow_nan=True).encode() if dumps is None else dumps(meta)
    kind_b = kind.encode("ascii")
    body = b"".join(
        [MAGIC, struct.pack("<HB", FORMAT_VERSION, len(kind_b)), kind_b,
         struct.pack("<I", len(head)), head, *payload]
    )
    return body + struct.pack("<I", zlib.crc32(body))


def unpack(blob: bytes, kind: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Inverse of :func:`pack`; checks magic, version, kind, checksum and sizes."""
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise StateError(f"state must be bytes, not {type(blob).__name__}")
    blob = bytes(blob)
    if len(blob) < 4 + 3 + 4 + 4 or blob[:4] != MAGIC:
        raise StateError("not a streamdrift detector state (bad magic)")
    body, (crc,) = blob[:-4], struct.unpack("<I", blob[-4:])
    if zlib.crc32(body) != crc:
        raise StateError("detector state is corrupt (checksum mismatch)")
    version, klen = struct.unpack_from("<HB", body, 4)
    if version != FORMAT_VERSION:
        raise StateError(f"detector state format version {version} is not supported "
                         f"(this build reads version {FORMAT_VERSION})")
    pos = 7
    found = body[pos:pos + klen].decode("ascii", "replace")
    pos += klen
    if found != kind:
        raise StateError(f"detector state holds a {found!r}, not a {kind!r}")
    (hlen,) = struct.unpack_from("<I", body, pos)
    pos += 4
    if hlen > _MAX_HEADER or pos + hlen > len(body):
        raise StateError("detector state is truncated (header)")
    try:
        meta = json.loads(body[pos:pos + hlen])
        header, specs = meta["header"], meta["arrays"]
    except (ValueError, KeyError, TypeError) as exc:
        raise StateError(f"detector state header is unreadable: {exc}") from None
    pos += hlen
    arrays: dict[str, np.ndarray] = {}
    for spec in specs:
        try:
            dtype = np.dtype(spec["dtype"])
            shape = tuple(int(s) for s in spec["shape"])
        except (KeyError, TypeError, ValueError):
            raise StateError("detector state array descriptor is unreadable") from None
        if spec["dtype"] not in _ALLOWED_DTYPES or any(s < 0 for s in shape):
            raise StateError(f"detector state array {spec.get('name')!r} is invalid")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if pos + nbytes > len(body):
            raise StateError(f"detector state is truncated (array {spec['name']!r})")
        arrays[spec["name"]] = np.frombuffer(body, dtype=dtype, count=nbytes // dtype.itemsize,
                                             offset=pos).reshape(shape).copy()
        pos += nbytes
    if pos != len(body):
        raise StateError("detector state has trailing bytes")
    return header, arrays


def rebuild(kind: str, blob: bytes, make: Callable[[dict[str, Any]], T],
            shapes: Callable[[T], dict[str, tuple[int, ...]]],
            fill: Callable[[T, dict[str, np.ndarray]], None]) -> T:
    """A detector from :func:`pack` bytes: ``make(header)`` builds it from its parameters,
    every array named in ``shapes(detector)`` must have that shape, then ``fill(detector,
    arrays)`` sets its state (and may raise StateError). Any inconsistency is a StateError."""
    header, arrays = unpack(blob, kind)
    try:
        detector = make(header)
        for name, shape in shapes(detector).items():
            if arrays[name].shape != shape:
                raise StateError(f"array {name!r} has shape {arrays[name].shape}, expected {shape}")
        fill(detector, arrays)
        return detector
    except StateError:
        raise
    except (TypeError, KeyError, ValueError, IndexError) as exc:
        raise StateError(f"{kind} state is inconsistent: {exc}") from None
