"""Synthetic event streams with known drift, for the demo, the tests and the benchmarks."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import orjson


@dataclass(frozen=True)
class ModelSpec:
    """A model whose events have numeric features N(mean, sd); from `drift_at` (event index of
    this model) to `drift_until` (the end if None) the features in `shift` move by that many
    standard deviations."""
    name: str
    features: dict[str, tuple[float, float]]       # name -> (mean, sd)
    shift: dict[str, float]                        # name -> shift in sd, from drift_at on
    drift_at: int
    categories: dict[str, list[str]] | None = None  # categorical features (uniform), no drift
    drift_until: int | None = None
    missing_from: dict[str, int] | None = None     # feature -> null from this event index on
    label_error: tuple[float, float, int] | None = None   # labels' error rate before, after, from


DEMO_MODELS = [
    ModelSpec("readmission", {"age": (61.0, 12.0), "los_days": (4.5, 2.0), "n_meds": (9.0, 3.0)},
              {"age": 1.0}, drift_at=6000, categories={"insurance": ["medicare", "private", "medicaid"]}),
    ModelSpec("fraud", {"amount": (80.0, 40.0), "tx_per_day": (3.0, 1.5)}, {"amount": 1.5}, drift_at=8000),
    ModelSpec("churn", {"tenure_months": (30.0, 10.0), "spend": (55.0, 20.0)}, {}, drift_at=10**9),
]


def events(models: list[ModelSpec], n_per_model: int, seed: int = 0, t0: float = 1.7e9,
           dt: float = 0.01) -> Iterator[tuple[str, dict]]:
    """Yield (model, event) interleaved round-robin across models; ts = t0 + i * dt."""
    rng = np.random.default_rng(seed)
    cols = {}
    for spec in models:
        feats = {}
        for name, (mu, sd) in spec.features.items():
            x = rng.normal(mu, sd, n_per_model)
            x[spec.drift_at:spec.drift_until] += spec.shift.get(name, 0.0) * sd
            if spec.missing_from and name in spec.missing_from:
                x[spec.missing_from[name]:] = np.nan
            feats[name] = [None if v != v else v for v in x.tolist()]
        cats = {name: rng.choice(values, n_per_model).tolist()
                for name, values in (spec.categories or {}).items()}
        score = 1 / (1 + np.exp(-rng.normal(-1, 1, n_per_model)))
        cols[spec.name] = (feats, cats, np.round(score, 4).tolist())
    k = 0
    for i in range(n_per_model):
        for spec in models:
            feats, cats, score = cols[spec.name]
            f = {name: v[i] for name, v in feats.items()}
            f.update({name: v[i] for name, v in cats.items()})
            yield spec.name, {"model": spec.name, "id": f"{spec.name}-{i}", "ts": round(t0 + k * dt, 3),
                              "features": f, "prediction": score[i]}
            k += 1


def jsonl(models: list[ModelSpec], n_per_model: int, seed: int = 0) -> bytes:
    return b"".join(orjson.dumps(ev) + b"\n" for _, ev in events(models, n_per_model, seed))



def label_of(spec: ModelSpec, i: int, prediction: float, rng: np.random.Generator) -> int:
    """The label of event i of ``spec``: its predicted class, wrong at the spec's error rate."""
    before, after, at = spec.label_error or (0.0, 0.0, 0)
    return int((prediction >= 0.5) != (rng.random() < (before if i < at else after)))
