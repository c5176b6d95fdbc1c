"""Vectorized Page-Hinkley, detection-for-detection equal to ``river.drift.PageHinkley``.

Per column (stream), river's recurrences are, after each value x since the last reset::

    n    += 1
    mean += (1 / n) * (x - mean)                 # river.stats.Mean
    dev   = x - mean
    s_inc = alpha * s_inc + dev - delta          # faded cumulative sums
    s_dec = alpha * s_dec + dev + delta
    min_inc = min(min_inc, s_inc)                # starts at +inf
    max_dec = max(max_dec, s_dec)                # starts at -1
    drift when n >= min_instances and (s_inc - min_inc > threshold  [up]
                                    or max_dec - s_dec > threshold) [down]

and after a drift the detector restarts from scratch with the next value.

How it is vectorized. Both sums are kept as one (2, D) array E = [s_inc, -s_dec]: negation
is exact in IEEE arithmetic, so -s_dec follows ``alpha * E + (-dev) - delta`` bit for bit and
the max of s_dec is the negated min of E. The mean and the sums are sequential in time and
rounding makes them non-associative, so they run as two tight loops over rows that each do
three whole-row numpy operations across all columns (no Python work per value); the running
minimum, the test statistics and the threshold tests are whole-block operations
(``minimum.accumulate``). Columns advance independently (each block takes every column's next
values from its own cursor): a column that detects inside a block stops there and restarts
from its next value in the following block; blocks shrink while detections come early in
them, so little computed work is thrown away. ``exact=False`` replaces the two row loops with
closed-form cumulative sums (see :meth:`PageHinkley._closed_form`).
"""

from __future__ import annotations

from collections import deque
from operator import call

import numpy as np

from . import _state
from ._columns import check_batch, check_float, check_int, compact_columns

_MODES = ("up", "down", "both")
_BLOCK = 512
_MIN_BLOCK = 16      # shortest block, used while detections are dense
_KEPT_WIDTHS = 8     # row-loop buffers kept, per padded width (most recently used)
_BLOCK_CLOSED = 4096  # longest block of the closed form (no row loop: longer amortizes more)
_SPAN = 32           # rows per span of the "can this block fire?" bound


def _per_span(reduce, a: np.ndarray) -> np.ndarray:
    """``reduce`` (np.min or np.max) over each span of _SPAN rows of a (L, ...); the last
    span may be shorter. (A reshape is several times faster than ufunc.reduceat.)"""
    n_full = a.shape[0] // _SPAN
    full = reduce(a[:n_full * _SPAN].reshape(n_full, _SPAN, *a.shape[1:]), axis=1)
    if n_full * _SPAN == a.shape[0]:
        return full
    return np.concatenate([full, reduce(a[n_full * _SPAN:], axis=0)[None]])


def _run_calls(calls: tuple[list, list, list, list], n: int) -> None:
    """Call funcs[i](a[i], b[i], out[i]) for the first n i, in order, at C level."""
    funcs, a, b, out = calls
    deque(map(call, funcs[:n], a[:n], b[:n], out[:n]), maxlen=0)


class PageHinkley:
    """Page-Hinkley change detector over ``n_features`` independent columns.

    Parameters and their defaults are river's (0.26): ``min_instances`` values since the last
    reset before any detection, ``delta`` the tolerated change per value, ``threshold`` lambda
    in the units of the data, ``alpha`` the fading factor of the cumulative sums, ``mode`` which
    direction of change counts ("up", "down" or "both").

    ``exact=True`` (default) reproduces river's floating-point rounding (row-by-row loops);
    ``exact=False`` solves the same recurrences with block-wide cumulative sums, several times
    faster on narrow batches, and agrees with river except when a statistic falls within
    rounding error of the threshold.

    >>> import numpy as np
    >>> ph = PageHinkley(n_features=2)
    >>> X = np.zeros((2000, 2)); X[1000:, 0] = 5.0
    >>> mask = ph.update(X)
    >>> np.flatnonzero(mask[:, 0]).tolist(), int(mask[:, 1].sum())
    ([1010], 0)
    """

    def __init__(self, n_features: int = 1, min_instances: int = 30, delta: float = 0.005,
                 threshold: float = 50.0, alpha: float = 1 - 0.0001, mode: str = "both",
                 exact: bool = True) -> None:
        n_features = check_int("n_features", n_features, 0)
        min_instances = check_int("min_instances", min_instances, 1)
        delta = check_float("delta", delta)
        threshold = check_float("threshold", threshold)
        alpha = check_float("alpha", alpha)
        if delta < 0:
            raise ValueError(f"delta must be >= 0, got {delta!r}")
        if threshold <= 0:
            raise ValueError(f"threshold must be > 0, got {threshold!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.n_features = int(n_features)
        self.min_instances = int(min_instances)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.alpha = float(alpha)
        self.mode = mode
        self.exact = bool(exact)
        # rows per block: the exact row loop's buffers hold _BLOCK rows; the closed form takes
        # longer blocks unless alpha^-L would overflow (then it runs the row loop itself)
        closed_ok = self.alpha == 1.0 or -np.log(self.alpha) * _BLOCK_CLOSED <= 200
        self._max_block = _BLOCK_CLOSED if not self.exact and closed_ok else _BLOCK
        D = self.n_features
        self._n = np.zeros(D)                       # values since reset (exact integers)
        self._mean = np.zeros(D)                    # running mean since reset
        self._e = np.zeros((2, D))                  # [s_inc, -s_dec]
        self._emin = self._fresh_emin(D)            # [min s_inc, -max s_dec]
        self._pending_reset = np.zeros(D, dtype=bool)  # drift at the last value: reset first
        self.n_detections = np.zeros(D, dtype=np.int64)
        self._buffers: dict = {}                    # work buffers (not state), see _row_buffers

    @staticmethod
    def _fresh_emin(D: int) -> np.ndarray:
        emin = np.empty((2, D))
        emin[0] = np.inf   # river: _min_increase = inf
        emin[1] = 1.0      # river: _max_decrease = -1, negated
        return emin

    # ---------------------------------------------------------------- properties
    @property
    def estimation(self) -> np.ndarray:
        """(D,) running mean of each column since its last reset (0.0 before any value)."""
        return self._mean.copy()

    @property
    def width(self) -> np.ndarray:
        """(D,) number of values seen since each column's last reset."""
        return self._n.astype(np.int64)

    @property
    def sum_increase(self) -> np.ndarray:
        """(D,) river's ``_sum_increase`` per column."""
        return self._e[0].copy()

    @property
    def sum_decrease(self) -> np.ndarray:
        """(D,) river's ``_sum_decrease`` per column."""
        return -self._e[1]

    @property
    def test_statistic(self) -> np.ndarray:
        """(D,) the larger of the up and down statistics allowed by ``mode`` (units of the data)."""
        t = self._e - self._emin
        if self.mode == "up":
            return t[0].copy()
        if self.mode == "down":
            return t[1].copy()
        return t.max(axis=0)

    # ---------------------------------------------------------------- growth
    def add_features(self, k: int) -> None:
        """Append ``k`` fresh columns (new streams), keeping the existing ones untouched."""
        k = check_int("k", k, 0)
        self.n_features += int(k)
        self._n = np.concatenate([self._n, np.zeros(k)])
        self._mean = np.concatenate([self._mean, np.zeros(k)])
        self._e = np.concatenate([self._e, np.zeros((2, k))], axis=1)
        self._emin = np.concatenate([self._emin, self._fresh_emin(k)], axis=1)
        self._pending_reset = np.concatenate([self._pending_reset, np.zeros(k, dtype=bool)])
        self.n_detections = np.concatenate([self.n_detections, np.zeros(k, dtype=np.int64)])

    # ---------------------------------------------------------------- update
    def update(self, X: np.ndarray) -> np.ndarray:
        """Feed a batch X (B, D) and return the (B, D) bool mask of detections."""
        X = check_batch(X, self.n_features)
        B, D = X.shape
        mask = np.zeros((B, D), dtype=bool)
        if B == 0 or D == 0:
            return mask
        if np.isnan(X).any():
            values, rows, lengths = compact_columns(X)
        else:
            values, rows, lengths = X, None, np.full(D, B, dtype=np.int64)
        cursor = np.zeros(D, dtype=np.int64)
        block = self._max_block
        while True:
            active = np.flatnonzero(cursor < lengths)
            if active.size == 0:
                return mask
            self._reset_pending(active)
            take = np.minimum(lengths[active] - cursor[active], block)
            det = self._run_block(active, self._gather(values, cursor[active], active, take, D), take)
            hit = det >= 0
            if hit.any():
                cols = active[hit]
                pos = cursor[cols] + det[hit]
                mask[pos if rows is None else rows[pos, cols], cols] = True
                self.n_detections[cols] += 1
                self._pending_reset[cols] = True
                # a column that drifted restarts after its detection: it simply takes its next
                # block from there (columns advance independently); when detections come early
                # in blocks, shorter blocks waste less of the rows computed past them
                early = 2 * int((det[hit] < block // 4).sum()) > int(hit.sum())   # mostly early
                block = max(_MIN_BLOCK, block // 2) if early else block
            else:
                block = min(self._max_block, block * 2)
            cursor[active] += np.where(hit, det + 1, take)

    @staticmethod
    def _gather(values: np.ndarray, start: np.ndarray, cols: np.ndarray, take: np.ndarray,
                D: int) -> np.ndarray:
        """Rows start[j] .. start[j] + take[j] - 1 of column cols[j], top-aligned (L, k)."""
        L = int(take.max())
        if cols.size == D and not start.any() and (take == L).all():
            return values[:L]
        idx = start[None, :] + np.arange(L)[:, None]
        np.minimum(idx, values.shape[0] - 1, out=idx)
        idx *= values.shape[1]
        idx += cols
        return np.take(values.reshape(-1), idx)              # faster than values[idx, cols]

    def _reset_pending(self, cols: np.ndarray) -> None:
        """River resets a detector on the update after a drift: do it for these columns."""
        reset = cols[self._pending_reset[cols]]
        if reset.size:
            self._n[reset] = 0.0
            self._mean[reset] = 0.0
            self._e[:, reset] = 0.0
            self._emin[:, reset] = self._fresh_emin(reset.size)
            self._pending_reset[reset] = False

    def _row_buffers(self, k: int) -> dict:
        """Per-width work buffers and the fixed call sequences of the two row loops.

        Row 0 of ``m`` and ``s`` holds the state before the block and row t + 1 the state
        after block row t, so every call of the loops has fixed arguments (views made once):
        a loop over L rows is the first calls of a sequence, run by ``map`` at C level with
        no Python bytecode per row (about a third of the loop's time otherwise).
        """
        bufs = self._buffers.pop(k, None)
        if bufs is None:
            B = _BLOCK
            x, r, m = np.empty((B, k)), np.empty((B, k)), np.empty((B + 1, k))
            dev3 = np.empty((B, 2, k))
            dev, s = dev3.reshape(B, 2 * k), np.empty((B + 1, 2 * k))
            alpha, delta = np.full(2 * k, self.alpha), np.full(2 * k, self.delta)
            xv, rv, mv, dv, sv = list(x), list(r), list(m), list(dev), list(s)
            sub, mul, add = np.subtract, np.multiply, np.add
            # mean: river's Mean with w = 1: mean += (1 / n) * (x - mean)
            mean_calls = ([sub, mul, add] * B,
                          [a for t in range(B) for a in (xv[t], mv[t + 1], mv[t])],
                          [a for t in range(B) for a in (mv[t], rv[t], mv[t + 1])],
                          [a for t in range(B) for a in (mv[t + 1],) * 3])
            # faded sums: e = alpha * e + dev - delta, for [s_inc, -s_dec] at once (array
            # operands: a ufunc on two arrays is cheaper than on an array and a scalar);
            # alpha * e == e exactly when alpha == 1: that multiplication is left out
            if self.alpha == 1.0:
                sum_calls = ([add, sub] * B,
                             [a for t in range(B) for a in (sv[t], sv[t + 1])],
                             [a for t in range(B) for a in (dv[t], delta)],
                             [a for t in range(B) for a in (sv[t + 1],) * 2])
            else:
                sum_calls = ([mul, add, sub] * B,
                             [a for t in range(B) for a in (sv[t], sv[t + 1], sv[t + 1])],
                             [a for t in range(B) for a in (alpha, dv[t], delta)],
                             [a for t in range(B) for a in (sv[t + 1],) * 3])
            bufs = dict(x=x, r=r, m=m, dev3=dev3, s=s, mean_calls=mean_calls, sum_calls=sum_calls)
        self._buffers[k] = bufs                     # most recently used last
        while len(self._buffers) > _KEPT_WIDTHS:
            del self._buffers[next(iter(self._buffers))]
        return bufs

    def _sequential(self, cols: np.ndarray, Xb: np.ndarray, counts: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """Running means (L, k) and sums (L, 2, k) with river's rounding, row by row.

        The loops run on a width rounded up (padding columns of zeros, whose results are
        dropped), so that the few widths met as columns finish a batch at different times
        reuse their buffers. The returned arrays are views of work buffers, valid until the
        next call.
        """
        L, k = Xb.shape
        step = max(16, 1 << max(0, k.bit_length() - 3))
        kp = -(-k // step) * step
        b = self._row_buffers(kp)
        x, r = b["x"][:L], b["r"][:L]
        x[:, :k] = Xb
        x[:, k:] = 0.0
        np.divide(1.0, counts, out=r[:, :k])
        r[:, k:] = 1.0
        m0 = b["m"][0]
        m0[:k] = self._mean[cols]
        m0[k:] = 0.0
        _run_calls(b["mean_calls"], 3 * L)
        means, dev3 = b["m"][1:L + 1], b["dev3"][:L]
        np.subtract(x, means, out=dev3[:, 0])
        np.negative(dev3[:, 0], out=dev3[:, 1])
        s0 = b["s"][0].reshape(2, kp)
        s0[:, :k] = self._e[:, cols]
        s0[:, k:] = 0.0
        _run_calls(b["sum_calls"], (2 if self.alpha == 1.0 else 3) * L)
        return means[:, :k], b["s"][1:L + 1].reshape(L, 2, kp)[:, :, :k]

    def _closed_form(self, cols: np.ndarray, Xb: np.ndarray, counts: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Running means (L, k) and sums (L, 2, k) as whole-block cumulative sums
        (``exact=False``).

        Same recurrences solved in closed form: mean_t = (n0 mean0 + sum x) / n_t, and
        e_t = alpha^t (e_0 + sum_i alpha^-i (dev_i - delta)). Values differ from river's in the
        last bits (summation order), so a detection can differ only when a statistic lands
        within rounding of the threshold. No Python work per row.
        """
        L, k = Xb.shape
        if self.alpha < 1.0 and -np.log(self.alpha) * L > 200:   # alpha^-L would overflow
            return self._sequential(cols, Xb, counts)
        n0, m0 = self._n[cols], self._mean[cols]
        pivot = np.where(n0 > 0, m0, Xb[0])                  # centre sums for large offsets
        acc = np.cumsum(Xb - pivot, axis=0)
        acc += n0 * (m0 - pivot)
        means = pivot + acc / counts
        dev = Xb - means
        step = np.empty((L, 2, k))
        np.subtract(dev, self.delta, out=step[:, 0])
        np.subtract(-dev, self.delta, out=step[:, 1])
        step = step.reshape(L, 2 * k)
        e0 = self._e[:, cols].reshape(2 * k)
        if self.alpha == 1.0:
            sums = np.cumsum(step, axis=0)
            sums += e0
        else:
            power = self.alpha ** np.arange(1, L + 1, dtype=np.float64)[:, None]
            sums = np.cumsum(step / power, axis=0)
            sums += e0
            sums *= power
        return means, sums.reshape(L, 2, k)

    def _run_block(self, cols: np.ndarray, Xb: np.ndarray, take: np.ndarray) -> np.ndarray:
        """Advance columns ``cols`` over block Xb (L, k); column j uses its first take[j] rows.

        Returns per column the block row of its first detection, or -1. Each column's state is
        left as it was right after its last consumed row (the detection row, if any).
        """
        L, k = Xb.shape
        n0 = self._n[cols]
        counts = n0[None, :] + np.arange(1, L + 1, dtype=np.float64)[:, None]
        if self.exact:
            means, sums3 = self._sequential(cols, Xb, counts)
        else:
            means, sums3 = self._closed_form(cols, Xb, counts)
        emin0 = self._emin[:, cols]                                  # (2, k)
        # Only a column whose block could reach the threshold needs the running minimum at
        # every row. For rows t in a span of _SPAN rows, sum_t - min_{s<=t} sum_s <=
        # max_span sum - min(emin0, sums up to the span's end), and rounding is monotonic, so
        # where that bound is <= threshold for every span no row of the block can fire.
        # (Rows past a column's `take` are filler: such columns take the exact path.)
        span_max = _per_span(np.max, sums3)
        span_min = np.empty((span_max.shape[0] + 1, 2, k))
        span_min[0] = emin0
        span_min[1:] = _per_span(np.min, sums3)
        np.minimum.accumulate(span_min, axis=0, out=span_min)       # min up to each span's end
        bound = span_max - span_min[1:]
        maybe = (bound > self.threshold).any(axis=0)                 # (2, k)
        low = span_min[-1]
        if self.mode == "up":
            maybe = maybe[0]
        elif self.mode == "down":
            maybe = maybe[1]
        else:
            maybe = maybe[0] | maybe[1]
        check = np.flatnonzero(maybe | (take < L))
        det_row = np.full(k, -1)
        last = np.full(k, L - 1)
        emin_last = low
        if check.size:
            c_det, c_last, c_emin = self._first_fire(sums3[:, :, check], emin0[:, check],
                                                     counts[:, check], take[check])
            det_row[check], last[check] = c_det, c_last
            emin_last[:, check] = c_emin
        j = np.arange(k)
        self._n[cols] = counts[last, j]
        self._mean[cols] = means[last, j]
        self._e[:, cols] = sums3[last, :, j].T
        self._emin[:, cols] = emin_last
        return det_row

    def _first_fire(self, sums3: np.ndarray, emin0: np.ndarray, counts: np.ndarray,
                    take: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """River's test on every row of some columns: sums3 (L, 2, c), emin0 (2, c).

        Returns per column the first firing row or -1, the last consumed row (that row, or
        take - 1) and the running minima (2, c) at that row.
        """
        L, _, c = sums3.shape
        mins = np.empty((L + 1, 2, c))
        mins[0] = emin0
        mins[1:] = sums3
        np.minimum.accumulate(mins, axis=0, out=mins)
        mins = mins[1:]
        over = sums3 - mins > self.threshold
        if self.mode == "up":
            fired = over[:, 0]
        elif self.mode == "down":
            fired = over[:, 1]
        else:
            fired = over[:, 0] | over[:, 1]
        fired &= counts >= self.min_instances
        fired &= np.arange(L)[:, None] < take[None, :]
        any_hit = fired.any(axis=0)
        det_row = np.where(any_hit, fired.argmax(axis=0), -1)
        last = np.where(any_hit, det_row, take - 1)
        return det_row, last, mins[last, :, np.arange(c)].T

    # ---------------------------------------------------------------- state
    def to_bytes(self) -> bytes:
        """Serialize the whole state (parameters included); see :meth:`from_bytes`."""
        header = {"n_features": self.n_features, "min_instances": self.min_instances,
                  "delta": self.delta, "threshold": self.threshold, "alpha": self.alpha,
                  "mode": self.mode, "exact": self.exact}
        arrays = {"n": self._n, "mean": self._mean, "e": self._e, "emin": self._emin,
                  "pending_reset": self._pending_reset, "n_detections": self.n_detections}
        return _state.pack("PageHinkley", header, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> PageHinkley:
        """Rebuild a detector from :meth:`to_bytes` output; raises StateError if invalid."""
        def shapes(ph: PageHinkley) -> dict[str, tuple[int, ...]]:
            D = ph.n_features
            return {"n": (D,), "mean": (D,), "e": (2, D), "emin": (2, D), "pending_reset": (D,),
                    "n_detections": (D,)}

        def fill(ph: PageHinkley, a: dict[str, np.ndarray]) -> None:
            ph._n, ph._mean, ph._e, ph._emin = a["n"], a["mean"], a["e"], a["emin"]
            ph._pending_reset = a["pending_reset"].astype(bool)
            ph.n_detections = a["n_detections"]

        return _state.rebuild("PageHinkley", blob, lambda header: cls(**header), shapes, fill)

    def __repr__(self) -> str:
        return (f"PageHinkley(n_features={self.n_features}, min_instances={self.min_instances}, "
                f"delta={self.delta}, threshold={self.threshold}, alpha={self.alpha}, "
                f"mode={self.mode!r}, exact={self.exact})")
