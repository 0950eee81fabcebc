"""The benchmark chain generator (scripts/chaingen.py): a small chain audits clean, carries every
kind of transaction, and is the same chain whether built in one go or resumed."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))

import chaingen

from ledger.audit import audit
from ledger.chain import build_genesis
from ledger.network import genesis_tx
from ledger.state import Registry, credit_events
from ledger.store import Store
from ledger.tx import Tx

SMALL = chaingen.Params(block_issues=300, index_bits=20, lag=120, checkpoint_every=3)


def _types(store: Store) -> Counter[str]:
    assert store.head is not None
    return Counter(Tx.from_bytes(store.entry(i)).type for i in range(store.head.log_size))


def test_small_chain_audits_clean(tmp_path: Path) -> None:
    store = chaingen.generate(tmp_path / "chain", 5_000, params=SMALL, workers=2)
    try:
        assert store.head is not None and store.registry is not None
        assert store.head.log_size >= 5_000
        kinds = _types(store)
        assert set(kinds) == {"genesis", "governance", "issue", "status", "credit", "approval"}
        assert kinds["status"] > 0.1 * kinds["issue"]
        reg: Registry = store.registry
        assert len(reg.agencies()) == 8
        assert len(reg.data["types"]) == len(chaingen.pairs()) + 1  # + approval credentials
        assert set(reg.services()) == set(chaingen.SERVICES)
        statuses = Counter(c.status for c in (
            store.credential(chaingen._Signer(SMALL, {}).credential_id(i)) for i in range(600))
            if c is not None)
        assert set(statuses) == {"valid", "suspended", "revoked"}
        subject = hashlib.sha256(b"chaingen/subject/0").digest()
        events = credit_events(store, subject)
        assert len(events) == 2 and events[1].withdrawn_by  # the third tx withdrew the second
        assert store.checkpoint() is not None
    finally:
        store.close()
    report = audit(tmp_path / "chain", now=int(time.time()), workers=2)
    assert report.clean, report.to_json()
    assert report.txs_checked == kinds.total()


def test_resumed_build_is_the_same_chain(tmp_path: Path) -> None:
    one = chaingen.generate(tmp_path / "one", 2_500, params=SMALL, workers=1)
    head_one = one.head
    one.close()
    part = chaingen.generate(tmp_path / "two", 900, params=SMALL, workers=1)
    part.close()
    two = chaingen.generate(tmp_path / "two", 2_500, params=SMALL, workers=1)
    head_two = two.head
    two.close()
    assert head_one == head_two


def test_a_build_interrupted_after_genesis_resumes_to_the_same_chain(tmp_path: Path) -> None:
    """Stopped between the genesis block and the set-up block (types, grants, rules), the
    folder holds a sidecar and a genesis-only store: the next run writes the set-up block and
    builds the same chain as one run, instead of planning blocks from before the first."""
    one = chaingen.generate(tmp_path / "one", 1_000, params=SMALL, workers=1)
    head_one = one.head
    one.close()
    path = tmp_path / "two"
    with Store(path) as store:  # what the interrupted run left
        chaingen.sidecar(path).write_text(json.dumps(SMALL.to_json()))
        store.write_block(build_genesis(genesis_tx(chaingen.NET, chaingen.agencies(),
                                                   chaingen.QUORUM, chaingen.T0)))
    two = chaingen.generate(path, 1_000, params=SMALL, workers=1)
    head_two = two.head
    two.close()
    assert head_one == head_two


def test_refuses_other_parameters(tmp_path: Path) -> None:
    chaingen.generate(tmp_path / "c", 10, params=SMALL, workers=1).close()
    with pytest.raises(SystemExit, match="other parameters"):
        chaingen.generate(tmp_path / "c", 10, params=chaingen.Params(), workers=1)


def test_the_scale_bench_ingest_commits_on_a_chaingen_chain(tmp_path: Path) -> None:
    """bench_scale's ingest step: its issues must pass the state machine on the chain it
    measures (ADR 43 refuses credentials dated long before their block)."""
    import bench_scale

    from ledger.ordering import SoloOrderer

    store = chaingen.generate(tmp_path / "chain", 1_000, params=SMALL, workers=1)
    try:
        orderer = SoloOrderer(store, workers=0,
                              clock=lambda: chaingen.T0 + bench_scale.INGEST_TIME_OFFSET)
        try:
            receipts = [f.result(timeout=60) for f in
                        orderer.submit_many([Tx.from_bytes(r)
                                             for r in bench_scale._ingest_txs(5, 0)])]
        finally:
            orderer.stop()
        assert len({r.txid for r in receipts}) == 5
    finally:
        store.close()
