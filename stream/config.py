"""Settings: TOML file + STREAMDRIFT_* environment variables + CLI flags -> frozen dataclasses.

Every key is optional. Unknown keys and bad values stop the start with a ConfigError whose
message names the key (e.g. ``detect.adwin_delta``). Environment variables name a key as
``STREAMDRIFT_<SECTION>__<KEY>`` (double underscore between section and key), e.g.
``STREAMDRIFT_KAFKA__BOOTSTRAP=broker:9092``. The ``[kafka.client]`` table passes through to
librdkafka unchanged (security.protocol, sasl.*, ssl.*, ...).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """Bad configuration; the message names the offending key."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap: str = "127.0.0.1:9092"
    group_id: str = "streamdrift"
    events_topics: tuple[str, ...] = ("events",)
    labels_topic: str = ""
    alerts_topic: str = "alerts"
    dead_letter_topic: str = "streamdrift-dead-letters"
    guarantee: str = "at-least-once"    # or "exactly-once" (Kafka transactions)
    changelog_topic: str = ""           # compacted state topic; default "<group_id>-changelog"
    checkpoint_interval_s: float = 5.0  # state + offsets commit period (at-least-once: only
                                        # what a crash replays; exactly-once: see below)
    instance_id: str = ""               # stable per instance; default host name + pid
    batch_size: int = 5000              # messages per consumed batch
    poll_timeout_s: float = 0.1         # longest wait for a batch to fill
    client: Mapping[str, str] = field(default_factory=dict)   # librdkafka pass-through
    formats: Mapping[str, str] = field(default_factory=dict)  # topic -> kserve | oip (adapters)


@dataclass(frozen=True)
class DetectSettings:
    detectors: tuple[str, ...] = ("adwin", "page_hinkley")
    warmup: int = 1000                  # values per signal that set its reference mean / sd
    clip_z: float = 5.0                 # standardized values are clipped to +-clip_z
    # Defaults tuned for standardized signals (river's are for raw units): on N(0, 1) streams of
    # 100k values none of 40 columns alarmed; a 0.5 sd shift was found in ~160 (ADWIN) and ~190
    # (PH) values. river's PH fading (alpha < 1) makes its statistic stationary with sd ~70, so
    # any threshold near 50 alarms on pure noise: the service uses the undamped CUSUM form.
    adwin_delta: float = 1e-4
    bonferroni: bool = True             # each signal's ADWIN delta = adwin_delta / signals of its model
    adwin_clock: int = 32
    adwin_max_buckets: int = 5
    adwin_min_window_length: int = 5
    adwin_grace_period: int = 10
    ph_min_instances: int = 30
    ph_delta: float = 0.25              # in standard deviations of the signal
    ph_threshold: float = 50.0          # in standard deviations of the signal
    ph_alpha: float = 1.0
    ph_exact: bool = False              # False: closed-form sums (fast); True: river's rounding
    cooldown_s: float = 600.0           # event-time seconds between two firings of one signal
    resolve_after_s: float = 3600.0     # event-time seconds without detection -> resolved
    label_ttl_s: float = 35 * 86400.0   # predictions wait this long (event time) for a label
    label_warmup: int = 500             # joined labels that set the error reference
    feedback_window: int = 200          # events with a segment per entropy window
    feedback_resolve_after_s: float = 7 * 86400.0   # feedback loops are slow: quiet week -> resolved
    feedback_warmup: int = 10           # windows that set the entropy reference
    feedback_ph_threshold: float = 20.0 # PH (down) on the standardized entropy series
    feedback_ph_delta: float = 0.25
    label_bands: int = 5                # score bands for the labeled share
    label_min_per_band: int = 50        # predictions with an outcome before a band counts
    label_gap: float = 0.5              # labeled shares differing more than this: feedback_loop


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
    features: tuple[str, ...] = ()      # numeric features that are seasonal; empty = all
    min_per_bin: int = 30               # values per bin before residuals are scored


@dataclass(frozen=True)
class ModelSettings:
    seasonality: SeasonalitySettings | None = None
    columns: tuple[str, ...] = ()       # feature names of a single 2-D input tensor (adapters)


@dataclass(frozen=True)
class Settings:
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    detect: DetectSettings = field(default_factory=DetectSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    models: Mapping[str, ModelSettings] = field(default_factory=dict)   # per-model settings


_SECTIONS = {f.name: f.type for f in fields(Settings) if f.name != "models"}
_SECTION_CLASSES = {"kafka": KafkaSettings, "detect": DetectSettings, "limits": LimitSettings,
                    "metrics": MetricsSettings}
_DETECTORS = ("adwin", "page_hinkley")
# kafka.checkpoint_interval_s when not set: at-least-once 5 s (the field's default, as Kafka
# consumers' auto-commit): alerts are produced at once whatever it is, it bounds what a crash
# replays, and checkpointing 100 models every 0.5 s took about a sixth of the service's time;
# exactly-once 0.5 s, since it is the delay before alerts become visible
EXACTLY_ONCE_CHECKPOINT_S = 0.5


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


def _validate(s: Settings) -> None:
    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {what}")

    k, d, lim, m = s.kafka, s.detect, s.limits, s.metrics
    need(bool(k.bootstrap.strip()), "kafka.bootstrap", "must not be empty")
    need(bool(k.group_id.strip()), "kafka.group_id", "must not be empty")
    need(len(k.events_topics) > 0, "kafka.events_topics", "needs at least one topic")
    need(bool(k.alerts_topic), "kafka.alerts_topic", "must not be empty")
    need(bool(k.dead_letter_topic), "kafka.dead_letter_topic", "must not be empty")
    need(k.batch_size >= 1, "kafka.batch_size", "must be >= 1")
    need(k.guarantee in ("at-least-once", "exactly-once"), "kafka.guarantee",
         f"must be 'at-least-once' or 'exactly-once', got {k.guarantee!r}")
    need(k.checkpoint_interval_s > 0, "kafka.checkpoint_interval_s", "must be > 0")
    for topic, fmt in k.formats.items():
        need(fmt in ("streamdrift", "kserve", "oip"), f"kafka.formats.{topic}",
             f"unknown format {fmt!r} (known: streamdrift, kserve, oip)")
    need(k.poll_timeout_s > 0, "kafka.poll_timeout_s", "must be > 0")
    for name in d.detectors:
        need(name in _DETECTORS, "detect.detectors", f"unknown detector {name!r} (known: {_DETECTORS})")
    need(len(d.detectors) > 0, "detect.detectors", "needs at least one detector")
    need(d.warmup >= 2, "detect.warmup", "must be >= 2")
    need(d.clip_z > 0, "detect.clip_z", "must be > 0")
    need(0 < d.adwin_delta < 1, "detect.adwin_delta", "must be in (0, 1)")
    need(d.adwin_clock >= 1, "detect.adwin_clock", "must be >= 1")
    need(d.adwin_max_buckets >= 2, "detect.adwin_max_buckets", "must be >= 2")
    need(d.adwin_min_window_length >= 1, "detect.adwin_min_window_length", "must be >= 1")
    need(d.adwin_grace_period >= 0, "detect.adwin_grace_period", "must be >= 0")
    need(d.ph_min_instances >= 1, "detect.ph_min_instances", "must be >= 1")
    need(d.ph_delta >= 0, "detect.ph_delta", "must be >= 0")
    need(d.ph_threshold > 0, "detect.ph_threshold", "must be > 0")
    need(0 < d.ph_alpha <= 1, "detect.ph_alpha", "must be in (0, 1]")
    need(d.cooldown_s >= 0, "detect.cooldown_s", "must be >= 0")
    need(d.resolve_after_s > 0, "detect.resolve_after_s", "must be > 0")
    need(d.label_ttl_s > 0, "detect.label_ttl_s", "must be > 0")
    need(d.label_warmup >= 2, "detect.label_warmup", "must be >= 2")
    need(d.feedback_window >= 2, "detect.feedback_window", "must be >= 2")
    need(d.feedback_resolve_after_s > 0, "detect.feedback_resolve_after_s", "must be > 0")
    need(d.feedback_warmup >= 2, "detect.feedback_warmup", "must be >= 2")
    need(d.feedback_ph_threshold > 0, "detect.feedback_ph_threshold", "must be > 0")
    need(d.feedback_ph_delta >= 0, "detect.feedback_ph_delta", "must be >= 0")
    need(d.label_bands >= 2, "detect.label_bands", "must be >= 2")
    need(d.label_min_per_band >= 1, "detect.label_min_per_band", "must be >= 1")
    need(0 < d.label_gap < 1, "detect.label_gap", "must be in (0, 1)")
    for f in fields(LimitSettings):
        need(getattr(lim, f.name) >= 1, f"limits.{f.name}", "must be >= 1")
    need(0 <= m.port <= 65535, "metrics.port", "must be a TCP port (0..65535)")
    need(m.max_model_labels >= 1, "metrics.max_model_labels", "must be >= 1")


def _merge(section: str, base: Any, values: Mapping[str, Any], from_text: bool, source: str) -> Any:
    known = {f.name: f for f in fields(base)}
    changes = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown key (in {source}; known keys: "
                              f"{', '.join(sorted(known))})")
        changes[key] = _coerce(f"{section}.{key}", getattr(base, key), value, from_text)
    return dataclasses.replace(base, **changes)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from defaults < TOML file < environment < `overrides` ("section.key": value)."""
    env = os.environ if env is None else env
    layers: list[tuple[dict[str, dict[str, Any]], bool, str]] = []
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
        for section, table in data.items():
            if section not in _SECTIONS:
                raise ConfigError(f"{section}: unknown section (in {p}; known: "
                                  f"{', '.join([*_SECTIONS, 'models'])})")
            if not isinstance(table, dict):
                raise ConfigError(f"{section}: must be a table")
        layers.append((data, False, str(p)))
    else:
        models = {}
    env_layer: dict[str, dict[str, Any]] = {}
    for name, value in env.items():
        if not name.startswith("STREAMDRIFT_") or "__" not in name:
            continue
        section, _, key = name[len("STREAMDRIFT_"):].lower().partition("__")
        if section not in _SECTIONS:
            raise ConfigError(f"{name}: unknown section {section!r}")
        env_layer.setdefault(section, {})[key] = value
    if env_layer:
        layers.append((env_layer, True, "environment"))
    if overrides:
        flag_layer: dict[str, dict[str, Any]] = {}
        for dotted, value in overrides.items():
            section, _, key = dotted.partition(".")
            flag_layer.setdefault(section, {})[key] = value
        layers.append((flag_layer, False, "command line"))
    sections = {name: cls() for name, cls in _SECTION_CLASSES.items()}
    for data, from_text, source in layers:
        for section, table in data.items():
            sections[section] = _merge(section, sections[section], table, from_text, source)
    if not any("checkpoint_interval_s" in data.get("kafka", {}) for data, _, _ in layers) \
            and sections["kafka"].guarantee == "exactly-once":
        # alerts are visible to read_committed readers only when their transaction commits
        sections["kafka"] = replace(sections["kafka"], checkpoint_interval_s=EXACTLY_ONCE_CHECKPOINT_S)
    settings = Settings(**sections, models=models)
    _validate(settings)
    return settings


def _models(table: Any) -> dict[str, ModelSettings]:
    """The [models.<name>] tables; errors name the key, e.g. models.grid.seasonality.bins."""
    from .ingest.rows import MODEL_RE
    from .monitor.seasonal import parse_duration

    if not isinstance(table, dict):
        raise ConfigError("models: must be a table of [models.<name>] tables")
    out = {}
    for name, spec in table.items():
        key = f"models.{name}"
        if not MODEL_RE.match(name):
            raise ConfigError(f"{key}: not a valid model name")
        if not isinstance(spec, dict) or set(spec) - {"seasonality", "columns"}:
            raise ConfigError(f"{key}: unknown keys {sorted(set(spec) - {'seasonality', 'columns'})} "
                              "(known: columns, seasonality)" if isinstance(spec, dict)
                              else f"{key}: must be a table")
        columns = spec.get("columns", [])
        if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
            raise ConfigError(f"{key}.columns: must be a list of feature names")
        season = spec.get("seasonality")
        if season is None:
            out[name] = ModelSettings(columns=tuple(columns))
            continue
        key = f"models.{name}.seasonality"
        known = {"period", "bins", "features", "min_per_bin"}
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
        feats = season.get("features", [])
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise ConfigError(f"{key}.features: must be a list of feature names")
        out[name] = ModelSettings(SeasonalitySettings(period, bins, tuple(feats), min_per_bin),
                                  tuple(columns))
    return out
