"""Prometheus metrics (prefix ``streamdrift_``) and the HTTP endpoint that serves them.

Label cardinality is capped: the first ``max_model_labels`` models seen get their own
``model`` label value, later ones share ``__other__``. Reasons and kinds are closed sets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from .monitor.alerts import kind_of

OTHER = "__other__"


class Metrics:
    """All of streamdrift's metrics, on their own registry (one per service instance)."""

    def __init__(self, max_model_labels: int = 50, max_signal_labels: int = 20) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.max_model_labels = max_model_labels
        self.max_signal_labels = max_signal_labels
        self._model_labels: set[str] = set()
        self.events = Counter("streamdrift_events", "Events processed, by outcome (ok, dead_letter).",
                              ["outcome"], registry=r)
        self.messages = Counter("streamdrift_messages", "Messages consumed, by topic.", ["topic"],
                                registry=r)
        self.dead_letters = Counter("streamdrift_dead_letters", "Messages sent to the dead-letter "
                                    "topic, by reason.", ["reason"], registry=r)
        self.alerts = Counter("streamdrift_alerts", "Alerts published, by kind and model.",
                              ["kind", "model"], registry=r)
        self.suppressed = Counter("streamdrift_detections_suppressed", "Detections inside an "
                                  "alert cooldown (no alert published).", registry=r)
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
        self.lag = Gauge("streamdrift_consumer_lag", "Messages behind the end of the partition.",
                         ["topic", "partition"], registry=r)
        self.detectors = Gauge("streamdrift_detectors", "Detector columns (signals x detectors).",
                               registry=r)
        self.models = Gauge("streamdrift_models", "Models being monitored.", registry=r)
        self.signals = Gauge("streamdrift_signals", "Signals being monitored, by model.", ["model"],
                             registry=r)
        self.labels = Counter("streamdrift_labels", "Label events, by outcome (joined, dead_letter).",
                              ["outcome"], registry=r)
        self.predictions_pending = Gauge("streamdrift_predictions_pending", "Predictions waiting "
                                         "for their labels.", registry=r)
        self.predictions_evicted = Gauge("streamdrift_predictions_evicted", "Predictions dropped "
                                         "before a label came, by reason (ttl, size), since start.",
                                         ["reason"], registry=r)
        self.error_level = Gauge("streamdrift_error_level", "Mean error of the recent labels (the "
                                 "error rate for classifiers), by model.", ["model"], registry=r)
        self.active_alerts = Gauge("streamdrift_active_alerts", "Open alert episodes (firing, not yet "
                                   "resolved), by kind and model.", ["kind", "model"], registry=r)
        self.signal_estimate = Gauge("streamdrift_signal_estimate", "ADWIN's window mean of a signal, "
                                     "in standard deviations from its reference (the first "
                                     "signals of each model only).", ["model", "signal"], registry=r)
        self.signals_dropped = Gauge("streamdrift_signals_dropped", "Signals refused by the "
                                     "per-model limit, by model.", ["model"], registry=r)

    def model_label(self, model: str) -> str:
        if model in self._model_labels:
            return model
        if len(self._model_labels) < self.max_model_labels:
            self._model_labels.add(model)
            return model
        return OTHER

    def serve(self, address: str, port: int):
        """Start the /metrics HTTP server in a daemon thread; returns (server, thread)."""
        return start_http_server(port, addr=address, registry=self.registry)

    def observe_pipelines(self, pipelines: list) -> None:
        """Refresh the gauges that describe the pipelines (one per assigned partition)."""
        self.detectors.set(sum(p.n_detectors for p in pipelines))
        self.models.set(sum(len(p.models) for p in pipelines))
        per_label: dict[str, list[int]] = {}
        pending = 0
        evicted = {"ttl": 0, "size": 0}
        for pipeline in pipelines:
            for name, mon in pipeline.models.items():
                acc = per_label.setdefault(self.model_label(name), [0, 0])
                acc[0] += mon.n_signals
                acc[1] += mon.signals.dropped
            if pipeline.store is not None:
                pending += pipeline.store.size
                for reason, count in pipeline.store.evicted.items():
                    evicted[reason] += count
            for name, perf in pipeline.performance.items():
                level = perf.error_level
                if level == level:
                    self.error_level.labels(model=self.model_label(name)).set(level)
        for label, (n, dropped) in per_label.items():
            self.signals.labels(model=label).set(n)
            self.signals_dropped.labels(model=label).set(dropped)
        self.predictions_pending.set(pending)
        active: dict[tuple[str, str], int] = {}
        for pipeline in pipelines:
            for name, mon in pipeline.models.items():
                label = self.model_label(name)
                for j in mon.lifecycle.open:
                    key = (kind_of(mon.signals.names[j]), label)
                    active[key] = active.get(key, 0) + 1
                for _ in mon.concentration.lifecycle.open:
                    active[("feedback_loop", label)] = active.get(("feedback_loop", label), 0) + 1
                if label != OTHER and "adwin" in mon.detectors:
                    est = mon.detectors["adwin"].estimation if mon.n_signals else []
                    for j, value in enumerate(est[: self.max_signal_labels]):
                        self.signal_estimate.labels(model=label, signal=mon.signals.names[j]).set(value)
            for name, perf in pipeline.performance.items():
                if perf.lifecycle.open:
                    key = ("performance_drift", self.model_label(name))
                    active[key] = active.get(key, 0) + len(perf.lifecycle.open)
        for metric in list(self.active_alerts._metrics):
            if metric not in active:
                self.active_alerts.labels(*metric).set(0)
        for (kind, label), count in active.items():
            self.active_alerts.labels(kind=kind, model=label).set(count)
        for reason, count in evicted.items():
            self.predictions_evicted.labels(reason=reason).set(count)
