"""One error root for streamdrift, and the few kinds a caller tells apart.

* :class:`Rejected`: one input message (event, label, adapter record) is bad; it becomes a
  dead letter with ``reason`` (a short machine-readable word) and ``detail``. Only this is
  caught on the data path: any other exception is a bug and must surface.
* :class:`ConfigError`: bad configuration; the message names the key (or file).
* :class:`StateError`: checkpointed state that cannot be loaded (also a detectors.StateError).
* :class:`KafkaFault` and its kinds: the service cannot go on with Kafka as it is.
* :class:`InputError`: a replayed file cannot be read to its end.
"""

from __future__ import annotations

from detectors import StateError as _DetectorStateError


class StreamdriftError(Exception):
    """Root of every error streamdrift raises on purpose."""


class Rejected(StreamdriftError):
    """A message that cannot be used: it becomes a dead letter with this reason and detail."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ConfigError(StreamdriftError, ValueError):
    """Bad configuration; the message names the offending key."""


class StateError(StreamdriftError, _DetectorStateError):
    """Checkpointed state that is corrupt, foreign or inconsistent with the configuration."""


class InputError(StreamdriftError):
    """An input file could not be read to its end; names the file."""


class KafkaFault(StreamdriftError):
    """The service cannot go on with Kafka as it is."""


class DeliveryFailed(KafkaFault):
    """An alert, dead letter or state record was not delivered; offsets were not committed."""


class FatalKafkaError(KafkaFault):
    """A fatal client error (e.g. a fenced transactional producer): exit and be restarted."""
