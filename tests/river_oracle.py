"""river as the oracle: feed each column's non-NaN values to a fresh river detector."""

from __future__ import annotations

import numpy as np
from river import drift


def river_mask(cls_name: str, X: np.ndarray, **params) -> tuple[np.ndarray, list]:
    """(B, D) detection mask of river's detector per column, and the final detectors."""
    cls = getattr(drift, cls_name)
    B, D = X.shape
    mask = np.zeros((B, D), dtype=bool)
    finals = []
    for c in range(D):
        det = cls(**params)
        for i, v in enumerate(X[:, c].tolist()):
            if v != v:  # NaN: no value in this row
                continue
            det.update(v)
            mask[i, c] = det.drift_detected
        finals.append(det)
    return mask, finals


def feed_in_batches(det, X: np.ndarray, cuts) -> np.ndarray:
    """Feed X split at row indices `cuts`; return the concatenated detection mask."""
    parts = np.split(X, sorted(cuts))
    return np.concatenate([det.update(p) for p in parts], axis=0)
