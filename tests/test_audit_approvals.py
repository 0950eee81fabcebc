"""`ledger audit --evidence`: every approval is evaluated again against the rule version in
force at its evaluation height; a decision that does not follow from its rule is named."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from test_api import PASS
from test_approval_http import NOW, prepare

from contracts.evidence import Evidence
from ledger import codec
from ledger.audit import audit
from ledger.tx import Tx, make_tx
from node.approvals import Approvals, Decided
from node.service import Node
from wallet.core import Wallet

BIN = Path(sys.executable).parent


def _apply_for_a_licence(node: Node, wallet: Wallet) -> Decided:
    """The wallet's business-licence application, decided by ``node``."""
    service = Approvals(node)
    pending = service.open_application("business-licence", "https://market.example")
    answers = wallet.answer([p.request for p in pending], now=NOW)
    return service.apply("business-licence", answers, wallet.holder_jwk())


def _approve_twice(tmp: Path) -> tuple[Path, str, str]:
    """An honest decision through the node, then a forged one the state machine cannot see
    through (the agency's own key signs 'rejected' for claims the rule approves)."""
    data, wallet = prepare(tmp)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        honest = _apply_for_a_licence(node, wallet)
        assert (honest.outcome.decision, honest.outcome.path) == ("approved", "fast_track")
        record = codec.decode(next((data / "approvals").glob("*.ev")).read_bytes(),
                              max_size=1 << 21)
        ev = dataclasses.replace(Evidence.from_bytes(record["evidence"]), salt=os.urandom(16))
        forged = make_tx(node.network, "approval", {
            "service": "business-licence", "rule_hash": ev.rule_hash, "decision": "rejected",
            "path": "standard", "reasons": ["scope_not_licensable"], "evidence": ev.digest,
            "ts": NOW}, [node.issuer_key])
        receipt = node.orderer.submit(forged).result(timeout=30)
        (data / "approvals" / f"{receipt.index:012d}-{forged.txid.hex()}.ev").write_bytes(
            codec.encode({**record, "tx": forged.raw, "evidence": ev.to_bytes()}))
    finally:
        node.close()
    return data, honest.approval.txid.hex(), forged.txid.hex()


def test_audit_re_evaluates_approvals_from_the_evidence(tmp_path: Path) -> None:
    data, honest, forged = _approve_twice(tmp_path)
    plain = audit(data, now=NOW)
    assert plain.clean, plain.problems  # without evidence the chain itself is sound...
    assert (plain.approvals_total, plain.approvals_rechecked) == (2, 0)  # ...but unchecked

    full = audit(data, now=NOW, evidence=data / "approvals")
    assert not full.clean
    assert full.approvals_rechecked == 1  # the honest one
    [problem] = full.problems
    assert (problem.kind, problem.txid) == ("approval", forged)
    assert "another decision" in problem.reason

    only_honest = tmp_path / "honest-evidence"
    only_honest.mkdir()
    for p in (data / "approvals").glob(f"*{honest}.ev"):
        shutil.copy(p, only_honest / p.name)
    partial = audit(data, now=NOW, evidence=only_honest)
    assert [(p.kind, p.txid) for p in partial.problems] == [("approval", forged)]
    assert "no evidence record" in partial.problems[0].reason


def test_audit_command_with_evidence(tmp_path: Path) -> None:
    data, _honest, forged = _approve_twice(tmp_path)
    for p in (data / "approvals").glob(f"*{forged}.ev"):
        p.unlink()
    (data / "approvals" / "stray.ev").write_bytes(b"\x00not a record")
    bad = subprocess.run([str(BIN / "ledger"), "audit", str(data), "--evidence",
                          str(data / "approvals"), "--json"], capture_output=True, text=True,
                         timeout=300, check=False)
    assert bad.returncode == 2 and "not an evidence record" in bad.stderr
    (data / "approvals" / "stray.ev").unlink()
    r = subprocess.run([str(BIN / "ledger"), "audit", str(data), "--evidence",
                        str(data / "approvals"), "--json"], capture_output=True, text=True,
                       timeout=300, check=False)
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["approvals"] == {"total": 2, "rechecked": 1, "unchecked": 1}
    assert report["first_broken"]["kind"] == "approval"
    assert report["first_broken"]["txid"] == forged


def test_audit_since_a_checkpoint_re_evaluates_a_decision_evaluated_at_it(
        tmp_path: Path) -> None:
    """An application evaluated at the head an earlier audit ended on, and committed in the
    next block: `--since` rebuilds the old part lightly, and must still keep the registry of
    the evaluation height (it reported an honest decision as broken)."""
    from ledger.checkpoint import SignedCheckpoint

    data, wallet = prepare(tmp_path)
    first = audit(data, now=NOW)
    assert first.clean and first.checkpoint is not None
    since = SignedCheckpoint.from_text(first.checkpoint)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        decided = _apply_for_a_licence(node, wallet)
    finally:
        node.close()
    assert first.head is not None and decided.receipt.height > first.head.height
    growth = audit(data, now=NOW, since=since, evidence=data / "approvals")
    assert growth.clean, [str(p) for p in growth.problems]
    assert (growth.approvals_total, growth.approvals_rechecked) == (1, 1)


# -- found by a mutation round of the contracts (ADR 56) ---------------------------------------

def test_re_evaluation_refuses_evidence_that_is_not_the_decision_s_own(tmp_path: Path) -> None:
    """contracts.reevaluate checks the evidence against the approval before it evaluates: the
    digest on the ledger, its service and rule version, the block time, the rule version in
    force and the credit record at the evaluation height. Each altered record (with an
    approval stating its digest, as its agency's key could sign one) is refused, naming what
    differs; a transaction of another type is no approval."""
    import pytest

    from contracts import reevaluate
    from contracts.errors import ContractError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        decided = _apply_for_a_licence(node, wallet)
        record = codec.decode(next((data / "approvals").glob("*.ev")).read_bytes(),
                              max_size=1 << 21)
        ev = Evidence.from_bytes(record["evidence"])
        store = node.store
        reg, t = store.registry_at(ev.height), store.block(ev.height).time
        assert reevaluate(reg, store, decided.approval, record["evidence"], block_time=t)
        issue = Tx.from_bytes(store.entry(decided.receipt.index - 1))
        assert issue.type != "approval"
        with pytest.raises(ContractError, match="is not an approval"):
            reevaluate(reg, store, issue, record["evidence"], block_time=t)
        other_salt = dataclasses.replace(ev, salt=os.urandom(16)).to_bytes()
        with pytest.raises(ContractError, match="digest is not the one on the ledger"):
            reevaluate(reg, store, decided.approval, other_salt, block_time=t)
        with pytest.raises(ContractError, match="is not the block time"):
            reevaluate(reg, store, decided.approval, record["evidence"], block_time=t + 1)

        def stating(changed: Evidence, **body: Any) -> Tx:
            return make_tx(node.network, "approval", {
                **decided.approval.body, "evidence": changed.digest, **body},
                [node.issuer_key])

        for changed, body, said in (
                (dataclasses.replace(ev, service="elderly-allowance"), {},
                 "for another service or rule version"),
                (dataclasses.replace(ev, rule_hash=bytes(32)), {"rule_hash": bytes(32)},
                 "was not in force"),
                (dataclasses.replace(ev, credit={**ev.credit, "score": ev.credit["score"] + 1}),
                 {}, "credit record at the evaluation height differs")):
            with pytest.raises(ContractError, match=said):
                reevaluate(reg, store, stating(changed, **body), changed.to_bytes(),
                           block_time=t)
    finally:
        node.close()


def test_evidence_needs_its_full_salt_and_a_whole_pseudonym() -> None:
    """The 16 random bytes keep the digest on the chain from being confirmed by guessing claim
    values: evidence without them (or with a shorter salt) is not made."""
    import pytest

    from contracts.errors import ContractError

    def evidence(salt: bytes, subject: bytes = b"") -> Evidence:
        return Evidence("business-licence", bytes(32), 1, NOW, {}, (), salt, subject)

    for salt in (b"", bytes(8), bytes(17)):
        with pytest.raises(ContractError, match="16-byte salt"):
            evidence(salt)
    with pytest.raises(ContractError, match="32 bytes"):
        evidence(bytes(16), bytes(31))
    ok = evidence(bytes(16))
    assert Evidence.from_bytes(ok.to_bytes()) == ok


def test_an_evidence_record_of_another_shape_is_refused() -> None:
    """Claims are maps per credential type and credential ids 32 bytes: a record otherwise is
    malformed (ContractError), not a record re-evaluated with whatever it holds."""
    import pytest

    from contracts.errors import ContractError

    good = codec.decode(Evidence("business-licence", bytes(32), 1, NOW,
                                 {"business-registration": {"scope": "catering"}}, (bytes(32),),
                                 bytes(16)).to_bytes())
    for changes in ({"claims": {"business-registration": "catering"}},
                    {"credentials": [bytes(31)]}, {"credentials": ["ab" * 16]}):
        with pytest.raises(ContractError, match="malformed evidence record"):
            Evidence.from_bytes(codec.encode({**good, **changes}))
    assert Evidence.from_bytes(codec.encode(good)).claims == {
        "business-registration": {"scope": "catering"}}
