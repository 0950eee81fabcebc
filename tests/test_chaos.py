"""A randomized fault run on a real 3-agency cluster (tests/chaoskit.py), and its checker.

The run is slow (minutes) and marked so: ``scripts/test --slow tests/test_chaos.py``. Its seeds
and length come from ``CHAOS_SEEDS`` (comma separated, default ``1``) and ``CHAOS_SECONDS``
(default 240); ``python tests/chaoskit.py --seed N --duration S --folder DIR`` runs one alone
and keeps its folder (logs, stores, ``report.json``, ``events.json``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from chaoskit import Chaos, TxRecord, judge, longest_gap

if shutil.which("etcd") is None:
    raise RuntimeError("etcd is not installed: run scripts/test (it installs etcd-server)")

SEEDS = [int(s) for s in os.environ.get("CHAOS_SEEDS", "1").split(",") if s.strip()]
SECONDS = float(os.environ.get("CHAOS_SECONDS", "240"))


def _acked(txid: str, index: int) -> TxRecord:
    return TxRecord(b"", txid, 0.0, status="acked",
                    receipt={"txid": txid, "index": index, "height": 1})


def test_the_checker_finds_a_lost_a_moved_and_a_doubled_transaction() -> None:
    good = judge([_acked("a", 0), _acked("b", 1)], ["a", "b"])
    assert good == ([], {"acked": 2, "refused": 0, "unknown": 0, "unknown_committed": 0})
    assert any("0 times" in p for p in judge([_acked("a", 0)], ["b"])[0])
    assert any("receipt says 0" in p for p in judge([_acked("a", 0)], ["b", "a"])[0])
    twice = judge([TxRecord(b"", "c", 0.0)], ["a", "c", "c"])
    assert any("more than once" in p for p in twice[0])
    assert twice[1]["unknown_committed"] == 1


def test_the_checker_finds_a_refused_transaction_in_the_log() -> None:
    refused = TxRecord(b"", "r", 0.0, status="refused", refusals=["civil: 409"])
    problems, stats = judge([refused], ["r"])
    assert stats["refused"] == 1
    assert any("refused r" in p for p in problems)
    assert judge([refused], ["a"]) == ([], {"acked": 0, "refused": 1, "unknown": 0,
                                             "unknown_committed": 0})


def test_unavailability_leaves_out_the_time_without_a_quorum() -> None:
    # acknowledgements at 1, 2 and 9; no quorum from 3 to 7: the longest is 2 to 9 less 4
    assert longest_gap(0.0, 10.0, [1.0, 2.0, 9.0], [(3.0, 7.0)]) == (3.0, 2.0)
    assert longest_gap(0.0, 10.0, [], []) == (10.0, 0.0)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_randomized_faults_lose_nothing_acknowledged_and_converge(seed: int,
                                                                  tmp_path: Path) -> None:
    chaos = Chaos(seed, SECONDS, tmp_path / "net")
    chaos.rec.verbose = False
    report = chaos.run()
    print(json.dumps({k: v for k, v in report.items() if k != "problems"}, indent=1))
    assert report["faults"], "no fault was injected"
    assert report["acked"] > 0
    events = "\n".join(f"{t:7.1f} {e}" for t, e in chaos.events())
    assert not report["problems"], "\n".join(report["problems"]) + "\n" + events
