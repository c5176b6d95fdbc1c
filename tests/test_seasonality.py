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


def run(msgs, settings):
    pipeline = Pipeline(settings)
    alerts = []
    for s in range(0, len(msgs), 500):
        alerts += pipeline.process(msgs[s:s + 500]).alerts
    return [a for a in alerts if a["status"] == "firing"]


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
