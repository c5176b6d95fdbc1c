"""Configuration: layering, validation, and errors that name the key."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream.config import ConfigError, load_settings


def test_defaults_need_no_file():
    s = load_settings(env={})
    assert s.kafka.bootstrap == "127.0.0.1:9092"
    assert s.detect.detectors == ("adwin", "page_hinkley")
    assert s.metrics.address == "127.0.0.1"


def test_file_env_and_overrides_layer_in_order(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[kafka]\nbootstrap = "file:1"\ngroup_id = "g"\n[kafka.client]\n'
                   '"security.protocol" = "SASL_SSL"\n[detect]\nwarmup = 50\n')
    s = load_settings(cfg, env={"STREAMDRIFT_KAFKA__BOOTSTRAP": "env:2", "STREAMDRIFT_DETECT__CLIP_Z": "3.5"},
                      overrides={"kafka.group_id": "flag"})
    assert s.kafka.bootstrap == "env:2"
    assert s.kafka.group_id == "flag"
    assert s.kafka.client == {"security.protocol": "SASL_SSL"}
    assert s.detect.warmup == 50 and s.detect.clip_z == 3.5


@pytest.mark.parametrize("toml,env,expected", [
    ("", {}, 5.0),                                                     # at-least-once
    ('[kafka]\nguarantee = "exactly-once"\n', {}, 0.5),
    ("", {"STREAMDRIFT_KAFKA__GUARANTEE": "exactly-once"}, 0.5),
    ('[kafka]\nguarantee = "exactly-once"\ncheckpoint_interval_s = 2\n', {}, 2.0),
    ('[kafka]\nguarantee = "exactly-once"\n', {"STREAMDRIFT_KAFKA__CHECKPOINT_INTERVAL_S": "3"}, 3.0),
    ("[kafka]\ncheckpoint_interval_s = 0.5\n", {}, 0.5),
])
def test_checkpoint_interval_defaults_by_guarantee_unless_set(tmp_path, toml, env, expected):
    """At-least-once checkpoints every 5 s (alerts go out at once; it bounds what a crash
    replays), exactly-once every 0.5 s (alerts are visible at the commit); a value set
    anywhere wins."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(toml)
    assert load_settings(cfg, env=env).kafka.checkpoint_interval_s == expected


@pytest.mark.parametrize("text,key", [
    ("[kafka]\nbootstrp = 'x'\n", "kafka.bootstrp"),
    ("[detect]\nwarmup = 'many'\n", "detect.warmup"),
    ("[detect.adwin]\ndelta = 2.0\n", "detect.adwin.delta"),
    ("[detect]\nadwin = 3\n", "detect.adwin"),
    ("[kafka]\nguarantee = 'once'\n", "kafka.guarantee"),
    ("[kafka.formats]\nt = 'csv'\n", "kafka.formats.t"),
    ("[detect]\ndetectors = ['adwin', 'magic']\n", "detect.detectors"),
    ("[limits]\nmax_models = 0\n", "limits.max_models"),
    ("[kafka]\nmax_batch_size = 0\n", "kafka.max_batch_size"),
    ("[metrics]\nport = 70000\n", "metrics.port"),
    ("[nonsense]\na = 1\n", "nonsense"),
    ("[sinks.webhook]\nurl = 'slack.example/hook'\n", "sinks.webhook.url"),
    ("[sinks.webhook]\nformat = 'slack'\n", "sinks.webhook.format"),
    ("[sinks.webhook]\nheaders = 'x'\n", "sinks.webhook.headers"),
    ("[sinks.webhook]\nqueue = 0\n", "sinks.webhook.queue"),
])
def test_bad_values_name_the_key(tmp_path, text, key):
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_settings(cfg, env={})


def test_bad_env_names_the_variable():
    with pytest.raises(ConfigError, match="detect.warmup"):
        load_settings(env={"STREAMDRIFT_DETECT__WARMUP": "lots"})


def test_cli_stops_on_bad_config_with_the_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[detect.page_hinkley]\nthreshold = -1\n")
    proc = subprocess.run([sys.executable, "-m", "stream", "run", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "detect.page_hinkley.threshold" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["demo", "--duration", "-5"], "--duration: must be a number of seconds > 0, got '-5'"),
    (["demo", "--duration", "nan"], "--duration: must be a number of seconds > 0, got 'nan'"),
    (["demo", "--metrics-port", "99999"], "--metrics-port: must be a port in 1..65535, got '99999'"),
    (["run", "--metrics-port", "x"], "--metrics-port: must be a port in 0..65535, got 'x'"),
    (["run", "--metrics-port", "-1"], "--metrics-port: must be a port in 0..65535, got '-1'"),
])
def test_bad_command_line_values_stop_before_any_work(args, message):
    """(A negative demo duration used to start a broker and then stop at once.)"""
    proc = subprocess.run([sys.executable, "-m", "stream", *args], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_the_demo_asks_quietly_whether_a_broker_answers():
    """A newcomer's first line was librdkafka's "Connect ... failed: Connection refused"."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]                 # nothing listens there once closed
    proc = subprocess.run([sys.executable, "-c", "from stream.app.demo import broker_answers; "
                           f"print(broker_answers('127.0.0.1:{port}'))"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False" and proc.stderr == ""


def test_the_readme_configuration_block_is_every_default(tmp_path):
    """The README's configuration example loads, equals the defaults, and names every
    setting (but the per-guarantee checkpoint interval, shown commented out, and the
    adapters' formats, shown in their own section)."""
    import dataclasses
    import re
    import tomllib
    from pathlib import Path

    from stream.config import SECTIONS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme[readme.index("## Configuration"):], re.S).group(1)
    cfg = tmp_path / "readme.toml"
    cfg.write_text(block)
    assert load_settings(cfg, env={}) == load_settings(env={})
    shown = tomllib.loads(block)
    def unshown(cls, table, key):
        for f in dataclasses.fields(cls):
            default = getattr(cls(), f.name)
            if dataclasses.is_dataclass(default):
                yield from unshown(type(default), table.get(f.name, {}), f"{key}.{f.name}")
            elif f.name not in table:
                yield f"{key}.{f.name}"

    missing = {k for section, cls in SECTIONS.items() for k in unshown(cls, shown.get(section, {}), section)}
    assert missing <= {"kafka.checkpoint_interval_s", "kafka.formats"}, missing
    assert "# checkpoint_interval_s" in block


def test_version_is_the_installed_distribution_s():
    """`streamdrift --version` (what alerts carry as streamdrift_version) is pyproject's."""
    from importlib.metadata import version

    proc = subprocess.run([sys.executable, "-m", "stream", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"streamdrift {version('streamdrift')}"
