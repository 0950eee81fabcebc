"""`scripts/bench present`: its presentations all verify, each timed call takes the next one, and
no figure can rest on the verifier's caches (holder keys, checkpoints)."""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import benchmarks

from ledger import sdjwt
from ledger.presentation import Verifier


def test_in_turn_takes_the_next_item_each_call() -> None:
    seen: list[tuple[int, str]] = []
    call = benchmarks._in_turn([(1, "a"), (2, "b"), (3, "c")], lambda n, s: seen.append((n, s)))
    for _ in range(7):
        call()
    assert seen == [(1, "a"), (2, "b"), (3, "c")] * 2 + [(1, "a")]


def test_default_holders_outnumber_every_cache_the_verify_path_keeps() -> None:
    holders = inspect.signature(benchmarks.bench_present).parameters["holders"].default
    holder_keys = sdjwt._key_from_members.cache_info().maxsize
    assert holder_keys is not None
    assert holders > holder_keys  # cycling more keys than an LRU holds misses every time
    checkpoints = inspect.signature(Verifier).parameters["cache_size"].default
    assert holders > checkpoints


def test_bench_present_small_run() -> None:
    got = benchmarks.bench_present(seconds=0.02, holders=70)
    assert got["present_holders"] == 70
    for figure in ("present", "present_cold"):
        for label in ("es256_holder", "ed25519_holder"):
            assert got[f"{figure}_{label}_per_s"] > 0
            assert got[f"{figure}_ratio_{label}"] == pytest.approx(
                got[f"{figure}_{label}_per_s"] / got["reference_sdjwt_per_s"])
    for label in ("es256_holder", "ed25519_holder"):
        assert 2000 < got[f"envelope_bytes_{label}"] <= 2900  # one QR code
    # the same envelope on a 10M-entry chain of 8 agencies: 24 proof hashes, ~100 B per line
    three = got["envelope_bytes_es256_holder_10m_3_signatures"]
    eight = got["envelope_bytes_es256_holder_10m_8_signatures"]
    assert three > got["envelope_bytes_es256_holder"] + 10 * 32
    assert 5 * 95 < eight - three < 5 * 110


def test_bench_present_refuses_fewer_holders_than_cached_checkpoints() -> None:
    with pytest.raises(SystemExit, match="checkpoint cache"):
        benchmarks.bench_present(seconds=0.01, holders=10)


def test_bench_http_small_run() -> None:
    """`scripts/bench http` end to end on fewer requests: every presentation verifies through
    the node's HTTP API (the node's rate limiter refused the bench's 61st request since ADR 47,
    and the bench had failed since)."""
    got = benchmarks.bench_http(n=80, concurrency=2)
    assert got["http_requests"] == 80 and got["http_concurrency"] == 2
    assert got["http_verify_per_s"] > 0 and got["inprocess_verify_per_s"] > 0
    assert got["http_ratio"] == got["http_verify_per_s"] / got["inprocess_verify_per_s"]
