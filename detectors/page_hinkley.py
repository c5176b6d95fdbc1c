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
rounding makes them non-associative, so they run as one loop over rows, three whole-row numpy
operations across all columns per row, the sums _LAG rows behind the mean (no Python work per
value; numpy's cost per call, not per value, bounds it: see :meth:`PageHinkley._row_buffers`);
the running minimum, the test statistics and the threshold tests are whole-block operations
(``minimum.accumulate``), done only for the columns and from the span of rows whose bound can
reach the threshold. Columns advance independently (each block takes every column's next
values from its own cursor, gathered from a column-major copy of the batch): a column that
detects inside a block stops there and restarts from its next value in the following block;
blocks shrink while detections come early in them, so little computed work is thrown away,
and grow back when they do not. ``exact=False`` replaces the row loop with closed-form
cumulative sums (see :meth:`PageHinkley._closed_form`).
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable
from functools import partial
from operator import call

import numpy as np

from . import _state
from ._columns import check_batch, check_float, check_int, column_major_copy, compact_columns

_MODES = ("up", "down", "both")
_FUSE_VALUES = 1 << 22  # padded values of detectors updated as one (update_many): 32 MB
_FUSE_COLUMNS_EXACT = 256  # columns of detectors updated as one by the exact row loop (its
                           # buffer: ~33 kB a column; wider saves little per call)
_BLOCK = 256         # rows per block of the exact row loop (buffers stay in the caches;
                     # docs/performance.md)
_MIN_BLOCK = 16      # shortest block, used while detections are dense
_FUSED_BUFFERS: dict[tuple[float, float], dict] = {}   # (alpha, delta) -> row-loop buffers
_KEPT_WIDTHS = 8     # row-loop buffers kept, per padded width (most recently used)
_BLOCK_CLOSED = 4096  # longest block of the closed form (no row loop: longer amortizes more)
_LAG = 32            # rows the sums run behind the mean in the row loop (see _row_buffers)
_RING = 3 * _LAG     # rows of the row loop's ring buffer (live rows: at most 2 _LAG + 1)
_SLOTS = 14          # k-wide slots per row of the row loop's buffer
_SPAN = 32           # rows per span of the "can this block fire?" bound


def _per_span(op: np.ufunc, a: np.ndarray) -> np.ndarray:
    """``op.reduce`` (np.minimum or np.maximum) over each span of _SPAN rows of a (L, ...); the
    last span may be shorter. (A reshape is several times faster than ufunc.reduceat.)"""
    n_full = a.shape[0] // _SPAN
    full = op.reduce(a[:n_full * _SPAN].reshape(n_full, _SPAN, *a.shape[1:]), axis=1)
    if n_full * _SPAN == a.shape[0]:
        return full
    return np.concatenate([full, op.reduce(a[n_full * _SPAN:], axis=0)[None]])


def _run_calls(calls: tuple[list, list, list, list], n: int) -> None:
    """Call funcs[i](a[i], b[i], out[i]) for the first n i, in order, at C level."""
    funcs, a, b, out = calls
    deque(map(call, funcs[:n], a[:n], b[:n], out[:n]), maxlen=0)


_STATE_ARRAYS = (("_n", 0), ("_mean", 0), ("_pending_reset", 0), ("n_detections", 0),
                 ("_e", 1), ("_emin", 1))      # per-column state: (attribute, column axis)


def _mask(shape: tuple[int, int], cols: np.ndarray, pos: np.ndarray,
          rows: np.ndarray | None) -> np.ndarray:
    """Detections (column, index in its values) as a batch mask; ``rows`` (D, L) maps a
    column's value index to its batch row when some values were NaN."""
    mask = np.zeros(shape, dtype=bool)
    mask[pos if rows is None else rows[cols, pos], cols] = True
    return mask


class PageHinkley:
    """Page-Hinkley change detector over ``n_features`` independent columns.

    Each column accumulates its deviations from its running mean (minus ``delta`` per value)
    and reports a change when the cumulative sum rises more than ``threshold`` above its
    minimum (mode "up"), falls as much below its maximum ("down"), or either ("both");
    detections are river's (0.26), value for value. The column restarts after a detection.

    Parameters
    ----------
    n_features : int
        Independent columns D (more are added with :meth:`add_features`).
    min_instances : int
        Values since the last reset before any detection (>= 1).
    delta : float
        Tolerated change per value, in the units of the data (>= 0).
    threshold : float
        Lambda, in the units of the data (> 0).
    alpha : float
        Fading factor of the cumulative sums, in (0, 1] (1: no fading).
    mode : {"up", "down", "both"}
        Which direction of change counts.
    exact : bool
        True reproduces river's floating-point rounding (a row-by-row loop); False solves the
        same recurrences with block-wide cumulative sums, several times faster on narrow
        batches, agreeing with river except when a statistic falls within rounding error of
        the threshold.

    References
    ----------
    E. S. Page, "Continuous inspection schemes", Biometrika 41, 1954.
    river.drift.PageHinkley (river 0.26), the reference these detections are tested against.

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

    def reset_features(self, columns: list[int] | np.ndarray) -> None:
        """Start these columns afresh, as a new river detector would, keeping their
        detection counts."""
        cols = np.asarray(columns, dtype=np.int64)
        self._n[cols] = 0.0
        self._mean[cols] = 0.0
        self._e[:, cols] = 0.0
        self._emin[:, cols] = self._fresh_emin(cols.size)
        self._pending_reset[cols] = False

    # ---------------------------------------------------------------- update
    def update(self, X: np.ndarray) -> np.ndarray:
        """Feed a batch X (B, D) and return the (B, D) bool mask of detections."""
        X, has_nan = check_batch(X, self.n_features)
        B, D = X.shape
        if B == 0 or D == 0:
            return np.zeros((B, D), dtype=bool)
        if has_nan:
            values, rows, lengths = compact_columns(X)
        else:
            values = column_major_copy(X)
            rows, lengths = None, np.full(D, B, dtype=np.int64)
        return _mask((B, D), *self._advance(values, lengths), rows)

    @staticmethod
    def update_many(detectors: list[PageHinkley], batches: list[np.ndarray]) -> list[np.ndarray]:
        """``[d.update(X) for d, X in zip(detectors, batches)]``, with the columns of detectors
        of equal parameters advanced together as one detector (numpy's per-call cost is paid
        once, not once a detector: many small batches, e.g. one per model, cost much less).
        Results and states are exactly those of separate updates.

        >>> import numpy as np
        >>> rng = np.random.default_rng(7)
        >>> models = [PageHinkley(n_features=2), PageHinkley(n_features=1)]
        >>> batches = [rng.normal(0, 1, (400, 2)), rng.normal(0, 1, (300, 1))]
        >>> batches[1][100:] += 4.0                # model 1 drifts
        >>> masks = PageHinkley.update_many(models, batches)
        >>> [m.any(axis=0).tolist() for m in masks]
        [[False, False], [True]]
        """
        if len(detectors) != len(batches):
            raise ValueError(f"{len(detectors)} detectors but {len(batches)} batches")
        masks: list[np.ndarray] = [np.zeros((0, 0), dtype=bool)] * len(detectors)
        alike: dict[tuple, list[int]] = {}
        for i, det in enumerate(detectors):
            alike.setdefault((det.min_instances, det.delta, det.threshold, det.alpha, det.mode,
                              det.exact), []).append(i)
        for members in alike.values():
            checked = {i: check_batch(batches[i], detectors[i].n_features) for i in members}
            # fused in chunks of similar batch lengths: the fused values are padded to the
            # longest batch of the chunk, at most _FUSE_VALUES of them (and at most
            # _FUSE_COLUMNS_EXACT columns for the exact row loop)
            members.sort(key=lambda i: checked[i][0].shape[0])
            most = _FUSE_COLUMNS_EXACT if detectors[members[0]].exact else None
            chunks: list[list[int]] = [[]]
            width = 0
            for i in members:
                rows, w = checked[i][0].shape
                if chunks[-1] and ((width + w) * rows > _FUSE_VALUES
                                   or (most is not None and width + w > most)):
                    chunks.append([])
                    width = 0
                chunks[-1].append(i)
                width += w
            for chunk in chunks:
                PageHinkley._update_fused([detectors[c] for c in chunk],
                                          [checked[c] for c in chunk], chunk, masks)
        return masks

    @staticmethod
    def _update_fused(parts: list[PageHinkley], checked: list[tuple[np.ndarray, bool]],
                      at: list[int], masks: list[np.ndarray]) -> None:
        """Update detectors of equal parameters as one with their checked batches; their
        masks go to ``masks[at[m]]``."""
        if len(parts) == 1:
            masks[at[0]] = parts[0].update(checked[0][0])
            return
        widths = [X.shape[1] for X, _ in checked]
        D, L = sum(widths), max(X.shape[0] for X, _ in checked)
        values, lengths = np.zeros((D, L)), np.zeros(D, dtype=np.int64)
        rows: list[np.ndarray | None] = []
        off = 0
        for (X, has_nan), w in zip(checked, widths, strict=True):
            r = None
            if has_nan and w:
                v, r, lengths[off:off + w] = compact_columns(X)
                values[off:off + w, :v.shape[1]] = v
            else:
                values[off:off + w, :X.shape[0]] = X.T
                lengths[off:off + w] = X.shape[0]
            rows.append(r)
            off += w
        fused = copy.copy(parts[0])          # same parameters
        fused.n_features = D
        # the row loop's work buffers of fused detectors: shared by parameters (they hold
        # alpha and delta), not kept by whichever detector came first
        fused._buffers = _FUSED_BUFFERS.setdefault((fused.alpha, fused.delta), {})
        for name, axis in _STATE_ARRAYS:
            setattr(fused, name, np.concatenate([getattr(p, name) for p in parts], axis=axis))
        cols, pos = fused._advance(values, lengths) if D and L else (np.zeros(0, int),) * 2
        off = 0
        for i, det, (X, _), w, r in zip(at, parts, checked, widths, rows, strict=True):
            own = slice(off, off + w)
            for name, axis in _STATE_ARRAYS:
                setattr(det, name, getattr(fused, name)[(slice(None),) * axis + (own,)].copy())
            mine = (cols >= off) & (cols < off + w)
            masks[i] = _mask(X.shape, cols[mine] - off, pos[mine], r)
            off += w

    def _advance(self, values: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feed column j the values ``values[j, :lengths[j]]`` (one row per column). Returns
        the detections as (column, index in its values) arrays."""
        D = values.shape[0]
        found_cols: list[np.ndarray] = []
        found_pos: list[np.ndarray] = []
        cursor = np.zeros(D, dtype=np.int64)
        block = self._max_block
        while True:
            active = np.flatnonzero(cursor < lengths)
            if active.size == 0:
                break
            self._reset_pending(active)
            take = np.minimum(lengths[active] - cursor[active], block)
            det = self._run_block(active, values, cursor[active], take)
            hit = det >= 0
            if hit.any():
                cols = active[hit]
                found_cols.append(cols)
                found_pos.append(cursor[cols] + det[hit])
                self.n_detections[cols] += 1
                self._pending_reset[cols] = True
                # a column that drifted restarts after its detection: it simply takes its next
                # block from there (columns advance independently); the rows computed past
                # its detection are thrown away, so blocks shrink while that wastes much
                block = self._next_block(block, take, det, hit)
            else:
                block = min(self._max_block, block * 2)
            cursor[active] += np.where(hit, det + 1, take)
        if not found_cols:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(found_cols), np.concatenate(found_pos)

    def _next_block(self, block: int, take: np.ndarray, det: np.ndarray, hit: np.ndarray) -> int:
        """The next block length after a block in which some columns detected.

        Row loop (exact): halve when most detections came in the first quarter of the block,
        else double (up to _BLOCK rows: they are short anyway). Closed form: its blocks are up
        to 16x longer, so on a stream that detects often most of a long block would be thrown
        away, which the "first quarter" rule never sees: halve while the rows computed past
        detections are over a quarter of the block's, double when under an eighth.
        """
        if self.exact:
            early = 2 * int((det[hit] < block // 4).sum()) > int(hit.sum())   # mostly early
            return max(_MIN_BLOCK, block // 2) if early else min(self._max_block, block * 2)
        wasted = int((take[hit] - det[hit] - 1).sum())
        computed = int(take.sum())
        if 4 * wasted > computed:
            return max(_MIN_BLOCK, block // 2)
        if 8 * wasted < computed:
            return min(self._max_block, block * 2)
        return block

    @staticmethod
    def _gather(values: np.ndarray, start: np.ndarray, cols: np.ndarray, out: np.ndarray
                ) -> np.ndarray:
        """Write values[cols[j], start[j]:start[j] + L] into out[:, j] (L, k).

        ``values`` (D, W) holds one contiguous row per column, so each column's block is one
        contiguous run (a row-major batch makes every value of the block a separate cache
        line). Positions past W repeat the column's last value (finite filler, of the
        column's own magnitude: a column only uses the rows of its ``take``).
        """
        W = values.shape[1]
        L = out.shape[0]
        if int(start.max()) + L <= W:
            idx = (cols * W + start)[:, None] + np.arange(L)
        else:
            idx = np.minimum(start[:, None] + np.arange(L), W - 1)
            idx += (cols * W)[:, None]
        # column by column (each one sequential run the prefetcher follows), then transposed
        # in the cache
        np.copyto(out, np.take(values.reshape(-1), idx, mode="clip").T)
        return out

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
        """Work buffers and the fixed call sequence of the row loop, per width k.

        The two recurrences (running mean; faded sums [s_inc, -s_dec]) advance together, three
        ufunc calls per row: the sums run _LAG rows behind the mean, so each call does one step
        of both (numpy's cost per call, not per value, bounds this loop). Every quantity has a
        fixed slot in a row of G (rows x _SLOTS x k), laid out so that each call's three
        operands are three adjacent slots (one contiguous array of 3k values). Cycle c, with
        mean row t = c and sums row s = c - _LAG (row c + 1 holds what cycle c reads):

            SUB  [S_{s-1}, a_t] = [v_{s-1}, x_t] - [delta, m_{t-1}]      (G[c+2, 6:9])
            MUL  [u_s, b_t]     = [S_{s-1}, a_t] * [alpha, r_t]          (G[c+1, 1:4])
            ADD  [m_t, v_s]     = [m_{t-1}, u_s] + [b_t, D_s]            (G[c+2, 0:3])

        with r = 1/n, D = [dev, -dev] and dev = x - m, computed _LAG rows at a time from the
        means already known: river's Mean (m += (1/n)(x - m)) and sums (e = alpha e + dev -
        delta), in river's order. Row slots: 0 m, 1-2 v then u, 3 x then b, 4-5 D, 6-7 S,
        8 a, 9-10 alpha, 11 r, 12-13 delta. No call writes into one of its inputs (in-place
        ufunc calls are slower).

        G is a ring of _RING rows (logical row c is ring row (c - 2) mod _RING: smaller than a
        whole block's rows, it stays in the caches) and each view is made once per ring row
        and slot. A
        ring row holds a row only while it is live (at most 2 _LAG + 1 rows); every _LAG rows,
        calls copy the next inputs (x, r = 1/n) in and the finished means and sums out. The
        one operand that spans two rows, [delta, delta | m], takes the deltas of a lead row
        before ring row 0 where it would wrap.

        All views are made once: a loop over L rows is the first calls of the sequence, run by
        ``map`` at C level with no Python bytecode per row.
        """
        bufs = self._buffers.pop(k, None)
        if bufs is None:
            bufs = self._ring_sequence(k)
        self._buffers[k] = bufs                     # most recently used last
        while len(self._buffers) > _KEPT_WIDTHS:
            del self._buffers[next(iter(self._buffers))]
        return bufs

    def _ring_sequence(self, k: int) -> dict:
        """The buffers and calls of :meth:`_row_buffers` for width k."""
        B, R, W, P = _BLOCK, _LAG, _SLOTS, _RING
        H = np.zeros((P + 1, W, k))                 # H[0]: lead row; ring row p is H[p + 1]
        H[:, 9:11] = self.alpha
        H[:, 12:14] = self.delta
        flat = H.reshape(-1, k)                     # slot i of H[j] is flat[j * W + i]
        n_in = B + 2 * R + 2                        # input rows the sequence may read
        x, recip = np.zeros((n_in, k)), np.ones((n_in, k))
        means, sums = np.zeros((n_in, k)), np.zeros((n_in, 2, k))
        e0, zero = np.zeros((2, k)), np.zeros((2, k))
        sub, mul, add = np.subtract, np.multiply, np.add
        views: dict[tuple[int, int], np.ndarray] = {}

        def ring(row: int) -> int:
            return (row - 2) % P

        def trio(row: int, slot: int) -> np.ndarray:
            p = ring(row)
            view = views.get((p, slot))
            if view is None:
                start = slot if slot + 3 > W and p == P - 1 else (p + 1) * W + slot
                view = views[(p, slot)] = flat[start:start + 3].reshape(3 * k)
            return view

        def runs(row: int, n: int) -> list[tuple[slice, int, int]]:
            """Logical rows row .. row + n - 1 as (rows of H, first, count): 1 or 2 runs."""
            out, i = [], 0
            while i < n:
                p = ring(row + i)
                m = min(n - i, P - p)
                out.append((slice(p + 1, p + 1 + m), i, m))
                i += m
            return out

        calls: list[tuple] = []

        def copy_call(dst: np.ndarray, src: np.ndarray) -> None:
            calls.append((np.copyto, dst, src, "no"))   # (as np.copyto(dst, src, casting))

        def copy_in(src: np.ndarray, lo: int, row: int, slot: int) -> None:
            for rows, i, m in runs(row, R):
                copy_call(H[rows, slot], src[lo + i:lo + i + m])

        def sums_out(lo: int) -> None:
            for rows, i, m in runs(lo + R + 3, R):   # S_j is in row j + R + 3
                copy_call(sums[lo + i:lo + i + m], H[rows, 6:8])

        copy_in(x, 0, 1, 3)                         # x_t: row t + 1, slot 3
        copy_in(recip, 0, 2, 11)                    # r_t: row t + 2, slot 11
        ends = []                                   # calls through the end of each cycle
        for c in range(B + R + 1):
            calls.append((sub, trio(c + 1, 1), trio(c, 12), trio(c + 2, 6)))
            if c == R:                              # the sums start from the state: S_{-1}
                calls.append((sub, e0, zero, H[ring(R + 2) + 1, 6:8]))   # e0 - 0.0 == e0
            calls.append((mul, trio(c + 2, 6), trio(c + 2, 9), trio(c + 1, 1)))
            calls.append((add, trio(c + 1, 0), trio(c + 1, 3), trio(c + 2, 0)))
            if (c + 1) % R == 0 and c + 1 <= B:     # rows c + 1 - R .. c have their means
                lo, hi = c + 1 - R, c + 1
                for rows, i, m in runs(lo + 2, R):  # m_t is in row t + 2
                    copy_call(means[lo + i:lo + i + m], H[rows, 0])
                for rows, i, m in runs(lo + R + 1, R):   # D_s is read from row s + R + 1
                    a, b_ = x[lo + i:lo + i + m], means[lo + i:lo + i + m]
                    calls.append((sub, a, b_, H[rows, 4]))
                    calls.append((sub, b_, a, H[rows, 5]))
                copy_in(x, hi, hi + 1, 3)           # the next rows' inputs
                copy_in(recip, hi, hi + 2, 11)
            if c % R == 0 and 2 * R <= c <= B + R:  # sums of rows c - 2R .. c - R - 1 done
                sums_out(c - 2 * R)
            ends.append(len(calls))
        funcs, a, b_, out = (list(col) for col in zip(*calls, strict=True))
        return dict(H=H, x=x, recip=recip, means=means, sums=sums, e0=e0, runs=runs, ends=ends,
                    calls=(funcs, a, b_, out), row_counts=np.arange(1.0, B + 1)[:, None],
                    counts=np.empty((B, k)))

    def _sequential(self, cols: np.ndarray, n0: np.ndarray, L: int,
                    load: Callable[[np.ndarray], object]) -> tuple[np.ndarray, np.ndarray]:
        """Running means (L, k) and sums (L, 2, k) with river's rounding, row by row.

        ``load(out)`` writes the block's values (L, k) into ``out``; n0 (k,) are the values
        seen before it. The loop runs on a width rounded up (padding columns of zeros, whose
        results are dropped), so that the few widths met as columns finish a batch at
        different times reuse their buffers. The returned arrays are views of work buffers,
        valid until the next call.
        """
        k = cols.size
        step = max(16, 1 << max(0, k.bit_length() - 3))
        kp = -(-k // step) * step
        b = self._row_buffers(kp)
        H, x, recip, R = b["H"], b["x"], b["recip"], _LAG
        load(x[:L, :k])
        x[:L, k:] = 0.0
        x[L:] = 0.0                                   # rows past the block: finite filler
        counts = np.add(n0, b["row_counts"][:L], out=b["counts"][:L, :k])   # values since reset
        np.divide(1.0, counts, out=recip[:L, :k])
        recip[:L, k:] = 1.0
        recip[L:] = 1.0
        m_prev = H[_RING, 0]                          # m_{-1}: row 1, ring row _RING - 1
        m_prev[:k] = self._mean[cols]
        m_prev[k:] = 0.0
        b["e0"][:, :k] = self._e[:, cols]
        b["e0"][:, k:] = 0.0
        _run_calls(b["calls"], b["ends"][L + R])
        sums = b["sums"]
        if L % R:                                     # the last rows' sums: not copied yet
            lo = L - L % R
            for rows, i, m in b["runs"](lo + R + 3, L - lo):
                sums[lo + i:lo + i + m] = H[rows, 6:8]
        return b["means"][:L, :k], sums[:L, :, :k]

    def _closed_form(self, cols: np.ndarray, Xb: np.ndarray, n0: np.ndarray
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
            return self._sequential(cols, n0, L, partial(np.copyto, src=Xb))
        m0 = self._mean[cols]
        counts = n0 + np.arange(1.0, L + 1)[:, None]
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

    def _run_block(self, cols: np.ndarray, values: np.ndarray, start: np.ndarray,
                   take: np.ndarray) -> np.ndarray:
        """Advance column cols[j] over values[cols[j], start[j]:start[j] + take[j]].

        Returns per column the block row of its first detection, or -1. Each column's state is
        left as it was right after its last consumed row (the detection row, if any).
        """
        L, k = int(take.max()), cols.size
        n0 = self._n[cols]
        if self.exact:
            means, sums3 = self._sequential(cols, n0, L, partial(self._gather, values, start, cols))
        else:
            Xb = self._gather(values, start, cols, np.empty((L, k)))
            means, sums3 = self._closed_form(cols, Xb, n0)
        emin0 = self._emin[:, cols]                                  # (2, k)
        # Only a column whose block could reach the threshold needs the running minimum at
        # every row. For rows t in a span of _SPAN rows, sum_t - min_{s<=t} sum_s <=
        # max_span sum - min(emin0, sums up to the span's end), and rounding is monotonic, so
        # where that bound is <= threshold for every span no row of the block can fire.
        # (Rows past a column's `take` are filler: such columns take the exact path.)
        span_max = _per_span(np.maximum, sums3)
        span_min = np.empty((span_max.shape[0] + 1, 2, k))
        span_min[0] = emin0
        span_min[1:] = _per_span(np.minimum, sums3)
        np.minimum.accumulate(span_min, axis=0, out=span_min)       # min up to each span's end
        span_max -= span_min[1:]
        over = span_max > self.threshold                            # (spans, 2, k)
        low = span_min[-1]
        over = self._by_mode(over)                                  # (spans, k)
        maybe = over.any(axis=0)
        check = np.flatnonzero(maybe | (take < L))
        det_row = np.full(k, -1)
        last = np.full(k, L - 1)
        emin_last = low
        if check.size:
            # rows before the first span that may fire (or, for a column short of L rows, the
            # span of its last row) need no test: start there, from the exact running minimum
            # up to that span (rows past a column's take only come later)
            spans_hit = over.any(axis=1)                     # (only candidates have any)
            span0 = int(spans_hit.argmax()) if spans_hit.any() else over.shape[0]
            span0 = min(span0, int((take[check] - 1).min()) // _SPAN)
            r0 = span0 * _SPAN
            first = self.min_instances - 1 - n0[check] - r0   # first row river may test
            c_det, c_last, c_emin = self._first_fire(sums3[r0:, :, check],
                                                     span_min[span0][:, check], first,
                                                     take[check] - r0)
            det_row[check] = np.where(c_det >= 0, c_det + r0, -1)
            last[check] = c_last + r0
            emin_last[:, check] = c_emin
        j = np.arange(k)
        self._n[cols] = n0 + (last + 1)
        self._mean[cols] = means[last, j]
        self._e[:, cols] = sums3[last, :, j].T
        self._emin[:, cols] = emin_last
        return det_row

    def _by_mode(self, over: np.ndarray) -> np.ndarray:
        """(n, 2, c) over-threshold flags of [up, down] -> (n, c) for this detector's mode."""
        if self.mode == "up":
            return over[:, 0]
        if self.mode == "down":
            return over[:, 1]
        return over[:, 0] | over[:, 1]

    def _first_fire(self, sums3: np.ndarray, emin0: np.ndarray, first: np.ndarray,
                    take: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """River's test on rows first[j] .. take[j] - 1 of some columns: sums3 (L, 2, c),
        emin0 (2, c).

        Returns per column the first firing row or -1, the last consumed row (that row, or
        take - 1) and the running minima (2, c) at that row.
        """
        L, _, c = sums3.shape
        mins = np.minimum.accumulate(sums3, axis=0)
        np.minimum(mins, emin0, out=mins)                 # running minima from the state's
        fired = self._by_mode(np.subtract(sums3, mins) > self.threshold)
        rows = np.arange(L)[:, None]
        if (first > 0).any():                             # (usually every row may be tested)
            fired &= rows >= first
        if (take < L).any():
            fired &= rows < take
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
