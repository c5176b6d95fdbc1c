"""Data-quality checks in replay: each fault from event 40,000 of 80k events of one model (the
NASA shuttle table resampled: 9 integer features, mostly 0 with rare huge values, plus a
categorical `channel`); the same stream without faults, and with natural missingness, raises
nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from quality_streams import T0, replay, table
from river import datasets

from stream.config import ModelQualitySettings, ModelSettings, load_settings
from stream.pipeline import Pipeline
from stream.state import dump_model, load_model

N, AT = 80_000, 40_000


@pytest.fixture(scope="module")
def base():
    rows = list(datasets.Shuttle())
    X = np.array([[x[f"f{i}"] for i in range(1, 10)] for x, _ in rows], dtype=float)
    rng = np.random.default_rng(0)
    channel = rng.choice(["web", "app", "store"], N, p=[0.5, 0.3, 0.2]).astype(object)
    return X[rng.integers(0, len(X), N)], channel


def events(M, channel):
    return table(M, cats={"channel": channel})


def checks(alerts):
    """The alerts of the per-feature signals and checks (a feature's fault also moves the
    joint reconstruction error: that signal is tested in test_multivariate)."""
    return [(a["status"], a["kind"], a.get("check"), a["signal"]) for a in alerts
            if a["signal"] != "multivariate:reconstruction"]


def test_no_fault_and_natural_missingness_raise_nothing(base):
    M, channel = base
    assert replay(events(M, channel)) == []
    rng = np.random.default_rng(1)
    M = M.copy()
    M[rng.random(N) < 0.10, 0] = np.nan                     # null in 10% of events all along
    evs = events(M, channel)
    for i in np.flatnonzero(rng.random(N) < 0.05):          # absent in 5% all along
        del evs[i]["features"]["f2"]
    assert replay(evs) == []


@pytest.mark.parametrize("fault", ["null", "absent", "half_null", "categorical_null"])
def test_missing_values_alert(base, fault):
    M, channel = base
    M, channel = M.copy(), channel.copy()
    if fault == "null":
        M[AT:, 2] = np.nan
    elif fault == "half_null":
        M[AT:, 2][np.random.default_rng(2).random(N - AT) < 0.5] = np.nan
    elif fault == "categorical_null":
        channel[AT:] = None
    evs = events(M, channel)
    if fault == "absent":
        for e in evs[AT:]:
            del e["features"]["f3"]
    alerts = replay(evs)
    feature = {"null": "f2", "absent": "f3", "half_null": "f2", "categorical_null": "channel"}[fault]
    assert checks(alerts) == [("firing", "data_quality", "missing", f"feature:{feature}")]
    a = alerts[0]
    assert AT <= a["at"]["offset"] < AT + 1000
    assert a["stats"]["missing_rate_before"] == 0.0
    assert a["stats"]["missing_rate_after"] > (0.35 if fault == "half_null" else 0.99)


@pytest.mark.parametrize("fault", ["missing", "type"])
@pytest.mark.parametrize("batch", [5000, 333])
def test_a_burst_shorter_than_a_candidate_s_wait_fires_and_resolves(base, fault, batch):
    """50 events in a row with f2 null (or a string), then f2 as before: fewer than the
    values a change point waits for, all in one block of the check. That block is itself the
    evidence: one episode, firing at its last value (since its first), resolved after, the
    same whatever the batches."""
    M, channel = base
    M = M.copy()
    if fault == "missing":
        M[AT + 20:AT + 70, 2] = np.nan
    evs = events(M, channel)
    if fault == "type":
        for e in evs[AT + 20:AT + 70]:
            e["features"]["f2"] = "n/a"
    alerts = replay(evs, batch=batch)
    assert checks(alerts) == [("firing", "data_quality", fault, "feature:f2"),
                              ("resolved", "data_quality", fault, "feature:f2")]
    fired, resolved = alerts
    assert fired["at"]["offset"] == AT + 99 and fired["stats"]["since_ts"] == T0 + AT     # (1 s apart)
    assert fired["stats"]["n_after"] == 100 and AT + 100 < resolved["at"]["offset"] < AT + 1000


def test_a_numeric_feature_arriving_as_strings_is_one_type_alert(base):
    M, channel = base
    evs = events(M, channel)
    for e in evs[AT:]:
        e["features"]["f7"] = str(e["features"]["f7"])
    alerts = replay(evs)
    assert checks(alerts) == [("firing", "data_quality", "type", "feature:f7")]
    stats = alerts[0]["stats"]
    assert stats["type_expected"] == "number" and stats["mismatch_rate_after"] == 1.0


def test_a_frozen_feature_is_stuck(base):
    M, channel = base
    M = M.copy()
    M[AT:, 4] = M[AT, 4]
    alerts = [a for a in replay(events(M, channel)) if a.get("check")]
    assert checks(alerts) == [("firing", "data_quality", "stuck", "feature:f4")]
    assert alerts[0]["stats"]["value"] == M[AT, 4] and alerts[0]["stats"]["repeat_rate_after"] == 1.0


@pytest.mark.parametrize("factor", [3.0, 1 / 3])
def test_a_spread_change_around_the_same_mean_is_data_drift(factor):
    rng = np.random.default_rng(3)
    M = rng.normal(50, 10, (N, 3))
    M[AT:, 1] = 50 + (M[AT:, 1] - 50) * factor
    alerts = replay(table(M))
    assert checks(alerts) == [("firing", "data_drift", "spread", "feature:f1")]
    a = next(a for a in alerts if a.get("check") == "spread")
    stats = a["stats"]
    assert AT <= a["at"]["offset"] < AT + 1500
    assert 0.6 < stats["sd_after"] / stats["sd_before"] / factor < 1.6


def test_a_spread_that_returns_resolves():
    rng = np.random.default_rng(4)
    M = rng.normal(0, 1, (N, 2))
    M[AT:60_000, 0] *= 3
    assert [(a["status"], a.get("check")) for a in replay(table(M))] == [("firing", "spread"),
                                                                         ("resolved", "spread")]


@pytest.mark.parametrize("seed", range(6))
def test_a_transient_fault_resolves_soon_after_it_ends(seed):
    """150 to 900 events null in a feature null 30% of the time: the first block back within
    its reference is the return, and the values after it (not the next block's alone) are
    judged: resolved within 400 events of the end."""
    rng = np.random.default_rng(seed)
    M = rng.normal(0, 1, (12_000, 2))
    end = 4000 + int(rng.integers(150, 900))
    M[rng.random(12_000) < 0.3, 1] = np.nan
    M[4000:end, 1] = np.nan
    alerts = [a for a in replay(table(M)) if a.get("check")]
    assert [(a["status"], a["check"]) for a in alerts] == [("firing", "missing"), ("resolved", "missing")]
    assert end < alerts[1]["at"]["offset"] < end + 400


def test_the_spread_check_is_the_same_whatever_the_batches():
    """The spread's scale is learned from the first pairs; the pairs after them count from
    the next pair on, not from the next batch (that moved its blocks with the batch cuts)."""
    rng = np.random.default_rng(6)
    M = rng.normal(0, 1, (30_000, 2))
    M[20_000:, 0] *= 3
    evs = table(M)
    straight = replay(evs)
    assert [(a["status"], a.get("check")) for a in straight] == [("firing", "spread")]
    for batch in (333, 4096):
        assert replay(evs, batch=batch) == straight


def test_a_drifted_check_is_judged_the_same_whatever_the_batches():
    """A feature null 20% of the time with outages of 300 to 3,000 events: each fires and
    resolves. A drifted check's blocks before a return are judged in one step (many in a large
    batch, one in a batch shorter than a block); a resolution inside a block leaves its last
    value to be judged as a stable signal's."""
    rng = np.random.default_rng(0)
    M = rng.normal(0, 1, (30_000, 2))
    M[rng.random(30_000) < 0.2, 0] = np.nan
    for start in (3000, 9000, 16_000, 24_000):
        M[start:start + int(rng.integers(300, 3000)), 0] = np.nan
    evs = table(M)
    straight = replay(evs)
    episode = [("firing", "missing"), ("resolved", "missing")]
    assert [(a["status"], a.get("check")) for a in straight] == episode * 4
    for batch in (37, 50_000):
        assert replay(evs, batch=batch) == straight


def test_a_new_feature_is_reported_once_as_info(base):
    M, channel = base
    evs = events(M, channel)
    for e in evs[AT:]:
        e["features"]["fresh"] = 1.5
    alerts = replay(evs)
    assert checks(alerts) == [("firing", "data_quality", "new_feature", "feature:fresh")]
    assert alerts[0]["severity"] == "info" and alerts[0]["at"]["offset"] == AT


def test_checks_switch_off_per_model_and_globally(base):
    M, channel = base
    M = M.copy()
    M[AT:, 2] = np.nan
    M[AT:, 4] = M[AT, 4]
    settings = load_settings(env={})
    own = ModelSettings(quality=ModelQualitySettings(missing=False))
    off = dataclasses.replace(settings, models={"m": own})
    assert {a.get("check") for a in replay(events(M, channel), settings=off)} == {"stuck", None}
    none = load_settings(env={}, overrides={"quality.enabled": False})
    assert {a.get("check") for a in replay(events(M, channel), settings=none)} == {None}


def test_checks_are_exact_across_a_restore_and_any_batch_size(base):
    M, channel = base
    M = M.copy()
    M[AT:, 2] = np.nan
    M[AT + 10_000:, 4] = 7.0
    evs = events(M, channel)
    straight = replay(evs)
    assert {a.get("check") for a in straight} >= {"missing", "stuck"}
    for batch in (777, 4096):
        assert replay(evs, batch=batch) == straight
    import orjson

    from stream.types import Message

    settings = load_settings(env={})
    pipeline, alerts = Pipeline(settings), []
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(evs)]
    for k, s in enumerate(range(0, N, 5000)):
        alerts += pipeline.process(msgs[s:s + 5000]).alerts
        if k % 4 == 3:                                   # a restart from the checkpoint
            again = Pipeline(settings)
            load_model(again, dump_model(pipeline, "m"))
            pipeline = again
    assert alerts == straight
