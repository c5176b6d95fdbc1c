"""Data-quality checks: the faults that break models without moving a mean.

Per feature of a model, from the batch where it first appears, 0/1 quality signals:

* ``missing``: the feature is null or absent in the event (numeric and categorical features);
  its reference is the feature's natural missingness (its first ``warmup`` events).
* ``type``: the feature arrived with the other type than it was established with (numbers
  where it was categorical, strings where it was numeric). Its reference is 0 by definition.
  Such values are counted here only: they are neither the feature's values nor categories,
  nor missing.
* ``stuck`` (numeric): of a pair of the feature's values (1st and 2nd, 3rd and 4th, ...), the
  second equals the first; a feature whose values stop varying (a stuck sensor, a default
  filled in upstream) repeats at a rate far above its reference, whatever the value.
* ``spread`` (numeric): of a pair whose values differ, the change is larger than the median
  such change of the feature's first pairs. A spread x3 raises that rate from 1/2 to ~0.85, /3
  lowers it to ~0.1, while a level shift changes one pair only (it is not a spread change);
  a stuck feature has no such pairs (its fault is ``stuck``'s).
  Pairs, not consecutive differences: those share a value, so their indicators would be
  correlated (one outlier makes two large changes) and the rates' standard errors too small.

And one-shot: ``new_feature``, a feature never seen before that appears after the model's warm-up
(severity info, no episode).

The signals are judged like the others (:mod:`stream.monitor.drift`: firing while the rate
differs from the reference, resolved when back), with change points from :class:`Rates`
instead of ADWIN and Page-Hinkley: each block of ``block`` values (more for a strongly
dependent rate) of a signal whose rate is clearly off its reference is a change point. The
rates are counts of 0/1 values, so every decision is exact whatever the batch boundaries, and
the checks cost a few array operations per batch.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..config import Settings
from ..types import ModelBatch, Rebaseline
from .alerts import make_alert
from .dependence import (
    DAY_EXTEND,
    EXTEND,
    MIN_TAU,
    RUNS,
    autocorrelation_time,
    flips,
    markov_time,
    parts_spread,
    parts_time,
    short_of_a_day,
    step_at,
    store_strided,
    strided_tau,
)
from .drift import DRIFTED, STABLE, DriftStates, Transition

CHECKS = ("missing", "type", "stuck", "spread")
# a block's count the reference makes this unlikely is itself the evidence of a fault (a burst
# of nulls or of mistyped values shorter than the values a candidate waits for); with
# thousands of blocks a day per model, this keeps decisive blocks of stable data out of reach
DECISIVE = 1e-9
RATE_MARGIN = 3.0       # sd of a reference rate's own estimate the decisive test allows it
TAU_PER_BLOCK = 10      # a block's effective size, at least (block / this)
PREDICTION = "\x00prediction"        # the prediction's entry among the features' types
CHECK_NAMES = (*CHECKS, "new_feature")


class Blocks(NamedTuple):
    """The blocks of a column that end among a batch's values."""
    ends: np.ndarray            # their last values' positions (into the values)
    off: np.ndarray             # their rate is off the reference (a change point)
    decisive: np.ndarray        # and so far off that the block is the evidence
    first_ts: np.ndarray        # event time of their first value
    ones: np.ndarray            # their counts of ones


class Rates:
    """References and change points of 0/1 signals (columns), fed their values only.

    A column learns its reference rate ``p`` from its first ``warmup`` values (or is given
    one). Then its z-scores are those of a 0/1 value against p (clipped), and each block of
    ``block`` values is "off" when its rate differs from p by at least ``min_effect``
    reference sd, 3 standard errors of a block and 2 values (see QualityChecks._judge).
    Counts of 0/1 values are exact, so none of this depends on batch boundaries. A column whose
    warm-up values are serially dependent (missing in bursts, a rate that wanders: see
    :mod:`stream.monitor.dependence`) has standard errors ``sqrt(tau)`` times as large.
    A block is *decisive* when its count is one the reference makes less likely than
    ``DECISIVE`` (a Chernoff bound on the count of ``block / tau`` independent values, the
    reference rate taken at the edge of its own uncertainty, ``RATE_MARGIN`` sd and 3 values
    of the warm-up): such a block is itself the evidence of its fault (QualityChecks._judge).
    A dependent column whose warm-up saw fewer than ``RUNS`` runs of each value (nulls in a
    few bursts) knows neither its rate nor how long its runs last: it learns on, up to the
    value that completes them or ``EXTEND`` warm-ups, and its ``tau`` is then at least the
    two-state Markov chain's of its runs (:func:`markov_time`); its blocks are ``block`` values
    per ``TAU_PER_BLOCK`` of its tau, so that one can be off at all. A column whose warm-up's
    parts' rates spread wider than its tau allows (:func:`parts_spread`: a part of a cycle that
    is not declared, e.g. more nulls at night) learns on too, a warm-up at a time up to
    ``EXTEND``, its rate and tau then those of all the values it learned; so does one whose
    event times fall short of a day within reach (:func:`short_of_a_day`) unless its warm-up
    saw one value only: "never null" is a reference whose first null is a fault at any hour.
    """

    def __init__(self, warmup: int, block: int, min_effect: float, clip_z: float) -> None:
        self.warmup, self.block, self.min_effect, self.clip_z = warmup, block, min_effect, clip_z
        self.names: list[str] = []
        self.index: dict[str, int] = {}
        self.n = np.zeros(0)                  # values learned (the reference's size)
        self.learned_ones = np.zeros(0)
        self.p = np.zeros(0)                  # reference rate (valid once n == warmup)
        self.count = np.zeros(0)              # values in the current block
        self.ones = np.zeros(0)               # ones among them
        self.start_ts = np.zeros(0)           # event time of the current block's first value
        self.was_off = np.zeros(0)            # the last block judged was off (1.0) or not
        self.tau = np.zeros(0)                # autocorrelation time of the warm-up's values
        self.goal = np.zeros(0)               # values the warm-up takes (more when extended)
        self.blen = np.zeros(0)               # values a block (more for a strongly dependent rate)
        self.flips = np.zeros(0)              # changes between consecutive warm-up values
        self.last = np.zeros(0)               # the warm-up's last value (NaN: none yet)
        self.first_ts = np.zeros(0)           # event time of the warm-up's first value (NaN: none yet)
        self.for_day = np.zeros(0)            # 1.0: learning on to a day
        self.stride = np.zeros(0)             # its values kept every stride-th (store_strided)
        self.first_tau = np.zeros(0)          # its first warm-up's tau
        self.stepped: list[int] = []          # references just ended by a step (a fault)
        self.warm_values = np.zeros((warmup, 0))    # the warm-up's values, while one learns
        self.longer: dict[int, np.ndarray] = {}     # values of the columns learning on for a cycle

    _ARRAYS = ("n", "learned_ones", "p", "count", "ones", "start_ts", "was_off")

    @property
    def size(self) -> int:
        return len(self.names)

    def ensure(self, names: list[str]) -> int:
        new = [nm for nm in names if nm not in self.index]
        if not new:
            return 0
        for nm in new:
            self.index[nm] = len(self.names)
            self.names.append(nm)
        for arr in self._ARRAYS:
            setattr(self, arr, np.concatenate([getattr(self, arr), np.zeros(len(new))]))
        self.tau = np.concatenate([self.tau, np.ones(len(new))])
        self.goal = np.concatenate([self.goal, np.full(len(new), float(self.warmup))])
        self.blen = np.concatenate([self.blen, np.full(len(new), float(self.block))])
        self.flips = np.concatenate([self.flips, np.zeros(len(new))])
        self.last = np.concatenate([self.last, np.full(len(new), np.nan)])
        self.first_ts = np.concatenate([self.first_ts, np.full(len(new), np.nan)])
        self.for_day = np.concatenate([self.for_day, np.zeros(len(new))])
        self.stride = np.concatenate([self.stride, np.ones(len(new))])
        self.first_tau = np.concatenate([self.first_tau, np.ones(len(new))])
        self._grow_warm()
        return len(new)

    def _grow_warm(self) -> None:
        """The warm-up buffer holds every column while one is learning; none once all are ready."""
        if not (self.n < self.warmup).any():
            self.warm_values = np.zeros((0, self.size))
        elif self.warm_values.shape != (self.warmup, self.size):
            grown = np.zeros((self.warmup, self.size))
            if self.warm_values.shape[0] == self.warmup:
                grown[:, : self.warm_values.shape[1]] = self.warm_values
            self.warm_values = grown

    def state_dict(self) -> dict[str, Any]:
        return {"names": list(self.names), **{a: getattr(self, a) for a in self._ARRAYS},
                "tau": self.tau, "goal": self.goal, "blen": self.blen, "flips": self.flips, "last": self.last,
                "first_ts": self.first_ts, "for_day": self.for_day, "stride": self.stride,
                # (0/1 values: a byte each holds them exactly)
                "first_tau": self.first_tau, "warm_values": self.warm_values.astype(np.uint8),
                "longer": [[j, v[: self._kept(j)].astype(np.uint8)] for j, v in sorted(self.longer.items())]}

    def load_state(self, state: dict[str, Any]) -> None:
        self.names = list(state["names"])
        self.index = {nm: i for i, nm in enumerate(self.names)}
        for a in self._ARRAYS:
            # (a state saved without the blocks' first times: unknown until the next block)
            setattr(self, a, state[a] if a in state else np.full(self.size, np.nan))
        # (a state saved without them: independent columns)
        self.tau = state.get("tau", np.ones(self.size))
        # (a state saved without extended warm-ups: every column's is one warm-up)
        self.goal = state.get("goal", np.full(self.size, float(self.warmup)))
        self.blen = state.get("blen", np.full(self.size, float(self.block)))
        self.flips = state.get("flips", np.zeros(self.size))
        self.last = state.get("last", np.full(self.size, np.nan))
        # (a state without first times: no day to span)
        self.first_ts = state.get("first_ts", np.full(self.size, np.nan))
        self.for_day = state.get("for_day", np.zeros(self.size))
        self.stride = state.get("stride", np.ones(self.size))
        self.first_tau = state.get("first_tau", np.ones(self.size))
        self.warm_values = state.get("warm_values", np.zeros((0, self.size))).astype(np.float64)
        self.longer = {}
        for j, v in state.get("longer", []):
            self.longer[int(j)] = np.zeros(EXTEND * self.warmup)
            self.longer[int(j)][: v.size] = v
        self._grow_warm()

    def known(self, j: int, p: float, n: int | None = None) -> None:
        """Column j's reference rate is known (no warm-up), from ``n`` values (default: as
        many as a warm-up)."""
        n = max(n or self.warmup, self.warmup)
        self.n[j], self.learned_ones[j], self.p[j], self.tau[j] = n, p * n, p, 1.0
        self.longer.pop(j, None)
        self.goal[j], self.blen[j], self.for_day[j], self.stride[j] = self.warmup, self.block, 0.0, 1.0
        self._grow_warm()

    def reset(self, j: int) -> None:
        """Column j learns its reference again from its next values."""
        self.n[j] = self.learned_ones[j] = self.p[j] = self.count[j] = self.ones[j] = self.was_off[j] = 0.0
        self.tau[j], self.goal[j], self.flips[j], self.last[j] = 1.0, self.warmup, 0.0, np.nan
        self.blen[j], self.first_ts[j], self.for_day[j], self.stride[j] = self.block, np.nan, 0.0, 1.0
        self.longer.pop(j, None)
        self._grow_warm()

    def ready(self, j: int) -> bool:
        return bool(self.n[j] >= self.goal[j])

    def learn(self, j: int, v: np.ndarray, t: np.ndarray) -> int:
        """Feed column j's values (event times ``t``) to its warm-up; returns how many it took."""
        if v.size and np.isnan(self.first_ts[j]):
            self.first_ts[j] = t[0]
        take = int(min(v.size, self.warmup - self.n[j]))
        if take > 0:
            self.learned_ones[j] += float(v[:take].sum())
            start = int(self.n[j])
            self.warm_values[start:start + take, j] = v[:take]
            self.n[j] += take
            if self.n[j] >= self.warmup:
                self._learned(j, float(t[take - 1]) - self.first_ts[j])
                self._grow_warm()
        take = max(take, 0)
        while self.n[j] < self.goal[j] and take < v.size:       # (a cycle's goal may grow)
            take += self._extend(j, v[take:]) if j not in self.longer else self._cycle(j, v[take:], t[take:])
        return take

    def _learned(self, j: int, span: float) -> None:
        """Column j's first warm-up (its event times ``span`` seconds, first to last) is
        complete: its rate and its values' autocorrelation time; a dependent column that saw
        fewer than ``RUNS`` runs of a value learns on, and so does one that saw part of a
        cycle or of a day."""
        warm = self.warm_values[:, j]
        self._measured(j, warm, autocorrelation_time(warm))
        self.first_tau[j] = self.tau[j]
        day = 0.0 < self.p[j] < 1.0 and short_of_a_day(span, self.warmup, DAY_EXTEND * self.warmup)
        if self.tau[j] >= MIN_TAU and self.flips[j] < 2 * RUNS:
            self.goal[j] = EXTEND * self.warmup
        elif day or parts_spread(warm, float(self.tau[j])):
            self.for_day[j] = float(day)
            self.longer[j] = np.zeros(EXTEND * self.warmup)
            self.longer[j][: self.warmup] = warm
            self.goal[j] = 2 * self.warmup
        else:
            self._blocks_of(j)

    def _cycle(self, j: int, v: np.ndarray, t: np.ndarray) -> int:
        """Feed column j's values (event times ``t``) to a warm-up learning on for a cycle, up
        to its goal; at the goal, all the values learned are a reference unless their parts
        still spread wider than their tau allows or they span less than a day within reach
        (then one more warm-up, up to ``EXTEND``; to a day, up to ``DAY_EXTEND``, every
        stride-th value kept); when learning on to a day, values that stepped (:func:`step_at`:
        a fault) leave those before the step. Returns how many it took."""
        take, start = int(min(v.size, self.goal[j] - self.n[j])), int(self.n[j])
        if take > 0:
            self.stride[j] = store_strided(self.longer[j], int(self.stride[j]), start, v[:take])
        self.learned_ones[j] += float(v[:take].sum())
        self.n[j] += take
        if self.n[j] >= self.goal[j]:
            n, stride, W = int(self.n[j]), int(self.stride[j]), self.warmup
            warm = self.longer[j][: self._kept(j)]
            step = step_at(warm, max(W // stride, 1), rate=True) if self.for_day[j] else -1
            final = step >= 0
            if final:                   # a fault: the values before it are the reference
                n, warm = step * stride, warm[:step]
                self.n[j] = self.goal[j] = n
                self.learned_ones[j] = float(warm.mean()) * n
                self.stepped.append(j)
            kept_tau = autocorrelation_time(warm)
            span = float(t[take - 1]) - self.first_ts[j]
            started = bool(self.for_day[j])
            day = n < DAY_EXTEND * W and short_of_a_day(span, n, DAY_EXTEND * W, started)
            if started and not day:                 # (a day's values: its hours move the rate)
                kept_tau = parts_time(warm, kept_tau)
            self.for_day[j] = 0.0
            if not final and (day or (n < EXTEND * W and parts_spread(warm, kept_tau))):
                self.goal[j] = n + W
                self.for_day[j] = float(day)
            else:
                del self.longer[j]
                self._measured(j, warm, strided_tau(kept_tau, stride, float(self.first_tau[j])))
                self._blocks_of(j)
                self.stride[j] = 1.0
        return take

    def _kept(self, j: int) -> int:
        """How many of column j's warm-up values its buffer holds."""
        return (int(self.n[j]) - 1) // int(self.stride[j]) + 1 if self.n[j] > 0 else 0

    def take_stepped(self) -> list[int]:
        """The columns whose references a step ended since the last call (judge their values
        from the step on against them, as after a change point)."""
        out, self.stepped = self.stepped, []
        return out

    def _measured(self, j: int, warm: np.ndarray, tau: float) -> None:
        """Column j's rate, autocorrelation time ``tau``, changes and last value, from the values
        it learned (``warm``, all of them)."""
        self.p[j], self.tau[j] = self.learned_ones[j] / self.n[j], tau
        self.flips[j], self.last[j] = flips(warm), warm[-1]

    def _extend(self, j: int, v: np.ndarray) -> int:
        """Feed column j's values to its extended warm-up, up to the value that completes
        ``RUNS`` runs of each value (the change that starts the next run) or its goal; returns
        how many it took."""
        changed = np.flatnonzero(np.diff(v, prepend=self.last[j]) != 0)
        need = int(2 * RUNS - self.flips[j])
        take = int(min(v.size, self.goal[j] - self.n[j]))
        if changed.size >= need:
            take = min(take, int(changed[need - 1]) + 1)
        self.flips[j] += float(np.count_nonzero(changed < take))
        self.learned_ones[j] += float(v[:take].sum())
        self.last[j] = v[take - 1]
        self.n[j] += take
        if self.n[j] >= self.goal[j] or self.flips[j] >= 2 * RUNS:
            n, p = float(self.n[j]), self.learned_ones[j] / self.n[j]
            self.p[j], self.goal[j] = p, n
            self.tau[j] = min(max(self.tau[j], markov_time(n, p, float(self.flips[j]))), n / 4)
            self._blocks_of(j)
        return take

    def _blocks_of(self, j: int) -> None:
        """Column j's block length once its warm-up is complete: ``block`` values, or
        ``block`` per ``TAU_PER_BLOCK`` of its tau when more (a block then holds
        ``block / TAU_PER_BLOCK`` independent values' worth at least)."""
        self.blen[j] = max(self.block, round(self.block * float(self.tau[j]) / TAU_PER_BLOCK))

    def reference(self, j: int) -> tuple[float, float, float, float]:
        """(sd, z of a 1, z of a 0, ...) -> (cz_mean, cz_sd, z1, z0) of column j."""
        p, n = float(self.p[j]), float(self.n[j])
        sd = max(np.sqrt(p * (1 - p) * n / max(n - 1, 1)), 1e-9)
        z1, z0 = (min((1 - p) / sd, self.clip_z), max(-p / sd, -self.clip_z))
        cz_mean = p * z1 + (1 - p) * z0
        cz_sd = np.sqrt(p * (1 - p)) * abs(z1 - z0)
        return cz_mean, float(cz_sd), z1, z0

    def blocks(self, j: int, v: np.ndarray, t: np.ndarray) -> Blocks:
        """The blocks that end among column j's (post-warm-up) values ``v`` (event times
        ``t``)."""
        B, k = int(self.blen[j]), int(self.count[j])
        ends = np.arange(B - k - 1, v.size, B)
        before_ts = float(self.start_ts[j])
        self._started(j, k, v.size, t)
        if not ends.size:
            self.count[j] += v.size
            self.ones[j] += float(v.sum())
            return Blocks(ends, np.zeros(0, dtype=bool), np.zeros(0, dtype=bool), ends.astype(float), ends)
        S = np.cumsum(v)                              # (integers: exact)
        at_end = S[ends]
        block = np.diff(np.concatenate([[-self.ones[j]], at_end]))
        p, need = float(self.p[j]), float(self._need(j))
        self.ones[j] = float(S[-1] - at_end[-1])
        self.count[j] = (k + v.size) % B
        first = ends - (B - 1)
        first_ts = np.where(first >= 0, t[np.maximum(first, 0)], before_ts)
        if np.isnan(before_ts) and first[0] < 0:      # (a state saved without it)
            first_ts[0] = t[0]
        return Blocks(ends, np.abs(block / B - p) >= need, self._decisive(j, block), first_ts, block)

    def _started(self, j: int, k: int, size: int, t: np.ndarray) -> None:
        """Column j, ``k`` values into its block, gets ``size`` values at times ``t``: the
        block in progress after them started among them, or before (its time is kept)."""
        s = size - (k + size) % int(self.blen[j])
        if 0 <= s < size:
            self.start_ts[j] = t[s]

    def _decisive(self, j: int, ones: np.ndarray) -> np.ndarray:
        """Whether blocks with these counts of ones are decisive for column j (see the class)."""
        return self.unlikely(j, np.full(ones.shape, self.blen[j]), ones, -np.log(DECISIVE))

    def _need(self, js: np.ndarray | int) -> np.ndarray:
        """How far a block's rate must be from its column's reference rate to be off, per
        column: ``min_effect`` sd, 3 standard errors of the block's rate and 2 values, at least."""
        p, B = self.p[js], self.blen[js]
        sd = np.sqrt(p * (1 - p))
        return np.maximum(np.maximum(self.min_effect * sd, 3 * sd * np.sqrt(self.tau[js] / B)), 2.0 / B)

    def unlikely(self, j: int, n: np.ndarray, ones: np.ndarray, bits: float) -> np.ndarray:
        """Whether ``ones`` among ``n`` consecutive values of column j is a count its reference
        makes less likely than ``exp(-bits)``: a Chernoff bound on ``n / tau`` independent
        values, the reference rate taken at the edge of its own estimate (``RATE_MARGIN`` sd
        and 3 values of the warm-up)."""
        p, n_ref, tau = float(self.p[j]), float(self.n[j]), float(self.tau[j])
        margin = RATE_MARGIN * np.sqrt(p * (1 - p) * tau / n_ref) + 3.0 / n_ref
        q = ones / n
        hi, lo = min(p + margin, 1.0), max(p - margin, 0.0)
        out = (q > hi) | (q < lo)
        ref = np.where(q > hi, hi, lo)
        # P(count) <= exp(-effective size * KL(q || ref)), the rate at its edge
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(q > 0, q * np.log(q / ref), 0.0) \
                + np.where(q < 1, (1 - q) * np.log((1 - q) / (1 - ref)), 0.0)
        return out & (n / tau * np.where(out, kl, 0.0) >= bits)

    def settle(self, js: np.ndarray, values: list[np.ndarray], rows: list[np.ndarray], ts: np.ndarray,
               stable: np.ndarray) -> np.ndarray:
        """Columns ``js`` (distinct) with their values (at ``rows`` of a batch whose event
        times are ``ts``): where a column is past its warm-up,
        ``stable`` and none of the blocks ending among its values is off the reference (the
        steady state, where :meth:`blocks` finds nothing to judge), advance its block as
        :meth:`blocks` would; where its warm-up takes all its values, learn them; all columns
        at once. Returns which columns were settled; the others are untouched (judge them
        one by one)."""
        B = self.blen[js].astype(np.int64)
        lens = np.fromiter(map(len, values), dtype=np.int64, count=len(values))
        starts = np.cumsum(lens) - lens
        C = np.concatenate([[0.0], np.cumsum(np.concatenate(values))]) if values else np.zeros(1)
        lo = C[starts]
        total = C[starts + lens] - lo                 # ones among each column's values (exact)
        k = self.count[js].astype(np.int64)
        ends = (k + lens) // B                        # blocks ending among each column's values
        ready = self.n[js] >= self.goal[js]
        ok = ready & stable
        # ones up to each column's last block end
        last = np.where(ends > 0, C[np.clip(starts + (B - k - 1) + B * (ends - 1) + 1, 0, C.size - 1)] - lo,
                        0.0)
        judged = ok & (ends > 0)
        if judged.any() and (ends[judged] == 1).all():
            # one block a column (the usual: fewer values than a block): its rate at once
            ok &= ~(judged & (np.abs((last + self.ones[js]) / B - self.p[js]) >= self._need(js)))
        elif judged.any():
            col = np.repeat(np.arange(js.size), np.where(ok, ends, 0))
            first = np.cumsum(ends * ok) - ends * ok
            t = np.arange(col.size) - first[col]
            at = starts[col] + (B[col] - k[col] - 1) + B[col] * t    # each block's last value
            S = C[at + 1] - lo[col]                              # ones up to it
            prev = np.where(t == 0, -self.ones[js][col], np.concatenate([[0.0], S[:-1]]))
            off = np.abs((S - prev) / B[col] - self.p[js][col]) >= self._need(js)[col]
            ok &= np.bincount(col, weights=off, minlength=js.size) == 0
        j = js[ok]
        self.was_off[j[ends[ok] > 0]] = 0.0
        self.ones[j] = np.where(ends[ok] > 0, total[ok] - last[ok], self.ones[j] + total[ok])
        self.count[j] = (k[ok] + lens[ok]) % B[ok]
        # the block in progress started among these values: its first value's time
        s = lens - (k + lens) % B
        new = ok & (s < lens) & (s >= 0)
        if new.any():
            cs = np.flatnonzero(new)
            self.start_ts[js[cs]] = ts[[rows[c][i] for c, i in zip(cs.tolist(), s[cs].tolist(), strict=True)]]
        # columns whose warm-up takes all their values (as :meth:`learn` would)
        warm = ~ready & (lens > 0) & (self.n[js] + lens <= self.warmup)
        j = js[warm]
        self.learned_ones[j] += total[warm]
        for c in np.flatnonzero(warm).tolist():      # (during warm-ups only: a copy a column)
            start = int(self.n[js[c]])
            self.warm_values[start:start + lens[c], js[c]] = values[c]
            if lens[c] and np.isnan(self.first_ts[js[c]]):
                self.first_ts[js[c]] = ts[rows[c][0]]
        self.n[j] += lens[warm]
        for c in np.flatnonzero(warm & (self.n[js] >= self.warmup)).tolist():
            self._learned(int(js[c]), float(ts[rows[c][-1]]) - self.first_ts[js[c]])
        if (self.n[j] >= self.warmup).any():
            self._grow_warm()
        return ok | warm


class QualityChecks:
    """The data-quality signals of one model.

    Parameters
    ----------
    model : the model's name.
    settings : the service's settings (quality, detect, limits, models.<model>.quality).
    """

    def __init__(self, model: str, settings: Settings) -> None:
        d, q = settings.detect, settings.quality
        own = settings.models.get(model)
        self.model = model
        self.enabled: set[str] = {c for c in CHECK_NAMES if getattr(q, c)} if q.enabled else set()
        if own is not None and own.quality is not None:
            self.enabled = {c for c in self.enabled if getattr(own.quality, c)}
        season = own.seasonality if own is not None else None
        # a seasonal feature's variability cycles with it (a multiplicative season): its spread
        # is judged by the joint reconstruction error, whose residuals are de-seasonalised
        self.season = season
        self.warmup = d.warmup
        self.half_warmup = max(2, d.warmup // 2)    # pairs whose change sets the spread's scale
        self.max_signals = 4 * settings.limits.max_features_per_event
        self.rates = Rates(d.warmup, q.block, d.min_effect, d.clip_z)
        self.states = DriftStates(["check"], d.min_effect, d.significance, d.confidence, d.min_values,
                                  d.cooldown_s)
        self.types: dict[str, str] = {}        # feature -> "number" | "string" (established)
        self.last: dict[str, float] = {}       # numeric feature -> its last value
        self.held: dict[str, float | None] = {}     # numeric feature -> first value of a pair
        self.change_median: dict[str, float] = {}   # numeric feature -> median |change| of its warm-up
        self.changes: dict[str, list[float]] = {}   # numeric feature -> warm-up changes so far
        self.events = 0                        # events of the model seen
        self.mismatched: dict[str, np.ndarray] = {}   # this batch: feature -> rows of the wrong type
        self.fresh: list[tuple[str, str]] = []        # this batch: features seen first (and type)
        self.version: str | None = None               # the model version (alerts carry it)
        self.known: dict[str, Any] = {}               # feature -> FeatureRef (a profile's)
        self.known_rows = 0

    @property
    def active(self) -> bool:
        return bool(self.enabled)

    def state_dict(self) -> dict[str, Any]:
        return {"rates": self.rates.state_dict(), "states": self.states.state_dict(), "version": self.version,
                "types": self.types, "last": self.last,
                "held": self.held,
                "change_median": self.change_median, "changes": self.changes, "events": self.events}

    def load_state(self, state: dict[str, Any]) -> None:
        self.rates.load_state(state["rates"])
        self.version = state["version"]
        self.states.load_state(state["states"])
        self.types = dict(state["types"])
        self.last = {k: float(v) for k, v in state["last"].items()}
        self.held = {k: None if v is None else float(v) for k, v in state["held"].items()}
        self.change_median = {k: float(v) for k, v in state["change_median"].items()}
        self.changes = {k: list(v) for k, v in state["changes"].items()}
        self.events = int(state["events"])

    def fault_open(self, features: list[str], ts: float) -> bool:
        """A data-quality fault (missing, type, stuck) of one of these features open since
        event time ``ts`` or before."""
        names, want = self.rates.names, set(features)
        for j, ep in self.states.episodes.items():
            check, feature = names[j].split(":", 1)
            if check != "spread" and feature in want and ep.fired_ts <= ts:
                return True
        return False

    def drifted_kinds(self) -> list[str]:
        names = self.rates.names
        return ["data_drift" if names[j].startswith("spread:") else "data_quality"
                for j in self.states.drifted()]

    def rebaseline(self, req: Rebaseline, batch: ModelBatch, row: int, alerts: list[dict],
                   feature_sd: Callable[[str, int], tuple]) -> None:
        """The checks of the features ``req`` covers learn new references (an open episode
        resolves with reason "rebaselined")."""
        rates, states = self.rates, self.states
        cols = [j for j, name in enumerate(rates.names) if req.covers("feature:" + name.split(":", 1)[1])]
        closing = [t for j in cols if (t := states.rebaseline(j, row, rates.reference(j)[0])) is not None]
        alerts.extend(states.alerts(closing, lambda t: self._alert(batch, t, feature_sd)))
        for j in cols:
            check, f = rates.names[j].split(":", 1)
            if check == "type":
                continue                             # (its reference is no mismatch, always)
            rates.reset(j)
            if check == "spread":
                self.change_median.pop(f, None)
                self.changes.pop(f, None)

    def use_profile(self, features: dict[str, Any], rows: int) -> None:
        """A training profile's feature references: established types, and the rates the
        checks compare with (columns registered later start with them; no warm-up)."""
        self.known.update(features)
        self.known_rows = rows
        for f, ref in features.items():
            self.types.setdefault(f, ref.type)
            if ref.change_median is not None:
                self.change_median.setdefault(f, ref.change_median)
        for j, name in enumerate(self.rates.names):
            self._known_rate(j, name)

    def _known_rate(self, j: int, name: str) -> bool:
        """Column j's reference rate from the profile, if it has one."""
        check, f = name.split(":", 1)
        ref = self.known.get(f)
        if ref is None:
            return False
        if check == "missing":
            self.rates.known(j, ref.missing_rate, self.known_rows)
        elif check == "stuck" and ref.repeat_rate is not None:
            self.rates.known(j, ref.repeat_rate, ref.pairs)
        elif check == "spread" and ref.larger_change_rate is not None:
            self.rates.known(j, ref.larger_change_rate, ref.pairs)
        else:
            return False
        return True

    def screen(self, batch: ModelBatch) -> ModelBatch:
        """The batch with only the values of each feature's (and the prediction's) established
        type: the type of its first value. The others are counted by the type check in
        :meth:`observe`, never used as values or categories."""
        self.mismatched, self.fresh = {}, []
        numeric, categorical = batch.numeric, batch.categorical
        for f in [*numeric, *categorical]:
            if f not in self.types and _has_value(numeric.get(f), categorical.get(f)):
                kind = _first_kind(numeric.get(f), categorical.get(f))
                self.types[f] = kind
                self.fresh.append((f, kind))
        wrong_num = [f for f in numeric if self.types.get(f) == "string"]
        wrong_cat = [f for f in categorical if self.types.get(f) == "number"]
        classes, prediction = batch.prediction_class, batch.prediction
        if PREDICTION not in self.types and (classes is not None or not np.isnan(prediction).all()):
            self.types[PREDICTION] = _first_kind(prediction, classes)
        kind = self.types.get(PREDICTION)
        if classes is not None and kind == "number":
            self.mismatched[PREDICTION] = np.array([c is not None for c in classes])
            classes = None
        elif kind == "string" and not np.isnan(prediction).all():
            self.mismatched[PREDICTION] = ~np.isnan(prediction)
            prediction = np.full(batch.size, np.nan)
        if not wrong_num and not wrong_cat and not self.mismatched:
            return batch
        numeric, categorical = dict(numeric), dict(categorical)
        for f in wrong_num:
            self.mismatched[f] = ~np.isnan(numeric.pop(f))
        for f in wrong_cat:
            self.mismatched[f] = np.array([v is not None for v in categorical.pop(f)])
        return ModelBatch(batch.model, numeric, categorical, prediction, classes, batch.ts, batch.partition,
                          batch.offset, batch.topic, batch.ids, batch.segments, batch.index, batch.versions)

    def observe(self, batch: ModelBatch, alerts: list[dict], feature_sd: Callable[[str, int], tuple],
                recorder: Any = None) -> int:
        """The checks over a (screened) batch: appends their alerts; returns the detections
        that raised none."""
        if not self.enabled:
            return 0
        n = batch.size
        before = self.events
        self.events += n
        if "new_feature" in self.enabled:
            for f, kind in self.fresh:
                row = _first_row(batch.numeric.get(f), batch.categorical.get(f))
                if before + row >= self.warmup:
                    alerts.append(self._new_feature(batch, f, kind, row, before + row))
        cols: dict[str, tuple[np.ndarray, np.ndarray]] = {}     # name -> (rows, 0/1 values)
        every, none = np.arange(n), np.zeros(n)
        # numeric features with a value in every row (the usual case) at once
        pairs = self._pairs([f for f, kind in self.types.items() if kind == "number" and f != PREDICTION
                             and f not in self.mismatched and f in batch.numeric], batch.numeric, n)
        for f, kind in self.types.items():
            if f == PREDICTION:
                wrong = self.mismatched.get(f)
                if "type" in self.enabled and wrong is not None:
                    rows = np.flatnonzero(wrong)
                    cols[f"type:{f}"] = (rows, np.ones(rows.size))
                continue
            if f in pairs:
                if "missing" in self.enabled:
                    cols[f"missing:{f}"] = (every, none)
                if "type" in self.enabled:
                    cols[f"type:{f}"] = (every, none)
                if pairs[f] is not None:
                    self._pair_checks(f, *pairs[f], cols)
                continue
            numeric = batch.numeric.get(f)
            cat = batch.categorical.get(f)
            present = (~np.isnan(numeric) if numeric is not None else
                       np.array([v is not None for v in cat]) if cat is not None else np.zeros(n, bool))
            wrong = self.mismatched.get(f)
            seen = present if wrong is None else present | wrong
            if "missing" in self.enabled:
                cols[f"missing:{f}"] = (every, (~seen).astype(float))
            if "type" in self.enabled:
                rows = np.flatnonzero(seen)
                mismatch = np.zeros(rows.size) if wrong is None else wrong[rows].astype(float)
                cols[f"type:{f}"] = (rows, mismatch)
            if kind == "number" and numeric is not None and ({"stuck", "spread"} & self.enabled):
                self._changes(f, numeric, cols)
        if not cols:
            return 0
        rates = self.rates
        room = max(0, self.max_signals - rates.size)
        grown = rates.ensure([nm for nm in cols if nm not in rates.index][:room])
        if grown:
            self.states.add(grown)
            for j in range(rates.size - grown, rates.size):
                if rates.names[j].startswith("type:"):     # the reference of "type" is no mismatch
                    rates.known(j, 0.0)
                elif self._known_rate(j, rates.names[j]):
                    self.states.compare(j, "reference")
        quiet = 0
        names = [nm for nm in cols if nm in rates.index]
        js = np.array([rates.index[nm] for nm in names], dtype=np.int64)
        settled = rates.settle(js, [cols[nm][1] for nm in names], [cols[nm][0] for nm in names], batch.ts,
                               self.states.status[js] == STABLE)
        for name, done in zip(names, settled.tolist(), strict=True):
            if done:
                continue                                 # (the steady state: nothing to judge)
            rows, v = cols[name]
            j = rates.index[name]
            skip = rates.learn(j, v, batch.ts[rows]) if not rates.ready(j) else 0
            for c in rates.take_stepped():
                self.states.compare(c, "reference")
            if skip >= v.size:
                continue
            rows, v = rows[skip:], v[skip:]
            blocks = rates.blocks(j, v, batch.ts[rows])
            if not blocks.off.any() and self.states.status[j] == STABLE:
                continue                                 # (the steady state: nothing to judge)
            self._judge(j, name, rows, v, blocks, batch, alerts, feature_sd)
        if recorder is not None:
            missing = [nm for nm in cols if nm.startswith("missing:")]
            V = np.full((n, len(missing)), np.nan)
            for k, nm in enumerate(missing):
                rows, v = cols[nm]
                V[rows, k] = v
            recorder.record_values(self.model, missing, batch.ts, V)
        quiet, self.states.quiet = self.states.quiet, 0
        return quiet

    def _judge(self, j: int, name: str, rows: np.ndarray, v: np.ndarray, blocks: Blocks,
               batch: ModelBatch, alerts: list[dict], feature_sd: Callable[[str, int], tuple]) -> None:
        """Column j's drift state over these values, block by block: a stable signal's block
        off its reference is a change point (then the values after it are judged), unless it
        is decisive: then its own values are the candidate's and its last value decides (a
        burst of nulls shorter than the values after a change point would otherwise go
        unreported); a drifted signal's first block back within it is a change point too (its
        return is judged apart from the fault, on the values since); a candidate's values
        accumulate until it is decided, or until a new onset (an off block after one within)
        when those before it showed no change (a candidate that stays undecided: the
        reference of a dependent rate is not known to much better than the minimum effect)."""
        rates, states = self.rates, self.states
        cz_mean, cz_sd, z1, z0 = rates.reference(j)
        cz_sd *= float(np.sqrt(rates.tau[j]))          # (a dependent column's means vary more)
        floor = self._floor(name, float(rates.p[j]))
        z, ts = np.where(v > 0, z1, z0), batch.ts[rows]
        n_ref = float(rates.n[j])
        # a dependent rate's firing also needs its count's own bound, as unlikely as the
        # standard error's test asks (exp(-z^2/2), Chernoff's bound of a normal tail at z)
        evidence = None if rates.tau[j] < MIN_TAU else \
            (lambda n, ones: rates.unlikely(j, n, ones, states.significance ** 2 / 2))

        def step(lo: int, hi: int, hit_last: bool) -> int:
            """Judge values lo..hi-1; the position of the value a transition is at, or -1."""
            if hi <= lo:
                return -1
            hit = np.full(hi - lo, -1, dtype=np.int64)
            if hit_last:
                hit[-1] = 0
            transitions = states.step_column(j, rows[lo:hi], z[lo:hi], v[lo:hi], hit, ts[lo:hi],
                                             cz_mean, cz_sd, n_ref, floor, evidence)
            alerts.extend(states.alerts(transitions, lambda t: self._alert(batch, t, feature_sd)))
            return int(np.searchsorted(rows, transitions[-1].row)) if transitions else -1

        ends, off = blocks.ends.tolist(), blocks.off.tolist()
        lo, B, i = 0, int(rates.blen[j]), 0
        while i < len(ends):
            status = states.status[j]
            if not off[i] and status == STABLE:
                # a stable signal's values judge nothing but at a change point: no step
                rates.was_off[j] = 0.0
                lo, i = ends[i] + 1, i + 1
                continue
            if status == DRIFTED:
                # its blocks before a return change nothing but by resolving: one step for them
                m, prev = i, bool(rates.was_off[j])
                while m < len(ends) and not (prev and not off[m]):
                    prev, m = off[m], m + 1
                if m > i:
                    before = rates.was_off[j]
                    at = step(lo, ends[m - 1] + 1, False)
                    if at < 0:
                        rates.was_off[j] = float(off[m - 1])
                        lo, i = ends[m - 1] + 1, m
                        continue
                    b = bisect_left(ends, at, i, m)          # resolved in block b
                    if at == ends[b]:
                        rates.was_off[j] = float(off[b])
                        lo, i = at + 1, b + 1
                        continue
                    # before its last value: that value is judged as a stable signal's (below)
                    rates.was_off[j] = float(off[b - 1]) if b > i else before
                    lo, i = ends[b], b
            end, is_off = ends[i], off[i]
            step(lo, end, False)                         # the block up to its last value
            status = states.status[j]
            was_off = bool(rates.was_off[j])
            rates.was_off[j] = float(is_off)
            k = float(blocks.ones[i]) - float(v[end])    # (ones of the block before its last value)
            sz = k * z1 + (B - 1 - k) * z0               # (and the sum of their z-scores)
            if is_off and blocks.decisive[i] and status == STABLE:
                szz = k * z1 * z1 + (B - 1 - k) * z0 * z0
                states.seed(j, 0, B - 1, sz, szz, k, float(blocks.first_ts[i]))
                step(end, end + 1, False)
            else:
                # off on a stable signal; a return (within after off) on a drifted one; an onset
                # (off after within) on a candidate whose values before the block show no change
                if status == STABLE:
                    change = is_off
                elif status == DRIFTED:
                    change = was_off and not is_off
                else:
                    change = is_off and not was_off and states.unchanged(j, B - 1, sz, cz_mean)
                step(end, end + 1, change)               # its last value: a change point or not
            lo, i = end + 1, i + 1
        step(lo, v.size, False)

    @staticmethod
    def _floor(name: str, p: float) -> float:
        """Checks that count one way: more missing values or mismatched types than the
        reference (not fewer); a stuck feature repeats at least halfway from its reference
        rate to always (a mere change of the repeat rate is the spread's and the mean's)."""
        if name.startswith(("missing:", "type:")):
            return p
        if name.startswith("stuck:"):
            return (1.0 + p) / 2
        return -np.inf

    def _changes(self, f: str, x: np.ndarray, cols: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """stuck and spread of numeric feature f, from its values taken in pairs (1st-2nd,
        3rd-4th, ...): pairs of independent values give independent indicators (consecutive
        differences share a value, and heavy tails would correlate them)."""
        rows = np.flatnonzero(~np.isnan(x))
        if not rows.size:
            return
        v = x[rows]
        held = self.held.get(f)
        if held is not None:
            v, rows = np.concatenate([[held], v]), np.concatenate([[-1], rows])
        m = v.size // 2 * 2
        self.held[f] = float(v[-1]) if v.size % 2 else None
        self.last[f] = float(v[-1])
        first, second = v[0:m:2], v[1:m:2]
        change = np.abs(second - first)
        self._pair_checks(f, rows[1:m:2], (first == second).astype(float), change, change > 0,
                          cols)                                     # a pair's row: its second value

    def _pairs(self, features: list[str], numeric: dict[str, np.ndarray], n: int
               ) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None]:
        """:meth:`_changes`' pairs (rows, equal, change, moved: see :meth:`_pair_checks`) of
        the features among these with a value in every row, all of them at once (each group of
        features with and without a value held from the last batch); None for each when no
        check uses pairs."""
        if not features or not n:
            return {}
        X = np.column_stack([numeric[f] for f in features])
        full = ~np.isnan(X).any(axis=0)
        if not {"stuck", "spread"} & self.enabled:
            return {f: None for f, ok in zip(features, full.tolist(), strict=True) if ok}
        out = {}
        carries = [self.held.get(f) is not None for f in features]
        for carry in (False, True):
            group = [c for c in range(len(features)) if full[c] and carries[c] == carry]
            if not group:
                continue
            V = X[:, group]
            rows = np.arange(n)
            if carry:
                V = np.vstack([[self.held[features[c]] for c in group], V])
                rows = np.arange(-1, n)
            m = V.shape[0] // 2 * 2
            at, first, second = rows[1:m:2], V[0:m:2], V[1:m:2]
            stuck, change = (first == second).astype(float), np.abs(second - first)
            moved = change > 0
            ends = V[-1].tolist()
            for k, c in enumerate(group):
                f = features[c]
                self.held[f] = ends[k] if V.shape[0] % 2 else None
                self.last[f] = ends[k]
                out[f] = (at, stuck[:, k], change[:, k], moved[:, k])
        return out

    def _pair_checks(self, f: str, at: np.ndarray, stuck: np.ndarray, change: np.ndarray, moved: np.ndarray,
                     cols: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """stuck and spread of numeric feature f from its pairs: each pair's row (its second
        value's), whether its values are equal (0/1), their absolute change and whether it
        is not 0."""
        if "stuck" in self.enabled:
            cols[f"stuck:{f}"] = (at, stuck)
        if "spread" not in self.enabled or (self.season is not None and self.season.covers(f)):
            return
        median = self.change_median.get(f)
        idx = np.flatnonzero(moved)
        if median is None:
            warm = self.changes.setdefault(f, [])
            need = self.half_warmup - len(warm)
            warm.extend(change[idx[:need]].tolist())
            if len(warm) < self.half_warmup:
                return
            self.change_median[f] = median = float(np.median(warm))
            del self.changes[f]
            idx = idx[need:]                # (the pairs after the warm-up's count from here on)
        cols[f"spread:{f}"] = (at[idx], (change[idx] > median).astype(float))

    def _new_feature(self, batch: ModelBatch, f: str, kind: str, row: int, events_before: int) -> dict:
        return make_alert(model=self.model, signal=f"feature:{f}", detector="schema",
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                          stats={"type": kind, "events_before": events_before},
                          check="new_feature", kind="data_quality", severity="info")

    def _alert(self, batch: ModelBatch, t: Transition, feature_sd: Callable[[str, int], tuple]) -> dict:
        rates, j, row = self.rates, t.column, t.row
        check, f = rates.names[j].split(":", 1)
        before, after = float(rates.p[j]), t.raw_mean
        stats: dict[str, Any] = {"n_before": int(rates.n[j]), "n_after": t.n,
                                 "effect_size": round(t.effect, 6), "since_ts": t.since_ts}
        if check == "missing":
            stats.update(missing_rate_before=before, missing_rate_after=after)
        elif check == "type":
            stats.update(type_expected=self.types.get(f), mismatch_rate_after=after)
        elif check == "stuck":
            stats.update(repeat_rate_before=before, repeat_rate_after=after, value=self.last.get(f))
        else:
            sd_before, sd_after = feature_sd(f, row)
            stats.update(sd_before=sd_before, sd_after=sd_after, larger_change_rate_before=before,
                         larger_change_rate_after=after)
        kind = "data_drift" if check == "spread" else "data_quality"
        return make_alert(model=self.model, signal="prediction" if f == PREDICTION else f"feature:{f}",
                          detector="check",
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]), stats=stats,
                          status=t.status, reason=t.reason, model_version=self.version,
                          check=check, kind=kind)


def _first_kind(numbers: np.ndarray | None, strings: list | None) -> str:
    """"number" or "string": the kind of the first value (numbers win a tie of rows)."""
    first_number = int(np.argmax(~np.isnan(numbers))) if numbers is not None and \
        not np.isnan(numbers).all() else None
    first_string = next((i for i, v in enumerate(strings) if v is not None), None) if strings is not None \
        else None
    if first_string is None or (first_number is not None and first_number <= first_string):
        return "number"
    return "string"


def _has_value(numbers: np.ndarray | None, strings: list | None) -> bool:
    return (numbers is not None and not np.isnan(numbers).all()) or \
        (strings is not None and any(v is not None for v in strings))


def _first_row(numbers: np.ndarray | None, strings: list | None) -> int:
    """The first row where a feature has a value (of either kind)."""
    rows = []
    if numbers is not None and not np.isnan(numbers).all():
        rows.append(int(np.argmax(~np.isnan(numbers))))
    if strings is not None:
        rows.append(next((i for i, v in enumerate(strings) if v is not None), len(strings)))
    return min(rows) if rows else 0
