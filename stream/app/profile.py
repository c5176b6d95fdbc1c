"""`streamdrift profile`: reference profiles from training data, as a user has it.

Inputs: JSONL in the event format (one event, or an array of them, per line; an event may carry
``"label"``, the outcome the model should have predicted), CSV with a header row, Parquet (the
optional extra ``streamdrift[parquet]``: pyarrow). In CSV and Parquet each column is a feature
but the reserved ones: ``model``, ``model_version``, ``id``, ``ts``, ``prediction``, ``label``,
``segment``; ``--model`` names the model when there is no ``model`` column. A CSV column whose
non-empty values all read as numbers is numeric, else categorical; empty cells are missing.

Per model, one profile of all its rows (the features' references; the prediction's and the
error's too when the rows have no version), and one per model version for the version's
prediction and error references (``model@version``).
"""

from __future__ import annotations

import csv
import gzip
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ..config import Settings
from ..errors import ConfigError
from ..ingest.columnar import concat
from ..ingest.rows import decode
from ..monitor.estimate import ESTIMATE
from ..monitor.performance import error_of
from ..monitor.reference import Profiles, build
from ..types import Message, ModelBatch

RESERVED = ("model", "model_version", "id", "ts", "prediction", "label", "segment")
_CHUNK = 20_000


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")


def _kind(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".ndjson", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "parquet"
    raise ConfigError(f"{path}: unknown training data format (use .jsonl, .csv or .parquet, "
                      "optionally .gz)")


def _cell(value: str) -> float | str | None:
    if value == "":
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _rows_to_events(rows: Iterator[dict[str, Any]], model: str | None, version: str | None,
                    where: str) -> Iterator[dict[str, Any]]:
    """Table rows -> events (the reserved columns as event fields, the rest as features)."""
    for i, row in enumerate(rows):
        name = row.get("model") or model
        if not name:
            raise ConfigError(f"{where}: row {i + 1} has no model (give --model, or a model column)")
        ev: dict[str, Any] = {"model": str(name),
                              "features": {k: v for k, v in row.items() if k not in RESERVED}}
        for key in ("id", "ts", "prediction", "label", "segment"):
            if row.get(key) is not None:
                ev[key] = row[key]
        if isinstance(ev.get("id"), float) and ev["id"].is_integer():
            ev["id"] = int(ev["id"])
        v = row.get("model_version") or version
        if v is not None:
            ev["model_version"] = str(v) if not isinstance(v, float) else f"{v:g}"
        yield ev


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    with _open(path) as fh:
        text = io.TextIOWrapper(fh, encoding="utf-8-sig", newline="")
        reader = csv.DictReader(text)
        if not reader.fieldnames:
            raise ConfigError(f"{path}: no header row")
        columns: dict[str, list] = {c: [] for c in reader.fieldnames}
        for row in reader:
            for c in columns:
                columns[c].append(row.get(c) or "")
    # a column whose non-empty cells all read as numbers is numeric, else categorical
    typed: dict[str, list] = {}
    for c, values in columns.items():
        cells = [_cell(v) for v in values]
        if any(isinstance(v, str) for v in cells):
            cells = [None if v == "" else v for v in values]
        typed[c] = cells
    n = len(next(iter(typed.values()), []))
    for i in range(n):
        yield {c: typed[c][i] for c in typed}


def _parquet_rows(path: Path) -> Iterator[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq  # noqa: PLC0415 (an optional extra: imported when used)
    except ImportError:
        raise ConfigError(f"{path}: reading Parquet needs the extra: pip install "
                          "'streamdrift[parquet]'") from None
    table = pq.read_table(path)
    for batch in table.to_batches():
        yield from batch.to_pylist()


def _events(path: Path, model: str | None, version: str | None) -> Iterator[bytes]:
    kind = _kind(path)
    if kind == "jsonl":
        with _open(path) as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                if model is None and version is None:
                    yield line
                    continue
                doc = orjson.loads(line)
                for ev in doc if isinstance(doc, list) else [doc]:
                    if isinstance(ev, dict):
                        ev.setdefault("model", model)
                        if version is not None:
                            ev.setdefault("model_version", version)
                yield orjson.dumps(doc)
        return
    rows = _csv_rows(path) if kind == "csv" else _parquet_rows(path)
    for ev in _rows_to_events(rows, model, version, str(path)):
        yield orjson.dumps(ev)


def profile(settings: Settings, paths: list[str], model: str | None = None,
            version: str | None = None) -> tuple[Profiles, int]:
    """Profiles of the training data in these files; and how many rows were not usable."""
    batches: dict[str, list[ModelBatch]] = {}
    labels: dict[str, list[Any]] = {}
    bad = 0
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"{path}: no such file")
        chunk: list[bytes] = []
        try:
            for value in _events(path, model, version):
                chunk.append(value)
                if len(chunk) >= _CHUNK:
                    bad += _decode_chunk(settings, str(path), chunk, batches, labels)
                    chunk = []
        except (orjson.JSONDecodeError, UnicodeDecodeError, csv.Error) as exc:
            raise ConfigError(f"{path}: unreadable ({exc})") from None
        if chunk:
            bad += _decode_chunk(settings, str(path), chunk, batches, labels)
    if not batches:
        raise ConfigError(f"no usable training rows in {', '.join(paths)}")
    out = Profiles()
    for m, parts in batches.items():
        mb = concat(parts)
        errors, binary = _errors(mb, labels[m])
        if mb.versions is None or all(v is None for v in mb.versions):
            out.add(build(m, None, mb, settings, errors, binary))
            continue
        out.add(build(m, None, mb, settings))               # the features' references, all rows
        vs = np.array([v if v is not None else "" for v in mb.versions], dtype=object)
        for v in dict.fromkeys(x for x in mb.versions if x is not None):
            rows = np.flatnonzero(vs == v)
            part = build(m, v, mb.select(rows), settings, None if errors is None else errors[rows],
                         None if binary is None else binary[rows])
            part.signals = {k: r for k, r in part.signals.items()
                            if k.split("=")[0] in ("prediction", "error", ESTIMATE)}
            part.multivariate = None
            part.categories = {k: c for k, c in part.categories.items() if k == "\x00prediction"}
            part.features = {}
            out.add(part)
    return out, bad


def _decode_chunk(settings: Settings, source: str, chunk: list[bytes], batches: dict[str, list[ModelBatch]],
                  labels: dict[str, list[Any]]) -> int:
    """Decode lines of training events into each model's batches and labels; returns how
    many were not usable."""
    out = decode([Message(v, source, 0, i, 0.0) for i, v in enumerate(chunk)], settings.limits)
    docs = []
    for v in chunk:
        try:
            docs.append(orjson.loads(v))
        except orjson.JSONDecodeError:
            docs.append(None)
    for m, mb in out.models.items():
        batches.setdefault(m, []).append(mb)
        labels.setdefault(m, []).extend(_label_of(docs, mb))
    return len(out.dead_letters)


def _label_of(docs: list[Any], mb: ModelBatch) -> list[Any]:
    """Each row's label (None where its event has none)."""
    flat: list[list[Any]] = [d if isinstance(d, list) else [d] for d in docs]
    out = []
    seen: dict[int, int] = {}
    for i in mb.index.tolist():
        k = seen.get(i, 0)
        seen[i] = k + 1
        evs = flat[i]
        ev = evs[k] if k < len(evs) else {}
        out.append(ev.get("label") if isinstance(ev, dict) else None)
    return out


def _errors(mb: ModelBatch, labels: list[Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The error of each labeled row (NaN elsewhere), as the service computes it, and whether
    it is a right/wrong outcome; (None, None) without labels."""
    if all(lab is None for lab in labels):
        return None, None
    preds = mb.prediction_class if mb.prediction_class is not None else mb.prediction.tolist()
    out = np.full(mb.size, np.nan)
    binary = np.zeros(mb.size, dtype=bool)
    for r, (pred, lab) in enumerate(zip(preds, labels, strict=True)):
        if lab is None or pred is None or pred != pred or not isinstance(lab, (int, float, str)):
            continue
        out[r], binary[r] = error_of(pred, lab)
    return out, binary

