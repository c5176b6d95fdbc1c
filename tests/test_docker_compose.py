"""docker-compose.yml cannot run here (no Docker engine); check it parses and agrees with the code."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from stream.config import Settings, load_settings

ROOT = Path(__file__).resolve().parents[1]


def test_compose_names_the_services_ports_and_topics_the_code_uses():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"kafka", "streamdrift", "prometheus"}
    assert services["kafka"]["image"].startswith("apache/kafka:")
    env = services["kafka"]["environment"]
    assert "broker" in env["KAFKA_PROCESS_ROLES"] and "controller" in env["KAFKA_PROCESS_ROLES"]
    assert services["streamdrift"]["build"] == "."
    cfg_mount = services["streamdrift"]["volumes"][0].split(":")
    settings = load_settings(ROOT / cfg_mount[0], env={})
    assert settings.kafka.bootstrap == "kafka:9092"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    defaults = Settings()
    assert settings.kafka.events_topics == defaults.kafka.events_topics
    assert settings.kafka.alerts_topic == defaults.kafka.alerts_topic
    assert f"127.0.0.1:{settings.metrics.port}:{settings.metrics.port}" in services["streamdrift"]["ports"]
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"streamdrift:{settings.metrics.port}"]
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENTRYPOINT [\"streamdrift\"]" in dockerfile
    tomllib.loads((ROOT / "deploy" / "streamdrift.toml").read_text())
