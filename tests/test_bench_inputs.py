"""The benchmarks' transactions look like issued ones (ADR 30): hashed credential ids, status
indexes spread over the list rather than in order, never repeated."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import benchmarks
import chaingen

from ledger.credentials import STATUS_LIST_SIZE
from ledger.network import demo_agency
from ledger.tx import Tx


def test_spread_index_is_a_permutation_and_not_in_order() -> None:
    got = [chaingen.spread_index(k, 10) for k in range(1 << 10)]
    assert sorted(got) == list(range(1 << 10))
    assert got[:8] != sorted(got[:8])
    assert chaingen.spread_index(5) == chaingen.spread_index(5, 20) < STATUS_LIST_SIZE


def test_bench_issues_spread_distinct_indexes_and_hashed_ids() -> None:
    agency = demo_agency("edu", "Education Bureau", "bench")
    bodies = [Tx.from_bytes(raw).body for raw in benchmarks._issues(agency, 0, 200)]
    indexes = [b["status_index"] for b in bodies]
    assert len(set(indexes)) == 200
    assert indexes != sorted(indexes)
    assert len({b["credential_id"] for b in bodies}) == 200
    assert all(b["credential_id"][:8] != bytes(8) for b in bodies)  # not zero-padded counters


def test_bench_issues_refuse_more_than_one_status_list() -> None:
    agency = demo_agency("edu", "Education Bureau", "bench")
    with pytest.raises(SystemExit, match="status list has 1,048,576 indexes"):
        benchmarks._issues(agency, STATUS_LIST_SIZE - 1, 2)


def test_the_bench_issues_commit_at_the_bench_block_time(tmp_path: Path) -> None:
    """The ingest bench's inputs pass the state machine (a credential dated long before its
    block is refused since ADR 43: these must not be)."""
    from ledger.chain import build_block

    store, agencies = benchmarks._network(tmp_path / "bench")
    try:
        head, reg = store.head, store.registry
        assert head is not None and reg is not None
        txs = [Tx.from_bytes(raw) for raw in benchmarks._issues(agencies[0], 0, 20)]
        result = build_block(head, reg, store, store.frontier, txs, benchmarks.T0 + 1)
        assert result.rejected == [] and len(result.accepted) == 20
    finally:
        store.close()


def test_bench_tables_explains_itself_and_refuses_no_or_missing_files(tmp_path: Path) -> None:
    """`python scripts/bench_tables.py --help` (BENCHMARKS.md's command) was a traceback: it
    took --help for a result file; with none it printed empty tables."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_tables.py"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(script), *args], capture_output=True,
                              text=True, cwd=tmp_path, timeout=60, check=False)

    r = run("--help")
    assert r.returncode == 0 and "scripts/bench all" in r.stdout, r.stderr
    for args in ((), ("all-missing.json",)):
        r = run(*args)
        assert r.returncode == 2 and "Traceback" not in r.stderr and r.stdout == "", r.stderr


def test_bench_audit_rebuilds_a_chain_left_short_by_an_interrupted_build(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scripts/bench audit` reused any folder at its cache path: a chain whose build was
    stopped part way was audited as it was, under the size the run printed ("replaying the
    N-entry chain") and in the figure of that size."""
    import json

    size = 3_000
    benchmarks.build_big_store(tmp_path / f"audit-chain-{size}", 1_000)  # the stopped build
    monkeypatch.setattr(sys, "argv", ["bench", "audit", "--proof-size", str(size), "--cache",
                                      str(tmp_path), "--json"])
    benchmarks.main()
    got = json.loads(capsys.readouterr().out)
    assert got["audit_txs"] >= size
    # the figure divides a run on every core by one core's rate: how many is said with it
    assert got["audit_cores"] == (os.cpu_count() or 2)


@pytest.mark.parametrize("args", [("ingest", "--n", "-1", "--proof-size", "0"),
                                  ("ingest", "--n", "0", "--proof-size", "0"),
                                  ("audit", "--proof-size", "-3"),
                                  ("audit", "--since-blocks", "-2", "--proof-size", "10"),
                                  ("scale", "--sizes", "abc"), ("proofs", "--sizes", "1000,-5")])
def test_bench_refuses_bad_counts_before_measuring(tmp_path: Path, args: tuple[str, ...]) -> None:
    """`scripts/bench ingest --n -1` printed "-738,008 /s ratio -32.27", --n 0 a ratio of 0,
    `audit --proof-size -3` audited a 3-entry chain, `--sizes abc` was a traceback."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "benchmarks.py"
    r = subprocess.run([sys.executable, str(script), *args, "--cache", str(tmp_path / "c")],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120, check=False)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and args[1] in r.stderr, r.stderr
    assert not (tmp_path / "c").exists()  # nothing built


@pytest.mark.parametrize("content", ['{"sizes": {"1000": {"ingest_tx_per_s": 1.0}}}',
                                     '{"cluster_ratio": 0.4, "cluster_tx_per_s": 6000}',
                                     "[1, 2]", '{"results": [], "machine": {}}'])
def test_bench_tables_refuses_a_file_that_is_not_a_bench_all_result(
        tmp_path: Path, content: str) -> None:
    """`python scripts/bench_tables.py` given the output of `scripts/bench scale --json` (or of
    any one benchmark) was a KeyError traceback, not a clear error."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_tables.py"
    good = {"machine": {"cpus": 2, "cpu_model": "x", "load_avg_at_start": [0, 0, 0]},
            "started": "2026-12-01T00:00:00Z", "results": {}}
    (tmp_path / "all-good.json").write_text(json.dumps(good))
    (tmp_path / "other.json").write_text(content)
    r = subprocess.run([sys.executable, str(script), "all-good.json", "other.json"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "other.json" in r.stderr, r.stderr
    ok = subprocess.run([sys.executable, str(script), "all-good.json"], capture_output=True,
                        text=True, cwd=tmp_path, timeout=60, check=False)
    assert ok.returncode == 0 and "### Targets" in ok.stdout, ok.stderr


@pytest.mark.parametrize("content", ['{"results": {"scale": {"error": "scale child failed"}}}',
                                     '{"results": {"ingest": {"ingest_ratio": 1.1}}}',
                                     '{"cluster_ratio": 0.4}', "[1, 2]", "not json"])
def test_bench_plot_refuses_a_file_without_scale_results(tmp_path: Path, content: str) -> None:
    """`python scripts/bench_plot.py RESULTS.json` on a `bench all` file whose scale run failed,
    or on another benchmark's output, was a traceback (KeyError, TypeError, JSONDecodeError)."""
    import subprocess

    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_plot.py"
    (tmp_path / "res.json").write_text(content)
    r = subprocess.run([sys.executable, str(script), "res.json", "--out", "plot.png",
                        "--cache", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                       timeout=60, check=False)
    assert r.returncode == 2 and r.stdout == "", (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "res.json" in r.stderr, r.stderr
    assert not (tmp_path / "plot.png").exists()


def test_bench_plot_draws_a_bench_all_file(tmp_path: Path) -> None:
    """The check above lets a `bench all` file with scale results through to the plot."""
    import subprocess

    pytest.importorskip("matplotlib")
    script = Path(__file__).resolve().parent.parent / "scripts" / "bench_plot.py"
    row = {"ingest_tx_per_s": 12_000.0, "ref_verify_per_s": 11_000.0, "ingest_ratio": 1.09,
           "inclusion_median_ms": 0.2, "inclusion_p99_ms": 8.0, "consistency_median_ms": 0.3}
    data = {"results": {"scale": {"sizes": {"1000": row, "1000000": row}}}}
    (tmp_path / "all.json").write_text(json.dumps(data))
    r = subprocess.run([sys.executable, str(script), "all.json", "--out", "plot.png", "--cache",
                        str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(("n", "want"), [(100, 99), (200, 198), (2000, 1980), (150, 149),
                                         (1, 1)])
def test_bench_scale_p99_is_the_nearest_rank_as_the_cluster_latency(n: int, want: int) -> None:
    """The proof p99s (ours over 2,000 proofs, pymerkle's over 200) took the value one rank
    above the 99th percentile (of 100 samples: the maximum), not the nearest rank that the
    cluster's p99 commit latency uses."""
    import bench_scale

    assert bench_scale.p99([float(v) for v in range(1, n + 1)]) == want


@pytest.mark.filterwarnings("ignore:get_state is deprecated:DeprecationWarning")  # pymerkle 7
def test_bench_scale_ingests_the_n_it_is_given(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`scripts/bench scale --n 300` ingested 20,000 transactions on top of each chain: the
    option its docstring names was ignored."""
    monkeypatch.setattr(sys, "argv", ["bench", "scale", "--sizes", "1000", "--n", "300",
                                      "--cache", str(tmp_path), "--json"])
    benchmarks.main()
    got = json.loads(capsys.readouterr().out)
    assert got["sizes"]["1000"]["ingest_n"] == 300
    assert got["memory_ratio_sizes"] == [1000, 1000]  # no 1M run: the ratio's sizes are said


@pytest.mark.parametrize(("sizes", "counted"), [(("1000000", "10000000"), True),
                                               (("1000", "2000"), False),
                                               (("1000", "10000000"), False),
                                               (("1000", "1000000"), False)])
def test_bench_tables_count_the_10m_and_1m_targets_only_from_those_sizes(
        sizes: tuple[str, str], counted: bool) -> None:
    """A `bench all` of other sizes (`--sizes 1000,2000`) makes its memory ratio against the
    smallest size and its proof figures at the biggest; the tables put them in the rows
    "at 10M / at 1M" and "at 10M" as if measured there, and called the targets met."""
    import bench_tables

    row = {"inclusion_median_ms": 0.2, "peak_rss_mib": 100.0, "peak_anon_mib": 50.0}
    run = {"results": {"scale": {"sizes": dict.fromkeys(sizes, row), "proofs_vs_pymerkle": 80.0,
                                 "memory_ratio_biggest_vs_1m": 1.0,
                                 "anon_ratio_biggest_vs_1m": 1.0}}}
    table = bench_tables.targets([run])
    for name in ("inclusion proof at 10M after a cold open, median",
                 "inclusion proof: pymerkle SQLite at 1M / ours at 10M",
                 "peak RSS at 10M / at 1M (whole process)",
                 "peak anonymous memory at 10M / at 1M"):
        line = next(x for x in table.splitlines() if x.startswith(f"| {name} |"))
        assert line.endswith("| met |" if counted else "| not measured |"), line
