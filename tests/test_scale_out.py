"""Several instances in one group under exactly-once; partitions move, state follows.

Also: a broker restart mid-stream, and poison input at a high rate under exactly-once.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections import Counter
from pathlib import Path

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

from stream.app.synthetic import ModelSpec, events
from stream.config import load_settings

pytestmark = pytest.mark.kafka
ROOT = Path(__file__).resolve().parents[1]

MODELS = [ModelSpec(f"m{i}", {"x": (0.0, 1.0), "y": (5.0, 2.0)}, {"x": 1.5} if i % 2 else {},
                    drift_at=2000 + 300 * i) for i in range(12)]


def expected_per_partition(bootstrap: str, topic: str, n: int, settings) -> list[str]:
    """Replay each partition's messages through its own pipeline (state is per partition)."""
    msgs = read_topic(bootstrap, topic, lambda ms: len(ms) >= n, timeout_s=60)
    by_part: dict[int, list] = {}
    for m in msgs:
        by_part.setdefault(m.partition(), []).append(m)
    ids = []
    for part, ms in by_part.items():
        ms.sort(key=lambda m: m.offset())
        ids += [a["alert_id"] for a in replay_alerts([m.value() for m in ms], topic, part,
                                                     [m.offset() for m in ms], settings)]
    return ids


def all_committed(bootstrap, group, topic, partitions, ends) -> bool:
    return [max(o, 0) for o in committed(bootstrap, group, topic, partitions)] == ends


def ends_of(bootstrap, topic, partitions) -> list[int]:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "ends"})
    try:
        return [c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)]
    finally:
        c.close()


def test_three_instances_then_one_stops_exactly_once(kafka_bootstrap, unique, tmp_path):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 6})
    evs = list(events(MODELS, 6000, seed=3, dt=0.05))
    values, keys = [orjson.dumps(e) for _, e in evs], [m.encode() for m, _ in evs]
    procs = []
    for i in range(3):
        cfg = write_config(tmp_path / f"c{i}.toml", kafka_bootstrap, unique, free_port(),
                           kafka='guarantee = "exactly-once"\ncheckpoint_interval_s = 0.2')
        # dynamic members (no instance_id): a stopped instance leaves the group at once
        procs.append(start_service(cfg, tmp_path / f"i{i}.log"))
    half = len(values) // 2
    produce(kafka_bootstrap, topic, values[:half], keys[:half])
    wait_for(lambda: all("assigned" in (tmp_path / f"i{i}.log").read_text() for i in range(3)), 60,
             "three instances in the group")
    assert stop_service(procs[1]) == 0                # its partitions move to the others
    produce(kafka_bootstrap, topic, values[half:], keys[half:])
    ends = ends_of(kafka_bootstrap, topic, 6)
    try:
        wait_for(lambda: all_committed(kafka_bootstrap, f"g-{unique}", topic, 6, ends), 120,
                 "the two remaining instances to reach the end")
    finally:
        for p in (procs[0], procs[2]):
            assert stop_service(p) == 0
    expected = expected_per_partition(kafka_bootstrap, topic, len(values), load_settings(env={}))
    assert len(expected) >= 6
    got = [a["alert_id"] for a in alerts_of(read_topic(
        kafka_bootstrap, f"alerts-{unique}",
        lambda ms: set(expected) <= {a["alert_id"] for a in alerts_of(ms)}, timeout_s=60))]
    assert Counter(got) == Counter(expected)          # nothing lost, nothing twice
    moved = sum("restored" in (tmp_path / f"i{i}.log").read_text().split("assigned", 2)[-1]
                for i in (0, 2))
    assert moved >= 1


def test_broker_restart_mid_stream_service_reconnects(kafka_bootstrap, unique, tmp_path):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    values = [orjson.dumps(e) for _, e in events(MODELS[:4], 5000, seed=4)]
    produce(kafka_bootstrap, topic, values[:10_000])
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       kafka='instance_id = "solo"')
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1)[0] >= 5_000, 60, "progress")
        port = kafka_bootstrap.rpartition(":")[2]
        env = {**os.environ, "KAFKA_PORT": port, "KAFKA_FRESH": "0"}     # the restart keeps the data
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka"), "stop"], check=True, env=env, timeout=120)
        time.sleep(2)                                  # the broker is really gone for a while
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka"), "start"], check=True, env=env, timeout=300)
        produce(kafka_bootstrap, topic, values[10_000:])
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1)[0] == len(values), 180,
                 "the service to continue after the broker came back")
        assert proc.poll() is None
    finally:
        assert stop_service(proc) == 0


def test_poison_every_tenth_message_under_exactly_once(kafka_bootstrap, unique, tmp_path):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 2})
    good = [orjson.dumps(e) for _, e in events(MODELS[:2], 9000, seed=5)]
    values = [b"{broken" if i % 10 == 9 else v for i, v in enumerate(good)]
    bad = sum(v == b"{broken" for v in values)
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       kafka='guarantee = "exactly-once"\ninstance_id = "p"')
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        produce(kafka_bootstrap, topic, values)
        ends = ends_of(kafka_bootstrap, topic, 2)
        wait_for(lambda: all_committed(kafka_bootstrap, f"g-{unique}", topic, 2, ends), 120, "no stall")
    finally:
        assert stop_service(proc) == 0
    dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= bad, timeout_s=60)
    assert len(dead) == bad                            # committed with their transactions, once
    assert {dict(m.headers())["streamdrift.reason"] for m in dead} == {b"invalid_json"}

