"""Incremental rebalancing (cooperative-sticky, and the consumer group protocol of KIP-848) under
both guarantees: instances join while another is killed with -9 and comes back; every alert
and dead letter of the stream comes out (exactly-once: each exactly once)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter

import orjson
import pytest
from confluent_kafka import Consumer, ConsumerGroupState, Producer
from confluent_kafka.admin import AdminClient
from kafka_helpers import (
    alerts_of,
    create_topics,
    free_port,
    produce,
    read_topic,
    start_service,
    stop_service,
    wait_for,
    write_config,
)
from test_scale_out import all_committed, ends_of, expected_per_partition

from stream.app.synthetic import ModelSpec, events
from stream.config import load_settings

pytestmark = pytest.mark.kafka

MODELS = [ModelSpec(f"m{i}", {"x": (0.0, 1.0), "y": (5.0, 2.0)}, {"x": 1.5} if i % 2 else {},
                    drift_at=2000 + 300 * i, drift_until=4500 + 300 * i if i % 4 == 1 else None)
          for i in range(8)]
PROTOCOLS = {"cooperative-sticky": '"partition.assignment.strategy" = "cooperative-sticky"',
             "consumer": '"group.protocol" = "consumer"'}


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
@pytest.mark.parametrize("protocol", list(PROTOCOLS))
def test_joins_and_a_kill_under_incremental_rebalancing(kafka_bootstrap, unique, tmp_path, protocol,
                                                        guarantee):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 4})
    evs = list(events(MODELS, 6000, seed=8, dt=0.05))
    values = [b"{poison" if i % 97 == 96 else orjson.dumps(e) for i, (_, e) in enumerate(evs)]
    keys = [m.encode() for m, _ in evs]
    n_poison = sum(v == b"{poison" for v in values)

    def config(name: str):
        cfg = write_config(tmp_path / f"{name}.toml", kafka_bootstrap, unique, free_port(),
                           # checkpoints seldom: the rebalances' own commits are what is tested
                           kafka=f'guarantee = "{guarantee}"\ninstance_id = "{name}"\n'
                                 "checkpoint_interval_s = 5",
                           extra=f"[kafka.client]\n{PROTOCOLS[protocol]}\n")
        cfg.write_text(cfg.read_text().replace("batch_size = 2000", "batch_size = 500"))
        return cfg

    chunks = [(s, s + 3000) for s in range(0, len(values), 3000)]
    producer = threading.Thread(target=lambda: [produce(kafka_bootstrap, topic, values[a:b], keys[a:b])
                                                or time.sleep(0.25) for a, b in chunks])
    log = lambda name, k=0: tmp_path / f"{name}{k}.log"                           # noqa: E731
    procs = {"a": start_service(config("a"), log("a"))}
    producer.start()
    try:
        wait_for(lambda: "assigned" in log("a").read_text(), 60, "a assigned")
        procs["b"] = start_service(config("b"), log("b"))          # a join: partitions move to b
        wait_for(lambda: "assigned" in log("b").read_text(), 60, "b assigned")
        os.kill(procs["a"].pid, signal.SIGKILL)                    # a dies mid-stream ...
        procs["a"].wait(30)
        procs["c"] = start_service(config("c"), log("c"))          # ... while c joins
        procs["a"] = start_service(config("a"), log("a", 1))       # and a comes back
        wait_for(lambda: all("streamdrift running" in log(n, k).read_text() for n, k in (("c", 0), ("a", 1))),
                 60, "c and a in the group")
        producer.join(120)
        ends = ends_of(kafka_bootstrap, topic, 4)
        wait_for(lambda: all_committed(kafka_bootstrap, f"g-{unique}", topic, 4, ends), 180,
                 "the group to reach the end of the stream")
    finally:
        producer.join(120)
        for name, proc in procs.items():
            if proc.poll() is None:
                assert stop_service(proc) == 0, name
    expected = expected_per_partition(kafka_bootstrap, topic, len(values), load_settings(env={}))
    assert len(expected) >= 5
    got = [a["alert_id"] for a in alerts_of(read_topic(
        kafka_bootstrap, f"alerts-{unique}",
        lambda ms: set(expected) <= {a["alert_id"] for a in alerts_of(ms)}, timeout_s=60))]
    def sources_of(dead: list) -> Counter:
        return Counter((dict(m.headers())["streamdrift.source.partition"],
                        dict(m.headers())["streamdrift.source.offset"]) for m in dead)

    # (at-least-once: read until every source is seen, whatever the repeats read before them)
    dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(sources_of(ms)) >= n_poison,
                      timeout_s=60)
    sources = sources_of(dead)
    assert set(got) == set(expected) and len(sources) == n_poison
    if guarantee == "exactly-once":                 # nothing twice (read_committed)
        assert Counter(got) == Counter(expected)
        assert max(sources.values()) == 1 and len(dead) == n_poison


def test_an_instance_goes_on_while_a_rebalance_waits_for_a_dead_member(kafka_bootstrap, unique, tmp_path):
    """A static member dies, then a new member joins: the rebalance waits for the dead one's
    session to time out (20 s), and the coordinator answers no commit of the instance (its
    pending join first). The instance keeps processing meanwhile, and its /metrics answer."""
    topic, group = f"events-{unique}", f"g-{unique}"
    create_topics(kafka_bootstrap, {topic: 4})
    port = free_port()
    cfg = write_config(tmp_path / "b.toml", kafka_bootstrap, unique, port, kafka="checkpoint_interval_s = 1",
                       extra='[kafka.client]\n"partition.assignment.strategy" = "cooperative-sticky"\n')
    values = [orjson.dumps(e) for _, e in events(MODELS, 4000, seed=3, dt=0.05)]
    done = threading.Event()

    def produce_steadily():                            # ~5k events/s until the test ends
        p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
        i = 0
        while not done.is_set():
            for _ in range(100):
                p.produce(topic, values[i % len(values)], key=f"m{i % 8}".encode())
                i += 1
            p.poll(0)
            time.sleep(0.02)
        p.flush(30)

    def processed() -> float | None:                  # None: /metrics did not answer
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
        except OSError:
            return None
        return sum(float(v) for v in re.findall(r"^streamdrift_events_total\{[^}]*\} (\S+)", text, re.M))

    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})

    def rebalancing() -> bool:
        state = admin.describe_consumer_groups([group])[group].result(timeout=10).state
        return state in (ConsumerGroupState.PREPARING_REBALANCING, ConsumerGroupState.COMPLETING_REBALANCING)

    member = {"bootstrap.servers": kafka_bootstrap, "group.id": group,
              "partition.assignment.strategy": "cooperative-sticky"}
    producer = threading.Thread(target=produce_steadily)
    producer.start()
    b = start_service(cfg, tmp_path / "b.log")
    dead = subprocess.Popen([sys.executable, "-c", f"""
from confluent_kafka import Consumer
c = Consumer({{**{member!r}, "group.instance.id": "dead", "session.timeout.ms": 20000}})
c.subscribe([{topic!r}])
while not c.assignment():
    c.poll(0.2)
print("assigned", flush=True)
while True:
    c.poll(0.2)
"""], stdout=subprocess.PIPE, text=True)
    joiner = Consumer(member)
    try:
        assert dead.stdout.readline().strip() == "assigned"
        wait_for(lambda: (processed() or 0) > 0 and not rebalancing(), 60, "the group to settle")
        dead.kill()                                    # (a static member: no leave, no rebalance yet)
        dead.wait(30)
        joiner.subscribe([topic])
        wait_for(lambda: joiner.poll(0.1) is None and rebalancing(), 30, "a rebalance")
        before = processed()
        assert before is not None, "/metrics unanswered while the group rebalances"
        wait_for(lambda: (processed() or 0) >= before + 10_000, 60, "the instance to go on processing")
        assert rebalancing(), "the rebalance ended first: the test showed nothing"
    finally:
        done.set()
        producer.join(60)
        joiner.close()
        dead.kill()
        assert stop_service(b) == 0
