"""Acceptance on real data: river's NASA shuttle data set, default configuration.

An i.i.d. resampled stream of 100k rows raises no alert; the same data with the class mix
changed halfway raises data_drift on every feature whose mean moved by >= 0.5 sd, within 10k
events of the change, and nothing before it.
"""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from river import datasets

from stream.config import load_settings
from stream.ingest.rows import Message
from stream.pipeline import Pipeline

N = 100_000


@pytest.fixture(scope="module")
def shuttle():
    rows = list(datasets.Shuttle())
    X = np.array([[x[f"f{i}"] for i in range(1, 10)] for x, _ in rows], dtype=float)
    y = np.array([c for _, c in rows])
    return X, y


def replay_rows(X: np.ndarray, idx: np.ndarray) -> list[dict]:
    msgs = [Message(orjson.dumps({"model": "shuttle", "ts": 1.7e9 + i,
                                  "features": {f"f{k + 1}": float(X[j, k]) for k in range(9)}}),
                    "shuttle", 0, i, 0.0) for i, j in enumerate(idx.tolist())]
    pipeline = Pipeline(load_settings(env={}))
    alerts = []
    for s in range(0, len(msgs), 5000):
        alerts += pipeline.process(msgs[s:s + 5000]).alerts
    return alerts


@pytest.mark.parametrize("seed", [0, 1])
def test_iid_resample_raises_nothing(shuttle, seed):
    X, _ = shuttle
    idx = np.random.default_rng(seed).integers(0, len(X), N)
    assert replay_rows(X, idx) == []


def test_class_mix_change_is_found_on_the_moved_features(shuttle):
    X, y = shuttle
    rng = np.random.default_rng(7)
    weights = np.where(y == 0, 0.3, 3.0)
    idx = np.concatenate([rng.integers(0, len(X), N // 2),
                          rng.choice(len(X), N // 2, p=weights / weights.sum())])
    before, after = X[idx[: N // 2]], X[idx[N // 2:]]
    moved = np.abs(after.mean(0) - before.mean(0)) / before.std(0) >= 0.5
    assert moved.sum() >= 3
    alerts = replay_rows(X, idx)
    assert alerts and all(a["at"]["offset"] >= N // 2 for a in alerts)
    assert {a["kind"] for a in alerts} == {"data_drift"}
    first = {}
    for a in alerts:
        first.setdefault(a["signal"], a["at"]["offset"])
    for k in np.flatnonzero(moved):
        sig = f"feature:f{k + 1}"
        assert sig in first, f"{sig} moved {moved} but raised nothing"
        assert first[sig] < N // 2 + 10_000
