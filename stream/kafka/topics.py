"""Topics the service writes: created when missing, with their partition counts."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic

log = logging.getLogger("streamdrift")
CHANGELOG_RECORD_BYTES = 64 << 20     # the changelog's record limit (and the producer's)
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "max.message.bytes": str(CHANGELOG_RECORD_BYTES)}


def partition_counts(admin: AdminClient, topics: list[str]) -> dict[str, int]:
    """Partitions of each of these topics that exists."""
    meta = admin.list_topics(timeout=10).topics
    return {t: len(meta[t].partitions) for t in topics if t in meta}


def ensure_topics(admin: AdminClient, topics: dict[str, tuple[int, dict[str, str]]]) -> dict[str, int]:
    """Create the topics (name -> (partitions, config)) that do not exist yet; returns every
    one's partition count (a topic that existed keeps its own)."""
    existing = partition_counts(admin, list(topics))
    new = [NewTopic(t, num_partitions=p, replication_factor=-1, config=conf)
           for t, (p, conf) in topics.items() if t not in existing]
    counts = dict(existing)
    if new:
        for topic, fut in admin.create_topics(new, operation_timeout=10).items():
            try:
                fut.result()
                log.info("created topic %s (%d partitions)", topic, topics[topic][0])
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise
            counts[topic] = topics[topic][0]
    return counts


def grow(admin: AdminClient, topic: str, partitions: int) -> None:
    """Give ``topic`` this many partitions (more than it has)."""
    futures = admin.create_partitions([NewPartitions(topic, partitions)], operation_timeout=10)
    for fut in futures.values():
        try:
            fut.result()
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.INVALID_PARTITIONS:      # (grown meanwhile)
                raise
