"""Crash safety: SIGKILL a child ingesting at random moments; nothing acknowledged is lost."""

from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from chaincheck import check_chain

from ledger.store import Store

CHILD = Path(__file__).with_name("crash_child.py")
ROUNDS = 20
LONG_ROUNDS = 150
ROUND_SPAN = 400_000
"""Issue numbers a round may use: round ``k`` starts at ``k * ROUND_SPAN``."""


def _run_and_kill(data: Path, start: int, delay: float) -> list[tuple[bytes, int]]:
    with subprocess.Popen([sys.executable, str(CHILD), str(data), str(start)],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(CHILD.parent)}) as proc:
        return _kill_later(proc, delay)


def _kill_later(proc: subprocess.Popen[str], delay: float) -> list[tuple[bytes, int]]:
    acked: list[tuple[bytes, int]] = []

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if len(parts) == 3 and parts[0] == "ACK":
                acked.append((bytes.fromhex(parts[1]), int(parts[2])))

    t = threading.Thread(target=reader)
    t.start()
    # Wait until the child is ingesting (first ack), then kill it after a random extra delay.
    for _ in range(400):
        if acked or proc.poll() is not None:
            break
        time.sleep(0.025)
    assert proc.poll() is None, f"child exited early: {proc.stderr.read() if proc.stderr else ''}"
    time.sleep(delay)
    if proc.poll() is not None:
        err = proc.stderr.read() if proc.stderr else ""
        raise AssertionError(f"child exited by itself ({proc.returncode}) before the kill: {err}")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # EOF on stdout comes only when the node's signature workers died with it too.
    t.join(timeout=60)
    assert not t.is_alive(), "worker processes outlived the killed node"
    return acked


def test_a_child_that_dies_by_itself_before_the_kill_is_reported() -> None:
    """A child that fails on its own after its first acknowledgement (a refused issue, a crash
    in the orderer) is not a SIGKILL at a random moment: the rounds must say so, not count it
    as a kill survived (helper round 27S)."""
    child = "import sys, time; print('ACK 00 0', flush=True); time.sleep(0.2); sys.exit(3)"
    with (subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True) as proc,
          pytest.raises(AssertionError, match="child exited")):
        _kill_later(proc, 1.0)


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    _crash_rounds(tmp_path, ROUNDS, seed=9162)


@pytest.mark.slow
def test_sigkill_long_haul(tmp_path: Path) -> None:
    """The same with 150 kills (several minutes): run with scripts/test --slow."""
    _crash_rounds(tmp_path, LONG_ROUNDS, seed=6962)


def test_no_two_rounds_of_the_long_haul_share_a_status_index() -> None:
    """Each round's child issues from its own numbers; an index used twice is refused
    (``status_index_used``) and the child dies of it, not of the kill. The rounds' status
    indexes must not meet: with a million per round taken modulo one list's size, round 108
    began 3,328 entries before round 0's (helper round 27S)."""
    from crash_child import status_index

    used: list[tuple[int, int]] = []
    for k in range(LONG_ROUNDS):
        first, last = status_index(k * ROUND_SPAN), status_index(k * ROUND_SPAN + ROUND_SPAN - 1)
        assert last - first == ROUND_SPAN - 1, f"round {k} wraps its status indexes"
        used.append((first, last))
    used.sort()
    for (_, end), (start, _) in itertools.pairwise(used):
        assert end < start, "two rounds share status indexes"


def _crash_rounds(tmp_path: Path, rounds: int, seed: int) -> None:
    rng = random.Random(seed)
    data = tmp_path / "ledger"
    all_acked: list[tuple[bytes, int]] = []
    sizes = []
    for round_no in range(rounds):
        acked = _run_and_kill(data, start=round_no * ROUND_SPAN, delay=rng.uniform(0.0, 0.6))
        all_acked.extend(acked)
        with Store(data) as store:  # reopening checks the head against the Merkle root
            for txid, index in all_acked:
                assert store.tx_location(txid) is not None, f"acknowledged tx {txid.hex()} lost"
                assert store.tx_location(txid)[0] == index  # type: ignore[index]
            sizes.append(check_chain(store))
    assert len(all_acked) > rounds, "the child acknowledged too little to test anything"
    assert sizes == sorted(sizes), "the log shrank across a restart"
