"""Interop with the reference implementation, the ``sd-jwt`` package (openwallet-foundation-labs).

Coverage, honestly:

* ours -> reference: the reference ``SDJWTVerifier`` verifies credentials and presentations we
  issue with an **EdDSA** issuer (jwcrypto's default allow-list has EdDSA, and the verifier takes
  the ``alg`` from the header) and with an ES256 issuer. Its Key Binding check is hard-wired to
  ES256, so our presentations for it use a P-256 holder key; with an Ed25519 holder key it
  rejects our (valid) presentation, which a test records.
* reference -> ours: our verifier accepts presentations the reference issuer + holder produce,
  ES256 and EdDSA issuers, with flat, structured (nested ``_sd``) and array-element Disclosures
  and decoys, and rejects them with the wrong nonce.

The reference holder stamps the KB-JWT ``iat`` from the wall clock; we read that ``iat`` back
from the presentation and verify "at" it, so no test depends on the time it runs.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwcrypto.jwk import JWK
from sd_jwt.common import SDObj
from sd_jwt.holder import SDJWTHolder
from sd_jwt.issuer import SDJWTIssuer
from sd_jwt.verifier import SDJWTVerifier

from ledger import sdjwt
from ledger.keys import PrivateKey

T0 = 1_700_000_000
NONCE = "interop-nonce-42"
AUD = "https://verifier.agency.example"

ED_ISSUER = PrivateKey(bytes(range(100, 132)))
EC_ISSUER = ec.derive_private_key(0xA5A5_1234_5678, ec.SECP256R1())
EC_HOLDER = ec.derive_private_key(0x5A5A_8765_4321, ec.SECP256R1())
ED_HOLDER = PrivateKey(bytes(range(140, 172)))

CLAIMS: dict[str, Any] = {
    "given_name": "Ana",
    "family_name": "Horvat",
    "address": {"locality": "Split", "country": "HR"},
    "nationalities": ["HR", "SI"],
    "licence_class": 3,
}


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def our_jwk(key: PrivateKey | ec.EllipticCurvePrivateKey) -> dict[str, str]:
    if isinstance(key, PrivateKey):
        return sdjwt.jwk_from_ed25519(key.public.raw)
    return sdjwt.jwk_from_ec(key.public_key())


def private_jwk(key: PrivateKey | ec.EllipticCurvePrivateKey) -> JWK:
    """The same key as a jwcrypto private JWK, for the reference issuer / holder."""
    jwk = our_jwk(key)
    if isinstance(key, PrivateKey):
        d = key.seed
    else:
        d = key.private_numbers().private_value.to_bytes(32, "big")
    return JWK(**jwk, d=base64.urlsafe_b64encode(d).rstrip(b"=").decode())


def ours_issue(issuer: PrivateKey | ec.EllipticCurvePrivateKey,
               holder: PrivateKey | ec.EllipticCurvePrivateKey) -> sdjwt.IssuedSdJwt:
    return sdjwt.issue_sd_jwt(
        issuer_key=issuer, issuer_kid="k1", claims=CLAIMS, holder_jwk=our_jwk(holder),
        vct="https://registry.example/types/driving-licence", iss="https://mot.agency.example",
        iat=T0 - 60, nbf=T0 - 60, exp=T0 + 3600, status=None, decoys=2,
        alg="EdDSA" if isinstance(issuer, PrivateKey) else "ES256")


def reference_payload(presentation: str, issuer: PrivateKey | ec.EllipticCurvePrivateKey,
                      **kb: str) -> dict[str, Any]:
    issuer_jwk = JWK(**our_jwk(issuer))
    verifier = SDJWTVerifier(presentation, lambda _iss, _header: issuer_jwk,
                             kb.get("aud"), kb.get("nonce"))
    payload: dict[str, Any] = verifier.get_verified_payload()
    return payload


# -- ours -> reference ----------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", [ED_ISSUER, EC_ISSUER], ids=["EdDSA-issuer", "ES256-issuer"])
def test_reference_verifies_our_credential(issuer: PrivateKey | ec.EllipticCurvePrivateKey) -> None:
    cred = ours_issue(issuer, EC_HOLDER)
    assert json.loads(b64d(cred.issuer_jwt.split(".")[0]))["alg"] in ("EdDSA", "ES256")
    theirs = reference_payload(cred.serialize(), issuer)
    ours = sdjwt.verify_issuer_signed(cred.serialize(), issuer_public_jwk=our_jwk(issuer), now=T0)
    assert theirs == ours
    assert {k: ours[k] for k in CLAIMS} == CLAIMS


@pytest.mark.parametrize("issuer", [ED_ISSUER, EC_ISSUER], ids=["EdDSA-issuer", "ES256-issuer"])
@pytest.mark.parametrize("disclose", [["given_name"], ["address", "nationalities"], []])
def test_reference_verifies_our_presentation(issuer: PrivateKey | ec.EllipticCurvePrivateKey,
                                             disclose: list[str]) -> None:
    cred = ours_issue(issuer, EC_HOLDER)
    presentation = sdjwt.present(cred.serialize(), disclose=disclose, holder_key=EC_HOLDER,
                                 nonce=NONCE, aud=AUD, iat=T0, alg="ES256")
    theirs = reference_payload(presentation, issuer, aud=AUD, nonce=NONCE)
    ours = sdjwt.verify_presentation(presentation, issuer_public_jwk=our_jwk(issuer),
                                     expected_nonce=NONCE, expected_audience=AUD, now=T0)
    assert theirs == ours
    assert set(CLAIMS) & set(theirs) == set(disclose)
    with pytest.raises(Exception, match="nonce"):  # the reference raises bare ValueError
        reference_payload(presentation, issuer, aud=AUD, nonce="other")


def test_reference_kb_check_is_es256_only() -> None:
    """A limitation of the reference, not of our format: it cannot check an Ed25519 holder."""
    cred = ours_issue(ED_ISSUER, ED_HOLDER)
    presentation = sdjwt.present(cred.serialize(), disclose=["given_name"], holder_key=ED_HOLDER,
                                 nonce=NONCE, aud=AUD, iat=T0, alg="EdDSA")
    assert sdjwt.verify_presentation(presentation, issuer_public_jwk=our_jwk(ED_ISSUER),
                                     expected_nonce=NONCE, expected_audience=AUD, now=T0)
    with pytest.raises(Exception):  # noqa: B017, PT011 - jwcrypto's InvalidJWSSignature
        reference_payload(presentation, ED_ISSUER, aud=AUD, nonce=NONCE)


# -- reference -> ours ----------------------------------------------------------------------------


def reference_issue(issuer: PrivateKey | ec.EllipticCurvePrivateKey, decoys: bool) -> str:
    user_claims = {
        "iss": "https://foreign-issuer.example",
        # A wide validity window: the reference holder stamps its KB-JWT from the wall clock.
        "iat": 1_600_000_000,
        "exp": 4_000_000_000,
        "vct": "https://foreign.example/types/pid",
        SDObj("given_name"): "Ana",
        SDObj("family_name"): "Horvat",
        SDObj("address"): {SDObj("locality"): "Split", "country": "HR"},  # nested _sd
        "nationalities": [SDObj("HR"), "SI", SDObj("DE")],  # array-element disclosures
        SDObj("degrees"): [SDObj({SDObj("type"): "BSc", "year": 2010})],  # recursive
    }
    issuer_obj = SDJWTIssuer(
        user_claims, private_jwk(issuer), holder_key=private_jwk(EC_HOLDER),
        sign_alg="EdDSA" if isinstance(issuer, PrivateKey) else "ES256",
        add_decoy_claims=decoys, extra_header_parameters={"typ": "dc+sd-jwt"})
    issuance: str = issuer_obj.sd_jwt_issuance
    header = json.loads(b64d(issuance.split(".", maxsplit=1)[0]))
    assert header["alg"] == ("EdDSA" if isinstance(issuer, PrivateKey) else "ES256")
    return issuance


@pytest.mark.parametrize("issuer", [ED_ISSUER, EC_ISSUER], ids=["EdDSA-issuer", "ES256-issuer"])
@pytest.mark.parametrize("decoys", [False, True], ids=["no-decoys", "decoys"])
def test_we_verify_reference_presentation(issuer: PrivateKey | ec.EllipticCurvePrivateKey,
                                          decoys: bool) -> None:
    issuance = reference_issue(issuer, decoys)
    holder = SDJWTHolder(issuance)
    holder.create_presentation(
        {"given_name": True, "address": {"locality": True}, "nationalities": [True, False, False],
         "degrees": [{"type": True}]},
        nonce=NONCE, aud=AUD, holder_key=private_jwk(EC_HOLDER), sign_alg="ES256")
    presentation: str = holder.sd_jwt_presentation
    kb_iat = json.loads(b64d(presentation.rsplit("~", 1)[1].split(".")[1]))["iat"]

    ours = sdjwt.verify_presentation(presentation, issuer_public_jwk=our_jwk(issuer),
                                     expected_nonce=NONCE, expected_audience=AUD, now=kb_iat)
    assert ours["given_name"] == "Ana"
    assert "family_name" not in ours
    assert ours["address"] == {"locality": "Split", "country": "HR"}
    assert ours["nationalities"] == ["HR", "SI"]
    assert ours["degrees"] == [{"type": "BSc", "year": 2010}]
    assert ours["cnf"] == {"jwk": our_jwk(EC_HOLDER)}
    theirs = reference_payload(presentation, issuer, aud=AUD, nonce=NONCE)
    assert ours == theirs

    with pytest.raises(sdjwt.KbNonceError):
        sdjwt.verify_presentation(presentation, issuer_public_jwk=our_jwk(issuer),
                                  expected_nonce="other", expected_audience=AUD, now=kb_iat)
    # and the full credential as a wallet would check it
    full = sdjwt.verify_issuer_signed(issuance, issuer_public_jwk=our_jwk(issuer), now=kb_iat)
    assert full["family_name"] == "Horvat"
    assert full["nationalities"] == ["HR", "SI", "DE"]


def test_we_present_a_reference_credential() -> None:
    """Our holder code presents a credential the reference issued; both verifiers accept it."""
    issuance = reference_issue(EC_ISSUER, decoys=True)
    presentation = sdjwt.present(issuance, disclose=["address"], holder_key=EC_HOLDER,
                                 nonce=NONCE, aud=AUD, iat=T0, alg="ES256")
    ours = sdjwt.verify_presentation(presentation, issuer_public_jwk=our_jwk(EC_ISSUER),
                                     expected_nonce=NONCE, expected_audience=AUD, now=T0)
    assert ours["address"] == {"locality": "Split", "country": "HR"}
    assert "given_name" not in ours
    assert ours == reference_payload(presentation, EC_ISSUER, aud=AUD, nonce=NONCE)
