"""Vectorized ADWIN, detection-for-detection equal to ``river.drift.ADWIN`` (river 0.26).

What river does, per column (its Rust core ``AdaptiveWindowing``, wrapped in Python):

* Each value enters bucket level 0; when a level holds ``max_buckets + 1`` buckets its two
  oldest merge into one bucket of the next level (total = t0 + t1, variance by the parallel
  formula). The window's running ``total`` (sequential sum) and ``variance`` (Welford-style
  sum of squared deviations) are updated per value.
* Every ``clock`` values, once ``width > grace_period``, every cut between buckets (oldest
  first) is tested: ``|u0/n0 - u1/n1| > eps`` with
  ``eps = sqrt(2 m (variance/width) d') + 2/3 d' m``, ``d' = ln(2 ln(width) / delta)``,
  ``m = 1/(n0 - mwl + 1) + 1/(n1 - mwl + 1)``. A cut drops the oldest bucket and rescans.
* The Python wrapper discards the whole window on the update after a detection.

Why that can be batched along time. Because of detect-and-restart, between two detections no
bucket is ever deleted, so the bucket structure after n values is a fixed function of n:
level i has received a_i blocks (a_0 = n), merged m_i = (a_i - M + 1) // 2 pairs of them when
a_i > M, holds c_i = a_i - 2 m_i buckets, and a_{i+1} = m_i. Every bucket is an aligned block
of 2^i values whose total is the pairwise tree sum of its values (exactly river's rounding:
level-(i+1) totals are level-i totals added in pairs). So for a chunk of values we compute,
with whole-array numpy operations:

1. the running total (``cumsum``, sequential like river) and variance sums;
2. per level, the totals and variances of the blocks completed in the chunk (pairwise over
   the previous level), joined to a small ring of the last blocks of each level kept as state;
3. for every test time in the chunk, the bucket totals in river's scan order (levels x
   max_buckets slots, gathered from those levels); the running sums u0 and u1 advance cut by
   cut in river's summation order, each cut one vectorized step over all test times and
   columns of the group, and the cut condition is evaluated a few cuts at a time on arrays
   sized to stay in the CPU caches.

The first test with a passing cut is the detection. Only then is river's delete-and-rescan
replayed (once per detection, not per value): the windows after 0, 1, 2, ... deletions are
computed with river's scalar recurrences and tested together, so that ``width``,
``estimation`` and ``variance`` read exactly as river's do.
Columns are advanced in groups (numpy's per-call cost is paid once a group): columns with
equal windows share all index work; columns whose windows differ (each restarted at its own
detection, the usual state of a service after a few drifts) are grouped in short steps with
per-column bucket layouts.
Logarithms use ``math.log`` (the C library's, as Rust's ``f64::ln``), since numpy's
vectorized log can differ in the last bit.

State per column is O(max_buckets x log2(width)) floats: a ring of the last
2 * max_buckets + 3 block totals and variances per level.
"""

from __future__ import annotations

import math

import numpy as np

from . import _state
from ._columns import check_batch, check_float, check_int, column_major_copy

_MAX_CHUNK = 1 << 14
# (the figures behind these sizes: docs/performance.md)
_GROUP = 16              # columns a group: a model of 10-16 signals stays in one group
_GROUP_CELLS = 1 << 14   # values a step of a group of more than _GROUP columns (short steps)
_MIX_STEP = 4096         # longest step of a group of columns with unequal windows: longer
                         # steps' bucket layouts outgrow the CPU caches
_ACCUMULATE_CELLS = 256  # (tests x columns) up to which the cut sums run as one cumsum down
                         # the cuts (numpy's accumulate along a leading axis is slower per
                         # value than row additions, but one call instead of two a cut)
_CELLS = 1 << 14          # (tests x columns) per block of tests: rows of 128 KiB
_SCAN_CELLS = 1 << 15     # (cuts x tests x columns) per step of the cut test: 256 KiB arrays


def _ln(x: np.ndarray) -> np.ndarray:
    """Natural log with the C library's rounding (river's), IEEE results for x <= 0."""
    out = np.full(x.shape, np.nan)
    pos = x > 0
    out[pos] = np.fromiter(map(math.log, x[pos].tolist()), dtype=np.float64, count=int(pos.sum()))
    out[x == 0] = -np.inf
    out[x == np.inf] = np.inf
    return out


class _Column:
    """State of one column: river's window since its last reset, in compact form.

    n            values since reset (= river's width and tick while no cut has happened)
    total, var   river's running total and sum of squared deviations
    rt, rv       (levels, ring) totals / variances of the last `ring` complete aligned blocks
                 of each level; rt[i, -1] is block (n >> i) - 1; NaN where no block exists
    pending      drift detected at the last value: the next value starts a fresh window
    post         (width, total, variance) of river's window after its cuts, when pending
    chunk        adaptive chunk length (small right after a reset, doubling after)
    delta        this column's significance (river's delta)
    """

    __slots__ = ("n", "total", "var", "rt", "rv", "pending", "post", "chunk", "delta")

    def __init__(self, ring: int, delta: float) -> None:
        self.delta = delta
        self.n = 0
        self.total = 0.0
        self.var = 0.0
        self.rt = np.full((0, ring), np.nan)
        self.rv = np.full((0, ring), np.nan)
        self.pending = False
        self.post = (0.0, 0.0, 0.0)
        self.chunk = 0


def _group_size(step: int) -> int:
    """Columns a group advancing `step` values: _GROUP, more in short steps."""
    return max(_GROUP, _GROUP_CELLS // step)


class ADWIN:
    """ADWIN change detector over ``n_features`` independent columns.

    Each column keeps an adaptive window of its recent values and reports a change when two
    sub-windows have means that differ by more than a Hoeffding-style bound; detections,
    ``width``, ``estimation`` and ``variance`` are river's (0.26), value for value.

    Parameters
    ----------
    n_features : int
        Independent columns D (more are added with :meth:`add_features`).
    delta : float
        Significance in (0, 1): the smaller, the fewer false alarms and the later a real
        change is found. Per column with :meth:`set_delta`.
    clock : int
        Values between two tests of the window's cuts (>= 1).
    max_buckets : int
        Buckets per level of the exponential histogram before two merge (>= 2).
    min_window_length : int
        Smallest sub-window a cut may leave, in values (>= 1).
    grace_period : int
        Values since the last reset before the first test (>= 0).

    Notes
    -----
    Input is a float64 (B, D) batch per :meth:`update`; NaN means "no value of this column in
    this row". State per column is O(max_buckets x log2(width)) floats. After a detection the
    column's window restarts at the next value (river's wrapper discards it).

    References
    ----------
    A. Bifet and R. Gavaldà, "Learning from time-changing data with adaptive windowing",
    SIAM International Conference on Data Mining, 2007.
    river.drift.ADWIN (river 0.26), the reference these detections are tested against.

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> X = np.concatenate([rng.normal(0, 1, (1000, 1)), rng.normal(3, 1, (1000, 1))])
    >>> adwin = ADWIN(n_features=1)
    >>> np.flatnonzero(adwin.update(X)[:, 0]).tolist()
    [1023]
    """

    def __init__(self, n_features: int = 1, delta: float = 0.002, clock: int = 32,
                 max_buckets: int = 5, min_window_length: int = 5, grace_period: int = 10) -> None:
        self.n_features = check_int("n_features", n_features, 0)
        self.delta = check_float("delta", delta)
        if not 0 < self.delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self.clock = check_int("clock", clock, 1)
        # river's own core panics on max_buckets=1 (a cut can empty a middle level), so >= 2
        self.max_buckets = check_int("max_buckets", max_buckets, 2)
        self.min_window_length = check_int("min_window_length", min_window_length, 1)
        self.grace_period = check_int("grace_period", grace_period, 0)
        self._ring = 2 * self.max_buckets + 3
        self._cols = [_Column(self._ring, self.delta) for _ in range(self.n_features)]
        self.n_detections = np.zeros(self.n_features, dtype=np.int64)
        self._max_chunk = min(_MAX_CHUNK, max(1024, 512 * self.clock))   # ~512 tests a chunk
        self._min_chunk = min(self._max_chunk, max(256, 8 * self.clock))
        self._dprime_tables: dict[float, np.ndarray] = {}

    # ---------------------------------------------------------------- properties
    def _window(self, c: _Column) -> tuple[float, float, float]:
        return c.post if c.pending else (float(c.n), c.total, c.var)

    @property
    def width(self) -> np.ndarray:
        """(D,) number of values in each column's window (river's ``width``)."""
        return np.array([self._window(c)[0] for c in self._cols], dtype=np.float64).astype(np.int64)

    @property
    def estimation(self) -> np.ndarray:
        """(D,) mean of each column's window; 0.0 for an empty window (river's ``estimation``)."""
        out = np.zeros(self.n_features)
        for j, c in enumerate(self._cols):
            w, t, _ = self._window(c)
            if w:
                out[j] = t / w
        return out

    @property
    def variance(self) -> np.ndarray:
        """(D,) river's ``variance``: the window's sum of squared deviations from its mean."""
        return np.array([self._window(c)[2] for c in self._cols], dtype=np.float64)

    @property
    def total(self) -> np.ndarray:
        """(D,) sum of the values in each column's window (river's ``total``)."""
        return np.array([self._window(c)[1] for c in self._cols], dtype=np.float64)

    # ---------------------------------------------------------------- growth
    @property
    def deltas(self) -> np.ndarray:
        """(D,) significance of each column (``delta`` unless changed by :meth:`set_delta`)."""
        return np.array([c.delta for c in self._cols], dtype=np.float64)

    def set_delta(self, delta: float, columns: np.ndarray | list[int] | None = None) -> None:
        """Change the significance of some columns (all by default) from their next test on,
        as if river's detector had its ``delta`` changed at that moment (e.g. a Bonferroni
        correction as a model's signals grow)."""
        delta = check_float("delta", delta)
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        for j in range(self.n_features) if columns is None else columns:
            self._cols[int(j)].delta = delta

    def add_features(self, k: int) -> None:
        """Append ``k`` fresh columns (new streams), keeping the existing ones untouched."""
        k = check_int("k", k, 0)
        self._cols.extend(_Column(self._ring, self.delta) for _ in range(k))
        self.n_detections = np.concatenate([self.n_detections, np.zeros(k, dtype=np.int64)])
        self.n_features += k

    def reset_features(self, columns: list[int] | np.ndarray) -> None:
        """Start these columns afresh (an empty window), as a new river detector would, keeping
        their delta and detection counts."""
        for j in columns:
            c = self._cols[int(j)]
            self._cols[int(j)] = _Column(self._ring, c.delta)

    # ---------------------------------------------------------------- update
    def update(self, X: np.ndarray) -> np.ndarray:
        """Feed a batch X (B, D) and return the (B, D) bool mask of detections."""
        X, has_nan = check_batch(X, self.n_features)
        B, D = X.shape
        mask = np.zeros((B, D), dtype=bool)
        if B == 0 or D == 0:
            return mask
        XT = column_major_copy(X)        # one contiguous row per column (work memory)
        values, rows = self._columns_of(XT, has_nan)
        self._mark(mask, self._feed(self._cols, values, None if has_nan else XT), rows)
        return mask

    @staticmethod
    def update_many(detectors: list[ADWIN], batches: list[np.ndarray]) -> list[np.ndarray]:
        """``[d.update(X) for d, X in zip(detectors, batches)]``, with the columns of all the
        detectors advanced together (numpy's per-call cost is paid once a group of columns,
        not once a detector: many small batches, e.g. one per model, cost much less).

        Detectors whose parameters other than ``delta`` differ from the first one's are
        updated on their own. Results and states are exactly those of separate updates.

        >>> import numpy as np
        >>> rng = np.random.default_rng(7)
        >>> models = [ADWIN(n_features=2), ADWIN(n_features=3)]
        >>> batches = [rng.normal(0, 1, (1500, 2)), rng.normal(0, 1, (900, 3))]
        >>> batches[0][500:, 1] += 3.0             # model 0, column 1 drifts
        >>> masks = ADWIN.update_many(models, batches)
        >>> [np.argwhere(m).tolist() for m in masks]
        [[[511, 1]], []]
        """
        if len(detectors) != len(batches):
            raise ValueError(f"{len(detectors)} detectors but {len(batches)} batches")
        if not detectors:
            return []
        lead = detectors[0]
        params = (lead.clock, lead.max_buckets, lead.min_window_length, lead.grace_period)
        masks: list[np.ndarray | None] = [None] * len(detectors)
        cols: list[_Column] = []
        values: list[np.ndarray] = []
        spans: list[tuple[int, int, list]] = []     # (detector, its first column, its rows)
        for i, (det, X) in enumerate(zip(detectors, batches, strict=True)):
            if (det.clock, det.max_buckets, det.min_window_length, det.grace_period) != params:
                masks[i] = det.update(X)
                continue
            X, has_nan = check_batch(X, det.n_features)
            masks[i] = np.zeros(X.shape, dtype=bool)
            if X.size == 0:
                continue
            det_values, det_rows = det._columns_of(np.ascontiguousarray(X.T), has_nan)
            spans.append((i, len(cols), det_rows))
            cols.extend(det._cols)
            values.extend(det_values)
        hits = lead._feed(cols, values, None)
        for i, first, rows in spans:
            detectors[i]._mark(masks[i], hits[first:first + len(rows)], rows)
        return masks

    @staticmethod
    def _columns_of(XT: np.ndarray, has_nan: bool
                    ) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
        """Per column (row of XT) its values, NaN dropped, and, if some were, the rows they
        came from."""
        nan_cols = np.isnan(XT).any(axis=1) if has_nan else np.zeros(XT.shape[0], dtype=bool)
        values: list[np.ndarray] = []
        rows: list[np.ndarray | None] = []
        for j, x in enumerate(XT):
            r = None
            if nan_cols[j]:
                r = np.flatnonzero(~np.isnan(x))
                x = x[r]
            values.append(x)
            rows.append(r)
        return values, rows

    def _mark(self, mask: np.ndarray, hits: list[list[int]], rows: list[np.ndarray | None]) -> None:
        """Set column j's detections (indices into its values, then rows) in mask; count them."""
        for j, h in enumerate(hits):
            if h:
                idx = np.asarray(h) if rows[j] is None else rows[j][h]
                mask[idx, j] = True
                self.n_detections[j] += len(h)

    def _feed(self, cols: list[_Column], values: list[np.ndarray], matrix: np.ndarray | None
              ) -> list[list[int]]:
        """Feed each column ``cols[a]`` with its values ``values[a]`` (1-D, any lengths).

        ``matrix``, if given, is a (k, m) array whose rows are the values (then a group of
        consecutive columns reads a view of it, not a copy). Returns per column the indices
        of its detections in its values. Each column advances chunk by chunk (its chunk
        doubles while it does not detect, and restarts small after a detection); in each
        round, columns advance together in groups (see _rounds), whatever their positions in
        their values. A column that detects stops at that value and goes on from the next.
        All columns must be of detectors with this one's parameters (delta aside).
        """
        k = len(cols)
        sizes = [v.size for v in values]
        hits: list[list[int]] = [[] for _ in range(k)]
        pos = [0] * k
        active = [a for a in range(k) if sizes[a]]
        while active:
            for step, group in self._rounds(cols, active, sizes, pos):
                p0 = pos[group[0]]
                if matrix is not None and len(group) > 1 and all(pos[a] == p0 for a in group) \
                        and group == list(range(group[0], group[-1] + 1)):
                    Xc = matrix[group[0]:group[-1] + 1, p0:p0 + step]
                else:
                    Xc = np.array([values[a][pos[a]:pos[a] + step] for a in group])
                group_cols = [cols[a] for a in group]
                det = self._advance(group_cols, Xc)
                for a, c, d in zip(group, group_cols, det.tolist(), strict=True):
                    if d < 0:
                        if step >= c.chunk:
                            c.chunk = min(self._max_chunk, c.chunk * 2)
                        pos[a] += step
                    else:
                        hits[a].append(pos[a] + d)
                        pos[a] += d + 1
            active = [a for a in active if pos[a] < sizes[a]]
        return hits

    def _rounds(self, cols: list[_Column], active: list[int], sizes: list[int], pos: list[int]
                ) -> list[tuple[int, list[int]]]:
        """One round of steps: (step length, group of active columns) to advance together.

        A column's step is its chunk, or the rest of its values when that is at most
        _MIX_STEP (a column restarted by a detection then joins the others at once: its
        values after a detection in the step cost little). Columns with equal windows and
        steps share all index work: groups of them. The others are grouped with columns of
        other window lengths and steps of at most _MIX_STEP values (sorted by step, a group
        takes its shortest: the others go on in the next round): that saves numpy's per-call
        cost, which dominates short steps, while their per-column bucket layouts stay in
        the CPU caches. The rest of a batch up to 2 * _MIX_STEP values (a batch of the
        service's 5000 rows) is taken in two halves, so that it groups too; a column left
        alone takes its whole step. A group holds up to _GROUP columns, more in short steps
        (up to _GROUP_CELLS values). Only columns of the same delta are grouped.
        """
        equal: dict[tuple[int, int, float], list[int]] = {}
        for a in active:
            c = cols[a]
            if c.pending or c.chunk == 0:
                if c.pending:
                    self._reset(c)
                c.chunk = self._min_chunk
            rest = sizes[a] - pos[a]
            step = rest if rest <= _MIX_STEP else min(c.chunk, rest)
            equal.setdefault((step, c.n, c.delta), []).append(a)
        rounds: list[tuple[int, list[int]]] = []
        mixed: dict[float, list[tuple[int, int, int, int]]] = {}
        for (step, n, delta), ready in equal.items():
            part = step
            if step > _MIX_STEP and step <= 2 * _MIX_STEP and step == sizes[ready[0]] - pos[ready[0]]:
                part = -(-step // 2)          # the rest of a batch: in two halves, to group
            if len(ready) >= _GROUP // 2 or part > _MIX_STEP:
                size = _group_size(step)
                rounds.extend((step, ready[s:s + size]) for s in range(0, len(ready), size))
            else:
                mixed.setdefault(delta, []).extend((part, n, a, step) for a in ready)
        for ready in mixed.values():
            ready.sort()                                  # similar steps and windows together
            s = 0
            while s < len(ready):
                step = ready[s][0]
                size = _group_size(step)
                e = s + 1
                while e < len(ready) and e - s < size and ready[e][0] <= 2 * step:
                    e += 1
                if e - s == 1:
                    step = ready[s][3]                    # alone: its whole step
                rounds.append((step, [a for _, _, a, _ in ready[s:e]]))
                s = e
        return rounds

    def _reset(self, col: _Column) -> None:
        col.n, col.total, col.var = 0, 0.0, 0.0
        col.rt = np.full((0, self._ring), np.nan)
        col.rv = np.full((0, self._ring), np.nan)
        col.pending = False
        col.post = (0.0, 0.0, 0.0)
        col.chunk = 0

    def _advance(self, cols: list[_Column], X: np.ndarray) -> np.ndarray:
        """Advance columns over chunk X (k, C): row j holds column j's next C values.

        The columns' windows may differ in length. What depends only on the window length
        (bucket layout, test widths) is computed once when all lengths are equal, per column
        otherwise. Returns per column the index in the chunk of its first detection, or -1.
        A column that detects is left at that value, with river's post-cut window in
        ``col.post`` and ``col.pending`` set; the others are left at the end of the chunk.
        """
        k, C = X.shape
        R = self._ring
        n0 = np.array([c.n for c in cols], dtype=np.int64)               # (k,) values so far
        same = bool(n0.min() == n0.max())
        if same:
            n0i = int(n0[0])
            w = np.arange(n0i + 1, n0i + C + 1, dtype=np.float64)       # width after each value
        else:
            w = (n0[:, None] + np.arange(1, C + 1)).astype(np.float64)
        tot = np.empty((k, C + 1))
        tot[:, 0] = [c.total for c in cols]
        tot[:, 1:] = X
        np.cumsum(tot, axis=1, out=tot)                              # river: total += value
        var = np.empty((k, C + 1))
        var[:, 0] = [c.var for c in cols]
        inc = var[:, 1:]
        wm1 = w - 1.0
        with np.errstate(invalid="ignore", divide="ignore"):
            np.divide(tot[:, :-1], wm1, out=inc)                     # value - total / (w - 1)
        np.subtract(X, inc, out=inc)
        sq = inc * wm1                                               # (w - 1) * inc * inc / w
        sq *= inc
        np.divide(sq, w, out=inc)
        if same and n0i == 0:
            inc[:, 0] = 0.0                                          # width 1: no increment
        elif not same:
            inc[n0 == 0, 0] = 0.0
        np.cumsum(var, axis=1, out=var)
        tot, var = tot[:, 1:], var[:, 1:]

        # blocks per level: ring (the last R blocks before the chunk) + blocks of this chunk
        # (+ 2 spare slots when window lengths differ: then a column may have one block less
        # than the level's longest and its pairing may read past its blocks). The totals of all
        # levels side by side in one array (views per level) and a final 0.0 column, the total
        # of an empty bucket slot; the variances likewise. Block b of level i of column j is
        # at position b - offsets[i][j] of the level. Each level's new blocks are written in
        # place by the pairing of the level below.
        n_end = n0 + C
        n_levels = int(n_end.max()).bit_length()
        if same:
            new = [((n0i + C) >> i) - (n0i >> i) for i in range(n_levels)]   # blocks per level
            most = new
        else:
            new = [(n_end >> i) - (n0 >> i) for i in range(n_levels)]   # (k,) blocks per level
            most = [int(h.max()) for h in new]
        seg = [R + h + (0 if same else 2) for h in most]
        bases = np.cumsum([0] + seg)
        make = np.empty if same else np.zeros
        flat = make((k, int(bases[-1]) + 1))
        flat[:, -1] = 0.0
        flat_v = make((k, int(bases[-1])))
        levels_t = [flat[:, bases[i]:bases[i + 1]] for i in range(n_levels)]   # (k, seg[i])
        levels_v = [flat_v[:, bases[i]:bases[i + 1]] for i in range(n_levels)]
        levels_t[0][:, R:R + C] = X                 # level 0: the values, variance 0.0
        levels_v[0][:, R:R + C] = 0.0
        by_row = np.arange(k)[:, None]                               # row of each column
        rings = [c.rt.shape[0] for c in cols]
        n_ring = max(rings)
        if n_ring:
            if min(rings) == n_ring:
                rings_t = np.array([c.rt for c in cols])            # (k, n_ring, R)
                rings_v = np.array([c.rv for c in cols])
            else:
                rings_t = np.full((k, n_ring, R), np.nan)
                rings_v = np.full((k, n_ring, R), np.nan)
                for j, c in enumerate(cols):
                    rings_t[j, :rings[j]] = c.rt
                    rings_v[j, :rings[j]] = c.rv
        # every level's ring in place at once (NaN for the levels the columns did not have)
        ring_cols = (bases[:n_levels, None] + np.arange(R)).reshape(-1)
        had = ring_cols[:n_ring * R]
        if n_ring:
            flat[:, had] = rings_t.reshape(k, -1)
            flat_v[:, had] = rings_v.reshape(k, -1)
        if n_ring < n_levels:
            flat[:, ring_cols[n_ring * R:]] = np.nan
            flat_v[:, ring_cols[n_ring * R:]] = np.nan
        for i in range(n_levels - 1):
            lt, lv = levels_t[i], levels_v[i]
            half = most[i + 1]                      # new blocks of level i + 1
            if half == 0:
                break                               # none above either: rings as they were
            # pair blocks of level i into level i + 1 (a pending left half comes from the ring)
            parity = None if same else (n0 >> i) & 1
            if same or parity.min() == parity.max():
                first = R - ((n0i >> i) & 1 if same else int(parity[0]))
                t0, t1 = lt[:, first:first + 2 * half:2], lt[:, first + 1:first + 2 * half:2]
                v0, v1 = lv[:, first:first + 2 * half:2], lv[:, first + 1:first + 2 * half:2]
            else:
                left = (R - parity)[:, None] + 2 * np.arange(half)
                right = left + 1
                t0, t1, v0, v1 = lt[by_row, left], lt[by_row, right], lv[by_row, left], lv[by_row, right]
            np.add(t0, t1, out=levels_t[i + 1][:, R:R + half])
            new_v = levels_v[i + 1][:, R:R + half]
            # river: variance = (v0 + v1) + n * 0.5 * dmu * dmu, with n = 2**i, dmu = mu1 - mu2
            # and mu = total / n; x * 2**-i == x / 2**i bit for bit. At level 0 (n = 1) the
            # values' variances are 0.0 and 0.0 + 0.0 + x == x: the same numbers, fewer steps.
            if i == 0:
                dmu = np.subtract(t0, t1)
                np.multiply(dmu, 0.5, out=new_v)
                new_v *= dmu
                continue
            scale = 1.0 / float(1 << i)
            dmu = t0 * scale
            dmu -= t1 * scale
            dev = dmu * (float(1 << i) * 0.5)
            dev *= dmu
            np.add(v0, v1, out=new_v)
            new_v += dev

        det = self._first_cut(n0, same, C, tot, var, flat, bases[:-1], cols[0].delta)
        # the ring of each level: its last R blocks (trimmed to the column's own levels)
        if same:
            ring_idx = (bases[1:, None] - R + np.arange(R)).reshape(-1)
            ring_t = flat[:, ring_idx].reshape(k, n_levels, R)
            ring_v = flat_v[:, ring_idx].reshape(k, n_levels, R)
        else:
            ends = np.stack(new, axis=1)                                # (k, n_levels)
            ring_idx = (bases[:-1] + ends)[:, :, None] + np.arange(R)   # (k, n_levels, R)
            ring_t = flat[by_row[:, :, None], ring_idx]                 # (k, n_levels, R)
            ring_v = flat_v[by_row[:, :, None], ring_idx]
        for j, c in enumerate(cols):
            d = int(det[j])
            if d < 0:
                own = int(n_end[j]).bit_length()
                c.n, c.total, c.var = int(n_end[j]), float(tot[j, -1]), float(var[j, -1])
                c.rt, c.rv = ring_t[j, :own], ring_v[j, :own]
                continue
            wd = int(n0[j]) + d + 1
            c.n, c.total, c.var = wd, float(tot[j, d]), float(var[j, d])
            offsets = [(int(n0[j]) >> i) - R for i in range(n_levels)]   # block of element 0
            c.post = self._post_cut_window(wd, c.total, c.var, [lt[j] for lt in levels_t],
                                           [lv[j] for lv in levels_v], offsets, c.delta)
            c.pending = True
        return det

    @staticmethod
    def _bucket_counts(width: np.ndarray, M: int) -> tuple[np.ndarray, np.ndarray]:
        """River's buckets after `width` values (any shape S): (counts, first block index),
        each (L, *S).

        Level i has received a_i blocks (a_0 = width), merged m_i pairs of them and holds
        c_i = a_i - 2 m_i buckets: blocks 2 m_i .. a_i - 1 of level i; a_{i+1} = m_i =
        max((a_i - (M - 1)) // 2, 0). Nested floor divisions compose, so in closed form
        a_i = max((width - (M - 1) (2^i - 1)) // 2^i, 0).
        """
        width = np.asarray(width, dtype=np.int64)
        n_levels = max(1, int(width.max()).bit_length() + 1)
        i = np.arange(n_levels, dtype=np.int64).reshape((-1,) + (1,) * width.ndim)
        a = np.maximum((width - (M - 1) * ((1 << i) - 1)) >> i, 0)     # (levels, *S)
        used = int(np.flatnonzero(a.reshape(n_levels, -1).any(axis=1))[-1]) + 1 \
            if width.any() else 0
        a = a[:used + 1]
        merges = a[1:]
        return a[:-1] - 2 * merges, 2 * merges

    def _cut_scan(self, rows, sizes: np.ndarray, width: np.ndarray, total: np.ndarray,
                  var: np.ndarray, dprime: np.ndarray, n0: np.ndarray | None = None
                  ) -> np.ndarray:
        """river's cut test over all cuts: bool (k, T), True where some cut of window t of
        column j passes.

        Window t of column j has ``width[j, t]`` values and buckets of ``sizes[:, j, t]``
        (Q, k', T) in river's scan order (empty slots: size 0 and total 0.0, which repeat the
        previous cut exactly and change nothing); k' is k, or 1 when all columns' windows
        are alike (then broadcast). ``rows(qs)`` gives the columns' bucket totals of cuts
        ``qs`` as a (len(qs), k, T) array; ``total`` and ``var`` (k, T) are the running
        total and variance. Windows are the last axis, so every broadcast operand runs along
        the long inner loop. What depends only on sizes (n0, n1, m) is computed once for all
        alike columns. The running sums u0, u1 advance cut by cut in river's order (a row
        addition each: numpy's accumulate along a leading axis is several times slower); the
        test itself runs on a few cuts at a time, sized to stay in the CPU caches. Cuts whose
        slots are all empty are skipped (they repeat the previous cut). ``n0`` (Q, k', T),
        the values before each cut, is the running sum of ``sizes`` unless given.
        """
        mwl = float(self.min_window_length)
        if n0 is None:                                               # river: n0 += bucket_size
            n0 = np.empty(sizes.shape)
            acc = np.zeros(sizes.shape[1:])
            for q, size_q in enumerate(sizes):
                acc = np.add(acc, size_q, out=n0[q])
        n1 = width - n0
        shape_ok = (n0 >= mwl) & (n1 >= mwl)
        k, T = var.shape
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            # m = 1 / (n0 - mwl + 1) + 1 / (n1 - mwl + 1)   (integers: exact in any order)
            m = 1.0 / (n0 - (mwl - 1.0)) + 1.0 / (n1 - (mwl - 1.0))
            two_thirds_dp_m = (2.0 / 3.0 * dprime) * m               # ((2/3) d') m, as river
            two_thirds_dp_m[~shape_ok] = np.inf                      # such a cut never passes
            # eps = sqrt(2 m (var / width) d') + 2/3 d' m. Scaling by 2 is exact, so
            # (2 m)(var/w) == m (2 (var/w)) bit for bit.
            two_vw = 2.0 * (var / width)                             # (k, T)
            cuts = np.flatnonzero((sizes > 0).reshape(sizes.shape[0], -1).any(axis=1))
            g_max = max(1, min(cuts.size, _SCAN_CELLS // (k * T)))
            # U0[1 + a], U1[1 + a]: u0, u1 after cut a of the step; row 0 carries the sums in
            U0, U1 = np.empty((g_max + 1, k, T)), np.empty((g_max + 1, k, T))
            U0[0], U1[0] = 0.0, total
            dm_buf, root_buf = np.empty((g_max, k, T)), np.empty((g_max, k, T))
            hit = np.zeros((k, T), dtype=bool)
            for s in range(0, cuts.size, g_max):
                qs = cuts[s:s + g_max]
                g = qs.size
                totals = rows(qs)                                    # (g, k, T)
                if k * T <= _ACCUMULATE_CELLS:
                    # few windows: one accumulation down the cuts (the same additions in
                    # the same order; u1 - t == u1 + (-t) exactly)
                    U0[1:g + 1] = totals
                    np.negative(totals, out=U1[1:g + 1])
                    np.cumsum(U0[:g + 1], axis=0, out=U0[:g + 1])
                    np.cumsum(U1[:g + 1], axis=0, out=U1[:g + 1])
                else:
                    for a in range(g):
                        np.add(U0[a], totals[a], out=U0[a + 1])      # river: u0 += total_at
                        np.subtract(U1[a], totals[a], out=U1[a + 1])  # river: u1 -= total_at
                u0s, u1s = U0[1:g + 1], U1[1:g + 1]
                if shape_ok[qs].any():
                    dm, root = dm_buf[:g], root_buf[:g]
                    np.divide(u0s, n0[qs], out=dm)                  # delta_mean =
                    dm -= np.divide(u1s, n1[qs], out=root)          # u0 / n0 - u1 / n1
                    np.abs(dm, out=dm)
                    np.multiply(m[qs], two_vw, out=root)
                    root *= dprime
                    np.sqrt(root, out=root)
                    root += two_thirds_dp_m[qs]
                    hit |= (dm > root).any(axis=0)
                U0[0], U1[0] = U0[g], U1[g]                          # carried to the next step
        return hit

    def _first_cut(self, n0: np.ndarray, same: bool, C: int, tot: np.ndarray, var: np.ndarray,
                   flat: np.ndarray, bases: np.ndarray, delta: float) -> np.ndarray:
        """Per column of the group, the chunk index of its first passing test, or -1.

        ``n0`` (k,) values before the chunk per column (all equal if ``same``). ``flat``
        (k, F) holds every level's block totals side by side and a final 0.0; block b of
        level i of column j is column ``bases[i] + b - (n0[j] >> i) + ring`` of row j.
        """
        clock, M, R = self.clock, self.max_buckets, self._ring
        k, F = flat.shape
        n0s = n0[:1] if same else n0                                 # (k',)
        first = n0s + 1                                              # width at chunk index 0
        start = np.maximum(first, self.grace_period + 1)
        start = -(-start // clock) * clock                           # first multiple of clock
        n_tests = (n0s + C - start) // clock + 1                     # (k',) tests in the chunk
        T = int(n_tests.max())
        if T <= 0:
            return np.full(k, -1)
        tw = start[:, None] + clock * np.arange(T)                   # (k', T) test widths
        in_chunk = np.arange(T) < n_tests[:, None]
        if not in_chunk.all():
            tw = np.where(in_chunk, tw, first[:, None])              # placeholders, masked out
        ti = tw - first[:, None]                                     # their index in the chunk
        counts, firsts = self._bucket_counts(tw, M)                  # (L, k', T)
        L, kk = counts.shape[0], n0s.size
        # river scans the top level first, oldest bucket first: slot s of the l-th level from
        # the top is cut l * M + s. Everything is built in that order: (L, M, k', T).
        counts, firsts = counts[::-1, None], firsts[::-1, None]      # (L, 1, k', T)
        level = np.arange(L - 1, -1, -1, dtype=np.int64)[:, None]   # (L, 1)
        block0 = bases[:L][::-1, None] + R - (n0s >> level)          # (L, k'): block 0's column
        ks = np.arange(M)[:, None, None]                             # (M, 1, 1)
        idx = (firsts + block0[:, None, :, None]) + ks               # (L, M, k', T)
        valid = ks < counts
        idx[~valid] = F - 1
        scale = np.ldexp(1.0, level)[:, :, None, None]               # (L, 1, 1, 1): 2**level
        sizes = valid * scale
        # values before each slot's cut: the levels above, then this level's buckets up to
        # the slot (integers, exact in float64)
        level_sizes = counts * scale                                 # (L, 1, k', T)
        above = np.cumsum(level_sizes, axis=0) - level_sizes
        n0q = np.minimum(ks + 1, counts) * scale
        n0q += above
        idx, sizes, n0q = (x.reshape(L * M, kk, T) for x in (idx, sizes, n0q))
        width = tw.astype(np.float64)
        dprime = self._dprime(tw, delta)
        if same:
            tot_t, var_t = tot[:, ti[0]], var[:, ti[0]]              # (k, T)
        else:
            by_row = np.arange(k)[:, None]
            tot_t, var_t = tot[by_row, ti], var[by_row, ti]
            idx += (np.arange(k) * F)[:, None]                       # rows of flat, flattened
        flat_all = flat.reshape(-1)
        ti = np.broadcast_to(ti, (k, T))
        first_hit = np.full(k, -1)
        # tests in blocks whose rows stay in the CPU caches; stop once all columns have hit
        step = max(1, _CELLS // k)
        for s in range(0, T, step):
            e = min(T, s + step)
            idx_b = idx[:, :, s:e]
            if same:
                def rows(qs, idx_b=idx_b):
                    return np.take(flat, idx_b[qs, 0], axis=1).transpose(1, 0, 2)
            else:
                def rows(qs, idx_b=idx_b):
                    return np.take(flat_all, idx_b[qs])
            hit = self._cut_scan(rows, sizes[:, :, s:e], width[:, s:e], tot_t[:, s:e],
                                 var_t[:, s:e], dprime[:, s:e], n0q[:, :, s:e])  # (k, e - s)
            hit &= in_chunk[:, s:e]
            new = (first_hit < 0) & hit.any(axis=1)
            if new.any():
                rows_new = np.flatnonzero(new)
                first_hit[new] = ti[rows_new, s + hit[new].argmax(axis=1)]
                if (first_hit >= 0).all():
                    break
        return first_hit

    def _dprime(self, tw: np.ndarray, delta: float) -> np.ndarray:
        """river's d' = ln(2 ln(width) / delta) for test widths tw (multiples of clock).

        Looked up in a table per delta indexed by width // clock, extended on demand with
        math.log (tables are shared by the detector's columns and are not part of its state).
        """
        k = tw // self.clock
        need = int(k.max()) + 1
        table = self._dprime_tables.get(delta, np.zeros(0))
        if need > table.size:
            size = max(need, 2 * table.size, 1024)
            widths = np.arange(size, dtype=np.float64) * self.clock
            with np.errstate(divide="ignore", invalid="ignore"):
                table = self._dprime_tables[delta] = _ln(2.0 * _ln(widths) / delta)
        return table[k]

    def _post_cut_window(self, width: int, total: float, variance: float,
                         levels_t: list[np.ndarray], levels_v: list[np.ndarray],
                         offsets: list[int], delta: float) -> tuple[float, float, float]:
        """Replay river's delete-and-rescan at a detection; return its final window.

        River drops the oldest bucket and rescans the whole window while some cut passes.
        Here the windows after 0, 1, 2, ... drops are computed first (river's scalar
        recurrences), then all their scans are evaluated as one cut test (window s = buckets
        s.., same arithmetic as the detection itself); the answer is the first window where
        no cut passes. Runs once per detection, never per value.
        """
        counts, firsts = self._bucket_counts(np.array([width]), self.max_buckets)
        # buckets oldest first: totals, variances, sizes
        bt, bv, bn = [], [], []
        for i in range(counts.shape[0] - 1, -1, -1):
            lo = int(firsts[i, 0]) - offsets[i]
            hi = lo + int(counts[i, 0])
            bt.extend(levels_t[i][lo:hi].tolist())
            bv.extend(levels_v[i][lo:hi].tolist())
            bn.extend([float(1 << i)] * (hi - lo))
        # the window after s drops, for every s until it empties (river's delete_element)
        windows = [(float(width), total, variance)]
        W, TOT, VAR = windows[0]
        for u, v, n in zip(bt, bv, bn, strict=True):
            if W <= 0:
                break
            mu = u / n
            W -= n
            TOT -= u
            with np.errstate(divide="ignore", invalid="ignore"):
                mu_w = float(np.float64(TOT) / np.float64(W))
            VAR -= v + n * W * (mu - mu_w) * (mu - mu_w) / (n + W)
            windows.append((W, TOT, VAR))
        B, S = len(bt), len(windows)
        pos = np.arange(B)[:, None] + np.arange(S)                  # (cut q, window s): bucket
        live = pos < B
        pos[~live] = 0
        totals = np.where(live, np.asarray(bt + [0.0])[pos], 0.0)[:, None]  # (Q, 1, S)
        sizes = np.where(live, np.asarray(bn + [0.0])[pos], 0.0)[:, None]   # (Q, 1, S)
        Ws, TOTs, VARs = (np.array(col)[None] for col in zip(*windows, strict=True))   # (1, S)
        with np.errstate(divide="ignore", invalid="ignore"):
            dprime = _ln(2.0 * _ln(Ws) / delta)
        passed = self._cut_scan(lambda qs: totals[qs], sizes, Ws, TOTs, VARs, dprime)[0]
        Ws = Ws[0]
        # river stops at the first window without a passing cut, or an empty one
        stop = [s for s in range(S) if not passed[s] or Ws[s] <= 0 or s == B]
        return windows[stop[0] if stop else S - 1]

    # ---------------------------------------------------------------- state
    def to_bytes(self) -> bytes:
        """Serialize the whole state (parameters included); see :meth:`from_bytes`."""
        header = {"n_features": self.n_features, "delta": self.delta, "clock": self.clock,
                  "max_buckets": self.max_buckets, "min_window_length": self.min_window_length,
                  "grace_period": self.grace_period}
        cols = self._cols
        levels = np.array([c.rt.shape[0] for c in cols], dtype=np.int64)
        arrays = {
            "n": np.array([c.n for c in cols], dtype=np.int64),
            "chunk": np.array([c.chunk for c in cols], dtype=np.int64),
            "scalars": np.array([[c.total, c.var, *c.post] for c in cols],
                                dtype=np.float64).reshape(len(cols), 5),
            "pending": np.array([c.pending for c in cols], dtype=bool),
            "levels": levels,
            "rt": np.concatenate([c.rt for c in cols]) if cols else np.zeros((0, self._ring)),
            "rv": np.concatenate([c.rv for c in cols]) if cols else np.zeros((0, self._ring)),
            "n_detections": self.n_detections,
            "deltas": self.deltas,
        }
        return _state.pack("ADWIN", header, arrays)

    @classmethod
    def from_bytes(cls, blob: bytes) -> ADWIN:
        """Rebuild a detector from :meth:`to_bytes` output; raises StateError if invalid."""
        def shapes(adwin: ADWIN) -> dict[str, tuple[int, ...]]:
            D = adwin.n_features
            return {"n": (D,), "chunk": (D,), "scalars": (D, 5), "pending": (D,),
                    "levels": (D,), "n_detections": (D,), "deltas": (D,)}

        return _state.rebuild("ADWIN", blob, lambda header: cls(**header), shapes, cls._fill)

    def _fill(self, a: dict[str, np.ndarray]) -> None:
        """Set the state from checked-shape arrays of :meth:`to_bytes`."""
        levels = a["levels"]
        if not ((a["deltas"] > 0) & (a["deltas"] < 1)).all():
            raise _state.StateError("ADWIN state has a delta outside (0, 1)")
        if (levels < 0).any() or a["rt"].shape != (int(levels.sum()), self._ring) \
                or a["rv"].shape != a["rt"].shape or (a["n"] < 0).any():
            raise _state.StateError("ADWIN state arrays are inconsistent")
        bounds = np.concatenate([[0], np.cumsum(levels)])
        for j, c in enumerate(self._cols):
            c.n = int(a["n"][j])
            c.chunk = int(a["chunk"][j])
            c.total, c.var = float(a["scalars"][j, 0]), float(a["scalars"][j, 1])
            c.post = tuple(float(v) for v in a["scalars"][j, 2:5])
            c.pending = bool(a["pending"][j])
            c.delta = float(a["deltas"][j])
            c.rt = a["rt"][bounds[j]:bounds[j + 1]].copy()
            c.rv = a["rv"][bounds[j]:bounds[j + 1]].copy()
        self.n_detections = a["n_detections"].copy()

    def __repr__(self) -> str:
        return (f"ADWIN(n_features={self.n_features}, delta={self.delta}, clock={self.clock}, "
                f"max_buckets={self.max_buckets}, min_window_length={self.min_window_length}, "
                f"grace_period={self.grace_period})")
