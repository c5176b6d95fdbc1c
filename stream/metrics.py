"""Prometheus metrics (prefix ``streamdrift_``) and the HTTP endpoint that serves them.

Counters and histograms are updated as things happen (events, alerts, batches). Gauges that
describe the state (models, signals, open alerts, consumer lag, predictions waiting for labels)
are computed when Prometheus scrapes, by :class:`StateCollector`, from what the service holds
then: nothing walks the pipelines between scrapes.

Label cardinality is capped: the first ``max_model_labels`` models seen get their own ``model``
label value, later ones share ``__other__``. Reasons and kinds are closed sets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .pipeline import Pipeline

OTHER = "__other__"


class StateSource(Protocol):
    """What the collector reads at scrape time (the service), holding its ``lock``."""

    lock: AbstractContextManager

    def pipelines(self) -> list[Pipeline]: ...
    def lag(self) -> dict[tuple[str, int], int]: ...


class ModelLabels:
    """The ``model`` label value of a model: its name for the first ``cap`` models seen,
    ``__other__`` after."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._named: set[str] = set()

    def __call__(self, model: str) -> str:
        if model in self._named:
            return model
        if len(self._named) < self.cap:
            self._named.add(model)
            return model
        return OTHER


class StateCollector(Collector):
    """Gauges computed from the service's state at scrape time."""

    def __init__(self, source: StateSource, model_label: ModelLabels, max_signal_labels: int) -> None:
        self.source = source
        self.model_label = model_label
        self.max_signal_labels = max_signal_labels

    def describe(self) -> list[Metric]:
        return []                       # (no samples read at registration)

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily("streamdrift_consumer_lag", "Messages behind the end of the "
                                "partition.", labels=["topic", "partition"])
        for (topic, partition), behind in sorted(self.source.lag().items()):
            lag.add_metric([topic, str(partition)], behind)
        with self.source.lock:                   # the state of whole batches
            families = list(self._state())
        yield lag
        yield from families

    def _state(self) -> Iterator[Metric]:
        pipelines = self.source.pipelines()
        label = self.model_label
        yield GaugeMetricFamily("streamdrift_detectors", "Detector columns (signals x detectors).",
                                value=sum(p.n_detectors for p in pipelines))
        yield GaugeMetricFamily("streamdrift_models", "Models being monitored.",
                                value=sum(len(p.models) for p in pipelines))
        signals: dict[str, list[int]] = {}
        active: dict[tuple[str, str], int] = {}
        estimate = GaugeMetricFamily("streamdrift_signal_estimate", "ADWIN's window mean of a "
                                     "signal, in standard deviations from its reference (the first "
                                     "signals of each model only).", labels=["model", "signal"])
        error_level = GaugeMetricFamily("streamdrift_error_level", "Mean error of the recent labels "
                                        "(the error rate for classifiers), by model.", labels=["model"])
        estimated = GaugeMetricFamily("streamdrift_estimated_accuracy", "Accuracy expected from the "
                                      "calibrated scores of the recent events, before their labels, "
                                      "by model.", labels=["model"])
        bias = GaugeMetricFamily("streamdrift_estimate_bias", "Estimated minus real accuracy of the "
                                 "recent labeled predictions, by model.", labels=["model"])
        last_event = GaugeMetricFamily("streamdrift_model_last_event_timestamp_seconds", "Event time of "
                                       "the model's latest event (seconds since the epoch; kept "
                                       "across restarts), by model.", labels=["model"])
        latest: dict[str, float] = {}
        pending, evicted = 0, {"ttl": 0, "size": 0}
        for pipeline in pipelines:
            for name, mon in list(pipeline.models.items()):
                model = label(name)
                acc = signals.setdefault(model, [0, 0])
                acc[0] += mon.n_signals
                acc[1] += mon.signals.dropped
                for kind in mon.active_kinds():
                    active[(kind, model)] = active.get((kind, model), 0) + 1
                adwin = mon.detectors.get("adwin")
                if model != OTHER and adwin is not None and mon.n_signals:
                    names = mon.signals.names
                    for j, value in enumerate(adwin.estimation[: self.max_signal_labels].tolist()):
                        estimate.add_metric([model, names[j]], value)
                if mon.last_ts > float("-inf"):
                    latest[model] = max(latest.get(model, float("-inf")), mon.last_ts)
                accuracy = mon.estimated_accuracy
                if model != OTHER and accuracy == accuracy:
                    estimated.add_metric([model], accuracy)
            for name, perf in list(pipeline.performance.items()):
                level = perf.error_level
                if level == level:
                    error_level.add_metric([label(name)], level)
                b = perf.estimate_bias
                if b == b and label(name) != OTHER:
                    bias.add_metric([label(name)], b)
                if perf.states.drifted():
                    key = ("performance_drift", label(name))
                    active[key] = active.get(key, 0) + 1
            for name, sel in list(pipeline.selection.items()):
                if sel.lifecycle.open:
                    key = ("feedback_loop", label(name))
                    active[key] = active.get(key, 0) + 1
            if pipeline.desk is not None:
                pending += pipeline.desk.store.size
                for reason, count in pipeline.desk.store.evicted.items():
                    evicted[reason] += count
        yield estimate
        yield error_level
        yield estimated
        yield bias
        for model, ts in sorted(latest.items()):
            last_event.add_metric([model], ts)
        yield last_event
        per_model = GaugeMetricFamily("streamdrift_signals", "Signals being monitored, by model.",
                                      labels=["model"])
        dropped = GaugeMetricFamily("streamdrift_signals_dropped", "Signals refused by the per-model "
                                    "limit, by model.", labels=["model"])
        for model, (n, d) in sorted(signals.items()):
            per_model.add_metric([model], n)
            dropped.add_metric([model], d)
        yield per_model
        yield dropped
        alerts = GaugeMetricFamily("streamdrift_active_alerts", "Open alert episodes (firing, not "
                                   "yet resolved), by kind and model.", labels=["kind", "model"])
        for (kind, model), count in sorted(active.items()):
            alerts.add_metric([kind, model], count)
        yield alerts
        yield GaugeMetricFamily("streamdrift_predictions_pending", "Predictions waiting for their "
                                "labels.", value=pending)
        ev = GaugeMetricFamily("streamdrift_predictions_evicted", "Predictions dropped before a label "
                               "came, by reason (ttl, size), since start.", labels=["reason"])
        for reason, count in evicted.items():
            ev.add_metric([reason], count)
        yield ev


class Metrics:
    """All of streamdrift's metrics, on their own registry (one per service instance).

    Parameters
    ----------
    max_model_labels : models with their own ``model`` label value; later ones share
        ``__other__``.
    max_signal_labels : signals per model with a ``streamdrift_signal_estimate`` series.
    """

    def __init__(self, max_model_labels: int = 50, max_signal_labels: int = 20) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.model_label = ModelLabels(max_model_labels)
        self.max_signal_labels = max_signal_labels
        self.events = Counter("streamdrift_events", "Events processed, by outcome (ok, dead_letter).",
                              ["outcome"], registry=r)
        self.messages = Counter("streamdrift_messages", "Messages consumed, by topic.", ["topic"],
                                registry=r)
        self.dead_letters = Counter("streamdrift_dead_letters", "Messages sent to the dead-letter "
                                    "topic, by reason.", ["reason"], registry=r)
        self.alerts = Counter("streamdrift_alerts", "Alerts published, by kind and model.",
                              ["kind", "model"], registry=r)
        self.suppressed = Counter("streamdrift_detections_suppressed", "Detections that raised no "
                                  "alert: inside an open episode, or dismissed (the values after "
                                  "them stayed within the reference).", registry=r)
        self.batch_seconds = Histogram("streamdrift_batch_seconds", "Wall time to process one "
                                       "batch (decode, detect, produce, commit).", registry=r,
                                       buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1,
                                                2.5, 5, 10))
        self.batch_size = Histogram("streamdrift_batch_messages", "Messages per processed batch.",
                                    registry=r, buckets=(1, 10, 100, 500, 1000, 5000, 10000, 50000))
        self.event_to_alert = Histogram("streamdrift_event_to_alert_seconds", "From the event "
                                        "time of the event that triggered an alert to the alert's "
                                        "acknowledgement by Kafka.", registry=r,
                                        buckets=(.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300))
        self.restore_seconds = Histogram("streamdrift_restore_seconds", "Time to restore the state "
                                         "of newly assigned partitions from the changelog.",
                                         registry=r, buckets=(.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60))
        self.versions = Counter("streamdrift_model_versions", "New model versions seen in the events "
                                "(their prediction and error signals start over), by model.",
                                ["model"], registry=r)
        self.labels = Counter("streamdrift_labels", "Label events, by outcome (joined, dead_letter).",
                              ["outcome"], registry=r)
        self.webhook_requests = Counter("streamdrift_webhook_requests", "Webhook requests by outcome: "
                                        "ok (delivered), retried (failed, tried again), failed (given "
                                        "up on: retries spent, or a 4xx).", ["outcome"], registry=r)
        self.webhook_dropped = Counter("streamdrift_webhook_dropped", "Alerts never sent to the webhook "
                                       "(the alerts topic has them), by reason (queue_full, shutdown).",
                                       ["reason"], registry=r)
        self.webhook_queue = Gauge("streamdrift_webhook_queue", "Alerts waiting for the webhook.",
                                   registry=r)
        self.webhook_seconds = Histogram("streamdrift_webhook_request_seconds", "Time of one webhook "
                                         "request (to its answer or its timeout).", registry=r,
                                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))

    def watch(self, source: StateSource) -> None:
        """Compute the state gauges from ``source`` at every scrape."""
        self.registry.register(StateCollector(source, self.model_label, self.max_signal_labels))

    def serve(self, address: str, port: int):
        """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=address, registry=self.registry)
