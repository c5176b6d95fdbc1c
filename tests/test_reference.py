"""Reference profiles from training data, and model versions."""

from __future__ import annotations

import csv
import subprocess
import sys

import numpy as np
import orjson
import pytest
from quality_streams import replay

from stream.app.profile import profile
from stream.config import load_settings
from stream.monitor.reference import Profiles, load, parse

T0 = 1.7e9


def rows(n: int, seed: int, skew: dict[str, float] | None = None, version=None, pred_shift: float = 0.0,
         start: int = 0) -> list[dict]:
    """Events of model m: 4 numeric features N(50, 10), a category, a score from f0 and a
    label drawn from it; ``skew`` moves features by that many sd; ``pred_shift`` moves the
    score (a retrained model's outputs)."""
    r = np.random.default_rng(seed)
    out = []
    for i in range(n):
        x = r.normal(50, 10, 4)
        for k, s in (skew or {}).items():
            x[int(k[1:])] += s * 10
        score = float(1 / (1 + np.exp(-(x[0] - 50) / 10 - pred_shift)))
        ev = {"model": "m", "ts": T0 + start + i, "id": f"e{start + i}",
              "features": {f"f{k}": float(x[k]) for k in range(4)} | {"c": str(r.choice(["a", "b", "c"]))},
              "prediction": score, "label": int(r.random() < score)}
        if version is not None:
            ev["model_version"] = version
        out.append(ev)
    return out


def without_labels(evs: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "label"} for e in evs]


@pytest.fixture(scope="module")
def train(tmp_path_factory):
    """The same training rows as JSONL, CSV and Parquet."""
    d = tmp_path_factory.mktemp("train")
    evs = rows(20_000, 1)
    (d / "t.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    names = ["f0", "f1", "f2", "f3", "c", "prediction", "label"]
    table = [[*[e["features"][k] for k in names[:5]], e["prediction"], e["label"]] for e in evs]
    with open(d / "t.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        w.writerows(table)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({k: [row[i] for row in table] for i, k in enumerate(names)}), d / "t.parquet")
    return d


@pytest.mark.parametrize("name", ["t.jsonl", "t.csv", "t.parquet"])
def test_profile_from_each_input_format(train, name):
    settings = load_settings(env={})
    profiles, bad = profile(settings, [str(train / name)], model="m")
    assert bad == 0
    p = profiles.of("m")
    assert p.rows == 20_000 and p.model_version is None
    assert set(p.signals) >= {"feature:f0", "feature:f3", "feature:c=a", "feature:c=__other__", "prediction",
                              "error"}
    f1 = p.signals["feature:f1"]
    assert abs(f1.mean - 50) < 0.5 and abs(f1.sd - 10) < 0.3 and f1.n == 20_000
    assert 0.45 < p.categories["c"]["a"] < 0.55 or 0.28 < p.categories["c"]["a"] < 0.38
    assert p.features["f0"].type == "number" and p.features["c"].type == "string"
    assert p.features["f0"].missing_rate == 0.0 and 0.45 < p.features["f0"].larger_change_rate < 0.55
    again = parse(orjson.loads(profiles.to_json()))                 # the format round-trips
    assert again.of("m").signals == p.signals


def test_the_three_formats_give_the_same_profile(train):
    settings = load_settings(env={})
    got = [profile(settings, [str(train / n)], model="m")[0].of("m")
           for n in ("t.jsonl", "t.csv", "t.parquet")]
    for p in got[1:]:
        assert p.signals.keys() == got[0].signals.keys()
        for k, ref in p.signals.items():
            assert ref.mean == pytest.approx(got[0].signals[k].mean) and ref.n == got[0].signals[k].n


@pytest.fixture(scope="module")
def reference(train):
    profiles, _ = profile(load_settings(env={}), [str(train / "t.jsonl")])
    return profiles


def test_skew_from_the_first_event_is_found_on_the_shifted_features_only(reference):
    settings = load_settings(env={})
    prod = without_labels(rows(30_000, 2, skew={"f1": 0.5, "f3": -1.0}))
    assert replay(prod, settings=settings) == []                   # a warm-up learns the skew
    alerts = profiled_alerts(prod, settings, reference)
    assert sorted(a["signal"] for a in alerts) == ["feature:f1", "feature:f3"]
    for a in alerts:
        assert a["status"] == "firing" and a["at"]["offset"] < 3000
        assert a["stats"]["reference"] == "profile" and a["stats"]["n_before"] == 20_000
    f3 = next(a for a in alerts if a["signal"] == "feature:f3")
    assert f3["stats"]["effect_size"] < -0.7


@pytest.mark.parametrize("seed", [3, 4])
def test_production_like_training_is_quiet(reference, seed):
    assert profiled_alerts(without_labels(rows(40_000, seed)), load_settings(env={}), reference) == []


def profiled_alerts(evs, settings, profiles: Profiles, batch: int = 5000) -> list[dict]:
    from stream.pipeline import Pipeline
    from stream.types import Message

    pipeline = Pipeline(settings, profiles=profiles)
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(evs)]
    out = []
    for s in range(0, len(msgs), batch):
        out += pipeline.process(msgs[s:s + batch]).alerts
    return out


def test_a_new_version_with_moved_predictions_is_no_drift(reference):
    """v2's scores move by design: no prediction_drift, the version change counted; a feature
    shift after it is still found, and alerts carry the model version."""
    from stream.pipeline import Pipeline
    from stream.types import Message

    evs = without_labels(rows(20_000, 5, version="v1") +
                         rows(10_000, 6, version="v2", pred_shift=1.5, start=20_000) +
                         rows(10_000, 7, version="v2", pred_shift=1.5, skew={"f2": 1.0}, start=30_000))
    pipeline = Pipeline(load_settings(env={}))
    alerts, versions = [], []
    msgs = [Message(orjson.dumps(e), "s", 0, i, 0.0) for i, e in enumerate(evs)]
    for s in range(0, len(msgs), 5000):
        result = pipeline.process(msgs[s:s + 5000])
        alerts += result.alerts
        versions += result.versions
    assert [(m, v) for m, v, _ in versions] == [("m", "v2")]
    assert [(a["signal"], a["model_version"]) for a in alerts] == [("feature:f2", "v2")]
    assert 30_000 <= alerts[0]["at"]["offset"] < 32_000
    # without versions, the moved predictions are drift
    plain = [{k: v for k, v in e.items() if k != "model_version"} for e in evs]
    assert "prediction" in {a["signal"] for a in replay(plain)}


def test_a_version_s_own_profile_is_its_reference(train):
    """Profiles of v1 and v2 (v2's scores higher): v2 in production is judged against v2's
    training scores from its first event, and skewed ones are found."""
    d = train
    evs = rows(20_000, 8, version="v1") + rows(20_000, 9, version="v2", pred_shift=1.0)
    (d / "versions.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in evs))
    profiles, _ = profile(load_settings(env={}), [str(d / "versions.jsonl")])
    assert set(profiles.profiles) == {"m", "m@v1", "m@v2"}
    assert "feature:f0" not in profiles.profiles["m@v2"].signals
    prod = without_labels(rows(10_000, 10, version="v1") +
                          rows(10_000, 11, version="v2", pred_shift=1.0, start=10_000) +
                          rows(10_000, 12, version="v2", pred_shift=2.5, start=20_000))   # v2 went off
    alerts = profiled_alerts(prod, load_settings(env={}), profiles)
    # its scores moved (and with them the accuracy they promise, from v2's calibration)
    assert {(a["signal"], a["model_version"]) for a in alerts} == {("prediction", "v2"),
                                                                   ("estimated_accuracy", "v2")}
    assert all(a["at"]["offset"] >= 20_000 for a in alerts)


@pytest.mark.parametrize("content,problem", [
    (b"not json", "not JSON"),
    (b'{"format": "something else"}', "not a streamdrift reference profile"),
    (b'{"format": "streamdrift.profile", "version": 9, "profiles": {}}', "version 9 is not supported"),
    (b'{"format": "streamdrift.profile", "version": 1, "profiles": {"m": {"model": "m", "signals": '
     b'{"feature:x": {"n": 10, "mean": 1}}}}}', "signal 'feature:x' needs numbers"),
])
def test_a_bad_reference_file_stops_the_start_naming_the_file(tmp_path, content, problem):
    ref = tmp_path / "ref.json"
    ref.write_bytes(content)
    events = tmp_path / "e.jsonl"
    events.write_bytes(b'{"model":"m","features":{"x":1}}\n')
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(events), "--reference", str(ref)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and str(ref) in proc.stderr and problem in proc.stderr
    assert "Traceback" not in proc.stderr


def test_profile_command_writes_a_file_that_replay_reads(train, tmp_path):
    out = tmp_path / "ref.json"
    proc = subprocess.run([sys.executable, "-m", "stream", "profile", str(train / "t.csv"), "--model", "m",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "m: 20000 rows" in proc.stderr
    assert load(out).of("m").rows == 20_000
