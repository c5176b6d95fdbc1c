"""Settings: TOML file + STREAMDRIFT_* environment variables + CLI flags -> frozen dataclasses.

Every key is optional. Settings are grouped by concern, one table each (``[kafka]``,
``[detect]`` with ``[detect.adwin]`` and ``[detect.page_hinkley]``, ``[labels]``,
``[feedback]``, ``[limits]``, ``[metrics]``, ``[models.<name>]``). Unknown keys and bad values
stop the start with a :class:`~stream.errors.ConfigError` whose message names the key (e.g.
``detect.adwin.delta``). Environment variables name a key with double underscores between its
parts, e.g. ``STREAMDRIFT_KAFKA__BOOTSTRAP=broker:9092``, ``STREAMDRIFT_DETECT__ADWIN__DELTA=1e-5``.
The ``[kafka.client]`` table passes through to librdkafka unchanged (security.protocol, sasl.*,
ssl.*, ...).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError
from .types import MODEL_RE, Rebaseline, event_time

Guarantee = Literal["at-least-once", "exactly-once"]
DetectorName = Literal["adwin", "page_hinkley"]
Format = Literal["streamdrift", "kserve", "oip", "seldon", "avro", "protobuf"]


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    group_id: str = "streamdrift"
    events_topics: tuple[str, ...] = ("events",)
    labels_topic: str = ""
    alerts_topic: str = "alerts"
    dead_letter_topic: str = "streamdrift-dead-letters"
    guarantee: Guarantee = "at-least-once"
    changelog_topic: str = ""           # compacted state topic; default "<group_id>-changelog"
    control_topic: str = ""             # compacted operator requests; default "<group_id>-control"
    references_topic: str = ""          # compacted reference profiles; default "<group_id>-references"
    checkpoint_interval_s: float = 5.0  # state + offsets commit period; see EXACTLY_ONCE_CHECKPOINT_S
    instance_id: str = ""               # stable per instance; default host name + pid
    create_topics: bool = True          # create missing events/labels topics (else: stop, saying so)
    partitions: int = 3                 # partitions of the events/labels topics it creates
    batch_size: int = 5000              # messages per consumed batch, at least ...
    max_batch_size: int = 50_000        # ... grown to ~200 events a model up to this
    poll_timeout_s: float = 0.1         # longest wait for a batch to fill
    shutdown_timeout_s: float = 20.0    # longest wait at a stop for the last commit and the leave
    client: Mapping[str, str] = field(default_factory=dict)   # librdkafka pass-through
    formats: Mapping[str, Format] = field(default_factory=dict)  # topic -> adapter format


@dataclass(frozen=True)
class AdwinSettings:
    """ADWIN on standardized signals (river's parameter names)."""
    delta: float = 1e-4
    bonferroni: bool = True             # each signal's delta = delta / signals of its model
    clock: int = 32
    max_buckets: int = 5
    min_window_length: int = 5
    grace_period: int = 10


@dataclass(frozen=True)
class PageHinkleySettings:
    """Page-Hinkley on standardized signals, in standard deviations of the signal. river's
    fading (alpha < 1) makes the statistic stationary with a spread of ~70 sd, so any threshold
    near 50 alarms on pure noise: the service uses the undamped CUSUM form (alpha = 1)."""
    min_instances: int = 30
    delta: float = 0.25
    threshold: float = 50.0
    alpha: float = 1.0
    exact: bool = False                 # False: closed-form sums (fast); True: river's rounding


@dataclass(frozen=True)
class DetectSettings:
    detectors: tuple[DetectorName, ...] = ("adwin", "page_hinkley")
    warmup: int = 1000                  # values per signal that set its reference mean / sd
    clip_z: float = 5.0                 # standardized values are clipped to +-clip_z
    cooldown_s: float = 600.0           # event-time seconds between two firings of one signal
    # a signal is drifted while the values since its last change point (a detection) differ
    # from its reference by >= min_effect reference sd, significance standard errors away;
    # it is back once they are within min_effect with confidence standard errors of margin
    min_effect: float = 0.25
    significance: float = 4.0
    confidence: float = 2.0
    min_values: int = 100               # values after a change point before any decision
    adwin: AdwinSettings = field(default_factory=AdwinSettings)
    page_hinkley: PageHinkleySettings = field(default_factory=PageHinkleySettings)


@dataclass(frozen=True)
class LabelSettings:
    ttl_s: float = 35 * 86400.0         # predictions wait this long (event time) for a label
    warmup: int = 500                   # joined labels that set the error reference


@dataclass(frozen=True)
class FeedbackSettings:
    window: int = 200                   # events with a segment per entropy window
    warmup: int = 10                    # windows that set the entropy reference
    ph_threshold: float = 20.0          # PH (down) on the standardized entropy series
    ph_delta: float = 0.25
    resolve_after_s: float = 7 * 86400.0   # feedback loops are slow: a quiet week -> resolved
    label_bands: int = 5                # score bands for the labeled share
    label_min_per_band: int = 50        # predictions with an outcome before a band counts
    label_gap: float = 0.5              # labeled shares differing more than this: feedback_loop


@dataclass(frozen=True)
class QualitySettings:
    """Data-quality checks (stream.monitor.quality), each on by default."""
    enabled: bool = True
    missing: bool = True                # null or absent more often than the feature's reference
    type: bool = True                   # values of the other type than the feature's
    stuck: bool = True                  # the same value again and again
    spread: bool = True                 # changes from value to value larger or smaller than usual
    new_feature: bool = True            # a feature first seen after the model's warm-up (info)
    block: int = 100                    # values per block of a check's change points (at least)


@dataclass(frozen=True)
class ModelQualitySettings:
    """[models.<name>.quality]: checks switched off for one model."""
    missing: bool = True
    type: bool = True
    stuck: bool = True
    spread: bool = True
    new_feature: bool = True


@dataclass(frozen=True)
class MultivariateSettings:
    """The reconstruction error of a PCA of the numeric features (stream.monitor.multivariate)."""
    enabled: bool = True
    variance: float = 0.65              # share of the reference's variance the components keep


@dataclass(frozen=True)
class EstimateSettings:
    """Accuracy estimated from calibrated scores before labels arrive (stream.monitor.estimate)."""
    enabled: bool = True


@dataclass(frozen=True)
class RegistrySettings:
    """A Confluent-compatible Schema Registry for topics of format avro or protobuf
    (stream.ingest.avro, stream.ingest.protobuf), and how a decoded record maps to an event."""
    url: str = ""                       # e.g. http://registry:8081 (Confluent, Apicurio's ccompat API)
    timeout_s: float = 5.0              # per request; an unreachable registry stops the service
    model: str = ""                     # the model of records without a model field
    model_field: str = "model"
    id_field: str = "id"
    ts_field: str = "ts"                # epoch seconds, epoch milliseconds (timestamp-millis), RFC 3339
    features_field: str = "features"    # a map or record of features; absent: the other fields are
    prediction_field: str = "prediction"


WebhookFormat = Literal["alert", "alertmanager"]


@dataclass(frozen=True)
class WebhookSettings:
    """POST each published alert to a URL (stream.sinks.webhook); off while ``url`` is empty."""
    url: str = ""
    format: WebhookFormat = "alert"     # the alert as on the topic, or Alertmanager's webhook payload
    timeout_s: float = 5.0              # per request
    retries: int = 5                    # after the first attempt (5xx, 429, no connection, timeout)
    backoff_s: float = 0.5              # before the first retry, doubling up to max_backoff_s
    max_backoff_s: float = 30.0
    queue: int = 10_000                 # alerts waiting; when full, the oldest is dropped (counted)
    drain_s: float = 5.0                # at shutdown, how long the queue may still be sent
    headers: Mapping[str, str] = field(default_factory=dict)   # e.g. Authorization


@dataclass(frozen=True)
class SinkSettings:
    webhook: WebhookSettings = field(default_factory=WebhookSettings)


@dataclass(frozen=True)
class LimitSettings:
    max_message_bytes: int = 1_000_000
    max_events_per_message: int = 10_000
    max_features_per_event: int = 1_000
    max_name_length: int = 128
    max_models: int = 1_000
    max_signals_per_model: int = 2_000
    max_pending_predictions: int = 1_000_000   # predictions waiting for labels, all models


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = True
    address: str = "127.0.0.1"
    port: int = 9108
    max_model_labels: int = 50          # models beyond this share the label "__other__"


@dataclass(frozen=True)
class SeasonalitySettings:
    period_s: float                     # "period" in the file: seconds or "1d", "12h", "1w", ...
    bins: int = 24                      # phase bins per period
    features: tuple[str, ...] = ()      # seasonal features ("prediction": the score); empty = all
    min_per_bin: int = 30               # values per segment before residuals are scored
    periods: int = 3                    # whole periods the profile learns from, at least

    def covers(self, name: str) -> bool:
        """Whether feature ``name`` (or the score, "prediction") follows the cycle."""
        return not self.features or name in self.features


@dataclass(frozen=True)
class ModelSettings:
    seasonality: SeasonalitySettings | None = None
    columns: tuple[str, ...] = ()       # feature names of a single 2-D input tensor (adapters)
    quality: ModelQualitySettings | None = None


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    labels: LabelSettings = field(default_factory=LabelSettings)
    quality: QualitySettings = field(default_factory=QualitySettings)
    multivariate: MultivariateSettings = field(default_factory=MultivariateSettings)
    estimate: EstimateSettings = field(default_factory=EstimateSettings)
    feedback: FeedbackSettings = field(default_factory=FeedbackSettings)
    sinks: SinkSettings = field(default_factory=SinkSettings)
    registry: RegistrySettings = field(default_factory=RegistrySettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    models: Mapping[str, ModelSettings] = field(default_factory=dict)   # per-model settings
    rebaselines: tuple[Rebaseline, ...] = ()      # [[rebaseline]]: accept new references


# the tables of the file and their classes (models are read on their own, see _models)
SECTIONS: dict[str, type] = {f.name: f.default_factory().__class__ for f in fields(Settings)
                             if f.name not in ("models", "rebaselines")}
# kafka.checkpoint_interval_s when not set: at-least-once 5 s (the field's default, as Kafka
# consumers' auto-commit: alerts are produced at once whatever it is, it bounds what a crash
# replays); exactly-once 0.5 s, since its alerts become visible only when it commits
EXACTLY_ONCE_CHECKPOINT_S = 0.5
DURATION_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """Seconds from a number or a string like "90s", "15m", "1h", "1d", "1w" (or "1.5d")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and value[-1:] in DURATION_UNITS:
        try:
            seconds = float(value[:-1]) * DURATION_UNITS[value[-1]]
        except ValueError:
            seconds = float("nan")
    else:
        raise ValueError(f"expected a duration like '1d', '12h', '30m' or seconds, got {value!r}")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"a duration must be > 0, got {value!r}")
    return seconds


def _literal_options(cls: type, name: str) -> tuple[str, ...] | None:
    """The allowed values of a field typed Literal[...] (or a tuple/mapping of them), or None."""
    hint = typing.get_type_hints(cls)[name]
    while typing.get_origin(hint) in (tuple, Mapping, dict):
        hint = typing.get_args(hint)[-1 if typing.get_origin(hint) is not tuple else 0]
    return typing.get_args(hint) if typing.get_origin(hint) is Literal else None


def _coerce(key: str, default: Any, value: Any, from_text: bool) -> Any:
    """Convert `value` to the type of `default`, or raise ConfigError naming `key`."""
    try:
        if isinstance(default, bool):
            if from_text and isinstance(value, str) and value.lower() in ("1", "true", "yes", "on",
                                                                           "0", "false", "no", "off"):
                return value.lower() in ("1", "true", "yes", "on")
            if isinstance(value, bool):
                return value
        elif isinstance(default, int):
            if from_text and isinstance(value, str):
                return int(value.replace("_", ""))
            if isinstance(value, int) and not isinstance(value, bool):
                return value
        elif isinstance(default, float):
            if from_text and isinstance(value, str):
                return float(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        elif isinstance(default, str):
            if isinstance(value, str):
                return value
        elif isinstance(default, tuple):
            if from_text and isinstance(value, str):
                return tuple(v.strip() for v in value.split(",") if v.strip())
            if isinstance(value, str):
                return (value,)
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return tuple(value)
        elif isinstance(default, Mapping):
            if isinstance(value, Mapping):
                return {str(k): str(v) if not isinstance(v, bool) else str(v).lower()
                        for k, v in value.items()}
    except ValueError:
        pass
    raise ConfigError(f"{key}: expected {type(default).__name__}, got {value!r}")


def _merge(key: str, base: Any, values: Any, from_text: bool, source: str) -> Any:
    """``base`` (a settings dataclass) with ``values`` (a table) merged in, recursively."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{key}: must be a table")
    known = {f.name: f for f in fields(base)}
    changes = {}
    for name, value in values.items():
        sub = f"{key}.{name}"
        if name not in known:
            raise ConfigError(f"{sub}: unknown key (in {source}; known keys: {', '.join(sorted(known))})")
        current = getattr(base, name)
        if dataclasses.is_dataclass(current):
            changes[name] = _merge(sub, current, value, from_text, source)
            continue
        new = _coerce(sub, current, value, from_text)
        options = _literal_options(type(base), name)
        if options is not None:
            named = [(f"{sub}.{k}", v) for k, v in new.items()] if isinstance(new, Mapping) \
                else [(sub, v) for v in (new if isinstance(new, tuple) else (new,))]
            for where, v in named:
                if v not in options:
                    raise ConfigError(f"{where}: {v!r} is not one of {', '.join(map(repr, options))}")
        changes[name] = new
    return replace(base, **changes)


def _validate(s: Settings) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {what}")

    k, d, lab, fb, lim, m = s.kafka, s.detect, s.labels, s.feedback, s.limits, s.metrics
    need(bool(k.bootstrap.strip()), "kafka.bootstrap", "must not be empty")
    need(bool(k.group_id.strip()), "kafka.group_id", "must not be empty")
    need(len(k.events_topics) > 0, "kafka.events_topics", "needs at least one topic")
    need(bool(k.alerts_topic), "kafka.alerts_topic", "must not be empty")
    need(bool(k.dead_letter_topic), "kafka.dead_letter_topic", "must not be empty")
    need(k.batch_size >= 1, "kafka.batch_size", "must be >= 1")
    need(k.max_batch_size >= 1, "kafka.max_batch_size", "must be >= 1")
    need(k.partitions >= 1, "kafka.partitions", "must be >= 1")
    need(k.checkpoint_interval_s > 0, "kafka.checkpoint_interval_s", "must be > 0")
    need(k.poll_timeout_s > 0, "kafka.poll_timeout_s", "must be > 0")
    need(k.shutdown_timeout_s > 0, "kafka.shutdown_timeout_s", "must be > 0")
    _check_client(k)
    for topic, fmt in k.formats.items():
        if fmt in ("avro", "protobuf"):
            need(s.registry.url.startswith(("http://", "https://")), f"kafka.formats.{topic}",
                 f"format {fmt} needs registry.url (a Confluent-compatible Schema Registry)")
            modules = ("fastavro",) if fmt == "avro" else ("google.protobuf", "grpc_tools")
            need(all(importlib.util.find_spec(m) is not None for m in modules), f"kafka.formats.{topic}",
                 f"format {fmt} needs {' and '.join(modules)}: pip install 'streamdrift[{fmt}]'")
        if fmt == "seldon":
            parts = topic.split(".")
            need(len(parts) >= 5 and parts[-3] == "model" and parts[-1] in ("inputs", "outputs"),
                 f"kafka.formats.{topic}", "a seldon topic is named <prefix>.<namespace>.model.<name>.inputs "
                 "or .outputs")
            if parts[-1] == "outputs":
                inputs = topic[: -len("outputs")] + "inputs"
                need(inputs in k.events_topics and k.formats.get(inputs) == "seldon",
                     f"kafka.formats.{topic}", f"its requests' topic {inputs} must be an events "
                     "topic of format seldon too (a response is paired with its request)")
    need(len(d.detectors) > 0, "detect.detectors", "needs at least one detector")
    need(d.warmup >= 2, "detect.warmup", "must be >= 2")
    need(d.clip_z > 0, "detect.clip_z", "must be > 0")
    need(d.cooldown_s >= 0, "detect.cooldown_s", "must be >= 0")
    need(d.min_effect > 0, "detect.min_effect", "must be > 0")
    need(d.significance > 0, "detect.significance", "must be > 0")
    need(d.confidence >= 0, "detect.confidence", "must be >= 0")
    need(d.min_values >= 2, "detect.min_values", "must be >= 2")
    a, p = d.adwin, d.page_hinkley
    need(0 < a.delta < 1, "detect.adwin.delta", "must be in (0, 1)")
    need(a.clock >= 1, "detect.adwin.clock", "must be >= 1")
    need(a.max_buckets >= 2, "detect.adwin.max_buckets", "must be >= 2")
    need(a.min_window_length >= 1, "detect.adwin.min_window_length", "must be >= 1")
    need(a.grace_period >= 0, "detect.adwin.grace_period", "must be >= 0")
    need(p.min_instances >= 1, "detect.page_hinkley.min_instances", "must be >= 1")
    need(p.delta >= 0, "detect.page_hinkley.delta", "must be >= 0")
    need(p.threshold > 0, "detect.page_hinkley.threshold", "must be > 0")
    need(0 < p.alpha <= 1, "detect.page_hinkley.alpha", "must be in (0, 1]")
    need(lab.ttl_s > 0, "labels.ttl_s", "must be > 0")
    need(lab.warmup >= 2, "labels.warmup", "must be >= 2")
    need(s.quality.block >= 10, "quality.block", "must be >= 10")
    need(0 < s.multivariate.variance < 1, "multivariate.variance", "must be in (0, 1)")
    w = s.sinks.webhook
    need(not w.url or w.url.startswith(("http://", "https://")), "sinks.webhook.url",
         "must be an http:// or https:// URL (or empty: no webhook)")
    need(w.timeout_s > 0, "sinks.webhook.timeout_s", "must be > 0")
    need(w.retries >= 0, "sinks.webhook.retries", "must be >= 0")
    need(0 < w.backoff_s <= w.max_backoff_s, "sinks.webhook.backoff_s", "must be > 0 and <= max_backoff_s")
    need(w.queue >= 1, "sinks.webhook.queue", "must be >= 1")
    need(w.drain_s >= 0, "sinks.webhook.drain_s", "must be >= 0")
    need(fb.window >= 2, "feedback.window", "must be >= 2")
    need(fb.resolve_after_s > 0, "feedback.resolve_after_s", "must be > 0")
    need(fb.warmup >= 2, "feedback.warmup", "must be >= 2")
    need(fb.ph_threshold > 0, "feedback.ph_threshold", "must be > 0")
    need(fb.ph_delta >= 0, "feedback.ph_delta", "must be >= 0")
    need(fb.label_bands >= 2, "feedback.label_bands", "must be >= 2")
    need(fb.label_min_per_band >= 1, "feedback.label_min_per_band", "must be >= 1")
    need(0 < fb.label_gap < 1, "feedback.label_gap", "must be in (0, 1)")
    for f in fields(LimitSettings):
        need(getattr(lim, f.name) >= 1, f"limits.{f.name}", "must be >= 1")
    need(0 <= m.port <= 65535, "metrics.port", "must be a TCP port (0..65535)")
    need(m.max_model_labels >= 1, "metrics.max_model_labels", "must be >= 1")


# [kafka.client] keys the service sets itself: what the delivery guarantee relies on
_OWN_KEYS = {
    "group.id": "set kafka.group_id",
    "enable.auto.commit": "the service commits offsets after each checkpoint",
    "enable.auto.offset.store": "the service stores offsets after each checkpoint",
    "transactional.id": "set kafka.instance_id (the transactional id is derived from it)",
    "group.instance.id": "set kafka.instance_id",
}


def _check_client(k: KafkaSettings) -> None:
    """[kafka.client] settings that the guarantee cannot honour stop the start."""
    c = {key: str(v).lower() for key, v in k.client.items()}
    for key, why in _OWN_KEYS.items():
        if key in c:
            raise ConfigError(f"kafka.client.{key}: not settable: {why}")
    protocol = c.get("group.protocol", "classic")
    if protocol not in ("classic", "consumer"):
        raise ConfigError(f"kafka.client.group.protocol: {protocol!r} is not one of 'classic', 'consumer'")
    if protocol == "consumer":
        for key in ("partition.assignment.strategy", "session.timeout.ms", "heartbeat.interval.ms"):
            if key in c:
                raise ConfigError(f"kafka.client.{key}: not allowed with group.protocol = \"consumer\" "
                                  "(the broker assigns partitions and times sessions; KIP-848)")
    if k.guarantee == "exactly-once":
        if c.get("isolation.level", "read_committed") != "read_committed":
            raise ConfigError("kafka.client.isolation.level: exactly-once reads read_committed only")
        if c.get("enable.idempotence", "true") != "true":
            raise ConfigError("kafka.client.enable.idempotence: exactly-once needs the idempotent producer")


def _nest(layer: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        layer = layer.setdefault(part, {})
    layer[path[-1]] = value


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from defaults < TOML file < environment < `overrides` ("section.key": value)."""
    env = os.environ if env is None else env
    layers: list[tuple[dict[str, Any], bool, str]] = []
    models: dict[str, ModelSettings] = {}
    rebaselines: tuple[Rebaseline, ...] = ()
    if path is not None:
        p = Path(path)
        try:
            with p.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        models = _models(data.pop("models", {}))
        rebaselines = _rebaselines(data.pop("rebaseline", []))
        layers.append((data, False, str(p)))
    env_layer: dict[str, Any] = {}
    for name, value in env.items():
        if name.startswith("STREAMDRIFT_") and "__" in name:
            _nest(env_layer, name[len("STREAMDRIFT_"):].lower().split("__"), value)
    if env_layer:
        layers.append((env_layer, True, "environment"))
    if overrides:
        flag_layer: dict[str, Any] = {}
        for dotted, value in overrides.items():
            _nest(flag_layer, dotted.split("."), value)
        layers.append((flag_layer, False, "command line"))
    sections = {name: cls() for name, cls in SECTIONS.items()}
    for data, from_text, source in layers:
        for section, table in data.items():
            if section not in SECTIONS:
                raise ConfigError(f"{section}: unknown section (in {source}; known: "
                                  f"{', '.join([*SECTIONS, 'models'])})")
            sections[section] = _merge(section, sections[section], table, from_text, source)
    if not any("checkpoint_interval_s" in data.get("kafka", {}) for data, _, _ in layers) \
            and sections["kafka"].guarantee == "exactly-once":
        sections["kafka"] = replace(sections["kafka"], checkpoint_interval_s=EXACTLY_ONCE_CHECKPOINT_S)
    settings = Settings(**sections, models=models, rebaselines=rebaselines)
    _validate(settings)
    return settings


def _rebaselines(entries: Any) -> tuple[Rebaseline, ...]:
    """The [[rebaseline]] entries: model, signal (optional), at (event time, optional)."""
    if not isinstance(entries, list):
        raise ConfigError("rebaseline: must be an array of tables ([[rebaseline]])")
    out = []
    for i, entry in enumerate(entries):
        key = f"rebaseline[{i}]"
        if not isinstance(entry, dict) or set(entry) - {"model", "signal", "at"}:
            raise ConfigError(f"{key}: a table of model, signal, at")
        model, signal = entry.get("model"), entry.get("signal", "")
        if not isinstance(model, str) or not MODEL_RE.match(model):
            raise ConfigError(f"{key}.model: not a valid model name")
        if not isinstance(signal, str):
            raise ConfigError(f"{key}.signal: must be a signal name")
        try:
            at = event_time(entry["at"]) if "at" in entry else float("nan")
        except ValueError as exc:
            raise ConfigError(f"{key}.at: {exc}") from None
        out.append(Rebaseline(model, signal, at, f"config:{model}/{signal}@{entry.get('at', '')}"))
    return tuple(out)


def _models(table: Any) -> dict[str, ModelSettings]:
    """The [models.<name>] tables; errors name the key, e.g. models.grid.seasonality.bins."""
    if not isinstance(table, dict):
        raise ConfigError("models: must be a table of [models.<name>] tables")
    out = {}
    for name, spec in table.items():
        key = f"models.{name}"
        if not MODEL_RE.match(name):
            raise ConfigError(f"{key}: not a valid model name")
        known_keys = {"seasonality", "columns", "quality"}
        if not isinstance(spec, dict) or set(spec) - known_keys:
            raise ConfigError(f"{key}: unknown keys {sorted(set(spec) - known_keys)} "
                              "(known: columns, quality, seasonality)" if isinstance(spec, dict)
                              else f"{key}: must be a table")
        quality = None
        if "quality" in spec:
            quality = _merge(f"{key}.quality", ModelQualitySettings(), spec["quality"], False, "config file")
        columns = spec.get("columns", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
            raise ConfigError(f"{key}.columns: must be a list of feature names")
        season = spec.get("seasonality")
        if season is None:
            out[name] = ModelSettings(columns=tuple(columns), quality=quality)
            continue
        key = f"models.{name}.seasonality"
        known = {"period", "bins", "features", "min_per_bin", "periods"}
        if not isinstance(season, dict) or set(season) - known:
            raise ConfigError(f"{key}: unknown keys {sorted(set(season) - known)} (known: {sorted(known)})"
                              if isinstance(season, dict) else f"{key}: must be a table")
        if "period" not in season:
            raise ConfigError(f"{key}.period: required (e.g. period = \"1d\")")
        try:
            period = parse_duration(season["period"])
        except ValueError as exc:
            raise ConfigError(f"{key}.period: {exc}") from None
        bins = season.get("bins", 24)
        if isinstance(bins, bool) or not isinstance(bins, int) or bins < 2:
            raise ConfigError(f"{key}.bins: must be an integer >= 2, got {bins!r}")
        min_per_bin = season.get("min_per_bin", 30)
        if isinstance(min_per_bin, bool) or not isinstance(min_per_bin, int) or min_per_bin < 2:
            raise ConfigError(f"{key}.min_per_bin: must be an integer >= 2, got {min_per_bin!r}")
        periods = season.get("periods", 3)
        if isinstance(periods, bool) or not isinstance(periods, int) or periods < 1:
            raise ConfigError(f"{key}.periods: must be an integer >= 1, got {periods!r}")
        feats = season.get("features", [])
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise ConfigError(f"{key}.features: must be a list of feature names")
        out[name] = ModelSettings(SeasonalitySettings(period, bins, tuple(feats), min_per_bin, periods),
                                  tuple(columns), quality)
    return out
