"""The joint distribution of a model's numeric features: the PCA reconstruction error
(signal ``multivariate:reconstruction``)."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from quality_streams import replay, stable_kinds, table

from stream.app.profile import profile
from stream.config import load_settings
from stream.monitor.multivariate import SIGNAL, Reconstruction, errors, fit
from stream.pipeline import Pipeline
from stream.types import Message

N, AT = 80_000, 40_000


def flipped(n: int = N, at: int = AT, seed: int = 0) -> np.ndarray:
    """f0 and f1 correlated +0.8, from row ``at`` on -0.8 (each N(0, 1) throughout), and three
    independent features."""
    rng = np.random.default_rng(seed)
    cov = lambda r: [[1, r], [r, 1]]                                       # noqa: E731
    pair = np.concatenate([rng.multivariate_normal([0, 0], cov(0.8), at),
                           rng.multivariate_normal([0, 0], cov(-0.8), n - at)])
    return np.column_stack([pair * 5 + 100, rng.normal(0, 1, (n, 3))])


def test_a_correlation_that_flips_is_found_by_the_joint_signal_only():
    alerts = replay(table(flipped()))
    assert [(a["status"], a["signal"], a["kind"]) for a in alerts] == [("firing", SIGNAL, "data_drift")]
    a = alerts[0]
    assert AT <= a["at"]["offset"] < AT + 1000
    assert a["stats"]["mean_after"] > a["stats"]["mean_before"]          # the error grew
    assert set(a["stats"]["features"][:2]) == {"f0", "f1"}                # named: the pair that broke


def test_marginals_alone_cannot_see_it():
    """The same stream, the joint signal off: nothing (the flip is invisible feature by feature)."""
    off = load_settings(env={}, overrides={"multivariate.enabled": False})
    assert replay(table(flipped()), settings=off) == []


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stable_streams_of_every_shape_are_quiet(seed):
    """Heavy tails, counts, rare flags, spikes, and missing values (each feature null 10% of
    the time, independently): the joint error is watched and stays quiet."""
    kinds = stable_kinds(N, seed)
    X = np.column_stack(list(kinds.values()))
    rng = np.random.default_rng(seed)
    X[rng.random(X.shape) < 0.1] = np.nan
    pipeline = Pipeline(load_settings(env={}))
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(table(X, list(kinds)))]
    alerts = []
    for s in range(0, len(msgs), 5000):
        alerts += pipeline.process(msgs[s:s + 5000]).alerts
    assert alerts == []
    mon = pipeline.models["m"]
    assert mon.reconstruction.fitted and len(mon.reconstruction.features) == len(kinds)
    assert mon.signals.n[mon.signals.index[SIGNAL]] >= mon.signals.warmup      # warm, judged


def test_a_feature_that_goes_missing_is_one_data_quality_page():
    """Imputed with its mean, a feature gone null moves the joint error too; the data-quality
    fault explains it: one alert, the fault's."""
    X = flipped(at=N)                                       # (no flip: the correlation holds)
    X[AT:, 0] = np.nan
    alerts = replay(table(X))
    assert [(a["kind"], a.get("check"), a["signal"]) for a in alerts] == \
        [("data_quality", "missing", "feature:f0")]


def test_the_training_profile_gives_the_axes_from_the_first_event(tmp_path):
    """A profile of training rows (correlation +0.8) holds the PCA: production whose
    correlation is -0.8 from its first event is found (no warm-up could see it)."""
    train = tmp_path / "train.jsonl"
    train.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in table(flipped(20_000, 20_000, seed=1))))
    profiles, bad = profile(load_settings(env={}), [str(train)])
    assert bad == 0 and profiles.of("m").multivariate["features"] == ["f0", "f1", "f2", "f3", "f4"]
    assert SIGNAL in profiles.of("m").signals
    pipeline = Pipeline(load_settings(env={}), profiles=profiles)
    prod = table(flipped(20_000, 0, seed=2))
    alerts = pipeline.process([Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(prod)]).alerts
    assert [(a["signal"], a["detector"], a["stats"]["reference"]) for a in alerts] == \
        [(SIGNAL, "reference", "profile")]


def test_reconstruction_error_is_the_residual_norm_off_the_kept_components():
    rng = np.random.default_rng(5)
    latent = rng.normal(0, 1, (5000, 1))
    Z = np.column_stack([latent, latent, rng.normal(0, 0.1, (5000, 1))])
    W = fit((Z - Z.mean(0)) / Z.std(0), 0.65)
    assert W.shape == (3, 1)                                   # one axis explains 2/3 and more
    z = np.array([[1.0, -1.0, 0.0]])                           # against the axis: all residual
    assert errors(z, W)[0] == pytest.approx(np.sqrt(2), rel=0.02)
    rec = Reconstruction(10, 0.65, clip_z=8.0)
    rec.use(["a", "b"], np.zeros(2), np.ones(2), np.array([[1.0], [0.0]]))
    assert rec.standardized(np.array([[np.nan, 1e300]])).tolist() == [[0.0, 8.0]]   # missing: mean


@pytest.mark.parametrize("features, axes", [(3, 1), (17, 3), (64, 32), (100, 100)])
def test_a_rows_error_does_not_depend_on_the_rows_computed_with_it(features, axes):
    """BLAS sums a product's terms in an order that depends on the matrix's shape and a row's
    place in it; on the grid every sum is exact, so batches of 1 to 333 rows give each row's
    error to the last bit, within 1e-3 sd of the unrounded one."""
    rng = np.random.default_rng(features)
    Z = np.clip(rng.standard_t(2, (2000, features)), -5.0, 5.0)
    W = np.linalg.qr(rng.normal(size=(features, axes)))[0]
    whole = errors(Z, W)
    for rows in (1, 2, 13, 333):
        assert np.array_equal(np.concatenate([errors(Z[i:i + rows], W) for i in range(0, 2000, rows)]), whole)
    R = Z - (Z @ W) @ W.T
    assert np.allclose(whole, np.sqrt((R * R).sum(axis=1)), atol=1e-3)
