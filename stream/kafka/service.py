"""`streamdrift run`: one instance of the consumer group, from consumed batches to alerts.

Consume a batch, process each partition's messages in its shard's pipeline, produce the
alerts and dead letters at once, and every ``kafka.checkpoint_interval_s`` checkpoint
(:mod:`stream.kafka.checkpoint`). State is sharded by input partition, like Kafka Streams
tasks: each assigned events partition has its own pipeline (labels partition p joins events
partition p of the first events topic: co-partition them, keyed by model). On assignment a
shard is restored from the changelog before its partition is read; on revocation it is
checkpointed; lost partitions are dropped. Shutdown (``stop`` set by SIGTERM/SIGINT): finish
the batch, checkpoint, leave the group.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from functools import partial
from operator import itemgetter
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..errors import ConfigError, FatalKafkaError
from ..metrics import Metrics
from ..monitor.reference import Profile, Profiles
from ..pipeline import BatchResult, Pipeline, batch_size, collector_paused
from ..sinks import AlertSink
from ..types import DeadLetter, Message, Rebaseline
from .changelog import Changelog, Key, Shard
from .checkpoint import Checkpoint, Deliveries
from .clients import (
    client_config,
    consumer_config,
    producer_config,
    restore_config,
    split_consumed,
    wait_for_broker,
)
from .control import control_topic, follow_control, follow_references, references_topic
from .topics import CHANGELOG_CONFIG, ensure_topics, grow, partition_counts

log = logging.getLogger("streamdrift")


def dead_letter_headers(dl: DeadLetter) -> list[tuple[str, bytes]]:
    """The headers that say why and where from a dead letter came."""
    m = dl.message
    return [("streamdrift.reason", dl.reason.encode()), ("streamdrift.detail", dl.detail.encode()),
            ("streamdrift.source.topic", m.topic.encode()),
            ("streamdrift.source.partition", str(m.partition).encode()),
            ("streamdrift.source.offset", str(m.offset).encode())]


class Service:
    """One streamdrift instance in the consumer group.

    Parameters
    ----------
    settings : the service's settings.
    profiles : reference profiles (``run --reference``); the references topic adds to them.
    metrics : where counters and histograms go (gauges are read from :attr:`shards` at
        scrape time).
    sinks : where each alert goes once Kafka has it (acknowledged; with exactly-once, its
        transaction committed), e.g. a :class:`~stream.sinks.webhook.WebhookSink`.
    """

    def __init__(self, settings: Settings, metrics: Metrics, profiles: Profiles | None = None,
                 sinks: Sequence[AlertSink] = ()) -> None:
        k = settings.kafka
        self.settings = settings
        self.metrics = metrics
        self.sinks = list(sinks)
        self.label_topics = {k.labels_topic} if k.labels_topic else set()
        # topics whose partitions join another topic's shard (same partition number): labels
        # join the first events topic's, a Seldon model's responses its requests'
        self.attached: dict[str, str] = {t: k.events_topics[0] for t in self.label_topics}
        self.attached.update({t: t[: -len("outputs")] + "inputs" for t, fmt in k.formats.items()
                              if fmt == "seldon" and t.endswith(".outputs")})
        self.exactly_once = k.guarantee == "exactly-once"
        self.shards: dict[Key, Shard] = {}
        self.deliveries = Deliveries()
        self.changelog = Changelog(k.changelog_topic or f"{k.group_id}-changelog", 1)
        self._consumer: Any = None
        self._producer: Any = None
        self._checkpoint: Checkpoint | None = None
        self._last_checkpoint = time.monotonic()
        self._dirty = False
        self._batch = k.batch_size                   # messages the next consume asks for
        self._attached_offsets: dict[Key, int] = {}  # next offset per attached partition
        self.assigned: set[Key] = set()              # partitions assigned (events and labels)
        self._lag: dict[Key, int] = {}               # from the consumer's statistics
        # labels are read in step with the events: a labels partition whose next message is as
        # new as the events read from its partition, while those are behind, is paused at that
        # message (a label read before its prediction would be a dead letter)
        self._events_ts: dict[int, float] = {}       # newest events' message time, per partition
        self._held: dict[Key, float] = {}            # paused labels partitions: their next time
        self.requests: dict[tuple[str, str], Rebaseline] = {}   # the control topic's, latest
        self.profiles = profiles if profiles is not None else Profiles()   # file's, then topic's
        self._pending_alerts: list[dict] = []        # in the open transaction (exactly-once)
        # held while the state changes (a batch, a rebalance, a checkpoint), so that a scrape
        # reads whole batches' state (see metrics.StateCollector)
        self.lock = threading.Lock()
        metrics.watch(self)

    # -- set-up
    def run(self, stop: threading.Event) -> int:
        """Connect (wait for the broker, create the output topics, build the clients) and
        serve until ``stop``; returns the exit code (3: a fatal Kafka error)."""
        s = self.settings.kafka
        if not wait_for_broker(self.settings, stop):
            return 0
        self._create_topics()
        instance = s.instance_id or f"{socket.gethostname()}-{os.getpid()}"
        producer = Producer(producer_config(self.settings, instance))
        if self.exactly_once:
            producer.init_transactions(30)
        conf = {"statistics.interval.ms": 1000, **consumer_config(self.settings), "stats_cb": self._on_stats,
                "on_commit": self._on_commit}
        references = follow_references(self.settings)
        for profile in references.poll(to_end=True):          # what was published before
            self.profiles.add(profile)
        return self.serve(Consumer(conf), producer, stop, [follow_control(self.settings), references])

    def _create_topics(self) -> None:
        """The input topics (created when missing, if allowed), and the output topics; the
        changelog has as many partitions as the largest input topic."""
        s = self.settings.kafka
        admin = AdminClient(client_config(self.settings))
        inputs = [*s.events_topics, *([s.labels_topic] if s.labels_topic else [])]
        counts = partition_counts(admin, inputs)
        missing = [t for t in inputs if t not in counts]
        if missing and not s.create_topics:
            raise ConfigError(f"kafka.events_topics: {', '.join(missing)} do(es) not exist and "
                              "kafka.create_topics is false: create them, or allow the service to")
        if missing:
            n = max(counts.values(), default=s.partitions)      # (labels co-partitioned with events)
            try:
                counts |= ensure_topics(admin, {t: (n, {}) for t in missing})
            except KafkaException as exc:
                raise ConfigError(f"kafka.events_topics: cannot create {', '.join(missing)} "
                                  f"({exc.args[0].str()}): create them, or grant the service "
                                  "CREATE on the cluster") from None
        partitions = max(counts[t] for t in s.events_topics)
        made = ensure_topics(admin, {s.alerts_topic: (1, {}), s.dead_letter_topic: (1, {}),
                                     self.changelog.topic: (partitions, CHANGELOG_CONFIG),
                                     control_topic(self.settings): (1, CHANGELOG_CONFIG),
                                     references_topic(self.settings): (1, CHANGELOG_CONFIG)})
        self.changelog.partitions = made[self.changelog.topic]
        self._grow_changelog(admin, partitions)

    def _grow_changelog(self, admin: AdminClient, partitions: int) -> None:
        """The input has more partitions than the changelog (it grew): so does the changelog.
        Input partition p keeps changelog partition p (those of the old ones are unchanged)."""
        if partitions <= self.changelog.partitions:
            return
        log.warning("the events topics have %d partitions, the changelog %s %d: growing it. The new "
                    "partitions start with no state: a model whose events the producers' partitioner "
                    "now sends to a new partition learns a fresh reference there (its state in its old "
                    "partition stays, and resumes if its events come back)", partitions,
                    self.changelog.topic, self.changelog.partitions)
        grow(admin, self.changelog.topic, partitions)
        self.changelog.partitions = partitions

    def serve(self, consumer: Any, producer: Any, stop: threading.Event, follow: Any = ()) -> int:
        """The loop over an injected consumer and producer (transactions initialized), and
        the followers of the control and references topics (none: no requests, no profiles)."""
        s = self.settings.kafka
        self._consumer, self._producer = consumer, producer
        self._checkpoint = Checkpoint(producer, consumer, self.changelog, self.exactly_once,
                                      self.deliveries)
        self._checkpoint.start()
        consumer.subscribe(list(s.events_topics) + ([s.labels_topic] if s.labels_topic else []),
                           on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost)
        log.info("streamdrift running (%s): group %s, events %s, labels %s -> alerts %s "
                 "(dead letters %s, state %s)", s.guarantee, s.group_id, ",".join(s.events_topics),
                 s.labels_topic or "-", s.alerts_topic, s.dead_letter_topic, self.changelog.topic)
        code = 1                                  # (an exception: nothing claimed below)
        try:
            while not stop.is_set():
                raw = consumer.consume(num_messages=self._batch, timeout=s.poll_timeout_s)
                with self.lock:
                    for follower in follow:
                        for item in follower.poll():
                            self._follow(item)
                    if raw:
                        with collector_paused():           # see Pipeline.process
                            self._process(raw)
                    if self._held:
                        self._release()
                    if self._dirty and time.monotonic() - self._last_checkpoint >= s.checkpoint_interval_s:
                        self._commit(list(self.shards), wait=False)
            code = 0
            if self._leave(consumer, s.shutdown_timeout_s):
                log.info("streamdrift stopped: state and offsets committed, left the group"
                         if not self._checkpoint.failed else "streamdrift stopped: state written, "
                         "offsets not committed (the partitions' next owner reads again from their "
                         "last checkpoint), left the group")
        except FatalKafkaError as exc:
            log.error("%s; exiting so that a supervisor restarts the service", exc)
            code = 3
        finally:
            for follower in follow:
                follower.close()
        return code

    def _leave(self, consumer: Any, timeout_s: float) -> bool:
        """The last checkpoint, then leaving the group, given at most ``timeout_s`` seconds.
        False when they did not end in time: the group coordinator answers a member's commit
        only after that member's pending join (one connection, requests in order), and a
        rebalance waits for every member, one that left without a word (a static member) for
        its session timeout. The partitions' next owner then reads again from their last
        committed offsets (their output: at least once; in an aborted transaction: exactly once)."""
        failed: list[BaseException] = []

        def leave() -> None:
            try:
                with self.lock:
                    self._commit(list(self.shards))
                consumer.close()
            except BaseException as exc:                         # (raised in the caller's thread)
                failed.append(exc)

        worker = threading.Thread(target=leave, name="streamdrift-leave", daemon=True)
        worker.start()
        worker.join(timeout_s)
        if failed:
            raise failed[0]
        if worker.is_alive():
            log.warning("streamdrift stopped without its last commit and leave: they did not end "
                        "within kafka.shutdown_timeout_s = %gs (the group is rebalancing, or Kafka "
                        "is unreachable); the partitions' next owner reads again from their last "
                        "checkpoint", timeout_s)
            return False
        return True

    # -- rebalance
    @staticmethod
    def _committed(consumer: Any, partitions: list) -> dict[Key, int]:
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

    def _on_assign(self, consumer: Any, partitions: list) -> None:
        with self.lock:
            self._assign(consumer, partitions)

    def _on_revoke(self, consumer: Any, partitions: list) -> None:
        with self.lock:
            self._revoke(partitions)

    def _on_lost(self, consumer: Any, partitions: list) -> None:
        with self.lock:
            for tp in partitions:
                self.shards.pop((tp.topic, tp.partition), None)
                self.assigned.discard((tp.topic, tp.partition))
                self._held.pop((tp.topic, tp.partition), None)
            log.warning("partitions lost: state dropped without committing")

    def _assign(self, consumer: Any, partitions: list) -> None:
        t0 = time.perf_counter()
        wanted = max((tp.partition + 1 for tp in partitions), default=0)
        if wanted > self.changelog.partitions:                 # the input grew
            self._grow_changelog(AdminClient(client_config(self.settings)), wanted)
        self.assigned |= {(tp.topic, tp.partition) for tp in partitions}
        for tp in partitions:
            if tp.topic == self.settings.kafka.events_topics[0]:
                self._events_ts.pop(tp.partition, None)         # (read again from its commit)
        committed = self._committed(consumer, partitions)
        events = [tp for tp in partitions if tp.topic not in self.attached]
        n = self._restore(events, committed)
        if events:
            seconds = time.perf_counter() - t0
            self.metrics.restore_seconds.observe(seconds)
            log.info("assigned %s; restored %d models in %.2fs",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in partitions), n, seconds)

    def _revoke(self, partitions: list) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions if (tp.topic, tp.partition) in self.shards]
        # every shard: under exactly-once the open transaction holds the output of all of them
        # (incremental rebalancing keeps the others), so all their state and offsets go with it
        self._commit(list(self.shards))
        self.assigned -= {(tp.topic, tp.partition) for tp in partitions}
        for key in keys:
            self.shards.pop(key, None)
        for tp in partitions:
            self._attached_offsets.pop((tp.topic, tp.partition), None)
            self._held.pop((tp.topic, tp.partition), None)

    def _new_pipeline(self) -> Pipeline:
        pipeline = Pipeline(self.settings, label_topics=self.label_topics, profiles=self.profiles)
        for req in self.requests.values():
            pipeline.request(req)
        return pipeline

    def _follow(self, item: Rebaseline | Profile) -> None:
        if isinstance(item, Profile):
            log.info("references: profile %s (%d signals)", item.key, len(item.signals))
            self.profiles.add(item)
            for shard in self.shards.values():
                shard.pipeline.publish(item)
        else:
            self._request(item)

    def _request(self, req: Rebaseline) -> None:
        """An operator's request: to every shard (a model applies it once)."""
        log.info("control: rebaseline %s%s%s", req.model, f" {req.signal}" if req.signal else "",
                 "" if req.at != req.at else f" from event time {req.at}")
        self.requests[(req.model, req.signal)] = req
        for shard in self.shards.values():
            shard.pipeline.request(req)

    def _restore(self, events: list, committed: dict[Key, int]) -> int:
        """New shards for these events partitions, loaded from the changelog."""
        if not events:
            return 0
        fresh = {(tp.topic, tp.partition): Shard(self._new_pipeline()) for tp in events}
        self.shards.update(fresh)
        reader = Consumer(restore_config(self.settings))
        try:
            return self.changelog.read(reader, fresh, committed)
        finally:
            reader.close()

    # -- processing
    def _shard_key(self, topic: str, partition: int) -> Key:
        if topic in self.attached:
            return (self.attached[topic], partition)
        return (topic, partition)

    def _process(self, raw: list) -> None:
        t0 = time.perf_counter()
        m = self.metrics
        groups: dict[Key, list[Message]] = {}
        nexts: dict[Key, int] = {}
        per_topic: dict[str, int] = {}
        consumed = split_consumed(raw, bool(self.settings.kafka.formats))
        for (topic, partition), messages in self._in_step(consumed):
            groups.setdefault(self._shard_key(topic, partition), []).extend(messages)
            nexts[(topic, partition)] = messages[-1].offset + 1
            per_topic[topic] = per_topic.get(topic, 0) + len(messages)
        if not groups:
            return
        for topic, count in per_topic.items():
            m.messages.labels(topic=topic).inc(count)
        events = 0
        for key, messages in groups.items():
            shard = self.shards.get(key)
            if shard is None:                  # a labels partition without its events partition
                shard = self.shards[key] = Shard(self._new_pipeline())
            result = shard.pipeline.process(messages)
            shard.changed.update(result.models_touched)
            self._produce(result)
            self._count(result)
            events += result.n_events
        models = sum(len(shard.pipeline.models) for shard in self.shards.values())
        self._batch = batch_size(self.settings.kafka, models, len(raw), events)
        for (topic, partition), nxt in nexts.items():
            if topic in self.attached:
                self._attached_offsets[(topic, partition)] = nxt
            else:
                shard = self.shards.get((topic, partition))
                if shard is not None:
                    shard.next_offset = nxt
        self._dirty = True
        if not self.exactly_once:
            # alerts leave at once (linger.ms); the checkpoint flushes them all before it
            # commits offsets, so a batch's offsets are never committed before its alerts
            self.deliveries.check("alerts or dead letters")
        m.batch_size.observe(sum(len(v) for v in groups.values()))
        m.batch_seconds.observe(time.perf_counter() - t0)

    def _in_step(self, consumed: dict[Key, list[Message]]) -> list[tuple[Key, list[Message]]]:
        """The consumed messages to process now, per partition: all of them but a labels
        partition's from its first message as new as the events read from its partition (their
        Kafka timestamps) while those are behind; that partition is sought back to it and paused
        (:meth:`_release` resumes it). The events come first in each shard."""
        if not self.label_topics:
            return list(consumed.items())
        events_topic = self.settings.kafka.events_topics[0]
        ts_of = itemgetter(4)                                          # Message.timestamp
        for (topic, partition), messages in consumed.items():
            if topic == events_topic:
                newest = max(map(ts_of, messages))
                self._events_ts[partition] = max(self._events_ts.get(partition, 0.0), newest)
        now, labels = [], []
        for key, messages in consumed.items():
            topic, partition = key
            if topic in self.label_topics and self._events_behind(partition):
                stamps = np.fromiter(map(ts_of, messages), dtype=np.float64, count=len(messages))
                ahead = np.flatnonzero(stamps >= self._events_ts.get(partition, 0.0))
                if ahead.size:
                    first = int(ahead[0])
                    self._consumer.seek(TopicPartition(topic, partition, messages[first].offset))
                    self._consumer.pause([TopicPartition(topic, partition)])
                    self._held[key] = float(stamps[first])
                    messages = messages[:first]
            if messages:
                (labels if topic in self.label_topics else now).append((key, messages))
        return now + labels

    def _events_behind(self, partition: int) -> bool:
        """Whether this instance reads the events partition of this number and has not read
        it to its end (as of the consumer's last statistics; unknown counts as behind)."""
        key = (self.settings.kafka.events_topics[0], partition)
        return key in self.assigned and self._lag.get(key, 1) > 0

    def _release(self) -> None:
        """Resume the paused labels partitions whose next message the events have passed, or
        whose events partition has been read to its end."""
        for key, ts in list(self._held.items()):
            if self._events_ts.get(key[1], 0.0) > ts or not self._events_behind(key[1]):
                self._consumer.resume([TopicPartition(*key)])
                del self._held[key]

    def _produce(self, result: BatchResult) -> None:
        s, producer = self.settings.kafka, self._producer
        for alert in result.alerts:
            producer.produce(s.alerts_topic, key=alert["model"].encode(), value=orjson.dumps(alert),
                             on_delivery=self.deliveries if self.exactly_once
                             else partial(self._alert_delivered, alert))
        for dl in result.dead_letters:
            producer.produce(s.dead_letter_topic, value=dl.message.value,
                             headers=dead_letter_headers(dl), on_delivery=self.deliveries)
        producer.poll(0)
        if self.exactly_once:
            self._pending_alerts.extend(result.alerts)

    def _alert_delivered(self, alert: dict, err: KafkaError | None, msg: Any) -> None:
        """At-least-once: an alert acknowledged by the broker; its event-to-alert latency, and
        the sinks get it."""
        self.deliveries(err, msg)
        if err is None:
            if alert["at"]["ts"] > 0:
                self.metrics.event_to_alert.observe(max(0.0, time.time() - alert["at"]["ts"]))
            for sink in self.sinks:
                sink.offer(alert)

    def _count(self, result: BatchResult) -> None:
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
        for model, version, _ in result.versions:
            log.info("model %s: new version %s", model, version)
            m.versions.labels(model=m.model_label(model)).inc()

    # -- checkpoints
    def _commit(self, keys: list[Key], wait: bool = True) -> None:
        """Checkpoint these shards (and the labels partitions' offsets); ``wait`` False: the
        periodic checkpoint, whose offsets do not wait for their answer (Checkpoint.commit)."""
        extra = []
        for key, nxt in list(self._attached_offsets.items()):
            if key in self.assigned:
                extra.append(TopicPartition(key[0], key[1], nxt))
            else:
                self._attached_offsets.pop(key)
        self._last_checkpoint = time.monotonic()
        committed = self._checkpoint.commit([(k, self.shards[k]) for k in keys if k in self.shards], extra,
                                            wait)
        self._dirty = self._checkpoint.held_back           # (its offsets go with the next one)
        if committed and self.exactly_once:
            now = time.time()
            for alert in self._pending_alerts:
                if alert["at"]["ts"] > 0:
                    self.metrics.event_to_alert.observe(max(0.0, now - alert["at"]["ts"]))
                for sink in self.sinks:
                    sink.offer(alert)
        self._pending_alerts = []
        if not committed:
            self._rewind()

    def _rewind(self) -> None:
        """After an aborted transaction: reload every shard and re-read from committed offsets."""
        consumer = self._consumer
        assigned = list(consumer.assignment())
        committed = self._committed(consumer, assigned)
        events = [tp for tp in assigned if tp.topic not in self.attached]
        self.shards = {}
        self._attached_offsets = {}
        self._events_ts = {}
        self._restore(events, committed)
        for tp in assigned:
            off = committed.get((tp.topic, tp.partition), -1)
            consumer.seek(TopicPartition(tp.topic, tp.partition, off if off >= 0 else -2))

    # -- what the metrics read at scrape time
    def lag(self) -> dict[Key, int]:
        """Messages behind the end of each assigned partition, as of the consumer's last
        statistics report (every ``statistics.interval.ms``; never a call to the consumer from
        the scrape's thread: it would wait for the consumer's own thread)."""
        return dict(self._lag)

    def _on_commit(self, err: KafkaError | None, partitions: list) -> None:
        if self._checkpoint is not None:
            self._checkpoint.answered(err, partitions)

    def _on_stats(self, text: str) -> None:
        """librdkafka's statistics (called from consume): each assigned partition's end
        (last stable offset under read_committed) minus the next offset handed to us."""
        lag: dict[Key, int] = {}
        for topic, t in orjson.loads(text).get("topics", {}).items():
            for part, p in t.get("partitions", {}).items():
                key = (topic, int(part))
                if key not in self.assigned:
                    continue
                end = p.get("ls_offset", -1) if p.get("ls_offset", -1) >= 0 else p.get("hi_offset", -1)
                pos = p.get("app_offset", -1)
                if end >= 0:
                    lag[key] = max(0, end - pos) if pos >= 0 else max(0, p.get("consumer_lag", 0))
        self._lag = lag

    def pipelines(self) -> list[Pipeline]:
        return [shard.pipeline for shard in list(self.shards.values())]
