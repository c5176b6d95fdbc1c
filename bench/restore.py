"""Time to restore detector state from the changelog topic (local broker, scripts/kafka).

    python bench/restore.py [--models 500] [--signals 100] [--values 1500]

Builds `models` models of `signals` signals each (ADWIN + Page-Hinkley per signal, so
2 x models x signals detector columns), feeds each signal `values` values, checkpoints them
to a fresh changelog topic as the service does, then times Service._restore for that shard.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from confluent_kafka import Consumer, Producer  # noqa: E402
from kafka_helpers import create_topics  # noqa: E402

from stream.config import load_settings  # noqa: E402
from stream.kafka.changelog import Changelog, Shard  # noqa: E402
from stream.kafka.clients import restore_config  # noqa: E402
from stream.monitor.model import ModelMonitor  # noqa: E402
from stream.pipeline import Pipeline  # noqa: E402
from stream.state import dump_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=500)
    ap.add_argument("--signals", type=int, default=100)
    ap.add_argument("--values", type=int, default=1500)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    u = uuid.uuid4().hex[:8]
    settings = load_settings(env={}, overrides={"kafka.bootstrap": args.bootstrap,
                                                "kafka.events_topics": [f"bench-events-{u}"],
                                                "kafka.group_id": f"bench-{u}"})
    rng = np.random.default_rng(0)
    pipeline = Pipeline(settings)
    t = time.perf_counter()
    for i in range(args.models):
        mon = pipeline.models[f"m{i}"] = ModelMonitor(f"m{i}", settings)
        grown = mon.signals.ensure([f"feature:f{k}" for k in range(args.signals)])
        for det in mon.detectors.values():
            det.add_features(grown)
        X = rng.normal(size=(args.values, args.signals))
        Z = mon.signals.standardize(X)
        for det in mon.detectors.values():
            det.update(Z)
    build = time.perf_counter() - t
    changelog = Changelog(f"bench-{u}-changelog", 1)
    create_topics(args.bootstrap, {changelog.topic: 1})
    producer = Producer({"bootstrap.servers": args.bootstrap, "message.max.bytes": 64 << 20,
                         "linger.ms": 20})
    t = time.perf_counter()
    size = 0
    for name in pipeline.models:
        blob = dump_model(pipeline, name)
        size += len(blob)
        producer.produce(changelog.topic, partition=0, key=f"bench-events-{u}:0:{name}".encode(),
                         value=blob, headers=[("streamdrift.offset", b"100")])
        producer.poll(0)
    producer.flush(60)
    checkpoint = time.perf_counter() - t
    shards = {(f"bench-events-{u}", 0): Shard(Pipeline(settings))}
    t = time.perf_counter()
    reader = Consumer(restore_config(settings))
    n = changelog.read(reader, shards, {(f"bench-events-{u}", 0): 100})
    reader.close()
    restore = time.perf_counter() - t
    detectors = shards[(f"bench-events-{u}", 0)].pipeline.n_detectors
    print(f"models={n} detector columns={detectors} state={size / 1e6:.1f} MB "
          f"({size / detectors:.0f} B per detector column)")
    print(f"build {build:.1f}s  checkpoint (serialize + produce) {checkpoint:.2f}s  "
          f"restore {restore:.2f}s ({detectors / restore:,.0f} detector columns/s)")


if __name__ == "__main__":
    main()
