"""`replay --report`: one self-contained HTML file that renders in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.app.synthetic import DEMO_MODELS, jsonl

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("report")
    events = tmp / "events.jsonl"
    events.write_bytes(jsonl(DEMO_MODELS, 12000, seed=3))
    out = tmp / "report.html"
    proc = subprocess.run([sys.executable, "-m", "stream", "replay", str(events), "--report", str(out),
                           "--out", str(tmp / "alerts.jsonl")], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_report_is_self_contained_and_marks_the_alerts(report):
    text = report.read_text()
    assert text.startswith("<!doctype html>") and "</html>" in text
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", text)        # nothing to fetch
    assert text.count("<svg") >= 7
    assert "model readmission" in text and "model fraud" in text
    first_model = re.search(r"<h2>model (\w+)</h2>", text).group(1)
    assert first_model in ("fraud", "readmission")                   # models with alerts first
    rows = re.findall(r"<tr class='firing'>.*?</tr>", text)
    assert text.count("stroke=\"#d62728\"") == len(rows)            # a marker per firing alert
    assert all("data_drift" in r for r in rows)
    assert {"feature:age", "feature:amount"} <= {s for r in rows for s in re.findall(r"feature:\w+", r)}


@pytest.mark.parametrize("value", [0.0, 3.5, -7e9, 1.2345678901234568e22, -1e300])
def test_a_signal_of_one_value_of_any_size_is_drawn(value):
    """A constant signal is drawn in a band around its value; at 1e22, +-1 left the band
    empty and the report died dividing by zero."""
    from stream.app.report import Series, _chart

    series = Series()
    series.add(np.array([1.7e9, 1.7e9 + 60]), np.array([value, value]))
    svg = _chart(series, None, [])
    assert svg.startswith("<svg") and "nan" not in svg and "inf" not in svg


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="Debian chromium not installed")
def test_report_renders_in_headless_chromium(report, tmp_path):
    assert CHROMIUM, "CI must install Debian's chromium (.ci/run does)"
    png = tmp_path / "report.png"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1000,1400", f"--screenshot={png}"]
    proc = subprocess.run([CHROMIUM, *flags, report.as_uri()], capture_output=True, timeout=120)
    assert png.exists(), proc.stderr[-2000:]
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 30_000        # a page with charts, not blank
