"""One model's monitor: its signals, their detectors, alert episodes and concentration watch."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import Settings
from ..errors import StateError
from ..types import ModelBatch, Rebaseline
from .alerts import kind_of, make_alert
from .detection import DETECTORS, Detector, detect_all, make_detectors
from .drift import DriftStates, Transition, hit_matrix
from .estimate import ESTIMATE, Calibration
from .feedback import ConcentrationMonitor
from .multivariate import SIGNAL, Reconstruction, errors
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
        self.concentration = ConcentrationMonitor(model, settings.feedback, d.cooldown_s,
                                                  model_settings.seasonality if model_settings else None)
        self.quality = QualityChecks(model, settings)
        mv = settings.multivariate
        self.reconstruction = Reconstruction(d.warmup, mv.variance, d.clip_z) if mv.enabled else None
        self._X: np.ndarray | None = None
        self._stepped: list[int] = []       # signals whose references a fault ended (prepare -> judge)
        self.withheld: str | None = None       # the joint error's episode explained by a fault
        self.last_ts = float("-inf")           # event time of the latest event (s since epoch)
        # the prediction's calibration (a profile's, or the first joined labels'), once known
        self.calibration: Calibration | None = None
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

    @property
    def estimated_accuracy(self) -> float:
        """Mean estimated accuracy of the recent events (NaN: no calibration yet)."""
        j = self.signals.index.get(ESTIMATE)
        if j is None:
            return float("nan")
        v = self.signals.recent_values(None, 0, j)
        return float(v.mean()) if v.size else float("nan")

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
                "quality": self.quality.state_dict(), "version": self.version,
                "reconstruction": None if self.reconstruction is None else self.reconstruction.state_dict(),
                "calibration": None if self.calibration is None else self.calibration.state_dict(),
                "withheld": self.withheld, "last_ts": self.last_ts}

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
        # (keys a state written before these signals existed lacks: they start afresh)
        if self.reconstruction is not None and state.get("reconstruction") is not None:
            self.reconstruction.load_state(state["reconstruction"])
        self.calibration, self.withheld = None, state.get("withheld")
        if state.get("calibration") is not None:
            self.calibration = Calibration.from_state(state["calibration"])
        self.last_ts = float(state.get("last_ts", float("-inf")))

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
        self._publish(states.alerts(closing, lambda t: self._alert(batch, t)), alerts)
        for det in self.detectors.values():
            det.reset_features(cols)

    def _take(self, profile: Profile, prefix: str | tuple[str, ...]) -> list[int]:
        """A profile's references (of the signals whose names start with ``prefix``); returns
        the columns that had one already."""
        signals = {k: v for k, v in profile.signals.items() if k != "error"}
        changed = self.signals.use_profile(signals, profile.categories, prefix)
        if not prefix:
            self.quality.use_profile(profile.features, profile.rows)
            mv = profile.multivariate
            if mv and self.reconstruction is not None and not self.reconstruction.fitted:
                self.reconstruction.use(mv["features"], np.array(mv["mean"]), np.array(mv["sd"]),
                                        np.array(mv["W"]))
        if profile.calibration is not None and self.settings.estimate.enabled:
            self.calibration = Calibration.from_profile(profile.calibration)
        return changed

    def adopt(self, profile: Profile, batch: ModelBatch, row: int, alerts: list[dict]) -> None:
        """A profile published while the model runs: its signals switch to the training
        references (open episodes resolve, reason "rebaselined": they were judged against
        another reference)."""
        changed = self._take(profile, "" if profile.model_version is None else ("prediction", ESTIMATE))
        self._restart(changed, batch, row, alerts, "rebaselined")
        for j in changed:
            self.states.compare(j, "reference")

    def new_version(self, version: str, batch: ModelBatch, row: int, alerts: list[dict]) -> None:
        """A new model version from batch row ``row`` on: its prediction signals start over
        (its published profile's references, else a new warm-up); a change of version is no
        drift (an open episode of the prediction resolves, reason "model_version"). Feature
        signals keep their references: the inputs do not depend on the model."""
        reg = self.signals
        cols = [j for j, name in enumerate(reg.names) if name.split("=", 1)[0] in ("prediction", ESTIMATE)]
        self.calibration = None                              # (the new version's scores: its own)
        self._restart(cols, batch, row, alerts, "model_version")
        for j in cols:
            reg.reset(j)
        reg.known = {k: v for k, v in reg.known.items() if not k.startswith("prediction")}
        reg.category_seen["\x00prediction"] = 0             # the new version's classes, anew
        self.version = self.quality.version = version
        profile = self.profiles.of(self.model, version) if self.profiles is not None else None
        if profile is not None:
            for j in self._take(profile, ("prediction", ESTIMATE)):
                self.states.compare(j, "reference")

    def prepare(self, batch: ModelBatch) -> tuple[ModelBatch, np.ndarray, np.ndarray]:
        """The batch's raw signal matrix X and its z-scores Z, both (rows, signals)."""
        batch = self.quality.screen(batch)
        if batch.size:
            self.last_ts = max(self.last_ts, float(batch.ts.max()))
        X, grown = self.signals.matrix(batch)
        rec = self.reconstruction
        # a joint error still learning takes the rows its features score in this batch: known
        # once they are standardized; from then on it is standardized with them
        fitting = rec is not None and not rec.fitted
        if rec is not None and not fitting:
            X, more = self._reconstruction(X, batch.ts)
            grown += more
        if self.calibration is not None:
            X, more = self._estimate(X, batch)
            grown += more
        Z = self.signals.standardize(X, batch.ts)
        self._stepped = self.signals.take_stepped()
        if fitting:
            # a feature whose reference a fault ended is not how the features go together
            names = [self.signals.names[j] for j in self._stepped]
            rec.excluded.update(n[8:] for n in names if n.startswith("feature:") and "=" not in n)
            X, more = self._reconstruction(X, batch.ts)
            grown += more
            if rec.fitted and SIGNAL in self.signals.index:     # (its first errors: once a model)
                j = self.signals.index[SIGNAL]
                D = np.full_like(X, np.nan)
                D[:, j] = X[:, j]
                Z = np.concatenate([Z, np.full((Z.shape[0], X.shape[1] - Z.shape[1]), np.nan)], axis=1)
                Z[:, j] = self.signals.standardize(D, batch.ts)[:, j]
        self._grow(grown)
        return batch, X, Z

    def _grow(self, grown: int) -> None:
        """States and detectors for the ``grown`` signals registered last."""
        if not grown:
            return
        self.states.add(grown)
        for j in range(self.n_signals - grown, self.n_signals):
            if self.signals.n_profile[j] > 0:      # a training reference: compare from the start
                self.states.compare(j, "reference")
        for det in self.detectors.values():
            det.add_features(grown)
        a = self.settings.detect.adwin
        if a.bonferroni and "adwin" in self.detectors:
            # many signals multiply false alarms: share the model's delta among them (the
            # estimate, registered when labels allow it, does not count: the others' alarms
            # must not depend on when that happened)
            n = self.n_signals - (ESTIMATE in self.signals.index)
            self.detectors["adwin"].set_delta(a.delta / max(1, n))

    def _estimate(self, X: np.ndarray, batch: ModelBatch) -> tuple[np.ndarray, int]:
        """X with the estimated-accuracy column (the prediction is a score); and 1 if that
        column is new."""
        reg = self.signals
        j = reg.index.get("prediction")
        if j is None:
            return X, 0
        grown = 0
        if ESTIMATE not in reg.index:
            grown = reg.ensure([ESTIMATE])
            if not grown:
                return X, 0                                  # (the signal limit)
            X = np.concatenate([X, np.full((X.shape[0], 1), np.nan)], axis=1)
            if reg.is_seasonal(j):          # an accuracy expected from a seasonal score cycles with it
                reg.profile.add_column(reg.index[ESTIMATE])
        X[:, reg.index[ESTIMATE]] = self.calibration.expected_correct(X[:, j])
        return X, grown

    def calibrated(self, calibration: Calibration, batch: ModelBatch, rows: np.ndarray,
                   alerts: list[dict]) -> int:
        """A calibration fitted from joined labels: the estimate starts with batch rows
        ``rows`` (the events after the label that completed it; this batch's others were
        judged already). Only the estimate's column goes through the detectors for them.
        Returns the detections that raised no alert."""
        self.calibration = calibration
        reg = self.signals
        j = reg.index.get("prediction")
        if j is None or not rows.size:
            return 0
        sub = batch.select(rows)
        X = np.full((rows.size, reg.size), np.nan)
        X[:, j] = sub.prediction
        X, grown = self._estimate(X, sub)
        self._grow(grown)
        X[:, j] = np.nan                                     # (the prediction was judged already)
        Z = reg.standardize(X, sub.ts)
        masks = detect_all([self.detectors], [reg.detector_input(Z)])[0]
        quiet = self._judge(sub, X, Z, masks, alerts)
        reg.remember(X)
        return quiet

    def _reconstruction(self, X: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, int]:
        """X with the reconstruction-error column (registered once the axes are fitted: from
        the profile, or from the first rows once the numeric features' references are set);
        and 1 if that column is new."""
        rec, reg = self.reconstruction, self.signals
        start, grown = 0, 0
        if not rec.fitted:
            names = [n for n in reg.names if n.startswith("feature:") and "=" not in n]
            if not names:
                return X, 0
            cols = [reg.index[n] for n in names]
            first = int(reg.live_from[cols].max())      # (the rows its features score)
            start = first + rec.learn([n[8:] for n in names], X[first:, cols], reg.mean[cols], reg.sd[cols],
                                      ts[first:])
            if not rec.fitted:
                return X, 0
        if rec.complete:
            return X, 0                                      # (every row's error is 0)
        if SIGNAL not in reg.index:
            grown = reg.ensure([SIGNAL])
            if not grown:
                return X, 0                                  # (the signal limit)
            X = np.concatenate([X, np.full((X.shape[0], 1), np.nan)], axis=1)
            if reg.profile is not None:      # seasonal features: their joint error cycles with them
                reg.profile.add_column(reg.index[SIGNAL])
        cols = [reg.index.get(f"feature:{f}") for f in rec.features]
        V = np.column_stack([X[:, c] if c is not None else np.full(X.shape[0], np.nan) for c in cols])
        e = errors(rec.standardized(V), rec.W)
        e[np.isnan(V).all(axis=1)] = np.nan
        e[:start] = np.nan
        X[:, reg.index[SIGNAL]] = e
        return X, grown

    def finish(self, batch: ModelBatch, X: np.ndarray, Z: np.ndarray, masks: dict[str, np.ndarray],
               alerts: list[dict]) -> int:
        """Alerts from the detectors' masks (by detector name) and the signals' drift states,
        then the signals' recent values and the concentration watch; returns the detections
        that raised no alert."""
        # (the checks first: a fault they open explains the joint error's change, see _judge)
        quiet = self.quality.observe(batch, alerts, lambda f, r: self._feature_sd(X, f, r), self.recorder)
        quiet += self._judge(batch, X, Z, masks, alerts)
        self.signals.remember(X)
        if self.recorder is not None:
            self.recorder.record(self, batch.ts, X)
        return quiet + self.concentration.update(batch, alerts)

    def _judge(self, batch: ModelBatch, X: np.ndarray, Z: np.ndarray, masks: dict[str, np.ndarray],
               alerts: list[dict]) -> int:
        """The drift states' transitions as alerts."""
        self._X = X                                   # (what the alerts of this batch look at)
        reg = self.signals
        for j in self._stepped + reg.take_stepped():
            self.states.compare(j, "reference")
        self._stepped = []
        hit = hit_matrix(masks, list(self.detectors))
        transitions = self.states.step(Z, X, hit, batch.ts, reg.cz_mean, reg.long_run_sd, reg.n_ref)
        quiet = self._publish(self.states.alerts(transitions, lambda t: self._alert(batch, t)), alerts)
        quiet, self.states.quiet = quiet + self.states.quiet, 0
        return quiet

    def _publish(self, made: list[dict], alerts: list[dict]) -> int:
        """Append these alerts of the drift states, but those withheld; returns how many
        firing ones were."""
        quiet = 0
        for a in made:
            if a["signal"] == SIGNAL and self._withhold(a):
                quiet += a["status"] == "firing"
            else:
                alerts.append(a)
        return quiet

    def _withhold(self, alert: dict) -> bool:
        """The joint error's episode raises no alert when it opens while a data-quality fault
        of one of its features is open: the fault is the change (one page, the fault's)."""
        if alert["status"] == "firing":
            if self.quality.fault_open(self.reconstruction.features, alert["at"]["ts"]):
                self.withheld = alert["alert_id"]
                return True
            return False
        if alert["stats"]["episode_alert_id"] == self.withheld:
            self.withheld = None
            return True
        return False

    def _feature_sd(self, X: np.ndarray | None, feature: str, row: int) -> tuple[float, float]:
        """(reference sd, sd of its last values up to batch row ``row``) of a numeric feature."""
        reg = self.signals
        j = reg.index.get(f"feature:{feature}")
        if j is None:
            return float("nan"), float("nan")
        recent = reg.recent_values(X, row, j)
        return float(reg.sd[j]), float(recent.std(ddof=1)) if recent.size > 1 else float("nan")

    def _alert(self, batch: ModelBatch, t: Transition) -> dict:
        signal = self.signals.names[t.column]
        stats = signal_stats(self.signals, t)
        if signal == SIGNAL and self._X is not None and t.status == "firing":
            rec, reg = self.reconstruction, self.signals
            rows = self._X[max(0, t.row - 199): t.row + 1]
            cols = [reg.index.get(f"feature:{f}") for f in rec.features]
            V = np.column_stack([rows[:, c] if c is not None else np.full(rows.shape[0], np.nan)
                                 for c in cols])
            stats["features"] = rec.contributions(V)   # most of the error after the change
        if signal == ESTIMATE:                          # an accuracy, estimated (no label yet)
            stats = {("accuracy" + k[4:] if k.startswith("mean_") else k): v for k, v in stats.items()
                     if k not in ("sd_before",)}
        alert = make_alert(model=self.model, signal=signal, detector=t.detector,
                           ts=float(batch.ts[t.row]), topic=batch.topic[t.row],
                           partition=int(batch.partition[t.row]), offset=int(batch.offset[t.row]),
                           stats=stats, status=t.status, reason=t.reason, model_version=self.version)
        if signal == ESTIMATE:
            alert["estimated"] = True
        return alert


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
