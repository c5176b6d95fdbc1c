"""A stop's last commit and leave, bounded by kafka.shutdown_timeout_s, with a fake consumer
whose commit the group coordinator holds up (as it does behind a pending join while a
rebalance waits for a member). test_rebalance stops instances during such rebalances on a
real broker."""

from __future__ import annotations

import logging
import threading

import pytest
from confluent_kafka import KafkaError, KafkaException
from test_checkpoint import FakeConsumer, FakeProducer, shards

from stream.config import load_settings
from stream.errors import DeliveryFailed
from stream.kafka.service import Service
from stream.metrics import Metrics


class GroupConsumer(FakeConsumer):
    """Subscribes, reads nothing; its commits wait for ``answer`` (set: answered at once)."""

    def __init__(self, answer: threading.Event, refuse: bool = False) -> None:
        super().__init__()
        self.answer = answer
        self.refuse = refuse
        self.closed = False

    def subscribe(self, topics, on_assign=None, on_revoke=None, on_lost=None):
        self.topics = topics

    def consume(self, num_messages, timeout):
        return []

    def commit(self, offsets, asynchronous):
        assert self.answer.wait(30), "the test never answered the commit"
        if self.refuse:                                 # (the generation moved on meanwhile)
            raise KafkaException(KafkaError(KafkaError.ILLEGAL_GENERATION))
        super().commit(offsets, asynchronous)

    def close(self):
        self.closed = True


def stopped(consumer: GroupConsumer, producer: FakeProducer) -> Service:
    """A service with one shard that has offsets to commit, served after its stop was asked."""
    settings = load_settings(env={}, overrides={"kafka.shutdown_timeout_s": 0.3})
    service = Service(settings, Metrics(settings.metrics.max_model_labels))
    service.shards.update(shards())
    stop = threading.Event()
    stop.set()
    service.code = service.serve(consumer, producer, stop)
    return service


def test_a_stop_commits_the_last_checkpoint_then_leaves_the_group(caplog):
    answered = threading.Event()
    answered.set()
    consumer = GroupConsumer(answered)
    with caplog.at_level(logging.INFO, "streamdrift"):
        service = stopped(consumer, FakeProducer())
    assert service.code == 0
    assert consumer.commits == [[("ev", 0, 900)]] and consumer.closed
    assert "state and offsets committed, left the group" in caplog.text
    assert "shutdown_timeout_s" not in caplog.text


def test_a_stop_whose_last_offsets_are_refused_says_so(caplog):
    answered = threading.Event()
    answered.set()
    consumer = GroupConsumer(answered, refuse=True)
    with caplog.at_level(logging.INFO, "streamdrift"):
        service = stopped(consumer, FakeProducer())
    assert service.code == 0 and consumer.closed
    assert "state written, offsets not committed" in caplog.text
    assert "state and offsets committed" not in caplog.text


def test_a_stop_the_group_holds_up_ends_after_the_shutdown_timeout(caplog):
    held = threading.Event()
    consumer = GroupConsumer(held)
    try:
        with caplog.at_level(logging.INFO, "streamdrift"):
            service = stopped(consumer, FakeProducer())
        assert service.code == 0
        assert consumer.commits == [] and not consumer.closed       # (still waiting)
        assert "did not end within kafka.shutdown_timeout_s = 0.3s" in caplog.text
        assert "left the group" not in caplog.text
    finally:
        held.set()                                     # the coordinator answers at last


def test_a_last_checkpoint_that_fails_fails_the_stop():
    answered = threading.Event()
    answered.set()
    consumer = GroupConsumer(answered)
    with pytest.raises(DeliveryFailed):
        stopped(consumer, FakeProducer(unflushed=1))
    assert consumer.commits == [] and not consumer.closed


def test_the_shutdown_timeout_must_be_positive():
    from stream.errors import ConfigError

    with pytest.raises(ConfigError, match="kafka.shutdown_timeout_s"):
        load_settings(env={}, overrides={"kafka.shutdown_timeout_s": 0})
