"""Published alerts POSTed to an HTTP endpoint (retraining pipelines, chat, an incident tool).

The service hands each alert over once Kafka has it (acknowledged, or committed with its
transaction): :meth:`WebhookSink.offer` only appends to a bounded queue and never blocks, so
a slow or failing endpoint cannot slow detection, and the alerts topic holds every alert
whatever the endpoint does. One thread sends the queue in order, one alert per request, with
a timeout per request and retries with doubling back-off on 5xx, 429, timeouts and refused
connections; other 4xx answers are not retried (the request itself is wrong). When the queue
is full the oldest alert waiting is dropped, and counted: the topic still has it.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import orjson

from ..config import WebhookSettings
from ..metrics import Metrics

log = logging.getLogger("streamdrift.webhook")

NEVER = "0001-01-01T00:00:00Z"          # Alertmanager's endsAt of an alert still firing


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _describe(alert: dict[str, Any]) -> str:
    s = alert["stats"]
    pairs = (("mean_before", "mean_after", "mean"), ("accuracy_before", "accuracy_after", "accuracy"),
             ("missing_rate_before", "missing_rate_after", "missing rate"),
             ("residual_before", "residual_after", "residual"))
    for a, b, what in pairs:
        if a in s and b in s:
            return f"{what} {s[a]:.4g} -> {s[b]:.4g} (effect {s.get('effect_size', 0):+.2f} sd)"
    return ", ".join(f"{k} {v}" for k, v in s.items() if isinstance(v, (int, float)))


def alertmanager_payload(alert: dict[str, Any]) -> dict[str, Any]:
    """The alert in the shape of Alertmanager's webhook (version 4), one alert per payload.
    Its fingerprint is the episode's (the firing alert's id, which the resolved one names), so
    a receiver matches the two as it matches Alertmanager's."""
    kind = alert["kind"]
    labels = {"alertname": "Streamdrift" + "".join(w.title() for w in kind.split("_")),
              "model": alert["model"], "signal": alert["signal"], "kind": kind,
              "detector": alert["detector"], "severity": alert["severity"]}
    for key in ("check", "model_version"):
        if key in alert:
            labels[key] = str(alert[key])
    if alert.get("estimated"):
        labels["estimated"] = "true"
    firing = alert["status"] == "firing"
    stats = alert["stats"]
    starts = alert["at"]["ts"] if firing else stats.get("fired_ts", alert["at"]["ts"])
    annotations = {"summary": f"{kind} of {alert['signal']} for model {alert['model']}",
                   "description": _describe(alert), "alert_id": alert["alert_id"]}
    one = {"status": alert["status"], "labels": labels, "annotations": annotations,
           "startsAt": _rfc3339(starts), "endsAt": NEVER if firing else _rfc3339(alert["at"]["ts"]),
           "generatorURL": "", "fingerprint": alert["alert_id"] if firing else stats["episode_alert_id"]}
    return {"version": "4", "groupKey": f'{{}}:{{model="{alert["model"]}"}}', "truncatedAlerts": 0,
            "status": alert["status"], "receiver": "streamdrift", "groupLabels": {"model": alert["model"]},
            "commonLabels": labels, "commonAnnotations": annotations, "externalURL": "", "alerts": [one]}


class WebhookSink:
    """Alerts to ``settings.url``, from a bounded queue, on a thread of its own.

    Parameters
    ----------
    settings : the ``[sinks.webhook]`` table (url, format, timeout_s, retries, backoff_s,
        max_backoff_s, queue, drain_s, headers).
    metrics : the service's metrics (requests by outcome, drops by reason, queue length,
        request seconds).
    """

    def __init__(self, settings: WebhookSettings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self._queue: collections.deque[dict] = collections.deque()
        self._ready = threading.Condition()
        self._stopping = threading.Event()
        self._deadline = float("inf")        # monotonic time the queue may be sent until
        self._thread = threading.Thread(target=self._run, name="webhook", daemon=True)
        metrics.webhook_queue.set_function(lambda: len(self._queue))

    def start(self) -> WebhookSink:
        self._thread.start()
        return self

    def offer(self, alert: dict[str, Any]) -> None:
        """Queue an alert Kafka has; never blocks (a full queue drops its oldest)."""
        with self._ready:
            if len(self._queue) >= self.settings.queue:
                self._queue.popleft()
                self.metrics.webhook_dropped.labels(reason="queue_full").inc()
            self._queue.append(alert)
            self._ready.notify()

    def stop(self) -> None:
        """Send what is queued for at most ``drain_s``, then stop (the rest is counted as
        dropped, reason "shutdown")."""
        self._deadline = time.monotonic() + self.settings.drain_s
        self._stopping.set()
        with self._ready:
            self._ready.notify()
        self._thread.join(self.settings.drain_s + self.settings.timeout_s + 1)
        with self._ready:
            if self._queue:
                self.metrics.webhook_dropped.labels(reason="shutdown").inc(len(self._queue))
                self._queue.clear()

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue and not self._stopping.is_set():
                    self._ready.wait()
                if not self._queue or time.monotonic() > self._deadline:
                    return
                alert = self._queue[0]
            self._deliver(alert)
            with self._ready:
                if self._queue and self._queue[0] is alert:     # (unless dropped meanwhile)
                    self._queue.popleft()

    def _deliver(self, alert: dict[str, Any]) -> None:
        s, m = self.settings, self.metrics
        body = orjson.dumps(alertmanager_payload(alert) if s.format == "alertmanager" else alert)
        backoff = s.backoff_s
        for attempt in range(s.retries + 1):
            outcome = self._post(body)
            if outcome == "ok":
                m.webhook_requests.labels(outcome="ok").inc()
                return
            if outcome == "rejected" or attempt == s.retries or time.monotonic() > self._deadline:
                break
            m.webhook_requests.labels(outcome="retried").inc()
            delay = min(backoff, max(0.0, self._deadline - time.monotonic()))
            if self._stopping.is_set():
                time.sleep(delay)             # (draining: the back-off still holds)
            else:
                self._stopping.wait(delay)    # (a stop starts the drain at once)
            backoff = min(2 * backoff, s.max_backoff_s)
        m.webhook_requests.labels(outcome="failed").inc()
        log.warning("webhook: alert %s not delivered to %s (%s)", alert["alert_id"], s.url, outcome)

    def _post(self, body: bytes) -> str:
        """One request: "ok", "retry" (worth another try) or "rejected" (a 4xx but 429)."""
        s = self.settings
        req = urllib.request.Request(s.url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", **s.headers})
        t0 = time.perf_counter()
        try:
            with urllib.request.urlopen(req, timeout=s.timeout_s) as resp:
                resp.read()
            return "ok"
        except urllib.error.HTTPError as exc:
            return "retry" if exc.code >= 500 or exc.code == 429 else "rejected"
        except (urllib.error.URLError, OSError):      # refused, reset, timed out
            return "retry"
        finally:
            self.metrics.webhook_seconds.observe(time.perf_counter() - t0)
