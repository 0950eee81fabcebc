"""Credentials from issuers outside the network (ADR 39): trust lists, SD-JWT VCs signed ES256 or
EdDSA by an issuer with no anchor on the ledger, their Status List Tokens, the wallet keeping and
presenting them, and `ledger verify --trust` on the real command line.

The foreign issuer is played by the test with the SD-JWT library (it is not our product: another
government's software), with a P-256 key as most issuers outside use.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import sdjwt
from ledger.errors import DecodeError, LedgerError
from ledger.foreign import (
    MAX_TRUST_LIST,
    NO_EXPIRY,
    ForeignCredential,
    TrustList,
    read_status_tokens,
    read_trust_list,
    receive_foreign,
    tokens_by_uri,
    verify_foreign,
)
from ledger.keys import PrivateKey
from ledger.presentation import Request
from ledger.statuslist import INVALID, SUSPENDED, StatusList, make_token
from wallet import Wallet
from wallet.errors import WalletError

ISS = "https://register.example.gov"
URI = "https://register.example.gov/status/7"
VCT = "https://register.example.gov/types/birth-certificate"
NOW = 1_790_000_000
BIN = Path(sys.executable).parent
PASS = b"foreign wallet pass"


class Issuer:
    """An issuer outside the network: a P-256 key (kid "2026-1"), or Ed25519 when asked."""

    def __init__(self, kid: str = "2026-1", ed25519: bool = False, alg: str | None = None,
                 jwk_alg: str | None = None) -> None:
        self.kid = kid
        self.key: Any = (PrivateKey.generate() if ed25519
                         else ec.generate_private_key(ec.SECP256R1()))
        self.alg = alg or sdjwt.jws_alg(self.key)
        self.jwk_alg = jwk_alg  # the trust list's "alg" for the key, if it names one

    def jwk(self) -> dict[str, str]:
        pub = self.key.public if isinstance(self.key, PrivateKey) else self.key.public_key()
        jwk = (sdjwt.jwk_from_ed25519(pub.raw) if isinstance(self.key, PrivateKey)
               else sdjwt.jwk_from_ec(pub))
        return {**jwk, "kid": self.kid, **({"alg": self.jwk_alg} if self.jwk_alg else {})}

    def issue(self, holder_jwk: dict[str, str], *, iss: str = ISS, idx: int | None = 5,
              claims: dict[str, Any] | None = None, nbf: int = NOW - 86_400,
              exp: int = NOW + 365 * 86_400) -> str:
        status = None if idx is None else {"status_list": {"idx": idx, "uri": URI}}
        return sdjwt.issue_sd_jwt(
            issuer_key=self.key, issuer_kid=self.kid, alg=self.alg, vct=VCT, iss=iss,
            claims=claims or {"given_name": "Mei", "family_name": "Lin",
                              "birth_date": "1990-04-01", "place_of_birth": "Tainan"},
            holder_jwk=holder_jwk, iat=nbf, nbf=nbf, exp=exp, status=status).serialize()

    def token(self, revoked: int | None = None, suspended: int | None = None,
              iat: int = NOW - 60, exp: int = NOW + 3600) -> str:
        entries = [(i, v) for i, v in ((revoked, INVALID), (suspended, SUSPENDED))
                   if i is not None]
        return make_token(StatusList.from_entries(2, 64, entries), sub=URI, iat=iat,
                          exp=exp, ttl=None, key=self.key, kid=self.kid)


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def trust_json(*issuers: Issuer, status: str | None = None, iss: str = ISS) -> dict[str, Any]:
    entry: dict[str, Any] = {"iss": iss, "name": "National Register",
                             "keys": [i.jwk() for i in issuers]}
    if status is not None:
        entry["status"] = status
    return {"issuers": [entry]}


HOLDER = PrivateKey(bytes(range(32)))
HOLDER_JWK = sdjwt.jwk_from_ed25519(HOLDER.public.raw)
REQ = Request("n-0123456789", "https://desk.civil.example", VCT, ("birth_date",))


def present(credential: str, *, req: Request = REQ, disclose: tuple[str, ...] = ("birth_date",),
            iat: int = NOW) -> str:
    return sdjwt.present(credential, disclose=disclose, holder_key=HOLDER, nonce=req.nonce,
                         aud=req.audience, iat=iat)


def check(presentation: str, trust: dict[str, Any], tokens: list[str] | None = None,
          req: Request = REQ, used: set[str] | None = None) -> Any:
    return verify_foreign(presentation, req, trust=TrustList.from_json(trust), now=NOW,
                          status_tokens=tokens_by_uri(tokens or []), used_nonces=used)


def failed(report: Any) -> tuple[str, str]:
    bad = [c for c in report.checks if not c.ok]
    assert bad and not report.verified
    return bad[0].name, bad[0].detail


# -- the verifier's check --------------------------------------------------------------------------


@pytest.mark.parametrize("issuer", [
    Issuer, lambda: Issuer(ed25519=True),
    # RFC 9864's fully specified name, in the JWS header, the trust list, or both
    lambda: Issuer(ed25519=True, alg="Ed25519"),
    lambda: Issuer(ed25519=True, alg="Ed25519", jwk_alg="Ed25519"),
    lambda: Issuer(ed25519=True, alg="EdDSA", jwk_alg="Ed25519"),
    lambda: Issuer(ed25519=True, alg="Ed25519", jwk_alg="EdDSA"),
], ids=["ES256", "EdDSA", "Ed25519", "Ed25519 listed as Ed25519", "EdDSA listed as Ed25519",
        "Ed25519 listed as EdDSA"])
def test_a_foreign_credential_verifies_with_its_issuers_token(
        issuer: Callable[[], Issuer]) -> None:
    issuer = issuer()
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer), [issuer.token()])
    assert report.verified, report.checks
    assert [c.name for c in report.checks] == ["presentation", "trusted_issuer", "sd_jwt",
                                               "requested_claims", "status"]
    assert report.status == "valid"
    assert report.claims == {"birth_date": "1990-04-01"}  # only what was asked


@pytest.mark.parametrize(("revoked", "suspended", "status"),
                         [(5, None, "revoked"), (None, 5, "suspended")])
def test_a_revoked_or_suspended_foreign_credential_is_not_verified(
        revoked: int | None, suspended: int | None, status: str) -> None:
    issuer = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer),
                   [issuer.token(revoked=revoked, suspended=suspended)])
    assert report.status == status
    assert failed(report)[0] == "status"


def test_without_a_token_the_status_is_undetermined_never_valid() -> None:
    issuer = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer))
    assert report.status == "undetermined"
    assert failed(report) == ("status", f"status list {URI} is not available")


def test_a_token_signed_by_another_key_leaves_the_status_undetermined() -> None:
    issuer, forger = Issuer(), Issuer()  # the forger reuses the issuer's kid
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer), [forger.token()])
    assert report.status == "undetermined"
    name, detail = failed(report)
    assert name == "status" and "signature does not verify" in detail


@pytest.mark.parametrize(("iat", "exp", "said"), [
    (NOW - 7200, NOW - 3600, "expired"),  # the issuer's list of an hour ago
    (NOW + 3600, NOW + 7200, "in the future"),
], ids=["expired", "future"])
def test_a_status_token_outside_its_time_leaves_the_status_undetermined(
        iat: int, exp: int, said: str) -> None:
    """A token the official holds that expired (or is not yet issued) says nothing now, even
    that the credential is valid: undetermined, with the reason."""
    issuer = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer),
                   [issuer.token(iat=iat, exp=exp)])
    assert report.status == "undetermined"
    name, detail = failed(report)
    assert name == "status" and said in detail


def test_an_issuer_not_on_the_trust_list_is_refused() -> None:
    issuer = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK, iss="https://elsewhere.example")),
                   trust_json(issuer), [issuer.token()])
    assert failed(report) == ("trusted_issuer",
                              "the issuer 'https://elsewhere.example' is not on the trust list")


def test_a_credential_signed_by_another_key_under_a_trusted_name_is_refused() -> None:
    issuer, forger = Issuer(), Issuer()
    report = check(present(forger.issue(HOLDER_JWK)), trust_json(issuer), [issuer.token()])
    name, detail = failed(report)
    assert name == "sd_jwt" and "signature does not verify" in detail


def _resigned(issuer: Issuer, credential: str, change: Callable[[dict[str, Any]], None]) -> str:
    """``credential`` with its issuer-signed payload changed by ``change`` and signed again by
    ``issuer`` (a trusted issuer signing what it likes)."""
    jwt, rest = credential.split("~", 1)
    head, body, _ = jwt.split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    change(payload)
    signing_input = f"{head}.{_b64e(json.dumps(payload).encode())}"
    return (f"{signing_input}.{_b64e(sdjwt.jws_sign(issuer.key, signing_input.encode()))}"
            f"~{rest}")


def test_a_holder_key_with_an_alg_that_is_no_string_is_refused_not_a_crash() -> None:
    """A trusted issuer signs a ``cnf.jwk`` whose ``alg`` is an array: the presentation is
    refused with a report (never an exception out of the check), and a wallet will not keep
    the credential."""
    issuer = Issuer()
    credential = _resigned(issuer, issuer.issue(HOLDER_JWK),
                           lambda p: p["cnf"]["jwk"].update(alg=["EdDSA"]))
    report = check(present(credential), trust_json(issuer), [issuer.token()])
    name, detail = failed(report)
    assert name == "sd_jwt" and "alg" in detail and "string" in detail, detail
    with pytest.raises(LedgerError, match="alg"):
        receive_foreign(credential, trust=TrustList.from_json(trust_json(issuer)),
                        holder_jwk=HOLDER_JWK, now=NOW)


def test_a_kid_the_trust_list_does_not_know_is_refused() -> None:
    issuer = Issuer(kid="2027-9")
    listed = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(listed))
    name, detail = failed(report)
    assert name == "trusted_issuer" and "no key with kid '2027-9'" in detail


def test_a_status_token_naming_a_kid_not_on_the_list_is_undetermined() -> None:
    """As for the credential: a token's header kid picks the key; a kid the trust list does
    not list (and no key listed without one) leaves the status undetermined, though the
    token's signature is the issuer's."""
    issuer = Issuer()
    token = make_token(StatusList.from_entries(2, 64, []), sub=URI, iat=NOW - 60,
                       exp=NOW + 3600, ttl=None, key=issuer.key, kid="2027-9")
    report = check(present(issuer.issue(HOLDER_JWK)), trust_json(issuer), [token])
    assert report.status == "undetermined"
    name, detail = failed(report)
    assert name == "status" and "has kid '2027-9'" in detail


def test_a_rotated_issuer_verifies_under_either_listed_key() -> None:
    old, new = Issuer(kid="2025-1"), Issuer(kid="2026-1", ed25519=True)
    trust = trust_json(old, new)
    for who in (old, new):
        assert check(present(who.issue(HOLDER_JWK)), trust, [who.token()]).verified


def test_nonce_audience_type_and_claims_are_the_requests() -> None:
    issuer = Issuer()
    cred = issuer.issue(HOLDER_JWK)
    other = Request("n-other-nonce", REQ.audience, VCT, ("birth_date",))
    name, detail = failed(check(present(cred, req=other), trust_json(issuer), [issuer.token()]))
    assert name == "sd_jwt" and "nonce" in detail
    elsewhere = Request(REQ.nonce, "https://another.desk", VCT, ("birth_date",))
    name, detail = failed(check(present(cred, req=elsewhere), trust_json(issuer),
                                [issuer.token()]))
    assert name == "sd_jwt" and "aud" in detail
    wrong_type = Request(REQ.nonce, REQ.audience, "residence", ("birth_date",))
    name, _ = failed(check(present(cred, req=wrong_type), trust_json(issuer), [issuer.token()],
                           req=wrong_type))
    assert name == "requested_claims"
    more = Request(REQ.nonce, REQ.audience, VCT, ("birth_date", "family_name"))
    name, detail = failed(check(present(cred, req=more), trust_json(issuer), [issuer.token()],
                                req=more))
    assert name == "requested_claims" and "family_name" in detail


def test_a_replayed_nonce_is_refused() -> None:
    issuer = Issuer()
    pres, used = present(issuer.issue(HOLDER_JWK)), set[str]()
    assert check(pres, trust_json(issuer), [issuer.token()], used=used).verified
    assert failed(check(pres, trust_json(issuer), [issuer.token()], used=used))[0] \
        == "nonce_fresh"


def test_an_expired_foreign_credential_is_refused() -> None:
    issuer = Issuer()
    cred = issuer.issue(HOLDER_JWK, nbf=NOW - 10 * 86_400, exp=NOW - 86_400)
    name, detail = failed(check(present(cred), trust_json(issuer), [issuer.token()]))
    assert name == "sd_jwt" and "expired" in detail


def test_no_status_claim_passes_only_where_the_trust_list_says_so() -> None:
    issuer = Issuer()
    pres = present(issuer.issue(HOLDER_JWK, idx=None))
    name, detail = failed(check(pres, trust_json(issuer)))
    assert name == "status" and "expects one" in detail
    report = check(pres, trust_json(issuer, status="optional"))
    assert report.verified and report.status == "valid"


@pytest.mark.parametrize("bad", ["", "not~an~sd-jwt~", "a" * 70_000, "x.y.z~"])
def test_malformed_presentations_fail_the_first_step(bad: str) -> None:
    issuer = Issuer()
    assert failed(check(bad, trust_json(issuer)))[0] == "presentation"


@pytest.mark.parametrize("typ", ["example+sd-jwt", "sd-jwt", None])
def test_only_an_sd_jwt_vc_comes_from_outside(typ: str | None) -> None:
    """A foreign credential must say it is an SD-JWT VC: under another '+sd-jwt' type RFC 9901
    lets exp, status or cnf be disclosable, which this path relies on being plain."""
    issuer = Issuer()
    jwt, rest = issuer.issue(HOLDER_JWK).split("~", 1)
    header = {**sdjwt.parse_jws_header(jwt), "typ": typ}
    head = _b64e(json.dumps({k: v for k, v in header.items() if v is not None})
                               .encode())
    signing_input = f"{head}.{jwt.split('.')[1]}"
    credential = (f"{signing_input}."
                  f"{_b64e(sdjwt.jws_sign(issuer.key, signing_input.encode()))}"
                  f"~{rest}")
    name, detail = failed(check(present(credential), trust_json(issuer), [issuer.token()]))
    assert name == "presentation" and "must be an SD-JWT VC" in detail, detail
    with pytest.raises(DecodeError, match="must be an SD-JWT VC"):
        receive_foreign(credential, trust=TrustList.from_json(trust_json(issuer)),
                        holder_jwk=HOLDER_JWK, now=NOW)


def test_a_credential_without_key_binding_is_not_a_presentation() -> None:
    issuer = Issuer()
    name, detail = failed(check(issuer.issue(HOLDER_JWK), trust_json(issuer)))
    assert name == "presentation" and "no key-binding JWT" in detail


# -- the trust list ----------------------------------------------------------------------------


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"iss": ISS, "name": "National Register", "keys": [Issuer().jwk()]}
    entry.update(changes)
    return {"issuers": [{k: v for k, v in entry.items() if v is not None}]}


@pytest.mark.parametrize(("trust", "message"), [
    ([], "a trust list is"),
    ({"issuers": []}, "non-empty list"),
    (_entry(keys=[{**Issuer().jwk(), "d": "AAAA"}]), "private or secret key \\('d'\\)"),
    (_entry(keys=[{"kty": "oct", "k": "AAAA"}]), "secret key \\('k'\\)"),
    (_entry(keys=[{**Issuer().jwk(), "use": "enc"}]), "not for signatures"),
    (_entry(keys=[{**Issuer().jwk(), "key_ops": ["sign"]}]), "does not include 'verify'"),
    (_entry(keys=[{**Issuer().jwk(), "key_ops": "verify"}]), "does not include 'verify'"),
    (_entry(keys=[]), "list of 1 to 16"),
    (_entry(keys=[{"kty": "EC", "crv": "P-384", "x": "AA", "y": "AA"}]),
     "curve is not supported, expected 'P-256'"),
    (_entry(keys=[{**Issuer().jwk(), "alg": "EdDSA"}]), "does not fit"),
    (_entry(keys=[{**Issuer().jwk(), "alg": "Ed25519"}]), "does not fit"),
    (_entry(keys=[{**Issuer(ed25519=True).jwk(), "alg": "ES256"}]), "does not fit"),
    (_entry(keys=[Issuer(kid="k").jwk(), Issuer(kid="k").jwk()]), "same kid"),
    (_entry(status="sometimes"), "'required' or 'optional'"),
    (_entry(iss="a\nb"), "printable"),
    (_entry(colour="blue"), "unknown member"),
    (_entry(name=None), "missing 'name'"),
    (_entry(types=[]), "list of 1 to 64 credential types"),
    (_entry(types="degree"), "list of 1 to 64 credential types"),
    (_entry(types=["x" * 201]), r"types\[0\]"),
    ({"issuers": [_entry()["issuers"][0], _entry()["issuers"][0]]}, "listed twice"),
])
def test_bad_trust_lists_are_refused_with_a_reason(trust: Any, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        TrustList.from_json(trust)


def test_a_trusted_key_with_members_it_does_not_read_is_taken_without_them() -> None:
    """RFC 7517 section 4: members a reader does not understand are ignored. WebCrypto's
    export (and sd-jwt-js's key helper) adds ``ext``; certificates come as ``x5c``."""
    issuer = Issuer(kid="k1")
    exported = {**issuer.jwk(), "ext": True, "key_ops": ["verify"], "use": "sig",
                "x5t#S256": "AAAA", "x5c": ["MIIB"]}
    trust = TrustList.from_json(_entry(keys=[exported]))
    (jwk, _key), = trust.issuers[ISS].keys
    assert jwk == {**issuer.jwk(), "key_ops": ["verify"], "use": "sig"}
    # and it checks credentials as the plain key does
    report = check(present(issuer.issue(HOLDER_JWK)), _entry(keys=[exported]), [issuer.token()])
    assert report.verified, report.checks


def test_an_issuer_is_trusted_only_for_the_types_its_entry_lists() -> None:
    issuer = Issuer()
    only = {"issuers": [{**trust_json(issuer)["issuers"][0], "types": [VCT]}]}
    other = {"issuers": [{**trust_json(issuer)["issuers"][0], "types": ["diploma"]}]}
    cred = issuer.issue(HOLDER_JWK)
    assert check(present(cred), only, [issuer.token()]).verified
    assert failed(check(present(cred), other, [issuer.token()])) == (
        "requested_claims", f"the trust list does not trust 'National Register' for {VCT!r} "
                            "credentials (only ['diploma'])")
    with pytest.raises(LedgerError, match="does not trust 'National Register'"):
        receive_foreign(cred, trust=TrustList.from_json(other), holder_jwk=HOLDER_JWK, now=NOW)
    assert receive_foreign(cred, trust=TrustList.from_json(only), holder_jwk=HOLDER_JWK,
                           now=NOW).type == VCT


def test_claims_disclosed_beyond_the_request_are_not_shown() -> None:
    issuer = Issuer()
    report = check(present(issuer.issue(HOLDER_JWK), disclose=("birth_date", "given_name")),
                   trust_json(issuer), [issuer.token()])
    assert report.verified and report.claims == {"birth_date": "1990-04-01"}
    step = next(c for c in report.checks if c.name == "requested_claims")
    assert "1 more disclosed than asked, not shown" in step.detail
    assert ", 1 claim disclosed;" in step.detail  # one, not "1 claims" (round 43D)
    both = Request(REQ.nonce, REQ.audience, VCT, ("birth_date", "given_name"))
    two = check(present(issuer.issue(HOLDER_JWK), req=both, disclose=("birth_date", "given_name")),
                trust_json(issuer), [issuer.token()], req=both)
    step = next(c for c in two.checks if c.name == "requested_claims")
    assert step.detail.endswith(", 2 claims disclosed")


def test_of_two_tokens_for_one_list_in_the_folder_the_newer_counts(tmp_path: Path) -> None:
    """An official's folder gets a list's token again each time it is downloaded. The first
    file by name was kept, so an old download named before the new one ("2026-11-01.jwt",
    "latest.jwt") hid a revocation. The token issued last (``iat``) counts now."""
    issuer = Issuer()
    (tmp_path / "a-old.jwt").write_text(issuer.token(iat=NOW - 3000))
    (tmp_path / "z-new.jwt").write_text(issuer.token(revoked=1, iat=NOW - 60))
    (tmp_path / "m-older.jwt").write_text(issuer.token(iat=NOW - 6000))
    tokens, skipped = read_status_tokens(tmp_path)
    assert tokens == {URI: (tmp_path / "z-new.jwt").read_text()}
    assert sorted(skipped) == [f"a-old.jwt: an older token for {URI!r} than z-new.jwt",
                               f"m-older.jwt: an older token for {URI!r} than z-new.jwt"]
    report = check(present(issuer.issue(HOLDER_JWK, idx=1)), trust_json(issuer),
                   list(tokens.values()))
    assert report.status == "revoked", report
    # two issued in one second: the first file by name, as before
    (tmp_path / "z-new.jwt").unlink()
    (tmp_path / "b-same-second.jwt").write_text(issuer.token(revoked=1, iat=NOW - 3000))
    tokens, skipped = read_status_tokens(tmp_path)
    assert tokens == {URI: (tmp_path / "a-old.jwt").read_text()}
    assert sorted(skipped) == [f"b-same-second.jwt: an older token for {URI!r} than a-old.jwt",
                               f"m-older.jwt: an older token for {URI!r} than a-old.jwt"]


def test_a_status_token_file_over_the_limit_is_left_out(tmp_path: Path) -> None:
    token = Issuer().token()
    (tmp_path / "big.jwt").write_text(token)
    assert read_status_tokens(tmp_path, limit=len(token)) == ({URI: token}, [])
    assert read_status_tokens(tmp_path, limit=len(token) - 1) == \
        ({}, [f"big.jwt: over {len(token) - 1} bytes"])


def test_status_tokens_are_keyed_by_their_list() -> None:
    issuer = Issuer()
    tok = issuer.token()
    assert tokens_by_uri([tok]) == {URI: tok}
    with pytest.raises(DecodeError, match="second token"):
        tokens_by_uri([tok, issuer.token(revoked=1)])
    with pytest.raises(DecodeError, match="not a Status List Token"):
        tokens_by_uri(["garbage"])


# -- the wallet --------------------------------------------------------------------------------


def test_receive_foreign_checks_issuer_holder_and_type() -> None:
    issuer, trust = Issuer(), TrustList.from_json(trust_json(Issuer()))
    with pytest.raises(LedgerError, match="signature does not verify"):
        receive_foreign(issuer.issue(HOLDER_JWK), trust=trust, holder_jwk=HOLDER_JWK, now=NOW)
    trust = TrustList.from_json(trust_json(issuer))
    other_holder = sdjwt.jwk_from_ed25519(PrivateKey.generate().public.raw)
    with pytest.raises(LedgerError, match="not the expected holder key"):
        receive_foreign(issuer.issue(other_holder), trust=trust, holder_jwk=HOLDER_JWK, now=NOW)
    got = receive_foreign(issuer.issue(HOLDER_JWK), trust=trust, holder_jwk=HOLDER_JWK,
                          now=NOW)
    assert (got.type, got.issuer) == (VCT, ISS)
    assert ForeignCredential.from_bytes(got.credential.to_bytes()) == got.credential


def test_receive_foreign_wants_a_status_claim_where_the_trust_list_does() -> None:
    """A credential without a status claim, from an issuer the trust list expects one from,
    is refused on receipt (no verifier would accept it); kept where the list says "optional",
    with its validity window read from nbf and exp."""
    issuer = Issuer()
    bare = issuer.issue(HOLDER_JWK, idx=None)
    with pytest.raises(LedgerError, match="no status claim"):
        receive_foreign(bare, trust=TrustList.from_json(trust_json(issuer)),
                        holder_jwk=HOLDER_JWK, now=NOW)
    got = receive_foreign(bare, trust=TrustList.from_json(trust_json(issuer, status="optional")),
                          holder_jwk=HOLDER_JWK, now=NOW)
    assert (got.valid_from, got.valid_until) == (NOW - 86_400, NOW + 365 * 86_400)


def test_a_wallet_keeps_and_presents_a_foreign_credential(tmp_path: Path) -> None:
    issuer = Issuer()
    trust = TrustList.from_json(trust_json(issuer))
    w = Wallet.init(tmp_path / "w.db", PASS)
    first = issuer.issue(w.holder_jwk())
    info = w.receive_foreign(first, trust=trust, now=NOW)
    w = Wallet.open(tmp_path / "w.db", PASS)  # it was saved
    assert [c.id for c in w.list()] == [info.id]
    assert w.is_foreign(info.id) and w.leaf_indexes() == {}
    assert w.show(info.id)["place_of_birth"] == "Tainan"
    pres = w.present(info.id, REQ, now=NOW).decode("ascii")
    report = verify_foreign(pres, REQ, trust=trust, now=NOW,
                            status_tokens=tokens_by_uri([issuer.token()]))
    assert report.verified and report.claims == {"birth_date": "1990-04-01"}
    with pytest.raises(WalletError, match="already in the wallet"):
        w.receive_foreign(first, trust=trust, now=NOW)
    assert w.refresh({info.id: []}, "", registry=None, now=NOW) == {  # type: ignore[arg-type]
        info.id: "issued outside the network: it has no ledger proof to refresh"}


# -- the command line, end to end ----------------------------------------------------------------


def _cli(tool: str, *args: str, cwd: Path, wallet: Path | None = None,
         columns: int = 200) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLET_")}
    env |= {"WALLET_PASSPHRASE": PASS.decode(), "COLUMNS": str(columns), "NO_COLOR": "1"}
    pre = ["--wallet", str(wallet)] if wallet is not None else []
    return subprocess.run([str(BIN / tool), *pre, *args], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_wallet_and_ledger_verify_on_the_command_line(tmp_path: Path) -> None:
    now = int(time.time())
    issuer = Issuer()
    w = tmp_path / "wallet.db"
    assert _cli("wallet", "init", cwd=tmp_path, wallet=w).returncode == 0
    holder = json.loads(_cli("wallet", "holder-key", cwd=tmp_path, wallet=w).stdout)
    cred = tmp_path / "birth.sd-jwt"
    cred.write_text(sdjwt.issue_sd_jwt(
        issuer_key=issuer.key, issuer_kid=issuer.kid, alg="ES256", vct=VCT, iss=ISS,
        claims={"given_name": "Mei", "birth_date": "1990-04-01"}, holder_jwk=holder,
        iat=now - 60, nbf=now - 60, exp=now + 86_400,
        status={"status_list": {"idx": 9, "uri": URI}}).serialize())
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(issuer)))
    token = tmp_path / "status.jwt"
    token.write_text(make_token(StatusList.from_entries(2, 64, []), sub=URI, iat=now - 60,
                                exp=now + 3600, ttl=None, key=issuer.key, kid=issuer.kid))

    r = _cli("wallet", "receive", str(cred), cwd=tmp_path, wallet=w)
    assert r.returncode == 2 and "exactly one of --registry" in r.stderr
    r = _cli("wallet", "receive", str(cred), "--trust", str(trust), cwd=tmp_path, wallet=w)
    assert r.returncode == 0, r.stderr
    assert "outside the network" in r.stderr
    cid = r.stdout.strip()
    r = _cli("wallet", "refresh", "--node", "http://127.0.0.1:9", "--registry", "none.bin",
             "--id", cid[:12], cwd=tmp_path, wallet=w)
    assert r.returncode == 1 and "no ledger proof to refresh" in r.stderr, r.stderr
    assert f"credential {cid[:16]} was issued" in r.stderr, r.stderr  # as `wallet list` cuts it

    req = tmp_path / "req.json"
    r = _cli("ledger", "request", "--type", VCT, "--audience", "https://desk.example",
             "--claim", "birth_date", "--out", str(req), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("wallet", "present", cid[:12], "--request", str(req), "--yes", cwd=tmp_path,
             wallet=w)
    assert r.returncode == 0, r.stderr
    pres = tmp_path / f"presentation-{cid[:12]}.sd-jwt"
    assert pres.read_text().count("~") >= 2 and r.stdout.strip() == pres.read_text()
    assert "Mei" not in pres.read_text() and "1990-04-01" not in r.stderr

    r = _cli("ledger", "verify", str(pres), "--request", str(req), "--trust", str(trust),
             "--status-token", str(token), "--json", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(r.stdout)
    assert got["verified"] and got["foreign"] and got["claims"] == {"birth_date": "1990-04-01"}

    r = _cli("ledger", "verify", str(pres), "--request", str(req), "--trust", str(trust),
             cwd=tmp_path)
    assert r.returncode == 1 and "undetermined" in r.stdout and "NOT VERIFIED" in r.stdout

    r = _cli("ledger", "verify", str(pres), "--request", str(req), "--trust", str(trust),
             "--snapshot", str(token), cwd=tmp_path)
    assert r.returncode == 2 and "leave out --data and --snapshot" in r.stderr
    bad_trust = tmp_path / "bad.json"
    bad_trust.write_text(json.dumps(trust_json(issuer) | {"extra": 1}))
    r = _cli("ledger", "verify", str(pres), "--request", str(req), "--trust", str(bad_trust),
             cwd=tmp_path)
    assert r.returncode == 2 and "trust list" in r.stderr


def _wallet_given_a_foreign(tmp_path: Path, vct: str, claims: dict[str, Any]
                           ) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A wallet made through the CLI in ``tmp_path`` and `wallet receive`'s run taking an
    outside issuer's credential of type ``vct`` with ``claims``, bound to its holder key."""
    now = int(time.time())
    issuer = Issuer()
    w = tmp_path / "wallet.db"
    assert _cli("wallet", "init", cwd=tmp_path, wallet=w).returncode == 0
    holder = json.loads(_cli("wallet", "holder-key", cwd=tmp_path, wallet=w).stdout)
    cred = tmp_path / "foreign.sd-jwt"
    cred.write_text(sdjwt.issue_sd_jwt(
        issuer_key=issuer.key, issuer_kid=issuer.kid, alg="ES256", vct=vct, iss=ISS,
        claims=claims, holder_jwk=holder, iat=now - 60, nbf=now - 60, exp=now + 86_400,
        status={"status_list": {"idx": 9, "uri": URI}}).serialize())
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(issuer)))
    r = _cli("wallet", "receive", str(cred), "--trust", str(trust), cwd=tmp_path, wallet=w)
    assert r.returncode == 0, r.stderr
    return w, r


def test_a_type_padded_with_spaces_draws_no_line_of_its_own_in_the_wallet(
        tmp_path: Path) -> None:
    """A foreign credential's ``vct`` may hold spaces (200 characters): padded to a terminal's
    width, its tail would wrap onto a line of its own in `wallet list` (a pipe or a narrow
    terminal: lines, not a table) and read as that credential's dates and state. The wallet
    shows a run of spaces in a type or an issuer as one, as its preview of a request does."""
    fake = "valid 2026-01-01 to 2036-01-01 (valid), key 1, shown 0"
    w, r = _wallet_given_a_foreign(tmp_path, "birth" + " " * 100 + fake,
                                   {"birth_date": "1990-04-01"})
    assert f"birth {fake} from" in r.stderr, r.stderr
    r = _cli("wallet", "list", cwd=tmp_path, wallet=w, columns=80)  # lines, not a table
    assert r.returncode == 0, r.stderr
    assert f"birth {fake} from {ISS} (outside the network)\n  valid " in r.stdout, r.stdout


def test_the_wallet_marks_a_credential_from_outside_the_network_wherever_it_names_one(
        tmp_path: Path) -> None:
    """An outside issuer names itself as it likes (the network's agency `civil`, say): `wallet
    list` showed its credential as one of the network's, where `wallet present` said "outside
    the network" only after signing. Every line that names an outside credential's issuer says
    so: `wallet list` (lines and table), `wallet show`, the preview before signing, `wallet
    remove`'s question."""
    w, r = _wallet_given_a_foreign(tmp_path, VCT, {"birth_date": "1990-04-01"})
    cid = r.stdout.strip()
    mark = f"from {ISS} (outside the network)"
    r = _cli("wallet", "list", cwd=tmp_path, wallet=w, columns=80)  # lines, not a table
    assert r.returncode == 0, r.stderr
    assert f"{VCT} {mark}\n  valid " in r.stdout, r.stdout
    r = _cli("wallet", "list", cwd=tmp_path, wallet=w, columns=200)  # the table
    assert r.returncode == 0, r.stderr
    assert "outside the network" in r.stdout.split("dates only:")[0].replace("│", " "), r.stdout
    r = _cli("wallet", "show", cid[:12], cwd=tmp_path, wallet=w)
    assert r.returncode == 0, r.stderr
    assert mark in " ".join(r.stdout.split()), r.stdout
    req = tmp_path / "req.json"
    r = _cli("ledger", "request", "--type", VCT, "--audience", "https://desk.example",
             "--claim", "birth_date", "--out", str(req), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("wallet", "present", cid[:12], "--request", str(req), "--out", "-", "--yes",
             cwd=tmp_path, wallet=w)
    assert r.returncode == 0, r.stderr
    assert f"from “{ISS}” (outside the network)" in " ".join(r.stderr.split()), r.stderr
    r = _cli("wallet", "remove", cid[:12], cwd=tmp_path, wallet=w)  # asks: no terminal, no
    assert mark in " ".join(r.stderr.split()), r.stderr


def test_claim_names_an_outside_issuer_chose_are_quoted_in_the_preview(tmp_path: Path) -> None:
    """An outside issuer names its claims freely: "x, given_name" read as two names in the
    list of what stays withheld, and a name padded with spaces before "(nothing)" wrapped onto
    a line that read as the wallet's own words. Such names are quoted now; plain ones not."""
    w, r = _wallet_given_a_foreign(tmp_path, VCT, {
        "birth_date": "1990-04-01", "x, given_name": "Mei", " " * 67 + "(nothing)": "1"})
    cid = r.stdout.strip()
    req = tmp_path / "req.json"
    r = _cli("ledger", "request", "--type", VCT, "--audience", "https://desk.example",
             "--claim", "birth_date", "--out", str(req), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = _cli("wallet", "present", cid[:12], "--request", str(req), "--yes", cwd=tmp_path,
             wallet=w)
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert "disclosed: birth_date " in said, r.stderr
    assert "withheld: “x, given_name”, “(nothing)”" in said or \
        "withheld: “(nothing)”, “x, given_name”" in said, r.stderr


def test_ledger_verify_json_on_an_unreadable_foreign_presentation(tmp_path: Path) -> None:
    """--trust --json: a presentation that cannot be read is bad input (exit 2), and standard
    output still holds one JSON report, not verified, saying what could not be read."""
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(Issuer())))
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"nonce": "n-1", "audience": "https://desk.example",
                               "type": VCT, "claims": []}))
    binary = tmp_path / "envelope.bin"
    binary.write_bytes(b"\x92\xff\x00\x80")
    (tmp_path / "folder").mkdir()
    for source, said in [(str(binary), "is not an SD-JWT+KB"),
                         ("folder", "cannot read the presentation file"),
                         ("no-such-file", "there is no presentation file")]:
        r = _cli("ledger", "verify", source, "--request", str(req), "--trust", str(trust),
                 "--json", cwd=tmp_path)
        assert r.returncode == 2, (source, r.stdout, r.stderr)
        got = json.loads(r.stdout)
        assert got["verified"] is False and got["foreign"] is True, got
        assert said in got["error"] and said in r.stderr
        assert got["checks"] == [{"check": "presentation", "ok": False, "detail": got["error"]}]


# -- the node's verifier: page and API -------------------------------------------------------------


def _outside_desk_inputs(tmp_path: Path, vct: str = VCT) -> tuple[int, Issuer, str, Path, Path]:
    """The time now, an outside issuer, its ES256 credential of type ``vct`` (valid a day,
    status index 9), a trust list naming the issuer, and a folder holding its status token
    (nothing revoked)."""
    now = int(time.time())
    issuer = Issuer()
    cred = sdjwt.issue_sd_jwt(
        issuer_key=issuer.key, issuer_kid=issuer.kid, alg="ES256", vct=vct, iss=ISS,
        claims={"given_name": "Mei", "birth_date": "1990-04-01"}, holder_jwk=HOLDER_JWK,
        iat=now - 60, nbf=now - 60, exp=now + 86_400,
        status={"status_list": {"idx": 9, "uri": URI}}).serialize()
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(issuer)))
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "register.jwt").write_text(make_token(
        StatusList.from_entries(2, 64, []), sub=URI, iat=now - 60, exp=now + 3600, ttl=None,
        key=issuer.key, kid=issuer.kid))
    return now, issuer, cred, trust, tokens


@contextmanager
def _outside_desk(tmp_path: Path, trust: Path, tokens: Path) -> Iterator[str]:
    """A demo node's address whose desk reads outside credentials with ``trust`` and the
    Status List Tokens in ``tokens`` (ADR 39)."""
    import dataclasses

    from test_api import PASS as NODE_PASS
    from test_api import make_demo, serve, settings_for

    from node.app import create_app

    data = make_demo(tmp_path / "data")
    app = create_app(dataclasses.replace(settings_for(data), trust_list=trust,
                                         status_tokens=tokens), passphrase=NODE_PASS)
    with serve(app) as url:
        yield url


def test_a_verdict_on_a_credential_from_outside_the_network_says_so(tmp_path: Path) -> None:
    """`ledger verify --trust` said "foreign" in its JSON only, and the desk's verdict page not
    at all: VERIFIED under a type an outside issuer named (say "Residence") read as the
    network's own credential. Both say it was checked against the trust list, not the ledger
    (a network credential's verdict says nothing of the kind: tests/test_pages.py,
    tests/test_verify_cli.py)."""
    import re

    import httpx

    _now, _issuer, cred, trust, tokens = _outside_desk_inputs(tmp_path)
    req = tmp_path / "req.json"
    req.write_text(json.dumps({"nonce": "n-0123456789", "audience": "https://desk.example",
                               "type": VCT, "claims": ["birth_date"]}))
    pres = tmp_path / "presentation.sd-jwt"
    pres.write_text(sdjwt.present(cred, disclose=("birth_date",), holder_key=HOLDER,
                                  nonce="n-0123456789", aud="https://desk.example",
                                  iat=int(time.time())))
    r = _cli("ledger", "verify", str(pres), "--request", str(req), "--trust", str(trust),
             "--status-token", str(tokens / "register.jwt"), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "from an issuer outside the network: checked against the trust list, not the " \
        "ledger" in " ".join(r.stdout.split()), r.stdout
    with _outside_desk(tmp_path, trust, tokens) as url, \
            httpx.Client(base_url=url, timeout=60, follow_redirects=True) as http:
        page = http.post("/verify/request", data={"type": VCT, "claims_text": "birth_date"})
        nonce = re.search(r'id="nonce">([^<]+)<', page.text)
        audience = re.search(r'id="audience">([^<]+)<', page.text)
        assert nonce and audience, page.text
        verdict = http.post("/verify/check", data={"nonce": nonce.group(1), "presentation":
                                                   sdjwt.present(
            cred, disclose=("birth_date",), holder_key=HOLDER, nonce=nonce.group(1),
            aud=audience.group(1), iat=int(time.time()))})
        assert '<h1 id="verdict">VERIFIED</h1>' in verdict.text, verdict.text
        outside = re.search(r'id="outside">([^<]+)<', verdict.text)
        assert outside and "issuer outside the network" in outside.group(1), verdict.text


def test_a_hostile_alg_is_quoted_short_escaped_and_isolated_wherever_it_is_shown(
        tmp_path: Path) -> None:
    """An outside credential's ``alg`` (its issuer's text) is quoted in the refusal: outside
    text may be, escaped and short (THREAT_MODEL), and on the desk's page in ``<bdi>``. Cut
    to 40 characters, the quote lost its closing mark (``'אאא…``) and the page left it
    unisolated, beside the desk's own isolated words; an escape could be cut in two. It is
    cut before it is quoted: the API's JSON, the desk's page and `ledger verify` each show
    it quoted whole, without its escape sequences (helper round 36D)."""
    import re

    import httpx

    _now, _issuer, cred, trust, tokens = _outside_desk_inputs(tmp_path)
    head, rest = cred.split(".", 1)
    header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    hostile = "\u05d0" * 30 + "\x1b[2J\u202e" + "x" * 5000
    header["alg"] = hostile
    bad = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode() + \
        "." + rest
    shown = "'" + "\u05d0" * 30 + "\\x1b[2J'\u2026"  # 40 characters: quoted, then the mark

    def answer(nonce: str, audience: str) -> str:
        return sdjwt.present(bad, disclose=("birth_date",), holder_key=HOLDER, nonce=nonce,
                             aud=audience, iat=int(time.time()))

    with _outside_desk(tmp_path, trust, tokens) as url, \
            httpx.Client(base_url=url, timeout=60, follow_redirects=True) as http:
        req = http.post("/v1/presentation-requests",
                        json={"type": VCT, "claims": ["birth_date"]}).json()
        got = http.post("/v1/verify", json={"nonce": req["nonce"],
                                            "sd_jwt": answer(req["nonce"], req["audience"])})
        assert got.status_code == 200 and not got.json()["verified"], got.text
        [failed] = [c["detail"] for c in got.json()["checks"] if not c["ok"]]
        assert f"alg {shown} is not accepted" in failed, failed
        page = http.post("/verify/request", data={"type": VCT, "claims_text": "birth_date"})
        nonce = re.search(r'id="nonce">([^<]+)<', page.text)
        audience = re.search(r'id="audience">([^<]+)<', page.text)
        assert nonce and audience, page.text
        text = answer(nonce.group(1), audience.group(1))
        verdict = http.post("/verify/check", data={"nonce": nonce.group(1), "presentation": text})
        assert "NOT VERIFIED" in verdict.text, verdict.text
        isolated = "<bdi>" + shown[:-1].replace("'", "&#39;") + "</bdi>\u2026"
        assert f"alg {isolated} is not accepted" in verdict.text, verdict.text
        assert "\x1b" not in verdict.text and "\u202e" not in verdict.text
    (tmp_path / "pres").write_text(text)
    (tmp_path / "req.json").write_text(json.dumps({
        "nonce": nonce.group(1), "audience": audience.group(1), "type": VCT,
        "claims": ["birth_date"]}))
    r = _cli("ledger", "verify", "pres", "--request", "req.json", "--trust", str(trust),
             "--status-token", str(tokens / "register.jwt"), cwd=tmp_path, columns=400)
    assert r.returncode == 1 and "NOT VERIFIED" in r.stdout, r.stdout + r.stderr
    assert f"alg {shown} is not accepted" in r.stdout, r.stdout
    assert "\x1b" not in r.stdout + r.stderr and "x" * 40 not in r.stdout


def test_the_node_verifies_foreign_credentials_on_its_page_and_api(tmp_path: Path) -> None:
    import dataclasses
    import re

    import httpx
    from test_api import PASS as NODE_PASS
    from test_api import make_demo, serve, settings_for

    from node.app import create_app

    now, issuer, cred, trust, tokens = _outside_desk_inputs(tmp_path)
    (tokens / "junk.jwt").write_text("not a token")  # left out, logged by name
    data = make_demo(tmp_path / "data")
    plain = create_app(settings_for(data), passphrase=NODE_PASS)
    app = create_app(dataclasses.replace(settings_for(data), trust_list=trust,
                                         status_tokens=tokens), passphrase=NODE_PASS)

    def kb(nonce: str, audience: str) -> str:
        return sdjwt.present(cred, disclose=("birth_date",), holder_key=HOLDER, nonce=nonce,
                             aud=audience, iat=int(time.time()))

    with serve(plain) as url, httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/presentation-requests", json={"type": VCT, "claims": ["birth_date"]})
        assert r.status_code == 404  # without a trust list, only the network's types
        req = http.post("/v1/presentation-requests",
                        json={"type": "residence", "claims": ["district"]}).json()
        r = http.post("/v1/verify", json={"nonce": req["nonce"], "sd_jwt": kb(req["nonce"],
                                                                              req["audience"])})
        assert r.status_code == 400 and "trust list" in r.json()["detail"]
    with serve(app) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as http:
        req = http.post("/v1/presentation-requests",
                        json={"type": VCT, "claims": ["birth_date"]}).json()
        got = http.post("/v1/verify", json={"nonce": req["nonce"],
                                            "sd_jwt": kb(req["nonce"], req["audience"])}).json()
        assert got["verified"] and got["claims"] == {"birth_date": "1990-04-01"}, got
        both = http.post("/v1/verify", json={"nonce": "x", "sd_jwt": "a~", "envelope": "AA"})
        assert both.status_code == 422 and "exactly one" in both.text
        # A type from outside the network names its own claims: 32 long names make a request
        # no QR code holds. It answered 500 (with the request left open); it is given as text.
        long = http.post("/v1/presentation-requests", json={
            "type": VCT, "claims": [f"c{i:02d}" + "x" * 90 for i in range(32)]})
        assert long.status_code == 200, long.text
        assert long.json()["qr_svg"] is None and len(long.json()["claims"]) == 32
        # the official's page: the form for outside types, then the pasted SD-JWT+KB text
        assert 'id="form-foreign"' in http.get("/verify").text
        # a refused outside-issuer form comes back with what was typed in it
        bad = http.post("/verify/request", data={"type": VCT, "claims_text": " , "})
        assert bad.status_code == 400 and "at least one claim" in bad.text, bad.text
        assert f'value="{VCT}"' in bad.text and 'value=" , "' in bad.text
        page = http.post("/verify/request", data={"type": VCT, "claims_text": "birth_date"})
        assert page.status_code == 200, page.text
        nonce = re.search(r'id="nonce">([^<]+)<', page.text)
        audience = re.search(r'id="audience">([^<]+)<', page.text)
        assert nonce and audience
        text = kb(nonce.group(1), audience.group(1))
        verdict = http.post("/verify/check", data={"nonce": nonce.group(1),
                                                   "presentation": text[:60] + "\n" + text[60:]})
        assert '<h1 id="verdict">VERIFIED</h1>' in verdict.text, verdict.text
        assert "<td>birth_date</td><td>1990-04-01</td>" in verdict.text
        assert "Mei" not in verdict.text
        # A trusted outside issuer may write any vct, the network's own types included: a
        # request for one of those is never answered by an outside credential.
        fake = sdjwt.issue_sd_jwt(
            issuer_key=issuer.key, issuer_kid=issuer.kid, alg="ES256", vct="residence",
            iss=ISS, claims={"district": "Changsheng"}, holder_jwk=HOLDER_JWK, iat=now - 60,
            nbf=now - 60, exp=now + 86_400,
            status={"status_list": {"idx": 9, "uri": URI}}).serialize()
        req = http.post("/v1/presentation-requests",
                        json={"type": "residence", "claims": ["district"]}).json()
        text = sdjwt.present(fake, disclose=("district",), holder_key=HOLDER,
                             nonce=req["nonce"], aud=req["audience"], iat=int(time.time()))
        r = http.post("/v1/verify", json={"nonce": req["nonce"], "sd_jwt": text})
        assert r.status_code == 400 and "credential type of this network" in r.json()["detail"]
        page = http.post("/verify/request", data={"type": "residence", "claims": ["district"]})
        nonce = re.search(r'id="nonce">([^<]+)<', page.text)
        assert nonce
        text = sdjwt.present(fake, disclose=("district",), holder_key=HOLDER,
                             nonce=nonce.group(1), aud=req["audience"], iat=int(time.time()))
        refused = http.post("/verify/check", data={"nonce": nonce.group(1),
                                                   "presentation": text})
        assert refused.status_code == 400
        assert "VERIFIED" not in refused.text and "credential type of this network" in \
            refused.text
        # on the request's page, the error marked on the form (not the API's JSON error)
        assert 'id="error"' in refused.text and f'id="nonce">{nonce.group(1)}<' in refused.text
        # no verdict was given: the request is still open for the citizen's real envelope
        assert served_request_is_open(app, nonce.group(1))



def test_right_to_left_text_of_an_outside_issuer_moves_no_word_of_the_desks_verdict(
        tmp_path: Path) -> None:
    """An outside issuer's type in Hebrew, in the verdict's line "type '<type>', 1 claim
    disclosed": in a left-to-right line the bidi algorithm took the count after it into the
    right-to-left run, and a real browser drew "1" before the type's name (the count read as
    part of it, the issuer's words beside the desk's). Outside text on the desk's pages is
    isolated (<bdi>): the desk's words keep their place."""
    from test_pages import _browser_page

    hebrew = "\u05ea\u05e2\u05d5\u05d3\u05ea \u05dc\u05d9\u05d3\u05d4"  # "birth certificate"
    _now, _issuer, cred, trust, tokens = _outside_desk_inputs(tmp_path, vct=hebrew)
    left_of = """([cell, text, at]) => {  // the left edge of text[at] as drawn in the cell
        const walk = document.createTreeWalker(cell, NodeFilter.SHOW_TEXT);
        for (let n = walk.nextNode(); n; n = walk.nextNode()) {
            const i = n.data.indexOf(text);
            if (i >= 0) {
                const r = document.createRange();
                r.setStart(n, i + at); r.setEnd(n, i + at + 1);
                return r.getBoundingClientRect().left;
            }
        }
        return null;
    }"""
    with _outside_desk(tmp_path, trust, tokens) as url, _browser_page() as page:
        page.goto(f"{url}/verify")
        form = page.locator("#form-foreign")
        form.get_by_label("Credential type").fill(hebrew)
        form.get_by_label("Claims to ask for").fill("birth_date")
        form.get_by_role("button", name="Create request").click()
        page.wait_for_selector("#nonce")
        # the type in the page's title and the claim names each isolated, as on the verdict
        assert page.title().startswith(f"Presentation request for \u2068{hebrew}\u2069")
        assert page.locator("#req-claims bdi").all_inner_texts() == ["birth_date"]
        nonce, audience = page.inner_text("#nonce").strip(), page.inner_text("#audience").strip()
        page.fill("#presentation", sdjwt.present(
            cred, disclose=("birth_date",), holder_key=HOLDER, nonce=nonce, aud=audience,
            iat=int(time.time())))
        page.click("#check")
        page.wait_for_selector("#verdict")
        assert page.inner_text("#verdict").strip() == "VERIFIED"
        cell = page.locator("#checks td", has_text="claim disclosed").first.element_handle()
        name = page.evaluate(left_of, [cell, hebrew[-1], 0])  # its last letter: drawn leftmost
        count = page.evaluate(left_of, [cell, "1 claim", 0])
        word = page.evaluate(left_of, [cell, "type", 0])
        assert None not in (name, count, word), (name, count, word)
        assert word < name < count, (word, name, count)
        assert page.locator("section.verdict bdi").all_inner_texts() == [hebrew]
        # the registry's type titles and claim names, on the form and the explorer, likewise
        page.goto(f"{url}/verify")
        assert page.locator("#title-residence bdi").count() == 2
        page.goto(f"{url}/")
        assert page.locator("li bdi", has_text="district").count() >= 1


def test_an_outside_credentials_qr_picture_is_checked_and_a_desk_without_a_trust_list_says_so(
        tmp_path: Path) -> None:
    """The desk reads an outside credential's SD-JWT+KB from its QR picture as from its pasted
    text (found by mutation round 16: no test uploaded one), and refuses one made for another
    request before any check; a desk with no trust list refuses such text with words. The
    request stays open after either refusal."""
    import dataclasses
    import io
    import re

    import httpx
    import segno
    from test_api import PASS as NODE_PASS
    from test_api import make_demo, serve, settings_for

    from node.app import create_app

    _, _, cred, trust, tokens = _outside_desk_inputs(tmp_path)
    data = make_demo(tmp_path / "data")

    def opened(http: httpx.Client, form: dict[str, Any]) -> tuple[str, str]:
        page = http.post("/verify/request", data=form)
        nonce = re.search(r'id="nonce">([^<]+)<', page.text)
        audience = re.search(r'id="audience">([^<]+)<', page.text)
        assert nonce and audience, page.text
        return nonce.group(1), audience.group(1)

    def answer(nonce: str, audience: str) -> str:
        return sdjwt.present(cred, disclose=("birth_date",), holder_key=HOLDER, nonce=nonce,
                             aud=audience, iat=int(time.time()))

    plain = create_app(settings_for(data), passphrase=NODE_PASS)
    with serve(plain) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as http:
        nonce, audience = opened(http, {"type": "residence", "claims": ["district"]})
        r = http.post("/verify/check", data={"nonce": nonce,
                                             "presentation": answer(nonce, audience)})
        assert r.status_code == 400 and "no trust list for those" in r.text, r.text
        assert served_request_is_open(plain, nonce)
    app = create_app(dataclasses.replace(settings_for(data), trust_list=trust,
                                         status_tokens=tokens), passphrase=NODE_PASS)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60, follow_redirects=True) as http:
        nonce, audience = opened(http, {"type": VCT, "claims_text": "birth_date"})
        # an answer made for another request spends nothing: this one stays open
        r = http.post("/verify/check", data={"nonce": nonce,
                                             "presentation": answer("another", audience)})
        assert r.status_code == 400 and "made for another request" in r.text, r.text
        assert served_request_is_open(app, nonce)
        buf = io.BytesIO()
        segno.make_qr(answer(nonce, audience), error="l").save(buf, kind="png", scale=4,
                                                                border=4)
        verdict = http.post("/verify/check", data={"nonce": nonce},
                            files={"qr": ("answer.png", buf.getvalue(), "image/png")})
        assert '<h1 id="verdict">VERIFIED</h1>' in verdict.text, verdict.text
        assert "<td>birth_date</td><td>1990-04-01</td>" in verdict.text


def served_request_is_open(app: Any, nonce: str) -> bool:
    from node.service import NotFound

    try:
        app.state.node.request(nonce)
    except NotFound:
        return False
    return True


def test_node_settings_name_the_trust_list_and_a_bad_one_stops_the_node(tmp_path: Path) -> None:
    from test_api import PASS as NODE_PASS
    from test_api import make_demo

    from node.app import create_app
    from node.config import Settings

    data = make_demo(tmp_path / "data")
    settings = Settings.from_mapping({"data": "data", "agency": "edu",
                                      "trust_list": "trust.json",
                                      "status_tokens": "tokens"}, {}, base=tmp_path)
    assert (settings.trust_list, settings.status_tokens) == (tmp_path / "trust.json",
                                                              tmp_path / "tokens")
    with pytest.raises(LedgerError, match="cannot read the trust list"):
        create_app(settings, passphrase=NODE_PASS)
    (tmp_path / "trust.json").write_text('{"issuers": [{"iss": "x"}]}')
    with pytest.raises(LedgerError, match=r"trust.issuers\[0\]: missing 'name'"):
        create_app(settings, passphrase=NODE_PASS)
    assert data.is_dir()


# -- found by a second look (stop 20) --------------------------------------------------------------


def _raw_sd_jwt(issuer: Issuer, payload: dict[str, Any]) -> str:
    """An issuer-signed SD-JWT with exactly ``payload`` (no disclosures): odd shapes the
    library's issuer would not make."""
    head = _b64e(json.dumps({"alg": issuer.alg, "typ": "dc+sd-jwt", "kid": issuer.kid}).encode())
    signing_input = f"{head}.{_b64e(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64e(sdjwt.jws_sign(issuer.key, signing_input.encode()))}~"


@pytest.mark.parametrize("field", ["exp", "nbf"])
def test_a_null_validity_date_is_absent_not_a_crash(field: str) -> None:
    issuer = Issuer()
    payload: dict[str, Any] = {"iss": ISS, "vct": VCT, "iat": NOW - 10, "nbf": NOW - 10,
                               "exp": NOW + 1000, "cnf": {"jwk": HOLDER_JWK},
                               "status": {"status_list": {"idx": 1, "uri": URI}}}
    payload[field] = None
    got = receive_foreign(_raw_sd_jwt(issuer, payload),
                          trust=TrustList.from_json(trust_json(issuer)), holder_jwk=HOLDER_JWK,
                          now=NOW)
    assert (got.valid_from, got.valid_until) == ((NOW - 10, NO_EXPIRY) if field == "exp"
                                                 else (NOW - 10, NOW + 1000))


def test_an_iss_too_long_for_a_wallet_is_refused_on_the_trust_list() -> None:
    with pytest.raises(DecodeError, match="at most 256 characters"):
        TrustList.from_json(trust_json(Issuer(), iss="https://x.example/" + "a" * 300))


def test_a_wallet_never_saves_what_it_could_not_open_again(tmp_path: Path) -> None:
    from dataclasses import replace

    from wallet.store import StoredCredential

    w = Wallet.init(tmp_path / "w.db", PASS)
    before = (tmp_path / "w.db").read_bytes()
    odd = StoredCredential(bytes(32), VCT, "i" * 300, 0, NO_EXPIRY, NOW,
                           ForeignCredential("a~").to_bytes())
    with pytest.raises(WalletError, match="could not be opened again"):
        w._save(replace(w._contents, credentials=(odd,)))
    assert (tmp_path / "w.db").read_bytes() == before
    assert Wallet.open(tmp_path / "w.db", PASS).list() == []


def test_a_trust_list_file_with_a_member_named_twice_is_refused(tmp_path: Path) -> None:
    good, evil = Issuer(), Issuer()
    text = json.dumps(trust_json(good))
    # a reviewer reads the first "keys"; a lenient parser trusts the second
    text = text.replace('"keys": [', f'"keys": {json.dumps([evil.jwk()])}, "keys": [', 1)
    path = tmp_path / "trust.json"
    path.write_text(text)
    with pytest.raises(LedgerError, match="duplicate member name 'keys'"):
        read_trust_list(path)


def test_a_trust_list_file_over_its_limit_is_refused(tmp_path: Path) -> None:
    text = json.dumps(trust_json(Issuer()))
    path = tmp_path / "trust.json"
    path.write_text(text + " " * (MAX_TRUST_LIST - len(text)))
    assert ISS in read_trust_list(path).issuers
    path.write_text(text + " " * (MAX_TRUST_LIST + 1 - len(text)))
    with pytest.raises(LedgerError, match=f"is over {MAX_TRUST_LIST} bytes"):
        read_trust_list(path)


def test_one_key_listed_for_two_issuers_is_refused() -> None:
    shared = Issuer()
    trust = {"issuers": [trust_json(shared)["issuers"][0],
                         trust_json(shared, iss="https://other.example")["issuers"][0]]}
    with pytest.raises(DecodeError, match="also listed for"):
        TrustList.from_json(trust)


def test_one_key_listed_for_two_issuers_in_two_spellings_is_refused() -> None:
    """An Ed25519 key's JWK has no ``y``; one listed with a ``y`` too (ignored when the key is
    read) is still the same key, and another issuer listing it could sign as the first."""
    shared = Issuer(ed25519=True)
    other = trust_json(shared, iss="https://other.example")["issuers"][0]
    other["keys"] = [{**other["keys"][0], "y": "AAAA"}]
    trust = {"issuers": [trust_json(shared)["issuers"][0], other]}
    with pytest.raises(DecodeError, match="also listed for"):
        TrustList.from_json(trust)


def test_keys_listed_without_a_kid_check_tokens_that_name_one() -> None:
    issuer = Issuer()
    jwk = {k: v for k, v in issuer.jwk().items() if k != "kid"}
    trust = {"issuers": [{"iss": ISS, "name": "National Register", "keys": [jwk]}]}
    report = check(present(issuer.issue(HOLDER_JWK)), trust, [issuer.token()])
    assert report.verified and report.status == "valid"


def test_a_presentation_given_as_text_on_the_command_line(tmp_path: Path) -> None:
    """Between 256 and 1023 characters an argument is too long for a file name: it is the
    presentation's text (exists() raised 'File name too long')."""
    now = int(time.time())
    issuer = Issuer(ed25519=True)
    cred = sdjwt.issue_sd_jwt(
        issuer_key=issuer.key, issuer_kid=issuer.kid, alg="EdDSA", vct="v", iss=ISS,
        claims={"a": "1"}, holder_jwk=HOLDER_JWK, iat=now - 60, nbf=now - 60, exp=now + 600,
        status=None).serialize()
    req = Request("n-123456", "https://desk.example", "v", ("a",))
    pres = sdjwt.present(cred, disclose=("a",), holder_key=HOLDER, nonce=req.nonce,
                         aud=req.audience, iat=now)
    assert 256 < len(pres) < 1024
    (tmp_path / "req.json").write_text(json.dumps(req.to_json()))
    (tmp_path / "trust.json").write_text(json.dumps(trust_json(issuer, status="optional")))
    r = _cli("ledger", "verify", pres, "--request", "req.json", "--trust", "trust.json",
             cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "VERIFIED" in r.stdout


def _disclosure(*parts: Any) -> tuple[str, str]:
    text = _b64e(json.dumps(list(parts)).encode())
    return text, _b64e(hashlib.sha256(text.encode()).digest())


def test_a_wallet_refuses_claims_it_could_not_withhold() -> None:
    """A wallet's preview names each claim disclosed or withheld (ADR 10): a claim in the clear
    (shown to every verifier) or nested in a disclosed one would go out unannounced."""
    issuer = Issuer()
    trust = TrustList.from_json(trust_json(issuer))
    base: dict[str, Any] = {"iss": ISS, "vct": VCT, "iat": NOW - 10, "nbf": NOW - 10,
                            "exp": NOW + 1000, "cnf": {"jwk": HOLDER_JWK},
                            "status": {"status_list": {"idx": 1, "uri": URI}}}
    assert receive_foreign(_raw_sd_jwt(issuer, base), trust=trust, holder_jwk=HOLDER_JWK,
                           now=NOW).type == VCT
    with pytest.raises(LedgerError, match=r"shows \['national_id'\] to every verifier"):
        receive_foreign(_raw_sd_jwt(issuer, {**base, "national_id": "A123"}), trust=trust,
                        holder_jwk=HOLDER_JWK, now=NOW)
    city, city_digest = _disclosure("salt-1", "city", "Tainan")
    address, address_digest = _disclosure("salt-2", "address", {"_sd": [city_digest]})
    nested = _raw_sd_jwt(issuer, {**base, "_sd": [address_digest], "_sd_alg": "sha-256"})
    nested = f"{nested}{address}~{city}~"
    with pytest.raises(LedgerError, match="nested inside others"):
        receive_foreign(nested, trust=trust, holder_jwk=HOLDER_JWK, now=NOW)
    # a list claim with a disclosable element (here one not disclosed: a wallet could not
    # even say it is there)
    _, element_digest = _disclosure("salt-3", "FR")
    langs, langs_digest = _disclosure("salt-4", "languages", ["zh", {"...": element_digest}])
    listed = _raw_sd_jwt(issuer, {**base, "_sd": [langs_digest], "_sd_alg": "sha-256"})
    with pytest.raises(LedgerError, match="nested inside others"):
        receive_foreign(f"{listed}{langs}~", trust=trust, holder_jwk=HOLDER_JWK, now=NOW)


def test_the_nodes_log_names_a_status_token_file_it_left_out() -> None:
    """docs/foreign-issuers.md: a token file that does not parse is left out "and logged by
    name"; the node's JSON log lines keep that name (the formatter dropped it before)."""
    import logging

    from node.app import _JsonFormatter

    record = logging.LogRecord("node.http", logging.WARNING, __file__, 1,
                               "status token left out", None, None)
    record.file = "junk.jwt"
    line = json.loads(_JsonFormatter().format(record))
    assert (line["msg"], line["file"]) == ("status token left out", "junk.jwt")


def test_a_check_for_no_open_request_does_not_read_the_status_tokens(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every foreign check read the whole status_tokens folder (each file up to 32 MiB, decoded
    and parsed) before looking at its nonce: a client posting any made-up nonce made the node
    read them all, ~0.2 s of CPU and 200 MiB of memory for one 32 MiB token, per request. The
    nonce is looked at first: the folder is read only for an open request (ADR 57)."""
    import dataclasses
    import logging

    import httpx
    from test_api import PASS as NODE_PASS
    from test_api import make_demo, serve, settings_for

    from node.app import create_app

    issuer = Issuer()
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(issuer)))
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    (tokens / "junk.jwt").write_text("not a token")  # each read of the folder logs it
    data = make_demo(tmp_path / "data")
    app = create_app(dataclasses.replace(settings_for(data), trust_list=trust,
                                         status_tokens=tokens), passphrase=NODE_PASS)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http, \
            caplog.at_level(logging.WARNING, logger="node.http"):
        for _ in range(3):
            r = http.post("/v1/verify", json={"nonce": "made-up", "sd_jwt": "a.b.c~"})
            assert r.status_code == 404, r.text
        assert [m for m in caplog.messages if m == "status token left out"] == []
        req = http.post("/v1/presentation-requests",
                        json={"type": VCT, "claims": ["birth_date"]}).json()
        r = http.post("/v1/verify", json={"nonce": req["nonce"], "sd_jwt": "a.b.c~"})
        assert r.status_code == 200, r.text  # a verdict (not verified) for an open request
        assert [m for m in caplog.messages if m == "status token left out"] == \
            ["status token left out"]


def test_the_node_requests_a_foreign_type_as_long_as_a_verifier_takes(tmp_path: Path) -> None:
    """A trust list and `ledger verify` take a vct of up to 200 characters, but the node's
    `POST /v1/presentation-requests` refused one over 64 (422), so its desk could not ask for
    such a credential at all (helper round 25U)."""
    import dataclasses

    import httpx
    from test_api import PASS as NODE_PASS
    from test_api import make_demo, serve, settings_for

    from ledger.foreign import MAX_VCT
    from node.app import create_app

    now, issuer = int(time.time()), Issuer()
    vct = "https://credentials.register.example.gov/types/national-birth-certificate/v2"
    assert 64 < len(vct) <= MAX_VCT
    cred = sdjwt.issue_sd_jwt(
        issuer_key=issuer.key, issuer_kid=issuer.kid, alg="ES256", vct=vct, iss=ISS,
        claims={"birth_date": "1990-04-01"}, holder_jwk=HOLDER_JWK, iat=now - 60,
        nbf=now - 60, exp=now + 86_400, status=None).serialize()
    trust = tmp_path / "trust.json"
    trust.write_text(json.dumps(trust_json(issuer, status="optional")))
    data = make_demo(tmp_path / "data")
    app = create_app(dataclasses.replace(settings_for(data), trust_list=trust),
                     passphrase=NODE_PASS)
    with serve(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        r = http.post("/v1/presentation-requests", json={"type": vct, "claims": ["birth_date"]})
        assert r.status_code == 200, r.text
        req = r.json()
        text = sdjwt.present(cred, disclose=("birth_date",), holder_key=HOLDER,
                             nonce=req["nonce"], aud=req["audience"], iat=int(time.time()))
        got = http.post("/v1/verify", json={"nonce": req["nonce"], "sd_jwt": text}).json()
        assert got["verified"] and got["claims"] == {"birth_date": "1990-04-01"}, got
        # one longer than any verifier takes is still refused, before a request is opened
        r = http.post("/v1/presentation-requests",
                      json={"type": "x" * (MAX_VCT + 1), "claims": ["birth_date"]})
        assert r.status_code == 422, r.text
