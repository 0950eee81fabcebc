"""Readers beside the block writer: what a node reads while another thread writes blocks.

A block's checkpoint is written in the block's own LevelDB batch, and the store's ``head``
moves only after the batch (the writer takes the GIL back first), so for a moment another
thread sees a checkpoint of a tree the store does not prove yet. Real LevelDB, a real node
over the demo's folder; the writer and the readers are threads of this process, as a node's
block writer and request threads are.
"""

from __future__ import annotations

import io
import secrets
import threading
import time
from collections.abc import Iterator

import pytest
from conftest import LedgerHarness
from rich.console import Console

from ledger.chain import checkpoint_key
from ledger.checkpoint import SignedCheckpoint
from ledger.errors import LedgerError, TxRejected
from ledger.finality import sign_checkpoint
from ledger.network import Agency, issue_tx
from ledger.offline import load_snapshot
from ledger.presentation import bundle_from_store
from node.demo import run_demo
from node.service import Node

PASSPHRASE = b"races-test-pw"
SD_JWT = "eyJhbGciOiJFZERTQSJ9.e30.c2ln~"  # bundle_from_store only carries it


def test_a_checkpoint_written_before_the_head_moved_is_not_proven_against(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The store as another thread sees it in the middle of a block write: the block's
    checkpoint stored, the head not moved yet. Readers take the checkpoint the head covers."""
    store = ledger.store
    head = store.head
    assert head is not None
    signers = [(a.id, a.node_key) for a in agencies.values()]
    covered = sign_checkpoint(ledger.net, head, signers).to_text().encode()
    store.put_checkpoint(head.log_size, covered)
    ahead = SignedCheckpoint.from_text(covered.decode())
    # the next block's checkpoint, in the batch that is being written
    store.put_checkpoint(head.log_size + 1, covered.replace(
        f"\n{head.log_size}\n".encode(), f"\n{head.log_size + 1}\n".encode(), 1))
    assert store.get(checkpoint_key(head.log_size + 1)) is not None
    assert store.head_checkpoint() == covered
    bundle = bundle_from_store(store, 0, SD_JWT)
    assert SignedCheckpoint.from_text(bundle.checkpoint).checkpoint == ahead.checkpoint


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    data = tmp_path_factory.mktemp("races") / "demo"
    run_demo(data, PASSPHRASE, clock=lambda: int(time.time()),
             console=Console(file=io.StringIO()))
    n = Node(data, "civil", PASSPHRASE, workers=0)
    try:
        yield n
    finally:
        n.close()


def _writer(node: Node, blocks: int, done: threading.Event) -> threading.Thread:
    """A thread committing ``blocks`` blocks of one issue transaction each, then ``done``."""
    me = Agency(node.agency, "", node.issuer_key, node.issuer_key)

    def run() -> None:
        try:
            for _ in range(blocks):
                while True:  # a status index drawn twice (~4% of runs over 300): draw again,
                    now = int(time.time())  # as issuers do
                    tx = issue_tx(node.network, me, secrets.token_bytes(32), "residence",
                                  secrets.randbelow(1 << 20), now, now + 86_400, now)
                    try:
                        node.orderer.submit(tx).result(timeout=60)
                        break
                    except TxRejected as e:
                        if e.code != "status_index_used":
                            raise
        finally:
            done.set()

    return threading.Thread(target=run, name="writer")


def test_holders_bundles_and_proofs_are_had_while_blocks_are_written(node: Node) -> None:
    """What issuance does after its own block (bundle_from_store against the latest
    checkpoint) and what `wallet refresh` asks a node for (its checkpoint, then a proof at
    that size), in a loop while 150 blocks are written. Before, the latest checkpoint was
    sometimes a tree the store did not prove yet ("tree size N+k is not in 1..N"): a
    credential committed with its holder's copy lost, in most runs of this test dozens of
    times."""
    done = threading.Event()
    writer = _writer(node, 150, done)
    failures: dict[str, int] = {}
    reads = 0
    writer.start()
    try:
        while not done.is_set():
            reads += 1
            try:
                bundle_from_store(node.store, 0, SD_JWT)
                size = SignedCheckpoint.from_text(node.checkpoint()).checkpoint.size
                node.inclusion(0, size)
                node.store.root_at(size)
            except LedgerError as e:
                failures[str(e)[:80]] = failures.get(str(e)[:80], 0) + 1
    finally:
        writer.join()
    assert reads > 150
    assert not failures, failures


def test_a_nodes_snapshot_part_opens_while_blocks_are_written(node: Node) -> None:
    """`GET /v1/snapshot` (what `ledger snapshot --node` merges) read the head, then the
    latest checkpoint: one of a block written in between made a part its own loader refused
    ("the snapshot's checkpoint is ahead of its log size"; 1 of 400 over HTTP under issuance)."""
    done = threading.Event()
    writer = _writer(node, 150, done)
    failures: dict[str, int] = {}
    parts = 0
    writer.start()
    try:
        while not done.is_set():
            parts += 1
            try:
                load_snapshot(node.snapshot())
            except LedgerError as e:
                failures[str(e)[:80]] = failures.get(str(e)[:80], 0) + 1
    finally:
        writer.join()
    assert parts > 20
    assert not failures, failures
