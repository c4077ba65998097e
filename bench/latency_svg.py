#!/usr/bin/env python3
"""Latency CDF, before vs after, as a self-contained SVG (no plotting library).

  latency_svg.py --out FILE.svg [--class critical] [--title T] LABEL=DUMP [LABEL=DUMP ...]

Each DUMP is a file of lines "<class> <ms> <ok 0|1>" (tests/progs/payments --dump). Only
lines of --class are drawn (all requests, failed ones included, as in the percentiles the
client prints). x: latency in ms, log scale; y: fraction of requests at or below it.
Dashed lines mark p50, p95 and p99; the legend gives each curve's p50/p99 and count.
"""
import argparse
import math
import sys

COLORS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd"]
W, H = 860, 520
ML, MR, MT, MB = 70, 30, 50, 60


def load(path, cls):
    v = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) >= 2 and p[0] == cls:
                try:
                    v.append(float(p[1]))
                except ValueError:
                    pass
    v.sort()
    return v


def pct(v, p):
    if not v:
        return 0.0
    k = max(1, min(len(v), math.ceil(p / 100.0 * len(v))))
    return v[k - 1]


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def fmt_ms(x):
    if x >= 100:
        return "%.0f" % x
    if x >= 10:
        return "%.1f" % x
    if x >= 1:
        return "%.2f" % x
    return "%.3f" % x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--class", dest="cls", default="critical")
    ap.add_argument("--title", default="")
    ap.add_argument("series", nargs="+", help="LABEL=DUMP")
    a = ap.parse_args()

    series = []
    for s in a.series:
        if "=" not in s:
            sys.exit("latency_svg.py: want LABEL=DUMP, got %r" % s)
        label, path = s.split("=", 1)
        series.append((label, load(path, a.cls)))
    allv = [x for _, v in series for x in v if x > 0]
    if not allv:
        sys.exit("latency_svg.py: no '%s' samples" % a.cls)
    lo = 10 ** math.floor(math.log10(min(allv)))
    hi = 10 ** math.ceil(math.log10(max(allv)))
    if hi <= lo:
        hi = lo * 10
    pw, ph = W - ML - MR, H - MT - MB

    def X(ms):
        ms = min(max(ms, lo), hi)
        return ML + (math.log10(ms) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * pw

    def Y(f):
        return MT + (1 - f) * ph

    o = []
    o.append('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" '
             'viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">' % (W, H, W, H))
    o.append('<rect width="100%" height="100%" fill="white"/>')
    title = a.title or "CDF of %s request latency" % a.cls
    o.append('<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>' % (ML, esc(title)))
    # grid and x labels: 1, 2, 5 per decade
    d = lo
    while d <= hi * 1.0001:
        for m in (1, 2, 5):
            x = d * m
            if x < lo * 0.9999 or x > hi * 1.0001:
                continue
            px = X(x)
            major = m == 1
            o.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="1"/>'
                     % (px, MT, px, MT + ph, "#bbb" if major else "#e5e5e5"))
            o.append('<text x="%.1f" y="%d" text-anchor="middle" fill="#333">%s</text>'
                     % (px, MT + ph + 18, fmt_ms(x)))
        d *= 10
    for f in (0, 0.25, 0.5, 0.75, 1.0):
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#e5e5e5"/>' % (ML, Y(f), ML + pw, Y(f)))
        o.append('<text x="%d" y="%.1f" text-anchor="end" fill="#333">%.2f</text>' % (ML - 6, Y(f) + 4, f))
    for p in (50, 95, 99):
        f = p / 100.0
        o.append('<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#888" stroke-dasharray="4,4"/>'
                 % (ML, Y(f), ML + pw, Y(f)))
        o.append('<text x="%d" y="%.1f" fill="#666">p%d</text>' % (ML + 6, Y(f) - 3, p))
    o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>' % (ML, MT, pw, ph))
    o.append('<text x="%d" y="%d" text-anchor="middle">latency, ms (log scale)</text>'
             % (ML + pw // 2, H - 18))
    o.append('<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">'
             'fraction of requests &#8804; latency</text>' % (MT + ph // 2, MT + ph // 2))

    legend = []
    # curves (at most ~2000 points each: evenly spaced ranks plus the tail)
    for i, (label, v) in enumerate(series):
        if not v:
            continue
        n = len(v)
        step = max(1, n // 1500)
        ks = list(range(0, n, step))
        tail = max(0, n - 200)
        ks = sorted(set(ks + list(range(tail, n))))
        pts = []
        prev_y = 0.0
        for k in ks:
            x = X(max(v[k], lo))
            y = (k + 1) / n
            pts.append("%.1f,%.1f" % (x, Y(prev_y)))
            pts.append("%.1f,%.1f" % (x, Y(y)))
            prev_y = y
        c = COLORS[i % len(COLORS)]
        o.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (c, " ".join(pts)))
        for p in (50, 99):
            px, py = X(max(pct(v, p), lo)), Y(p / 100.0)
            o.append('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>' % (px, py, c))
        legend.append((c, "%s: p50 %s ms, p99 %s ms, n = %d"
                       % (label, fmt_ms(pct(v, 50)), fmt_ms(pct(v, 99)), n)))
    # legend: bottom right, where a CDF has little ink, on a white box
    if legend:
        bw = 36 + int(6.8 * max(len(t) for _, t in legend))
        lx, ly0 = ML + pw - bw, MT + ph - 12 - 18 * len(legend)
        o.append('<rect x="%d" y="%d" width="%d" height="%d" fill="white" stroke="#999"/>'
                 % (lx - 8, ly0, bw, 18 * len(legend) + 8))
        for j, (c, text) in enumerate(legend):
            ly = ly0 + 18 + j * 18
            o.append('<rect x="%d" y="%d" width="14" height="4" fill="%s"/>' % (lx, ly - 6, c))
            o.append('<text x="%d" y="%d">%s</text>' % (lx + 20, ly, esc(text)))
    o.append("</svg>")
    with open(a.out, "w") as f:
        f.write("\n".join(o) + "\n")


if __name__ == "__main__":
    main()
