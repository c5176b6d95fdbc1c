"""Values/s of streamdrift's detectors against river's, on the same data, in the same run.

    python bench/detectors.py [--rows 1000000] [--features 64] [--river-columns 4]
                              [--repeat 3] [--only PageHinkley|ADWIN] [--service-batch 2000 5000]

Data: D columns of N(0, 1) with a mean shift of 1 sd halfway (rows), fed in batches.
river's detectors are fed `--river-columns` of the same columns value by value (river is
per value; its rate per value does not depend on D), and the detection indices of those
columns are checked for exact equality. `--repeat` passes, each alternating ours and river's
batch by batch (this machine's speed drifts by tens of percent within a run: both sides see
the same phases); the ratio printed is the median of the passes' ratios, the rates the best.
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


def _river_batch(dets: list, hits: list[list[int]], X: np.ndarray, offset: int) -> None:
    """Feed river's detectors (one per column of X) the rows of X, value by value."""
    for c, det in enumerate(dets):
        col_hits = hits[c]
        for i, v in enumerate(X[:, c].tolist()):
            det.update(v)
            if det.drift_detected:
                col_hits.append(offset + i)


def interleaved(ours, theirs, X: np.ndarray, batch: int, k: int
                ) -> tuple[float, float, list[list[int]], list[list[int]]]:
    """One pass over X in batches, ours and river's alternating batch by batch (so that both
    sample the same phases of this machine, whose speed drifts by tens of percent within a
    run). Returns (our seconds, river's seconds, our detections, river's) per column."""
    N, D = X.shape
    det, dets = ours(n_features=D), [theirs() for _ in range(k)]
    masks, hits_river = [], [[] for _ in range(k)]
    t_ours = t_river = 0.0
    for i in range(0, N, batch):
        t0 = time.perf_counter()
        masks.append(det.update(X[i:i + batch]))
        t1 = time.perf_counter()
        _river_batch(dets, hits_river, X[i:i + batch, :k], i)
        t_ours += t1 - t0
        t_river += time.perf_counter() - t1
    mask = np.concatenate(masks)
    return t_ours, t_river, [np.flatnonzero(mask[:, c]).tolist() for c in range(k)], hits_river


def detectors(only: str | None) -> list[tuple[str, type, type]]:
    """(name, ours, river's) of the detectors to bench."""
    return [(name, ours, theirs) for name, ours, theirs in
            (("PageHinkley", PageHinkley, drift.PageHinkley), ("ADWIN", ADWIN, drift.ADWIN))
            if only in (None, name)]


def compare(name: str, ours, theirs, X: np.ndarray, batch: int, k: int, repeat: int
            ) -> tuple[float, float, float, list[list[int]]]:
    """(our best values/s, river's best values/s, median of the per-pass ratios, river's
    detections); exits unless the detections of the first k columns are equal. Each pass
    interleaves the two batch by batch (see interleaved)."""
    N, D = X.shape
    best_ours = best_river = 0.0
    ratios = []
    for _ in range(repeat):
        t_ours, t_river, hits_ours, hits_river = interleaved(ours, theirs, X, batch, k)
        if hits_ours != hits_river:
            raise SystemExit(f"{name}: detections differ from river")
        ours_rate, river_rate = N * D / t_ours, N * k / t_river
        best_ours, best_river = max(best_ours, ours_rate), max(best_river, river_rate)
        ratios.append(ours_rate / river_rate)
    return best_ours, best_river, float(np.median(ratios)), hits_river


def report(label: str, X: np.ndarray, batch: int, args) -> None:
    """Compare each detector with river's on X in batches of `batch` rows; one line each."""
    k = min(args.river_columns, X.shape[1])
    for name, ours, theirs in detectors(args.only):
        ours_rate, river_rate, ratio, hits_river = compare(name, ours, theirs, X, batch, k,
                                                           args.repeat)
        print(f"{name:12s} {label + ' ' if label else ''}ours {ours_rate / 1e6:6.2f} M values/s   river "
              f"{river_rate / 1e6:5.2f} M values/s   ratio {ratio:5.1f}x   detections equal on "
              f"{k} columns: True   (detections per column: {len(hits_river[0])})")


def service_like(args, rng: np.random.Generator) -> None:
    """A model's signals as the service feeds them: 11 columns (10 features and a prediction),
    each shifting at 3 times of its own (so windows restart at different times and differ in
    length), in batches of each --service-batch rows (default 2000, and 5000: the service's
    batch_size, a model's batch when one model fills it)."""
    N, D = 300_000, 11
    X = rng.normal(size=(N, D))
    for j in range(D):
        for cp in rng.integers(0, N, size=3):
            X[cp:, j] += rng.normal(0, 1)
    for batch in args.service_batch:
        report(f"service-like ({D} columns drifting at their own times, batches of {batch}):",
               X, batch, args)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--features", type=int, default=64)
    ap.add_argument("--river-columns", type=int, default=4)
    ap.add_argument("--batch", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--service-batch", type=int, nargs="+", default=[2000, 5000])
    ap.add_argument("--only", choices=["PageHinkley", "ADWIN"], help="bench one detector")
    args = ap.parse_args()
    rng = np.random.default_rng(42)
    N, D = args.rows, args.features
    X = rng.normal(size=(N, D))
    X[N // 2:] += 1.0
    print(f"rows={N} features={D} batch={args.batch} river columns={min(args.river_columns, D)}")
    report("", X, args.batch, args)
    service_like(args, rng)
    if args.only == "PageHinkley":
        return
    adwin = ADWIN(n_features=1)
    adwin.update(rng.normal(size=(1_000_000, 1)))
    print(f"ADWIN state: {len(adwin.to_bytes())} bytes for 1 column at width {int(adwin.width[0])}")


if __name__ == "__main__":
    main()
