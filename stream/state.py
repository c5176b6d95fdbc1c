"""Checkpoint and restore of detector state, one record per (input partition, model).

A model's state (signals and their references, detectors, alert episodes, feedback watches,
error stream, predictions waiting for labels) is packed with the detectors' versioned,
checksummed format (JSON header + raw arrays; nothing is ever evaluated on load) and written
to a compacted changelog topic: key ``<topic>:<partition>:<model>``, header
``streamdrift.offset`` = the input offset the state reflects (the next offset to read).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from detectors import ADWIN, PageHinkley
from detectors._state import StateError, pack, unpack

from .monitor.lifecycle import Episode, Lifecycle
from .monitor.signals import SignalRegistry

KIND = "streamdrift.model"


def _blob(arr: bytes) -> np.ndarray:
    return np.frombuffer(arr, dtype=np.uint8).copy()


def _registry(reg: SignalRegistry, prefix: str, header: dict, arrays: dict) -> None:
    header[prefix] = {"names": reg.names, "categories": reg.categories,
                      "category_seen": reg.category_seen, "dropped": reg.dropped,
                      "profile_columns": reg.profile.columns if reg.profile else None}
    for name in ("n", "mean", "m2", "sd", "recent", "recent_pos", "warm_values"):
        arrays[f"{prefix}.{name}"] = getattr(reg, name)
    if reg.profile is not None:
        for name in ("n", "s1", "s2", "shift", "has_shift", "ready", "mean", "sd"):
            arrays[f"{prefix}.profile.{name}"] = getattr(reg.profile, name)


def _load_registry(reg: SignalRegistry, prefix: str, header: dict, arrays: dict) -> None:
    h = header[prefix]
    reg.names = list(h["names"])
    reg.index = {n: i for i, n in enumerate(reg.names)}
    reg.categories = {k: dict(v) for k, v in h["categories"].items()}
    reg.category_seen = dict(h["category_seen"])
    reg.dropped = int(h["dropped"])
    for name in ("n", "mean", "m2", "sd", "recent", "recent_pos", "warm_values"):
        setattr(reg, name, arrays[f"{prefix}.{name}"])
    if reg.profile is not None and h["profile_columns"] is not None:
        reg.profile.columns = list(h["profile_columns"])
        for name in ("n", "s1", "s2", "shift", "has_shift", "ready", "mean", "sd"):
            setattr(reg.profile, name, arrays[f"{prefix}.profile.{name}"])


def _lifecycle(life: Lifecycle) -> dict:
    return {"open": {str(j): vars(ep) for j, ep in life.open.items()},
            "last_fired": {str(j): t for j, t in life.last_fired.items()}}


def _load_lifecycle(life: Lifecycle, h: dict) -> None:
    life.open = {int(j): Episode(**ep) for j, ep in h["open"].items()}
    life.last_fired = {int(j): float(t) for j, t in h["last_fired"].items()}


def dump_model(pipeline, model: str) -> bytes:
    """The whole state of one model of a pipeline shard, as bytes."""
    mon = pipeline.models[model]
    header: dict[str, Any] = {"model": model, "detectors": sorted(mon.detectors)}
    arrays: dict[str, np.ndarray] = {}
    _registry(mon.signals, "signals", header, arrays)
    for name, det in mon.detectors.items():
        arrays[f"detector.{name}"] = _blob(det.to_bytes())
    header["lifecycle"] = _lifecycle(mon.lifecycle)
    header["feedback_lifecycle"] = _lifecycle(mon.feedback_life)
    c = mon.concentration
    header["concentration"] = {"segments": c.segment_index, "seen": c.seen, "series": c.series,
                               "ref_mean": c.ref_mean, "ref_sd": c.ref_sd}
    arrays["concentration.counts"] = c.counts
    arrays["concentration.ph"] = _blob(c.ph.to_bytes())
    perf = pipeline.performance.get(model)
    if perf is not None:
        header["performance"] = {"binary": perf.binary, "n_labels": perf.n_labels,
                                 "lifecycle": _lifecycle(perf.lifecycle)}
        _registry(perf.signals, "performance.signals", header, arrays)
        arrays["performance.adwin"] = _blob(perf.adwin.to_bytes())
    sel = pipeline.selection.get(model)
    if sel is not None:
        header["selection"] = {"lifecycle": _lifecycle(sel[1])}
        arrays["selection.labeled"], arrays["selection.unlabeled"] = sel[0].labeled, sel[0].unlabeled
    if pipeline.store is not None:
        pending = pipeline.store.pending.get(model, {})
        header["store"] = {"ids": list(pending), "preds": [v[0] for v in pending.values()],
                           "labeled": list(pipeline.store.labeled.get(model, ()))}
        arrays["store.ts"] = np.array([v[1] for v in pending.values()], dtype=np.float64)
    return pack(KIND, header, arrays)


def load_model(pipeline, blob: bytes) -> str:
    """Restore one model into a pipeline shard from :func:`dump_model` bytes; returns its name."""
    from .pipeline import ModelMonitor, PerformanceMonitor

    header, arrays = unpack(blob, KIND)
    try:
        model = header["model"]
        mon = ModelMonitor(model, pipeline.settings)
        if sorted(mon.detectors) != header["detectors"]:
            raise StateError(f"state of {model!r} has detectors {header['detectors']}, the "
                             f"configuration {sorted(mon.detectors)}")
        _load_registry(mon.signals, "signals", header, arrays)
        for name in mon.detectors:
            cls = ADWIN if name == "adwin" else PageHinkley
            mon.detectors[name] = cls.from_bytes(arrays[f"detector.{name}"].tobytes())
        _load_lifecycle(mon.lifecycle, header["lifecycle"])
        _load_lifecycle(mon.feedback_life, header["feedback_lifecycle"])
        c, h = mon.concentration, header["concentration"]
        c.segment_index, c.seen, c.series = dict(h["segments"]), int(h["seen"]), list(h["series"])
        c.ref_mean, c.ref_sd = h["ref_mean"], h["ref_sd"]
        c.counts = arrays["concentration.counts"]
        c.ph = PageHinkley.from_bytes(arrays["concentration.ph"].tobytes())
        pipeline.models[model] = mon
        if "performance" in header:
            perf = PerformanceMonitor(model, pipeline.settings)
            perf.binary, perf.n_labels = header["performance"]["binary"], header["performance"]["n_labels"]
            _load_lifecycle(perf.lifecycle, header["performance"]["lifecycle"])
            _load_registry(perf.signals, "performance.signals", header, arrays)
            perf.adwin = ADWIN.from_bytes(arrays["performance.adwin"].tobytes())
            pipeline.performance[model] = perf
        if "selection" in header:
            watch, life = pipeline._selection(model)
            watch.labeled, watch.unlabeled = arrays["selection.labeled"], arrays["selection.unlabeled"]
            _load_lifecycle(life, header["selection"]["lifecycle"])
        if "store" in header and pipeline.store is not None:
            s = header["store"]
            pipeline.store.restore(model, list(zip(s["ids"], s["preds"], arrays["store.ts"].tolist(),
                                                   strict=True)), s["labeled"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, StateError):
            raise
        raise StateError(f"model state is inconsistent: {exc!r}") from None
    return model

