"""Checkpoint finality against the registry: quorum of current agencies' node keys."""

from __future__ import annotations

import re

import pytest
from conftest import T0, LedgerHarness

from ledger.checkpoint import Checkpoint, SignedCheckpoint, note_key_hash
from ledger.errors import CheckpointError
from ledger.finality import (
    block_line,
    checkpoint_block,
    checkpoint_verifiers,
    sign_checkpoint,
    unregistered_signatures,
    verify_final,
)
from ledger.keys import PrivateKey
from ledger.network import Agency
from ledger.state import Registry


def _head(ledger: LedgerHarness):  # type: ignore[no-untyped-def]
    assert ledger.store.head is not None
    return ledger.store.head


def test_quorum_of_current_node_keys_is_final(ledger: LedgerHarness,
                                              agencies: dict[str, Agency]) -> None:
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", agencies["reg"].node_key),
                                        ("edu", agencies["edu"].node_key)])
    assert verify_final(cp, ledger.registry, head.time) == {"reg", "edu"}


def test_one_signature_is_short_of_quorum(ledger: LedgerHarness,
                                          agencies: dict[str, Agency]) -> None:
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", agencies["reg"].node_key)])
    with pytest.raises(CheckpointError, match="1 of 2"):
        verify_final(cp, ledger.registry, head.time)


def test_issuer_keys_and_strangers_do_not_count(ledger: LedgerHarness,
                                                agencies: dict[str, Agency]) -> None:
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", agencies["reg"].node_key),
                                        ("edu", agencies["edu"].issuer_key),
                                        ("mallory", PrivateKey(bytes(32)))])
    with pytest.raises(CheckpointError, match="1 of 2"):
        verify_final(cp, ledger.registry, head.time)


@pytest.mark.parametrize("origin", ["other-net", "Demo", "demo "])
def test_wrong_origin_is_refused(ledger: LedgerHarness, agencies: dict[str, Agency],
                                 origin: str) -> None:
    """The origin is compared byte for byte: another case or a trailing space is another log."""
    head = _head(ledger)
    cp = sign_checkpoint(origin, head, [(a, agencies[a].node_key) for a in agencies])
    with pytest.raises(CheckpointError, match="origin"):
        verify_final(cp, ledger.registry, head.time)


def test_removed_agency_no_longer_signs_checkpoints(ledger: LedgerHarness,
                                                    agencies: dict[str, Agency]) -> None:
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + 100)
    head = _head(ledger)
    assert "tax" not in checkpoint_verifiers(ledger.registry, head.time)
    cp = sign_checkpoint("demo", head, [("reg", reg.node_key), ("tax", tax.node_key)])
    with pytest.raises(CheckpointError, match="1 of 2"):
        verify_final(cp, ledger.registry, head.time)
    # ...while before its removal, at the genesis height, its signature counted.
    genesis_registry = ledger.store.registry_at(0)
    assert "tax" in checkpoint_verifiers(genesis_registry, T0)


def test_rotated_node_key_signs_after_rotation_only(ledger: LedgerHarness,
                                                    agencies: dict[str, Agency]) -> None:
    reg, edu = agencies["reg"], agencies["edu"]
    new = PrivateKey(b"\x07" * 32)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node", "new_key": new.public.raw,
                                 "at": T0 + 50}, [reg, edu], T0 + 50)
    head = _head(ledger)
    old_cp = sign_checkpoint("demo", head, [("reg", reg.node_key), ("edu", edu.node_key)])
    # The old key's signature is from a key the verifier no longer knows for "reg": ignored.
    with pytest.raises(CheckpointError, match="1 of 2"):
        verify_final(old_cp, ledger.registry, head.time)
    new_cp = sign_checkpoint("demo", head, [("reg", new), ("edu", edu.node_key)])
    assert verify_final(new_cp, ledger.registry, head.time) == {"reg", "edu"}


def test_existing_checkpoint_must_match_the_head(ledger: LedgerHarness,
                                                 agencies: dict[str, Agency]) -> None:
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", agencies["reg"].node_key)])
    ledger.govern("set_quorum", {"quorum": 2}, [agencies["reg"], agencies["edu"]], T0 + 5)
    with pytest.raises(CheckpointError, match="another tree head"):
        sign_checkpoint("demo", _head(ledger), [("edu", agencies["edu"].node_key)], cp)


def test_a_checkpoint_names_the_block_it_ends_at(ledger: LedgerHarness,
                                                 agencies: dict[str, Agency]) -> None:
    """The root binds the log; the block line binds how it was grouped into blocks (ADR 60):
    a co-signature of the same root in another block does not merge into it."""
    import dataclasses

    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", agencies["reg"].node_key)])
    assert cp.checkpoint.body().decode().splitlines()[3] == block_line(head.height, head.hash)
    assert checkpoint_block(cp.checkpoint) == (head.height, head.hash)
    regrouped = dataclasses.replace(head, height=head.height + 1)
    with pytest.raises(CheckpointError, match="another tree head or block"):
        sign_checkpoint("demo", regrouped, [("edu", agencies["edu"].node_key)], cp)


@pytest.mark.parametrize(("lines", "said"), [
    ((), "names no block"),
    (("block 1",), "is not `block <height> <base64 hash>`"),
    (("block -1 " + "A" * 43 + "=",), "is not `block"),
    (("block 01 " + "A" * 43 + "=",), "is not `block"),
    (("block 1 " + "A" * 42 + "B=",), "not canonical"),
    (("block 1 " + "A" * 43 + "= ",), "is not `block"),
    (("other 1", "block 1 " + "A" * 43 + "="), "is not `block"),
    (("block1 " + "A" * 43 + "=",), "is not `block"),
    (("block 1 " + "A" * 43,), "is not `block"),  # unpadded
    (("block 1 " + "A" * 47 + "=",), "is not `block"),  # a 35-byte hash
    (("block 1 " + "A" * 42 + "==",), "is not `block"),  # a 31-byte hash
    (("block 1" + "0" * 19 + " " + "A" * 43 + "=",), "is not `block"),  # 20 digits: >= 2^63
])
def test_a_block_line_that_does_not_parse_is_refused(lines: tuple[str, ...], said: str) -> None:
    with pytest.raises(CheckpointError, match=re.escape(said)):
        checkpoint_block(Checkpoint("demo", 5, bytes(32), lines))


def _short_of_quorum(cp: SignedCheckpoint, registry: Registry, t: int) -> str:
    """The message of verify_final's refusal of ``cp``, one signature short of quorum."""
    with pytest.raises(CheckpointError, match="1 of 2") as info:
        verify_final(cp, registry, t)
    return str(info.value)


def test_a_short_quorum_blames_no_key_that_was_valid_or_not_a_node_key(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """When a checkpoint falls short, the message lists only registered node keys that were not
    valid at the time: not the valid node key that did sign, not an issuer key, and not the
    agency's earlier node key when a stranger signed under its name."""
    reg, edu = agencies["reg"], agencies["edu"]
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("reg", reg.node_key), ("edu", edu.issuer_key)])
    assert "not counted" not in _short_of_quorum(cp, ledger.registry, head.time)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node",
                                 "new_key": PrivateKey(b"\x07" * 32).public.raw, "at": T0 + 50},
                  [reg, edu], T0 + 50)
    head = _head(ledger)
    cp = sign_checkpoint("demo", head, [("edu", edu.node_key), ("reg", PrivateKey(bytes(32)))])
    assert "not counted" not in _short_of_quorum(cp, ledger.registry, head.time)


def test_a_node_key_not_valid_at_the_time_is_named_with_why(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """A signature by a registered node key outside its validity says which side it fell on:
    invalidated from the rotation (from that very second on), or not yet valid."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    first, second = PrivateKey(b"\x07" * 32), PrivateKey(b"\x08" * 32)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node", "new_key": first.public.raw,
                                 "at": T0 + 50}, [reg, edu], T0 + 50)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node", "new_key": second.public.raw,
                                 "at": T0 + 80}, [edu, tax], T0 + 80)
    head = _head(ledger)
    by_original = sign_checkpoint("demo", head, [("reg", reg.node_key), ("tax", tax.node_key)])
    said = _short_of_quorum(by_original, ledger.registry, T0 + 50)
    assert f"was invalidated from {T0 + 50}" in said
    by_first = sign_checkpoint("demo", head, [("reg", first), ("tax", tax.node_key)])
    said = _short_of_quorum(by_first, ledger.registry, T0 + 20)
    assert f"is only valid from {T0 + 50}" in said and "invalidated" not in said
    said = _short_of_quorum(by_first, ledger.registry, T0 + 80)
    assert f"was invalidated from {T0 + 80}" in said


def test_a_stored_line_by_an_issuer_key_is_unregistered(ledger: LedgerHarness,
                                                        agencies: dict[str, Agency]) -> None:
    """Only node keys sign checkpoints: a line by an agency's (registered) issuer key is by no
    node key the registry has, so the audit finds it altered."""
    reg, edu = agencies["reg"], agencies["edu"]
    cp = sign_checkpoint("demo", _head(ledger), [("reg", reg.node_key), ("edu", edu.issuer_key)])
    key_hash = note_key_hash("edu", edu.issuer_key.public.raw).hex()
    assert unregistered_signatures(cp, ledger.registry) == [f"edu+{key_hash} (no such key)"]


def test_finality_is_judged_at_the_time_given_to_the_second(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The keys counted are those valid at ``t`` itself: one second before a rotation the old
    node key still makes the quorum and the new one does not; from the rotation on, the reverse.
    So is an agency's membership: its last second before removal still counts."""
    reg, edu, tax = agencies["reg"], agencies["edu"], agencies["tax"]
    new = PrivateKey(b"\x07" * 32)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node", "new_key": new.public.raw,
                                 "at": T0 + 50}, [reg, edu], T0 + 50)
    ledger.govern("remove_agency", {"agency": "tax"}, [reg, edu], T0 + 100)
    head = _head(ledger)
    by_old = sign_checkpoint("demo", head, [("reg", reg.node_key), ("edu", edu.node_key)])
    by_new = sign_checkpoint("demo", head, [("reg", new), ("edu", edu.node_key)])
    assert verify_final(by_old, ledger.registry, T0 + 49) == {"reg", "edu"}
    assert f"is only valid from {T0 + 50}" in _short_of_quorum(by_new, ledger.registry, T0 + 49)
    assert f"invalidated from {T0 + 50}" in _short_of_quorum(by_old, ledger.registry, T0 + 50)
    assert verify_final(by_new, ledger.registry, T0 + 50) == {"reg", "edu"}
    with_tax = sign_checkpoint("demo", head, [("edu", edu.node_key), ("tax", tax.node_key)])
    assert verify_final(with_tax, ledger.registry, T0 + 99) == {"edu", "tax"}
    _short_of_quorum(with_tax, ledger.registry, T0 + 100)


def test_one_agency_signing_with_two_of_its_node_keys_counts_once(
        ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """The quorum counts distinct agencies, not signature lines: an agency whose old node key
    is still on its machine after a rotation, signing with both, is one signer (mutation
    round 17: counting the lines by agencies that verified went unnoticed)."""
    reg, edu = agencies["reg"], agencies["edu"]
    new = PrivateKey(b"\x08" * 32)
    ledger.govern("rotate_key", {"agency": "reg", "role": "node", "new_key": new.public.raw,
                                 "at": T0 + 50}, [reg, edu], T0 + 50)
    head = _head(ledger)
    both = sign_checkpoint("demo", head, [("reg", new), ("reg", reg.node_key)])
    assert len(both.signatures) == 2
    with pytest.raises(CheckpointError, match="1 of 2 required signatures: verified \\['reg'\\]"):
        verify_final(both, ledger.registry, head.time)
    assert verify_final(both.cosign("edu", edu.node_key), ledger.registry,
                        head.time) == {"reg", "edu"}
