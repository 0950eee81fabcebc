"""Markdown tables for BENCHMARKS.md from one or more ``scripts/bench all`` result files: each
figure as the range over the runs (``min to max``), the target and whether every run met it.

``python scripts/bench_tables.py .bench/all-A.json .bench/all-B.json``
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

Run = dict[str, Any]


def _get(run: Run, *path: str) -> float | None:
    v: Any = run["results"]
    for p in path:
        if not isinstance(v, dict) or p not in v:
            return None
        v = v[p]
    return None if v is None else float(v)


def _rng(vals: list[float | None], fmt: str) -> str:
    got = [v for v in vals if v is not None]
    if not got:
        return "n/a"
    lo, hi = min(got), max(got)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else \
        f"{fmt.format(lo)} to {fmt.format(hi)}"


def _biggest(run: Run) -> str:
    sizes = run["results"].get("scale", {}).get("sizes", {})
    return str(max((int(s) for s in sizes), default=0))


def _at_10m_and_1m(run: Run, value: float | None) -> float | None:
    """``value`` of a run whose scale figures include 1M and end at 10M: the targets compare
    those sizes, and `bench scale --sizes` of other sizes makes its ratios against the
    smallest or to a smaller biggest one (not the target's figure: "not measured")."""
    sizes = run["results"].get("scale", {}).get("sizes", {})
    return value if "1000000" in sizes and _biggest(run) == "10000000" else None


TARGETS: list[tuple[str, Callable[[Run], float | None], str, float, str]] = [
    ("solo durable ingest / one core's verify", lambda r: _get(r, "ingest", "ingest_ratio"),
     ">=", 1.0, "{:.2f}x"),
    ("3-agency cluster / one core's verify", lambda r: _get(r, "cluster", "cluster_ratio"),
     ">=", 0.35, "{:.2f}x"),
    ("full presentation verify (ES256 holder) / sd-jwt reference",
     lambda r: _get(r, "present", "present_ratio_es256_holder"), ">=", 2.0, "{:.2f}x"),
    ("full presentation verify (Ed25519 holder) / sd-jwt reference",
     lambda r: _get(r, "present", "present_ratio_ed25519_holder"), ">=", 2.0, "{:.2f}x"),
    ("inclusion proof at 10M after a cold open, median",
     lambda r: _at_10m_and_1m(r, _get(r, "scale", "sizes", _biggest(r),
                                      "inclusion_median_ms")), "<=", 1.0,
     "{:.3f} ms"),
    ("inclusion proof: pymerkle SQLite at 1M / ours at 10M",
     lambda r: _at_10m_and_1m(r, _get(r, "scale", "proofs_vs_pymerkle")), ">=", 10.0,
     "{:.0f}x"),
    ("audit replay / one core's verify", lambda r: _get(r, "audit", "audit_ratio"), ">=", 1.6,
     "{:.2f}x"),
    ("peak RSS at 10M / at 1M (whole process)",
     lambda r: _at_10m_and_1m(r, _get(r, "scale", "memory_ratio_biggest_vs_1m")), "<=", 1.2,
     "{:.2f}x"),
    ("peak anonymous memory at 10M / at 1M",
     lambda r: _at_10m_and_1m(r, _get(r, "scale", "anon_ratio_biggest_vs_1m")), "<=", 1.2,
     "{:.2f}x"),
]


def targets(runs: list[Run]) -> str:
    out = ["| figure | measured (range over runs) | target | met |", "|---|---|---|---|"]
    for name, fn, op, target, fmt in TARGETS:
        vals = [fn(r) for r in runs]
        got = [v for v in vals if v is not None]
        if not got:
            met = "not measured"
        else:
            ok = [v >= target if op == ">=" else v <= target for v in got]
            met = "met" if all(ok) else "missed" if not any(ok) else "met in some runs"
        out.append(f"| {name} | {_rng(vals, fmt)} | {op} {fmt.format(target)} | {met} |")
    return "\n".join(out)


def references(runs: list[Run]) -> str:
    rows = [
        ("one core's Ed25519 verify (ingest run)", ("ingest", "ref_verify_per_s_one_core"),
         "{:,.0f} /s"),
        ("solo durable ingest", ("ingest", "ingest_tx_per_s"), "{:,.0f} tx/s"),
        ("3-agency cluster", ("cluster", "cluster_tx_per_s"), "{:,.0f} tx/s"),
        ("cluster single-tx commit p50", ("cluster", "latency_p50_ms"), "{:.1f} ms"),
        ("cluster single-tx commit p99", ("cluster", "latency_p99_ms"), "{:.1f} ms"),
        ("cluster failover (kill one agency)", ("cluster", "failover_seconds"), "{:.2f} s"),
        ("catch-up from peers (a node stopped past retention)", ("catchup", "catchup_tx_per_s"),
         "{:,.0f} tx/s"),
        ("catch-up from peers / one core's verify", ("catchup", "catchup_ratio"), "{:.2f}x"),
        ("sd-jwt reference SD-JWT+KB verify", ("present", "reference_sdjwt_per_s"), "{:,.0f} /s"),
        ("ours, full envelope, ES256 holder", ("present", "present_es256_holder_per_s"),
         "{:,.0f} /s"),
        ("ours, full envelope, Ed25519 holder", ("present", "present_ed25519_holder_per_s"),
         "{:,.0f} /s"),
        ("ours, each presentation with a checkpoint new to the verifier, ES256 holder",
         ("present", "present_cold_es256_holder_per_s"), "{:,.0f} /s"),
        ("new checkpoint, ES256 holder / sd-jwt reference",
         ("present", "present_cold_ratio_es256_holder"), "{:.2f}x"),
        ("ours, each presentation with a new checkpoint, Ed25519 holder",
         ("present", "present_cold_ed25519_holder_per_s"), "{:,.0f} /s"),
        ("new checkpoint, Ed25519 holder / sd-jwt reference",
         ("present", "present_cold_ratio_ed25519_holder"), "{:.2f}x"),
        ("envelope size, 3 of 10 claims (ES256 holder)", ("present", "envelope_bytes_es256_holder"),
         "{:,.0f} B"),
        ("the same envelope at 10M entries, 8 agencies, all 8 co-signatures (size only)",
         ("present", "envelope_bytes_es256_holder_10m_8_signatures"), "{:,.0f} B"),
        ("the same envelope at 10M entries, a quorum of 3 co-signatures (size only)",
         ("present", "envelope_bytes_es256_holder_10m_3_signatures"), "{:,.0f} B"),
        ("POST /v1/verify over HTTP, 8 clients", ("http", "http_verify_per_s"), "{:,.0f} /s"),
        ("HTTP / in-process verify", ("http", "http_ratio"), "{:.2f}x"),
        ("approval decisions (CEL)", ("approve", "approve_decisions_per_s"), "{:,.0f} /s"),
        ("approval decisions / one core's verify", ("approve", "approve_ratio"), "{:.3f}x"),
        ("audit replay (1M issue chain)", ("audit", "audit_tx_per_s"), "{:,.0f} tx/s"),
        ("audit peak RSS (auditor)", ("audit", "audit_peak_rss_mib"), "{:.0f} MiB"),
        ("pymerkle SqliteTree inclusion proof at 1M, median", ("scale",
         "pymerkle_inclusion_median_ms"), "{:.2f} ms"),
        ("pymerkle SqliteTree inclusion proof at 1M, p99", ("scale",
         "pymerkle_inclusion_p99_ms"), "{:.1f} ms"),
    ]
    out = ["| figure | measured (range over runs) |", "|---|---|"]
    for name, path, fmt in rows:
        out.append(f"| {name} | {_rng([_get(r, *path) for r in runs], fmt)} |")
    return "\n".join(out)


def scale(runs: list[Run]) -> str:
    sizes = sorted({int(s) for r in runs for s in r["results"].get("scale", {}).get("sizes", {})})
    cols = [("log entries", "log_size", "{:,.0f}"), ("cold open", "cold_open_s", "{:.3f} s"),
            ("inclusion median", "inclusion_median_ms", "{:.3f} ms"),
            ("inclusion p99", "inclusion_p99_ms", "{:.2f} ms"),
            ("consistency median", "consistency_median_ms", "{:.3f} ms"),
            ("status list, first request", "status_first_request_s", "{:.2f} s"),
            ("status list after new blocks", "status_update_s", "{:.3f} s"),
            ("ingest", "ingest_tx_per_s", "{:,.0f} tx/s"),
            ("ingest / verify", "ingest_ratio", "{:.2f}x"),
            ("peak RSS", "peak_rss_mib", "{:.0f} MiB"),
            ("peak anon", "peak_anon_mib", "{:.0f} MiB"),
            ("peak file-backed", "peak_file_mib", "{:.0f} MiB")]
    out = ["| chain | " + " | ".join(c[0] for c in cols) + " |",
           "|---" * (len(cols) + 1) + "|"]
    for s in sizes:
        cells = [_rng([_get(r, "scale", "sizes", str(s), key) for r in runs], fmt)
                 for _, key, fmt in cols]
        out.append(f"| {s:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Markdown tables for BENCHMARKS.md (targets, figures and references, chain "
                    "size) from `scripts/bench all` result files: each figure as the range over "
                    "the runs, the target and whether every run met it.")
    parser.add_argument("results", nargs="+", type=Path,
                        help="result files of `scripts/bench all` (.bench/all-<time>.json)")
    args = parser.parse_args()
    try:
        runs = [json.loads(p.read_text()) for p in args.results]
    except (OSError, ValueError) as e:
        parser.error(f"cannot read a result file: {e}")
    for path, r in zip(args.results, runs, strict=True):
        if not (isinstance(r, dict) and isinstance(r.get("results"), dict)
                and isinstance(r.get("machine"), dict) and "started" in r):
            parser.error(f"{path} is not a `scripts/bench all` result file (its output of one "
                         "benchmark, e.g. `scripts/bench scale --json`, is not)")
    for r in runs:
        m = r["machine"]
        print(f"<!-- {r['started']}: load {m['load_avg_at_start']} -> "
              f"{r.get('load_avg_at_end')}; {m['cpus']} x {m['cpu_model']} -->")
    print("\n### Targets\n")
    print(targets(runs))
    print("\n### Figures and references\n")
    print(references(runs))
    print("\n### Chain size\n")
    print(scale(runs))


if __name__ == "__main__":
    main()
