"""Kafka client configurations, the broker wait, and consumed messages -> our Messages."""

from __future__ import annotations

import logging
import threading
import time
from itertools import compress, groupby, repeat
from operator import is_, itemgetter
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka import Message as KafkaMessage
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..errors import FatalKafkaError
from ..types import Message
from .topics import CHANGELOG_RECORD_BYTES

log = logging.getLogger("streamdrift")
# librdkafka stops fetching a partition whose local queue holds queued.min.messages (100000)
# and then waits fetch.queue.backoff.ms (default 1000 ms) before the next fetch: a service
# that drains the queue faster sits idle for the rest of that second. Users may override
# both in [kafka.client].
FETCH_DEFAULTS = {"fetch.queue.backoff.ms": 10}


class ErrorLog:
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


def client_config(settings: Settings) -> dict[str, Any]:
    """Bootstrap servers and the user's [kafka.client] pass-through."""
    return {"bootstrap.servers": settings.kafka.bootstrap, **settings.kafka.client}


def consumer_config(settings: Settings) -> dict[str, Any]:
    """The service consumer's librdkafka configuration: our defaults, then [kafka.client]
    (which may override them), then the keys the delivery guarantee relies on (which it
    may not: offsets are stored and committed by the service after each checkpoint)."""
    s = settings.kafka
    return {
        "topic.metadata.refresh.interval.ms": 10_000,   # see new topics and partitions soon
        **FETCH_DEFAULTS,
        **client_config(settings),
        "group.id": s.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "error_cb": ErrorLog("kafka consumer"),
        # a configured instance id makes this a static member: a restarted instance takes
        # its partitions back at once instead of after the session timeout
        **({"group.instance.id": s.instance_id} if s.instance_id else {}),
    }


def producer_config(settings: Settings, instance: str) -> dict[str, Any]:
    """The output producer: idempotent; transactional (id from group and instance) under
    exactly-once."""
    conf = {**client_config(settings), "enable.idempotence": True, "linger.ms": 5,
            "message.max.bytes": CHANGELOG_RECORD_BYTES, "error_cb": ErrorLog("kafka producer")}
    if settings.kafka.guarantee == "exactly-once":
        conf["transactional.id"] = f"streamdrift-{settings.kafka.group_id}-{instance}"
    return conf


def restore_config(settings: Settings) -> dict[str, Any]:
    """A reader of the changelog (assigned partitions, never committing)."""
    return {**FETCH_DEFAULTS, **client_config(settings),
            "group.id": f"{settings.kafka.group_id}-restore", "enable.auto.commit": False,
            "isolation.level": "read_committed", "enable.partition.eof": True,
            # the end of a partition shows as a fetch that returns nothing, which the broker
            # holds for fetch.wait.max.ms (500 ms by default)
            "fetch.wait.max.ms": 10, "error_cb": ErrorLog("kafka restore")}


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


def split_consumed(raw: list, with_headers: bool) -> dict[tuple[str, int], list[Message]]:
    """Consumed messages -> our Messages per (topic, partition), each list in consume order.

    Errors are logged (end of partition silently) and dropped; a fatal one (the consumer is
    unusable, e.g. its static member id still held by the instance it replaces) raises
    :class:`FatalKafkaError`. Each field is read for the
    whole batch in one C-level pass (map over the message type's methods): the objects
    confluent-kafka makes per field dominate the cost of a loop over the messages.
    Timestamps are epoch seconds (0.0 when the message has none); headers are a tuple of
    (key, value) pairs, and keys are read, only ``with_headers`` (adapters read them).
    """
    errors = list(map(KafkaMessage.error, raw))
    if not all(map(is_, errors, repeat(None))):        # (KafkaError's == cannot take None)
        for err in errors:
            if err is not None and err.fatal():
                raise FatalKafkaError(f"fatal Kafka consumer error: {err.str()}")
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
    msg_keys = map(KafkaMessage.key, raw) if with_headers else repeat(None)
    fields = zip(values, topics, partitions, map(KafkaMessage.offset, raw), ts, headers, msg_keys,
                 repeat(None), strict=False)           # headers and keys may be repeat(None)
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
