"""Adapters, with payloads written from the KServe CloudEvents and Open Inference Protocol specs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import orjson
import pytest

from stream.config import LimitSettings
from stream.ingest.convert import Converter
from stream.ingest.kserve import REQUEST, RESPONSE
from stream.ingest.rows import Message, decode

CE = [("ce_specversion", b"1.0"), ("ce_source", b"http://localhost:9081/"),
      ("content-type", b"application/json")]


def binary(kind: str, ident: str, body: dict, offset: int, model: str = "sklearn-iris") -> Message:
    headers = tuple(CE + [("ce_type", kind.encode()), ("ce_id", ident.encode()),
                          ("ce_inferenceservicename", model.encode()),
                          ("ce_time", b"2026-11-29T10:00:00Z")])
    return Message(orjson.dumps(body), "kserve", 0, offset, 0.0, headers)


def structured(kind: str, ident: str, data: dict, offset: int, model: str = "income") -> Message:
    event = {"specversion": "1.0", "type": kind, "id": ident, "source": f"http://{model}/",
             "inferenceservicename": model, "datacontenttype": "application/json", "data": data}
    return Message(orjson.dumps(event), "kserve", 0, offset, 0.0)


def convert(msgs, columns=None, fmt="kserve", max_pending=100):
    conv = Converter({"kserve": fmt, "oip": fmt}, columns or {}, max_pending=max_pending)
    out, dead = conv.convert(msgs)
    return decode(out, LimitSettings()), dead, conv


def test_kserve_binary_v1_request_and_response_pair_by_id():
    msgs = [binary(REQUEST, "r1", {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}, 0),
            binary(REQUEST, "r2", {"instances": [[5.1, 3.5, 1.4, 0.2]]}, 1),
            binary(RESPONSE, "r1", {"predictions": [1, 2]}, 2)]
    batch, dead, conv = convert(msgs, {"sklearn-iris": ("sepal_l", "sepal_w", "petal_l", "petal_w")})
    assert dead == []
    mb = batch.models["sklearn-iris"]
    assert set(mb.numeric) == {"sepal_l", "sepal_w", "petal_l", "petal_w"}
    assert mb.numeric["petal_l"].tolist() == [4.8, 4.5] and mb.prediction.tolist() == [1.0, 2.0]
    assert mb.ids == ["r1-0", "r1-1"] and mb.offset.tolist() == [2, 2]     # where the pair completed
    assert mb.ts.tolist() == [1795946400.0] * 2
    assert list(conv.kserve.pending) == ["r2"]                                     # waits for its response


def test_kserve_structured_v2_tensors_one_per_column():
    req = {"inputs": [{"name": "age", "shape": [2], "datatype": "FP32", "data": [30, 41]},
                      {"name": "income", "shape": [2, 1], "datatype": "FP32", "data": [[1000], [2000]]},
                      {"name": "city", "shape": [2], "datatype": "BYTES", "data": ["paris", "rome"]}]}
    resp = {"outputs": [{"name": "proba", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}
    batch, dead, _ = convert([structured(RESPONSE, "x", resp, 0), structured(REQUEST, "x", req, 1)])
    assert dead == []
    mb = batch.models["income"]
    assert mb.numeric["age"].tolist() == [30, 41] and mb.numeric["income"].tolist() == [1000, 2000]
    assert mb.categorical["city"] == ["paris", "rome"]
    assert mb.prediction.tolist() == [0.9, 0.2]                       # [p0, p1] -> positive score


def test_oip_record_single_2d_tensor_with_configured_columns():
    rec = {"model_name": "m", "id": "q", "parameters": {"ts": 100.0},
           "inputs": [{"name": "x", "shape": [3, 2], "datatype": "FP64", "data": [1, 2, 3, 4, 5, 6]}],
           "outputs": [{"name": "y", "shape": [3], "datatype": "FP64", "data": [0.1, 0.2, 0.3]}]}
    batch, dead, _ = convert([Message(orjson.dumps(rec), "oip", 0, 0, 0.0)], {"m": ("a", "b")}, fmt="oip")
    mb = batch.models["m"]
    assert mb.numeric["a"].tolist() == [1, 3, 5] and mb.numeric["b"].tolist() == [2, 4, 6]
    assert np.allclose(mb.prediction, [0.1, 0.2, 0.3]) and mb.ts.tolist() == [100.0] * 3
    assert mb.versions is None
    for version, rows in (("7", 3), ("8", 1)):           # OIP's model_version is the event's
        rec["model_version"], rec["id"] = version, f"q{version}"
        if rows == 1:
            rec["inputs"][0].update(shape=[1, 2], data=[1, 2])
            rec["outputs"][0].update(shape=[1], data=[0.5])
        batch, dead, _ = convert([Message(orjson.dumps(rec), "oip", 0, 0, 0.0)], {"m": ("a", "b")}, fmt="oip")
        assert dead == [] and batch.models["m"].versions == [version] * rows


@pytest.mark.parametrize("msg,reason", [
    (Message(b"not json", "kserve", 0, 0, 0.0), "invalid_json"),
    (Message(b'{"instances": [[1]]}', "kserve", 0, 0, 0.0), "not_cloudevent"),
    (structured("org.kubeflow.serving.other", "a", {"instances": [[1]]}, 0), "unknown_ce_type"),
    (structured(REQUEST, "a", {"rows": [[1]]}, 0), "invalid_payload"),
    (structured(REQUEST, "a", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32",
                                           "data": [1, 2, 3]}]}, 0), "invalid_tensor"),
    (structured(REQUEST, "a", {"inputs": [{"name": "x", "shape": [2], "datatype": "FP32", "data": [1, 2]},
                                          {"name": "y", "shape": [3], "datatype": "FP32",
                                           "data": [1, 2, 3]}]}, 0), "invalid_tensor"),
    # problems decoding would find in the converted event: found in the message that has them
    (binary(REQUEST, "a", {"instances": [[1.0, {"x": 2}]]}, 0), "nested_value"),
    (structured(REQUEST, "a", {"instances": [{"x" * 300: 1.0}]}, 0), "invalid_name"),
    (structured(REQUEST, "a", {"instances": [list(range(2000))]}, 0), "too_many_features"),
    (binary(RESPONSE, "a", {"predictions": [1]}, 0, model="no spaces allowed"), "invalid_model"),
    (Message(orjson.dumps({"model_name": "m", "inputs": [{"name": "x", "shape": [1], "datatype": "BYTES",
                                                          "data": [[{"nested": 1}]]}]}), "oip", 0, 0, 0.0),
     "nested_value"),
])
def test_malformed_adapter_messages_are_dead_letters(msg, reason):
    _, dead, _ = convert([msg], fmt=msg.topic)
    assert [d.reason for d in dead] == [reason] and dead[0].message.value == msg.value


def test_row_mismatch_and_duplicates():
    _, dead, _ = convert([structured(REQUEST, "a", {"instances": [[1], [2]]}, 0),
                          structured(RESPONSE, "a", {"predictions": [1]}, 1)])
    assert [d.reason for d in dead] == ["row_mismatch"]
    _, dead, _ = convert([structured(REQUEST, "b", {"instances": [[1]]}, 0),
                          structured(REQUEST, "b", {"instances": [[2]]}, 1)])
    assert [d.reason for d in dead] == ["duplicate_ce_id"]


@pytest.mark.parametrize("bad_first", [True, False])
def test_the_other_half_of_a_dead_lettered_message_goes_on_alone_at_once(bad_first):
    """A request rejected at conversion (a nested feature value) must not leave its response
    waiting in the pairing store until evicted: the response's prediction goes on at once,
    whichever of the two arrived first; a good pair after it is paired as usual."""
    bad = structured(REQUEST, "a", {"instances": [[1.0, {"x": 2}]]}, 0)
    response = structured(RESPONSE, "a", {"predictions": [0.25]}, 1)
    good = [structured(REQUEST, "b", {"instances": [[3.0, 4.0]]}, 2),
            structured(RESPONSE, "b", {"predictions": [0.5]}, 3)]
    batch, dead, conv = convert(([bad, response] if bad_first else [response, bad]) + good)
    assert [(d.reason, d.message.value) for d in dead] == [("nested_value", bad.value)]
    mb = batch.models["income"]
    assert mb.ids == ["a-0", "b-0"] and mb.prediction.tolist() == [0.25, 0.5]
    assert np.isnan(mb.numeric["f0"][0]) and mb.numeric["f0"][1] == 3.0
    assert dict(conv.kserve.pending) == {} and conv.kserve.evicted == 0
    # the same for a response rejected while its request waits, or before it arrives
    for order in ([0, 1], [1, 0]):
        msgs = [structured(REQUEST, "c", {"instances": [[7.0, 8.0]]}, 0),
                structured(RESPONSE, "c", {"outputs": [{"name": "p", "shape": [2]}]}, 1)]
        batch, dead, conv = convert([msgs[i] for i in order])
        assert [d.reason for d in dead] == ["invalid_tensor"] and dead[0].message is msgs[1]
        assert batch.models["income"].numeric["f1"].tolist() == [8.0] and conv.kserve.pending == {}


def test_a_rejection_marker_is_bounded_and_is_not_an_event():
    """Markers of rejected messages live in the bounded store; evicted, they emit nothing."""
    msgs = [structured(REQUEST, f"r{i}", {"instances": [["x", [1]]]}, i) for i in range(4)]
    batch, dead, conv = convert(msgs, max_pending=2)
    assert len(dead) == 4 and batch.models == {} and conv.kserve.evicted == 0
    assert list(conv.kserve.pending) == ["r2", "r3"]
    again = Converter({"kserve": "kserve"}, {}, max_pending=2)
    again.load(conv.dump())                                   # markers survive a restart
    out, dead = again.convert([structured(RESPONSE, "r3", {"predictions": [0.9]}, 9)])
    assert dead == [] and decode(out, LimitSettings()).models["income"].prediction.tolist() == [0.9]


def test_a_pair_whose_rows_do_not_match_keeps_the_waiting_half():
    """Request rows and predictions of different counts: the completing message is the dead
    letter, the half that waited goes on alone (nothing it carried is lost)."""
    batch, dead, conv = convert([structured(REQUEST, "a", {"instances": [[1.0], [2.0]]}, 0),
                                 structured(RESPONSE, "a", {"predictions": [1]}, 1)])
    assert [(d.reason, d.message.offset) for d in dead] == [("row_mismatch", 1)]
    assert batch.models["income"].numeric["f0"].tolist() == [1.0, 2.0] and conv.kserve.pending == {}


def test_unpaired_events_beyond_the_store_are_emitted_alone():
    msgs = [structured(REQUEST, f"r{i}", {"instances": [[float(i)]]}, i) for i in range(5)]
    batch, dead, conv = convert(msgs, max_pending=2)
    assert dead == [] and conv.kserve.evicted == 3
    assert batch.models["income"].numeric["f0"].tolist() == [0.0, 1.0, 2.0]


def test_replay_kserve_file_finds_drift(tmp_path):
    rng = np.random.default_rng(0)
    lines = []
    for i in range(6000):
        x = rng.normal(5 + (2 if i >= 3000 else 0), 1, 3).tolist()
        lines.append(orjson.dumps({"specversion": "1.0", "type": REQUEST, "id": f"e{i}", "source": "s",
                                   "inferenceservicename": "tab", "time": f"2026-11-29T10:{i // 60 % 60:02d}:"
                                   f"{i % 60:02d}Z", "data": {"instances": [x]}}))
        lines.append(orjson.dumps({"specversion": "1.0", "type": RESPONSE, "id": f"e{i}", "source": "s",
                                   "inferenceservicename": "tab", "data": {"predictions": [0.3]}}))
    path = tmp_path / "kserve.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(path), "--format", "kserve"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    alerts = [orjson.loads(x) for x in proc.stdout.splitlines()]
    assert {a["signal"] for a in alerts} >= {"feature:f0", "feature:f1", "feature:f2"}
    assert all(a["at"]["offset"] >= 2 * 3000 for a in alerts)


def test_drain_emits_every_waiting_half_alone_and_forgets_markers():
    msgs = [structured(REQUEST, "q", {"instances": [[1.0]]}, 0),
            structured(RESPONSE, "p", {"predictions": [0.7]}, 1),
            structured(REQUEST, "bad", {"instances": [["x", [1]]]}, 2)]       # a marker
    _, dead, conv = convert(msgs)
    assert len(dead) == 1 and list(conv.kserve.pending) == ["q", "p", "bad"]
    docs = conv.drain()
    assert conv.kserve.pending == {} and conv.changed
    mb = decode([Message(orjson.dumps(d), "kserve", 0, 9, 0.0) for d in docs],
                LimitSettings()).models["income"]
    assert mb.ids == ["q-0", "p-0"]
    assert np.array_equal(mb.numeric["f0"], [1.0, np.nan], equal_nan=True)
    assert np.array_equal(mb.prediction, [np.nan, 0.7], equal_nan=True)


def test_replay_emits_requests_still_awaiting_a_response_at_the_end_of_the_file(tmp_path):
    """A log cut before the last responses: those requests are events too, alone, at the
    file's last line (they used to stay in the pairing store: in no alert, count or dead
    letter)."""
    lines = []
    for i in range(10):
        lines.append(orjson.dumps({"specversion": "1.0", "type": REQUEST, "id": f"e{i}", "source": "s",
                                   "inferenceservicename": "tab", "data": {"instances": [[float(i)]]}}))
        if i < 7:
            lines.append(orjson.dumps({"specversion": "1.0", "type": RESPONSE, "id": f"e{i}",
                                       "source": "s", "inferenceservicename": "tab",
                                       "data": {"predictions": [0.3]}}))
    path = tmp_path / "kserve.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(path), "--format", "kserve"],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert b"17 lines, 10 events" in proc.stderr and b"0 dead letters" in proc.stderr


def test_replay_merges_labels_with_kserve_events_by_their_time_attribute(tmp_path):
    """KServe CloudEvents carry their time in `time`, not `ts`: the merge used to put every
    label after every event, so a bounded prediction store had evicted their predictions."""
    from datetime import UTC, datetime

    def iso(t: float) -> str:
        return datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")

    n, t0 = 8000, 1.7e9
    events, labels = [], []
    for i in range(n):
        for kind, data in ((REQUEST, {"instances": [[float(i % 5)]]}), (RESPONSE, {"predictions": [0.8]})):
            events.append(orjson.dumps({"specversion": "1.0", "type": kind, "id": f"e{i}", "source": "s",
                                        "inferenceservicename": "tab", "time": iso(t0 + i), "data": data}))
        labels.append(orjson.dumps({"model": "tab", "id": f"e{i}-0", "ts": t0 + i + 10, "label": 1}))
    ev, lb, config = tmp_path / "kserve.jsonl", tmp_path / "labels.jsonl", tmp_path / "c.toml"
    ev.write_bytes(b"\n".join(events) + b"\n")
    lb.write_bytes(b"\n".join(labels) + b"\n")
    config.write_text("[limits]\nmax_pending_predictions = 3000\n")   # > a batch's events
    dead = tmp_path / "dead.jsonl"
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(ev), "--format", "kserve",
                           "--labels", str(lb), "--config", str(config), "--dead-letter", str(dead)],
                          capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert dead.read_bytes() == b"", dead.read_bytes()[:300]
    assert f"{n} events".encode() in proc.stderr and f"{n} labels".encode() in proc.stderr


def test_pairing_state_round_trips_and_rejects_garbage():
    from detectors._state import StateError

    conv = Converter({"kserve": "kserve"}, {})
    out, _ = conv.convert([binary(REQUEST, "a", {"instances": [[1.0, 2.0]]}, 0),
                           binary(RESPONSE, "b", {"predictions": [0.7]}, 1)])
    assert out == [] and conv.changed
    blob = conv.dump()
    assert not conv.changed
    again = Converter({"kserve": "kserve"}, {})
    again.load(blob)
    assert list(again.kserve.pending) == ["a", "b"]
    out, dead = again.convert([binary(RESPONSE, "a", {"predictions": [0.3]}, 2),
                               binary(REQUEST, "b", {"instances": [[5.0, 6.0]]}, 3)])
    mb = decode(out, LimitSettings()).models["sklearn-iris"]
    assert dead == [] and mb.ids == ["a-0", "b-0"] and mb.prediction.tolist() == [0.3, 0.7]
    assert mb.numeric["f0"].tolist() == [1.0, 5.0]
    for garbage in (b"not json", b'{"version": 9}', b'{"version": 1, "pending": [[1]]}'):
        with pytest.raises(StateError):
            Converter({"kserve": "kserve"}, {}).load(garbage)


def test_a_converted_event_rejected_by_decoding_is_dead_lettered_as_it_arrived():
    """A prediction class name too long is only seen by decoding, in the converted events: the
    dead letter carries the KServe message that arrived, not our JSON."""
    from stream.config import load_settings
    from stream.pipeline import Pipeline

    msgs = [structured(REQUEST, "a", {"instances": [{"ward": 1.0}]}, 0),
            structured(RESPONSE, "a", {"predictions": [0.1]}, 1),
            structured(REQUEST, "b", {"instances": [{"ward": 2.0}]}, 2),
            structured(RESPONSE, "b", {"predictions": ["x" * 200]}, 3)]
    result = Pipeline(load_settings(env={}), formats={"kserve": "kserve"}).process(msgs)
    # that event is rejected, as the message that completed its pair
    assert [d.reason for d in result.dead_letters] == ["invalid_prediction"]
    assert result.dead_letters[0].message == msgs[3]          # its raw bytes and headers
    assert result.n_events == 1
