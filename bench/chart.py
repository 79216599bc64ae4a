#!/usr/bin/env python3
"""Draw ops/s and p99 latency against clients, for cubekv and etcd, as SVG.

Usage: bench/chart.py INPUT [INPUT...] -o OUT.svg [--points OUT.json] [--title TEXT]

Each INPUT is a raw directory written by bench/compare.sh (its
<system>-<workload>-<clients>.json reports and meta.txt) or a points file
saved earlier with --points (the figures the chart needs, small enough to
commit beside the table). Several inputs go on one chart, one line per
system and input: the fast and the delayed-fsync disk of the same
comparison, say. Each workload found gets a row of two panels, ops/s and p99,
with both axes logarithmic. No third-party packages: the SVG is written by
hand.

--points needs exactly one INPUT and saves its figures as JSON.
"""

import argparse
import glob
import json
import math
import os
import re
import sys

COLORS = {"cubekv": "#1f77b4", "etcd": "#d62728"}
DASHES = ["", "6,4", "2,3", "10,3,2,3"]


def label_of(meta):
    m = re.search(r"^fsync delay: (\S+)", meta, re.M)
    disk = f"fsync +{m.group(1)}" if m and m.group(1) not in ("none", "0") else "fast disk"
    m = re.search(r"^log store: (\S+)", meta, re.M)
    if m and m.group(1) != "bolt":
        disk += f", {m.group(1)}"
    return disk


def load_input(path):
    """Returns {"label": str, "points": [{system, workload, clients, ops_per_sec, p50_us, p99_us}]}."""
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    meta = ""
    if os.path.exists(os.path.join(path, "meta.txt")):
        with open(os.path.join(path, "meta.txt")) as f:
            meta = f.read()
    points = []
    for p in glob.glob(os.path.join(path, "*-*-*.json")):
        m = re.match(r"(cubekv|etcd)-(\w+)-(\d+)\.json$", os.path.basename(p))
        if not m:
            continue
        with open(p) as f:
            r = json.load(f)
        points.append({"system": m.group(1), "workload": m.group(2), "clients": int(m.group(3)),
                       "ops_per_sec": r["ops_per_sec"], "p50_us": r["latency_us"]["p50"],
                       "p99_us": r["latency_us"]["p99"], "load_after": r.get("load_after", "")})
    points.sort(key=lambda p: (p["system"], p["workload"], p["clients"]))
    return {"label": label_of(meta), "meta": meta, "points": points}


def log_ticks(lo, hi):
    ticks = []
    e = math.floor(math.log10(lo))
    while 10 ** e <= hi * 1.0001:
        for m in (1, 2, 5):
            v = m * 10 ** e
            if lo / 1.0001 <= v <= hi * 1.0001:
                ticks.append(v)
        e += 1
    return ticks


def fmt_tick(v, unit):
    if unit == "ms":
        return f"{v:g}"
    if v >= 1000:
        return f"{v / 1000:g}k"
    return f"{v:g}"


def panel(out, x0, y0, w, h, title, series, clients, unit):
    """series: [(label, color, dash, [(clients, value)])]"""
    vals = [v for _, _, _, pts in series for _, v in pts if v > 0]
    if not vals:
        return
    lo, hi = min(vals), max(vals)
    lo, hi = 10 ** math.floor(math.log10(lo)), 10 ** math.ceil(math.log10(hi))
    if lo == hi:
        hi = lo * 10
    ml, mr, mt, mb = 58, 10, 24, 34
    pw, ph = w - ml - mr, h - mt - mb
    xs = {c: x0 + ml + (i * pw / max(1, len(clients) - 1)) for i, c in enumerate(clients)}

    def y(v):
        return y0 + mt + ph - (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) * ph

    out.append(f'<text x="{x0 + ml + pw / 2}" y="{y0 + 16}" text-anchor="middle" font-weight="bold">{title}</text>')
    out.append(f'<rect x="{x0 + ml}" y="{y0 + mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for t in log_ticks(lo, hi):
        yy = y(t)
        out.append(f'<line x1="{x0 + ml}" y1="{yy:.1f}" x2="{x0 + ml + pw}" y2="{yy:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + ml - 4}" y="{yy + 4:.1f}" text-anchor="end">{fmt_tick(t, unit)}</text>')
    for c, xx in xs.items():
        out.append(f'<line x1="{xx:.1f}" y1="{y0 + mt}" x2="{xx:.1f}" y2="{y0 + mt + ph}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{y0 + mt + ph + 14}" text-anchor="middle">{c}</text>')
    out.append(f'<text x="{x0 + ml + pw / 2}" y="{y0 + h - 4}" text-anchor="middle">clients</text>')
    out.append(f'<text x="{x0 + 12}" y="{y0 + mt + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 {x0 + 12} {y0 + mt + ph / 2})">{unit}</text>')
    for _, color, dash, pts in series:
        pts = [(c, v) for c, v in pts if v > 0 and c in xs]
        if not pts:
            continue
        d = " ".join(f"{xs[c]:.1f},{y(v):.1f}" for c, v in pts)
        dattr = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline points="{d}" fill="none" stroke="{color}" stroke-width="2"{dattr}/>')
        for c, v in pts:
            out.append(f'<circle cx="{xs[c]:.1f}" cy="{y(v):.1f}" r="3" fill="{color}"/>')


def chart(inputs, title):
    workloads = sorted({p["workload"] for i in inputs for p in i["points"]}, key=lambda w: (w != "put", w))
    clients = sorted({p["clients"] for i in inputs for p in i["points"]})
    pw, ph = 420, 280
    legend_h = 22 * (len(inputs) * 2) // 2 + 30
    width, height = 2 * pw + 20, 40 + len(workloads) * ph + legend_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">{title}</text>']
    for row, wl in enumerate(workloads):
        for col, (metric, unit, scale) in enumerate([("ops_per_sec", "ops/s", 1), ("p99_us", "ms", 1e-3)]):
            series = []
            for k, inp in enumerate(inputs):
                for sysname in ("cubekv", "etcd"):
                    pts = [(p["clients"], p[metric] * scale) for p in inp["points"]
                           if p["system"] == sysname and p["workload"] == wl]
                    series.append((f"{sysname}, {inp['label']}", COLORS[sysname], DASHES[k % len(DASHES)], sorted(pts)))
            name = "get (linearizable)" if wl == "get" else wl
            what = "ops/s" if metric == "ops_per_sec" else "p99 latency"
            panel(out, 10 + col * pw, 30 + row * ph, pw, ph, f"{name}: {what}", series, clients, unit)
    y = 40 + len(workloads) * ph
    k = 0
    for i, inp in enumerate(inputs):
        for sysname in ("cubekv", "etcd"):
            xx = 20 + (k % 2) * pw
            yy = y + (k // 2) * 22
            dash = DASHES[i % len(DASHES)]
            dattr = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{xx}" y1="{yy}" x2="{xx + 40}" y2="{yy}" stroke="{COLORS[sysname]}" stroke-width="2"{dattr}/>')
            out.append(f'<text x="{xx + 48}" y="{yy + 4}">{sysname}, {inp["label"]}</text>')
            k += 1
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("inputs", nargs="+")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--points", help="save the figures of the single INPUT here as JSON")
    ap.add_argument("--title", default="cubekv vs etcd, 3 nodes on one machine")
    a = ap.parse_args()
    inputs = [load_input(p) for p in a.inputs]
    if a.points:
        if len(inputs) != 1:
            sys.exit("--points needs exactly one input")
        with open(a.points, "w") as f:
            json.dump(inputs[0], f, indent=1)
            f.write("\n")
    with open(a.out, "w") as f:
        f.write(chart(inputs, a.title))


if __name__ == "__main__":
    main()
