"""Synthetic streams with known structure, shared by detector tests (seeded, deterministic)."""

from __future__ import annotations

import numpy as np


def make_stream(kind: str, n: int, d: int, seed: int) -> np.ndarray:
    """A (n, d) float64 stream of one named kind; drift, when any, starts at n // 2."""
    rng = np.random.default_rng(seed)
    half = n // 2
    if kind == "mean_shift":
        X = rng.normal(0, 1, (n, d))
        X[half:] += rng.uniform(0.5, 3, d)
    elif kind == "variance_jump":
        X = rng.normal(0, 1, (n, d))
        X[half:] *= 4.0
    elif kind == "gradual":
        X = rng.normal(0, 1, (n, d)) + np.clip((np.arange(n) - half) / (n / 4), 0, 1)[:, None] * 2
    elif kind == "errors01":
        p = np.where(np.arange(n) < half, 0.1, 0.35)[:, None]
        X = (rng.random((n, d)) < p).astype(float)
    elif kind == "heavy_tails":
        X = rng.standard_t(1.5, (n, d))
        X[half:] += 2
    elif kind == "constant":
        X = np.full((n, d), 3.25)
    elif kind == "huge_offset":
        X = 1e9 + rng.normal(0, 1, (n, d))
        X[half:] += 2
    elif kind == "random_walk":
        X = np.cumsum(rng.normal(0, 1, (n, d)), axis=0)
    else:
        raise ValueError(kind)
    return X


KINDS = ["mean_shift", "variance_jump", "gradual", "errors01", "heavy_tails", "constant",
         "huge_offset", "random_walk"]


def with_nans(X: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = X.copy()
    X[rng.random(X.shape) < fraction] = np.nan
    return X
