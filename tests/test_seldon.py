"""Seldon Core 2 topics: OIP protobuf requests and responses, built with the protobuf runtime
from the public .proto (tests/data/grpc_predict_v2.proto), decoded by the service's own reader."""

from __future__ import annotations

import importlib
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from kafka_helpers import (
    alerts_of,
    committed,
    create_topics,
    free_port,
    produce,
    read_topic,
    start_service,
    stop_service,
    write_config,
)

from stream.config import load_settings
from stream.errors import ConfigError
from stream.ingest.convert import Converter
from stream.ingest.seldon import decode
from stream.pipeline import Pipeline
from stream.types import Message

IN, OUT = "seldon.prod.model.iris.inputs", "seldon.prod.model.iris.outputs"
PROTO = Path(__file__).parent / "data" / "grpc_predict_v2.proto"


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    """The message classes protoc generates from the public definitions."""
    pytest.importorskip("grpc_tools", reason="grpcio-tools (the dev extra) compiles the .proto")
    out = tmp_path_factory.mktemp("pb")
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", f"--python_out={out}",
                    PROTO.name], check=True, timeout=60)
    sys.path.insert(0, str(out))
    try:
        return importlib.import_module("grpc_predict_v2_pb2")
    finally:
        sys.path.remove(str(out))


def request(pb, ident: str, columns: dict[str, list], raw: bool = False) -> bytes:
    """A ModelInferRequest with one tensor per column (FP64 numbers, BYTES strings), typed
    contents or raw_input_contents."""
    req = pb.ModelInferRequest(model_name="iris", id=ident)
    for name, values in columns.items():
        t = req.inputs.add(name=name, shape=[len(values)])
        if isinstance(values[0], str):
            t.datatype = "BYTES"
            if raw:
                req.raw_input_contents.append(b"".join(struct.pack("<I", len(v.encode())) + v.encode()
                                                       for v in values))
            else:
                t.contents.bytes_contents.extend(v.encode() for v in values)
        else:
            t.datatype = "FP64"
            if raw:
                req.raw_input_contents.append(np.asarray(values, "<f8").tobytes())
            else:
                t.contents.fp64_contents.extend(values)
    return req.SerializeToString()


def response(pb, ident: str, scores: list[float], raw: bool = False) -> bytes:
    resp = pb.ModelInferResponse(model_name="iris", id=ident)
    t = resp.outputs.add(name="predict_proba", datatype="FP32", shape=[len(scores), 1])
    if raw:
        resp.raw_output_contents.append(np.asarray(scores, "<f4").tobytes())
    else:
        t.contents.fp32_contents.extend(scores)
    return resp.SerializeToString()


def convert(messages: list[Message], **kw):
    c = Converter({IN: "seldon", OUT: "seldon"}, {}, **kw)
    out, dead = c.convert(messages)
    return [orjson.loads(m.value) for m in out], dead, c


def msg(topic: str, value: bytes, offset: int, key: bytes | None = None, ts: float = 1.7e9) -> Message:
    return Message(value, topic, 0, offset, ts, (), key)


@pytest.mark.parametrize("raw", [False, True])
def test_a_request_and_its_response_make_events(pb, raw):
    docs, dead, _ = convert([
        msg(IN, request(pb, "r1", {"sepal": [5.1, 4.9], "kind": ["a", "b"]}, raw), 0),
        msg(OUT, response(pb, "r1", [0.25, 0.75], raw), 0)])
    assert dead == [] and len(docs) == 1                       # a columnar document of the two rows
    d = docs[0]
    assert (d["model"], d["id"], d["ts"]) == ("iris", ["r1-0", "r1-1"], 1.7e9)
    assert d["features"] == {"sepal": [5.1, 4.9], "kind": ["a", "b"]} and d["prediction"] == [0.25, 0.75]


def test_the_response_may_come_first_and_the_key_stands_in_for_a_missing_id(pb):
    docs, dead, c = convert([msg(OUT, response(pb, "", [0.5]), 0, key=b"k7"),
                             msg(IN, request(pb, "", {"x": [1.0], "y": [2.0]}), 0, key=b"k7")])
    assert dead == [] and docs[0]["features"] == {"x": 1.0, "y": 2.0} and docs[0]["prediction"] == 0.5
    assert docs[0]["id"] == "k7-0"
    assert c.seldon.pending == {}


def test_every_content_type_decodes_as_protobuf_wrote_it(pb):
    req = pb.ModelInferRequest(model_name="iris", id="r")
    for name, dtype, field, values in [("i32", "INT32", "int_contents", [-3, 0, 2**31 - 1]),
                                       ("i64", "INT64", "int64_contents", [-(2**40), 5, 7]),
                                       ("u32", "UINT32", "uint_contents", [0, 1, 2**32 - 1]),
                                       ("b", "BOOL", "bool_contents", [True, False, True]),
                                       ("f", "FP32", "fp32_contents", [0.5, -1.25, 3.0])]:
        t = req.inputs.add(name=name, datatype=dtype, shape=[3])
        getattr(t.contents, field).extend(values)
    t = req.inputs.add(name="m", datatype="FP64", shape=[3, 2])
    t.contents.fp64_contents.extend([1, 2, 3, 4, 5, 6])
    ident, model, tensors = decode(req.SerializeToString(), "inputs")
    assert (ident, model) == ("r", "iris")
    got = {t["name"]: (t["datatype"], t["shape"], t["data"]) for t in tensors}
    assert got["i32"] == ("INT32", [3], [-3, 0, 2**31 - 1])
    assert got["i64"][2] == [-(2**40), 5, 7] and got["u32"][2] == [0, 1, 2**32 - 1]
    assert got["b"][2] == [True, False, True] and got["f"][2] == [0.5, -1.25, 3.0]
    assert got["m"] == ("FP64", [3, 2], [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])


def test_a_single_2d_tensor_takes_the_configured_column_names(pb):
    req = pb.ModelInferRequest(model_name="iris", id="r")
    req.inputs.add(name="predict", datatype="FP32", shape=[2, 3])
    req.raw_input_contents.append(np.arange(6, dtype="<f4").tobytes())
    c = Converter({IN: "seldon", OUT: "seldon"}, {"iris": ("a", "b", "c")})
    out, dead = c.convert([msg(IN, req.SerializeToString(), 0), msg(OUT, response(pb, "r", [0.1, 0.2]), 0)])
    doc = orjson.loads(out[0].value)
    assert dead == [] and doc["features"] == {"a": [0.0, 3.0], "b": [1.0, 4.0], "c": [2.0, 5.0]}


@pytest.mark.parametrize("build,reason", [
    (lambda pb: b"\x0a\xff\xff", "invalid_protobuf"),                        # length past the end
    (lambda pb: b"\x0b", "invalid_protobuf"),                                # wire type 3 (a group)
    (lambda pb: b"\x80", "invalid_protobuf"),                                # a varint cut short
    (lambda pb: pb.ModelInferRequest(model_name="iris", id="r").SerializeToString(), "invalid_payload"),
    (lambda pb: pb.ModelInferRequest(id="r", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[2])], raw_input_contents=[b"\x00" * 7]).SerializeToString(),
     "invalid_tensor"),                                                      # 7 bytes of FP32
    (lambda pb: pb.ModelInferRequest(id="r", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP32", shape=[1])], raw_input_contents=[b"\0" * 4] * 2).SerializeToString(),
     "invalid_tensor"),                                                      # 2 raw for 1 tensor
    (lambda pb: pb.ModelInferRequest(id="r", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="BYTES", shape=[1])], raw_input_contents=[b"\x09\0\0\0ab"]).SerializeToString(),
     "invalid_tensor"),                                                      # a BYTES length past the end
    (lambda pb: pb.ModelInferRequest(id="r", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="COMPLEX", shape=[1])], raw_input_contents=[b"\0" * 8]).SerializeToString(),
     "invalid_tensor"),
    (lambda pb: pb.ModelInferRequest(id="r", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP64", shape=[3], contents=pb.InferTensorContents(fp64_contents=[1.0]))]
    ).SerializeToString(), "invalid_tensor"),                                # 1 value for shape [3]
    (lambda pb: request(pb, "", {"x": [1.0], "y": [2.0]}), "invalid_payload"),   # no id, no key
])
def test_malformed_messages_are_dead_letters_with_reasons(pb, build, reason):
    docs, dead, _ = convert([msg(IN, build(pb), 5)])
    assert docs == [] and [(d.reason, d.message.offset) for d in dead] == [(reason, 5)]


def test_the_response_of_a_rejected_request_goes_on_alone(pb):
    bad = pb.ModelInferRequest(id="r1", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="x", datatype="FP64", shape=[2], contents=pb.InferTensorContents(fp64_contents=[1.0]))])
    docs, dead, _ = convert([msg(IN, bad.SerializeToString(), 0), msg(OUT, response(pb, "r1", [0.4]), 0)])
    assert [d.reason for d in dead] == ["invalid_tensor"]
    assert [(e["prediction"], e["features"]) for e in docs[0]] == [(pytest.approx(0.4), {})]


def test_the_pairing_store_survives_a_restart(pb):
    _, _, c = convert([msg(IN, request(pb, "r1", {"x": [1.0], "y": [2.0]}), 0)])
    restored = Converter({IN: "seldon", OUT: "seldon"}, {})
    restored.load(c.dump())
    out, dead = restored.convert([msg(OUT, response(pb, "r1", [0.5]), 0)])
    assert dead == [] and orjson.loads(out[0].value)["prediction"] == 0.5


def test_seldon_topics_are_checked_at_start():
    for formats, events in [({"iris-requests": "seldon"}, ["iris-requests"]), ({OUT: "seldon"}, [OUT])]:
        with pytest.raises(ConfigError, match="kafka.formats"):
            load_settings(env={}, overrides={"kafka.formats": formats, "kafka.events_topics": events})


def test_drift_in_seldon_traffic_is_found(pb):
    """Requests whose feature x moves by 1 sd halfway: a data_drift alert pointing at the
    message that completed the pair (the response)."""
    rng = np.random.default_rng(0)
    settings = load_settings(env={}, overrides={"kafka.formats": {IN: "seldon", OUT: "seldon"},
                                                "kafka.events_topics": [IN, OUT]})
    pipeline = Pipeline(settings)
    alerts, messages = [], []
    for i in range(6000):
        x, y = float(rng.normal(10 + (2 if i >= 3000 else 0), 2)), float(rng.normal())
        messages += [msg(IN, request(pb, f"r{i}", {"x": [x], "y": [y]}), i, ts=1.7e9 + i),
                     msg(OUT, response(pb, f"r{i}", [float(rng.random())]), i, ts=1.7e9 + i)]
    for s in range(0, len(messages), 1000):
        alerts += pipeline.process(messages[s:s + 1000]).alerts
    first = alerts[0]
    assert (first["model"], first["signal"], first["at"]["topic"]) == ("iris", "feature:x", OUT)
    assert 3000 <= first["at"]["offset"] < 3300
    assert {a["signal"] for a in alerts} <= {"feature:x", "multivariate:reconstruction"}


@pytest.mark.kafka
def test_the_service_reads_seldon_topics(pb, kafka_bootstrap, unique, tmp_path):
    """Requests and responses on their own topics (keyed by request id, as Seldon does), paired
    across them; both topics' offsets are committed."""
    inputs, outputs = f"seldon.{unique}.model.iris.inputs", f"seldon.{unique}.model.iris.outputs"
    create_topics(kafka_bootstrap, {inputs: 2, outputs: 2})
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       f'[kafka.formats]\n"{inputs}" = "seldon"\n"{outputs}" = "seldon"\n')
    cfg.write_text(cfg.read_text().replace(f'events_topics = ["events-{unique}"]',
                                           f'events_topics = ["{inputs}", "{outputs}"]'))
    rng = np.random.default_rng(1)
    reqs, resps, keys = [], [], []
    for i in range(6000):
        x = float(rng.normal(10 + (2 if i >= 3000 else 0), 2))
        reqs.append(request(pb, f"r{i}", {"x": [x], "y": [float(rng.normal())]}))
        resps.append(response(pb, f"r{i}", [float(rng.random())]))
        keys.append(f"r{i}".encode())
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        produce(kafka_bootstrap, inputs, reqs, keys=keys)
        produce(kafka_bootstrap, outputs, resps + [b"\xff\xff"], keys=keys + [b"junk"])
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: any(a["signal"] == "feature:x" for a in alerts_of(ms)), 120))
        assert any(a["model"] == "iris" and a["signal"] == "feature:x"
                   and a["at"]["topic"] in (inputs, outputs) for a in got)
        dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= 1, timeout_s=60)
        assert dict(dead[0].headers())["streamdrift.reason"] == b"invalid_protobuf"
    finally:
        assert stop_service(proc) == 0
    assert sum(committed(kafka_bootstrap, f"g-{unique}", outputs, 2)) == len(resps) + 1
    assert sum(committed(kafka_bootstrap, f"g-{unique}", inputs, 2)) == len(reqs)
