"""Accuracy estimated before the labels arrive (confidence-based, in the manner of CBPE).

For a binary classifier whose ``prediction`` is a probability in [0, 1], the calibrated
probability q of its score says how likely its decision (class 1 at a score >= 0.5) is right:
q where it decided 1, 1 - q where 0 (``max(q, 1 - q)`` when the scores are calibrated). Its
mean over recent events is the accuracy the model should have; watched like the other signals
(``estimated_accuracy``, kind ``performance_drift`` with ``"estimated": true``), it falls when
the inputs move into regions where the model is less sure, long before labels tell.

The calibration map is fitted on labelled data (the training profile's labels, or the first
``labels.warmup`` joined labels): an isotonic regression of the label on the score, used only
when it calibrates better than the raw score (Brier score on half of the pairs, fitted on the
other half). It assumes the scores' calibration holds in production and that the way features
relate to the label does not change: a pure concept change (same inputs, other labels) leaves
the estimate where it was, and only the joined labels catch it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ESTIMATE = "estimated_accuracy"


def isotonic(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing least-squares fit of y on p (pool adjacent violators), as knots
    (x ascending, fitted y) for interpolation."""
    order = np.argsort(p, kind="stable")
    x, v = p[order], y[order].astype(float)
    means: list[float] = []
    weights: list[float] = []
    ends: list[int] = []
    for i in range(v.size):
        means.append(float(v[i]))
        weights.append(1.0)
        ends.append(i)
        while len(means) > 1 and means[-2] > means[-1]:
            w = weights[-2] + weights[-1]
            means[-2] = (means[-2] * weights[-2] + means[-1] * weights[-1]) / w
            weights[-2] = w
            ends[-2] = ends[-1]
            del means[-1], weights[-1], ends[-1]
    starts = [0] + [e + 1 for e in ends[:-1]]
    knots_x, knots_y = [], []
    for s, e, m in zip(starts, ends, means, strict=True):
        knots_x += [float(x[s]), float(x[e])]
        knots_y += [m, m]
    return np.array(knots_x), np.array(knots_y)


class Calibration:
    """A score -> probability map: isotonic knots, or the identity (the raw scores are
    calibrated as they are, or the map did not beat them)."""

    def __init__(self) -> None:
        self.x: np.ndarray | None = None     # knots: scores ascending
        self.y: np.ndarray | None = None     # and their probabilities (non-decreasing)

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x if self.x is not None else np.zeros(0),
                "y": self.y if self.y is not None else np.zeros(0)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Calibration:
        cal = cls()
        cal.x = state["x"] if state["x"].size else None
        cal.y = state["y"] if state["y"].size else None
        return cal

    def to_profile(self) -> dict[str, Any]:
        """As a profile holds it: the map's knots (null: the raw scores are calibrated)."""
        return {"x": None if self.x is None else self.x.tolist(),
                "y": None if self.y is None else self.y.tolist()}

    @classmethod
    def from_profile(cls, d: dict[str, Any]) -> Calibration:
        cal = cls()
        if d.get("x") is not None:
            cal.x, cal.y = np.array(d["x"], dtype=float), np.array(d["y"], dtype=float)
        return cal

    @classmethod
    def fit(cls, p: np.ndarray, y: np.ndarray) -> Calibration:
        """From labelled pairs (scores p in [0, 1], outcomes y in {0, 1}, at least 2): the
        isotonic map only if it beats the raw scores out of sample (fitted on every other pair,
        Brier score on the rest)."""
        cal = cls()
        half = np.arange(p.size) % 2 == 0
        x, fy = isotonic(p[half], y[half])
        raw = float(((p[~half] - y[~half]) ** 2).mean())
        calibrated = float(((np.interp(p[~half], x, fy) - y[~half]) ** 2).mean())
        if calibrated < raw:
            cal.x, cal.y = isotonic(p, y)
        return cal

    def expected_correct(self, p: np.ndarray) -> np.ndarray:
        """How likely each score's decision (class 1 at p >= 0.5, as the labels judge it) is
        right: the calibrated probability q of class 1 where it says 1, else 1 - q (for
        calibrated scores, max(p, 1 - p)). NaN stays NaN, and so does a score outside [0, 1]:
        not a probability."""
        p = np.where((p >= 0) & (p <= 1), p, np.nan)
        q = p if self.x is None else np.where(np.isnan(p), np.nan, np.interp(p, self.x, self.y))
        return np.where(p >= 0.5, q, 1 - q)
