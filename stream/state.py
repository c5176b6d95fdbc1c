"""Checkpoint format of a partition's state: one record per (input partition, model).

Each component owns its state (``state_dict()`` / ``load_state()``): a tree of dicts and
lists whose leaves are JSON values, numpy arrays or bytes (detectors' own versioned blobs).
This module only serializes such a tree, with the detectors' versioned, checksummed format
(a JSON header + raw arrays; nothing is ever evaluated on load): arrays and bytes go to the
array section, each replaced in the header by a reference to it; a NaN or an infinity (which
JSON lacks) by a tag holding its name.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import orjson

from detectors import StateError as DetectorStateError
from detectors._state import pack, unpack

from .errors import StateError
from .pipeline import Pipeline

log = logging.getLogger("streamdrift")
KIND = "streamdrift.model.v2"
_ARRAY, _BYTES, _FLOAT = "__array__", "__bytes__", "__float__"


def encode(kind: str, tree: Any) -> bytes:
    """A state tree as bytes (see the module docstring)."""
    arrays: dict[str, np.ndarray] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {str(k): walk(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return [walk(v) for v in node]
        if isinstance(node, np.ndarray):
            name = str(len(arrays))
            arrays[name] = node
            return {_ARRAY: name}
        if isinstance(node, bytes):
            name = str(len(arrays))
            arrays[name] = np.frombuffer(node, dtype=np.uint8)
            return {_BYTES: name}
        if isinstance(node, np.generic):
            node = node.item()
        if type(node) is float and not math.isfinite(node):
            return {_FLOAT: repr(node)}            # (JSON has no NaN or infinity)
        return node

    header = {"tree": walk(tree)}
    try:
        return pack(kind, header, arrays, orjson.dumps)
    except orjson.JSONEncodeError:          # (an integer beyond 64 bits, a lone surrogate)
        return pack(kind, header, arrays)


def decode(kind: str, blob: bytes) -> Any:
    """The state tree of :func:`encode` bytes; StateError when they are not one."""
    header, arrays = unpack(blob, kind)

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and _ARRAY in node:
                return arrays[node[_ARRAY]]
            if len(node) == 1 and _BYTES in node:
                return arrays[node[_BYTES]].tobytes()
            if len(node) == 1 and _FLOAT in node:
                return float(node[_FLOAT])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    try:
        return walk(header["tree"])
    except (KeyError, TypeError) as exc:
        raise StateError(f"state is inconsistent: {exc!r}") from None


def dump_model(pipeline: Pipeline, model: str, max_bytes: int | None = None) -> bytes:
    """The whole state of one model of a pipeline shard, as bytes.

    A state over ``max_bytes`` (what a changelog record holds) first gives up the oldest of
    the model's predictions waiting for labels and of its labeled ids, until it fits: those
    are counted as evicted for size, and a warning names the model. A state that cannot
    shrink enough is returned as it is."""
    blob = encode(KIND, pipeline.model_state(model))
    while max_bytes is not None and len(blob) > max_bytes:
        kept = pipeline.trim_store(model, 0.9 * max_bytes / len(blob))
        if kept is None:
            break
        log.warning("state of model %r is %d bytes, over the %d a changelog record holds: kept "
                    "its newest %d predictions waiting for labels and %d labeled ids", model,
                    len(blob), max_bytes, *kept)
        blob = encode(KIND, pipeline.model_state(model))
    return blob


def load_model(pipeline: Pipeline, blob: bytes) -> str:
    """Restore one model into a pipeline shard from :func:`dump_model` bytes; returns its name."""
    try:
        return pipeline.load_model_state(decode(KIND, blob))
    except StateError:
        raise
    except DetectorStateError as exc:           # a detector's own blob (or the envelope)
        raise StateError(str(exc)) from None
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise StateError(f"model state is inconsistent: {exc!r}") from None
