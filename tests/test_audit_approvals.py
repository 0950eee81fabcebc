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
from test_approval_http import NOW, evidence_record, prepare

from contracts.evidence import Evidence
from ledger import codec
from ledger.audit import AuditError, audit
from ledger.errors import DecodeError
from ledger.sealed import EVIDENCE_KEY_FILE, read_evidence_key, seal_record
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
    through (the agency's own key signs 'rejected' for claims the rule approves), its record
    sealed with the agency's evidence key as the node seals its own."""
    data, wallet = prepare(tmp)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        honest = _apply_for_a_licence(node, wallet)
        assert (honest.outcome.decision, honest.outcome.path) == ("approved", "fast_track")
        record = evidence_record(data)
        ev = dataclasses.replace(Evidence.from_bytes(record["evidence"]), salt=os.urandom(16))
        forged = make_tx(node.network, "approval", {
            "service": "business-licence", "rule_hash": ev.rule_hash, "decision": "rejected",
            "path": "standard", "reasons": ["scope_not_licensable"], "evidence": ev.digest,
            "ts": NOW}, [node.issuer_key])
        receipt = node.orderer.submit(forged).result(timeout=30)
        (data / "approvals" / f"{receipt.index:012d}-{forged.txid.hex()}.ev").write_bytes(
            seal_record(codec.encode({**record, "tx": forged.raw, "evidence": ev.to_bytes()}),
                        node.evidence_key))
    finally:
        node.close()
    return data, honest.approval.txid.hex(), forged.txid.hex()


def _key(data: Path) -> bytes:
    return read_evidence_key(data / "keys" / EVIDENCE_KEY_FILE, PASS)


def test_audit_re_evaluates_approvals_from_the_evidence(tmp_path: Path) -> None:
    data, honest, forged = _approve_twice(tmp_path)
    plain = audit(data, now=NOW)
    assert plain.clean, plain.problems  # without evidence the chain itself is sound...
    assert (plain.approvals_total, plain.approvals_rechecked) == (2, 0)  # ...but unchecked

    keys = [_key(data)]
    full = audit(data, now=NOW, evidence=data / "approvals", evidence_keys=keys)
    assert not full.clean
    assert full.approvals_rechecked == 1  # the honest one
    [problem] = full.problems
    assert (problem.kind, problem.txid) == ("approval", forged)
    assert "another decision" in problem.reason

    only_honest = tmp_path / "honest-evidence"
    only_honest.mkdir()
    for p in (data / "approvals").glob(f"*{honest}.ev"):
        shutil.copy(p, only_honest / p.name)
    partial = audit(data, now=NOW, evidence=only_honest, evidence_keys=keys)
    assert [(p.kind, p.txid) for p in partial.problems] == [("approval", forged)]
    assert "no evidence record" in partial.problems[0].reason


def test_audit_command_with_evidence(tmp_path: Path) -> None:
    """The agency writes a copy of its evidence key under the auditor's passphrase
    (`ledger-node evidence-key`); `ledger audit --evidence DIR --evidence-key COPY` opens the
    sealed records with it. Without the key, with a wrong passphrase, or with a stray file the
    audit stops with the reason (2): it does not call the approvals unchecked or broken."""
    import pytest

    from ledger.errors import KeyFileError

    data, _honest, forged = _approve_twice(tmp_path)
    for p in (data / "approvals").glob(f"*{forged}.ev"):
        p.unlink()
    copy = tmp_path / "auditor.key"
    base = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    agency = {**base, "LEDGER_KEY_PASSPHRASE": PASS.decode(),
              "LEDGER_EVIDENCE_PASSPHRASE": "the auditor's own"}

    def export(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger-node"), "evidence-key", "--data", str(data),
                               "--out", str(copy), *extra], capture_output=True, text=True,
                              timeout=120, check=False, env=agency, stdin=subprocess.DEVNULL)

    made = export()
    assert made.returncode == 0, made.stderr
    assert copy.stat().st_mode & 0o777 == 0o600
    key = _key(data)
    assert key.hex() not in made.stdout + made.stderr
    assert read_evidence_key(copy, b"the auditor's own") == key
    with pytest.raises(KeyFileError, match="wrong passphrase"):
        read_evidence_key(copy, PASS)  # the agency's passphrase does not open the copy
    again = export()
    assert again.returncode == 2 and "exists" in again.stderr, again.stderr
    # the agency's own passphrase for the auditor's copy, which the help says never to give
    # (the auditor would hold the passphrase of every key file of the agency): refused
    mine = subprocess.run([str(BIN / "ledger-node"), "evidence-key", "--data", str(data),
                           "--out", str(tmp_path / "mine.key")], capture_output=True, text=True,
                          timeout=120, check=False, stdin=subprocess.DEVNULL,
                          env={**agency, "LEDGER_EVIDENCE_PASSPHRASE": PASS.decode()})
    assert mine.returncode == 2 and "a passphrase of its own" in " ".join(
        mine.stderr.split()), mine.stderr
    assert not (tmp_path / "mine.key").exists()
    nowhere = subprocess.run([str(BIN / "ledger-node"), "evidence-key", "--data",
                              str(tmp_path / "no-node"), "--out", str(tmp_path / "x.key")],
                             capture_output=True, text=True, timeout=120, check=False,
                             env=agency, stdin=subprocess.DEVNULL)
    assert nowhere.returncode == 2 and "does not exist" in nowhere.stderr, nowhere.stderr

    def audit_cli(*extra: str, passphrase: str = "the auditor's own"
                  ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "ledger"), "audit", str(data), *extra, "--json"],
                              capture_output=True, text=True, timeout=300, check=False,
                              env={**base, "LEDGER_EVIDENCE_PASSPHRASE": passphrase},
                              stdin=subprocess.DEVNULL)

    folder = ("--evidence", str(data / "approvals"))
    unkeyed = audit_cli(*folder)
    assert unkeyed.returncode == 2, unkeyed.stderr
    assert "sealed with the evidence key" in unkeyed.stderr
    assert "--evidence-key" in unkeyed.stderr and unkeyed.stdout == ""
    wrong = audit_cli(*folder, "--evidence-key", str(copy), passphrase="a guess")
    assert wrong.returncode == 2 and "cannot open the evidence key" in wrong.stderr
    alone = audit_cli("--evidence-key", str(copy))
    assert alone.returncode == 2 and "--evidence" in alone.stderr, alone.stderr
    (data / "approvals" / "stray.ev").write_bytes(b"\x00not a record")
    bad = audit_cli(*folder, "--evidence-key", str(copy))
    assert bad.returncode == 2 and "not an evidence record" in bad.stderr
    (data / "approvals" / "stray.ev").unlink()
    r = audit_cli(*folder, "--evidence-key", str(copy))
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["approvals"] == {"total": 2, "rechecked": 1, "unchecked": 1}
    assert report["first_broken"]["kind"] == "approval"
    assert report["first_broken"]["txid"] == forged


def test_approval_records_are_sealed_at_rest(tmp_path: Path) -> None:
    """The records hold the claims presented: on disk they are sealed with the agency's
    evidence key (ADR 66), so no claim value is in their bytes; an audit opens them only with
    that key, a damaged seal is named, and a clear record from before is still read."""
    import pytest

    data, honest, forged = _approve_twice(tmp_path)
    key = _key(data)
    assert (data / "keys" / EVIDENCE_KEY_FILE).stat().st_mode & 0o777 == 0o600
    records = sorted((data / "approvals").glob("*.ev"))
    claims = Evidence.from_bytes(evidence_record(data, records[0])["evidence"]).claims
    values = [v for c in claims.values() for v in c.values() if isinstance(v, str)
              and len(v) >= 4]
    assert values, claims
    for p in records:
        raw = p.read_bytes()
        assert not [v for v in values if v.encode() in raw], p.name
    folder = data / "approvals"
    with pytest.raises(AuditError, match=r"sealed with the evidence key .*\(--evidence-key"):
        audit(data, now=NOW, evidence=folder)
    with pytest.raises(AuditError, match="sealed with the evidence key"):
        audit(data, now=NOW, evidence=folder, evidence_keys=[os.urandom(32)])
    # the honest record clear, as a node wrote it before ADR 66: still read
    [mine] = folder.glob(f"*{honest}.ev")
    mine.write_bytes(codec.encode(evidence_record(data, mine)))
    full = audit(data, now=NOW, evidence=folder, evidence_keys=[key])
    assert full.approvals_rechecked == 1
    assert [(p.kind, p.txid) for p in full.problems] == [("approval", forged)]
    [theirs] = folder.glob(f"*{forged}.ev")
    sealed = codec.decode(theirs.read_bytes())
    box = bytearray(sealed["box"])
    box[-1] ^= 1
    theirs.write_bytes(codec.encode({**sealed, "box": bytes(box)}))
    with pytest.raises(AuditError, match=r"not an evidence record.*seal does not open"):
        audit(data, now=NOW, evidence=folder, evidence_keys=[key])


def test_a_node_seals_the_records_it_wrote_in_the_clear(tmp_path: Path) -> None:
    """A node upgraded past ADR 66 seals, at its first approvals request, the records it
    kept in the clear before; the record is the same once opened, and stays 0600."""
    import pytest

    from ledger.sealed import SealedError, open_record

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        decided = _apply_for_a_licence(node, wallet)
        [path] = (data / "approvals").glob("*.ev")
        record = evidence_record(data, path)
        # over 4 KiB, as long claims and a long clause make one: the seal's box was read as a
        # field of at most 4096 bytes, and the sealed record opened no more (round 11)
        record["expression"] += " " * 4500
        assert len(codec.encode(record)) > 4096
        path.write_bytes(codec.encode(record))  # as a node wrote it before ADR 66
        path.chmod(0o600)
        service = Approvals(node)
        assert service.file_pending_hourly() == 0  # nothing pending; the clear one sealed
        with pytest.raises(SealedError):
            open_record(path.read_bytes(), {}, path.name)
        assert evidence_record(data, path) == record
        assert path.stat().st_mode & 0o777 == 0o600
        assert [a["approval_tx"] for a in service.list()] == [decided.approval.txid.hex()]
        assert service.explain(decided.approval.txid.hex())["expression"] == record["expression"]
        assert service.seal_clear() == 0  # a sealed one is left as it is
    finally:
        node.close()


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
    growth = audit(data, now=NOW, since=since, evidence=data / "approvals",
                   evidence_keys=[_key(data)])
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
        record = evidence_record(data)
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


# -- found by mutation round 8 (the auditor) ------------------------------------------------------

def test_evidence_naming_the_approvals_own_block_is_refused(tmp_path: Path) -> None:
    """An application is evaluated on a committed block before its decision is ordered: a
    record naming the decision's own block as its evaluation height (an agency that evaluated
    against a state holding its decision) is a finding, even when the rule gives that
    decision there."""
    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        honest = _apply_for_a_licence(node, wallet)
        [path] = (data / "approvals").glob("*.ev")
        record = evidence_record(data, path)
        assert node.store.head is not None
        at = node.store.head.height + 1  # where the next transaction commits
        ev = dataclasses.replace(Evidence.from_bytes(record["evidence"]), height=at,
                                 salt=os.urandom(16))
        late = make_tx(node.network, "approval", {**honest.approval.body,
                                                  "evidence": ev.digest}, [node.issuer_key])
        receipt = node.orderer.submit(late).result(timeout=30)
        assert receipt.height == at
        (data / "approvals" / f"{receipt.index:012d}-{late.txid.hex()}.ev").write_bytes(
            seal_record(codec.encode({**record, "tx": late.raw, "evidence": ev.to_bytes()}),
                        node.evidence_key))
    finally:
        node.close()
    report = audit(data, now=NOW, evidence=data / "approvals", evidence_keys=[_key(data)])
    assert report.approvals_rechecked == 1  # the honest one
    [problem] = report.problems
    assert (problem.kind, problem.txid, problem.height) == ("approval", late.txid.hex(), at)
    assert problem.reason == ("the evidence names an evaluation height that is not a block "
                              "before the approval's")
    assert (problem.expected, problem.found) == (f"< {at}", str(at))


def test_evidence_evaluated_on_a_stale_state_is_refused(tmp_path: Path) -> None:
    """A decision is evaluated at the head when it is signed. A record naming an older height,
    with blocks committed between it and the decision long before the decision was signed,
    is a finding: here the fast track at 750 points, evaluated an hour after a fraud event
    took the score to 250 on the state before it (the rule gives that decision there, so
    re-evaluating alone passed it)."""
    from test_approval_http import REG_NO
    from test_contracts_world import SECRET

    from contracts.credit import pseudonym
    from ledger.keys import load_private_key
    from ledger.state import MAX_BACKDATE

    data, wallet = prepare(tmp_path)
    clock = [NOW]
    node = Node(data, "market", PASS, clock=lambda: clock[0], workers=0)
    try:
        honest = _apply_for_a_licence(node, wallet)
        assert (honest.outcome.decision, honest.outcome.path) == ("approved", "fast_track")
        record = evidence_record(data)
        market = load_private_key(data / "keys" / "market.issuer.key", PASS)
        clock[0] = fraud = NOW + 1000
        at = node.orderer.submit(make_tx(node.network, "credit", {
            "subject": pseudonym(REG_NO, SECRET), "category": "permits", "points": -500,
            "reason": "fraud", "date": fraud, "expiry": fraud + 86_400, "ts": fraud},
            [market])).result(timeout=30).height
        # the state just before the fraud's block: 750 points, the fast track (block time NOW)
        ev = dataclasses.replace(Evidence.from_bytes(record["evidence"]), height=at - 1,
                                 salt=os.urandom(16))
        decisions = {}
        for signed in (fraud + MAX_BACKDATE, fraud + MAX_BACKDATE + 1):
            clock[0] = signed
            tx = make_tx(node.network, "approval", {**honest.approval.body,
                                                    "evidence": ev.digest, "ts": signed},
                         [node.issuer_key])
            receipt = node.orderer.submit(tx).result(timeout=30)
            (data / "approvals" / f"{receipt.index:012d}-{tx.txid.hex()}.ev").write_bytes(
                seal_record(codec.encode({**record, "tx": tx.raw, "evidence": ev.to_bytes()}),
                            node.evidence_key))
            decisions[signed] = (tx.txid.hex(), receipt.height)
    finally:
        node.close()
    report = audit(data, now=clock[0], evidence=data / "approvals", evidence_keys=[_key(data)])
    # the honest one, and one signed within MAX_BACKDATE of the fraud's block (a node that
    # read its head just before that block committed)
    assert report.approvals_rechecked == 2
    [problem] = report.problems
    txid, height = decisions[fraud + MAX_BACKDATE + 1]
    assert (problem.kind, problem.txid, problem.height) == ("approval", txid, height)
    assert "stale" in problem.reason, problem.reason
    assert (problem.expected, problem.found) == (f">= {fraud + 1}", str(fraud))


# -- found by mutation round 11 (keys and evidence sealed at rest) ---------------------------------

def test_a_sealed_record_opens_only_in_its_exact_shape() -> None:
    """`open_record` opens a record sealed as `seal_record` seals it and nothing else: a field
    added beside the seal, a key mark of another length, a seal holding a sealed record or no
    map, something that is not a map at all are refused as malformed (DecodeError), not read
    or taken for a record whose key was not given."""
    import pytest

    from ledger.errors import DecodeError
    from ledger.sealed import SealedError, key_mark, open_record

    # the mark is on disk in every sealed record: it is pinned (another domain or length would
    # leave every record sealed before it unopened, "sealed with a key not given")
    assert key_mark(bytes(range(32))).hex() == "705816dfdcb2cb04"
    key, other = os.urandom(32), os.urandom(32)
    keys = {key_mark(key): key}
    record = {"documents": ["d"], "v": 1}
    sealed = seal_record(codec.encode(record), key)
    assert open_record(sealed, keys, "r") == record
    outer = codec.decode(sealed)
    with pytest.raises(DecodeError, match="extra"):
        open_record(codec.encode({**outer, "extra": 1}), keys, "r")
    for mark in (key_mark(key)[:7], key_mark(key) + b"\x00"):
        with pytest.raises(DecodeError, match="key"):
            open_record(codec.encode({**outer, "key": mark}), {**keys, mark: key}, "r")
    twice = seal_record(sealed, key)
    with pytest.raises(DecodeError, match="holds no record"):
        open_record(twice, keys, "r")
    with pytest.raises(DecodeError, match="holds no record"):
        open_record(seal_record(codec.encode(["documents"]), key), keys, "r")
    with pytest.raises(DecodeError, match="not a map"):
        open_record(codec.encode(["box", 2]), keys, "r")
    with pytest.raises(SealedError, match=key_mark(key).hex()):
        open_record(sealed, {key_mark(other): other}, "r")
    with pytest.raises(DecodeError, match="seal does not open"):
        open_record(sealed, {key_mark(key): other}, "r")


def test_a_sealed_record_over_4_kib_opens() -> None:
    """A record is bounded by the size `open_record` is given (2 MiB), sealed or clear: a
    sealed one of more than 4 KiB (long claims, a long clause) opened as a field of at most
    4096 bytes, so neither its node nor an auditor could read it, and sealing a node's older
    clear records made the large ones unreadable (found by mutation round 11)."""
    from ledger.sealed import key_mark, open_record

    key = os.urandom(32)
    for record in ({"documents": ["x" * 5000], "v": 1},
                   {"documents": ["x" * (1 << 20)], "v": 1}):  # over codec's default limit
        assert open_record(seal_record(codec.encode(record), key), {key_mark(key): key},
                           "r") == record


def test_an_evidence_key_file_is_32_bytes_and_never_replaced(tmp_path: Path) -> None:
    """`read_evidence_key` refuses a sealed evidence-key file holding another length, and
    `load_evidence_key` never puts a new key where a name is taken, even by a link whose
    target is missing (a secret store not mounted): a new key there would leave every record
    sealed with the old one unopened."""
    import pytest

    from ledger.errors import KeyFileError
    from ledger.keys import seal_secret
    from ledger.sealed import EVIDENCE_KEY, load_evidence_key

    short = tmp_path / "short.key"
    short.write_bytes(seal_secret(bytes(16), PASS, EVIDENCE_KEY))
    with pytest.raises(KeyFileError, match="holds no evidence key"):
        read_evidence_key(short, PASS)
    keys = tmp_path / "keys"
    keys.mkdir()
    (keys / EVIDENCE_KEY_FILE).symlink_to(tmp_path / "unmounted" / EVIDENCE_KEY_FILE)
    with pytest.raises(KeyFileError, match="cannot read"):
        load_evidence_key(keys, PASS)
    assert (keys / EVIDENCE_KEY_FILE).is_symlink()
    made = load_evidence_key(tmp_path, PASS)
    assert load_evidence_key(tmp_path, PASS) == made == read_evidence_key(
        tmp_path / EVIDENCE_KEY_FILE, PASS)


def test_a_node_whose_evidence_key_is_missing_beside_sealed_records_does_not_start(
        tmp_path: Path) -> None:
    """The evidence key file gone (a data folder restored without its keys' latest copy, a
    file removed by mistake) while records sealed with it are kept: the node made a new key
    and started, and every record sealed before stayed unopened (its listing and explanations
    refused, its pending records never filed); a record sealed after it would not open with
    the old key put back. It does not start, saying so, and makes no key."""
    import pytest

    from ledger.errors import KeyFileError

    data, wallet = prepare(tmp_path)
    node = Node(data, "market", PASS, clock=lambda: NOW, workers=0)
    try:
        _apply_for_a_licence(node, wallet)
    finally:
        node.close()
    (data / "keys" / EVIDENCE_KEY_FILE).unlink()
    with pytest.raises(KeyFileError, match="sealed approval records"):
        Node(data, "market", PASS, clock=lambda: NOW, workers=0).close()
    assert not (data / "keys" / EVIDENCE_KEY_FILE).exists()
    # without records (a new node), the key is made as before
    shutil.rmtree(data / "approvals")
    Node(data, "market", PASS, clock=lambda: NOW, workers=0).close()
    assert (data / "keys" / EVIDENCE_KEY_FILE).exists()


def test_readme_names_the_approval_records_a_rollback_across_adr_66_cannot_read() -> None:
    """README ("Upgrading the software of a network") said the older version reads what the
    new one writes, a rollback working. A node of ADR 66 or later seals every approval record
    at its first approvals request, those its older version wrote in the clear too; a version
    before ADR 66 reads a record as the clear map and answers `GET /v1/approvals` with a 500
    (its audit: "is not an evidence record: 'tx'"), tried with 0dd4d28 (ADR 65) rolled back
    onto a demo folder a node of this version had served (round 27U). The README names it.

    tests/data/approval-record-adr65.ev: the record a node of 0dd4d28 wrote in the clear for
    `wallet apply elderly-allowance` on `ledger-node demo --serve` (demo claims, made up)."""
    from ledger.sealed import key_mark, open_record

    clear = (Path(__file__).parent / "data" / "approval-record-adr65.ev").read_bytes()
    record = open_record(clear, {}, "an ADR 65 record")  # read as it is, no key needed
    assert Tx.from_bytes(record["tx"]).body["service"] == "elderly-allowance"
    key = os.urandom(32)
    sealed = seal_record(clear, key)  # what this version writes in its place
    assert open_record(sealed, {key_mark(key): key}, "sealed") == record
    assert "tx" not in codec.decode(sealed)  # the key an ADR 65 node's listing reads
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    upgrading = readme.split("### Upgrading the software of a network", 1)[1]
    rollback = " ".join(upgrading.split("While versions are mixed", 1)[0].split())
    assert "a rollback works" in rollback
    assert "ADR 66" in rollback and "approval records" in rollback


def test_a_record_an_older_node_filed_from_a_sealed_pending_one_is_read(tmp_path: Path) -> None:
    """A node of ADR 66 or later seals its `.pending` records too; rolled back onto a version
    before ADR 66 (README: a rollback works), that node files a pending record at its start
    as it filed its own clear ones, adding `index` and `height` beside the seal's fields. This
    version refused that `.ev` as a whole ("unknown field(s) ['height', 'index']"): the
    listing, the explanation and `ledger audit --evidence` could no longer read a decision's
    evidence once the node was upgraded again (round 27U). It is opened, the place taken
    from beside the seal, and the node seals it again as it writes records.

    tests/data/approval-record-filed-by-adr65.ev: the record of approval-record-adr65.ev
    without its index and height, sealed by this version's seal_record under the key
    bytes(range(32)) as a `.pending` file, then filed by 0dd4d28's (ADR 65)
    `Approvals._keep(SimpleNamespace(folder=...), pending, codec.decode(pending bytes),
    Receipt(txid, 43, 35))`, run with PYTHONPATH on a worktree of that commit."""
    import pytest

    from ledger.sealed import is_sealed, key_mark, open_record

    here = Path(__file__).parent / "data"
    clear = codec.decode((here / "approval-record-adr65.ev").read_bytes())
    filed = (here / "approval-record-filed-by-adr65.ev").read_bytes()
    key = bytes(range(32))
    assert open_record(filed, {key_mark(key): key}, "filed") == clear
    assert not is_sealed(here / "approval-record-filed-by-adr65.ev")  # resealed by seal_clear
    # the place beside the seal is the filing's own: changed or of the wrong type, refused
    outer = codec.decode(filed)
    for bad in ({**outer, "index": "43"}, {**outer, "height": -1}, {**outer, "extra": 1}):
        with pytest.raises(DecodeError):
            open_record(codec.encode(bad), {key_mark(key): key}, "filed")
    inner = {**clear, "index": 7}  # a record sealed with its place inside names it once
    twice = {**codec.decode(seal_record(codec.encode(inner), key)), "index": 43}
    with pytest.raises(DecodeError, match="index"):
        open_record(codec.encode(twice), {key_mark(key): key}, "filed")
