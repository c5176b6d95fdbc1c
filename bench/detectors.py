"""Values/s of streamdrift's detectors against river's, on the same data, in the same run.

    python bench/detectors.py [--rows 1000000] [--features 64] [--river-columns 4]
                              [--repeat 3] [--only PageHinkley|ADWIN] [--service-batch 2000]

Data: D columns of N(0, 1) with a mean shift of 1 sd halfway (rows), fed in batches.
river's detectors are fed `--river-columns` of the same columns value by value (river is
per value; its rate per value does not depend on D), and the detection indices of those
columns are checked for exact equality. Each side runs `--repeat` times, alternating, and the
best time of each is used (this machine's speed drifts by tens of percent between runs).
Then the service-like case (see service_like). Also reports ADWIN state bytes per column.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from river import drift  # noqa: E402

from detectors import ADWIN, PageHinkley  # noqa: E402


def river_run(cls, X: np.ndarray) -> tuple[float, list[list[int]]]:
    t0 = time.perf_counter()
    hits = []
    for c in range(X.shape[1]):
        det = cls()
        col_hits = []
        for i, v in enumerate(X[:, c].tolist()):
            det.update(v)
            if det.drift_detected:
                col_hits.append(i)
        hits.append(col_hits)
    return time.perf_counter() - t0, hits


def ours_run(det, X: np.ndarray, batch: int) -> tuple[float, list[list[int]]]:
    t0 = time.perf_counter()
    masks = [det.update(X[i:i + batch]) for i in range(0, X.shape[0], batch)]
    elapsed = time.perf_counter() - t0
    mask = np.concatenate(masks)
    return elapsed, [np.flatnonzero(mask[:, c]).tolist() for c in range(X.shape[1])]


def detectors(only: str | None) -> list[tuple[str, type, type]]:
    """(name, ours, river's) of the detectors to bench."""
    return [(name, ours, theirs) for name, ours, theirs in
            (("PageHinkley", PageHinkley, drift.PageHinkley), ("ADWIN", ADWIN, drift.ADWIN))
            if only in (None, name)]


def compare(name: str, ours, theirs, X: np.ndarray, batch: int, k: int, repeat: int
            ) -> tuple[float, float, list[list[int]]]:
    """(our values/s, river's values/s, river's detections); exits unless the detections of
    the first k columns are equal. The two alternate, best of `repeat` each (this machine's
    speed drifts between runs)."""
    N, D = X.shape
    t_ours = t_river = float("inf")
    for _ in range(repeat):
        t, hits_ours = ours_run(ours(n_features=D), X, batch)
        t_ours = min(t_ours, t)
        t, hits_river = river_run(theirs, X[:, :k])
        t_river = min(t_river, t)
    if hits_ours[:k] != hits_river:
        raise SystemExit(f"{name}: detections differ from river")
    return N * D / t_ours, N * k / t_river, hits_river


def service_like(args, rng: np.random.Generator) -> None:
    """A model's signals as the service feeds them: 11 columns (10 features and a prediction),
    each shifting at 3 times of its own (so windows restart at different times and differ in
    length), in batches of --service-batch rows (the service's default batch_size)."""
    N, D = 300_000, 11
    X = rng.normal(size=(N, D))
    for j in range(D):
        for cp in rng.integers(0, N, size=3):
            X[cp:, j] += rng.normal(0, 1)
    k = min(args.river_columns, D)
    for name, ours, theirs in detectors(args.only):
        ours_rate, river_rate, _ = compare(name, ours, theirs, X, args.service_batch, k, args.repeat)
        print(f"{name:12s} service-like ({D} columns drifting at their own times, batches of "
              f"{args.service_batch}): ours {ours_rate / 1e6:5.2f} M values/s   river "
              f"{river_rate / 1e6:5.2f} M values/s   ratio {ours_rate / river_rate:5.1f}x   "
              f"detections equal: True")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--river-columns", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--service-batch", type=int, default=2000)
    ap.add_argument("--only", choices=["PageHinkley", "ADWIN"], help="bench one detector")
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    N, D = args.rows, args.features
    X = rng.normal(size=(N, D))
    X[N // 2:] += 1.0
    k = min(args.river_columns, D)
    print(f"rows={N} features={D} batch={args.batch} river columns={k}")
    for name, ours, theirs in detectors(args.only):
        ours_rate, river_rate, hits_river = compare(name, ours, theirs, X, args.batch, k, args.repeat)
        print(f"{name:12s} ours {ours_rate / 1e6:7.2f} M values/s   river {river_rate / 1e6:5.2f} M values/s"
              f"   ratio {ours_rate / river_rate:5.1f}x   detections equal on {k} columns: True"
              f"   (detections per column: {len(hits_river[0])})")
    service_like(args, rng)
    if args.only == "PageHinkley":
        return
    adwin = ADWIN(n_features=1)
    adwin.update(rng.normal(size=(1_000_000, 1)))
    print(f"ADWIN state: {len(adwin.to_bytes())} bytes for 1 column at width {int(adwin.width[0])}")


if __name__ == "__main__":
    main()
