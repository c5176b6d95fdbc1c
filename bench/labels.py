"""What labels cost: replay with a label for every event vs the same events alone, same run.

    python bench/labels.py [--events 120000] [--features 10] [--delay 2000] [--repeat 3]

Workload: bench/e2e.py's events (one model, F features, a score); with labels, each event's
label (0/1, agreeing with the score 90% of the time) arrives `--delay` events after it, in the
same stream, as `streamdrift replay --labels` merges them. Each round feeds the two pipelines
batch by batch in turn (this machine's speed drifts within seconds); rates are events/s, the
ratio is per round, printed as median (lowest-highest).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from e2e import make_values  # noqa: E402

from stream.config import load_settings  # noqa: E402
from stream.pipeline import Pipeline  # noqa: E402
from stream.types import Message  # noqa: E402


def streams(n: int, f: int, delay: int) -> tuple[list[Message], list[list[Message]]]:
    """The events alone, and per event the messages that arrive with it (itself, then the
    label of the event `delay` before)."""
    values = make_values(n, f)
    rng = np.random.default_rng(1)
    events, merged = [], []
    for i, v in enumerate(values):
        m = Message(v, "events", 0, i, 0.0)
        events.append(m)
        arrivals = [m]
        if i >= delay:
            j = i - delay
            score = orjson.loads(values[j])["prediction"]
            label = int((score >= 0.5) == (rng.random() < 0.9))
            arrivals.append(Message(orjson.dumps({"model": "m", "id": str(j), "label": label,
                                                  "ts": 1.7e9 + i * 0.001}), "labels", 0, i, 0.0))
        merged.append(arrivals)
    return events, merged


def round_rates(events: list[Message], merged: list[list[Message]], batch: int) -> tuple[float, float]:
    settings = load_settings(env={}, overrides={"limits.max_message_bytes": 64 << 20})
    alone, labeled = Pipeline(settings), Pipeline(settings, label_topics={"labels"})
    spent = [0.0, 0.0]
    for s in range(0, len(events), batch):
        part = events[s:s + batch]
        with_labels = [m for arrivals in merged[s:s + batch] for m in arrivals]
        t = time.perf_counter()
        alone.process(part)
        spent[0] += time.perf_counter() - t
        t = time.perf_counter()
        labeled.process(with_labels)
        spent[1] += time.perf_counter() - t
    return len(events) / spent[0], len(events) / spent[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=120_000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--delay", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=5000, help="events a batch (their labels come along)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    events, merged = streams(args.events, args.features, args.delay)
    rounds = [round_rates(events, merged, args.batch) for _ in range(args.repeat)]
    ratios = sorted(b / a for a, b in rounds)
    alone = float(np.median([a for a, _ in rounds]))
    labeled = float(np.median([b for _, b in rounds]))
    print(f"events={args.events} features={args.features} label delay={args.delay} events  "
          f"events alone {alone:9,.0f}/s  with a label per event {labeled:9,.0f} events/s = "
          f"{ratios[len(ratios) // 2]:.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%}) of the events-only rate")


if __name__ == "__main__":
    main()
