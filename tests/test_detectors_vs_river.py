"""The vectorized detectors report exactly river's detections (river is the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river_oracle import feed_in_batches, river_mask
from streams import KINDS, make_stream, with_nans

from detectors import ADWIN, PageHinkley

ADWIN_PARAMS = [
    {},
    {"clock": 1, "grace_period": 0, "min_window_length": 1},
    {"clock": 4, "max_buckets": 2},
    {"clock": 7, "max_buckets": 7, "delta": 0.05},
    {"grace_period": 500, "delta": 0.3, "min_window_length": 20},
    {"max_buckets": 3, "delta": 1e-5, "clock": 16},
]
PH_PARAMS = [
    {},
    {"threshold": 5.0, "mode": "up"},
    {"threshold": 5.0, "mode": "down", "min_instances": 1},
    {"threshold": 20.0, "alpha": 1.0, "delta": 0.0},
    {"threshold": 2.0, "alpha": 0.9, "min_instances": 200},
]


def _check(name, cls, X, params, cuts):
    det = cls(n_features=X.shape[1], **params)
    ours = feed_in_batches(det, X, cuts)
    theirs, finals = river_mask(name, X, **params)
    assert np.array_equal(ours, theirs), (
        f"first mismatches (row, col): {np.argwhere(ours != theirs)[:5].tolist()}")
    return det, finals


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p", range(len(ADWIN_PARAMS)))
def test_adwin_equals_river(kind, p):
    params = ADWIN_PARAMS[p]
    X = make_stream(kind, 3000, 3, seed=p)
    if p % 2:
        X = with_nans(X, 0.3, seed=p)
    det, finals = _check("ADWIN", ADWIN, X, params, cuts=[1, 2, 777, 1500])
    assert np.array_equal(det.width, [f.width for f in finals])
    assert np.array_equal(det.estimation, [f.estimation for f in finals])
    assert np.array_equal(det.variance, [f.variance for f in finals])
    assert np.array_equal(det.total, [f.total for f in finals])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("p", range(len(PH_PARAMS)))
def test_page_hinkley_equals_river(kind, p):
    params = PH_PARAMS[p]
    X = make_stream(kind, 3000, 3, seed=10 + p)
    if p % 2 == 0:
        X = with_nans(X, 0.3, seed=p)
    det, finals = _check("PageHinkley", PageHinkley, X, params, cuts=[1, 5, 1333, 2999])
    assert np.array_equal(det.estimation, [f._x_mean.get() for f in finals])
    assert np.array_equal(det.sum_increase, [f._sum_increase for f in finals])
    assert np.array_equal(det.sum_decrease, [f._sum_decrease for f in finals])


@pytest.mark.parametrize("batch", [1, 3, 17, 640, 5000])
def test_batch_size_does_not_change_detections(batch):
    X = make_stream("mean_shift", 5000, 2, seed=3)
    X = np.concatenate([X, make_stream("errors01", 5000, 2, seed=4)])
    for name, cls, params in (("ADWIN", ADWIN, {"clock": 8}), ("PageHinkley", PageHinkley, {})):
        if batch == 1 and name == "ADWIN":
            X_used = X[:1500]   # batch 1 is slow by design (one call per row); keep it short
        else:
            X_used = X
        _check(name, cls, X_used, params, cuts=list(range(batch, X_used.shape[0], batch)))


def test_many_detections_dense_stream():
    """A stream that drifts all the time exercises the restart paths (in-block re-runs)."""
    rng = np.random.default_rng(5)
    X = np.cumsum(rng.normal(0, 1, (20000, 4)), axis=0)
    X[:, 3] = np.repeat(rng.normal(0, 50, 400), 50)   # jumps every 50 values
    _, _ = _check("PageHinkley", PageHinkley, X, {"threshold": 3.0, "min_instances": 2}, cuts=[10000])
    _check("ADWIN", ADWIN, X, {"clock": 2, "grace_period": 5}, cuts=[7, 10000])


def test_wide_batch_matches_river_per_column():
    X = make_stream("mean_shift", 2000, 40, seed=9)
    X = with_nans(X, 0.1, seed=9)
    _check("ADWIN", ADWIN, X, {}, cuts=[999])
    _check("PageHinkley", PageHinkley, X, {"threshold": 10.0}, cuts=[999])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 1500),
    d=st.integers(1, 3),
    scale=st.sampled_from([1e-3, 1.0, 50.0, 1e6]),
    nan_fraction=st.sampled_from([0.0, 0.3]),
    n_cuts=st.integers(0, 4),
    clock=st.sampled_from([1, 3, 32]),
    max_buckets=st.integers(2, 7),
)
def test_adwin_property_random_streams_and_splits(seed, n, d, scale, nan_fraction, n_cuts, clock,
                                                  max_buckets):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, scale, (n, d)) + np.where(np.arange(n) >= rng.integers(0, n + 1), scale, 0)[:, None]
    X = with_nans(X, nan_fraction, seed)
    cuts = rng.integers(0, n + 1, n_cuts).tolist()
    _check("ADWIN", ADWIN, X, {"clock": clock, "max_buckets": max_buckets, "grace_period": 5}, cuts)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(1, 1500),
    d=st.integers(1, 3),
    threshold=st.sampled_from([0.5, 3.0, 50.0]),
    mode=st.sampled_from(["up", "down", "both"]),
    nan_fraction=st.sampled_from([0.0, 0.3]),
    n_cuts=st.integers(0, 4),
    min_instances=st.integers(1, 40),
)
def test_page_hinkley_property_random_streams_and_splits(seed, n, d, threshold, mode, nan_fraction,
                                                         n_cuts, min_instances):
    rng = np.random.default_rng(seed)
    X = np.cumsum(rng.normal(0, 1, (n, d)), axis=0) if seed % 2 else rng.normal(0, 3, (n, d))
    X = with_nans(X, nan_fraction, seed)
    cuts = rng.integers(0, n + 1, n_cuts).tolist()
    _check("PageHinkley", PageHinkley, X,
           {"threshold": threshold, "mode": mode, "min_instances": min_instances}, cuts)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("params", [{}, {"alpha": 1.0, "delta": 0.25}, {"threshold": 5.0, "mode": "up"},
                                    {"alpha": 0.9, "threshold": 3.0},
                                    {"alpha": 0.1, "threshold": 2.0}])  # row loop fallback
def test_page_hinkley_closed_form_agrees_with_river(kind, params):
    """exact=False rounds differently, yet finds the same detections on these streams."""
    X = with_nans(make_stream(kind, 4000, 3, seed=21), 0.2, seed=22)
    det, _ = _check("PageHinkley", lambda n_features, **kw: PageHinkley(n_features, exact=False, **kw),
                    X, params, cuts=[100, 2500])
    assert PageHinkley.from_bytes(det.to_bytes()).exact is False


def test_page_hinkley_closed_form_blocks_shrink_where_detections_waste_them(monkeypatch):
    """On noise that river's defaults detect every few hundred values, closed-form blocks of
    4096 rows would be mostly thrown away after detections: they must shrink (the detections
    are checked against river on 2 columns)."""
    import detectors.page_hinkley as ph

    lengths: list[int] = []
    run_block = ph.PageHinkley._run_block

    def spy(self, cols, values, start, take):
        lengths.append(int(take.max()))
        return run_block(self, cols, values, start, take)

    monkeypatch.setattr(ph.PageHinkley, "_run_block", spy)
    X = np.random.default_rng(5).normal(0, 3, (40_000, 16))
    _check("PageHinkley", lambda n_features, **kw: PageHinkley(n_features, exact=False, **kw),
           X[:, :2], {}, cuts=[])
    lengths.clear()
    det = PageHinkley(16, exact=False)
    det.update(X)
    assert det.n_detections.min() >= 20                       # the stream detects often
    assert lengths[0] == 4096 and np.median(lengths) <= 1024   # and the blocks followed


@pytest.mark.parametrize("params", [{}, {"clock": 4, "max_buckets": 2, "delta": 0.1},
                                    {"clock": 1, "max_buckets": 3, "delta": 0.5}])
def test_adwin_window_right_after_each_detection_equals_river(params):
    """At a detection river deletes buckets and rescans until no cut passes; the window it
    keeps (width, total, variance) is what ours reports right after that value."""
    from river import drift

    rng = np.random.default_rng(3)
    x = np.concatenate([rng.normal(0, 1, 1500), rng.normal(3, 1, 800), rng.normal(0, 3, 1500),
                        rng.normal(-3, 1, 600)])
    theirs, ours = drift.ADWIN(**params), ADWIN(n_features=1, **params)
    detections = 0
    for v in x.tolist():
        theirs.update(v)
        assert bool(ours.update(np.array([[v]]))[0, 0]) == theirs.drift_detected
        if theirs.drift_detected:
            detections += 1
            assert (ours.width[0], ours.total[0], ours.variance[0]) == \
                (theirs.width, theirs.total, theirs.variance)
    assert detections >= 3


def test_adwin_long_windows_equal_river():
    """Windows far past one chunk (16384 values) and several blocks of tests per chunk."""
    X = make_stream("mean_shift", 60_000, 2, seed=11)
    X[45_000:, 1] += 0.3                       # a small late shift: detected on a long window
    _check("ADWIN", ADWIN, X, {}, cuts=[5, 20_000, 40_001])


def test_adwin_many_columns_split_into_groups_equal_river():
    """40 columns advance as groups (up to 16 a group); columns leave a group when they
    detect, at different times, and regroup later: every column still equals river's."""
    rng = np.random.default_rng(21)
    X = rng.normal(size=(6000, 40))
    for j in range(40):
        X[1000 + 100 * j:, j] += 2.0           # each column shifts at its own time
    X[::7, 5] = np.nan                          # one column with gaps: its own schedule
    _check("ADWIN", ADWIN, X, {"clock": 16}, cuts=[700, 3001, 3002, 5000])


@pytest.mark.parametrize("params", [{}, {"clock": 1, "max_buckets": 2}, {"clock": 4},
                                    {"grace_period": 100, "min_window_length": 20}])
def test_adwin_columns_with_unequal_windows_advanced_together_equal_river(params, monkeypatch):
    """Columns whose windows differ in length (each drifted at its own times, some with gaps)
    advance together in short steps; every column, and its window after the last batch,
    still equals river's."""
    rng = np.random.default_rng(len(params))
    X = rng.normal(size=(8000, 13))
    for j in range(13):
        for cp in rng.integers(0, 8000, size=3):
            X[cp:, j] += rng.normal(0, 2)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, :4] = np.where(np.isnan(X[:, :4]), 0.0, X[:, :4])   # 4 columns without gaps
    unequal = []
    advance = ADWIN._advance

    def spy(self, cols, Xc):
        unequal.append(len({c.n for c in cols}) > 1)
        return advance(self, cols, Xc)

    monkeypatch.setattr(ADWIN, "_advance", spy)
    det, finals = _check("ADWIN", ADWIN, X, params, cuts=list(range(500, 8000, 500)) + [777, 3333])
    assert any(unequal)                        # the case under test did happen
    assert np.array_equal(det.width, [f.width for f in finals])
    assert np.array_equal(det.variance, [f.variance for f in finals])
    assert np.array_equal(det.total, [f.total for f in finals])


def test_adwin_unequal_windows_group_over_a_batch_longer_than_a_mixed_step_equal_river(monkeypatch):
    """A batch longer than a mixed step (the service's batches of 5000 rows): columns whose
    windows differ go through its rest in two halves, together rather than one by one; every
    column, and its window after the last batch, still equals river's."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(48_000, 11))
    for j in range(11):
        X[int(rng.integers(0, 40_000)):, j] += rng.normal(0, 1.5)   # each at its own time
    grouped = []
    advance = ADWIN._advance

    def spy(self, cols, Xc):
        if len({c.n for c in cols}) > 1:
            grouped.append(Xc.shape[1])
        return advance(self, cols, Xc)

    monkeypatch.setattr(ADWIN, "_advance", spy)
    det, finals = _check("ADWIN", ADWIN, X, {}, cuts=list(range(6000, 48_000, 6000)))
    assert 3000 in grouped                  # a batch of 6000 in halves, unequal columns together
    assert np.array_equal(det.width, [f.width for f in finals])
    assert np.array_equal(det.variance, [f.variance for f in finals])
    assert np.array_equal(det.total, [f.total for f in finals])


def _ragged_batches(rng, detectors, max_rows: int, shift: float) -> list[np.ndarray]:
    """One batch per detector: random lengths (0 included), every other column shifted by
    `shift` now and then, 5% gaps."""
    batches = []
    for det in detectors:
        X = rng.normal(size=(int(rng.integers(0, max_rows)), det.n_features))
        X[:, ::2] += rng.choice([0.0, shift])
        X[rng.random(X.shape) < 0.05] = np.nan
        batches.append(X)
    return batches


def test_adwin_update_many_equals_separate_updates():
    """Detectors advanced together (one per model in the service) give each one's own masks
    and states, whatever their widths, deltas, batch lengths, gaps and detections; a detector
    with other parameters is simply updated on its own."""
    rng = np.random.default_rng(3)
    shapes = [3, 1, 11, 11, 5, 2]
    together = [ADWIN(d, delta=0.01) for d in shapes] + [ADWIN(2, clock=8)]
    alone = [ADWIN(d, delta=0.01) for d in shapes] + [ADWIN(2, clock=8)]
    for det in (together[3], alone[3]):
        det.set_delta(0.002, [0, 4, 7])
    for _ in range(40):
        batches = _ragged_batches(rng, alone, 300, 3.0)
        for mask, det, X in zip(ADWIN.update_many(together, batches), alone, batches, strict=True):
            assert np.array_equal(mask, det.update(X))
    assert sum(int(d.n_detections.sum()) for d in alone) > 20
    for a, b in zip(together, alone, strict=True):           # (their chunk schedules may differ)
        for prop in ("width", "total", "variance", "n_detections"):
            assert np.array_equal(getattr(a, prop), getattr(b, prop)), prop
    with pytest.raises(ValueError, match="2 detectors but 1 batches"):
        ADWIN.update_many(together[:2], batches[:1])


@pytest.mark.parametrize("params", [{}, {"alpha": 1.0, "delta": 0.25, "threshold": 20.0},
                                    {"mode": "down", "threshold": 5.0, "exact": True}])
@pytest.mark.parametrize("fuse_values", [None, 600])
def test_page_hinkley_update_many_equals_separate_updates(params, fuse_values, monkeypatch):
    """Detectors of equal parameters advanced together as one (in chunks of similar batch
    lengths when padding them all would be large): each one's own masks and states, whatever
    their widths, batch lengths and gaps; others on their own."""
    from detectors import page_hinkley

    if fuse_values:                            # small chunks, by values and by columns
        monkeypatch.setattr(page_hinkley, "_FUSE_VALUES", fuse_values)
        monkeypatch.setattr(page_hinkley, "_FUSE_COLUMNS_EXACT", 12)
    rng = np.random.default_rng(4)
    shapes = [3, 1, 11, 0, 11, 5]
    together = [PageHinkley(d, **params) for d in shapes] + [PageHinkley(2, threshold=7.0)]
    alone = [PageHinkley(d, **params) for d in shapes] + [PageHinkley(2, threshold=7.0)]
    for _ in range(30):
        batches = _ragged_batches(rng, alone, 400, 2.0)
        for mask, det, X in zip(PageHinkley.update_many(together, batches), alone, batches,
                                strict=True):
            assert np.array_equal(mask, det.update(X))
    assert sum(int(d.n_detections.sum()) for d in alone) > 20
    for a, b in zip(together, alone, strict=True):
        assert a.to_bytes() == b.to_bytes()
