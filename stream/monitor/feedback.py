"""Feedback loops: predictions that shape the data the model sees next (kind feedback_loop).

Two signatures, per model:

* Concentration (signal ``segments:entropy``): events carry ``segment``. Every ``window``
  events with a segment, the normalized entropy of where the *positive* predictions went
  (score >= 0.5, or any class prediction) across segments is computed. A self-reinforcing
  allocation concentrates them: the entropy falls steadily. The entropy series is
  standardized on its first ``warmup`` windows and watched by Page-Hinkley in mode "down".
* Selective labels (signal ``labels:selection``): with a labels source, each prediction with a
  score in [0, 1] ends either labeled (its label arrived) or unlabeled (it aged out of the
  prediction store). When, over enough of them, the labeled share differs across score bands
  by more than ``label_gap`` (labels only where the model acted), the loop is flagged.
"""

from __future__ import annotations

import numpy as np

from detectors import PageHinkley

from ..ingest.rows import ModelBatch

ENTROPY_SIGNAL = "segments:entropy"
SELECTION_SIGNAL = "labels:selection"


class ConcentrationWatch:
    """Windowed entropy of positive predictions across segments, watched by PH (down)."""

    def __init__(self, window: int, warmup: int, threshold: float, delta: float) -> None:
        self.window, self.warmup = window, warmup
        self.segment_index: dict[str, int] = {}
        self.counts = np.zeros(0)                    # positives per segment, current window
        self.seen = 0                                # events with a segment in current window
        self.series: list[float] = []                # entropy of each finished window
        self.ph = PageHinkley(1, min_instances=3, delta=delta, threshold=threshold, alpha=1.0,
                              mode="down")
        self.ref_mean = self.ref_sd = None

    def update(self, batch: ModelBatch) -> list[tuple[int, float, float, int]]:
        """Feed a batch; returns (row, entropy, z, windows so far) for each window end that PH
        flagged."""
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
                self.series.append(h)
                self.counts[:] = 0
                self.seen = 0
                hit = self._watch(h)
                if hit is not None:
                    flagged.append((end_row, h, hit, len(self.series)))
        return flagged

    def _entropy(self) -> float:
        total = self.counts.sum()
        k = len(self.segment_index)
        if total == 0 or k < 2:
            return 1.0
        p = self.counts[self.counts > 0] / total
        return float(-(p * np.log(p)).sum() / np.log(k))

    def _watch(self, h: float) -> float | None:
        if len(self.series) <= self.warmup:
            if len(self.series) == self.warmup:
                ref = np.array(self.series)
                self.ref_mean = float(ref.mean())
                self.ref_sd = max(float(ref.std(ddof=1)), 1e-3)
            return None
        z = max((h - self.ref_mean) / self.ref_sd, -10.0)
        return z if self.ph.update(np.array([[min(z, 10.0)]]))[0, 0] else None


class SelectionWatch:
    """Labeled share of predictions per score band; flags labels that follow the score."""

    def __init__(self, bands: int, min_per_band: int, gap: float) -> None:
        self.bands, self.min_per_band, self.gap = bands, min_per_band, gap
        self.labeled = np.zeros(bands)
        self.unlabeled = np.zeros(bands)

    def band(self, score: float) -> int | None:
        if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            return None
        return min(int(score * self.bands), self.bands - 1)

    def outcome(self, score: float, labeled: bool) -> None:
        b = self.band(score)
        if b is not None:
            (self.labeled if labeled else self.unlabeled)[b] += 1

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
