"""Seasonal profiles: expected periodic change must not page anyone; a real change must.

For a model's seasonal signals (``[models.<name>.seasonality]``) the reference is a curve over
the phase of the ``period`` (e.g. the hour of the day): continuous and piecewise linear, with
one knot at the centre of each of ``bins`` phase bins, fitted by least squares to every value
of the first ``periods`` whole periods (and until each segment between two knots holds
``min_per_bin`` values). A smooth cycle therefore leaves a flat residual whatever the number of
events per bin (a per-bin mean would leave the change within each bin: a sawtooth). The
spread is each segment's residual standard deviation. From then on the detectors see the
de-seasonalised, standardized residual ``(x - curve(phase)) / sd(segment)`` (clipped), so the
daily swing raises nothing while a level shift on top of it shows as a shift of the residual.
The profile is frozen once learned (like the reference of non-seasonal signals), so slow drift
of the cycle itself is also a change. Its first ``warmup`` residuals are not scored: they tell
how dependent the residuals are (their autocorrelation time, see
:mod:`stream.monitor.dependence`; weather makes a day's residuals alike).

The fit needs no stored values: per segment, the sums of the basis products (``(1-w)^2``,
``w (1-w)``, ``w^2``), of the basis times the value and of the squared values, accumulated in
arrival order (so that the profile does not depend on how the stream was cut into batches).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dependence import autocorrelation_time

# per-segment sums: n, S00 = sum (1-w)^2, S01 = sum w(1-w), S11 = sum w^2, Y0 = sum (1-w) y,
# Y1 = sum w y, YY = sum y^2, with y = x - shift (the column's first value, for scale)
_SUMS = ("n", "s00", "s01", "s11", "y0", "y1", "yy")


class SeasonalProfile:
    """Seasonal reference of a growing set of columns; turns raw values into residual z-scores.

    Parameters
    ----------
    period_s : the period, in seconds of event time.
    bins : knots of the curve per period (>= 2).
    min_per_bin : values each segment needs before the profile is used.
    clip_z : residual z-scores are clipped to +-clip_z.
    periods : whole periods the profile learns from, at least.
    warmup : residuals, after that, whose autocorrelation time is learned (not scored).
    """

    def __init__(self, period_s: float, bins: int, min_per_bin: int, clip_z: float,
                 periods: int = 3, warmup: int = 1000) -> None:
        self.period_s, self.bins, self.min_per_bin, self.clip_z = period_s, bins, min_per_bin, clip_z
        self.periods, self.warmup = periods, warmup
        self.columns: list[int] = []                # registry column of each profile column
        for name in _SUMS:
            setattr(self, name, np.zeros((bins, 0)))
        self.shift = np.zeros(0)
        self.first_ts = np.zeros(0)                 # event time of the first value (NaN: none)
        self.ready = np.zeros(0, dtype=bool)
        self.knots = np.zeros((bins, 0))            # curve value at each bin centre (minus shift)
        self.sd = np.ones((bins, 0))                # residual sd of each segment
        self.res_n = np.zeros(0, dtype=np.int64)    # residuals learned (<= warmup)
        self.res_values = np.zeros((warmup, 0))     # those residuals, in arrival order
        self.tau = np.ones(0)                       # their autocorrelation time (once learned)

    _ARRAYS = (*_SUMS, "shift", "first_ts", "ready", "knots", "sd", "res_n", "res_values", "tau")

    def add_column(self, registry_column: int) -> None:
        self.columns.append(registry_column)
        grow = lambda a, v: np.concatenate([a, np.full((self.bins, 1), v)], axis=1)
        for name in _SUMS:
            setattr(self, name, grow(getattr(self, name), 0.0))
        self.knots, self.sd = grow(self.knots, 0.0), grow(self.sd, 1.0)
        self.shift = np.append(self.shift, 0.0)
        self.first_ts = np.append(self.first_ts, np.nan)
        self.ready = np.append(self.ready, False)
        self.res_n = np.append(self.res_n, 0)
        self.res_values = np.concatenate([self.res_values, np.zeros((self.warmup, 1))], axis=1)
        self.tau = np.append(self.tau, 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"columns": list(self.columns), **{name: getattr(self, name) for name in self._ARRAYS}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.columns = list(state["columns"])
        k = len(self.columns)
        # (a state saved without the residuals' dependence: learned, independent)
        missing = {"res_n": np.full(k, self.warmup, dtype=np.int64), "res_values": np.zeros((self.warmup, k)),
                   "tau": np.ones(k)}
        for name in self._ARRAYS:
            setattr(self, name, state[name] if name in state else missing[name])

    def reset(self, c: int) -> None:
        """Profile column c learns again from its next values (re-baselined)."""
        for name in (*_SUMS, "knots"):
            getattr(self, name)[:, c] = 0.0
        self.sd[:, c] = 1.0
        self.first_ts[c], self.ready[c] = np.nan, False
        self.res_n[c], self.tau[c] = 0, 1.0

    def _segments(self, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each time's segment (the knot at its left, 0..bins-1) and its weight w in [0, 1)
        towards the next knot."""
        u = np.mod(ts, self.period_s) / self.period_s * self.bins - 0.5
        left = np.floor(u)
        return np.mod(left, self.bins).astype(np.int64), u - left

    def residuals(self, X: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """X (n, k) raw values of the profile's columns -> clipped residual z (NaN = not
        scored), and the columns whose residuals' autocorrelation time was learned now."""
        seg, w = self._segments(ts)
        valid = ~np.isnan(X)
        learn = valid & ~self.ready[None, :]
        scored = valid & self.ready[None, :]
        for c in np.flatnonzero(learn.any(axis=0)):
            rows = np.flatnonzero(learn[:, c])
            if np.isnan(self.first_ts[c]):
                self.first_ts[c], self.shift[c] = ts[rows[0]], X[rows[0], c]
            # the row from which the profile is complete: learned up to it, scored after
            counts = np.zeros((rows.size, self.bins))
            counts[np.arange(rows.size), seg[rows]] = 1.0
            enough = (np.cumsum(counts, axis=0) + self.n[:, c] >= self.min_per_bin).all(axis=1)
            done = enough & (ts[rows] >= self.first_ts[c] + self.periods * self.period_s)
            last = int(done.argmax()) if done.any() else rows.size - 1
            used = rows[:last + 1]
            s, wu = seg[used], w[used]
            y = X[used, c] - self.shift[c]
            for name, v in (("n", 1.0), ("s00", (1 - wu) ** 2), ("s01", wu * (1 - wu)), ("s11", wu * wu),
                            ("y0", (1 - wu) * y), ("y1", wu * y), ("yy", y * y)):
                np.add.at(getattr(self, name)[:, c], s, v)
            if done.any():
                self._fit(c)
                scored[rows[last + 1:], c] = True
        right = (seg + 1) % self.bins
        curve = (1 - w)[:, None] * self.knots[seg] + w[:, None] * self.knots[right] + self.shift
        Z = (X - curve) / self.sd[seg]
        Z[~scored] = np.nan
        np.clip(Z, -self.clip_z, self.clip_z, out=Z)
        learned = []
        for c in np.flatnonzero(self.ready & (self.res_n < self.warmup)).tolist():
            rows = np.flatnonzero(scored[:, c])[: self.warmup - int(self.res_n[c])]
            start = int(self.res_n[c])
            self.res_values[start:start + rows.size, c] = Z[rows, c]
            self.res_n[c] += rows.size
            Z[rows, c] = np.nan
            if self.res_n[c] >= self.warmup:
                self.tau[c] = autocorrelation_time(self.res_values[:, c])
                learned.append(c)
        return Z, learned

    def _fit(self, c: int) -> None:
        """Least-squares knots of column c from its sums, and each segment's residual sd."""
        B = self.bins
        left, right = np.arange(B), (np.arange(B) + 1) % B
        A = np.zeros((B, B))
        np.add.at(A, (left, left), self.s00[:, c])
        np.add.at(A, (right, right), self.s11[:, c])
        np.add.at(A, (left, right), self.s01[:, c])
        np.add.at(A, (right, left), self.s01[:, c])
        r = np.zeros(B)
        np.add.at(r, left, self.y0[:, c])
        np.add.at(r, right, self.y1[:, c])
        A[np.diag_indices(B)] += 1e-9 * max(float(np.trace(A)) / B, 1e-300)
        k = np.linalg.solve(A, r)
        kl, kr = k[left], k[right]
        rss = (self.yy[:, c] - 2 * (kl * self.y0[:, c] + kr * self.y1[:, c])
               + kl * kl * self.s00[:, c] + 2 * kl * kr * self.s01[:, c] + kr * kr * self.s11[:, c])
        var = np.maximum(rss, 0.0) / np.maximum(self.n[:, c] - 1, 1)
        scale = max(1.0, abs(float(self.shift[c])))
        self.knots[:, c] = k
        self.sd[:, c] = np.maximum(np.sqrt(var), 1e-9 * scale)
        self.ready[c] = True

    @property
    def learned(self) -> np.ndarray:
        """Values each column learned from (its reference size)."""
        return self.n.sum(axis=0)
