"""kill -9 at random points while a stream with known drift is produced; restart each time.

exactly-once: every expected alert appears exactly once on the alerts topic (read_committed)
and no other; at-least-once: every expected alert appears, duplicates share their alert_id.
Expected = the alerts of one uninterrupted replay of the same stream: state was restored
from the changelog, not relearned.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter

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

from stream.app.synthetic import DEMO_MODELS, ModelSpec, events

pytestmark = pytest.mark.kafka

MODELS = DEMO_MODELS + [ModelSpec("late", {"x": (0.0, 1.0)}, {"x": 2.0}, drift_at=14_000),
                        ModelSpec("blip", {"y": (5.0, 1.0), "z": (0.0, 1.0)}, {"y": 1.5, "z": -1.0},
                                  drift_at=4_000, drift_until=9_000)]
KILLS = 4


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_kill_dash_nine_loses_and_duplicates_nothing(kafka_bootstrap, unique, tmp_path, guarantee):
    topic = f"events-{unique}"
    create_topics(kafka_bootstrap, {topic: 1})
    values = [orjson.dumps(e) for _, e in events(MODELS, 16_000, seed=7, dt=0.5)]   # 9 hours
    expected = replay_alerts(values, topic)
    expected_ids = [a["alert_id"] for a in expected]
    assert len(expected_ids) >= 6 and {a["status"] for a in expected} == {"firing", "resolved"}

    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       kafka=f'guarantee = "{guarantee}"\ninstance_id = "only"\ncheckpoint_interval_s = 0.2')
    cfg.write_text(cfg.read_text().replace("batch_size = 2000", "batch_size = 500"))

    # the app produces steadily while the service is killed and restarted
    producer = threading.Thread(target=lambda: [produce(kafka_bootstrap, topic, values[s:s + 4000])
                                                or time.sleep(0.3) for s in range(0, len(values), 4000)])
    producer.start()
    rng = random.Random(unique)
    kills = 0
    for k in range(KILLS + 1):
        log = tmp_path / f"run{k}.log"
        proc = start_service(cfg, log)
        wait_for(lambda log=log: "assigned" in log.read_text(), 60, "partition assignment")
        if k == KILLS:
            break
        time.sleep(rng.uniform(0.2, 1.5))           # a random point of the stream
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        kills += 1
    producer.join(120)
    try:
        wait_for(lambda: committed(kafka_bootstrap, f"g-{unique}", topic, 1)[0] == len(values), 120,
                 "the last run to reach the end of the stream")
    finally:
        assert stop_service(proc) == 0
    got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                               lambda ms: set(expected_ids) <= {a["alert_id"] for a in alerts_of(ms)},
                               timeout_s=60))
    ids = [a["alert_id"] for a in got]
    counts = Counter(ids)
    duplicates = sum(c - 1 for c in counts.values())
    print(f"{guarantee}: kills={kills} expected={len(expected_ids)} seen={len(ids)} duplicates={duplicates}")
    assert set(ids) == set(expected_ids)
    if guarantee == "exactly-once":
        assert ids == expected_ids
    else:
        by_id = {}
        for a in got:
            assert by_id.setdefault(a["alert_id"], a) == a
