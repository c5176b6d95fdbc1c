"""The detector registry, and one detection step for many models at once.

A detector kind is named in the configuration (``detect.detectors``) and in checkpointed
state; this registry is the one place that maps a name to its class and its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from detectors import ADWIN, PageHinkley

from ..config import DetectSettings


class Detector(Protocol):
    """What the monitors need of a detector (see detectors/)."""

    def update(self, X: np.ndarray) -> np.ndarray: ...
    def add_features(self, k: int) -> None: ...
    def to_bytes(self) -> bytes: ...


@dataclass(frozen=True)
class DetectorKind:
    """A named detector: how to build one from the settings, how to restore one."""
    name: str
    cls: type
    make: Callable[[DetectSettings], Detector]

    def from_bytes(self, blob: bytes) -> Detector:
        return self.cls.from_bytes(blob)


def _adwin(d: DetectSettings) -> ADWIN:
    a = d.adwin
    return ADWIN(0, delta=a.delta, clock=a.clock, max_buckets=a.max_buckets,
                 min_window_length=a.min_window_length, grace_period=a.grace_period)


def _page_hinkley(d: DetectSettings) -> PageHinkley:
    p = d.page_hinkley
    return PageHinkley(0, min_instances=p.min_instances, delta=p.delta, threshold=p.threshold,
                       alpha=p.alpha, exact=p.exact)


DETECTORS: dict[str, DetectorKind] = {
    "adwin": DetectorKind("adwin", ADWIN, _adwin),
    "page_hinkley": DetectorKind("page_hinkley", PageHinkley, _page_hinkley),
}


def make_detectors(d: DetectSettings) -> dict[str, Detector]:
    """The configured detectors of one model, by name, in the configured order."""
    return {name: DETECTORS[name].make(d) for name in d.detectors}


def detect_all(detectors: list[dict[str, Detector]], Z: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Every model's detector masks for its z-scores ``Z[i]`` (rows x signals).

    Each kind of detector advances for all models at once (``update_many``: numpy's cost per
    call is then paid once a group of columns, not once a model, which dominates batches of
    many models). A model whose z-scores are all missing (its signals still in warm-up)
    changes no detector, since missing values are skipped: its masks are all False without a
    call.
    """
    masks: list[dict[str, np.ndarray]] = [{} for _ in Z]
    silent = [z.size == 0 or bool(np.isnan(z[-1]).all() and np.isnan(z).all())   # (last row
              for z in Z]                                                       # first: cheap)
    for i, dets in enumerate(detectors):
        if silent[i]:
            masks[i] = {name: np.zeros(Z[i].shape, dtype=bool) for name in dets}
    for name, kind in DETECTORS.items():
        which = [i for i, dets in enumerate(detectors) if name in dets and not silent[i]]
        if not which:
            continue
        together = kind.cls.update_many([detectors[i][name] for i in which], [Z[i] for i in which])
        for i, mask in zip(which, together, strict=True):
            masks[i][name] = mask
    return masks
