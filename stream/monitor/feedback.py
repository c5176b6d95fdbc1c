"""Feedback loops: predictions that shape the data the model sees next (kind feedback_loop).

Two signatures, per model:

* Concentration (signal ``segments:entropy``): events carry ``segment``. Every ``window``
  events with a segment, the normalized entropy of where the *positive* predictions went
  (score >= 0.5, or any class prediction) across segments is computed. A self-reinforcing
  allocation concentrates them: the entropy falls steadily. The entropy series is
  standardized on its first ``warmup`` windows (more, to span a day where they can: see
  :func:`~stream.monitor.dependence.short_of_a_day`) and watched by Page-Hinkley in mode
  "down".
  For a model that declares a cycle, the segments' shares may follow it (regions in their
  time zones): its reference is then the entropy expected at each phase of the period,
  learned over the first ``periods`` whole periods (see :class:`ConcentrationWatch`).
* Selective labels (signal ``labels:selection``): with a labels source, each prediction with a
  score in [0, 1] ends either labeled (its label arrived) or unlabeled (it aged out of the
  prediction store). When, over enough of them, the labeled share differs across score bands
  by more than ``label_gap`` (labels only where the model acted), the loop is flagged.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from detectors import PageHinkley

from ..config import FeedbackSettings, SeasonalitySettings
from ..types import Message, ModelBatch
from .alerts import make_alert
from .dependence import DAY_EXTEND, short_of_a_day
from .lifecycle import Lifecycle, apply_lifecycle, resolved

_NUMBERS = {int, float, bool}

ENTROPY_SIGNAL = "segments:entropy"
SELECTION_SIGNAL = "labels:selection"


class ConcentrationWatch:
    """Windowed entropy of positive predictions across segments, watched by PH (down).

    Parameters
    ----------
    window : events with a segment per window.
    warmup : windows whose entropies set the reference (mean and sd), at least; up to
        ``DAY_EXTEND`` times as many while they span less than a day (see
        :func:`~stream.monitor.dependence.short_of_a_day`).
    threshold, delta : Page-Hinkley's, on the standardized entropy.
    season : the model's declared cycle, if any. The reference is then the entropy expected at
        each phase of the period, learned from the windows of the first ``season.periods``
        whole periods (and ``warmup`` windows at least): the mean entropy of each of up to
        ``season.bins`` phase bins (fewer when a period holds fewer than 3 windows a bin),
        linear between the bins' centres; the sd is that of the windows around it.
    """

    def __init__(self, window: int, warmup: int, threshold: float, delta: float,
                 season: SeasonalitySettings | None = None) -> None:
        self.window, self.warmup, self.season = window, warmup, season
        self.segment_index: dict[str, int] = {}
        self.counts = np.zeros(0)                    # positives per segment, current window
        self.seen = 0                                # events with a segment in current window
        # the reference's windows: entropy (and, seasonal, event time of the end) of each window
        # finished while it learns; none once it is learned (a state does not grow with them)
        self.series: list[float] = []
        self.series_ts: list[float] = []
        self.windows = 0                             # windows finished
        self.last: float | None = None               # the last one's entropy
        self.ph = PageHinkley(1, min_instances=3, delta=delta, threshold=threshold, alpha=1.0,
                              mode="down")
        self.ref_mean = self.ref_sd = None
        self.knots: list[list[float]] | None = None  # (seasonal) [phase in [0, 1), entropy] per bin
        self.ends: list[tuple[int, float, int]] = []     # the last batch's window ends
        self.before: tuple[float | None, int] = (None, 0)   # (last entropy, windows) before it

    def update(self, batch: ModelBatch) -> list[tuple[int, float, float, int]]:
        """Feed a batch; returns (row, entropy, z, windows so far) for each window end that PH
        flagged. ``ends`` then lists (row, entropy, windows so far) of every window end, and
        ``before`` (entropy, windows so far) at the batch's start."""
        self.ends: list[tuple[int, float, int]] = []
        self.before = (self.last, self.windows)
        seg = batch.segments
        has = np.array([s is not None for s in seg])
        if not has.any():
            return []
        if batch.prediction_class is not None:
            positive = np.array([p is not None for p in batch.prediction_class])
        else:
            positive = batch.prediction >= 0.5
        codes = np.full(len(seg), -1)
        for r in np.flatnonzero(has):
            s = seg[r]
            j = self.segment_index.get(s)
            if j is None:
                j = self.segment_index[s] = len(self.segment_index)
            codes[r] = j
        if self.counts.size < len(self.segment_index):
            self.counts = np.concatenate([self.counts, np.zeros(len(self.segment_index) - self.counts.size)])
        flagged = []
        rows = np.flatnonzero(has)
        start = 0
        while start < rows.size:
            take = min(self.window - self.seen, rows.size - start)
            part = rows[start:start + take]
            pos = part[positive[part]]
            np.add.at(self.counts, codes[pos], 1.0)
            self.seen += take
            start += take
            if self.seen == self.window:
                end_row = int(part[-1])
                h = self._entropy()
                self.windows += 1
                self.last = h
                self.ends.append((end_row, h, self.windows))
                self.counts[:] = 0
                self.seen = 0
                hit = self._watch(h, float(batch.ts[end_row]))
                if hit is not None:
                    flagged.append((end_row, h, hit, self.windows))
        return flagged

    def state_dict(self) -> dict[str, Any]:
        return {"segments": self.segment_index, "seen": self.seen, "series": self.series,
                "series_ts": self.series_ts, "knots": self.knots, "windows": self.windows, "last": self.last,
                "ref_mean": self.ref_mean, "ref_sd": self.ref_sd, "counts": self.counts,
                "ph": self.ph.to_bytes()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.segment_index = dict(state["segments"])
        self.seen, self.series = int(state["seen"]), list(state["series"])
        self.ref_mean, self.ref_sd = state["ref_mean"], state["ref_sd"]
        self.counts = state["counts"]
        self.ph = PageHinkley.from_bytes(state["ph"])
        # (a state saved without them: its reference, if any, is not seasonal; it kept every
        # window's entropy)
        self.knots = state.get("knots")
        self.series_ts = list(state.get("series_ts", []))
        self.windows = int(state.get("windows", len(self.series)))
        self.last = state.get("last", self.series[-1] if self.series else None)
        if self.ref_mean is not None:
            self.series, self.series_ts = [], []
        elif self.season is not None and len(self.series_ts) < len(self.series):
            self.season = None                       # (its windows' times are unknown)

    def expected(self, ts: float) -> float | None:
        """The reference's entropy at event time ``ts`` (None: not learned yet)."""
        return self.ref_mean if self.knots is None else float(self._curve(np.array([ts]))[0])

    def _curve(self, ts: np.ndarray) -> np.ndarray:
        """The seasonal reference's entropy at these event times."""
        phase, value = np.array(self.knots).T
        return np.interp(self._phase(ts), phase, value, period=1.0)

    def _phase(self, ts: np.ndarray) -> np.ndarray:
        return np.mod(ts, self.season.period_s) / self.season.period_s

    def _entropy(self) -> float:
        total = self.counts.sum()
        k = len(self.segment_index)
        if total == 0 or k < 2:
            return 1.0
        p = self.counts[self.counts > 0] / total
        return float(-(p * np.log(p)).sum() / np.log(k))

    def _watch(self, h: float, ts: float) -> float | None:
        """Window entropy ``h`` ending at event time ``ts``: learned, or PH's z if it flags."""
        if self.ref_mean is None:
            self.series.append(h)
            self.series_ts.append(ts)
            if self.season is None:
                n = len(self.series)
                # (windows of a state without their times: no day to span)
                timed = len(self.series_ts) == n
                span = ts - self.series_ts[0] if timed else float("nan")
                reach = DAY_EXTEND * self.warmup
                if n >= self.warmup and not (n < reach and short_of_a_day(span, n, reach, n > self.warmup)):
                    ref = np.array(self.series)
                    self.ref_mean = float(ref.mean())
                    self.ref_sd = max(float(ref.std(ddof=1)), 1e-3)
            else:
                if len(self.series) >= self.warmup and \
                        ts - self.series_ts[0] >= self.season.periods * self.season.period_s:
                    self._learn_cycle()
            if self.ref_mean is not None:
                self.series, self.series_ts = [], []
            return None
        ref = self.ref_mean if self.knots is None else self.expected(ts)
        z = max((h - ref) / self.ref_sd, -10.0)
        return z if self.ph.update(np.array([[min(z, 10.0)]]))[0, 0] else None

    def _learn_cycle(self) -> None:
        """The seasonal reference from every window so far (see the class)."""
        h, ts = np.array(self.series), np.array(self.series_ts)
        periods = (ts[-1] - ts[0]) / self.season.period_s
        bins = int(max(1, min(self.season.bins, h.size / periods // 3)))
        where = np.minimum((self._phase(ts) * bins).astype(np.int64), bins - 1)
        count = np.bincount(where, minlength=bins)
        used = np.flatnonzero(count)
        means = np.bincount(where, weights=h, minlength=bins)[used] / count[used]
        self.knots = [[(b + 0.5) / bins, m] for b, m in zip(used.tolist(), means.tolist(), strict=True)]
        self.ref_mean = float(h.mean())
        self.ref_sd = max(float((h - self._curve(ts)).std(ddof=1)), 1e-3)


class SelectionWatch:
    """Labeled share of predictions per score band; flags labels that follow the score."""

    def __init__(self, bands: int, min_per_band: int, gap: float) -> None:
        self.bands, self.min_per_band, self.gap = bands, min_per_band, gap
        self.labeled = np.zeros(bands)
        self.unlabeled = np.zeros(bands)
        self.total = 0                  # outcomes counted (labeled or not)

    def outcomes(self, scores: list[Any], labeled: np.ndarray, every: int) -> Iterator[tuple[int, bool]]:
        """Count these outcomes (a score and whether it was labeled) in order; only scores in
        [0, 1] count. Pauses after each that brings the total to a multiple of ``every``:
        yields its index and whether the bands differ then (the watch holds the outcomes up
        to it while paused)."""
        if set(map(type, scores)) <= _NUMBERS:
            s = np.array(scores, dtype=np.float64)
        else:
            s = np.array([v if type(v) in _NUMBERS else np.nan for v in scores], dtype=np.float64)
        counted = (s >= 0.0) & (s <= 1.0)
        band = np.minimum((np.where(counted, s, 0.0) * self.bands).astype(np.int64), self.bands - 1)
        total = self.total + np.cumsum(counted)
        checks = np.flatnonzero(counted & (total % every == 0))
        labeled0, unlabeled0 = self.labeled, self.unlabeled
        if checks.size:
            # the counts at every check at once (integers held exactly as floats)
            hot = np.zeros((s.size, self.bands))
            rows = np.flatnonzero(counted)
            hot[rows, band[rows]] = 1.0
            lab = labeled0 + np.cumsum(hot * labeled[:, None], axis=0)[checks]
            unl = unlabeled0 + np.cumsum(hot * ~labeled[:, None], axis=0)[checks]
            flags = self._differ(lab, unl)
            for k, at in enumerate(checks.tolist()):
                self.labeled, self.unlabeled, self.total = lab[k], unl[k], int(total[at])
                yield at, bool(flags[k])
        c = band[counted]
        y = labeled[counted]
        self.labeled = labeled0 + np.bincount(c[y], minlength=self.bands)
        self.unlabeled = unlabeled0 + np.bincount(c[~y], minlength=self.bands)
        self.total = int(total[-1]) if total.size else self.total

    def _differ(self, labeled: np.ndarray, unlabeled: np.ndarray) -> np.ndarray:
        """Per row of band counts: whether the labeled shares of the bands with enough
        outcomes differ by more than the gap (as :meth:`flagged`)."""
        n = labeled + unlabeled
        ok = n >= self.min_per_band
        r = labeled / np.maximum(n, 1)
        hi = np.where(ok, r, -np.inf).max(axis=1)
        lo = np.where(ok, r, np.inf).min(axis=1)
        return (ok.sum(axis=1) >= 2) & (hi - lo > self.gap)

    def state_dict(self) -> dict[str, Any]:
        return {"labeled": self.labeled, "unlabeled": self.unlabeled}

    def load_state(self, state: dict[str, Any]) -> None:
        self.labeled, self.unlabeled = state["labeled"], state["unlabeled"]
        self.total = int(self.labeled.sum() + self.unlabeled.sum())

    def rates(self) -> np.ndarray:
        n = self.labeled + self.unlabeled
        return np.where(n >= self.min_per_band, self.labeled / np.maximum(n, 1), np.nan)

    def flagged(self) -> tuple[float, float] | None:
        """(lowest, highest) labeled share across bands when they differ by more than gap."""
        r = self.rates()
        r = r[~np.isnan(r)]
        if r.size >= 2 and r.max() - r.min() > self.gap:
            return float(r.min()), float(r.max())
        return None


class _WatchedSignal:
    """A feedback watch and the alert episodes of its signal; they make its state."""

    watch: ConcentrationWatch | SelectionWatch
    lifecycle: Lifecycle

    def state_dict(self) -> dict[str, Any]:
        return {"watch": self.watch.state_dict(), "lifecycle": self.lifecycle.state_dict()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.watch.load_state(state["watch"])
        self.lifecycle.load_state(state["lifecycle"])


class ConcentrationMonitor(_WatchedSignal):
    """A model's ``segments:entropy`` signal: the watch and its alert episodes."""

    def __init__(self, model: str, fb: FeedbackSettings, cooldown_s: float,
                 season: SeasonalitySettings | None = None) -> None:
        self.model = model
        self.watch = ConcentrationWatch(fb.window, fb.warmup, fb.ph_threshold, fb.ph_delta, season)
        self.lifecycle = Lifecycle(fb.resolve_after_s, cooldown_s)

    def update(self, batch: ModelBatch, alerts: list[dict]) -> int:
        """Feed a batch; its alerts are appended; returns the suppressed detections."""
        flagged = self.watch.update(batch)
        if not flagged and not self.lifecycle.open:
            return 0
        ends, (last, before) = self.watch.ends, self.watch.before
        z_at = {row: (h, z, n) for row, h, z, n in flagged}
        # an alert at another row (a resolution) tells the last window finished by that row
        end_rows = np.array([e[0] for e in ends], dtype=np.int64)

        def state_at(row: int) -> tuple[float, float, int]:
            if row in z_at:
                return z_at[row]
            k = int(np.searchsorted(end_rows, row, side="right"))
            if k:
                return ends[k - 1][1], float("nan"), ends[k - 1][2]
            return (last if last is not None else float("nan")), float("nan"), before

        return apply_lifecycle(self.lifecycle, [(row, 0, "page_hinkley") for row in z_at], batch.ts,
                               alerts, lambda row, j, name, status: self._alert(
                                   batch, row, name, status, *state_at(row)))

    def _alert(self, batch: ModelBatch, row: int, detector: str, status: str, h: float,
               z: float, windows: int) -> dict:
        watch = self.watch
        stats = {"entropy": h, "entropy_before": watch.expected(float(batch.ts[row])),
                 "effect_size": round(z, 6) if z == z else 0.0,
                 "segments": len(watch.segment_index), "windows": windows}
        return make_alert(model=self.model, signal=ENTROPY_SIGNAL, detector=detector,
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                          stats=stats, status=status)


class SelectionMonitor(_WatchedSignal):
    """A model's ``labels:selection`` signal: labeled shares by score band, and its episodes.

    A state, not an event: the episode stays open while the bands differ and resolves once
    they have not for the feedback resolve span (checked once a batch).
    """

    def __init__(self, model: str, fb: FeedbackSettings, cooldown_s: float) -> None:
        self.model = model
        self.watch = SelectionWatch(fb.label_bands, fb.label_min_per_band, fb.label_gap)
        self.lifecycle = Lifecycle(fb.resolve_after_s, cooldown_s)

    def outcomes(self, scores: list[Any], labeled: np.ndarray, every: int,
                 where: Callable[[int], tuple[Message, float]], alerts: list[dict]) -> int:
        """Count the predictions' outcomes in arrival order (see :meth:`SelectionWatch.outcomes`),
        judged every ``every``; ``where(i)``: the message and the clock (event time) at
        outcome i. Appends alerts; returns the suppressed detections."""
        suppressed = 0
        for at, flagged in self.watch.outcomes(scores, labeled, every):
            if flagged or 0 in self.lifecycle.open:      # (else nothing can fire or resolve)
                suppressed += self.check(*where(at), alerts, flagged)
        return suppressed

    def check(self, at: Message, now: float, alerts: list[dict], flagged: bool | None = None) -> int:
        """Fire or resolve at ``now`` (event time), positioned at message ``at``; returns the
        suppressed detections. ``flagged``: whether the bands differ, if known."""
        life = self.lifecycle
        if flagged is None:
            flagged = self.watch.flagged() is not None
        if flagged and 0 in life.open:
            life.extend(0, now)
            return 1
        if flagged and life.may_fire(0, now):
            alert = self._alert(at, now, "firing")
            life.fire(0, now, alert["alert_id"], "label_rate_gap")
            alerts.append(alert)
        elif not flagged and life.resolve_row(0, np.array([now])) is not None:
            alerts.append(resolved(life, 0, self._alert(at, now, "resolved")))
        return 0

    def _alert(self, at: Message, now: float, status: str) -> dict:
        watch = self.watch
        rates = watch.rates()
        known = rates[~np.isnan(rates)]
        stats = {"labeled_share_by_band": [None if r != r else round(float(r), 6) for r in rates],
                 "labeled_share_min": float(known.min()) if known.size else None,
                 "labeled_share_max": float(known.max()) if known.size else None,
                 "bands": watch.bands}
        return make_alert(model=self.model, signal=SELECTION_SIGNAL, detector="label_rate_gap", ts=now,
                          topic=at.topic, partition=at.partition, offset=at.offset, stats=stats,
                          status=status)
