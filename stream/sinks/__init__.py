"""Where published alerts go besides the alerts topic."""

from __future__ import annotations

from typing import Any, Protocol


class AlertSink(Protocol):
    def offer(self, alert: dict[str, Any]) -> None:
        """An alert Kafka has (acknowledged, or committed); must not block."""
