"""Ordered batches: their format, and how far a batch may move the chain's time (ADR 58).

A block's time was its batch's proposer's time (never going back): one batch of a compromised
agency's node dated 88 days ahead froze every honest issuance (``backdated``) and revocation
(``stale``) on every node, for good. A batch now moves the time only as far as other current
agencies' nodes witness it, by their signed clock times carried in the batch."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import NET, T0, LedgerHarness

from ledger.batch import (
    WITNESS_SLACK,
    Batch,
    Witness,
    block_time,
    check_batch,
    clock_signature,
    make_batch,
)
from ledger.errors import DecodeError
from ledger.keys import PrivateKey
from ledger.network import Agency

DAY = 86_400


@pytest.fixture
def ledger(tmp_path: Path, agencies: dict[str, Agency]) -> Iterator[LedgerHarness]:
    harness = LedgerHarness(tmp_path / "ledger", list(agencies.values()), 2, T0)
    try:
        yield harness
    finally:
        harness.close()


def _seen(agency: Agency, t: int, net: str = NET) -> Witness:
    return Witness(agency.id, t, clock_signature(net, agency.id, agency.node_key, t))


def _batch(proposer: Agency, t: int, witnesses: list[Witness]) -> Batch:
    return make_batch(NET, proposer.id, proposer.node_key, t, [b"tx"], witnesses)


def test_a_batch_moves_the_time_only_as_far_as_another_agency_witnesses(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    registry, head = ledger.registry, T0 + 100
    ahead = T0 + 88 * DAY
    # alone (quorum 2: one other agency must witness), the time stays where it is
    assert block_time(_batch(reg, ahead, []), registry, head) == head
    # with an honest witness, the time moves up to its clock plus the slack, not past it
    assert block_time(_batch(reg, ahead, [_seen(tax, T0 + 200)]), registry, head) \
        == T0 + 200 + WITNESS_SLACK
    # an honest proposer's time within the slack of what its peers witness is its own
    assert block_time(_batch(reg, T0 + 230, [_seen(tax, T0 + 200)]), registry, head) \
        == T0 + 230
    # of two witnesses the latest counts (quorum - 1 = 1 of them is needed)
    assert block_time(_batch(reg, ahead, [_seen(edu, T0 + 150), _seen(tax, T0 + 300)]),
                      registry, head) == T0 + 300 + WITNESS_SLACK
    # a time before the head's is the head's
    assert block_time(_batch(reg, T0 + 50, []), registry, head) == head


@pytest.mark.parametrize("case", ["own", "forged", "another_network", "not_an_agency",
                                  "signed_other_time"])
def test_a_witness_that_is_not_another_agencys_signed_clock_counts_for_nothing(
        ledger: LedgerHarness, agencies: dict[str, Agency], case: str) -> None:
    reg, tax = agencies["reg"], agencies["tax"]
    t = T0 + 88 * DAY
    witness = {
        "own": _seen(reg, t),  # the proposer witnessing itself
        "forged": Witness("tax", t, clock_signature(NET, "tax", PrivateKey.generate(), t)),
        "another_network": _seen(tax, t, net="other-net"),
        "not_an_agency": Witness("mallory", t, clock_signature(NET, "mallory",
                                                                 PrivateKey.generate(), t)),
        "signed_other_time": Witness("tax", t, _seen(tax, T0 + 1).sig),
    }[case]
    assert block_time(_batch(reg, t, [witness]), ledger.registry, T0 + 100) == T0 + 100


def test_a_witness_of_a_removed_agency_counts_for_nothing(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + 10)
    t = T0 + 88 * DAY
    assert block_time(_batch(reg, t, [_seen(tax, t)]), ledger.registry, T0 + 10) == T0 + 10
    assert block_time(_batch(reg, t, [_seen(edu, T0 + 20)]), ledger.registry, T0 + 10) \
        == T0 + 20 + WITNESS_SLACK


def test_a_node_key_rotated_in_for_later_witnesses_the_time_it_is_valid_from(
        tmp_path: Path, agencies: dict[str, Agency]) -> None:
    """Two agencies, quorum two: the only witness is the other one. Its node key rotated for
    a time the idle chain has not reached yet, its node took the new key then: checked with
    the keys valid at the head's time, its witnesses never counted, and the time could never
    reach the rotation. Checked with the keys valid when it witnessed, they do (and the old
    key, no longer valid then, vouches for times before the rotation only)."""
    reg, edu = agencies["reg"], agencies["edu"]
    pair = LedgerHarness(tmp_path / "pair", [reg, edu], 2, T0)
    try:
        new = PrivateKey.generate()
        at = T0 + DAY
        pair.govern("rotate_key", {"agency": "edu", "role": "node", "new_key": new.public.raw,
                                   "at": at}, [reg, edu], T0 + 10)
        later = at + 100
        fresh = Witness("edu", later, clock_signature(NET, "edu", new, later))
        assert block_time(_batch(reg, later, [fresh]), pair.registry, T0 + 10) == later
        # the old key, no longer valid then, vouches for the time up to the rotation only (its
        # node keeps it until the chain gets there): not for the time it signed
        stale = Witness("edu", later, clock_signature(NET, "edu", edu.node_key, later))
        assert block_time(_batch(reg, later, [stale]), pair.registry, T0 + 10) \
            == at - 1 + WITNESS_SLACK
        # past the rotation, the old key vouches for nothing
        assert block_time(_batch(reg, later, [stale]), pair.registry, at) == at
    finally:
        pair.close()


def test_one_agencys_node_keys_are_its_entry_of_every_agencys(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """block_time looks up only the witnessing agency's keys at its time (rebuilding every
    agency's per witness cost 17 ms a batch at 100 agencies); the answer must not change."""
    reg, edu = agencies["reg"], agencies["edu"]
    ledger.govern("rotate_key", {"agency": "edu", "role": "node",
                                 "new_key": PrivateKey.generate().public.raw, "at": T0 + 50},
                  [reg, edu], T0 + 10)
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + 20)
    registry = ledger.registry
    for t in (T0 - 1, T0, T0 + 19, T0 + 20, T0 + 49, T0 + 50, T0 + DAY):
        every = registry.node_keys(t)
        for a in ("reg", "edu", "tax", "nobody"):
            assert registry.node_keys_of(a, t) == every.get(a, []), (a, t)


def test_a_quorum_of_one_needs_no_witness(tmp_path: Path, agencies: dict[str, Agency]) -> None:
    solo = LedgerHarness(tmp_path / "solo", [agencies["reg"], agencies["edu"]], 1, T0)
    try:
        t = T0 + 88 * DAY
        assert block_time(_batch(agencies["reg"], t, []), solo.registry, T0) == t
    finally:
        solo.close()


def test_witnesses_are_part_of_the_signed_batch(agencies: dict[str, Agency],
                                                ledger: LedgerHarness) -> None:
    reg, tax = agencies["reg"], agencies["tax"]
    batch = _batch(reg, T0 + 5, [_seen(tax, T0 + 4)])
    again = Batch.from_bytes(batch.to_bytes())
    assert again == batch and again.wit == (_seen(tax, T0 + 4),)
    check_batch(again, ledger.registry, T0)
    # a batch without witnesses has the bytes it had before ADR 58 (no "wit" member)
    bare = _batch(reg, T0 + 5, [])
    assert b"wit" not in bare.to_bytes() and Batch.from_bytes(bare.to_bytes()) == bare
    # a witness added after signing breaks the proposer's signature
    from ledger.errors import SignatureError

    stuffed = Batch(batch.net, batch.proposer, batch.time, batch.txs, bare.sig, batch.wit)
    with pytest.raises(SignatureError):
        check_batch(Batch.from_bytes(stuffed.to_bytes()), ledger.registry, T0)


@pytest.mark.parametrize(("wit", "where"), [
    ([], "batch.wit"),
    (["x"], "batch.wit[0]"),
    ([{"agency": "tax", "time": 1}], "batch.wit[0].sig"),
    ([{"agency": "tax", "time": -1, "sig": bytes(64)}], "batch.wit[0].time"),
    ([{"agency": "tax", "time": 1, "sig": bytes(64), "extra": 1}], "batch.wit[0]"),
    ([{"agency": "tax", "time": 1, "sig": bytes(64)}] * 17, "batch.wit"),
])
def test_a_malformed_witness_list_does_not_decode(wit: list[object], where: str) -> None:
    from ledger import codec

    raw = codec.encode({"v": 1, "net": NET, "proposer": "reg", "time": 1, "txs": [b"t"],
                        "sig": bytes(64), "wit": wit})
    with pytest.raises(DecodeError) as e:
        Batch.from_bytes(raw)
    assert e.value.where == where, e.value


def test_a_quorum_above_the_witnesses_a_batch_holds_still_moves_the_time(
        tmp_path: Path) -> None:
    """A batch holds 16 witnesses at most, and a quorum of 18 agencies needed 17: no batch
    could ever move such a network's time. Sixteen other agencies witnessing is enough."""
    from ledger.network import demo_agency

    members = [demo_agency(f"a{i:02d}", f"Agency {i}") for i in range(18)]
    big = LedgerHarness(tmp_path / "big", members, 18, T0)
    try:
        seen = [_seen(a, T0 + 100) for a in members[1:]]
        batch = _batch(members[0], T0 + 100, seen)
        assert len(batch.wit) == 16
        assert block_time(batch, big.registry, T0) == T0 + 100
        # fifteen are not
        assert block_time(_batch(members[0], T0 + 100, seen[:15]), big.registry, T0) == T0
    finally:
        big.close()


def test_an_agency_witnessing_twice_counts_once_with_its_first_time(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Only an agency's first signed clock time in a batch counts: one it signed earlier,
    listed after, neither replaces it nor counts as a second agency."""
    reg, tax = agencies["reg"], agencies["tax"]
    ahead = T0 + 88 * DAY
    twice = _batch(reg, ahead, [_seen(tax, T0 + 300), _seen(tax, T0 + 150)])
    assert block_time(twice, ledger.registry, T0 + 100) == T0 + 300 + WITNESS_SLACK


def test_a_witnessed_time_behind_the_head_leaves_the_time_at_the_head(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A block's time never goes back: a batch ahead of the head whose only witness signed
    a time long before the head's gives the head's time, not the witness's plus the slack."""
    reg, tax = agencies["reg"], agencies["tax"]
    head = T0 + DAY
    old = _batch(reg, head + 1000, [_seen(tax, T0 + 100)])
    assert block_time(old, ledger.registry, head) == head


def test_a_batch_for_another_network_is_refused_even_signed_by_a_current_node_key(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """An agency's node key signs on another network too (one key, two networks): its batch
    there is no batch here."""
    reg = agencies["reg"]
    elsewhere = make_batch("other-net", reg.id, reg.node_key, T0 + 5, [b"tx"])
    check_batch(_batch(reg, T0 + 5, []), ledger.registry, T0)
    with pytest.raises(DecodeError) as e:
        check_batch(elsewhere, ledger.registry, T0)
    assert e.value.where == "batch.net"


def test_a_batch_holds_at_least_one_transaction() -> None:
    from ledger import codec

    with pytest.raises(ValueError, match="at least one transaction"):
        make_batch(NET, "reg", PrivateKey.generate(), T0, [])
    raw = codec.encode({"v": 1, "net": NET, "proposer": "reg", "time": 1, "txs": [],
                        "sig": bytes(64)})
    with pytest.raises(DecodeError) as e:
        Batch.from_bytes(raw)
    assert e.value.where == "batch.txs"
