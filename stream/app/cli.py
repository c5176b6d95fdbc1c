"""Command line: `streamdrift run | replay | demo` (thin: parse, wire, start)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..config import Settings, load_settings
from ..errors import ConfigError, DeliveryFailed
from ..ingest.control import parse_request
from ..ingest.registry import RegistryUnavailable
from ..kafka.clients import wait_for_broker
from ..kafka.control import publish, publish_profiles
from ..kafka.service import Service
from ..metrics import Metrics
from ..monitor.reference import load as load_profiles
from ..replay import input_problem, replay
from ..sinks.webhook import WebhookSink
from ..types import MODEL_RE, Rebaseline, event_time
from .allocator import keep_heap
from .demo import demo
from .profile import profile
from .report import ReportRecorder, write_report


def _settings(args: argparse.Namespace) -> Settings:
    overrides = {}
    if getattr(args, "bootstrap", None):
        overrides["kafka.bootstrap"] = args.bootstrap
    if getattr(args, "group", None):
        overrides["kafka.group_id"] = args.group
    if getattr(args, "metrics_port", None) is not None:
        overrides["metrics.port"] = args.metrics_port
    return load_settings(args.config, overrides=overrides)


def cmd_run(args: argparse.Namespace) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    settings = _settings(args)
    metrics = Metrics(settings.metrics.max_model_labels)
    if settings.metrics.enabled:
        try:
            metrics.serve(settings.metrics.address, settings.metrics.port)
        except OSError as exc:
            raise ConfigError(f"metrics.port: cannot listen on {settings.metrics.address}:"
                              f"{settings.metrics.port} ({exc.strerror})") from None
        logging.getLogger("streamdrift").info(
            "metrics on http://%s:%d/metrics", settings.metrics.address, settings.metrics.port)
    profiles = load_profiles(args.reference) if args.reference else None
    sinks = []
    if settings.sinks.webhook.url:
        sinks.append(WebhookSink(settings.sinks.webhook, metrics).start())
    try:
        return Service(settings, metrics, profiles, sinks).run(stop)
    except (DeliveryFailed, RegistryUnavailable) as exc:
        logging.getLogger("streamdrift").error("%s (nothing of the batch was committed: a restart "
                                               "reads it again)", exc)
        return 1
    finally:
        for sink in sinks:
            sink.stop()                  # (sends what is queued, for at most drain_s)


def cmd_replay(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.rebaseline:
        settings = dataclasses.replace(settings, rebaselines=settings.rebaselines + tuple(args.rebaseline))
    try:
        # every output is opened before any work: a path that cannot be written stops the
        # start (the report is written at the end; its file is created, not emptied, now)
        if args.report:
            open(args.report, "ab").close()
        out = open(args.out, "wb") if args.out else sys.stdout.buffer
        dead = open(args.dead_letter, "wb") if args.dead_letter else None
    except OSError as exc:
        print(f"streamdrift replay: {exc.filename}: cannot be written ({exc.strerror})", file=sys.stderr)
        return 2
    recorder = ReportRecorder() if args.report else None
    try:
        profiles = load_profiles(args.reference) if args.reference else None
        code = replay(settings, args.events, args.labels, out, dead, fmt=args.format, recorder=recorder,
                      profiles=profiles)
        if recorder is not None and input_problem(args.events, args.labels) is None:
            write_report(args.report, recorder, args.events)    # (also after a truncated file)
        return code
    finally:
        if args.out:
            out.close()
        if dead is not None:
            dead.close()


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0:                   # (NaN too)
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _port(low: int) -> Callable[[str], int]:
    """A port argument in low..65535 (0, as metrics.port: any free port)."""
    def port(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = -1
        if not low <= value <= 65535:
            raise argparse.ArgumentTypeError(f"must be a port in {low}..65535, got {text!r}")
        return value
    return port


def cmd_profile(args: argparse.Namespace) -> int:
    settings = _settings(args)
    profiles, bad = profile(settings, args.train, args.model, args.model_version)
    if args.out:
        try:
            Path(args.out).write_bytes(profiles.to_json())
        except OSError as exc:
            print(f"streamdrift profile: {args.out}: cannot be written ({exc.strerror})", file=sys.stderr)
            return 2
    for key, p in profiles.profiles.items():
        print(f"streamdrift profile: {key}: {p.rows} rows, {len(p.signals)} signals, "
              f"{len(p.features)} features", file=sys.stderr)
    if bad:
        print(f"streamdrift profile: {bad} rows not usable (not events of the format)", file=sys.stderr)
    if args.publish:
        stop = threading.Event()
        if not wait_for_broker(settings, stop, timeout_s=30):
            print(f"streamdrift profile: no Kafka answers at {settings.kafka.bootstrap}", file=sys.stderr)
            return 1
        topic, keys = publish_profiles(settings, profiles)
        print(f"streamdrift profile: published {', '.join(keys)} to {topic}", file=sys.stderr)
    return 0


def cmd_rebaseline(args: argparse.Namespace) -> int:
    settings = _settings(args)
    try:
        at = event_time(args.at) if args.at is not None else float("nan")
    except ValueError as exc:
        print(f"streamdrift rebaseline: --at: {exc}", file=sys.stderr)
        return 2
    if not MODEL_RE.match(args.model):
        print(f"streamdrift rebaseline: --model {args.model!r} is not a model name", file=sys.stderr)
        return 2
    stop = threading.Event()
    if not wait_for_broker(settings, stop, timeout_s=30):
        print(f"streamdrift rebaseline: no Kafka answers at {settings.kafka.bootstrap}", file=sys.stderr)
        return 1
    try:
        sent = publish(settings, Rebaseline(args.model, args.signal or "", at))
    except DeliveryFailed as exc:
        print(f"streamdrift rebaseline: {exc}", file=sys.stderr)
        return 1
    print(f"streamdrift rebaseline: {sent['request']} -> {sent['topic']} (key {sent['key']})")
    return 0


def _request(text: str) -> Rebaseline:
    try:
        return parse_request(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc} (expected MODEL[/SIGNAL][@TIME])") from None


def cmd_demo(args: argparse.Namespace) -> int:
    return demo(args.bootstrap or "127.0.0.1:9092", duration_s=args.duration,
                metrics_port=args.metrics_port if args.metrics_port is not None else 9108)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="streamdrift", description="Streaming drift detection for ML "
                                "models: Kafka events in, drift alerts out.")
    p.add_argument("--version", action="version", version=f"streamdrift {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="consume events from Kafka, publish alerts")
    run.add_argument("--config", help="TOML configuration file")
    run.add_argument("--bootstrap", help="Kafka bootstrap servers HOST:PORT (overrides kafka.bootstrap)")
    run.add_argument("--group", help="consumer group id (overrides kafka.group_id)")
    run.add_argument("--metrics-port", type=_port(0), help="port of /metrics (overrides metrics.port)")
    run.add_argument("--reference", help="reference profile JSON (streamdrift profile): compare with "
                     "the training data from the first event")
    run.set_defaults(func=cmd_run)
    rep = sub.add_parser("replay", help="run the same pipeline over JSONL files, no Kafka")
    rep.add_argument("events", help="events, one JSON message per line (.gz, .bz2, .xz read "
                     "decompressed; - reads standard input)")
    rep.add_argument("--labels", help="labels, one JSON message per line, merged by ts")
    rep.add_argument("--config", help="TOML configuration file")
    rep.add_argument("--out", help="alerts as JSON lines (default: stdout)")
    rep.add_argument("--dead-letter", help="bad lines as JSON lines")
    rep.add_argument("--report", help="write a self-contained HTML backtest report here")
    rep.add_argument("--format", default="streamdrift", choices=["streamdrift", "kserve", "oip"],
                     help="format of the events file (kserve: structured CloudEvents, one per line)")
    rep.add_argument("--rebaseline", action="append", type=_request, default=[],
                     metavar="MODEL[/SIGNAL][@TIME]",
                     help="accept the values of the model (or one signal) from event time TIME "
                     "(epoch seconds or RFC 3339; default its first event) as its new reference; repeatable")
    rep.add_argument("--reference", help="reference profile JSON (streamdrift profile)")
    rep.set_defaults(func=cmd_replay)
    prof = sub.add_parser("profile", help="reference profiles of training data (JSONL events, CSV, Parquet)")
    prof.add_argument("train", nargs="+", help="training data files (.jsonl, .csv, .parquet; .gz too)")
    prof.add_argument("--out", help="write the profiles here (JSON)")
    prof.add_argument("--model", help="the model of rows without one (CSV/Parquet without a model column)")
    prof.add_argument("--model-version", help="the model version of rows without one")
    prof.add_argument("--publish", action="store_true",
                      help="write them to the references topic that `run` follows (kafka.references_topic)")
    prof.add_argument("--config", help="TOML configuration file")
    prof.add_argument("--bootstrap", help="Kafka bootstrap servers HOST:PORT (with --publish)")
    prof.add_argument("--group", help="consumer group id (names the default references topic)")
    prof.set_defaults(func=cmd_profile)
    reb = sub.add_parser("rebaseline", help="accept a model's (or a signal's) current values as its "
                         "new reference, in every running instance")
    reb.add_argument("--model", required=True)
    reb.add_argument("--signal", help="one signal, e.g. feature:age (default: every signal of the model)")
    reb.add_argument("--at", help="from this event time on (epoch seconds or RFC 3339; default: "
                     "the model's next events)")
    reb.add_argument("--config", help="TOML configuration file (kafka.control_topic, bootstrap)")
    reb.add_argument("--bootstrap", help="Kafka bootstrap servers HOST:PORT")
    reb.add_argument("--group", help="consumer group id (names the default control topic)")
    reb.set_defaults(func=cmd_rebaseline)
    demo = sub.add_parser("demo", help="local broker + service + drifting synthetic stream, live alerts")
    demo.add_argument("--bootstrap", help="Kafka to use (default 127.0.0.1:9092, started if down)")
    demo.add_argument("--duration", type=_positive_seconds, default=120.0,
                      help="stop after this many seconds")
    demo.add_argument("--metrics-port", type=_port(1), help="port of the service's /metrics (default 9108)")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = build_parser().parse_args(argv)
    keep_heap()                 # (glibc: fewer page faults a batch; see stream/app/allocator.py)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"streamdrift: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
