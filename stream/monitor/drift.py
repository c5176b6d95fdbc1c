"""Drift as a state of each signal: `firing` while its recent values differ from its reference.

The detectors (ADWIN, Page-Hinkley) say *when* a signal may have changed: each detection is a
change point. Whether the signal *is* drifted is judged on the values that came after the last
change point (in z-scores against the signal's reference, clipped), compared with what the
reference's own values gave (the mean ``cz_mean`` and spread ``cz_sd`` of its clipped
z-scores, which are not N(0, 1) for heavy-tailed or discrete features):

* ``d`` = mean of the values since the change point - ``cz_mean``, in reference sd;
  ``se`` = ``cz_sd * sqrt(1/n + 1/n_ref)``, its standard error.
* A detection on a stable signal makes it a *candidate*. It becomes **drifted** (one
  `firing` alert, at the value where this holds) once ``n >= min_values``,
  ``|d| >= min_effect`` and ``|d| >= significance * se`` (and the signal's cooldown has
  passed); it goes back to stable, silently, once ``|d| + confidence * se_n < min_effect``
  (the change, if any, is smaller than the minimum effect; ``se_n`` = ``se`` without the
  reference's term: "within" is judged against the reference as learned).
* A drifted signal stays drifted (no further alert) until the values since its last change
  point are back within the reference: ``|d| + confidence * se_n < min_effect`` with
  ``n >= min_values`` and at least as many values as its firing was judged on (a return is
  judged on as much evidence as the change: a slow ramp's noisy first return does not
  resolve it); then one `resolved` alert. A return to the reference is a change point
  too (the detectors see it), so a transient shift is one episode that resolves after its
  end; a persistent one stays firing.

Every decision is taken at a value, with sums accumulated in arrival order (``np.cumsum``
continues the running sum exactly), so the alerts do not depend on how the stream was cut
into batches. Only signals that detected in the batch or are not stable are looked at: the
steady state costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

STABLE, CANDIDATE, DRIFTED = 0, 1, 2
Evidence = Callable[[np.ndarray, np.ndarray], np.ndarray]     # (n, raw sums) -> may fire


@dataclass(frozen=True)
class Transition:
    """A signal became drifted (``firing``) or stable again (``resolved``) at a batch row."""
    row: int
    column: int
    status: str                 # "firing" | "resolved"
    detector: str               # the detector whose change point opened the window
    n: int                      # values since the change point (the "after" window)
    effect: float               # d: their mean minus the reference's, in reference sd
    raw_mean: float             # their mean in the signal's own units
    since_ts: float             # event time of the first of them
    reason: str = ""            # resolved: "returned" or "rebaselined"


@dataclass
class Episode:
    alert_id: str               # of the firing alert
    detector: str
    fired_ts: float
    severity: str = "info"      # of the firing alert (its resolved alert keeps it)


class DriftStates:
    """The drift state of a growing set of signals (columns).

    Parameters
    ----------
    detectors : the detector names, in the order of the detector index given to :meth:`step`.
    min_effect : smallest shift, in reference standard deviations, that counts as drift.
    significance : how many standard errors the shift must be from the reference to fire.
    confidence : standard errors of margin for "within the reference" (cancel, resolve).
    min_values : values after a change point before any decision.
    cooldown_s : event-time seconds between two firings of one signal.
    """

    def __init__(self, detectors: list[str], min_effect: float, significance: float,
                 confidence: float, min_values: int, cooldown_s: float) -> None:
        self.detectors = list(detectors)
        self.min_effect, self.significance, self.confidence = min_effect, significance, confidence
        self.min_values, self.cooldown_s = min_values, cooldown_s
        self.status = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0)                    # values since the change point
        self.sz = np.zeros(0)                   # their clipped z-scores' sum
        self.szz = np.zeros(0)                  # and sum of squares
        self.sx = np.zeros(0)                   # their raw values' sum
        self.since_ts = np.zeros(0)             # event time of the first of them
        self.opened_by = np.zeros(0, dtype=np.int64)   # detector index of the change point
        self.last_fired = np.zeros(0)           # event time of the last firing (-inf: never)
        self.fired_n = np.zeros(0)              # values the last firing was judged on
        self.episodes: dict[int, Episode] = {}
        self.quiet = 0                          # detections that raised no alert (a counter)

    @property
    def size(self) -> int:
        return int(self.status.size)

    def add(self, k: int) -> None:
        """Append k stable signals."""
        self.status = np.concatenate([self.status, np.zeros(k, dtype=np.int64)])
        for name in ("n", "sz", "szz", "sx", "since_ts"):
            setattr(self, name, np.concatenate([getattr(self, name), np.zeros(k)]))
        self.opened_by = np.concatenate([self.opened_by, np.zeros(k, dtype=np.int64)])
        self.last_fired = np.concatenate([self.last_fired, np.full(k, -np.inf)])
        self.fired_n = np.concatenate([self.fired_n, np.zeros(k)])

    _ARRAYS = ("status", "n", "sz", "szz", "sx", "since_ts", "opened_by", "last_fired", "fired_n")

    def state_dict(self) -> dict[str, Any]:
        return {**{name: getattr(self, name) for name in self._ARRAYS}, "detectors": list(self.detectors),
                "episodes": {str(j): vars(ep) for j, ep in self.episodes.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        for name in self._ARRAYS:
            if name in state:
                setattr(self, name, state[name])
        if "fired_n" not in state:              # (a state saved before: min_values alone)
            self.fired_n = np.zeros(self.status.size)
        self.episodes = {int(j): Episode(**ep) for j, ep in state["episodes"].items()}
        self.detectors = list(state["detectors"])

    def drifted(self) -> list[int]:
        """The signals drifted now."""
        return sorted(self.episodes)

    def alerts(self, transitions: list[Transition], build: Callable[[Transition], dict]) -> list[dict]:
        """The alerts of these transitions, ``build(t)`` making each; a `firing` alert opens
        its signal's episode, a `resolved` one closes it (its stats name the episode)."""
        out = []
        for t in transitions:
            if t.status == "resolved":               # (named after the episode's opener)
                t = replace(t, detector=self.episodes[t.column].detector)
            alert = build(t)
            if t.status == "firing":
                self.episodes[t.column] = Episode(alert["alert_id"], t.detector, alert["at"]["ts"],
                                                  alert["severity"])
            else:
                close(alert, self.episodes.pop(t.column))
            out.append(alert)
        return out

    def compare(self, j: int, opener: str) -> None:
        """Signal j's values from now on are judged against its reference as after a change
        point (a reference from training data: production may differ from its first value,
        which no detector sees as a change)."""
        if opener not in self.detectors:
            self.detectors.append(opener)
        if self.status[j] == STABLE:
            self.status[j] = CANDIDATE
            self.opened_by[j] = self.detectors.index(opener)
            self.n[j] = self.sz[j] = self.szz[j] = self.sx[j] = 0.0

    def seed(self, c: int, opener: int, n: int, sz: float, szz: float, sx: float, since_ts: float) -> None:
        """Stable signal c becomes a candidate whose "after" values are already ``n`` values
        with these sums (z-scores, their squares, raw values) since event time ``since_ts``:
        a change whose own values are its evidence (a data-quality block); its next value can
        decide."""
        self.status[c] = CANDIDATE
        self.opened_by[c] = opener
        self.n[c], self.sz[c], self.szz[c], self.sx[c] = float(n), float(sz), float(szz), float(sx)
        self.since_ts[c] = float(since_ts)

    def unchanged(self, c: int, n: int, sz: float, cz_mean: float) -> bool:
        """Whether candidate c's values since its change point but the last ``n`` (whose
        z-scores sum to ``sz``) are at least ``min_values`` and their mean is within
        ``min_effect`` of the reference's."""
        before = float(self.n[c]) - n
        return before >= self.min_values \
            and abs((float(self.sz[c]) - sz) / before - cz_mean) < self.min_effect

    def rebaseline(self, j: int, row: int, cz_mean: float, reason: str = "rebaselined") -> Transition | None:
        """Signal j starts over (an operator accepted its values): stable again. If it was
        drifted, the `resolved` transition (reason "rebaselined") at batch row ``row`` whose
        alert :meth:`alerts` closes the episode with."""
        n = float(self.n[j])
        episode = self.episodes.get(j)
        t = None
        if episode is not None:
            t = Transition(row, j, "resolved", episode.detector, int(n),
                           float(self.sz[j] / n - cz_mean) if n else 0.0, float(self.sx[j] / n) if n else 0.0,
                           float(self.since_ts[j]), reason)
        self.status[j] = STABLE
        self.n[j] = self.sz[j] = self.szz[j] = self.sx[j] = 0.0
        return t

    def step(self, Z: np.ndarray, X: np.ndarray, hit: np.ndarray, ts: np.ndarray,
             cz_mean: np.ndarray, cz_sd: np.ndarray, n_ref: np.ndarray,
             min_after: np.ndarray | None = None) -> list[Transition]:
        """Advance over a batch.

        Z, X : (rows, D) clipped z-scores (NaN: no value to judge) and raw values.
        hit : (rows, D) int8, the index of the detector that detected at that value, or -1.
        ts : (rows,) event times.
        cz_mean, cz_sd, n_ref : (D,) the reference's clipped z-scores' mean and sd (their
            long-run sd, ``sqrt(tau)`` times it, for a dependent signal), and size.
        min_after : (D,) the least raw mean of the "after" values a firing needs (a check
            that only counts in one direction, e.g. more missing values); NaN: none.
        Returns the transitions in column order (each column's in row order).
        """
        hits = hit >= 0
        out: list[Transition] = []
        for c in np.flatnonzero((self.status != STABLE) | hits.any(axis=0)).tolist():
            rows = np.flatnonzero(~np.isnan(Z[:, c]))
            if rows.size:
                floor = -np.inf if min_after is None or min_after[c] != min_after[c] else float(min_after[c])
                self._column(c, rows, Z[rows, c], X[rows, c], hit[rows, c], ts[rows],
                             float(cz_mean[c]), max(float(cz_sd[c]), 1e-9), float(n_ref[c]), floor, out)
        return out

    def step_column(self, c: int, rows: np.ndarray, z: np.ndarray, x: np.ndarray, hit: np.ndarray,
                    ts: np.ndarray, cz_mean: float, cz_sd: float, n_ref: float,
                    floor: float = -np.inf, evidence: Evidence | None = None) -> list[Transition]:
        """:meth:`step` for one signal, given its values only (``rows``: their batch rows;
        ``z``, ``x``, ``hit``, ``ts``: per value). ``evidence(n, sx)``: whether "after" values
        of these counts and raw sums may fire, a test of the signal's own besides the standard
        error's (a dependent 0/1 rate's mean over few of its runs is far from normal)."""
        out: list[Transition] = []
        self._column(c, rows, z, x, hit, ts, cz_mean, max(cz_sd, 1e-9), n_ref, floor, out, evidence)
        return out

    def _column(self, c: int, rows: np.ndarray, z: np.ndarray, x: np.ndarray, hit: np.ndarray,
                ts: np.ndarray, cz_mean: float, cz_sd: float, n_ref: float, floor: float,
                out: list[Transition], evidence: Evidence | None = None) -> None:
        hits = np.flatnonzero(hit >= 0).tolist()
        pos, L = 0, z.size
        while pos < L:
            while hits and hits[0] < pos:               # (a hit at a row already judged)
                hits.pop(0)
            end = hits[0] if hits else L - 1          # the segment [pos, end] ends at a change
            if self.status[c] == STABLE:
                if not hits:
                    return
                pos = self._change_point(c, end, hit, ts, hits) + 1
                continue
            n0, sz0, szz0, sx0 = self.n[c], self.sz[c], self.szz[c], self.sx[c]
            if n0 == 0:
                self.since_ts[c] = float(ts[pos])
            seg = slice(pos, end + 1)
            n = n0 + np.arange(1, end - pos + 2)
            sz = np.cumsum(np.concatenate([[sz0], z[seg]]))[1:]     # (continues the sum exactly)
            szz = np.cumsum(np.concatenate([[szz0], z[seg] * z[seg]]))[1:]
            sx = np.cumsum(np.concatenate([[sx0], x[seg]]))[1:]
            mean = sz / n
            d = mean - cz_mean
            # the "after" values' own spread when it is larger than the reference's (a wider
            # signal's mean is less sure), Welch's standard error of the difference
            var = np.maximum((szz - sz * mean) / np.maximum(n - 1, 1), cz_sd * cz_sd)
            se_n = np.sqrt(var / n)
            se = np.sqrt(var / n + cz_sd * cz_sd / n_ref)
            ready = n >= self.min_values
            # "back" is judged against the reference as learned: its own uncertainty (large for
            # a dependent signal's short warm-up) would otherwise forbid resolving at all
            within = ready & (np.abs(d) + self.confidence * se_n < self.min_effect)
            if self.status[c] == DRIFTED:
                within &= n >= self.fired_n[c]
            if self.status[c] == CANDIDATE:
                fire = ready & (np.abs(d) >= self.min_effect) & (np.abs(d) >= self.significance * se) \
                    & (ts[seg] >= self.last_fired[c] + self.cooldown_s) & (sx >= floor * n)
                if evidence is not None and fire.any():
                    fire &= evidence(n, sx)
                decided = fire | within
            else:
                fire = None
                decided = within
            if decided.any():
                k = int(decided.argmax())
                row = pos + k
                firing = fire is not None and bool(fire[k])
                if not firing and self.status[c] == CANDIDATE:
                    self.quiet += 1                         # a dismissed candidate: no alert
                if firing or self.status[c] == DRIFTED:
                    out.append(Transition(int(rows[row]), c, "firing" if firing else "resolved",
                                          self.detectors[self.opened_by[c]], int(n[k]), float(d[k]),
                                          float(sx[k] / n[k]), float(self.since_ts[c]),
                                          "" if firing else "returned"))
                if firing:
                    self.status[c] = DRIFTED
                    self.last_fired[c] = float(ts[row])
                    self.fired_n[c] = float(n[k])
                else:
                    self.status[c] = STABLE
                self.n[c], self.sz[c], self.szz[c], self.sx[c] = float(n[k]), float(sz[k]), float(szz[k]), \
                    float(sx[k])
                if hits and hits[0] == row:             # the decided value is a change point too
                    self._change_point(c, row, hit, ts, hits)
                pos = row + 1
                continue
            self.n[c], self.sz[c], self.szz[c], self.sx[c] = float(n[-1]), float(sz[-1]), float(szz[-1]), \
                float(sx[-1])
            if hits and end == hits[0]:
                self._change_point(c, end, hit, ts, hits)
            pos = end + 1

    def _change_point(self, c: int, at: int, hit: np.ndarray, ts: np.ndarray, hits: list[int]) -> int:
        """A detection at value ``at``: the window restarts after it; a stable signal becomes
        a candidate. Consumes the hit; returns ``at``."""
        hits.pop(0)
        if self.status[c] == STABLE:
            self.status[c] = CANDIDATE
        else:
            self.quiet += 1                     # a change inside an episode or a candidacy
        self.opened_by[c] = int(hit[at])
        self.n[c] = self.sz[c] = self.szz[c] = self.sx[c] = 0.0
        return at


def close(alert: dict, episode: Episode) -> dict:
    """A resolved alert names the episode it closes."""
    alert["stats"].update({"episode_alert_id": episode.alert_id, "fired_ts": episode.fired_ts})
    alert["severity"] = episode.severity
    return alert


def hit_matrix(masks: dict[str, np.ndarray], order: list[str]) -> np.ndarray:
    """(rows, D) int8: the index in ``order`` of the first detector that detected at each
    value, -1 where none did."""
    hit = None
    for i in range(len(order) - 1, -1, -1):
        mask = masks[order[i]]
        if hit is None:
            hit = np.full(mask.shape, -1, dtype=np.int64)
        if mask.any():
            hit[mask] = i
    return hit
