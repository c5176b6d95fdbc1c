"""Alert records: schema, deterministic ids, severity from the effect size, cooldown.

An alert is a plain dict ready for orjson (schema: README "Alerts", docs/design.md).
``alert_id`` depends only on (model, signal, detector, source topic, partition, offset), so
re-processing the same input after a crash yields the same id and subscribers can deduplicate.
"""

from __future__ import annotations

import hashlib
from typing import Any

from .. import __version__

KIND_BY_SIGNAL_PREFIX = {"feature": "data_drift", "prediction": "prediction_drift",
                         "error": "performance_drift", "segments": "feedback_loop",
                         "labels": "feedback_loop", "estimated_accuracy": "performance_drift"}


def alert_id(model: str, signal: str, detector: str, topic: str, partition: int, offset: int,
             status: str = "firing") -> str:
    """32 hex chars, a pure function of where and what was detected (and the status)."""
    key = f"{model}\x1f{signal}\x1f{detector}\x1f{topic}\x1f{partition}\x1f{offset}"
    if status != "firing":
        key += f"\x1f{status}"
    key = key.encode()
    return hashlib.blake2b(key, digest_size=16).hexdigest()


def kind_of(signal: str) -> str:
    """Alert kind for a signal name such as "feature:age" or "prediction"."""
    return KIND_BY_SIGNAL_PREFIX.get(signal.split(":", 1)[0].split("=", 1)[0], "data_drift")


def severity_of(effect_size: float) -> str:
    """critical for |standardized mean difference| >= 1, warning >= 0.5, else info."""
    e = abs(effect_size)
    return "critical" if e >= 1.0 else "warning" if e >= 0.5 else "info"


def make_alert(*, model: str, signal: str, detector: str, ts: float, topic: str, partition: int,
               offset: int, stats: dict[str, Any], status: str = "firing",
               reason: str = "", check: str = "", kind: str = "", severity: str = "",
               model_version: str | None = None) -> dict[str, Any]:
    """An alert record. ``reason`` (resolved alerts): "returned" (the values are back within
    the reference) or "rebaselined" (an operator accepted the new values as the reference).
    ``check``: the data-quality check that raised it (missing, type, stuck, spread,
    new_feature); ``kind`` and ``severity`` override the signal's kind and the effect's."""
    alert = {
        "alert_id": alert_id(model, f"{signal}#{check}" if check else signal, detector, topic,
                             partition, offset, status),
        "status": status,
        "kind": kind or kind_of(signal),
        "model": model,
        "signal": signal,
        "detector": detector,
        "at": {"ts": ts, "topic": topic, "partition": partition, "offset": offset},
        "stats": stats,
        "severity": severity or severity_of(stats.get("effect_size", 0.0)),
        "streamdrift_version": __version__,
    }
    if model_version is not None:
        alert["model_version"] = model_version
    if check:
        alert["check"] = check
    if reason:
        alert["reason"] = reason
    return alert
