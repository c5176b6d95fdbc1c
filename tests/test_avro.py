"""Avro events with a real Confluent-compatible Schema Registry (scripts/registry)."""

from __future__ import annotations

import io
import struct

import numpy as np
import orjson
import pytest
from kafka_helpers import free_port
from registry_helpers import register, service_reads

from stream.config import RegistrySettings, load_settings
from stream.errors import ConfigError
from stream.ingest.convert import Converter
from stream.ingest.registry import RegistryUnavailable
from stream.pipeline import Pipeline
from stream.types import Message

fastavro = pytest.importorskip("fastavro")

EVENT = {"type": "record", "name": "Scored", "namespace": "shop", "fields": [
    {"name": "model", "type": "string"},
    {"name": "id", "type": "string"},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "features", "type": {"type": "map", "values": ["null", "double", "string"]}},
    {"name": "prediction", "type": ["null", "double"], "default": None}]}
FLAT = {"type": "record", "name": "Flat", "fields": [
    {"name": "user_id", "type": "string"}, {"name": "amount", "type": "double"},
    {"name": "country", "type": "string"}, {"name": "score", "type": "float"}]}


def frame(schema_id: int, schema: dict, record: dict) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), record)
    return b"\x00" + struct.pack(">I", schema_id) + buf.getvalue()


def convert(url: str, values: list[bytes], **fields):
    c = Converter({"t": "avro"}, {}, registry=RegistrySettings(url=url, **fields))
    out, dead = c.convert([Message(v, "t", 0, i, 1.7e9) for i, v in enumerate(values)])
    return [orjson.loads(m.value) for m in out], dead


def test_records_map_to_events(schema_registry):
    sid = register(schema_registry, EVENT)
    docs, dead = convert(schema_registry, [frame(sid, EVENT, {
        "model": "churn", "id": "e1", "ts": 1_700_000_000_500,
        "features": {"age": 41.0, "plan": "pro", "spend": None}, "prediction": 0.8})])
    assert dead == []
    assert docs == [{"model": "churn", "id": "e1", "ts": 1_700_000_000.5, "prediction": 0.8,
                     "features": {"age": 41.0, "plan": "pro", "spend": None}}]


def test_flat_records_take_the_configured_fields(schema_registry):
    """No features field: every field but the mapped ones is a feature; the model is fixed."""
    sid = register(schema_registry, FLAT)
    docs, dead = convert(schema_registry, [frame(sid, FLAT, {"user_id": "u7", "amount": 12.5,
                                                             "country": "FR", "score": 0.25})],
                         model="fraud", id_field="user_id", prediction_field="score")
    assert dead == [] and docs == [{"model": "fraud", "id": "u7", "ts": 1.7e9, "prediction": 0.25,
                                    "features": {"amount": 12.5, "country": "FR"}}]


def test_bad_messages_are_dead_letters_with_reasons(schema_registry):
    sid = register(schema_registry, EVENT)
    proto = register(schema_registry, 'syntax = "proto3"; message E { string model = 1; }', "PROTOBUF")
    good = frame(sid, EVENT, {"model": "m", "id": "a", "ts": 1, "features": {"x": 1.0}, "prediction": None})
    no_model = frame(register(schema_registry, FLAT), FLAT, {"user_id": "u", "amount": 1.0, "country": "x",
                                                            "score": 0.5})
    cases = {b"{\"model\": \"m\"}": "invalid_frame", b"\x00\x00\x00": "invalid_frame",
             b"\x00" + struct.pack(">I", 987654) + good[5:]: "unknown_schema",
             good[:-3]: "invalid_avro", good + b"\x00\x01": "invalid_avro",
             b"\x00" + struct.pack(">I", proto) + b"\x0a\x01m": "not_avro_schema",
             no_model: "invalid_model"}
    docs, dead = convert(schema_registry, list(cases))
    assert docs == [] and [d.reason for d in dead] == list(cases.values())


def test_an_unreachable_registry_stops_the_batch_rather_than_dead_lettering_it():
    with pytest.raises(RegistryUnavailable, match="unreachable"):
        convert(f"http://127.0.0.1:{free_port()}", [b"\x00\x00\x00\x00\x01\x02"])


def test_avro_topics_need_a_registry_at_start():
    with pytest.raises(ConfigError, match="kafka.formats.t: format avro needs registry.url"):
        load_settings(env={}, overrides={"kafka.formats": {"t": "avro"}})


def test_drift_in_avro_events_is_found(schema_registry):
    sid = register(schema_registry, EVENT)
    settings = load_settings(env={}, overrides={"kafka.formats": {"t": "avro"},
                                                "registry.url": schema_registry})
    rng = np.random.default_rng(0)
    msgs = [Message(frame(sid, EVENT, {"model": "m", "id": f"e{i}", "ts": 1_700_000_000_000 + 1000 * i,
                                       "features": {"x": float(rng.normal(3 if i >= 4000 else 0, 1)),
                                                    "y": float(rng.normal())},
                                       "prediction": float(rng.random())}), "t", 0, i, 0.0)
            for i in range(8000)]
    pipeline = Pipeline(settings)
    alerts = [a for s in range(0, len(msgs), 2000) for a in pipeline.process(msgs[s:s + 2000]).alerts]
    assert alerts and alerts[0]["signal"] == "feature:x" and 4000 <= alerts[0]["at"]["offset"] < 4200


@pytest.mark.kafka
def test_the_service_reads_avro_topics(kafka_bootstrap, schema_registry, unique, tmp_path):
    sid = register(schema_registry, EVENT)
    service_reads("avro", lambda i, x: frame(sid, EVENT, {
        "model": "m", "id": f"e{i}", "ts": 1_700_000_000_000 + 1000 * i, "features": {"x": x},
        "prediction": None}), kafka_bootstrap, schema_registry, unique, tmp_path)
