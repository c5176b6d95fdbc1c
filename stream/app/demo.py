"""`streamdrift demo`: a newcomer's first minute, on a real local Kafka broker.

Starts the broker with scripts/kafka if none answers, creates fresh demo topics, runs
`streamdrift run` as a child process, produces a synthetic stream of three models with one
fault of each kind the service reports (a drift that stays firing, one that ends and
resolves, a feature that goes null, accuracy that decays as late labels show), prints alerts
as they arrive with a progress line, and stops cleanly (SIGTERM to the service) when the
expected alerts are in, after `duration_s`, or on Ctrl-C.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .synthetic import ModelSpec, events, label_of

KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka"
N_PER_MODEL = 12_000
LABEL_DELAY = 1_500             # a model's label comes this many of its events after the event
MODELS = [
    ModelSpec("readmission", {"age": (61.0, 12.0), "los_days": (4.5, 2.0), "n_meds": (9.0, 3.0)},
              {"age": 1.0}, drift_at=5_000, categories={"insurance": ["medicare", "private", "medicaid"]}),
    ModelSpec("fraud", {"amount": (80.0, 40.0), "tx_per_day": (3.0, 1.5)}, {"amount": 1.5},
              drift_at=4_000, drift_until=7_000),
    ModelSpec("churn", {"tenure_months": (30.0, 10.0), "spend": (55.0, 20.0)}, {}, drift_at=10**9,
              missing_from={"spend": 6_000}, label_error=(0.1, 0.4, 5_000)),
]
# what the demo shows: (model, signal, status, check)
EXPECTED = {("readmission", "feature:age", "firing", None),           # a drift that stays
            ("fraud", "feature:amount", "firing", None),              # one that ends...
            ("fraud", "feature:amount", "resolved", None),            # ...and resolves
            ("churn", "feature:spend", "firing", "missing"),          # a feature gone null
            ("churn", "error", "firing", None)}                       # late labels: accuracy


def broker_answers(bootstrap: str) -> bool:
    """True when a Kafka cluster answers a metadata request at `bootstrap` within 3 s."""
    try:
        # (quiet: "no broker" is an answer here, not an error for librdkafka to log)
        AdminClient({"bootstrap.servers": bootstrap, "error_cb": lambda e: None,
                     "log_level": 0}).list_topics(timeout=3)
        return True
    except KafkaException:
        return False


def _ensure_broker(bootstrap: str) -> None:
    if broker_answers(bootstrap):
        return
    if not KAFKA_SCRIPT.exists():
        raise SystemExit(f"demo: no Kafka answers at {bootstrap}; start one (see README)")
    host, _, port = bootstrap.rpartition(":")
    print(f"demo: no Kafka at {bootstrap}; starting one with {KAFKA_SCRIPT} start ...", flush=True)
    env = {**os.environ, "KAFKA_PORT": port}
    subprocess.run(["bash", str(KAFKA_SCRIPT), "start"], check=True, env=env)


def _fmt_alert(a: dict, t0: float) -> str:
    s = a["stats"]
    what = a.get("check") or a["detector"]
    if "missing_rate_after" in s:
        detail = f"missing {s['missing_rate_before']:.0%} -> {s['missing_rate_after']:.0%}"
    elif "accuracy_after" in s:
        detail = f"accuracy {s['accuracy_before']:.2f} -> {s['accuracy_after']:.2f}"
    elif "mean_after" in s:
        detail = f"mean {s['mean_before']:.2f} -> {s['mean_after']:.2f}"
    else:
        detail = ""
    if a["status"] == "resolved":
        detail = f"back within the reference ({a.get('reason', '')})"
    return (f"[{time.monotonic() - t0:6.1f}s] {a['status'].upper():8s} {a['severity']:8s} {a['kind']:17s} "
            f"{a['model']:12s} {a['signal']:15s} {what:12s} {detail} ({s.get('effect_size', 0):+.2f} sd)"
            f"  at {a['at']['topic'].rsplit('-', 1)[-1]}[{a['at']['partition']}]@{a['at']['offset']}")


def demo(bootstrap: str, duration_s: float = 120.0, metrics_port: int = 9108) -> int:
    _ensure_broker(bootstrap)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    topics = {"events": f"demo-{stamp}-events", "labels": f"demo-{stamp}-labels",
              "alerts": f"demo-{stamp}-alerts", "dead": f"demo-{stamp}-dead-letters"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topics["events"], 3, -1), NewTopic(topics["labels"], 3, -1),
                                    NewTopic(topics["alerts"], 1, -1),
                                    NewTopic(topics["dead"], 1, -1)]).values():
        fut.result()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[kafka]
bootstrap = "{bootstrap}"
group_id = "demo-{stamp}"
events_topics = ["{topics['events']}"]
labels_topic = "{topics['labels']}"
alerts_topic = "{topics['alerts']}"
dead_letter_topic = "{topics['dead']}"

[metrics]
port = {metrics_port}
""")
    cfg.close()
    print(f"demo: topics {topics['events']} -> {topics['alerts']}; config {cfg.name}")
    service = subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", cfg.name],
                               stderr=subprocess.PIPE, text=True)
    log_lines: list[str] = []
    threading.Thread(target=lambda: log_lines.extend(service.stderr), daemon=True).start()
    print(f"demo: service started (pid {service.pid}); metrics at http://127.0.0.1:{metrics_port}/metrics")
    print(f"demo: producing {N_PER_MODEL * len(MODELS)} events of {len(MODELS)} models, and churn's labels "
          f"{LABEL_DELAY} of its events late. Faults: readmission.age +1 sd from its event 5000 (stays); "
          "fraud.amount +1.5 sd from 4000 to 7000 (resolves); churn.spend null from 6000; churn's "
          "labels: 10% wrong, 40% from 5000\n")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    produced = [0]

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        now = time.time() - N_PER_MODEL * len(MODELS) * 0.001
        specs = {spec.name: spec for spec in MODELS}
        rng = np.random.default_rng(2)
        waiting: dict[str, list[dict]] = {}           # events whose label is still to come
        for i, (model, ev) in enumerate(events(MODELS, N_PER_MODEL, seed=1, t0=now, dt=0.001)):
            if stop.is_set():
                break
            producer.produce(topics["events"], key=model.encode(), value=orjson.dumps(ev))
            if specs[model].label_error is not None:
                queue = waiting.setdefault(model, [])
                queue.append(ev)
                if len(queue) > LABEL_DELAY:
                    old = queue.pop(0)
                    k = int(old["id"].rsplit("-", 1)[1])
                    label = {"model": model, "id": old["id"], "ts": ev["ts"],
                             "label": label_of(specs[model], k, old["prediction"], rng)}
                    producer.produce(topics["labels"], key=model.encode(), value=orjson.dumps(label))
            produced[0] = i + 1
            if i % 500 == 499:
                producer.poll(0)
                time.sleep(0.2)          # about 2.5k events/s: slow enough to watch
        producer.flush(30)

    t0 = time.monotonic()
    producer_thread = threading.Thread(target=produce, daemon=True)
    producer_thread.start()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-viewer-{stamp}",
                         "auto.offset.reset": "earliest"})
    consumer.subscribe([topics["alerts"]])
    seen: set[tuple] = set()
    n_alerts = 0
    total = N_PER_MODEL * len(MODELS)
    done_at = None
    try:
        while not stop.is_set() and time.monotonic() - t0 < duration_s:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                alert = orjson.loads(msg.value())
                n_alerts += 1
                seen.add((alert["model"], alert["signal"], alert["status"], alert.get("check")))
                sys.stdout.write("\r\033[K" + _fmt_alert(alert, t0) + "\n")
            sys.stdout.write(f"\r\033[Kproduced {produced[0]:>6}/{total} events | alerts {n_alerts} | "
                             f"metrics http://127.0.0.1:{metrics_port}/metrics | Ctrl-C stops")
            sys.stdout.flush()
            if service.poll() is not None:
                print("\ndemo: the service exited unexpectedly:\n" + "".join(log_lines[-20:]))
                return 1
            if produced[0] >= total and not producer_thread.is_alive() and EXPECTED <= seen:
                done_at = done_at or time.monotonic()
                if time.monotonic() - done_at > 3:
                    break
    finally:
        stop.set()
        consumer.close()
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
        os.unlink(cfg.name)
    missing = EXPECTED - seen
    print(f"\n\ndemo: {n_alerts} alerts; {len(EXPECTED & seen)} of the {len(EXPECTED)} expected seen; "
          f"missed: {sorted(missing, key=str) or 'none'}; service stopped (exit {service.returncode})")
    print(f"demo: the broker keeps running (stop it with: bash {KAFKA_SCRIPT} stop)")
    return 0 if not missing and service.returncode == 0 else 1
