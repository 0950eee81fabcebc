"""Key compromise drill: a stolen issuing key and a stolen node key, end to end on a real store.

Timeline (seconds after T0): 10 an honest credential; 100 the key is stolen (nobody knows yet);
150 the thief issues with it, and the ledger still accepts the anchor (the key is valid on the
chain); 200 two of three agencies (k-of-n governance, without the victim, whose key is the stolen
one) invalidate the key *from 100* and rotate in a new key. Afterwards: what was signed before 100
still verifies; what was signed from 100 on fails, and the message says the key was invalidated
from that time; the thief can no longer anchor or govern; the new key works.
"""

from __future__ import annotations

import hashlib

import pytest
from conftest import DAY, T0, LedgerHarness
from credworld import World, present

from ledger.checkpoint import Checkpoint
from ledger.errors import CheckpointError, LedgerError
from ledger.finality import sign_checkpoint, verify_final
from ledger.keys import PrivateKey
from ledger.network import Agency, issue_tx
from ledger.presentation import Report

COMPROMISED_AT = T0 + 100
NEW_ISSUER = PrivateKey(hashlib.sha256(b"edu-issuer-after-compromise").digest())
NEW_NODE = PrivateKey(hashlib.sha256(b"edu-node-after-compromise").digest())


@pytest.fixture
def world(ledger: LedgerHarness, agencies: dict[str, Agency]) -> World:
    return World(ledger, agencies)


def _failed(report: Report) -> tuple[str, str]:
    bad = [c for c in report.checks if not c.ok]
    assert bad and not report.verified, report.to_json()
    return bad[0].name, bad[0].detail


def test_stolen_issuing_key(world: World) -> None:
    ledger, ag = world.ledger, world.agencies
    reg, edu, tax = ag["reg"], ag["edu"], ag["tax"]
    stolen = edu.issuer_key

    before, _ = world.issue(now=T0 + 10)
    # the thief issues after the theft; the key is still valid on the chain, so it is anchored
    after, _ = world.issue(now=T0 + 150, key=stolen)
    assert world.verify(present(after, iat=T0 + 160), now=T0 + 160).verified  # not yet known

    # governance by reg and tax (quorum 2 of 3): invalidate from the compromise, rotate in a new key
    ledger.govern("invalidate_key", {"kid": stolen.kid, "from": COMPROMISED_AT}, [reg, tax],
                  T0 + 200)
    ledger.govern("rotate_key", {"agency": "edu", "role": "issuer",
                                 "new_key": NEW_ISSUER.public.raw, "at": T0 + 200},
                  [reg, tax], T0 + 201)
    key = ledger.registry.key(stolen.kid)
    assert key is not None
    assert key["invalid_from"] == COMPROMISED_AT

    now = T0 + 300
    report = world.verify(present(before, iat=now), now=now)
    assert report.verified, report.to_json()  # signed before the compromise: still good

    name, detail = _failed(world.verify(present(after, iat=now), now=now))
    assert name == "issuer_authority"
    assert f"invalidated that key from {COMPROMISED_AT}" in detail
    assert "compromise" in detail

    # the thief can no longer anchor anything with the stolen key, whatever ts it claims
    forged = issue_tx("demo", edu, b"\x66" * 32, "degree", 77, T0 + 50, T0 + 30 * DAY, T0 + 50,
                      key=stolen)
    r = ledger.commit([forged], T0 + 310)
    assert [e.code for _, e in r.rejected] == ["key_not_valid"]
    with pytest.raises(LedgerError, match="not a valid issuer key"):
        world.issue(now=T0 + 320, key=stolen)
    # nor sign governance with it, alone or with an accomplice's valid signature
    r = ledger.commit([ledger.gov_tx("grant", {"agency": "edu", "type": "degree", "from": T0,
                                               "until": T0 + 999 * DAY}, [edu, reg])], T0 + 330)
    assert [e.code for _, e in r.rejected] == ["key_not_valid"]

    # the rotated-in key issues credentials that verify
    fresh, _ = world.issue(now=T0 + 400, key=NEW_ISSUER)
    assert world.verify(present(fresh, iat=T0 + 410), now=T0 + 410).verified


def test_the_stolen_key_alone_cannot_govern(world: World) -> None:
    """Before anyone notices, the thief still cannot change the registry: one agency < quorum."""
    ledger, edu = world.ledger, world.agencies["edu"]
    r = ledger.commit([ledger.gov_tx("invalidate_key", {"kid": world.agencies["reg"].issuer_key
                                                        .kid, "from": T0}, [edu])], T0 + 120)
    assert [e.code for _, e in r.rejected] == ["no_quorum"]


def test_stolen_node_key_and_checkpoints(world: World) -> None:
    ledger, ag = world.ledger, world.agencies
    reg, edu, tax = ag["reg"], ag["edu"], ag["tax"]
    stolen = edu.node_key

    world.issue(now=T0 + 50)
    head_before = ledger.store.head
    assert head_before is not None and head_before.time < COMPROMISED_AT
    cp_before = sign_checkpoint("demo", head_before, [("reg", reg.node_key), ("edu", stolen)])

    world.issue(now=T0 + 150)
    head_after = ledger.store.head
    assert head_after is not None and head_after.time >= COMPROMISED_AT
    cp_after = sign_checkpoint("demo", head_after, [("reg", reg.node_key), ("edu", stolen)])

    # even before anyone knows, the thief alone cannot make a forged tree head final
    forged = Checkpoint("demo", head_after.log_size, b"\x99" * 32).sign("edu", stolen)
    with pytest.raises(CheckpointError, match="1 of 2 required"):
        verify_final(forged, ledger.registry, head_after.time)

    ledger.govern("invalidate_key", {"kid": stolen.kid, "from": COMPROMISED_AT}, [reg, tax],
                  T0 + 200)
    ledger.govern("rotate_key", {"agency": "edu", "role": "node",
                                 "new_key": NEW_NODE.public.raw, "at": T0 + 200}, [reg, tax],
                  T0 + 201)
    registry = ledger.registry

    # judged at the block time each checkpoint covers: before the compromise it is still final
    assert verify_final(cp_before, registry, head_before.time) == {"reg", "edu"}
    # after it, the stolen key's signature no longer counts, and the error says why
    with pytest.raises(CheckpointError) as info:
        verify_final(cp_after, registry, head_after.time)
    message = str(info.value)
    assert "1 of 2 required" in message
    assert f"node key {stolen.kid.hex()[:16]} was invalidated from {COMPROMISED_AT}" in message
    # the other agencies' co-signature makes that tree head final again
    assert verify_final(cp_after.cosign("tax", tax.node_key), registry,
                        head_after.time) == {"reg", "tax"}
    # and the rotated-in node key co-signs new checkpoints
    head_now = ledger.store.head
    assert head_now is not None
    cp_new = sign_checkpoint("demo", head_now, [("reg", reg.node_key), ("edu", NEW_NODE)])
    assert verify_final(cp_new, registry, head_now.time) == {"reg", "edu"}
    with pytest.raises(CheckpointError, match="invalidated"):
        verify_final(sign_checkpoint("demo", head_now, [("reg", reg.node_key), ("edu", stolen)]),
                     registry, head_now.time)


def test_presentation_with_a_checkpoint_cosigned_by_the_stolen_node_key(world: World) -> None:
    """A verifier refuses a bundle whose checkpoint reaches quorum only through the stolen node
    key, naming the invalidated key; a bundle re-proven under the new quorum verifies."""
    ledger, ag = world.ledger, world.agencies
    reg, edu, tax = ag["reg"], ag["edu"], ag["tax"]
    bundle, _ = world.issue(now=T0 + 150)  # World.bundle co-signs with reg + edu's node keys
    ledger.govern("invalidate_key", {"kid": edu.node_key.kid, "from": COMPROMISED_AT}, [reg, tax],
                  T0 + 200)
    name, detail = _failed(world.verify(present(bundle, iat=T0 + 300), now=T0 + 300))
    assert name == "checkpoint"
    assert "invalidated from" in detail
    head = ledger.store.head
    assert head is not None
    cp = sign_checkpoint("demo", head, [("reg", reg.node_key), ("tax", tax.node_key)])
    from ledger.presentation import Bundle

    fixed = Bundle(bundle.anchor, bundle.leaf_index,
                   tuple(ledger.store.inclusion_proof(bundle.leaf_index, head.log_size)),
                   cp.to_text(), bundle.sd_jwt)
    report = world.verify(present(fixed, iat=T0 + 300), now=T0 + 300)
    assert report.verified, report.to_json()
