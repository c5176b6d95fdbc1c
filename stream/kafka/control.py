"""The control topic: operators' requests (re-baselines) that every instance follows.

Compacted, keyed by ``model`` or ``model/signal`` (its latest request per target stays). Every
instance reads all its partitions from the start, outside the consumer group (a request is
for whichever instance holds the model), and hands each request to every shard's pipeline;
a model applies a request once (it remembers the ids it applied, in its checkpointed state).
"""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from ..config import Settings
from ..errors import DeliveryFailed, Rejected
from ..ingest.control import decode_control, encode_control
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


class ControlFollower:
    """Reads every partition of the control topic from its start, without a group."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topic = control_topic(settings)
        self.consumer = Consumer({**client_config(settings), "group.id": f"{settings.kafka.group_id}-control",
                                  "enable.auto.commit": False, "isolation.level": "read_committed",
                                  "error_cb": ErrorLog("kafka control")})
        meta = self.consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        self.consumer.assign([TopicPartition(self.topic, p, 0) for p in meta.partitions])   # (0: start)

    def poll(self) -> list[Rebaseline]:
        """The requests that arrived since the last call (none waits)."""
        out = []
        for msg in self.consumer.consume(100, timeout=0):
            if msg.error() is not None:
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    log.warning("control topic: %s", msg.error().str())
                continue
            if msg.value() is None:
                continue                                    # a deleted request
            try:
                out.append(decode_control(Message(msg.value(), msg.topic(), msg.partition(),
                                                  msg.offset(), 0.0), self.settings.limits))
            except Rejected as exc:
                log.warning("control topic %s[%d]@%d ignored: %s", msg.topic(), msg.partition(),
                            msg.offset(), exc)
        return out

    def close(self) -> None:
        self.consumer.close()
