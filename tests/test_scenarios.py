"""Scenarios as data: issue → present → verify over every case in tests/scenarios/.

Each case file says what is *given* (who issues, what happens on the ledger before the
presentation, how the holder or an attacker builds it, when the verifier checks) and what to
*expect* (verified, or the first failing check and words of its detail, and the status).
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import DAY, T0, LedgerHarness
from credworld import CLAIMS, HOLDER, REQ, World

from ledger import sdjwt
from ledger.keys import PrivateKey
from ledger.network import Agency, issue_tx, status_tx
from ledger.presentation import Bundle, Envelope, verify_envelope

CASES = sorted(Path(__file__).with_name("scenarios").glob("*.json"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _kb(presented: str, holder: PrivateKey, nonce: str, aud: str, iat: int) -> str:
    """A KB-JWT over ``presented`` (``jwt~d…~``), as a holder — honest or not — would sign it."""
    header = _b64(json.dumps({"alg": "EdDSA", "typ": "kb+jwt"}).encode())
    sd_hash = _b64(hashlib.sha256(presented.encode()).digest())
    payload = _b64(json.dumps({"nonce": nonce, "aud": aud, "iat": iat,
                               "sd_hash": sd_hash}).encode())
    sig = _b64(holder.sign_raw(f"{header}.{payload}".encode()))
    return f"{presented}{header}.{payload}.{sig}"


def _tamper(kind: str, sd_jwt_kb: str, bundle: Bundle, nonce: str, aud: str, iat: int) -> str:
    parts = sd_jwt_kb.split("~")
    jwt, disclosures = parts[0], parts[1:-1]
    if kind == "issuer_signature":
        h, p, s = jwt.split(".")
        jwt = f"{h}.{p}.{s[:-2]}{'AA' if s[-2:] != 'AA' else 'BA'}"
    elif kind == "alg_none":
        h, p, _ = jwt.split(".")
        jwt = f"{_b64(json.dumps({'alg': 'none', 'typ': 'dc+sd-jwt'}).encode())}.{p}."
    elif kind == "disclosure":
        raw = json.loads(base64.urlsafe_b64decode(disclosures[0] + "=="))
        raw[2] = "doctorate"
        disclosures[0] = _b64(json.dumps(raw).encode())
    elif kind == "extra_disclosure":
        disclosures.append(_b64(json.dumps([_b64(b"0" * 16), "degree_level", "phd"]).encode()))
    else:
        raise AssertionError(f"unknown tamper {kind}")
    return _kb(f"{jwt}~{''.join(d + '~' for d in disclosures)}", HOLDER, nonce, aud, iat)


def _forged_bundle(world: World, agency: Agency) -> Bundle:
    """A credential signed by an agency without a grant; the ledger refuses its anchor."""
    issued = sdjwt.issue_sd_jwt(
        issuer_key=agency.issuer_key, issuer_kid=agency.issuer_key.kid.hex(), claims=CLAIMS,
        holder_jwk=sdjwt.jwk_from_ed25519(HOLDER.public.raw), vct="degree",
        iss="urn:credledger:demo:tax", iat=T0 + 10, nbf=T0 + 10, exp=T0 + 30 * DAY,
        status={"status_list": {"idx": 1, "uri": "urn:credledger:demo:status-list:tax:degree"}})
    anchor = issue_tx("demo", agency, issued.credential_id, "degree", 1, T0 + 10,
                      T0 + 30 * DAY, T0 + 10)
    result = world.ledger.commit([anchor], T0 + 10)
    assert [e.code for _, e in result.rejected] == ["not_granted"]
    honest, _ = world.issue()
    return Bundle(anchor.raw, honest.leaf_index, honest.proof, honest.checkpoint,
                  issued.serialize())


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_scenario(case: Path, ledger: LedgerHarness, agencies: dict[str, Agency]) -> None:
    spec: dict[str, Any] = json.loads(case.read_text())
    given, expect = spec["given"], spec["expect"]
    world = World(ledger, agencies)
    reg, edu = agencies["reg"], agencies["edu"]

    if given.get("issuer") == "tax":
        bundle = _forged_bundle(world, agencies["tax"])
        cid = b""
    else:
        bundle, cid = world.issue()
    if "checkpoint_signers" in given:
        from ledger.finality import sign_checkpoint

        head = ledger.store.head
        assert head is not None
        cp = sign_checkpoint("demo", head, [(a, agencies[a].node_key)
                                            for a in given["checkpoint_signers"]])
        bundle = Bundle(bundle.anchor, bundle.leaf_index,
                        tuple(ledger.store.inclusion_proof(bundle.leaf_index, head.log_size)),
                        cp.to_text(), bundle.sd_jwt)
    if "invalidate_issuer_key_from" in given:
        ledger.govern("invalidate_key", {"kid": edu.issuer_key.kid,
                                         "from": T0 + given["invalidate_issuer_key_from"]},
                      [reg, edu], T0 + 11)
    for status, at in given.get("status_changes", []):
        r = ledger.commit([status_tx("demo", edu, cid, status, "scenario", T0 + at)], T0 + at)
        assert not r.rejected
    if given.get("tamper") == "swap_anchor":
        other, _ = world.issue(now=T0 + 11)
        bundle = Bundle(other.anchor, other.leaf_index, other.proof, other.checkpoint,
                        bundle.sd_jwt)

    present_at = T0 + given.get("present_at", 20)
    verify_at = T0 + given.get("verify_at", 20)
    nonce = given.get("present_nonce", REQ.nonce)
    aud = given.get("present_audience", REQ.audience)
    holder = PrivateKey(b"\x55" * 32) if given.get("holder") == "stranger" else HOLDER
    disclose = given.get("disclose", list(REQ.claims))
    kb = sdjwt.present(bundle.sd_jwt, disclose=disclose, holder_key=holder, nonce=nonce,
                       aud=aud, iat=present_at)
    if given.get("tamper") in {"issuer_signature", "alg_none", "disclosure", "extra_disclosure"}:
        kb = _tamper(given["tamper"], kb, bundle, nonce, aud, present_at)
    envelope = Envelope.from_bundle(bundle, kb).to_bytes()

    lists = (lambda _uri: None) if given.get("status_list") == "missing" else world.lists()
    used: set[str] = set()
    report = verify_envelope(envelope, REQ, registry=ledger.registry, now=verify_at,
                             status_lists=lists, used_nonces=used)
    if given.get("replay"):
        assert report.verified, report.to_json()
        report = verify_envelope(envelope, REQ, registry=ledger.registry, now=verify_at,
                                 status_lists=lists, used_nonces=used)

    assert report.verified is expect.get("verified", False), report.to_json()
    if "status" in expect:
        assert report.status == expect["status"]
    if "failed" in expect:
        failed = [c for c in report.checks if not c.ok]
        assert failed, report.to_json()
        assert failed[0].name == expect["failed"], report.to_json()
        assert expect.get("detail", "").lower() in failed[0].detail.lower(), report.to_json()
    else:
        assert report.claims == {c: CLAIMS[c] for c in REQ.claims}
    _assert_store_holds_no_personal_data(ledger)


def _assert_store_holds_no_personal_data(ledger: LedgerHarness) -> None:
    """The whole LevelDB folder (log, tables, manifest) holds no claim value nor holder key."""
    blob = b"".join(p.read_bytes() for p in ledger.path.iterdir() if p.is_file())
    assert len(blob) > 1000  # the scan reads real data
    for value in CLAIMS.values():
        assert value.encode() not in blob, "a claim value reached the ledger"
    assert HOLDER.public.raw not in blob
    assert sdjwt.jwk_from_ed25519(HOLDER.public.raw)["x"].encode() not in blob


def test_every_listed_negative_case_is_present() -> None:
    """The credentials issue names these cases; the folder must hold each of them."""
    names = {c.stem for c in CASES}
    assert {"forged-signature", "unauthorized-issuer", "key-invalidated-before-issuance",
            "expired", "revoked", "suspended-then-reinstated", "replayed-nonce",
            "wrong-audience", "stale-key-binding", "tampered-disclosure", "extra-disclosure",
            "alg-none"} <= names
