"""Tests for ledger.state through ledger.chain and a real Store: every rule, positive and negative.

Each rejection asserts its stable ``code`` and that the rejected transaction changed nothing:
no block, same head, same registry, same credential state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

from ledger import codec
from ledger.chain import build_block, build_genesis, txid_key
from ledger.errors import StoreError, TxRejected
from ledger.keys import PrivateKey
from ledger.network import Agency, demo_agency, genesis_tx, governance_tx, issue_tx, status_tx
from ledger.state import (
    MAX_BACKDATE,
    MAX_REGISTRY_SIZE,
    STATUS_LIST_SIZE,
    STATUS_LISTS,
    Credential,
    Machine,
    Registry,
    _keys_to_hex,
    credential_key,
    genesis_registry,
)
from ledger.tx import Tx, make_tx

if TYPE_CHECKING:
    from pathlib import Path

    from conftest import LedgerHarness

NET = "demo"
T0 = 1_700_000_000
DAY = 86_400
T1 = T0 + 100  # set-up governance happens here
UNTIL = T0 + 100 * DAY  # end of edu's diploma grant

DIPLOMA = {"id": "diploma", "title": "University diploma",
           "claims": {"degree": "string", "year": "int", "birth_date": "date"},
           "derived": {"adult": {"claim": "birth_date", "age_over": 18}}}
LICENCE = {"id": "licence", "title": "Driving licence", "claims": {"class": "string"},
           "derived": {}}

NEW = demo_agency("new", "New Agency")
OUTSIDER = demo_agency("out", "Not a member")


def cid(n: int | str) -> bytes:
    return hashlib.sha256(f"credential {n}".encode()).digest()


def issue(agency: Agency, n: int | str, t: int, *, kind: str = "diploma",
          index: int | None = None, key: PrivateKey | None = None) -> Tx:
    idx = index if index is not None else int(hashlib.sha256(str(n).encode()).digest()[0]) + 1000
    return issue_tx(NET, agency, cid(n), kind, idx, t, t + 365 * DAY, t, key=key)


def status(agency: Agency, n: int | str, new: str, t: int) -> Tx:
    return status_tx(NET, agency, cid(n), new, "test", t)


def accept(h: LedgerHarness, txs: list[Tx], t: int) -> None:
    r = h.commit(txs, t)
    assert [(e.code, e.message) for _, e in r.rejected] == []
    assert r.duplicates == []
    assert [tx.txid for tx, _ in r.accepted] == [tx.txid for tx in txs]


def reject(h: LedgerHarness, tx: Tx, t: int) -> str:
    """Submit ``tx`` alone, insist it was rejected without effect, return the code."""
    head = h.store.head
    reg = h.registry.to_bytes()
    before = {c: h.store.credential(c) for c in _body_cids(tx)}
    r = h.commit([tx], t)
    assert r.accepted == []
    assert r.header is None
    assert r.head is None
    assert len(r.rejected) == 1
    assert r.rejected[0][0] is tx
    err = r.rejected[0][1]
    assert isinstance(err, TxRejected)
    assert err.message
    assert h.store.head == head
    assert h.registry.to_bytes() == reg
    assert h.store.tx_location(tx.txid) is None
    assert {c: h.store.credential(c) for c in before} == before
    with pytest.raises(StoreError):
        h.store.write_block(r)
    return err.code


def _body_cids(tx: Tx) -> list[bytes]:
    c = tx.body.get("credential_id")
    return [c] if isinstance(c, bytes) else []


def retamper(tx: Tx, index: int = 0) -> Tx:
    """``tx`` with signature ``index`` corrupted, re-enveloped through the canonical codec."""
    env = codec.decode(tx.raw)
    sig = bytearray(env["sigs"][index]["sig"])
    sig[10] ^= 0x40
    env["sigs"][index]["sig"] = bytes(sig)
    return Tx.from_bytes(codec.encode(env))


@pytest.fixture
def lg(ledger: LedgerHarness, agencies: dict[str, Agency]) -> LedgerHarness:
    """reg/edu/tax, quorum 2; 'diploma' registered; edu may issue diplomas in [T0, UNTIL)."""
    reg, edu = agencies["reg"], agencies["edu"]
    ledger.govern("register_type", {"type": DIPLOMA}, [reg, edu], T1)
    ledger.govern("grant", {"agency": "edu", "type": "diploma", "from": T0, "until": UNTIL},
                  [reg, edu], T1)
    return ledger


# --- genesis -----------------------------------------------------------------------------------


def test_genesis_registry(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg = ledger.registry
    assert reg.network == NET
    assert reg.quorum == 2
    assert reg.gov_seq == 0
    assert sorted(reg.agencies()) == ["edu", "reg", "tax"]
    assert reg.current_agencies(T0) == ["edu", "reg", "tax"]
    assert reg.current_agencies(T0 - 1) == []
    for a in agencies.values():
        assert reg.key(a.issuer_key.kid)["role"] == "issuer"
        assert reg.key(a.node_key.kid)["role"] == "node"
        assert reg.key_valid(a.issuer_key.kid, T0, "issuer")
        assert not reg.key_valid(a.issuer_key.kid, T0, "node")
        assert not reg.key_valid(a.issuer_key.kid, T0 - 1, "issuer")
        assert reg.public_keys[a.issuer_key.kid].raw == a.issuer_key.public.raw
    assert reg.grants_at(T0) == {}
    assert reg.type_def("diploma") is None
    assert ledger.store.head is not None
    assert ledger.store.head.height == 0
    assert ledger.store.head.log_size == 1
    assert ledger.store.tx_location(ledger.genesis.txid) == (0, 0)


def test_genesis_missing_founder_signature(agencies: dict[str, Agency]) -> None:
    a = list(agencies.values())
    body = {"network": NET, "time": T0, "quorum": 2, "agencies": [x.spec() for x in a]}
    tx = make_tx(NET, "genesis", body, [a[0].issuer_key, a[1].issuer_key])
    with pytest.raises(TxRejected) as info:
        build_genesis(tx)
    assert info.value.code == "bad_signers"


def test_genesis_extra_signer(agencies: dict[str, Agency]) -> None:
    a = list(agencies.values())
    good = genesis_tx(NET, a, 2, T0)
    tx = good.sign(OUTSIDER.issuer_key)
    with pytest.raises(TxRejected) as info:
        genesis_registry(tx)
    assert info.value.code == "bad_signers"
    # a founder's node key instead of its issuer key is not the founder's signature
    body = dict(good.body)
    wrong = make_tx(NET, "genesis", body, [a[0].issuer_key, a[1].issuer_key, a[2].node_key])
    with pytest.raises(TxRejected) as info:
        genesis_registry(wrong)
    assert info.value.code == "bad_signers"


@pytest.mark.parametrize("index", [0, 2])
def test_genesis_forged_signature(agencies: dict[str, Agency], index: int) -> None:
    tx = retamper(genesis_tx(NET, list(agencies.values()), 2, T0), index)
    with pytest.raises(TxRejected) as info:
        build_genesis(tx)
    assert info.value.code == "bad_signature"


def test_genesis_wrong_network(agencies: dict[str, Agency]) -> None:
    a = list(agencies.values())
    body = {"network": NET, "time": T0, "quorum": 2, "agencies": [x.spec() for x in a]}
    tx = make_tx("other", "genesis", body, [x.issuer_key for x in a])
    with pytest.raises(TxRejected) as info:
        build_genesis(tx)
    assert info.value.code == "wrong_network"


def test_genesis_must_be_first(agencies: dict[str, Agency]) -> None:
    tx = issue(agencies["edu"], 1, T0)
    with pytest.raises(TxRejected) as info:
        build_genesis(tx)
    assert info.value.code == "not_genesis"


def test_genesis_same_key_for_node_and_issuer() -> None:
    k = PrivateKey(hashlib.sha256(b"one key").digest())
    a = Agency("solo", "Solo", k, k)
    with pytest.raises(TxRejected) as info:
        genesis_registry(genesis_tx(NET, [a], 1, T0))
    assert info.value.code == "key_reused"


def test_second_genesis_rejected(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    again = genesis_tx(NET, list(agencies.values()), 1, T0 + 1)
    assert reject(ledger, again, T0 + 10) == "genesis_repeated"


def test_genesis_result(agencies: dict[str, Agency]) -> None:
    tx = genesis_tx(NET, list(agencies.values()), 3, T0)
    r = build_genesis(tx)
    assert r.header is not None
    assert r.head is not None
    assert r.header.height == 0
    assert r.header.time == T0
    assert r.registry.quorum == 3
    assert r.accepted == [(tx, 0)]


# --- envelope-level rules ----------------------------------------------------------------------


def test_wrong_network(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    tx = issue_tx("other-net", edu, cid(1), "diploma", 1, T0, T0 + DAY, T0)
    assert reject(lg, tx, T0 + DAY) == "wrong_network"


def test_unknown_key(lg: LedgerHarness) -> None:
    tx = issue(OUTSIDER, 1, T0 + DAY)
    assert reject(lg, tx, T0 + DAY) == "unknown_key"
    # an unknown key in a governance transaction as well
    gov = make_tx(NET, "governance", {"seq": 3, "action": "set_quorum", "args": {"quorum": 1}},
                  [OUTSIDER.issuer_key])
    assert reject(lg, gov, T0 + DAY) == "unknown_key"


def test_bad_signature(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    good = issue(agencies["edu"], 1, T0 + DAY)
    bad = retamper(good)
    assert bad.payload == good.payload
    assert bad.txid != good.txid
    assert reject(lg, bad, T0 + DAY) == "bad_signature"
    accept(lg, [good], T0 + DAY)


def test_bad_signature_on_second_governance_signer(lg: LedgerHarness,
                                                   agencies: dict[str, Agency]) -> None:
    tx = lg.gov_tx("set_quorum", {"quorum": 3}, [agencies["reg"], agencies["edu"]])
    assert reject(lg, retamper(tx, 1), T0 + DAY) == "bad_signature"
    assert lg.registry.quorum == 2


def test_credit_and_approval_not_enabled(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"].issuer_key
    credit = make_tx(NET, "credit", {"subject": b"\x01" * 32, "category": "loan", "points": 5,
                                     "reason": "paid", "date": T0, "expiry": T0 + DAY,
                                     "ts": T0}, [edu])
    approval = make_tx(NET, "approval", {"service": "housing", "rule_hash": b"\x02" * 32,
                                         "decision": "approved", "path": "standard",
                                         "reasons": [], "evidence": b"\x03" * 32, "ts": T0},
                       [edu])
    assert reject(lg, credit, T0 + DAY) == "not_enabled"
    assert reject(lg, approval, T0 + DAY) == "not_enabled"


# --- issue ---------------------------------------------------------------------------------------


def test_issue_accepted(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    t = T0 + 2 * DAY
    tx = issue_tx(NET, edu, cid(1), "diploma", 42, t - 5, T0 + 400 * DAY, t - 5)
    before = lg.store.head
    assert before is not None
    accept(lg, [tx], t)
    c = lg.store.credential(cid(1))
    assert c == Credential(cid(1), "edu", "diploma", "valid", 42, t - 5, T0 + 400 * DAY, t,
                           edu.issuer_key.kid)
    # the record is packed without codec.encode's checks: its bytes must still be canonical
    assert c.to_bytes() == codec.encode([c.issuer, c.type, c.status, c.status_index,
                                         c.valid_from, c.valid_until, c.issued_at, c.issuer_kid])
    assert lg.store.get(credential_key(cid(1))) == c.to_bytes()
    head = lg.store.head
    assert head is not None
    assert head.height == before.height + 1
    assert head.log_size == before.log_size + 1
    assert lg.store.tx_location(tx.txid) == (before.log_size, head.height)
    assert lg.store.tx(tx.txid) == tx


def test_issue_by_removed_agency(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    lg.govern("remove_agency", {"agency": "edu"}, [reg, tax], T0 + 2 * DAY)
    assert reject(lg, issue(edu, 2, T0 + 3 * DAY), T0 + 3 * DAY) == "agency_not_current"
    # and it can no longer change the status of what it issued
    assert reject(lg, status(edu, 1, "revoked", T0 + 3 * DAY), T0 + 3 * DAY) \
        == "agency_not_current"
    assert lg.registry.current_agencies(T0 + 3 * DAY) == ["reg", "tax"]
    assert lg.registry.current_agencies(T0 + DAY) == ["edu", "reg", "tax"]


def test_issue_with_node_key(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    tx = issue(edu, 1, T0 + DAY, key=edu.node_key)
    assert reject(lg, tx, T0 + DAY) == "key_not_valid"


def test_key_invalidated_at_future_date(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    cutoff = T0 + 5 * DAY
    lg.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": cutoff}, [reg, edu],
              T0 + DAY)
    assert lg.registry.key(edu.issuer_key.kid)["invalid_from"] == cutoff
    # block time before the invalidation date: still valid
    accept(lg, [issue(edu, 1, cutoff - 1)], cutoff - 1)
    # at and after it: not
    assert reject(lg, issue(edu, 2, cutoff), cutoff) == "key_not_valid"
    assert reject(lg, issue(edu, 3, cutoff + DAY), cutoff + DAY) == "key_not_valid"
    assert lg.store.credential(cid(1)) is not None


def test_key_invalidated_from_past_date(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    lg.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + 12 * 3600},
              [reg, tax], T0 + 2 * DAY)
    reg_now = lg.registry
    assert not reg_now.key_valid(edu.issuer_key.kid, T0 + DAY, "issuer")
    assert reg_now.key_valid(edu.issuer_key.kid, T0 + 3600, "issuer")
    assert reject(lg, issue(edu, 2, T0 + 3 * DAY), T0 + 3 * DAY) == "key_not_valid"
    # the registry in force when the credential was issued still says the key was valid then
    assert lg.store.registry_at(3).key_valid(edu.issuer_key.kid, T0 + DAY, "issuer")
    # a later invalidation date never moves an earlier one back
    lg.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + 50 * DAY},
              [reg, tax], T0 + 4 * DAY)
    assert lg.registry.key(edu.issuer_key.kid)["invalid_from"] == T0 + 12 * 3600


def test_invalidate_unknown_key(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    tx = lg.gov_tx("invalidate_key", {"kid": OUTSIDER.issuer_key.kid, "from": T0},
                   [agencies["reg"], agencies["edu"]])
    assert reject(lg, tx, T0 + DAY) == "unknown_key"


def test_issuer_mismatch(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    # body names reg as issuer, but edu's issuer key signs
    tx = issue(reg, 1, T0 + DAY, key=edu.issuer_key)
    assert tx.body["issuer"] == "reg"
    assert reject(lg, tx, T0 + DAY) == "issuer_mismatch"


def test_unknown_type(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    tx = issue(agencies["edu"], 1, T0 + DAY, kind="passport")
    assert reject(lg, tx, T0 + DAY) == "unknown_type"


def test_no_grant(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    assert reject(lg, issue(agencies["reg"], 1, T0 + DAY), T0 + DAY) == "not_granted"


def test_grant_window(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    start, end = T0 + 5 * DAY, T0 + 6 * DAY
    lg.govern("grant", {"agency": "tax", "type": "diploma", "from": start, "until": end},
              [reg, edu], T0 + DAY)
    assert reject(lg, issue(tax, 1, T0 + 2 * DAY), T0 + 2 * DAY) == "not_granted"  # not yet
    accept(lg, [issue(tax, 2, start)], start)  # window start is inclusive
    accept(lg, [issue(tax, 3, end - 1)], end - 1)
    assert reject(lg, issue(tax, 4, end), end) == "not_granted"  # end is exclusive
    assert reject(lg, issue(tax, 5, end + DAY), end + DAY) == "not_granted"


def test_grant_expired(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    accept(lg, [issue(edu, 1, UNTIL - 1)], UNTIL - 1)
    assert reject(lg, issue(edu, 2, UNTIL), UNTIL) == "not_granted"


def test_grant_withdrawn(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    lg.govern("withdraw_grant", {"agency": "edu", "type": "diploma", "at": T0 + 2 * DAY},
              [reg, tax], T0 + 2 * DAY)
    assert reject(lg, issue(edu, 2, T0 + 3 * DAY), T0 + 3 * DAY) == "not_granted"
    assert lg.registry.grants_at(T0 + DAY) == {"edu": ["diploma"]}
    assert lg.registry.grants_at(T0 + 2 * DAY) == {}


def test_withdraw_missing_grant(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    tx = lg.gov_tx("withdraw_grant", {"agency": "tax", "type": "diploma", "at": T0},
                   [agencies["reg"], agencies["edu"]])
    assert reject(lg, tx, T0 + DAY) == "unknown_grant"


def test_duplicate_credential_id(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    accept(lg, [issue(edu, 1, T0 + DAY, index=1)], T0 + DAY)
    again = issue(edu, 1, T0 + 2 * DAY, index=2)
    assert reject(lg, again, T0 + 2 * DAY) == "credential_exists"
    assert lg.store.credential(cid(1)).status_index == 1  # type: ignore[union-attr]


def test_duplicate_credential_id_in_one_block(lg: LedgerHarness,
                                              agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    first, second = issue(edu, 1, T0 + DAY, index=1), issue(edu, 1, T0 + DAY, index=2)
    r = lg.commit([first, second], T0 + DAY)
    assert [tx for tx, _ in r.accepted] == [first]
    assert [(tx, e.code) for tx, e in r.rejected] == [(second, "credential_exists")]


def test_status_index_reused(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    accept(lg, [issue(edu, 1, T0 + DAY, index=7)], T0 + DAY)
    assert reject(lg, issue(edu, 2, T0 + 2 * DAY, index=7), T0 + 2 * DAY) == "status_index_used"
    # indexes are per issuer and type: the same index in another list is fine
    lg.govern("register_type", {"type": LICENCE}, [reg, edu], T0 + 3 * DAY)
    lg.govern("grant", {"agency": "edu", "type": "licence", "from": T0, "until": UNTIL},
              [reg, edu], T0 + 3 * DAY)
    lg.govern("grant", {"agency": "reg", "type": "diploma", "from": T0, "until": UNTIL},
              [reg, edu], T0 + 3 * DAY)
    accept(lg, [issue(edu, 3, T0 + 4 * DAY, kind="licence", index=7),
                issue(reg, 4, T0 + 4 * DAY, index=7)], T0 + 4 * DAY)
    # ... and even after a status change the index stays used
    accept(lg, [status(edu, 1, "revoked", T0 + 5 * DAY)], T0 + 5 * DAY)
    assert reject(lg, issue(edu, 5, T0 + 6 * DAY, index=7), T0 + 6 * DAY) == "status_index_used"


def test_status_index_past_the_last_list_is_refused(lg: LedgerHarness,
                                                    agencies: dict[str, Agency]) -> None:
    """An issuer's credentials of a type fill STATUS_LISTS lists of STATUS_LIST_SIZE entries
    (ADR 55): an index past the last could never be read, so such a credential would show
    "undetermined" for good, revoked or not (ADR 46). An index in a later list is taken."""
    edu = agencies["edu"]
    last = STATUS_LISTS * STATUS_LIST_SIZE
    past = issue(edu, 1, T0 + DAY, index=last)
    assert reject(lg, past, T0 + DAY) == "status_index_out_of_range"
    accept(lg, [issue(edu, 2, T0 + DAY, index=last - 1),
                issue(edu, 3, T0 + DAY, index=STATUS_LIST_SIZE),
                issue(edu, 4, T0 + DAY, index=STATUS_LIST_SIZE - 1)], T0 + DAY)


def test_status_index_reused_in_one_block(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    a, b = issue(edu, 1, T0 + DAY, index=9), issue(edu, 2, T0 + DAY, index=9)
    r = lg.commit([a, b], T0 + DAY)
    assert [tx for tx, _ in r.accepted] == [a]
    assert [e.code for _, e in r.rejected] == ["status_index_used"]
    assert lg.store.credential(cid(2)) is None


# --- status --------------------------------------------------------------------------------------


def test_status_unknown_credential(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    tx = status(agencies["edu"], "nope", "revoked", T0 + DAY)
    assert reject(lg, tx, T0 + DAY) == "unknown_credential"


def test_status_transitions(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    t = T0 + DAY
    accept(lg, [issue(edu, 1, t)], t)
    original = lg.store.credential(cid(1))
    assert original is not None
    assert original.status == "valid"
    assert reject(lg, status(edu, 1, "valid", t + 1), t + 1) == "illegal_transition"
    for i, new in enumerate(["suspended", "valid", "suspended", "revoked"], start=2):
        accept(lg, [status(edu, 1, new, t + i)], t + i)
        c = lg.store.credential(cid(1))
        assert c is not None
        assert c.status == new
        # nothing but the status changes
        assert c == Credential(original.credential_id, original.issuer, original.type, new,
                               original.status_index, original.valid_from, original.valid_until,
                               original.issued_at, original.issuer_kid)
    for new in ["valid", "suspended", "revoked"]:
        assert reject(lg, status(edu, 1, new, t + 10), t + 10) == "illegal_transition"


def test_status_suspended_to_suspended_illegal(lg: LedgerHarness,
                                               agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    accept(lg, [status(edu, 1, "suspended", T0 + DAY + 1)], T0 + DAY + 1)
    assert reject(lg, status(edu, 1, "suspended", T0 + DAY + 2), T0 + DAY + 2) \
        == "illegal_transition"
    accept(lg, [status(edu, 1, "revoked", T0 + DAY + 3)], T0 + DAY + 3)
    assert lg.store.credential(cid(1)).status == "revoked"  # type: ignore[union-attr]


def test_status_transitions_in_one_block(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    t = T0 + DAY
    txs = [issue(edu, 1, t), status(edu, 1, "suspended", t), status(edu, 1, "valid", t + 1),
           status(edu, 1, "valid", t + 2), status(edu, 1, "revoked", t + 3)]
    r = lg.commit(txs, t)
    assert [tx for tx, _ in r.accepted] == [txs[0], txs[1], txs[2], txs[4]]
    assert [(tx, e.code) for tx, e in r.rejected] == [(txs[3], "illegal_transition")]
    assert lg.store.credential(cid(1)).status == "revoked"  # type: ignore[union-attr]


def test_status_by_other_agency(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    assert reject(lg, status(tax, 1, "suspended", T0 + 2 * DAY), T0 + 2 * DAY) \
        == "not_authorized"
    assert lg.store.credential(cid(1)).status == "valid"  # type: ignore[union-attr]
    lg.govern("grant", {"agency": "tax", "type": "diploma", "from": T0 + 3 * DAY,
                        "until": T0 + 4 * DAY}, [reg, edu], T0 + 2 * DAY)
    # grant not open yet
    assert reject(lg, status(tax, 1, "suspended", T0 + 2 * DAY), T0 + 2 * DAY + 1) \
        == "not_authorized"
    accept(lg, [status(tax, 1, "suspended", T0 + 3 * DAY)], T0 + 3 * DAY)
    assert lg.store.credential(cid(1)).status == "suspended"  # type: ignore[union-attr]
    # the issuer itself may still act, grant or not
    accept(lg, [status(edu, 1, "valid", T0 + 3 * DAY)], T0 + 3 * DAY + 1)
    # after tax's grant ends, it may not
    assert reject(lg, status(tax, 1, "revoked", T0 + 4 * DAY), T0 + 4 * DAY) == "not_authorized"


def test_an_approval_is_its_deciding_agencys_alone(lg: LedgerHarness,
                                                   agencies: dict[str, Agency]) -> None:
    """Every agency may hold the approval grant (each decides its own services); a grant does
    not let one agency revoke or suspend another's decision."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    approval = {"id": "approval", "title": "Administrative approval",
                "claims": {"service": "string", "decision": "string"}, "derived": {}}
    lg.govern("register_type", {"type": approval}, [reg, edu], T0 + DAY)
    for who in ("edu", "tax"):
        lg.govern("grant", {"agency": who, "type": "approval", "from": T0, "until": UNTIL},
                  [reg, edu], T0 + DAY)
    accept(lg, [issue(edu, "decided", T0 + 2 * DAY, kind="approval")], T0 + 2 * DAY)
    assert reject(lg, status(tax, "decided", "revoked", T0 + 2 * DAY), T0 + 2 * DAY + 1) \
        == "not_authorized"
    accept(lg, [status(edu, "decided", "revoked", T0 + 2 * DAY)], T0 + 2 * DAY + 2)


def test_status_by_issuer_after_its_grant_ended(lg: LedgerHarness,
                                                agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    accept(lg, [status(edu, 1, "revoked", UNTIL + DAY)], UNTIL + DAY)
    assert lg.store.credential(cid(1)).status == "revoked"  # type: ignore[union-attr]


def test_status_signed_by_outsider(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    accept(lg, [issue(agencies["edu"], 1, T0 + DAY)], T0 + DAY)
    assert reject(lg, status(OUTSIDER, 1, "revoked", T0 + DAY), T0 + DAY) == "unknown_key"


def test_two_signatures_on_issue(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    tx = issue(edu, 1, T0 + DAY).sign(agencies["reg"].issuer_key)
    assert reject(lg, tx, T0 + DAY) == "bad_signers"


# --- governance ----------------------------------------------------------------------------------


def test_governance_leaves_older_registries_alone(ledger: LedgerHarness,
                                                  agencies: dict[str, Agency]) -> None:
    """A new registry shares every map a change did not touch with the one before it (ADR 50),
    so no action may change an older registry: its bytes are stored per block and its answers
    memoised. Each action in turn (and two in one block), each older registry's bytes checked
    after every step."""
    signers = list(agencies.values())
    rule_v1 = {"service": "housing", "title": "Housing", "area": "micro_allowances",
               "agency": "edu", "needs": [{"type": "diploma", "claims": ["degree"]}],
               "params": [], "subject": [], "clauses": [],
               "otherwise": {"decision": "approved", "reason": "ok"}, "fast_track": "",
               "fast_track_reason": "fast", "documents": {"fast_track": [], "standard": []}}
    policy = {"categories": [{"name": "tax", "weight": 100}], "base": 600, "min": 0,
              "max": 1000, "half_life": 0, "serious_at": 50}
    steps: list[list[tuple[str, dict[str, object]]]] = [
        [("register_type", {"type": DIPLOMA})],
        [("grant", {"agency": "edu", "type": "diploma", "from": T0, "until": UNTIL})],
        [("grant", {"agency": "edu", "type": "diploma", "from": UNTIL, "until": UNTIL + DAY})],
        [("withdraw_grant", {"agency": "edu", "type": "diploma", "at": T1 + 50})],
        [("grant", {"agency": "edu", "type": "diploma", "from": UNTIL + DAY,
                    "until": UNTIL + 2 * DAY}),
         ("withdraw_grant", {"agency": "edu", "type": "diploma", "at": UNTIL + 3 * DAY})],
        [("set_credit_policy", {"policy": policy})],
        [("grant_credit", {"agency": "edu", "category": "tax", "from": T0, "until": UNTIL})],
        [("grant_credit", {"agency": "edu", "category": "tax", "from": UNTIL,
                           "until": UNTIL + DAY})],
        [("withdraw_credit_grant", {"agency": "edu", "category": "tax", "at": T1 + 50})],
        [("register_rule", {"rule": rule_v1})],
        [("register_rule", {"rule": {**rule_v1, "title": "Housing, second version"}})],
        [("add_agency", {"agency": NEW.spec()})],
        [("rotate_key", {"agency": "reg", "role": "node",
                         "new_key": PrivateKey.generate().public.raw, "at": T1 + 60})],
        [("invalidate_key", {"kid": NEW.node_key.kid, "from": T1 + 20})],
        [("set_quorum", {"quorum": 3})],
        [("remove_agency", {"agency": "new"})],
    ]
    older: list[tuple[Registry, bytes]] = []
    t = T1
    for block in steps:
        # the data encoded afresh, not to_bytes() (cached once built: it would not see a change)
        older.append((ledger.registry, codec.encode(_keys_to_hex(ledger.registry.data))))
        seq = ledger.registry.gov_seq
        txs = [ledger.gov_tx(action, args, signers, seq=seq + n)
               for n, (action, args) in enumerate(block, 1)]
        accept(ledger, txs, t)
        t += 10
        assert ledger.registry.gov_seq == seq + len(block)
        for r, b in older:
            assert codec.encode(_keys_to_hex(r.data)) == b, \
                f"{block[0][0]} changed an older registry"
            assert r.to_bytes() == b
        # built from the entries it shares, the bytes are still the whole data's encoding
        assert ledger.registry.to_bytes() == codec.encode(_keys_to_hex(ledger.registry.data))
    # what the shared maps add up to is what the store keeps
    assert Registry.from_bytes(ledger.registry.to_bytes()).data == ledger.registry.data
    assert ledger.reopen().registry.to_bytes() == ledger.registry.to_bytes()
    assert ledger.registry.agency("new")["removed"] == T1 + 150
    assert ledger.registry.data["grants"]["edu"]["diploma"] == [
        [T0, T1 + 50], [UNTIL, UNTIL], [UNTIL + DAY, UNTIL + 2 * DAY]]


def test_governance_quorum(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    one = ledger.gov_tx("register_type", {"type": DIPLOMA}, [reg])
    assert reject(ledger, one, T1) == "no_quorum"
    assert ledger.registry.type_def("diploma") is None
    assert ledger.registry.gov_seq == 0
    ledger.govern("register_type", {"type": DIPLOMA}, [edu, tax], T1)
    assert ledger.registry.gov_seq == 1
    td = ledger.registry.type_def("diploma")
    assert td is not None
    assert td["claims"] == DIPLOMA["claims"]
    assert td["derived"] == DIPLOMA["derived"]
    assert td["registered"] == T1
    # all three is of course also enough
    ledger.govern("set_quorum", {"quorum": 3}, [reg, edu, tax], T1 + 1)
    assert ledger.registry.quorum == 3
    assert reject(ledger, ledger.gov_tx("set_quorum", {"quorum": 1}, [reg, edu]), T1 + 2) \
        == "no_quorum"
    ledger.govern("set_quorum", {"quorum": 1}, [reg, edu, tax], T1 + 3)
    ledger.govern("set_quorum", {"quorum": 2}, [tax], T1 + 4)
    assert ledger.registry.quorum == 2


def test_no_network_outgrows_what_one_transaction_or_checkpoint_carries(
        ledger: LedgerHarness, agencies: dict[str, Agency], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction carries at most 64 signatures and a checkpoint 100 co-signatures: a quorum
    above 64 would freeze governance for good, a 65th signature would make a proposal no one
    can read again, more than 100 agencies would stop every checkpoint (ADR 48)."""
    from ledger.errors import DecodeError
    from ledger.tx import MAX_SIGS

    reg, edu = agencies["reg"], agencies["edu"]
    with pytest.raises(DecodeError, match="quorum"):
        ledger.gov_tx("set_quorum", {"quorum": MAX_SIGS + 1}, [reg, edu])
    many = [demo_agency(f"a{i:02d}", f"Agency {i}", "caps") for i in range(MAX_SIGS)]
    full = ledger.gov_tx("set_quorum", {"quorum": 2}, many)
    assert len(full.sigs) == MAX_SIGS
    assert Tx.from_bytes(full.raw) == full  # 64 still parse
    with pytest.raises(DecodeError, match="at most 64 signatures"):
        full.sign(reg.issuer_key)
    with pytest.raises(DecodeError, match="more than 64"):
        genesis_tx("caps", [*many, reg], 2, T0)
    monkeypatch.setattr("ledger.state.MAX_SIGNATURES", 3)  # the harness has three agencies
    fourth = demo_agency("fourth", "Fourth", "caps")
    assert reject(ledger, ledger.gov_tx("add_agency", {"agency": fourth.spec()}, [reg, edu]),
                  T1) == "too_many_agencies"
    assert ledger.registry.agency("fourth") is None


def test_governance_node_key_does_not_count(ledger: LedgerHarness,
                                            agencies: dict[str, Agency]) -> None:
    reg = agencies["reg"]
    tx = make_tx(NET, "governance", {"seq": 1, "action": "set_quorum", "args": {"quorum": 1}},
                 [reg.issuer_key, reg.node_key])
    assert reject(ledger, tx, T1) == "key_not_valid"


def test_governance_sequence(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    assert lg.registry.gov_seq == 2
    for seq in (0 + 1, 2, 4, 100):
        tx = lg.gov_tx("set_quorum", {"quorum": 3}, [reg, edu], seq=seq)
        assert reject(lg, tx, T0 + DAY) == "bad_sequence"
    lg.govern("set_quorum", {"quorum": 3}, [reg, edu, tax], T0 + DAY)
    assert lg.registry.gov_seq == 3


def test_governance_replay_with_other_signers(ledger: LedgerHarness,
                                              agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    args = {"type": DIPLOMA}
    first = ledger.gov_tx("register_type", args, [reg, edu])
    accept(ledger, [first], T1)
    replay = ledger.gov_tx("register_type", args, [reg, tax], seq=1)
    assert replay.payload == first.payload
    assert replay.txid != first.txid
    assert reject(ledger, replay, T1 + 1) == "bad_sequence"
    # the identical transaction is a duplicate, not a rejection
    r = ledger.commit([first], T1 + 2)
    assert r.header is None
    assert r.rejected == []
    assert [(tx, h) for tx, _, h in r.duplicates] == [(first, 1)]


def test_governance_signer_from_removed_agency(lg: LedgerHarness,
                                               agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    lg.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + DAY)
    tx = lg.gov_tx("set_quorum", {"quorum": 1}, [reg, tax])
    assert reject(lg, tx, T0 + 2 * DAY) == "key_not_valid"
    lg.govern("set_quorum", {"quorum": 1}, [reg, edu], T0 + 2 * DAY)


def test_remove_agency_twice_and_unknown(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    lg.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + DAY)
    assert lg.registry.agency("tax")["removed"] == T0 + DAY  # type: ignore[index]
    assert reject(lg, lg.gov_tx("remove_agency", {"agency": "tax"}, [reg, edu]), T0 + 2 * DAY) \
        == "unknown_agency"
    assert reject(lg, lg.gov_tx("remove_agency", {"agency": "nobody"}, [reg, edu]),
                  T0 + 2 * DAY) == "unknown_agency"


def test_remove_agency_below_quorum(ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu, tax], T1)
    tx = ledger.gov_tx("remove_agency", {"agency": "edu"}, [reg, edu])
    assert reject(ledger, tx, T1 + 1) == "quorum_unreachable"


def test_add_agency_then_issue_after_grant(lg: LedgerHarness,
                                           agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    t = T0 + DAY
    # an unknown agency cannot issue at all
    assert reject(lg, issue(NEW, 1, t), t) == "unknown_key"
    lg.govern("add_agency", {"agency": NEW.spec()}, [reg, edu], t)
    assert lg.registry.current_agencies(t) == ["edu", "new", "reg", "tax"]
    assert lg.registry.current_agencies(t - 1) == ["edu", "reg", "tax"]
    assert lg.registry.agency("new") == {"name": "New Agency", "added": t, "removed": None}
    assert reject(lg, issue(NEW, 1, t + 1), t + 1) == "not_granted"
    lg.govern("grant", {"agency": "new", "type": "diploma", "from": t, "until": t + DAY},
              [reg, edu], t + 2)
    accept(lg, [issue(NEW, 1, t + 3)], t + 3)
    c = lg.store.credential(cid(1))
    assert c is not None
    assert c.issuer == "new"
    assert c.issuer_kid == NEW.issuer_key.kid
    # the new member counts toward quorum
    lg.govern("set_quorum", {"quorum": 3}, [NEW, reg], t + 4)
    assert lg.registry.quorum == 3


def test_add_agency_conflicts(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    signers = [reg, edu]
    dup_id = demo_agency("edu", "Another Edu", label="other").spec()
    assert reject(lg, lg.gov_tx("add_agency", {"agency": dup_id}, signers), T0 + DAY) \
        == "agency_exists"
    reused = dict(NEW.spec(), issuer_key=edu.issuer_key.public.raw)
    assert reject(lg, lg.gov_tx("add_agency", {"agency": reused}, signers), T0 + DAY) \
        == "key_reused"
    same = dict(NEW.spec(), issuer_key=NEW.node_key.public.raw)
    assert reject(lg, lg.gov_tx("add_agency", {"agency": same}, signers), T0 + DAY) \
        == "key_reused"
    assert "new" not in lg.registry.agencies()


def test_rotate_key(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    new_key = demo_agency("edu", "Education Office", label="rotated").issuer_key
    old_kid = edu.issuer_key.kid
    at = T0 + 10 * DAY
    lg.govern("rotate_key", {"agency": "edu", "role": "issuer",
                             "new_key": new_key.public.raw, "at": at}, [reg, edu], T0 + DAY)
    r = lg.registry
    assert r.key(old_kid)["invalid_from"] == at  # type: ignore[index]
    assert r.key(new_key.kid) == {"agency": "edu", "role": "issuer",
                                  "pub": new_key.public.raw, "valid_from": at,
                                  "invalid_from": None}
    history = r.keys_of("edu")
    assert [kid for kid, _ in history][-1] == new_key.kid
    assert {kid for kid, _ in history} == {edu.node_key.kid, old_kid, new_key.kid}
    assert [k["valid_from"] for _, k in history] == sorted(k["valid_from"] for _, k in history)
    # before `at`: the old key works, the new one does not yet
    assert reject(lg, issue(edu, 1, at - 1, key=new_key), at - 1) == "key_not_valid"
    accept(lg, [issue(edu, 2, at - 1)], at - 1)
    # from `at`: the reverse
    assert reject(lg, issue(edu, 3, at), at) == "key_not_valid"
    accept(lg, [issue(edu, 4, at, key=new_key)], at)
    assert lg.store.credential(cid(2)).issuer_kid == old_kid  # type: ignore[union-attr]
    assert lg.store.credential(cid(4)).issuer_kid == new_key.kid  # type: ignore[union-attr]
    # governance, too, needs the new key from `at`
    old_sig = lg.gov_tx("set_quorum", {"quorum": 3}, [reg, edu])
    assert reject(lg, old_sig, at + 1) == "key_not_valid"
    gov = make_tx(NET, "governance", {"seq": lg.registry.gov_seq + 1, "action": "set_quorum",
                                      "args": {"quorum": 3}}, [reg.issuer_key, new_key])
    accept(lg, [gov], at + 2)
    assert lg.registry.quorum == 3


def test_rotate_key_in_the_past_takes_effect_at_block_time(
        lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    new_key = demo_agency("edu", "Education Office", label="rotated").issuer_key
    t = T0 + 3 * DAY
    lg.govern("rotate_key", {"agency": "edu", "role": "issuer",
                             "new_key": new_key.public.raw, "at": T0}, [reg, edu], t)
    assert lg.registry.key(edu.issuer_key.kid)["invalid_from"] == t  # type: ignore[index]
    assert lg.registry.key(new_key.kid)["valid_from"] == t  # type: ignore[index]
    # history before the rotation is untouched
    assert lg.registry.key_valid(edu.issuer_key.kid, t - 1, "issuer")
    assert not lg.registry.key_valid(new_key.kid, t - 1, "issuer")


def test_rotate_node_key(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    new_node = demo_agency("edu", "Education Office", label="rotated").node_key
    at = T0 + 2 * DAY
    lg.govern("rotate_key", {"agency": "edu", "role": "node", "new_key": new_node.public.raw,
                             "at": at}, [reg, edu], T0 + DAY)
    assert lg.registry.node_keys(at - 1)["edu"] == [edu.node_key.public]
    assert lg.registry.node_keys(at)["edu"] == [new_node.public]
    # the issuer key is not affected
    assert lg.registry.key_valid(edu.issuer_key.kid, at + DAY, "issuer")


def test_rotate_key_errors(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    signers = [reg, edu]
    reused = lg.gov_tx("rotate_key", {"agency": "edu", "role": "issuer",
                                      "new_key": reg.issuer_key.public.raw, "at": T0}, signers)
    assert reject(lg, reused, T0 + DAY) == "key_reused"
    unknown = lg.gov_tx("rotate_key", {"agency": "nobody", "role": "issuer",
                                       "new_key": NEW.issuer_key.public.raw, "at": T0}, signers)
    assert reject(lg, unknown, T0 + DAY) == "unknown_agency"


def test_set_quorum_unreachable(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    tx = lg.gov_tx("set_quorum", {"quorum": 4}, [reg, edu, tax])
    assert reject(lg, tx, T0 + DAY) == "quorum_unreachable"
    assert lg.registry.quorum == 2
    lg.govern("set_quorum", {"quorum": 3}, [reg, edu], T0 + DAY)
    assert lg.registry.quorum == 3


def test_no_change_may_leave_fewer_agencies_that_can_sign_than_the_quorum(
        lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Invalidating issuer keys, each step signed by a quorum, could leave fewer agencies able
    to sign governance than the quorum: nothing could ever change the registry again. Such a
    step is refused (ADR 46); a rotation (a successor key) and a first invalidation are not."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    lg.govern("invalidate_key", {"kid": tax.issuer_key.kid, "from": T0 + DAY}, [reg, edu],
              T0 + DAY)  # three agencies, quorum 2: two can still sign
    second = lg.gov_tx("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + DAY},
                       [reg, edu])
    assert reject(lg, second, T0 + DAY + 1) == "quorum_unreachable"
    # a key with a planned end counts no more than one already ended
    planned = lg.gov_tx("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + 9 * DAY},
                        [reg, edu])
    assert reject(lg, planned, T0 + DAY + 1) == "quorum_unreachable"
    # edu rotated to a new key (it counts), then the old one may be invalidated
    lg.govern("rotate_key", {"agency": "edu", "role": "issuer",
                             "new_key": NEW.issuer_key.public.raw, "at": T0 + 2 * DAY},
              [reg, edu], T0 + DAY + 2)
    assert lg.registry.quorum == 2 and lg.registry.gov_seq >= 2


def test_register_type_twice(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    other = dict(DIPLOMA, title="Another diploma")
    tx = lg.gov_tx("register_type", {"type": other}, [agencies["reg"], agencies["edu"]])
    assert reject(lg, tx, T0 + DAY) == "type_exists"
    assert lg.registry.type_def("diploma")["title"] == DIPLOMA["title"]  # type: ignore[index]


def test_grant_errors(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    signers = [agencies["reg"], agencies["edu"]]
    tx = lg.gov_tx("grant", {"agency": "edu", "type": "passport", "from": T0, "until": UNTIL},
                   signers)
    assert reject(lg, tx, T0 + DAY) == "unknown_type"
    tx = lg.gov_tx("grant", {"agency": "nobody", "type": "diploma", "from": T0, "until": UNTIL},
                   signers)
    assert reject(lg, tx, T0 + DAY) == "unknown_agency"


def test_repeated_txid_is_noop(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    tx = issue(edu, 1, T0 + DAY)
    accept(lg, [tx], T0 + DAY)
    head = lg.store.head
    assert head is not None
    loc = lg.store.tx_location(tx.txid)
    assert loc is not None
    r = lg.commit([tx], T0 + 2 * DAY)
    assert r.header is None
    assert r.accepted == []
    assert r.rejected == []
    assert r.duplicates == [(tx, loc[0], loc[1])]
    assert lg.store.head == head
    # mixed with a new tx, the duplicate is still left out and the log grows by one only
    other = issue(edu, 2, T0 + 2 * DAY)
    r = lg.commit([tx, other, other], T0 + 2 * DAY)
    assert [t for t, _ in r.accepted] == [other]
    assert r.duplicates[0] == (tx, loc[0], loc[1])
    assert r.duplicates[1][0] == other
    assert r.duplicates[1][1] == head.log_size
    assert r.duplicates[1][2] == head.height + 1
    assert lg.store.head.log_size == head.log_size + 1  # type: ignore[union-attr]
    # the genesis transaction, too, is a duplicate
    r = lg.commit([lg.genesis], T0 + 3 * DAY)
    assert r.duplicates == [(lg.genesis, 0, 0)]


def test_store_reads_per_transaction(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A new issue reads its credential and status index once each, and not its tx id: a
    committed issue anchored its credential, so an absent credential rules out a repeat. A
    status change (its credential exists) still reads its tx id."""
    edu = agencies["edu"]
    accept(lg, [issue(edu, "read 0", T0 + DAY)], T0 + DAY)
    reads: list[bytes] = []

    class Counting:
        def get(self, key: bytes) -> bytes | None:
            reads.append(key)
            return lg.store.get(key)

    head, reg = lg.store.head, lg.store.registry
    assert head is not None and reg is not None
    new = [issue(edu, f"read {n}", T0 + DAY) for n in (1, 2, 3)]
    change = status(edu, "read 0", "suspended", T0 + DAY)
    r = build_block(head, reg, Counting(), lg.store.frontier, [*new, change], T0 + DAY)
    assert [t for t, _ in r.accepted] == [*new, change]
    assert sorted(k[:1] for k in reads) == [b"c"] * 4 + [b"i"] * 3 + [b"t"]
    assert len(set(reads)) == len(reads)  # nothing read twice
    assert txid_key(change.txid) in reads


def test_rejected_then_fixed_resubmission(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A rejected txid is not remembered: the same bytes may succeed once the state allows."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    tx = issue(tax, 1, T0 + DAY)
    assert reject(lg, tx, T0 + DAY) == "not_granted"
    lg.govern("grant", {"agency": "tax", "type": "diploma", "from": T0, "until": UNTIL},
              [reg, edu], T0 + DAY)
    accept(lg, [tx], T0 + DAY + 60)


def test_mixed_block_rejections_change_nothing(lg: LedgerHarness,
                                               agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    t = T0 + DAY
    good = issue(edu, 1, t)
    bad_issue = issue(tax, 2, t)
    bad_gov = lg.gov_tx("set_quorum", {"quorum": 3}, [reg])
    good_gov = lg.gov_tx("set_quorum", {"quorum": 1}, [reg, edu])
    r = lg.commit([bad_issue, good, bad_gov, good_gov], t)
    assert [x for x, _ in r.accepted] == [good, good_gov]
    assert [(x, e.code) for x, e in r.rejected] == [(bad_issue, "not_granted"),
                                                  (bad_gov, "no_quorum")]
    assert lg.store.credential(cid(2)) is None
    assert lg.store.tx_location(bad_issue.txid) is None
    assert lg.store.tx_location(bad_gov.txid) is None
    assert lg.registry.quorum == 1
    assert lg.registry.gov_seq == 3
    assert lg.store.head.log_size == 5  # type: ignore[union-attr]


def test_block_time_never_goes_back(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    accept(lg, [issue(edu, 1, T0 + 2 * DAY)], T0 + 2 * DAY)
    r = lg.commit([issue(edu, 2, T0 + 2 * DAY - 60)], T0)
    assert r.header is not None
    assert r.header.time == T0 + 2 * DAY
    assert lg.store.credential(cid(2)).issued_at == T0 + 2 * DAY  # type: ignore[union-attr]


def test_a_credential_dated_before_its_block_is_refused(lg: LedgerHarness,
                                                         agencies: dict[str, Agency]) -> None:
    """A stolen issuer key must not anchor credentials dated before the compromise: the
    verifier judges the key at valid_from (ADR 43)."""
    edu = agencies["edu"]
    t = T0 + 2 * DAY
    early = issue_tx(NET, edu, cid("early"), "diploma", 7, t - MAX_BACKDATE - 1, t + DAY, t)
    assert reject(lg, early, t) == "backdated"
    edge = issue_tx(NET, edu, cid("edge"), "diploma", 8, t - MAX_BACKDATE, t + DAY, t)
    later = issue_tx(NET, edu, cid("later"), "diploma", 9, t + 30 * DAY, t + 60 * DAY, t)
    accept(lg, [edge, later], t)  # a licence valid from next month is fine


def test_a_refused_status_change_cannot_be_replayed_later(lg: LedgerHarness,
                                                           agencies: dict[str, Agency]) -> None:
    """A signed "reinstate" refused while the credential was valid used to take effect when
    replayed after a later suspension (by anyone: POST /v1/tx needs no token)."""
    edu = agencies["edu"]
    t = T0 + 2 * DAY
    accept(lg, [issue(edu, "r", t)], t)
    reinstate = status(edu, "r", "valid", t)
    assert reject(lg, reinstate, t) == "illegal_transition"
    accept(lg, [status(edu, "r", "suspended", t + 2 * MAX_BACKDATE)], t + 2 * MAX_BACKDATE)
    assert reject(lg, reinstate, t + 2 * MAX_BACKDATE + 1) == "stale"
    assert lg.store.credential(cid("r")).status == "suspended"  # type: ignore[union-attr]
    # within the window a change signed a little earlier (a retry, a slow clock) is fine
    accept(lg, [status(edu, "r", "valid", t + MAX_BACKDATE + 2)], t + 2 * MAX_BACKDATE + 2)



def test_a_status_change_dated_ahead_is_refused(lg: LedgerHarness,
                                                agencies: dict[str, Agency]) -> None:
    """A change signed by a clock a day fast, refused (say, a "reinstate" while valid), would
    otherwise stay replayable for that day: the stale bound counts from its ts."""
    edu = agencies["edu"]
    t = T0 + 2 * DAY
    accept(lg, [issue(edu, "f", t)], t)
    ahead = status(edu, "f", "valid", t + DAY)
    assert reject(lg, ahead, t) == "future_dated"
    # the edge: MAX_BACKDATE ahead of the block is taken (a slow node clock), a second more not
    assert reject(lg, status(edu, "f", "suspended", t + MAX_BACKDATE + 1), t) == "future_dated"
    accept(lg, [status(edu, "f", "suspended", t + 60)], t + 60)
    assert reject(lg, ahead, t + 7200) == "future_dated"  # two hours later: still refused
    assert lg.store.credential(cid("f")).status == "suspended"  # type: ignore[union-attr]
    # a clock up to MAX_BACKDATE fast is fine
    accept(lg, [status(edu, "f", "valid", t + 7200 + MAX_BACKDATE)], t + 7200)


# --- queries -----------------------------------------------------------------------------------


def test_grants_at(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    lg.govern("register_type", {"type": LICENCE}, [reg, edu], T0 + DAY)
    lg.govern("grant", {"agency": "tax", "type": "licence", "from": T0 + 10 * DAY,
                        "until": T0 + 20 * DAY}, [reg, edu], T0 + DAY)
    lg.govern("grant", {"agency": "edu", "type": "licence", "from": T0 + 15 * DAY,
                        "until": T0 + 30 * DAY}, [reg, edu], T0 + DAY)
    r = lg.registry
    assert r.grants_at(T0 - 1) == {}
    assert r.grants_at(T0) == {"edu": ["diploma"]}
    assert r.grants_at(T0 + 10 * DAY - 1) == {"edu": ["diploma"]}
    assert r.grants_at(T0 + 10 * DAY) == {"edu": ["diploma"], "tax": ["licence"]}
    assert r.grants_at(T0 + 15 * DAY) == {"edu": ["diploma", "licence"], "tax": ["licence"]}
    assert r.grants_at(T0 + 20 * DAY) == {"edu": ["diploma", "licence"]}
    assert r.grants_at(T0 + 30 * DAY) == {"edu": ["diploma"]}
    assert r.grants_at(UNTIL) == {}
    assert r.grant_covers("tax", "licence", T0 + 10 * DAY)
    assert not r.grant_covers("tax", "licence", T0 + 20 * DAY)
    assert not r.grant_covers("tax", "diploma", T0 + 15 * DAY)


def test_two_grant_windows(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    for start in (T0 + 10 * DAY, T0 + 30 * DAY):
        lg.govern("grant", {"agency": "tax", "type": "diploma", "from": start,
                            "until": start + DAY}, [reg, edu], T0 + DAY)
    r = lg.registry
    assert r.grants_at(T0 + 10 * DAY)["tax"] == ["diploma"]
    assert "tax" not in r.grants_at(T0 + 20 * DAY)
    assert r.grants_at(T0 + 30 * DAY)["tax"] == ["diploma"]
    # withdrawing ends every window at `at`, but keeps the past
    lg.govern("withdraw_grant", {"agency": "tax", "type": "diploma", "at": T0 + 10 * DAY + 5},
              [reg, edu], T0 + 2 * DAY)
    r = lg.registry
    assert r.grant_covers("tax", "diploma", T0 + 10 * DAY + 4)
    assert not r.grant_covers("tax", "diploma", T0 + 10 * DAY + 5)
    assert not r.grant_covers("tax", "diploma", T0 + 30 * DAY)
    assert reject(lg, issue(tax, 1, T0 + 30 * DAY), T0 + 30 * DAY) == "not_granted"


def test_type_def_and_registry_round_trip(lg: LedgerHarness) -> None:
    td = lg.registry.type_def("diploma")
    assert td == {"title": DIPLOMA["title"], "claims": DIPLOMA["claims"],
                  "derived": DIPLOMA["derived"], "registered": T1}
    assert lg.registry.type_def("licence") is None
    again = Registry.from_bytes(lg.registry.to_bytes())
    assert again.data == lg.registry.data
    assert again.to_bytes() == lg.registry.to_bytes()


def test_signer_query(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    edu = agencies["edu"]
    tx = issue(edu, 1, T0)
    assert lg.registry.signer(tx, T0 + DAY) == "edu"
    with pytest.raises(TxRejected) as info:
        lg.registry.signer(tx, T0 - 1)
    assert info.value.code == "agency_not_current"


# --- the machine directly ----------------------------------------------------------------------


class _Empty:
    def get(self, key: bytes) -> bytes | None:
        return None


def test_machine_rejection_leaves_overlay_untouched(lg: LedgerHarness,
                                                    agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    m = Machine(lg.registry, _Empty())
    m.apply(issue(edu, 1, T0 + DAY), T0 + DAY)
    snapshot = dict(m.writes)
    registry = m.registry
    bad: list[tuple[Tx, str]] = [
        (issue(edu, 1, T0 + DAY, index=5), "credential_exists"),
        (issue(reg, 2, T0 + DAY), "not_granted"),
        (lg.gov_tx("set_quorum", {"quorum": 9}, [reg, edu]), "quorum_unreachable"),
        (lg.gov_tx("register_type", {"type": DIPLOMA}, [reg, edu]), "type_exists"),
    ]
    for tx, code in bad:
        with pytest.raises(TxRejected) as info:
            m.apply(tx, T0 + DAY)
        assert info.value.code == code
        assert m.writes == snapshot
        assert m.registry is registry
        assert not m.registry_changed
    assert m.credential(cid(1)) is not None
    assert m.credential(cid(2)) is None


def test_machine_signatures_checked_flag(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """With signatures_checked the caller vouches for signatures; without, they are checked."""
    edu = agencies["edu"]
    bad = retamper(issue(edu, 1, T0 + DAY))
    m = Machine(lg.registry, _Empty())
    with pytest.raises(TxRejected) as info:
        m.apply(bad, T0 + DAY)
    assert info.value.code == "bad_signature"
    assert m.writes == {}


def test_registry_history_in_store(lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    heights = [h for h, _ in lg.store.registry_history()]
    assert heights == [0, 1, 2]
    accept(lg, [issue(agencies["edu"], 1, T0 + DAY)], T0 + DAY)
    # a block without governance does not store a new registry
    assert [h for h, _ in lg.store.registry_history()] == [0, 1, 2]
    assert lg.store.registry_at(3).to_bytes() == lg.store.registry_at(2).to_bytes()


def test_store_credential_none_for_unknown(lg: LedgerHarness) -> None:
    assert lg.store.credential(cid("never")) is None



@pytest.mark.parametrize("seed", range(6))
def test_random_governance_never_changes_an_older_registry(tmp_path: Path, seed: int) -> None:
    """Random governance, one to four changes a block (some refused mid-block), now and then
    from a registry read back from the store: after every block each older registry's data
    encodes as it did, and the new registry's bytes are its data's encoding (ADR 50)."""
    import random

    from ledger.store import Store

    rnd = random.Random(seed)
    founders = [demo_agency(a, a.upper()) for a in ("reg", "edu", "tax", "civ")]
    store = Store(tmp_path / "s")
    store.write_block(build_genesis(genesis_tx(NET, founders, 2, T0)))
    signers, added, t = founders[:3], 0, T1
    older: list[tuple[Registry, bytes]] = []
    rule = {"service": "housing", "title": "Housing", "area": "micro_allowances",
            "agency": "edu", "needs": [{"type": "diploma", "claims": ["degree"]}],
            "params": [], "subject": [], "clauses": [],
            "otherwise": {"decision": "approved", "reason": "ok"}, "fast_track": "",
            "fast_track_reason": "fast", "documents": {"fast_track": [], "standard": []}}
    policy = {"categories": [{"name": "tax", "weight": 100}, {"name": "rent", "weight": 50}],
              "base": 600, "min": 0, "max": 1000, "half_life": 0, "serious_at": 50}

    def fresh(r: Registry) -> bytes:
        return codec.encode(_keys_to_hex(r.data))

    try:
        for _ in range(25):
            assert store.registry is not None and store.head is not None
            seq, txs = store.registry.gov_seq, []
            for _n in range(rnd.randint(1, 4)):
                who = rnd.choice(["reg", "edu", "tax", "civ", "nobody",
                                  *[f"n{i}" for i in range(added)]])
                kind, cat = rnd.choice(["diploma", "licence"]), rnd.choice(["tax", "rent"])
                action = rnd.choice(["register_type", "grant", "withdraw_grant",
                                     "set_credit_policy", "grant_credit",
                                     "withdraw_credit_grant", "register_rule", "add_agency",
                                     "rotate_key", "set_quorum", "remove_agency"])
                args: dict[str, object]
                if action == "register_type":
                    args = {"type": rnd.choice([DIPLOMA, LICENCE])}
                elif action == "grant":
                    args = {"agency": who, "type": kind, "from": t - 100, "until": t + 10**6}
                elif action == "withdraw_grant":
                    args = {"agency": who, "type": kind, "at": t + rnd.randint(-50, 50)}
                elif action == "set_credit_policy":
                    args = {"policy": policy}
                elif action == "grant_credit":
                    args = {"agency": who, "category": cat, "from": t - 10, "until": t + 10**6}
                elif action == "withdraw_credit_grant":
                    args = {"agency": who, "category": cat, "at": t + rnd.randint(-50, 50)}
                elif action == "register_rule":
                    args = {"rule": {**rule, "title": f"v{rnd.randint(0, 3)}"}}
                elif action == "add_agency":
                    args = {"agency": demo_agency(f"n{added}", "new", f"s{seed}").spec()}
                    added += 1
                elif action == "rotate_key":
                    args = {"agency": who, "role": "node",
                            "new_key": PrivateKey(rnd.randbytes(32)).public.raw,
                            "at": t + rnd.randint(0, 100)}
                elif action == "set_quorum":
                    args = {"quorum": rnd.randint(1, 2)}
                else:
                    args = {"agency": who if who not in ("reg", "edu", "tax") else "civ"}
                bad_seq = rnd.random() < 0.05  # refused mid-block
                txs.append(governance_tx(NET, seq + len(txs) + 1 + bad_seq, action, args,
                                         signers))
            older.append((store.registry, fresh(store.registry)))
            r = build_block(store.head, store.registry, store, store.frontier, txs, t)
            if r.header is not None:
                store.write_block(r)
            t += rnd.randint(1, 30)
            for reg, was in older:
                assert fresh(reg) == was, "a change reached an older registry"
            assert store.registry.to_bytes() == fresh(store.registry)
            if rnd.random() < 0.2:  # go on from a registry read back from the store
                store.close()
                store = Store(tmp_path / "s")
    finally:
        store.close()


# -- consensus constants and time edges of governance (a mutation round found them untested,
# ADR 54) --------------------------------------------------------------------------------------

def test_the_backdating_window_is_ten_minutes(lg: LedgerHarness,
                                              agencies: dict[str, Agency]) -> None:
    """MAX_BACKDATE is consensus (every node must refuse the same transactions) and a security
    bound (ADR 43): its value is pinned, not only its use."""
    assert MAX_BACKDATE == 600
    t = T0 + 2 * DAY
    eleven_min = issue_tx(NET, agencies["edu"], cid("x"), "diploma", 7, t - 660, t + DAY, t)
    assert reject(lg, eleven_min, t) == "backdated"


def test_a_grant_withdrawn_with_a_past_date_keeps_the_past(lg: LedgerHarness,
                                                           agencies: dict[str, Agency]) -> None:
    """withdraw_grant "at" a time before its block ends the grant at the block time: the
    diploma anchored at T0 + DAY stays issued under a grant."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    accept(lg, [issue(edu, 1, T0 + DAY)], T0 + DAY)
    lg.govern("withdraw_grant", {"agency": "edu", "type": "diploma", "at": T0},
              [reg, tax], T0 + 2 * DAY)
    assert lg.registry.data["grants"]["edu"]["diploma"] == [[T0, T0 + 2 * DAY]]
    assert lg.registry.grant_covers("edu", "diploma", T0 + DAY)
    assert not lg.registry.grant_covers("edu", "diploma", T0 + 2 * DAY)


def test_a_removed_agency_cannot_sign_at_its_removal_time(lg: LedgerHarness,
                                                          agencies: dict[str, Agency]) -> None:
    """Membership is [added, removed): in a block at the removal's own time the agency is
    already out."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    removed_at = T0 + 2 * DAY
    lg.govern("remove_agency", {"agency": "edu"}, [reg, tax], removed_at)
    assert not lg.registry.agency_current("edu", removed_at)
    assert reject(lg, issue(edu, 1, removed_at), removed_at) == "agency_not_current"


# -- found by mutation round 17 (who may sign what, bounds, replays) ---------------------------

def test_a_registry_from_outside_with_a_quorum_below_one_is_refused(lg: LedgerHarness) -> None:
    """A snapshot or a wallet's --registry with quorum 0 would call every checkpoint final
    with no signature at all: the shape check names it before anything trusts it."""
    from ledger.errors import DecodeError

    plain = codec.decode(lg.registry.to_bytes(), max_size=1 << 24)
    for quorum in (0, -1):
        with pytest.raises(DecodeError) as info:
            Registry.from_unverified(codec.encode({**plain, "quorum": quorum}))
        assert info.value.where == "registry.quorum"
    assert Registry.from_unverified(codec.encode({**plain, "quorum": 1})).quorum == 1


def test_a_network_takes_its_hundredth_agency_and_not_a_hundred_and_first(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Every current agency's node co-signs checkpoints and a checkpoint carries at most
    MAX_SIGNATURES (100) lines (ADR 48): the hundredth member is taken, the 101st refused, and
    a member removed makes room again. Built for real, 97 add_agency on three founders."""
    from ledger.checkpoint import MAX_SIGNATURES

    reg, edu = agencies["reg"], agencies["edu"]
    many = [demo_agency(f"m{i:02d}", f"Member {i}", "hundred") for i in range(98)]
    seq = ledger.registry.gov_seq
    txs = [ledger.gov_tx("add_agency", {"agency": a.spec()}, [reg, edu], seq=seq + n)
           for n, a in enumerate(many[:97], 1)]
    accept(ledger, txs, T1)
    assert len(ledger.registry.current_agencies(T1)) == MAX_SIGNATURES == 100
    last = ledger.gov_tx("add_agency", {"agency": many[97].spec()}, [reg, edu])
    assert reject(ledger, last, T1 + 1) == "too_many_agencies"
    # the cap counts current members: one removed, the next is taken
    ledger.govern("remove_agency", {"agency": "m00"}, [reg, edu], T1 + 2)
    ledger.govern("add_agency", {"agency": many[97].spec()}, [reg, edu], T1 + 3)
    assert len(ledger.registry.current_agencies(T1 + 3)) == 100


def test_a_rotation_ends_a_key_already_set_to_end_later(lg: LedgerHarness,
                                                        agencies: dict[str, Agency]) -> None:
    """A key whose retirement was planned for next month and that is rotated today (it leaked)
    ends today: the old and the new key are never valid together, so a thief holding the old
    one cannot anchor credentials, or sign governance, until the planned date."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    planned = T0 + 30 * DAY
    lg.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": planned}, [reg, tax],
              T0 + DAY)
    new_key = demo_agency("edu", "Education Office", label="rotated").issuer_key
    now = T0 + 2 * DAY
    lg.govern("rotate_key", {"agency": "edu", "role": "issuer", "new_key": new_key.public.raw,
                             "at": now}, [reg, tax], now)
    assert lg.registry.key(edu.issuer_key.kid)["invalid_from"] == now  # type: ignore[index]
    t = now + DAY
    assert reject(lg, issue(edu, "thief", t), t) == "key_not_valid"
    assert reject(lg, lg.gov_tx("set_quorum", {"quorum": 1}, [edu, reg]), t) == "key_not_valid"
    accept(lg, [issue(edu, "real", t, key=new_key)], t)


def test_node_key_span_is_the_stretch_between_the_registry_s_recorded_changes(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A desk remembers a checkpoint as final for node_key_span(now) and the batch clock
    trusts witnesses until its end: the span must begin at a change made at ``t`` itself and
    end at the next one, a removal included, or a key or member gone would still count
    (mutation round 17). Here: founders at T0, edu's node key rotated at T0 + 100, "new"
    added at T0 + 150, tax removed at T0 + 200."""
    reg, edu = agencies["reg"], agencies["edu"]
    rotated = demo_agency("edu", "Education Office", label="rotated").node_key
    ledger.govern("rotate_key", {"agency": "edu", "role": "node",
                                 "new_key": rotated.public.raw, "at": T0 + 100}, [reg, edu],
                  T0 + 10)
    ledger.govern("add_agency", {"agency": NEW.spec()}, [reg, edu], T0 + 150)
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + 200)
    r = ledger.registry
    inf = float("inf")
    expected = {T0: (T0, T0 + 100), T0 + 99: (T0, T0 + 100), T0 + 100: (T0 + 100, T0 + 150),
                T0 + 149: (T0 + 100, T0 + 150), T0 + 150: (T0 + 150, T0 + 200),
                T0 + 199: (T0 + 150, T0 + 200), T0 + 200: (T0 + 200, inf),
                T0 + 10**6: (T0 + 200, inf), T0 - 1: (-inf, T0)}
    for t, span in expected.items():
        assert r.node_key_span(t) == span, t
    # within each span node_keys gives one answer; across a bound it changes
    for lo, hi in set(expected.values()):
        if lo != -inf:
            inside = [int(lo), int(min(hi, T0 + 10**6)) - 1]
            assert r.node_keys(inside[0]) == r.node_keys(inside[1])
            assert r.node_keys(int(lo) - 1) != r.node_keys(int(lo))
    assert "tax" in r.node_keys(T0 + 199) and "tax" not in r.node_keys(T0 + 200)
    assert r.node_keys(T0 + 100)["edu"] == [rotated.public]


def test_the_status_index_bound_is_a_fixed_number(lg: LedgerHarness,
                                                  agencies: dict[str, Agency]) -> None:
    """64 lists of 2^20 entries are consensus (a node built with 65 lists would take an
    anchor the others refuse) and the status lists' shape (ADR 55): pinned by value, not
    only through the constants (mutation round 17)."""
    edu = agencies["edu"]
    assert (STATUS_LISTS, STATUS_LIST_SIZE) == (64, 1_048_576)
    assert reject(lg, issue(edu, 1, T0 + DAY, index=67_108_864), T0 + DAY) \
        == "status_index_out_of_range"
    accept(lg, [issue(edu, 2, T0 + DAY, index=67_108_863)], T0 + DAY)


def test_governance_refuses_a_rotated_out_key_or_a_removed_member_from_that_very_second(
        lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A governance signature counts while its key is valid and its agency a member at the
    block's time: in a block at the exact second of a rotation the old key no longer counts,
    nor does an agency removed in an earlier block of that same second."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    new_key = demo_agency("edu", "Education Office", label="rotated").issuer_key
    at = T0 + 10 * DAY
    lg.govern("rotate_key", {"agency": "edu", "role": "issuer", "new_key": new_key.public.raw,
                             "at": at}, [reg, edu], T0 + DAY)
    old = lg.gov_tx("set_quorum", {"quorum": 3}, [reg, edu])
    assert reject(lg, old, at) == "key_not_valid"
    removed_at = at + DAY
    lg.govern("remove_agency", {"agency": "tax"}, [reg, tax], removed_at)
    by_tax = lg.gov_tx("set_quorum", {"quorum": 1}, [reg, tax])
    assert reject(lg, by_tax, removed_at) == "key_not_valid"
    assert lg.registry.quorum == 2


def test_a_removed_member_has_no_node_key(lg: LedgerHarness,
                                          agencies: dict[str, Agency]) -> None:
    """node_keys_of says whether a node may still co-sign and witness the time (a removed
    agency's node stops publishing on it): from its removal on, the agency's node key is no
    node key, though governance never ended the key itself."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    removed_at = T0 + DAY
    lg.govern("remove_agency", {"agency": "tax"}, [reg, edu], removed_at)
    r = lg.registry
    assert r.key_valid(tax.node_key.kid, removed_at, "node")  # the key itself never ended
    assert r.node_keys_of("tax", removed_at - 1) == [tax.node_key.public]
    assert r.node_keys_of("tax", removed_at) == []
    assert r.node_keys_of("tax", T0 - 1) == []  # nor before it was a member
    assert r.node_keys_of("nobody", removed_at) == []


def test_a_registry_from_outside_names_a_bad_key_role_pub_or_removal(
        lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Registry.from_unverified names the member of a malformed registry (a snapshot, a
    wallet's --registry) instead of failing later: a key with a role no rule reads (a
    "governance" key would count nowhere, silently), a public key that is not 32 bytes, an
    agency's removal that is not a time, a governance sequence below 0 (mutation round 17)."""
    from ledger.errors import DecodeError

    raw = lg.registry.to_bytes()
    kid = agencies["edu"].issuer_key.kid.hex()

    def broken(change: Callable[[dict[str, Any]], object]) -> bytes:
        plain = codec.decode(raw, max_size=1 << 24)
        change(plain)
        return codec.encode(plain)

    for change, where in (
            (lambda d: d["keys"][kid].update(role="governance"), f"registry.keys['{kid}']"),
            (lambda d: d["keys"][kid].update(pub=d["keys"][kid]["pub"][:31]),
             f"registry.keys['{kid}']"),
            (lambda d: d["agencies"]["tax"].update(removed="2027-01-01"),
             "registry.agencies['tax']"),
            (lambda d: d.update(gov_seq=-1), "registry.gov_seq")):
        with pytest.raises(DecodeError) as info:
            Registry.from_unverified(broken(change))
        assert info.value.where == where
    assert Registry.from_unverified(raw).data == lg.registry.data


def test_a_backdated_anchor_s_refusal_names_both_times(lg: LedgerHarness,
                                                       agencies: dict[str, Agency]) -> None:
    """The agency reads this refusal (`agency issue` prints it) to tell a wrong valid_from
    from a node's fast clock: it names the credential's valid_from and the block's time,
    and the bound (mutation round 17: the block time dropped from it went unnoticed)."""
    t = T0 + 2 * DAY
    early = t - MAX_BACKDATE - 1
    r = lg.commit([issue_tx(NET, agencies["edu"], cid("early"), "diploma", 7, early, t + DAY,
                            t)], t)
    [(_, err)] = r.rejected
    assert err.code == "backdated"
    assert f"valid_from {early} " in err.message
    assert f"block's time {t} " in err.message
    assert f"{MAX_BACKDATE} s" in err.message


def test_the_first_signature_that_fails_names_the_refusal(lg: LedgerHarness,
                                                          agencies: dict[str, Agency]) -> None:
    """Every node refuses a transaction with the same code: its signatures are judged in
    their order, and the first that fails decides. A governance transaction whose first
    signer is no member's key and whose second signature is forged is `unknown_key`; with
    the two the other way round it is `bad_signature` (mutation round 17: an unknown key
    skipped in that check went unnoticed)."""
    reg, edu = agencies["reg"], agencies["edu"]
    body = {"seq": lg.registry.gov_seq + 1, "action": "set_quorum", "args": {"quorum": 3}}
    outsider_first = make_tx(NET, "governance", body,
                             [OUTSIDER.issuer_key, reg.issuer_key, edu.issuer_key])
    assert reject(lg, retamper(outsider_first, 1), T0 + DAY) == "unknown_key"
    forged_first = make_tx(NET, "governance", body,
                           [reg.issuer_key, OUTSIDER.issuer_key, edu.issuer_key])
    assert reject(lg, retamper(forged_first, 0), T0 + DAY) == "bad_signature"
    assert lg.registry.quorum == 2


def test_a_registry_stops_where_a_restarted_node_can_still_read_it(
        lg: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A node reads its registry back from its store when it opens, at most
    MAX_REGISTRY_SIZE bytes of it. Governance that made it larger went on in the running nodes,
    and none of them could open its store again; it is refused, and changes nothing."""
    reg, edu = agencies["reg"], agencies["edu"]

    def wide(kind: str) -> dict[str, Any]:  # as large as one register_type makes a type
        return {"id": kind, "title": "t" * 200, "derived": {},
                "claims": {f"c{n:02d}-" + "x" * 60: "string" for n in range(64)}}

    entry = {k: v for k, v in wide("w-00000").items() if k != "id"} | {"registered": T1}
    size = len(codec.encode("w-00000")) + len(codec.encode(entry))
    data = lg.registry.evolve()
    room = MAX_REGISTRY_SIZE - len(lg.registry.to_bytes()) - 16  # (a larger map header)
    data["types"] = {**data["types"], **{f"w-{n:05d}": entry for n in range(room // size)}}
    near = Registry(data)
    assert MAX_REGISTRY_SIZE - size < len(near.to_bytes()) <= MAX_REGISTRY_SIZE
    m = Machine(near, _Empty())
    with pytest.raises(TxRejected) as info:
        m.apply(lg.gov_tx("register_type", {"type": wide("w-99999")}, [reg, edu]), T1)
    assert info.value.code == "registry_full"
    assert m.registry is near and not m.registry_changed and m.writes == {}
    # a smaller change still fits, and the registry it makes reads back
    m.apply(lg.gov_tx("register_type", {"type": LICENCE}, [reg, edu]), T1)
    assert Registry.from_bytes(m.registry.to_bytes()).to_bytes() == m.registry.to_bytes()
