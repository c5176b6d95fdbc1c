"""Compacted topics every instance follows whole: operators' requests (re-baselines, the
control topic) and reference profiles (the references topic).

Compacted, keyed by ``model`` or ``model/signal`` (its latest request per target stays). Every
instance reads all its partitions from the start, outside the consumer group (a request is
for whichever instance holds the model), and hands each request to every shard's pipeline;
a model applies a request once (it remembers the ids it applied, in its checkpointed state).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..errors import DeliveryFailed, Rejected
from ..ingest.control import decode_control, encode_control
from ..monitor import reference
from ..monitor.reference import Profile, Profiles
from ..types import Message, Rebaseline
from .clients import ErrorLog, client_config
from .topics import CHANGELOG_CONFIG, ensure_topics

log = logging.getLogger("streamdrift")


def control_topic(settings: Settings) -> str:
    return settings.kafka.control_topic or f"{settings.kafka.group_id}-control"


def ensure_control_topic(settings: Settings) -> str:
    """Create the control topic if missing (compacted, one partition); returns its name."""
    topic = control_topic(settings)
    ensure_topics(AdminClient(client_config(settings)), {topic: (1, CHANGELOG_CONFIG)})
    return topic


def publish(settings: Settings, req: Rebaseline) -> dict[str, Any]:
    """Write one request to the control topic and wait for it to be stored."""
    topic = ensure_control_topic(settings)
    key, value = encode_control(req)
    errors: list[str] = []
    producer = Producer({**client_config(settings), "error_cb": ErrorLog("kafka producer")})
    producer.produce(topic, key=key, value=value,
                     on_delivery=lambda err, msg: errors.append(err.str()) if err else None)
    if producer.flush(30) or errors:
        raise DeliveryFailed(f"control request not stored in {topic}: {'; '.join(errors) or 'timed out'}")
    return {"topic": topic, "key": key.decode(), "request": value.decode()}


class Follower:
    """Reads every partition of a compacted topic from its start, outside the group; each
    message decoded by ``decode`` (a Rejected one is logged and skipped)."""

    def __init__(self, settings: Settings, topic: str, decode: Callable[[Message], Any]) -> None:
        self.topic, self.decode = topic, decode
        self.consumer = Consumer({**client_config(settings), "group.id": f"{settings.kafka.group_id}-follow",
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "enable.partition.eof": True, "fetch.wait.max.ms": 10,
                                  "error_cb": ErrorLog(f"kafka {topic}")})
        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self.partitions = set(meta.partitions)
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])   # (0: start)

    def poll(self, to_end: bool = False, timeout_s: float = 30.0) -> list[Any]:
        """What arrived since the last call (none waits); ``to_end``: everything up to the
        topic's end (at start: what was published before)."""
        out: list[Any] = []
        todo = set(self.partitions) if to_end else set()
        deadline = time.monotonic() + timeout_s
        while True:
            for msg in self.consumer.consume(1000, timeout=0.05 if todo else 0):
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                    else:
                        log.warning("%s: %s", self.topic, err.str())
                    continue
                if msg.value() is None:
                    continue                                    # a deleted record
                try:
                    out.append(self.decode(Message(msg.value(), msg.topic(), msg.partition(),
                                                   msg.offset(), 0.0)))
                except Rejected as exc:
                    log.warning("%s[%d]@%d ignored: %s", msg.topic(), msg.partition(), msg.offset(), exc)
            if not todo or time.monotonic() > deadline:
                return out

    def close(self) -> None:
        self.consumer.close()


def follow_control(settings: Settings) -> Follower:
    """The control topic's requests (:class:`~stream.types.Rebaseline`)."""
    return Follower(settings, control_topic(settings), lambda m: decode_control(m, settings.limits))


def references_topic(settings: Settings) -> str:
    return settings.kafka.references_topic or f"{settings.kafka.group_id}-references"


def follow_references(settings: Settings) -> Follower:
    """The references topic's profiles (:class:`~stream.monitor.reference.Profile`)."""
    return Follower(settings, references_topic(settings), _decode_profile)


def _decode_profile(msg: Message) -> Profile:
    try:
        profiles = reference.parse(orjson.loads(msg.value))
    except (orjson.JSONDecodeError, ValueError) as exc:
        raise Rejected("invalid_profile", str(exc)) from None
    return next(iter(profiles.profiles.values()))


def publish_profiles(settings: Settings, profiles: Profiles) -> tuple[str, list[str]]:
    """Each profile to the references topic (key ``model`` or ``model@version``); returns the
    topic and the keys."""
    topic = references_topic(settings)
    ensure_topics(AdminClient(client_config(settings)), {topic: (1, CHANGELOG_CONFIG)})
    errors: list[str] = []
    producer = Producer({**client_config(settings), "message.max.bytes": 64 << 20,
                         "error_cb": ErrorLog("kafka producer")})
    for key, p in profiles.profiles.items():
        producer.produce(topic, key=key.encode(), value=Profiles({key: p}).to_json(),
                         on_delivery=lambda err, msg: errors.append(err.str()) if err else None)
    if producer.flush(60) or errors:
        raise DeliveryFailed(f"profiles not stored in {topic}: {'; '.join(errors) or 'timed out'}")
    return topic, list(profiles.profiles)
