"""End-to-end events/s of `replay` and `run`, next to two baselines measured in the same run.

    python bench/e2e.py [--events 100000] [--run-events 300000] [--features 10 50] [--no-kafka]
                        [--models 1] [--batch 5000] [--max-batch 50000] [--naive-events 0]

Workload: row-per-event JSON, one model (or --models, round-robin), F numeric features + a
numeric prediction, N(0, 1) with a shift of the first feature halfway. In-process rates:
--repeat rounds, each measuring the baselines and replay batch by batch in turn (this machine's
speed drifts by tens of percent within seconds); ratios are per round, printed as median
(lowest-highest), rates as medians over the rounds. Baselines:
  floor  orjson.loads of each message and nothing else (decode-only)
  naive  orjson.loads + river's ADWIN and PageHinkley updated per value (what a simple
         service would do), over the same events as replay (--naive-events: a prefix)
replay   the pipeline over the messages in batches (in process, as `streamdrift replay` does);
         "detectors alone": events / the time the same run spent in the detectors' updates
         (the ceiling of any decoding: for columnar batches, of any input format);
extract  parse and extract only: orjson's parse of joined chunks of the messages and every
         value pulled into float arrays, no checks (less than any validating pipeline does);
         "bound": the most a row-JSON pipeline with these detectors can reach, as a share
         of the floor: 1 / (1/extract + 1/detectors alone)
run      `streamdrift run` as a process against the local broker (scripts/kafka): events
         pre-produced to a fresh topic; rate = events / wall time from the first processed
         batch to the last (read from /metrics), and events / sum of batch times (busy);
         its ratios against the floor and the naive loop measured just before and after it
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
from collections.abc import Callable
from itertools import chain, repeat
from pathlib import Path

import numpy as np
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from river import drift  # noqa: E402

from stream import pipeline as pipeline_module  # noqa: E402
from stream.config import KafkaSettings, load_settings  # noqa: E402
from stream.ingest.rows import Message  # noqa: E402
from stream.pipeline import Pipeline, batch_size, collector_paused  # noqa: E402

MAX_BATCH = KafkaSettings.max_batch_size      # the service's default


def make_values(n: int, f: int, seed: int = 0, models: int = 1, own_names: bool = False
                ) -> list[bytes]:
    """n events of f features; with models > 1, event i belongs to model m{i % models}.
    Feature names f0, f1, ... for every model, or with own_names each model's own
    (m3.f0, ...), as models of different applications have."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, f))
    X[n // 2:, 0] += 1.0
    pred = rng.random(n)
    name = (lambda i: "m") if models == 1 else (lambda i: f"m{i % models}")
    feature_names = [[f"{name(m)}.f{k}" if own_names else f"f{k}" for k in range(f)]
                     for m in range(models)]
    return [orjson.dumps({"model": name(i), "id": str(i), "ts": 1.7e9 + i * 0.001,
                          "features": dict(zip(feature_names[i % models], X[i].tolist(), strict=True)),
                          "prediction": float(pred[i])}) for i in range(n)]


def floor_seconds(values: list[bytes]) -> float:
    """Seconds of orjson.loads of each message and nothing else (the decode-only floor)."""
    t = time.perf_counter()
    for v in values:
        orjson.loads(v)
    return time.perf_counter() - t


def extract_seconds(values: list[bytes], chunk: int = 1024) -> float:
    """Seconds to parse and extract, nothing else: each chunk of messages joined and parsed
    by one orjson call (as the pipeline does), then every feature value and the prediction
    pulled into float arrays by C-level passes, with no checks at all. Less work than any
    pipeline that validates its input must do (the issue measured this at ~71% of the floor).
    With the garbage collector paused, as the pipeline runs."""
    with collector_paused():
        t = time.perf_counter()
        for s in range(0, len(values), chunk):
            docs = orjson.loads(b"[" + b",".join(values[s:s + chunk]) + b"]")
            feats = list(map(dict.get, docs, repeat("features")))
            np.fromiter(chain.from_iterable(map(dict.values, feats)), dtype=np.float64,
                        count=sum(map(len, feats)))
            np.fromiter(map(dict.get, docs, repeat("prediction")), dtype=np.float64, count=len(docs))
        return time.perf_counter() - t


class NaiveLoop:
    """orjson.loads + river's ADWIN and PageHinkley updated per value: what a simple service
    would do. Keeps its detectors between calls, so it can be fed batch by batch."""

    def __init__(self) -> None:
        self.detectors: dict[tuple[str, str], tuple] = {}

    def seconds(self, values: list[bytes]) -> float:
        dets = self.detectors
        t = time.perf_counter()
        for v in values:
            ev = orjson.loads(v)
            items = list(ev["features"].items()) + [("prediction", ev["prediction"])]
            for name, x in items:
                d = dets.get((ev["model"], name))
                if d is None:
                    d = dets[(ev["model"], name)] = (drift.ADWIN(), drift.PageHinkley())
                d[0].update(x)
                d[1].update(x)
        return time.perf_counter() - t


def replay_rate(values: list[bytes], batch: int = 5000, fmt: str = "streamdrift",
                max_batch: int = MAX_BATCH) -> float:
    """Events (rows) per second through the pipeline, as `streamdrift replay` runs it."""
    return replay_rates(values, batch, fmt, max_batch=max_batch)[0]


DETECT_ALL = pipeline_module.detect_all


def replay_rates(values: list[bytes], batch: int = 5000, fmt: str = "streamdrift",
                 beside: Callable[[int, int], None] | None = None, max_batch: int = MAX_BATCH
                 ) -> tuple[float, float]:
    """(rows/s through the pipeline in batches as `streamdrift replay` makes them from
    ``batch`` lines growing up to ``max_batch``, rows/s of the detectors alone): the second is the time
    the same run spent in the detectors' updates (pipeline.detect_all), a ceiling that no
    input format can pass. ``beside(start, stop)`` runs before each batch of messages
    [start, stop), untimed: baselines measured in turn with the pipeline, batch by batch."""
    settings = load_settings(env={}, overrides={"limits.max_message_bytes": 64 << 20,
                                                "kafka.batch_size": batch,
                                                "kafka.max_batch_size": max_batch})
    pipeline = Pipeline(settings, formats={"bench": fmt})
    kafka = settings.kafka
    msgs = [Message(v, "bench", 0, i, 0.0) for i, v in enumerate(values)]
    rows = 0
    in_detect = [0.0]
    detect = pipeline_module.detect_all

    def timed_detect(detectors, Z):
        t0 = time.perf_counter()
        try:
            return detect(detectors, Z)
        finally:
            in_detect[0] += time.perf_counter() - t0

    pipeline_module.detect_all = timed_detect
    elapsed = 0.0
    try:
        s, step = 0, batch
        while s < len(msgs):
            if beside is not None:
                beside(s, s + step)
            t = time.perf_counter()
            result = pipeline.process(msgs[s:s + step])
            elapsed += time.perf_counter() - t
            rows += result.n_events
            assert not result.dead_letters, result.dead_letters[0].reason
            s += step
            step = batch_size(kafka, len(pipeline.models), step, result.n_events)
    finally:
        pipeline_module.detect_all = detect
    return rows / elapsed, rows / in_detect[0]


def interleaved_rates(values: list[bytes], batch: int, naive_events: int, max_batch: int = MAX_BATCH
                      ) -> dict[str, float]:
    """Events/s of the floor, extract, the naive loop (over the first naive_events) and
    replay with its detectors alone, each batch of messages measured by all of them in
    turn: this machine's speed drifts by tens of percent within seconds, and ratios of
    rates measured at different times followed it."""
    spent = {"floor": 0.0, "extract": 0.0, "naive": 0.0, "checks_off": 0.0, "multivariate_off": 0.0}
    naive = NaiveLoop()
    # the same replay with the data-quality checks off, and with the multivariate signal off:
    # what each costs
    switches = {"checks_off": "quality.enabled", "multivariate_off": "multivariate.enabled"}
    offs = {key: Pipeline(load_settings(env={}, overrides={"limits.max_message_bytes": 64 << 20,
                                                             switch: False}))
            for key, switch in switches.items()}
    msgs = [Message(v, "bench", 0, i, 0.0) for i, v in enumerate(values)]

    def beside(start: int, stop: int) -> None:
        part = values[start:stop]
        spent["floor"] += floor_seconds(part)
        spent["extract"] += extract_seconds(part)
        timed, pipeline_module.detect_all = pipeline_module.detect_all, DETECT_ALL   # (not timed)
        try:
            for key, off in offs.items():
                t = time.perf_counter()
                off.process(msgs[start:stop])
                spent[key] += time.perf_counter() - t
        finally:
            pipeline_module.detect_all = timed
        if start < naive_events:
            spent["naive"] += naive.seconds(values[start:min(stop, naive_events)])

    replay, detect = replay_rates(values, batch, beside=beside, max_batch=max_batch)
    n = len(values)
    return {"floor": n / spent["floor"], "extract": n / spent["extract"],
            "naive": min(n, naive_events) / spent["naive"], "replay": replay, "detect": detect,
            "checks_off": n / spent["checks_off"], "multivariate_off": n / spent["multivariate_off"]}


def extract_detect_bound(rates: dict[str, float]) -> float:
    """The most a row-JSON pipeline with these detectors can reach, as a fraction of the
    floor: it must at least parse and extract and then detect, one after the other on one
    core: 1 / (1/extract + 1/detectors alone) events/s."""
    return 1.0 / (1.0 / rates["extract"] + 1.0 / rates["detect"]) / rates["floor"]


def _events_ok(port: int) -> float:
    try:
        # only the one metric (prometheus_client's name[] filter): rendering the whole page
        # of 100 models every 0.2 s took ~14% of the service's samples (py-spy), and its
        # measured rate went from 57-58k to 71-80k events/s without it
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics?name[]=streamdrift_events_total",
                                      timeout=5).read().decode()
    except OSError:
        return -1.0
    for line in text.splitlines():
        if line.startswith('streamdrift_events_total{outcome="ok"}'):
            return float(line.split()[-1])
    return 0.0


def run_rate(values: list[bytes], bootstrap: str, guarantee: str = "at-least-once",
             batch: int = 5000, max_batch: int = MAX_BATCH) -> tuple[float, float]:
    """(events/s from the first processed batch to the last, events/s of busy batch time)."""
    from kafka_helpers import create_topics, free_port, produce, write_config

    unique = uuid.uuid4().hex[:8]
    topic = f"events-{unique}"
    create_topics(bootstrap, {topic: 1})
    produce(bootstrap, topic, values)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = write_config(Path(tmp) / "c.toml", bootstrap, unique, port, kafka=f'guarantee = "{guarantee}"')
        cfg.write_text(cfg.read_text().replace("batch_size = 2000", f"batch_size = {batch}\n"
                                                                    f"max_batch_size = {max_batch}"))
        proc = subprocess.Popen([sys.executable, "-m", "stream", "run", "--config", str(cfg)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ})
        try:
            deadline = time.monotonic() + 600
            while _events_ok(port) <= 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            t_first = time.perf_counter()
            first = _events_ok(port)
            while _events_ok(port) < len(values) and time.monotonic() < deadline:
                time.sleep(0.05)
            elapsed = time.perf_counter() - t_first
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
            busy = sum(float(line.split()[-1]) for line in text.splitlines()
                       if line.startswith("streamdrift_batch_seconds_sum"))
        finally:
            proc.terminate()
            proc.wait(60)
    return (len(values) - first) / elapsed, len(values) / busy


def columnar_values(values: list[bytes], rows_per_message: int = 1000) -> list[bytes]:
    """The same rows as columnar messages of up to rows_per_message rows of one model."""
    per_model: dict[str, list[dict]] = {}
    for v in values:
        ev = orjson.loads(v)
        per_model.setdefault(ev["model"], []).append(ev)
    out = []
    for model, evs in per_model.items():
        out.extend(_columnar_messages(model, evs, rows_per_message))
    return out


def _columnar_messages(model: str, evs: list[dict], rows_per_message: int) -> list[bytes]:
    out = []
    for s in range(0, len(evs), rows_per_message):
        part = evs[s:s + rows_per_message]
        names = list(part[0]["features"])
        out.append(orjson.dumps({"model": model, "ts": [e["ts"] for e in part], "id": [e["id"] for e in part],
                                 "features": {n: [e["features"][n] for e in part] for n in names},
                                 "prediction": [e["prediction"] for e in part]}))
    return out


def kserve_values(values: list[bytes]) -> list[bytes]:
    """The same rows as KServe structured CloudEvents: a V1 request and its response per row."""
    out = []
    for i, v in enumerate(values):
        e = orjson.loads(v)
        names = list(e["features"])
        out.append(orjson.dumps({"specversion": "1.0", "type": "org.kubeflow.serving.inference.request",
                                 "id": str(i), "source": "s", "inferenceservicename": e["model"],
                                 "data": {"instances": [[e["features"][n] for n in names]]}}))
        out.append(orjson.dumps({"specversion": "1.0", "type": "org.kubeflow.serving.inference.response",
                                 "id": str(i), "source": "s", "inferenceservicename": e["model"],
                                 "data": {"predictions": [e["prediction"]]}}))
    return out


def _median(rounds: list[dict[str, float]], key: str) -> float:
    return float(np.median([r[key] for r in rounds]))


def _ratio_text(rounds: list[dict[str, float]], fn: Callable[[dict[str, float]], float],
                fmt: str) -> str:
    """fn over the rounds as "median (lowest-highest)"."""
    got = sorted(fn(r) for r in rounds)
    return f"{format(float(np.median(got)), fmt)} ({format(got[0], fmt)}-{format(got[-1], fmt)})"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--features", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--naive-events", type=int, default=0,
                    help="events of the naive loop (0: all, as replay: river's per-value cost "
                         "grows with its windows, so a short prefix flatters it)")
    ap.add_argument("--run-events", type=int, default=300_000,
                    help="events for `run` (a run of under a second, timed by polling /metrics, "
                         "is mostly the consumer's start)")
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--no-kafka", action="store_true")
    ap.add_argument("--repeat", type=int, default=3, help="rounds of the in-process rates")
    ap.add_argument("--models", type=int, default=1, help="events spread round-robin over models")
    ap.add_argument("--own-names", action="store_true",
                    help="each model its own feature names (else all share f0, f1, ...)")
    ap.add_argument("--batch", type=int, default=5000, help="messages a batch (replay and run)")
    ap.add_argument("--max-batch", type=int, default=MAX_BATCH,
                    help="batches grow to ~200 events a model up to it (= --batch: fixed)")
    args = ap.parse_args()
    for f in args.features:
        values = make_values(args.events, f, models=args.models, own_names=args.own_names)
        cols = columnar_values(values)
        # in-process rates: each round measures the baselines and replay batch by batch in
        # turn; ratios are per round, printed as median (range); columnar as best of rounds
        rounds = []
        col_rate = col_detect = 0.0
        for _ in range(args.repeat):
            rounds.append(interleaved_rates(values, args.batch, args.naive_events or args.events,
                                            args.max_batch))
            rates = replay_rates(cols, batch=5, max_batch=args.max_batch)   # 5 messages of 1000 rows
            col_rate, col_detect = max(col_rate, rates[0]), max(col_detect, rates[1])

        floor, naive, replay = (_median(rounds, key) for key in ("floor", "naive", "replay"))
        line = (f"features={f:3d} models={args.models}{' own names' if args.own_names else ''}"
                f" batch={args.batch} (grown up to {args.max_batch}) events={args.events}  "
                f"floor {floor:9,.0f}/s  naive {naive:8,.0f}/s  replay {replay:9,.0f}/s"
                f" ({_ratio_text(rounds, lambda r: r['replay'] / r['floor'], '.0%')} of floor,"
                f" {_ratio_text(rounds, lambda r: r['replay'] / r['naive'], '.1f')}x naive;"
                f" with the data-quality checks on:"
                f" {_ratio_text(rounds, lambda r: r['replay'] / r['checks_off'], '.0%')} of the rate with"
                f" them off; the multivariate signal takes"
                f" {_ratio_text(rounds, lambda r: 1 - r['replay'] / r['multivariate_off'], '.0%')} of"
                f" replay's time;"
                f" its detectors alone {_median(rounds, 'detect'):9,.0f}/s ="
                f" {_ratio_text(rounds, lambda r: r['detect'] / r['floor'], '.0%')} of floor;"
                f" extract {_ratio_text(rounds, lambda r: r['extract'] / r['floor'], '.0%')} of floor;"
                f" bound: extract then detect {_ratio_text(rounds, extract_detect_bound, '.0%')} of floor)"
                f"  columnar replay {col_rate:10,.0f} rows/s ({col_rate / replay:4.1f}x row JSON;"
                f" its detectors alone {col_detect:10,.0f} rows/s = {col_detect / replay:4.1f}x row"
                f" JSON, the ceiling of any input format)")
        ks = replay_rate(kserve_values(values[: args.events // 2]), batch=10_000, fmt="kserve")
        line += f"  kserve replay {ks:9,.0f} rows/s ({ks / replay:4.2f}x row JSON)"
        if not args.no_kafka:
            run_values = make_values(args.run_events, f, models=args.models, own_names=args.own_names)
            # run is another process: its baselines are measured just before and just after
            # it (their mean), over the same events as the in-process rounds
            near = [floor_seconds(values), NaiveLoop().seconds(values)]
            wall, busy = run_rate(run_values, args.bootstrap, batch=args.batch, max_batch=args.max_batch)
            near = [near[0] + floor_seconds(values), near[1] + NaiveLoop().seconds(values)]
            eos, _ = run_rate(run_values, args.bootstrap, "exactly-once", batch=args.batch,
                              max_batch=args.max_batch)
            floor, naive = 2 * len(values) / near[0], 2 * len(values) / near[1]
            line += (f"  run {wall:9,.0f}/s ({wall / floor:4.0%} of floor, {wall / naive:4.1f}x naive"
                     f" measured around it),"
                     f" {busy:9,.0f}/s of busy batch time; exactly-once {eos:9,.0f}/s"
                     f" ({eos / wall:4.0%} of at-least-once)")
        print(line, flush=True)


if __name__ == "__main__":
    main()
