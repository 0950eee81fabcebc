"""Issue → bundle → present → verify_envelope, through a real store and checkpoint."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace

import pytest
from conftest import DAY, T0, LedgerHarness

from ledger import sdjwt
from ledger.credentials import issue_credential, status_list, status_list_uri
from ledger.finality import sign_checkpoint
from ledger.keys import PrivateKey
from ledger.network import Agency, status_tx
from ledger.presentation import Bundle, Envelope, Report, Request, verify_envelope
from ledger.statuslist import StatusList

DEGREE = {"id": "degree", "title": "Degree",
          "claims": {"holder_name": "string", "degree_level": "string", "field": "string",
                     "awarded_on": "date"}, "derived": {}}
CLAIMS = {"holder_name": "Li Hua-91c2", "degree_level": "master", "field": "hydrology",
          "awarded_on": "2019-07-01"}
HOLDER = PrivateKey(hashlib.sha256(b"presentation-holder").digest())
REQ = Request("n-0123456789abcdef", "https://civil.example/verify", "degree",
              ("degree_level", "field"))


class World:
    def __init__(self, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
        self.ledger, self.agencies = ledger, agencies
        reg, edu = agencies["reg"], agencies["edu"]
        ledger.govern("register_type", {"type": DEGREE}, [reg, edu], T0 + 1)
        ledger.govern("grant", {"agency": "edu", "type": "degree", "from": T0,
                                "until": T0 + 365 * DAY}, [reg, edu], T0 + 2)

    def issue(self, now: int = T0 + 10, key: PrivateKey | None = None,
              agency: str = "edu") -> tuple[Bundle, bytes]:
        cred = issue_credential(registry=self.ledger.registry, agency=agency,
                                issuer_key=key or self.agencies[agency].issuer_key,
                                kind="degree", claims=CLAIMS,
                                holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw), now=now,
                                valid_for=30 * DAY)
        r = self.ledger.commit([cred.anchor], now)
        assert not r.rejected, r.rejected
        return self.bundle(cred.sd_jwt.serialize(), r.accepted[0][1]), cred.credential_id

    def bundle(self, sd_jwt: str, index: int) -> Bundle:
        store = self.ledger.store
        assert store.head is not None
        cp = sign_checkpoint("demo", store.head, [(a, self.agencies[a].node_key)
                                                  for a in ("reg", "edu")])
        return Bundle(store.entry(index), index, tuple(store.inclusion_proof(
            index, store.head.log_size)), cp.to_text(), sd_jwt)

    def lists(self) -> Callable[[str], StatusList | None]:
        lst = status_list(self.ledger.store.status_entries("edu", "degree"))
        uri = status_list_uri("demo", "edu", "degree")
        return lambda u: lst if u == uri else None

    def verify(self, env: bytes, request: Request = REQ, now: int = T0 + 20,
               lists: Callable[[str], StatusList | None] | None = None) -> Report:
        return verify_envelope(env, request, registry=self.ledger.registry, now=now,
                               status_lists=lists or self.lists())


def present(bundle: Bundle, request: Request = REQ, iat: int = T0 + 20,
            holder: PrivateKey = HOLDER) -> bytes:
    kb = sdjwt.present(bundle.sd_jwt, disclose=request.claims, holder_key=holder,
                       nonce=request.nonce, aud=request.audience, iat=iat)
    return Envelope.from_bundle(bundle, kb).to_bytes()


@pytest.fixture
def world(ledger: LedgerHarness, agencies: dict[str, Agency]) -> World:
    return World(ledger, agencies)


def test_valid_presentation_discloses_only_what_was_asked(world: World) -> None:
    bundle, _ = world.issue()
    report = world.verify(present(Bundle.from_bytes(bundle.to_bytes())))
    assert report.verified, report.to_json()
    assert report.status == "valid"
    assert report.claims == {"degree_level": "master", "field": "hydrology"}
    assert [c.name for c in report.checks] == [
        "envelope", "checkpoint", "anchor_inclusion", "anchor", "issuer_authority", "sd_jwt",
        "requested_claims", "status"]


def test_envelope_for_three_claims_fits_a_qr_code(world: World) -> None:
    bundle, _ = world.issue()
    env = present(bundle, replace(REQ, claims=("degree_level", "field", "awarded_on")))
    assert len(env) <= 2900


def _failed(report: Report) -> tuple[str, str]:
    bad = [c for c in report.checks if not c.ok]
    assert bad, report.to_json()
    assert not report.verified
    return bad[0].name, bad[0].detail


def test_revoked_then_suspended_then_reinstated(world: World) -> None:
    bundle, cid = world.issue()
    env = present(bundle)
    edu = world.agencies["edu"]
    world.ledger.commit([status_tx("demo", edu, cid, "suspended", "review", T0 + 12)], T0 + 12)
    assert _failed(world.verify(env))[0] == "status"
    assert world.verify(env).status == "suspended"
    world.ledger.commit([status_tx("demo", edu, cid, "valid", "cleared", T0 + 13)], T0 + 13)
    assert world.verify(env).verified
    world.ledger.commit([status_tx("demo", edu, cid, "revoked", "fraud", T0 + 14)], T0 + 14)
    assert world.verify(env).status == "revoked"


def test_no_status_list_is_undetermined_not_valid(world: World) -> None:
    bundle, _ = world.issue()
    report = world.verify(present(bundle), lists=lambda _: None)
    assert report.status == "undetermined"
    assert not report.verified


@pytest.mark.parametrize(("mutate", "step"), [
    (lambda r: replace(r, nonce="another-nonce"), "sd_jwt"),
    (lambda r: replace(r, audience="https://other.example"), "sd_jwt"),
    (lambda r: replace(r, credential_type="residence"), "requested_claims"),
    (lambda r: replace(r, claims=(*r.claims, "holder_name")), "requested_claims"),
])
def test_request_binding(world: World, mutate: Callable[[Request], Request], step: str) -> None:
    bundle, _ = world.issue()
    assert _failed(world.verify(present(bundle), request=mutate(REQ)))[0] == step


def test_stale_key_binding(world: World) -> None:
    bundle, _ = world.issue()
    assert _failed(world.verify(present(bundle, iat=T0 + 20), now=T0 + 20 + 3600))[0] == "sd_jwt"


def test_anchor_of_another_credential_is_refused(world: World) -> None:
    bundle, _ = world.issue()
    other, _ = world.issue(now=T0 + 11)
    swapped = Bundle(other.anchor, other.leaf_index, other.proof, other.checkpoint,
                     bundle.sd_jwt)
    name, detail = _failed(world.verify(present(swapped)))
    assert name == "anchor"
    assert "different credential" in detail


def test_tampered_proof_is_refused(world: World) -> None:
    bundle, _ = world.issue()
    bad = replace(bundle, proof=(bytes(32), *bundle.proof[1:]))
    assert _failed(world.verify(present(bad)))[0] == "anchor_inclusion"


def test_key_invalidated_before_issuance(world: World) -> None:
    bundle, _ = world.issue(now=T0 + 10)
    reg, edu = world.agencies["reg"], world.agencies["edu"]
    world.ledger.govern("invalidate_key", {"kid": edu.issuer_key.kid, "from": T0 + 5},
                        [reg, edu], T0 + 15)
    name, detail = _failed(world.verify(present(bundle)))
    assert name == "issuer_authority"
    assert "not a valid issuer key" in detail


def test_garbage_envelope(world: World) -> None:
    assert _failed(world.verify(b"\x92\x01"))[0] == "envelope"
