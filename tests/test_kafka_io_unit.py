"""Unit tests of the Kafka side that need no broker: consumer configuration, consumed batches."""

from __future__ import annotations

import logging
import re

import pytest
from confluent_kafka import KafkaError
from confluent_kafka import Message as KafkaMessage

from stream.config import load_settings
from stream.errors import ConfigError, FatalKafkaError
from stream.kafka.clients import consumer_config, split_consumed
from stream.types import Message


def test_consumer_config_defaults_user_overrides_and_fixed_keys(tmp_path):
    conf = consumer_config(load_settings(env={}))
    assert conf["fetch.queue.backoff.ms"] == 10       # not librdkafka's 1000 ms pause
    assert conf["enable.auto.commit"] is False and conf["isolation.level"] == "read_committed"
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka.client]\n"fetch.queue.backoff.ms" = 250\n')
    conf = consumer_config(load_settings(cfg, env={}))
    assert conf["fetch.queue.backoff.ms"] == "250"     # the user's setting wins over ours


@pytest.mark.parametrize("client,guarantee,key", [
    ('"enable.auto.commit" = true', "at-least-once", "kafka.client.enable.auto.commit"),
    ('"enable.auto.offset.store" = true', "at-least-once", "kafka.client.enable.auto.offset.store"),
    ('"group.id" = "x"', "at-least-once", "kafka.client.group.id"),
    ('"transactional.id" = "x"', "exactly-once", "kafka.client.transactional.id"),
    ('"isolation.level" = "read_uncommitted"', "exactly-once", "kafka.client.isolation.level"),
    ('"enable.idempotence" = false', "exactly-once", "kafka.client.enable.idempotence"),
    ('"group.protocol" = "eager"', "at-least-once", "kafka.client.group.protocol"),
    ('"group.protocol" = "consumer"\n"partition.assignment.strategy" = "range"', "exactly-once",
     "kafka.client.partition.assignment.strategy"),
])
def test_settings_the_guarantee_cannot_honour_stop_the_start(tmp_path, client, guarantee, key):
    """(They used to be overridden silently.)"""
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[kafka]\nguarantee = "{guarantee}"\n[kafka.client]\n{client}\n')
    with pytest.raises(ConfigError, match=re.escape(key)):
        load_settings(cfg, env={})


@pytest.mark.parametrize("client", ['"partition.assignment.strategy" = "cooperative-sticky"',
                                    '"group.protocol" = "consumer"'])
def test_incremental_rebalancing_is_allowed_under_both_guarantees(tmp_path, client):
    for guarantee in ("at-least-once", "exactly-once"):
        cfg = tmp_path / "c.toml"
        cfg.write_text(f'[kafka]\nguarantee = "{guarantee}"\n[kafka.client]\n{client}\n')
        load_settings(cfg, env={})


def _reference_split(raw: list, with_headers: bool) -> dict[tuple[str, int], list[Message]]:
    """What split_consumed must return, written message by message."""
    out: dict[tuple[str, int], list[Message]] = {}
    for msg in raw:
        if msg.error() is not None:
            continue
        ts_ms = msg.timestamp()[1]
        out.setdefault((msg.topic(), msg.partition()), []).append(Message(
            msg.value() or b"", msg.topic(), msg.partition(), msg.offset(),
            ts_ms / 1000.0 if ts_ms > 0 else 0.0,
            tuple(msg.headers() or ()) if with_headers else None))
    return out


def test_split_consumed_groups_runs_per_partition_and_drops_errors(caplog):
    def msg(topic, partition, offset, value=b"{}", ts=(1, 1_700_000_000_123), headers=None):
        return KafkaMessage(topic=topic, partition=partition, offset=offset, value=value,
                            timestamp=ts, headers=headers)

    raw = [msg("ev", 0, 10), msg("ev", 0, 11, headers=[("ce_type", b"x")]),
           msg("ev", 1, 5, value=None),                              # a tombstone
           KafkaMessage(error=KafkaError(KafkaError._PARTITION_EOF), topic="ev", partition=1),
           msg("lab", 0, 7, ts=(0, 0)), msg("lab", 0, 8, ts=(1, -1)),   # no timestamp
           msg("ev", 0, 12),                                         # partition 0 again
           KafkaMessage(error=KafkaError(KafkaError._TRANSPORT), topic="ev", partition=0)]
    with caplog.at_level(logging.WARNING, logger="streamdrift"):
        for with_headers in (False, True):
            got = split_consumed(raw, with_headers)
            assert got == _reference_split(raw, with_headers)
            assert [m.offset for m in got[("ev", 0)]] == [10, 11, 12]
            assert got[("ev", 1)][0].value == b""
            assert [m.timestamp for m in got[("lab", 0)]] == [0.0, 0.0]
            assert got[("ev", 0)][0].timestamp == 1_700_000_000.123
    assert sum("consume error" in r.message for r in caplog.records) == 2    # not end-of-partition
    one = [msg("ev", 3, i) for i in range(5)]
    assert split_consumed(one, False) == _reference_split(one, False)
    assert split_consumed([raw[3]], False) == {} and split_consumed([], False) == {}


def test_a_fatal_consume_error_stops_the_instance():
    """The consumer is unusable after it: the service exits (code 3) for a supervisor to
    restart it, rather than stay in the group reading nothing."""
    fenced = KafkaError(KafkaError.UNRELEASED_INSTANCE_ID, "instance id still used", fatal=True)
    raw = [KafkaMessage(topic="ev", partition=0, offset=1, value=b"{}", timestamp=(1, 1)),
           KafkaMessage(error=fenced)]
    with pytest.raises(FatalKafkaError, match="instance id still used"):
        split_consumed(raw, False)
