"""`streamdrift replay` as a real process over JSONL files."""

from __future__ import annotations

import base64
import subprocess
import sys

import numpy as np
import orjson
import pytest

from stream.app.synthetic import DEMO_MODELS, jsonl


def run_replay(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stream", "replay", *args], capture_output=True,
                          timeout=300)


def test_replay_writes_alerts_and_dead_letters(tmp_path):
    events = tmp_path / "events.jsonl"
    bad = [b"garbage", b'{"model":"m","features":{"x":{"deep":1}}}', b""]
    events.write_bytes(jsonl(DEMO_MODELS, 9000, seed=2) + b"\n".join(bad) + b"\n")
    out, dead = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl"
    proc = run_replay(str(events), "--out", str(out), "--dead-letter", str(dead))
    assert proc.returncode == 0, proc.stderr
    alerts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert {(a["model"], a["signal"]) for a in alerts} >= {("readmission", "feature:age"),
                                                         ("fraud", "feature:amount")}
    lines = events.read_bytes().splitlines()
    for a in alerts:
        assert a["at"]["topic"] == str(events)
        assert orjson.loads(lines[a["at"]["offset"]])["model"] == a["model"]
    dls = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [d["offset"] for d in dls] == [27000, 27001, 27002]
    assert [base64.b64decode(d["value"]) for d in dls] == bad
    assert [d["reason"] for d in dls] == ["invalid_json", "nested_value", "invalid_json"]
    assert b"27003 lines" in proc.stderr and b"3 dead letters" in proc.stderr


def test_replay_to_stdout_is_identical_between_runs(tmp_path):
    events = tmp_path / "e.jsonl"
    events.write_bytes(jsonl(DEMO_MODELS, 10000, seed=5))
    a, b = run_replay(str(events)), run_replay(str(events))
    assert a.returncode == b.returncode == 0
    assert a.stdout == b.stdout and a.stdout.count(b"\n") >= 2


def test_replay_merges_labels_by_ts_and_counts_them(tmp_path):
    events, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    events.write_bytes(b"".join(orjson.dumps({"model": "m", "id": str(i), "ts": i, "features": {"x": i},
                                              "prediction": 0.9}) + b"\n" for i in range(10)))
    # a label at the same ts as its event still joins it: events come first on ties
    labels.write_bytes(b"".join(orjson.dumps({"model": "m", "id": str(i), "ts": i, "label": 1}) + b"\n"
                                for i in range(0, 10, 2)))
    proc = run_replay(str(events), "--labels", str(labels))
    assert proc.returncode == 0
    assert b"10 events" in proc.stderr and b"5 labels" in proc.stderr and b"0 dead letters" in proc.stderr


def test_replay_missing_file_is_a_clear_error(tmp_path):
    proc = run_replay(str(tmp_path / "nope.jsonl"))
    assert proc.returncode == 2 and b"no such file" in proc.stderr and b"Traceback" not in proc.stderr


def _alert_points(stdout: bytes) -> list[tuple]:
    """What an alert says, without the input's name (at.topic is the path as given)."""
    return [(a["model"], a["signal"], a["detector"], a["status"], a["at"]["offset"])
            for a in map(orjson.loads, stdout.splitlines())]


def test_replay_reads_compressed_files_and_standard_input(tmp_path):
    """History is often kept compressed, or piped from another tool: .gz, .bz2, .xz and `-`
    give exactly the alerts of the plain file, each naming its input as given."""
    import bz2
    import gzip
    import lzma

    data = jsonl(DEMO_MODELS, 9000, seed=2)
    plain = tmp_path / "e.jsonl"
    plain.write_bytes(data)
    expected = run_replay(str(plain))
    assert expected.returncode == 0 and len(_alert_points(expected.stdout)) >= 2
    for suffix, compress in ((".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)):
        packed = tmp_path / f"e.jsonl{suffix}"
        packed.write_bytes(compress(data))
        proc = run_replay(str(packed))
        assert proc.returncode == 0, proc.stderr
        assert _alert_points(proc.stdout) == _alert_points(expected.stdout)
        assert {orjson.loads(x)["at"]["topic"] for x in proc.stdout.splitlines()} == {str(packed)}
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", "-"], input=data,
                          capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert _alert_points(proc.stdout) == _alert_points(expected.stdout)
    assert {orjson.loads(x)["at"]["topic"] for x in proc.stdout.splitlines()} == {"-"}
    assert b"27000 lines" in proc.stderr
    both = run_replay("-", "--labels", "-")
    assert both.returncode == 2 and b"cannot both be standard input" in both.stderr


def test_replay_of_a_truncated_archive_processes_what_it_read_and_fails_loudly(tmp_path):
    import gzip

    data = jsonl(DEMO_MODELS, 9000, seed=2)
    packed = gzip.compress(data)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) * 3 // 4])           # a transfer that stopped early
    proc = run_replay(str(cut))
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert f"{cut}: cannot be read to its end".encode() in proc.stderr
    summary = next(line for line in proc.stderr.splitlines() if b" lines, " in line)
    n_lines = int(summary.split(b"replay: ")[1].split(b" lines")[0])
    assert 0 < n_lines < 27000                                 # what was read was processed
    points = _alert_points(proc.stdout)
    assert points and all(offset < n_lines for *_, offset in points)


def test_a_far_future_event_time_is_a_dead_letter_not_a_crash_of_the_report(tmp_path):
    """An event time in milliseconds (year ~57,900) used to reach the backtest report, whose
    time axis could not print it (a traceback, no report); now it is a dead letter."""
    events = tmp_path / "e.jsonl"
    lines = jsonl(DEMO_MODELS, 3000, seed=4).splitlines()
    late = orjson.loads(lines[1500])
    late["ts"] *= 1000                                  # epoch milliseconds
    lines[1500] = orjson.dumps(late)
    events.write_bytes(b"\n".join(lines) + b"\n")
    report, dead = tmp_path / "r.html", tmp_path / "dead.jsonl"
    proc = run_replay(str(events), "--report", str(report), "--dead-letter", str(dead),
                      "--out", str(tmp_path / "a.jsonl"))
    assert proc.returncode == 0, proc.stderr
    assert report.stat().st_size > 0
    dls = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert [(d["offset"], d["reason"]) for d in dls] == [(1500, "invalid_ts")]
    assert "milliseconds" in dls[0]["detail"]


def test_labels_merge_by_rfc3339_times_as_by_epoch_seconds(tmp_path):
    """Events and labels are merged by event time whatever way it is written: with RFC 3339
    times the merge used to put every label after every event, so with a bounded prediction
    store the labels found their predictions evicted (unknown_id)."""
    from datetime import UTC, datetime

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    config = tmp_path / "c.toml"
    config.write_text("[limits]\nmax_pending_predictions = 3000\n")   # > a batch's events
    n, t0 = 8000, 1.7e9
    summaries = []
    for name, when in (("seconds", float), ("rfc3339", iso)):
        events, labels = tmp_path / f"e-{name}.jsonl", tmp_path / f"l-{name}.jsonl"
        events.write_bytes(b"".join(orjson.dumps(
            {"model": "m", "id": str(i), "ts": when(t0 + i), "features": {"x": i % 7},
             "prediction": 0.8}) + b"\n" for i in range(n)))
        labels.write_bytes(b"".join(orjson.dumps(
            {"model": "m", "id": str(i), "ts": when(t0 + i + 10), "label": 1}) + b"\n"
            for i in range(n)))
        dead = tmp_path / f"dead-{name}.jsonl"
        proc = run_replay(str(events), "--labels", str(labels), "--config", str(config),
                          "--dead-letter", str(dead))
        assert proc.returncode == 0, proc.stderr
        assert dead.read_bytes() == b"", (name, dead.read_bytes()[:200])
        summaries.append(proc.stderr.split(b" in ")[0])
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("doc,fmt,key", [
    ({"ts": 7}, "streamdrift", 7.0),
    ({"ts": "2026-01-01T00:00:00Z"}, "streamdrift", 1767225600.0),
    ({"ts": [None, 5, 6]}, "streamdrift", 5.0),                 # columnar: its first row's time
    ({"ts": []}, "streamdrift", float("-inf")),
    ({"ts": True}, "streamdrift", float("-inf")),               # not a time: keeps its place
    ({"ts": 1764400000250}, "streamdrift", float("-inf")),      # milliseconds: not a time
    ({"time": "2026-01-01T00:00:00Z", "ts": 3}, "kserve", 1767225600.0),
    ({"parameters": {"ts": 9}}, "oip", 9.0),
    ({"parameters": 9}, "oip", float("-inf")),
])
def test_the_merge_reads_each_format_s_event_time(doc, fmt, key):
    from stream.replay import _ts_key

    assert _ts_key(orjson.dumps(doc), fmt) == key


def test_a_byte_order_mark_and_windows_line_endings_change_nothing(tmp_path):
    plain, windows = tmp_path / "plain.jsonl", tmp_path / "windows.jsonl"
    data = jsonl(DEMO_MODELS, 9000, seed=2)
    plain.write_bytes(data)
    windows.write_bytes(b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n"))
    a, b = run_replay(str(plain)), run_replay(str(windows), "--dead-letter", str(tmp_path / "d.jsonl"))
    assert a.returncode == b.returncode == 0
    def alerts(out: bytes) -> list[tuple]:          # (ids and topics name the file)
        return [(x["model"], x["signal"], x["detector"], x["status"], x["at"]["offset"])
                for x in map(orjson.loads, out.splitlines())]

    assert len(alerts(a.stdout)) >= 2 and alerts(a.stdout) == alerts(b.stdout)
    assert (tmp_path / "d.jsonl").read_bytes() == b""


@pytest.mark.parametrize("flag", ["--out", "--dead-letter", "--report"])
def test_an_output_that_cannot_be_written_stops_the_start_naming_it(tmp_path, flag):
    """Not a traceback (and for --report, not after the whole replay, when it is written)."""
    events = tmp_path / "e.jsonl"
    events.write_bytes(jsonl(DEMO_MODELS, 9000, seed=2))
    bad = tmp_path / "missing-dir" / "x"
    proc = run_replay(str(events), flag, str(bad))
    assert proc.returncode == 2
    assert proc.stderr.decode().strip() == (f"streamdrift replay: {bad}: cannot be written"
                                            " (No such file or directory)")
    assert proc.stdout == b""                                  # nothing was replayed


def test_one_line_far_ahead_does_not_hold_its_file_back_in_the_merge(tmp_path):
    """An event with a skewed clock (a year ahead) among events in time order: the merge used
    to yield every label before the events after it (each file is merged as if in order), so
    those labels found no prediction (unknown_id)."""
    events, labels = tmp_path / "e.jsonl", tmp_path / "l.jsonl"
    events.write_bytes(b"".join(orjson.dumps(
        {"model": "m", "id": str(i), "ts": 1.7e9 + (365 * 86400 if i == 1500 else i),
         "features": {"x": i % 5}, "prediction": 0.8}) + b"\n" for i in range(3000)))
    labels.write_bytes(b"".join(orjson.dumps(
        {"model": "m", "id": str(i), "ts": 1.7e9 + i + 60, "label": 1}) + b"\n" for i in range(3000)))
    dead = tmp_path / "dead.jsonl"
    proc = run_replay(str(events), "--labels", str(labels), "--dead-letter", str(dead))
    assert proc.returncode == 0, proc.stderr
    assert dead.read_bytes() == b"", dead.read_bytes()[:300]


@pytest.mark.parametrize("times,keys", [
    ([1, 2, 3], [1, 2, 3]),
    ([1, 99, 3, 4], [1, 3, 3, 4]),                       # a spike: its next line's time
    ([5, 1, 6], [1, 1, 6]),                              # first line: which is odd is unknown;
                                                         # going earlier is harmless
    ([5, 7, 1, 8], [5, 5, 1, 8]),                        # before a dip: the last line's time
    ([1, 99, None, 4], [1, 99, None, 4]),                # next unreadable: unchanged
    ([None, 2, None], [None, 2, None]),
])
def test_despiked_merge_keys(times, keys):
    from stream.replay import _despike

    inf = float("-inf")
    raw = np.array([inf if t is None else float(t) for t in times])
    want = [inf if k is None else float(k) for k in keys]
    assert _despike(raw, None, inf)[0].tolist() == want
    for cut in range(1, len(times)):           # read in two chunks: the same keys
        first, last = _despike(raw[:cut], float(raw[cut]), inf)
        assert first.tolist() + _despike(raw[cut:], None, last)[0].tolist() == want


def test_replay_rebaseline_flag_and_config_accept_a_new_normal(tmp_path):
    """`--rebaseline MODEL[/SIGNAL][@TIME]` (or [[rebaseline]] in the config) resolves the
    episode of a persistent shift at that event time; the shifted values are the new normal."""
    from quality_streams import T0, shifted

    events = tmp_path / "e.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in shifted(80_000, 40_000, None, 1.0, 1)))
    plain = run_replay(str(events))
    assert [orjson.loads(x)["status"] for x in plain.stdout.splitlines()] == ["firing"]
    flag = run_replay(str(events), "--rebaseline", f"m/feature:f0@{T0 + 50_000}")
    alerts = [orjson.loads(x) for x in flag.stdout.splitlines()]
    assert [(a["status"], a.get("reason"), a["at"]["offset"]) for a in alerts][1:] == \
        [("resolved", "rebaselined", 50_000)]
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[[rebaseline]]\nmodel = "m"\nat = {T0 + 50_000}\n')
    assert run_replay(str(events), "--config", str(cfg)).stdout == flag.stdout
    bad = run_replay(str(events), "--rebaseline", "bad model@x")
    assert bad.returncode == 2 and b"MODEL[/SIGNAL][@TIME]" in bad.stderr


@pytest.mark.parametrize("block", [1, 3, 64, 1 << 16])
def test_files_read_by_blocks_give_the_lines_of_line_by_line_reading(tmp_path, monkeypatch, block):
    """Lines split out of blocks (carriage returns, a byte-order mark, lines longer than a
    block, no final newline) are Python's lines of the file less their endings; a truncated
    archive gives the lines read whole before the fault, then InputError."""
    import gzip
    import io
    import random

    from stream import replay
    from stream.errors import InputError

    monkeypatch.setattr(replay, "_READ_BYTES", block)
    rng = random.Random(block)
    pieces = [b"a", b"\n", b"\r", b"\r\n", b'{"x": 1}', b"\xef\xbb\xbf"]
    for case in range(40):
        data = b"".join(rng.choice(pieces + [b"z" * rng.randint(0, 300)]) for _ in range(rng.randint(0, 60)))
        if case % 3 == 0:
            data = b"\xef\xbb\xbf" + data
        path = tmp_path / f"{case}.jsonl"
        path.write_bytes(data)
        want = [line.rstrip(b"\r\n") for line in io.BytesIO(data)]
        if want and want[0].startswith(b"\xef\xbb\xbf"):
            want[0] = want[0][3:]
        size = rng.choice([1, 2, 5, 4096])
        got = [m for chunk in replay.read_chunks(str(path), size) for m in chunk]
        assert [m.value for m in got] == want
        assert [m.offset for m in got] == list(range(len(want)))
        assert all(0 < len(chunk) <= size for chunk in replay.read_chunks(str(path), size))

    data = b"".join(orjson.dumps({"i": i, "pad": "x" * rng.randint(0, 200)}) + b"\n" for i in range(20000))
    packed = gzip.compress(data)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    whole = []
    with pytest.raises(EOFError), gzip.open(cut, "rb") as fh:
        whole.extend(line.rstrip(b"\n") for line in fh)
    got = []
    with pytest.raises(InputError, match="cannot be read to its end"):
        for chunk in replay.read_chunks(str(cut), 1000):
            got.extend(m.value for m in chunk)
    assert 0 < len(got) and got == whole[:len(got)] and len(whole) - len(got) <= max(1, block // 10)


@pytest.mark.parametrize("chunk", [1, 2, 7, 4096])
def test_the_merge_read_in_chunks_is_the_merge_line_by_line(tmp_path, monkeypatch, chunk):
    """Keys found a chunk at a time (one orjson call, numbers at once) and chunks merged by
    their running maximum give the order of a merge of the two files' lines one by one."""
    import heapq
    import random

    from stream import replay

    rng = random.Random(chunk)
    inf = float("-inf")

    def line(t: float) -> bytes:
        return rng.choice([b"{bad", b"", b"1,2", orjson.dumps({"ts": None}), orjson.dumps({"ts": True}),
                           orjson.dumps({"ts": "2023-11-14T22:13:20Z"}), orjson.dumps({"ts": [None, t]}),
                           orjson.dumps({"ts": t * 1000}), orjson.dumps({"ts": t + 1e6}),
                           orjson.dumps({"ts": t - 1e6})]
                          + [orjson.dumps({"ts": t}), orjson.dumps({"ts": int(t)})] * 10)

    paths = []
    for name in ("e", "l"):
        t = 1.7e9
        rows = [line(t := t + rng.choice([0, 0.5, 1, 2])) for _ in range(300)]
        (tmp_path / name).write_bytes(b"\n".join(rows) + b"\n")
        paths.append(str(tmp_path / name))

    def one_by_one(path: str, kind: int) -> list[tuple]:
        msgs = [m for chunk in replay.read_chunks(path) for m in chunk]
        keys = replay._despike(np.array([replay._ts_key(m.value) for m in msgs]), None, inf)[0]
        return [(k, kind, m.offset, m) for k, m in zip(keys.tolist(), msgs, strict=True)]

    want = [(m.topic, m.offset) for *_, m in heapq.merge(one_by_one(paths[0], 0), one_by_one(paths[1], 1),
                                                          key=lambda x: x[:3])]
    monkeypatch.setattr(replay, "CHUNK", chunk)
    monkeypatch.setattr(replay, "_PARSE_LINES", max(1, chunk // 2))   # lines parsed together
    assert [(m.topic, m.offset) for run in replay.merged(*paths) for m in run] == want


def test_replay_batches_grow_with_the_models_and_change_no_alert(tmp_path, monkeypatch):
    """Replay's batches grow to ~PER_MODEL events a model (labels' lines counted, up to
    kafka.max_batch_size); alerts and dead letters are those of fixed batches of
    kafka.batch_size (max_batch_size no larger)."""
    import io

    from stream import replay
    from stream.config import load_settings
    from stream.pipeline import Pipeline, batch_size

    rng = np.random.default_rng(3)
    events, labels = [], []
    for i in range(24_000):
        model = f"m{i % 40}"
        shift = 3.0 if i % 40 < 8 and i > 12_000 else 0.0
        # (an event every 0.1 s: 20 warm-ups span far less than a day, so a reference is one)
        t = 1.7e9 + i / 10
        events.append(orjson.dumps({"model": model, "id": str(i), "ts": t, "prediction": rng.random(),
                                    "features": {"x": rng.normal() + shift, "c": str(rng.integers(3))}}))
        if i % 40 == 1:
            labels.append(orjson.dumps({"model": model, "id": str(i), "ts": t + 5,
                                        "label": int(rng.random() < 0.5)}))
    events.append(b"{bad")
    (tmp_path / "e").write_bytes(b"\n".join(events) + b"\n")
    (tmp_path / "l").write_bytes(b"\n".join(labels) + b"\n")
    settings = load_settings(env={}, overrides={"kafka.batch_size": 100, "detect.warmup": 200,
                                                "labels.warmup": 50})
    sizes: list[int] = []
    process = Pipeline.process

    def spy(self, messages):
        sizes.append(len(messages))
        return process(self, messages)

    def outputs() -> tuple[bytes, bytes]:
        out, dead = io.BytesIO(), io.BytesIO()
        assert replay.replay(settings, str(tmp_path / "e"), str(tmp_path / "l"), out, dead,
                             err=io.StringIO()) == 0
        return out.getvalue(), dead.getvalue()

    monkeypatch.setattr(Pipeline, "process", spy)
    grown = outputs()
    # 40 models, a label line per 40 events: ~200 x 40 x 41/40 lines a batch once all are seen
    assert sizes[0] == 100 and batch_size(settings.kafka, 40, 41, 40) == 8200
    assert all(abs(size - 8200) < 300 for size in sizes[1:-1]), sizes
    assert batch_size(settings.kafka, 1000, 2, 1) == settings.kafka.max_batch_size == 50_000
    assert batch_size(settings.kafka, 100, 1, 1000) == 100         # columnar: 1000 events a line
    assert batch_size(settings.kafka, 100, 5000, 0) == 50_000      # labels alone: as 1 event
    settings = load_settings(env={}, overrides={"kafka.batch_size": 100, "kafka.max_batch_size": 100,
                                                "detect.warmup": 200, "labels.warmup": 50})
    sizes.clear()
    assert outputs() == grown and set(sizes[:-1]) == {100}
    assert grown[0].count(b"\n") >= 8 and grown[1].count(b"\n") == 1


def test_merged_lines_carry_their_parse_and_decode_as_unparsed_lines(tmp_path):
    """The merge parses every line for its time; decoding takes those documents instead of
    parsing again, with the same alerts, dead letters and joins as lines it parses itself."""
    from stream import replay
    from stream.config import load_settings
    from stream.pipeline import Pipeline

    events, labels = tmp_path / "events.jsonl", tmp_path / "labels.jsonl"
    rng = np.random.default_rng(3)
    ev_lines, lb_lines = [], []
    for i in range(3000):
        x = float(rng.normal(3.0 if i > 2000 else 0.0))
        ev_lines.append(orjson.dumps({"model": "m", "id": str(i), "ts": 1.7e9 + i, "prediction": 0.7,
                                      "features": {"x": x, "y": None if i % 7 == 0 else x * 2}}))
        if i % 3 == 0:
            lb_lines.append(orjson.dumps({"model": "m", "id": str(i), "label": int(i > 2000),
                                          "ts": 1.7e9 + i + 5}))
    ev_lines[100] = b"{not json"
    lb_lines[50] = orjson.dumps({"model": "m", "id": "nobody", "label": 1, "ts": 1.7e9 + 200})
    events.write_bytes(b"\n".join(ev_lines) + b"\n")
    labels.write_bytes(b"\n".join(lb_lines) + b"\n")

    runs = list(replay.merged(str(events), str(labels)))
    messages = [m for run in runs for m in run]
    parsed = [m for m in messages if m.parsed is not None]
    assert len(parsed) >= len(messages) - 1024       # (a chunk holding the bad line: parsed by decoding)
    assert all(m.parsed == orjson.loads(m.value) for m in parsed)
    settings = load_settings(env={}, overrides={"detect.warmup": 300})
    results = []
    for strip in (False, True):
        pipeline = Pipeline(settings, label_topics={str(labels)})
        out = [pipeline.process([m._replace(parsed=None) if strip else m for m in run]) for run in runs]
        results.append(([a for r in out for a in r.alerts],
                        [(d.message.offset, d.reason) for r in out for d in r.dead_letters],
                        sum(r.n_labels_joined for r in out)))
    assert results[0] == results[1]
    alerts, dead, joined = results[0]
    assert alerts and (100, "invalid_json") in dead and joined >= 990


def test_replay_pauses_the_collector_and_still_collects_cyclic_garbage(tmp_path, monkeypatch):
    """The collector is paused for the replay's loop (and enabled again after it, also when
    the input fails); what batches leave as cyclic garbage is collected as it goes."""
    import gc
    import gzip
    import io

    from stream import replay
    from stream.config import load_settings

    calls = []
    monkeypatch.setattr(replay, "_COLLECT_EVERY", 2)
    monkeypatch.setattr(replay.gc, "collect", lambda *a: calls.append(gc.isenabled()) or 0)
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(jsonl(DEMO_MODELS, 9000, seed=2))[:60000])
    settings = load_settings(env={}, overrides={"kafka.batch_size": 100, "kafka.max_batch_size": 100})
    assert gc.isenabled()
    code = replay.replay(settings, str(cut), None, io.BytesIO(), None, err=io.StringIO())
    assert code == 2 and gc.isenabled()
    assert len(calls) >= 3 and not any(calls)        # every 2 batches, with the collector paused


@pytest.mark.parametrize("which", ["events", "labels"])
def test_a_merged_file_unreadable_from_its_first_block_fails_loudly(tmp_path, which):
    """A file named .gz that is no archive fails at its first read: the replay says which
    file and exits 2, after processing what it had read of the other file."""
    good = tmp_path / "good.jsonl"
    bad = tmp_path / "bad.jsonl.gz"
    bad.write_bytes(b"not an archive\n")
    if which == "labels":
        good.write_bytes(jsonl(DEMO_MODELS, 3000, seed=2))
        proc = run_replay(str(good), "--labels", str(bad))
    else:
        good.write_bytes(orjson.dumps({"model": "m", "id": "1", "label": 1, "ts": 1.7e9}) + b"\n")
        proc = run_replay(str(bad), "--labels", str(good))
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr
    assert f"{bad}: cannot be read to its end".encode() in proc.stderr
    summary = next(line for line in proc.stderr.splitlines() if b" lines, " in line)
    n_lines = int(summary.split(b"replay: ")[1].split(b" lines")[0])
    assert 0 < n_lines < 9000 if which == "labels" else n_lines <= 1     # (9000 events)


def test_the_cli_keeps_glibc_s_heap_between_batches_unless_the_environment_says_otherwise():
    """glibc here: M_TOP_PAD is set (mallopt answers 1); an environment that sets the top pad
    itself (the variable or the tunable) keeps its own."""
    import ctypes

    from stream.app.allocator import keep_heap

    assert hasattr(ctypes.CDLL(None), "gnu_get_libc_version")        # (the machine's C library)
    assert keep_heap({}) is True
    assert keep_heap({"MALLOC_TOP_PAD_": "0"}) is False
    assert keep_heap({"GLIBC_TUNABLES": "glibc.malloc.top_pad=0"}) is False
