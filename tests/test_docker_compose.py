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
    assert set(services) == {"kafka", "streamdrift", "prometheus", "alertmanager", "grafana"}
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
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = prom["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"streamdrift:{settings.metrics.port}"]
    # Prometheus loads the rules from where compose mounts them, and sends to Alertmanager
    mounts = dict(v.rsplit(":", 1)[0].split(":", 1) for v in services["prometheus"]["volumes"])
    assert mounts["./deploy/prometheus/alerts.yml"] in prom["rule_files"]
    assert mounts["./deploy/prometheus/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    am = prom["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0]
    assert am.split(":")[0] == "alertmanager" and f"127.0.0.1:9093:{am.split(':')[1]}" in \
        services["alertmanager"]["ports"]
    am_mount = services["alertmanager"]["volumes"][0].split(":")
    assert (ROOT / am_mount[0]).is_file() and am_mount[1] in " ".join(services["alertmanager"]["command"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENTRYPOINT [\"streamdrift\"]" in dockerfile
    tomllib.loads((ROOT / "deploy" / "streamdrift.toml").read_text())


def test_grafana_dashboard_queries_only_metrics_the_service_exports():
    import json
    import re
    import threading

    from stream.metrics import Metrics

    dash = json.loads((ROOT / "deploy" / "grafana" / "dashboards" / "streamdrift.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(dash["panels"]) >= 8 and all(p["datasource"]["uid"] == "prometheus" for p in dash["panels"])
    used = {m for e in exprs for m in re.findall(r"streamdrift_[a-z_]+", e)}
    class NoState:                     # the state gauges exist whatever the service holds
        lock = threading.Lock()

        def pipelines(self):
            return []

        def lag(self):
            return {}

    metrics = Metrics()
    metrics.watch(NoState())
    exported = {s.name for fam in metrics.registry.collect() for s in fam.samples} | {
        fam.name for fam in metrics.registry.collect()}
    # histogram samples (_bucket/_sum/_count) and counters (_total) appear once observed
    exported |= {f"{n}{suffix}" for n in list(exported) for suffix in ("_bucket", "_sum", "_count", "_total")}
    assert used <= exported, used - exported
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.startswith("./deploy/grafana/dashboards:") for m in mounts)
    ds = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert ds["datasources"][0]["url"] == "http://prometheus:9090"
