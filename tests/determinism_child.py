"""Child process for tests/test_determinism.py: build one fixed chain, print what it came to.

Usage: python tests/determinism_child.py DATA_DIR WORKERS

Builds, in a fresh LevelDB store under DATA_DIR, a chain from fixed keys, transactions and
block times that touches every kind of transaction the state machine judges: governance (the
catalogue's types, grants, credit policy and approval rules, plus a rule with non-ASCII text,
large integer and string parameters and double arithmetic, and one that does not compile),
issues, status changes (non-ASCII reasons), credit events and a withdrawal, approvals, and
refusals of each. Signatures are checked by ``WORKERS`` sigcheck worker processes (0: by the
state machine). The chain is then built a second time in another store from the stored bytes
alone (as a node catching up re-executes a peer's blocks), and the child prints one JSON line:
the head, a digest of every record of the live store, the refusal codes, and the digest of the
re-executed store. The parent compares the line across environments (TZ, locale, hash seed).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from contracts.catalogue import RULES, setup_actions
from ledger.chain import build_block, build_genesis
from ledger.network import demo_agency, genesis_tx, governance_tx, issue_tx, status_tx
from ledger.sigcheck import SignatureChecker
from ledger.state import rule_hash
from ledger.store import Store
from ledger.tx import Tx, make_tx

NET = "determ"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
DAY = 86_400
ROLES = ["civil", "edu", "market", "justice"]

ODD_RULE: dict[str, Any] = {
    **RULES["elderly-allowance"], "service": "odd-allowance",
    "title": "Zulassung f\u00fcr \u00c4rzte \u2013 \u0130stanbul \ufb01 \u2126 \u03a9 "
             "e\u0301 \U0001f600",
    "params": [{"name": "big", "int": 1 << 53}, {"name": "small", "int": -(1 << 53)},
            {"name": "street", "str": "Stra\u00dfe \u0130I\u0131i e\u0301\u00e9 \u212b"},
            {"name": "flag", "bool": True}, {"name": "district", "str": "changsheng"},
            {"name": "income_line", "int": 24_000}],
    "clauses": [
        {"when": "double(params.big) + 1.0 == double(params.big)", "decision": "needs_review",
         "reason": "float_rounding"},
        {"when": "params.street.size() > 3 && params.small < 0 && 1.0 / 3.0 * 3.0 == 1.0",
         "decision": "rejected", "reason": "unicode_size"},
        {"when": "claims.person_id.district != params.district", "decision": "rejected",
         "reason": "not_resident"}],
    "otherwise": {"decision": "approved", "reason": "eligible"}}


def _approval(agency: Any, rule_map: dict[str, Any], decision: str, reasons: list[str],
              ts: int, path: str = "standard") -> Tx:
    return make_tx(NET, "approval", {
        "service": rule_map["service"], "rule_hash": rule_hash(rule_map), "decision": decision,
        "path": path, "reasons": reasons,
        "evidence": hashlib.sha256(b"evidence-%d" % ts).digest(), "ts": ts},
        [agency.issuer_key])


def _status(agency: Any, credential_id: bytes, status: str, reason: str, ts: int) -> Tx:
    """A status change (any reason text: the API refuses free text, the ledger does not)."""
    return make_tx(NET, "status", {"credential_id": credential_id, "status": status,
                                   "reason": reason, "ts": ts}, [agency.issuer_key])


def _credit(agency: Any, subject: bytes, category: str, points: int, date: int,
            reason: str, ts: int, withdraws: bytes | None = None) -> Tx:
    body: dict[str, Any] = {"subject": subject, "category": category, "points": points,
                            "reason": reason, "date": date, "expiry": date + 400 * DAY,
                            "ts": ts}  # signed at its block's time (ADR 69)
    if withdraws is not None:
        body["withdraws"] = withdraws
    return make_tx(NET, "credit", body, [agency.issuer_key])


def batches() -> tuple[Tx, list[tuple[int, list[Tx]]]]:
    """The genesis and the (block time, transactions) of every block after it."""
    ag = {r: demo_agency(r, r.title(), label="determinism") for r in ROLES}
    genesis = genesis_tx(NET, list(ag.values()), 2, T0)
    signers = [ag["civil"], ag["edu"]]
    out: list[tuple[int, list[Tx]]] = []
    seq = 0

    def gov(action: str, args: dict[str, Any]) -> Tx:
        nonlocal seq
        seq += 1
        return governance_tx(NET, seq, action, args, signers)

    setup = [gov(a, x) for a, x in setup_actions({}, T0, T0 + 4000 * DAY)]
    out.append((T0 + 60, setup[: len(setup) // 2]))
    out.append((T0 + 120, setup[len(setup) // 2:]))
    bad = {**RULES["elderly-allowance"], "service": "bad-rule",
           "clauses": [{"when": "claims.person_id.district ==", "decision": "rejected",
                         "reason": "broken"}]}
    seq_before = seq
    refused = gov("register_rule", {"rule": bad})  # rule_invalid: its seq is used again
    seq = seq_before
    out.append((T0 + 180, [refused, gov("register_rule", {"rule": ODD_RULE})]))
    subject = hashlib.sha256(b"subject-1").digest()
    creds = [hashlib.sha256(b"cred-%d" % i).digest() for i in range(6)]
    t = T0 + DAY
    issues = [issue_tx(NET, ag["civil"], c, "person-id", i, t - 100, t + 365 * DAY, t - 50)
              for i, c in enumerate(creds)]
    issues.append(issue_tx(NET, ag["edu"], creds[0], "degree", 0, t, t + DAY, t))  # repeated id
    first_credit = _credit(ag["civil"], subject, "tax", -120, t - DAY, "late_filing", t)
    out.append((t, [*issues, first_credit,
                    _credit(ag["market"], subject, "permits", 35, t - 10, "on_time_renewal", t),
                    _credit(ag["justice"], subject, "courts", -200, t - 5, "judgment_ün", t)]))
    t2 = t + DAY
    out.append((t2, [
        _status(ag["civil"], creds[1], "suspended", "pr\u00fcfung-\u0130", t2),
        _status(ag["civil"], creds[2], "revoked", "r\u00e9voqu\u00e9 e\u0301", t2),
        status_tx(NET, ag["civil"], creds[2], "valid", "again", t2),  # illegal transition
        status_tx(NET, ag["edu"], creds[3], "revoked", "not_mine", t2),  # not authorized
        _credit(ag["civil"], subject, "tax", 0, t - DAY, "late_filing", t2,
                withdraws=first_credit.txid),
        _approval(ag["civil"], RULES["elderly-allowance"], "approved", ["eligible"], t2),
        _approval(ag["civil"], ODD_RULE, "needs_review", ["float_rounding"], t2 + 1),
        _approval(ag["civil"], ODD_RULE, "rejected", ["unicode_size", "not_resident"], t2 + 2),
        _approval(ag["civil"], ODD_RULE, "approved", ["made_up"], t2 + 3),  # unknown reason
        _approval(ag["market"], RULES["business-licence"], "approved",
                  ["licensed", "good_credit"], t2 + 4, path="fast_track"),
        _approval(ag["edu"], RULES["qualification-recognition"], "needs_review",
                  ["level_not_listed"], t2 + 5),
    ]))
    # a block time earlier than the head's: the block keeps the head's time
    out.append((t, [status_tx(NET, ag["civil"], creds[1], "valid", "cleared", t2 + 10)]))
    return genesis, out


def digest(store: Store) -> str:
    h = hashlib.sha256()
    for k, v in store.iterate(b""):
        h.update(len(k).to_bytes(4, "big") + k + len(v).to_bytes(4, "big") + v)
    return h.hexdigest()


def main() -> None:
    data, workers = Path(sys.argv[1]), int(sys.argv[2])
    genesis, blocks = batches()
    checker = SignatureChecker(workers) if workers > 0 else None
    refusals: list[str] = []
    try:
        with Store(data / "live") as store:
            store.write_block(build_genesis(genesis))
            for time, txs in blocks:
                head, reg = store.head, store.registry
                assert head is not None and reg is not None
                flags = None
                if checker is not None:
                    keys = {kid: k.raw for kid, k in reg.public_keys.items()}
                    flags = checker.submit_parsed(txs, keys).result()
                r = build_block(head, reg, store, store.frontier, txs, time, checked=flags)
                refusals += [e.code for _, e in r.rejected] + ["dup"] * len(r.duplicates)
                if r.header is not None:
                    store.write_block(r)
            assert store.head is not None
            live = {"head": store.head.hash.hex(), "height": store.head.height,
                    "state": digest(store), "refusals": refusals}
            # again from the stored bytes alone, at the stored block times (a catch-up)
            with Store(data / "again") as again:
                again.write_block(build_genesis(Tx.from_bytes(store.entry(0))))
                for height in range(1, store.head.height + 1):
                    header = store.block(height)
                    txs = [Tx.from_bytes(raw) for raw in store.block_entries(header)]
                    ahead, areg = again.head, again.registry
                    assert ahead is not None and areg is not None
                    r = build_block(ahead, areg, again, again.frontier, txs, header.time)
                    assert not r.rejected and not r.duplicates, r.rejected
                    again.write_block(r)
                live["again"] = digest(again)
    finally:
        if checker is not None:
            checker.close()
    print(json.dumps(live, sort_keys=True))


if __name__ == "__main__":
    main()
