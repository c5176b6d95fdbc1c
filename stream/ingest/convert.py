"""Input adapters selected per topic: what serving stacks already emit -> streamdrift events.

``[kafka.formats]`` in the config (``replay --format`` for a file) names a topic's format:
``streamdrift`` (the event format itself, passed through), ``kserve``
(:mod:`stream.ingest.kserve`), ``oip`` (:mod:`stream.ingest.oip`) or ``seldon``
(:mod:`stream.ingest.seldon`, Kafka topics only: protobuf), ``avro`` (:mod:`stream.ingest.avro`)
or ``protobuf`` (:mod:`stream.ingest.protobuf`), Kafka topics only: Confluent-framed records
with a Schema Registry. Each converted message
keeps its source position, so alerts and dead letters point at it. A message an adapter
cannot convert is a dead letter with its own raw bytes; a converted message that decoding
rejects later (e.g. a feature mixing numbers and names within a batch) is dead-lettered as
the message it came from (:meth:`Converter.convert_with_origins`).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..config import LimitSettings, RegistrySettings
from ..errors import StateError
from ..types import DeadLetter, Message
from .avro import AvroAdapter
from .kserve import KServeAdapter
from .oip import OIPAdapter
from .protobuf import ProtobufAdapter
from .seldon import SeldonAdapter
from .values import check_model

FORMATS = ("streamdrift", "kserve", "oip", "seldon", "avro", "protobuf")
_KNOWN_MODELS = 10_000     # model names remembered as valid (the check is then skipped)


class Converter:
    """Per-topic adapters in front of decoding.

    Parameters
    ----------
    formats : topic -> format (topics not named are ``streamdrift``).
    columns : model -> feature names of a single 2-D input tensor.
    max_pending : KServe events awaiting their pair, at most.
    limits : the event rules converted events must keep.
    registry : the Schema Registry and record fields of the avro and protobuf topics.
    """

    def __init__(self, formats: dict[str, str], columns: dict[str, tuple[str, ...]],
                 max_pending: int = 100_000, limits: LimitSettings | None = None,
                 registry: RegistrySettings | None = None) -> None:
        self.formats = formats
        self.limits = limits or LimitSettings()
        self._valid_models: set[str] = set()   # model names that passed check_model
        self.kserve = KServeAdapter(columns, self.limits, self._check_model, max_pending)
        self.oip = OIPAdapter(columns, self.limits, self._check_model)
        self.seldon = SeldonAdapter(columns, self.limits, self._check_model, max_pending)
        self.avro = AvroAdapter(registry or RegistrySettings(), self.limits, self._check_model)
        self.protobuf = ProtobufAdapter(registry or RegistrySettings(), self.limits, self._check_model)

    @property
    def changed(self) -> bool:
        """Whether the state changed since the last :meth:`state_dict`."""
        return self.kserve.changed or self.seldon.changed

    def state_dict(self) -> dict[str, Any]:
        return {**self.kserve.state_dict(), "seldon": self.seldon.state_dict()}

    def load_state(self, state: Any) -> None:
        self.kserve.load_state(state)
        if isinstance(state, dict) and "seldon" in state:      # (absent: written before it existed)
            self.seldon.load_state(state["seldon"])

    def dump(self) -> bytes:
        """:meth:`state_dict` as JSON bytes, for the changelog; see :meth:`load`."""
        return orjson.dumps(self.state_dict())

    def load(self, blob: bytes) -> None:
        try:
            state = orjson.loads(blob)
        except orjson.JSONDecodeError as exc:
            raise StateError(f"adapter pairing state is unreadable: {exc}") from None
        self.load_state(state)

    def convert(self, messages: list[Message]) -> tuple[list[Message], list[DeadLetter]]:
        """(streamdrift messages, dead letters of the messages that could not be converted)."""
        out, dead, _ = self.convert_with_origins(messages)
        return out, dead

    def convert_with_origins(self, messages: list[Message]
                             ) -> tuple[list[Message], list[DeadLetter], dict[int, Message]]:
        """:meth:`convert`, and for each converted message (by ``id``) the message it came
        from, so that a dead letter of decoding carries the raw bytes that arrived."""
        out: list[Message] = []
        dead: list[DeadLetter] = []
        origins: dict[int, Message] = {}
        adapters = {"kserve": self.kserve, "oip": self.oip, "seldon": self.seldon, "avro": self.avro,
                    "protobuf": self.protobuf}
        for msg in messages:
            adapter = adapters.get(self.formats.get(msg.topic, "streamdrift"))
            if adapter is None:
                out.append(msg)
                continue
            docs, rejected = adapter.convert(msg)
            if rejected is not None:
                dead.append(DeadLetter(msg, rejected.reason, rejected.detail))
            for d in docs:
                converted = msg.with_value(orjson.dumps(d))
                origins[id(converted)] = msg
                out.append(converted)
        return out, dead, origins

    def drain(self) -> list[dict | list]:
        """Every event still awaiting its pair, alone (the input has ended)."""
        return self.kserve.drain() + self.seldon.drain()

    def _check_model(self, model: str) -> None:
        """check_model, skipped for names that passed it (up to _KNOWN_MODELS remembered)."""
        if model not in self._valid_models:
            check_model(model, self.limits)
            if len(self._valid_models) < _KNOWN_MODELS:
                self._valid_models.add(model)

