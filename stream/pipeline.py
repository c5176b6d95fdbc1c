"""The pure core shared by `run` and `replay`: messages -> detections -> alerts.

No Kafka here. ``Pipeline.process(messages)`` decodes a batch (:mod:`stream.ingest`), hands
each model's columns to its monitor (:mod:`stream.monitor`), advances every model's detectors
together, joins the batch's labels, and returns the alerts and dead letters of the batch. Same
input in the same order gives the same output, byte for byte.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import compress
from operator import attrgetter, not_
from typing import Any

import numpy as np
import orjson

from .config import KafkaSettings, Settings
from .ingest.convert import Converter
from .ingest.labels import decode_labels
from .ingest.rows import PIECE_MODELS, decode
from .monitor.detection import detect_all
from .monitor.feedback import SelectionMonitor
from .monitor.model import ModelMonitor
from .monitor.performance import ErrorBatch, LabelDesk, Outcome, PerformanceMonitor
from .monitor.reference import Profile, Profiles
from .types import DeadLetter, Message, ModelBatch, Rebaseline


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) for the block; restore it after.

    A batch allocates thousands of containers (the parsed events, acyclic, freed by
    reference counting when the batch is done) that the collector would otherwise scan again
    and again as they survive its young generations.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_TOPIC = attrgetter("topic")
RETRY_TYPED = 64         # batches between tries of the typed decode, after one refused
PER_MODEL = 200          # events a model a batch that batches grow to (see batch_size)


def batch_size(kafka: KafkaSettings, models: int, messages: int = 1, events: int = 1) -> int:
    """Messages of the next batch: ``kafka.batch_size``, grown to about PER_MODEL events for
    each of the ``models`` tracked, at the last batch's ``messages`` per ``events`` (labels
    add messages, a columnar message holds many events), up to ``kafka.max_batch_size``.
    Each model costs a fixed time a batch (its decoding, checks, detectors: tens of numpy
    calls); alerts do not depend on the batch size."""
    grown = min(kafka.max_batch_size, int(PER_MODEL * models * messages / max(1, events)))
    return max(kafka.batch_size, grown)


Action = Callable[[ModelMonitor, ModelBatch, "BatchResult"], None]   # at the first row of a batch


def _version_changes(versions: list, current: str | None) -> list[tuple[int, str]]:
    """(row, version) where the model's version changes: a version other than the last one
    seen (rows without a version keep it)."""
    seen = set(versions)
    if len(seen) == 1 and (versions[0] is None or versions[0] == current):
        return []
    out = []
    for row, v in enumerate(versions):
        if v is not None and v != current:
            out.append((row, v))
            current = v
    return out


@dataclass
class BatchResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    n_events: int = 0
    n_labels_joined: int = 0
    models_touched: set[str] = field(default_factory=set)   # models whose state changed
    suppressed: int = 0                   # detections inside an open episode or a cooldown
    versions: list[tuple[str, str, float]] = field(default_factory=list)   # (model, new version, ts)


class Pipeline:
    """All models' monitors; decode + detect + alert for one batch of messages at a time.

    Parameters
    ----------
    settings : the service's settings.
    label_topics : topics (file paths in replay) whose messages are labels; with none, no
        prediction is remembered for labels.
    formats : topic -> input format, over ``kafka.formats``.
    profiles : reference profiles from training data (``streamdrift profile``): a model's
        signals start from them instead of a warm-up.
    """

    def __init__(self, settings: Settings, label_topics: set[str] | None = None,
                 formats: dict[str, str] | None = None, profiles: Profiles | None = None) -> None:
        self.settings = settings
        self.profiles = profiles if profiles is not None else Profiles()
        self.adoptions: dict[str, list[Profile]] = {}    # model -> profiles published since
        self.models: dict[str, ModelMonitor] = {}
        formats = dict(settings.kafka.formats) | (formats or {})
        self.converter = Converter(formats, {m: ms.columns for m, ms in settings.models.items()
                                             if ms.columns},
                                   limits=settings.limits, registry=settings.registry) if any(
            f != "streamdrift" for f in formats.values()) else None
        self.label_topics = label_topics or set()
        self.n_labels = 0
        self.desk = LabelDesk(settings.limits.max_pending_predictions,
                              settings.labels.ttl_s) if self.label_topics else None
        self.performance: dict[str, PerformanceMonitor] = {}
        self.selection: dict[str, SelectionMonitor] = {}
        self.recorder = None                  # set by `replay --report`
        self.rebaselines: dict[tuple[str, str], Rebaseline] = {}    # (model, signal) -> pending
        for req in settings.rebaselines:
            self.request(req)
        self._pieces = True                   # the last batch had few models (see decode)
        self._untyped = 0                     # batches since one was all typed events (see decode)

    # -- state, per model (a checkpoint record holds one model whole)
    def model_state(self, model: str) -> dict[str, Any]:
        """Everything this pipeline keeps about one model (see :mod:`stream.state`)."""
        state: dict[str, Any] = {"monitor": self.models[model].state_dict()}
        if model in self.performance:
            state["performance"] = self.performance[model].state_dict()
        if model in self.selection:
            state["selection"] = self.selection[model].state_dict()
        if self.desk is not None:
            state["store"] = self.desk.store.model_state(model)
            state["clock"] = [self.desk.top, self.desk.now]
        return state

    def trim_store(self, model: str, keep: float) -> tuple[int, int] | None:
        """Keep the newest ``keep`` share (0..1) of the model's predictions waiting for labels
        and of its labeled ids; returns how many of each are left, or None when it holds
        none (nothing to give up)."""
        return None if self.desk is None else self.desk.store.trim(model, keep)

    def load_model_state(self, state: dict[str, Any]) -> str:
        """Restore one model from :meth:`model_state`; returns its name."""
        model = state["monitor"]["model"]
        mon = ModelMonitor(model, self.settings, self.profiles)
        mon.load_state(state["monitor"])
        mon.recorder = self.recorder
        self.models[model] = mon
        if "performance" in state:
            perf = PerformanceMonitor(model, self.settings, self.profiles)
            perf.load_state(state["performance"])
            self.performance[model] = perf
        if "selection" in state:
            self._selection(model).load_state(state["selection"])
        if "store" in state and self.desk is not None:
            self.desk.store.load_model_state(model, state["store"])
            top, now = state["clock"]
            self.desk.top, self.desk.now = max(self.desk.top, top), max(self.desk.now, now)
        return model

    def _admitter(self) -> Callable[[str], bool]:
        """The model-count limit for one batch: models admitted earlier in the same batch
        count, so a batch of many new models cannot pass the limit."""
        admitted: set[str] = set()

        def admit(model: str) -> bool:
            if model in self.models or model in admitted:
                return True
            if len(self.models) + len(admitted) < self.settings.limits.max_models:
                admitted.add(model)
                return True
            return False
        return admit

    def process(self, messages: list[Message]) -> BatchResult:
        """Events first, then the batch's labels (which may join this batch's predictions);
        the garbage collector is paused meanwhile (see :func:`collector_paused`)."""
        with collector_paused():
            return self._process(messages)

    def end_of_input(self, last: Message) -> BatchResult:
        """The input has ended (a replayed file): the events still awaiting their pair in the
        adapters' store go on alone, at the position of ``last`` (the input's last message),
        as events pushed out of a full store go on at the message that pushed them."""
        if self.converter is None:
            return BatchResult()
        docs = self.converter.drain()
        if not docs:
            return BatchResult()
        with collector_paused():
            return self._process([last.with_value(orjson.dumps(d)) for d in docs], convert=False)

    def _process(self, messages: list[Message], convert: bool = True) -> BatchResult:
        labels: list[Message] = []
        arrived = messages                  # the batch as it came: positions index it
        label_pos: list[int] = []
        if self.label_topics:
            topics = self.label_topics
            is_label = list(map(topics.__contains__, map(_TOPIC, messages)))
            if True in is_label:
                label_pos = list(compress(range(len(messages)), is_label))
                labels = list(compress(messages, is_label))
                messages = list(compress(messages, map(not_, is_label)))
        adapter_dead: list[DeadLetter] = []
        origins: dict[int, Message] = {}
        converted = self.converter is not None and convert
        if converted:
            messages, adapter_dead, origins = self.converter.convert_with_origins(messages)
        # a batch of many models is decoded whole; the last batch tells (see decode)
        # a stream whose batches are not all typed events (categorical features, say) tries
        # the typed decode again only every RETRY_TYPED batches: a refused try costs a parse
        batch = decode(messages, self.settings.limits, self._admitter(),
                       pieces=None if self._pieces else False,
                       typed=self._untyped % RETRY_TYPED == 0)
        self._pieces = len(batch.models) <= PIECE_MODELS
        if messages:
            self._untyped = 0 if batch.typed else self._untyped + 1
        decode_dead = batch.dead_letters
        if origins:             # a converted message's dead letter carries what arrived
            decode_dead = [replace(dl, message=origins.get(id(dl.message), dl.message))
                           for dl in decode_dead]
        result = BatchResult(dead_letters=adapter_dead + decode_dead, n_events=batch.n_events,
                             models_touched=set(batch.models))
        kept = self._events(batch.models, result)
        if self.desk is not None:
            # each decoded message's position in the batch as it arrived (labels see only
            # the predictions before them)
            if not converted:           # the events are the batch less its labels, in order
                decoded = np.delete(np.arange(len(arrived), dtype=np.int64), label_pos)
            else:
                pos_of = {id(m): i for i, m in enumerate(arrived)}
                decoded = np.array([pos_of[id(origins.get(id(m), m))] for m in messages], dtype=np.int64)
            kept_pos = [decoded[mb.index] for mb in kept]
            self.desk.events(kept, kept_pos)
            joined: dict[str, ErrorBatch] = {}
            expired: list[Outcome] = []
            if labels:
                joined, expired = self._labels(labels, label_pos, result)
                self._calibrated(kept, kept_pos, result)
            self._outcomes(joined, expired + self.desk.close(), arrived, result)
        result.alerts.sort(key=lambda a: (a["at"]["partition"], a["at"]["offset"], a["model"],
                                          a["signal"], a["detector"]))
        return result

    def publish(self, profile: Profile) -> None:
        """A reference profile published while running: models created later start from it;
        a running model adopts it at its next batch."""
        self.profiles.add(profile)
        if profile.model in self.models:
            self.adoptions.setdefault(profile.model, []).append(profile)

    def request(self, req: Rebaseline) -> None:
        """An operator's re-baseline: applied at the model's next batch (or at its event time
        ``req.at``), once (a model remembers the ids it applied)."""
        self.rebaselines[(req.model, req.signal)] = req

    def _monitor(self, model: str) -> ModelMonitor:
        mon = self.models.get(model)
        if mon is None:
            mon = self.models[model] = ModelMonitor(model, self.settings, self.profiles)
            mon.recorder = self.recorder
            # a new model has no reference to give up: requests for "now" are done already
            mon.applied = [r.id for r in self.rebaselines.values() if r.model == model and r.at != r.at]
        return mon

    def _events(self, batches: dict[str, ModelBatch], result: BatchResult) -> list[ModelBatch]:
        """Monitors and detectors over each model's rows, in rounds: a model's batch is cut
        where a re-baseline applies, the request applied between its parts. Returns the rows
        the monitors kept (the values of each field's established type)."""
        kept: list[ModelBatch] = []
        pieces: dict[str, list[tuple[int, int, list[Action]]]] = {}
        for model, mb in batches.items():
            due: dict[int, list[Action]] = {}
            for profile in self.adoptions.pop(model, []):
                due.setdefault(0, []).append(partial(self._adopt, profile))
            for req in self.rebaselines.values():
                if req.model == model:
                    if req.at != req.at:
                        due.setdefault(0, []).append(partial(self._rebaseline, req))
                    else:
                        later = np.flatnonzero(mb.ts >= req.at)
                        if later.size:
                            due.setdefault(int(later[0]), []).append(partial(self._rebaseline, req))
            if mb.versions is not None:
                current = self.models[model].version if model in self.models else None
                for row, version in _version_changes(mb.versions, current):
                    due.setdefault(row, []).append(partial(self._new_version, version))
            cuts = sorted(set(due) | {0})
            pieces[model] = [(a, b, due.get(a, [])) for a, b in zip(cuts, [*cuts[1:], mb.size], strict=True)]
        for k in range(max((len(p) for p in pieces.values()), default=0)):
            monitors, prepared = [], []
            for model, parts in pieces.items():
                if k >= len(parts):
                    continue
                start, stop, actions = parts[k]
                mb = batches[model] if len(parts) == 1 else batches[model].rows(start, stop)
                mon = self._monitor(model)
                for act in actions:
                    act(mon, mb, result)
                monitors.append(mon)
                prepared.append(mon.prepare(mb))         # (the values of established types)
            inputs = [mon.signals.detector_input(Z) for mon, (*_, Z) in zip(monitors, prepared, strict=True)]
            masks = detect_all([mon.detectors for mon in monitors], inputs)
            for mon, (mb, X, Z), mask in zip(monitors, prepared, masks, strict=True):
                result.suppressed += mon.finish(mb, X, Z, mask, result.alerts)
                kept.append(mb)
        return kept

    def _adopt(self, profile: Profile, mon: ModelMonitor, mb: ModelBatch, result: BatchResult) -> None:
        mon.adopt(profile, mb, 0, result.alerts)

    def _new_version(self, version: str, mon: ModelMonitor, mb: ModelBatch, result: BatchResult) -> None:
        """The model's events carry a new version from the first row of ``mb`` on."""
        first = mon.version is None and not mon.n_signals
        mon.new_version(version, mb, 0, result.alerts)
        perf = self.performance.get(mon.model)
        if perf is not None:
            perf.new_version(version, mb, 0, result.alerts)
        if not first:
            result.versions.append((mon.model, version, float(mb.ts[0])))

    def _rebaseline(self, req: Rebaseline, mon: ModelMonitor, mb: ModelBatch, result: BatchResult) -> None:
        """Apply ``req`` at the first row of ``mb``; it is done for this pipeline."""
        del self.rebaselines[(req.model, req.signal)]
        if mon.rebaseline(req, mb, 0, result.alerts):
            perf = self.performance.get(req.model)
            if perf is not None and req.covers(PerformanceMonitor.SIGNAL):
                perf.rebaseline(mb, 0, result.alerts)

    def _labels(self, messages: list[Message], positions: list[int], result: BatchResult
                ) -> tuple[dict[str, ErrorBatch], list[Outcome]]:
        """Join the batch's labels and feed each model's error stream; returns the joins by
        model and the predictions aged out meanwhile."""
        self.n_labels += len(messages)
        decoded, bad = decode_labels(messages, self.settings.limits)
        joined, unjoined, expired = self.desk.labels(
            decoded, positions if len(decoded) == len(positions) else [positions[i] for i in decoded.index])
        result.dead_letters.extend(sorted(bad + unjoined, key=lambda d: d.message[1:4]))
        result.n_labels_joined = sum(len(eb.errors) for eb in joined.values())
        result.models_touched.update(joined)
        monitors, batches = [], []
        for model, eb in joined.items():
            perf = self.performance.get(model)
            if perf is None:
                if model not in self.models and len(self.models.keys() | self.performance.keys()) \
                        >= self.settings.limits.max_models:
                    # a label bringing its own prediction for a model not tracked yet
                    result.dead_letters.extend(
                        DeadLetter(m, "model_limit", f"model {model!r} is over the limit of "
                                   "tracked models") for m in eb.messages)
                    result.n_labels_joined -= len(eb.errors)
                    result.models_touched.discard(model)
                    continue
                perf = self.performance[model] = PerformanceMonitor(model, self.settings, self.profiles)
                perf.version = self.models[model].version if model in self.models else None
            monitors.append(perf)
            batches.append(eb)
        result.suppressed += PerformanceMonitor.process_all(monitors, batches, result.alerts)
        return joined, expired

    def _calibrated(self, kept: list[ModelBatch], positions: list[np.ndarray], result: BatchResult) -> None:
        """Calibrations fitted from this batch's labels: each model's estimate starts with its
        events after the label that completed it (as smaller batches would have it)."""
        for model, perf in self.performance.items():
            if perf.fitted_at is None or model not in self.models:
                continue
            mon = self.models[model]
            for mb, pos in zip(kept, positions, strict=True):
                if mb.model == model:
                    rows = np.flatnonzero(pos > perf.fitted_at)
                    result.suppressed += mon.calibrated(perf.calibration, mb, rows, result.alerts)
            mon.calibration = perf.calibration

    def _outcomes(self, joined: dict[str, ErrorBatch], expired: list[Outcome], arrived: list[Message],
                  result: BatchResult) -> None:
        """The predictions' fates to each model's labels:selection watch, in arrival order (a
        label's join first, then what ages out at its position); judged every
        ``feedback.label_min_per_band`` outcomes of the model (a fixed count, so that no batch
        boundary changes where)."""
        every = self.settings.feedback.label_min_per_band
        fates: dict[str, tuple[list[int], list[Any], list[bool]]] = {
            model: (eb.positions, eb.predictions, [True] * len(eb.positions)) for model, eb in joined.items()}
        late: dict[str, list[Outcome]] = {}
        for o in expired:
            late.setdefault(o.model, []).append(o)
        for model, outcomes in late.items():
            pos, preds, labeled = fates.get(model, ([], [], []))
            fates[model] = (pos + [o.position for o in outcomes], preds + [o.prediction for o in outcomes],
                            labeled + [False] * len(outcomes))
        for model, (pos, preds, labeled) in fates.items():
            result.models_touched.add(model)
            sel = self._selection(model)
            where = np.asarray(pos, dtype=np.int64)
            seen = np.asarray(labeled, dtype=bool)
            if model in late:       # labels' positions ascend; what aged out goes among them
                order = np.lexsort((~seen, where))
                where, seen, preds = where[order], seen[order], [preds[i] for i in order]

            def at(i: int, where: np.ndarray = where) -> tuple[Message, float]:
                p = max(int(where[i]), 0)
                now = self.desk.clock_at(p + 1)
                return arrived[p], now if now > float("-inf") else arrived[p].timestamp

            result.suppressed += sel.outcomes(preds, seen, every, at, result.alerts)

    def _selection(self, model: str) -> SelectionMonitor:
        sel = self.selection.get(model)
        if sel is None:
            sel = self.selection[model] = SelectionMonitor(model, self.settings.feedback,
                                                           self.settings.detect.cooldown_s)
        return sel

    @property
    def n_detectors(self) -> int:
        return sum(m.n_signals * len(m.detectors) for m in self.models.values())
