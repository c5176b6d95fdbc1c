"""Reference profiles: what a model's signals looked like in its training data.

A profile holds, per model (and model version), what the monitors need to judge production
against training from the first event instead of against a warm-up: per signal its reference
(count, mean, sd and how its clipped z-scores spread, plus quantiles, min and max for people),
the categories of each categorical feature and their shares, and per feature its missing rate
and the rates the stuck and spread checks compare with. It is built by :func:`build` from
the training rows (``streamdrift profile``) with exactly the rules the service applies to a
warm-up, and stored as versioned JSON (:meth:`Profiles.to_json`, :func:`load`).

Format (``"format": "streamdrift.profile", "version": 1``)::

    {"format": "streamdrift.profile", "version": 1, "created": "2026-...Z",
     "profiles": {"<model>" or "<model>@<version>": {
         "model": "...", "model_version": "..." | null, "rows": 50000,
         "signals": {"feature:age": {"n", "mean", "sd", "cz_mean", "cz_sd", "min", "max",
                                     "quantiles": {"0.01": ..., "0.5": ..., "0.99": ...}},
                     "feature:ins=medicare": {...}, "prediction": {...}, "error": {...}},
         "categories": {"ins": {"medicare": 0.41, "private": 0.37, "__other__": 0.22}},
         "features": {"age": {"type": "number", "missing_rate": 0.0, "repeat_rate": 0.01,
                              "change_median": 12.5, "larger_change_rate": 0.5}}}}}
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..config import Settings
from ..errors import ConfigError
from ..types import MODEL_RE, ModelBatch
from .estimate import ESTIMATE, Calibration
from .multivariate import SIGNAL, Reconstruction, errors, fit
from .signals import OTHER, reference

FORMAT, VERSION = "streamdrift.profile", 1
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_CATEGORIES = 32


@dataclass(frozen=True)
class SignalRef:
    """A signal's reference: its size, mean and sd, and its clipped z-scores' mean and sd."""
    n: int
    mean: float
    sd: float
    cz_mean: float
    cz_sd: float


@dataclass(frozen=True)
class FeatureRef:
    """What the data-quality checks compare a feature with."""
    type: str                          # "number" | "string"
    missing_rate: float
    repeat_rate: float | None = None   # share of pairs of equal values (numeric)
    change_median: float | None = None
    larger_change_rate: float | None = None
    pairs: int = 0


@dataclass
class Profile:
    """One model's (and version's) reference."""
    model: str
    model_version: str | None
    rows: int
    signals: dict[str, SignalRef] = field(default_factory=dict)
    categories: dict[str, dict[str, float]] = field(default_factory=dict)
    features: dict[str, FeatureRef] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)   # quantiles, min, max
    multivariate: dict[str, Any] | None = None    # features, mean, sd, W: the PCA's
    calibration: dict[str, Any] | None = None     # x, y: the score calibration's knots (or null)

    @property
    def key(self) -> str:
        return key_of(self.model, self.model_version)


def key_of(model: str, version: str | None) -> str:
    return f"{model}@{version}" if version else model


@dataclass
class Profiles:
    """Profiles by key (``model`` or ``model@version``)."""
    profiles: dict[str, Profile] = field(default_factory=dict)

    def of(self, model: str, version: str | None = None) -> Profile | None:
        """The profile of a model's version; without one, for its features, the model's."""
        if version:
            return self.profiles.get(key_of(model, version))
        return self.profiles.get(model) or next(
            (p for p in self.profiles.values() if p.model == model), None)

    def add(self, profile: Profile) -> None:
        self.profiles[profile.key] = profile

    def to_json(self) -> bytes:
        return orjson.dumps({"format": FORMAT, "version": VERSION,
                             "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "profiles": {k: to_dict(p) for k, p in self.profiles.items()}},
                            option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)


def _num(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def to_dict(p: Profile) -> dict[str, Any]:
    signals = {}
    for name, ref in p.signals.items():
        signals[name] = {"n": ref.n, "mean": _num(ref.mean), "sd": _num(ref.sd), "cz_mean": _num(ref.cz_mean),
                         "cz_sd": _num(ref.cz_sd), **p.extra.get(name, {})}
    return {"model": p.model, "model_version": p.model_version, "rows": p.rows, "signals": signals,
            "categories": p.categories,
            "features": {f: {k: v for k, v in vars(r).items()} for f, r in p.features.items()},
            "multivariate": p.multivariate, "calibration": p.calibration}


def from_dict(key: str, d: Any) -> Profile:
    """A profile from its JSON object; ValueError saying what is wrong."""
    if not isinstance(d, dict):
        raise ValueError(f"profile {key!r} is not an object")
    model, version = d.get("model"), d.get("model_version")
    if not isinstance(model, str) or not MODEL_RE.match(model):
        raise ValueError(f"profile {key!r}: model is not a model name")
    if version is not None and not isinstance(version, str):
        raise ValueError(f"profile {key!r}: model_version must be a string or null")
    if key_of(model, version) != key:
        raise ValueError(f"profile {key!r} is keyed unlike its model and version "
                         f"({key_of(model, version)!r})")
    p = Profile(model, version, int(d.get("rows", 0)))
    for name, s in (d.get("signals") or {}).items():
        try:
            ref = SignalRef(int(s["n"]), float(s["mean"]), float(s["sd"]), float(s["cz_mean"]),
                            float(s["cz_sd"]))
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"profile {key!r}: signal {name!r} needs numbers n, mean, sd, cz_mean, "
                             "cz_sd") from None
        if ref.n < 2 or not ref.sd > 0:
            raise ValueError(f"profile {key!r}: signal {name!r} has n < 2 or sd <= 0")
        p.signals[name] = ref
        p.extra[name] = {k: s[k] for k in ("min", "max", "quantiles") if k in s}
    for f, cats in (d.get("categories") or {}).items():
        if not isinstance(cats, dict) or not all(isinstance(v, (int, float)) for v in cats.values()):
            raise ValueError(f"profile {key!r}: categories of {f!r} must map names to shares")
        p.categories[f] = {str(c): float(v) for c, v in cats.items()}
    mv = d.get("multivariate")
    if mv is not None:
        try:
            W = np.array(mv["W"], dtype=float)
            if W.ndim != 2 or W.shape[0] != len(mv["features"]) or len(mv["mean"]) != W.shape[0] \
                    or len(mv["sd"]) != W.shape[0]:
                raise ValueError
            p.multivariate = {"features": [str(f) for f in mv["features"]],
                              "mean": list(map(float, mv["mean"])), "sd": list(map(float, mv["sd"])),
                              "W": W.tolist()}
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"profile {key!r}: multivariate needs features, mean, sd and W of "
                             "matching sizes") from None
    cal = d.get("calibration")
    if cal is not None:
        try:
            x, y = cal["x"], cal["y"]
            if (x is None) != (y is None) or (x is not None and (len(x) != len(y) or len(x) < 2
                                                                 or np.any(np.diff(np.array(x, float)) < 0))):
                raise ValueError
            p.calibration = {"x": None if x is None else list(map(float, x)),
                             "y": None if y is None else list(map(float, y))}
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"profile {key!r}: calibration needs x (ascending) and y of one size, "
                             "or both null") from None
    for f, r in (d.get("features") or {}).items():
        try:
            p.features[f] = FeatureRef(**r)
        except TypeError:
            raise ValueError(f"profile {key!r}: feature {f!r} is not a feature reference") from None
    return p


def load(path: str | Path) -> Profiles:
    """Profiles from a file; ConfigError naming the file and the problem."""
    try:
        doc = orjson.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ConfigError(f"reference {path}: cannot be read ({exc.strerror})") from None
    except orjson.JSONDecodeError as exc:
        raise ConfigError(f"reference {path}: not JSON ({exc})") from None
    try:
        return parse(doc)
    except ValueError as exc:
        raise ConfigError(f"reference {path}: {exc}") from None


def parse(doc: Any) -> Profiles:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a streamdrift reference profile (format must be {FORMAT!r})")
    if doc.get("version") != VERSION:
        raise ValueError(f"profile format version {doc.get('version')!r} is not supported (this "
                         f"build reads version {VERSION})")
    if not isinstance(doc.get("profiles"), dict) or not doc["profiles"]:
        raise ValueError("it holds no profiles")
    return Profiles({k: from_dict(k, v) for k, v in doc["profiles"].items()})


# -- building, from the training rows of one model (and version)
def signal_ref(values: np.ndarray, clip_z: float) -> tuple[SignalRef, dict[str, Any]]:
    """A signal's reference from all its training values, as a warm-up of them would give."""
    mean, _, sd = reference(values)
    cz = np.clip((values - mean) / sd, -clip_z, clip_z)
    extra = {"min": float(values.min()), "max": float(values.max()),
             "quantiles": {str(q): float(v) for q, v in zip(QUANTILES, np.quantile(values, QUANTILES),
                                                             strict=True)}}
    return SignalRef(int(values.size), mean, sd, float(cz.mean()), float(cz.std(ddof=1))), extra


def build(model: str, version: str | None, batch: ModelBatch, settings: Settings,
          errors: np.ndarray | None = None, binary: np.ndarray | None = None) -> Profile:
    """The profile of a model's training rows (one batch of all of them); ``errors``: the
    error of each labeled row (NaN where none), for the performance signal; ``binary``: which
    of them are right/wrong outcomes (a 0/1 label), for the score calibration."""
    p = Profile(model, version, batch.size)
    clip_z = settings.detect.clip_z

    def put(name: str, values: np.ndarray) -> None:
        values = values[~np.isnan(values)]
        if values.size >= 2:
            p.signals[name], p.extra[name] = signal_ref(values, clip_z)

    for f, x in batch.numeric.items():
        put(f"feature:{f}", x)
        p.features[f] = _numeric_feature(x)
    for f, col in batch.categorical.items():
        if f in batch.numeric:
            continue                                  # (numbers first: the established type)
        cats = _categories(col)
        p.categories[f] = cats
        present = np.array([v is not None for v in col])
        for c in cats:
            put(f"feature:{f}={c}", _indicator(col, present, c, cats))
        p.features[f] = FeatureRef("string", float(1 - present.mean()))
    if batch.prediction_class is not None and any(v is not None for v in batch.prediction_class):
        col = batch.prediction_class
        cats = _categories(col)
        p.categories["\x00prediction"] = cats
        present = np.array([v is not None for v in col])
        for c in cats:
            put(f"prediction={c}", _indicator(col, present, c, cats))
    elif not np.isnan(batch.prediction).all():
        put("prediction", batch.prediction)
    if errors is not None:
        put("error", errors)
        if binary is not None and settings.estimate.enabled:
            _calibration(p, batch.prediction, errors, binary, settings.labels.warmup, clip_z)
    if settings.multivariate.enabled:
        _multivariate(p, batch, clip_z, settings.multivariate.variance)
    return p


def _calibration(p: Profile, scores: np.ndarray, errors: np.ndarray, binary: np.ndarray, least: int,
                 clip_z: float) -> None:
    """The scores' calibration from the labeled rows (at least ``least`` of them, as the
    service needs joined labels), and the estimated accuracy's reference on all rows."""
    ok = (scores >= 0) & (scores <= 1)
    labeled = ok & binary & ~np.isnan(errors)
    if labeled.sum() < least:
        return
    right = errors[labeled] == 0
    y = np.where(right, scores[labeled] >= 0.5, scores[labeled] < 0.5).astype(float)
    cal = Calibration.fit(scores[labeled], y)
    p.calibration = cal.to_profile()
    p.signals[ESTIMATE], p.extra[ESTIMATE] = signal_ref(cal.expected_correct(scores[ok]), clip_z)


def _multivariate(p: Profile, batch: ModelBatch, clip_z: float, variance: float) -> None:
    """The PCA of the standardized numeric features, and its errors' reference."""
    names = [f for f in batch.numeric if f"feature:{f}" in p.signals]
    if len(names) < 2:
        return
    mean = np.array([p.signals[f"feature:{f}"].mean for f in names])
    sd = np.array([p.signals[f"feature:{f}"].sd for f in names])
    X = np.column_stack([batch.numeric[f] for f in names])
    rec = Reconstruction(0, variance, clip_z)
    rec.use(names, mean, sd, np.zeros((len(names), 0)))
    has = ~np.isnan(X).all(axis=1)
    Z = rec.standardized(X[has])
    W = fit(Z, variance)
    e = errors(Z, W)
    if e.size >= 2:
        p.signals[SIGNAL], p.extra[SIGNAL] = signal_ref(e, clip_z)
        p.multivariate = {"features": names, "mean": mean.tolist(), "sd": sd.tolist(), "W": W.tolist()}


def _categories(col: list) -> dict[str, float]:
    """Shares of the top categories (the rest pooled as __other__)."""
    values, counts = np.unique(np.array([v for v in col if v is not None], dtype=object).astype(str),
                               return_counts=True)
    total = counts.sum()
    order = np.argsort(-counts, kind="stable")
    top = {str(values[i]): float(counts[i] / total) for i in order[:MAX_CATEGORIES]}
    top[OTHER] = float(1 - sum(top.values())) if total else 0.0
    return top


def _indicator(col: list, present: np.ndarray, category: str, cats: dict[str, float]) -> np.ndarray:
    if category == OTHER:
        v = np.array([1.0 if c is not None and c not in cats else 0.0 for c in col])
    else:
        v = np.array([1.0 if c == category else 0.0 for c in col])
    v[~present] = np.nan
    return v


def _numeric_feature(x: np.ndarray) -> FeatureRef:
    """Missing rate, and the stuck and spread checks' rates over pairs of values."""
    v = x[~np.isnan(x)]
    m = v.size // 2 * 2
    first, second = v[0:m:2], v[1:m:2]
    change = np.abs(second - first)
    moved = change[change > 0]
    median = float(np.median(moved)) if moved.size else None
    return FeatureRef("number", float(np.isnan(x).mean()),
                      float((first == second).mean()) if m else None, median,
                      float((moved > median).mean()) if moved.size else None, int(m // 2))
