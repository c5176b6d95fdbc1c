"""What labels cost: replay with a label for every event vs the same events alone, same run.

    python bench/labels.py [--events 120000] [--features 10] [--models 1] [--delay 2000]
                           [--repeat 3] [--max-pending 1000000] [--cli] [--run]

Workload: bench/e2e.py's events (F features, a score; round-robin over `--models` models, all
with the same feature names); with labels, each event's label (0/1, agreeing with the score
90% of the time) arrives `--delay` events after it, in the same stream, as `streamdrift replay
--labels` merges them. Each round feeds the two pipelines batch by batch in turn (this
machine's speed drifts within seconds); rates are events/s, the ratio is per round, printed
as median (lowest-highest).

--cli also runs `streamdrift replay` as a process on the events file, with and without the
labels file (merged by time), rounds alternating, rates as it prints them.

--run also measures `streamdrift run` against the local broker (scripts/kafka): the events
pre-produced to their topic and consumed; then each event's label produced to the labels
topic and consumed. The busy time (sum of batch times, from /metrics) of each phase gives the
events-only rate (events / events' time) and the rate with a label per event (events / both
times): in a pre-produced topic a consumer reads the labels topic far ahead of the events
one, so labels would arrive before their predictions; here they come after, as they do.
The producer and the broker share this machine's two cores with the service: the rate is
measured with the labels produced while the service is stopped (after the events, state
committed) and consumed after its restart; the share with them consumed while they are
produced (a fresh topic, another run of the service) is printed beside it.
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


def streams(n: int, f: int, delay: int, models: int = 1) -> tuple[list[Message], list[list[Message]]]:
    """The events alone, and per event the messages that arrive with it (itself, then the
    label of the event `delay` before)."""
    values = make_values(n, f, models=models)
    rng = np.random.default_rng(1)
    events, merged = [], []
    for i, v in enumerate(values):
        m = Message(v, "events", 0, i, 0.0)
        events.append(m)
        arrivals = [m]
        if i >= delay:
            j = i - delay
            event = orjson.loads(values[j])
            label = int((event["prediction"] >= 0.5) == (rng.random() < 0.9))
            arrivals.append(Message(orjson.dumps({"model": event["model"], "id": str(j), "label": label,
                                                  "ts": 1.7e9 + i * 0.001}), "labels", 0, i, 0.0))
        merged.append(arrivals)
    return events, merged


def round_rates(events: list[Message], merged: list[list[Message]], batch: int,
                max_pending: int) -> tuple[float, float]:
    settings = load_settings(env={}, overrides={"limits.max_message_bytes": 64 << 20,
                                                "limits.max_pending_predictions": max_pending})
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


def cli_rates(events: list[Message], labels: list[Message], repeat: int) -> list[tuple[float, float]]:
    """`streamdrift replay` events/s of (the events file alone, with the labels file), per round."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        ev, lb = Path(tmp) / "events.jsonl", Path(tmp) / "labels.jsonl"
        ev.write_bytes(b"\n".join(m.value for m in events) + b"\n")
        lb.write_bytes(b"\n".join(m.value for m in labels) + b"\n")

        def rate(*extra: str) -> float:
            proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(ev), "--out", "/dev/null",
                                   *extra], capture_output=True, check=True, cwd=ROOT)
            return float(proc.stderr.rsplit(b"(", 1)[1].split(b" events/s")[0].replace(b",", b""))

        return [(rate(), rate("--labels", str(lb))) for _ in range(repeat)]


def _metric(port: int, prefix: str) -> float:
    import urllib.request

    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return -1.0
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefix))


def run_rates(events: list[Message], labels: list[Message], bootstrap: str, batch: int
              ) -> tuple[float, float, float, float]:
    """`streamdrift run`: (events/s of the events' busy time; the share of both phases' busy
    time that is the events', with the labels consumed while they are produced; events/s of
    both phases' busy time with the labels produced while the service is stopped and consumed
    after its restart; labels joined of those sent in the latter)."""
    import os
    import subprocess
    import tempfile
    import uuid

    sys.path.insert(0, str(ROOT / "tests"))
    from kafka_helpers import create_topics, free_port, produce, write_config

    busy = "streamdrift_batch_seconds_sum"
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for restart in (False, True):
            unique = uuid.uuid4().hex[:8]
            create_topics(bootstrap, {f"events-{unique}": 1, f"labels-{unique}": 1})
            produce(bootstrap, f"events-{unique}", [m.value for m in events])
            port = free_port()
            cfg = write_config(Path(tmp) / f"{unique}.toml", bootstrap, unique, port,
                               kafka=f'labels_topic = "labels-{unique}"')
            cfg.write_text(cfg.read_text().replace("batch_size = 2000", f"batch_size = {batch}"))

            def start(cfg: Path = cfg) -> subprocess.Popen:
                return subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", str(cfg)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        cwd=ROOT, env={**os.environ})

            def wait(proc: subprocess.Popen, metric: str, count: int, port: int = port) -> None:
                deadline = time.monotonic() + 600
                while _metric(port, metric) < count:
                    assert time.monotonic() < deadline and proc.poll() is None, f"{metric} < {count}"
                    time.sleep(0.1)

            proc = start()
            try:
                wait(proc, 'streamdrift_events_total{outcome="ok"}', len(events))
                events_s = _metric(port, busy)
                if restart:
                    # the producer and the broker share this machine's two cores with the
                    # service: stopped (state and offsets committed), it is not competing
                    proc.terminate()
                    assert proc.wait(60) == 0
                produce(bootstrap, f"labels-{unique}", [m.value for m in labels])
                if restart:
                    proc = start()
                wait(proc, "streamdrift_labels_total", len(labels))
                labels_s = _metric(port, busy) - (0.0 if restart else events_s)
                joined = _metric(port, 'streamdrift_labels_total{outcome="joined"}')
            finally:
                proc.terminate()
                proc.wait(60)
            out.append((events_s, labels_s, joined))
    (ev0, lb0, _), (ev1, lb1, joined) = out
    n = len(events)
    return n / ev1, ev0 / (ev0 + lb0), n / (ev1 + lb1), joined / len(labels)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=120_000)
    ap.add_argument("--features", type=int, default=10)
    ap.add_argument("--models", type=int, default=1, help="events (and their labels) round-robin over models")
    ap.add_argument("--delay", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=5000, help="events a batch (their labels come along)")
    ap.add_argument("--max-pending", type=int, default=1_000_000,
                    help="limits.max_pending_predictions (below --events: the stores run at capacity)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cli", action="store_true", help="also `streamdrift replay` as a process")
    ap.add_argument("--run", action="store_true", help="also `streamdrift run` against the local broker")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    args = ap.parse_args()
    events, merged = streams(args.events, args.features, args.delay, args.models)
    rounds = [round_rates(events, merged, args.batch, args.max_pending) for _ in range(args.repeat)]
    ratios = sorted(b / a for a, b in rounds)
    alone = float(np.median([a for a, _ in rounds]))
    labeled = float(np.median([b for _, b in rounds]))
    print(f"events={args.events} features={args.features} models={args.models} "
          f"label delay={args.delay} events  "
          f"events alone {alone:9,.0f}/s  with a label per event {labeled:9,.0f} events/s = "
          f"{ratios[len(ratios) // 2]:.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%}) of the events-only rate")
    labels = [arrivals[1] for arrivals in merged if len(arrivals) > 1]
    if args.cli:
        rounds = cli_rates(events, labels, args.repeat)
        ratios = sorted(b / a for a, b in rounds)
        print(f"streamdrift replay: events alone {float(np.median([a for a, _ in rounds])):9,.0f}/s  with a "
              f"label per event {float(np.median([b for _, b in rounds])):9,.0f} events/s = "
              f"{ratios[len(ratios) // 2]:.0%} ({ratios[0]:.0%}-{ratios[-1]:.0%}) of the events-only rate")
    if args.run:
        alone, during, after, joined = run_rates(events, labels, args.bootstrap, args.batch)
        print(f"run: events alone {alone:9,.0f}/s (busy)  with a label per event {after:9,.0f} events/s "
              f"= {after / alone:.0%} of the events-only rate  ({joined:.0%} of the labels joined; labels "
              f"consumed while they are produced: {during:.0%})")


if __name__ == "__main__":
    main()
