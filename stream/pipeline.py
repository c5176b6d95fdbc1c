"""The pure core shared by `run` and `replay`: messages -> detections -> alerts.

No Kafka here. ``Pipeline.process(messages)`` decodes a batch, updates every model's
detectors on whole (rows x signals) arrays and returns the alerts and dead letters of the
batch. Same input in the same order gives the same output, byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detectors import ADWIN, PageHinkley

from .alerts import kind_of, make_alert
from .config import Settings
from .events import DeadLetter, Message, ModelBatch, decode
from .lifecycle import Lifecycle
from .signals import SignalRegistry


@dataclass
class BatchResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    n_events: int = 0
    suppressed: int = 0                   # detections inside a cooldown (no alert)


class ModelMonitor:
    """Signals and detectors of one model."""

    def __init__(self, model: str, settings: Settings) -> None:
        d = settings.detect
        self.model = model
        self.settings = settings
        self.signals = SignalRegistry(settings.limits.max_signals_per_model, d.warmup, d.clip_z)
        self.detectors: dict[str, ADWIN | PageHinkley] = {}
        if "adwin" in d.detectors:
            self.detectors["adwin"] = ADWIN(0, delta=d.adwin_delta, clock=d.adwin_clock,
                                            max_buckets=d.adwin_max_buckets,
                                            min_window_length=d.adwin_min_window_length,
                                            grace_period=d.adwin_grace_period)
        if "page_hinkley" in d.detectors:
            self.detectors["page_hinkley"] = PageHinkley(0, min_instances=d.ph_min_instances,
                                                         delta=d.ph_delta, threshold=d.ph_threshold,
                                                         alpha=d.ph_alpha, exact=d.ph_exact)
        self.lifecycle = Lifecycle(d.resolve_after_s, d.cooldown_s)

    @property
    def n_signals(self) -> int:
        return self.signals.size

    def process(self, batch: ModelBatch, result: BatchResult) -> None:
        X, grown = self.signals.matrix(batch)
        if grown:
            for det in self.detectors.values():
                det.add_features(grown)
        Z = self.signals.standardize(X)
        hits: list[tuple[int, int, str]] = []
        for name, det in self.detectors.items():
            mask = det.update(Z)
            if mask.any():
                rows, cols = np.nonzero(mask)
                hits.extend(zip(rows.tolist(), cols.tolist(), [name] * rows.size, strict=True))
        hits.sort()
        life = self.lifecycle
        for row, j, name in hits:
            ts = float(batch.ts[row])
            r = life.resolve_row(j, batch.ts, upto=row + 1)
            if r is not None:                     # it had been quiet long enough before this
                result.alerts.append(self._resolved(batch, X, r, j))
            if j in life.open:
                life.extend(j, ts)
                result.suppressed += 1
            elif life.may_fire(j, ts):
                alert = self._alert(batch, X, row, j, name)
                life.fire(j, ts, alert["alert_id"], name)
                result.alerts.append(alert)
            else:
                result.suppressed += 1
        for j in list(life.open):
            r = life.resolve_row(j, batch.ts)
            if r is not None:
                result.alerts.append(self._resolved(batch, X, r, j))
        self.signals.remember(X)

    def _resolved(self, batch: ModelBatch, X: np.ndarray, row: int, j: int) -> dict:
        ep = self.lifecycle.close(j)
        alert = self._alert(batch, X, row, j, ep.detector, status="resolved")
        alert["stats"].update({"episode_alert_id": ep.alert_id, "fired_ts": ep.fired_ts,
                               "last_detection_ts": ep.last_detection_ts,
                               "detections": ep.detections})
        return alert

    def _alert(self, batch: ModelBatch, X: np.ndarray, row: int, j: int, detector: str,
               status: str = "firing") -> dict:
        reg = self.signals
        signal = reg.names[j]
        mean_after, n_after = reg.recent_mean(X, row, j)
        sd = float(reg.sd[j])
        effect = (mean_after - float(reg.mean[j])) / sd if sd > 0 else 0.0
        stats = {"mean_before": float(reg.mean[j]), "sd_before": sd, "n_before": int(reg.n[j]),
                 "mean_after": mean_after, "n_after": n_after, "effect_size": round(effect, 6)}
        return make_alert(model=self.model, signal=signal, detector=detector,
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                          stats=stats, status=status)


class Pipeline:
    """All models' monitors; decode + detect + alert for one batch of messages at a time."""

    def __init__(self, settings: Settings, label_topics: set[str] | None = None) -> None:
        self.settings = settings
        self.models: dict[str, ModelMonitor] = {}
        # Label messages are recognised by their topic and counted; joining them to predictions
        # (performance drift) is not built yet.
        self.label_topics = label_topics or set()
        self.n_labels = 0

    def _admit(self, model: str) -> bool:
        return model in self.models or len(self.models) < self.settings.limits.max_models

    def process(self, messages: list[Message]) -> BatchResult:
        if self.label_topics:
            labels = [m for m in messages if m.topic in self.label_topics]
            if labels:
                self.n_labels += len(labels)
                messages = [m for m in messages if m.topic not in self.label_topics]
        batch = decode(messages, self.settings.limits, self._admit)
        result = BatchResult(dead_letters=batch.dead_letters, n_events=batch.n_events)
        for model, mb in batch.models.items():
            mon = self.models.get(model)
            if mon is None:
                mon = self.models[model] = ModelMonitor(model, self.settings)
            mon.process(mb, result)
        result.alerts.sort(key=lambda a: (a["at"]["partition"], a["at"]["offset"], a["model"],
                                          a["signal"], a["detector"]))
        return result

    @property
    def n_detectors(self) -> int:
        return sum(m.n_signals * len(m.detectors) for m in self.models.values())

    def kinds(self) -> set[str]:
        return {kind_of(n) for m in self.models.values() for n in m.signals.names}
