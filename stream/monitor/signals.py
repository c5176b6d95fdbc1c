"""Per-model signals: which columns exist, and their standardization.

A model's signals are its numeric features ("feature:<name>"), the indicator of each string
category ("feature:<name>=<category>", top-K per feature, the rest pooled as "__other__")
and its numeric prediction ("prediction"). Column j of every detector of the model is signal j.

Standardization: river's thresholds are absolute (PH threshold 50, ADWIN's additive term), so
each signal is fed as z = (x - mean) / sd, clipped to +-clip_z, with mean and sd learned on its
first ``warmup`` values. Values during the warm-up only train the reference; detection starts
after. A warm-up that cannot be a reference learns on, a warm-up at a time up to ``EXTEND``
(:func:`_learn_on`): one of fewer than ``EFFECTIVE`` independent values' worth (a dependent
signal's), two values in fewer than ``RUNS`` runs of each (a flag on in a few bursts), or one
whose parts' means differ more than its dependence allows (it saw part of a cycle longer
than itself, whose autocorrelations within it can look independent).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..config import SeasonalitySettings
from ..types import ModelBatch
from .dependence import (
    DAY_EXTEND,
    EXTEND,
    MIN_TAU,
    RUNS,
    BlockMeans,
    autocorrelation_time,
    flips,
    parts_spread,
    parts_time,
    short_of_a_day,
    step_at,
    store_strided,
    strided_tau,
    two_state,
    two_state_time,
)
from .seasonal import SeasonalProfile

OTHER = "__other__"
RECENT = 100          # raw values kept per signal for the "after" statistics of an alert
OUTLIER_MADS = 30.0   # warm-up values beyond this many robust sd's count as at that distance
EFFECTIVE = 100       # a reference learns from this many independent values' worth (n / tau)


def _learn_on(cz: np.ndarray, tau: float) -> bool:
    """Whether a warm-up's clipped z-scores (arrival order, autocorrelation time ``tau``) are
    too few to be a reference: fewer than ``EFFECTIVE`` independent values' worth, two values
    in fewer than ``RUNS`` runs of each (a flag on in a few bursts: neither its rate nor its
    runs' length is known), or the means of its ``SEGMENTS`` consecutive parts further apart
    than its ``tau`` allows (:func:`parts_spread`)."""
    n = cz.size
    if n < EFFECTIVE * tau:
        return True
    high = two_state(cz)
    if high is not None and flips(high) < 2 * RUNS:
        return True
    return parts_spread(cz, tau)


def reference(warm: np.ndarray) -> tuple[float, float, float]:
    """(mean, sum of squared deviations, sd) of a signal's warm-up values, the reference
    its z-scores are taken against.

    Gross outliers are pulled in first: values more than OUTLIER_MADS robust standard
    deviations (1.4826 x the median absolute deviation) from the median count as at that
    distance. Normal data is untouched (30 sd: never), heavy tails nearly so, but one
    glitch (a 1e6, a unit error) cannot set the scale so large that the signal's z-scores
    stay near 0 and it never alarms. When most values
    are one value (MAD 0, e.g. a rare flag) the values are used as they are. The sd is
    computed scaled, so that it is finite for any finite values, and at least 1e-9 of the
    mean's size (a constant signal that starts to vary is then a change). For values that
    need no pulling in, exactly the plain mean and sd.
    """
    median = float(np.median(warm))
    mad = float(np.median(np.abs(warm - median)))
    if mad > 0:
        reach = OUTLIER_MADS * 1.4826 * mad
        warm = np.clip(warm, median - reach, median + reach)
    mean = float(warm.mean())
    dev = warm - mean
    with np.errstate(over="ignore"):
        m2 = float((dev ** 2).sum())
    if np.isfinite(m2):
        sd = float(np.sqrt(m2 / (warm.size - 1)))
    else:                                # squares past 1e308: the same sd, scaled
        scale = float(np.abs(dev).max())
        sd = scale * float(np.sqrt(((dev / scale) ** 2).sum() / (warm.size - 1)))
    return mean, m2, max(sd, 1e-9 * max(1.0, abs(mean)))


class SignalRegistry:
    """Signals of one model: names, column indices, reference statistics, recent values."""

    def __init__(self, max_signals: int, warmup: int, clip_z: float, max_categories: int = 32,
                 season: SeasonalitySettings | None = None, day_reach: int = 0) -> None:
        self.max_signals = max_signals
        # values a reference may learn on to for a day
        self.day_reach = day_reach or DAY_EXTEND * warmup
        self.season = season
        self.profile = None if season is None else SeasonalProfile(
            season.period_s, season.bins, season.min_per_bin, clip_z, season.periods, warmup)
        self.warmup = warmup
        self.clip_z = clip_z
        self.max_categories = max_categories
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.categories: dict[str, dict[str, int]] = {}     # feature -> category -> column
        self.category_seen: dict[str, int] = {}             # feature -> non-null values so far
        self._prior_zeros: list[tuple[int, int]] = []       # (column, zeros it implicitly had)
        self.dropped = 0                                    # signals refused by the limit
        self.n = np.zeros(0)                                # warm-up values seen (<= warmup)
        self.mean = np.zeros(0)
        self.m2 = np.zeros(0)
        self.sd = np.ones(0)
        self.cz_mean = np.zeros(0)                          # the reference's own clipped z-scores:
        self.cz_sd = np.ones(0)                             # their mean and sd (see monitor.drift)
        self.n_profile = np.zeros(0)                        # > 0: the reference is a profile's, of
                                                            # this many training values
        self.known: dict[str, Any] = {}                     # signal -> SignalRef (a profile's)
        self.known_categories: dict[str, list[str]] = {}    # feature key -> categories (a profile's)
        self.recent = np.full((RECENT, 0), np.nan)          # ring of the last raw values
        self.recent_pos = np.zeros(0, dtype=np.int64)
        self.warm_values = np.zeros((warmup, 0))             # warm-up values, until all are done
        self.goal = np.zeros(0)                             # values each reference learns from
        self.first_ts = np.zeros(0)                         # event time of its first one (NaN: none)
        self.for_day = np.zeros(0)                          # 1.0: learning on to a day
        self.stride = np.ones(0)                            # its values kept every stride-th
        self.first_tau = np.ones(0)                         # its first warm-up's tau
        self.stepped: list[int] = []                        # references just ended by a step (a fault)
        self.longer: dict[int, np.ndarray] = {}             # values of the references learning on
        self.longer_ts: dict[int, np.ndarray] = {}          # and their event times (where known),
                                                            # seconds after the first (float32)
        self.live_from = np.zeros(0, dtype=np.int64)        # of the last batch standardized: the
                                                            # row from which each signal is scored
        self.blocks = BlockMeans()                          # serial dependence (autocorrelation)

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def learning(self) -> bool:
        """Whether some signal's reference is still learning (its warm-up wants event times)."""
        return bool((self.n < self.goal).any())

    _ARRAYS = ("n", "mean", "m2", "sd", "cz_mean", "cz_sd", "n_profile", "recent", "recent_pos",
               "warm_values", "goal", "first_ts", "for_day", "stride", "first_tau")

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), "categories": self.categories,
                "category_seen": self.category_seen, "dropped": self.dropped,
                **{name: getattr(self, name) for name in self._ARRAYS},
                "profile": None if self.profile is None else self.profile.state_dict(),
                "blocks": self.blocks.state_dict(),
                "longer": [[j, v[: self._kept(j)]] for j, v in sorted(self.longer.items())],
                "longer_ts": [[j, v[: self._kept(j)]] for j, v in sorted(self.longer_ts.items())]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.names = list(state["names"])
        self.index = {n: i for i, n in enumerate(self.names)}
        self.categories = {k: dict(v) for k, v in state["categories"].items()}
        self.category_seen = dict(state["category_seen"])
        self.dropped = int(state["dropped"])
        for name in self._ARRAYS:
            if name in state:
                setattr(self, name, state[name])
        if "goal" not in state:                 # (a state saved before references learned on)
            self.goal = np.full(self.n.size, float(self.warmup))
        if "first_ts" not in state:             # (a state without first times: no day to span)
            self.first_ts = np.full(self.n.size, np.nan)
            self.for_day = np.zeros(self.n.size)
        if "stride" not in state:               # (a state without strides: every value kept)
            self.stride, self.first_tau = np.ones(self.n.size), np.ones(self.n.size)
        self.longer, self.longer_ts = {}, {}
        for key, kept in (("longer", self.longer), ("longer_ts", self.longer_ts)):
            for j, v in state.get(key, []):     # (a state without times: steps by values alone)
                kept[int(j)] = np.zeros(EXTEND * self.warmup, dtype=v.dtype)
                kept[int(j)][: v.size] = v
        if self.profile is not None and state["profile"] is not None:
            self.profile.load_state(state["profile"])
        self.blocks = BlockMeans()
        if "blocks" in state:
            self.blocks.load_state(state["blocks"])
        else:                                   # (a state saved without them: all independent)
            self.blocks.add(self.size)

    def _add(self, name: str) -> int | None:
        if name in self.index:
            return self.index[name]
        if len(self.names) >= self.max_signals:
            self.dropped += 1
            return None
        self.index[name] = len(self.names)
        self.names.append(name)
        return self.index[name]

    def _grow_arrays(self) -> int:
        k = len(self.names) - self.n.size
        if k:
            self.n = np.concatenate([self.n, np.zeros(k)])
            self.mean = np.concatenate([self.mean, np.zeros(k)])
            self.m2 = np.concatenate([self.m2, np.zeros(k)])
            self.sd = np.concatenate([self.sd, np.ones(k)])
            self.cz_mean = np.concatenate([self.cz_mean, np.zeros(k)])
            self.cz_sd = np.concatenate([self.cz_sd, np.ones(k)])
            self.n_profile = np.concatenate([self.n_profile, np.zeros(k)])
            self.goal = np.concatenate([self.goal, np.full(k, float(self.warmup))])
            self.first_ts = np.concatenate([self.first_ts, np.full(k, np.nan)])
            self.for_day = np.concatenate([self.for_day, np.zeros(k)])
            self.stride = np.concatenate([self.stride, np.ones(k)])
            self.first_tau = np.concatenate([self.first_tau, np.ones(k)])
            self.recent = np.concatenate([self.recent, np.full((RECENT, k), np.nan)], axis=1)
            self.recent_pos = np.concatenate([self.recent_pos, np.zeros(k, dtype=np.int64)])
            self.blocks.add(k)
            if self.warm_values.shape[0] < self.warmup:
                self.warm_values = np.zeros((self.warmup, self.n.size - k))
            self.warm_values = np.concatenate([self.warm_values, np.zeros((self.warmup, k))], axis=1)
            for j in range(self.size - k, self.size):
                if self.names[j] in self.known:          # a training reference: no warm-up
                    self._from_profile(j, self.known[self.names[j]])
        return k

    def ensure(self, names: list[str]) -> int:
        """Register these signal names (if new, within the limit); returns how many were added."""
        for name in names:
            self._add(name)
        return self._grow_arrays()

    def matrix(self, batch: ModelBatch) -> tuple[np.ndarray, int]:
        """Raw (n, D) float64 matrix of this batch's signals (NaN = no value); and how many
        new signals appeared (the caller grows its detectors by that many columns)."""
        cols: list[tuple[int, np.ndarray]] = []
        for name, values in batch.numeric.items():
            new = f"feature:{name}" not in self.index
            j = self._add(f"feature:{name}")
            if j is not None:
                cols.append((j, values))
                if new and self._seasonal(name):
                    self.profile.add_column(j)
        for name, values in batch.categorical.items():
            cols.extend(self._indicators(f"feature:{name}", name, values, self._seasonal(name)))
        if batch.prediction_class is not None:
            cols.extend(self._indicators("prediction", "\x00prediction", batch.prediction_class,
                                         self._seasonal("prediction")))
        elif not np.isnan(batch.prediction).all():
            new = "prediction" not in self.index
            j = self._add("prediction")
            if j is not None:
                cols.append((j, batch.prediction))
                # a score computed from seasonal inputs cycles with them
                if new and self._seasonal("prediction"):
                    self.profile.add_column(j)
        grown = self._grow_arrays()
        for j, zeros in self._prior_zeros:
            # a category first seen now was 0 in every earlier value of its feature: its
            # reference starts from those zeros, so a new category bursting in is a change
            self.n[j], self.mean[j], self.m2[j] = min(zeros, self.warmup), 0.0, 0.0
        self._prior_zeros.clear()
        X = np.full((batch.size, self.size), np.nan)
        for j, values in cols:
            X[:, j] = values
        return X, grown

    def _indicators(self, prefix: str, key: str, values: list, seasonal: bool = False
                    ) -> list[tuple[int, np.ndarray]]:
        """0/1 indicator columns for the categories of one string column (None -> NaN).

        Categories first seen while the feature is still in its warm-up get their own
        indicator (up to ``max_categories``); later ones are pooled in ``__other__``, which
        exists from the feature's first value on, so a category bursting in after the warm-up
        shows as ``__other__`` rising against a reference that knows it was rare.
        ``seasonal``: the feature's mix follows the model's cycle: each new indicator joins
        the seasonal profile.
        """
        arr = np.array([v if v is not None else "" for v in values], dtype=object)
        present = np.array([v is not None for v in values])
        cats = self.categories.get(key)
        before = set(cats.values()) if cats is not None else set()
        if cats is None:
            cats = self.categories[key] = {}
            j = self._add(f"{prefix}={OTHER}")
            if j is not None:
                cats[OTHER] = j
            for c in self.known_categories.get(key, ()):     # the training data's categories
                if c != OTHER and (j := self._add(f"{prefix}={c}")) is not None:
                    cats[c] = j
        seen = self.category_seen.get(key, 0) if key not in self.known_categories else self.warmup
        uniq, inverse = np.unique(arr[present].astype(str), return_inverse=True)
        for u in uniq.tolist():
            if u not in cats and seen < self.warmup and len(cats) <= self.max_categories:
                j = self._add(f"{prefix}={u}")
                if j is not None:
                    cats[u] = j
                    self._prior_zeros.append((j, seen))
        if seasonal:
            for j in sorted(set(cats.values()) - before):
                self.profile.add_column(j)
        if key in self.known_categories:
            self.category_seen[key] = self.warmup
            seen = self.warmup
        self.category_seen[key] = seen + int(present.sum())
        codes = np.full(len(values), -1)
        col_of_uniq = np.array([cats.get(u, cats.get(OTHER, -1)) for u in uniq.tolist()], dtype=np.int64)
        codes[present] = col_of_uniq[inverse] if uniq.size else -1
        out = []
        for j in sorted(set(cats.values())):
            col = np.where(codes == j, 1.0, 0.0)
            col[~present] = np.nan
            out.append((j, col))
        return out

    def standardize(self, X: np.ndarray, ts: np.ndarray | None = None) -> np.ndarray:
        """Learn the reference on warm-up values; return clipped z-scores (NaN elsewhere).

        Seasonal signals (given event times ``ts``) get de-seasonalised residuals instead.
        """
        if X.shape[1] and (self.n >= self.goal).all():
            Z = (X - self.mean) / self.sd        # all signals warm (the steady state): NaN stays NaN
            self.live_from = np.zeros(X.shape[1], dtype=np.int64)
        else:
            B = X.shape[0]
            # per column, the row after its last warm-up value (0: none): the warm-up takes a
            # column's first valid values, so its rows before that are warm-up or missing
            warm_end = np.zeros(X.shape[1], dtype=np.int64)
            learning = np.flatnonzero(self.n < self.goal).tolist()
            if learning:
                # keep the warm-up values themselves and compute the reference in one pass when
                # complete: the result does not depend on how the stream was cut into batches
                done = []
                for j in learning:
                    rows = np.flatnonzero(~np.isnan(X[:, j]))
                    if not rows.size:
                        continue
                    col = X[rows, j]
                    times = ts[rows] if ts is not None else None
                    if times is not None and np.isnan(self.first_ts[j]):
                        self.first_ts[j] = times[0]
                    used = 0
                    while used < col.size and self.n[j] < self.goal[j]:     # (a goal may grow)
                        v = col[used:used + int(self.goal[j] - self.n[j])]
                        start = int(self.n[j])
                        if j in self.longer:
                            stride = int(self.stride[j])
                            self.stride[j] = store_strided(self.longer[j], stride, start, v)
                            if times is None:
                                self.longer_ts.pop(j, None)
                            elif j in self.longer_ts:
                                store_strided(self.longer_ts[j], stride, start,
                                              times[used:used + v.size] - self.first_ts[j])
                        else:
                            self.warm_values[start:start + v.size, j] = v
                        self.n[j] += v.size
                        used += v.size
                        span = float(times[used - 1] - self.first_ts[j]) if times is not None else np.nan
                        if self.n[j] >= self.goal[j] and self._set_reference(j, span):
                            done.append(j)
                    warm_end[j] = rows[used - 1] + 1
                self._share_dependence(done)
                if (self.n >= self.goal).all():
                    self.warm_values = np.zeros((self.warmup, self.n.size))[:0]
            ready = self.n >= self.goal
            Z = (X - self.mean) / self.sd                   # NaN stays NaN
            Z[:, ~ready] = np.nan
            for j in np.flatnonzero(ready & (warm_end > 0)).tolist():
                Z[: warm_end[j], j] = np.nan
            self.live_from = np.where(ready, warm_end, B).astype(np.int64)
        np.clip(Z, -self.clip_z, self.clip_z, out=Z)
        if self.profile is not None and self.profile.columns and ts is not None:
            cols = self.profile.columns
            Z[:, cols], learned = self.profile.residuals(X[:, cols], ts)
            for c in learned:
                self.blocks.set_tau(cols[c], float(self.profile.tau[c]))
        return Z

    def use_profile(self, signals: dict[str, Any], categories: dict[str, dict[str, float]],
                    prefix: str | tuple[str, ...] = "") -> list[int]:
        """Take a profile's references: signals registered later start with theirs (no
        warm-up), and those registered already switch to them; returns the latter's columns.
        ``prefix`` limits it to the signals whose names start with it (e.g. "prediction")."""
        mine = {k: v for k, v in signals.items() if k.startswith(prefix)}
        self.known.update(mine)
        for key, cats in categories.items():
            name = "prediction" if key == "\x00prediction" else f"feature:{key}"
            if name.startswith(prefix):
                self.known_categories[key] = list(cats)
        changed = [self.index[k] for k in mine if k in self.index]
        for j in changed:
            self._from_profile(j, mine[self.names[j]])
        return changed

    def _from_profile(self, j: int, ref: Any) -> None:
        self.n[j], self.mean[j], self.sd[j] = self.warmup, ref.mean, max(ref.sd, 1e-12)
        self.goal[j], self.for_day[j], self.stride[j] = self.warmup, 0.0, 1.0
        self._drop_longer(j)
        self.m2[j] = ref.sd * ref.sd * (ref.n - 1)
        self.cz_mean[j], self.cz_sd[j], self.n_profile[j] = ref.cz_mean, ref.cz_sd, ref.n
        self.blocks.set_tau(j, 1.0)             # (training data's order says nothing of time)

    def _drop_longer(self, j: int) -> None:
        """Signal j learns on no more: its kept values and their times go."""
        self.longer.pop(j, None)
        self.longer_ts.pop(j, None)

    def _values(self, j: int) -> np.ndarray:
        """Signal j's warm-up values kept (every ``stride``-th of a day's: see
        :func:`store_strided`)."""
        return (self.longer[j] if j in self.longer else self.warm_values[:, j])[: self._kept(j)]

    def _kept(self, j: int) -> int:
        """How many of signal j's warm-up values are kept."""
        return (int(self.n[j]) - 1) // int(self.stride[j]) + 1 if self.n[j] > 0 else 0

    def _set_reference(self, j: int, span: float = np.nan) -> bool:
        """Signal j's warm-up is complete: its reference, and how its own values score; or,
        when its values are too few for its dependence, their parts' means spread wider than
        it allows (:func:`_learn_on`: a part of a slow cycle, a slow wander) or their event
        times (``span`` seconds, first to last) fall short of a day within reach
        (:func:`short_of_a_day`), it learns on for one more warm-up (up to ``EXTEND`` in all;
        to a day, up to ``day_reach`` values) and False is returned. A day's learning whose
        values stepped (:func:`step_at`: a fault) ends with the values before the step."""
        n, stride = int(self.n[j]), int(self.stride[j])
        warm = self._values(j)
        times = self.longer_ts[j][: warm.size].astype(np.float64) if j in self.longer_ts else None
        step = step_at(warm, max(self.warmup // stride, 1), t=times) if self.for_day[j] else -1
        final = step >= 0
        if final:                               # a fault: the values before it are the reference
            n, warm = step * stride, warm[:step]
            self.n[j] = self.goal[j] = n
            self.stepped.append(j)
        started, self.for_day[j], self.stride[j] = bool(self.for_day[j]), 0.0, 1.0
        mean, m2, sd = reference(warm)
        cz = np.clip((warm - mean) / sd, -self.clip_z, self.clip_z)
        # (a seasonal signal is judged on its residuals: their profile learns how dependent)
        tau = 1.0 if self.is_seasonal(j) else autocorrelation_time(cz)
        if tau >= MIN_TAU:                      # (a dependent 0/1 signal: its runs say too)
            tau = min(max(tau, two_state_time(cz)), cz.size / 4)
        if n == self.warmup:
            self.first_tau[j] = tau
        if started and not self.is_seasonal(j):      # (a day's values: its hours move the mean)
            tau = parts_time(cz, tau)
        tau = strided_tau(tau, stride, float(self.first_tau[j]))
        day = n < self.day_reach and short_of_a_day(span, n, self.day_reach, started)
        longer = day or (n < EXTEND * self.warmup and _learn_on(cz, tau))
        if not final and not self.is_seasonal(j) and longer:
            self.for_day[j], self.stride[j] = float(day), float(stride)
            if j not in self.longer:
                self.longer[j] = np.zeros(EXTEND * self.warmup)
                self.longer[j][:n] = warm
                if span == span:                # the first warm-up's times, not kept: even over its span
                    self.longer_ts[j] = np.zeros(EXTEND * self.warmup, dtype=np.float32)
                    self.longer_ts[j][:n] = np.linspace(0.0, span, n)
            self.goal[j] = min(n + self.warmup, self.day_reach)
            return False
        self._drop_longer(j)
        self.mean[j], self.m2[j], self.sd[j] = mean, m2, sd
        self.cz_mean[j], self.cz_sd[j] = float(cz.mean()), float(cz.std(ddof=1))
        self.blocks.set_tau(j, tau)
        return True

    def take_stepped(self) -> list[int]:
        """The signals whose references a step ended since the last call: their values from
        the step on are to be judged against them as after a change point (the detectors saw
        no change: they start after it)."""
        out, self.stepped = self.stepped, []
        return out

    def _share_dependence(self, done: list[int]) -> None:
        """The category indicators of one feature (or of the prediction) share the dependence
        of the events' order (sessions, runs): each just warmed up takes the largest
        autocorrelation time among its siblings warm by now (a rare category's few runs in the
        warm-up would show too little)."""
        fresh = set(done)
        for cats in self.categories.values():
            group = [j for j in cats.values() if j < self.n.size and self.n[j] >= self.goal[j]]
            mine = [j for j in group if j in fresh]
            if mine:
                tau = float(max(self.blocks.tau[group]))
                for j in mine:
                    if self.blocks.tau[j] < tau:
                        self.blocks.set_tau(j, tau)

    @property
    def long_run_sd(self) -> np.ndarray:
        """(D,) the spread a mean of each signal's clipped z-scores has per sqrt(value):
        ``cz_sd * sqrt(tau)`` (see :mod:`stream.monitor.dependence`)."""
        if not self.blocks.dependent.size:
            return self.cz_sd
        return self.cz_sd * np.sqrt(self.blocks.tau)

    def detector_input(self, Z: np.ndarray) -> np.ndarray:
        """What the detectors see of z-scores Z: dependent signals' block means."""
        return self.blocks.means(Z)

    @property
    def n_ref(self) -> np.ndarray:
        """(D,) values each signal's reference was learned from."""
        n = np.where(self.n_profile > 0, self.n_profile, self.n)
        if self.profile is None or not self.profile.columns:
            return n
        n[self.profile.columns] = self.profile.learned
        return n

    def known_reference(self, j: int, mean: float) -> None:
        """Signal j's reference is known to be the constant ``mean`` (no warm-up)."""
        self.n[j], self.mean[j], self.m2[j] = self.warmup, mean, 0.0
        self.goal[j] = self.warmup
        self._drop_longer(j)
        self.sd[j] = 1e-9 * max(1.0, abs(mean))
        self.cz_mean[j], self.cz_sd[j] = 0.0, 0.0
        self.blocks.set_tau(j, 1.0)

    def _seasonal(self, name: str) -> bool:
        """Whether feature ``name`` (or the score, "prediction") is seasonal: the model
        declares a cycle that covers it."""
        return self.profile is not None and self.season.covers(name)

    def is_seasonal(self, j: int) -> bool:
        return self.profile is not None and j in self.profile.columns

    def reset(self, j: int) -> None:
        """Signal j learns a new reference from its next values (re-baselined)."""
        if self.warm_values.shape[0] < self.warmup:
            self.warm_values = np.zeros((self.warmup, self.size))
        self.n[j], self.mean[j], self.m2[j], self.sd[j] = 0.0, 0.0, 0.0, 1.0
        self.cz_mean[j], self.cz_sd[j], self.n_profile[j] = 0.0, 1.0, 0.0
        self.goal[j], self.first_ts[j], self.for_day[j], self.stride[j] = self.warmup, np.nan, 0.0, 1.0
        self._drop_longer(j)
        self.blocks.set_tau(j, 1.0)
        if self.is_seasonal(j):
            self.profile.reset(self.profile.columns.index(j))

    def remember(self, X: np.ndarray) -> None:
        """Push this batch's raw values into each signal's ring of recent values."""
        tail = X[-RECENT:]
        valid = ~np.isnan(tail)
        if valid.all():                       # every signal has the last rows: all at once
            pos = (self.recent_pos + np.arange(tail.shape[0])[:, None]) % RECENT   # (rows, D)
            self.recent[pos, np.arange(X.shape[1])] = tail
            self.recent_pos += tail.shape[0]
            return
        # (a signal with a value in each of the last RECENT rows needs no other)
        for j in np.flatnonzero(~np.isnan(X).all(axis=0)):
            col = X[:, j]
            v = tail[:, j] if valid[:, j].all() else col[~np.isnan(col)][-RECENT:]
            pos = (self.recent_pos[j] + np.arange(v.size)) % RECENT
            self.recent[pos, j] = v
            self.recent_pos[j] += v.size

    def recent_values(self, X: np.ndarray | None, row: int, j: int) -> np.ndarray:
        """Signal j's last RECENT raw values up to batch row ``row`` (oldest first); without a
        batch (``X`` None), the last ones remembered."""
        v = np.zeros(0)
        if X is not None:
            col = X[: row + 1, j]
            v = col[~np.isnan(col)][-RECENT:]
        if v.size < RECENT:
            order = (self.recent_pos[j] + np.arange(RECENT)) % RECENT
            ring = self.recent[order, j]
            older = ring[~np.isnan(ring)]
            if older.size:
                v = np.concatenate([older[-(RECENT - v.size):], v])
        return v

    def recent_mean(self, X: np.ndarray, row: int, j: int) -> tuple[float, int]:
        """Mean and count of signal j's last RECENT raw values up to batch row `row`."""
        v = self.recent_values(X, row, j)
        return (float(v.mean()) if v.size else float("nan")), int(v.size)
