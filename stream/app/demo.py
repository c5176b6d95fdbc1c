"""`streamdrift demo`: a newcomer's first five minutes, on a real local Kafka broker.

Starts the broker with scripts/kafka if none answers, creates fresh demo topics, runs
`streamdrift run` as a child process, produces a synthetic stream of three models (drift in
two of them partway through), prints alerts as they arrive with a progress line, and stops
cleanly (SIGTERM to the service) when the expected alerts are in, after `duration_s`, or on
Ctrl-C.
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

import orjson
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from .synthetic import DEMO_MODELS, events

KAFKA_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kafka"
N_PER_MODEL = 12_000
EXPECTED = {("readmission", "feature:age"), ("fraud", "feature:amount")}


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
    return (f"[{time.monotonic() - t0:6.1f}s] {a['severity'].upper():8s} {a['kind']:16s} "
            f"{a['model']:12s} {a['signal']:22s} by {a['detector']:12s} "
            f"mean {s['mean_before']:.2f} -> {s['mean_after']:.2f} "
            f"({s['effect_size']:+.2f} sd)  at {a['at']['topic']}"
            f"[{a['at']['partition']}]@{a['at']['offset']}")


def demo(bootstrap: str, duration_s: float = 120.0, metrics_port: int = 9108) -> int:
    _ensure_broker(bootstrap)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    topics = {"events": f"demo-{stamp}-events", "alerts": f"demo-{stamp}-alerts",
              "dead": f"demo-{stamp}-dead-letters"}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topics["events"], 3, -1), NewTopic(topics["alerts"], 1, -1),
                                    NewTopic(topics["dead"], 1, -1)]).values():
        fut.result()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".toml", delete=False)
    cfg.write(f"""[kafka]
bootstrap = "{bootstrap}"
group_id = "demo-{stamp}"
events_topics = ["{topics['events']}"]
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
    print(f"demo: producing {N_PER_MODEL * len(DEMO_MODELS)} events of {len(DEMO_MODELS)} models; "
          "drift: readmission.age +1 sd from its event 6000, fraud.amount +1.5 sd from 8000; churn stable\n")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    produced = [0]

    def produce() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
        now = time.time() - N_PER_MODEL * len(DEMO_MODELS) * 0.001
        for i, (model, ev) in enumerate(events(DEMO_MODELS, N_PER_MODEL, seed=1, t0=now, dt=0.001)):
            if stop.is_set():
                break
            producer.produce(topics["events"], key=model.encode(), value=orjson.dumps(ev))
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
    seen: set[tuple[str, str]] = set()
    n_alerts = 0
    total = N_PER_MODEL * len(DEMO_MODELS)
    done_at = None
    try:
        while not stop.is_set() and time.monotonic() - t0 < duration_s:
            msg = consumer.poll(0.2)
            if msg is not None and not msg.error():
                alert = orjson.loads(msg.value())
                n_alerts += 1
                seen.add((alert["model"], alert["signal"]))
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
    print(f"\n\ndemo: {n_alerts} alerts; expected drift found: "
          f"{sorted(EXPECTED & seen)}; missed: {sorted(missing) or 'none'}; service stopped cleanly "
          f"(exit {service.returncode})")
    print(f"demo: the broker keeps running (stop it with: bash {KAFKA_SCRIPT} stop)")
    return 0 if not missing and service.returncode == 0 else 1
