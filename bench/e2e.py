"""End-to-end events/s of `replay` and `run`, next to two baselines measured in the same run.

    python bench/e2e.py [--events 100000] [--features 10 50] [--no-kafka]

Workload: row-per-event JSON, one model, F numeric features + a numeric prediction, N(0, 1)
with a shift of the first feature halfway. Baselines:
  floor  orjson.loads of each message and nothing else (decode-only)
  naive  orjson.loads + river's ADWIN and PageHinkley updated per value (what a simple
         service would do), measured on a prefix and reported per event
replay   the pipeline over the messages in batches (in process, as `streamdrift replay` does)
run      `streamdrift run` as a process against the local broker (scripts/kafka): events
         pre-produced to a fresh topic; rate = events / time until all offsets are committed
         (wall, includes start-up and group join) and events / sum of batch times (busy)
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
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from river import drift  # noqa: E402

from stream.config import load_settings  # noqa: E402
from stream.events import Message  # noqa: E402
from stream.pipeline import Pipeline  # noqa: E402


def make_values(n: int, f: int, seed: int = 0) -> list[bytes]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[n // 2:, 0] += 1.0
    pred = rng.random(n)
    return [orjson.dumps({"model": "m", "id": str(i), "ts": 1.7e9 + i * 0.001,
                          "features": {f"f{k}": float(X[i, k]) for k in range(f)},
                          "prediction": float(pred[i])}) for i in range(n)]


def floor_rate(values: list[bytes]) -> float:
    t = time.perf_counter()
    for v in values:
        orjson.loads(v)
    return len(values) / (time.perf_counter() - t)


def naive_rate(values: list[bytes]) -> float:
    dets: dict[str, tuple] = {}
    t = time.perf_counter()
    for v in values:
        ev = orjson.loads(v)
        items = list(ev["features"].items()) + [("prediction", ev["prediction"])]
        for name, x in items:
            d = dets.get(name)
            if d is None:
                d = dets[name] = (drift.ADWIN(), drift.PageHinkley())
            d[0].update(x)
            d[1].update(x)
    return len(values) / (time.perf_counter() - t)


def replay_rate(values: list[bytes], batch: int = 5000) -> float:
    pipeline = Pipeline(load_settings(env={}))
    msgs = [Message(v, "bench", 0, i, 0.0) for i, v in enumerate(values)]
    t = time.perf_counter()
    for s in range(0, len(msgs), batch):
        pipeline.process(msgs[s:s + batch])
    return len(msgs) / (time.perf_counter() - t)


def run_rate(values: list[bytes], bootstrap: str) -> tuple[float, float]:
    from kafka_helpers import committed, create_topics, free_port, produce, wait_for, write_config

    unique = uuid.uuid4().hex[:8]
    topic = f"events-{unique}"
    create_topics(bootstrap, {topic: 1})
    produce(bootstrap, topic, values)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "c.toml", bootstrap, unique, port)
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ})
        try:
            wait_for(lambda: committed(bootstrap, f"g-{unique}", topic, 1)[0] >= len(values), 600,
                     "all events committed", interval_s=0.05)
            wall = time.perf_counter() - t
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            busy = sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("streamdrift_batch_seconds_sum"))
        finally:
            proc.terminate()
            proc.wait(60)
    return len(values) / wall, len(values) / busy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--features", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--naive-events", type=int, default=10_000)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--no-kafka", action="store_true")
    args = ap.parse_args()
    for f in args.features:
        values = make_values(args.events, f)
        floor = floor_rate(values)
        naive = naive_rate(values[: args.naive_events])
        replay = replay_rate(values)
        line = (f"features={f:3d} events={args.events}  floor {floor:9,.0f}/s  naive {naive:8,.0f}/s  "
                f"replay {replay:9,.0f}/s ({replay / floor:4.0%} of floor, {replay / naive:4.1f}x naive)")
        if not args.no_kafka:
            wall, busy = run_rate(values, args.bootstrap)
            line += (f"  run {wall:9,.0f}/s wall ({wall / floor:4.0%} of floor, {wall / naive:4.1f}x naive),"
                     f" {busy:9,.0f}/s busy")
        print(line, flush=True)


if __name__ == "__main__":
    main()
