"""The changelog: a compacted topic holding the state of each (input partition, model).

A record's key is ``<topic>:<partition>:<model>`` (``<topic>:<partition>:~adapters`` for the
adapters' pairing store), its value :func:`stream.state.dump_model` bytes, its header
``streamdrift.offset`` the next input offset the state reflects. Changelog partition p
holds input partition p.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ..errors import StateError
from ..pipeline import Pipeline
from ..state import dump_model, load_model
from .topics import CHANGELOG_RECORD_BYTES

log = logging.getLogger("streamdrift")
ADAPTER_STATE = "~adapters"     # key suffix of a partition's adapter state (not a model name)
OFFSET_HEADER = "streamdrift.offset"

Key = tuple[str, int]           # (input topic, partition)


class Shard:
    """State of one assigned input partition: its pipeline and progress."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.next_offset: int | None = None     # next input offset to read (after processed)
        self.changed: set[str] = set()          # models changed since the last checkpoint


class Changelog:
    """Writes and reads the state records of shards.

    Parameters
    ----------
    topic : the compacted changelog topic.
    partitions : its partition count.
    max_value_bytes : a record's value at most (the record limit less room for its key and
        headers); a model's state over it gives up its oldest predictions waiting for labels.
    """

    def __init__(self, topic: str, partitions: int,
                 max_value_bytes: int = CHANGELOG_RECORD_BYTES - (1 << 16)) -> None:
        self.topic = topic
        self.partitions = partitions
        self.max_value_bytes = max_value_bytes

    def partition_of(self, input_partition: int) -> int:
        """The changelog partition of an input partition: the same number while the changelog
        has as many partitions (it is created so); wrapped when the input grew later."""
        return input_partition % self.partitions

    def records(self, key: Key, shard: Shard) -> Iterator[tuple[int, bytes, bytes, list]]:
        """(partition, key, value, headers) of the shard's models changed since the last
        call, and of its adapter state if that changed; marks them written."""
        topic, partition = key
        part = self.partition_of(partition)
        pipeline = shard.pipeline
        offset = str(shard.next_offset).encode()
        for model in sorted(shard.changed):
            if model in pipeline.models:
                yield (part, f"{topic}:{partition}:{model}".encode(),
                       dump_model(pipeline, model, self.max_value_bytes), [(OFFSET_HEADER, offset)])
        shard.changed.clear()
        converter = pipeline.converter
        if converter is not None and converter.changed:
            yield (part, f"{topic}:{partition}:{ADAPTER_STATE}".encode(), converter.dump(),
                   [(OFFSET_HEADER, offset)])

    def read(self, reader: Consumer, shards: dict[Key, Shard], committed: dict[Key, int]) -> int:
        """Restore the latest state records of these shards not newer than their committed
        offsets; returns the models restored. An unreadable record starts its model fresh."""
        latest: dict[bytes, bytes] = {}
        parts = sorted({self.partition_of(p) for _, p in shards})
        for key, value, headers in self._scan(reader, parts):
            topic, _, rest = key.partition(b":")
            partition, _, _ = rest.partition(b":")
            try:
                shard = (topic.decode(), int(partition))
            except ValueError:
                continue                                   # (not a record of ours)
            if shard not in shards:
                continue
            offset = int(headers.get(OFFSET_HEADER, b"-1"))
            limit = committed.get(shard, -1)
            if value is None:
                latest.pop(key, None)
            elif 0 <= offset <= max(limit, 0) and limit >= 0:
                latest[key] = value
            elif limit < 0 or offset > limit:
                log.warning("changelog record %s reflects offset %d beyond the committed "
                            "%d: skipped", key.decode(errors="replace"), offset, limit)
        n = 0
        for key, value in latest.items():
            topic, partition, name = key.decode().split(":", 2)   # (topics have no ":")
            pipeline = shards[(topic, int(partition))].pipeline
            try:
                if name == ADAPTER_STATE:
                    if pipeline.converter is not None:
                        pipeline.converter.load(value)
                    continue
                load_model(pipeline, value)
                n += 1
            except StateError as exc:
                log.error("state %s is unreadable (%s): starting that model fresh", key.decode(), exc)
        return n

    def _scan(self, reader: Consumer, parts: list[int]) -> Iterator[tuple[bytes, bytes | None, dict]]:
        """(key, value, headers) of every record of these changelog partitions, read together
        to their ends (each partition's records in order). The reader reports each partition's
        end (``enable.partition.eof``) as soon as it is reached: no wait for records that
        will not come."""
        todo = set()
        assignment = []
        for part in parts:
            lo, hi = _watermarks(reader, TopicPartition(self.topic, part))
            if hi > lo:
                todo.add(part)
                assignment.append(TopicPartition(self.topic, part, lo))
        if not todo:
            return
        reader.assign(assignment)
        deadline = time.monotonic() + 300
        while todo and time.monotonic() < deadline:
            for msg in reader.consume(10_000, timeout=0.02):   # (returns what has come)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        todo.discard(msg.partition())
                    else:
                        log.warning("changelog %s[%s]: %s", self.topic, msg.partition(), err.str())
                    continue
                yield msg.key() or b"", msg.value(), dict(msg.headers() or [])
        if todo:
            log.error("changelog %s: partitions %s not read to their end within 300 s",
                      self.topic, sorted(todo))


# what a partition that was just added, or whose leader moves, answers for a moment
_NO_LEADER_YET = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_PARTITION}


def _watermarks(reader: Consumer, tp: TopicPartition, attempts: int = 30,
                pause_s: float = 1.0) -> tuple[int, int]:
    """(low, high) offsets of a changelog partition, asked up to ``attempts`` times, every
    ``pause_s`` seconds, while the broker's answer is retriable (the changelog grown with the
    input has new partitions with no leader for a moment)."""
    attempt = 0
    while True:
        try:
            return reader.get_watermark_offsets(tp, timeout=30)
        except KafkaException as exc:
            err = exc.args[0]
            attempt += 1
            if attempt >= attempts or not (err.retriable() or err.code() in _NO_LEADER_YET):
                raise
            log.info("changelog %s[%d]: %s; asking again", tp.topic, tp.partition, err.str())
            time.sleep(pause_s)
