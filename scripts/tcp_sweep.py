#!/usr/bin/env python3
"""Latency vs offered load over the TCP gateway: Kuku and the echo baseline.

Runs `kuku-bench tcp --echo-baseline --json` once per offered rate against a running
`kuku serve` (or an in-process node without --addr) and draws p50 and p99 of Kuku and of the
echo server against the offered rate as one SVG (log-scaled latency axis). Every run's JSON
summary is kept next to the SVG, so the plot can be checked against the numbers.

Usage:
  scripts/tcp_sweep.py --bench target/release/kuku-bench --out docs/tcp-rate-sweep.svg \
      --rates 10000,25000,50000,75000,100000 --duration 10s [--addr 127.0.0.1:7878]
"""

import argparse
import json
import math
import pathlib
import subprocess
import sys


def run_rate(bench, rate, args):
    cmd = [bench, "tcp", "--echo-baseline", "--json", "--rate", str(rate),
           "--connections", str(args.connections), "--duration", args.duration,
           "--out-dir", str(args.work / f"rate-{rate}"), "--slices", str(args.slices)]
    if args.addr:
        cmd += ["--addr", args.addr, "--secrets", args.secrets]
    print("$ " + " ".join(cmd), flush=True)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        sys.exit(f"kuku-bench failed at rate {rate}:\n{done.stderr[-2000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  achieved {summary['achieved_rate']:.0f}/s  kuku p50 {summary['p50_us']} us "
          f"p99 {summary['p99_us']} us  echo p50 {summary['echo_p50_us']} us "
          f"p99 {summary['echo_p99_us']} us  errors {summary['errors']}", flush=True)
    return summary


def svg(points, title):
    w, h, left, right, top, bottom = 760, 440, 70, 170, 40, 50
    pw, ph = w - left - right, h - top - bottom
    rates = [p["offered_rate"] for p in points]
    series = [
        ("Kuku p50", "p50_us", "#1f77b4", ""),
        ("Kuku p99", "p99_us", "#1f77b4", "6,4"),
        ("echo p50", "echo_p50_us", "#7f7f7f", ""),
        ("echo p99", "echo_p99_us", "#7f7f7f", "6,4"),
    ]
    values = [p[key] for p in points for _, key, _, _ in series if p.get(key)]
    lo = 10 ** math.floor(math.log10(max(min(values), 1e-3)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    x_max = max(rates) * 1.05

    def x(rate):
        return left + pw * rate / x_max

    def y(us):
        return top + ph * (1 - (math.log10(us) - math.log10(lo)) /
                           (math.log10(hi) - math.log10(lo)))

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           'font-family="sans-serif" font-size="12">',
           '<rect width="100%" height="100%" fill="white"/>',
           f'<text x="{left}" y="22" font-size="14">{title}</text>',
           f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>']
    decade = lo
    while decade <= hi:
        yy = y(decade)
        out.append(f'<line x1="{left}" y1="{yy:.1f}" x2="{left + pw}" y2="{yy:.1f}" '
                   'stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{yy + 4:.1f}" text-anchor="end">{decade:g}</text>')
        decade *= 10
    for rate in rates:
        xx = x(rate)
        out.append(f'<line x1="{xx:.1f}" y1="{top}" x2="{xx:.1f}" y2="{top + ph}" stroke="#eee"/>')
        out.append(f'<text x="{xx:.1f}" y="{top + ph + 16}" text-anchor="middle">'
                   f'{rate // 1000}k</text>')
    out.append(f'<text x="{left + pw / 2}" y="{h - 8}" text-anchor="middle">'
               'offered orders per second (8 connections, open loop)</text>')
    out.append(f'<text x="16" y="{top + ph / 2}" text-anchor="middle" '
               f'transform="rotate(-90 16 {top + ph / 2})">latency, microseconds (log)</text>')
    for i, (name, key, colour, dash) in enumerate(series):
        pts = [(x(p["offered_rate"]), y(p[key])) for p in points if p.get(key)]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2" '
                   f'stroke-dasharray="{dash}"/>')
        for px, py in pts:
            out.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}"/>')
        ly = top + 10 + 20 * i
        out.append(f'<line x1="{left + pw + 14}" y1="{ly}" x2="{left + pw + 44}" y2="{ly}" '
                   f'stroke="{colour}" stroke-width="2" stroke-dasharray="{dash}"/>')
        out.append(f'<text x="{left + pw + 50}" y="{ly + 4}">{name}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bench", default="target/release/kuku-bench")
    p.add_argument("--out", type=pathlib.Path, default=pathlib.Path("docs/tcp-rate-sweep.svg"))
    p.add_argument("--rates", default="10000,25000,50000,75000,100000")
    p.add_argument("--duration", default="10s")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--slices", type=int, default=1,
                   help="passed to kuku-bench tcp: echo and Kuku alternate in this many slices")
    p.add_argument("--addr")
    p.add_argument("--secrets", default="kuku-data/gateway-secrets.toml")
    p.add_argument("--title", default="kuku-bench tcp: order-to-ack latency vs offered load")
    p.add_argument("--plot-only", nargs="+", metavar="SWEEP_JSON",
                   help="draw the SVG from earlier runs' sweep.json files instead of running "
                        "(e.g. one run per rate, each against a freshly started node)")
    args = p.parse_args()
    if args.plot_only:
        points = [pt for f in args.plot_only for pt in json.loads(pathlib.Path(f).read_text())]
        points.sort(key=lambda pt: pt["offered_rate"])
        args.out.write_text(svg(points, args.title))
        print(f"wrote {args.out} from {len(points)} runs")
        return
    args.work = args.out.with_suffix("")
    args.work = args.work.parent / (args.work.name + "-runs")
    args.work.mkdir(parents=True, exist_ok=True)
    points = [run_rate(args.bench, int(r), args) for r in args.rates.split(",")]
    (args.work / "sweep.json").write_text(json.dumps(points, indent=1) + "\n")
    args.out.write_text(svg(points, args.title))
    print(f"wrote {args.out} and {args.work}/sweep.json")


if __name__ == "__main__":
    main()
