"""Streams of the kinds the service must judge right (seeded): stable ones that must stay quiet
(Gaussian, heavy-tailed, discrete, real data resampled, seasonal at several rates) and planted
faults that must fire (persistent and transient shifts, a new category, seasonal shifts).

Each stream is a list of event dicts in time order; ``replay(events)`` returns the alerts of one
pipeline over them (batches of ``batch``).
"""

from __future__ import annotations

import numpy as np
import orjson

from stream.config import load_settings
from stream.pipeline import Pipeline
from stream.types import Message

T0 = 1.7e9
DAY = 86400.0


def replay(evs: list[dict], batch: int = 5000, settings=None, config: str | None = None) -> list[dict]:
    pipeline = Pipeline(settings or load_settings(config, env={}))
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(evs)]
    alerts: list[dict] = []
    for s in range(0, len(msgs), batch):
        alerts += pipeline.process(msgs[s:s + batch]).alerts
    return alerts


def table(X: np.ndarray, names: list[str] | None = None, model: str = "m", dt: float = 1.0,
          cats: dict[str, np.ndarray] | None = None) -> list[dict]:
    """Events from a (n, k) matrix (NaN: the feature is null) and categorical columns."""
    names = names or [f"f{i}" for i in range(X.shape[1])]
    rows = X.tolist()
    extra = {k: v.tolist() for k, v in (cats or {}).items()}
    out = []
    for i, row in enumerate(rows):
        feats = {n: (None if v != v else v) for n, v in zip(names, row, strict=True)}
        for k, v in extra.items():
            feats[k] = v[i]
        out.append({"model": model, "ts": T0 + i * dt, "features": feats})
    return out


def stable_kinds(n: int, seed: int) -> dict[str, np.ndarray]:
    """Stationary i.i.d. columns of many shapes (each a (n,) array)."""
    rng = np.random.default_rng(seed)
    zi = np.where(rng.random(n) < 0.95, 0.0, rng.exponential(100.0, n))
    return {
        "gauss": rng.normal(10, 2, n),
        "student_t2": rng.standard_t(2, n),
        "lognormal": rng.lognormal(0, 1.5, n),
        "pareto": rng.pareto(1.5, n),
        "poisson_small": rng.poisson(0.2, n).astype(float),
        "counts": rng.poisson(3, n).astype(float),
        "zero_inflated": zi,
        "binary_rare": (rng.random(n) < 0.01).astype(float),
        "rounded": np.round(rng.normal(50, 5, n)),
        "uniform_int": rng.integers(0, 5, n).astype(float),
        "spiky": np.where(rng.random(n) < 0.002, 1e4, rng.normal(0, 1, n)),
    }


def shifted(n: int, at: int, until: int | None, shift_sd: float, seed: int, k: int = 5) -> list[dict]:
    """k Gaussian features; f0 moves by shift_sd from event ``at`` (to ``until``)."""
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1, (n, k)) * 3 + 20
    X[at:until, 0] += shift_sd * 3
    return table(X)


def new_category(n: int, at: int, share: float, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cat = rng.choice(["a", "b", "c"], n, p=[0.5, 0.3, 0.2]).astype(object)
    late = rng.random(n) < share
    cat[at:][late[at:]] = "zz"
    return table(rng.normal(0, 1, (n, 2)), cats={"channel": cat})


def seasonal(per_day: float, days: float, amplitude_sd: float, seed: int, shift_at_day: float | None = None,
             shift_sd: float = 1.0, period: float = DAY, noise_phi: float = 0.0) -> list[dict]:
    """One feature with a daily cycle (a sine plus its second harmonic) and N(0, 1) noise (an
    AR(1) series with lag-1 correlation ``noise_phi``, when given: weather on top of the cycle)."""
    rng = np.random.default_rng(seed)
    n = int(per_day * days)
    t = T0 + np.sort(rng.uniform(0, days * DAY, n))
    phase = 2 * np.pi * (t % period) / period
    noise = ar1(n, noise_phi, seed) if noise_phi else rng.normal(0, 1, n)
    x = 100 + amplitude_sd * (np.sin(phase) + 0.3 * np.cos(2 * phase)) + noise
    if shift_at_day is not None:
        x[t >= T0 + shift_at_day * DAY] += shift_sd
    return [{"model": "grid", "ts": float(ti), "features": {"load": float(xi)}}
            for ti, xi in zip(t, x, strict=True)]


SEASONAL_CONFIG = '[models.grid.seasonality]\nperiod = "1d"\nbins = 24\n'


def ar1(n: int, phi: float, seed: int) -> np.ndarray:
    """A stationary AR(1) series of unit variance: x[i] = phi x[i-1] + noise."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0, np.sqrt(1 - phi * phi), n)
    x = np.empty(n)
    x[0] = rng.normal()
    for i in range(1, n):
        x[i] = phi * x[i - 1] + e[i]
    return x


def dependent_kinds(n: int, seed: int) -> dict[str, np.ndarray]:
    """Stationary series whose consecutive values are correlated (one sensor's, one account's):
    AR(1) at several strengths, heavy-tailed, with missing values, discrete, counts, a flag that
    stays on or off for ~100 values at a time."""
    rng = np.random.default_rng(seed)
    t3 = np.empty(n)
    e = rng.standard_t(3, n)
    t3[0] = 0.0
    for i in range(1, n):
        t3[i] = 0.9 * t3[i - 1] + e[i]
    missing = ar1(n, 0.9, seed + 1)
    missing[rng.random(n) < 0.3] = np.nan
    flag = np.cumsum(rng.random(n) < 0.01) % 2
    return {
        "ar05": ar1(n, 0.5, seed + 2), "ar08": ar1(n, 0.8, seed + 3), "ar09": ar1(n, 0.9, seed + 4),
        "ar097": ar1(n, 0.97, seed + 5), "t3_ar09": t3, "ar09_missing": missing,
        "rounded_ar08": np.round(3 * ar1(n, 0.8, seed + 6)),
        "counts_ar09": rng.poisson(np.exp(0.5 + ar1(n, 0.9, seed + 7))).astype(float),
        "flag": flag.astype(float),
    }
