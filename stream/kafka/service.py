"""Kafka side of `streamdrift run`: consume a batch, process, produce, then commit.

At-least-once: a batch's offsets are stored for commit only after every alert and dead letter
of that batch was acknowledged by the broker (producer flush + delivery reports). A crash
before that replays the batch; the replayed alerts carry the same deterministic alert_id.
Shutdown (SIGTERM/SIGINT sets `stop`): finish the batch, flush, commit, leave the group.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from functools import partial
from itertools import compress, groupby, repeat
from operator import is_, itemgetter
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient, NewTopic

from ..config import Settings
from ..errors import DeliveryFailed, FatalKafkaError, StateError
from ..metrics import Metrics
from ..pipeline import Pipeline, collector_paused
from ..state import dump_model, load_model
from ..types import DeadLetter, Message

log = logging.getLogger("streamdrift")
_GAUGES_INTERVAL_S = 0.5      # lag and per-model gauges refreshed at most this often
# librdkafka stops fetching a partition whose local queue holds queued.min.messages (100000)
# and then waits fetch.queue.backoff.ms (default 1000 ms) before the next fetch: a service
# that drains 100000 events in under a second sat idle for the rest of it (consume-only on
# the local broker: ~220k messages/s at the default, 580-900k/s at 10 ms). Users may
# override both in [kafka.client].
_FETCH_DEFAULTS = {"fetch.queue.backoff.ms": 10}


def client_config(settings: Settings) -> dict[str, Any]:
    conf = {"bootstrap.servers": settings.kafka.bootstrap}
    conf.update(settings.kafka.client)
    return conf


def split_consumed(raw: list, with_headers: bool) -> dict[tuple[str, int], list[Message]]:
    """Consumed messages -> our Messages per (topic, partition), each list in consume order.

    Errors are logged (end of partition silently) and dropped. Each field is read for the
    whole batch in one C-level pass (map over the message type's methods); ~0.6 us a message,
    as a loop over the messages took: the objects confluent-kafka makes per field dominate
    (the timestamp tuple alone ~130 ns). Timestamps are epoch seconds (0.0 when the message
    has none); headers are a tuple of (key, value) pairs only ``with_headers`` (adapters
    read them).
    """
    errors = list(map(KafkaMessage.error, raw))
    if not all(map(is_, errors, repeat(None))):        # (KafkaError's == cannot take None)
        for err in errors:
            if err is not None and err.code() != KafkaError._PARTITION_EOF:
                log.warning("consume error: %s", err.str())
        raw = list(compress(raw, map(is_, errors, repeat(None))))
    if not raw:
        return {}
    topics = list(map(KafkaMessage.topic, raw))
    partitions = list(map(KafkaMessage.partition, raw))
    values = list(map(KafkaMessage.value, raw))
    if None in values:                                 # tombstones: empty values (dead letters)
        values = [b"" if v is None else v for v in values]
    stamps = np.fromiter(map(itemgetter(1), map(KafkaMessage.timestamp, raw)), dtype=np.float64,
                         count=len(raw))
    ts = np.where(stamps > 0, stamps / 1000.0, 0.0).tolist()
    headers = [tuple(h) if h else () for h in map(KafkaMessage.headers, raw)] if with_headers \
        else repeat(None)
    fields = zip(values, topics, partitions, map(KafkaMessage.offset, raw), ts, headers,
                 strict=False)                         # headers may be repeat(None)
    messages = list(map(tuple.__new__, repeat(Message), fields))
    keys = list(zip(topics, partitions, strict=True))
    if keys.count(keys[0]) == len(keys):               # the common batch: one partition
        return {keys[0]: messages}
    out: dict[tuple[str, int], list[Message]] = {}
    start = 0
    for key, run in groupby(keys):                     # messages come in runs per partition
        end = start + len(list(run))
        out.setdefault(key, []).extend(messages[start:end])
        start = end
    return out


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The service consumer's librdkafka configuration: our defaults, then [kafka.client]
    (which may override them), then the keys the delivery guarantee relies on (which it
    may not: offsets are stored and committed by the service after each checkpoint)."""
    s = settings.kafka
    return {
        "topic.metadata.refresh.interval.ms": 10_000,   # see new topics and partitions soon
        **_FETCH_DEFAULTS,
        **client_config(settings),
        "group.id": s.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "error_cb": _ErrorLog("kafka consumer"),
        # a configured instance id makes this a static member: a restarted instance takes
        # its partitions back at once instead of after the session timeout
        **({"group.instance.id": s.instance_id} if s.instance_id else {}),
    }


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


# changelog key suffix of a partition's adapter pairing state (not a valid model name)
ADAPTER_STATE = "~adapters"


class Shard:
    """State of one assigned input partition: its pipeline and progress."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.next_offset: int | None = None     # next input offset to read (after processed)
        self.changed: set[str] = set()          # models changed since the last checkpoint


class Service:
    """One streamdrift instance in the consumer group.

    State is sharded by input partition, like Kafka Streams tasks: each assigned events
    partition has its own pipeline (labels partition p joins events partition p of the first
    events topic: co-partition them, keyed by model). Every ``checkpoint_interval_s`` the
    models changed since the last checkpoint are written to the compacted changelog topic
    (key ``topic:partition:model``, header ``streamdrift.offset``), then the input offsets are
    committed: after a flush (at-least-once) or in the same transaction (exactly-once).
    On assignment a shard is restored from the changelog before its partition is read.
    """

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        k = settings.kafka
        self.settings = settings
        self.metrics = metrics
        self.label_topics = {k.labels_topic} if k.labels_topic else set()
        self.changelog = k.changelog_topic or f"{k.group_id}-changelog"
        self.exactly_once = k.guarantee == "exactly-once"
        self.shards: dict[tuple[str, int], Shard] = {}
        self._delivery_errors: list[str] = []
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._last_checkpoint = time.monotonic()
        self._gauges_at = float("-inf")                # when the gauges were last refreshed
        self._dirty = False
        self._label_offsets: dict[tuple[str, int], int] = {}   # next offset per labels partition
        self.changelog_partitions = 1                           # set when the topics are checked
        self._pending_alerts: list[dict] = []                    # in the open transaction (EOS)

    # ------------------------------------------------------------------ set-up
    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    def _on_alert_delivery(self, event_ts: float, err: KafkaError | None, msg: Any) -> None:
        """At-least-once: an alert acknowledged by the broker; its event-to-alert latency."""
        self._on_delivery(err, msg)
        if err is None and event_ts > 0:
            self.metrics.event_to_alert.observe(max(0.0, time.time() - event_ts))

    def _create_topics(self) -> None:
        s = self.settings.kafka
        admin = AdminClient(client_config(self.settings))
        meta = admin.list_topics(timeout=10).topics
        partitions = max([len(meta[t].partitions) for t in s.events_topics if t in meta] or [1])
        ensure_topics(self.settings, {s.alerts_topic: 1, s.dead_letter_topic: 1})
        if self.changelog not in meta:
            fut = admin.create_topics([NewTopic(
                self.changelog, num_partitions=partitions, replication_factor=-1,
                config={"cleanup.policy": "compact", "max.message.bytes": str(64 << 20)})])
            try:
                fut[self.changelog].result()
                log.info("created changelog topic %s (%d partitions)", self.changelog, partitions)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            self.changelog_partitions = partitions
        else:
            self.changelog_partitions = len(meta[self.changelog].partitions)

    def _changelog_partition(self, input_partition: int) -> int:
        """Changelog partition of an input partition: the same number while the changelog has
        as many partitions (it is created so); wrapped when the input grew later."""
        return input_partition % self.changelog_partitions

    def run(self, stop: threading.Event) -> int:
        s = self.settings.kafka
        if not wait_for_broker(self.settings, stop):
            return 0
        self._create_topics()
        instance = s.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        consumer = self._consumer = Consumer(consumer_config(self.settings))
        producer_conf = {**client_config(self.settings), "enable.idempotence": True, "linger.ms": 5,
                         "message.max.bytes": 64 << 20, "error_cb": _ErrorLog("kafka producer")}
        if self.exactly_once:
            producer_conf["transactional.id"] = f"streamdrift-{s.group_id}-{instance}"
        producer = self._producer = Producer(producer_conf)
        if self.exactly_once:
            producer.init_transactions(30)
            producer.begin_transaction()
        consumer.subscribe(list(s.events_topics) + ([s.labels_topic] if s.labels_topic else []),
                           on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("streamdrift running (%s): group %s, events %s, labels %s -> alerts %s "
                 "(dead letters %s, state %s)", s.guarantee, s.group_id, ",".join(s.events_topics),
                 s.labels_topic or "-", s.alerts_topic, s.dead_letter_topic, self.changelog)
        code = 0
        try:
            while not stop.is_set():
                raw = consumer.consume(num_messages=s.batch_size, timeout=s.poll_timeout_s)
                if raw:
                    with collector_paused():           # see Pipeline.process
                        self._process(raw)
                if self._dirty and time.monotonic() - self._last_checkpoint >= s.checkpoint_interval_s:
                    self._checkpoint(list(self.shards))
                self._update_lag(consumer)
            self._checkpoint(list(self.shards))
        except FatalKafkaError as exc:
            log.error("%s; exiting so that a supervisor restarts the service", exc)
            code = 3
        finally:
            if code == 0:
                consumer.close()
                log.info("streamdrift stopped: state and offsets committed, left the group")
        return code

    # ------------------------------------------------------------------ rebalance
    @staticmethod
    def _committed(consumer: Consumer, partitions: list) -> dict[tuple[str, int], int]:
        """Committed offsets, retried while the group coordinator is moving (broker restart)."""
        for attempt in range(30):
            try:
                return {(tp.topic, tp.partition): tp.offset
                        for tp in consumer.committed(partitions, timeout=30)}
            except KafkaException as exc:
                if attempt == 29 or not exc.args[0].retriable() and \
                        exc.args[0].code() not in (KafkaError.NOT_COORDINATOR,
                                                   KafkaError.COORDINATOR_NOT_AVAILABLE,
                                                   KafkaError.COORDINATOR_LOAD_IN_PROGRESS):
                    raise
                time.sleep(1)
        return {}

    def _on_assign(self, consumer: Consumer, partitions: list) -> None:
        t0 = time.perf_counter()
        committed = self._committed(consumer, partitions)
        events = [tp for tp in partitions if tp.topic not in self.label_topics]
        for tp in events:
            self.shards[(tp.topic, tp.partition)] = Shard(self._new_pipeline())
        n = self._restore(events, committed)
        if events:
            seconds = time.perf_counter() - t0
            self.metrics.restore_seconds.observe(seconds)
            log.info("assigned %s; restored %d models in %.2fs",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions), n, seconds)

    def _on_revoke(self, consumer: Consumer, partitions: list) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions if (tp.topic, tp.partition) in self.shards]
        self._checkpoint(keys)
        for key in keys:
            self.shards.pop(key, None)
        for tp in partitions:
            self._label_offsets.pop((tp.topic, tp.partition), None)

    def _on_lost(self, consumer: Consumer, partitions: list) -> None:
        for tp in partitions:
            self.shards.pop((tp.topic, tp.partition), None)
        log.warning("partitions lost: state dropped without committing")

    def _new_pipeline(self) -> Pipeline:
        return Pipeline(self.settings, label_topics=self.label_topics)

    def _restore(self, events: list, committed: dict[tuple[str, int], int]) -> int:
        """Load each shard's latest model states not newer than its committed offset."""
        if not events:
            return 0
        reader = Consumer({**_FETCH_DEFAULTS, **client_config(self.settings),
                           "group.id": f"{self.settings.kafka.group_id}-restore",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           "error_cb": _ErrorLog("kafka restore")})
        wanted = {f"{tp.topic}:{tp.partition}:": (tp.topic, tp.partition) for tp in events}
        latest: dict[bytes, tuple[bytes, int, float]] = {}
        try:
            for part in sorted({self._changelog_partition(tp.partition) for tp in events}):
                lo, hi = reader.get_watermark_offsets(TopicPartition(self.changelog, part), timeout=30)
                if hi <= lo:
                    continue
                tp = TopicPartition(self.changelog, part, lo)
                reader.assign([tp])
                pos, deadline = lo, time.monotonic() + 300
                while pos < hi and time.monotonic() < deadline:
                    msgs = reader.consume(1000, timeout=1)
                    # transaction markers are never delivered: follow the position instead
                    pos = max(pos, reader.position([tp])[0].offset)
                    for msg in msgs:
                        if msg.error() is not None:
                            continue
                        pos = max(pos, msg.offset() + 1)
                        key = msg.key() or b""
                        shard = next((v for p, v in wanted.items() if key.startswith(p.encode())), None)
                        if shard is None:
                            continue
                        h = dict(msg.headers() or [])
                        offset = int(h.get("streamdrift.offset", b"-1"))
                        limit = committed.get(shard, -1)
                        if msg.value() is None:
                            latest.pop(key, None)
                        elif 0 <= offset <= max(limit, 0) and limit >= 0:
                            latest[key] = (msg.value(), offset, float(h.get("streamdrift.now_ts", b"-inf")))
                        elif limit < 0 or offset > limit:
                            log.warning("changelog record %s reflects offset %d beyond the committed "
                                        "%d: skipped", key.decode(errors="replace"), offset, limit)
        finally:
            reader.close()
        n = 0
        for key, (value, _, now_ts) in latest.items():
            topic, part, name = key.decode().rsplit(":", 2)
            shard = self.shards[(topic, int(part))]
            try:
                if name == ADAPTER_STATE:
                    if shard.pipeline.converter is not None:
                        shard.pipeline.converter.load(value)
                    continue
                load_model(shard.pipeline, value)
                shard.pipeline.now_ts = max(shard.pipeline.now_ts, now_ts)
                n += 1
            except StateError as exc:
                log.error("state %s is unreadable (%s): starting that model fresh", key.decode(), exc)
        return n

    # ------------------------------------------------------------------ processing
    def _shard_key(self, topic: str, partition: int) -> tuple[str, int]:
        if topic in self.label_topics:
            return (self.settings.kafka.events_topics[0], partition)
        return (topic, partition)

    def _process(self, raw: list) -> None:
        t0 = time.perf_counter()
        m = self.metrics
        groups: dict[tuple[str, int], list[Message]] = {}
        nexts: dict[tuple[str, int], int] = {}
        per_topic: dict[str, int] = {}
        for (topic, partition), messages in split_consumed(raw, bool(self.settings.kafka.formats)).items():
            groups.setdefault(self._shard_key(topic, partition), []).extend(messages)
            nexts[(topic, partition)] = messages[-1].offset + 1
            per_topic[topic] = per_topic.get(topic, 0) + len(messages)
        if not groups:
            return
        for topic, count in per_topic.items():
            m.messages.labels(topic=topic).inc(count)
        s = self.settings.kafka
        producer = self._producer
        alerts_out = []
        for key, messages in groups.items():
            shard = self.shards.get(key)
            if shard is None:                  # a labels partition without its events partition
                shard = self.shards[key] = Shard(self._new_pipeline())
            result = shard.pipeline.process(messages)
            shard.changed.update(result.models_touched)
            for alert in result.alerts:
                producer.produce(s.alerts_topic, key=alert["model"].encode(), value=orjson.dumps(alert),
                                 on_delivery=self._on_delivery if self.exactly_once
                                 else partial(self._on_alert_delivery, alert["at"]["ts"]))
            for dl in result.dead_letters:
                producer.produce(s.dead_letter_topic, value=dl.message.value,
                                 headers=dead_letter_headers(dl), on_delivery=self._on_delivery)
            producer.poll(0)
            alerts_out.extend(result.alerts)
            self._count(result)
        for (topic, partition), nxt in nexts.items():
            shard = self.shards.get(self._shard_key(topic, partition))
            if shard is not None and topic not in self.label_topics:
                shard.next_offset = nxt
        for (topic, partition), nxt in nexts.items():
            if topic in self.label_topics:
                self._label_offsets[(topic, partition)] = nxt
        self._dirty = True
        if not self.exactly_once and self._delivery_errors:
            # alerts leave at once (linger.ms); the checkpoint flushes them all before it
            # commits offsets, so a batch's offsets are never committed before its alerts
            raise DeliveryFailed(f"alerts/dead letters not delivered "
                                 f"({'; '.join(self._delivery_errors[:3])}); "
                                 "offsets not committed, the batch will be replayed on restart")
        m.batch_size.observe(sum(len(v) for v in groups.values()))
        m.batch_seconds.observe(time.perf_counter() - t0)
        if self.exactly_once:
            self._pending_alerts.extend(alerts_out)

    def _count(self, result) -> None:
        m = self.metrics
        m.events.labels(outcome="ok").inc(result.n_events)
        dead_labels = sum(1 for dl in result.dead_letters if dl.message.topic in self.label_topics)
        for dl in result.dead_letters:
            m.dead_letters.labels(reason=dl.reason).inc()
        m.events.labels(outcome="dead_letter").inc(len(result.dead_letters) - dead_labels)
        m.labels.labels(outcome="joined").inc(result.n_labels_joined)
        m.labels.labels(outcome="dead_letter").inc(dead_labels)
        for alert in result.alerts:
            m.alerts.labels(kind=alert["kind"], model=m.model_label(alert["model"])).inc()
        m.suppressed.inc(result.suppressed)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint(self, keys: list[tuple[str, int]]) -> None:
        """Write changed model states of these shards, then commit their offsets."""
        producer, consumer = self._producer, self._consumer
        offsets = []
        for key in keys:
            shard = self.shards.get(key)
            if shard is None:
                continue
            if shard.next_offset is not None:
                for model in sorted(shard.changed):
                    if model not in shard.pipeline.models:
                        continue
                    producer.produce(self.changelog, partition=self._changelog_partition(key[1]),
                                     key=f"{key[0]}:{key[1]}:{model}".encode(),
                                     value=dump_model(shard.pipeline, model),
                                     headers=[("streamdrift.offset", str(shard.next_offset).encode()),
                                              ("streamdrift.now_ts", repr(shard.pipeline.now_ts).encode())],
                                     on_delivery=self._on_delivery)
                    producer.poll(0)
                shard.changed.clear()
                converter = shard.pipeline.converter
                if converter is not None and converter.changed:
                    producer.produce(self.changelog, partition=self._changelog_partition(key[1]),
                                     key=f"{key[0]}:{key[1]}:{ADAPTER_STATE}".encode(),
                                     value=converter.dump(),
                                     headers=[("streamdrift.offset", str(shard.next_offset).encode())],
                                     on_delivery=self._on_delivery)
                offsets.append(TopicPartition(key[0], key[1], shard.next_offset))
        assigned = {(tp.topic, tp.partition) for tp in consumer.assignment()}
        for (topic, partition), nxt in list(self._label_offsets.items()):
            if (topic, partition) in assigned:
                offsets.append(TopicPartition(topic, partition, nxt))
            else:
                self._label_offsets.pop((topic, partition))
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        if self.exactly_once:
            self._commit_transaction(offsets)
            return
        if producer.flush(60) or self._delivery_errors:
            raise DeliveryFailed("state not delivered; offsets not committed")
        if offsets:
            try:
                consumer.commit(offsets=offsets, asynchronous=False)
            except KafkaException as exc:
                log.warning("offset commit failed (will be retried at the next checkpoint): %s", exc)

    def _commit_transaction(self, offsets: list) -> None:
        producer, consumer = self._producer, self._consumer
        try:
            if offsets:
                producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
            for attempt in range(5):
                try:
                    producer.commit_transaction(30)
                    break
                except KafkaException as exc:
                    if not exc.args[0].retriable() or attempt == 4:
                        raise
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise FatalKafkaError(f"fatal Kafka error in a transaction: {err.str()}") from None
            if err.txn_requires_abort():
                log.warning("transaction aborted (%s): restoring state from the changelog", err.str())
                producer.abort_transaction(30)
                self._rewind()
            else:
                raise FatalKafkaError(f"transaction commit failed: {err.str()}") from None
        else:
            now = time.time()
            for alert in self._pending_alerts:
                if alert["at"]["ts"] > 0:
                    self.metrics.event_to_alert.observe(max(0.0, now - alert["at"]["ts"]))
        self._pending_alerts = []
        producer.begin_transaction()

    def _rewind(self) -> None:
        """After an aborted transaction: reload every shard and re-read from committed offsets."""
        consumer = self._consumer
        assigned = [tp for tp in consumer.assignment()]
        committed = self._committed(consumer, assigned)
        events = [tp for tp in assigned if tp.topic not in self.label_topics]
        self.shards = {(tp.topic, tp.partition): Shard(self._new_pipeline()) for tp in events}
        self._label_offsets = {}
        self._restore(events, committed)
        for tp in assigned:
            off = committed.get((tp.topic, tp.partition), -1)
            consumer.seek(TopicPartition(tp.topic, tp.partition, off if off >= 0 else -2))

    def _update_lag(self, consumer: Consumer) -> None:
        """Lag and the pipelines' gauges, at most once every _GAUGES_INTERVAL_S (they walk
        every model; a scrape reads them every few seconds, not every batch)."""
        now = time.monotonic()
        if now - self._gauges_at < _GAUGES_INTERVAL_S:
            return
        self._gauges_at = now
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
        self.metrics.observe_pipelines([sh.pipeline for sh in self.shards.values()])
