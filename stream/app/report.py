"""Backtest report: one self-contained HTML file of a replay (inline SVG, no external files).

Per model: each signal's values over time (bucket means, downsampled to a bounded number of
points), ADWIN's window mean in the signal's units after each batch, and the alerts marked
where they fired (red) or resolved (green); then a table of all alerts.
"""

from __future__ import annotations

import html
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

MAX_POINTS = 600          # points per signal series; older points are thinned when exceeded
MAX_CHARTS = 12           # charts per model besides the signals that alerted


@dataclass
class Series:
    """A downsampled series: when it grows past MAX_POINTS every other point is dropped and
    from then on only every `stride`-th new point is kept, so the density stays even."""
    ts: list[float] = field(default_factory=list)
    value: list[float] = field(default_factory=list)
    stride: int = 1
    seen: int = 0

    def add(self, ts: np.ndarray, value: np.ndarray) -> None:
        for t, v in zip(ts.tolist(), value.tolist(), strict=True):
            if v != v:
                continue
            if self.seen % self.stride == 0:
                self.ts.append(t)
                self.value.append(v)
            self.seen += 1
        if len(self.ts) > MAX_POINTS:
            self.ts, self.value = self.ts[::2], self.value[::2]
            self.stride *= 2


class ReportRecorder:
    """Collects what the report shows while the pipeline runs (attached to a Pipeline)."""

    def __init__(self, bucket_rows: int = 50) -> None:
        self.bucket_rows = bucket_rows        # events averaged into one point (even noise)
        self.values: dict[tuple[str, str], Series] = {}
        self.estimates: dict[tuple[str, str], Series] = {}
        self.alerts: list[dict] = []
        self.versions: list[tuple[str, str, float]] = []     # (model, new version, event time)
        self.scores: dict[str, tuple[float, float, int]] = {}  # model -> estimated, real accuracy, n
        self.events = 0

    def record(self, monitor, ts: np.ndarray, X: np.ndarray) -> None:
        """Bucket means of this batch's raw values, and ADWIN's estimate at its end."""
        self.events += X.shape[0]
        self.record_values(monitor.model, monitor.signals.names, ts, X)
        names = monitor.signals.names
        adwin = monitor.detectors.get("adwin")
        if adwin is not None and adwin.n_features:
            reg = monitor.signals
            est = adwin.estimation * reg.sd + reg.mean
            ready = reg.n >= reg.goal
            for j in np.flatnonzero(ready & (adwin.width > 0)):
                self.estimates.setdefault((monitor.model, names[j]), Series()).add(
                    np.array([float(ts[-1])]), np.array([est[j]]))

    def record_values(self, model: str, names: list[str], ts: np.ndarray, X: np.ndarray) -> None:
        """Bucket means of this batch's values of the named signals (e.g. a check's rates)."""
        n = X.shape[0]
        edges = np.append(np.arange(0, n, self.bucket_rows), n)
        with np.errstate(invalid="ignore"):
            for lo, hi in zip(edges[:-1], edges[1:], strict=True):
                if hi <= lo:
                    continue
                block = X[lo:hi]
                with warnings.catch_warnings():            # (all-NaN columns: NaN)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    means = np.nanmean(block, axis=0)
                t = np.full(X.shape[1], float(np.mean(ts[lo:hi])))
                for j in np.flatnonzero(~np.isnan(means)):
                    series = self.values.setdefault((model, names[j]), Series())
                    series.add(t[j:j + 1], means[j:j + 1])


def _chart(series: Series, estimate: Series | None, alerts: list[dict], width=860, height=170) -> str:
    if not series.ts:
        return ""
    ts = np.array(series.ts)
    vs = np.array(series.value)
    t_all = np.concatenate([ts] + ([np.array(estimate.ts)] if estimate and estimate.ts else []))
    v_all = np.concatenate([vs] + ([np.array(estimate.value)] if estimate and estimate.value else []))
    t0, t1 = float(t_all.min()), float(t_all.max())
    lo, hi = float(np.nanmin(v_all)), float(np.nanmax(v_all))
    if hi == lo:                     # one value: a band around it (+-1 does not move 1e22)
        pad = max(1.0, abs(hi) * 1e-6)
        hi, lo = hi + pad, lo - pad
    if t1 == t0:
        t1 = t0 + 1
    pad_l, pad_r, pad_t, pad_b = 64, 10, 10, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b

    def xy(t, v):
        return pad_l + (t - t0) / (t1 - t0) * w, pad_t + (hi - v) / (hi - lo) * h

    def poly(t, v, color, sw):
        pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(a, b) for a, b in zip(t, v, strict=True)))
        return f'<polyline fill="none" stroke="{color}" stroke-width="{sw}" points="{pts}"/>'

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" role="img">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>']
    for a in alerts:
        x, _ = xy(min(max(a["at"]["ts"], t0), t1), lo)
        color = "#d62728" if a["status"] == "firing" else "#2ca02c"
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{pad_t}" y2="{pad_t + h}" stroke="{color}" '
                     f'stroke-width="2" stroke-dasharray="4 3"><title>{html.escape(a["status"])} '
                     f'{html.escape(a["detector"])} at offset {a["at"]["offset"]}</title></line>')
    parts.append(poly(ts, vs, "#1f77b4", 1))
    if estimate and estimate.ts:
        parts.append(poly(estimate.ts, estimate.value, "#ff7f0e", 2))
    for v, y in ((hi, pad_t), (lo, pad_t + h)):
        parts.append(f'<text x="{pad_l - 6}" y="{y + 4:.0f}" text-anchor="end" font-size="11">{v:.4g}</text>')
    for t, anchor in ((t0, "start"), (t1, "end")):
        x, _ = xy(t, lo)
        label = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t)) if t > 1e8 else f"{t:.0f}"
        parts.append(f'<text x="{x:.0f}" y="{height - 6}" text-anchor="{anchor}" font-size="11">'
                     f'{html.escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _series_of(alert: dict) -> str:
    """The recorded series an alert is about: the signal, or its check's (e.g. missing:age)."""
    check = alert.get("check")
    return f"{check}:{alert['signal'].split(':', 1)[1]}" if check else alert["signal"]


def _rates_chart(rates: dict[str, Series], width=860, height=170) -> str:
    """One chart of several rates in [0, 1] (a line per feature), with a legend."""
    colors = ["#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
    # (not the alert markers' red and green)
    t_all = np.concatenate([np.array(s.ts) for s in rates.values() if s.ts] or [np.zeros(1)])
    t0, t1 = float(t_all.min()), float(t_all.max())
    t1 = t1 if t1 > t0 else t0 + 1
    pad_l, pad_r, pad_t, pad_b = 64, 10, 10, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f'<rect x="{pad_l}" y="{pad_t}" width="{w}" height="{h}" fill="#fafafa" stroke="#ddd"/>',
             f'<text x="{pad_l - 6}" y="{pad_t + 4}" text-anchor="end" font-size="11">1</text>',
             f'<text x="{pad_l - 6}" y="{pad_t + h + 4}" text-anchor="end" font-size="11">0</text>']
    legend = []
    for k, (name, series) in enumerate(sorted(rates.items())):
        color = colors[k % len(colors)]
        pts = " ".join(f"{pad_l + (t - t0) / (t1 - t0) * w:.1f},{pad_t + (1 - v) * h:.1f}"
                       for t, v in zip(series.ts, series.value, strict=True))
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{pts}">'
                     f'<title>{html.escape(name)}</title></polyline>')
        legend.append(f"<span style='color:{color}'>&#9644; {html.escape(name)}</span>")
    parts.append("</svg>")
    return "".join(parts) + "<br><span class='legend'>" + "".join(legend) + "</span>"


def write_report(path: str, recorder: ReportRecorder, source: str) -> None:
    by_model: dict[str, list[str]] = {}
    missing: dict[str, dict[str, Series]] = {}
    for model, signal in recorder.values:
        if signal.startswith("missing:"):
            missing.setdefault(model, {})[signal.split(":", 1)[1]] = recorder.values[(model, signal)]
        else:
            by_model.setdefault(model, []).append(signal)
    alerts = recorder.alerts
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>streamdrift backtest</title>",
           "<style>body{font-family:sans-serif;margin:24px;color:#222}h2{margin-top:32px}"
           "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 8px}"
           ".sig{margin:8px 0 18px}.legend span{display:inline-block;margin-right:16px}"
           ".firing{color:#d62728}.resolved{color:#2ca02c}</style></head><body>",
           f"<h1>streamdrift backtest: {html.escape(source)}</h1>",
           f"<p>{recorder.events} events, {len(by_model)} models, "
           f"{sum(a['status'] == 'firing' for a in alerts)} alerts fired, "
           f"{sum(a['status'] == 'resolved' for a in alerts)} resolved.</p>",
           "<p class='legend'><span style='color:#1f77b4'>&#9644; value (bucket mean)</span>"
           "<span style='color:#ff7f0e'>&#9644; ADWIN window mean</span>"
           "<span class='firing'>&#9478; firing</span><span class='resolved'>&#9478; resolved</span></p>"]
    alerted_models = {a["model"] for a in alerts}
    for model in sorted(by_model.keys() | missing.keys(), key=lambda m: (m not in alerted_models, m)):
        model_alerts = [a for a in alerts if a["model"] == model]
        signals = by_model.get(model, [])
        alerted = [s for s in signals if any(_series_of(a) == s for a in model_alerts)]
        others = [s for s in signals if s not in alerted][:MAX_CHARTS]
        out.append(f"<h2>model {html.escape(model)}</h2>")
        changes = [(v, t) for m, v, t in recorder.versions if m == model]
        if changes:
            out.append("<p>model versions (a new version is no drift: its prediction and error "
                       "signals start over): " + ", ".join(
                           f"{html.escape(v)} from {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(t))}"
                           for v, t in changes) + "</p>")
        if model in recorder.scores:
            est, real, n = recorder.scores[model]
            out.append(f"<p>accuracy estimated from the scores {est:.3f}, measured by the labels "
                       f"{real:.3f} (the last {n} labeled predictions; estimate bias {est - real:+.3f})</p>")
        if model in missing:
            out.append("<div class='sig'><b>missing rate by feature</b> (null or absent)<br>"
                       + _rates_chart(missing[model]) + "</div>")
        for signal in alerted + others:
            sig_alerts = [a for a in model_alerts if _series_of(a) == signal]
            kinds = ", ".join(sorted({a["kind"] for a in sig_alerts})) or "no alert"
            out.append(f"<div class='sig'><b>{html.escape(signal)}</b> ({html.escape(kinds)})<br>")
            out.append(_chart(recorder.values[(model, signal)], recorder.estimates.get((model, signal)),
                              sig_alerts))
            out.append("</div>")
    out.append("<h2>alerts</h2><table><tr><th>status</th><th>kind</th><th>model</th><th>signal</th>"
               "<th>check</th><th>detector</th><th>time</th><th>offset</th><th>severity</th>"
               "<th>effect (sd)</th></tr>")
    for a in alerts:
        t = a["at"]["ts"]
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if t > 1e8 else f"{t:g}"
        out.append(f"<tr class='{a['status']}'><td>{a['status']}</td><td>{html.escape(a['kind'])}</td>"
                   f"<td>{html.escape(a['model'])}</td><td>{html.escape(a['signal'])}</td>"
                   f"<td>{html.escape(a.get('check', ''))}</td>"
                   f"<td>{html.escape(a['detector'])}</td><td>{when}</td><td>{a['at']['offset']}</td>"
                   f"<td>{a['severity']}</td><td>{a['stats'].get('effect_size', '')}</td></tr>")
    out.append("</table></body></html>")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(out))
