"""The pure core shared by `run` and `replay`: messages -> detections -> alerts.

No Kafka here. ``Pipeline.process(messages)`` decodes a batch, updates every model's
detectors on whole (rows x signals) arrays and returns the alerts and dead letters of the
batch. Same input in the same order gives the same output, byte for byte.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import orjson

from detectors import ADWIN, PageHinkley

from .config import Settings
from .ingest.adapters import Converter
from .ingest.rows import PIECE_MODELS, DeadLetter, Message, ModelBatch, decode
from .monitor.alerts import make_alert
from .monitor.feedback import ENTROPY_SIGNAL, SELECTION_SIGNAL, ConcentrationWatch, SelectionWatch
from .monitor.labels import ErrorBatch, PredictionStore, join_labels
from .monitor.lifecycle import Lifecycle
from .monitor.signals import SignalRegistry


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (if it runs) for the block; restore it after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass
class BatchResult:
    alerts: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    n_events: int = 0
    n_labels_joined: int = 0
    models_touched: set[str] = field(default_factory=set)   # models whose state changed
    suppressed: int = 0                   # detections inside an open episode or a cooldown


def apply_lifecycle(life: Lifecycle, hits: list[tuple[int, int, str]], ts: np.ndarray,
                    result: BatchResult, alert) -> None:
    """Turn detections (row, column, detector) into firing/resolved alerts of a batch.

    ``alert(row, column, detector, status)`` builds an alert dict at a batch row.
    """
    hits.sort()
    for row, j, name in hits:
        t = float(ts[row])
        r = life.resolve_row(j, ts, upto=row + 1)
        if r is not None:                       # it had been quiet long enough before this
            result.alerts.append(_resolved(life, j, alert(r, j, life.open[j].detector, "resolved")))
        if j in life.open:
            life.extend(j, t)
            result.suppressed += 1
        elif life.may_fire(j, t):
            fired = alert(row, j, name, "firing")
            life.fire(j, t, fired["alert_id"], name)
            result.alerts.append(fired)
        else:
            result.suppressed += 1
    for j in list(life.open):
        r = life.resolve_row(j, ts)
        if r is not None:
            result.alerts.append(_resolved(life, j, alert(r, j, life.open[j].detector, "resolved")))


def advance_clock(now: float, batch_times: list[np.ndarray]) -> float:
    """The prediction store's clock after a batch: the second largest of the batch's event
    times and ``now``. One event with a skewed clock (a year ahead) then cannot move it and
    expire every prediction waiting for its label; it lags the newest event by one event."""
    times = np.concatenate([*batch_times, [now]])
    if times.size < 2:
        return now
    return max(now, float(np.partition(times, times.size - 2)[times.size - 2]))


def _resolved(life: Lifecycle, j: int, alert: dict) -> dict:
    ep = life.close(j)
    alert["stats"].update({"episode_alert_id": ep.alert_id, "fired_ts": ep.fired_ts,
                           "last_detection_ts": ep.last_detection_ts, "detections": ep.detections})
    return alert


def _adwin(d) -> ADWIN:
    return ADWIN(0, delta=d.adwin_delta, clock=d.adwin_clock, max_buckets=d.adwin_max_buckets,
                 min_window_length=d.adwin_min_window_length, grace_period=d.adwin_grace_period)


def _detect(prepared: list[tuple[ModelMonitor, ModelBatch, np.ndarray, np.ndarray]]
            ) -> list[dict[str, np.ndarray]]:
    """Every model's detector masks for its z-scores Z. Each kind of detector advances for
    all models at once (update_many: numpy's cost per call is then paid once a group of
    columns, not once a model, which dominated batches of many models)."""
    masks: list[dict[str, np.ndarray]] = [{} for _ in prepared]
    # a model whose z-scores are all missing (its signals still in warm-up) changes no
    # detector (missing values are skipped): its masks are all False without a call
    silent = [Z.size == 0 or bool(np.isnan(Z[-1]).all() and np.isnan(Z).all())   # (last row:
              for *_, Z in prepared]                                            # a cheap no)
    for i, (mon, *_, Z) in enumerate(prepared):
        if silent[i]:
            masks[i] = {name: np.zeros(Z.shape, dtype=bool) for name in mon.detectors}
    for name, cls in (("adwin", ADWIN), ("page_hinkley", PageHinkley)):
        which = [i for i, (mon, *_) in enumerate(prepared) if name in mon.detectors and not silent[i]]
        together = cls.update_many([prepared[i][0].detectors[name] for i in which],
                                   [prepared[i][3] for i in which])
        for i, mask in zip(which, together, strict=True):
            masks[i][name] = mask
    return masks


class ModelMonitor:
    """Signals and detectors of one model."""

    def __init__(self, model: str, settings: Settings) -> None:
        d = settings.detect
        self.model = model
        self.settings = settings
        model_settings = settings.models.get(model)
        self.signals = SignalRegistry(settings.limits.max_signals_per_model, d.warmup, d.clip_z,
                                      season=model_settings.seasonality if model_settings else None)
        self.detectors: dict[str, ADWIN | PageHinkley] = {}
        if "adwin" in d.detectors:
            self.detectors["adwin"] = _adwin(d)
        if "page_hinkley" in d.detectors:
            self.detectors["page_hinkley"] = PageHinkley(0, min_instances=d.ph_min_instances,
                                                         delta=d.ph_delta, threshold=d.ph_threshold,
                                                         alpha=d.ph_alpha, exact=d.ph_exact)
        self.lifecycle = Lifecycle(d.resolve_after_s, d.cooldown_s)
        self.concentration = ConcentrationWatch(d.feedback_window, d.feedback_warmup,
                                                d.feedback_ph_threshold, d.feedback_ph_delta)
        self.feedback_life = Lifecycle(d.feedback_resolve_after_s, d.cooldown_s)
        self.recorder = None                  # a report.ReportRecorder during a backtest

    @property
    def n_signals(self) -> int:
        return self.signals.size

    def prepare(self, batch: ModelBatch) -> tuple[np.ndarray, np.ndarray]:
        """The batch's raw signal matrix X and its z-scores Z (the detectors' input), both
        (rows, signals); the detectors grow with new signals. Then the detectors update on Z
        (for all models at once, see _detect) and :meth:`finish` turns their masks into alerts."""
        X, grown = self.signals.matrix(batch)
        if grown:
            for det in self.detectors.values():
                det.add_features(grown)
            d = self.settings.detect
            if d.bonferroni and "adwin" in self.detectors:
                # many signals multiply false alarms: share the model's delta among them
                self.detectors["adwin"].set_delta(d.adwin_delta / max(1, self.n_signals))
        return X, self.signals.standardize(X, batch.ts)

    def finish(self, batch: ModelBatch, X: np.ndarray, masks: dict[str, np.ndarray],
               result: BatchResult) -> None:
        """Alerts from the detectors' masks (by detector name, as self.detectors), then the
        signals' recent values and the feedback watch."""
        hits: list[tuple[int, int, str]] = []
        for name in self.detectors:
            mask = masks[name]
            if mask.any():
                rows, cols = np.nonzero(mask)
                hits.extend(zip(rows.tolist(), cols.tolist(), [name] * rows.size, strict=True))
        apply_lifecycle(self.lifecycle, hits, batch.ts, result,
                        lambda row, j, name, status: self._alert(batch, X, row, j, name, status))
        self.signals.remember(X)
        if self.recorder is not None:
            self.recorder.record(self, batch.ts, X)
        flagged = self.concentration.update(batch)
        if flagged or self.feedback_life.open:
            z_at = {row: (h, z, n) for row, h, z, n in flagged}
            last = (self.concentration.series[-1] if self.concentration.series else float("nan"),
                    float("nan"), len(self.concentration.series))
            apply_lifecycle(self.feedback_life, [(row, 0, "page_hinkley") for row in z_at], batch.ts,
                            result, lambda row, j, name, status: self._entropy_alert(
                                batch, row, name, status, *z_at.get(row, last)))

    def _entropy_alert(self, batch: ModelBatch, row: int, detector: str, status: str, h: float,
                       z: float, windows: int) -> dict:
        watch = self.concentration
        stats = {"entropy": h, "entropy_before": watch.ref_mean,
                 "effect_size": round(z, 6) if z == z else 0.0,
                 "segments": len(watch.segment_index), "windows": windows}
        return make_alert(model=self.model, signal=ENTROPY_SIGNAL, detector=detector,
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                          stats=stats, status=status)

    def _alert(self, batch: ModelBatch, X: np.ndarray, row: int, j: int, detector: str,
               status: str) -> dict:
        reg = self.signals
        signal = reg.names[j]
        mean_after, n_after = reg.recent_mean(X, row, j)
        sd = float(reg.sd[j])
        effect = (mean_after - float(reg.mean[j])) / sd if sd > 0 else 0.0
        stats = {"mean_before": float(reg.mean[j]), "sd_before": sd, "n_before": int(reg.n[j]),
                 "mean_after": mean_after, "n_after": n_after, "effect_size": round(effect, 6)}
        return make_alert(model=self.model, signal=signal, detector=detector,
                          ts=float(batch.ts[row]), topic=batch.topic[row],
                          partition=int(batch.partition[row]), offset=int(batch.offset[row]),
                          stats=stats, status=status)


class PerformanceMonitor:
    """A model's error stream (joined labels), watched by ADWIN: performance_drift alerts."""

    SIGNAL = "error"

    def __init__(self, model: str, settings: Settings) -> None:
        d = settings.detect
        self.model = model
        self.signals = SignalRegistry(1, d.label_warmup, d.clip_z)
        self.signals.ensure([self.SIGNAL])
        self.adwin = _adwin(d)
        self.adwin.add_features(1)
        self.lifecycle = Lifecycle(d.resolve_after_s, d.cooldown_s)
        self.binary = True
        self.n_labels = 0

    @property
    def error_level(self) -> float:
        """Mean error of the recent labels (error rate for 0/1 errors), NaN before any."""
        ring = self.signals.recent[:, 0]
        ring = ring[~np.isnan(ring)]
        return float(ring.mean()) if ring.size else float("nan")

    def process(self, eb: ErrorBatch, result: BatchResult) -> None:
        X = np.asarray(eb.errors, dtype=np.float64)[:, None]
        ts = np.asarray(eb.ts, dtype=np.float64)
        self.binary = all(eb.binary)
        self.n_labels += X.shape[0]
        mask = self.adwin.update(self.signals.standardize(X))
        hits = [(int(r), 0, "adwin") for r in np.flatnonzero(mask[:, 0])]
        apply_lifecycle(self.lifecycle, hits, ts, result,
                        lambda row, j, name, status: self._alert(eb, X, row, name, status))
        self.signals.remember(X)

    def _alert(self, eb: ErrorBatch, X: np.ndarray, row: int, detector: str, status: str) -> dict:
        reg = self.signals
        before = float(reg.mean[0])
        after, n_after = reg.recent_mean(X, row, 0)
        sd = float(reg.sd[0])
        if self.binary:
            stats = {"accuracy_before": 1.0 - before, "accuracy_after": 1.0 - after}
        else:
            stats = {"mae_before": before, "mae_after": after}
        stats.update({"n_before": int(reg.n[0]), "n_after": n_after,
                      "effect_size": round((after - before) / sd, 6) if sd > 0 else 0.0,
                      "prediction_ts": eb.prediction_ts[row],
                      "label_delay_s": eb.ts[row] - eb.prediction_ts[row]})
        msg = eb.messages[row]
        return make_alert(model=self.model, signal=self.SIGNAL, detector=detector, ts=eb.ts[row],
                          topic=msg.topic, partition=msg.partition, offset=msg.offset, stats=stats,
                          status=status)


class Pipeline:
    """All models' monitors; decode + detect + alert for one batch of messages at a time."""

    def __init__(self, settings: Settings, label_topics: set[str] | None = None,
                 formats: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.models: dict[str, ModelMonitor] = {}
        formats = dict(settings.kafka.formats) | (formats or {})
        self.converter = Converter(formats, {m: ms.columns for m, ms in settings.models.items()
                                             if ms.columns},
                                   limits=settings.limits) if any(
            f != "streamdrift" for f in formats.values()) else None
        # Label messages are recognised by their topic; predictions are remembered for them
        # only when there is a label source.
        self.label_topics = label_topics or set()
        self.n_labels = 0
        self.store = PredictionStore(settings.limits.max_pending_predictions,
                                     settings.detect.label_ttl_s) if self.label_topics else None
        self.performance: dict[str, PerformanceMonitor] = {}
        self.selection: dict[str, tuple[SelectionWatch, Lifecycle]] = {}
        self._now_ts = float("-inf")
        self.recorder = None                  # set by `replay --report`
        self._pieces = True                   # the last batch had few models (see decode)

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
        """Events first, then the batch's labels (which may join this batch's predictions).

        Python's cyclic garbage collector is paused during the batch: decoding allocates
        thousands of containers (the parsed events, acyclic, freed by reference counting when
        the batch is done) that it would otherwise scan again and again as they survive its
        young generations (parsing a batch took ~1.8x as long with it running).
        """
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
            return self._process([Message(orjson.dumps(d), *last[1:]) for d in docs], convert=False)

    def _process(self, messages: list[Message], convert: bool = True) -> BatchResult:
        labels: list[Message] = []
        if self.label_topics:
            labels = [m for m in messages if m.topic in self.label_topics]
            if labels:
                messages = [m for m in messages if m.topic not in self.label_topics]
        adapter_dead: list[DeadLetter] = []
        origins: dict[int, Message] = {}
        if self.converter is not None and convert:
            messages, adapter_dead, origins = self.converter.convert_with_origins(messages)
        # a batch of many models is decoded whole; the last batch tells (see decode)
        batch = decode(messages, self.settings.limits, self._admitter(),
                       pieces=None if self._pieces else False)
        self._pieces = len(batch.models) <= PIECE_MODELS
        decode_dead = batch.dead_letters
        if origins:             # a converted message's dead letter carries what arrived
            decode_dead = [replace(dl, message=origins.get(id(dl.message), dl.message))
                           for dl in decode_dead]
        result = BatchResult(dead_letters=adapter_dead + decode_dead, n_events=batch.n_events,
                             models_touched=set(batch.models))
        prepared = []
        for model, mb in batch.models.items():
            mon = self.models.get(model)
            if mon is None:
                mon = self.models[model] = ModelMonitor(model, self.settings)
                mon.recorder = self.recorder
            prepared.append((mon, mb, *mon.prepare(mb)))
        for (mon, mb, X, _), masks in zip(prepared, _detect(prepared), strict=True):
            mon.finish(mb, X, masks, result)
            if self.store is not None:
                self.store.add(mb)
        if self.store is not None:
            if batch.models:
                self._now_ts = advance_clock(self._now_ts, [mb.ts for mb in batch.models.values()])
            for model, pred in self.store.expire(self._now_ts):
                self._selection(model)[0].outcome(pred, labeled=False)
                result.models_touched.add(model)
        if labels:
            self.n_labels += len(labels)
            joined, dead = join_labels(labels, self.store, self.settings.limits)
            result.dead_letters.extend(dead)
            result.n_labels_joined = sum(len(eb.errors) for eb in joined.values())
            result.models_touched.update(joined)
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
                    perf = self.performance[model] = PerformanceMonitor(model, self.settings)
                perf.process(eb, result)
                watch = self._selection(model)[0]
                for pred in eb.predictions:
                    watch.outcome(pred, labeled=True)
        if self.selection and (messages or labels):
            self._selection_alerts((labels or messages)[-1], result)
        result.alerts.sort(key=lambda a: (a["at"]["partition"], a["at"]["offset"], a["model"],
                                          a["signal"], a["detector"]))
        return result

    def _selection(self, model: str) -> tuple[SelectionWatch, Lifecycle]:
        sel = self.selection.get(model)
        if sel is None:
            d = self.settings.detect
            sel = self.selection[model] = (SelectionWatch(d.label_bands, d.label_min_per_band,
                                                          d.label_gap),
                                           Lifecycle(d.feedback_resolve_after_s, d.cooldown_s))
        return sel

    def _selection_alerts(self, at: Message, result: BatchResult) -> None:
        """feedback_loop while labels arrive selectively by score band (checked once a batch).

        A state, not an event: the episode stays open while the bands differ and resolves
        once they have not for the feedback resolve span.
        """
        now = self._now_ts if self._now_ts > float("-inf") else at.timestamp
        for model, (watch, life) in self.selection.items():
            flagged = watch.flagged() is not None
            if flagged and 0 in life.open:
                life.extend(0, now)
                result.suppressed += 1
            elif flagged and life.may_fire(0, now):
                alert = self._selection_alert(model, watch, at, now, "firing")
                life.fire(0, now, alert["alert_id"], "label_rate_gap")
                result.alerts.append(alert)
            elif not flagged and life.resolve_row(0, np.array([now])) is not None:
                result.alerts.append(_resolved(life, 0, self._selection_alert(model, watch, at, now,
                                                                             "resolved")))

    @staticmethod
    def _selection_alert(model: str, watch: SelectionWatch, at: Message, now: float, status: str) -> dict:
        rates = watch.rates()
        known = rates[~np.isnan(rates)]
        stats = {"labeled_share_by_band": [None if r != r else round(float(r), 6) for r in rates],
                 "labeled_share_min": float(known.min()) if known.size else None,
                 "labeled_share_max": float(known.max()) if known.size else None,
                 "bands": watch.bands}
        return make_alert(model=model, signal=SELECTION_SIGNAL, detector="label_rate_gap", ts=now,
                          topic=at.topic, partition=at.partition, offset=at.offset, stats=stats,
                          status=status)

    @property
    def n_detectors(self) -> int:
        return sum(m.n_signals * len(m.detectors) for m in self.models.values())
