"""Scale-out: one group, 1 then 2 `streamdrift run` instances on a 4-partition topic.

    python bench/scale.py [--events 600000] [--features 10] [--models 8] [--partitions 4]
                          [--batch 5000] [--repeat 2]

Workload: bench/e2e.py's events (F features, a score), models round-robin, each model's
events on one partition (partition = model index mod partitions), pre-produced to a fresh
topic. Each round starts a fresh group of N instances (N = 1, then 2) on its own copy of the
topic and measures events / wall time from the moment every instance has processed a batch
(all of them have partitions then) to the last event (counts summed from every instance's
/metrics), and each instance's busy rate (its events / the sum of its batch times).
The broker runs on the same machine and shares its cores with the instances: on 2 cores,
two instances and the broker compete for them, so the figure is what this machine gives,
not what two machines would.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from confluent_kafka import Producer

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests"))

from e2e import make_values  # noqa: E402
from kafka_helpers import create_topics, free_port, write_config  # noqa: E402


def _metric(port: int, prefix: str) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def produce_partitioned(bootstrap: str, topic: str, values: list[bytes], models: int,
                        partitions: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for i, v in enumerate(values):
        m = i % models
        while True:
            try:
                p.produce(topic, value=v, key=f"m{m}".encode(), partition=m % partitions)
                break
            except BufferError:
                p.poll(0.1)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def group_rate(values: list[bytes], n_instances: int, args: argparse.Namespace) -> tuple[float, list[float]]:
    """(events/s of the group, wall, once every instance works; events/s of busy time per
    instance)."""
    unique = uuid.uuid4().hex[:8]
    topic = f"events-{unique}"
    create_topics(args.bootstrap, {topic: args.partitions})
    produce_partitioned(args.bootstrap, topic, values, args.models, args.partitions)
    ok, busy = 'streamdrift_events_total{outcome="ok"}', "streamdrift_batch_seconds_sum"
    procs, ports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for k in range(n_instances):
                port = free_port()
                cfg = write_config(Path(tmp) / f"c{k}.toml", args.bootstrap, unique, port,
                                   kafka=f'create_topics = false\ninstance_id = "i{k}"')
                cfg.write_text(cfg.read_text().replace("batch_size = 2000", f"batch_size = {args.batch}"))
                procs.append(subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", str(cfg)],
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                              cwd=ROOT, env={**os.environ}))
                ports.append(port)
            deadline = time.monotonic() + 900

            def done() -> float:
                return sum(_metric(p, ok) for p in ports)

            while min(_metric(p, ok) for p in ports) <= 0:
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no progress"
                assert done() < len(values), "one instance processed everything: raise --events"
                time.sleep(0.05)
            t_first, first = time.perf_counter(), done()
            while done() < len(values):
                assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "no progress"
                time.sleep(0.05)
            elapsed = time.perf_counter() - t_first
            per = [(_metric(p, ok), _metric(p, busy)) for p in ports]
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(60)
    return (len(values) - first) / elapsed, [n / b if b else 0.0 for n, b in per]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=600_000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--models", type=int, default=8)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    values = make_values(args.events, args.features, models=args.models)
    print(f"events={args.events} features={args.features} models={args.models} "
          f"partitions={args.partitions} cores={os.cpu_count()} (the broker on the same cores)")
    rounds = []
    for _ in range(args.repeat):
        one, busy1 = group_rate(values, 1, args)
        two, busy2 = group_rate(values, 2, args)
        rounds.append((one, two))
        print(f"  1 instance {one:9,.0f} events/s (busy {busy1[0]:9,.0f}/s)   "
              f"2 instances {two:9,.0f} events/s (busy per instance "
              + ", ".join(f"{b:,.0f}/s" for b in busy2) + f")   = {two / one:.2f}x")
    ratios = sorted(b / a for a, b in rounds)
    print(f"2 instances / 1: {float(np.median(ratios)):.2f}x ({ratios[0]:.2f}-{ratios[-1]:.2f}x)")


if __name__ == "__main__":
    main()
