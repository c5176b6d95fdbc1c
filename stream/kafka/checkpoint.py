"""Checkpoints: changed state to the changelog, then the input offsets, per the guarantee.

At-least-once: every output produced so far (alerts, dead letters, state records) is flushed
and acknowledged before the offsets are committed, so no offset is ever committed before the
output of the messages below it; a crash replays from the last commit. A periodic checkpoint
sends its offsets without waiting for their answer: the group coordinator answers a member's
commit only after that member's pending join, and a rebalance waits for every member (one that
died: up to its session timeout), so waiting would stall the instance for that long.
Exactly-once: output, state records and offsets go in one producer transaction; an abort
returns False (the caller reloads state and re-reads from the committed offsets), a fatal
error raises :class:`~stream.errors.FatalKafkaError`.

The producer and consumer are injected, so the commit logic of both guarantees is tested with
fakes (tests/test_checkpoint.py) as well as on the real broker.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ..errors import DeliveryFailed, FatalKafkaError
from .changelog import Changelog, Key, Shard

log = logging.getLogger("streamdrift")
TIMEOUT_S = 30


class Producer(Protocol):
    def produce(self, topic: str, value: Any = ..., key: Any = ..., partition: int = ...,
                headers: Any = ..., on_delivery: Any = ...) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def begin_transaction(self) -> None: ...
    def send_offsets_to_transaction(self, offsets: list, metadata: Any, timeout: float) -> None: ...
    def commit_transaction(self, timeout: float) -> None: ...
    def abort_transaction(self, timeout: float) -> None: ...


class Consumer(Protocol):
    def commit(self, offsets: list, asynchronous: bool) -> Any: ...
    def consumer_group_metadata(self) -> Any: ...


class Deliveries:
    """Delivery reports of everything the service produces: ``on_delivery`` callback that
    keeps the errors; :meth:`check` raises when there were any."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")

    def check(self, what: str) -> None:
        if self.errors:
            raise DeliveryFailed(f"{what} not delivered ({'; '.join(self.errors[:3])}); offsets not "
                                 "committed, the messages will be read again on restart")


class Checkpoint:
    """Commits the service's progress.

    Parameters
    ----------
    producer : the output producer (transactional under exactly-once, begun by :meth:`start`).
    consumer : the group's consumer (offsets are committed through it or the transaction).
    changelog : where the shards' state records go.
    exactly_once : the delivery guarantee.
    deliveries : the delivery-report collector of every produce.
    """

    def __init__(self, producer: Producer, consumer: Consumer, changelog: Changelog,
                 exactly_once: bool, deliveries: Deliveries) -> None:
        self.producer = producer
        self.consumer = consumer
        self.changelog = changelog
        self.exactly_once = exactly_once
        self.deliveries = deliveries
        self.unanswered = False      # offsets sent without waiting, their answer not yet served
        self.held_back = False       # the last commit kept its offsets for the next one
        self.failed = False          # the last commit's offsets were refused (at-least-once)

    def start(self) -> None:
        """Open the first transaction (exactly-once)."""
        if self.exactly_once:
            self.producer.begin_transaction()

    def commit(self, shards: list[tuple[Key, Shard]], extra: list[TopicPartition],
               wait: bool = True) -> bool:
        """Write the changed state of these shards and commit their offsets (and ``extra``
        offsets, e.g. of labels partitions). True when committed; False when an exactly-once
        transaction was aborted (its output discarded: reload state and re-read).

        ``wait`` False (at-least-once): the offsets are sent and their answer comes to
        :meth:`answered`; while an earlier one is unanswered they are held back
        (:attr:`held_back`) for the next commit."""
        producer = self.producer
        offsets = list(extra)
        self.held_back = self.failed = False
        for key, shard in shards:
            if shard.next_offset is None:
                continue
            for part, record_key, value, headers in self.changelog.records(key, shard):
                producer.produce(self.changelog.topic, partition=part, key=record_key, value=value,
                                 headers=headers, on_delivery=self.deliveries)
                producer.poll(0)
            offsets.append(TopicPartition(key[0], key[1], shard.next_offset))
        if self.exactly_once:
            return self._commit_transaction(offsets)
        if producer.flush(60):
            raise DeliveryFailed("output not acknowledged within 60 s; offsets not committed")
        self.deliveries.check("alerts, dead letters or state")
        self.held_back = bool(offsets) and not wait and self.unanswered
        if offsets and not self.held_back:
            try:
                self.consumer.commit(offsets=offsets, asynchronous=not wait)
                self.unanswered = not wait
            except KafkaException as exc:
                self.failed = True
                log.warning("offset commit failed (will be retried at the next checkpoint): %s", exc)
        return True

    def answered(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's ``on_commit`` callback (served by its consume): the answer to the
        offsets sent without waiting."""
        self.unanswered = False
        failed = [f"{tp.topic}[{tp.partition}]: {tp.error.str()}" for tp in partitions or () if tp.error]
        if err is not None or failed:
            log.warning("offset commit failed (will be retried at the next checkpoint): %s",
                        err.str() if err is not None else "; ".join(failed[:3]))

    def _commit_transaction(self, offsets: list[TopicPartition]) -> bool:
        producer = self.producer
        committed = True
        try:
            if offsets:
                producer.send_offsets_to_transaction(offsets, self.consumer.consumer_group_metadata(),
                                                     TIMEOUT_S)
            for attempt in range(5):
                try:
                    producer.commit_transaction(TIMEOUT_S)
                    break
                except KafkaException as exc:
                    if not exc.args[0].retriable() or attempt == 4:
                        raise
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise FatalKafkaError(f"fatal Kafka error in a transaction: {err.str()}") from None
            if not err.txn_requires_abort():
                raise FatalKafkaError(f"transaction commit failed: {err.str()}") from None
            log.warning("transaction aborted (%s): restoring state from the changelog", err.str())
            producer.abort_transaction(TIMEOUT_S)
            committed = False
        self.deliveries.errors.clear()        # (aborted output is re-produced after the rewind)
        producer.begin_transaction()
        return committed
