#!/usr/bin/env python3
"""SVG plot of a benchmark's results.json (standard library only).

Three panels, one bar per lane: median req/s (whisker: min–max of the rounds), median p99 of
those runs (log scale), and p99 added over `direct` at half of gatehouse-public's max rate
(log scale; saturated lanes marked).

Usage: python3 loadtest/plot.py results.json plot.svg
"""

import json
import math
import sys
from xml.sax.saxutils import escape

WIDTH = 980
LABEL_W = 170
PANEL_W = (WIDTH - LABEL_W - 40) // 3
BAR_H = 22
GAP = 8
TOP = 70
COLORS = {
    "direct": "#9e9e9e",
    "nginx-proxy": "#4c78a8",
    "nginx-auth_request": "#72b7b2",
    "apache-oidc": "#e45756",
    "gatehouse-public": "#54a24b",
    "gatehouse-auth": "#2e7d32",
    "gatehouse-auth-cold": "#88d27a",
}


def _text(x, y, s, anchor="start", size=12, weight="normal", fill="#222"):
    return (f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
            f'font-weight="{weight}" fill="{fill}">{escape(str(s))}</text>')


def _fmt(v, unit):
    if unit == "req/s":
        return f"{v:,.0f}"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _panel(x0, title, unit, values, lanes, log=False, whiskers=None, notes=None):
    """values: lane -> number or None."""
    out = [_text(x0, TOP - 28, title, size=13, weight="bold")]
    present = [v for v in values.values() if v is not None and v > 0]
    if not present:
        return out
    hi = max(present) * (1.15 if not whiskers else 1.0)
    if whiskers:
        hi = max(hi, max(w[1] for w in whiskers.values())) * 1.05
    lo = min(present) / 2 if log else 0.0

    def scale(v):
        if log:
            v = max(v, lo)
            return (math.log10(v) - math.log10(lo)) / (math.log10(hi * 1.5) - math.log10(lo))
        return v / hi

    out.append(f'<line x1="{x0}" y1="{TOP - 8}" x2="{x0}" '
               f'y2="{TOP + len(lanes) * (BAR_H + GAP)}" stroke="#888"/>')
    for i, lane in enumerate(lanes):
        y = TOP + i * (BAR_H + GAP)
        v = values.get(lane)
        if v is None:
            out.append(_text(x0 + 4, y + BAR_H * 0.7, (notes or {}).get(lane, "n/a"),
                             size=11, fill="#777"))
            continue
        w = max(scale(v) * (PANEL_W - 110), 1.0) if v > 0 else 1.0
        label_x = x0 + w + 4
        out.append(f'<rect x="{x0}" y="{y}" width="{w:.1f}" height="{BAR_H}" '
                   f'fill="{COLORS.get(lane, "#666")}"/>')
        if whiskers and lane in whiskers:
            a, b = (scale(z) * (PANEL_W - 110) for z in whiskers[lane])
            cy = y + BAR_H / 2
            label_x = max(label_x, x0 + b + 4)
            out.append(f'<line x1="{x0 + a:.1f}" y1="{cy}" x2="{x0 + b:.1f}" y2="{cy}" '
                       f'stroke="#111" stroke-width="1.5"/>')
        label = _fmt(v, unit) + ("" if not notes or lane not in notes else f" {notes[lane]}")
        out.append(_text(label_x, y + BAR_H * 0.7, label, size=11))
    out.append(_text(x0, TOP + len(lanes) * (BAR_H + GAP) + 14,
                     unit + (" (log scale)" if log else ""), size=11, fill="#555"))
    return out


def svg(results, lanes):
    t = results["throughput"]["median"]
    fixed = results.get("fixed_load", {})
    f = fixed.get("median", {})
    height = TOP + len(lanes) * (BAR_H + GAP) + 60
    m = results["machine"]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        _text(10, 22, f"gatehouse benchmark {results['date']}"
              + (" (SMOKE: numbers mean nothing)" if results.get("smoke") else ""),
              size=15, weight="bold"),
        _text(10, height - 12, f"{m['nproc']} cores, {m['cpu']}, kernel {m['kernel']}; proxy "
              f"pinned to one core, wrk -c{results['settings']['connections']} on the other; "
              f"medians of {results['settings']['rounds']} rounds", size=11, fill="#555"),
    ]
    for i, lane in enumerate(lanes):
        parts.append(_text(LABEL_W - 8, TOP + i * (BAR_H + GAP) + BAR_H * 0.7, lane,
                           anchor="end", size=12))
    x = LABEL_W
    parts += _panel(x, "Throughput (closed loop)", "req/s",
                    {lane: t[lane]["rps"] for lane in lanes},
                    lanes, whiskers={lane: (t[lane]["rps_min"], t[lane]["rps_max"])
                                     for lane in lanes})
    x += PANEL_W + 20
    parts += _panel(x, "p99 at max throughput", "ms",
                    {lane: t[lane]["p99_ms"] for lane in lanes}, lanes, log=True)
    x += PANEL_W + 20
    added = {}
    notes = {}
    for lane in lanes:
        s = f.get(lane)
        if s is None:
            added[lane] = None
            notes[lane] = "not measured"
        else:
            added[lane] = None if lane == "direct" else s["p99_added_ms"]
            if lane != "direct" and s["p99_added_ms"] <= 0:
                added[lane] = None
                notes[lane] = f"{s['p99_added_ms']:.3f} (not above direct)"
            elif lane == "direct":
                notes[lane] = f"baseline p99 {_fmt(s['p99_ms'], 'ms')} ms"
            elif s["saturated"]:
                notes[lane] = "(saturated)"
    rate = fixed.get("rate")
    title = f"p99 added over direct at {rate:,.0f} req/s" if rate else "p99 added (n/a)"
    parts += _panel(x, title, "ms", added, lanes, log=True, notes=notes)
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    data = json.load(open(sys.argv[1]))
    lane_order = list(data["throughput"]["median"])
    with open(sys.argv[2], "w") as out:
        out.write(svg(data, lane_order))
