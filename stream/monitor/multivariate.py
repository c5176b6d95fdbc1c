"""The joint distribution of a model's numeric features: PCA reconstruction error.

Every feature can look the same on its own while the way they move together changes (a
correlation that breaks, a new combination of values). On the reference (the training
profile's, or the first ``warmup`` production rows once the features' own references are
set) the numeric features are standardized by those references (a missing value counts as
the reference mean), a PCA keeps the components that explain ``variance`` of it, and from then on each row's
reconstruction error ``|z - W W^T z|`` is the signal ``multivariate:reconstruction``, watched
like the others (kind ``data_drift``). One matrix product per model and batch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dependence import DAY_EXTEND, short_of_a_day, store_strided

SIGNAL = "multivariate:reconstruction"


def fit(Z: np.ndarray, variance: float) -> np.ndarray:
    """The (features, k) principal axes of standardized rows Z that explain ``variance``."""
    Z = Z - Z.mean(axis=0)
    _, s, vt = np.linalg.svd(Z, full_matrices=False)
    share = np.cumsum(s * s) / max(float((s * s).sum()), 1e-300)
    k = int(np.searchsorted(share, variance) + 1)
    return vt[:min(k, vt.shape[0])].T.copy()


# Z, W and the projections are rounded to this grid: each product is then a multiple of
# 1/GRID^2 and every sum of them is exact while below 2^53 / GRID^2 (|z| sqrt(features) < 2^13:
# at clip_z 5, any number of features up to the limit), so a row's error is the same in
# whatever order BLAS sums, whatever the batch around it
_GRID = 2.0 ** 20


def _on_grid(A: np.ndarray) -> np.ndarray:
    return np.round(A * _GRID) / _GRID


def residuals(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Each row's residual ``z - W W^T z`` (Z: standardized rows, missing values 0), on the
    grid of 1/_GRID (1e-6 sd): exact, so it does not depend on the rows computed with it."""
    Zg, Wg = _on_grid(Z), _on_grid(W)
    return Zg - _on_grid(Zg @ Wg) @ Wg.T


def errors(Z: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Each row's reconstruction error ``|z - W W^T z|`` (see :func:`residuals`)."""
    R = residuals(Z, W)
    return np.sqrt(np.einsum("ij,ij->i", R, R))


class Reconstruction:
    """A model's reconstruction-error signal: the reference rows, the axes, the errors.

    Parameters
    ----------
    warmup : rows of the reference (when no profile gives the axes).
    variance : share of the reference's variance the kept components explain.
    clip_z : standardized values are clipped to +-clip_z (one wild value cannot dominate).
    """

    def __init__(self, warmup: int, variance: float, clip_z: float) -> None:
        self.warmup, self.variance, self.clip_z = warmup, variance, clip_z
        self.features: list[str] = []        # the numeric features (the reference rows' columns)
        self.mean = np.zeros(0)
        self.sd = np.ones(0)
        self.W: np.ndarray | None = None     # (features, k), once fitted
        self.rows = np.zeros((0, 0))         # reference rows collected so far (every stride-th)
        self.seen = 0                        # rows collected so far
        self.stride = 1
        self.first_ts = float("nan")         # event time of the first
        self.day = False                     # collecting on to a day (see learn)
        self.excluded: set[str] = set()      # features left out of the fit (a fault at its reference)

    @property
    def fitted(self) -> bool:
        return self.W is not None

    @property
    def complete(self) -> bool:
        """Whether the kept components are as many as the features (e.g. two independent
        ones): every row is its own reconstruction, and there is no joint signal."""
        return self.W is not None and self.W.shape[1] >= self.W.shape[0]

    def state_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "mean": self.mean, "sd": self.sd, "rows": self.rows,
                "W": self.W if self.W is not None else np.zeros((0, 0)), "excluded": sorted(self.excluded),
                "seen": self.seen, "stride": self.stride, "first_ts": self.first_ts, "day": self.day}

    def load_state(self, state: dict[str, Any]) -> None:
        self.features = list(state["features"])
        self.excluded = set(state.get("excluded", ()))
        self.mean, self.sd, self.rows = state["mean"], state["sd"], state["rows"]
        self.W = state["W"] if state["W"].size else None
        # (a state without a count: its rows are all it saw)
        self.seen = int(state.get("seen", self.rows.shape[0]))
        self.stride, self.day = int(state.get("stride", 1)), bool(state.get("day", False))
        self.first_ts = float(state.get("first_ts", float("nan")))

    def use(self, features: list[str], mean: np.ndarray, sd: np.ndarray, W: np.ndarray) -> None:
        """Axes given (a training profile's)."""
        self.features, self.mean, self.sd, self.W = list(features), mean, sd, W

    def standardized(self, X: np.ndarray) -> np.ndarray:
        """Rows of the features' raw values (rows, features) standardized and clipped, missing -> 0."""
        Z = np.clip((X - self.mean) / self.sd, -self.clip_z, self.clip_z)
        return np.where(np.isnan(Z), 0.0, Z)

    def learn(self, names: list[str], X: np.ndarray, mean: np.ndarray, sd: np.ndarray,
              ts: np.ndarray) -> int:
        """Collect reference rows: raw values (rows, len(names)) of the model's numeric features
        (names only grow, a new one at the end) at event times ``ts``, rows with no value
        skipped. At ``warmup`` rows (if they span less than a day that ``DAY_EXTEND`` times as
        many would, at every ``warmup`` more until they span one, keeping ``warmup`` of them
        at even steps: see :func:`store_strided`) the features present in at least half of the
        rows kept and not constant are standardized by their own references (``mean``, ``sd``:
        the features' now), sorted by name, and their PCA is fitted (the ``excluded`` left
        out); with fewer than two such features the rows are dropped and collection starts
        over. Every decision depends on the rows alone, never on batch boundaries. Returns how
        many rows of X it took (the errors start after them)."""
        if len(names) > len(self.features):
            grow = len(names) - len(self.features)
            self.rows = np.concatenate([self.rows, np.full((self.rows.shape[0], grow), np.nan)], axis=1)
            self.features = list(names)
        has = np.flatnonzero(~np.isnan(X).all(axis=1))
        last, W = 0, self.warmup
        while has.size:
            if self.first_ts != self.first_ts:
                self.first_ts = float(ts[has[0]])
            take, has = has[:W - self.seen % W], has[W - self.seen % W:]
            if self.day:
                self.stride = store_strided(self.rows, self.stride, self.seen, X[take])
            else:
                self.rows = np.concatenate([self.rows, X[take]])
            self.seen += take.size
            last = int(take[-1]) + 1
            if self.seen % W:
                continue
            if self.seen < DAY_EXTEND * W and short_of_a_day(float(ts[take[-1]]) - self.first_ts,
                                                              self.seen, DAY_EXTEND * W, self.day):
                self.day = True                  # (its buffer holds W rows from now on)
                continue
            self.rows = self.rows[: (self.seen - 1) // self.stride + 1]
            if self._fit(mean, sd):
                return last
        return X.shape[0] if not self.fitted else last

    def _fit(self, mean: np.ndarray, sd: np.ndarray) -> bool:
        """Fit on the collected rows (see :meth:`learn`); False: too few features, start over."""
        R = self.rows
        present = (~np.isnan(R)).mean(axis=0) >= 0.5
        varies = np.array([np.ptp(R[~np.isnan(R[:, i]), i]) > 0 if present[i] else False
                           for i in range(R.shape[1])], dtype=bool)
        keep = [i for i in np.argsort(np.array(self.features, dtype=object), kind="stable")
                if present[i] and varies[i] and self.features[i] not in self.excluded]
        if len(keep) < 2:
            self.rows = np.zeros((0, len(self.features)))
            self.seen, self.stride, self.first_ts, self.day = 0, 1, float("nan"), False
            return False
        self.features = [self.features[i] for i in keep]
        self.mean, self.sd = np.asarray(mean, dtype=float)[keep], np.asarray(sd, dtype=float)[keep]
        self.W = fit(self.standardized(R[:, keep]), self.variance)
        self.rows = np.zeros((0, 0))
        self.seen, self.stride, self.day = 0, 1, False
        return True

    def contributions(self, X: np.ndarray, top: int = 3) -> list[str]:
        """The features whose residuals make most of these rows' errors."""
        R = residuals(self.standardized(X), self.W)
        share = (R * R).mean(axis=0)
        return [self.features[i] for i in np.argsort(-share, kind="stable")[:top]]
