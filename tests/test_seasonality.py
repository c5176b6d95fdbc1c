"""Seasonality: a declared daily cycle raises nothing; a level shift on top of it does."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from stream.config import ConfigError, load_settings, parse_duration
from stream.ingest.rows import Message
from stream.pipeline import Pipeline

DAY = 86400.0
STEP = 300.0                                   # an event every 5 minutes: 288 a day

CONFIG = """
[models.grid.seasonality]
period = "1d"
bins = 24
features = ["load"]
"""


def grid_stream(days: int, shift_at_day: float | None, seed: int = 0) -> list[Message]:
    rng = np.random.default_rng(seed)
    t = np.arange(0, days * DAY, STEP)
    load = 100 + 3.0 * 10 * np.sin(2 * np.pi * t / DAY) + rng.normal(0, 10, t.size)   # 3-sd cycle
    if shift_at_day is not None:
        load[t >= shift_at_day * DAY] += 10.0                                         # 1-sd shift
    other = rng.normal(0, 1, t.size)
    return [Message(orjson.dumps({"model": "grid", "ts": float(ts), "features": {"load": float(v),
                                  "temp": float(o)}}), "events", 0, i, 0.0)
            for i, (ts, v, o) in enumerate(zip(t, load, other, strict=True))]


def run(msgs, settings, every: bool = False):
    """The firing alerts of the messages through one pipeline (``every``: all alerts)."""
    pipeline = Pipeline(settings, label_topics={"labels"})
    alerts = []
    for s in range(0, len(msgs), 500):
        alerts += pipeline.process(msgs[s:s + 500]).alerts
    return alerts if every else [a for a in alerts if a["status"] == "firing"]


@pytest.fixture
def seasonal(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG)
    return load_settings(cfg, env={})


def test_daily_cycle_without_change_raises_nothing(seasonal):
    assert run(grid_stream(20, None), seasonal) == []


def test_level_shift_on_top_of_the_cycle_is_found_within_a_day(seasonal):
    alerts = run(grid_stream(20, 10.0, seed=1), seasonal)
    load = [a for a in alerts if a["signal"] == "feature:load"]
    assert load, alerts
    assert all(a["signal"] == "feature:load" for a in alerts)
    assert 10 * DAY <= load[0]["at"]["ts"] < 11 * DAY


def test_without_the_declaration_the_cycle_pages_nobody_but_hides_the_shift():
    """Why the declaration matters: the same cycle, not declared, is a dependent signal (its
    warm-up's autocorrelation time is ~77 values): it pages nobody, but its 3.5-day warm-up
    knows its mean only to ~0.3 sd, so the shift on top of it (0.4 of its sd) is not found."""
    settings = load_settings(env={})
    assert run(grid_stream(20, None), settings) == []
    assert run(grid_stream(20, 10.0, seed=1), settings) == []


def scored_stream(per_day: int, days: int, seed: int,
                  score_shift_at_day: float | None = None, traffic: float = 0.0,
                  start_hour: float = 0.0) -> list[Message]:
    """A model whose inputs cycle daily (additive, multiplicative, counts) and whose score is
    computed from them, so it cycles too; from ``score_shift_at_day`` on the score's logit is
    1 higher (the model changed, its inputs did not). ``traffic``: the events' rate follows
    the hour too (``1 + traffic * sin``, ``per_day`` on average), from ``start_hour`` on."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    t = np.sort(rng.uniform(0, days * DAY, int(n * (1 + traffic))))
    t = t[rng.random(t.size) < (1 + traffic * np.sin(2 * np.pi * t / DAY)) / (1 + traffic)]
    t = t[(t >= start_hour * 3600) & (t < days * DAY)]
    n = t.size
    phase = 2 * np.pi * t / DAY
    load = 2 * np.sin(phase) + rng.normal(size=n)
    mult = np.exp(0.8 * np.sin(phase + 1) + 0.5 * rng.normal(size=n))
    count = rng.poisson(5 + 4 * np.sin(phase))
    logit = 0.5 * load + rng.normal(size=n)
    if score_shift_at_day is not None:
        logit[t >= score_shift_at_day * DAY] += 1.0
    score = 1 / (1 + np.exp(-logit))
    return [Message(orjson.dumps({"model": "grid", "ts": float(t[i]), "prediction": float(score[i]),
                                  "features": {"load": float(load[i]), "mult": float(mult[i]),
                                               "count": int(count[i])}}), "events", 0, i, 0.0)
            for i in range(n)]


@pytest.mark.parametrize("per_day,start_hour", [(10_000, 0.0), (10_000, 6.0), (10_000, 18.0), (15_000, 12.0)])
def test_an_undeclared_daily_cycle_whose_traffic_follows_the_hour_pages_nobody(per_day, start_hour):
    """The events' rate swinging +-80% with the hour: a warm-up near the peak sees a rate
    almost twice the day's, and one at night a fifth of it. A day's learning goes on to a day
    once started whatever the rate on the way, keeping EXTEND warm-ups' worth at even steps,
    and the joint error collects its rows over a day too."""
    msgs = scored_stream(per_day, 6 if per_day == 10_000 else 3, seed=2, traffic=0.8, start_hour=start_hour)
    assert run(msgs, load_settings(env={})) == []


def shifted_stream(per_day: int, days: int, shift_at_day: float, seed: int) -> list[Message]:
    """Two i.i.d. inputs (heavy-tailed, counts) and a score of the first; from
    ``shift_at_day`` on the first is 1 higher."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    t = np.sort(rng.uniform(0, days * DAY, n))
    x = rng.standard_t(3, n) + np.where(t >= shift_at_day * DAY, 1.0, 0.0)
    y = rng.poisson(3, n)
    score = 1 / (1 + np.exp(-x))
    return [Message(orjson.dumps({"model": "grid", "ts": float(t[i]), "prediction": float(score[i]),
                                  "features": {"x": float(x[i]), "y": int(y[i])}}), "events", 0, i, 0.0)
            for i in range(n)]


def test_an_undeclared_daily_cycle_is_learned_over_a_day_where_one_is_within_reach():
    """Not declared, at 10,000 events a day: a warm-up spans 2.4 hours and a day is in reach, so
    each reference learns on to a day, the data-quality checks' too (a reference of one
    warm-up near a flat part of a cycle pages at its every trough). A shift of an i.i.d.
    input after the first day is found within hours and stays firing; at an event a second a
    reference is one warm-up (DAY_EXTEND of them would span 5.6 hours)."""
    settings = load_settings(env={})
    assert run(scored_stream(10_000, 6, seed=3), settings) == []
    msgs = shifted_stream(5_000, 4, shift_at_day=2.0, seed=1)
    pipeline = Pipeline(settings)
    alerts = []
    for s in range(0, len(msgs), 500):
        alerts += pipeline.process(msgs[s:s + 500]).alerts
    assert {a["signal"] for a in alerts} == {"feature:x", "prediction"}
    assert all(a["status"] == "firing" and 2 * DAY <= a["at"]["ts"] < 2.2 * DAY for a in alerts)
    signals = pipeline.models["grid"].signals
    assert set(signals.n_ref.tolist()) <= {5_000.0, 6_000.0}           # a day's values, by warm-ups
    second = [Message(orjson.dumps({**orjson.loads(m.value), "ts": 1.7e9 + i}), "events", 0, i, 0.0)
              for i, m in enumerate(msgs[:3000])]
    pipeline = Pipeline(settings)
    pipeline.process(second)
    assert set(pipeline.models["grid"].signals.n_ref.tolist()) == {1_000.0}


def faulty_day(seed: int, x_times: float = 1.0, x_plus: float = 0.0, z_null: float = 0.05) -> list[Message]:
    """10,000 events a day for 3 days; from hour 6 to day 2, x is ``x_times`` and ``x_plus``
    off and z (null ``z_null`` of the time) always null."""
    rng = np.random.default_rng(seed)
    n = 30_000
    t = np.sort(rng.uniform(0, 3 * DAY, n))
    x, z, w = 10 + rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
    bad = (t >= 0.25 * DAY) & (t < 2 * DAY)
    x[bad] = x[bad] * x_times + x_plus
    null = bad | (rng.random(n) < z_null)
    return [Message(orjson.dumps({"model": "grid", "ts": float(t[i]), "features": {
        "x": float(x[i]), "w": float(w[i]), **({} if null[i] else {"z": float(z[i])})}}), "events", 0, i, 0.0)
        for i in range(n)]


@pytest.mark.parametrize("x_times,x_plus", [(1000.0, 0.0), (1.0, 8.0), (1.0, 2.0)])
def test_a_fault_in_the_first_day_ends_the_day_of_learning_and_is_judged_against_the_values_before(
        x_times, x_plus):
    """A reference learning on to a day whose values stepped by 5 sd of those just before, or
    by 1.5 sd within 15 minutes of event time (a 0/1 rate: by 0.5; see step_at) saw a fault, not
    an hour: its reference is the values before the step and what follows is judged against
    it (detector "reference"; "check" for the data-quality one), so a unit change, an 8 sd
    jump or a 2 sd one and a feature turning null (5% null before) in hour 6 fire within a
    warm-up and resolve when they end; the joint error leaves such a feature out."""
    pipeline = Pipeline(load_settings(env={}))
    alerts = []
    msgs = faulty_day(1, x_times, x_plus)
    for s in range(0, len(msgs), 500):
        alerts += pipeline.process(msgs[s:s + 500]).alerts
    got = [(a["signal"], a["status"], a["detector"]) for a in alerts]
    assert sorted(got) == [("feature:x", "firing", "reference"), ("feature:x", "resolved", "reference"),
                           ("feature:z", "firing", "check"), ("feature:z", "resolved", "check")]
    at = {(a["signal"], a["status"]): a["at"]["ts"] / DAY for a in alerts}
    assert 0.25 < at["feature:x", "firing"] < 0.45 and 0.25 < at["feature:z", "firing"] < 0.45
    assert 2.0 < at["feature:x", "resolved"] < 2.1 and 2.0 < at["feature:z", "resolved"] < 2.1
    mon = pipeline.models["grid"]
    assert 2_000 < mon.signals.n_ref[mon.signals.index["feature:x"]] < 2_600           # before hour 6
    assert mon.signals.n_ref[mon.signals.index["feature:w"]] >= 9000         # a day's
    assert mon.reconstruction.excluded == {"x"}


def declared(tmp_path, features: str = "") -> object:
    cfg = tmp_path / "c.toml"
    cfg.write_text('[models.grid.seasonality]\nperiod = "1d"\n' + features)
    return load_settings(cfg, env={})


def test_a_score_computed_from_seasonal_inputs_pages_nobody_and_its_own_shift_is_found(tmp_path):
    """10,000 events a day: the reference's warm-up sees a few hours of the day, so a score
    that cycles with its inputs is a seasonal signal like them (this stream's score paged 11
    times in the 6 days when only the features were)."""
    settings = declared(tmp_path)
    assert run(scored_stream(10_000, 6, seed=1), settings) == []
    alerts = run(scored_stream(10_000, 8, seed=4, score_shift_at_day=6.0), settings)
    assert [a["signal"] for a in alerts] == ["prediction"]
    assert 6 * DAY <= alerts[0]["at"]["ts"] < 7 * DAY
    stats = alerts[0]["stats"]
    assert stats["seasonal"] and 0.5 < stats["effect_size"] < 1.5      # in residual sd


@pytest.mark.parametrize("features,score_seasonal", [("", True), ('features = ["load"]\n', False),
                                                      ('features = ["load", "prediction"]\n', True)])
def test_the_score_is_seasonal_with_all_signals_or_when_listed(tmp_path, features, score_seasonal):
    pipeline = Pipeline(declared(tmp_path, features))
    pipeline.process(scored_stream(100, 1, seed=0))
    signals = pipeline.models["grid"].signals
    assert signals.is_seasonal(signals.index["prediction"]) == score_seasonal
    assert signals.is_seasonal(signals.index["feature:load"])
    assert signals.is_seasonal(signals.index["feature:mult"]) == (not features)


def labeled_stream(per_day: int, days: int, seed: int, flip_from_day: float | None = None) -> list[Message]:
    """A classifier whose input cycles daily and whose accuracy cycles with it (its noise, and
    how sure its score is, follow the hour), each event labeled 10 minutes later; from
    ``flip_from_day`` on 30% of the labels are flipped (its accuracy falls ~20 points)."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    t = np.sort(rng.uniform(0, days * DAY, n))
    phase = 2 * np.pi * t / DAY
    load = 2 * np.sin(phase) + rng.normal(size=n)
    y = (load + rng.normal(size=n) * (1.0 + 0.8 * np.sin(phase)) > 0).astype(int)
    if flip_from_day is not None:
        flip = (t >= flip_from_day * DAY) & (rng.random(n) < 0.3)
        y[flip] = 1 - y[flip]
    score = 1 / (1 + np.exp(-load))
    timed = [(float(t[i]), 0, i, orjson.dumps({"model": "grid", "id": i, "ts": float(t[i]),
                                                "prediction": float(score[i]),
                                                "features": {"load": float(load[i])}})) for i in range(n)]
    timed += [(float(t[i]) + 600.0, 1, i, orjson.dumps({"model": "grid", "id": i, "label": int(y[i]),
                                                         "ts": float(t[i]) + 600.0})) for i in range(n)]
    timed.sort()
    return [Message(value, "labels" if kind else "events", 0, i, 0.0) for _, kind, i, value in timed]


def test_an_accuracy_that_cycles_with_the_score_pages_nobody_and_its_fall_is_found(tmp_path):
    """With the score seasonal, its error stream and the accuracy expected from it are too
    (this stream's error stream paged 8-9 times in 8 days on three seeds while only the
    features and the score were seasonal)."""
    settings = declared(tmp_path)
    assert run(labeled_stream(10_000, 8, seed=1), settings, every=True) == []
    alerts = run(labeled_stream(10_000, 8, seed=2, flip_from_day=6.0), settings, every=True)
    assert [(a["status"], a["signal"]) for a in alerts] == [("firing", "error")]
    assert 6 * DAY <= alerts[0]["at"]["ts"] < 7 * DAY
    assert alerts[0]["stats"]["seasonal"] and alerts[0]["stats"]["accuracy_after"] < 0.75


def test_an_undeclared_accuracy_that_cycles_is_learned_over_a_day_and_its_fall_is_found():
    """Not declared, at 10,000 labeled events a day: the error stream's warm-up (500 labels)
    learns on to a day as the features' may, so the hours page nobody; a fall of ~20 points
    on day 3 is found, later than with the cycle declared (the hours widen its standard
    error)."""
    settings = load_settings(env={})
    assert run(labeled_stream(10_000, 4, seed=1), settings) == []
    alerts = run(labeled_stream(10_000, 6, seed=2, flip_from_day=3.0), settings, every=True)
    assert [(a["signal"], a["status"]) for a in alerts] == [("error", "firing")]
    assert 3 * DAY < alerts[0]["at"]["ts"] < 6 * DAY


def channel_stream(per_day: int, days: int, seed: int, change_at_day: float | None = None,
                   change: str = "") -> list[Message]:
    """A model with a numeric feature and a categorical one whose mix cycles daily (mobile
    50% +- 30%). From ``change_at_day`` on: "mix", mobile 15 points more at every hour; "new",
    a new channel takes 20% of the traffic."""
    rng = np.random.default_rng(seed)
    n = per_day * days
    t = np.sort(rng.uniform(0, days * DAY, n))
    phase = 2 * np.pi * t / DAY
    after = t >= (change_at_day if change_at_day is not None else days) * DAY
    mobile = 0.5 + 0.3 * np.sin(phase) + np.where(after & (change == "mix"), 0.15, 0.0)
    channel = np.where(rng.random(n) < mobile, "mobile", np.where(rng.random(n) < 0.7, "web", "store"))
    if change == "new":
        channel[after & (rng.random(n) < 0.2)] = "kiosk"
    load = 2 * np.sin(phase) + rng.normal(size=n)
    return [Message(orjson.dumps({"model": "grid", "ts": float(t[i]), "features": {
        "load": float(load[i]), "channel": str(channel[i])}}), "events", 0, i, 0.0) for i in range(n)]


def test_a_categorical_mix_that_cycles_pages_nobody_and_changes_on_top_are_found(tmp_path):
    """Its categories' indicators are seasonal signals like the numeric features (this stream's
    paged 20-28 times in 6 days on three seeds when only the numeric ones were)."""
    settings = declared(tmp_path)
    assert run(channel_stream(10_000, 6, seed=1), settings, every=True) == []
    for change, signal in (("mix", "feature:channel=mobile"), ("new", "feature:channel=__other__")):
        alerts = run(channel_stream(10_000, 7, seed=2, change_at_day=5.0, change=change), settings,
                     every=True)
        # (the other channels' shares move too, some by less than min_effect at some hours)
        mine = [(a["status"], a["stats"]["seasonal"]) for a in alerts if a["signal"] == signal]
        assert mine == [("firing", True)], (change, alerts)
        assert 5 * DAY <= min(a["at"]["ts"] for a in alerts) < 6 * DAY


def test_durations_and_bad_seasonality_config(tmp_path):
    assert parse_duration("1d") == DAY and parse_duration("90s") == 90 and parse_duration(3600) == 3600
    assert parse_duration("1.5h") == 5400 and parse_duration("1w") == 7 * DAY
    for text, key in [('[models.g.seasonality]\nbins = 24\n', "models.g.seasonality.period"),
                      ('[models.g.seasonality]\nperiod = "1x"\n', "models.g.seasonality.period"),
                      ('[models.g.seasonality]\nperiod = "1d"\nbins = 1\n', "models.g.seasonality.bins"),
                      ('[models.g]\nseasonlity = {}\n', "models.g"),
                      ('[models.g.seasonality]\nperiod = "1d"\nfeatures = "load"\n',
                       "models.g.seasonality.features")]:
        cfg = tmp_path / "c.toml"
        cfg.write_text(text)
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_settings(cfg, env={})
