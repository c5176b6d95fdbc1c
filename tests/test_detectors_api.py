"""Detector API: state round-trips, growth, and clear errors for bad arguments and input."""

from __future__ import annotations

import numpy as np
import pytest
from river_oracle import river_mask
from streams import make_stream, with_nans

from detectors import ADWIN, PageHinkley, StateError

DETECTORS = [(ADWIN, "ADWIN", {"clock": 8}), (PageHinkley, "PageHinkley", {"threshold": 10.0})]


@pytest.mark.parametrize("cls,name,params", DETECTORS)
@pytest.mark.parametrize("cut", [0, 1, 700, 1703, 4000])
def test_state_round_trip_continues_exactly(cls, name, params, cut):
    X = with_nans(make_stream("mean_shift", 4000, 3, seed=cut), 0.2, seed=1)
    straight = cls(n_features=3, **params)
    expected = np.concatenate([straight.update(X[:cut]), straight.update(X[cut:])])
    first = cls(n_features=3, **params)
    got_a = first.update(X[:cut])
    blob = first.to_bytes()
    restored = cls.from_bytes(blob)
    got_b = restored.update(X[cut:])
    assert np.array_equal(np.concatenate([got_a, got_b]), expected)
    assert restored.to_bytes() == straight.to_bytes()
    assert np.array_equal(restored.n_detections, straight.n_detections)


def test_detectors_sharing_work_memory_do_not_disturb_each_other():
    """Batches are copied column-major into work memory reused across detectors (per
    thread): interleaved updates of several detectors, batches of different shapes, with and
    without NaN, give what each detector gives alone."""
    streams = [make_stream("mean_shift", 6000, 5, seed=3),
               with_nans(make_stream("variance_jump", 6000, 2, seed=4), 0.3, seed=5),
               make_stream("gradual", 6000, 7, seed=6)]
    makers = [lambda d: ADWIN(n_features=d, clock=8), lambda d: PageHinkley(n_features=d)]
    cuts = [0, 1500, 1501, 4000, 6000]
    alone = [[make(X.shape[1]).update(X) for X in streams] for make in makers]
    dets = [[make(X.shape[1]) for X in streams] for make in makers]
    got = [[[] for _ in streams] for _ in makers]
    for lo, hi in zip(cuts, cuts[1:], strict=False):
        for m in range(len(makers)):
            for s, X in enumerate(streams):
                got[m][s].append(dets[m][s].update(X[lo:hi]))
    for m in range(len(makers)):
        for s in range(len(streams)):
            assert np.array_equal(np.concatenate(got[m][s]), alone[m][s]), (m, s)
            assert alone[m][s].any()


@pytest.mark.parametrize("cls,name,params", DETECTORS)
def test_state_round_trip_right_after_a_detection(cls, name, params):
    X = make_stream("mean_shift", 3000, 1, seed=2)
    probe = cls(n_features=1, **params)
    rows = np.flatnonzero(probe.update(X)[:, 0])
    assert rows.size, "the stream must drift"
    cut = int(rows[0]) + 1   # the batch ends exactly on the detection
    a = cls(n_features=1, **params)
    a.update(X[:cut])
    b = cls.from_bytes(a.to_bytes())
    assert np.array_equal(b.estimation, a.estimation)
    assert np.array_equal(np.flatnonzero(b.update(X[cut:])[:, 0]) + cut, rows[1:])


@pytest.mark.parametrize("cls,name,params", DETECTORS + [
    (PageHinkley, "PageHinkley", {"threshold": 10.0, "alpha": 1.0, "exact": False})])
@pytest.mark.parametrize("after_detection", [False, True])
def test_a_batch_of_only_missing_values_changes_nothing(cls, name, params, after_detection):
    """The pipeline skips the detectors of a model whose batch is all NaN (its signals in
    warm-up); that is exact only because such an update leaves the state as it was, even
    with a detection pending its reset on the last value."""
    X = make_stream("mean_shift", 3000, 2, seed=5)
    rows = np.flatnonzero(cls(n_features=2, **params).update(X).any(axis=1))
    assert rows.size, "the stream must drift"
    cut = int(rows[0]) + 1 if after_detection else 1000
    det = cls(n_features=2, **params)
    det.update(X[:cut])
    before = det.to_bytes()
    assert not det.update(np.full((50, 2), np.nan)).any()
    assert det.to_bytes() == before


@pytest.mark.parametrize("cls,name,params", DETECTORS)
def test_corrupt_or_foreign_bytes_raise_state_error(cls, name, params):
    blob = cls(n_features=2, **params).to_bytes()
    with pytest.raises(StateError, match="checksum"):
        cls.from_bytes(blob[:-5] + bytes([blob[-5] ^ 1]) + blob[-4:])
    with pytest.raises(StateError, match="magic"):
        cls.from_bytes(b"not a state at all")
    with pytest.raises(StateError):
        cls.from_bytes(blob[:20])
    other = PageHinkley if cls is ADWIN else ADWIN
    with pytest.raises(StateError, match="holds a"):
        cls.from_bytes(other(n_features=2).to_bytes())
    with pytest.raises(StateError):
        cls.from_bytes("text")


@pytest.mark.parametrize("cls,name,params", DETECTORS)
def test_add_features_appends_fresh_columns(cls, name, params):
    X = make_stream("mean_shift", 3000, 3, seed=4)
    det = cls(n_features=2, **params)
    m1 = det.update(X[:1000, :2])
    det.add_features(1)
    assert det.n_features == 3
    new_col = X[1000:, 2:3]
    m2 = det.update(X[1000:])
    old_expected, _ = river_mask(name, X[:, :2], **params)
    new_expected, _ = river_mask(name, new_col, **params)
    assert np.array_equal(np.concatenate([m1, m2[:, :2]]), old_expected)
    assert np.array_equal(m2[:, 2:3], new_expected)


@pytest.mark.parametrize("cls,name,params", DETECTORS)
@pytest.mark.parametrize("mid_detection", [False, True])
def test_reset_features_starts_columns_afresh(cls, name, params, mid_detection):
    """A reset column continues as a fresh river detector fed only the values after the
    reset; the other columns are untouched (also right after a detection: no pending reset
    carries over)."""
    X = make_stream("mean_shift", 4000, 3, seed=5)
    det = cls(n_features=3, **params)
    cut = 2000
    if mid_detection:
        full, _ = river_mask(name, X[:, 1:2], **params)
        cut = int(np.flatnonzero(full[:, 0])[0]) + 1          # just after column 1 detected
    m1 = det.update(X[:cut])
    det.reset_features([1])
    m2 = det.update(X[cut:])
    kept, _ = river_mask(name, X[:, [0, 2]], **params)
    fresh, _ = river_mask(name, X[cut:, 1:2], **params)
    assert np.array_equal(np.concatenate([m1, m2])[:, [0, 2]], kept)
    assert np.array_equal(m2[:, 1:2], fresh)


@pytest.mark.parametrize("cls,name,params", DETECTORS)
def test_bad_input_shapes_and_dtypes(cls, name, params):
    det = cls(n_features=2, **params)
    with pytest.raises(ValueError, match="columns"):
        det.update(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="shape"):
        det.update(np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="numeric"):
        det.update(np.array([["a", "b"]]))
    with pytest.raises(ValueError, match="infinite"):
        det.update(np.array([[1.0, np.inf]]))
    assert det.update(np.zeros((0, 2))).shape == (0, 2)
    assert det.update(np.array([[1, 2]], dtype=np.int32)).shape == (1, 2)
    one = cls(n_features=1, **params)
    assert one.update(np.arange(10.0)).shape == (10, 1)


@pytest.mark.parametrize("kwargs,key", [
    ({"n_features": -1}, "n_features"), ({"n_features": 1.5}, "n_features"),
    ({"delta": 0}, "delta"), ({"delta": 2.0}, "delta"), ({"clock": 0}, "clock"),
    ({"max_buckets": 1}, "max_buckets"), ({"min_window_length": 0}, "min_window_length"),
    ({"grace_period": -1}, "grace_period"), ({"clock": True}, "clock"),
])
def test_adwin_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=key):
        ADWIN(**kwargs)


@pytest.mark.parametrize("kwargs,key", [
    ({"min_instances": 0}, "min_instances"), ({"delta": -1.0}, "delta"),
    ({"threshold": 0}, "threshold"), ({"alpha": 1.5}, "alpha"), ({"alpha": float("nan")}, "alpha"),
    ({"mode": "sideways"}, "mode"), ({"n_features": "3"}, "n_features"),
])
def test_page_hinkley_bad_arguments(kwargs, key):
    with pytest.raises(ValueError, match=key):
        PageHinkley(**kwargs)


def test_adwin_state_is_logarithmic_in_window():
    small, large = ADWIN(n_features=1), ADWIN(n_features=1)
    rng = np.random.default_rng(0)
    small.update(rng.normal(size=(10_000, 1)))
    large.update(rng.normal(size=(1_000_000, 1)))
    assert large.width[0] == 1_000_000
    # 100x more values, well under 2x more state
    assert len(large.to_bytes()) < 2 * len(small.to_bytes())


def test_per_column_delta_equals_river_with_that_delta():
    X = make_stream("mean_shift", 3000, 3, seed=8)
    X[:, 2] = make_stream("errors01", 3000, 1, seed=9)[:, 0]
    det = ADWIN(n_features=3)
    det.set_delta(0.3, columns=[1])
    det.set_delta(1e-5, columns=[2])
    assert det.deltas.tolist() == [0.002, 0.3, 1e-5]
    first = det.update(X[:1111])
    mask = np.concatenate([first, ADWIN.from_bytes(det.to_bytes()).update(X[1111:])])
    for j, delta in enumerate([0.002, 0.3, 1e-5]):
        expected, _ = river_mask("ADWIN", X[:, j:j + 1], delta=delta)
        assert np.array_equal(mask[:, j:j + 1], expected), j
    with pytest.raises(ValueError, match="delta"):
        det.set_delta(1.5)
