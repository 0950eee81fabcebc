"""The plot in BENCHMARKS.md: ingest rate and inclusion-proof time against chain size.

``python scripts/bench_plot.py RESULTS.json [--out docs/bench-scale.png]`` where RESULTS.json is
the output of ``scripts/bench scale --json`` (or ``scripts/bench all``). The chain generator's
own write rate, logged while the cached chains were built (``scripts/chaingen.py … --log
.bench/build-<size>.jsonl``, as BENCHMARKS.md builds the 10M chain), is drawn too when present.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _build_log(cache: Path) -> list[tuple[int, float]]:
    points = []
    for f in sorted(cache.glob("build-*.jsonl")):
        for line in f.read_text().splitlines():
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if "log_size" in d and "tx_per_s" in d:
                points.append((int(d["log_size"]), float(d["tx_per_s"])))
    return sorted(points)


def _axes(ax: Any, ylabel: str, title: str) -> None:
    """The style both panels share: log chain-size axis, labels, grid, legend."""
    ax.set_xscale("log")
    ax.set_xlabel("chain size (log entries)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def plot(scale: dict[str, Any], cache: Path, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(int(s) for s in scale["sizes"])
    per = [scale["sizes"][str(s)] for s in sizes]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    a.plot(sizes, [r["ingest_tx_per_s"] for r in per], "o-",
           label="solo durable ingest (verify + apply + synced block)")
    a.plot(sizes, [r["ref_verify_per_s"] for r in per], "s--", color="grey",
           label="one core's Ed25519 verify (reference)")
    for size, r in zip(sizes, per, strict=True):
        a.annotate(f"{r['ingest_ratio']:.2f}x", (size, r["ingest_tx_per_s"]),
                   textcoords="offset points", xytext=(0, 7), ha="center", fontsize=7)
    log = _build_log(cache)
    if log:
        a.plot([p[0] for p in log], [p[1] for p in log], "-", color="tab:green", alpha=0.5,
               linewidth=1, label="chain generator, pre-signed (apply + synced block)")
    _axes(a, "transactions per second", "Ingest rate vs chain size")
    b.plot(sizes, [r["inclusion_median_ms"] for r in per], "o-", label="ours: inclusion median")
    b.plot(sizes, [r["inclusion_p99_ms"] for r in per], "^:", label="ours: inclusion p99")
    b.plot(sizes, [r["consistency_median_ms"] for r in per], "x-",
           label="ours: consistency median")
    if "pymerkle_inclusion_median_ms" in scale:
        b.plot([scale["pymerkle_size"]], [scale["pymerkle_inclusion_median_ms"]], "D",
               color="tab:red", label="pymerkle SqliteTree: inclusion median")
    b.axhline(1.0, color="grey", linestyle="--", linewidth=0.8)
    b.set_yscale("log")
    _axes(b, "ms per proof (after a cold open)", "Proof time vs chain size")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("results", type=Path)
    ap.add_argument("--out", type=Path, default=Path("docs/bench-scale.png"))
    ap.add_argument("--cache", type=Path, default=Path(".bench"))
    args = ap.parse_args()
    try:
        data = json.loads(args.results.read_text())
    except (OSError, ValueError) as e:
        ap.error(f"cannot read {args.results}: {e}")
    scale = data.get("results", {}).get("scale") if isinstance(data, dict) and isinstance(
        data.get("results"), dict) else data
    if not (isinstance(scale, dict) and isinstance(scale.get("sizes"), dict) and scale["sizes"]):
        ap.error(f"{args.results} holds no scale results (the output of `scripts/bench scale "
                 "--json` or `scripts/bench all` whose scale run succeeded)")
    plot(scale, args.cache, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
