"""One model's monitor: its signals, their detectors, alert episodes and concentration watch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Settings
from ..errors import StateError
from ..types import ModelBatch
from .alerts import kind_of, make_alert
from .detection import DETECTORS, Detector, make_detectors
from .feedback import ConcentrationMonitor
from .lifecycle import Lifecycle, apply_lifecycle
from .signals import SignalRegistry


class ModelMonitor:
    """Signals and detectors of one model.

    A batch goes through :meth:`prepare` (its raw signal matrix X and z-scores Z; the
    detectors grow with new signals), then the detectors update on Z for all models at once
    (:func:`~stream.monitor.detection.detect_all`), then :meth:`finish` turns their masks
    into alerts.

    Parameters
    ----------
    model : the model's name.
    settings : the service's settings (detect, feedback, limits, models.<model>).
    """

    def __init__(self, model: str, settings: Settings) -> None:
        d = settings.detect
        self.model = model
        self.settings = settings
        model_settings = settings.models.get(model)
        self.signals = SignalRegistry(settings.limits.max_signals_per_model, d.warmup, d.clip_z,
                                      season=model_settings.seasonality if model_settings else None)
        self.detectors: dict[str, Detector] = make_detectors(d)
        self.lifecycle = Lifecycle(d.resolve_after_s, d.cooldown_s)
        self.concentration = ConcentrationMonitor(model, settings.feedback, d.cooldown_s)
        self.recorder = None                  # a report recorder during a backtest

    @property
    def n_signals(self) -> int:
        return self.signals.size

    def active_kinds(self) -> list[str]:
        """The alert kind of each open episode of this model's signals."""
        names = self.signals.names
        kinds = [kind_of(names[j]) for j in list(self.lifecycle.open)]
        return kinds + ["feedback_loop"] * len(self.concentration.lifecycle.open)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model, "signals": self.signals.state_dict(),
                "detectors": {name: det.to_bytes() for name, det in self.detectors.items()},
                "lifecycle": self.lifecycle.state_dict(),
                "concentration": self.concentration.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        if sorted(state["detectors"]) != sorted(self.detectors):
            raise StateError(f"state of {self.model!r} has detectors {sorted(state['detectors'])}, "
                             f"the configuration {sorted(self.detectors)}")
        self.signals.load_state(state["signals"])
        self.detectors = {name: DETECTORS[name].from_bytes(state["detectors"][name])
                          for name in self.detectors}
        self.lifecycle.load_state(state["lifecycle"])
        self.concentration.load_state(state["concentration"])

    def prepare(self, batch: ModelBatch) -> tuple[np.ndarray, np.ndarray]:
        """The batch's raw signal matrix X and its z-scores Z, both (rows, signals)."""
        X, grown = self.signals.matrix(batch)
        if grown:
            for det in self.detectors.values():
                det.add_features(grown)
            a = self.settings.detect.adwin
            if a.bonferroni and "adwin" in self.detectors:
                # many signals multiply false alarms: share the model's delta among them
                self.detectors["adwin"].set_delta(a.delta / max(1, self.n_signals))
        return X, self.signals.standardize(X, batch.ts)

    def finish(self, batch: ModelBatch, X: np.ndarray, masks: dict[str, np.ndarray],
               alerts: list[dict]) -> int:
        """Alerts from the detectors' masks (by detector name), then the signals' recent
        values and the concentration watch; returns the suppressed detections."""
        hits: list[tuple[int, int, str]] = []
        for name in self.detectors:
            mask = masks[name]
            if mask.any():
                rows, cols = np.nonzero(mask)
                hits.extend(zip(rows.tolist(), cols.tolist(), [name] * rows.size, strict=True))
        suppressed = apply_lifecycle(self.lifecycle, hits, batch.ts, alerts,
                                     lambda row, j, name, status: self._alert(batch, X, row, j, name, status))
        self.signals.remember(X)
        if self.recorder is not None:
            self.recorder.record(self, batch.ts, X)
        return suppressed + self.concentration.update(batch, alerts)

    def _alert(self, batch: ModelBatch, X: np.ndarray, row: int, j: int, detector: str,
               status: str) -> dict:
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
