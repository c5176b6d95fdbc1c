"""Kafka side of `streamdrift run`: consume a batch, process, produce, then commit.

At-least-once: a batch's offsets are stored for commit only after every alert and dead letter
of that batch was acknowledged by the broker (producer flush + delivery reports). A crash
before that replays the batch; the replayed alerts carry the same deterministic alert_id.
Shutdown (SIGTERM/SIGINT sets `stop`): finish the batch, flush, commit, leave the group.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from .config import Settings
from .events import DeadLetter, Message
from .metrics import Metrics
from .pipeline import Pipeline

log = logging.getLogger("streamdrift")


class DeliveryFailed(RuntimeError):
    """An alert or dead letter could not be delivered; offsets were not committed."""


def client_config(settings: Settings) -> dict[str, Any]:
    conf = {"bootstrap.servers": settings.kafka.bootstrap}
    conf.update(settings.kafka.client)
    return conf


class _ErrorLog:
    """librdkafka error callback that logs each distinct error at most every 10 s."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.last: dict[str, float] = {}

    def __call__(self, err: KafkaError) -> None:
        key = err.str()
        now = time.monotonic()
        if now - self.last.get(key, -1e9) >= 10:
            self.last[key] = now
            log.warning("%s: %s (retrying)", self.what, key)


def wait_for_broker(settings: Settings, stop: threading.Event, timeout_s: float | None = None) -> bool:
    """Block until the cluster answers a metadata request; False if stopped or timed out."""
    admin = AdminClient({**client_config(settings), "error_cb": lambda e: None})
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    delay = 1.0
    while not stop.is_set():
        try:
            admin.list_topics(timeout=5)
            return True
        except KafkaException as exc:
            log.error("cannot reach Kafka at %s: %s; retrying in %.0fs", settings.kafka.bootstrap,
                      exc.args[0].str() if exc.args else exc, delay)
        if deadline is not None and time.monotonic() >= deadline:
            return False
        stop.wait(delay)
        delay = min(delay * 2, 30.0)
    return False


def ensure_topics(settings: Settings, topics: dict[str, int]) -> None:
    """Create the topics (name -> partitions) that do not exist yet."""
    admin = AdminClient(client_config(settings))
    existing = admin.list_topics(timeout=10).topics
    new = [NewTopic(t, num_partitions=p, replication_factor=-1) for t, p in topics.items()
           if t not in existing]
    if not new:
        return
    for topic, fut in admin.create_topics(new, operation_timeout=10).items():
        try:
            fut.result()
            log.info("created topic %s", topic)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    m = dl.message
    return [("streamdrift.reason", dl.reason.encode()), ("streamdrift.detail", dl.detail.encode()),
            ("streamdrift.source.topic", m.topic.encode()),
            ("streamdrift.source.partition", str(m.partition).encode()),
            ("streamdrift.source.offset", str(m.offset).encode())]


class Service:
    """One streamdrift instance in the consumer group."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        labels = {settings.kafka.labels_topic} if settings.kafka.labels_topic else set()
        self.pipeline = Pipeline(settings, label_topics=labels)
        self._delivery_errors: list[str] = []

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    def run(self, stop: threading.Event) -> int:
        s = self.settings.kafka
        if not wait_for_broker(self.settings, stop):
            return 0
        ensure_topics(self.settings, {s.alerts_topic: 1, s.dead_letter_topic: 1})
        consumer = Consumer({
            **client_config(self.settings),
            "group.id": s.group_id,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "error_cb": _ErrorLog("kafka consumer"),
        })
        producer = Producer({
            **client_config(self.settings),
            "enable.idempotence": True,
            "linger.ms": 5,
            "error_cb": _ErrorLog("kafka producer"),
        })
        consumer.subscribe(list(s.events_topics) + ([s.labels_topic] if s.labels_topic else []))
        log.info("streamdrift running: group %s, events %s, labels %s -> alerts %s (dead letters %s)",
                 s.group_id, ",".join(s.events_topics), s.labels_topic or "-", s.alerts_topic,
                 s.dead_letter_topic)
        try:
            while not stop.is_set():
                raw = consumer.consume(num_messages=s.batch_size, timeout=s.poll_timeout_s)
                if raw:
                    self._process(raw, consumer, producer)
                self._update_lag(consumer)
        finally:
            producer.flush(30)
            try:
                consumer.commit(asynchronous=False)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError._NO_OFFSET:
                    log.warning("final commit failed: %s", exc)
            consumer.close()
            log.info("streamdrift stopped: offsets committed, left the group")
        return 0

    def _process(self, raw: list, consumer: Consumer, producer: Producer) -> None:
        t0 = time.perf_counter()
        m = self.metrics
        messages: list[Message] = []
        last: dict[tuple[str, int], int] = {}
        for msg in raw:
            err = msg.error()
            if err is not None:
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", err.str())
                continue
            ts_ms = msg.timestamp()[1]
            topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
            messages.append(Message(msg.value() or b"", topic, partition, offset,
                                    ts_ms / 1000.0 if ts_ms > 0 else 0.0))
            last[(topic, partition)] = offset
        per_topic: dict[str, int] = {}
        for topic, _ in last:
            per_topic[topic] = 0
        for message in messages:
            per_topic[message.topic] += 1
        for topic, count in per_topic.items():
            m.messages.labels(topic=topic).inc(count)
        if not messages:
            return
        result = self.pipeline.process(messages)
        s = self.settings.kafka
        for alert in result.alerts:
            producer.produce(s.alerts_topic, key=alert["model"].encode(), value=orjson.dumps(alert),
                             on_delivery=self._on_delivery)
            producer.poll(0)
        for dl in result.dead_letters:
            src = dl.message
            producer.produce(s.dead_letter_topic, value=src.value, headers=dead_letter_headers(dl),
                             on_delivery=self._on_delivery)
            producer.poll(0)
        remaining = producer.flush(60)
        if remaining or self._delivery_errors:
            errors = "; ".join(self._delivery_errors[:3]) or f"{remaining} messages not acknowledged"
            raise DeliveryFailed(f"alerts/dead letters not delivered ({errors}); "
                                 "offsets not committed, the batch will be replayed on restart")
        consumer.store_offsets(offsets=[TopicPartition(t, p, o + 1) for (t, p), o in last.items()])
        now = time.time()
        m.events.labels(outcome="ok").inc(result.n_events)
        label_topics = self.pipeline.label_topics
        for dl in result.dead_letters:
            m.dead_letters.labels(reason=dl.reason).inc()
        dead_labels = sum(1 for dl in result.dead_letters if dl.message.topic in label_topics)
        m.events.labels(outcome="dead_letter").inc(len(result.dead_letters) - dead_labels)
        m.labels.labels(outcome="joined").inc(result.n_labels_joined)
        m.labels.labels(outcome="dead_letter").inc(dead_labels)
        for alert in result.alerts:
            m.alerts.labels(kind=alert["kind"], model=m.model_label(alert["model"])).inc()
            if alert["at"]["ts"] > 0:
                m.event_to_alert.observe(max(0.0, now - alert["at"]["ts"]))
        m.suppressed.inc(result.suppressed)
        m.observe_pipeline(self.pipeline)
        m.batch_size.observe(len(messages))
        m.batch_seconds.observe(time.perf_counter() - t0)

    def _update_lag(self, consumer: Consumer) -> None:
        try:
            assigned = consumer.assignment()
            if not assigned:
                return
            for tp in consumer.position(assigned):
                lo, hi = consumer.get_watermark_offsets(tp, cached=True)
                if hi < 0:
                    continue
                pos = tp.offset if tp.offset >= 0 else lo
                self.metrics.lag.labels(topic=tp.topic, partition=str(tp.partition)).set(max(0, hi - pos))
        except KafkaException:
            pass
