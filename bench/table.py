#!/usr/bin/env python3
"""Turn the raw reports bench/compare.sh writes into one markdown table.

Usage: bench/table.py DIR

DIR holds <system>-<workload>-<clients>.json (the JSON of kvctl bench and
etcdload), rss.json and meta.txt. Every cell is "cubekv / etcd (ratio)", the
ratio being cubekv/etcd for throughput and latency alike: a throughput ratio
above 1 and a latency ratio below 1 favour cubekv. "server CPU µs/op" is the
user+system CPU time of the three server processes during the point divided by
the operations completed (when compare.sh recorded it).
"""

import glob
import json
import os
import re
import sys

# (workload, clients, metric, bound, kind): kind "min" wants ratio >= bound, "max" ratio <= bound.
# TARGETS hold on the fast disk; SLOW_TARGETS when compare.sh ran with --fsync-delay (the p50 bound
# at one client depends on the log store: raft-boltdb syncs twice per append, raft-wal once).
SLOW_TARGETS = {
    "bolt": [("put", 16, "ops_per_sec", 1.5, "min"), ("put", 64, "ops_per_sec", 1.5, "min"),
             ("put", 1, "p50", 2.0, "max")],
    "wal": [("put", 16, "ops_per_sec", 1.5, "min"), ("put", 64, "ops_per_sec", 1.5, "min"),
            ("put", 1, "p50", 1.4, "max")],
}
TARGETS = [
    ("put", 64, "ops_per_sec", 3.0, "min"),
    ("put", 256, "ops_per_sec", 4.0, "min"),
    ("get", 64, "ops_per_sec", 5.0, "min"),
    ("put", 64, "p99", 0.5, "max"),
    ("get", 64, "p99", 0.5, "max"),
    ("put", 1, "p50", 1.0, "max"),
]


def load(d):
    reports = {}
    for path in glob.glob(os.path.join(d, "*-*-*.json")):
        m = re.match(r"(cubekv|etcd)-(\w+)-(\d+)\.json$", os.path.basename(path))
        if not m:
            continue
        with open(path) as f:
            reports[(m.group(1), m.group(2), int(m.group(3)))] = json.load(f)
    return reports


def metric(r, name):
    if name == "ops_per_sec":
        return r["ops_per_sec"]
    return r["latency_us"][name]


def fmt_ops(v):
    return f"{v:,.0f}"


def fmt_us(v):
    if v < 1000:
        return f"{v:.0f}µs"
    if v < 1e6:
        return f"{v / 1e3:.2f}ms"
    return f"{v / 1e6:.2f}s"


def ratio(a, b):
    return a / b if b else float("inf")


def main():
    d = sys.argv[1]
    reports = load(d)
    out = []
    meta = ""
    if os.path.exists(os.path.join(d, "meta.txt")):
        with open(os.path.join(d, "meta.txt")) as f:
            meta = f.read()
        out += ["```", meta.rstrip(), "```", ""]
    targets = TARGETS
    delay = re.search(r"^fsync delay: (\S+)", meta, re.M)
    if delay and delay.group(1) != "none":
        store = re.search(r"^log store: (\S+)", meta, re.M)
        targets = SLOW_TARGETS.get(store.group(1) if store else "bolt", SLOW_TARGETS["bolt"])
    out.append("Each cell: cubekv / etcd (cubekv/etcd). Throughput ratio > 1 and latency ratio < 1 favour cubekv.")
    out.append("")
    cols = [("ops_per_sec", "ops/s", fmt_ops), ("p50", "p50", fmt_us), ("p90", "p90", fmt_us),
            ("p99", "p99", fmt_us), ("p999", "p99.9", fmt_us), ("max", "max", fmt_us)]
    out.append("| workload | clients | " + " | ".join(c[1] for c in cols)
               + " | server CPU µs/op | errors (cubekv/etcd) | load after (cubekv; etcd) |")
    out.append("|---|---|" + "---|" * len(cols) + "---|---|---|")
    points = sorted({(w, c) for (_, w, c) in reports}, key=lambda p: (p[0] != "put", p[1]))
    for w, c in points:
        cube, etcd = reports.get(("cubekv", w, c)), reports.get(("etcd", w, c))
        if not cube or not etcd:
            continue
        cells = []
        for key, _, f in cols:
            a, b = metric(cube, key), metric(etcd, key)
            cells.append(f"{f(a)} / {f(b)} ({ratio(a, b):.2f}x)")
        if "server_cpu_ms" in cube and "server_cpu_ms" in etcd and cube["ops"] and etcd["ops"]:
            a, b = cube["server_cpu_ms"] * 1e3 / cube["ops"], etcd["server_cpu_ms"] * 1e3 / etcd["ops"]
            cells.append(f"{a:.0f} / {b:.0f} ({ratio(a, b):.2f}x)")
        else:
            cells.append("-")
        name = w if w != "get" else "get (linearizable)"
        out.append(f"| {name} | {c} | " + " | ".join(cells)
                   + f" | {cube['errors']}/{etcd['errors']} | {cube.get('load_after', '?')}; {etcd.get('load_after', '?')} |")
    rss_path = os.path.join(d, "rss.json")
    if os.path.exists(rss_path):
        with open(rss_path) as f:
            rss = json.load(f)
        a, b = rss["cubekv_kb_per_node"], rss["etcd_kb_per_node"]
        out += ["", f"RSS per node after loading {rss['keys']:,} keys: cubekv {a / 1024:.1f} MiB / etcd {b / 1024:.1f} MiB ({ratio(a, b):.2f}x)"]
        if rss.get("cubekv_load_errors") or rss.get("etcd_load_errors"):
            out.append(f"(failed puts while loading: cubekv {rss.get('cubekv_load_errors')}, etcd {rss.get('etcd_load_errors')})")
    out += ["", "| target | bound | measured | met |", "|---|---|---|---|"]
    for w, c, m, bound, kind in targets:
        cube, etcd = reports.get(("cubekv", w, c)), reports.get(("etcd", w, c))
        if not cube or not etcd:
            continue
        r = ratio(metric(cube, m), metric(etcd, m))
        ok = r >= bound if kind == "min" else r <= bound
        sign = ">=" if kind == "min" else "<="
        out.append(f"| {w} {m} at {c} clients | {sign} {bound}x | {r:.2f}x | {'yes' if ok else 'no'} |")
    if os.path.exists(rss_path) and targets is TARGETS:
        r = ratio(rss["cubekv_kb_per_node"], rss["etcd_kb_per_node"])
        out.append(f"| RSS per node, {rss['keys']:,} keys | <= 0.5x | {r:.2f}x | {'yes' if r <= 0.5 else 'no'} |")
    print("\n".join(out))


if __name__ == "__main__":
    main()
