"""Seasonal profiles: expected periodic change must not page anyone; a real change must.

For a model's seasonal signals (``[models.<name>.seasonality]``), each event's time falls in
one of ``bins`` phase bins of the ``period`` (e.g. 24 hourly bins of a day). A per-bin mean and
spread is learned from the signal's first values until every bin has ``min_per_bin`` of them;
from then on the detectors see the de-seasonalised, standardized residual
(x - mean[bin]) / sd[bin] (clipped), so a daily swing raises nothing while a level shift on top
of it shows as a shift of the residual. The profile is frozen once learned (like the global
reference of non-seasonal signals), so slow drift of the cycle itself is also detected.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class SeasonalProfile:
    """Per-bin reference of a growing set of columns; turns raw values into residual z-scores."""

    def __init__(self, period_s: float, bins: int, min_per_bin: int, clip_z: float) -> None:
        self.period_s, self.bins, self.min_per_bin, self.clip_z = period_s, bins, min_per_bin, clip_z
        self.columns: list[int] = []                # registry column of each profile column
        self.n = np.zeros((bins, 0))
        self.s1 = np.zeros((bins, 0))               # sums of (x - shift)
        self.s2 = np.zeros((bins, 0))               # sums of (x - shift)^2
        self.shift = np.zeros(0)                    # first value seen: keeps sums well scaled
        self.has_shift = np.zeros(0, dtype=bool)
        self.ready = np.zeros(0, dtype=bool)
        self.mean = np.zeros((bins, 0))
        self.sd = np.ones((bins, 0))

    def add_column(self, registry_column: int) -> None:
        self.columns.append(registry_column)
        grow = lambda a, v: np.concatenate([a, np.full((self.bins, 1), v)], axis=1)
        self.n, self.s1, self.s2 = grow(self.n, 0.0), grow(self.s1, 0.0), grow(self.s2, 0.0)
        self.mean, self.sd = grow(self.mean, 0.0), grow(self.sd, 1.0)
        self.shift = np.append(self.shift, 0.0)
        self.has_shift = np.append(self.has_shift, False)
        self.ready = np.append(self.ready, False)

    _ARRAYS = ("n", "s1", "s2", "shift", "has_shift", "ready", "mean", "sd")

    def state_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), **{name: getattr(self, name) for name in self._ARRAYS}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.columns = list(state["columns"])
        for name in self._ARRAYS:
            setattr(self, name, state[name])

    def phase_bin(self, ts: np.ndarray) -> np.ndarray:
        b = np.floor(np.mod(ts, self.period_s) / (self.period_s / self.bins)).astype(np.int64)
        return np.clip(b, 0, self.bins - 1)

    def residuals(self, X: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """X (n, k) raw values of the profile's columns -> clipped residual z (NaN = not scored)."""
        b = self.phase_bin(ts)
        valid = ~np.isnan(X)
        learn = valid & ~self.ready[None, :]
        scored = valid & self.ready[None, :]
        for c in np.flatnonzero(learn.any(axis=0)):
            rows = np.flatnonzero(learn[:, c])
            if not self.has_shift[c]:
                self.shift[c], self.has_shift[c] = X[rows[0], c], True
            # the row at which every bin has min_per_bin values: learned up to it, scored after
            counts = self.n[:, c].copy()
            need = np.maximum(self.min_per_bin - counts, 0)
            onehot = np.zeros((rows.size, self.bins))
            onehot[np.arange(rows.size), b[rows]] = 1.0
            reached = (np.cumsum(onehot, axis=0) >= need).all(axis=1)
            last = int(reached.argmax()) if reached.any() else rows.size - 1
            used = rows[:last + 1]
            v = X[used, c] - self.shift[c]
            np.add.at(self.n[:, c], b[used], 1.0)
            np.add.at(self.s1[:, c], b[used], v)
            np.add.at(self.s2[:, c], b[used], v * v)
            if reached.any():
                n, s1, s2 = self.n[:, c], self.s1[:, c], self.s2[:, c]
                self.mean[:, c] = self.shift[c] + s1 / n
                var = np.maximum(s2 - s1 * s1 / n, 0.0) / (n - 1)
                self.sd[:, c] = np.maximum(np.sqrt(var), 1e-9 * np.maximum(1.0, np.abs(self.mean[:, c])))
                self.ready[c] = True
                scored[rows[last + 1:], c] = True
        Z = (X - self.mean[b]) / self.sd[b]
        Z[~scored] = np.nan
        np.clip(Z, -self.clip_z, self.clip_z, out=Z)
        return Z
