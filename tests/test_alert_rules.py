"""The Prometheus alert rules (deploy/prometheus/alerts.yml): promtool's checks and unit tests,
the Alertmanager example, the PrometheusRule form, and a real Prometheus evaluating them on a
live scrape of the service."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import orjson
import pytest
import yaml
from kafka_helpers import (
    create_topics,
    free_port,
    produce,
    start_service,
    stop_service,
    wait_for,
    write_config,
)

from stream.app.synthetic import DEMO_MODELS, events

ROOT = Path(__file__).resolve().parents[1]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} not installed (Debian: apt-get install prometheus prometheus-alertmanager; "
                    ".ci/run does)")
    return path


def run(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def rules() -> list[dict]:
    return [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules():
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_promtool_unit_tests_fire_each_rule_on_its_fault_only():
    run(tool("promtool"), "test", "rules", str(RULES.parent / "alerts_test.yml"))
    tested = set(re.findall(r"alertname: (\w+)", (RULES.parent / "alerts_test.yml").read_text()))
    assert tested == {r["alert"] for r in rules()}                   # every rule has its test


def test_rules_follow_the_mixin_conventions():
    for r in rules():
        assert r["labels"]["severity"] in ("critical", "warning", "info")
        assert {"summary", "description", "runbook_url"} <= set(r["annotations"])
        anchor = r["annotations"]["runbook_url"].rsplit("#", 1)[1]
        assert anchor == r["alert"].lower()
        assert f"## {r['alert']}" in (ROOT / "docs" / "runbook.md").read_text()


def test_alertmanager_example_is_valid():
    run(tool("amtool"), "check-config", str(ROOT / "deploy" / "alertmanager" / "alertmanager.yml"))


def test_the_prometheusrule_form_holds_the_same_groups():
    doc = yaml.safe_load(run("bash", "scripts/prometheusrule", "obs"))
    assert doc["kind"] == "PrometheusRule" and doc["metadata"]["namespace"] == "obs"
    assert doc["spec"] == yaml.safe_load(RULES.read_text())


@pytest.mark.kafka
def test_a_real_prometheus_fires_the_rules_on_the_live_service(kafka_bootstrap, unique, tmp_path):
    """The service runs on a drifting stream; a real Prometheus scrapes it every second with the
    rules loaded: every metric the rules read is in the scrape, and the drift rule becomes
    active for the drifting models (pending: its `for` is a minute)."""
    prometheus = tool("prometheus")
    create_topics(kafka_bootstrap, {f"events-{unique}": 2})
    port, prom_port = free_port(), free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [{"job_name": "streamdrift",
                            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}]}))
    service = start_service(cfg, tmp_path / "service.log")
    prom = subprocess.Popen([prometheus, f"--config.file={tmp_path / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))

    def api(path: str) -> dict:
        try:
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/{path}",
                                                     timeout=5).read())
        except OSError:
            return {}

    try:
        evs = list(events(DEMO_MODELS, 9000, seed=11))
        produce(kafka_bootstrap, f"events-{unique}", [orjson.dumps(e) for _, e in evs],
                keys=[m.encode() for m, _ in evs])

        def active() -> set[tuple[str, str, str]]:
            got = api("alerts").get("data", {}).get("alerts", [])
            return {(a["labels"]["alertname"], a["labels"].get("model", ""), a["state"]) for a in got}

        want = {("StreamdriftDrift", "fraud"), ("StreamdriftDrift", "readmission")}
        seen = wait_for(lambda: (s := active()) and want <= {x[:2] for x in s} and s, 90,
                        "the drift rule active for fraud and readmission")
        assert all(state in ("pending", "firing") for *_, state in seen)
        assert not {name for name, *_ in seen} & {"StreamdriftDown", "StreamdriftDataQualityFault",
                                                    "StreamdriftDeadLettersRising"}
        names = {m for r in rules() for m in re.findall(r"\b(streamdrift_[a-z_]+|up)\b", r["expr"])}
        for name in names:                             # what the rules read is what the service exports
            result = api(f"query?query={name}").get("data", {}).get("result", [])
            assert result, f"{name}: no series in the live scrape"
        rule_health = [r["health"] for g in api("rules")["data"]["groups"] for r in g["rules"]]
        assert rule_health and set(rule_health) == {"ok"}
    finally:
        prom.terminate()
        prom.wait(30)
        assert stop_service(service) == 0
