"""Shared pytest setup: helper modules on sys.path, and one real Kafka broker per session.

Integration tests use the broker that `scripts/kafka start` runs on 127.0.0.1 (the test
command starts it; if none answers, the fixture starts it itself), and the Avro tests the
Schema Registry of `scripts/registry start`, likewise. Each test uses its own
uniquely named topics and consumer groups.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream.app.demo import broker_answers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The test broker's address; the topics the session created are deleted at its end.

    Every test makes its own topics, so a broker that outlives sessions would otherwise hold
    thousands of partitions, whose metadata outgrows the broker's heap.
    """
    bootstrap = os.environ.get("STREAMDRIFT_TEST_BOOTSTRAP", "127.0.0.1:9092")
    if not broker_answers(bootstrap):
        port = bootstrap.rpartition(":")[2]
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka"), "start"], check=True,
                       env={**os.environ, "KAFKA_PORT": port}, timeout=600)
        assert broker_answers(bootstrap), f"Kafka at {bootstrap} does not answer after scripts/kafka start"
    before = set(_topics(bootstrap))
    yield bootstrap
    _delete_topics(bootstrap, [t for t in _topics(bootstrap) if t not in before and not t.startswith("_")])


def _topics(bootstrap: str) -> list[str]:
    return list(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30).topics)


def _delete_topics(bootstrap: str, topics: list[str]) -> None:
    """Delete `topics`, reporting (not raising) the ones the broker refused: the tests passed."""
    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap})      # alive until every future is done
    futures = admin.delete_topics(topics, operation_timeout=60)
    failed = []
    for topic, future in futures.items():
        try:
            future.result(timeout=120)
        except KafkaException as e:
            failed.append(f"{topic}: {e}")
    if failed:
        print(f"conftest: {len(failed)} of {len(topics)} test topics not deleted, e.g. {failed[0]}",
              file=sys.stderr)


@pytest.fixture(scope="session")
def schema_registry() -> str:
    """A real Confluent-compatible Schema Registry (scripts/registry: rivven-schema)."""
    import urllib.request

    port = os.environ.get("STREAMDRIFT_TEST_REGISTRY_PORT", "8081")
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{url}/subjects", timeout=2).read()
            return True
        except OSError:
            return False

    if not answers():
        subprocess.run(["bash", str(ROOT / "scripts" / "registry"), "start"], check=True,
                       env={**os.environ, "REGISTRY_PORT": port}, timeout=1200)
        assert answers(), f"no Schema Registry at {url} after scripts/registry start"
    return url


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topic and group names."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def seasonal_config(tmp_path) -> str:
    """A configuration file declaring model "grid"'s daily cycle (quality_streams.seasonal)."""
    from quality_streams import SEASONAL_CONFIG  # (tests/ is on the path from here on)

    path = tmp_path / "season.toml"
    path.write_text(SEASONAL_CONFIG)
    return str(path)
