"""What the tests of the Schema Registry formats (Avro, Protobuf) share."""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable

import numpy as np
from kafka_helpers import (
    alerts_of,
    create_topics,
    free_port,
    produce,
    read_topic,
    start_service,
    stop_service,
    write_config,
)


def register(url: str, schema: dict | str, schema_type: str = "AVRO") -> int:
    """A schema registered under a fresh subject; its id."""
    body = {"schema": schema if isinstance(schema, str) else json.dumps(schema)}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    req = urllib.request.Request(f"{url}/subjects/t-{uuid.uuid4().hex[:8]}-value/versions",
                                 data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/vnd.schemaregistry.v1+json"})
    return json.loads(urllib.request.urlopen(req, timeout=10).read())["id"]


def service_reads(fmt: str, event: Callable[[int, float], bytes], kafka_bootstrap: str, registry: str,
                  unique: str, tmp_path) -> None:
    """`streamdrift run` on a topic of format ``fmt`` (records by ``event(i, x)``): the shift of
    x from the 4000th record is found, and a message that is not a frame is a dead letter."""
    create_topics(kafka_bootstrap, {f"events-{unique}": 1})
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       f'[registry]\nurl = "{registry}"\n\n[kafka.formats]\n"events-{unique}" = "{fmt}"\n')
    rng = np.random.default_rng(1)
    values = [event(i, float(rng.normal(3 if i >= 4000 else 0, 1))) for i in range(8000)]
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        produce(kafka_bootstrap, f"events-{unique}", values + [f"not {fmt}".encode()])
        got = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}",
                                   lambda ms: any(a["signal"] == "feature:x" for a in alerts_of(ms)), 120))
        assert got[0]["model"] == "m" and got[0]["at"]["offset"] >= 4000
        dead = read_topic(kafka_bootstrap, f"dead-{unique}", lambda ms: len(ms) >= 1, timeout_s=60)
        assert dict(dead[0].headers())["streamdrift.reason"] == b"invalid_frame"
    finally:
        assert stop_service(proc) == 0
