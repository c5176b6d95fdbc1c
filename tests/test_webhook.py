"""The webhook sink against a real local HTTP server that fails on purpose."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import pytest
from kafka_helpers import (
    alerts_of,
    create_topics,
    free_port,
    produce,
    read_topic,
    start_service,
    stop_service,
    wait_for,
    write_config,
)

from stream.app.synthetic import DEMO_MODELS, events
from stream.config import WebhookSettings
from stream.metrics import Metrics
from stream.sinks.webhook import NEVER, WebhookSink, alertmanager_payload


class Endpoint:
    """An HTTP server on 127.0.0.1 whose answer to the n-th request (from 1) is
    ``plan(n, body)``: a status code, or ("hang", seconds) to answer 200 that late."""

    def __init__(self, plan=lambda n, body: 200) -> None:
        self.plan, self.received, self.attempts = plan, [], 0
        lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):                                   # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with lock:
                    endpoint.attempts += 1
                    n = endpoint.attempts
                answer = endpoint.plan(n, body)
                if isinstance(answer, tuple):
                    time.sleep(answer[1])
                    answer = 200
                if answer == 200:
                    with lock:
                        endpoint.received.append((dict(self.headers), orjson.loads(body)))
                self.send_response(answer)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    made = []

    def make(plan=lambda n, body: 200) -> Endpoint:
        made.append(Endpoint(plan))
        return made[-1]

    yield make
    for e in made:
        e.close()


def alert(i: int, status: str = "firing", **stats) -> dict:
    return {"alert_id": f"id{i}", "status": status, "kind": "data_drift", "model": "m",
            "signal": "feature:x", "detector": "adwin",
            "at": {"ts": 1.7e9 + i, "topic": "events", "partition": 0, "offset": i},
            "stats": {"mean_before": 1.0, "mean_after": 2.0, "effect_size": 1.0, **stats},
            "severity": "critical", "streamdrift_version": "0.1.0"}


def counter(metrics: Metrics, name: str, **labels) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def settings(url: str, **kw) -> WebhookSettings:
    return WebhookSettings(**{"url": url, "timeout_s": 0.5, "backoff_s": 0.01, "max_backoff_s": 0.05,
                              "drain_s": 10.0, **kw})


def test_failed_requests_are_retried_and_every_alert_arrives_in_order(endpoint):
    """Every alert's first two attempts get 503: all arrive, in order, with the headers."""
    e = endpoint(lambda n, body: 503 if n % 3 != 0 else 200)
    m = Metrics()
    sink = WebhookSink(settings(e.url, headers={"Authorization": "Bearer s3cret"}), m).start()
    for i in range(20):
        sink.offer(alert(i))
    wait_for(lambda: len(e.received) == 20, 30, "20 alerts delivered")
    sink.stop()
    assert [body["alert_id"] for _, body in e.received] == [f"id{i}" for i in range(20)]
    assert all(h["Authorization"] == "Bearer s3cret" for h, _ in e.received)
    assert counter(m, "streamdrift_webhook_requests_total", outcome="ok") == 20
    assert counter(m, "streamdrift_webhook_requests_total", outcome="retried") == 40
    assert counter(m, "streamdrift_webhook_request_seconds_count") == 60


def test_a_request_that_hangs_times_out_and_is_sent_again(endpoint):
    e = endpoint(lambda n, body: ("hang", 3.0) if n == 1 else 200)
    m = Metrics()
    sink = WebhookSink(settings(e.url, timeout_s=0.3), m).start()
    sink.offer(alert(0))
    sink.offer(alert(1))
    wait_for(lambda: {b["alert_id"] for _, b in e.received} >= {"id0", "id1"}, 30, "both delivered")
    sink.stop()
    assert counter(m, "streamdrift_webhook_requests_total", outcome="retried") >= 1


def test_a_rejected_request_is_not_retried(endpoint):
    e = endpoint(lambda n, body: 400 if b'"id0"' in body else 200)
    m = Metrics()
    sink = WebhookSink(settings(e.url), m).start()
    sink.offer(alert(0))
    sink.offer(alert(1))
    wait_for(lambda: len(e.received) == 1, 30, "the second alert delivered")
    sink.stop()
    assert e.attempts == 2 and e.received[0][1]["alert_id"] == "id1"
    assert counter(m, "streamdrift_webhook_requests_total", outcome="failed") == 1


def test_a_dead_endpoint_never_blocks_the_caller_and_the_queue_is_bounded():
    """Nothing listens: offers return at once, the queue holds at most `queue` alerts (the
    oldest dropped, counted), and stop gives up after drain_s."""
    url = f"http://127.0.0.1:{free_port()}/hook"
    m = Metrics()
    sink = WebhookSink(settings(url, queue=10, retries=1000, drain_s=0.2), m).start()
    for i in range(50):
        sink.offer(alert(i))
    assert m.registry.get_sample_value("streamdrift_webhook_queue") <= 10
    assert counter(m, "streamdrift_webhook_dropped_total", reason="queue_full") == 40
    sink.stop()
    dropped = counter(m, "streamdrift_webhook_dropped_total", reason="shutdown")
    delivered_or_failed = counter(m, "streamdrift_webhook_requests_total", outcome="failed")
    assert dropped + delivered_or_failed == 10 and dropped >= 9
    assert m.registry.get_sample_value("streamdrift_webhook_queue") == 0


def test_stop_sends_what_is_queued(endpoint):
    e = endpoint()
    sink = WebhookSink(settings(e.url), Metrics())
    for i in range(30):
        sink.offer(alert(i))                 # (queued before the thread runs)
    sink.start().stop()
    assert len(e.received) == 30


def test_alertmanager_payload_pairs_a_resolved_alert_with_its_firing(endpoint):
    e = endpoint()
    sink = WebhookSink(settings(e.url, format="alertmanager"), Metrics()).start()
    sink.offer(alert(0))
    sink.offer(alert(1, "resolved", episode_alert_id="id0", fired_ts=1.7e9))
    wait_for(lambda: len(e.received) == 2, 30, "both delivered")
    sink.stop()
    firing, resolved = (body for _, body in e.received)
    for p in (firing, resolved):
        assert p["version"] == "4" and p["receiver"] == "streamdrift" and len(p["alerts"]) == 1
    f, r = firing["alerts"][0], resolved["alerts"][0]
    assert f["status"] == "firing" and f["endsAt"] == NEVER
    assert f["labels"] == {"alertname": "StreamdriftDataDrift", "model": "m", "signal": "feature:x",
                           "kind": "data_drift", "detector": "adwin", "severity": "critical"}
    assert r["status"] == "resolved" and r["fingerprint"] == f["fingerprint"] == "id0"
    assert r["startsAt"] == f["startsAt"] and r["endsAt"] > r["startsAt"]
    assert "mean 1 -> 2" in f["annotations"]["description"]
    assert alertmanager_payload(alert(2, check="missing") | {"check": "missing"})["alerts"][0]["labels"][
        "check"] == "missing"


@pytest.mark.kafka
@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_the_service_posts_every_alert_through_a_failing_endpoint(kafka_bootstrap, unique, tmp_path, endpoint,
                                                                   guarantee):
    """A real `streamdrift run` whose endpoint answers 503 to every third request and hangs
    once: every alert of the topic arrives at the endpoint, and the topic has them all."""
    e = endpoint(lambda n, body: ("hang", 2.0) if n == 2 else 503 if n % 3 == 0 else 200)
    create_topics(kafka_bootstrap, {f"events-{unique}": 2})
    port = free_port()
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, port,
                       f'[sinks.webhook]\nurl = "{e.url}"\ntimeout_s = 0.5\nbackoff_s = 0.05\n',
                       kafka=f'guarantee = "{guarantee}"')
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        evs = list(events(DEMO_MODELS, 9000, seed=11))
        produce(kafka_bootstrap, f"events-{unique}", [orjson.dumps(ev) for _, ev in evs],
                keys=[m.encode() for m, _ in evs])
        expected = {("readmission", "feature:age"), ("fraud", "feature:amount")}
        found = lambda ms: expected <= {(a["model"], a["signal"]) for a in alerts_of(ms)}     # noqa: E731
        on_topic = alerts_of(read_topic(kafka_bootstrap, f"alerts-{unique}", found, timeout_s=120))
        ids = {a["alert_id"] for a in on_topic}
        wait_for(lambda: ids <= {b["alert_id"] for _, b in e.received}, 60,
                 "the topic's alerts at the endpoint")
    finally:
        assert stop_service(proc) == 0
    assert e.attempts > len({b["alert_id"] for _, b in e.received})        # some were retried
    assert all(b in on_topic for _, b in e.received if b["alert_id"] in ids)   # posted as on the topic


@pytest.mark.kafka
def test_a_dead_endpoint_loses_no_kafka_output(kafka_bootstrap, unique, tmp_path):
    create_topics(kafka_bootstrap, {f"events-{unique}": 1})
    cfg = write_config(tmp_path / "c.toml", kafka_bootstrap, unique, free_port(),
                       f'[sinks.webhook]\nurl = "http://127.0.0.1:{free_port()}/"\ndrain_s = 0.5\n')
    proc = start_service(cfg, tmp_path / "service.log")
    try:
        evs = list(events(DEMO_MODELS, 9000, seed=11))
        produce(kafka_bootstrap, f"events-{unique}", [orjson.dumps(ev) for _, ev in evs])
        expected = {("readmission", "feature:age"), ("fraud", "feature:amount")}
        read_topic(kafka_bootstrap, f"alerts-{unique}",
                   lambda ms: expected <= {(a["model"], a["signal"]) for a in alerts_of(ms)}, timeout_s=120)
    finally:
        assert stop_service(proc, timeout_s=60) == 0
