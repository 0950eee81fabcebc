"""The etcd adapter against one real etcd member (plain HTTP on 127.0.0.1, no TLS needed here):
batch keys sort in commit order under racing writers, and a reader that starts its range after the
last batch it saw gets exactly what a reader scanning everything gets."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from clusterkit import free_base
from conftest import DAY, NET, T0, LedgerHarness
from test_api import (
    AUDIENCE,
    AUTH,
    CLAIMS,
    PASS,
    _damage,
    _edu_credential_id,
    make_demo,
    serve,
    settings_for,
)
from test_api import T0 as DEMO_T0

from ledger import sdjwt
from ledger.batch import clock_signature
from ledger.errors import OrderingError
from ledger.keys import PrivateKey
from ledger.network import Agency, issue_tx
from ledger.presentation import Bundle, Envelope, Report
from node.app import create_app
from node.etcdlog import EtcdLog
from node.replication import EtcdOrderer, cosig_value
from node.service import Node, Replication


@pytest.fixture(scope="module")
def etcd_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with _etcd_member(tmp_path_factory.mktemp("etcd")) as client:
        yield client


_MEMBERS: dict[str, subprocess.Popen[bytes]] = {}  # client URL -> its etcd process


@contextmanager
def _etcd_member(folder: Path, *extra: str) -> Iterator[str]:
    """A one-member etcd on free 127.0.0.1 ports (``extra``: more of its flags); its client
    URL (its process: ``_MEMBERS[url]``)."""
    binary = shutil.which("etcd")
    assert binary, "etcd is not installed (scripts/test installs Debian's etcd-server)"
    base = free_base(1)
    client, peer = f"http://127.0.0.1:{base}", f"http://127.0.0.1:{base + 100}"
    log = open(folder / "etcd.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [binary, "--name", "t", "--data-dir", str(folder / "data"),
         "--listen-client-urls", client, "--advertise-client-urls", client,
         "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
         "--initial-cluster", f"t={peer}", "--log-level", "warn", "--logger", "zap", *extra],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        probe = EtcdLog([client], "probe")
        deadline = time.monotonic() + 30
        while True:
            try:
                probe.marker()
                break
            except OrderingError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError((folder / "etcd.log").read_text()) from None
                time.sleep(0.1)
        probe.close()
        _MEMBERS[client] = proc
        yield client
    finally:
        _MEMBERS.pop(client, None)
        os.kill(proc.pid, signal.SIGCONT)  # a test that froze it may have failed meanwhile
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _seq(key: str) -> int:
    assert key.startswith("b/")
    return int(key[2:])


def test_racing_writers_get_keys_in_commit_order(etcd_url: str) -> None:
    writers = [EtcdLog([etcd_url], "race") for _ in range(3)]
    revs: list[tuple[int, bytes]] = []
    lock = threading.Lock()

    def write(w: EtcdLog, k: int) -> None:
        for i in range(15):
            value = b"w%d-%d" % (k, i)
            rev = w.put_batch(value)
            with lock:
                revs.append((rev, value))

    threads = [threading.Thread(target=write, args=(w, k)) for k, w in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = EtcdLog([etcd_url], "race")
    got, _, _ = reader.read_after(0, 0, limit=100)
    assert len(got) == 45
    # commit (revision) order, key order and the returned revisions all agree
    assert [r.create_rev for r in got] == sorted(rev for rev, _ in revs)
    assert [_seq(r.key) for r in got] == sorted(_seq(r.key) for r in got)
    assert len({_seq(r.key) for r in got}) == 45
    assert {r.value for r in got} == {v for _, v in revs}
    for w in [*writers, reader]:
        w.close()


def test_a_reader_that_knows_its_last_batch_reads_the_same_as_a_full_scan(
        etcd_url: str) -> None:
    writer = EtcdLog([etcd_url], "resume")
    for i in range(10):
        writer.put_batch(b"first-%d" % i)
    follower = EtcdLog([etcd_url], "resume")
    seen, rev = [], 0
    while True:  # small pages: every read after the first starts after a known batch
        got, _, _ = follower.read_after(rev, 0, limit=3)
        if not got:
            break
        seen += got
        rev = got[-1].create_rev
    for i in range(5):
        writer.put_batch(b"more-%d" % i)
    more, _, _ = follower.read_after(rev, 0, limit=100)
    fresh = EtcdLog([etcd_url], "resume")  # knows nothing: scans the whole prefix
    assert fresh.read_after(rev, 0, limit=100)[0] == more
    assert [r.value for r in seen] == [b"first-%d" % i for i in range(10)]
    assert [r.value for r in more] == [b"more-%d" % i for i in range(5)]
    for log in (writer, follower, fresh):
        log.close()


def test_a_batch_put_after_the_counter_was_deleted_writes_over_no_batch(
        etcd_url: str) -> None:
    """Any agency's certificate deletes any key, the batch counter ``n`` too: its version
    starts again at 1, and the next put took the key of a batch still in etcd. etcd kept that
    key's create revision and changed its value, so the put was confirmed but no reader ever
    read it (batches are selected by create revision), and a node reading that batch again
    from an earlier revision (restarted) took another batch there than the others had. The
    put is refused instead, and the batch in etcd stays as it was."""
    from aetcd.rpc import rpc_pb2 as pb

    writer = EtcdLog([etcd_url], "counter-gone")
    fresh = EtcdLog([etcd_url], "counter-gone")
    try:
        for i in range(3):
            writer.put_batch(b"batch-%d" % i)
        before = writer.read_after(0, 0, limit=100)[0]
        writer._call("DeleteRange", pb.DeleteRangeRequest(key=writer._p + b"n"))
        with pytest.raises(OrderingError, match="counter"):
            EtcdLog([etcd_url], "counter-gone").put_batch(b"lost")
        assert fresh.read_after(0, 0, limit=100)[0] == before
    finally:
        writer.close()
        fresh.close()


class _Lost(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.DEADLINE_EXCEEDED

    def details(self) -> str:
        return "Deadline Exceeded"


class _LosesOneAnswer:
    """An endpoint's stub whose next batch put etcd applies and whose answer is then lost, as
    in a leader change mid-call (the client sees DEADLINE_EXCEEDED)."""

    def __init__(self, kv: Any) -> None:
        self._kv, self.armed, self.lost = kv, False, 0
        self.compares_unanswered = 0  # the next value compares that get no answer at all

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kv, name)

    def Txn(self, request: Any, timeout: float | None = None) -> Any:
        if self.compares_unanswered and request.compare \
                and request.compare[0].target == request.compare[0].VALUE:
            self.compares_unanswered -= 1
            raise _Lost
        got = self._kv.Txn(request, timeout=timeout)
        if self.armed and got.succeeded and request.success \
                and request.success[0].HasField("request_put"):
            self.armed, self.lost = False, self.lost + 1
            raise _Lost
        return got


@pytest.mark.parametrize("endpoints", [1, 2])
def test_a_batch_put_whose_answer_was_lost_is_not_put_twice(etcd_url: str,
                                                            endpoints: int) -> None:
    """A batch put etcd applied but whose answer was lost (a leader change) was put again
    under the next number: by the caller's retry (one endpoint), or at once on the next
    endpoint, whose compare-and-swap found the counter moved. The copy made no block
    (idempotent ids) but took room in etcd until pruned, and a batch of one's own counted
    twice. The batch found at the number first tried is taken as the put."""
    prefix = f"lost-answer-{endpoints}"
    log = EtcdLog([etcd_url] * endpoints, prefix)
    reader = EtcdLog([etcd_url], prefix)
    stub = _LosesOneAnswer(log._ends[0].kv)
    log._ends[0].kv = stub
    try:
        first = log.put_batch(b"batch-0")
        stub.armed = True
        if endpoints == 1:
            with pytest.raises(OrderingError, match="DEADLINE_EXCEEDED"):
                log.put_batch(b"batch-1")
            # the retry's own question (is the batch there ours?) unanswered too: asked again
            stub.compares_unanswered = 1
            with pytest.raises(OrderingError, match="DEADLINE_EXCEEDED"):
                log.put_batch(b"batch-1")
        again = log.put_batch(b"batch-1")  # the caller's retry, or the answer of the first
        assert stub.lost == 1
        later = log.put_batch(b"batch-2")
        batches = reader.read_after(0, 0, limit=100)[0]
        assert [r.value for r in batches] == [b"batch-0", b"batch-1", b"batch-2"]
        assert [r.create_rev for r in batches] == [first, again, later]
        # another batch than the one whose answer was lost is put as ever
        stub.armed = True
        with contextlib.suppress(OrderingError):
            log.put_batch(b"batch-3")
        log.put_batch(b"batch-4")
        assert [r.value for r in reader.read_after(later, 0, limit=100)[0]] == [
            b"batch-3", b"batch-4"]
    finally:
        log.close()
        reader.close()


def test_a_node_a_deleted_counter_keeps_from_putting_batches_says_so_in_health(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The counter deleted, the node's batch put is refused (above), and health said so only
    until the node's next write of its position, which etcd takes: within 5 s (its write
    probe) it said "ok" again while every submission was still refused. It says so until a
    batch is put again, or its probe reads that the counter was mended."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger.tx import Tx
    from node import replication

    monkeypatch.setattr(replication, "_PROBE_EVERY", 0.0)  # the probe at once, not in 5 s
    reg, tax = agencies["reg"], agencies["tax"]
    prefix = "counter-gone-health"
    writer = EtcdLog([etcd_url], prefix)
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0)

    def typed(name: str) -> Tx:
        return ledger.gov_tx("register_type", {"type": {
            "id": name, "title": "Degree", "claims": {"level": "string"}, "derived": {}}},
            [reg, tax])

    def position_rev() -> int:
        kvs = writer._call("Range", pb.RangeRequest(key=writer._p + b"a/edu")).kvs
        return int(kvs[0].mod_revision) if kvs else 0

    try:
        orderer.submit(typed("degree")).result(timeout=30)
        writer._call("DeleteRange", pb.DeleteRangeRequest(key=writer._p + b"n"))
        with pytest.raises(OrderingError, match="counter"):
            orderer.submit(typed("diploma")).result(timeout=30)
        failed_at = position_rev()
        deadline = time.monotonic() + 30
        while position_rev() <= failed_at:  # the node wrote its position again since
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        said = orderer.status()
        assert said["put_failing_since"] and "counter" in said["put_error"], said
        # the operator mends the counter (one put: its version is the last batch's number
        # again); the idle node says "ok" within its probe, without waiting for a batch
        # (it said "degraded" until its next submission)
        assert writer.counter_behind()
        writer._call("Put", pb.PutRequest(key=writer._p + b"n", value=b""))
        assert not writer.counter_behind()
        while orderer.status()["put_failing_since"]:
            assert time.monotonic() < deadline, orderer.status()
            time.sleep(0.05)
        assert orderer.stats.batches_put == 1  # no batch was put meanwhile
        orderer.submit(typed("diploma")).result(timeout=30)
    finally:
        orderer.stop()
        writer.close()


def test_two_members_pruning_at_once_never_move_the_marker_back(etcd_url: str) -> None:
    """ADR 42's race: two nodes both think they are the pruner (their clocks disagree). The
    one that read the marker before the other wrote it must not write an older marker over it."""
    writer = EtcdLog([etcd_url], "prune-race")
    revs = [writer.put_batch(b"batch-%d" % i) for i in range(8)]
    fast, slow = EtcdLog([etcd_url], "prune-race"), EtcdLog([etcd_url], "prune-race")
    seen_by_fast, seen_by_slow = fast.marker(), slow.marker()
    assert seen_by_fast is None and seen_by_slow is None
    assert fast.prune(revs[5], b"up to 6", 0, seen=seen_by_fast) == 6
    # The slow one read the marker before that, and wants to prune less: nothing happens.
    assert slow.prune(revs[2], b"up to 3", 0, seen=seen_by_slow) is None
    now = slow.marker()
    assert now is not None and now.value == b"up to 6"
    left, _, _ = slow.read_after(0, 0, limit=100)
    assert [r.value for r in left] == [b"batch-6", b"batch-7"]
    # With the marker it reads now, it prunes on.
    assert slow.prune(revs[6], b"up to 7", 0, seen=now) == 1
    assert [r.value for r in slow.read_after(0, 0, limit=100)[0]] == [b"batch-7"]
    for log in (writer, fast, slow):
        log.close()


def test_none_gone_after_tells_a_kept_batch_from_one_that_may_be_pruned(etcd_url: str) -> None:
    """``none_gone_after(rev)`` (ADR 64) says no batch after revision ``rev`` is gone only on
    evidence: the batch at ``rev`` still there, the counter last written with it, or the next
    batch by number there (to a reader that read the one at ``rev``). Revision 0 (a node that
    applied nothing) proves nothing: etcd reads a revision bound of 0 as no bound at all."""
    writer = EtcdLog([etcd_url], "gone-after")
    revs = [writer.put_batch(b"batch-%d" % i) for i in range(5)]
    fresh, reader = EtcdLog([etcd_url], "gone-after"), EtcdLog([etcd_url], "gone-after")
    try:
        assert [r.create_rev for r in reader.read_after(revs[0], 0, limit=1)[0]] == [revs[1]]
        assert not fresh.none_gone_after(0)  # batches exist; a fresh node cannot tell
        assert fresh.none_gone_after(revs[2])  # its batch is still there
        assert fresh.none_gone_after(revs[4])
        assert writer.prune(revs[1], b"up to 2", 0, seen=writer.marker()) == 2
        assert not fresh.none_gone_after(revs[1])  # gone, the counter newer, no next known
        assert reader.none_gone_after(revs[1])  # it read that batch: the next one is there
        assert writer.prune(revs[4], b"up to 5", 0, seen=writer.marker()) == 3
        assert fresh.none_gone_after(revs[4])  # the counter was last written with it
        writer.put_batch(b"batch-5")
        assert not fresh.none_gone_after(revs[4])  # now it cannot tell
    finally:
        for log in (writer, fresh, reader):
            log.close()


def test_a_prune_keeps_the_co_signatures_at_the_markers_size(etcd_url: str) -> None:
    """A prune deletes co-signatures below the marker's log size, not those at it: they are
    what a node restarted after a crash reads again to make the marker's block final once more
    (merged co-signatures are written unsynced), on an idle network the head's."""
    log = EtcdLog([etcd_url], "prune-cosigs")
    try:
        revs = [log.put_batch(b"batch-%d" % i) for i in range(3)]
        for size in (3, 5, 7):
            log.put_cosig(size, "reg", b"sig-%d" % size)
        assert log.prune(revs[1], b"marker", cosig_size=5, seen=log.marker()) == 2
        _, _, cosigs = log.read_after(0, 0, limit=100)
        assert [r.key for r in cosigs] == [f"s/{n:020d}/reg" for n in (5, 7)]
    finally:
        log.close()


def test_one_read_of_the_largest_values_fits_in_an_answer() -> None:
    """A read takes batches and co-signatures in one answer; any agency's certificate writes
    co-signatures as large as etcd takes, at sizes never pruned. 180 of them at 1.5 MiB made
    every read (512 co-signatures at most) larger than the client takes: every node's apply
    loop failed for good. (Writing 270 MB to etcd to show it is left to the bound.)"""
    from node.etcdlog import _MAX_MESSAGE, MAX_VALUE, READ_BATCHES, READ_COSIGS, READ_POSITIONS

    assert (READ_BATCHES + 1 + READ_COSIGS) * (MAX_VALUE + 1024) < _MAX_MESSAGE
    assert READ_POSITIONS * (MAX_VALUE + 1024) < _MAX_MESSAGE  # (and positions, by name)


def test_a_read_takes_no_more_co_signatures_than_its_bound(etcd_url: str) -> None:
    """The bound above holds only if a read stops there (a real etcd): one co-signature past
    READ_COSIGS is left for the next read, from the revision the first ended at."""
    from node.etcdlog import READ_COSIGS

    log = EtcdLog([etcd_url], "cosig-read-bound")
    try:
        for n in range(READ_COSIGS + 1):  # each at a revision of its own
            log.put_cosig(n + 1, "tax", b"x")
        _, _, first = log.read_after(0, 0)
        assert [r.key for r in first] == [log._cosig_key(n + 1, "tax")
                                          for n in range(READ_COSIGS)]
        _, _, rest = log.read_after(0, first[-1].mod_rev)
        assert [r.key for r in rest] == [log._cosig_key(READ_COSIGS + 1, "tax")]
    finally:
        log.close()


def test_an_unreachable_member_is_a_clear_ordering_error(tmp_path: Path) -> None:
    base = free_base(1)
    log = EtcdLog([f"http://127.0.0.1:{base}"], "nowhere", timeout=0.5)
    with pytest.raises(OrderingError, match="etcd unreachable"):
        log.put_batch(b"x")
    log.close()


def test_bad_endpoints_are_refused() -> None:
    with pytest.raises(OrderingError, match="no etcd endpoints"):
        EtcdLog([], "n")
    with pytest.raises(OrderingError, match="http:// or https://"):
        EtcdLog(["ftp://127.0.0.1:1"], "n")
    with pytest.raises(OrderingError, match="client certificate"):
        EtcdLog(["https://127.0.0.1:1"], "n")


def test_a_node_cuts_queued_submissions_into_batches_of_at_most_max_batch(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Submissions reach the proposer as one queue item per call (ADR 28); it still cuts them
    into batches of ``max_batch`` and every transaction gets its receipt."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    ledger.govern("register_type", {"type": spec}, [reg, edu], T0 + 1)
    ledger.govern("grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
                  [reg, tax], T0 + 2)
    start = ledger.store.head.height if ledger.store.head else 0
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], "cut-test"), agency="edu",
                          node_key=edu.node_key, clock=lambda: T0 + 10, max_batch=3,
                          workers=0)
    try:
        txs = [issue_tx(ledger.net, edu, bytes([i]) * 32, "degree", i, T0, T0 + DAY, T0 + 5)
               for i in range(8)]
        first = orderer.submit_many(txs[:7])
        second = orderer.submit_many([txs[7], txs[0]])  # one new, one already queued
        receipts = [p.result(timeout=30) for p in first + second]
    finally:
        orderer.stop()
    assert [r.txid for r in receipts] == [t.txid for t in txs[:8]] + [txs[0].txid]
    assert receipts[-1].duplicate and receipts[-1].index == receipts[0].index
    assert len({r.index for r in receipts}) == 8
    head = ledger.store.head
    assert head is not None
    counts = [ledger.store.block(h).tx_count for h in range(start + 1, head.height + 1)]
    assert sum(counts) == 8 and max(counts) <= 3
    assert orderer.stats.batches_put == len(counts) >= 3


def test_an_orderer_that_fails_to_start_leaves_no_worker_process(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A step of the orderer's start after its signature workers were spawned fails (here its
    etcd client, closed, cannot watch): the worker processes were left running until the
    process ended (helper round 29O). The failed start stops them."""
    import multiprocessing

    before = set(multiprocessing.active_children())
    log = EtcdLog([etcd_url], "failed-start")
    log.close()
    with pytest.raises(ValueError, match="Channel closed"):
        EtcdOrderer(ledger.store, log, agency="edu", node_key=agencies["edu"].node_key,
                    clock=lambda: T0 + 10, workers=1)
    assert set(multiprocessing.active_children()) - before == set()


def _edu_beside(etcd_url: str, ledger: LedgerHarness, edu: Agency, prefix: str, **kw: Any
                ) -> tuple[EtcdLog, EtcdOrderer]:
    """A writer standing in for the other agencies' nodes, by hand, and edu's node's orderer
    (its clock at T0 + 10), on the network keys under ``prefix``."""
    return EtcdLog([etcd_url], prefix), EtcdOrderer(
        ledger.store, EtcdLog([etcd_url], prefix), agency="edu", node_key=edu.node_key,
        clock=lambda: T0 + 10, workers=0, **kw)


def _until_pruned(writer: EtcdLog, orderer: EtcdOrderer) -> None:
    """Wait until a pruning marker is in etcd (30 s at most)."""
    deadline = time.monotonic() + 30
    while writer.marker() is None:
        assert time.monotonic() < deadline, f"nothing pruned: {orderer.stats.peers}"
        time.sleep(0.1)


def _until_reads_fail(orderer: EtcdOrderer, timeout: float) -> None:
    """Wait until ``orderer`` says its reads of etcd fail (its member frozen)."""
    deadline = time.monotonic() + timeout
    while not orderer.stats.reads_failing_since:
        assert time.monotonic() < deadline, orderer.stats.last_error
        time.sleep(0.05)


def _until_held(done: Callable[[], bool], mono: list[float], deadline: float,
                orderer: EtcdOrderer) -> None:
    """Wait for ``done()`` (until ``deadline``, monotonic), moving the orderer's timer on
    0.5 s a poll: the positions it reads are judged by their age on that timer."""
    while not done():
        assert time.monotonic() < deadline, orderer.stats.last_error
        mono[0] += 0.5
        time.sleep(0.05)


def _final_block_by_reg(ledger: LedgerHarness, agencies: dict[str, Agency], writer: EtcdLog,
                        orderer: EtcdOrderer, tx_raw: bytes, t: int, *, cosigned: bool = True
                        ) -> tuple[int, bytes]:
    """reg's node proposes a batch of ``tx_raw`` (witnessed by tax) and reg's and tax's nodes
    co-sign the block ``orderer``'s node makes of it; returns once that block is final there
    (made there, if not ``cosigned``): (size, root)."""
    from ledger.batch import Witness, clock_signature, make_batch
    from ledger.finality import sign_checkpoint

    reg, tax = agencies["reg"], agencies["tax"]
    height = ledger.store.head.height
    seen = Witness("tax", t, clock_signature(ledger.net, "tax", tax.node_key, t))
    writer.put_batch(make_batch(ledger.net, "reg", reg.node_key, t, [tx_raw],
                                [seen]).to_bytes())
    deadline = time.monotonic() + 30
    while ledger.store.head.height == height:
        assert time.monotonic() < deadline, orderer.stats.last_error
        time.sleep(0.05)
    head = ledger.store.head
    for name, agency in (("reg", reg), ("tax", tax)) if cosigned else ():  # co-signatures
        line = sign_checkpoint(ledger.net, head, [(name, agency.node_key)]
                               ).signatures[0].to_line()
        writer.put_cosig(head.log_size, name, cosig_value(head, line))
    while cosigned and orderer.final_size < head.log_size:
        assert time.monotonic() < deadline, orderer.stats.last_error
        time.sleep(0.05)
    return head.log_size, head.log_root


def test_a_node_signs_no_block_with_a_key_its_agency_has_not_registered(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A node key file put in place before its rotate_key commits (README: after) made the
    node sign every block it applied with it; merged with the peers' co-signatures, the
    stored final checkpoints held lines by a key the registry did not name there, which the
    audit reports. The node now signs only with the key the block's registry names: the
    others' co-signatures still make its blocks final, and once the rotation commits it signs
    with the new key, with no restart."""
    from ledger.checkpoint import SignedCheckpoint, note_key_hash
    from ledger.finality import unregistered_signatures, verify_final
    from ledger.keys import PrivateKey

    reg, tax = agencies["reg"], agencies["tax"]
    new_key = PrivateKey.generate()  # edu's next node key, not registered yet
    prefix = "unregistered-key"
    writer = EtcdLog([etcd_url], prefix)  # the other agencies' nodes, by hand
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=new_key, clock=lambda: T0 + 10, workers=0)

    def block_by_reg(tx_raw: bytes, t: int) -> tuple[int, bytes]:
        return _final_block_by_reg(ledger, agencies, writer, orderer, tx_raw, t)

    def stored(size: int) -> SignedCheckpoint:
        text = ledger.store.checkpoint(size)
        assert text is not None
        return SignedCheckpoint.from_text(text)

    mine = note_key_hash("edu", new_key.public.raw)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        assert orderer.status()["member"] is False
        size, _ = block_by_reg(ledger.gov_tx("register_type", {"type": spec}, [reg, tax]).raw,
                               T0 + 5)
        before = stored(size)
        assert {s.name for s in before.signatures} == {"reg", "tax"}, before.to_text()
        assert mine not in {s.key_hash for s in before.signatures}
        assert unregistered_signatures(before, ledger.registry) == []
        # the rotation commits: its block and the ones after are signed with the new key
        size, _ = block_by_reg(ledger.gov_tx("rotate_key", {
            "agency": "edu", "role": "node", "new_key": new_key.public.raw, "at": T0 + 7},
            [reg, tax]).raw, T0 + 7)
        assert orderer.status()["member"] is True
        # final once two of the three signed: tax's line, put as well, may be merged a moment
        # later (a fresh-clone run under load read the checkpoint between the two)
        deadline = time.monotonic() + 30
        while len((after := stored(size)).signatures) < 3:
            assert time.monotonic() < deadline, after.to_text()
            time.sleep(0.05)
        assert ("edu", mine) in {(s.name, s.key_hash) for s in after.signatures}
        assert verify_final(after, ledger.registry, T0 + 7) == {"edu", "reg", "tax"}
    finally:
        orderer.stop()
        writer.close()
    from ledger.audit import audit

    ledger.close()
    report = audit(ledger.path, now=T0 + 20)
    assert not [p for p in report.problems if p.kind == "checkpoint"], report.problems


def _taken_up(orderer: EtcdOrderer, rev: int) -> None:
    """Wait until ``orderer`` has read the batch at etcd revision ``rev`` (applied or
    skipped)."""
    deadline = time.monotonic() + 30
    while orderer.rev < rev:
        assert time.monotonic() < deadline, orderer.stats.last_error
        time.sleep(0.05)


def test_a_node_signs_no_block_past_the_time_its_key_was_rotated_out(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A rotation takes effect at its ``at`` time, which may come blocks after the one that
    commits it. A node still running the old key signs the blocks before that time, and none
    from then on: its line there is by a key no longer valid at that block, which counts for
    nothing and would be stored in the block's final checkpoint beside the others'. Whether
    it signs is judged by the block's registry at the block's time, not by the head it built
    the block on."""
    from ledger.checkpoint import SignedCheckpoint, note_key_hash
    from ledger.keys import PrivateKey

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, edu, "rotated-out-key")
    old = note_key_hash("edu", edu.node_key.public.raw)

    def lines(size: int) -> set[tuple[str, bytes]]:
        text = ledger.store.checkpoint(size)
        assert text is not None
        return {(s.name, s.key_hash) for s in SignedCheckpoint.from_text(text).signatures}

    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "rotate_key", {"agency": "edu", "role": "node",
                           "new_key": PrivateKey.generate().public.raw, "at": T0 + 7},
            [reg, tax]).raw, T0 + 5)
        deadline = time.monotonic() + 30
        while ("edu", old) not in lines(size):  # before T0 + 7: the old key still signs
            assert time.monotonic() < deadline, lines(size)
            time.sleep(0.05)
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 8)
        assert ledger.store.head.time >= T0 + 7
        assert {name for name, _ in lines(size)} == {"reg", "tax"}, lines(size)
    finally:
        orderer.stop()
        writer.close()


def test_a_batch_of_an_agency_removed_by_governance_is_refused_by_the_network(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """SECURITY.md: once governance removes an agency, "its batches are refused at once".
    The cluster test saw its own node refuse a submission at its door; a removed agency
    still reaches etcd until its operator takes it out (THREAT_MODEL, "Revocation needs the
    operator"), so the other nodes must skip a batch it puts there itself, signed with its
    node key, even one of transactions the network would otherwise take."""
    from ledger.batch import make_batch
    from ledger.tx import Tx

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    prefix = "removed-proposer"
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], prefix)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}

    def put(proposer: Agency, tx: Tx, t: int) -> None:
        """``proposer``'s node puts a batch of ``tx``; returns once edu's node took it up
        (applied or skipped: its revision read)."""
        _taken_up(orderer, writer.put_batch(make_batch(ledger.net, proposer.id,
                                                       proposer.node_key, t, [tx.raw]).to_bytes()))

    try:
        typed = ledger.gov_tx("register_type", {"type": spec}, [reg, tax])
        put(tax, typed, T0 + 5)  # while tax is a current agency, its batch is taken
        assert ledger.store.tx_location(typed.txid) is not None
        put(reg, ledger.gov_tx("remove_agency", {"agency": "tax"}, [reg, edu]), T0 + 6)
        assert orderer.stats.batches_skipped == 0
        before = ledger.store.head
        grant = ledger.gov_tx("grant", {"agency": "edu", "type": "degree", "from": T0,
                                        "until": T0 + DAY}, [reg, edu])
        put(tax, grant, T0 + 7)  # well-formed, signed by a quorum: only its proposer is not
        assert orderer.stats.batches_skipped == 1
        assert ledger.store.head == before  # no block of it
        assert ledger.store.tx_location(grant.txid) is None
        put(reg, grant, T0 + 8)  # the same transaction from a current agency's node
        assert ledger.store.tx_location(grant.txid) is not None
    finally:
        orderer.stop()
        writer.close()


@pytest.mark.parametrize("other", ["root", "block"])
def test_a_late_co_signature_of_another_root_is_evidence_after_a_later_final_one(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency], other: str) -> None:
    """A node whose chain forked (a tampered store) and that was slow to sign: its
    co-signature of another root came after a later checkpoint was final here, which had
    dropped this node's pending checkpoint at that size, and it was dropped unchecked: no
    evidence, and the peers never named the fork (seen in test_cluster under load). It is
    checked against this node's own root and block at that size: the same log in other
    blocks (another block hash named) is a fork too (ADR 60)."""
    from ledger import codec
    from ledger.checkpoint import Checkpoint, SignedCheckpoint
    from ledger.finality import block_line

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = f"late-fork-{other}"
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], prefix)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        early, root = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5, cosigned=False)
        late, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6)
        assert orderer.final_size == late > early
        # nodes co-sign the newest block they applied: the final one covers the early one,
        # whose pending checkpoint is dropped
        assert ledger.store.checkpoint(early) is None
        block = ledger.store.block(ledger.store.head.height - 1)
        assert block.log_size == early
        forked = bytes(32) if other == "root" else root
        named = block.hash if other == "root" else hashlib.sha256(block.hash).digest()
        line = SignedCheckpoint(Checkpoint(ledger.net, early, forked, (
            block_line(block.height, named),))).cosign("tax", tax.node_key).signatures[0].to_line()
        writer.put_cosig(early, "tax", codec.encode({"root": forked, "line": line,
                                                     "height": block.height, "hash": named}))
        deadline = time.monotonic() + 30
        while not orderer.evidence_for(early):
            assert time.monotonic() < deadline, "no evidence of tax's other checkpoint"
            time.sleep(0.05)
        [(agency, theirs)] = orderer.evidence_for(early)
        said = SignedCheckpoint.from_text(theirs).checkpoint
        assert agency == "tax" and (said.root, said.extensions[0]) == (
            forked, block_line(block.height, named))
        assert orderer.stats.equivocations == 1 and not orderer.halted
        assert ledger.store.root_at(early) == root
        assert (root, block.hash) != (forked, named)
    finally:
        orderer.stop()
        writer.close()


def _disarm_nospace(url: str, filler_prefix: bytes) -> None:
    """The runbook after a NOSPACE alarm: the filler's keys deleted, history compacted,
    defragmented, every alarm disarmed."""
    from aetcd.rpc import rpc_pb2 as pb
    from aetcd.rpc import rpc_pb2_grpc as pbg

    with grpc.insecure_channel(url.partition("://")[2]) as channel:
        kv, admin = pbg.KVStub(channel), pbg.MaintenanceStub(channel)
        gone = kv.DeleteRange(pb.DeleteRangeRequest(
            key=filler_prefix, range_end=filler_prefix[:-1] + b"0"), timeout=10)
        kv.Compact(pb.CompactionRequest(revision=gone.header.revision, physical=True),
                   timeout=10)
        admin.Defragment(pb.DefragmentRequest(), timeout=30)
        for alarm in admin.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET),
                                 timeout=10).alarms:
            admin.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE,
                                        memberID=alarm.memberID, alarm=alarm.alarm),
                        timeout=10)


def _a_fork_ahead(writer: EtcdLog, ledger: LedgerHarness,
                  agencies: dict[str, Agency]) -> tuple[int, int]:
    """Put reg's batch of one governance transaction, and reg's and tax's co-signatures of
    another checkpoint at the size (and block height) the node's block of it will end at: a
    quorum (2) that is not the node's chain, on which it halts. That (size, height)."""
    from ledger import codec
    from ledger.batch import Witness, make_batch
    from ledger.checkpoint import Checkpoint, SignedCheckpoint
    from ledger.finality import block_line

    head = ledger.store.head
    size, height = head.log_size + 1, head.height + 1
    reg, tax, t = agencies["reg"], agencies["tax"], T0 + 5
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    seen = Witness("tax", t, clock_signature(ledger.net, "tax", tax.node_key, t))
    writer.put_batch(make_batch(ledger.net, "reg", reg.node_key, t, [ledger.gov_tx(
        "register_type", {"type": spec}, [reg, tax]).raw], [seen]).to_bytes())
    forked = Checkpoint(ledger.net, size, bytes(32), (block_line(height, bytes(32)),))
    for name, agency in (("reg", reg), ("tax", tax)):
        line = SignedCheckpoint(forked).cosign(name, agency.node_key).signatures[0].to_line()
        writer.put_cosig(size, name, codec.encode({"root": bytes(32), "line": line,
                                                   "height": height, "hash": bytes(32)}))
    return size, height


def test_a_node_halted_on_a_fork_publishes_its_co_signature_once_etcd_takes_it(
        tmp_path: Path, ledger: LedgerHarness, agencies: dict[str, Agency],
        caplog: pytest.LogCaptureFixture) -> None:
    """A node (a tampered store) applies a block, and in the same step reads a quorum's
    co-signatures of another checkpoint at its size: it halts as the fork. Its own
    co-signature of that block is what names the fork to its peers; etcd refused that put
    (here its NOSPACE alarm; in test_cluster under load, a timeout), and a halted node tried
    nothing again: its peers never held evidence against it, while it stayed halted, behind
    them (seen in test_cluster::test_a_node_with_a_tampered_store_is_caught_by_its_peers).
    Once etcd takes writes again, the halted node's co-signature of its own block is put.
    Round 43M: it is put again once a second (not at every poll of the loop), the refusal
    logged once for the run of refusals, and nothing is put again once etcd took it."""
    import itertools

    from ledger import codec
    from node.etcdlog import NoSpace

    edu = agencies["edu"]
    prefix = "halted-unpublished"
    (tmp_path / "etcd").mkdir()
    with _etcd_member(tmp_path / "etcd", "--quota-backend-bytes", str(1 << 20)) as url:
        writer, filler = EtcdLog([url], prefix), EtcdLog([url], "filler")
        size, height = _a_fork_ahead(writer, ledger, agencies)
        with pytest.raises(NoSpace):
            _fill(filler)
        tried: list[float] = []  # when each co-signature put was tried

        class Counting(EtcdLog):  # the real log, the time of each put of a co-signature kept
            def publish(self, size: int, agency: str, cosig: bytes, applied: bytes) -> None:
                tried.append(time.monotonic())
                super().publish(size, agency, cosig, applied)

        orderer = EtcdOrderer(ledger.store, Counting([url], prefix), agency="edu",
                              node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)
        try:
            deadline = time.monotonic() + 30
            while not orderer.halted:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            assert "fork" in orderer.halted
            assert (ledger.store.head.height, ledger.store.head.log_size) == (height, size)
            ours = f"s/{size:020d}/edu"
            assert ours not in {r.key for r in writer.read_after(0, 0)[2]}  # refused
            assert "database space exceeded" in orderer.stats.put_error
            while len(tried) < 4:  # the step's own put, then the halted loop's, refused
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            again = [later - earlier for earlier, later in itertools.pairwise(tried[1:])]
            assert min(again) >= 0.5, again  # once a second, not at every poll (0.25 s)
            refusals = [r for r in caplog.records
                        if "etcd refused this node's co-signature" in r.getMessage()]
            assert len(refusals) == 1, [r.getMessage() for r in refusals]  # once a run
            _disarm_nospace(url, b"/credledger/filler/")
            deadline = time.monotonic() + 30
            while not (got := [r for r in writer.read_after(0, 0)[2] if r.key == ours]):
                assert time.monotonic() < deadline, "the halted node never put its co-signature"
                time.sleep(0.1)
            said = codec.decode(got[0].value, what="co-signature")
            assert said["root"] == ledger.store.root_at(size) != bytes(32)
            assert (said["height"], said["hash"]) == (height, ledger.store.block(height).hash)
            assert ledger.store.head.height == height  # still halted: nothing more built
            deadline = time.monotonic() + 30  # and health says so (its refused put is the one
            while not orderer.status()["fork_evidence_published"]:  # taken: round 44M)
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            taken = len(tried)
            time.sleep(2.5)  # two and more of the halted loop's seconds
            assert len(tried) == taken  # taken: not put again
        finally:
            orderer.stop()
            writer.close()
            filler.close()


def test_a_node_halted_on_a_fork_and_restarted_puts_its_co_signature_once_etcd_takes_it(
        tmp_path: Path, ledger: LedgerHarness, agencies: dict[str, Agency],
        caplog: pytest.LogCaptureFixture) -> None:
    """As above, but the halted node is stopped while etcd still refuses its co-signature (the
    refused one was held in memory only) and started again: from its store (the fork is
    re-found in the evidence it kept) it puts the co-signature it signed at that size, the same
    bytes, once etcd takes writes; health says whether etcd holds it. Started again once more,
    with etcd holding it, it puts nothing. Its refusals, one a second, are said once
    (a mutant saying each lived: round 44M)."""
    from node.etcdlog import NoSpace

    edu = agencies["edu"]
    prefix = "halted-restarted"
    (tmp_path / "etcd").mkdir()
    with _etcd_member(tmp_path / "etcd", "--quota-backend-bytes", str(1 << 20)) as url:
        writer, filler = EtcdLog([url], prefix), EtcdLog([url], "filler")
        size, height = _a_fork_ahead(writer, ledger, agencies)
        with pytest.raises(NoSpace):
            _fill(filler)
        ours = f"s/{size:020d}/edu"

        def start() -> EtcdOrderer:
            return EtcdOrderer(ledger.store, EtcdLog([url], prefix), agency="edu",
                               node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)

        orderer = start()
        try:
            deadline = time.monotonic() + 30
            while not orderer.halted or orderer._unpublished is None:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            signed = cosig_value(*orderer._unpublished)  # what it signed, refused
            assert orderer.status()["fork_evidence_published"] is False
        finally:
            orderer.stop()
        assert ours not in {r.key for r in writer.read_after(0, 0)[2]}  # refused
        orderer = start()  # halted (the store says so), the co-signature refused still
        try:
            assert orderer.halted is not None and "fork" in orderer.halted
            deadline = time.monotonic() + 30
            while "database space exceeded" not in orderer.stats.put_error:
                assert time.monotonic() < deadline, "the restarted node never tried to put it"
                time.sleep(0.05)
            assert orderer.status()["fork_evidence_published"] is False
            time.sleep(2.5)  # two and more of the halted loop's seconds, each put refused
            said = [r.getMessage() for r in caplog.records
                    if "which names its fork to its peers" in r.getMessage()]
            assert len(said) == 1, said  # once a run of refusals
            _disarm_nospace(url, b"/credledger/filler/")
            deadline = time.monotonic() + 30
            while not (got := [r for r in writer.read_after(0, 0)[2] if r.key == ours]):
                assert time.monotonic() < deadline, "the restarted node never put it"
                time.sleep(0.1)
            assert got[0].value == signed  # the same bytes: nothing signed again
            deadline = time.monotonic() + 30
            while not orderer.status()["fork_evidence_published"]:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            assert ledger.store.head.height == height  # still halted: nothing more built
        finally:
            orderer.stop()
        orderer = start()  # etcd holds it: read, not put again
        try:
            deadline = time.monotonic() + 30
            while not orderer.status()["fork_evidence_published"]:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            again = [r for r in writer.read_after(0, 0)[2] if r.key == ours]
            assert [(r.value, r.mod_rev) for r in again] == [(signed, got[0].mod_rev)]
        finally:
            orderer.stop()
            writer.close()
            filler.close()


def test_a_halted_node_with_a_damaged_evidence_record_still_finds_its_fork(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A node halted on a fork reads its evidence records again at each start to find its
    own co-signature at the fork's size. One record damaged so that it decodes, but with a
    ``size`` that is no number, raised out of the thread that applies blocks: it died, and the
    node never read or put its co-signature again while health said it would, once a second
    (helper round 43V). The record counts for nothing, as a damaged record does elsewhere."""
    from ledger import codec
    from node.replication import _BE, _EVIDENCE

    edu = agencies["edu"]
    prefix = "halted-damaged-evidence"
    writer = EtcdLog([etcd_url], prefix)
    size, _ = _a_fork_ahead(writer, ledger, agencies)

    def start() -> EtcdOrderer:
        return EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                           node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)

    def published(orderer: EtcdOrderer) -> None:
        deadline = time.monotonic() + 30
        while not orderer.status()["fork_evidence_published"]:
            assert all(th.is_alive() for th in orderer._threads), "a thread died"
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)

    try:
        orderer = start()
        try:
            published(orderer)
            assert orderer.halted is not None and "fork" in orderer.halted
        finally:
            orderer.stop()
        for bad in ("twelve", None, [size]):
            ledger.store.put_records({_EVIDENCE + _BE.pack(size) + b"zz": codec.encode(
                {"size": bad, "agency": "zz", "ours": "", "theirs": "", "seen": 0})})
            orderer = start()
            try:
                published(orderer)
            finally:
                orderer.stop()
    finally:
        writer.close()


def test_a_damaged_stored_checkpoint_accuses_no_peer_and_halts_nothing(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency],
        caplog: pytest.LogCaptureFixture) -> None:
    """A final checkpoint of this node's (not its newest), its root changed on disk while the
    node was stopped, its blocks and log whole. Late co-signatures of that block (peers that
    were behind) were each recorded as an equivocation by that peer, and with a quorum of them
    the node halted as "a fork". A stored text is checked against the node's own block at its
    size: not it, the log says so, no one is accused, and nothing is merged into it."""
    import base64

    from ledger.checkpoint import SignedCheckpoint
    from ledger.finality import checkpoint_of

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = "damaged-final"
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], prefix)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        early, root = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5)
        late, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6)
    finally:
        orderer.stop()
    assert orderer.final_size == late > early and orderer.stats.equivocations == 0
    text = ledger.store.checkpoint(early)
    assert text is not None
    damaged = text.replace(base64.b64encode(root), base64.b64encode(bytes(32)))
    assert SignedCheckpoint.from_text(damaged).checkpoint.root == bytes(32)
    ledger.store.put_checkpoint(early, damaged)  # (as plyvel would, the node stopped)
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0)
    try:
        block = ledger.store.block(ledger.store.head.height - 1)
        assert block.log_size == early
        for name, agency in (("reg", reg), ("tax", tax)):  # late: peers that were behind
            line = SignedCheckpoint(checkpoint_of(ledger.net, block)).cosign(
                name, agency.node_key).signatures[0].to_line()
            writer.put_cosig(early, name, cosig_value(block, line))  # (a header has its fields)
        deadline = time.monotonic() + 30
        while orderer.stats.equivocations < 2 and [
                r for r in caplog.records if "not the checkpoint of its own block there" in
                r.getMessage()][1:] == []:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert orderer.halted is None and orderer.evidence_for(early) == []
        assert orderer.stats.equivocations == 0 and orderer.final_size == late
    finally:
        orderer.stop()
        writer.close()
    assert ledger.store.checkpoint(early) == damaged  # (left for the audit to name)


def test_a_checkpoint_short_of_the_quorum_with_a_co_signature_is_not_final(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness],
        agencies: dict[str, Agency]) -> None:
    """A merged co-signature makes a checkpoint final only with a quorum of the node keys in
    force at its block: with a quorum of three, this node's line and one peer's are two, and
    the checkpoint stays pending (it is no final checkpoint to serve); the third makes it."""
    from ledger.finality import sign_checkpoint

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    ledger = make_ledger(list(agencies.values()), 3, T0)
    writer, orderer = _edu_beside(etcd_url, ledger, edu, "quorum-of-three")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, edu, tax]).raw, T0 + 5, cosigned=False)
        head = ledger.store.head

        def cosign(name: str, key: Any) -> None:
            line = sign_checkpoint(ledger.net, head, [(name, key)]).signatures[0].to_line()
            writer.put_cosig(size, name, cosig_value(head, line))

        cosign("reg", reg.node_key)
        deadline = time.monotonic() + 30
        while orderer.stats.cosigs_merged < 1:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        writer.put_cosig(size + 10**6, "reg", b"x")  # read in a later step than reg's
        while orderer.stats.cosigs_forged < 1:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert orderer.final_size == 0 and ledger.store.checkpoint(size) is None
        assert orderer.final_checkpoint() is None
        cosign("tax", tax.node_key)
        while orderer.final_size != size:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
    finally:
        orderer.stop()
        writer.close()


def test_a_late_co_signature_is_added_to_the_final_checkpoint_in_place(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A co-signature read after its checkpoint became final (the quorum was there already)
    is added to the stored final checkpoint: the more agencies' lines it carries, the more
    verifiers holding only some node keys can check it."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.finality import sign_checkpoint

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, edu, "late-in-place")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5, cosigned=False)
        head = ledger.store.head

        def names() -> set[str]:
            text = ledger.store.checkpoint(size)
            return set() if text is None else {
                sig.name for sig in SignedCheckpoint.from_text(text).signatures}

        for name, key in (("reg", reg.node_key), ("tax", tax.node_key)):
            line = sign_checkpoint(ledger.net, head, [(name, key)]).signatures[0].to_line()
            writer.put_cosig(size, name, cosig_value(head, line))
            deadline = time.monotonic() + 30
            while name not in names():  # final with reg's; tax's comes after
                assert time.monotonic() < deadline, (name, names(), orderer.final_size)
                time.sleep(0.05)
        assert names() == {"edu", "reg", "tax"} and orderer.final_size == size
    finally:
        orderer.stop()
        writer.close()


def test_a_co_signature_read_again_leaves_the_final_checkpoint_whole(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Once a checkpoint is final its pending one (this node's signature and those merged
    before the quorum) is dropped, that size's too: a co-signature read again after that (put
    again, or read anew) is merged into the final checkpoint, not into the pending text, which
    was written over the final one without the signatures merged since."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.finality import sign_checkpoint

    reg, tax = agencies["reg"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], "cosig-again")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5)
        text = ledger.store.checkpoint(size)
        assert text is not None
        names = sorted(sig.name for sig in SignedCheckpoint.from_text(text).signatures)
        deadline = time.monotonic() + 30
        while names != ["edu", "reg", "tax"]:  # tax's may come after the quorum
            assert time.monotonic() < deadline, names
            time.sleep(0.05)
            text = ledger.store.checkpoint(size)
            assert text is not None
            names = sorted(sig.name for sig in SignedCheckpoint.from_text(text).signatures)
        assert list(ledger.store.iterate(b"xcp")) == []  # no pending checkpoint left
        head = ledger.store.head
        line = sign_checkpoint(ledger.net, head, [("reg", reg.node_key)]).signatures[0].to_line()
        merged = orderer.stats.cosigs_merged
        writer.put_cosig(size, "reg", cosig_value(head, line))  # read again
        # a later block made here and final: the co-signature above was taken in before
        later, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6)
        assert ledger.store.checkpoint(size) == text
        # final with reg's; tax's may be merged after (a fresh-clone run under load saw 1)
        deadline = time.monotonic() + 30
        while True:
            final = ledger.store.checkpoint(later)
            assert final is not None
            if sorted(s.name for s in SignedCheckpoint.from_text(final).signatures) == [
                    "edu", "reg", "tax"]:
                break
            assert time.monotonic() < deadline, orderer.stats
            time.sleep(0.05)
        assert orderer.stats.cosigs_merged == merged + 2  # the later block's two
    finally:
        orderer.stop()
        writer.close()


def test_an_upgraded_node_judges_new_co_signatures_by_its_block_not_its_older_text(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A node upgraded across ADR 60 holds pending checkpoints its older version wrote (the
    root alone), and re-reads the co-signatures in etcd at start: the new-format ones its
    upgraded peers published for those sizes named a block, so they differed from its text
    and were taken as evidence; with a quorum of them the node halted as a fork of its own
    chain (the third node of a rolling upgrade from 4669cd0 did, ADR 62). They are judged
    by the block the store holds there. An older peer's co-signature (root and line, no
    block) was a malformed one: it is no evidence where its root is ours, counts for
    nothing, and the peer is named as of an older version; one of another root is evidence."""
    from ledger import codec
    from ledger.chain import Head
    from ledger.checkpoint import Checkpoint, SignedCheckpoint
    from ledger.finality import sign_checkpoint
    from node.replication import _BE, _PENDING

    reg, tax, edu = agencies["reg"], agencies["tax"], agencies["edu"]
    writer, orderer = _edu_beside(etcd_url, ledger, edu, "upgraded-older-text")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        early, root = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5, cosigned=False)
        late, late_root = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6, cosigned=False)
        assert orderer.final_size == 0
        # what the version before ADR 60 left at the early size: its checkpoint of the root
        older = SignedCheckpoint(Checkpoint(ledger.net, early, root)).cosign("edu", edu.node_key)
        ledger.store.put_records({_PENDING + _BE.pack(early): older.to_text().encode()})
        block = ledger.store.block(ledger.store.head.height - 1)
        at = Head(block.height, block.hash, block.log_size, block.log_root, block.time)
        assert at.log_size == early
        head = ledger.store.head
        for name, agency in (("reg", reg), ("tax", tax)):  # upgraded peers, of that block
            line = sign_checkpoint(ledger.net, at, [(name, agency.node_key)]
                                   ).signatures[0].to_line()
            writer.put_cosig(early, name, cosig_value(at, line))
        deadline = time.monotonic() + 30
        while orderer.final_size < early:
            assert time.monotonic() < deadline, (orderer.halted, orderer.evidence())
            time.sleep(0.05)
        assert not orderer.halted and orderer.evidence() == []
        # an older peer's co-signature of the late block: the root alone
        forged = orderer.stats.cosigs_forged
        line = SignedCheckpoint(Checkpoint(ledger.net, late, late_root)).cosign(
            "tax", tax.node_key).signatures[0].to_line()
        writer.put_cosig(late, "tax", codec.encode({"root": late_root, "line": line}))
        while orderer.older_peers() != ["tax"]:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert orderer.status()["older_peers"] == ["tax"]
        assert orderer.evidence() == [] and orderer.stats.cosigs_forged == forged
        assert orderer.final_size == early  # it counts for nothing
        # and one of another root is evidence, as before ADR 60
        line = SignedCheckpoint(Checkpoint(ledger.net, late, bytes(32))).cosign(
            "reg", reg.node_key).signatures[0].to_line()
        writer.put_cosig(late, "reg", codec.encode({"root": bytes(32), "line": line}))
        while not orderer.evidence_for(late):
            assert time.monotonic() < deadline, "no evidence of reg's other root"
            time.sleep(0.05)
        assert not orderer.halted and head == ledger.store.head
    finally:
        orderer.stop()
        writer.close()


def _edu_at_t0(etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency], prefix: str,
               timer: Callable[[], float]) -> EtcdOrderer:
    """edu's node on ``ledger``'s store, its clock at T0 + 10, its monotonic time ``timer``."""
    return EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                       node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0,
                       timer=timer)


def _held_beside_an_older_reg(etcd_url: str, ledger: LedgerHarness,
                              agencies: dict[str, Agency], prefix: str,
                              position: dict[str, Any], timer: Callable[[], float]
                              ) -> tuple[EtcdLog, EtcdOrderer]:
    """edu's node beside reg's node of a version before ADR 58 (its ``position``, no signed
    clock, written by hand), once reg's batch is in etcd and edu's node says it holds:
    (reg's writer, edu's orderer), both to be closed by the caller."""
    from ledger import codec
    from ledger.batch import make_batch

    reg, tax = agencies["reg"], agencies["tax"]
    writer = EtcdLog([etcd_url], prefix)
    writer.put_applied("reg", codec.encode(position))
    orderer = _edu_at_t0(etcd_url, ledger, agencies, prefix, timer)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        writer.put_batch(make_batch(ledger.net, "reg", reg.node_key, T0 + 9, [ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw]).to_bytes())
        deadline = time.monotonic() + 30
        while "before ADR 58" not in orderer.stats.last_error:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
    except BaseException:
        orderer.stop()
        writer.close()
        raise
    return writer, orderer


def test_a_node_applies_nothing_beside_a_node_of_a_version_before_adr_58(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A version before ADR 58 times a block by its proposer alone, publishes no signed clock
    and refuses batches that carry witnesses. A node upgraded beside such nodes (a rolling
    upgrade from ecc2eee, as README said) applied their batches at other block times, a
    chain of its own, and its own batches were skipped there. Now, while a current peer's
    position without a signed clock is fresh, it applies and takes nothing and says why
    (ADR 62); one found at start that does not change for 35 s is a stopped node of that
    version (all upgraded at once), and one that signs its clock is upgraded."""
    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    mono = [1000.0]
    older = {"rev": 1, "height": 0, "size": 1, "time": T0 + 10}
    height = ledger.store.head.height
    writer, orderer = _held_beside_an_older_reg(etcd_url, ledger, agencies, "older-clock",
                                                older, lambda: mono[0])
    try:
        deadline = time.monotonic() + 30
        said = orderer.stats.last_error
        assert "the node of reg runs a version before ADR 58" in said
        assert "stop every node and upgrade them all at once" in said
        with pytest.raises(OrderingError, match="before ADR 58"):
            orderer.submit(ledger.gov_tx("grant", {"agency": "edu", "type": "degree",
                                                   "from": T0, "until": T0 + DAY}, [reg, tax]))
        mono[0] += 20  # reg's node publishes again, still of that version: still nothing
        writer.put_applied("reg", codec.encode({**older, "time": T0 + 20}))
        time.sleep(1.5)
        mono[0] += 20
        time.sleep(1.5)
        assert ledger.store.head.height == height and orderer.stats.failing_since
        mono[0] += 36  # it stopped (all upgraded at once): unchanged for 35 s
        # applied, and the reason it held no longer said (cleared once the apply loop's steps
        # end, a moment after the block is in the store: it failed under load, checked at once)
        while ledger.store.head.height == height or \
                "before ADR 58" in orderer.stats.last_error:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
    finally:
        orderer.stop()
        writer.close()


def test_a_node_goes_on_once_its_older_peer_signs_its_clock(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The peer of a version before ADR 58 upgraded: its position signs its clock, and the
    node applies at once (not after 35 s)."""
    from ledger import codec

    reg = agencies["reg"]
    height = ledger.store.head.height
    writer, orderer = _held_beside_an_older_reg(
        etcd_url, ledger, agencies, "older-clock-upgraded",
        {"rev": 1, "height": 0, "size": 1, "time": T0 + 10}, time.monotonic)
    try:
        deadline = time.monotonic() + 30
        writer.put_applied("reg", codec.encode({
            "rev": 2, "height": 0, "size": 1, "time": T0 + 11,
            "clock_sig": clock_signature(ledger.net, "reg", reg.node_key, T0 + 11).hex()}))
        while ledger.store.head.height == height:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
    finally:
        orderer.stop()
        writer.close()


def test_a_node_publishes_its_consensus_rules_and_names_a_peer_that_runs_others(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Versions that judge a transaction differently fork a network mixed by a rolling
    upgrade (round 28G). Each node publishes its rules version with its position, and names
    the peers whose published one differs; a position without one is of a version before ADR
    77 (ADR 77)."""
    from ledger import codec
    from ledger.state import RULES

    reg = agencies["reg"]

    def position(t: int, **more: int) -> bytes:
        return codec.encode({"rev": 0, "height": 0, "size": 1, "time": t, **more,
                             "clock_sig": clock_signature(ledger.net, "reg", reg.node_key,
                                                          t).hex()})

    writer = EtcdLog([etcd_url], "rules-published")
    writer.put_applied("reg", position(T0 + 9))
    orderer = _edu_at_t0(etcd_url, ledger, agencies, "rules-published", time.monotonic)
    try:
        deadline = time.monotonic() + 30
        while orderer.other_rules() != {"reg": 0} or "edu" not in writer.applied(["edu"]):
            assert time.monotonic() < deadline, (orderer.other_rules(), orderer.stats.last_error)
            time.sleep(0.05)
        assert writer.applied(["edu"])["edu"]["rules"] == RULES
        assert orderer.status()["rules"] == RULES
        assert orderer.status()["other_rules"] == {"reg": 0}
        writer.put_applied("reg", position(T0 + 10, rules=RULES))  # reg's node upgraded
        while orderer.other_rules():
            assert time.monotonic() < deadline, orderer.other_rules()
            time.sleep(0.05)
        assert orderer.status()["peers"]["reg"]["rules"] == RULES
    finally:
        orderer.stop()
        writer.close()


def test_a_node_builds_no_block_a_node_of_a_version_before_adr_58_applied(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """All upgraded at once from before ADR 58, but this node was behind: the batches its
    peers applied with the older version, built here, would make blocks of other times (a
    fork). It applies nothing past its head while a peer's position, as etcd holds it, says
    it applied more with that version, also after a restart. Only while etcd holds it: any
    agency's certificate writes any position, and a height kept from one forged write held
    every node for good; once that agency's node publishes anew (a signed clock), it goes
    on (ADR 62)."""
    from ledger import codec

    reg = agencies["reg"]
    prefix = "older-clock-ahead"
    height = ledger.store.head.height
    mono = [1000.0]
    writer, orderer = _held_beside_an_older_reg(
        etcd_url, ledger, agencies, prefix,
        {"rev": 9, "height": height + 1, "size": 2, "time": T0 + 10}, lambda: mono[0])
    try:
        deadline = time.monotonic() + 30
        mono[0] += 36  # found at start, unchanged: a stopped node, but ahead of this one
        _until_held(lambda: f"reg up to height {height + 1}" in orderer.stats.last_error,
                    mono, deadline, orderer)
        orderer.stop()
        # restarted: reg's older position is still in etcd
        orderer = _edu_at_t0(etcd_url, ledger, agencies, prefix, lambda: mono[0])
        for _ in range(20):
            mono[0] += 0.5
            time.sleep(0.05)
        mono[0] += 36  # (found at start again: said as live until it is 35 s old)
        _until_held(lambda: f"reg up to height {height + 1}" in orderer.stats.last_error,
                    mono, deadline, orderer)
        assert ledger.store.head.height == height
        assert f"reg up to height {height + 1}" in orderer.stats.last_error
        assert "put the older version back on this node" in orderer.stats.last_error
        writer.put_applied("reg", codec.encode({  # reg's node publishes anew, upgraded
            "rev": 10, "height": height + 1, "size": 2, "time": T0 + 11,
            "clock_sig": clock_signature(ledger.net, "reg", reg.node_key, T0 + 11).hex()}))
        _until_held(lambda: ledger.store.head.height != height, mono, deadline, orderer)
        assert ledger.store.head.height == height + 1
    finally:
        orderer.stop()
        writer.close()


def test_an_older_position_below_the_pruning_marker_holds_no_catch_up(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """All upgraded at once from before ADR 58 while reg's node was down: its position
    without a signed clock stays in etcd until it returns. A node behind the pruning marker
    (a fresh one, one restored from an old archive) takes the blocks up to the marker from
    peers, bound by its hash, and builds none of them: reg's height at or below the marker
    held it short of that catch-up, for as long as reg's node stayed down (ADR 62)."""
    from ledger import codec

    prefix = "older-clock-below-marker"
    writer = EtcdLog([etcd_url], prefix)
    head = ledger.store.head
    assert head is not None
    writer.put_applied("reg", codec.encode({"rev": 1, "height": head.height + 3,
                                            "size": head.log_size + 3, "time": T0 + 10}))
    rev = writer.put_batch(b"pruned")  # a pruner's marker past reg's height
    assert writer.prune(rev, codec.encode({"rev": rev, "height": head.height + 5,
                                           "size": head.log_size + 5, "hash": bytes(32)}),
                        cosig_size=0, seen=None) is not None
    mono = [1000.0]
    # (its peers unreachable: here none)
    orderer = _edu_at_t0(etcd_url, ledger, agencies, prefix, lambda: mono[0])
    try:
        deadline = time.monotonic() + 30
        mono[0] += 36  # found at start, unchanged: reg's node is down
        _until_held(lambda: "no peer could bring" in orderer.stats.last_error, mono, deadline,
                    orderer)
        assert "before ADR 58" not in orderer.stats.last_error
    finally:
        orderer.stop()
        writer.close()


def test_an_older_position_deleted_from_etcd_holds_nothing(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Only what etcd holds now counts (ADR 62): a position without a signed clock, deleted
    since (an operator's etcdctl, for an agency whose node of that version will not return),
    held every running node until its restart, kept in what the node had heard."""
    from aetcd.rpc import rpc_pb2 as pb

    height = ledger.store.head.height
    mono = [1000.0]
    writer, orderer = _held_beside_an_older_reg(
        etcd_url, ledger, agencies, "older-clock-deleted",
        {"rev": 9, "height": height + 1, "size": 2, "time": T0 + 10}, lambda: mono[0])
    try:
        deadline = time.monotonic() + 30
        mono[0] += 36
        _until_held(lambda: f"reg up to height {height + 1}" in orderer.stats.last_error,
                    mono, deadline, orderer)
        writer._call("DeleteRange", pb.DeleteRangeRequest(key=writer._p + b"a/reg"))
        _until_held(lambda: ledger.store.head.height != height, mono, deadline, orderer)
        assert ledger.store.head.height == height + 1
    finally:
        orderer.stop()
        writer.close()


def test_a_malformed_applied_position_does_not_stop_the_apply_loop(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Any agency's certificate writes any ``a/<agency>`` key. A position whose height or
    revision is no integer made every step of every other node's apply loop fail (one step a
    second, no heartbeat, no co-signing of the head, health degraded for good; a size that is
    none made health answer 500): it is left out, as a position never published."""
    from ledger import codec

    reg = agencies["reg"]
    prefix = "bad-position"
    writer = EtcdLog([etcd_url], prefix)  # reg's and tax's nodes, by hand
    writer.put_applied("tax", codec.encode({"rev": "many", "height": None, "size": "x",
                                            "time": T0 + 10}))
    writer.put_applied("reg", codec.encode({"rev": 1, "height": 0, "size": 1, "time": T0 + 10,
                                            "clock_sig": clock_signature(
                                                ledger.net, "reg", reg.node_key, T0 + 10).hex()}))
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, agencies["tax"]]).raw, T0 + 5)
        deadline = time.monotonic() + 30
        while "reg" not in orderer.stats.peers:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert "tax" not in orderer.stats.peers
        assert not orderer.stats.failing_since, orderer.stats.last_error
    finally:
        orderer.stop()
        writer.close()


def test_a_current_agency_that_never_published_a_position_is_said_to_be_quiet(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Health is ``ok`` only when every current agency's node was heard from in the last
    :data:`PEER_QUIET` s (docs/monitoring.md). A current agency whose node never published a
    position (never started, or one whose position is no well-formed one) was in no peer list:
    no "no word from the node of" alarm ever, health ``ok`` while the network had one node
    less to spare. It is quiet since this node first looked for it (helper round 23L)."""
    from ledger import codec
    from node.replication import PEER_QUIET

    prefix = "never-published"
    writer = EtcdLog([etcd_url], prefix)  # reg's node, by hand; tax's says nothing ever
    writer.put_applied("reg", codec.encode({"rev": 0, "height": 0, "size": 1, "time": T0 + 10,
                                            "clock_sig": clock_signature(
                                                ledger.net, "reg", agencies["reg"].node_key,
                                                T0 + 10).hex()}))
    skip = [0.0]  # this node's timer, moved past PEER_QUIET instead of waiting it out
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0,
                          timer=lambda: time.monotonic() + skip[0])
    try:
        deadline = time.monotonic() + 30
        while "reg" not in orderer.stats.peers:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert orderer.status()["quiet_peers"] == {}  # not yet past its slack
        skip[0] = PEER_QUIET + 5
        while "reg" not in orderer.status()["quiet_peers"]:  # positions read again
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        quiet = orderer.status()["quiet_peers"]
        assert set(quiet) == {"reg", "tax"}, quiet
        assert quiet["tax"] > PEER_QUIET
    finally:
        orderer.stop()
        writer.close()


def test_an_agency_never_heard_from_has_its_quiet_series_in_metrics(tmp_path: Path) -> None:
    """docs/monitoring.md suggests alerting on ``ledger_node_peer_quiet_seconds > 60``: a
    current agency whose node never published a position had no series at all (only peers
    with a position were labelled), so that alert never fired for it; health says it, and
    /metrics has its quiet series too (helper round 23L)."""
    from node.replication import PEER_QUIET

    data, _ = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now, ("civil",))  # market's node: never a word
        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:
            orderer = node.replicated
            assert orderer is not None
            deadline = time.monotonic() + 30
            while "civil" not in orderer.stats.peers:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            # this node's timer moved past PEER_QUIET instead of waiting it out
            orderer.timer = lambda: time.monotonic() + PEER_QUIET + 5
            while "civil" not in orderer.status()["quiet_peers"]:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                health = http.get("/v1/health").json()
                metrics = http.get("/metrics").text
        finally:
            node.close()
    assert health["status"] == "degraded", health
    assert "no word from the node of civil" in health["problem"], health
    assert "market for" in health["problem"], health
    assert 'ledger_node_peer_quiet_seconds{peer="market"}' in metrics, metrics
    assert 'ledger_node_peer_lag_blocks{peer="market"}' not in metrics  # no height: no lag


def test_a_position_that_claims_the_head_at_an_old_revision_holds_no_pruning_back(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A member's published position counts for pruning unless its height is more than
    ``retention`` blocks behind. One agency publishing the head's height with revision 0
    held every batch in etcd for good (its space runs out: NOSPACE stops every write). A
    position holds back at most the batches of the last ``retention`` blocks, whatever
    height it claims."""
    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = "stuck-position"
    writer = EtcdLog([etcd_url], prefix)  # reg's and tax's nodes, by hand
    # edu's node sorts first: it prunes
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0,
                          retention=1)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        for i in range(3):
            tx = ledger.gov_tx("register_type", {"type": {**spec, "id": f"degree{i}"}},
                               [reg, tax])
            _final_block_by_reg(ledger, agencies, writer, orderer, tx.raw, T0 + 5 + i)
            head = ledger.store.head
            assert head is not None
            writer.put_applied("tax", codec.encode({
                "rev": 0, "height": head.height + 1000, "size": head.log_size, "time": T0 + 10,
                "clock_sig": clock_signature(ledger.net, "tax", tax.node_key, T0 + 10).hex()}))
        _until_pruned(writer, orderer)
    finally:
        orderer.stop()
        writer.close()


def test_a_prune_keeps_the_batches_a_member_within_retention_has_not_applied(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The pruner deletes the batches a final checkpoint covers and every member within
    ``retention`` blocks applied, no more: a member a block or two behind reads the batches
    after its own from etcd, and needs no catch-up from a peer. The co-signatures at the
    marker's size stay too (those below it go)."""
    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], "prune-to-the-slowest")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}

    def tax_at(rev: int, height: int, t: int) -> None:
        writer.put_applied("tax", codec.encode({
            "rev": rev, "height": height, "size": ledger.store.block(height).log_size,
            "time": t, "clock_sig": clock_signature(ledger.net, "tax", tax.node_key, t).hex()}))

    try:
        revs = []
        for i in range(3):
            tx = ledger.gov_tx("register_type", {"type": {**spec, "id": f"degree{i}"}},
                               [reg, tax])
            _final_block_by_reg(ledger, agencies, writer, orderer, tx.raw, T0 + 5 + i)
            revs.append(orderer.rev)
            if i == 0:
                tax_at(revs[0], 1, T0 + 10)
        deadline = time.monotonic() + 30
        for t in (T0 + 11, T0 + 12):  # the pruner has read it twice: it decided once since
            tax_at(revs[0], 1, t)
            while orderer.stats.peers.get("tax", {}).get("time") != t:
                assert time.monotonic() < deadline, orderer.stats.peers
                time.sleep(0.05)
        assert orderer.final_size == ledger.store.head.log_size
        m = writer.marker()
        assert m is not None and codec.decode(m.value)["rev"] == revs[0], revs
        left, _, cosigs = writer.read_after(0, 0, limit=100)
        assert [r.create_rev for r in left] == revs  # tax's last batch and those after it
        # and the co-signatures from the marker's size on (none below it)
        marked = codec.decode(m.value)["size"]
        assert marked == ledger.store.block(1).log_size
        assert min(int(r.key.split("/")[1]) for r in cosigs) == marked
    finally:
        orderer.stop()
        writer.close()


@pytest.mark.parametrize(("fields", "mod_rev", "pruners"), [
    ({"rev": 6, "height": 3, "size": 9}, 7, True),
    ({"rev": 7, "height": 3, "size": 9}, 7, False),  # written at the revision it names
    ({"rev": -1, "height": 3, "size": 9}, 7, False),
    ({"rev": 6, "height": -1, "size": 9}, 7, False),
    ({"rev": 6, "height": 3, "size": -1}, 7, False),
    ({"rev": 6, "height": True, "size": 9}, 7, False),
])
def test_only_a_marker_written_after_the_batches_it_names_is_a_pruners(
        fields: dict[str, Any], mod_rev: int, pruners: bool) -> None:
    """A pruner writes its marker before deleting the batches it names, all created before
    the marker's own write: a marker naming its own revision or one past it, or negative
    heights and sizes, is no pruner's (any agency's certificate writes the key)."""
    from ledger import codec
    from node.etcdlog import Record
    from node.replication import _pruners_marker

    marker = Record("p", codec.encode({**fields, "hash": b"\x07" * 32}), 2, mod_rev)
    assert (_pruners_marker(marker) is not None) is pruners


@pytest.mark.parametrize("forged", ["far-ahead", "not-msgpack", "rev-not-a-number"])
def test_a_pruning_marker_past_its_own_revision_is_no_pruners(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency], forged: str) -> None:
    """Any agency's certificate writes etcd's pruning marker. One naming revision 10^12 at
    the head's height and hash made every node take up from there, and keep it: no batch put
    since was ever read again, while the nodes said they were current (Status List Tokens
    dated now). A pruner writes a marker after the batch it names: one whose revision is not
    below its own is ignored, and the pruner writes a real one over it. So is one that does
    not decode, or whose revision is no number: it failed every step of every node."""
    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = f"fake-marker-{forged}"
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], prefix)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5)
        head = ledger.store.head
        assert head is not None
        value = {"far-ahead": codec.encode({"rev": 10**12, "height": head.height,
                                            "size": head.log_size, "hash": head.hash}),
                 "not-msgpack": b"\xc1",
                 "rev-not-a-number": codec.encode({"rev": "many", "height": head.height,
                                                   "size": head.log_size})}[forged]
        assert writer.prune(0, value, cosig_size=0, seen=writer.marker()) is not None
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6)
        assert orderer.rev < 10**12 and orderer.final_size == size
        deadline = time.monotonic() + 30  # edu's node sorts first: it prunes
        while writer.marker().value == value:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert type(codec.decode(writer.marker().value)["rev"]) is int
    finally:
        orderer.stop()
        writer.close()


@pytest.mark.parametrize("after_prune", [False, True])
def test_a_pruning_marker_past_batches_etcd_still_holds_stops_no_node(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency],
        after_prune: bool) -> None:
    """Any agency's certificate writes etcd's pruning marker. One naming a revision just past
    a node's last batch (below its own, as a pruner's is) and a height far ahead sent every
    node behind it to catch up to a height no peer has: no node applied a batch again, so
    none became final, nobody pruned, and the marker was never written over (the network
    stopped for good, by one write). Pruning deletes the oldest batches first: while a batch
    after a node's last one is not gone, a marker saying otherwise is no pruner's (ADR 64).
    ``after_prune``: once an idle network pruned up to its head no batch a node applied was
    left, and a forger writing the counter ``n`` in the same transaction as the marker got
    past that check; a pruner now keeps the batch at its marker's revision."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"],
                                  f"marker-past-{'pruned' if after_prune else 'held'}")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5)
        head = ledger.store.head
        assert head is not None
        forged = codec.encode({"rev": orderer.rev + 1, "height": head.height + 1000,
                               "size": head.log_size + 1000, "hash": b"\x07" * 32})
        if after_prune:
            deadline = time.monotonic() + 30  # edu's node sorts first: it prunes to its head
            while (m := writer.marker()) is None or codec.decode(m.value)["rev"] < orderer.rev:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            writer._call("Txn", pb.TxnRequest(success=[writer._put(b"n"),
                                                       writer._put(b"p", forged)]))
        else:
            assert writer.prune(0, forged, cosig_size=0, seen=writer.marker()) is not None
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "grant", {"agency": "edu", "type": "degree", "from": T0, "until": T0 + DAY},
            [reg, tax]).raw, T0 + 6)
        assert ledger.store.head.height == head.height + 1 and orderer.final_size == size
    finally:
        orderer.stop()
        writer.close()


def test_co_signatures_far_ahead_do_not_drop_the_ones_for_the_head(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Co-signatures for blocks not applied yet wait; past 10,000 sizes of them all were
    dropped, those for blocks applied too. One agency putting co-signatures for 10,000 sizes
    far ahead (any agency's certificate writes any ``s/`` key) made the head's real
    co-signature dropped with them: the head never became final. The farthest ones go."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger import codec
    from ledger.finality import sign_checkpoint

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = "far-ahead"
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], prefix)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    junk = codec.encode({"root": bytes(32), "line": "\u2014 tax AAAA", "height": 1,
                         "hash": bytes(32)})
    try:
        size, _ = _final_block_by_reg(ledger, agencies, writer, orderer, ledger.gov_tx(
            "register_type", {"type": spec}, [reg, tax]).raw, T0 + 5, cosigned=False)
        for start in range(0, 9984, 128):  # (a read takes READ_COSIGS, 128: whole transactions)
            last = writer._call("Txn", pb.TxnRequest(success=[
                writer._put(writer._cosig_key(10**9 + n, "tax"), junk)
                for n in range(start, start + 128)])).header.revision
        deadline = time.monotonic() + 60
        while orderer.cosig_rev < last:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        head = ledger.store.head
        assert head is not None and head.log_size == size
        line = sign_checkpoint(ledger.net, head, [("reg", reg.node_key)]).signatures[0].to_line()
        writer._call("Txn", pb.TxnRequest(success=[  # read at once, as they may be
            writer._put(writer._cosig_key(size, "reg"), cosig_value(head, line)),
            *(writer._put(writer._cosig_key(10**9 + n, "tax"), junk)
              for n in range(9984, 10_001))]))
        while orderer.final_size < size:
            assert time.monotonic() < deadline, "reg's co-signature of the head was dropped"
            time.sleep(0.05)
    finally:
        orderer.stop()
        writer.close()


def test_a_submission_another_nodes_batch_committed_first_is_a_duplicate(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """One transaction given to two nodes (a client's retry on another node, or a node still
    behind when given one its peer committed): the copy in the other node's batch commits it,
    and this node's submitter was told the commit was its own too (``duplicate`` false twice,
    seen under load in test_cluster). Only the submission whose batch committed it is not a
    duplicate."""
    from ledger.batch import make_batch

    reg, edu = agencies["reg"], agencies["edu"]
    prefix = "retried-elsewhere"
    writer = EtcdLog([etcd_url], prefix)  # reg's node, by hand
    # edu holds its batch 5 s for more submissions: reg's batch is ordered first
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=edu.node_key, clock=lambda: T0 + 10, max_wait=5.0,
                          workers=0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        typed = ledger.gov_tx("register_type", {"type": spec}, [reg, edu])
        mine = orderer.submit(typed)
        _taken_up(orderer, writer.put_batch(make_batch(ledger.net, reg.id, reg.node_key,
                                                       T0 + 5, [typed.raw]).to_bytes()))
        receipt = mine.result(timeout=30)
        assert receipt.duplicate, receipt  # reg's submitter was answered the commit
        assert (receipt.index, receipt.height) == ledger.store.tx_location(typed.txid)
        again = orderer.submit(typed).result(timeout=30)  # known here now: at once
        assert again.duplicate and again.index == receipt.index
    finally:
        orderer.stop()
        writer.close()


def test_one_agencys_batch_dated_ahead_does_not_move_the_chains_time(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A compromised agency's node (or a thief of its node and issuer keys) put one batch
    dated 88 days ahead, with its own status change dated there: the block's time followed
    the batch, block times never go back, and every honest issuance was refused (backdated)
    and every revocation (stale) on every node, for good. A batch now moves the time only as
    far as another current agency witnesses with its signed clock (ADR 58)."""
    from ledger.batch import Witness, clock_signature, make_batch
    from ledger.network import status_tx
    from ledger.tx import Tx

    reg, tax = agencies["reg"], agencies["tax"]
    _degree_granted(ledger, agencies)
    prefix = "rogue-time"
    writer = EtcdLog([etcd_url], prefix)  # reg's (rogue) and tax's nodes, by hand
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 20,
                          workers=0)
    honest = Witness("tax", T0 + 10, clock_signature(ledger.net, "tax", tax.node_key, T0 + 10))

    def put(tx: Tx, t: int) -> None:
        _taken_up(orderer, writer.put_batch(make_batch(ledger.net, "reg", reg.node_key, t,
                                                       [tx.raw], [honest]).to_bytes()))

    ahead = T0 + 88 * DAY
    try:
        issued = issue_tx(ledger.net, reg, b"\7" * 32, "degree", 7, T0 + 5, T0 + DAY, T0 + 5)
        put(issued, T0 + 5)
        assert ledger.store.tx_location(issued.txid) is not None
        put(status_tx(ledger.net, reg, b"\7" * 32, "revoked", "r", ahead), ahead)
        assert ledger.store.head.time <= T0 + 10 + 60  # not 88 days ahead
        later = issue_tx(ledger.net, reg, b"\10" * 32, "degree", 8, T0 + 15, T0 + DAY, T0 + 15)
        put(later, T0 + 15)  # an honest issuance signed now still commits
        assert ledger.store.tx_location(later.txid) is not None
    finally:
        orderer.stop()
        writer.close()


def test_an_idle_pair_moves_its_time_past_a_node_key_rotation_planned_for_then(
        etcd_url: str, tmp_path: Path, agencies: dict[str, Agency]) -> None:
    """Two agencies, quorum two: reg's batches move the time only as far as edu's node
    witnesses (ADR 58). edu's node key is rotated for a later time (``rotate_key`` ``at``);
    its node keeps the old key until the rotation takes effect on the chain (before, the new
    key signs and publishes nothing: docs/monitoring.md). The network idle past that time,
    edu's node signs its clock with the key the chain still counts at its head: checked only
    with the keys valid when it witnessed, that counted for nothing, every batch of reg left
    the time before the rotation, and edu's new key could never become current (its node with
    it publishes nothing): the network's time stuck for good."""
    from ledger import codec
    from ledger.batch import clock_signature
    from ledger.keys import PrivateKey

    reg, edu = agencies["reg"], agencies["edu"]
    pair = LedgerHarness(tmp_path / "pair", [reg, edu], 2, T0)
    at = T0 + DAY
    pair.govern("rotate_key", {"agency": "edu", "role": "node",
                               "new_key": PrivateKey.generate().public.raw, "at": at},
                [reg, edu], T0 + 10)
    now = at + 600  # idle since: edu's node, still with its old key, publishes this time
    prefix = "rotation-idle"
    edu_log = EtcdLog([etcd_url], prefix)
    head = pair.store.head
    edu_log.put_applied("edu", codec.encode({
        "rev": 0, "height": head.height, "size": head.log_size, "time": now,
        "clock_sig": clock_signature(pair.net, "edu", edu.node_key, now).hex()}))
    orderer = EtcdOrderer(pair.store, EtcdLog([etcd_url], prefix), agency="reg",
                          node_key=reg.node_key, clock=lambda: now, workers=0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        orderer.submit(pair.gov_tx("register_type", {"type": spec}, [reg, edu])).result(
            timeout=30)
        # past the rotation (its old key vouches for the time up to then), not past edu's
        # clock plus the slack
        assert at <= pair.store.head.time <= now
    finally:
        orderer.stop()
        edu_log.close()
        pair.close()


def test_a_node_with_a_key_rotated_in_for_now_witnesses_before_the_chain_gets_there(
        etcd_url: str, tmp_path: Path, agencies: dict[str, Agency]) -> None:
    """Two agencies, quorum two. edu's operator put its new node key in place before the
    rotation's time (the old node's last word long before it): not a node key at the idle
    chain's head, its node published no position, so no witness; reg's batches could not move
    the time to the rotation, and edu's node never became a member: stuck for good. It now
    publishes its position (its signed clock) with a key valid by its clock."""
    from ledger.keys import PrivateKey

    reg, edu = agencies["reg"], agencies["edu"]
    new = PrivateKey(hashlib.sha256(b"edu-rotated").digest())
    at = T0 + DAY
    pairs = [LedgerHarness(tmp_path / name, [reg, edu], 2, T0) for name in ("reg", "edu")]
    for pair in pairs:
        pair.govern("rotate_key", {"agency": "edu", "role": "node", "new_key": new.public.raw,
                                   "at": at}, [reg, edu], T0 + 10)
    now = at + 600
    prefix = "rotated-early"
    eduo = EtcdOrderer(pairs[1].store, EtcdLog([etcd_url], prefix), agency="edu",
                       node_key=new, clock=lambda: now, workers=0)
    rego = EtcdOrderer(pairs[0].store, EtcdLog([etcd_url], prefix), agency="reg",
                       node_key=reg.node_key, clock=lambda: now, workers=0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        deadline = time.monotonic() + 30
        while "edu" not in rego.stats.peers:  # edu's heartbeat
            assert time.monotonic() < deadline, "edu's node published no position"
            time.sleep(0.1)
        rego.submit(pairs[0].gov_tx("register_type", {"type": spec}, [reg, edu])).result(
            timeout=30)
        assert at <= pairs[0].store.head.time <= now
    finally:
        rego.stop()
        eduo.stop()
        for pair in pairs:
            pair.close()


def test_a_batch_carries_the_latest_witnesses_of_many_agencies(
        etcd_url: str, tmp_path: Path) -> None:
    """A batch holds 16 witnesses at most. A node took the first 16 positions by agency name,
    down agencies' old ones too: in a network of 18 agencies, quorum two, whose only other
    node up sorts last, its witness was cut, and the time moved no further than the down
    nodes' last clocks plus a minute, for good, while that pair made final checkpoints."""
    from ledger import codec
    from ledger.batch import clock_signature
    from ledger.network import demo_agency
    from node.replication import PEER_CLOCK_WAIT

    members = [demo_agency(f"a{i:02d}", f"Agency {i}") for i in range(18)]
    me, up, down = members[0], members[-1], members[1:-1]
    net = LedgerHarness(tmp_path / "many", members, 2, T0)
    now = T0 + DAY
    prefix = "many-witnesses"
    peers = EtcdLog([etcd_url], prefix)
    head = net.store.head

    def position(agency: str, key: Any, t: int) -> bytes:
        return codec.encode({"rev": 0, "height": head.height, "size": head.log_size,
                             "time": t, "clock_sig": clock_signature(net.net, agency, key,
                                                                     t).hex()})

    for a in down:  # down since the day began
        peers.put_applied(a.id, position(a.id, a.node_key, T0 + 5))
    peers.put_applied(up.id, position(up.id, up.node_key, now))
    skip = [0.0]  # this node's timer, moved past PEER_CLOCK_WAIT instead of waiting it out
    orderer = EtcdOrderer(net.store, EtcdLog([etcd_url], prefix), agency=me.id,
                          node_key=me.node_key, clock=lambda: now, workers=0,
                          timer=lambda: time.monotonic() + skip[0])
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        pending = orderer.submit(net.gov_tx("register_type", {"type": spec}, [me, up]))
        deadline = time.monotonic() + 30  # the positions read first (a loaded machine's
        while not orderer._positions_read:  # apply thread may start late): then the skip
            assert time.monotonic() < deadline
            time.sleep(0.01)
        skip[0] = PEER_CLOCK_WAIT  # (its clock is ahead of the down nodes' last times)
        pending.result(timeout=30)
        assert net.store.head.time == now
    finally:
        orderer.stop()
        peers.close()
        net.close()


def test_a_position_with_a_negative_time_leaves_out_its_witness(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A batch's witness times are at least 0 (``Batch.from_bytes``), but a node put any
    integer time of a current agency's published position into its batches: one position
    with a negative time (tax's node, compromised, or anyone who writes the network's etcd
    keys) made every other node's batch one that no node decodes, skipped whole, so every
    issuance and governance through them (the removal of that agency too) never committed."""
    from ledger import codec

    reg, edu = agencies["reg"], agencies["edu"]
    prefix = "negative-witness"
    peers = EtcdLog([etcd_url], prefix)
    head = ledger.store.head
    peers.put_applied("tax", codec.encode({"rev": 0, "height": head.height,
                                           "size": head.log_size, "time": -1,
                                           "clock_sig": (b"\1" * 64).hex()}))
    peers.put_applied("reg", codec.encode({"rev": 0, "height": head.height,
                                           "size": head.log_size, "time": T0 + 20,
                                           "clock_sig": _clock_sig("reg", T0 + 20)}))
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=edu.node_key, clock=lambda: T0 + 20, workers=0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        typed = ledger.gov_tx("register_type", {"type": spec}, [reg, edu])
        orderer.submit(typed)
        deadline = time.monotonic() + 30
        while ledger.store.tx_location(typed.txid) is None \
                and not orderer.stats.batches_skipped:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        assert orderer.stats.batches_skipped == 0
        assert ledger.store.tx_location(typed.txid) is not None
        assert ledger.store.head.time == T0 + 20  # reg's witness counted
    finally:
        orderer.stop()
        peers.close()


def test_a_replicated_nodes_health_says_when_the_chain_runs_ahead_of_its_clock(
        etcd_url: str, tmp_path: Path) -> None:
    """The etcd branch of ``/v1/health``: block times follow the proposing node's clock, so a
    chain ahead of this node's clock means a fast clock somewhere (ADR 43). One member, one
    node: its batches commit and make blocks; no quorum of co-signatures is needed for that."""
    data = make_demo(tmp_path / "demo")
    clock = [DEMO_T0 + 1000]
    _demo_witnesses(etcd_url, data, DEMO_T0 + 1000)
    node = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0,
                replication=Replication(endpoints=(etcd_url,)))
    try:
        app = create_app(settings_for(data), node=node)
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            r = http.post(f"/v1/credentials/{_edu_credential_id(http, 2).hex()}/status",
                          headers=AUTH, json={"status": "suspended", "reason": "review"})
            assert r.status_code == 200, r.text  # a block at DEMO_T0 + 1000, ordered by etcd
            first = http.get("/v1/health").json()
            clock[0] = DEMO_T0 + 600  # this machine's clock now 400 s behind the chain
            health = http.get("/v1/health").json()
    finally:
        node.close()
    assert first["ordering"] == "etcd" and first["status"] == "ok", first
    assert health["ordering"] == "etcd" and health["status"] == "degraded", health
    assert "400 s ahead of this machine's clock" in health["problem"]


def _health_across_a_clock_step(
        node: Node, data: Path, clock: list[int], skip: list[float], field: str, slack: int,
        before: Callable[[httpx.Client], None] = lambda http: None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Health with the node's clock stepped an hour forward (a second later by its timer),
    then stepped back and ``slack`` seconds later by the timer, once ``GET /v1/cluster``'s
    ``field`` has a time (after ``before``); the node is closed on leaving."""
    try:
        app = create_app(settings_for(data), node=node)
        with serve(app) as url, httpx.Client(base_url=url, timeout=30) as http:
            before(http)
            deadline = time.monotonic() + 60
            while http.get("/v1/cluster").json()[field] is None:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            clock[0] += 3600  # stepped an hour forward: a second later by the timer
            skip[0] += 1
            ahead = http.get("/v1/health").json()
            clock[0] -= 3600  # and back, then ``slack`` later by the timer
            skip[0] += slack
            # a read of etcd to its end asked since (one asked while the clock was ahead may
            # land now, dated by the timer `slack` s back): not behind
            _wait_current(node, clock[0], since=time.monotonic() + skip[0])
            later = http.get("/v1/health").json()
    finally:
        node.close()
    return ahead, later


def test_how_long_a_node_has_had_no_final_checkpoint_is_timed_by_its_timer(
        etcd_url: str, tmp_path: Path) -> None:
    """Health's "no final checkpoint for N s" took the start from the wall clock and the end
    from the node's clock: a clock stepped back (an NTP step, a VM resumed) hid a network short
    of its quorum for as long as the step, one stepped forward said so at once (round 31K).
    Timed by the node's monotonic timer, whatever its clock does meanwhile. One member, one
    node of a network of several agencies: its blocks commit, none is co-signed final."""
    from node.api import FINALITY_SLACK

    data = make_demo(tmp_path / "demo")
    clock, skip = [DEMO_T0 + 1000], [0.0]
    _demo_witnesses(etcd_url, data, DEMO_T0 + 1000)
    node = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0,
                timer=lambda: time.monotonic() + skip[0],
                replication=Replication(endpoints=(etcd_url,)))

    def suspend(http: httpx.Client) -> None:  # a block to co-sign
        r = http.post(f"/v1/credentials/{_edu_credential_id(http, 2).hex()}/status",
                      headers=AUTH, json={"status": "suspended", "reason": "review"})
        assert r.status_code == 200, r.text

    ahead, later = _health_across_a_clock_step(node, data, clock, skip, "unfinal_since",
                                               FINALITY_SLACK, suspend)
    assert "no final checkpoint" not in (ahead["problem"] or ""), ahead
    assert later["status"] == "degraded", later
    assert f"no final checkpoint for {FINALITY_SLACK + 1} s" in later["problem"], later


def test_how_long_a_nodes_own_etcd_member_has_been_silent_is_timed_by_its_timer(
        etcd_url: str, tmp_path: Path) -> None:
    """Health's "own etcd member has not answered for N s" took the start from the wall clock
    and the end from the node's clock: a clock stepped back hid the member's silence for as
    long as the step, one stepped forward said so at once (round 31K). Timed by the node's
    monotonic timer. The first endpoint here is a free port nothing listens on."""
    import socket

    from node.api import OWN_ETCD_SLACK

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        silent = f"http://127.0.0.1:{s.getsockname()[1]}"
    data = make_demo(tmp_path / "demo")
    clock, skip = [DEMO_T0 + 1000], [0.0]
    _demo_witnesses(etcd_url, data, DEMO_T0 + 1000)
    node = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0,
                timer=lambda: time.monotonic() + skip[0],
                replication=Replication(endpoints=(silent, etcd_url)))
    ahead, later = _health_across_a_clock_step(node, data, clock, skip, "own_etcd_down_since",
                                               OWN_ETCD_SLACK)
    assert "own etcd member" not in (ahead["problem"] or ""), ahead
    assert later["status"] == "degraded", later
    assert f"has not answered for {OWN_ETCD_SLACK + 1} s" in later["problem"], later


def _demo_edu(tmp_path: Path) -> tuple[Path, Agency]:
    """A demo data folder in ``tmp_path`` (and an ``etcd`` folder beside it) and its edu
    agency's keys."""
    from ledger.keys import load_private_key

    (tmp_path / "etcd").mkdir()
    data = make_demo(tmp_path / "demo")
    keys = data / "keys"
    return data, Agency("edu", "", load_private_key(keys / "edu.node.key", PASS),
                        load_private_key(keys / "edu.issuer.key", PASS))


@contextmanager
def _served_demo_edu(tmp_path: Path) -> Iterator[tuple[Node, httpx.Client, str, Agency, int]]:
    """The demo's edu node ordering on a real etcd member of its own (its witnesses' positions
    written), served over HTTP: (node, client, the member's URL, edu's keys, the node's
    time)."""
    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now)
        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                yield node, http, url, edu, now
        finally:
            node.close()


@contextmanager
def _served_edu(tmp_path: Path, data: Path) -> Iterator[tuple[Node, httpx.Client, str]]:
    """Edu's node over ``data`` on a real etcd member of its own, served over HTTP (its clock
    fixed 1,000 s after the demo's start): the node, a client of its address, the member's."""
    with _etcd_member(tmp_path / "etcd") as url:
        node = Node(data, "edu", PASS, clock=lambda: DEMO_T0 + 1000, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                yield node, http, url
        finally:
            node.close()


def _serves_the_newest_final(tmp_path: Path, data: Path, size: int, latest: bytes | None,
                             caplog: pytest.LogCaptureFixture) -> None:
    """Edu's node over ``data`` serves ``latest``, the store's newest checkpoint (of log size
    ``size``), as its final one, and its log said the record named none it holds."""
    with _served_edu(tmp_path, data) as (_, http, _):
        r = http.get("/v1/checkpoint")
        assert r.status_code == 200, r.text
        assert latest is not None and r.text == latest.decode()
        assert http.get("/v1/cluster").json()["final_size"] == size
    assert any("names no checkpoint its store holds" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("record", [b"\x00\x01\x02", (1 << 40).to_bytes(8, "big")])
def test_a_damaged_record_of_the_newest_final_checkpoint_is_found_again_on_disk(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, record: bytes) -> None:
    """The node's record of its newest final checkpoint damaged while it was stopped: one not
    8 bytes long stopped every start with a bare struct.error; one past the head made the node
    serve no checkpoint (404), take no newer one as final and co-sign nothing, and its health
    said nothing. The newest final checkpoint on disk is taken instead, and the log says so."""
    from ledger.store import Store
    from node.replication import META_FINAL

    data, _ = _demo_edu(tmp_path)
    with Store(data / "ledger", create=False) as store:
        assert store.head is not None
        size, latest = store.head.log_size, store.checkpoint()
    _damage(data, META_FINAL, lambda _: record, new=True)
    _serves_the_newest_final(tmp_path, data, size, latest, caplog)


def test_a_record_naming_a_damaged_older_checkpoint_is_not_taken_as_final(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The node's record of its newest final checkpoint whole, but the checkpoint it names (an
    older one than the store's newest, which the store's open checks) damaged on disk: taken
    as final, the node served text that is no checkpoint. The newest final checkpoint on disk
    is taken instead, and the log says so (a survivor of helper round 28T's mutants)."""
    from ledger.store import Store, checkpoint_key
    from node.replication import META_FINAL

    data, _ = _demo_edu(tmp_path)
    with Store(data / "ledger", create=False) as store:
        assert store.head is not None
        size, latest = store.head.log_size, store.checkpoint()
        older = store.block(store.head.height - 1).log_size
        assert older < size and store.checkpoint(older) is not None
    _damage(data, checkpoint_key(older), lambda _: b"not a checkpoint")
    _damage(data, META_FINAL, lambda _: older.to_bytes(8, "big"), new=True)
    _serves_the_newest_final(tmp_path, data, size, latest, caplog)


@pytest.mark.parametrize("record", [b"\x93\x01", b"\x92\x01\x02"])  # cut short; no map
def test_a_damaged_evidence_record_is_the_stores_503_naming_it(tmp_path: Path,
                                                              record: bytes) -> None:
    """An evidence record of the node's store damaged on disk: ``/v1/evidence`` (what `ledger
    monitor` reads) answered the client's 400 (DecodeError), or a bare 500 for a record that
    decodes to no map. It is the store's 503 naming the record."""
    data, _ = _demo_edu(tmp_path)
    _damage(data, b"xev" + (5).to_bytes(8, "big") + b"civil", lambda _: record, new=True)
    with _served_edu(tmp_path, data) as (_, http, _):
        r = http.get("/v1/evidence")
        assert r.status_code == 503, r.text
        assert r.json()["error"] == "StoreError"
        assert "evidence record of size 5 by 'civil'" in r.json()["detail"]


def test_a_damaged_record_of_the_etcd_revision_stops_the_start_saying_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node's record of the etcd revision it applied up to, cut short: a bare struct.error
    at every start. It is a StoreError that says which record and what to do (no guess: a
    revision too low builds blocks again, one too high skips batches). The start that fails
    closes the etcd client it opened (its channels were left open, 19O)."""
    from ledger.errors import StoreError
    from node.replication import META_REV

    data, _ = _demo_edu(tmp_path)
    _damage(data, META_REV, lambda _: b"\x00\x07", new=True)
    opened: list[EtcdLog] = []
    closed: list[EtcdLog] = []
    with _etcd_member(tmp_path / "etcd") as url:
        init, close = EtcdLog.__init__, EtcdLog.close
        monkeypatch.setattr(EtcdLog, "__init__",
                            lambda self, *a, **kw: opened.append(self) or init(self, *a, **kw))
        monkeypatch.setattr(EtcdLog, "close", lambda self: closed.append(self) or close(self))
        with pytest.raises(StoreError, match=r"record of the etcd revision .* is damaged "
                                             r"\(2 bytes, not 8\): restore the store"):
            Node(data, "edu", PASS, clock=lambda: DEMO_T0 + 1000, workers=0,
                 replication=Replication(endpoints=(url,)))
        monkeypatch.undo()
    assert len(opened) == 1 and opened[0] in closed


def _batches_put(node: Node) -> int:
    status = node.cluster_status()
    assert status is not None
    return int(status["counters"]["batches_put"])


def _fill(log: EtcdLog) -> None:
    """Put 200 KB values until etcd refuses (it raises)."""
    for _ in range(1000):
        log.put_batch(b"x" * 200_000)


def _status_changes(http: httpx.Client, node: Node, edu: Agency, cid: str, now: int
                    ) -> tuple[Callable[[int], bytes], Callable[..., httpx.Response]]:
    """(change, post): ``change(i)`` the i-th status change of edu's credential ``cid``
    (suspended, valid, … in turn, each its own transaction), ``post(i, wait=20)`` it sent
    to the node behind ``http``."""
    from ledger.network import status_tx

    def change(i: int) -> bytes:
        return status_tx(node.network, edu, cid, "valid" if i % 2 else "suspended", f"r{i}",
                         now).raw

    def post(i: int, wait: float = 20) -> httpx.Response:
        return http.post("/v1/tx", params={"wait": wait}, content=change(i),
                         headers={"content-type": "application/msgpack"})
    return change, post


def test_a_node_refuses_submissions_while_etcd_is_out_of_space_and_paces_after(
        tmp_path: Path) -> None:
    """etcd with a small ``--quota-backend-bytes``, filled until its NOSPACE alarm goes off.
    A node took submissions meanwhile, each to end "not ordered; retry" 30 s later, and put
    all it held at once when the alarm was disarmed: filling etcd again before the nodes
    could co-sign and prune. It now refuses them at once (503, Retry-After, the runbook's
    fix), says so in its health, and after the alarm clears puts its batches at a pace."""
    import grpc
    from aetcd.rpc import rpc_pb2 as pb
    from aetcd.rpc import rpc_pb2_grpc as pbg

    from ledger import codec
    from node.etcdlog import NoSpace
    from node.replication import PACE

    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd", "--quota-backend-bytes", str(1 << 20)) as url:
        _demo_witnesses(url, data, now)
        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        filler = EtcdLog([url], "filler")
        try:
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                cid = _edu_credential_id(http, 2)

                change, post = _status_changes(http, node, edu, cid, now)
                assert post(0).status_code == 200  # etcd takes writes
                with pytest.raises(NoSpace, match="database space exceeded"):
                    _fill(filler)
                # the node learns it from its next write: a submission's batch, or the write
                # it makes every 10 s; either way the submission is refused, not kept. A
                # batch's item was answered "rejected" (a refusal: a client drops it) though
                # the same bytes are taken once the alarm clears: "pending", code "nospace"
                # (or the whole request 503, if the node's own write learnt it first)
                r = http.post("/v1/tx/batch", params={"wait": 20},
                              content=codec.encode([change(11)]),
                              headers={"content-type": "application/msgpack"})
                if r.status_code == 200:
                    [item] = r.json()
                    assert (item["status"], item["code"]) == ("pending", "nospace"), item
                    assert "NOSPACE alarm is raised" in item["error"], item
                else:
                    assert r.status_code == 503 and "NOSPACE" in r.text, r.text
                for i in (1, 2):
                    started = time.monotonic()
                    r = post(i)
                    assert r.status_code == 503, r.text
                    assert time.monotonic() - started < 10  # not after submit_timeout (30 s)
                    assert r.headers["retry-after"] == "30"
                    said = r.json()["detail"]
                    for words in ("NOSPACE alarm is raised", "--quota-backend-bytes",
                                  "etcdctl defrag", "etcdctl alarm disarm", "again"):
                        assert words in said, said
                health = http.get("/v1/health").json()
                assert health["status"] == "degraded", health
                assert "NOSPACE alarm is raised" in health["problem"]
                assert "etcdctl alarm disarm" in health["problem"]
                assert http.get("/v1/cluster").json()["nospace_since"] is not None
                put = _batches_put(node)

                # the runbook: space freed (here: the filler deleted), defrag, disarm
                with grpc.insecure_channel(url.partition("://")[2]) as channel:
                    kv, admin = pbg.KVStub(channel), pbg.MaintenanceStub(channel)
                    gone = kv.DeleteRange(pb.DeleteRangeRequest(key=b"/credledger/filler/",
                                                                range_end=b"/credledger/filler0"),
                                          timeout=10)
                    kv.Compact(pb.CompactionRequest(revision=gone.header.revision,
                                                    physical=True), timeout=10)
                    admin.Defragment(pb.DefragmentRequest(), timeout=30)
                    for alarm in admin.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET),
                                             timeout=10).alarms:
                        admin.Alarm(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE,
                                                    memberID=alarm.memberID,
                                                    alarm=alarm.alarm), timeout=10)
                deadline = time.monotonic() + 30
                while http.get("/v1/health").json()["status"] != "ok":  # its probe write
                    assert time.monotonic() < deadline, http.get("/v1/health").json()
                    time.sleep(0.2)
                assert http.get("/v1/cluster").json()["paced_until"] is not None
                # nothing held from before is put; what comes now goes at a pace: eight
                # submissions over ~0.8 s make two or three batches, not eight
                started = time.monotonic()
                for i in range(3, 11):
                    assert post(i, wait=0).status_code == 202
                    time.sleep(0.1)
                deadline = time.monotonic() + 30
                while any(http.get(f"/v1/tx/{hashlib.sha256(change(i)).hexdigest()}/receipt"
                                   ).status_code != 200 for i in range(3, 11)):
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                took = time.monotonic() - started
                batches = _batches_put(node) - put
        finally:
            filler.close()
            node.close()
    assert batches <= 1 + took / PACE, (batches, took)
    assert batches <= 3, batches


def test_an_issue_etcd_never_confirmed_names_the_credential_to_revoke(tmp_path: Path) -> None:
    """The node's own etcd member frozen (SIGSTOP): every put of the anchor's batch times out,
    and the orderer gives up after its ``submit_timeout``, before the issue's commit wait.
    The operator was told "not ordered: ...; retry the submission (transaction ids are
    idempotent)", naming no credential: a retry issues a second credential, and the first
    commits if the frozen member took the put (its answer lost), with no holder's copy and no
    id to revoke it by. Measured on a three-agency cluster with the agency cut off and its
    member down: that 503 after 29.8 s. Now the refusal names the credential and its txid
    and says it may commit yet, as when the commit wait ends first."""
    from ledger import sdjwt
    from ledger.keys import PrivateKey

    (tmp_path / "etcd").mkdir()
    data = make_demo(tmp_path / "demo")
    holder = PrivateKey(hashlib.sha256(b"unconfirmed-issue").digest())
    body = {"type": "degree", "claims": CLAIMS, "valid_days": 30,
            "holder_jwk": sdjwt.jwk_from_ed25519(holder.public.raw)}
    with _served_edu(tmp_path, data) as (node, http, url):
        assert node.replicated is not None
        node.replicated.submit_timeout = 0.5  # gives up long before commit_wait (30 s)
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            r = http.post("/v1/credentials", headers=AUTH, json=body)
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
    assert r.status_code == 503, r.text
    said = r.json()["detail"]
    assert re.search(r"credential [0-9a-f]{64} \(txid [0-9a-f]{64}\) was not confirmed by "
                     "etcd", said), said
    assert "It may commit yet" in said and "revoke it" in said, said
    assert "retry the submission" not in said and "send the same transaction" not in said


def test_a_batch_item_etcd_never_confirmed_is_pending_not_rejected(tmp_path: Path) -> None:
    """Found while writing the randomized fault run's checker (tests/chaoskit.py), which counts a
    refused transaction found committed as a failure: a batch whose put etcd did not
    confirm within ``submit_timeout`` (the node's own member frozen) answered each of its
    transactions ``rejected``, a refusal, while the error said it may be ordered yet (a put
    the frozen member took, its answer lost) and POST /v1/tx answers the same 503. A client
    that believed it dropped a transaction that could commit. Now: ``pending``, code
    ``unconfirmed``; the same bytes sent again once etcd answers commit once."""
    from ledger import codec
    from ledger.network import status_tx

    with _served_demo_edu(tmp_path) as (node, http, url, edu, now):
        assert node.replicated is not None
        node.replicated.submit_timeout = 0.5  # gives up long before the request's wait
        tx = status_tx(node.network, edu, _edu_credential_id(http, 2), "suspended",
                       "unconfirmed", now)

        def post() -> httpx.Response:
            return http.post("/v1/tx/batch", params={"wait": 20},
                             content=codec.encode([tx.raw]),
                             headers={"content-type": "application/msgpack"})

        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            r = post()
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        assert r.status_code == 200, r.text
        item = r.json()[0]
        assert item["status"] == "pending", item
        assert item["code"] == "unconfirmed", item
        assert "not confirmed by etcd" in item["error"], item
        deadline = time.monotonic() + 60
        while (again := post().json()[0])["status"] != "committed":
            assert again["status"] == "pending", again
            assert time.monotonic() < deadline, again
            time.sleep(0.2)
        assert again["txid"] == tx.txid.hex()
        assert node.store.tx_location(tx.txid) is not None


def test_a_batch_put_refused_for_the_counter_is_refused_at_once_not_unconfirmed(
        tmp_path: Path) -> None:
    """With the batch counter ``n`` deleted and a batch key it would give next taken (any
    agency's certificate does both), a put writes nothing (19O). The orderer retried it for
    its whole ``submit_timeout`` and answered "not confirmed by etcd ... it may be ordered
    yet": a client told to wait for a transaction that cannot commit. It is refused at once in
    the put's own words, and health names the counter."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger import codec
    from ledger.network import status_tx

    with _served_demo_edu(tmp_path) as (node, http, url, edu, now):
        assert node.replicated is not None
        node.replicated.submit_timeout = 3600.0  # a retry would outlast the request's wait
        tx = status_tx(node.network, edu, _edu_credential_id(http, 2), "suspended",
                       "counter-gone", now)
        hostile = EtcdLog([url], node.network)
        try:
            hostile._call("Txn", pb.TxnRequest(success=[
                pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(key=hostile._p + b"n")),
                hostile._put(f"b/{1:020d}", b"not a batch")]))
        finally:
            hostile.close()
        r = http.post("/v1/tx/batch", params={"wait": 20}, content=codec.encode([tx.raw]),
                      headers={"content-type": "application/msgpack"})
        assert r.status_code == 200, r.text
        item = r.json()[0]
        assert item["status"] == "rejected", item
        assert "counter is behind the batch keys" in item["error"], item
        assert "may be ordered yet" not in item["error"], item
        assert node.store.tx_location(tx.txid) is None
        assert "counter" in http.get("/v1/health").text


def test_a_stopped_orderer_answers_that_it_took_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A network node whose orderer stopped refuses a submission before anything is queued or
    put in etcd: its 503 carries ``"taken": false`` (ADR 84), and the command line says
    "nothing was taken; send it again", not "may have been done" (helper round 43T)."""
    import typer

    from ledger import cli
    from ledger.network import status_tx

    with _served_demo_edu(tmp_path) as (node, http, _, edu, now):
        orderer = node.replicated
        assert orderer is not None
        tx = status_tx(node.network, edu, _edu_credential_id(http, 2), "suspended",
                       "stopped", now)
        orderer.stop()
        put = orderer.stats.batches_put
        r = http.post("/v1/tx", content=tx.raw, headers={"content-type": "application/msgpack"})
        assert r.status_code == 503 and "retry-after" not in r.headers, r.text
        assert r.json()["detail"] == "orderer is stopped" and r.json()["taken"] is False, r.text
        with pytest.raises(typer.Exit):
            cli._http(str(http.base_url.join("/v1/tx")), tx.raw,
                      "application/msgpack")
        said = " ".join(capsys.readouterr().err.split())
        assert said.endswith("the node refused it (503): orderer is stopped; nothing was "
                             "taken; send it again"), said
        assert orderer.stats.batches_put == put and tx.txid not in orderer._waiting
        assert node.store.tx_location(tx.txid) is None


def test_a_node_cut_off_from_etcd_refuses_submissions_at_once(tmp_path: Path) -> None:
    """A node that cannot read the ordered batches (its agency cut off from the etcd quorum:
    here its only member frozen) took every submission and answered 202 when the client's
    wait ended, or 503 after 30 s: clients learnt late to go to another node. Past
    ``cut_off_after`` s of failed reads it refuses at once, saying why and taking nothing; once
    etcd answers again it takes submissions again."""
    from ledger.network import status_tx

    with _served_demo_edu(tmp_path) as (node, http, url, edu, now):
        orderer = node.replicated
        assert orderer is not None
        orderer.cut_off_after = 0.5
        tx = status_tx(node.network, edu, _edu_credential_id(http, 2), "suspended",
                       "cut-off", now)
        before = status_tx(node.network, edu, _edu_credential_id(http, 1), "suspended",
                           "cut-off", now)

        def post(sent: Any = tx) -> httpx.Response:
            return http.post("/v1/tx", params={"wait": 20}, content=sent.raw,
                             headers={"content-type": "application/msgpack"})

        assert post(before).status_code == 200

        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            _until_reads_fail(orderer, 60)
            time.sleep(0.6)
            put = orderer.stats.batches_put
            r = post()
            # one committed before the cut is known here: its receipt, not a refusal
            again = post(before)
            status = http.get("/v1/cluster").json()
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        assert r.status_code == 503, r.text
        assert again.status_code == 200 and again.json()["duplicate"], again.text
        assert r.headers["retry-after"] == "10"
        said = r.json()["detail"]
        assert "cut off from a quorum of the etcd members" in said, said
        assert "Nothing was taken" in said and "another agency's node" in said, said
        assert r.json()["taken"] is False, r.text  # said as data too (ADR 84)
        assert status["reads_failing_since"] is not None
        assert tx.txid not in orderer._waiting  # nothing queued: no batch carries it
        deadline = time.monotonic() + 60
        while orderer.stats.reads_failing_since:  # etcd answers again
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.1)
        assert orderer.stats.batches_put == put
        assert node.store.tx_location(tx.txid) is None
        r = post()
        assert r.status_code == 200, r.text


def test_how_long_a_node_has_been_cut_off_is_timed_by_its_timer_not_the_wall_clock(
        tmp_path: Path) -> None:
    """How long the reads of etcd had failed was taken from the wall clock: a clock stepped
    back an hour (an NTP step, a VM resumed) while the node was cut off kept it taking
    submissions that could not commit for an hour more, one stepped forward refused them at
    the first failed read (round 31K). The orderer's monotonic timer times it: moved on past
    ``cut_off_after`` while the wall clock (and the node's clock) stayed, the node refuses."""
    from ledger.network import status_tx

    with _served_demo_edu(tmp_path) as (node, http, url, edu, now):
        orderer = node.replicated
        assert orderer is not None
        orderer.cut_off_after = 600.0
        skip = [0.0]
        orderer.timer = lambda: time.monotonic() + skip[0]
        tx = status_tx(node.network, edu, _edu_credential_id(http, 1), "suspended",
                       "cut-off", now)
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            _until_reads_fail(orderer, 60)
            skip[0] = orderer.cut_off_after + 1  # ten minutes on, by the timer only
            r = http.post("/v1/tx", params={"wait": 1}, content=tx.raw,
                          headers={"content-type": "application/msgpack"})
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        assert r.status_code == 503, r.text
        said = r.json()["detail"]
        assert "cut off from a quorum of the etcd members" in said, said
        assert f"for {int(orderer.cut_off_after) + 1} s" in said, said
        assert tx.txid not in orderer._waiting


def test_a_node_that_reads_etcd_but_cannot_catch_up_is_not_said_cut_off_from_etcd(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Any failed step counted as a failed read of the ordered batches: a node behind the
    pruning marker whose peers could not bring it there (a sync error, etcd answering every
    read) refused every submission after ``cut_off_after`` s, saying it was cut off from a
    quorum of the etcd members, and /v1/cluster said its reads failed."""
    from ledger import codec

    prefix = "cannot-catch-up"
    writer = EtcdLog([etcd_url], prefix)
    head = ledger.store.head
    assert head is not None
    rev = writer.put_batch(b"pruned")  # a pruner's marker: its batch first, then it
    assert writer.prune(rev, codec.encode({"rev": rev, "height": head.height + 5,
                                           "size": head.log_size + 5, "hash": bytes(32)}),
                        cosig_size=0, seen=None) is not None
    # a node that was down meanwhile, its peers' addresses unreachable (here: none)
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0)
    orderer.cut_off_after = 0.5
    try:
        deadline = time.monotonic() + 30
        while "no peer could bring" not in orderer.stats.last_error:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        time.sleep(0.6)
        assert "no peer could bring" in orderer.stats.last_error
        assert not orderer.stats.reads_failing_since  # every read of etcd answered
        orderer.submit(ledger.gov_tx("register_type", {"type": {
            "id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}},
            [agencies["reg"], agencies["tax"]]))  # taken, not CutOff
    finally:
        orderer.stop()
        writer.close()


def test_a_node_reading_etcd_again_under_load_takes_submissions_again(
        tmp_path: Path, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A failed read was forgotten only when a run of steps ended, with a read that found no
    new batch: on a busy network (the other agencies' batches arriving faster than it applies
    them, or the backlog a partition left) one failed read, an etcd election, left the node
    refusing every submission as cut off while it read and applied their batches."""
    from node.replication import CutOff

    stop = threading.Event()

    def busy(url: str) -> None:  # the other agencies' nodes at work, faster than it reads
        from aetcd.rpc import rpc_pb2 as pb

        w, seq = EtcdLog([url], "busy"), 0
        try:
            while not stop.is_set():
                with contextlib.suppress(OrderingError):
                    w._call("Txn", pb.TxnRequest(success=[
                        w._put(f"b/{n:020d}", b"another agency's batch")
                        for n in range(seq + 1, seq + 101)]))
                    seq += 100
        finally:
            w.close()

    with _etcd_member(tmp_path) as url:
        orderer = EtcdOrderer(ledger.store, EtcdLog([url], "busy", timeout=0.5), agency="edu",
                              node_key=agencies["edu"].node_key, clock=lambda: T0 + 10,
                              workers=0)
        orderer.cut_off_after = 1.0
        writers = [threading.Thread(target=busy, args=(url,))]
        try:
            for t in writers:
                t.start()
            os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
            try:
                _until_reads_fail(orderer, 30)
            finally:
                os.kill(_MEMBERS[url].pid, signal.SIGCONT)
            read = orderer.stats.batches_skipped
            deadline = time.monotonic() + 30
            while orderer.stats.batches_skipped == read:  # reading and applying again
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            time.sleep(orderer.cut_off_after + 0.5)
            assert orderer.stats.batches_skipped > read + 100  # still busy
            assert not orderer.stats.reads_failing_since
            try:
                orderer.submit(b"not a transaction")
            except CutOff as e:
                raise AssertionError(f"refused while reading etcd: {e}") from None
        finally:
            stop.set()
            for t in writers:
                t.join()
            orderer.stop()


def _iat(token: str) -> int:
    """A Status List Token's ``iat``."""
    payload = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["iat"])


def _wait_current(node: Node, now: int, since: float | None = None) -> None:
    """Until the node has read the ordered batches to their end at ``now`` (30 s at most), by
    a read asked at ``since`` (its timer's time) or later when given: a read asked before a
    test stepped the timer may land after it and date the node's lists back by the step."""
    assert node.replicated is not None
    deadline = time.monotonic() + 30
    while node.replicated.current_at != now or (
            since is not None and (node.replicated._current_t or 0.0) < since):
        assert time.monotonic() < deadline, node.replicated.stats.last_error
        time.sleep(0.05)


@contextmanager
def _current_edu_node(tmp_path: Path, clock: list[int],
                      before: Callable[[Path], None] | None = None,
                      timer: Callable[[], float] | None = None
                      ) -> Iterator[tuple[Node, str, Path]]:
    """A demo's edu node on a single real etcd member, at ``clock[0]``, once current; the
    node, the member's URL and the data folder. ``before`` is given the data folder first,
    while no node holds it. The node's monotonic timer moves on as ``clock[0]`` does (time
    passing), unless ``timer`` is given (a clock that steps)."""
    (tmp_path / "etcd").mkdir()
    data = make_demo(tmp_path / "demo")
    if before is not None:
        before(data)
    start = clock[0]
    with _etcd_member(tmp_path / "etcd") as url:
        node = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0,
                    timer=timer or (lambda: time.monotonic() + clock[0] - start),
                    replication=Replication(endpoints=(url,)))
        try:
            _wait_current(node, clock[0])
            yield node, url, data
        finally:
            node.close()


def test_status_tokens_are_dated_when_the_node_last_knew_its_lists_current(
        tmp_path: Path) -> None:
    """A node cut off from etcd's quorum kept signing Status List Tokens dated now (valid for
    an hour) from lists that miss whatever the network committed meanwhile: a revocation
    sent through another agency's node read "valid" for as long (measured on a 3-agency
    cluster with one agency cut off). A token is now dated when the node last read the
    ordered batches to their end (a linearizable read), so a verifier's ``ttl`` and ``exp``
    count from then; and past the token's lifetime the node says why instead (503). So is
    its snapshot part."""
    from ledger import codec
    from node.service import TOKEN_LIFETIME

    clock = [DEMO_T0 + 1000]
    with _current_edu_node(tmp_path, clock) as (node, url, data):
        assert _iat(node.status_list_token("edu", "degree")) == DEMO_T0 + 1000
        app = create_app(settings_for(data), node=node)
        with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
            os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
            try:
                clock[0] += 600  # ten minutes cut off
                time.sleep(0.5)  # the node's reads of etcd hang meanwhile
                stale = http.get("/v1/status-lists/edu/degree")
                stale_part = http.get("/v1/snapshot")  # its snapshot part: dated as its tokens
                clock[0] += TOKEN_LIFETIME
                dead = http.get("/v1/status-lists/edu/degree")
                dead_part = http.get("/v1/snapshot")
            finally:
                os.kill(_MEMBERS[url].pid, signal.SIGCONT)
            _wait_current(node, clock[0])
            again = http.get("/v1/status-lists/edu/degree")
    assert stale.status_code == 200 and _iat(stale.text) == DEMO_T0 + 1000  # not + 600
    assert dead.status_code == 503, dead.text
    assert "current only as of" in dead.json()["detail"], dead.text
    assert again.status_code == 200 and _iat(again.text) == clock[0]
    assert stale_part.status_code == 200, stale_part.text
    part = codec.decode(stale_part.content, what="snapshot")
    assert part["fetched_at"] == DEMO_T0 + 1000  # not + 600
    assert {_iat(item["token"]) for item in part["status_lists"]} == {DEMO_T0 + 1000}
    assert dead_part.status_code == 503 and "current only as of" in dead_part.text



def test_health_says_behind_while_the_node_has_not_read_etcd_to_its_end(tmp_path: Path) -> None:
    """Health said `ok` while a node was hundreds of blocks behind (a restart after a long
    stop; helper round 27R), and the README's rolling upgrade went on at `ok`. It now says
    `degraded`, "behind", once the node has not read the ordered batches to their end for
    CURRENT_SLACK seconds (here its etcd member frozen: the same position as a node still
    reading a backlog), and `ok` again once it has (ADR 76)."""
    from node.api import CURRENT_SLACK, node_status

    clock = [DEMO_T0 + 1000]
    with _current_edu_node(tmp_path, clock) as (node, url, _):
        assert node_status(node)[:2] == ("ok", None)
        height = node.head()["height"]
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            clock[0] += CURRENT_SLACK
            at_slack = node_status(node)[:2]
            clock[0] += 1
            status, problem, _, _ = node_status(node)
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        _wait_current(node, clock[0])
        again = node_status(node)[:2]
    assert at_slack == ("ok", None)
    assert status == "degraded" and problem is not None
    assert problem.startswith("behind: this node has not read the network's ordered batches "
                              f"to their end for {CURRENT_SLACK + 1} s (its head: height "
                              f"{height}"), problem
    assert again == ("ok", None)


def test_a_clock_stepped_back_while_cut_off_does_not_keep_the_lists_current(
        tmp_path: Path) -> None:
    """When the node last read the ordered batches to their end was kept as a date: a clock
    stepped back an hour (an NTP step, a VM resumed) left it an hour ahead of the clock, and a
    node then cut off from etcd's quorum called its status lists current as of now, dated
    its Status List Tokens now and said `ok`, for an hour more (round 31K). How long ago is
    timed by the node's monotonic timer: ten minutes cut off are ten minutes, whatever the
    clock did meanwhile."""
    from node.api import node_status

    clock, skip = [DEMO_T0 + 1000], [0.0]
    with _current_edu_node(tmp_path, clock, timer=lambda: time.monotonic() + skip[0]) as (
            node, url, _):
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            clock[0] -= 3600  # stepped back an hour
            skip[0] += 600  # and ten minutes cut off, by the timer
            as_of = node.lists_as_of()
            status, problem = node_status(node)[:2]
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        assert as_of <= clock[0] - 600, (as_of, clock[0])
        assert status == "degraded" and problem is not None
        assert problem.startswith("behind"), problem
        _wait_current(node, clock[0])  # current again at the clock as it now reads
        assert node.lists_as_of() == clock[0]


def test_how_long_steps_failed_and_etcd_refused_writes_is_timed_by_the_nodes_timer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The NOSPACE refusal's "refused for N s", and the log lines "steps succeed again after N s
    of failures" and "takes writes again after N s of NOSPACE" took N from the wall clock: a
    clock stepped back or forward (an NTP step, a VM resumed) said a step's worth more or less
    (round 32K). Timed by the node's monotonic timer: here ten minutes of it pass while the
    wall clock does not move, and each says ten minutes."""
    from node.etcdlog import NoSpace

    clock, skip = [DEMO_T0 + 1000], [0.0]
    with _current_edu_node(tmp_path, clock, timer=lambda: time.monotonic() + skip[0]) as (
            node, url, _):
        orderer = node.replicated
        assert orderer is not None
        caplog.set_level(logging.WARNING, logger="credledger.replication")
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)  # no write, no read answered
        try:
            # as a put refused by etcd's alarm is taken in (the probe cannot clear it: frozen)
            orderer._write_failed(NoSpace("etcdserver: mvcc: database space exceeded"))
            deadline = time.monotonic() + 30
            while not orderer.stats.failing_since:  # a read of etcd timed out: a failed step
                assert time.monotonic() < deadline
                time.sleep(0.05)
            skip[0] += 600  # ten minutes, by the timer
            with pytest.raises(NoSpace) as refused:
                orderer.submit(b"anything")
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        said = re.search(r"refused for (\d+) s", str(refused.value))
        assert said is not None and 600 <= int(said[1]) < 700, str(refused.value)

        def logged(pattern: str) -> int | None:
            for r in caplog.records:
                if (m := re.search(pattern, r.getMessage())) is not None:
                    return int(m[1])
            return None
        deadline = time.monotonic() + 30
        while (logged(r"succeed again, after (\d+) s") is None
               or logged(r"again after (\d+) s of NOSPACE") is None):
            assert time.monotonic() < deadline, [r.getMessage() for r in caplog.records]
            time.sleep(0.05)
    for pattern in (r"succeed again, after (\d+) s", r"again after (\d+) s of NOSPACE"):
        n = logged(pattern)
        assert n is not None and 600 <= n < 700, (pattern, n)


def test_a_status_token_first_signed_while_cut_off_is_dated_when_its_lists_were_current(
        tmp_path: Path) -> None:
    """Found by mutation round 16: a token dated now but for its first signing went unseen,
    the token asked for while cut off having been signed (and kept) before. One first
    signed while the node's etcd member is frozen is dated when the node last read the
    ordered batches to their end, not now."""
    clock = [DEMO_T0 + 1000]
    with _current_edu_node(tmp_path, clock) as (node, url, _):
        assert node.replicated is not None
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            clock[0] += 600  # ten minutes cut off
            before = node.replicated.current_at
            token = node.status_list_token("edu", "degree")
            after = node.replicated.current_at
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
    assert _iat(token) in (before, after)
    # A reply the node had read when the member froze may still have moved current_at to
    # now (then the token is dated now, rightly); else it is dated before the freeze.
    if after != clock[0]:
        assert _iat(token) == DEMO_T0 + 1000


def test_a_cut_off_nodes_desk_calls_a_status_undetermined_once_its_lists_are_stale(
        tmp_path: Path) -> None:
    """The node's own desk (its page and ``POST /v1/verify``) read its status lists however
    long it had been cut off from etcd's quorum, and said "valid" for credentials revoked
    meanwhile through another agency's node, where a token it signed from those lists would
    have been refused past its ``ttl`` (ADR 58). Past that, a status checked at its desk is
    undetermined and says why; current again, it is read."""
    clock = [DEMO_T0 + 1000]
    holder = PrivateKey.generate()
    issued: list[Bundle] = []

    def issue(data: Path) -> None:  # solo, with the demo's every node key: a final checkpoint
        solo = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0)
        try:
            issued.append(solo.issue("degree", CLAIMS, sdjwt.jwk_from_ed25519(
                holder.public.raw), valid_days=365)[0])
        finally:
            solo.close()

    with _current_edu_node(tmp_path, clock, issue) as (node, url, _):
        bundle = issued[0]

        def check() -> Report:
            request = node.new_request("degree", ["field"], AUDIENCE).request
            kb = sdjwt.present(bundle.sd_jwt, disclose=["field"], holder_key=holder,
                               nonce=request.nonce, aud=request.audience, iat=clock[0])
            return node.verify(Envelope.from_bundle(bundle, kb).to_bytes(), request.nonce)

        assert check().verified
        os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
        try:
            clock[0] += 600  # ten minutes cut off: past a token's ttl of 300 s
            time.sleep(0.5)  # the node's reads of etcd hang meanwhile
            stale = check()
        finally:
            os.kill(_MEMBERS[url].pid, signal.SIGCONT)
        _wait_current(node, clock[0])
        again = check()
    assert stale.status == "undetermined" and not stale.verified, stale.to_json()
    assert stale.checks[-1].name == "status"
    assert "current only as of" in stale.checks[-1].detail, stale.checks[-1].detail
    assert again.verified, again.to_json()

# -- catching up past the pruning marker from peers that may lie -------------------------------

@dataclass
class _Chains:
    honest: Path  # a demo store at its head H
    victim: Path  # the same chain up to height 2
    liars: dict[str, list[list[Any]]]  # the same entries from height 3, grouped otherwise
    node_key: Any


@pytest.fixture(scope="module")
def chains(tmp_path_factory: pytest.TempPathFactory) -> _Chains:
    from ledger.chain import build_block, build_genesis
    from ledger.keys import load_private_key
    from ledger.store import Store
    from ledger.tx import Tx

    root = tmp_path_factory.mktemp("catch-up")
    data = make_demo(root / "demo")
    honest = Store(data / "ledger", create=False)
    top = honest.head.height
    blocks = [(honest.block(h), [Tx.from_bytes(r) for r in honest.block_entries(honest.block(h))])
              for h in range(top + 1)]
    victim = Store(root / "victim", create=True)
    victim.write_block(build_genesis(blocks[0][1][0]))
    for h in (1, 2):
        victim.write_block(build_block(victim.head, victim.registry, victim, victim.frontier,
                                       blocks[h][1], blocks[h][0].time))
    victim.close()
    rest = [tx for h in range(3, top + 1) for tx in blocks[h][1]]
    counts = [len(blocks[h][1]) for h in range(3, top + 1)]
    i = next(i for i, c in enumerate(counts) if c >= 2)
    regrouped = [*counts[:i], counts[i] - 1, counts[i + 1] + 1, *counts[i + 2:]]
    split = [*counts[:i], 1, counts[i] - 1, *counts[i + 1:]]
    liars = {}
    for name, grouping, shift in (("regroup", regrouped, 300), ("split", split, 0)):
        shutil.copytree(root / "victim", root / name)
        scratch = Store(root / name, create=False)
        out, pos = [], 0
        for n, c in enumerate(grouping):
            txs, pos = rest[pos:pos + c], pos + c
            t = blocks[min(3 + n, top)][0].time + shift
            res = build_block(scratch.head, scratch.registry, scratch, scratch.frontier, txs, t)
            assert not res.rejected and not res.duplicates
            scratch.write_block(res)
            out.append([res.header.to_bytes(), [tx.raw for tx in txs]])
        assert scratch.head.log_root == honest.head.log_root  # same entries, same root
        scratch.close()
        liars[name] = out
    honest.close()
    return _Chains(data / "ledger", root / "victim", liars,
                   load_private_key(data / "keys" / "edu.node.key", PASS))


def _pruned_to(url: str, network: str, height: int, size: int, block_hash: bytes) -> None:
    """A pruning marker of ``network`` at revision 5 naming that block, as a pruner writes it:
    after the batch it names (etcd's revision past 5 first: alone, this module's etcd is new)."""
    from ledger import codec

    scratch = EtcdLog([url], "scratch")
    try:
        while scratch.put_batch(b"x") < 6:
            pass
    finally:
        scratch.close()
    log = EtcdLog([url], network)
    assert log.prune(5, codec.encode({"rev": 5, "height": height, "size": size,
                                      "hash": block_hash}), cosig_size=0, seen=None) == 0


@contextmanager
def _peer(store: Any, blocks: list[list[Any]] | None = None, garbage: str = "",
          headers_too: bool = False, checkpoint: bytes | None = None,
          first: int = 3) -> Iterator[str]:
    """A peer's sync, header, checkpoint and proof endpoints over HTTP, from the honest store.
    With ``blocks`` (from height ``first``) it serves those on /v1/sync/blocks (honest headers
    still), and nonsense on the paths ``garbage`` ends with."""
    import base64
    import http.server
    from urllib.parse import parse_qs, urlparse

    from ledger import codec

    lock = threading.Lock()

    class Peer(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            u = urlparse(self.path)
            q = {k: int(v[0]) for k, v in parse_qs(u.query).items()}
            with lock:
                if u.path in ("/v1/sync/blocks", "/v1/sync/headers"):
                    top = store.head.height
                    heights = range(q["from"], min(top, q["from"] + q["count"] - 1) + 1)
                    served = [[store.block(h).to_bytes(), store.block_entries(store.block(h))]
                              for h in heights]
                    headers = [b[0] for b in served]
                    if blocks is not None:
                        served = blocks[q["from"] - first:q["from"] - first + q["count"]]
                        if headers_too:  # headers that chain to its own blocks
                            headers = [b[0] for b in served]
                    body = codec.encode(served if u.path.endswith("blocks") else headers)
                    if garbage and u.path.endswith(garbage):
                        body = codec.encode([5, 6])  # not [header, entries] pairs
                elif u.path == "/v1/checkpoint":
                    body = checkpoint or store.checkpoint() or b""
                elif u.path == "/v1/proofs/consistency":
                    proof = store.consistency_proof(q["old"], q["new"])
                    body = json.dumps({"proof": [base64.b64encode(p).decode()
                                                 for p in proof]}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Peer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _caught_up(store: Any, etcd_url: str, network: str, peers: list[str], height: int,
               timeout: float, *, node_key: Any, clock: int = DEMO_T0 + 10) -> EtcdOrderer:
    """edu's node on ``store`` catching up from ``peers`` until its head reaches ``height`` or
    ``timeout`` s pass; the stopped orderer (its stats)."""
    orderer = EtcdOrderer(store, EtcdLog([etcd_url], network), agency="edu",
                          node_key=node_key, clock=lambda: clock, peers=peers, workers=0)
    try:
        deadline = time.monotonic() + timeout
        while store.head.height < height and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        orderer.stop()
    return orderer


@pytest.mark.parametrize("first", ["regroup", "split", "garbage-blocks", "garbage-headers"])
def test_a_node_catching_up_takes_only_the_networks_blocks(
        etcd_url: str, chains: _Chains, tmp_path: Path, first: str) -> None:
    """Past the pruning marker a node syncs from peers, the first peer asked first. One that
    serves the network's headers but regroups the same entries into other blocks (other
    times), adds a block, or sends nonsense for blocks or headers, is refused before anything
    is written, and the next peer is asked: the node ends on the network's own blocks, the ones
    the marker's block hash ends (ADR 46)."""
    from ledger.store import Store

    honest = Store(chains.honest, create=False)
    head = honest.head
    hashes = [honest.block(h).hash for h in range(head.height + 1)]
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = f"catch-up-{first}"
    _pruned_to(etcd_url, network, head.height, head.log_size, head.hash)
    liar = chains.liars.get(first)
    garbage = first.split("-")[1] if first.startswith("garbage") else ""
    with honest, _peer(honest, liar, garbage=garbage) as bad, _peer(honest) as good, \
            Store(victim, create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [bad, good], head.height, 60,
                             node_key=chains.node_key)
        assert store.head.height == head.height, orderer.stats.last_error
        assert [store.block(h).hash for h in range(head.height + 1)] == hashes
        assert orderer.stats.synced_blocks == head.height - 2


def test_a_node_whose_block_at_the_markers_height_is_not_the_markers_is_told_to_restore(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """A node at the pruning marker's height whose block there is not the marker's (its hash
    differs) is on a chain of its own: it takes up no batch after the marker (it would build
    on that chain) and says to restore its store from a peer (ADR 60)."""
    from ledger.store import Store

    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = "catch-up-other-block"
    with Store(victim, create=False) as store:
        head = store.head
        _pruned_to(etcd_url, network, head.height, head.log_size, b"\x07" * 32)
        with Store(chains.honest, create=False) as honest, _peer(honest) as peer:
            orderer = _caught_up(store, etcd_url, network, [peer], head.height + 1, 2,
                                 node_key=chains.node_key)
        assert store.head == head
    assert orderer.rev == 0
    said = orderer.stats.last_error
    assert f"this node's block {head.height} is not the network's" in said, said
    assert "restore its store from a peer" in said


def test_headers_that_end_at_the_markers_block_but_do_not_chain_to_it_are_refused(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """The network's block hashes up to the pruning marker are taken from the first peer whose
    headers chain from the node's head to the marker's block, each to the one before. A peer
    serving the marker's own header last, after one header of its own making, ends at the
    marker's hash: its hashes, taken, held every peer's blocks (the network's) as not the
    network's, for good. They are refused, and the next peer's are taken."""
    import dataclasses

    from ledger.block import BlockHeader
    from ledger.store import Store

    honest = Store(chains.honest, create=False)
    head = honest.head
    assert head.height >= 5
    blocks = [[honest.block(h).to_bytes(), honest.block_entries(honest.block(h))]
              for h in range(3, head.height + 1)]
    fake = BlockHeader.from_bytes(blocks[1][0])  # block 4, a second later
    blocks[1] = [dataclasses.replace(fake, time=fake.time + 1).to_bytes(), blocks[1][1]]
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = "catch-up-unchained-headers"
    _pruned_to(etcd_url, network, head.height, head.log_size, head.hash)
    with honest, _peer(honest, blocks, headers_too=True) as bad, _peer(honest) as good, \
            Store(victim, create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [bad, good], head.height, 20,
                             node_key=chains.node_key)
        assert store.head.hash == head.hash, orderer.stats.last_error


def test_a_restored_store_aligns_only_at_a_marker_naming_its_own_block(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A store restored from an archive (final blocks, no etcd revision) past the pruning
    marker matches the batches after the marker to the blocks it holds, from the marker's
    block on (ADR 48): only when its block at the marker's height is the marker's. One naming
    another block there (the same height and size, another hash) is not its chain's: it is
    refused, and nothing is matched."""
    from ledger.chain import checkpoint_key
    from ledger.finality import sign_checkpoint

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    ledger.govern("register_type", {"type": spec}, [reg, tax], T0 + 1)
    marked = ledger.store.head
    res = ledger.build([ledger.gov_tx("register_type", {"type": {**spec, "id": "x"}},
                                      [reg, tax])], T0 + 2)
    assert res.head is not None and not res.rejected
    cp = sign_checkpoint(ledger.net, res.head, [(a.id, a.node_key) for a in (reg, edu, tax)])
    ledger.store.write_block(res, {checkpoint_key(res.head.log_size): cp.to_text().encode()})
    network = "restored-other-marker"
    _pruned_to(etcd_url, network, marked.height, marked.log_size, b"\x07" * 32)
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], network), agency="edu",
                          node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)
    try:
        assert orderer.final_size == res.head.log_size  # a restored store's final head
        deadline = time.monotonic() + 30
        while "pruning marker says height" not in orderer.stats.last_error:
            assert time.monotonic() < deadline, (orderer.stats.last_error, orderer.rev)
            time.sleep(0.05)
        assert orderer.rev == 0
    finally:
        orderer.stop()


def test_a_restored_node_takes_no_checkpoint_of_another_block_on_disk_as_final(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A node whose store holds no record of which checkpoint is final (restored from an
    archive) takes the newest final one on disk among its last blocks: only one of the block
    it holds at that size (ADR 60). A quorum's checkpoint of the same entries in another block
    (timed a second later) is another chain's, not this store's finality."""
    from ledger.chain import checkpoint_key
    from ledger.finality import sign_checkpoint

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    ledger.govern("register_type", {"type": spec}, [reg, tax], T0 + 1)
    txs = [ledger.gov_tx("register_type", {"type": {**spec, "id": "x"}}, [reg, tax])]
    other = ledger.build(txs, T0 + 3)  # the same entries, another block
    res = ledger.build(txs, T0 + 2)
    assert other.head is not None and res.head is not None and other.head.hash != res.head.hash
    quorum = sign_checkpoint(ledger.net, other.head, [(a.id, a.node_key) for a in (reg, tax)])
    ledger.store.write_block(res, {checkpoint_key(res.head.log_size): quorum.to_text().encode()})
    last = ledger.build([ledger.gov_tx("register_type", {"type": {**spec, "id": "y"}},
                                       [reg, tax])], T0 + 4)
    assert last.head is not None
    alone = sign_checkpoint(ledger.net, last.head, [("edu", edu.node_key)])  # not final
    ledger.store.write_block(last, {checkpoint_key(last.head.log_size): alone.to_text().encode()})
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], "final-on-disk"), agency="edu",
                          node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)
    try:
        assert orderer.final_size == 0
        assert orderer.final_checkpoint() is None
    finally:
        orderer.stop()


def test_a_restored_store_matches_a_block_only_to_a_batch_holding_its_transactions(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A store restored past the pruning marker matches the batches after it to the blocks it
    holds (ADR 48): a batch made block k if the network took it, its block time is block k's
    and block k's transactions are in it, in order. Taken by time alone, a batch that made no
    block (a repeat of committed transactions) stood for block 2 and the next one for block 3
    (same times: no witnesses), the match ended early, and a batch the network had refused
    (an issuance before its grant, which came in block 3) was applied after the held blocks:
    a block no other node built."""
    from ledger.batch import make_batch
    from ledger.chain import checkpoint_key
    from ledger.finality import sign_checkpoint

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    first = ledger.govern("register_type", {"type": spec}, [reg, tax], T0 + 1)
    marked = ledger.store.head
    second = ledger.gov_tx("register_type", {"type": {**spec, "id": "x"}}, [reg, tax])
    ledger.commit([second], T0 + 1)
    third = ledger.gov_tx("grant", {"agency": "edu", "type": "degree", "from": T0,
                                    "until": T0 + DAY}, [reg, tax])
    res = ledger.build([third], T0 + 1)
    assert res.head is not None and not res.rejected
    cp = sign_checkpoint(ledger.net, res.head, [(a.id, a.node_key) for a in (reg, edu, tax)])
    ledger.store.write_block(res, {checkpoint_key(res.head.log_size): cp.to_text().encode()})
    head = ledger.store.head
    assert head.height == 3 and ledger.store.block(2).time == head.time  # no witnesses
    early = issue_tx(NET, edu, hashlib.sha256(b"early").digest(), "degree", 1, T0 + 1,
                     T0 + DAY, T0 + 1)  # refused by the network: no grant before block 3
    network = "restored-align-order"
    _pruned_to(etcd_url, network, marked.height, marked.log_size, marked.hash)
    writer = EtcdLog([etcd_url], network)
    orderer = None
    try:
        for txs in ([first.accepted[0][0]], [second], [early], [third]):
            rev = writer.put_batch(make_batch(ledger.net, "reg", reg.node_key, T0 + 1,
                                              [tx.raw for tx in txs], []).to_bytes())
        orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], network), agency="edu",
                              node_key=edu.node_key, clock=lambda: T0 + 10, workers=0)
        deadline = time.monotonic() + 30
        while orderer.rev != rev or orderer._aligning is not None:
            assert time.monotonic() < deadline, (orderer.stats.last_error, orderer.rev)
            time.sleep(0.05)
        assert ledger.store.head == head, "built a block after the held ones"
        assert ledger.store.tx_location(early.txid) is None
    finally:
        if orderer is not None:
            orderer.stop()
        writer.close()


@contextmanager
def _behind_a_marker(etcd_url: str, chains: _Chains, tmp_path: Path, network: str, *,
                     size_off: int = 0, checkpoint: Callable[[bytes], bytes] | None = None
                     ) -> Iterator[tuple[Any, str, Any]]:
    """A copy of the victim's store behind a pruning marker at the honest chain's head (its
    log size off by ``size_off``), and a peer serving the honest chain, with the checkpoint
    ``checkpoint`` makes of the honest one in its place when given: (head, peer, store)."""
    from ledger.store import Store

    honest = Store(chains.honest, create=False)
    head = honest.head
    text = honest.checkpoint()
    assert text is not None
    served = None if checkpoint is None else checkpoint(text)
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    _pruned_to(etcd_url, network, head.height, head.log_size + size_off, head.hash)
    with honest, _peer(honest, checkpoint=served) as peer, Store(victim, create=False) as store:
        yield head, peer, store


def test_a_node_catching_up_takes_no_checkpoint_short_of_a_quorum_as_final(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """A synced run is written only once a final checkpoint binds it: the peer's is checked
    for a quorum of the node keys in force, before its root and block. A peer serving the
    network's blocks with a checkpoint of their last block signed by its own node key alone
    (the quorum is two) gets nothing written: the node would hold that checkpoint as final."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.keys import load_private_key

    def alone(text: bytes) -> bytes:
        return SignedCheckpoint(SignedCheckpoint.from_text(text).checkpoint).cosign(
            "civil", load_private_key(chains.honest.parent / "keys" / "civil.node.key", PASS)
        ).to_text().encode()

    with _behind_a_marker(etcd_url, chains, tmp_path, "catch-up-short-checkpoint",
                          checkpoint=alone) as (head, peer, store):
        orderer = _caught_up(store, etcd_url, "catch-up-short-checkpoint", [peer],
                             head.height, 3, node_key=chains.node_key)
        assert store.head.height == 2, "took a run on a checkpoint short of its quorum"
        assert store.checkpoint() is None and orderer.final_size == 0
    assert "1 of 2 required signatures" in orderer.stats.last_error, orderer.stats.last_error


def test_a_marker_whose_size_is_not_its_blocks_takes_no_catching_up_node_past_it(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """A node caught up to the pruning marker's block takes up from the marker's revision
    only if its log there has the size the marker says: one that does not (no pruner's: any
    agency's certificate writes it) leaves it where it was, saying so."""
    with _behind_a_marker(etcd_url, chains, tmp_path, "catch-up-marker-size",
                          size_off=1) as (head, peer, store):
        orderer = _caught_up(store, etcd_url, "catch-up-marker-size", [peer], head.height, 20,
                             node_key=chains.node_key)
        assert store.head.hash == head.hash, orderer.stats.last_error  # the blocks: the network's
    assert orderer.rev == 0
    said = orderer.stats.last_error
    assert f"the log has {head.log_size} entries, the marker says {head.log_size + 1}" in said


def test_a_node_catching_up_from_a_peer_of_a_version_before_adr_60_says_so(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """A node upgraded across ADR 60 that was down past etcd's pruning marker catches up only
    on a final checkpoint that names its block; an older peer's names none. That is still
    refused (its blocks are bound by nothing), but the node said only "checkpoint at size N
    names no block", twice a second, with no word of versions or what to do (ADR 62)."""
    from ledger.checkpoint import Checkpoint, SignedCheckpoint
    from ledger.keys import load_private_key

    def older(text: bytes) -> bytes:
        signed = SignedCheckpoint.from_text(text)
        out = SignedCheckpoint(Checkpoint(signed.checkpoint.origin, signed.checkpoint.size,
                                          signed.checkpoint.root))
        for s in signed.signatures:  # as the older version signed it: the root alone
            out = out.cosign(s.name, load_private_key(
                chains.honest.parent / "keys" / f"{s.name}.node.key", PASS))
        return out.to_text().encode()

    with _behind_a_marker(etcd_url, chains, tmp_path, "catch-up-older",
                          checkpoint=older) as (head, peer, store):
        orderer = _caught_up(store, etcd_url, "catch-up-older", [peer], head.height, 3,
                             node_key=chains.node_key)
        assert store.head.height == 2  # nothing taken
    said = orderer.stats.last_error
    assert "names no block: that node runs a version before ADR 60" in said, said
    assert "upgrade that agency's node" in said


@contextmanager
def _flood_peer(pace: float, size: int, *,
                in_headers: bool = False) -> Iterator[tuple[str, list[int]]]:
    """A peer that answers every request with ``size`` bytes of nonsense, ``pace`` seconds
    between 64 KiB pieces (or between single bytes, if ``pace`` is over 0.1); the bytes it got
    out are counted. ``in_headers``: the bytes are a header's value, never ended."""
    import http.server

    sent = [0]

    class Flood(http.server.BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            if in_headers:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nx-pad: ")
            else:
                self.send_response(200)
                self.send_header("content-length", str(size))
                self.end_headers()
            piece = b"\x01" if pace > 0.1 else b"\x01" * 65536
            try:
                while sent[0] < size:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    sent[0] += len(piece)
                    time.sleep(pace)
            except OSError:
                pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flood)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", sent
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["huge", "slow", "slow-headers"])
def test_a_peer_answering_without_end_does_not_hold_a_catching_up_node(
        etcd_url: str, chains: _Chains, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        kind: str) -> None:
    """A catching-up node read a peer's whole answer into memory before looking at its size,
    with a timeout per read only: a peer sending gigabytes (the node's memory) or a byte every
    few seconds (for good) held its apply loop. An answer is now read up to its bound in bytes
    and within PEER_READ_DEADLINE, then the next peer is asked. The deadline bounded the body
    only: a status line and headers sent a byte at a time held the node for days (21S); the
    connection is cut at the deadline."""
    from ledger.store import Store
    from node import replication

    monkeypatch.setattr(replication, "PEER_READ_DEADLINE", 3.0)
    honest = Store(chains.honest, create=False)
    head = honest.head
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = f"catch-up-flood-{kind}"
    _pruned_to(etcd_url, network, head.height, head.log_size, head.hash)
    pace, size = (0.0, 256 << 20) if kind == "huge" else (0.5, 1000)
    flood = _flood_peer(pace, size, in_headers=kind == "slow-headers")
    with honest, flood as (bad, sent), _peer(honest) as good, \
            Store(victim, create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [bad, good], head.height, 30,
                             node_key=chains.node_key)
        assert store.head.height == head.height, orderer.stats.last_error
    if kind == "huge":  # the headers' bound (4 MiB) and what the sockets hold
        assert sent[0] < 32 << 20, sent[0]


def _rotated_past_a_copy(make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
                        tmp_path: Path) -> tuple[LedgerHarness, Any, Any]:
    """An honest chain copied to ``tmp_path / "victim"`` at height 1; then a block, two of the
    three node keys rotated, and a block whose checkpoint (stored) carries the new keys, which
    the copy's registry does not know: (the honest ledger, its head at the second block, that
    checkpoint)."""
    from ledger.chain import checkpoint_key
    from ledger.finality import sign_checkpoint
    from ledger.keys import PrivateKey

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    honest = make_ledger(list(agencies.values()), 2, T0, name="honest")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    honest.govern("register_type", {"type": spec}, [reg, tax], T0 + 1)
    honest.store.close()
    shutil.copytree(tmp_path / "honest", tmp_path / "victim")  # at height 1
    honest.reopen()
    honest.govern("register_type", {"type": {**spec, "id": "diploma"}}, [reg, tax], T0 + 2)
    second = honest.store.head
    new = {"reg": PrivateKey.generate(), "tax": PrivateKey.generate()}
    for name, key in new.items():
        honest.govern("rotate_key", {"agency": name, "role": "node",
                                     "new_key": key.public.raw, "at": T0 + 7}, [reg, tax], T0 + 3)
    res = honest.build([honest.gov_tx("register_type", {"type": {**spec, "id": "x"}},
                                      [reg, tax])], T0 + 8)
    assert res.head is not None and not res.rejected
    cp = sign_checkpoint(honest.net, res.head, [("reg", new["reg"]), ("tax", new["tax"]),
                                                ("edu", edu.node_key)])
    honest.store.write_block(res, {checkpoint_key(res.head.log_size): cp.to_text().encode()})
    return honest, second, cp


def test_a_node_catches_up_to_a_marker_before_a_rotation_its_peers_checkpoint_is_past(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        tmp_path: Path) -> None:
    """A synced run was checked against the peer's final checkpoint with the registry at the
    run's end. Past it, two of three agencies rotated their node keys: the network's newest
    final checkpoints carry their new keys, which that registry does not know, and every
    peer's was refused: the node stayed behind for good. A checkpoint past the run is checked
    with the registry at its own block, re-executed from the peer's blocks (not written)."""
    from ledger.store import Store

    honest, marker, _ = _rotated_past_a_copy(make_ledger, agencies, tmp_path)
    network = "catch-up-rotated"
    _pruned_to(etcd_url, network, marker.height, marker.log_size, marker.hash)
    with _peer(honest.store) as good, Store(tmp_path / "victim", create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [good], marker.height, 20,
                             node_key=agencies["edu"].node_key, clock=T0 + 10)
        assert store.head.height == marker.height, orderer.stats.last_error
        assert store.head.hash == marker.hash


def test_a_node_following_a_peer_past_a_rotation_holds_nothing_per_transaction(
        make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past a rotation, a synced run is checked against the peer's final checkpoint with the
    registry of the checkpoint's own block, found by following the peer's blocks up to it
    (ADR 59). They were re-executed into memory first, every transaction's state changes held
    until the checkpoint's signatures could be checked: as far as the size the peer claimed,
    and at district scale (a node down long, a rotation since) more than a node's memory.
    Following takes headers, entries and governance only (ADR 64): 1,500 more transactions
    past the run (30 blocks, one per request) held ~2 MB more before (~1.3 KB each: their
    writes, and the fetched entries those kept alive), ~20 KB now (the blocks' hashes)."""
    import tracemalloc
    import types

    from ledger.chain import Head
    from ledger.checkpoint import SignedCheckpoint
    from ledger.finality import sign_checkpoint
    from ledger.keys import PrivateKey
    from node import replication

    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    honest = make_ledger(list(agencies.values()), 2, T0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    honest.govern("register_type", {"type": spec}, [reg, tax], T0 + 1)
    honest.govern("grant", {"agency": "edu", "type": "degree", "from": T0,
                            "until": T0 + 900 * DAY}, [reg, tax], T0 + 2)
    run = honest.store.head  # a synced run ends here
    registry, frontier = honest.registry, honest.store.frontier.copy()
    new = {"reg": PrivateKey.generate(), "tax": PrivateKey.generate()}
    for name, key in new.items():
        honest.govern("rotate_key", {"agency": name, "role": "node",
                                     "new_key": key.public.raw, "at": T0 + 7}, [reg, tax], T0 + 3)
    for b in range(40):
        t = T0 + 10 + b
        res = honest.commit([issue_tx(NET, edu, hashlib.sha256(b"%d" % (b * 50 + i)).digest(),
                                      "degree", b * 50 + i, t, t + DAY, t) for i in range(50)], t)
        assert len(res.accepted) == 50
    monkeypatch.setattr(replication, "SYNC_BLOCKS", 1)

    def followed(to: int) -> int:
        """Bytes at the peak of following the peer's blocks from the run to block ``to``."""
        end = honest.store.block(to)
        cp = SignedCheckpoint.from_text(sign_checkpoint(
            honest.net, Head(to, end.hash, end.log_size, end.log_root, end.time),
            [("reg", new["reg"]), ("tax", new["tax"]), ("edu", edu.node_key)]).to_text())
        with _peer(honest.store) as url, httpx.Client(timeout=30) as client:
            me = types.SimpleNamespace(_peers_http=types.SimpleNamespace(client=lambda: client),
                                       _heartbeat=lambda: None, _vouched=None, _vouching=None)
            for name in ("_peer_get", "_peer_blocks"):
                setattr(me, name, getattr(EtcdOrderer, name).__get__(me))
            me._peer_blocks(url, 1, 1)  # (the client's first request out of the figure)
            tracemalloc.start()
            try:
                EtcdOrderer._vouch(me, url, [types.SimpleNamespace(head=run)],  # type: ignore
                                   run, registry, frontier, cp)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        assert me._vouching is cp
        assert me._vouched == (run.height, [honest.store.block(h).hash
                                            for h in range(run.height, to + 1)])
        return peak

    top = honest.store.head.height
    few, many = followed(top - 30), followed(top)  # 500 and 2,000 transactions past the run
    assert many - few < 150_000, f"{many - few:,} more bytes for 1,500 more transactions"


def test_the_hashes_a_checkpoint_vouched_for_are_let_go_once_its_blocks_are_written(
        make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        tmp_path: Path) -> None:
    """Following a peer past a rotation keeps the hashes of every block up to its checkpoint
    (up to MAX_VOUCH_BLOCKS, ~100 MB) so that the next runs need only match them (ADR 64).
    Once the run reaching the checkpoint's block is written they vouch for nothing more, but
    the node held them for as long as it ran (until another catch-up replaced them)."""
    import types

    from ledger.store import Store
    from node.replication import Stats

    honest, _, cp = _rotated_past_a_copy(make_ledger, agencies, tmp_path)
    top = honest.store.head.height
    with _peer(honest.store) as url, httpx.Client(timeout=30) as client, \
            Store(tmp_path / "victim", create=False) as store:
        me = types.SimpleNamespace(
            _peers_http=types.SimpleNamespace(client=lambda: client), _heartbeat=lambda: None,
            _vouched=None, _vouching=None, _binds={}, store=store, stats=Stats(), final_size=0,
            _reexecute=EtcdOrderer._reexecute)
        for name in ("_peer_get", "_peer_blocks", "_vouch", "_bind", "_consistent",
                     "_resumed_walk", "_walk_headers", "_sync_from"):
            setattr(me, name, getattr(EtcdOrderer, name).__get__(me))
        me._sync_from(url, 2)  # a run to height 2: its checkpoint is past the rotation
        assert store.head.height == 2 and me._vouching is not None
        assert me._vouched == (2, [honest.store.block(h).hash for h in range(2, top + 1)])
        me._sync_from(url, top)  # the rest, matched against the kept hashes
        assert store.head.hash == honest.store.head.hash
        assert me.final_size == cp.checkpoint.size
        assert me._vouched is None and me._vouching is None


def test_a_checkpoint_past_a_rotation_short_of_its_blocks_quorum_binds_no_catch_up(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        tmp_path: Path) -> None:
    """A peer's final checkpoint past a rotation is judged by the registry at its own block,
    found by following the peer's blocks (ADR 64). One signed there by a single new node key
    (the quorum is two) is no final checkpoint: it binds no synced run, and nothing is
    written, though the run's registry refused it for another reason (a key it does not
    know)."""
    from ledger.checkpoint import SignedCheckpoint
    from ledger.store import Store

    honest, marker, cp = _rotated_past_a_copy(make_ledger, agencies, tmp_path)
    alone = SignedCheckpoint(cp.checkpoint, tuple(s for s in cp.signatures if s.name == "reg"))
    assert len(alone.signatures) == 1
    network = "catch-up-rotated-short"
    _pruned_to(etcd_url, network, marker.height, marker.log_size, marker.hash)
    with _peer(honest.store, checkpoint=alone.to_text().encode()) as peer, \
            Store(tmp_path / "victim", create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [peer], marker.height, 4,
                             node_key=agencies["edu"].node_key, clock=T0 + 10)
        assert store.head.height == 1, "took a run bound by a checkpoint short of its quorum"
        assert store.checkpoint() is None
    assert "no peer could bring this node to height 2" in orderer.stats.last_error


@pytest.mark.parametrize("bound", [2, 3])
def test_a_checkpoint_past_a_rotation_is_followed_up_to_max_vouch_blocks(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bound: int) -> None:
    """The blocks a catching-up node follows past a synced run to a checkpoint its registry
    cannot judge are bounded by MAX_VOUCH_BLOCKS, not by what the peer claims (ADR 64): three
    blocks past the run are followed under a bound of three, and refused under two, with the
    reason and what to do."""
    from ledger.store import Store
    from node import replication

    monkeypatch.setattr(replication, "MAX_VOUCH_BLOCKS", bound)
    honest, marker, _ = _rotated_past_a_copy(make_ledger, agencies, tmp_path)
    assert honest.store.head.height - marker.height == 3  # blocks past the run of one
    network = f"catch-up-rotated-bound-{bound}"
    _pruned_to(etcd_url, network, marker.height, marker.log_size, marker.hash)
    with _peer(honest.store) as peer, Store(tmp_path / "victim", create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [peer], marker.height,
                             20 if bound == 3 else 4, node_key=agencies["edu"].node_key,
                             clock=T0 + 10)
        if bound == 3:
            assert store.head.hash == marker.hash, orderer.stats.last_error
            return
        assert store.head.height == 1
    said = orderer.stats.last_error
    assert f"more than {bound:,} blocks past the synced run" in said, said
    assert "ledger import" in said


def test_a_forged_marker_and_a_retimed_block_past_a_rotation_move_no_catching_up_node(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness], agencies: dict[str, Agency],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ADR 60 past a rotation (ADR 64): one agency writes a pruning marker naming the last
    block of its own chain, the network's blocks with the last one timed a second later (the
    same entries, the same root), and serves those blocks and headers with the network's
    final checkpoint. The run (one block a request here) is judged by the checkpoint at the
    registry of its block, found by following the liar's blocks: the checkpoint names the
    network's last block, not the liar's, and nothing is written."""
    from ledger.chain import build_block
    from ledger.store import Store
    from ledger.tx import Tx
    from node import replication

    honest, _, cp = _rotated_past_a_copy(make_ledger, agencies, tmp_path)
    top = honest.store.head.height
    shutil.copytree(tmp_path / "victim", tmp_path / "liar")
    liar: list[list[Any]] = []
    with Store(tmp_path / "liar", create=False) as scratch:
        for h in range(2, top + 1):
            block = honest.store.block(h)
            txs = [Tx.from_bytes(r) for r in honest.store.block_entries(block)]
            res = build_block(scratch.head, scratch.registry, scratch, scratch.frontier, txs,
                              block.time + (1 if h == top else 0))
            assert res.head is not None and not res.rejected
            scratch.write_block(res)
            liar.append([res.header.to_bytes(), [tx.raw for tx in txs]])
        end = scratch.head
    assert end.log_root == honest.store.head.log_root and end.hash != honest.store.head.hash
    monkeypatch.setattr(replication, "SYNC_BLOCKS", 1)  # a run the old registry judges
    network = "catch-up-rotated-retimed"
    _pruned_to(etcd_url, network, end.height, end.log_size, end.hash)  # the liar's marker
    with _peer(honest.store, liar, headers_too=True, checkpoint=cp.to_text().encode(),
               first=2) as bad, Store(tmp_path / "victim", create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [bad], end.height, 4,
                             node_key=agencies["edu"].node_key, clock=T0 + 10)
        assert store.head.height == 1, f"took the liar's blocks up to {store.head.height}"
    said = orderer.stats.last_error
    assert f"is not the one its final checkpoint (size {cp.checkpoint.size})" in said, said


def test_one_agency_cannot_make_a_catching_up_node_take_its_regrouping_with_a_marker_of_its_own(
        etcd_url: str, chains: _Chains, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """THREAT_MODEL: a peer cannot make a catching-up node take blocks the network did not
    build: headers must chain to the pruning marker's block hash. But any agency's etcd
    certificate writes the marker (under the network's keys), and the checks after it bound
    only the log's entries (a final checkpoint), not how they are grouped into blocks: one
    agency writing a marker that names the last block of its own grouping of the network's
    entries (one block split in two), and serving those blocks, moved a node catching up onto
    a chain with an extra block that no other node holds. Final checkpoints now name the
    block they end at, and a synced run must chain to it (ADR 60): the liar's blocks are
    refused (the forged marker stalls the catch-up, as THREAT_MODEL says it may)."""
    from ledger.block import BlockHeader
    from ledger.store import Store

    liar = chains.liars["split"]
    honest = Store(chains.honest, create=False)
    head = honest.head
    hashes = [honest.block(h).hash for h in range(head.height + 1)]
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = "catch-up-forged-marker"
    top = BlockHeader.from_bytes(liar[-1][0])
    _pruned_to(etcd_url, network, top.height, head.log_size, top.hash)  # the liar's marker
    with honest, _peer(honest) as good, _peer(honest, liar, headers_too=True) as bad, \
            Store(victim, create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [good, bad], top.height, 20,
                             node_key=chains.node_key)
        held = [store.block(h).hash for h in range(min(store.head.height, head.height) + 1)]
        assert held == hashes[:len(held)], f"took the liar's blocks up to {store.head.height}"
    # refused for the block the final checkpoint names (the honest peer, for the marker)
    said = [r.getMessage() for r in caplog.records if "sync from" in r.getMessage()]
    assert any("final checkpoint (size" in m and "names block" in m for m in said), said
    assert orderer.stats.synced_blocks == 0


def test_a_run_is_bound_only_by_headers_that_end_at_the_checkpoints_block(
        etcd_url: str, chains: _Chains, tmp_path: Path) -> None:
    """ADR 60 with fewer blocks: one agency merges two of the network's blocks into one (the
    same entries, the same root), writes a marker naming its last block and serves its blocks
    with the network's final checkpoint, which names a block one height past the liar's last.
    The run is bound to that block by the peer's headers from the run's end, which must end at
    the block's hash: the liar's header of its own making there does not, and nothing is
    written (the node would hold the network's checkpoint as final for a block it does not
    name)."""
    from ledger.block import BlockHeader
    from ledger.chain import build_block
    from ledger.store import Store
    from ledger.tx import Tx

    honest = Store(chains.honest, create=False)
    head = honest.head
    top = head.height
    rest = [Tx.from_bytes(r) for h in range(3, top + 1)
            for r in honest.block_entries(honest.block(h))]
    counts = [honest.block(h).tx_count for h in range(3, top + 1)]
    grouping = [counts[0] + counts[1], *counts[2:]]  # blocks 3 and 4 made one
    shutil.copytree(chains.victim, tmp_path / "liar")
    liar: list[list[Any]] = []
    with Store(tmp_path / "liar", create=False) as scratch:
        pos = 0
        for n, c in enumerate(grouping):
            txs, pos = rest[pos:pos + c], pos + c
            res = build_block(scratch.head, scratch.registry, scratch, scratch.frontier, txs,
                              honest.block(4 + n).time)
            assert res.head is not None and not res.rejected
            scratch.write_block(res)
            liar.append([res.header.to_bytes(), [tx.raw for tx in txs]])
        end = scratch.head
    assert end.height == top - 1 and end.log_root == head.log_root
    made_up = BlockHeader(honest.block(top).net, top, end.hash, end.time, end.log_size, 1,
                          bytes(32))
    liar.append([made_up.to_bytes(), []])  # a header past its last block, chaining to it
    victim = tmp_path / "victim"
    shutil.copytree(chains.victim, victim)
    network = "catch-up-merged-blocks"
    _pruned_to(etcd_url, network, end.height, end.log_size, end.hash)  # the liar's marker
    with honest, _peer(honest, liar, headers_too=True) as bad, \
            Store(victim, create=False) as store:
        orderer = _caught_up(store, etcd_url, network, [bad], end.height, 4,
                             node_key=chains.node_key)
        assert store.head.height == 2, f"took the liar's blocks up to {store.head.height}"
        assert store.checkpoint() is None
    said = orderer.stats.last_error
    assert f"block {top} is not the one its final checkpoint" in said, said


def test_a_sync_reply_stops_short_of_its_byte_bound(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Full blocks (2,000 transactions, ~0.6 MiB each) made 200-block replies of ~120 MiB that
    no peer would read: a reply now stops adding blocks past SYNC_REPLY_BYTES, one at least."""
    from ledger import codec
    from node import service

    data = make_demo(tmp_path / "demo")
    node = Node(data, "edu", PASS, clock=lambda: DEMO_T0 + 10, workers=0)
    try:
        whole = codec.decode(node.sync_blocks(1, 500))
        sizes = [len(b[0]) + sum(len(e) for e in b[1]) for b in whole]
        monkeypatch.setattr(service, "SYNC_REPLY_BYTES", sizes[0] + sizes[1])
        cut = codec.decode(node.sync_blocks(1, 500))
        monkeypatch.setattr(service, "SYNC_REPLY_BYTES", 1)
        one = codec.decode(node.sync_blocks(1, 500))
        headers = codec.decode(node.sync_headers(1, 500))
    finally:
        node.close()
    assert len(whole) >= 4 and 1 <= len(cut) < len(whole) and cut == whole[:len(cut)]
    assert one == whole[:1]
    assert headers == [b[0] for b in whole]


def test_a_node_down_with_a_fast_clock_does_not_stop_the_pruning(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The first current agency whose node is up prunes etcd's old batches. Whether a node was
    up went by its published wall-clock time against this node's clock, so a node an hour
    fast that went down looked up for that hour (its last time lay ahead), and no node pruned.
    Whether a peer is up now goes by how long ago its published position last changed, by this
    node's own monotonic timer; the node doing the reckoning is up."""
    from ledger import codec
    from ledger.finality import sign_checkpoint

    reg, tax = agencies["reg"], agencies["tax"]
    _degree_granted(ledger, agencies)
    prefix = "fast-and-down"
    writer = EtcdLog([etcd_url], prefix)  # edu's node (down) and tax's co-signatures, by hand
    # edu sorts first; its node's clock was an hour fast when it last published, then it went
    # down (at height 0, far behind: it will catch up from a peer, and holds nothing back)
    writer.put_applied("edu", codec.encode({
        "rev": 1, "height": 0, "size": 1, "time": T0 + 10 + 3600,
        "clock_sig": clock_signature(ledger.net, "edu", agencies["edu"].node_key,
                                     T0 + 10 + 3600).hex()}))
    mono = [1000.0]
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="reg",
                          node_key=reg.node_key, clock=lambda: T0 + 10, workers=0,
                          retention=1, timer=lambda: mono[0])
    try:
        for i in range(3):
            tx = issue_tx(ledger.net, reg, bytes([i + 1]) * 32, "degree", i, T0 + 5, T0 + DAY,
                          T0 + 5)
            receipt = orderer.submit(tx).result(timeout=30)
            head = ledger.store.head
            assert head is not None and receipt.height == head.height
            line = sign_checkpoint(ledger.net, head, [("tax", tax.node_key)]
                                   ).signatures[0].to_line()
            writer.put_cosig(head.log_size, "tax", cosig_value(head, line))
            deadline = time.monotonic() + 30
            while orderer.final_size < head.log_size:
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
        assert writer.marker() is None  # edu was heard from just now: it may yet prune
        mono[0] += 31  # edu's position has not changed for 31 s: it is down
        _until_pruned(writer, orderer)
    finally:
        orderer.stop()
        writer.close()
    assert orderer.stats.pruned_batches >= 1


def test_health_names_the_node_whose_clock_is_off(tmp_path: Path) -> None:
    """Block times follow the proposing node's clock (ADR 43). A cluster with one node an hour
    fast: once a batch of that node made a block, every honest issue and status change was
    refused for the hour, the honest nodes' health said only that the chain ran ahead of their
    clocks ("an agency node's clock is fast") and the fast node's own health said ok. Each
    node publishes its wall-clock time with its position: health now names the peer whose
    clock is off, and a node whose clock disagrees with most of its peers says so itself."""

    data = make_demo(tmp_path / "demo")
    clock = [DEMO_T0 + 1000]
    (tmp_path / "etcd").mkdir()
    with _etcd_member(tmp_path / "etcd") as url:
        node = Node(data, "edu", PASS, clock=lambda: clock[0], workers=0,
                    replication=Replication(endpoints=(url,)))
        peers = EtcdLog([url], node.network)  # the other agencies' nodes, by hand

        def health_when(published: dict[str, int], said: str | None) -> dict[str, Any]:
            """Health once the peers' new times are read (``said`` in its problem, or None:
            no problem), or at the latest after 30 s. The peers keep publishing, as running
            nodes do: a position found unchanged since the node started tells no time."""
            deadline = time.monotonic() + 30
            while True:
                _publish(peers, published)
                got = dict(http.get("/v1/health").json())
                problem = got.get("problem")
                if (problem is None if said is None else said in (problem or "")) \
                        or time.monotonic() > deadline:
                    return got
                time.sleep(0.1)

        try:
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=30) as http:
                fast = health_when({"civil": clock[0] + 3600, "market": clock[0]},
                                   "node of civil")
                own = health_when({"civil": clock[0] - 3600, "market": clock[0] - 3600},
                                  "this machine's clock is")
                well = health_when({"civil": clock[0], "market": clock[0]}, None)
        finally:
            node.close()
            peers.close()
    assert fast["status"] == "degraded", fast
    assert "the clock of the node of civil is 3600 s ahead" in fast["problem"], fast
    assert "market" not in fast["problem"]
    assert own["status"] == "degraded", own
    assert "this machine's clock is 3600 s ahead of the clocks of the nodes of civil, market" \
        in own["problem"], own
    assert well["status"] == "ok", well


def test_health_does_not_blame_its_own_clock_on_one_peers_word() -> None:
    """Two nodes (or three, one quiet) whose clocks differ by an hour: nothing says which is
    right, and this node does not propose the other's time (batch_time_now needs two peers),
    yet health told the node with the right clock that its own was off and that it proposed
    their time. Peers off in opposite directions are not "most of the others" either."""
    from node.api import peer_clocks_problem

    one = peer_clocks_problem("edu", {"edu": {}, "civil": {"clock_ahead": 3600},
                                      "market": {"quiet": 50}})
    assert one is not None and "this machine's clock is" not in one
    assert "proposes their time" not in one
    assert "civil" in one and "3600 s" in one and "not known" in one
    split = peer_clocks_problem("edu", {"a": {"clock_ahead": 3600}, "b": {"clock_ahead": -3600},
                                        "c": {"clock_ahead": 0}})
    assert split is not None and "this machine's clock is" not in split
    assert "a is 3600 s ahead" in split and "b is 3600 s behind" in split
    most = peer_clocks_problem("edu", {"a": {"clock_ahead": 3600}, "b": {"clock_ahead": 3590},
                                       "c": {"clock_ahead": 0}})
    assert most is not None and "this machine's clock is 3590 s behind the clocks of the " \
        "nodes of a, b" in most



def test_health_blames_its_own_clock_only_as_the_batch_time_does() -> None:
    """Of two peers, one off and one agreeing with this clock: half is not most, the peer is
    named (batch_time_now keeps this clock then). A clock off by exactly CLOCK_SLACK is not
    off: batch_time_now takes the peers' time only past it."""
    from node.api import CLOCK_SLACK, peer_clocks_problem

    for d in (3600, -3600):
        half = peer_clocks_problem("edu", {"a": {"clock_ahead": d}, "b": {"clock_ahead": 0}})
        assert half is not None and "this machine's clock is" not in half, half
        assert f"a is 3600 s {'ahead' if d > 0 else 'behind'}" in half
    assert peer_clocks_problem("edu", {"a": {"clock_ahead": CLOCK_SLACK},
                                       "b": {"clock_ahead": -CLOCK_SLACK}}) is None
    past = peer_clocks_problem("edu", {"a": {"clock_ahead": CLOCK_SLACK + 1},
                                       "b": {"clock_ahead": CLOCK_SLACK + 1}})
    assert past is not None and f"this machine's clock is {CLOCK_SLACK + 1} s behind" in past


def test_a_node_whose_clock_is_fast_proposes_its_peers_time(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Block times follow the proposer's batch time and never go back (ADR 43): one batch of
    a node an hour fast moved the chain an hour ahead, and every credential and status change
    signed with a correct clock was refused for that hour, on every node (measured on a
    3-node cluster under libfaketime). A node whose clock runs more than a minute ahead of
    the clocks most of its peers publish now proposes their time instead. No consensus rule
    changes: the batch time was always the proposer's to choose."""
    from node.replication import PEER_CLOCK_SLACK

    reg = agencies["reg"]
    _degree_granted(ledger, agencies)
    prefix = "fast-proposer"
    peers = EtcdLog([etcd_url], prefix)  # edu's and tax's nodes, right on time, by hand
    clock = [T0 + 10 + 3600]  # reg's node: an hour fast
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="reg",
                          node_key=reg.node_key, clock=lambda: clock[0], workers=0)
    try:
        deadline = time.monotonic() + 30
        while not all("clock_ahead" in orderer.stats.peers.get(a, {}) for a in ("edu", "tax")):
            assert time.monotonic() < deadline, orderer.stats.last_error
            _publish(peers, {"edu": T0 + 10, "tax": T0 + 10})  # running nodes publish
            time.sleep(0.05)
        assert -3600 <= orderer.stats.peers["edu"]["clock_ahead"] < -3600 + PEER_CLOCK_SLACK
        r = orderer.submit(issue_tx(ledger.net, reg, b"\1" * 32, "degree", 1, T0 + 5,
                                    T0 + DAY, T0 + 5)).result(timeout=30)
        fast_block = ledger.store.block(r.height).time
        # a clock within the slack of its peers' is its own
        clock[0] = T0 + 10 + PEER_CLOCK_SLACK
        r = orderer.submit(issue_tx(ledger.net, reg, b"\2" * 32, "degree", 2, T0 + 5,
                                    T0 + DAY, T0 + 5)).result(timeout=30)
        near_block = ledger.store.block(r.height).time
        # an hour slow, while the chain stands at T0 + 70 and the peers' clocks say T0 + 1000:
        # its own time would leave the block at T0 + 70
        clock[0] = T0 + 1000 - 3600
        deadline = time.monotonic() + 30
        while not all(orderer.stats.peers[a].get("clock_ahead", 0) >= 3600
                      for a in ("edu", "tax")):  # their new times are read
            assert time.monotonic() < deadline, orderer.stats.peers
            _publish(peers, {"edu": T0 + 1000, "tax": T0 + 1000})
            time.sleep(0.05)
        r = orderer.submit(issue_tx(ledger.net, reg, b"\3" * 32, "degree", 3, T0 + 995,
                                    T0 + DAY, T0 + 995)).result(timeout=30)
        slow_block = ledger.store.block(r.height).time
    finally:
        orderer.stop()
        peers.close()
    # their time, plus the moments since they were heard: not T0 + 3610
    assert T0 + 10 <= fast_block < T0 + 10 + PEER_CLOCK_SLACK
    assert near_block == T0 + 10 + PEER_CLOCK_SLACK
    assert T0 + 1000 <= slow_block < T0 + 1000 + PEER_CLOCK_SLACK


def test_positions_of_nodes_down_at_start_do_not_pull_the_batch_time_back(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A position found in etcd at start may be hours old (its node down): it is only a lower
    bound of that node's clock. A node starting two hours after its peers went down proposed
    their last times, and left the block time two hours old (status changes signed now were
    refused as dated ahead). Such positions may still say this node's clock is behind."""
    reg = agencies["reg"]
    for prefix, was, clock, want in (
            ("stale-peers", T0 + 3, T0 + 7203, (T0 + 7203, None)),  # two hours down
            ("stale-but-ahead", T0 + 7203, T0 + 3, None)):  # this clock two hours behind
        peers = EtcdLog([etcd_url], prefix)
        _publish(peers, {"edu": was, "tax": was})  # before this node starts, not again
        orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="reg",
                              node_key=reg.node_key, clock=lambda c=clock: c, workers=0)
        try:
            deadline = time.monotonic() + 30
            while not all(a in orderer.stats.peers for a in ("edu", "tax")):
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.05)
            got = orderer.batch_time_now()
        finally:
            orderer.stop()
            peers.close()
        if want is not None:
            assert got == want
        else:  # pulled up to (at least) their last times
            assert got[1] is not None and T0 + 7203 <= got[0] < T0 + 7203 + 60, got


def test_a_node_restarted_fast_hears_its_peers_before_its_first_batch(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Positions found at start cannot tell a fast clock from peers that were down, so
    batch_time_now takes them only as lower bounds, and a node restarted an hour fast proposed
    its own time until it heard its peers anew (up to a heartbeat): one transaction then put
    the chain an hour ahead, for good. Its first batch now waits to hear them (ADR 58): the
    block is at their time. Peers that stay quiet hold it PEER_CLOCK_WAIT at most, by this
    node's timer; then it proposes its own time."""
    from ledger.batch import WITNESS_SLACK
    from node.replication import PEER_CLOCK_SLACK, PEER_CLOCK_WAIT

    reg = agencies["reg"]
    _degree_granted(ledger, agencies)
    for n, (prefix, peers_answer) in enumerate((("restarted-fast", True),
                                                ("peers-still-down", False)), 1):
        peers = EtcdLog([etcd_url], prefix)
        _publish(peers, {"edu": T0 + 10, "tax": T0 + 10})  # before this node starts
        mono = [1000.0]
        clock = T0 + 10 + 3600
        orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="reg",
                              node_key=reg.node_key, clock=lambda c=clock: c, workers=0,
                              timer=lambda m=mono: m[0])
        try:
            deadline = time.monotonic() + 30
            while not all(a in orderer.stats.peers for a in ("edu", "tax")):
                assert time.monotonic() < deadline, orderer.stats.last_error
                mono[0] += 0.5
                time.sleep(0.05)
            signed = T0 + 5 if peers_answer else clock - 5  # by a right clock either way
            pending = orderer.submit(issue_tx(ledger.net, reg, bytes([n]) * 32, "degree", n,
                                              signed, T0 + DAY, signed))
            time.sleep(1.0)
            assert not pending.done()  # held, not proposed at this clock's time
            if peers_answer:
                while not pending.done():  # running peers publish their positions
                    assert time.monotonic() < deadline, orderer.stats.peers
                    _publish(peers, {"edu": T0 + 12, "tax": T0 + 12})
                    mono[0] += 0.5
                    time.sleep(0.05)
            else:
                mono[0] += PEER_CLOCK_WAIT
            block = ledger.store.block(pending.result(timeout=30).height).time
        finally:
            orderer.stop()
            peers.close()
        if peers_answer:
            assert T0 + 12 <= block < T0 + 12 + PEER_CLOCK_SLACK, block - T0
        else:  # its own time, but a block no later than its peers last witnessed (ADR 58)
            assert block == T0 + 10 + WITNESS_SLACK


def test_a_pair_restarted_after_a_week_hears_its_peer_before_its_first_batch(
        etcd_url: str, tmp_path: Path, agencies: dict[str, Agency]) -> None:
    """Two agencies, quorum two, both nodes restarted after a week: the peer's position in
    etcd is a week old. A node held its first batch to hear its peers only with two or more
    positions found at start, but one is enough to bound the block (ADR 58: a minute past
    what its peers witness): the first batch after the restart went out at once with the
    week-old witness, its block a week back, and a status change signed now was refused as
    dated ahead (for good: it must be signed again). It now waits for its peer's heartbeat."""
    from ledger import codec
    from ledger.network import status_tx

    reg, edu = agencies["reg"], agencies["edu"]
    pair = LedgerHarness(tmp_path / "pair", [reg, edu], 2, T0)
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    pair.govern("register_type", {"type": spec}, [reg, edu], T0 + 1)
    pair.govern("grant", {"agency": "reg", "type": "degree", "from": T0, "until": T0 + DAY},
                [reg, edu], T0 + 2)
    issued = issue_tx(pair.net, reg, b"\7" * 32, "degree", 7, T0 + 5, T0 + DAY, T0 + 5)
    pair.commit([issued], T0 + 5)
    prefix = "pair-restarted"
    peer = EtcdLog([etcd_url], prefix)
    head = pair.store.head

    def position(t: int) -> bytes:
        return codec.encode({"rev": t, "height": head.height, "size": head.log_size, "time": t,
                             "clock_sig": _clock_sig("edu", t, pair.net)})

    peer.put_applied("edu", position(T0 + 10))  # its last word, a week ago
    now = T0 + 7 * DAY
    orderer = EtcdOrderer(pair.store, EtcdLog([etcd_url], prefix), agency="reg",
                          node_key=reg.node_key, clock=lambda: now, workers=0)
    try:
        deadline = time.monotonic() + 30
        while "edu" not in orderer.stats.peers:
            assert time.monotonic() < deadline, orderer.stats.last_error
            time.sleep(0.05)
        pending = orderer.submit(status_tx(pair.net, reg, b"\7" * 32, "suspended", "r", now))
        time.sleep(1.0)
        assert not pending.done()  # held, not proposed with the week-old witness
        peer.put_applied("edu", position(now))  # edu's node, restarted too, publishes
        block = pair.store.block(pending.result(timeout=30).height).time
        assert block == now
    finally:
        orderer.stop()
        peer.close()
        pair.close()


def _degree_granted(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A `degree` type, granted to reg for a day from T0."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    ledger.govern("register_type", {"type": spec}, [reg, edu], T0 + 1)
    ledger.govern("grant", {"agency": "reg", "type": "degree", "from": T0, "until": T0 + DAY},
                  [reg, tax], T0 + 2)


def test_the_batch_time_takes_the_peers_time_only_on_the_word_of_most(
        etcd_url: str, make_ledger: Callable[..., LedgerHarness],
        agencies: dict[str, Agency]) -> None:
    """batch_time_now with peers whose clocks disagree: one peer alone never moves this node's
    time (nothing says which of two clocks is right), nor does one lying peer of two, slow or
    fast (the upper median when this clock is ahead, the lower when behind). The peers' clocks
    are their published times plus how long ago this node heard them, by its own timer, until
    :data:`PEER_QUIET`: then a peer unchanged since drops out. This node's own published time
    is no peer's (four agencies: with three peers it would move the medians)."""
    from ledger import codec
    from ledger.network import demo_agency
    from node.replication import PEER_QUIET

    reg = agencies["reg"]
    ledger = make_ledger([*agencies.values(), demo_agency("civil", "Civil Affairs")], 3, T0)
    hour = 3600
    cases = (  # name, published times, this node's clock, the timer's step after, the answer
        ("one-peer-alone", {"edu": T0}, T0 + hour, 0, (T0 + hour, None)),
        ("one-slow-liar", {"edu": T0 + hour, "tax": T0}, T0 + hour, 0, (T0 + hour, None)),
        ("one-fast-liar", {"edu": T0, "tax": T0 + hour}, T0, 0, (T0, None)),
        ("heard-30-s-ago", {"edu": T0, "tax": T0}, T0 + hour, 30, (T0 + 30, T0 + 30)),
        ("quiet-since", {"edu": T0, "tax": T0}, T0 + hour, int(PEER_QUIET) + 1,
         (T0 + hour, None)),
        ("most-of-three-ahead", {"edu": T0, "tax": T0 + hour, "civil": T0 + hour}, T0, 0,
         (T0 + hour, T0 + hour)),
    )
    for name, times, clock, later, want in cases:
        peers = EtcdLog([etcd_url], f"clocks-{name}")
        for agency, t in times.items():  # found at start
            peers.put_applied(agency, codec.encode({"rev": 1, "height": 0, "size": 1, "time": t}))
        mono = [5000.0]
        orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], f"clocks-{name}"), agency="reg",
                              node_key=reg.node_key, clock=lambda c=clock: c, workers=0,
                              timer=lambda m=mono: m[0])
        try:
            deadline = time.monotonic() + 30
            while not all(a in orderer.stats.peers for a in ("reg", *times)):
                assert time.monotonic() < deadline, orderer.stats.last_error
                mono[0] += 1  # read again (at most every 0.5 s by the timer)
                time.sleep(0.05)
            # each position changes once (the same time), then not again: seen to change at
            # the next reading, which the timer's step allows
            for agency, t in times.items():
                peers.put_applied(agency, codec.encode({"rev": 2, "height": 0, "size": 1,
                                                        "time": t}))
            mono[0] += 1
            while not all("clock_ahead" in orderer.stats.peers[a] for a in times):
                assert time.monotonic() < deadline, orderer.stats.peers
                time.sleep(0.05)
            mono[0] += later
            if later:  # the peers' clocks read again at the timer's new time
                deadline = time.monotonic() + 30
                while orderer.stats.peers[next(iter(times))]["quiet"] < later:
                    assert time.monotonic() < deadline, orderer.stats.peers
                    time.sleep(0.05)
            got = orderer.batch_time_now()
        finally:
            orderer.stop()
            peers.close()
        assert got == want, name


_published = [0]


def _publish(log: EtcdLog, times: dict[str, int]) -> None:
    """Applied positions of other agencies' nodes, as running nodes publish them: each put
    differs from the last (a node's position or time moves)."""
    from ledger import codec
    from ledger.state import RULES

    _published[0] += 1
    for agency, t in times.items():
        log.put_applied(agency, codec.encode({"rev": _published[0], "height": 0, "size": 1,
                                              "time": t, "clock_sig": _clock_sig(agency, t),
                                              "rules": RULES}))


def _clock_sig(agency: str, t: int, net: str = NET) -> str:
    """A conftest agency's node signing its clock time ``t`` (hex, as nodes publish it)."""
    from ledger.batch import clock_signature
    from ledger.network import demo_agency

    return clock_signature(net, agency, demo_agency(agency, "").node_key, t).hex()


def _demo_witnesses(url: str, data: Path, t: int,
                    agencies: tuple[str, ...] = ("civil", "market"), rev: int = 1) -> None:
    """The demo network's other agencies' nodes (``agencies``) publish positions with their
    clocks signed at ``t``: a batch of edu's node carries them, so its block time can move
    (ADR 58). A new ``rev`` is a position that moved (a running node's)."""
    from ledger import codec
    from ledger.batch import clock_signature
    from ledger.keys import load_private_key
    from ledger.state import RULES
    from node.demo import NETWORK

    log = EtcdLog([url], NETWORK)
    try:
        for agency in agencies:
            key = load_private_key(data / "keys" / f"{agency}.node.key", PASS)
            log.put_applied(agency, codec.encode({
                "rev": rev, "height": 0, "size": 1, "time": t, "rules": RULES,
                "clock_sig": clock_signature(NETWORK, agency, key, t).hex()}))
    finally:
        log.close()


def test_a_batch_key_far_ahead_of_the_counter_stops_no_node(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Any agency's certificate writes any batch key. A reader starts its range after the
    last batch it read (ADR 27): one batch put outside the counter, under the largest key,
    and read alone, set that start past every batch key the counter would ever give, so the
    node read nothing again (healthy to itself, every submission waiting) until restarted.
    The batches after it are still read, and applied."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger.batch import make_batch

    reg, tax = agencies["reg"], agencies["tax"]
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], "key-far-ahead")
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        typed = ledger.gov_tx("register_type", {"type": spec}, [reg, tax])
        _taken_up(orderer, writer.put_batch(make_batch(ledger.net, "reg", reg.node_key,
                                                       T0 + 5, [typed.raw]).to_bytes()))
        rogue = writer._call("Txn", pb.TxnRequest(success=[writer._put(
            f"b/{10**20 - 1}", b"not a batch"), writer._put(b"t")]))
        _taken_up(orderer, int(rogue.header.revision))  # read alone: skipped
        grant = ledger.gov_tx("grant", {"agency": "edu", "type": "degree", "from": T0,
                                        "until": T0 + DAY}, [reg, tax])
        _taken_up(orderer, writer.put_batch(make_batch(ledger.net, "tax", tax.node_key,
                                                       T0 + 6, [grant.raw]).to_bytes()))
        assert ledger.store.tx_location(grant.txid) is not None
    finally:
        orderer.stop()
        writer.close()


def test_a_co_signature_key_written_again_and_again_is_held_once(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Co-signatures for blocks not applied yet wait in memory. Each read of a key written
    anew added an entry beside the ones read before: one agency writing one co-signature key
    for a size far ahead over and over (any agency's certificate writes any ``s/`` key, up to
    1.5 MiB a value) grew every node's memory by a value a read, for as long as it went on.
    Only the newest value of a key is held, as etcd itself holds it."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger import codec

    far = 10**9
    writer, orderer = _edu_beside(etcd_url, ledger, agencies["edu"], "cosig-written-again")
    try:
        for n in range(40):
            junk = codec.encode({"root": bytes(32), "line": f"\u2014 tax {n:04d}",
                                 "height": 1, "hash": bytes(32)})
            rev = writer._call("Txn", pb.TxnRequest(success=[
                writer._put(writer._cosig_key(far, "tax"), junk),
                writer._put(b"t")])).header.revision
            deadline = time.monotonic() + 30
            while orderer.cosig_rev < rev:  # each value read before the next is written
                assert time.monotonic() < deadline, orderer.stats.last_error
                time.sleep(0.01)
        assert len(orderer._pending_cosigs[far]) == 1
    finally:
        orderer.stop()
        writer.close()


def test_positions_of_no_agency_as_large_as_etcd_takes_stop_no_node(
        tmp_path: Path, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Any agency's certificate writes any ``a/`` key. Every node read the whole ``a/`` range
    every half second: 180 positions of 1.5 MiB under names of no agency made that answer
    larger than the client takes, so every read failed. A node (re)started then applied no
    batch for good (it reads the positions before its first batch), and a running one
    pruned nothing again. Only the current agencies' positions are read."""
    from aetcd.rpc import rpc_pb2 as pb

    from ledger import codec
    from ledger.batch import make_batch
    from node.etcdlog import MAX_VALUE

    reg, tax = agencies["reg"], agencies["tax"]
    big = codec.encode({"rev": 1, "height": 1, "size": 1, "pad": "x" * (MAX_VALUE - 200)})
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    with _etcd_member(tmp_path) as url:
        writer = EtcdLog([url], "positions-flood", timeout=30)
        for n in range(180):  # (~270 MiB: past the client's 256 MiB answer cap)
            writer._call("Txn", pb.TxnRequest(success=[writer._put(f"a/x{n:03d}", big)]))
        _, orderer = _edu_beside(url, ledger, agencies["edu"], "positions-flood")
        try:
            typed = ledger.gov_tx("register_type", {"type": spec}, [reg, tax])
            _taken_up(orderer, writer.put_batch(make_batch(ledger.net, "reg", reg.node_key,
                                                           T0 + 5, [typed.raw]).to_bytes()))
            assert ledger.store.tx_location(typed.txid) is not None
        finally:
            orderer.stop()
            writer.close()


def _batches_counted(orderer: EtcdOrderer, at_least: int) -> int:
    """``orderer``'s count of batches put once it reaches ``at_least`` (or 30 s pass): the
    putting thread counts a batch after etcd took it, and the watch may apply it, answering
    its submitters, before that thread runs again."""
    deadline = time.monotonic() + 30  # a bound, not a speed
    while orderer.stats.batches_put < at_least and time.monotonic() < deadline:
        time.sleep(0.01)
    return orderer.stats.batches_put


@pytest.mark.parametrize("times", [[(1 << 64) - 1], [-10**6, -10**6 - 1]],
                         ids=["past-any-batch-time", "before-1970"])
def test_peer_positions_dated_outside_any_clock_stop_no_node(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency],
        times: list[int]) -> None:
    """Any agency's certificate writes any ``a/<agency>`` key, its ``time`` any integer msgpack
    holds. Two positions dated at the top of that range made the node take their time for its
    batches (its own clock far behind theirs): the time did not encode, the thread that puts
    batches died, and every submission to the node waited for ever. Two dated below 0 made
    its batches dated before 1970, which do not decode: the network skipped every one. Such a
    time is no clock's: it is left out, and the node proposes at its own time (helper round
    22O)."""
    from ledger import codec

    reg, tax = agencies["reg"], agencies["tax"]
    prefix = f"odd-clocks-{times[0] < 0}"
    writer = EtcdLog([etcd_url], prefix)  # two agencies' positions, by any certificate

    def publish(t: int) -> None:
        for name in ("reg", "tax"):
            writer.put_applied(name, codec.encode({"rev": 1, "height": 0, "size": 1,
                                                   "time": t, "clock_sig": "00" * 64}))

    publish(times[0])  # found at start; the next written while the node watches
    mono = [1000.0]
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], prefix), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0,
                          timer=lambda: mono[0])
    spec = {"id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}
    try:
        for n, t in enumerate(times):
            if n:
                publish(t)  # seen to change
            deadline = time.monotonic() + 30
            while {orderer.stats.peers.get(a, {}).get("time") for a in ("reg", "tax")} != {t}:
                assert time.monotonic() < deadline, orderer.stats.last_error
                mono[0] += 0.5
                time.sleep(0.05)
        mono[0] += 5  # heard 5 s ago: a time near 2**64 plus that does not encode
        pending = orderer.submit(ledger.gov_tx("register_type", {"type": spec}, [reg, tax]))
        receipt = pending.result(timeout=30)
        assert not receipt.duplicate
        assert (_batches_counted(orderer, 1), orderer.stats.batches_skipped) == (1, 0)
    finally:
        orderer.stop()
        writer.close()


def test_a_batch_that_cannot_be_put_or_read_back_answers_its_submitters_and_stops_nothing(
        etcd_url: str, ledger: LedgerHarness, agencies: dict[str, Agency],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Two ways a node's own batch failed its submitters for good (helper round 22O's notes):
    an unexpected error while making the batch ended the thread that puts batches (every later
    submission waited for ever); and a batch of ours that the network skipped as not decoding
    was answered to nobody (its submitters waited out their time, and were never told why).
    Now the first is said to that batch's submitters and the node goes on putting batches;
    the second is said to its submitters as the network's refusal."""
    from node import replication

    reg, tax = agencies["reg"], agencies["tax"]
    real = replication.make_batch
    faults = ["raise", "junk"]

    class Junk:  # a batch whose bytes are not a batch (as one dated before 1970 was)
        def __init__(self, batch: Any) -> None:
            self.sig = batch.sig

        def to_bytes(self) -> bytes:
            return b"\x93not a batch"

    def make_batch(*args: Any, **kwargs: Any) -> Any:
        fault = faults.pop(0) if faults else None
        if fault == "raise":
            raise RuntimeError("a bug in making the batch")
        batch = real(*args, **kwargs)
        return Junk(batch) if fault == "junk" else batch

    monkeypatch.setattr(replication, "make_batch", make_batch)
    orderer = EtcdOrderer(ledger.store, EtcdLog([etcd_url], "unputtable"), agency="edu",
                          node_key=agencies["edu"].node_key, clock=lambda: T0 + 10, workers=0)
    try:
        tx = ledger.gov_tx("register_type", {"type": {
            "id": "degree", "title": "Degree", "claims": {"level": "string"}, "derived": {}}},
            [reg, tax])
        first = orderer.submit(tx)
        with pytest.raises(OrderingError, match=r"could not put its batch \(RuntimeError"):
            first.result(timeout=30)
        second = orderer.submit(tx)
        with pytest.raises(OrderingError, match="refused by the network: does not decode"):
            second.result(timeout=30)
        assert orderer.stats.batches_skipped == 1
        receipt = orderer.submit(tx).result(timeout=30)  # the node still puts batches
        assert not receipt.duplicate and _batches_counted(orderer, 2) == 2
    finally:
        orderer.stop()



@contextmanager
def _fast_market_node(tmp_path: Path, ahead: int) -> Iterator[tuple[Path, httpx.Client]]:
    """The demo network's market node (credit policy, grants and secret as
    test_approval_http's ``prepare``) on a one-member etcd, its clock ``ahead`` of civil's and
    edu's nodes' (at test_approval_http's ``NOW``, published by hand), served once it takes
    their time; its data folder and a client of its API."""
    from test_approval_http import NOW, prepare

    data, _ = prepare(tmp_path / "p")
    (tmp_path / "etcd").mkdir()
    with _etcd_member(tmp_path / "etcd") as url:
        node = Node(data, "market", PASS, clock=lambda: NOW + ahead, workers=0,
                    replication=Replication(endpoints=(url,)))
        orderer = node.replicated
        assert orderer is not None
        try:
            rev, deadline = 1, time.monotonic() + 30
            while orderer.batch_time_now()[1] is None:  # their times heard anew
                assert time.monotonic() < deadline, orderer.stats.peers
                rev += 1
                _demo_witnesses(url, data, NOW, ("civil", "edu"), rev)
                time.sleep(0.05)
            app = create_app(replace(settings_for(data), agency="market"), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                yield data, http
        finally:
            node.close()


def test_a_fast_nodes_credit_event_is_dated_no_later_than_its_block(tmp_path: Path) -> None:
    """A node whose clock runs minutes ahead of its peers' proposes their time (ADR 58), and
    the ledger refuses a credit event dated after its block's time. The node dated an event
    given no date by its own clock: with the market agency's node five minutes fast, every
    `agency credit` without --date was refused as "future_date" (a date nobody gave), while
    issuing and status changes went through. Such an event is now dated no later than the
    block the node's batch will make."""
    from test_approval_http import LATE_FILING, NOW, REG_NO
    from test_contracts_world import SECRET

    from contracts.credit import pseudonym
    from ledger.state import credit_events
    from ledger.store import Store

    with _fast_market_node(tmp_path, 300) as (data, http):
        r = http.post("/v1/credit/events", json=LATE_FILING, headers=AUTH)
        head = http.get("/v1/head").json()
    assert r.status_code == 200, r.text
    with Store(data / "ledger", create=False) as store:
        got = next(e for e in credit_events(store, pseudonym(REG_NO, SECRET))
                   if e.txid.hex() == r.json()["txid"])
        block = store.block(r.json()["height"]).time
    assert NOW <= got.date <= block <= head["time"] < NOW + 300
    assert got.expiry == got.date + 30 * 86400


def test_a_fast_nodes_credential_is_valid_from_its_networks_time(tmp_path: Path) -> None:
    """The same node five minutes fast issued credentials valid from its own clock's time,
    though its block took its peers' (ADR 58): every verifier and wallet with a right clock
    would refuse them as not yet valid for four minutes (the citizen's `wallet receive` too).
    A node whose clock its peers show fast now dates what it issues by their time, as its
    batches. (No peer co-signs here, so the node anchors the credential and then answers
    503 for want of a final checkpoint: the anchor on the ledger is what is checked.)"""
    from test_approval_http import NOW

    from ledger import sdjwt
    from ledger.store import Store
    from ledger.tx import Tx
    from wallet.core import Wallet

    wallet = Wallet.init(tmp_path / "w.db", b"wallet-pass")
    with _fast_market_node(tmp_path, 300) as (data, http):
        size = http.get("/v1/head").json()["log_size"]
        http.post("/v1/credentials", headers=AUTH, json={
            "type": "business-registration", "holder_jwk": wallet.holder_jwk(),
            "claims": {"registration_no": "91440606-MA4W0002",
                       "business_name": "Pearl River Noodles", "scope": "catering"},
            "valid_days": 30})
    with Store(data / "ledger", create=False) as store:
        head = store.head
        assert head is not None and head.log_size == size + 1
        anchor = Tx.from_bytes(store.entry(size)).body
        block = head.time
    assert anchor["issuer"] == "market"
    # a verifier (or wallet) whose clock reads the block's time accepts it as valid now
    assert NOW <= anchor["valid_from"] <= block + sdjwt.CLOCK_SKEW < NOW + 300
    assert anchor["valid_until"] == anchor["valid_from"] + 30 * 86400


@contextmanager
def _edu_served_on(url: str, data: Path, edu: Agency, now: int) -> Iterator[
        tuple[Node, Callable[[int], bytes], Callable[[int], threading.Thread],
              dict[int, httpx.Response]]]:
    """The demo's edu node on the etcd member at ``url``, served over HTTP, its credential's
    status changed once: (node, change, send, answers). ``change(i)`` is the i-th status change;
    ``send(i)`` posts it from a thread of its own (started), its answer in ``answers[i]``."""
    node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                replication=Replication(endpoints=(url,)))
    try:
        app = create_app(settings_for(data), node=node)
        with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
            cid = _edu_credential_id(http, 2)
            change, post = _status_changes(http, node, edu, cid, now)
            assert post(0).status_code == 200
            answers: dict[int, httpx.Response] = {}

            def post_own(i: int) -> None:
                with httpx.Client(base_url=base, timeout=60) as own:
                    answers[i] = own.post("/v1/tx", params={"wait": 20}, content=change(i),
                                          headers={"content-type": "application/msgpack"})

            def send(i: int) -> threading.Thread:
                t = threading.Thread(target=post_own, args=(i,))
                t.start()
                return t

            yield node, change, send, answers
    finally:
        node.close()


def _write_block_fails_when_released(node: Node, monkeypatch: pytest.MonkeyPatch
                                     ) -> tuple[threading.Event, threading.Event]:
    """(entered, release): the node's next block write waits, once ``entered``, until
    ``release``, then fails as LevelDB does on a full disk."""
    import plyvel

    entered, release = threading.Event(), threading.Event()

    def full(*_: object, **__: object) -> None:
        entered.set()
        release.wait(30)
        raise plyvel.IOError(b"IO error: 000009.log: No space left on device")

    monkeypatch.setattr(node.store, "write_block", full)
    return entered, release


def test_a_submission_not_yet_put_when_the_store_fails_is_told_nothing_was_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the store refused a block (a full disk), every submitter still waiting was told
    its transaction "was ordered by the network and commits there", also one still in the
    proposer's queue, whose batch the writer then dropped: it was never put, and commits
    nowhere. Only one whose batch was put is told so now; the others "Nothing was taken"."""
    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now)
        with _edu_served_on(url, data, edu, now) as (node, change, send, answers):
            orderer = node.replicated
            assert orderer is not None
            entered, release = _write_block_fails_when_released(node, monkeypatch)
            put = _batches_put(node) + 1  # the first's batch
            first = send(1)
            assert entered.wait(30)  # its batch was put; the block's write hangs
            deadline = time.monotonic() + 30
            while _batches_put(node) < put:  # counted after etcd's answer: the block may be
                assert time.monotonic() < deadline  # applied (and hang) before it is
                time.sleep(0.01)
            orderer.max_wait = 5.0  # the next one waits in the queue for more to join
            second = send(2)
            txid2 = hashlib.sha256(change(2)).digest()
            deadline = time.monotonic() + 30
            while txid2 not in orderer._waiting:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            release.set()  # the write fails: the node halts
            first.join(60)
            second.join(60)
            said1, said2 = answers[1].json(), answers[2].json()
            assert answers[1].status_code == 503, said1
            assert "ordered by the network" in said1["detail"], said1
            assert answers[2].status_code == 503, said2
            assert "Nothing was taken" in said2["detail"], said2
            assert "ordered by the network" not in said2["detail"], said2
            assert said2["taken"] is False, said2
            assert _batches_put(node) == put  # and it was not put
        monkeypatch.undo()
        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:  # restarted with room again: the first commits, the second is nowhere
            deadline = time.monotonic() + 30
            while node.store.tx_location(hashlib.sha256(change(1)).digest()) is None:
                assert time.monotonic() < deadline, node.cluster_status()
                time.sleep(0.1)
            time.sleep(1.0)
            assert node.store.tx_location(txid2) is None
        finally:
            node.close()


def test_a_submission_put_when_the_node_stops_is_told_it_is_ordered_not_to_retry(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A node stopping answered every submitter still waiting "the node stopped before the
    transaction was ordered; retry it", also one whose batch was put in etcd: ordered by the
    network, it commits there, and the words were untrue (44V's note). It is told so now."""
    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now)
        with _edu_served_on(url, data, edu, now) as (node, _change, send, answers):
            orderer = node.replicated
            assert orderer is not None
            monkeypatch.setattr(orderer, "_step", lambda: False)  # nothing applied now
            put = _batches_put(node)
            sender = send(1)
            deadline = time.monotonic() + 30
            while _batches_put(node) == put:  # its batch is in etcd, not applied here
                assert time.monotonic() < deadline
                time.sleep(0.01)
            orderer.stop()
            sender.join(60)
            said = answers[1].json()
            assert answers[1].status_code == 503, said
            assert "ordered by the network" in said["detail"], said
            assert "before the transaction was ordered" not in said["detail"], said
            assert "taken" not in said, said
            assert not orderer._waiting and not orderer._unput


def test_a_submission_whose_put_is_retried_while_the_store_fails_is_not_told_nothing_was_taken(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """44F answers a waiting submitter "Nothing was taken" only when its batch was not put.
    One whose put etcd does not answer (the node's own member frozen) is retried in
    ``_put``'s loop while the store fails: etcd may have taken a put whose answer was lost.
    It is kept for the writer's answer and told, once etcd answers, that it was ordered (or
    that etcd did not confirm it, which may be ordered yet): never ``"taken": false``, and it
    is answered, not left to its wait (round 44V)."""
    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now)
        with _edu_served_on(url, data, edu, now) as (node, change, send, answers):
            orderer = node.replicated
            assert orderer is not None
            orderer.submit_timeout = 10.0
            entered, release = _write_block_fails_when_released(node, monkeypatch)
            first = send(1)
            assert entered.wait(30)  # its batch was put; the block's write hangs
            os.kill(_MEMBERS[url].pid, signal.SIGSTOP)
            try:
                second = send(2)
                txid2 = hashlib.sha256(change(2)).digest()
                deadline = time.monotonic() + 30
                while txid2 not in orderer._waiting:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                time.sleep(1.5)  # its put sent, unanswered: retried
                release.set()  # the write fails: the node halts, the put still retried
                deadline = time.monotonic() + 30
                while orderer.store_failure is None:
                    assert time.monotonic() < deadline
                    time.sleep(0.01)
                time.sleep(0.5)
                assert 2 not in answers  # kept for the writer's answer
            finally:
                os.kill(_MEMBERS[url].pid, signal.SIGCONT)
            first.join(60)
            second.join(60)
            said1, said2 = answers[1].json(), answers[2].json()
            assert "ordered by the network" in said1["detail"], said1
            assert answers[2].status_code == 503, said2
            assert said2.get("taken") is not False, said2
            assert "Nothing was taken" not in said2["detail"], said2
            assert "ordered by the network" in said2["detail"] or \
                "not confirmed by etcd" in said2["detail"], said2
            assert not orderer._unput and txid2 not in orderer._waiting


def test_a_node_whose_store_cannot_write_a_block_stops_until_restarted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A network's node whose disk is full (the store refuses a block's write, as LevelDB does
    with ENOSPC) went on retrying the block and, once space was freed, wrote it and the next
    ones into a store whose log ends in a torn record: LevelDB acknowledges them, and drops
    every one of them when the store is opened again. It now stops applying at the first
    write it could not make, until it is restarted, as a solo node does: health ``halted``
    with the reason (no folder), the waiting submitter and every later one a 503 in words,
    its log says it once at ERROR; restarted with room again, it applies what was ordered."""
    import logging

    import plyvel

    data, edu = _demo_edu(tmp_path)
    now = DEMO_T0 + 1000
    with _etcd_member(tmp_path / "etcd") as url:
        _demo_witnesses(url, data, now)
        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:
            app = create_app(settings_for(data), node=node)
            with serve(app) as base, httpx.Client(base_url=base, timeout=60) as http:
                cid = _edu_credential_id(http, 2)

                change, post = _status_changes(http, node, edu, cid, now)
                assert post(0).status_code == 200
                before = http.get("/v1/head").json()["log_size"]

                def full(*_: object, **__: object) -> None:
                    raise plyvel.IOError(f"IO error: {data}/ledger/000009.log: No space left "
                                         "on device".encode())

                monkeypatch.setattr(node.store, "write_block", full)
                r = post(1)  # ordered through etcd; this node could not write its block
                assert r.status_code == 503, r.text
                said = r.json()["detail"]
                assert "No space left on device" in said and "restart" in said, said
                assert str(tmp_path) not in said
                assert "taken" not in r.json(), r.text  # it was ordered (ADR 84: not known)
                health = http.get("/v1/health")
                assert health.status_code == 503, health.text
                assert health.json()["status"] == "halted", health.text
                problem = health.json()["problem"]
                assert "No space left on device" in problem and "restarted" in problem, problem
                assert str(tmp_path) not in health.text
                r = post(2)  # refused at once: nothing put into etcd for it
                assert r.status_code == 503 and "restart" in r.json()["detail"], r.text
                assert r.json()["taken"] is False, r.text  # and said so (ADR 84)
                put = _batches_put(node)

                monkeypatch.undo()  # space freed: the node still writes nothing
                node.replicated._wake.set()  # type: ignore[union-attr]
                time.sleep(1.5)  # the apply loop would have retried the block several times
                assert http.get("/v1/head").json()["log_size"] == before
                assert http.get("/v1/health").json()["status"] == "halted"
                assert _batches_put(node) == put
        finally:
            node.close()
        errors = [r for r in caplog.records
                  if r.levelno == logging.ERROR and r.name == "credledger.replication"]
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert "No space left on device" in errors[0].getMessage()
        assert "restart" in errors[0].getMessage()

        node = Node(data, "edu", PASS, clock=lambda: now, workers=0,
                    replication=Replication(endpoints=(url,)))
        try:
            deadline = time.monotonic() + 30
            while node.store.tx_location(hashlib.sha256(change(1)).digest()) is None:
                assert time.monotonic() < deadline, node.cluster_status()
                time.sleep(0.1)
            assert node.store.head is not None and node.store.head.log_size == before + 1
        finally:
            node.close()
