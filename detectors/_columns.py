"""Input checks and the column layout shared by the detectors.

A detector sees a batch as a float64 array X of shape (B, D): row = arrival order,
column = one independent stream, NaN = "no value for this column in this row".
Each column is its own stream: the detectors work on each column's non-NaN values in
order (its "compacted" sequence) and map results back to the original rows.
"""

from __future__ import annotations

import threading

import numpy as np


def check_batch(X: np.ndarray, n_features: int) -> tuple[np.ndarray, bool]:
    """Return (X as a C-contiguous float64 (B, D) array, whether X holds any NaN), or raise a
    clear error.

    Accepts any real numeric array (ints and bools are converted); a 1-D array is accepted
    only when ``n_features == 1`` (one column). Infinite values are rejected: they carry no
    usable information for a mean-based detector and would poison its sums forever.
    """
    if not isinstance(X, np.ndarray):
        X = np.asarray(X)
    if X.dtype.kind not in "fiub":
        raise TypeError(f"X must be a real numeric array, got dtype {X.dtype}")
    if X.ndim == 1 and n_features == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2:
        raise ValueError(f"X must have shape (B, {n_features}), got shape {X.shape}")
    if X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} columns but the detector has {n_features} features")
    X = np.ascontiguousarray(X, dtype=np.float64)
    if not X.size or np.isfinite(X.sum()):          # a finite sum: no inf and no NaN
        return X, False
    if np.isinf(X).any():
        raise ValueError("X contains infinite values; use NaN for a missing value")
    return X, bool(np.isnan(X).any())              # (or a sum that overflowed)


def columns_first(X: np.ndarray, rows_per_tile: int | None = None,
                  out: np.ndarray | None = None) -> np.ndarray:
    """X (B, D) as a C-contiguous (D, B) array: one contiguous row per column.

    Copied in tiles of rows so that reads and writes stay in the CPU caches (faster than
    numpy's one-shot transposing copy for large batches; docs/performance.md); by default
    tiles of at least 64 rows and ~32 KiB. ``out``, if given, is a C-contiguous (D, B) array
    of X's dtype to write into (reusing memory spares the page faults of a fresh allocation).
    """
    if out is None:
        out = np.empty((X.shape[1], X.shape[0]), dtype=X.dtype)
    if rows_per_tile is None:
        rows_per_tile = max(64, 4096 // max(1, X.shape[1]))
    for r in range(0, X.shape[0], rows_per_tile):
        out[:, r:r + rows_per_tile] = X[r:r + rows_per_tile].T
    return out


_work = threading.local()     # per thread: memory of the last column-major copy
_KEEP_VALUES = 1 << 23        # largest copy whose memory is kept for the next one (64 MB)


def column_major_copy(X: np.ndarray) -> np.ndarray:
    """X (B, D) float64 as a C-contiguous (D, B) array in reused work memory.

    A fresh large array costs its page faults on first touch, so the memory of the last copy
    (up to _KEEP_VALUES values) is kept, one per thread and shared by all detectors (a service
    holds thousands of them). Work memory, not detector state: the copy is valid until the
    thread's next call.
    """
    B, D = X.shape
    memory = getattr(_work, "memory", None)
    if memory is None or memory.size < B * D:
        memory = np.empty(B * D)
    _work.memory = memory if memory.size <= _KEEP_VALUES else None
    return columns_first(X, out=memory[:B * D].reshape(D, B))


def compact_columns(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each column's non-NaN values, in order, as one contiguous row per column.

    Returns (values, rows, lengths): values (D, Lmax) float64 padded with 0.0, rows (D, Lmax)
    int64 original row index of each value (-1 in padding), lengths (D,) int64.
    One Python step per column, never per value.
    """
    B, D = X.shape
    valid = ~np.isnan(X)
    lengths = valid.sum(axis=0).astype(np.int64)
    lmax = int(lengths.max()) if D else 0
    values = np.zeros((D, lmax))
    rows = np.full((D, lmax), -1, dtype=np.int64)
    for c in range(D):
        idx = np.flatnonzero(valid[:, c])
        values[c, : idx.size] = X[idx, c]
        rows[c, : idx.size] = idx
    return values, rows, lengths


def check_int(name: str, value: object, low: int) -> int:
    """An integer parameter >= low (bools refused), or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_float(name: str, value: object) -> float:
    """A finite real parameter (bools refused), or a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)
