"""``scripts/bench proofs`` and ``scripts/bench scale``: the store at district size.

Chains come from :mod:`chaingen` (eight agencies, twelve credential kinds, status changes,
credit events, approvals) and are cached under ``.bench/chain-<size>``; the 10M chain takes most
of an hour on this machine, so build it first (``python scripts/chaingen.py .bench/chain-10000000
--size 10000000``).

proofs  After a cold open (a fresh process): RFC 9162 inclusion proofs (median, p99) at each
        size, as a ratio to pymerkle's SQLite backend (``SqliteTree``) over the *same* entries at
        1M (target: ours at 10M <= 1 ms median and >= 10x pymerkle at 1M); consistency proofs.
scale   For each size, in a fresh process on a hard-linked clone of the cached store: cold open,
        proofs, the first status-list request (a full read) and the per-block update after new
        blocks, durable solo ingest of ``--n`` (at most 20,000; proofs: 2,000) signed issue
        transactions (ratio to one core's
        verify rate, measured in the same child), and the process's peak memory (target: peak at
        10M within 1.2x of peak at 1M).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SIZES = [1_000, 10_000, 100_000, 1_000_000, 10_000_000]


# -- chains -----------------------------------------------------------------------------------


def chain(cache: Path, size: int) -> Path:
    """The cached chaingen chain of ``size`` entries (built or extended if needed)."""
    import chaingen

    path = cache / f"chain-{size}"
    side = chaingen.sidecar(path)
    if side.exists() and json.loads(side.read_text()) != chaingen.Params().to_json():
        # made by an older generator: it may not even replay under today's rules
        print(f"{path} was made by another chaingen generation: building it again",
              file=sys.stderr, flush=True)
        shutil.rmtree(path, ignore_errors=True)
        side.unlink()
    if _log_size(path) >= size:
        return path
    print(f"building a {size:,}-entry chain in {path} …", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    chaingen.generate(path, size).close()
    return path


def _log_size(path: Path) -> int:
    from ledger.store import Store

    if not path.exists():
        return 0
    with Store(path, create=False) as s:
        return 0 if s.head is None else s.head.log_size


def clone(src: Path, dst: Path) -> None:
    """A writable copy of a closed LevelDB store that costs almost no disk: table files
    (``*.ldb``, never modified once written) are hard-linked, the rest is copied."""
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.suffix == ".ldb":
            os.link(f, dst / f.name)
        elif f.is_file() and f.name != "LOCK":
            shutil.copy2(f, dst / f.name)


# -- memory -----------------------------------------------------------------------------------


def proc_status_kib() -> dict[str, int]:
    """This process's memory counters from /proc/self/status, in KiB (Linux; else empty)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.endswith(" kB"):
            out[name] = int(value.split()[0])
    return out


class Peak:
    """Peak resident memory of this process: total (VmHWM) and, sampled every 50 ms, anonymous vs
    file-backed (LevelDB maps its table files; touched pages count as resident)."""

    def __init__(self) -> None:
        import threading

        self.anon = 0
        self.file = 0
        self.hwm = 0
        self.phases: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._stop.wait(0.05):
            self.sample()

    def phase(self, name: str) -> None:
        """Record the peak RSS reached by the end of phase ``name``."""
        self.sample()
        self.phases[f"peak_rss_after_{name}_mib"] = self.hwm / 1024
        self.phases[f"peak_anon_after_{name}_mib"] = self.anon / 1024
        self.phases[f"peak_file_after_{name}_mib"] = self.file / 1024

    def sample(self) -> None:
        got = proc_status_kib()
        self.hwm = got.get("VmHWM", self.hwm)
        self.anon = max(self.anon, got.get("RssAnon", 0))
        self.file = max(self.file, got.get("RssFile", 0))

    def result(self) -> dict[str, float]:
        self._stop.set()
        self.sample()
        # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child started by a big parent
        # would report the parent's size at fork time
        return {**self.phases, "peak_rss_mib": self.hwm / 1024,
                "peak_anon_mib": self.anon / 1024, "peak_file_mib": self.file / 1024}


# -- the per-size child -------------------------------------------------------------------------


def p99(ordered: list[float]) -> float:
    """The 99th percentile of ``ordered`` (sorted, not empty) by nearest rank: the
    ceil(0.99 n)-th smallest, as the cluster's p99 commit latency (integer arithmetic: no float
    rounding moves the rank)."""
    return ordered[(99 * len(ordered) + 99) // 100 - 1]


def _proofs(store: Any, samples: int, peak: Peak) -> dict[str, float]:
    from ledger import merkle

    head = store.head
    size = head.log_size
    rng = random.Random(size)
    inc = []
    for k in range(samples):
        index = rng.randrange(size)
        t = time.perf_counter()
        proof = store.inclusion_proof(index, size)
        inc.append(time.perf_counter() - t)
        merkle.verify_inclusion(store.leaf_hash(index), index, size, proof, head.log_root)
        if k % 256 == 0:
            peak.sample()
    con = []
    for _ in range(max(1, samples // 10)):
        old = rng.randrange(1, size + 1)
        t = time.perf_counter()
        proof = store.consistency_proof(old, size)
        con.append(time.perf_counter() - t)
        merkle.verify_consistency(old, size, store.root_at(old), head.log_root, proof)
    inc.sort()
    con.sort()
    return {"inclusion_median_ms": statistics.median(inc) * 1e3,
            "inclusion_p99_ms": p99(inc) * 1e3,
            "consistency_median_ms": statistics.median(con) * 1e3,
            "proof_hashes": float(len(store.inclusion_proof(size // 3, size)))}


INGEST_TIME_OFFSET = 10 ** 6
"""The ingest's blocks are cut at chaingen's T0 plus this (after every chaingen block)."""


def _ingest_txs(n: int, start: int) -> list[bytes]:
    """Signed ``issue`` transactions of a kind chaingen never issues (civil's approval
    credentials), so their status indexes are free at every chain size; valid from the
    ingest's block time (state.MAX_BACKDATE)."""
    import chaingen

    from ledger.network import issue_tx

    civil = next(a for a in chaingen.agencies() if a.id == "civil")
    at = chaingen.T0 + INGEST_TIME_OFFSET
    return [issue_tx(chaingen.NET, civil, hashlib.sha256(b"scale-%d" % i).digest(), "approval",
                     chaingen.spread_index(i), at, chaingen.T0 + 10 * chaingen.YEAR,
                     chaingen.T0 + i).raw
            for i in range(start, start + n)]


def child(path: Path, n: int, samples: int) -> dict[str, Any]:
    """Everything measured on one store, in this (fresh) process; ``path`` is a clone."""
    sys.path.insert(0, str(HERE))
    import chaingen
    from benchmarks import verify_rate

    from ledger.credentials import status_list_uri
    from ledger.offline import StatusListCache
    from ledger.ordering import SoloOrderer
    from ledger.store import Store

    peak = Peak()
    raws = _ingest_txs(n, 0)
    peak.sample()
    base = peak.hwm / 1024
    t = time.perf_counter()
    store = Store(path, create=False)
    out: dict[str, Any] = {"cold_open_s": time.perf_counter() - t}
    assert store.head is not None
    out["log_size"] = store.head.log_size
    peak.phase("open")
    out["height"] = store.head.height
    t = time.perf_counter()
    first_index = random.Random(1).randrange(store.head.log_size)
    store.inclusion_proof(first_index, store.head.log_size)
    out["first_proof_ms"] = (time.perf_counter() - t) * 1e3
    out.update(_proofs(store, samples, peak))
    peak.phase("proofs")
    # status lists: the first request reads the list in full; later ones apply new blocks
    issuer, kind = chaingen.pairs()[0]
    uri = status_list_uri(chaingen.NET, issuer, kind)
    lists = StatusListCache(store)
    t = time.perf_counter()
    lst = lists.get(uri)
    out["status_first_request_s"] = time.perf_counter() - t
    assert lst is not None
    out["status_list_entries"] = lst.size
    t = time.perf_counter()
    lists.get(uri)
    out["status_cached_request_ms"] = (time.perf_counter() - t) * 1e3
    peak.phase("status_list")
    # durable solo ingest on top of this chain, verify rate measured around it
    before = verify_rate(1.0)
    orderer = SoloOrderer(store, clock=lambda: chaingen.T0 + INGEST_TIME_OFFSET)
    t = time.perf_counter()
    futures = []
    for i in range(0, n, 500):
        futures.extend(orderer.submit_many(raws[i:i + 500]))
    for f in futures:
        f.result()
    elapsed = time.perf_counter() - t
    orderer.stop()
    after = verify_rate(1.0)
    ref = (before + after) / 2
    out.update(ingest_tx_per_s=n / elapsed, ingest_n=n, ref_verify_per_s=ref,
               ingest_ratio=n / elapsed / ref)
    peak.phase("ingest")
    h0 = lists.blocks_applied
    t = time.perf_counter()
    lists.get(uri)  # catches up with the blocks the ingest made
    out["status_update_s"] = time.perf_counter() - t
    out["status_update_blocks"] = lists.blocks_applied - h0
    t = time.perf_counter()
    got = lists.get(status_list_uri(chaingen.NET, "civil", "approval"))
    out["status_new_list_first_s"] = time.perf_counter() - t
    assert got is not None
    assert got.get(n - 1) == 0
    store.close()
    out.update(peak.result())
    out["baseline_rss_mib"] = base
    return out


def run_child(path: Path, n: int, samples: int) -> dict[str, Any]:
    """``child`` in a fresh interpreter on a hard-linked clone of ``path`` (removed after)."""
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-", dir=path.parent))
    try:
        clone(path, tmp / "ledger")
        done = subprocess.run(
            [sys.executable, str(Path(__file__)), "--child", str(tmp / "ledger"), str(n),
             str(samples)], capture_output=True, text=True, check=False, timeout=1500)
        if done.returncode != 0:
            raise SystemExit(f"scale child failed on {path}:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- pymerkle -----------------------------------------------------------------------------------


def pymerkle_proofs(entries_from: Path, cache: Path, size: int,
                    samples: int = 200) -> dict[str, float]:
    """pymerkle ``SqliteTree`` over the first ``size`` entries of our chain: build once (cached),
    then inclusion proofs after a fresh open (the cold case, as ours)."""
    from pymerkle import SqliteTree, verify_inclusion

    from ledger.store import Store

    db = cache / f"pymerkle-{size}.db"
    if not db.exists():
        tmp = db.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        tree = SqliteTree(str(tmp))
        with Store(entries_from, create=False) as store:
            def entries() -> Any:
                for i in range(size):
                    yield store.entry(i)
            tree.append_entries(entries())
        tree.close()
        tmp.rename(db)
    tree = SqliteTree(str(db))
    t = time.perf_counter()
    n = tree.get_size()
    open_s = time.perf_counter() - t
    rng = random.Random(size)
    times = []
    state = tree.get_state()
    for _ in range(samples):
        index = rng.randrange(n) + 1  # pymerkle counts leaves from one
        t = time.perf_counter()
        proof = tree.prove_inclusion(index, n)
        times.append(time.perf_counter() - t)
        verify_inclusion(tree.get_leaf(index), state, proof)
    tree.close()
    times.sort()
    return {"pymerkle_size": n, "pymerkle_open_s": open_s,
            "pymerkle_inclusion_median_ms": statistics.median(times) * 1e3,
            "pymerkle_inclusion_p99_ms": p99(times) * 1e3}


# -- the subcommands ----------------------------------------------------------------------------


def bench_proofs(cache: Path, sizes: list[int], samples: int = 2000,
                 n: int = 2000) -> dict[str, Any]:
    """Proof figures per size (each in a fresh process after a cold open) vs pymerkle at 1M."""
    out: dict[str, Any] = {"sizes": {}}
    for size in sizes:
        path = chain(cache, size)
        out["sizes"][str(size)] = run_child(path, n, samples)
    ref_size = min(1_000_000, max(sizes))
    out.update(pymerkle_proofs(chain(cache, ref_size), cache, ref_size))
    biggest = out["sizes"][str(max(sizes))]
    ours = biggest["inclusion_median_ms"]
    out["proofs_biggest_size"] = biggest["log_size"]
    out["proofs_vs_pymerkle"] = out["pymerkle_inclusion_median_ms"] / ours
    return out


def bench_scale(cache: Path, sizes: list[int], n: int, samples: int = 2000) -> dict[str, Any]:
    got = bench_proofs(cache, sizes, samples, n)
    small, big = min(sizes), max(sizes)
    per = got["sizes"]
    ref_size = 1_000_000 if str(1_000_000) in per else small
    ref = per[str(ref_size)]
    got["memory_ratio_sizes"] = [big, ref_size]  # the ratios' sizes, when 1M was not run
    got["memory_ratio_biggest_vs_1m"] = per[str(big)]["peak_rss_mib"] / ref["peak_rss_mib"]
    got["anon_ratio_biggest_vs_1m"] = per[str(big)]["peak_anon_mib"] / ref["peak_anon_mib"]
    return got


def report_proofs(got: dict[str, Any]) -> None:
    print(f"reference  pymerkle SqliteTree at {got['pymerkle_size']:,}: inclusion proof median "
          f"{got['pymerkle_inclusion_median_ms']:.2f} ms, p99 "
          f"{got['pymerkle_inclusion_p99_ms']:.2f} ms")
    for size, r in got["sizes"].items():
        print(f"proofs     {int(size):>12,} entries: cold open {r['cold_open_s'] * 1e3:7.1f} ms, "
              f"inclusion median {r['inclusion_median_ms']:.3f} ms / p99 "
              f"{r['inclusion_p99_ms']:.3f} ms, consistency median "
              f"{r['consistency_median_ms']:.3f} ms, {int(r['proof_hashes'])} hashes")
    big = got["sizes"][str(got["proofs_biggest_size"])] if str(got["proofs_biggest_size"]) in \
        got["sizes"] else list(got["sizes"].values())[-1]
    print(f"proofs     ours at {got['proofs_biggest_size']:,} vs pymerkle at "
          f"{got['pymerkle_size']:,}: ratio {got['proofs_vs_pymerkle']:.0f}  (target >= 10; "
          f"median {big['inclusion_median_ms']:.3f} ms, target <= 1 ms)")


def report_scale(got: dict[str, Any]) -> None:
    report_proofs(got)
    for size, r in got["sizes"].items():
        print(f"scale      {int(size):>12,}: ingest {r['ingest_tx_per_s']:8,.0f} /s ratio "
              f"{r['ingest_ratio']:.2f}; status list first {r['status_first_request_s']:.2f} s, "
              f"after {int(r['status_update_blocks'])} new blocks "
              f"{r['status_update_s'] * 1e3:.0f} ms, cached {r['status_cached_request_ms']:.3f} "
              f"ms; peak RSS {r['peak_rss_mib']:.0f} MiB (anon {r['peak_anon_mib']:.0f}, file "
              f"{r['peak_file_mib']:.0f})")
    big, ref = got["memory_ratio_sizes"]
    print(f"memory     peak RSS at {big:,} / at {ref:,}: {got['memory_ratio_biggest_vs_1m']:.2f}  "
          f"(target <= 1.2; anonymous only: {got['anon_ratio_biggest_vs_1m']:.2f})")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--child":
        result = child(Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))
        print(json.dumps(result))
