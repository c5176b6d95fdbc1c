"""Checkpoint commit logic of both delivery guarantees, with a fake producer and consumer.

(The real-broker tests, test_crash_recovery and test_service_kafka, check the same on Kafka.)
"""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.app.synthetic import DEMO_MODELS, events
from stream.config import load_settings
from stream.errors import DeliveryFailed, FatalKafkaError
from stream.kafka.changelog import OFFSET_HEADER, Changelog, Shard
from stream.kafka.checkpoint import Checkpoint, Deliveries
from stream.pipeline import Pipeline
from stream.state import load_model
from stream.types import Message


class FakeMsg:
    def __init__(self, topic: str) -> None:
        self._topic = topic

    def topic(self) -> str:
        return self._topic


class FakeProducer:
    """Records calls; delivery reports are sent at flush (or poll), errors on request."""

    def __init__(self, fail_delivery: bool = False, unflushed: int = 0,
                 commit_errors: list[KafkaError] | None = None) -> None:
        self.calls: list[tuple] = []
        self.records: list[dict] = []
        self.fail_delivery, self.unflushed = fail_delivery, unflushed
        self.commit_errors = list(commit_errors or [])
        self._reports: list = []

    def produce(self, topic, value=None, key=None, partition=-1, headers=None, on_delivery=None):
        self.calls.append(("produce", topic))
        self.records.append({"topic": topic, "partition": partition, "key": key, "value": value,
                             "headers": dict(headers or [])})
        self._reports.append((on_delivery, topic))

    def poll(self, timeout):
        return 0

    def flush(self, timeout):
        self.calls.append(("flush",))
        for cb, topic in self._reports:
            cb(KafkaError(KafkaError._MSG_TIMED_OUT) if self.fail_delivery else None, FakeMsg(topic))
        self._reports = []
        return self.unflushed

    def begin_transaction(self):
        self.calls.append(("begin",))

    def send_offsets_to_transaction(self, offsets, metadata, timeout):
        self.calls.append(("send_offsets", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))

    def commit_transaction(self, timeout):
        if self.commit_errors:
            raise KafkaException(self.commit_errors.pop(0))
        self.calls.append(("commit_transaction",))

    def abort_transaction(self, timeout):
        self.calls.append(("abort",))


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[list[tuple]] = []
        self.waited: list[bool] = []            # per commit: synchronous

    def commit(self, offsets, asynchronous):
        self.commits.append(sorted((tp.topic, tp.partition, tp.offset) for tp in offsets))
        self.waited.append(not asynchronous)

    def consumer_group_metadata(self):
        return "group-metadata"


def shards() -> list:
    """Two shards of input partitions 0 and 3: the first processed events of the demo models,
    the second has read nothing yet (no offset to commit)."""
    settings = load_settings(env={})
    busy = Shard(Pipeline(settings))
    evs = [orjson.dumps(e) for _, e in events(DEMO_MODELS, 300, seed=1)]
    result = busy.pipeline.process([Message(v, "ev", 0, i, 0.0) for i, v in enumerate(evs)])
    busy.changed.update(result.models_touched)
    busy.next_offset = len(evs)
    return [(("ev", 0), busy), (("ev", 3), Shard(Pipeline(settings)))]


def checkpoint(producer, consumer, exactly_once: bool) -> Checkpoint:
    cp = Checkpoint(producer, consumer, Changelog("changelog", 4), exactly_once, Deliveries())
    cp.start()
    return cp


def test_at_least_once_writes_state_flushes_then_commits():
    producer, consumer = FakeProducer(), FakeConsumer()
    parts = shards()
    assert checkpoint(producer, consumer, False).commit(parts, [TopicPartition("labels", 0, 42)])
    names = sorted(m.name for m in DEMO_MODELS)
    assert [r["key"] for r in producer.records] == [f"ev:0:{n}".encode() for n in names]
    assert {r["partition"] for r in producer.records} == {0}          # the input's own partition
    assert {r["headers"][OFFSET_HEADER] for r in producer.records} == {b"900"}
    assert producer.calls[-1] == ("flush",) and ("begin",) not in producer.calls
    assert consumer.commits == [[("ev", 0, 900), ("labels", 0, 42)]]    # after the flush
    assert parts[0][1].changed == set()
    # the records restore the models
    again = Pipeline(load_settings(env={}))
    for r in producer.records:
        load_model(again, r["value"])
    assert sorted(again.models) == names
    # nothing changed since: no state written, the offsets committed again
    checkpoint(producer, consumer, False).commit(parts, [])
    assert len(producer.records) == len(names) and consumer.commits[-1] == [("ev", 0, 900)]


def test_a_periodic_checkpoint_does_not_wait_for_its_offsets_answer(caplog):
    """The coordinator answers after the member's pending join (a rebalance can wait a session
    timeout for a member): the periodic commit sends its offsets and goes on; while they are
    unanswered, the next periodic commit holds its own back; a stop's or revocation's waits."""
    producer, consumer = FakeProducer(), FakeConsumer()
    cp = checkpoint(producer, consumer, False)
    parts = shards()
    assert cp.commit(parts, [], wait=False)
    assert consumer.commits == [[("ev", 0, 900)]] and consumer.waited == [False]
    assert cp.unanswered and not cp.held_back
    parts[0][1].next_offset = 950
    assert cp.commit(parts, [], wait=False)                        # still unanswered
    assert len(consumer.commits) == 1 and cp.held_back
    assert producer.calls[-1] == ("flush",)                        # (the state is written all the same)
    cp.answered(None, [TopicPartition("ev", 0, 900)])
    assert not cp.unanswered
    assert cp.commit(parts, [], wait=False) and not cp.held_back
    assert consumer.commits[-1] == [("ev", 0, 950)] and consumer.waited[-1] is False
    assert cp.commit(parts, [])                                     # waits, unanswered or not
    assert consumer.waited[-1] is True and not cp.held_back
    # (a TopicPartition's error is read-only: what the client hands the callback, in its stead)
    failed = SimpleNamespace(topic="ev", partition=0, error=KafkaError(KafkaError.ILLEGAL_GENERATION))
    with caplog.at_level("WARNING", "streamdrift"):
        cp.answered(None, [failed])
        cp.answered(KafkaError(KafkaError.REBALANCE_IN_PROGRESS), None)
    assert sum("offset commit failed" in r.message for r in caplog.records) == 2


@pytest.mark.parametrize("producer", [FakeProducer(fail_delivery=True), FakeProducer(unflushed=3)],
                         ids=["delivery error", "flush timeout"])
def test_at_least_once_never_commits_what_was_not_delivered(producer):
    consumer = FakeConsumer()
    with pytest.raises(DeliveryFailed):
        checkpoint(producer, consumer, False).commit(shards(), [])
    assert consumer.commits == []


def test_exactly_once_commits_state_and_offsets_in_the_transaction():
    producer, consumer = FakeProducer(), FakeConsumer()
    assert checkpoint(producer, consumer, True).commit(shards(), [TopicPartition("labels", 0, 7)])
    kinds = [c[0] for c in producer.calls]
    assert kinds[0] == "begin" and kinds[-3:] == ["send_offsets", "commit_transaction", "begin"]
    assert ("send_offsets", [("ev", 0, 900), ("labels", 0, 7)]) in producer.calls
    assert all(c[0] != "flush" for c in producer.calls) and consumer.commits == []
    assert kinds.index("send_offsets") > max(i for i, k in enumerate(kinds) if k == "produce")


def test_exactly_once_retries_a_retriable_commit():
    producer = FakeProducer(commit_errors=[KafkaError(KafkaError._TIMED_OUT, retriable=True)] * 2)
    assert checkpoint(producer, FakeConsumer(), True).commit(shards(), [])
    assert producer.calls[-2:] == [("commit_transaction",), ("begin",)]


def test_exactly_once_abort_discards_and_asks_for_a_rewind():
    producer = FakeProducer(commit_errors=[KafkaError(KafkaError._FENCED, txn_requires_abort=True)])
    assert checkpoint(producer, FakeConsumer(), True).commit(shards(), []) is False
    assert producer.calls[-2:] == [("abort",), ("begin",)]


def test_exactly_once_fatal_error_stops_the_instance():
    producer = FakeProducer(commit_errors=[KafkaError(KafkaError._FENCED, fatal=True)])
    with pytest.raises(FatalKafkaError, match="fatal Kafka error"):
        checkpoint(producer, FakeConsumer(), True).commit(shards(), [])
    assert ("abort",) not in producer.calls


class NoLeaderYet:
    """A changelog reader whose partition has no leader for its first ``misses`` asks (a
    partition just added), or that fails with ``error``."""

    def __init__(self, misses: int, error: int = KafkaError.NOT_LEADER_FOR_PARTITION) -> None:
        self.misses, self.error, self.asked = misses, error, 0

    def get_watermark_offsets(self, tp, timeout):
        self.asked += 1
        if self.asked <= self.misses:
            raise KafkaException(KafkaError(self.error))
        return 0, 0


def test_changelog_partition_without_a_leader_yet_is_asked_again():
    from stream.kafka.changelog import _watermarks

    reader = NoLeaderYet(misses=2)
    assert _watermarks(reader, TopicPartition("c", 3), pause_s=0.0) == (0, 0)
    assert reader.asked == 3
    with pytest.raises(KafkaException):         # still none after every attempt
        _watermarks(NoLeaderYet(misses=5), TopicPartition("c", 3), attempts=3, pause_s=0.0)
    other = NoLeaderYet(misses=1, error=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):         # not retriable: at once
        _watermarks(other, TopicPartition("c", 3), pause_s=0.0)
    assert other.asked == 1
