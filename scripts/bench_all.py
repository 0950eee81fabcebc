"""``scripts/bench all``: every benchmark, one after another, each in its own process, and one
JSON file of all results (``--out``, default ``.bench/all-<UTC time>.json``); then the plot of
ingest rate and proof time against chain size (``docs/bench-scale.png``).

Also the dispatch of ``scripts/bench proofs`` / ``scale`` (scripts/bench_scale.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
ORDER = ["ingest", "present", "http", "approve", "cluster", "catchup", "audit", "scale"]


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "platform": platform.platform(), "load_avg_at_start": os.getloadavg()}


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"machine": machine(), "started": time.strftime(
        "%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": {}, "seconds": {}}
    dest = args.out or (args.cache / time.strftime("all-%Y%m%dT%H%M%SZ.json", time.gmtime()))
    dest.parent.mkdir(parents=True, exist_ok=True)
    for what in ORDER:
        cmd = [sys.executable, str(HERE / "benchmarks.py"), what, "--json",
               "--cache", str(args.cache)]
        if what == "scale" and args.sizes:
            cmd += ["--sizes", args.sizes]
        print(f"== {what}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
        out["seconds"][what] = round(time.perf_counter() - t, 1)
        if done.returncode != 0:
            out["results"][what] = {"error": done.stderr[-2000:]}
            print(f"   failed: {done.stderr[-500:]}", file=sys.stderr, flush=True)
        else:
            text = done.stdout
            out["results"][what] = json.loads(text[text.index("{"):])
        dest.write_text(json.dumps(out, indent=2))  # partial results survive a later failure
    out["load_avg_at_end"] = os.getloadavg()
    dest.write_text(json.dumps(out, indent=2))
    print(f"wrote {dest}", file=sys.stderr)
    if "error" not in out["results"].get("scale", {"error": 1}):
        from bench_plot import plot

        plot(out["results"]["scale"], args.cache, ROOT / "docs" / "bench-scale.png")
    return out


def summary(out: dict[str, Any]) -> None:
    """One line per target: measured ratio, target, met or missed."""
    r = out["results"]

    def get(what: str, key: str) -> float | None:
        v = r.get(what, {}).get(key)
        return None if v is None else float(v)

    scale = r.get("scale", {})
    sizes = scale.get("sizes", {})
    big = sizes.get(str(max((int(s) for s in sizes), default=0)), {})
    mem_big, mem_ref = scale.get("memory_ratio_sizes", [10_000_000, 1_000_000])
    rows = [
        ("solo durable ingest / one core verify", get("ingest", "ingest_ratio"), ">=", 1.0),
        ("3-agency cluster / one core verify", get("cluster", "cluster_ratio"), ">=", 0.35),
        ("presentation verify / sd-jwt reference",
         get("present", "present_ratio_es256_holder"), ">=", 2.0),
        ("inclusion proof median at biggest size, ms", big.get("inclusion_median_ms"), "<=",
         1.0),
        ("inclusion proof: pymerkle SQLite 1M / ours", scale.get("proofs_vs_pymerkle"), ">=",
         10.0),
        ("audit replay / one core verify", get("audit", "audit_ratio"), ">=", 1.6),
        (f"peak RSS at {mem_big:,} / at {mem_ref:,}", scale.get("memory_ratio_biggest_vs_1m"),
         "<=", 1.2),
    ]
    for name, value, op, target in rows:
        if value is None:
            print(f"{name:45} {'n/a':>8}   target {op} {target}")
            continue
        ok = value >= target if op == ">=" else value <= target
        print(f"{name:45} {value:8.3f}   target {op} {target}   {'met' if ok else 'MISSED'}")


def dispatch(args: argparse.Namespace) -> None:
    """``proofs`` / ``scale`` / ``all`` from scripts/benchmarks.py's argument parser."""
    import bench_scale

    if args.what == "all":
        out = run_all(args)
        if args.json:
            print(json.dumps(out, indent=2))
        else:
            summary(out)
        return
    default = "1000000,10000000" if args.what == "proofs" else ",".join(
        str(s) for s in bench_scale.SIZES)
    sizes = [int(s) for s in (args.sizes or default).split(",")]
    # the ingest on top of each chain: --n, at most 2,000 (proofs) or 20,000 (scale)
    got = bench_scale.bench_scale(args.cache, sizes,
                                  min(args.n, 2000 if args.what == "proofs" else 20_000))
    if args.json:
        print(json.dumps(got, indent=2))
    elif args.what == "proofs":
        bench_scale.report_proofs(got)
    else:
        bench_scale.report_scale(got)
