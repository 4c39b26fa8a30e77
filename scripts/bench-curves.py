#!/usr/bin/env python3
"""Draws aemp-bench scale curves as an SVG, with nothing but the standard library.

Reads `RESULT <workload> <figure> <value> <unit>` lines (the output of `aemp-bench`) from the
files named on the command line, or from stdin, and plots whatever it finds of:

* S1 (`formation@n<N>k<K>`, `reattach@...`, `rss_per_conn@...`, `idle_cpu@...`): nodes N
  against formation and re-attachment time, and against RSS per connection on a global node,
  one line per seed count K;
* R5 (`cpu_per_mreq@<rate>`, `p50@<rate>`, `p99@<rate>`, `achieved_rate@<rate>`): request
  rate against CPU per request (and the latencies, if present).

Several values of one point (repeated runs) are drawn as their median. Other lines are
ignored. Usage: scripts/bench-curves.py [-o docs/bench-curves.svg] [results.txt ...]
"""

import math
import re
import statistics
import sys
from collections import defaultdict

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def rate_value(s):
    """'1k' -> 1000, '2.5m' -> 2500000, '300' -> 300."""
    m = re.fullmatch(r"([0-9.]+)([kKmM]?)", s)
    if not m:
        return None
    mult = {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    return float(m.group(1)) * mult


def parse(lines):
    s1 = defaultdict(list)  # (figure, k, n) -> values
    r5 = defaultdict(list)  # (figure, nominal rate) -> values
    units = {}
    for line in lines:
        f = line.split()
        if len(f) < 5 or f[0] != "RESULT":
            continue
        work, fig, unit = f[1], f[2], f[4]
        try:
            v = float(f[3])
        except ValueError:
            continue
        name, _, at = fig.partition("@")
        if work == "S1":
            m = re.fullmatch(r"n(\d+)k(\d+)", at)
            if m:
                s1[(name, int(m.group(2)), int(m.group(1)))].append(v)
                units[("S1", name)] = unit
        elif work == "R5" or work.startswith("R5-"):
            # "R5" is aemp; "R5-<system>" the same workload run by another system (the
            # Erlang/OTP counterpart's lines relabelled, e.g. with sed 's/R5/R5-erlang/').
            r = rate_value(at)
            if r is not None:
                system = work[3:] or "aemp"
                r5[(system, name, r)].append(v)
                units[("R5", name)] = unit
    med = lambda d: {k: statistics.median(v) for k, v in d.items()}
    return med(s1), med(r5), units


def nice_ticks(lo, hi, n=5):
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    # From the step at or below lo to the first step at or above hi.
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def fmt(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def panel(out, x0, y0, w, h, title, xlabel, ylabel, series, logx=False):
    """One chart at (x0, y0) of size w x h; series = [(label, [(x, y), ...], dashed)]."""
    pts = [p for _, ps, _ in series for p in ps]
    if not pts:
        return
    rows = (len(series) + 1) // 2
    ml, mr, mt, mb = 62, 12, 26, 44 + 15 * rows
    pw, ph = w - ml - mr, h - mt - mb
    xs = [p[0] for p in pts]
    ys = [p[1] for p in pts]
    if logx:
        lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
        if hi == lo:
            hi += 1
        xticks = [10**e for e in range(lo, hi + 1)]
        # Also mark the x values themselves when there are only a few.
        extra = sorted(set(xs)) if len(set(xs)) <= 6 else []
        fx = lambda v: x0 + ml + (math.log10(v) - lo) / (hi - lo) * pw
    else:
        xticks = nice_ticks(0, max(xs))
        extra = []
        fx = lambda v: x0 + ml + v / xticks[-1] * pw
    yticks = nice_ticks(0, max(ys) * 1.05)
    fy = lambda v: y0 + mt + ph - v / yticks[-1] * ph
    out.append(
        f'<text x="{x0 + w / 2}" y="{y0 + 16}" text-anchor="middle" '
        f'font-weight="bold">{esc(title)}</text>'
    )
    out.append(
        f'<rect x="{x0 + ml}" y="{y0 + mt}" width="{pw}" height="{ph}" '
        f'fill="none" stroke="#888"/>'
    )
    for t in yticks:
        y = fy(t)
        out.append(
            f'<line x1="{x0 + ml}" x2="{x0 + ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x0 + ml - 4}" y="{y + 4:.1f}" text-anchor="end">{fmt(t)}</text>'
        )
    for t in sorted(set(xticks) | set(extra)):
        x = fx(t)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y0 + mt}" y2="{y0 + mt + ph}" stroke="#eee"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{y0 + mt + ph + 14}" text-anchor="middle">{fmt(t)}</text>'
        )
    out.append(
        f'<text x="{x0 + ml + pw / 2}" y="{y0 + mt + ph + 30}" text-anchor="middle">'
        f"{esc(xlabel)}</text>"
    )
    out.append(
        f'<text transform="translate({x0 + 14},{y0 + mt + ph / 2}) rotate(-90)" '
        f'text-anchor="middle">{esc(ylabel)}</text>'
    )
    for i, (label, ps, dashed) in enumerate(series):
        if not ps:
            continue
        c = COLOURS[i % len(COLOURS)]
        ps = sorted(ps)
        d = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in ps)
        dash = ' stroke-dasharray="5,3"' if dashed else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{dash}/>')
        for x, y in ps:
            out.append(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{c}"/>')
        # The legend: two columns under the x axis label.
        ly = y0 + mt + ph + 50 + 15 * (i // 2)
        lx = x0 + ml + (i % 2) * (pw // 2)
        out.append(
            f'<line x1="{lx}" x2="{lx + 18}" y1="{ly - 4}" y2="{ly - 4}" stroke="{c}" '
            f'stroke-width="2"{dash}/>'
        )
        out.append(f'<text x="{lx + 22}" y="{ly}">{esc(label)}</text>')


def main():
    args = sys.argv[1:]
    out_path = "docs/bench-curves.svg"
    if len(args) >= 2 and args[0] == "-o":
        out_path, args = args[1], args[2:]
    lines = []
    if args:
        for p in args:
            with open(p) as f:
                lines += f.readlines()
    else:
        lines = sys.stdin.readlines()
    s1, r5, units = parse(lines)

    panels = []
    seeds = sorted({k for (_, k, _) in s1})
    if s1:
        series = []
        for k in seeds:
            for name, label, dashed in (
                ("formation", "formation", False),
                ("reattach", "re-attach", True),
            ):
                ps = [(n, v) for (f, kk, n), v in s1.items() if f == name and kk == k]
                if ps:
                    series.append((f"{label}, {k} seed{'s' if k > 1 else ''}", ps, dashed))
        panels.append(("S1: time until every node is in", "slave nodes", "seconds", series, True))
        series = []
        for k in seeds:
            ps = [(n, v / 1024) for (f, kk, n), v in s1.items() if f == "rss_per_conn" and kk == k]
            if ps:
                series.append((f"{k} seed{'s' if k > 1 else ''}", ps, False))
        if series:
            panels.append(
                ("S1: RSS per connection, global node", "slave nodes", "KiB", series, True)
            )
    if r5:
        systems = sorted({sys_ for (sys_, _, _) in r5}, key=lambda x: (x != "aemp", x))
        by_rate = lambda system, name: [
            (r, v) for (sy, f, r), v in r5.items() if sy == system and f == name
        ]
        # Nominal rates on the x axis: a system that could not keep a rate shows it in its
        # latency, not by moving its point.
        series = []
        for system in systems:
            cpu = by_rate(system, "cpu_per_mreq")
            if cpu:
                # CPU seconds per million requests = CPU microseconds per request.
                series.append((f"{system}: CPU per request", cpu, system != "aemp"))
        if series:
            panels.append(("R5: CPU per request", "requests/s", "CPU us per request", series, True))
        lat = []
        for name in ("p50", "p99"):
            ps = by_rate("aemp", name)
            if ps:
                lat.append((f"aemp {name}", ps, name == "p99"))
        if lat:
            unit = units.get(("R5", "p50"), units.get(("R5", "p99"), ""))
            panels.append(("R5: aemp latency", "requests/s", unit, lat, True))
    if not panels:
        sys.exit("bench-curves: no S1 or R5 results in the input")

    pw, ph, cols = 440, 300, 2
    rows = (len(panels) + cols - 1) // cols
    width, height = pw * min(cols, len(panels)), ph * rows
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
    ]
    for i, (title, xl, yl, series, logx) in enumerate(panels):
        panel(out, (i % cols) * pw, (i // cols) * ph, pw, ph, title, xl, yl, series, logx)
    out.append("</svg>")
    with open(out_path, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"bench-curves: {len(panels)} chart(s) written to {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
