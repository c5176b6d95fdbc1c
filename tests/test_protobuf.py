"""Protobuf events with a real Confluent-compatible Schema Registry (scripts/registry)."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from registry_helpers import register, service_reads

from stream.config import RegistrySettings, load_settings
from stream.errors import ConfigError
from stream.ingest.convert import Converter
from stream.ingest.protobuf import message_path
from stream.pipeline import Pipeline
from stream.types import Message

pytest.importorskip("grpc_tools")
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

SCHEMA = '''syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Other { string x = 1; }
message Scored {
  string model = 1;
  string id = 2;
  google.protobuf.Timestamp ts = 3;
  map<string, double> features = 4;
  optional double prediction = 5;
  message Flat {
    string user_id = 1;
    double amount = 2;
    string country = 3;
    float score = 4;
    int64 visits = 5;
    enum Tier { FREE = 0; PRO = 1; }
    Tier tier = 6;
    optional double spend = 7;
  }
}
'''


def classes(tmp_path, text: str = SCHEMA) -> dict[str, type]:
    """The schema's message classes, compiled here with protoc (as a producer would)."""
    (tmp_path / "s.proto").write_text(text)
    import grpc_tools

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    desc = tmp_path / "s.desc"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"-I{include}",
                    "--include_imports", f"--descriptor_set_out={desc}",
                    str(tmp_path / "s.proto")], check=True)
    files = descriptor_pb2.FileDescriptorSet.FromString(desc.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for f in files.file:
        pool.Add(f)
    return {n: message_factory.GetMessageClass(pool.FindMessageTypeByName(n))
            for n in ("shop.Other", "shop.Scored", "shop.Scored.Flat")}


def zigzag(values: list[int]) -> bytes:
    out = b""
    for v in values:
        n = (v << 1) ^ (v >> 63)
        while True:
            b, n = n & 0x7F, n >> 7
            out += bytes([b | (0x80 if n else 0)])
            if not n:
                break
    return out


def frame(schema_id: int, path: list[int], record) -> bytes:
    index = b"\x00" if path == [0] else zigzag([len(path), *path])
    return b"\x00" + struct.pack(">I", schema_id) + index + record.SerializeToString()


def convert(url: str, values: list[bytes], **fields):
    c = Converter({"t": "protobuf"}, {}, registry=RegistrySettings(url=url, **fields))
    out, dead = c.convert([Message(v, "t", 0, i, 1.7e9) for i, v in enumerate(values)])
    return [orjson.loads(m.value) for m in out], dead


def scored(cls, **kw):
    m = cls["shop.Scored"](model=kw.get("model", "churn"), id=kw.get("id", "e1"))
    if "ts" in kw:
        m.ts.FromNanoseconds(int(kw["ts"] * 1e9))
    m.features.update(kw.get("features", {}))
    if kw.get("prediction") is not None:
        m.prediction = kw["prediction"]
    return m


def test_the_message_type_index_of_the_wire_format():
    assert message_path(b"\x00\x00\x00\x00\x01\x00rest") == ([0], 6)
    assert message_path(b"\x00\x00\x00\x00\x01" + zigzag([2, 1, 0]) + b"r") == ([1, 0], 8)


def test_records_map_to_events(schema_registry, tmp_path):
    cls = classes(tmp_path)
    sid = register(schema_registry, SCHEMA, "PROTOBUF")
    docs, dead = convert(schema_registry, [
        frame(sid, [1], scored(cls, ts=1_700_000_000.5, features={"age": 41.0, "spend": 0.0},
                               prediction=0.0)),
        frame(sid, [1], scored(cls, id="e2", features={"age": 40.0}))])
    assert dead == []
    # a 0 feature and an optional prediction set to 0 are values; unset time and prediction are not
    assert docs == [{"model": "churn", "id": "e1", "ts": 1_700_000_000.5, "prediction": 0.0,
                     "features": {"age": 41.0, "spend": 0.0}},
                    {"model": "churn", "id": "e2", "ts": 1.7e9, "features": {"age": 40.0}}]


def test_nested_flat_records_take_the_configured_fields(schema_registry, tmp_path):
    cls = classes(tmp_path)
    sid = register(schema_registry, SCHEMA, "PROTOBUF")
    flat = cls["shop.Scored.Flat"](user_id="u7", amount=12.5, country="FR", score=0.25, visits=3, tier=1)
    docs, dead = convert(schema_registry, [frame(sid, [1, 0], flat)], model="fraud", id_field="user_id",
                         prediction_field="score")
    assert dead == [] and docs == [{"model": "fraud", "id": "u7", "ts": 1.7e9, "prediction": 0.25,
                                    "features": {"amount": 12.5, "country": "FR", "visits": 3,
                                                 "tier": "PRO", "spend": None}}]


def test_bad_messages_are_dead_letters_with_reasons(schema_registry, tmp_path):
    cls = classes(tmp_path)
    sid = register(schema_registry, SCHEMA, "PROTOBUF")
    avro = register(schema_registry, {"type": "record", "name": "R",
                                      "fields": [{"name": "a", "type": "int"}]})
    broken = register(schema_registry, 'syntax = "proto3"; message E { strin model = 1; }', "PROTOBUF")
    good = frame(sid, [1], scored(cls, features={"x": 1.0}))
    cases = {b"{\"model\": \"m\"}": "invalid_frame", b"\x00\x00\x00": "invalid_frame",
             b"\x00" + struct.pack(">I", 987654) + good[5:]: "unknown_schema",
             good[:7] + b"\xff\xff\xff": "invalid_protobuf",
             good[:5] + zigzag([1, 7]) + good[6:]: "invalid_frame",
             b"\x00" + struct.pack(">I", avro) + b"\x00\x02": "not_protobuf_schema",
             b"\x00" + struct.pack(">I", broken) + b"\x00": "invalid_schema",
             frame(sid, [1], scored(cls, model="", features={"x": 1.0})): "invalid_model"}
    docs, dead = convert(schema_registry, list(cases))
    assert docs == [] and [d.reason for d in dead] == list(cases.values())


def test_protobuf_topics_need_a_registry_at_start():
    with pytest.raises(ConfigError, match="kafka.formats.t: format protobuf needs registry.url"):
        load_settings(env={}, overrides={"kafka.formats": {"t": "protobuf"}})


def test_drift_in_protobuf_events_is_found(schema_registry, tmp_path):
    cls = classes(tmp_path)
    sid = register(schema_registry, SCHEMA, "PROTOBUF")
    settings = load_settings(env={}, overrides={"kafka.formats": {"t": "protobuf"},
                                                "registry.url": schema_registry})
    rng = np.random.default_rng(0)
    msgs = [Message(frame(sid, [1], scored(cls, model="m", id=f"e{i}", ts=1.7e9 + i,
                                           features={"x": float(rng.normal(3 if i >= 4000 else 0, 1)),
                                                     "y": float(rng.normal())},
                                           prediction=float(rng.random()))), "t", 0, i, 0.0)
            for i in range(8000)]
    pipeline = Pipeline(settings)
    alerts = [a for s in range(0, len(msgs), 2000) for a in pipeline.process(msgs[s:s + 2000]).alerts]
    assert alerts and alerts[0]["signal"] == "feature:x" and 4000 <= alerts[0]["at"]["offset"] < 4200


@pytest.mark.kafka
def test_the_service_reads_protobuf_topics(kafka_bootstrap, schema_registry, unique, tmp_path):
    cls = classes(tmp_path)
    sid = register(schema_registry, SCHEMA, "PROTOBUF")
    service_reads("protobuf", lambda i, x: frame(sid, [1], scored(cls, model="m", id=f"e{i}", ts=1.7e9 + i,
                                                                  features={"x": x})),
                  kafka_bootstrap, schema_registry, unique, tmp_path)
