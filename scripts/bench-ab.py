#!/usr/bin/env python3
"""Interleaved A/B runs of `kuku-bench engine` builds: same flow, same machine, same minutes.

Usage:
    scripts/bench-ab.py --pairs 8 --label old=PATH --label new=PATH [-- ENGINE ARGS...]

Each round runs every binary once (`kuku-bench engine ENGINE ARGS --json`), in an order that
rotates from round to round so that no build always runs first. Each run's median ops/s per
engine is read from its JSON line. Printed: per label and engine the median over rounds and
the range; then, for every pair of labels, the per-round ratios of each engine and their
median (a ratio of two runs a few seconds apart cancels most of a noisy host's drift); and per
label the same-run ratios the floors use (kuku / the faster peer, kuku_full / kuku). Only the
standard library; writes nothing but its report (and `--raw FILE`, one JSON line per run).
"""

import argparse
import json
import statistics
import subprocess
import sys


def run(binary, engine_args):
    out = subprocess.run(
        [binary, "engine", *engine_args, "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    report = json.loads(out.strip().splitlines()[-1])
    return report, {
        e["name"]: statistics.median(e["ops_per_s"]) for e in report["engines"]
    }


def ratio_line(values):
    return f"median {statistics.median(values):.3f} (range {min(values):.3f}-{max(values):.3f})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=8, help="rounds (each runs every binary once)")
    parser.add_argument("--label", action="append", required=True, help="NAME=PATH of a kuku-bench binary")
    parser.add_argument("--raw", help="append every run's JSON report to this file")
    parser.add_argument("engine_args", nargs="*", help="arguments after `kuku-bench engine`")
    args = parser.parse_args()
    labels = [tuple(l.split("=", 1)) for l in args.label]
    results = {name: [] for name, _ in labels}
    for round_no in range(args.pairs):
        shift = round_no % len(labels)
        for name, path in labels[shift:] + labels[:shift]:
            report, medians = run(path, args.engine_args)
            results[name].append(medians)
            if args.raw:
                with open(args.raw, "a") as raw:
                    raw.write(json.dumps({"label": name, "round": round_no, "report": report}) + "\n")
            summary = " ".join(f"{e}={v / 1e6:.2f}M" for e, v in sorted(medians.items()))
            print(f"round {round_no + 1} {name}: {summary}", flush=True)
    engines = sorted(results[labels[0][0]][0])
    print("\nops/s, median over rounds (min-max):")
    for name, _ in labels:
        for e in engines:
            values = [r[e] for r in results[name]]
            print(f"  {name:>10} {e:<12} {statistics.median(values) / 1e6:7.3f}M "
                  f"({min(values) / 1e6:.3f}-{max(values) / 1e6:.3f})")
    for i, (base, _) in enumerate(labels):
        for name, _ in labels[i + 1:]:
            print(f"\n{name} / {base}, per-round paired ratios:")
            for e in engines:
                ratios = [r[e] / b[e] for r, b in zip(results[name], results[base])]
                print(f"  {e:<12} {ratio_line(ratios)}")
    print("\nsame-run ratios (the floors):")
    for name, _ in labels:
        rows = results[name]
        if "kuku" in rows[0] and any(not k.startswith("kuku") for k in rows[0]):
            peer = [r["kuku"] / max(v for k, v in r.items() if not k.startswith("kuku")) for r in rows]
            print(f"  {name:>10} kuku / faster peer     {ratio_line(peer)}")
        if {"kuku", "kuku_full"} <= set(rows[0]):
            full = [r["kuku_full"] / r["kuku"] for r in rows]
            print(f"  {name:>10} kuku_full / kuku       {ratio_line(full)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
