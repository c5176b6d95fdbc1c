"""One model's monitor: its signals, their detectors, alert episodes and concentration watch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Settings
from ..errors import StateError
from ..types import ModelBatch, Rebaseline
from .alerts import kind_of, make_alert
from .detection import DETECTORS, Detector, make_detectors
from .drift import DriftStates, Transition, hit_matrix
from .feedback import ConcentrationMonitor
from .quality import QualityChecks
from .reference import Profile, Profiles
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

    def __init__(self, model: str, settings: Settings, profiles: Profiles | None = None) -> None:
        d = settings.detect
        self.model = model
        self.settings = settings
        model_settings = settings.models.get(model)
        self.signals = SignalRegistry(settings.limits.max_signals_per_model, d.warmup, d.clip_z,
                                      season=model_settings.seasonality if model_settings else None)
        self.detectors: dict[str, Detector] = make_detectors(d)
        self.states = DriftStates(list(self.detectors), d.min_effect, d.significance, d.confidence,
                                  d.min_values, d.cooldown_s)
        self.concentration = ConcentrationMonitor(model, settings.feedback, d.cooldown_s)
        self.quality = QualityChecks(model, settings)
        self.recorder = None                  # a report recorder during a backtest
        self.applied: list[str] = []          # ids of the re-baselines applied (the last 100)
        self.version: str | None = None       # the model version of the latest events
        self.profiles = profiles
        profile = profiles.of(model) if profiles is not None else None
        if profile is not None:               # training references: no warm-up for these
            self._take(profile, "")

    @property
    def n_signals(self) -> int:
        return self.signals.size

    def active_kinds(self) -> list[str]:
        """The alert kind of each open episode of this model's signals."""
        names = self.signals.names
        kinds = [kind_of(names[j]) for j in self.states.drifted()]
        feedback = ["feedback_loop"] * len(self.concentration.lifecycle.open)
        return kinds + self.quality.drifted_kinds() + feedback

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model, "signals": self.signals.state_dict(),
                "detectors": {name: det.to_bytes() for name, det in self.detectors.items()},
                "states": self.states.state_dict(),
                "concentration": self.concentration.state_dict(), "applied": list(self.applied),
                "quality": self.quality.state_dict(), "version": self.version}

    def load_state(self, state: dict[str, Any]) -> None:
        if sorted(state["detectors"]) != sorted(self.detectors):
            raise StateError(f"state of {self.model!r} has detectors {sorted(state['detectors'])}, "
                             f"the configuration {sorted(self.detectors)}")
        self.signals.load_state(state["signals"])
        self.detectors = {name: DETECTORS[name].from_bytes(state["detectors"][name])
                          for name in self.detectors}
        self.states.load_state(state["states"])
        self.concentration.load_state(state["concentration"])
        self.applied = list(state["applied"])
        self.quality.load_state(state["quality"])
        self.version = self.quality.version = state["version"]

    def rebaseline(self, req: Rebaseline, batch: ModelBatch, row: int, alerts: list[dict]) -> bool:
        """Apply an operator's re-baseline at batch row ``row`` (before its values): the
        signals it covers learn a new reference from their next values; an open episode
        resolves with reason "rebaselined". False if it was applied already."""
        if req.id in self.applied:
            return False
        self.applied = [*self.applied[-99:], req.id]
        cols = [j for j, name in enumerate(self.signals.names) if req.covers(name)]
        self._restart(cols, batch, row, alerts, "rebaselined")
        for j in cols:
            self.signals.reset(j)
        self.quality.rebaseline(req, batch, row, alerts, lambda f, r: self._feature_sd(None, f, r))
        return True

    def _restart(self, cols: list[int], batch: ModelBatch, row: int, alerts: list[dict], reason: str) -> None:
        """These signals' drift states and detectors start over at ``row``; their open episodes
        resolve with ``reason``."""
        reg, states = self.signals, self.states
        closing = [t for j in cols if (t := states.rebaseline(j, row, float(reg.cz_mean[j]), reason))]
        alerts.extend(states.alerts(closing, lambda t: self._alert(batch, t)))
        for det in self.detectors.values():
            det.reset_features(cols)

    def _take(self, profile: Profile, prefix: str) -> list[int]:
        """A profile's references (of the signals whose names start with ``prefix``); returns
        the columns that had one already."""
        signals = {k: v for k, v in profile.signals.items() if k != "error"}
        changed = self.signals.use_profile(signals, profile.categories, prefix)
        if not prefix:
            self.quality.use_profile(profile.features, profile.rows)
        return changed

    def adopt(self, profile: Profile, batch: ModelBatch, row: int, alerts: list[dict]) -> None:
        """A profile published while the model runs: its signals switch to the training
        references (open episodes resolve, reason "rebaselined": they were judged against
        another reference)."""
        changed = self._take(profile, "" if profile.model_version is None else "prediction")
        self._restart(changed, batch, row, alerts, "rebaselined")
        for j in changed:
            self.states.compare(j, "reference")

    def new_version(self, version: str, batch: ModelBatch, row: int, alerts: list[dict]) -> None:
        """A new model version from batch row ``row`` on: its prediction signals start over
        (its published profile's references, else a new warm-up); a change of version is no
        drift (an open episode of the prediction resolves, reason "model_version"). Feature
        signals keep their references: the inputs do not depend on the model."""
        reg = self.signals
        cols = [j for j, name in enumerate(reg.names) if name.split("=", 1)[0] == "prediction"]
        self._restart(cols, batch, row, alerts, "model_version")
        for j in cols:
            reg.reset(j)
        reg.known = {k: v for k, v in reg.known.items() if not k.startswith("prediction")}
        reg.category_seen["\x00prediction"] = 0             # the new version's classes, anew
        self.version = self.quality.version = version
        profile = self.profiles.of(self.model, version) if self.profiles is not None else None
        if profile is not None:
            for j in self._take(profile, "prediction"):
                self.states.compare(j, "reference")

    def prepare(self, batch: ModelBatch) -> tuple[ModelBatch, np.ndarray, np.ndarray]:
        """The batch's raw signal matrix X and its z-scores Z, both (rows, signals)."""
        batch = self.quality.screen(batch)
        X, grown = self.signals.matrix(batch)
        if grown:
            self.states.add(grown)
            for j in range(self.n_signals - grown, self.n_signals):
                if self.signals.n_profile[j] > 0:      # a training reference: compare from the start
                    self.states.compare(j, "reference")
            for det in self.detectors.values():
                det.add_features(grown)
            a = self.settings.detect.adwin
            if a.bonferroni and "adwin" in self.detectors:
                # many signals multiply false alarms: share the model's delta among them
                self.detectors["adwin"].set_delta(a.delta / max(1, self.n_signals))
        return batch, X, self.signals.standardize(X, batch.ts)

    def finish(self, batch: ModelBatch, X: np.ndarray, Z: np.ndarray, masks: dict[str, np.ndarray],
               alerts: list[dict]) -> int:
        """Alerts from the detectors' masks (by detector name) and the signals' drift states,
        then the signals' recent values and the concentration watch; returns the detections
        that raised no alert."""
        hit = hit_matrix(masks, list(self.detectors))
        reg = self.signals
        transitions = self.states.step(Z, X, hit, batch.ts, reg.cz_mean, reg.cz_sd, reg.n_ref)
        alerts.extend(self.states.alerts(transitions, lambda t: self._alert(batch, t)))
        quiet, self.states.quiet = self.states.quiet, 0
        quiet += self.quality.observe(batch, alerts, lambda f, r: self._feature_sd(X, f, r), self.recorder)
        reg.remember(X)
        if self.recorder is not None:
            self.recorder.record(self, batch.ts, X)
        return quiet + self.concentration.update(batch, alerts)

    def _feature_sd(self, X: np.ndarray | None, feature: str, row: int) -> tuple[float, float]:
        """(reference sd, sd of its last values up to batch row ``row``) of a numeric feature."""
        reg = self.signals
        j = reg.index.get(f"feature:{feature}")
        if j is None:
            return float("nan"), float("nan")
        recent = reg.recent_values(X, row, j)
        return float(reg.sd[j]), float(recent.std(ddof=1)) if recent.size > 1 else float("nan")

    def _alert(self, batch: ModelBatch, t: Transition) -> dict:
        return make_alert(model=self.model, signal=self.signals.names[t.column], detector=t.detector,
                          ts=float(batch.ts[t.row]), topic=batch.topic[t.row],
                          partition=int(batch.partition[t.row]), offset=int(batch.offset[t.row]),
                          stats=signal_stats(self.signals, t), status=t.status, reason=t.reason,
                          model_version=self.version)


def signal_stats(reg: SignalRegistry, t: Transition) -> dict[str, Any]:
    """An alert's stats: the reference ("before") and the values since the change point
    ("after"); for a seasonal signal, its residuals, in reference sd."""
    j = t.column
    if reg.is_seasonal(j):
        before = float(reg.cz_mean[j])
        return {"seasonal": True, "residual_before": before, "residual_after": round(before + t.effect, 6),
                "n_before": int(reg.n_ref[j]), "n_after": t.n, "effect_size": round(t.effect, 6),
                "since_ts": t.since_ts}
    stats = {"mean_before": float(reg.mean[j]), "sd_before": float(reg.sd[j]), "n_before": int(reg.n_ref[j]),
             "mean_after": t.raw_mean, "n_after": t.n, "effect_size": round(t.effect, 6),
             "since_ts": t.since_ts}
    if reg.n_profile[j] > 0:
        stats["reference"] = "profile"           # compared with the training data
    return stats
