"""Time-based alert episodes of the feedback signals (``segments:entropy``, ``labels:selection``).

Those signals are windows and shares, not values with a reference, so their episodes follow
their flags in event time: the first flag opens an episode (one `firing` alert); further
flags extend it; it resolves when no flag has come for ``resolve_after_s`` (one `resolved`
alert, at the first event past that span). A new episode may not fire within ``cooldown_s``
of the previous firing. (Data signals are judged by their values: :mod:`stream.monitor.drift`.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class Episode:
    alert_id: str          # of the firing alert
    detector: str          # the detector that opened it
    fired_ts: float
    last_detection_ts: float
    detections: int = 1


class Lifecycle:
    """Open episodes of one model's signals (keyed by signal column)."""

    def __init__(self, resolve_after_s: float, cooldown_s: float) -> None:
        self.resolve_after_s = resolve_after_s
        self.cooldown_s = cooldown_s
        self.open: dict[int, Episode] = {}
        self.last_fired: dict[int, float] = {}

    def may_fire(self, j: int, ts: float) -> bool:
        """False while signal j has an open episode or is inside its cooldown."""
        if j in self.open:
            return False
        last = self.last_fired.get(j)
        return last is None or ts - last >= self.cooldown_s

    def fire(self, j: int, ts: float, alert_id: str, detector: str) -> None:
        self.open[j] = Episode(alert_id, detector, ts, ts)
        self.last_fired[j] = ts

    def extend(self, j: int, ts: float) -> None:
        ep = self.open[j]
        ep.last_detection_ts = max(ep.last_detection_ts, ts)
        ep.detections += 1

    def resolve_row(self, j: int, ts_rows, upto: int | None = None) -> int | None:
        """First row (< upto) of this batch whose time is past signal j's quiet span, or None."""
        ep = self.open.get(j)
        if ep is None:
            return None
        due = ep.last_detection_ts + self.resolve_after_s
        rows = ts_rows[:upto] if upto is not None else ts_rows
        past = rows >= due
        return int(past.argmax()) if past.any() else None

    def close(self, j: int) -> Episode:
        return self.open.pop(j)

    def state_dict(self) -> dict[str, Any]:
        return {"open": {str(j): vars(ep) for j, ep in self.open.items()},
                "last_fired": {str(j): t for j, t in self.last_fired.items()}}

    def load_state(self, state: dict[str, Any]) -> None:
        self.open = {int(j): Episode(**ep) for j, ep in state["open"].items()}
        self.last_fired = {int(j): float(t) for j, t in state["last_fired"].items()}


AlertAt = Callable[[int, int, str, str], dict]    # (row, column, detector, status) -> alert


def apply_lifecycle(life: Lifecycle, hits: list[tuple[int, int, str]], ts: np.ndarray,
                    alerts: list[dict], alert: AlertAt) -> int:
    """Turn detections (row, column, detector) of a batch into firing/resolved alerts,
    appended to ``alerts``; returns how many detections were suppressed (inside an open
    episode or a cooldown). ``alert(row, column, detector, status)`` builds an alert at a row.
    """
    suppressed = 0
    hits.sort()
    for row, j, name in hits:
        t = float(ts[row])
        r = life.resolve_row(j, ts, upto=row + 1)
        if r is not None:                       # it had been quiet long enough before this
            alerts.append(resolved(life, j, alert(r, j, life.open[j].detector, "resolved")))
        if j in life.open:
            life.extend(j, t)
            suppressed += 1
        elif life.may_fire(j, t):
            fired = alert(row, j, name, "firing")
            life.fire(j, t, fired["alert_id"], name)
            alerts.append(fired)
        else:
            suppressed += 1
    for j in list(life.open):
        r = life.resolve_row(j, ts)
        if r is not None:
            alerts.append(resolved(life, j, alert(r, j, life.open[j].detector, "resolved")))
    return suppressed


def resolved(life: Lifecycle, j: int, alert: dict) -> dict:
    """Close signal j's episode; ``alert`` (its resolved alert) gains the episode's facts."""
    ep = life.close(j)
    alert["stats"].update({"episode_alert_id": ep.alert_id, "fired_ts": ep.fired_ts,
                           "last_detection_ts": ep.last_detection_ts, "detections": ep.detections})
    return alert
