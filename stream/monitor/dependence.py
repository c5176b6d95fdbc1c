"""Serial dependence of a signal: its autocorrelation time, and the block means its detectors see.

ADWIN, Page-Hinkley and the drift states' standard errors assume independent values. One
sensor's or one account's series is not: a stationary signal whose consecutive values are
correlated wanders from its mean for long stretches, and the mean of n of its values varies
``tau`` times as much as that of n independent ones (``tau``, the integrated autocorrelation
time, ``1 + 2 * sum of its autocorrelations``). Each signal's ``tau`` is estimated once, on its
warm-up values in arrival order; a signal found independent (``tau`` < MIN_TAU, as events of
many users interleaved are) is fed to its detectors exactly as before. A dependent one is fed
the means of consecutive blocks of ``b = round(tau)`` of its values, scaled to unit long-run
variance (``mean * sqrt(b / tau)``), at the value that completes each block: about independent,
in the units the detectors' thresholds are set in. Its drift state uses ``cz_sd * sqrt(tau)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MIN_TAU = 1.5        # below: independent
RUNS = 20            # runs of each value a two-valued warm-up sees, if it can ...
EXTEND = 10          # ... within this many warm-ups (a warm-up that cannot be a reference learns on)
SEGMENTS = 8         # a warm-up whose SEGMENTS consecutive parts' means spread more than ...
SPREAD_CHI2 = 24.3   # ... this (chi-square, 7 degrees of freedom: p = 0.001) learns on
DAY = 86400.0        # a warm-up shorter than a day of event time learns on to one, when ...
DAY_REACH = 0.8      # ... DAY_EXTEND warm-ups at its rate would span this share of a day at least
DAY_EXTEND = 20      # (keeping EXTEND warm-ups' worth of them: see store_strided)
STEP_SD = 5.0        # unless its values stepped by this many sd (see step_at) ...
STEP_RATE = 0.5      # ... (a 0/1 rate: by this much): a fault, which the hours of a day do not make
STEP_MIN = 50        # values on each side of a step, at least
STEP_NEAR_S = 900.0  # or, its values within this many seconds of event time each side ...
STEP_NEAR_SD = 1.5   # ... differ by this many sd (of theirs, the first warm-up's at least) ...
STEP_NEAR_SE = 6.0   # ... and this many standard errors of their means ...
STEP_NEAR_MIN = 20   # ... with this many values each side at least
LAG1_Z = 4.0         # dependent only if the lag-1 autocorrelation (or the sum of the first four
                     # lags') is this many of its sd's above 0


def autocorrelation_time(z: np.ndarray) -> float:
    """The integrated autocorrelation time of a series (values in arrival order, no NaN), by
    Geyer's initial positive sequence: the autocorrelations summed in consecutive pairs while
    a pair's sum is positive. 1.0 for a series with no dependence found (its lag-1
    autocorrelation and the sum of its first four both within LAG1_Z of their sd from 0, as an
    independent series has but about once in 15,000; a time below MIN_TAU; a constant series);
    at most a quarter of the series' length (the longest lag looked at)."""
    n = z.size
    x = z - z.mean()
    var = float(x @ x)
    if n < 8 or var <= 0:
        return 1.0
    # independent values: each autocorrelation is ~N(0, 1/n), the sum of the first four ~N(0, 4/n);
    # the initial positive sequence is summed only for a series these call dependent
    first = [float(x[:-k] @ x[k:]) / var for k in range(1, 5)]
    if first[0] < LAG1_Z / np.sqrt(n) and sum(first) < 2 * LAG1_Z / np.sqrt(n):
        return 1.0
    f = np.fft.rfft(x, 2 * n)
    acf = np.fft.irfft(f * np.conj(f))[: n // 4] / var           # lags 0 .. n/4 - 1
    pairs = acf[: acf.size // 2 * 2].reshape(-1, 2).sum(axis=1)
    stop = np.flatnonzero(pairs <= 0)
    tau = float(2 * pairs[: stop[0] if stop.size else pairs.size].sum() - 1)
    return 1.0 if tau < MIN_TAU else min(tau, n / 4)


def short_of_a_day(span: float, n: int, reach: int, started: bool = False) -> bool:
    """Whether a warm-up of ``n`` values whose event times span ``span`` seconds (first to last)
    should learn on to a day: it spans less than one, and ``reach`` values (as many as it may
    learn on to: ``DAY_EXTEND`` warm-ups) at its rate would span ``DAY_REACH`` of one at least,
    or it ``started`` to (traffic that follows the hour changes the rate on the way).
    Most inputs of deployed models follow the hour of the day, and a reference that saw only
    some of the hours pages at the others; its values alone cannot tell, since a few hours
    near a peak look stationary. Each value stands for ``span / (n - 1)`` seconds. False for
    a NaN ``span``."""
    covered = span * n / max(n - 1, 1)
    return 0.0 < covered < DAY and (started or covered * reach >= DAY_REACH * DAY * n)


def store_strided(buf: np.ndarray, stride: int, start: int, v: np.ndarray) -> int:
    """Keep the values (or rows) ``v`` seen at positions ``start``, ``start + 1``, ... of a
    warm-up in ``buf``, which holds those at the multiples of ``stride`` (position ``i`` at
    ``i // stride``); when they would not fit, every other one goes and the stride doubles, so that
    the buffer is a sample of the whole warm-up at even steps, whatever the batches. Returns
    the stride."""
    size, n = len(buf), len(v)                  # (rows: a buffer may be 2-D)
    while (start + n - 1) // stride >= size:
        buf[:(size + 1) // 2] = buf[::2].copy()
        stride *= 2
    first = -start % stride                     # the first of v at a multiple of the stride
    buf[(start + first) // stride:(start + n - 1) // stride + 1] = v[first::stride]
    return stride


def strided_tau(tau: float, stride: int, first: float) -> float:
    """The autocorrelation time, in values, of a warm-up kept every ``stride``-th value whose
    kept values' own is ``tau``: ``stride`` times it if they are dependent, and at least
    ``first``, its first warm-up's (dependence shorter than the stride)."""
    if stride == 1:
        return tau
    return max(stride * tau if tau >= MIN_TAU else 1.0, first if first == first else 1.0)


def step_at(x: np.ndarray, lo: int, rate: bool = False, t: np.ndarray | None = None) -> int:
    """Where a warm-up learning on to a day saw a fault: the split ``k`` of its values ``x``
    (kept, in order) among its last two warm-ups' worth (``lo``: one's, the first never
    split) at which the mean of those after is furthest from that of the ``STEP_MIN`` just
    before, in their sd (the first warm-up's at least), if ``STEP_SD`` of them or more (a 0/1
    rate: by ``STEP_RATE``); -1 if none. A step is a fault:
    an hour of the day moves an input gradually, so that next to each other its values hardly
    differ. The values are winsorized at their 1st and 99th percentiles (one wild value is no
    step). Given the values' event times ``t`` (seconds), a smaller step counts too: see
    :func:`_near_score`."""
    a = max(lo, x.size - 2 * lo)
    w = x[a:]
    if w.size < 2 * STEP_MIN:
        return -1
    if not rate:
        w = np.clip(w, *np.percentile(w, [1.0, 99.0]))
    c1 = np.concatenate([[0.0], np.cumsum(w)])
    ks = np.arange(STEP_MIN, w.size - STEP_MIN + 1)
    after = (c1[-1] - c1[ks]) / (w.size - ks)
    before = (c1[ks] - c1[ks - STEP_MIN]) / STEP_MIN                # the STEP_MIN values before
    gap = np.abs(after - before)
    if rate:
        score = gap / STEP_RATE
    else:
        c2 = np.concatenate([[0.0], np.cumsum(w * w)])
        var = np.maximum((c2[ks] - c2[ks - STEP_MIN]) / STEP_MIN - before * before, 0.0) \
            * STEP_MIN / (STEP_MIN - 1)
        # (rare values: the sd of its first warm-up at least)
        var = np.maximum(var, float(x[:lo].var(ddof=1)) if lo > 1 else 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(gap > 0.0, gap / (STEP_SD * np.sqrt(var)), 0.0)
        if t is not None and not np.isnan(t[a:]).any():
            first = np.clip(x[:lo], *np.percentile(x[:lo], [1.0, 99.0]))
            score = np.maximum(score, _near_score(w, np.maximum.accumulate(t[a:]), ks, first))
    best = int(np.argmax(score))
    return int(a + ks[best]) if score[best] >= 1.0 else -1


def _near_score(w: np.ndarray, t: np.ndarray, ks: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Per split ``ks`` of values ``w`` (winsorized; event times ``t``, non-decreasing): how
    far the means of its values within ``STEP_NEAR_S`` seconds before and after it are
    apart, as a share of the least gap that is a step (>= 1: a step). That gap is
    ``STEP_NEAR_SD`` sd of those values (pooled: a signal whose spread follows the hour is
    judged in its own units; the first warm-up's ``first`` at least: rare values) and
    ``STEP_NEAR_SE`` standard errors of the two means at the first warm-up's
    autocorrelation time. A daily cycle moves a mean by at most
    ``amplitude * 2 pi * STEP_NEAR_S / DAY`` (0.07 of it) in that time."""
    b0 = np.searchsorted(t, t[ks] - STEP_NEAR_S, side="left")
    a1 = np.searchsorted(t, t[ks] + STEP_NEAR_S, side="left")
    nb, na = (ks - b0).astype(np.float64), (a1 - ks).astype(np.float64)
    ok = (nb >= STEP_NEAR_MIN) & (na >= STEP_NEAR_MIN)
    if not ok.any():
        return np.zeros(ks.size)
    nb, na = np.maximum(nb, 2.0), np.maximum(na, 2.0)
    v = w - float(np.median(first))            # (centred: the sums of squares keep their digits)
    c1 = np.concatenate([[0.0], np.cumsum(v)])
    c2 = np.concatenate([[0.0], np.cumsum(v * v)])
    mb, ma = (c1[ks] - c1[b0]) / nb, (c1[a1] - c1[ks]) / na
    ssb = np.maximum(c2[ks] - c2[b0] - nb * mb * mb, 0.0)
    ssa = np.maximum(c2[a1] - c2[ks] - na * ma * ma, 0.0)
    sd0 = float(first.std(ddof=1)) if first.size > 1 else 0.0
    sd = np.maximum(np.sqrt((ssb + ssa) / (nb + na - 2.0)), sd0)
    tau = autocorrelation_time((first - first.mean()) / sd0) if sd0 > 0 else 1.0
    gap = np.abs(ma - mb)
    need = sd * np.maximum(STEP_NEAR_SD, STEP_NEAR_SE * np.sqrt(tau * (1.0 / nb + 1.0 / na)))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok & (gap > 0.0), gap / need, 0.0)


def parts_spread(x: np.ndarray, tau: float) -> bool:
    """Whether the means of a warm-up's ``SEGMENTS`` consecutive parts (values in arrival order,
    autocorrelation time ``tau``) lie further apart than ``tau`` allows: a part of a slow
    cycle, which the autocorrelations within one warm-up can miss (half a cycle looks like
    a trend, a quarter like independent values). For independent parts the spread of their
    means is ``var * tau / part`` times a chi-square with ``SEGMENTS - 1`` degrees of freedom."""
    n = x.size
    var = float(x.var())
    if var <= 0 or n < SEGMENTS:
        return False
    means = x[: n // SEGMENTS * SEGMENTS].reshape(SEGMENTS, -1).mean(axis=1)
    return float(((means - means.mean()) ** 2).sum()) > SPREAD_CHI2 * var * tau / (n // SEGMENTS)


def parts_time(x: np.ndarray, tau: float) -> float:
    """A warm-up's autocorrelation time (in values of ``x``), at least ``tau``, the one its
    ``SEGMENTS`` parts' means imply when they spread wider than ``tau`` allows
    (:func:`parts_spread`): ``part * var(means) / var``, the batch-means estimate. A day's
    reference that saw the hours of a cycle too weak to show in its first autocorrelations
    knows from it how far the hours move its mean (at most a quarter of the values)."""
    if not parts_spread(x, tau):
        return tau
    part = x.size // SEGMENTS
    means = x[: part * SEGMENTS].reshape(SEGMENTS, -1).mean(axis=1)
    return max(tau, min(part * float(means.var(ddof=1)) / float(x.var()), x.size / 4))


def markov_time(n: float, p: float, flips: float) -> float:
    """The autocorrelation time of a two-state Markov chain that changed state ``flips`` times
    in ``n`` values, ``p`` of them ones: ``(1 + r) / (1 - r)`` with ``1 - r`` the two states'
    leaving rates summed, ``flips / (2 n p (1 - p))``; inf when it never changed."""
    return 4.0 * n * p * (1.0 - p) / flips - 1.0 if flips > 0 else np.inf


def two_state(z: np.ndarray) -> np.ndarray | None:
    """Where a series of two values (in any units) holds the larger; None for a series of one
    value or of more than two."""
    high = z == z.max()
    if high.all() or not np.all(high | (z == z.min())):
        return None
    return high


def two_state_time(z: np.ndarray) -> float:
    """:func:`markov_time` of a series of two values (a 0/1 signal, in any units), from its
    runs; 1.0 for a series of one value or of more than two. With a few runs of each value
    (a flag on in a few bursts) Geyer's sum, cut at its first negative pair, reads less."""
    high = two_state(z)
    return 1.0 if high is None else markov_time(z.size, float(high.mean()), flips(high))


def flips(x: np.ndarray) -> float:
    """How many times a series changes value from one value to the next."""
    return float(np.count_nonzero(x[1:] != x[:-1]))


class BlockMeans:
    """Per column of a growing set of signals: the block size its detectors' input is averaged
    over (1: the values themselves), and the values of its block in progress.

    The block in progress keeps its values, not their sum, so that each block mean is summed
    the same way however the stream was cut into batches (detections do not depend on it).
    """

    def __init__(self) -> None:
        self.tau = np.ones(0)                       # autocorrelation time of each column
        self.pending = np.zeros((0, 0))             # (values, columns): blocks in progress
        self.n_pending = np.zeros(0, dtype=np.int64)
        self.dependent = np.zeros(0, dtype=np.int64)   # the columns with tau >= MIN_TAU (derived)

    def add(self, k: int) -> None:
        self.tau = np.concatenate([self.tau, np.ones(k)])
        self.pending = np.concatenate([self.pending, np.zeros((self.pending.shape[0], k))], axis=1)
        self.n_pending = np.concatenate([self.n_pending, np.zeros(k, dtype=np.int64)])

    def state_dict(self) -> dict[str, Any]:
        return {"tau": self.tau, "pending": self.pending, "n_pending": self.n_pending}

    def load_state(self, state: dict[str, Any]) -> None:
        self.tau, self.pending, self.n_pending = state["tau"], state["pending"], state["n_pending"]
        self.dependent = np.flatnonzero(self.tau >= MIN_TAU)

    def set_tau(self, j: int, tau: float) -> None:
        """Column j's autocorrelation time (1.0: independent); its block starts afresh."""
        self.tau[j] = tau
        self.n_pending[j] = 0
        self.dependent = np.flatnonzero(self.tau >= MIN_TAU)
        rows = int(np.round(self.tau).max()) - 1 if self.tau.size else 0
        if rows > self.pending.shape[0]:
            self.pending = np.concatenate(
                [self.pending, np.zeros((rows - self.pending.shape[0], self.tau.size))])

    def means(self, Z: np.ndarray) -> np.ndarray:
        """The detectors' input for z-scores Z (rows, columns; NaN: no value): Z itself when
        every column is independent, else a copy whose dependent columns hold their block
        means (scaled) at the rows that complete a block, NaN elsewhere."""
        if not self.dependent.size:
            return Z
        out = Z.copy()
        for j in self.dependent.tolist():
            rows = np.flatnonzero(~np.isnan(Z[:, j]))
            out[:, j] = np.nan
            if not rows.size:
                continue
            b, have = int(round(self.tau[j])), int(self.n_pending[j])
            v = np.concatenate([self.pending[:have, j], Z[rows, j]])
            full = v.size // b * b
            if full:
                sums = np.cumsum(v[:full].reshape(-1, b), axis=1)[:, -1]   # (sequential: exact)
                ends = rows[np.arange(b - have - 1, full - have, b)]
                out[ends, j] = sums / b * np.sqrt(b / self.tau[j])
            rest = v[full:]
            self.pending[: rest.size, j] = rest
            self.n_pending[j] = rest.size
        return out
