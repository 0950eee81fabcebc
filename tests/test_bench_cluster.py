"""scripts/bench_cluster.py on a real 3-agency network, at the smallest sizes."""

from __future__ import annotations

import functools
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import bench_cluster
import benchmarks
from clusterkit import free_base


def test_bench_catchup_counts_only_the_blocks_taken_from_peers() -> None:
    """`scripts/bench catchup` printed "N txs in M blocks from peers" with M the head's height
    plus one: the genesis and the bench's two governance blocks, which the stopped node already
    held, counted as caught up (BENCHMARKS.md's "18 blocks")."""
    got = bench_cluster.bench_catchup(functools.partial(benchmarks.verify_rate, 0.2), n=3000,
                                      chunk=100, base_port=free_base(3))
    assert got["catchup_txs"] == 3000
    # every block after the node's stop came from its peers or from etcd's last 5
    assert got["catchup_synced_blocks"] <= got["catchup_blocks"] <= \
        got["catchup_synced_blocks"] + 5
    assert got["catchup_blocks"] == got["catchup_head_height"] - got["catchup_from_height"]
    assert got["catchup_from_height"] >= 2  # genesis, register_type, grant


def test_the_benches_refuse_ports_in_use_and_keep_out_of_the_tests_ports() -> None:
    """The benches' networks used fixed ports inside the 20000-32000 the tests draw their
    clusters from: beside a test run a member could not start, and the bench ended in the
    tail of its log. Their ports lie outside that range (and below the ephemeral range), and a
    port another program holds is refused in words before anything starts."""
    for base in (bench_cluster.CLUSTER_BASE, bench_cluster.CATCHUP_BASE):
        assert base >= 32000 and base + 202 < 32768
    base = free_base(3)
    with socket.socket() as held:
        held.bind(("127.0.0.1", base + 101))  # health's etcd client port
        held.listen()
        for bench in (bench_cluster.bench_cluster, bench_cluster.bench_catchup):
            with pytest.raises(SystemExit, match=rf"bench: port {base + 101} on 127\.0\.0\.1 "
                                                 r"is in use"):
                bench(functools.partial(benchmarks.verify_rate, 0.2), base_port=base)
