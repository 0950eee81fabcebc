"""SD-JWT VC issue / present / verify (ledger.sdjwt): round trips, RFC 9901 vectors, every MUST.

Keys, salts and times are fixed; no test reads the clock.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger import sdjwt
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.sdjwt import (
    AlgorithmError,
    ClaimConflictError,
    DigestAlgorithmError,
    DigestCollisionError,
    DisclosureError,
    DuplicateDisclosureError,
    EncodingError,
    ExpiredError,
    HeaderError,
    HolderKeyError,
    IssuedInFutureError,
    JsonError,
    JwkError,
    KbAudienceError,
    KbHeaderError,
    KbIatError,
    KbMissingError,
    KbNonceError,
    KbSdHashError,
    KbSignatureError,
    MalformedError,
    NotYetValidError,
    SignatureInvalid,
    SizeError,
    UnreferencedDisclosureError,
    VerificationError,
)

VECTORS = Path(__file__).parent / "vectors" / "sdjwt"
T0 = 1_700_000_000
NONCE = "n-0S6_WzA2Mj"
AUD = "https://verifier.agency.example"
VCT = "https://registry.example/types/residence-permit"
ISS = "https://reg.agency.example"
SECRET = "Ekaterina-Sentinel-Value"  # a claim value that must never show up in an error message

CLAIMS: dict[str, Any] = {
    "given_name": SECRET,
    "family_name": "Novak",
    "birthdate": "1990-02-03",
    "address": {"street_address": "Main St 1", "locality": "Springfield"},
    "nationalities": ["XA", "XB"],
    "permit_class": 2,
}

# -- fixed keys ---------------------------------------------------------------------------------

ED_ISSUER = PrivateKey(bytes(range(32)))
ED_HOLDER = PrivateKey(bytes(range(32, 64)))
ED_OTHER = PrivateKey(bytes(range(64, 96)))
EC_ISSUER = ec.derive_private_key(0x1234_5678_9ABC_DEF0_1122_3344, ec.SECP256R1())
EC_HOLDER = ec.derive_private_key(0x0FED_CBA9_8765_4321_4433_2211, ec.SECP256R1())
EC_OTHER = ec.derive_private_key(0x5555_6666_7777_8888_9999, ec.SECP256R1())

Key = PrivateKey | ec.EllipticCurvePrivateKey


def jwk_of(key: Key) -> dict[str, str]:
    if isinstance(key, PrivateKey):
        return sdjwt.jwk_from_ed25519(key.public.raw)
    return sdjwt.jwk_from_ec(key.public_key())


def alg_of(key: Key) -> str:
    return "EdDSA" if isinstance(key, PrivateKey) else "ES256"


def counter_rng(seed: bytes = b"salt") -> Callable[[int], bytes]:
    state = {"i": 0}

    def rng(n: int) -> bytes:
        state["i"] += 1
        return hashlib.sha256(seed + state["i"].to_bytes(8, "big")).digest()[:n]

    return rng


def b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64d(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign(key: Key, data: bytes) -> bytes:
    if isinstance(key, PrivateKey):
        return key.sign_raw(data)
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def jws(header: dict[str, Any] | str, payload: dict[str, Any] | str, key: Key) -> str:
    """A compact JWS built independently of ledger.sdjwt (str arguments are used verbatim)."""
    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    signing_input = f"{b64e(h.encode())}.{b64e(p.encode())}"
    return f"{signing_input}.{b64e(sign(key, signing_input.encode()))}"


def disclosure(*elements: Any) -> str:
    return b64e(json.dumps(list(elements)).encode())


def digest(text: str) -> str:
    return b64e(hashlib.sha256(text.encode()).digest())


def kb_for(prefix: str, holder: Key, *, nonce: str = NONCE, aud: str = AUD, iat: int = T0,
           sd_hash: str | None = None, typ: str = "kb+jwt") -> str:
    payload = {"nonce": nonce, "aud": aud, "iat": iat,
               "sd_hash": digest(prefix) if sd_hash is None else sd_hash}
    return jws({"alg": alg_of(holder), "typ": typ}, payload, holder)


def issue(issuer: Key = ED_ISSUER, holder: Key = ED_HOLDER, claims: dict[str, Any] | None = None,
          *, decoys: int = 0, iat: int = T0 - 100, nbf: int = T0 - 100,
          exp: int = T0 + 86_400) -> sdjwt.IssuedSdJwt:
    return sdjwt.issue_sd_jwt(
        issuer_key=issuer, issuer_kid="reg-2025-1", claims=CLAIMS if claims is None else claims,
        holder_jwk=jwk_of(holder), vct=VCT, iss=ISS, iat=iat, nbf=nbf, exp=exp,
        status={"status_list": {"idx": 412, "uri": "https://reg.agency.example/status/1"}},
        decoys=decoys, rng=counter_rng(), alg=alg_of(issuer))


def present(cred: sdjwt.IssuedSdJwt | str, disclose: list[str], holder: Key = ED_HOLDER,
            *, nonce: str = NONCE, aud: str = AUD, iat: int = T0) -> str:
    text = cred if isinstance(cred, str) else cred.serialize()
    return sdjwt.present(text, disclose=disclose, holder_key=holder, nonce=nonce, aud=aud,
                         iat=iat, alg=alg_of(holder))


def verify(presentation: str, issuer: Key = ED_ISSUER, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"issuer_public_jwk": jwk_of(issuer), "expected_nonce": NONCE,
                            "expected_audience": AUD, "now": T0}
    args.update(kw)
    return sdjwt.verify_presentation(presentation, **args)


def split(presentation: str) -> tuple[str, list[str], str]:
    parts = presentation.split("~")
    return parts[0], parts[1:-1], parts[-1]


def rebind(jwt: str, disclosures: list[str], holder: Key = ED_HOLDER, **kw: Any) -> str:
    """Reassemble a presentation and sign a fresh, correct KB-JWT over it."""
    prefix = "~".join([jwt, *disclosures]) + "~"
    return prefix + kb_for(prefix, holder, **kw)


def reissue(payload: dict[str, Any] | str, issuer: Key = ED_ISSUER,
            header: dict[str, Any] | None = None) -> str:
    """An issuer-signed JWT over an arbitrary payload, correctly signed by ``issuer``."""
    hdr = header or {"alg": alg_of(issuer), "typ": "dc+sd-jwt", "kid": "reg-2025-1"}
    return jws(hdr, payload, issuer)


def base_payload(holder: Key = ED_HOLDER, **extra: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"_sd_alg": "sha-256", "vct": VCT, "iss": ISS, "iat": T0 - 100,
                               "exp": T0 + 1000, "cnf": {"jwk": jwk_of(holder)}}
    payload.update(extra)
    return payload


def expected_claims(disclosed: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"vct": VCT, "iss": ISS, "iat": T0 - 100, "nbf": T0 - 100,
                           "exp": T0 + 86_400,
                           "status": {"status_list": {"idx": 412,
                                                      "uri": "https://reg.agency.example/status/1"}}}
    out.update({k: CLAIMS[k] for k in disclosed})
    return out


# -- round trips --------------------------------------------------------------------------------

COMBOS = [(ED_ISSUER, ED_HOLDER), (ED_ISSUER, EC_HOLDER), (EC_ISSUER, ED_HOLDER),
          (EC_ISSUER, EC_HOLDER)]
COMBO_IDS = ["EdDSA-issuer/Ed25519-holder", "EdDSA-issuer/P-256-holder",
             "ES256-issuer/Ed25519-holder", "ES256-issuer/P-256-holder"]


@pytest.mark.parametrize(("issuer", "holder"), COMBOS, ids=COMBO_IDS)
@pytest.mark.parametrize("disclosed", [[], ["given_name"], ["address", "nationalities"],
                                       sorted(CLAIMS)])
def test_round_trip(issuer: Key, holder: Key, disclosed: list[str]) -> None:
    cred = issue(issuer, holder, decoys=3)
    claims = verify(present(cred, disclosed, holder), issuer)
    exp = expected_claims(disclosed)
    exp["cnf"] = {"jwk": jwk_of(holder)}
    assert claims == exp


def test_only_chosen_claims_are_disclosed() -> None:
    cred = issue()
    presentation = present(cred, ["family_name"])
    _, disclosures, _ = split(presentation)
    assert len(disclosures) == 1
    assert SECRET not in "".join(b64d(d).decode() for d in disclosures)
    claims = verify(presentation)
    assert "family_name" in claims
    assert not set(CLAIMS) - {"family_name"} & set(claims)
    assert "_sd" not in claims and "_sd_alg" not in claims


def test_issued_format() -> None:
    cred = issue(EC_ISSUER, ED_HOLDER, decoys=5)
    header = json.loads(b64d(cred.issuer_jwt.split(".")[0]))
    payload = json.loads(b64d(cred.issuer_jwt.split(".")[1]))
    assert header == {"alg": "ES256", "typ": "dc+sd-jwt", "kid": "reg-2025-1"}
    assert payload["_sd_alg"] == "sha-256"
    assert payload["_sd"] == sorted(payload["_sd"])
    assert len(payload["_sd"]) == len(CLAIMS) + 5
    assert {digest(d) for d in cred.disclosures} <= set(payload["_sd"])
    assert payload["cnf"] == {"jwk": jwk_of(ED_HOLDER)}
    assert {k for k in payload if k not in ("_sd", "_sd_alg")} == {
        "vct", "iss", "iat", "nbf", "exp", "cnf", "status"}
    for d in cred.disclosures:
        assert "=" not in d
        salt, name, value = json.loads(b64d(d))
        assert len(b64d(salt)) == 16 and "=" not in salt
        assert CLAIMS[name] == value
    assert cred.serialize() == cred.issuer_jwt + "~" + "~".join(cred.disclosures) + "~"
    assert cred.credential_id == hashlib.sha256(cred.issuer_jwt.encode("ascii")).digest()


def test_issued_parts_are_checked() -> None:
    cred = issue()
    h, p, sig = cred.issuer_jwt.split(".")
    for jwt in (f"{h}.{p}", f"{h}.{p}.{sig}.x", cred.issuer_jwt + "~", "é" + cred.issuer_jwt[1:]):
        with pytest.raises(ValueError, match="compact JWS"):
            sdjwt.IssuedSdJwt(jwt, cred.disclosures)
    for discs in ((*cred.disclosures, ""), (cred.disclosures[0] + "=",), list(cred.disclosures)):
        with pytest.raises(ValueError, match="non-empty base64url"):
            sdjwt.IssuedSdJwt(cred.issuer_jwt, discs)  # type: ignore[arg-type]
    assert sdjwt.IssuedSdJwt(cred.issuer_jwt, cred.disclosures) == cred


def test_disclosure_values_refuse_what_is_no_disclosure() -> None:
    d = disclosure("c2FsdA", "name", "v")
    assert sdjwt.disclosure_values([d]) == [["c2FsdA", "name", "v"]]
    for bad in (disclosure("c2FsdA", "a", "b", "c"), disclosure("c2FsdA"), disclosure(1, "a")):
        with pytest.raises(DisclosureError):
            sdjwt.disclosure_values([bad])
    with pytest.raises(DuplicateDisclosureError):
        sdjwt.disclosure_values([d, d])


def test_issuance_is_deterministic_given_rng() -> None:
    # EdDSA signatures and our salts are deterministic, so fixed inputs give fixed bytes.
    assert issue().serialize() == issue().serialize()


def test_issue_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="reserved"):
        issue(claims={"exp": 1})
    with pytest.raises(ValueError, match="_sd"):
        issue(claims={"x": {"_sd": []}})
    with pytest.raises(ValueError, match="array-element digest"):  # a verifier would drop it
        issue(claims={"x": {"y": [1, {"...": digest("d")}]}})
    assert issue(claims={"x": [{"...": "a", "b": 1}, {"....": "a"}]}).disclosures
    with pytest.raises(ValueError, match="EdDSA"):
        sdjwt.issue_sd_jwt(issuer_key=ED_ISSUER, issuer_kid="k", claims={}, holder_jwk=jwk_of(
            ED_HOLDER), vct=VCT, iss=ISS, iat=1, nbf=1, exp=2, status=None, alg="ES256")
    with pytest.raises(JwkError):
        sdjwt.issue_sd_jwt(issuer_key=ED_ISSUER, issuer_kid="k", claims={},
                           holder_jwk={**jwk_of(ED_HOLDER), "d": "AAAA"}, vct=VCT, iss=ISS,
                           iat=1, nbf=1, exp=2, status=None)
    with pytest.raises(ValueError, match="no claim"):
        present(issue(), ["no_such_claim"])
    # a credential valid for no second: exp at nbf, or at (or before) iat
    with pytest.raises(ValueError, match="exp must be after nbf and iat"):
        issue(iat=T0 - 100, nbf=T0, exp=T0)
    with pytest.raises(ValueError, match="exp must be after nbf and iat"):
        issue(iat=T0, nbf=T0 - 100, exp=T0)
    assert issue(iat=T0 - 1, nbf=T0 - 1, exp=T0).serialize()
    # as deep as a verifier reads, and no deeper
    deep: Any = "x"
    for _ in range(sdjwt.MAX_DEPTH):
        deep = {"a": deep}
    assert verify(present(issue(claims={"deep": deep}), ["deep"]))["deep"] == deep
    with pytest.raises(ValueError, match="nests deeper than 32"):
        issue(claims={"deep": {"a": deep}})
    with pytest.raises(ValueError, match="must return 16 bytes"):  # a 128-bit salt, no less
        sdjwt.issue_sd_jwt(issuer_key=ED_ISSUER, issuer_kid="k", claims={"a": 1},
                           holder_jwk=jwk_of(ED_HOLDER), vct=VCT, iss=ISS, iat=1, nbf=1,
                           exp=2, status=None, rng=lambda n: bytes(n // 2))
    # more Disclosures and decoys than a verifier takes, though each count alone fits
    many = {f"c{i}": i for i in range(sdjwt.MAX_DISCLOSURES - 5)}
    with pytest.raises(ValueError, match="claims and decoys"):
        issue(claims=many, decoys=6)
    assert len(issue(claims=many, decoys=5).disclosures) == len(many)


def test_wallet_verifies_fresh_credential() -> None:
    cred = issue(EC_ISSUER, EC_HOLDER)
    claims = sdjwt.verify_issuer_signed(cred.serialize(), issuer_public_jwk=jwk_of(EC_ISSUER),
                                        now=T0, expected_holder_jwk=jwk_of(EC_HOLDER))
    assert claims == {**expected_claims(sorted(CLAIMS)), "cnf": {"jwk": jwk_of(EC_HOLDER)}}
    with pytest.raises(HolderKeyError):
        sdjwt.verify_issuer_signed(cred.serialize(), issuer_public_jwk=jwk_of(EC_ISSUER), now=T0,
                                   expected_holder_jwk=jwk_of(ED_HOLDER))
    with pytest.raises(MalformedError):  # a presentation is not a credential
        sdjwt.verify_issuer_signed(present(cred, [], EC_HOLDER),
                                   issuer_public_jwk=jwk_of(EC_ISSUER), now=T0)


def test_an_sd_jwt_without_its_last_tilde_is_said_to_be_so() -> None:
    """A Disclosure after the last '~' is not taken for a Key Binding JWT."""
    cred = issue(EC_ISSUER, EC_HOLDER).serialize()
    assert cred.endswith("~") and cred.count("~") > 2
    with pytest.raises(MalformedError, match="is its last '~' missing"):
        sdjwt.verify_issuer_signed(cred[:-1], issuer_public_jwk=jwk_of(EC_ISSUER), now=T0)
    with pytest.raises(MalformedError, match="is its last '~' missing"):
        verify(cred[:-1], EC_ISSUER)
    with pytest.raises(MalformedError, match="found a Key Binding JWT after it"):
        sdjwt.verify_issuer_signed(present(issue(EC_ISSUER, EC_HOLDER), [], EC_HOLDER),
                                   issuer_public_jwk=jwk_of(EC_ISSUER), now=T0)


def test_jwk_helpers() -> None:
    assert isinstance(sdjwt.public_key_from_jwk(jwk_of(ED_HOLDER)), type(ED_HOLDER.public))
    ec_key = sdjwt.public_key_from_jwk(jwk_of(EC_HOLDER))
    assert isinstance(ec_key, ec.EllipticCurvePublicKey)
    assert sdjwt.jwk_from_ec(ec_key) == jwk_of(EC_HOLDER)
    bad = [{"kty": "RSA"}, {"kty": "OKP", "crv": "X25519", "x": "AA"},
           {**jwk_of(EC_HOLDER), "y": jwk_of(EC_OTHER)["y"]},  # point not on the curve
           {**jwk_of(ED_HOLDER), "x": jwk_of(ED_HOLDER)["x"] + "A"}, {**jwk_of(ED_HOLDER),
                                                                      "d": "x"}, [],
           {**jwk_of(ED_HOLDER), "alg": ["EdDSA"]}, {**jwk_of(EC_HOLDER), "alg": {}},
           # a coordinate one byte short; an EC key on another curve, or without its curve
           {**jwk_of(ED_HOLDER), "x": b64e(ED_HOLDER.public.raw[:31])},
           {**jwk_of(EC_HOLDER), "y": b64e(b64d(jwk_of(EC_HOLDER)["y"])[1:])},
           {**jwk_of(EC_HOLDER), "crv": "P-384"},
           {**jwk_of(ED_HOLDER), "crv": "Ed448"},
           {k: v for k, v in jwk_of(ED_HOLDER).items() if k != "crv"},
           {k: v for k, v in jwk_of(EC_HOLDER).items() if k != "crv"}]
    for jwk in bad:
        with pytest.raises(JwkError):
            sdjwt.public_key_from_jwk(jwk)  # type: ignore[arg-type]


# -- published vectors --------------------------------------------------------------------------

RFC_VECTORS = sorted(VECTORS.glob("rfc9901_*.json"))


@pytest.mark.parametrize("path", RFC_VECTORS, ids=[p.stem for p in RFC_VECTORS])
def test_rfc9901_vectors_as_sd_jwt_vcs(path: Path) -> None:
    """``vc_only``: an SD-JWT VC (A.3, ``dc+sd-jwt``) verifies; the flat SD-JWT of section 5
    (``example+sd-jwt``), valid as an SD-JWT, is no SD-JWT VC and is refused on its typ."""
    v = json.loads(path.read_text())
    kb = v["kb_jwt_payload"]
    present_it = functools.partial(
        sdjwt.verify_presentation, v["sd_jwt_kb"], issuer_public_jwk=v["issuer_public_jwk"],
        expected_nonce=kb["nonce"], expected_audience=kb["aud"], now=kb["iat"] + 10,
        vc_only=True)
    receive_it = functools.partial(sdjwt.verify_issuer_signed, v["sd_jwt"], now=kb["iat"],
                                   issuer_public_jwk=v["issuer_public_jwk"], vc_only=True)
    if sdjwt.parse(v["sd_jwt"]).header["typ"] == "dc+sd-jwt":
        assert present_it() == v["processed_payload"]
        assert receive_it()["vct"] == v["processed_payload"]["vct"]
        return
    for verify_it in (present_it, receive_it):
        with pytest.raises(HeaderError, match=r"'example\+sd-jwt'.*SD-JWT VC"):
            verify_it()


@pytest.mark.parametrize("path", RFC_VECTORS, ids=[p.stem for p in RFC_VECTORS])
def test_rfc9901_presentation(path: Path) -> None:
    v = json.loads(path.read_text())
    kb = v["kb_jwt_payload"]
    claims = sdjwt.verify_presentation(v["sd_jwt_kb"], issuer_public_jwk=v["issuer_public_jwk"],
                                       expected_nonce=kb["nonce"], expected_audience=kb["aud"],
                                       now=kb["iat"] + 10)
    assert claims == v["processed_payload"]
    with pytest.raises(KbNonceError):
        sdjwt.verify_presentation(v["sd_jwt_kb"], issuer_public_jwk=v["issuer_public_jwk"],
                                  expected_nonce="other", expected_audience=kb["aud"],
                                  now=kb["iat"])


@pytest.mark.parametrize("path", RFC_VECTORS, ids=[p.stem for p in RFC_VECTORS])
def test_rfc9901_issuance(path: Path) -> None:
    v = json.loads(path.read_text())
    assert json.loads(b64d(v["issuer_signed_jwt"].split(".")[1])) == v["sd_jwt_payload"]
    assert v["sd_jwt"] == "~".join([v["issuer_signed_jwt"], *v["disclosures"]]) + "~"
    claims = sdjwt.verify_issuer_signed(v["sd_jwt"], issuer_public_jwk=v["issuer_public_jwk"],
                                        now=v["sd_jwt_payload"]["iat"])
    expected = dict(v["user_claims"])
    expected.update({k: v["sd_jwt_payload"][k] for k in ("iss", "iat", "exp", "cnf")})
    assert claims == expected
    # The issuer key of RFC 9901 A.5 is P-256: offering its signature as EdDSA must fail.
    with pytest.raises(AlgorithmError):
        sdjwt.verify_issuer_signed(v["sd_jwt"], issuer_public_jwk=v["issuer_public_jwk"],
                                   now=v["sd_jwt_payload"]["iat"], accepted_algs=("EdDSA",))


APPENDIX = json.loads((VECTORS / "appendix_presentations_rfc9901.json").read_text())


@pytest.mark.parametrize("example", APPENDIX["examples"], ids=lambda e: e["section"])
def test_rfc9901_appendix_presentations(example: dict[str, Any]) -> None:
    """RFC 9901 A.1 (structured, decoys), A.2 (complex structured: arrays of objects with
    their own ``_sd``, recursive Disclosures) and A.4 (a W3C VCDM payload with Key Binding):
    each verifies to exactly the Processed SD-JWT Payload the RFC states."""
    jwk = json.loads((VECTORS / "rfc9901_section5_simple.json").read_text())["issuer_public_jwk"]
    text = example["presentation"]
    if text.endswith("~"):
        claims = sdjwt.verify_issuer_signed(text, issuer_public_jwk=jwk, now=T0)
    else:
        kb = json.loads(b64d(text.rsplit("~", 1)[1].split(".")[1]))
        claims = sdjwt.verify_presentation(text, issuer_public_jwk=jwk, now=kb["iat"],
                                           expected_nonce=kb["nonce"],
                                           expected_audience=kb["aud"])
        with pytest.raises(KbNonceError):
            sdjwt.verify_presentation(text, issuer_public_jwk=jwk, now=kb["iat"],
                                      expected_nonce="other", expected_audience=kb["aud"])
    assert claims == example["processed_payload"]
    # one Disclosure left out: a claim the RFC shows is then missing, nothing else fails
    jwt, *discs = text.split("~")
    fewer = "~".join([jwt, *discs[1:-1], ""])
    assert sdjwt.verify_issuer_signed(fewer, issuer_public_jwk=jwk, now=T0) != claims


def test_rfc9901_holder_can_re_present() -> None:
    """Our holder re-presents the RFC credential (the examples' holder key is published)."""
    cfg = {"d": "5K5SCos8zf9zRemGGUl6yfok-_NiiryNZsvANWMhF-I"}  # RFC 9901 examples/settings.yml
    holder = ec.derive_private_key(int.from_bytes(b64d(cfg["d"]), "big"), ec.SECP256R1())
    v = json.loads((VECTORS / "rfc9901_section5_simple.json").read_text())
    assert jwk_of(holder) == v["sd_jwt_payload"]["cnf"]["jwk"]
    presentation = present(v["sd_jwt"], ["given_name", "address"], holder)
    claims = verify(presentation, issuer_public_jwk=v["issuer_public_jwk"])
    assert claims["given_name"] == "John" and "family_name" not in claims
    assert claims["nationalities"] == []  # undisclosed array elements are removed


# -- negative: the issuer-signed JWT -------------------------------------------------------------


def test_forged_issuer_signature() -> None:
    forged = issue(ED_OTHER)  # a different key claims to be the issuer
    with pytest.raises(SignatureInvalid):
        verify(present(forged, ["given_name"]))
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    h, p, s = jwt.split(".")
    sig = bytearray(b64d(s))
    sig[5] ^= 1
    with pytest.raises(SignatureInvalid):
        verify(rebind(f"{h}.{p}.{b64e(bytes(sig))}", discs))


def test_an_es256_signature_is_exactly_r_and_s() -> None:
    """R || S is 64 bytes: a zero byte put before S, or after it, changes no integer a lenient
    decoder reads (the same signature in another text: another credential id), and is refused."""
    jwt, discs, _ = split(present(issue(EC_ISSUER, EC_HOLDER), ["given_name"], EC_HOLDER))
    h, p, s = jwt.split(".")
    sig = b64d(s)
    assert verify(rebind(jwt, discs, EC_HOLDER), EC_ISSUER)["given_name"] == SECRET
    for longer in (sig[:32] + b"\0" + sig[32:], sig + b"\0", b"\0" + sig):
        with pytest.raises(SignatureInvalid):
            verify(rebind(f"{h}.{p}.{b64e(longer)}", discs, EC_HOLDER), EC_ISSUER)
    prefix = "~".join([jwt, *discs]) + "~"
    kh, kp, ks = kb_for(prefix, EC_HOLDER).split(".")
    ksig = b64d(ks)
    with pytest.raises(KbSignatureError):
        verify(f"{prefix}{kh}.{kp}.{b64e(ksig[:32] + bytes(1) + ksig[32:])}", EC_ISSUER)


def test_a_jws_has_exactly_three_parts() -> None:
    """A fourth part after a valid signature is not ignored (issuer JWT and KB-JWT)."""
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    for extra in (".x", "."):
        with pytest.raises(MalformedError, match="-separated parts, found 4"):
            verify(rebind(jwt + extra, discs))
    prefix = "~".join([jwt, *discs]) + "~"
    kb = kb_for(prefix, ED_HOLDER)
    assert verify(prefix + kb)["given_name"] == SECRET
    with pytest.raises(MalformedError, match="found 4"):
        verify(prefix + kb + ".x")


def test_payload_changed_after_signing() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    h, p, s = jwt.split(".")
    payload = json.loads(b64d(p))
    payload["exp"] += 10_000
    with pytest.raises(SignatureInvalid):
        verify(rebind(f"{h}.{b64e(json.dumps(payload).encode())}.{s}", discs))


@pytest.mark.parametrize("alg", ["none", "None", "HS256", "RS256", "ES384", "", 7, None,
                                 ["EdDSA"], {"EdDSA": 1}])
def test_alg_not_allowed(alg: Any) -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    _, p, s = jwt.split(".")
    header = {"typ": "dc+sd-jwt", "kid": "reg-2025-1"}
    if alg is not None:
        header["alg"] = alg
    h = b64e(json.dumps(header).encode())
    for sig in (s, ""):
        with pytest.raises(AlgorithmError) as e:
            verify(rebind(f"{h}.{p}.{sig}", discs))
        assert e.value.check == "alg"


def test_alg_outside_the_accepted_list() -> None:
    presentation = present(issue(), ["given_name"])
    with pytest.raises(AlgorithmError):
        verify(presentation, accepted_algs=("ES256",))
    with pytest.raises(AlgorithmError):
        verify(presentation, accepted_algs=())  # fail closed
    with pytest.raises(AlgorithmError):  # the KB-JWT is held to the same list
        verify(present(issue(), [], EC_HOLDER), accepted_algs=("EdDSA",))
    # a caller's list naming "none" or an alg this module has no keys for widens nothing
    jwt, discs, _ = split(presentation)
    _, p, s = jwt.split(".")
    for alg in ("none", "HS256"):
        h = b64e(json.dumps({"alg": alg, "typ": "dc+sd-jwt"}).encode())
        with pytest.raises(AlgorithmError, match="is not accepted"):
            verify(rebind(f"{h}.{p}.{s}", discs), accepted_algs=(alg, "EdDSA"))


def test_es256_key_offered_as_eddsa() -> None:
    jwt, discs, _ = split(present(issue(EC_ISSUER), ["given_name"]))
    _, p, s = jwt.split(".")
    h = b64e(json.dumps({"alg": "EdDSA", "typ": "dc+sd-jwt"}).encode())
    with pytest.raises(AlgorithmError, match="EC key"):
        verify(rebind(f"{h}.{p}.{s}", discs), EC_ISSUER)
    # and the other way round: an Ed25519 issuer key with an ES256 header
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    _, p, s = jwt.split(".")
    h = b64e(json.dumps({"alg": "ES256", "typ": "dc+sd-jwt"}).encode())
    with pytest.raises(AlgorithmError):
        verify(rebind(f"{h}.{p}.{s}", discs))
    # a JWK that pins another alg; "Ed25519" is the same algorithm as "EdDSA" (RFC 9864)
    with pytest.raises(AlgorithmError, match="differs from the key's JWK alg"):
        verify(present(issue(), []), issuer_public_jwk={**jwk_of(ED_ISSUER), "alg": "ES256"})
    assert verify(present(issue(), ["given_name"]),
                  issuer_public_jwk={**jwk_of(ED_ISSUER), "alg": "Ed25519"})["given_name"]


def test_wrong_issuer_key_type() -> None:
    with pytest.raises(AlgorithmError):
        verify(present(issue(), ["given_name"]), EC_ISSUER)


@pytest.mark.parametrize("typ", ["JWT", "kb+jwt", "dc+sd-jwt-x", None, "sd-jwt", "dcsd-jwt",
                                 "application/sd-jwt"])
def test_issuer_typ(typ: str | None) -> None:
    header: dict[str, Any] = {"alg": "EdDSA"}
    if typ is not None:
        header["typ"] = typ
    cred = issue()
    payload = b64d(cred.issuer_jwt.split(".")[1]).decode()
    with pytest.raises(HeaderError):
        verify(rebind(reissue(payload, header=header), list(cred.disclosures)))


@pytest.mark.parametrize("typ", ["DC+SD-JWT", "application/dc+sd-jwt", "Application/Vc+Sd-Jwt",
                                 "vc+sd-jwt"])
def test_issuer_typ_as_a_media_type(typ: str) -> None:
    """typ is a media type: case does not matter and "application/" may be left out (RFC 7515
    section 4.1.9); the older "vc+sd-jwt" names an SD-JWT VC too, held to its rules."""
    cred = issue()
    payload = b64d(cred.issuer_jwt.split(".")[1]).decode()
    jwt = reissue(payload, header={"alg": "EdDSA", "typ": typ})
    assert verify(rebind(jwt, list(cred.disclosures)), vc_only=True)["given_name"] == SECRET
    hidden_iss = disclosure("c2FsdA", "iss", ISS)
    p = base_payload(_sd=[digest(hidden_iss)])
    del p["iss"]
    with pytest.raises(ClaimConflictError, match="must not be selectively disclosable"):
        verify(rebind(reissue(p, header={"alg": "EdDSA", "typ": typ}), [hidden_iss]))


def test_crit_header_rejected() -> None:
    cred = issue()
    payload = b64d(cred.issuer_jwt.split(".")[1]).decode()
    header = {"alg": "EdDSA", "typ": "dc+sd-jwt", "crit": ["exp"]}
    with pytest.raises(HeaderError):
        verify(rebind(reissue(payload, header=header), list(cred.disclosures)))


def test_sd_alg_must_be_sha256() -> None:
    d = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "given_name", "x")
    for alg in ("sha-512", "SHA-256", 1):
        jwt = reissue(base_payload(_sd=[digest(d)], _sd_alg=alg))
        with pytest.raises(DigestAlgorithmError):
            verify(rebind(jwt, [d]))
    # absent _sd_alg means sha-256
    payload = base_payload(_sd=[digest(d)])
    del payload["_sd_alg"]
    assert verify(rebind(reissue(payload), [d]))["given_name"] == "x"


def test_a_disclosed_top_level_sd_alg_is_not_a_processed_claim() -> None:
    """RFC 9901 section 7.1 step 3: Disclosures are inserted where their digests are (3.c),
    and only then are ``_sd`` and ``_sd_alg`` removed from the payload (3.e, 3.f). The verifier
    took ``_sd_alg`` out before inserting: a Disclosure named ``_sd_alg`` beside the issuer's
    ``_sd_alg`` was taken instead of refused as a claim that already exists (3.c.ii.3), and
    without the issuer's one, it stayed in the processed claims that the application reads
    (ADR 77's 30I item). Nested, it is an ordinary claim name."""
    d = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "_sd_alg", "sha-512")
    with pytest.raises(ClaimConflictError, match="existing claim"):
        verify(rebind(reissue(base_payload(_sd=[digest(d)])), [d]))
    payload = base_payload(_sd=[digest(d)])
    del payload["_sd_alg"]
    claims = verify(rebind(reissue(payload), [d]))
    assert "_sd_alg" not in claims, claims
    issuer_only = sdjwt.verify_issuer_signed(f"{reissue(payload)}~{d}~",
                                             issuer_public_jwk=jwk_of(ED_ISSUER), now=T0)
    assert "_sd_alg" not in issuer_only, issuer_only
    nested = base_payload(address={"_sd": [digest(d)]})
    assert verify(rebind(reissue(nested), [d]))["address"] == {"_sd_alg": "sha-512"}


def test_vc_requires_vct() -> None:
    payload = base_payload()
    del payload["vct"]
    with pytest.raises(MalformedError):
        verify(rebind(reissue(payload), []))


# -- negative: validity ------------------------------------------------------------------------


def test_expired() -> None:
    cred = issue(exp=T0 + 1000)
    with pytest.raises(ExpiredError) as e:
        verify(present(cred, ["given_name"], iat=T0 + 1060), now=T0 + 1060)
    assert e.value.check == "exp"
    assert verify(present(cred, [], iat=T0 + 1059), now=T0 + 1059)  # within the clock skew
    with pytest.raises(ExpiredError):
        verify(present(cred, [], iat=T0 + 1001), now=T0 + 1001, clock_skew=0)


def test_not_yet_valid() -> None:
    cred = issue(iat=T0 - 10, nbf=T0 + 500)
    with pytest.raises(NotYetValidError) as e:
        verify(present(cred, ["given_name"]))
    assert e.value.check == "nbf"
    assert verify(present(cred, [], iat=T0 + 440), now=T0 + 440)


def test_issued_in_future() -> None:
    cred = issue(iat=T0 + 500, nbf=T0 - 10)
    with pytest.raises(IssuedInFutureError) as e:
        verify(present(cred, []))
    assert e.value.check == "iat"
    # the edge: an iat the clock skew ahead is taken, one second more is not
    assert verify(present(issue(iat=T0 + sdjwt.CLOCK_SKEW, nbf=T0 - 10), []))["iat"] == T0 + 60
    with pytest.raises(IssuedInFutureError):
        verify(present(issue(iat=T0 + sdjwt.CLOCK_SKEW + 1, nbf=T0 - 10), []))


def test_selectively_disclosed_validity_claim_is_checked() -> None:
    """A generic (non-VC) SD-JWT may hide exp in a Disclosure; it is still enforced."""
    d = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "exp", T0 - 1000)
    payload = base_payload(_sd=[digest(d)])
    del payload["exp"]
    del payload["vct"]
    jwt = reissue(payload, header={"alg": "EdDSA", "typ": "example+sd-jwt"})
    with pytest.raises(ExpiredError):
        verify(rebind(jwt, [d]))
    # ...but an SD-JWT VC must keep exp (and iss, nbf, cnf, vct, status) visible
    payload["vct"] = VCT
    with pytest.raises(ClaimConflictError):
        verify(rebind(reissue(payload), [d]))


@pytest.mark.parametrize("value", ["1700000000", True, [1], {"a": 1}])
def test_validity_claim_type(value: Any) -> None:
    with pytest.raises(MalformedError):
        verify(rebind(reissue(base_payload(exp=value)), []))


@pytest.mark.parametrize("aud", [AUD, [AUD], ["https://other.example", AUD]])
def test_an_issuer_signed_aud_naming_this_verifier_is_taken(aud: Any) -> None:
    assert verify(rebind(reissue(base_payload(aud=aud)), []))["aud"] == aud


@pytest.mark.parametrize("aud", ["https://evil.example", ["https://evil.example"], [], 7,
                                 {"aud": AUD}])
def test_an_issuer_signed_aud_naming_another_verifier_is_refused(aud: Any) -> None:
    """RFC 9901 section 7.1 step 6 (and RFC 7519 section 4.1.3): an Issuer-signed JWT whose
    ``aud`` does not name this verifier is refused, as the KB-JWT's ``aud`` is."""
    with pytest.raises(sdjwt.AudienceError) as e:
        verify(rebind(reissue(base_payload(aud=aud)), []))
    assert e.value.check == "aud"
    assert "evil" not in str(e.value)
    # in the processed payload: a selectively disclosed aud is checked too (a generic SD-JWT)
    d = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "aud", aud)
    payload = base_payload(_sd=[digest(d)])
    del payload["vct"]
    jwt = reissue(payload, header={"alg": "EdDSA", "typ": "example+sd-jwt"})
    with pytest.raises(sdjwt.AudienceError):
        verify(rebind(jwt, [d]))


# -- negative: key binding ------------------------------------------------------------------


def test_kb_missing() -> None:
    presentation = present(issue(), ["given_name"])
    without_kb = presentation[: presentation.rindex("~") + 1]
    with pytest.raises(KbMissingError) as e:
        verify(without_kb)
    assert e.value.check == "kb_missing"
    with pytest.raises(KbMissingError):
        verify(issue().serialize())


def test_kb_signed_by_another_holder_key() -> None:
    for holder, other in ((ED_HOLDER, ED_OTHER), (EC_HOLDER, EC_OTHER)):
        cred = issue(holder=holder)
        with pytest.raises(KbSignatureError) as e:
            verify(present(cred, ["given_name"], other))
        assert e.value.check == "kb_signature"
    # the other key *type* as holder: rejected by the alg/key match
    with pytest.raises(AlgorithmError):
        verify(present(issue(holder=ED_HOLDER), ["given_name"], EC_HOLDER))


def test_kb_wrong_nonce() -> None:
    with pytest.raises(KbNonceError) as e:
        verify(present(issue(), ["given_name"], nonce="another-nonce"))
    assert e.value.check == "kb_nonce"


def test_kb_wrong_aud() -> None:
    with pytest.raises(KbAudienceError) as e:
        verify(present(issue(), ["given_name"], aud="https://evil.example"))
    assert e.value.check == "kb_aud"


def test_kb_iat_window() -> None:
    cred = issue()
    with pytest.raises(KbIatError, match="old"):
        verify(present(cred, [], iat=T0 - 301))
    assert verify(present(cred, [], iat=T0 - 300))
    with pytest.raises(KbIatError, match="future"):
        verify(present(cred, [], iat=T0 + 61))
    assert verify(present(cred, [], iat=T0 + 60))
    with pytest.raises(KbIatError):
        verify(present(cred, [], iat=T0 - 20), kb_max_age=10)
    # a boolean is no NumericDate, even where true (1) would be a fresh second
    young = issue(iat=0, nbf=0, exp=1000).serialize()
    with pytest.raises(KbIatError, match="iat is a boolean"):
        verify(young + kb_for(young, ED_HOLDER, iat=True), now=1)
    assert verify(young + kb_for(young, ED_HOLDER, iat=1), now=1)["iat"] == 0
    # a verifier's own parameters: no negative window
    with pytest.raises(ValueError, match=">= 0"):
        verify(present(cred, []), clock_skew=-1)
    with pytest.raises(ValueError, match=">= 0"):
        verify(present(cred, []), kb_max_age=-1)
    with pytest.raises(ValueError, match=">= 0"):
        sdjwt.verify_issuer_signed(cred.serialize(), issuer_public_jwk=jwk_of(ED_ISSUER),
                                   now=T0, clock_skew=-1)


def test_kb_sd_hash_mismatch() -> None:
    cred = issue()
    one = present(cred, ["given_name"])
    two = present(cred, ["given_name", "family_name"])
    kb_one = split(one)[2]
    with pytest.raises(KbSdHashError) as e:
        verify(two[: two.rindex("~") + 1] + kb_one)  # KB-JWT of another presentation
    assert e.value.check == "kb_sd_hash"
    jwt, discs, _ = split(one)
    with pytest.raises(KbSdHashError):
        verify(rebind(jwt, discs, sd_hash=digest(jwt + "~")))
    with pytest.raises(KbSdHashError):  # dropping a disclosure after the holder signed
        verify("~".join([jwt, *discs[:-1]]) + "~" + kb_one)


def test_kb_typ() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    with pytest.raises(KbHeaderError):
        verify(rebind(jwt, discs, typ="JWT"))


def test_kb_missing_claims() -> None:
    jwt, _discs, _ = split(present(issue(), []))
    prefix = jwt + "~"
    for drop, err in (("nonce", KbNonceError), ("aud", KbAudienceError), ("iat", KbIatError),
                      ("sd_hash", KbSdHashError)):
        payload = {"nonce": NONCE, "aud": AUD, "iat": T0, "sd_hash": digest(prefix)}
        del payload[drop]
        with pytest.raises(err):
            verify(prefix + jws({"alg": "EdDSA", "typ": "kb+jwt"}, payload, ED_HOLDER))


def test_cnf_missing_or_bad() -> None:
    payload = base_payload()
    del payload["cnf"]
    with pytest.raises(HolderKeyError):
        verify(rebind(reissue(payload), []))
    with pytest.raises(HolderKeyError):
        verify(rebind(reissue(base_payload(cnf={"jwk": {"kty": "RSA"}})), []))
    with pytest.raises(HolderKeyError):
        verify(rebind(reissue(base_payload(cnf={"kid": "x"})), []))


@pytest.mark.parametrize(("extra", "why"), [
    ({"use": "enc"}, "use is not 'sig': this key is not for signatures"),
    ({"use": "tls"}, "use is not 'sig': this key is not for signatures"),  # only "sig" is taken
    ({"key_ops": ["encrypt"]}, "key_ops does not include 'verify'"),
    ({"key_ops": "verify"}, "key_ops does not include 'verify'"),
])
def test_cnf_key_not_for_signatures(extra: dict[str, Any], why: str) -> None:
    # RFC 7517 4.2/4.3: a holder key marked for encryption does not check the KB-JWT
    cnf = {"jwk": {**jwk_of(ED_HOLDER), **extra}}
    with pytest.raises(HolderKeyError, match=f"cnf.jwk is not a usable key: {why}"):
        verify(rebind(reissue(base_payload(cnf=cnf)), []))
    # the same key marked for signatures (or with no marks) is taken
    ok = {"jwk": {**jwk_of(ED_HOLDER), "use": "sig", "key_ops": ["verify"]}}
    assert verify(rebind(reissue(base_payload(cnf=ok)), []))["cnf"] == ok


def test_issuer_key_not_for_signatures() -> None:
    jwk = {**jwk_of(ED_ISSUER), "use": "enc"}
    with pytest.raises(JwkError, match="not for signatures"):
        verify(present(issue(), []), issuer_public_jwk=jwk)


# -- negative: disclosures -------------------------------------------------------------------


def test_tampered_disclosure() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name", "family_name"]))
    salt, name, _ = json.loads(b64d(discs[0]))
    tampered = disclosure(salt, name, "Mallory")
    with pytest.raises(UnreferencedDisclosureError) as e:
        verify(rebind(jwt, [tampered, discs[1]]))
    assert e.value.check == "disclosure_unreferenced"
    assert "Mallory" not in str(e.value)


def test_extra_unreferenced_disclosure() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    extra = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "role", "admin")
    with pytest.raises(UnreferencedDisclosureError):
        verify(rebind(jwt, [*discs, extra]))


def test_duplicate_disclosure() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    with pytest.raises(DuplicateDisclosureError) as e:
        verify(rebind(jwt, [discs[0], discs[0]]))
    assert e.value.check == "disclosure_duplicate"


def test_disclosure_moved_from_another_credential() -> None:
    other = issue(claims={"given_name": "Zed", "clearance": "top"})
    cred = issue()
    jwt, discs, _ = split(present(cred, ["family_name"]))
    moved = [d for d in other.disclosures if json.loads(b64d(d))[1] == "clearance"]
    with pytest.raises(UnreferencedDisclosureError):
        verify(rebind(jwt, [*discs, *moved]))


def test_digest_twice_in_payload() -> None:
    d = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "given_name", "x")
    decoy = digest("decoy")
    for payload in (
        base_payload(_sd=[digest(d), digest(d)]),
        base_payload(_sd=[decoy, decoy]),  # even a digest nobody discloses
        base_payload(_sd=[digest(d)], nested={"_sd": [digest(d)]}),
        base_payload(_sd=[decoy], list=[{"...": decoy}]),
    ):
        with pytest.raises(DigestCollisionError) as e:
            verify(rebind(reissue(payload), [d] if digest(d) in str(payload) else []))
        assert e.value.check == "digest_duplicate"


def test_present_refuses_what_it_cannot_present() -> None:
    """A presentation (with its KB-JWT) is not a credential to present again; a claim the
    credential has only as an array element's Disclosure is not a claim it has."""
    with pytest.raises(ValueError, match="found one with a Key Binding JWT"):
        present(present(issue(), ["given_name"]), ["given_name"])
    element = disclosure("c2FsdA", "given_name")
    cred = reissue(base_payload(_sd=[digest(element)])) + "~" + element + "~"
    with pytest.raises(ValueError, match="no claim named"):
        present(cred, ["given_name"])


def test_nesting_limit_is_exact() -> None:
    def nested(n: int) -> dict[str, Any]:
        value: Any = "x"
        for _ in range(n):
            value = {"a": value}
        return value  # type: ignore[no-any-return]

    claims = verify(rebind(reissue(base_payload(deep=nested(sdjwt.MAX_DEPTH))), []))
    assert claims["deep"] == nested(sdjwt.MAX_DEPTH)
    with pytest.raises(SizeError, match="nesting deeper than 32"):
        verify(rebind(reissue(base_payload(deep=nested(sdjwt.MAX_DEPTH + 1))), []))


def test_presenting_a_plain_claim_discloses_its_selectively_disclosable_members() -> None:
    """A structured claim (plain ``address``, its members disclosable; RFC 9901 section 4.2.6):
    asking for ``address`` gives its members, not an empty object."""
    street = disclosure("czE", "street", "Main St 1")
    city = disclosure("czI", "city", "Springfield")
    tag = disclosure("czM", "x")  # an array element, nested deeper
    other = disclosure("czQ", "given_name", "Erika")
    payload = base_payload(_sd=[digest(other)], address={
        "_sd": [digest(street), digest(city)], "zip": "123", "tags": [{"...": digest(tag)}]})
    cred = "~".join([reissue(payload), street, city, tag, other]) + "~"
    claims = verify(present(cred, ["address"]))
    assert claims["address"] == {"street": "Main St 1", "city": "Springfield", "zip": "123",
                                 "tags": ["x"]}
    assert "given_name" not in claims
    assert verify(present(cred, ["given_name"]))["address"] == {"zip": "123", "tags": []}


def test_digest_twice_via_recursive_disclosure() -> None:
    inner = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "a", 1)
    outer = disclosure("b3RoZXJzYWx0b3RoZXJzYQ", "obj", {"_sd": [digest(inner)]})
    jwt = reissue(base_payload(_sd=[digest(outer), digest(inner)]))
    with pytest.raises(DigestCollisionError):
        verify(rebind(jwt, [outer, inner]))


@pytest.mark.parametrize(("elements", "where", "err"), [
    (["c2FsdA", "x"], "_sd", DisclosureError),  # array-element disclosure in an object
    (["c2FsdA", "name", "x"], "...", DisclosureError),  # property disclosure in an array
    (["c2FsdA", "_sd", "x"], "_sd", ClaimConflictError),
    (["c2FsdA", "...", "x"], "_sd", ClaimConflictError),
    (["c2FsdA", "iss", "x"], "_sd", ClaimConflictError),  # overwrites a plain claim
    (["c2FsdA", 5, "x"], "_sd", DisclosureError),  # claim name not a string
    ([5, "name", "x"], "_sd", DisclosureError),  # salt not a string
    (["c2FsdA", "name", "x", "extra"], "_sd", DisclosureError),
    (["c2FsdA"], "_sd", DisclosureError),
    ({"salt": "c2FsdA"}, "_sd", DisclosureError),
    ("just a string", "_sd", DisclosureError),
])
def test_disclosure_shape(elements: Any, where: str, err: type[Exception]) -> None:
    d = b64e(json.dumps(elements).encode())
    if where == "_sd":
        payload = base_payload(_sd=[digest(d)])
    else:
        payload = base_payload(items=[{"...": digest(d)}])
    with pytest.raises(err):
        verify(rebind(reissue(payload), [d]))


def test_overwrite_between_two_disclosures() -> None:
    a = disclosure("c2FsdHNhbHRzYWx0c2FsdA", "name", "a")
    b = disclosure("b3RoZXJzYWx0b3RoZXJzYQ", "name", "b")
    with pytest.raises(ClaimConflictError):
        verify(rebind(reissue(base_payload(_sd=sorted([digest(a), digest(b)]))), [a, b]))


def test_recursive_disclosures_in_objects_and_arrays() -> None:
    street = disclosure("czE", "street", "Main St 1")
    city = disclosure("czI", "city", "Springfield")
    addr = disclosure("czM", "address", {"_sd": [digest(street), digest(city)], "zip": "123"})
    elem_a = disclosure("czQ", "XA")
    elem_obj = disclosure("czU", {"_sd": [digest(disclosure("czY", "hidden", 1))], "k": "v"})
    nested_arr = disclosure("czc", ["deep", {"...": digest(disclosure("czg", "never"))}])
    payload = base_payload(
        _sd=[digest(addr), digest("decoy-1")],
        nationalities=[{"...": digest(elem_a)}, {"...": digest("decoy-2")}, "XC"],
        docs=[{"...": digest(elem_obj)}, {"...": digest(nested_arr)}],
        plain={"keep": [1, {"...": "not-a-known-digest"}], "...": "ok as an object member"},
    )
    claims = verify(rebind(reissue(payload), [street, addr, elem_a, elem_obj, nested_arr]))
    assert claims["address"] == {"street": "Main St 1", "zip": "123"}
    assert claims["nationalities"] == ["XA", "XC"]
    assert claims["docs"] == [{"k": "v"}, ["deep"]]
    assert claims["plain"] == {"keep": [1], "...": "ok as an object member"}
    # the dependent disclosure alone (without its parent) is unreferenced
    with pytest.raises(UnreferencedDisclosureError):
        verify(rebind(reissue(payload), [street]))


@pytest.mark.parametrize("sd", ["abc", {"a": 1}, [1], [None]])
def test_sd_must_be_array_of_strings(sd: Any) -> None:
    with pytest.raises(MalformedError):
        verify(rebind(reissue(base_payload(_sd=sd)), []))


def test_array_digest_must_be_string() -> None:
    with pytest.raises(MalformedError):
        verify(rebind(reissue(base_payload(items=[{"...": 5}])), []))


def test_an_object_with_more_than_the_dots_is_an_array_element_itself() -> None:
    """RFC 9901 section 4.2.4.2: an array element digest is an object with the one key
    "..."; an object with another key beside it is a plain element, kept as it is."""
    d = disclosure("c2FsdA", "hidden")
    items = [{"...": digest(d), "b": 1}, {"...": digest(d), "...x": 2}]
    assert verify(rebind(reissue(base_payload(items=items)), []))["items"] == items
    with pytest.raises(UnreferencedDisclosureError):
        verify(rebind(reissue(base_payload(items=items)), [d]))
    # and the holder, presenting the plain claim, does not take it for a digest either
    e = disclosure("c2FsdA", "hidden")
    cred = reissue(base_payload(items=[{"...": digest(e), "b": 1}])) + "~" + e + "~"
    shown = present(cred, ["items"])
    assert split(shown)[1] == []
    assert verify(shown)["items"] == [{"...": digest(e), "b": 1}]


# -- negative: encoding, JSON, size -------------------------------------------------------------


def test_bad_base64url() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    for bad in (discs[0] + "=", discs[0][:-1] + "*", discs[0] + "A" * 5, "+" + discs[0][1:],
                discs[0] + " "):
        with pytest.raises(EncodingError) as e:
            verify(rebind(jwt, [bad]))
        assert e.value.check == "base64url"
    # non-canonical: the unused low bits of the last character are set (same decoded bytes)
    presentation = present(issue(), ["given_name"])
    kb = split(presentation)[2]
    _h, _p, s = kb.split(".")
    assert len(s) % 4 == 2
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    noncanon = s[:-1] + alphabet[alphabet.index(s[-1]) | 1]
    assert b64d(noncanon) == b64d(s)
    with pytest.raises(EncodingError):
        verify(presentation[: -len(s)] + noncanon)
    with pytest.raises(EncodingError):
        verify(presentation.replace("A", "Ä", 1))
    jwt, discs, _ = split(presentation)
    with pytest.raises(EncodingError, match="non-ASCII"):  # in a Disclosure, before its digest
        verify(rebind(jwt, [discs[0][:-1] + "é"]))


def test_a_jws_header_read_to_pick_a_key_is_bounded() -> None:
    def token(kid_len: int) -> str:
        h = b64e(json.dumps({"alg": "EdDSA", "kid": "k" * kid_len}).encode())
        return f"{h}.e30.sig"

    fits = max(n for n in range(2900, 3100) if len(token(n).split(".")[0]) <= 4096)
    assert sdjwt.parse_jws_header(token(fits))["kid"] == "k" * fits
    assert len(token(fits + 1).split(".")[0]) > 4096
    with pytest.raises(MalformedError, match="at most 4096 characters"):
        sdjwt.parse_jws_header(token(fits + 1))


def test_sign_jws_puts_the_keys_alg_in_the_header_whatever_the_caller_gave() -> None:
    """``sign_jws`` adds its key's ``alg`` to the caller's header: an ``alg`` the caller put
    there (``none``, another key's) does not stay in a header signed with this key (helper
    round 36M: the order of the merge was not pinned)."""
    for key, public, alg in ((ED_HOLDER, ED_HOLDER.public, "EdDSA"),
                             (EC_HOLDER, EC_HOLDER.public_key(), "ES256")):
        for asked in ("none", "ES256" if alg == "EdDSA" else "EdDSA"):
            token = sdjwt.sign_jws({"alg": asked, "typ": "x"}, {"n": 1}, key)
            header, payload, signing_input, signature = sdjwt.parse_jws(token)
            assert (header, payload) == ({"alg": alg, "typ": "x"}, {"n": 1}), asked
            assert sdjwt.jws_verify(public, signing_input, signature)


def test_parse_jws_takes_a_str_alone_and_refuses_anything_else_in_its_own_error() -> None:
    """A compact JWS that is not a str (its bytes, None) is refused as malformed, a
    VerificationError a caller catches, not a TypeError from inside (helper round 36M: the
    check was not pinned)."""
    token = sdjwt.sign_jws({"typ": "x"}, {"n": 1}, ED_HOLDER)
    assert sdjwt.parse_jws(token)[1] == {"n": 1}
    for wrong in (token.encode("ascii"), None, 3):
        with pytest.raises(MalformedError, match="a compact JWS is a str, found "):
            sdjwt.parse_jws(wrong)  # type: ignore[arg-type]


def test_an_empty_disclosure_is_named() -> None:
    jwt, discs, _ = split(present(issue(), ["given_name"]))
    with pytest.raises(MalformedError, match="disclosure #0 is empty") as e:
        verify(rebind(jwt, ["", *discs]))
    assert e.value.check == "malformed"


def test_a_jwt_alone_is_no_sd_jwt() -> None:
    """Without a '~' the issuer-signed JWT is not read as its own Key Binding JWT."""
    jwt = issue().issuer_jwt
    with pytest.raises(MalformedError, match="no '~' separator") as e:
        verify(jwt)
    assert e.value.check == "malformed"
    with pytest.raises(MalformedError, match="no '~' separator"):
        sdjwt.verify_issuer_signed(jwt, issuer_public_jwk=jwk_of(ED_ISSUER), now=T0)


def test_the_size_limit_is_exact() -> None:
    with pytest.raises(SizeError) as e:
        verify("a" * (sdjwt.MAX_SIZE + 1))
    assert e.value.check == "size"
    with pytest.raises(MalformedError) as at:  # at the limit: read, and refused for its form
        verify("a" * sdjwt.MAX_SIZE)
    assert at.value.check == "malformed"


def test_base64url_is_strict_in_every_way_python_is_lenient() -> None:
    """A Disclosure that decodes to the same bytes in a lenient base64 decoder, but is not
    unpadded canonical base64url, is refused: its digest would no longer be the issuer's."""
    cred = issue()
    jwt, discs, _ = split(present(cred, sorted(CLAIMS)))
    two = next(d for d in discs if len(d) % 4 == 2)
    three = next(d for d in discs if len(d) % 4 == 3)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    assert alphabet.index(three[-1]) & 0x03 == 0 and alphabet.index(two[-1]) & 0x0F == 0
    cases = [
        "/" + discs[0][1:],  # the standard alphabet's '/'
        two + "==", three + "=",  # padded, as base64 proper would be
        three[:-1] + alphabet[alphabet.index(three[-1]) | 2],  # an unused bit set (2 left)
        two[:-1] + alphabet[alphabet.index(two[-1]) | 8],  # the highest of 4 unused bits
        two[:4] + "****" + two[4:],  # characters a lenient decoder skips
    ]
    assert b64d(cases[3]) == b64d(three)
    for bad in cases:
        with pytest.raises(EncodingError) as e:
            verify(rebind(jwt, [bad]))
        assert e.value.check == "base64url"


def test_duplicate_json_keys() -> None:
    payload = json.dumps(base_payload())
    dup = payload[:-1] + ', "iss": "https://other.example"}'
    with pytest.raises(JsonError) as e:
        verify(rebind(reissue(dup), []))
    assert e.value.check == "json"
    d = b64e(b'["c2FsdA", "address", {"city": "A", "city": "B"}]')
    with pytest.raises(JsonError):
        verify(rebind(reissue(base_payload(_sd=[digest(d)])), [d]))
    header = '{"alg": "EdDSA", "typ": "dc+sd-jwt", "alg": "EdDSA"}'
    with pytest.raises(JsonError):
        verify(rebind(jws(header, base_payload(), ED_ISSUER), []))


def test_lone_surrogate_escapes_are_not_text() -> None:
    """RFC 8259 section 8.2 / I-JSON: a surrogate escape outside a pair names no character;
    verified claims holding one could not be written as UTF-8 (a foreign issuer's, ADR 39).
    A pair (an emoji) is text."""
    for raw in (b'["c2FsdA", "name", "\\ud800"]', b'["c2FsdA", "\\uDC00x", "v"]',
                b'["c2FsdA", "name", ["ok", "\\ude00\\ud83d"]]'):
        d = b64e(raw)
        with pytest.raises(JsonError, match="lone surrogate"):
            verify(rebind(reissue(base_payload(_sd=[digest(d)])), [d]))
    with pytest.raises(JsonError, match="lone surrogate"):
        verify(rebind(reissue(base_payload(note="\ud800")), []))
    d = b64e(b'["c2FsdA", "name", "\\ud83d\\ude00"]')
    assert verify(rebind(reissue(base_payload(_sd=[digest(d)])), [d]))["name"] == "\U0001f600"


@pytest.mark.parametrize("text", ['{"exp": NaN}', '{"exp": Infinity}', "[1, 2]", "", "{",
                                  '{"a": 1} x', "\ufeff{}"])
def test_bad_json(text: str) -> None:
    with pytest.raises(MalformedError):
        verify(rebind(reissue(text), []))


GOOD_PAYLOAD = json.dumps(base_payload())


@pytest.mark.parametrize("text", [
    GOOD_PAYLOAD.replace(f'"exp": {T0 + 1000}', '"exp": NaN'),
    GOOD_PAYLOAD.replace(f'"exp": {T0 + 1000}', '"exp": Infinity'),
    GOOD_PAYLOAD[:-1] + ', "n": -Infinity}',
    GOOD_PAYLOAD + "x", GOOD_PAYLOAD + '{"iss": "x"}', GOOD_PAYLOAD + " x",
], ids=["NaN", "Infinity", "-Infinity", "trailing-x", "two-values", "trailing-space-x"])
def test_bad_json_in_an_otherwise_valid_payload(text: str) -> None:
    """Each case is refused for its JSON alone: the payload is valid without the change."""
    assert text != GOOD_PAYLOAD
    assert verify(rebind(reissue(GOOD_PAYLOAD), []))["iss"] == ISS
    with pytest.raises(JsonError) as e:
        verify(rebind(reissue(text), []))
    assert e.value.check == "json"


def test_whitespace_around_json_is_json() -> None:
    """RFC 8259 section 2: insignificant whitespace may precede or follow the value."""
    for text in (GOOD_PAYLOAD + "\n", " " + GOOD_PAYLOAD, "\t" + GOOD_PAYLOAD + "\r\n"):
        assert verify(rebind(reissue(text), []))["iss"] == ISS
    assert sdjwt.strict_json(b'{"a": 1}\n', "x") == {"a": 1}
    assert sdjwt.strict_json_file(b'\xef\xbb\xbf{"a": 1}', "x") == {"a": 1}
    for encoding in ("utf-16-le", "utf-16-be", "utf-16", "utf-32"):  # PowerShell 5's '>'
        assert sdjwt.strict_json_file('{"a": "é"}'.encode(encoding), "x") == {"a": "é"}


@pytest.mark.parametrize(("claim", "literal"), [("exp", "1e400"), ("nbf", "-1e400"),
                                                ("iat", "-1e999")])
def test_a_number_too_large_for_a_float_is_refused(claim: str, literal: str) -> None:
    """JSON has no infinity, but a number past a float's range parsed as one: an issuer's
    ``exp`` of 1e400 was a credential that never expired, and an ``nbf`` (or ``iat``) of
    -1e400 crashed ``receive_foreign`` (``int(-inf)``) after it had verified."""
    text = json.dumps(base_payload(**{claim: 123456789}))
    assert text.count("123456789") == 1
    with pytest.raises(MalformedError, match="too large"):
        verify(rebind(reissue(text.replace("123456789", literal)), []))


def test_invalid_utf8() -> None:
    h = b64e(json.dumps({"alg": "EdDSA", "typ": "dc+sd-jwt"}).encode())
    p = b64e(b'{"iss": "\xff"}')
    si = f"{h}.{p}"
    jwt = f"{si}.{b64e(ED_ISSUER.sign_raw(si.encode()))}"
    with pytest.raises(JsonError):
        verify(rebind(jwt, []))


def test_oversize() -> None:
    cred = issue(claims={"blob": "x" * (70 * 1024)})
    with pytest.raises(SizeError) as e:
        verify(present(cred, ["blob"]))
    assert e.value.check == "size"
    many = [disclosure(f"s{i}", f"c{i}", i) for i in range(101)]
    jwt = reissue(base_payload(_sd=sorted(digest(d) for d in many)))
    with pytest.raises(SizeError):
        verify(rebind(jwt, many))
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": deep}
    with pytest.raises(SizeError):
        verify(rebind(reissue(base_payload(deep=deep)), []))
    with pytest.raises(SizeError) as e:  # JSON nested beyond the parser's recursion limit
        verify(rebind(reissue('{"a": ' + "[" * 5000 + "]" * 5000 + "}"), []))
    assert e.value.check == "size"


@pytest.mark.parametrize("text", ["", "~", "abc", "a.b.c", "a.b~", "~~~", "x~~y~", "a.b.c.d~",
                                  "..~"])
def test_structurally_malformed(text: str) -> None:
    with pytest.raises(VerificationError):
        verify(text)


# -- errors ------------------------------------------------------------------------------------


def test_error_tree_and_checks() -> None:
    classes = [getattr(sdjwt, n) for n in sdjwt.__all__
               if isinstance(getattr(sdjwt, n), type) and issubclass(getattr(sdjwt, n),
                                                                     VerificationError)]
    assert len(classes) >= 25
    checks = [c.check for c in classes]
    assert len(set(checks)) == len(checks)
    assert all(issubclass(c, LedgerError) for c in classes)
    for name in sdjwt.__all__:
        assert hasattr(sdjwt, name)


def test_messages_do_not_leak_claim_values() -> None:
    cred = issue()
    jwt, discs, _ = split(present(cred, sorted(CLAIMS)))
    failures: list[VerificationError] = []
    attempts: list[Callable[[], object]] = [
        lambda: verify(rebind(jwt, [*discs, discs[0]])),
        lambda: verify(rebind(jwt, [*discs[:-1], disclosure("c2FsdA", "given_name", SECRET)])),
        lambda: verify(rebind(jwt, discs), now=T0 + 10**6),
        lambda: verify(rebind(jwt, discs, nonce=SECRET)),
        lambda: verify(rebind(reissue(base_payload(_sd=[digest(discs[0])],
                                                   given_name="x")), [discs[0]])),
    ]
    for attempt in attempts:
        with pytest.raises(VerificationError) as e:
            attempt()
        failures.append(e.value)
    for err in failures[:3] + failures[4:]:
        assert SECRET not in str(err)
        assert "Novak" not in str(err)


# -- property: mutations never verify ---------------------------------------------------------

_VALID = present(issue(decoys=2), ["given_name", "address", "nationalities"])
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~.=+/ é\x00{"


@st.composite
def mutations(draw: st.DrawFn) -> str:
    text = _VALID
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["replace", "delete", "insert", "drop_part", "dup_part",
                                   "swap_parts", "truncate", "flip_b64"]))
        parts = text.split("~")
        if op in ("replace", "delete", "insert", "flip_b64") and text:
            i = draw(st.integers(0, len(text) - 1))
            if op == "replace":
                text = text[:i] + draw(st.sampled_from(_ALPHABET)) + text[i + 1:]
            elif op == "delete":
                text = text[:i] + text[i + 1:]
            elif op == "insert":
                text = text[:i] + draw(st.sampled_from(_ALPHABET)) + text[i:]
            else:
                text = text[:i] + chr(ord(text[i]) ^ draw(st.sampled_from([1, 2, 32]))) \
                    + text[i + 1:]
        elif op == "drop_part" and len(parts) > 1:
            del parts[draw(st.integers(0, len(parts) - 1))]
            text = "~".join(parts)
        elif op == "dup_part":
            i = draw(st.integers(0, len(parts) - 1))
            parts.insert(draw(st.integers(0, len(parts))), parts[i])
            text = "~".join(parts)
        elif op == "swap_parts" and len(parts) > 1:
            i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
            text = "~".join(parts)
        elif op == "truncate":
            text = text[: draw(st.integers(0, len(text)))]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutations())
def test_mutations_never_verify(mutated: str) -> None:
    assume(mutated != _VALID)
    with pytest.raises(VerificationError):
        verify(mutated)


def test_valid_baseline_for_mutations() -> None:
    assert verify(_VALID)["given_name"] == SECRET


def test_show_quotes_an_outside_value_whole_or_cut_within_its_limit() -> None:
    """``_show`` (every refusal's quote of an outside value, and statuslist's): a value whose
    quote fits the limit is quoted whole; a longer string is cut before it is quoted, so the
    quote is whole (both marks, no escape cut in two) and, with its mark "…", within the limit;
    another value's quote is cut to the limit, the mark included (round 38M: no test held the
    bounds)."""
    import ast

    from ledger.sdjwt import _show

    fits = "x" * 38  # quoted: 40 characters, the limit
    assert _show(fits) == repr(fits)
    assert _show(fits + "x") == repr("x" * 37) + "…"  # 40 with the mark
    for value in ("x" * 200, "\x1b" * 30, "\u05d0" * 30 + "\x1b[2J" + "x" * 100):
        shown = _show(value)
        assert len(shown) <= 40 and shown.endswith("'…"), shown
        quoted = ast.literal_eval(shown[:-1])  # a whole quote of the value's start
        assert isinstance(quoted, str) and value.startswith(quoted) and len(quoted) > 5
        assert len(repr(value[:len(quoted) + 1])) > 39  # no more of it fits
    listed = list(range(100))
    assert _show(listed) == repr(listed)[:39] + "…"
    assert _show(listed, 12) == repr(listed)[:11] + "…"
