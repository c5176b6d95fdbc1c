"""`streamdrift run` as a real process against the real local Apache Kafka broker."""

from __future__ import annotations

import re
import threading
import urllib.request

import numpy as np
import orjson
import pytest
from kafka_helpers import (
    alerts_of,
    committed,
    create_topics,
    free_port,
    produce,
    read_topic,
    replay_alerts,
    start_service,
    stop_service,
    wait_for,
    write_config,
)
from prometheus_client.parser import text_string_to_metric_families

from stream.app.synthetic import DEMO_MODELS, events
from stream.config import load_settings

pytestmark = pytest.mark.kafka

BAD = [b"not json", b'{"model":"m"}', b'{"model":"m","features":{"x":{"deep":1}}}',
       b'{"model":"has space","features":{}}', b"[1,2,3]"]
BAD_REASONS = ["invalid_json", "invalid_features", "nested_value", "invalid_model", "not_object"]


def scrape(port: int) -> dict[tuple[str, tuple], float]:
    """Parse /metrics with prometheus_client's own parser; {} while the endpoint is not up."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return {}
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(samples: dict, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_run_publishes_alerts_dead_letters_and_metrics(kafka_bootstrap, unique, tmp_path):
    create_topics(kafka_bootstrap, {f"events-{unique}": 3})
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port)
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        evs = list(events(DEMO_MODELS, 9000, seed=11))
        produce(kafka_bootstrap, f"events-{unique}", [orjson.dumps(e) for _, e in evs] + BAD,
                keys=[m.encode() for m, _ in evs] + [b"bad"] * len(BAD))
        total = len(evs)
        expected = {("readmission", "feature:age"), ("fraud", "feature:amount")}
        msgs = read_topic(kafka_bootstrap, f"alerts-{unique}",
                          lambda ms: expected <= {(a["model"], a["signal"]) for a in alerts_of(ms)},
                          timeout_s=120)
        alerts = alerts_of(msgs)
        assert expected <= {(a["model"], a["signal"]) for a in alerts}
        assert all(m.key() == a["model"].encode() for m, a in zip(msgs, alerts, strict=True))
        assert all(a["model"] != "churn" or a["kind"] == "prediction_drift" for a in alerts)
        dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= len(BAD), timeout_s=60)
        assert sorted(m.value() for m in dead) == sorted(BAD)
        for m in dead:
            h = dict(m.headers())
            assert h["streamdrift.reason"].decode() == BAD_REASONS[BAD.index(m.value())]
            assert h["streamdrift.source.topic"].decode() == f"events-{unique}"
            assert int(h["streamdrift.source.offset"]) >= 0
        # (the lag comes with the consumer's statistics, every second: a run can finish before)
        samples = wait_for(lambda: (s := scrape(port)) and
                           metric(s, "streamdrift_events_total", outcome="ok") == total and
                           any(k[0] == "streamdrift_consumer_lag" for k in s) and s,
                           60, "all events counted and the consumer lag reported in /metrics")
        assert metric(samples, "streamdrift_events_total", outcome="dead_letter") == len(BAD)
        for reason in BAD_REASONS:
            assert metric(samples, "streamdrift_dead_letters_total", reason=reason) == 1
        assert metric(samples, "streamdrift_alerts_total", kind="data_drift", model="fraud") >= 1
        # 2 detectors x (the models' features and predictions, and readmission's joint signal:
        # fraud's and churn's two independent features each keep both components, no error)
        assert metric(samples, "streamdrift_detectors") == 2 * (4 + 3 + 1 + 1 + 2 + 1 + 2 + 1)
        assert metric(samples, "streamdrift_batch_seconds_count") >= 1
        assert metric(samples, "streamdrift_event_to_alert_seconds_count") >= 2
        assert any(k[0] == "streamdrift_consumer_lag" for k in samples)
        assert metric(samples, "streamdrift_active_alerts", kind="data_drift", model="fraud") == 1
        assert any(k[0] == "streamdrift_signal_estimate" and ("signal", "feature:amount") in k[1]
                   for k in samples)
    finally:
        assert stop_service(proc) == 0
    ends = committed(kafka_bootstrap, f"g-{unique}", f"events-{unique}", 3)
    assert sum(max(o, 0) for o in ends) == total + len(BAD)   # -1001: a partition that got nothing


def test_sigterm_mid_stream_loses_nothing_and_restart_continues(kafka_bootstrap, unique, tmp_path):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    evs = [e for _, e in events(DEMO_MODELS, 15000, seed=12)]
    values = [orjson.dumps(e) for e in evs]
    head = 30000                               # past the drift of two models (event ~18000)
    produce(kafka_bootstrap, topic, values[:head])
    port = free_port()
    # progress is watched through the committed offsets: checkpoint often (default 5 s)
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port, "[detect]\ncooldown_s = 0.0\n",
                       kafka="checkpoint_interval_s = 0.5")
    proc = start_service(cfg, tmp_path / "run1.log")
    tail = threading.Thread(target=produce, args=(kafka_bootstrap, topic, values[head:]))
    try:
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") >= 25000, 60,
                 "the service to be past the drift")
        tail.start()                           # more events arrive while it is being stopped
    finally:
        assert stop_service(proc) == 0
        tail.join(60)
    (c1,) = committed(kafka_bootstrap, f"g-{unique}", topic, 1)
    assert 25000 <= c1 <= len(values), "stopped with its offsets committed"
    settings = load_settings(env={}, overrides={"detect.cooldown_s": 0.0})

    def expected(lo: int, hi: int) -> list[str]:
        return [a["alert_id"] for a in replay_alerts(values[lo:hi], topic, 0, list(range(lo, hi)),
                                                     settings)]

    first = expected(0, c1)
    assert first, "the first run saw drift before it stopped"
    got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}", lambda ms: len(ms) >= len(first), 60))
    assert [a["alert_id"] for a in got] == first         # every alert of the processed events is out
    proc = start_service(cfg, tmp_path / "run2.log")
    try:
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1)[0] == len(values), 90,
                 "the restarted service to reach the end")
    finally:
        assert stop_service(proc) == 0
    assert re.search(r"restored [1-9][0-9]* models", (tmp_path / "run2.log").read_text())
    # the state was restored from the changelog: the two runs together are one uninterrupted run
    whole = expected(0, len(values))
    got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}", lambda ms: len(ms) >= len(whole), 60))
    assert [a["alert_id"] for a in got] == whole


def test_unreachable_broker_gives_a_clear_message_and_retries(unique, tmp_path):
    cfg = write_config(tmp_path / "c.toml", f"127.0.0.1:{free_port()}", unique, free_port())
    log = tmp_path / "service.log"
    proc = start_service(cfg, log)
    try:
        wait_for(lambda: log.read_text().count("cannot reach Kafka") >= 2, 60, "two retries logged")
    finally:
        assert stop_service(proc) == 0
    text = log.read_text()
    assert "Traceback" not in text and "retrying" in text


def test_labels_topic_gives_performance_drift_and_label_dead_letters(kafka_bootstrap, unique, tmp_path):
    from test_labels import stream

    create_topics(kafka_bootstrap, {f"events-{unique}": 1, f"labels-{unique}": 1})
    port = free_port()
    # all events first, all labels after: predictions must wait the whole 83 days of the stream
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port, "[labels]\nttl_s = 1e9\n")
    cfg.write_text(cfg.read_text().replace("[kafka]\n", f'[kafka]\nlabels_topic = "labels-{unique}"\n'))
    msgs = stream(12_000, error_rate_after=0.4, change_at=6_000)
    produce(kafka_bootstrap, f"events-{unique}", [m.value for m in msgs if m.topic == "events"])
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") == 12_000, 60,
                 "events processed before the labels arrive")
        produce(kafka_bootstrap, f"labels-{unique}",
                [m.value for m in msgs if m.topic == "labels"] + [b'{"model":"m","id":"nobody","label":1}'])
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: any(a["kind"] == "performance_drift" for a in alerts_of(ms)),
                                   timeout_s=90))
        perf = [a for a in got if a["kind"] == "performance_drift"]
        assert perf and perf[0]["at"]["topic"] == f"labels-{unique}"
        assert perf[0]["stats"]["prediction_ts"] >= 6_000 * 600.0
        dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= 1, timeout_s=60)
        assert dict(dead[0].headers())["streamdrift.reason"] == b"unknown_id"
        samples = wait_for(lambda: (s := scrape(port)) and
                           metric(s, "streamdrift_labels_total", outcome="joined") == 12_000 and s,
                           60, "labels counted")
        assert metric(samples, "streamdrift_labels_total", outcome="dead_letter") == 1
        assert 0.5 < 1 - metric(samples, "streamdrift_error_level", model="m") < 0.8
        # the labels disagree more than the scores promise (0.75): the estimate is scored too high
        assert 0.05 < metric(samples, "streamdrift_estimate_bias", model="m") < 0.3
    finally:
        assert stop_service(proc) == 0


def test_labels_read_from_a_backlog_wait_for_their_predictions(kafka_bootstrap, unique, tmp_path):
    """Events and then their labels produced before the service starts (a backlog of both, as
    after downtime): the small labels topic would be read ahead of the events, each label before
    its prediction (an unknown_id dead letter). The labels partition waits, paused, until the
    events read pass its messages' time: every label is joined."""
    from test_labels import stream

    create_topics(kafka_bootstrap, {f"events-{unique}": 1, f"labels-{unique}": 1})
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port, "[labels]\nttl_s = 1e9\n",
                       kafka=f'labels_topic = "labels-{unique}"')
    msgs = stream(12_000, error_rate_after=0.4, change_at=6_000)
    produce(kafka_bootstrap, f"events-{unique}", [m.value for m in msgs if m.topic == "events"])
    produce(kafka_bootstrap, f"labels-{unique}", [m.value for m in msgs if m.topic == "labels"])
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        samples = wait_for(lambda: (s := scrape(port)) and
                           metric(s, "streamdrift_labels_total", outcome="joined")
                           + metric(s, "streamdrift_labels_total", outcome="dead_letter") == 12_000 and s,
                           90, "every label read")
        assert metric(samples, "streamdrift_labels_total", outcome="joined") == 12_000
        assert metric(samples, "streamdrift_events_total", outcome="ok") == 12_000
    finally:
        assert stop_service(proc) == 0


def test_ml_signals_in_run_seasonality_feedback_and_classes(kafka_bootstrap, unique, tmp_path):
    """The same signals as in replay, through `streamdrift run`: a seasonal model with a level
    shift, a self-reinforcing allocation (segments), a class prediction whose mix changes."""
    from test_feedback import allocation_stream
    from test_seasonality import CONFIG, grid_stream

    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 3})
    grid = [m.value for m in grid_stream(20, 10.0, seed=1)]
    loop = [m.value for m in allocation_stream(reinforcing=True) if m.topic == "events"][:20_000]
    rng = np.random.default_rng(4)
    mix = lambda i: [0.8, 0.2] if i < 5000 else [0.4, 0.6]
    classes = [orjson.dumps({"model": "c", "ts": float(i), "features": {},
                             "prediction": str(rng.choice(["a", "b"], p=mix(i)))}) for i in range(8000)]
    values = grid + loop + classes
    keys = [b"grid"] * len(grid) + [b"m"] * len(loop) + [b"c"] * len(classes)
    produce(kafka_bootstrap, topic, values, keys=keys)
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port, CONFIG)
    proc = start_service(cfg, tmp_path / "service.log")
    expected = {("grid", "feature:load"), ("m", "segments:entropy"), ("c", "prediction=b")}
    try:
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: expected <= {(a["model"], a["signal"]) for a in alerts_of(ms)},
                                   timeout_s=120))
    finally:
        assert stop_service(proc) == 0
    firing = [a for a in got if a["status"] == "firing"]
    assert expected <= {(a["model"], a["signal"]) for a in firing}
    load = next(a for a in firing if a["signal"] == "feature:load")
    assert 10 * 86400 <= load["at"]["ts"] < 11 * 86400 and load["kind"] == "data_drift"
    assert not [a for a in firing if a["model"] == "grid" and a["signal"] != "feature:load"]
    assert next(a for a in firing if a["model"] == "m" and a["signal"] == "segments:entropy")["kind"] \
        == "feedback_loop"
    assert {a["kind"] for a in firing if a["model"] == "c"} == {"prediction_drift"}


def produce_cloudevents(bootstrap: str, topic: str, events: list[tuple[str, int, dict]],
                        extra: list[bytes] = ()) -> None:
    """KServe binary-mode CloudEvents (kind "request"/"response", id number, body) of model
    iris, then the raw messages `extra`."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    for n, (kind, i, body) in enumerate(events):
        p.produce(topic, value=orjson.dumps(body), headers=[
            ("ce_specversion", b"1.0"), ("ce_id", f"id{i}".encode()), ("ce_source", b"s"),
            ("ce_type", f"org.kubeflow.serving.inference.{kind}".encode()),
            ("ce_inferenceservicename", b"iris"), ("content-type", b"application/json")])
        if n % 1000 == 0:
            p.poll(0)
    for value in extra:
        p.produce(topic, value=value)
    assert p.flush(30) == 0


def test_kserve_binary_cloudevents_through_run(kafka_bootstrap, unique, tmp_path):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    rng = np.random.default_rng(1)
    events = []
    for i in range(5000):
        x = rng.normal(10 + (3 if i >= 2500 else 0), 1, 2).tolist()
        events += [("request", i, {"instances": [x]}), ("response", i, {"predictions": [0.4]})]
    produce_cloudevents(kafka_bootstrap, topic, events,
                        extra=[b'{"instances": [[1]]}'])             # no CloudEvent attributes
    extra = f'[kafka.formats]\n"{topic}" = "kserve"\n\n[models.iris]\ncolumns = ["petal", "sepal"]\n'
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(), extra)
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: {"feature:petal", "feature:sepal"} <=
                                   {a["signal"] for a in alerts_of(ms)}, timeout_s=90))
        dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= 1, timeout_s=60)
    finally:
        assert stop_service(proc) == 0
    assert all(a["model"] == "iris" and a["at"]["offset"] >= 5000 for a in got)
    assert dict(dead[0].headers())["streamdrift.reason"] == b"not_cloudevent"


def partitions_of(bootstrap: str, topic: str) -> int:
    from confluent_kafka.admin import AdminClient

    return len(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
               .topics[topic].partitions)


def test_run_creates_missing_input_topics_and_a_changelog_to_match(kafka_bootstrap, unique, tmp_path):
    """Started before its events topic exists, the service creates it (kafka.partitions) and a
    changelog of as many partitions, and processes events produced right after; with
    kafka.create_topics = false it stops at once, naming the topic."""
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port,
                       kafka='instance_id = "late"\npartitions = 4\ncreate_topics = false')
    proc = start_service(cfg, tmp_path / "refused.log")
    assert proc.wait(60) == 2
    assert f"events-{unique} do(es) not exist" in (tmp_path / "refused.log").read_text()
    cfg.write_text(cfg.read_text().replace("create_topics = false", "create_topics = true"))
    log = tmp_path / "run1.log"
    proc = start_service(cfg, log)
    try:
        wait_for(lambda: "streamdrift running" in log.read_text(), 60, "the service to start")
        assert partitions_of(kafka_bootstrap, f"events-{unique}") == 4
        assert partitions_of(kafka_bootstrap, f"g-{unique}-changelog") == 4
        evs = list(events(DEMO_MODELS, 3000, seed=2))
        produce(kafka_bootstrap, f"events-{unique}", [orjson.dumps(e) for _, e in evs],
                keys=[m.encode() for m, _ in evs])
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") == len(evs), 60,
                 "all events processed")
    finally:
        assert stop_service(proc) == 0
    proc = start_service(cfg, tmp_path / "run2.log")
    try:
        wait_for(lambda: re.search(r"restored [1-9][0-9]* models", (tmp_path / "run2.log").read_text()),
                 60, "state restored")
    finally:
        assert stop_service(proc) == 0


def test_input_partitions_added_later_grow_the_changelog(kafka_bootstrap, unique, tmp_path):
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewPartitions

    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 2})
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port, kafka='instance_id = "grow"')
    log = tmp_path / "run.log"
    proc = start_service(cfg, log)
    try:
        wait_for(lambda: "assigned" in log.read_text(), 60, "assignment")
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        for fut in admin.create_partitions([NewPartitions(topic, 4)]).values():
            fut.result(timeout=30)
        p = Producer({"bootstrap.servers": kafka_bootstrap})
        for i in range(2000):
            p.produce(topic, partition=3,
                      value=orjson.dumps({"model": "m", "ts": i, "features": {"x": i % 7}}))
        assert p.flush(30) == 0
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") == 2000, 90,
                 "the new partition read")
        assert "growing it" in log.read_text()
        assert partitions_of(kafka_bootstrap, f"g-{unique}-changelog") == 4
    finally:
        assert stop_service(proc) == 0


def test_kserve_requests_awaiting_responses_survive_a_restart(kafka_bootstrap, unique, tmp_path):
    """Requests are held until their responses arrive; that pairing state is checkpointed
    with the models, so responses produced after a restart still find their requests (only
    paired rows carry predictions: without the state no prediction would ever reach the
    detectors, and the shift of the predictions would go unseen)."""
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    rng = np.random.default_rng(2)
    n = 3000
    produce_cloudevents(kafka_bootstrap, topic, [("request", i, {"instances": [rng.normal(0, 1, 2).tolist()]})
                                                 for i in range(n)])
    extra = f'[kafka.formats]\n"{topic}" = "kserve"\n\n[models.iris]\ncolumns = ["petal", "sepal"]\n'
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(), extra,
                       kafka="checkpoint_interval_s = 0.5")     # progress seen in committed offsets
    proc = start_service(cfg, tmp_path / "first.log")
    try:
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1) == [n], 90,
                 "the requests were processed and checkpointed")
    finally:
        assert stop_service(proc) == 0
    scores = np.clip(np.where(np.arange(n) < 2000, 0.2, 0.8) + rng.normal(0, 0.05, n), 0, 1)
    produce_cloudevents(kafka_bootstrap, topic, [("response", i, {"predictions": [float(s)]})
                                                 for i, s in enumerate(scores)])
    proc = start_service(cfg, tmp_path / "second.log")
    try:
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: any(a["kind"] == "prediction_drift" for a in alerts_of(ms)),
                                   timeout_s=90))
    finally:
        assert stop_service(proc) == 0
    drift = [a for a in got if a["kind"] == "prediction_drift"]
    assert drift and drift[0]["model"] == "iris" and drift[0]["at"]["offset"] >= n + 2000


def test_rebaseline_through_the_control_topic_resolves_and_accepts_the_new_values(
        kafka_bootstrap, unique, tmp_path):
    """A persistent shift stays firing until an operator runs `streamdrift rebaseline`: the
    running service resolves it ("rebaselined") and the shifted values, now the reference,
    raise nothing more; the request survives a restart without being applied twice."""
    import subprocess
    import sys

    from quality_streams import shifted

    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    evs = [orjson.dumps(e) for e in shifted(60_000, 10_000, None, 1.0, seed=3)]
    produce(kafka_bootstrap, topic, evs[:30_000])
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port)
    proc = start_service(cfg, tmp_path / "run1.log")
    alerts_topic = f"alerts-{unique}"
    try:
        fired = alerts_of(read_topic(kafka_bootstrap, alerts_topic, lambda ms: len(ms) >= 1, 60))
        assert [(a["status"], a["signal"]) for a in fired] == [("firing", "feature:f0")]
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") == 30_000, 60,
                 "the first events processed")
        cli = subprocess.run([sys.executable, "-m", "stream", "rebaseline", "--model", "m", "--config",
                              str(cfg)], capture_output=True, text=True, timeout=60)
        assert cli.returncode == 0, cli.stderr
        wait_for(lambda: "control: rebaseline m" in (tmp_path / "run1.log").read_text(), 30,
                 "the service to read the request")
        produce(kafka_bootstrap, topic, evs[30_000:45_000])
        got = alerts_of(read_topic(kafka_bootstrap, alerts_topic, lambda ms: len(ms) >= 2, 60))
    finally:
        assert stop_service(proc) == 0
    resolved = got[1]
    assert resolved["status"] == "resolved" and resolved["reason"] == "rebaselined"
    assert resolved["stats"]["episode_alert_id"] == fired[0]["alert_id"]
    assert 30_000 <= resolved["at"]["offset"]
    proc = start_service(cfg, tmp_path / "run2.log")          # reads the request again
    try:
        produce(kafka_bootstrap, topic, evs[45_000:])
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1)[0] == len(evs), 90,
                 "the restarted service to reach the end")
    finally:
        assert stop_service(proc) == 0
    final = alerts_of(read_topic(kafka_bootstrap, alerts_topic, lambda ms: False, 3))
    assert [(a["status"], a.get("reason")) for a in final] == [("firing", None), ("resolved", "rebaselined")]


def test_data_quality_checks_through_run(kafka_bootstrap, unique, tmp_path):
    """A feature that goes null and one that arrives as strings: one data_quality alert each
    from `streamdrift run`, and both in streamdrift_active_alerts."""
    from quality_streams import table

    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    rng = np.random.default_rng(6)
    M = rng.normal(10, 2, (30_000, 4))
    M[15_000:, 1] = np.nan
    evs = table(M)
    for e in evs[15_000:]:
        e["features"]["f2"] = f"{e['features']['f2']:.3f}"
    produce(kafka_bootstrap, topic, [orjson.dumps(e) for e in evs])
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port,
                       "[models.m.quality]\nstuck = false\n")
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}", lambda ms: len(ms) >= 2, 90))
        samples = wait_for(lambda: (s := scrape(port)) and metric(
            s, "streamdrift_active_alerts", kind="data_quality", model="m") == 2 and s, 30, "active alerts")
    finally:
        assert stop_service(proc) == 0
    assert sorted((a["check"], a["signal"]) for a in got) == [("missing", "feature:f1"),
                                                              ("type", "feature:f2")]
    assert all(a["kind"] == "data_quality" and a["at"]["offset"] >= 15_000 for a in got)
    assert metric(samples, "streamdrift_alerts_total", kind="data_quality", model="m") == 2


def test_a_profile_published_while_running_is_followed(kafka_bootstrap, unique, tmp_path):
    """`streamdrift profile --publish` writes to the references topic that a running service
    follows: production skewed from its first event (invisible to a warm-up) is then judged
    against the training profile and the skewed feature alerts."""
    import subprocess
    import sys

    from test_reference import rows, without_labels

    train = tmp_path / "train.jsonl"
    train.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in rows(5000, 1)))
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    prod = [orjson.dumps(e) for e in without_labels(rows(12_000, 2, skew={"f1": 1.0}))]
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port)
    log = tmp_path / "service.log"
    proc = start_service(cfg, log)
    try:
        produce(kafka_bootstrap, topic, prod[:6000])
        wait_for(lambda: metric(scrape(port), "streamdrift_events_total", outcome="ok") == 6000, 60,
                 "the first events processed (a warm-up learns the skew)")
        cli = subprocess.run([sys.executable, "-m", "stream", "profile", str(train), "--publish",
                              "--config", str(cfg)], capture_output=True, text=True, timeout=120)
        assert cli.returncode == 0, cli.stderr
        wait_for(lambda: "references: profile m" in log.read_text(), 30, "the service to read the profile")
        produce(kafka_bootstrap, topic, prod[6000:])
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}", lambda ms: len(ms) >= 1, 60))
    finally:
        assert stop_service(proc) == 0
    assert [(a["signal"], a["stats"].get("reference")) for a in got] == [("feature:f1", "profile")]
    assert got[0]["at"]["offset"] >= 6000


def test_batches_grow_with_the_models(kafka_bootstrap, unique, tmp_path):
    """kafka.batch_size = 100 with 40 models waiting in the topic: after the first batch shows
    them, the service asks for ~200 events a model at once (batches of up to 8000 here)."""
    create_topics(kafka_bootstrap, {f"events-{unique}": 1})
    rng = np.random.default_rng(4)
    total = 6000
    produce(kafka_bootstrap, f"events-{unique}",
            [orjson.dumps({"model": f"m{i % 40}", "features": {"x": rng.normal()}}) for i in range(total)])
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port)
    cfg.write_text(cfg.read_text().replace("batch_size = 2000", "batch_size = 100"))
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        samples = wait_for(lambda: (s := scrape(port)) and
                           metric(s, "streamdrift_events_total", outcome="ok") == total and s,
                           60, "all events counted in /metrics")
        batches = metric(samples, "streamdrift_batch_messages_count")
        # some batch held more than 500 messages: more than batch_size (the first is 100)
        assert metric(samples, "streamdrift_batch_messages_bucket", le="500.0") < batches
        assert metric(samples, "streamdrift_batch_messages_bucket", le="100.0") >= 1
    finally:
        assert stop_service(proc) == 0
