"""Helpers for the integration tests: topics, producing, reading topics, running the CLI."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import orjson
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[1]


def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(t, p, 1) for t, p in topics.items()]).values():
        fut.result(timeout=30)


def produce(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10})
    for i, v in enumerate(values):
        key = None if keys is None else keys[i]
        while True:
            try:
                p.produce(topic, value=v, key=key)
                break
            except BufferError:          # local queue full (100k messages): let it drain
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def read_topic(bootstrap: str, topic: str, until, timeout_s: float = 60.0) -> list:
    """Read `topic` from the start until `until(messages)` is true or the time is up."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    out = []
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not until(out):
            for m in c.consume(500, timeout=0.5):
                if m.error() is None:
                    out.append(m)
    finally:
        c.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    """Committed offsets of a group; -1 for each while the coordinator is unavailable (e.g.
    just after a broker restart), so that polling callers simply try again."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    except KafkaException:
        return [-1] * partitions
    finally:
        c.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(path: Path, bootstrap: str, unique: str, metrics_port: int, extra: str = "",
                 kafka: str = "") -> Path:
    """A config with unique topics and group; `kafka` adds lines to [kafka], `extra` tables."""
    path.write_text(f"""[kafka]
{kafka}
bootstrap = "{bootstrap}"
group_id = "g-{unique}"
events_topics = ["events-{unique}"]
alerts_topic = "alerts-{unique}"
dead_letter_topic = "dead-{unique}"
batch_size = 2000

[metrics]
port = {metrics_port}

{extra}
""")
    return path


def start_service(config: Path, log: Path) -> subprocess.Popen:
    fh = open(log, "wb")
    return subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", str(config)],
                            stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ})


def stop_service(proc: subprocess.Popen, timeout_s: float = 60) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout_s)


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def alerts_of(messages) -> list[dict]:
    return [orjson.loads(m.value()) for m in messages]


def replay_alerts(values: list[bytes], topic: str, partition: int = 0, offsets: list[int] | None = None,
                  settings=None, batch: int = 1000) -> list[dict]:
    """The alerts one uninterrupted pipeline raises over these message values (offsets 0.. unless
    given), in batches of `batch`: what the service must publish for that partition."""
    from stream.config import load_settings
    from stream.ingest.rows import Message
    from stream.pipeline import Pipeline

    pipeline = Pipeline(settings or load_settings(env={}))
    offsets = offsets if offsets is not None else list(range(len(values)))
    msgs = [Message(v, topic, partition, o, 0.0) for v, o in zip(values, offsets, strict=True)]
    alerts: list[dict] = []
    for s in range(0, len(msgs), batch):
        alerts += pipeline.process(msgs[s:s + batch]).alerts
    return alerts
