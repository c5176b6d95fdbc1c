"""Time to restore detector state from the changelog topic (local broker, scripts/kafka).

    python bench/restore.py [--models 500] [--signals 100] [--values 1500] [--partitions 1 16]

Builds `models` models of `signals` signals each (ADWIN + Page-Hinkley per signal, so
2 x models x signals detector columns), feeds each signal `values` values, checkpoints them
to a fresh changelog topic of each partition count (models round-robin over the partitions,
as shards of that many input partitions), then times the restore of all those shards at
once, as an instance does when it is assigned them.
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


def checkpoint(args, settings, u: str, partitions: int, pipeline: Pipeline) -> tuple[Changelog, float, int]:
    """Write the models' state records round-robin over the changelog's partitions."""
    changelog = Changelog(f"bench-{u}-p{partitions}-changelog", partitions)
    create_topics(args.bootstrap, {changelog.topic: partitions})
    producer = Producer({"bootstrap.servers": args.bootstrap, "message.max.bytes": 64 << 20,
                         "linger.ms": 20})
    t = time.perf_counter()
    size = 0
    for i, name in enumerate(pipeline.models):
        blob = dump_model(pipeline, name)
        size += len(blob)
        part = i % partitions
        producer.produce(changelog.topic, partition=part, key=f"bench-events-{u}:{part}:{name}".encode(),
                         value=blob, headers=[("streamdrift.offset", b"100")])
        producer.poll(0)
    producer.flush(60)
    return changelog, time.perf_counter() - t, size


def restore(settings, u: str, changelog: Changelog) -> tuple[int, int, float]:
    """(models, detector columns, seconds) of restoring every partition's shard at once."""
    shards = {(f"bench-events-{u}", p): Shard(Pipeline(settings)) for p in range(changelog.partitions)}
    t = time.perf_counter()
    reader = Consumer(restore_config(settings))
    n = changelog.read(reader, shards, {key: 100 for key in shards})
    reader.close()
    seconds = time.perf_counter() - t
    return n, sum(s.pipeline.n_detectors for s in shards.values()), seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", type=int, default=500)
    ap.add_argument("--signals", type=int, default=100)
    ap.add_argument("--values", type=int, default=1500)
    ap.add_argument("--partitions", type=int, nargs="+", default=[1, 16])
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
        mon.states.add(grown)
        for det in mon.detectors.values():
            det.add_features(grown)
        X = rng.normal(size=(args.values, args.signals))
        Z = mon.signals.standardize(X)
        for det in mon.detectors.values():
            det.update(Z)
    build = time.perf_counter() - t
    print(f"models={args.models} signals={args.signals} (built in {build:.1f}s)")
    for partitions in args.partitions:
        changelog, write, size = checkpoint(args, settings, u, partitions, pipeline)
        n, detectors, seconds = restore(settings, u, changelog)
        print(f"partitions={partitions:3d}  state {size / 1e6:.1f} MB ({size / max(detectors, 1):.0f} B per "
              f"detector column)  checkpoint {write:.2f}s  restore {seconds:.2f}s: {n} models, "
              f"{detectors:,} detector columns ({detectors / seconds:,.0f} columns/s)", flush=True)


if __name__ == "__main__":
    main()
