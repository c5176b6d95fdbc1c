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
from pathlib import Path

import pytest

from stream.app.demo import broker_answers

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    bootstrap = os.environ.get("STREAMDRIFT_TEST_BOOTSTRAP", "127.0.0.1:9092")
    if not broker_answers(bootstrap):
        port = bootstrap.rpartition(":")[2]
        subprocess.run(["bash", str(ROOT / "scripts" / "kafka"), "start"], check=True,
                       env={**os.environ, "KAFKA_PORT": port}, timeout=600)
        assert broker_answers(bootstrap), f"Kafka at {bootstrap} does not answer after scripts/kafka start"
    return bootstrap


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
