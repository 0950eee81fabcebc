"""The credential adversary suite: a negative test for every MUST a verifier has to check.

Sources: RFC 9901 (SD-JWT) section 7.1 (verifying the SD-JWT) and 7.3 (verifying the SD-JWT+KB,
with the Key Binding JWT rules of 4.3), and draft-ietf-oauth-sd-jwt-vc (``typ``, ``vct``, claims
that MUST NOT be disclosable, the issuer key validated by a permitted mechanism, ``cnf`` used for
Key Binding). Every test goes through the verifying official's full path
(:func:`ledger.presentation.verify_envelope` over a real store and checkpoint) unless it names
a lower layer, and asserts *which* check refused and that the detail says why. Boundary cases
come in pairs (one second inside the window verifies, one second outside does not), so a test
cannot pass because everything fails.

Attackers: a dishonest holder (edits, moves or replays disclosures; signs with another key), a
dishonest or compromised issuer key (signs malformed credentials and anchors them), a malicious
verifier (forwards a presentation to another audience).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from typing import Any

import pytest
from conftest import DAY, T0, LedgerHarness
from credworld import CLAIMS, HOLDER, REQ, World, present
from cryptography.hazmat.primitives.asymmetric import ec

from ledger import sdjwt
from ledger.credentials import status_list_uri
from ledger.keys import PrivateKey
from ledger.network import Agency, issue_tx
from ledger.presentation import Bundle, Envelope, Report, Request

SKEW, KB_AGE = 60, 300
NOW = T0 + 20


@pytest.fixture
def world(ledger: LedgerHarness, agencies: dict[str, Agency]) -> World:
    return World(ledger, agencies)


# -- helpers -------------------------------------------------------------------------------------

def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def digest(disclosure: str) -> str:
    return b64(hashlib.sha256(disclosure.encode()).digest())


def disclosure(name: str, value: Any, salt: bytes = b"s" * 16) -> str:
    return b64(json.dumps([b64(salt), name, value]).encode())


def sign_jws(header: dict[str, Any], payload: dict[str, Any], key: PrivateKey) -> str:
    h, p = b64(json.dumps(header).encode()), b64(json.dumps(payload).encode())
    return f"{h}.{p}.{b64(key.sign_raw(f'{h}.{p}'.encode()))}"


def kb_jwt(presented: str, holder: PrivateKey = HOLDER, *, nonce: str = REQ.nonce,
           aud: str = REQ.audience, iat: int = NOW, header: dict[str, Any] | None = None,
           extra: dict[str, Any] | None = None) -> str:
    """A KB-JWT over ``presented`` (``jwt~d…~``), honest or not, appended to it."""
    payload = {"nonce": nonce, "aud": aud, "iat": iat, "sd_hash": digest(presented),
               **(extra or {})}
    return presented + sign_jws(header or {"alg": "EdDSA", "typ": "kb+jwt"}, payload, holder)


class Forge:
    """Credentials the edu issuer key signs *as the attacker wants* and anchors honestly, so a
    refusal comes from the check under test and not from the anchor binding."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.edu = world.agencies["edu"]
        self.next_index = 100

    def payload(self, *, disclosures: list[str], iat: int = T0 + 10, nbf: int = T0 + 10,
                exp: int = T0 + 30 * DAY, idx: int | None = None) -> dict[str, Any]:
        idx = self.next_index if idx is None else idx
        return {"_sd": sorted(digest(d) for d in disclosures), "_sd_alg": "sha-256",
                "vct": "degree", "iss": "urn:credledger:demo:edu", "iat": iat, "nbf": nbf,
                "exp": exp, "cnf": {"jwk": sdjwt.jwk_from_ed25519(HOLDER.public.raw)},
                "status": {"status_list": {"idx": idx,
                                           "uri": status_list_uri("demo", "edu", "degree")}}}

    def honest_disclosures(self) -> list[str]:
        return [disclosure(k, v, k.encode().ljust(16, b"_")) for k, v in CLAIMS.items()]

    def issue(self, payload: dict[str, Any], disclosures: list[str],
              header: dict[str, Any] | None = None, key: PrivateKey | None = None,
              *, anchor_from: int = T0 + 10, anchor_until: int = T0 + 30 * DAY,
              anchor_index: int | None = None) -> Bundle:
        head = header or {"alg": "EdDSA", "typ": "dc+sd-jwt", "kid": "k"}
        jwt = sign_jws(head, payload, key or self.edu.issuer_key)
        idx = anchor_index if anchor_index is not None else self.next_index
        self.next_index += 1
        anchor = issue_tx("demo", self.edu, hashlib.sha256(jwt.encode()).digest(), "degree",
                          idx, anchor_from, anchor_until, T0 + 10)
        r = self.world.ledger.commit([anchor], T0 + 10)
        assert not r.rejected, [(e.code, e.message) for _, e in r.rejected]
        return self.world.bundle("~".join([jwt, *disclosures]) + "~", r.accepted[0][1])


@pytest.fixture
def forge(world: World) -> Forge:
    return Forge(world)


def envelope(bundle: Bundle, sd_jwt_kb: str) -> bytes:
    return Envelope.from_bundle(bundle, sd_jwt_kb).to_bytes()


def refused(report: Report, step: str, *words: str) -> None:
    failed = [c for c in report.checks if not c.ok]
    assert failed, report.to_json()
    assert not report.verified
    assert failed[0].name == step, report.to_json()
    for w in words:
        assert w.lower() in failed[0].detail.lower(), report.to_json()


def verified(report: Report) -> None:
    assert report.verified, report.to_json()


def kb_over(bundle: Bundle, names: tuple[str, ...] = REQ.claims, **kw: Any) -> str:
    """Present ``names`` from ``bundle`` with a KB-JWT built by :func:`kb_jwt`."""
    jwt, *ds = bundle.sd_jwt.split("~")[:-1]
    chosen = [d for d in ds if json.loads(unb64(d))[1] in names]
    return kb_jwt("~".join([jwt, *chosen]) + "~", **kw)


def test_forge_baseline_verifies(world: World, forge: Forge) -> None:
    """The forging helpers make a valid credential when nothing is changed."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds), ds)
    verified(world.verify(envelope(bundle, kb_over(bundle))))


# == RFC 9901 section 7.1: the Issuer-signed JWT ==================================================

@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "", None, ["EdDSA"]])
def test_7_1_2a_alg_not_secure_or_none(world: World, forge: Forge, alg: Any) -> None:
    """7.1 step 2.1: ``none`` MUST NOT be accepted; only algorithms on the allow-list."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds), ds,
                         header={"alg": alg, "typ": "dc+sd-jwt"})
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "alg")


def test_7_1_2b_signature_must_verify(world: World) -> None:
    """7.1 step 2.2: the Issuer-signed JWT's signature MUST be validated (one bit flipped)."""
    bundle, _ = world.issue()
    jwt, rest = bundle.sd_jwt.split("~", 1)
    h, p, s = jwt.split(".")
    sig = bytearray(unb64(s))
    sig[5] ^= 1
    forged = replace(bundle, sd_jwt=f"{h}.{p}.{b64(bytes(sig))}~{rest}")
    refused(world.verify(envelope(forged, kb_over(forged))), "sd_jwt", "signature")
    verified(world.verify(envelope(bundle, kb_over(bundle))))


def test_7_1_2b_signature_of_an_anchored_credential_must_verify(world: World,
                                                              forge: Forge) -> None:
    """7.1 step 2.2 with the anchor in place: a signature by another key is refused."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds), ds, key=world.agencies["tax"].issuer_key)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "signature")


def test_7_1_2c_issuer_must_own_the_key(world: World, forge: Forge) -> None:
    """7.1 step 2.3 (and SD-JWT VC 3.5): the signing key MUST belong to the Issuer named by the
    credential. edu's key signs a JWT whose ``iss`` claims to be the civil registry."""
    ds = forge.honest_disclosures()
    payload = {**forge.payload(disclosures=ds), "iss": "urn:credledger:demo:reg"}
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", "iss")


@pytest.mark.parametrize("sd_alg", ["sha-1", "SHA-256", "md5", 256])
def test_7_1_2d_sd_alg_must_be_understood(world: World, forge: Forge, sd_alg: Any) -> None:
    """7.1 step 2.4: ``_sd_alg`` MUST be understood and secure (here: sha-256 only)."""
    ds = forge.honest_disclosures()
    bundle = forge.issue({**forge.payload(disclosures=ds), "_sd_alg": sd_alg}, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "_sd_alg")


def test_7_1_3_object_disclosure_must_have_three_elements(world: World, forge: Forge) -> None:
    """7.1 step 3.2.1: a digest in ``_sd`` whose Disclosure is not an array of 3 MUST reject."""
    ds = [*forge.honest_disclosures(), b64(json.dumps([b64(b"x" * 16), "degree_level"]).encode())]
    bundle = forge.issue(forge.payload(disclosures=ds), ds)
    refused(world.verify(envelope(bundle, kb_over(bundle, names=(*REQ.claims, "x")))),
            "sd_jwt")
    presented = "~".join([bundle.sd_jwt.split("~")[0], *ds]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "array")


@pytest.mark.parametrize("name", ["_sd", "..."])
def test_7_1_3_reserved_claim_names(world: World, forge: Forge, name: str) -> None:
    """7.1 step 3.2.1: a Disclosure naming ``_sd`` or ``...`` MUST reject."""
    ds = [*forge.honest_disclosures(), disclosure(name, "x", b"r" * 16)]
    bundle = forge.issue(forge.payload(disclosures=ds), ds)
    presented = "~".join([bundle.sd_jwt.split("~")[0], *ds]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "reserved")


def test_7_1_3_claim_must_not_already_exist(world: World, forge: Forge) -> None:
    """7.1 step 3.2.1: a Disclosure for a claim already in the payload MUST reject."""
    ds = forge.honest_disclosures()
    payload = {**forge.payload(disclosures=ds), "degree_level": "plain"}
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "overwrite")


def test_7_1_3_array_disclosure_must_have_two_elements(world: World, forge: Forge) -> None:
    """7.1 step 3.2.2: an array-element digest whose Disclosure has 3 elements MUST reject."""
    ds = forge.honest_disclosures()
    three = disclosure("tag", "x", b"t" * 16)
    payload = {**forge.payload(disclosures=ds), "tags": [{"...": digest(three)}]}
    bundle = forge.issue(payload, [*ds, three])
    presented = "~".join([bundle.sd_jwt.split("~")[0], *ds, three]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "array element")


def test_7_1_3_3_digest_twice(world: World, forge: Forge) -> None:
    """7.1 step 3.3: a digest that appears more than once MUST reject."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    payload["_sd"] = [*payload["_sd"], payload["_sd"][0]]
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "more than once")


def test_7_1_4_unreferenced_disclosure(world: World) -> None:
    """7.1 step 4: a Disclosure not referenced by the Issuer-signed JWT MUST reject."""
    bundle, _ = world.issue()
    kb = kb_over(bundle)
    jwt, *rest = kb.split("~")
    extra = disclosure("degree_level", "doctorate", b"z" * 16)
    presented = "~".join([jwt, *rest[:-1], extra]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "not referenced")


def test_7_1_duplicate_disclosure(world: World) -> None:
    """A Disclosure repeated in one presentation is refused (no digest may be used twice)."""
    bundle, _ = world.issue()
    jwt, *rest = kb_over(bundle).split("~")
    presented = "~".join([jwt, *rest[:-1], rest[0]]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "repeats")


def test_7_1_tampered_disclosure_value(world: World) -> None:
    """7.1 step 3 (Disclosures are bound by digest): an edited value is an unreferenced one."""
    bundle, _ = world.issue()
    jwt, *rest = kb_over(bundle).split("~")
    salt, name, _ = json.loads(unb64(rest[0]))
    edited = b64(json.dumps([salt, name, "doctorate"]).encode())
    presented = "~".join([jwt, edited, *rest[1:-1]]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt", "not referenced")


# -- 7.1 step 5: validity (time edges) ------------------------------------------------------------

@pytest.mark.parametrize(("after_exp", "ok"), [(SKEW - 1, True), (SKEW, False), (DAY, False)])
def test_7_1_5_exp_just_passed(world: World, forge: Forge, after_exp: int, ok: bool) -> None:
    """7.1 step 5: an expired SD-JWT MUST be rejected (``exp`` + 60 s skew is the edge)."""
    ds = forge.honest_disclosures()
    exp = T0 + DAY
    bundle = forge.issue(forge.payload(disclosures=ds, exp=exp), ds, anchor_until=exp)
    now = exp + after_exp
    report = world.verify(envelope(bundle, kb_over(bundle, iat=now)), now=now)
    verified(report) if ok else refused(report, "sd_jwt", "expired")


@pytest.mark.parametrize(("nbf_offset", "ok"), [(SKEW, True), (SKEW + 1, False), (DAY, False)])
def test_7_1_5_nbf_in_the_future(world: World, forge: Forge, nbf_offset: int, ok: bool) -> None:
    """7.1 step 5: an SD-JWT not yet valid MUST be rejected (``nbf`` - 60 s skew is the edge)."""
    ds = forge.honest_disclosures()
    nbf = NOW + nbf_offset
    bundle = forge.issue(forge.payload(disclosures=ds, nbf=nbf), ds, anchor_from=nbf)
    report = world.verify(envelope(bundle, kb_over(bundle)), now=NOW)
    verified(report) if ok else refused(report, "sd_jwt", "not yet valid")


def test_7_1_5_iat_in_the_future(world: World, forge: Forge) -> None:
    """7.1 step 5: an issuance time in the future (beyond the skew) MUST be rejected."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds, iat=NOW + SKEW + 1), ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "future")


@pytest.mark.parametrize("drop", ["exp", "nbf"])
def test_7_1_5_required_validity_claim_missing(world: World, forge: Forge, drop: str) -> None:
    """7.1 step 5: a validity claim this network requires (``exp``, ``nbf``: the anchor's window)
    that is missing MUST reject."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    del payload[drop]
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", drop)


def test_7_1_5_validity_must_match_the_anchor(world: World, forge: Forge) -> None:
    """The JWT's window is the one the ledger anchored: an ``exp`` beyond it is refused."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds, exp=T0 + 999 * DAY), ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", "exp")


# == RFC 9901 section 7.3 (and 4.3): the Key Binding JWT ===========================================

def test_7_3_1_key_binding_required(world: World) -> None:
    """7.3 step 1: Key Binding is required here, so an SD-JWT without a KB-JWT MUST reject."""
    bundle, _ = world.issue()
    kb = kb_over(bundle)
    refused(world.verify(envelope(bundle, kb[: kb.rindex("~") + 1])), "sd_jwt", "key binding")


def test_7_3_4a_cnf_required(world: World, forge: Forge) -> None:
    """7.3 step 4.1 / SD-JWT VC 3.2.2.2: no ``cnf`` means no holder key: MUST reject."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    del payload["cnf"]
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "cnf")


@pytest.mark.parametrize("alg", ["none", "HS256", "ES256"])
def test_7_3_4b_kb_alg(world: World, alg: str) -> None:
    """7.3 step 4.2: the KB-JWT's algorithm MUST be secure and ``none`` MUST NOT be accepted;
    ``ES256`` on an Ed25519 holder key does not fit the key."""
    bundle, _ = world.issue()
    kb = kb_over(bundle, header={"alg": alg, "typ": "kb+jwt"})
    refused(world.verify(envelope(bundle, kb)), "sd_jwt", "alg")


def test_7_3_4c_kb_signed_by_another_holder_key(world: World) -> None:
    """7.3 step 4.3 (confusion): a KB-JWT signed by another holder's key MUST reject."""
    bundle, _ = world.issue()
    thief = PrivateKey(hashlib.sha256(b"thief").digest())
    refused(world.verify(envelope(bundle, kb_over(bundle, holder=thief))), "sd_jwt",
            "holder key")


@pytest.mark.parametrize("typ", ["JWT", "dc+sd-jwt", None, "kb+jwt+x", "application/jwt",
                                 "text/kb+jwt", 1])
def test_7_3_4d_kb_typ(world: World, typ: str | None) -> None:
    """7.3 step 4.4 / 4.3: the KB-JWT ``typ`` MUST be ``kb+jwt``."""
    bundle, _ = world.issue()
    header = {"alg": "EdDSA"} if typ is None else {"alg": "EdDSA", "typ": typ}
    refused(world.verify(envelope(bundle, kb_over(bundle, header=header))), "sd_jwt", "typ")


@pytest.mark.parametrize("typ", ["kb+jwt", "application/kb+jwt", "KB+JWT"])
def test_7_3_4d_kb_typ_is_a_media_type(world: World, typ: str) -> None:
    """RFC 7515 section 4.1.9: ``typ`` is a media type, compared without regard to case, with
    ``application/`` implied where it is left out (as the issuer JWT's ``typ`` is read)."""
    bundle, _ = world.issue()
    verified(world.verify(envelope(bundle, kb_over(bundle, header={"alg": "EdDSA",
                                                                      "typ": typ}))))


@pytest.mark.parametrize(("iat_offset", "ok"), [
    (-KB_AGE, True), (-KB_AGE - 1, False), (SKEW, True), (SKEW + 1, False)])
def test_7_3_4e_kb_iat_window(world: World, iat_offset: int, ok: bool) -> None:
    """7.3 step 4.5: the KB-JWT creation time MUST be in the acceptable window: at most 300 s
    old, at most 60 s in the future."""
    bundle, _ = world.issue()
    report = world.verify(envelope(bundle, kb_over(bundle, iat=NOW + iat_offset)), now=NOW)
    verified(report) if ok else refused(report, "sd_jwt", "iat")


def test_7_3_4f_nonce_must_match(world: World) -> None:
    """7.3 step 4.6: the ``nonce`` MUST be the verifier's (a replay from another request)."""
    bundle, _ = world.issue()
    refused(world.verify(envelope(bundle, kb_over(bundle, nonce="n-other"))), "sd_jwt", "nonce")


def test_7_3_4f_audience_a_shown_to_b(world: World) -> None:
    """7.3 step 4.6 (malicious verifier): a presentation made for verifier A, forwarded by A to
    verifier B, MUST be rejected by B."""
    bundle, _ = world.issue()
    for_a = present(bundle, Request("n-shared", "https://a.example", "degree", REQ.claims))
    verified(world.verify(for_a, Request("n-shared", "https://a.example", "degree",
                                         REQ.claims)))
    refused(world.verify(for_a, Request("n-shared", "https://b.example", "degree", REQ.claims)),
            "sd_jwt", "aud")


def test_7_3_4g_sd_hash_must_match(world: World) -> None:
    """7.3 step 4.7: ``sd_hash`` MUST be the digest of the presented SD-JWT: a holder who drops
    a disclosure after signing is caught."""
    bundle, _ = world.issue()
    kb = kb_over(bundle)
    parts = kb.split("~")
    dropped = "~".join([parts[0], *parts[2:]])
    refused(world.verify(envelope(bundle, dropped)), "sd_jwt", "sd_hash")


@pytest.mark.parametrize("missing", ["nonce", "aud", "iat", "sd_hash"])
def test_4_3_kb_required_claims(world: World, missing: str) -> None:
    """4.3: ``nonce``, ``aud``, ``iat`` and ``sd_hash`` are REQUIRED in the KB-JWT."""
    bundle, _ = world.issue()
    jwt, *rest = kb_over(bundle).split("~")
    presented = "~".join([jwt, *rest[:-1]]) + "~"
    payload = {"nonce": REQ.nonce, "aud": REQ.audience, "iat": NOW, "sd_hash": digest(presented)}
    del payload[missing]
    kb = presented + sign_jws({"alg": "EdDSA", "typ": "kb+jwt"}, payload, HOLDER)
    refused(world.verify(envelope(bundle, kb)), "sd_jwt", missing)


@pytest.mark.parametrize(("claim", "offset", "ok"), [
    ("exp", SKEW + 1, True), ("exp", -SKEW, False), ("nbf", SKEW, True), ("nbf", SKEW + 1, False)])
def test_7_3_4h_kb_is_a_valid_jwt_in_all_other_respects(world: World, claim: str, offset: int,
                                                       ok: bool) -> None:
    """7.3 step 4.8: the KB-JWT MUST be a valid JWT in all other respects (RFC 7519): an
    ``exp`` that passed or an ``nbf`` in the future rejects it."""
    bundle, _ = world.issue()
    report = world.verify(envelope(bundle, kb_over(bundle, extra={claim: NOW + offset})))
    verified(report) if ok else refused(report, "sd_jwt", claim)


def test_7_3_4h_kb_crit_header(world: World) -> None:
    """RFC 7515 4.1.11 via 7.3 step 4.8: an unknown ``crit`` extension MUST reject."""
    bundle, _ = world.issue()
    kb = kb_over(bundle, header={"alg": "EdDSA", "typ": "kb+jwt", "crit": ["x"], "x": 1})
    refused(world.verify(envelope(bundle, kb)), "sd_jwt", "crit")


# == SD-JWT VC ====================================================================================

@pytest.mark.parametrize("typ", ["JWT", "sd-jwt", "dc+jwt", None, "example+sd-jwt",
                                 "application/example+sd-jwt"])
def test_vc_typ_must_be_dc_sd_jwt(world: World, forge: Forge, typ: str | None) -> None:
    """SD-JWT VC 3.2.1: the ``typ`` header MUST be ``dc+sd-jwt`` (``vc+sd-jwt`` transitional).
    Another ``+sd-jwt`` type is an SD-JWT of another application (RFC 9901 section 9.11),
    whose rules let ``iss``, ``exp``, ``cnf`` or ``status`` be selectively disclosable: it is
    no credential of the network however its payload reads."""
    ds = forge.honest_disclosures()
    header = {"alg": "EdDSA"} if typ is None else {"alg": "EdDSA", "typ": typ}
    bundle = forge.issue(forge.payload(disclosures=ds), ds, header=header)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "typ")


@pytest.mark.parametrize("vct", [None, 7, ["degree"]])
def test_vc_vct_required_string(world: World, forge: Forge, vct: Any) -> None:
    """SD-JWT VC 3.2.2.1: ``vct`` is REQUIRED and MUST be a string."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    if vct is None:
        del payload["vct"]
    else:
        payload["vct"] = vct
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "vct")


def test_vc_vct_must_be_the_requested_and_anchored_type(world: World, forge: Forge) -> None:
    """``vct`` is case-sensitive and must equal both the anchor's type and the request's."""
    ds = forge.honest_disclosures()
    bundle = forge.issue({**forge.payload(disclosures=ds), "vct": "Degree"}, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", "type")


@pytest.mark.parametrize("claim", ["iss", "nbf", "exp", "cnf", "vct", "status"])
def test_vc_claims_that_must_not_be_disclosable(world: World, forge: Forge, claim: str) -> None:
    """SD-JWT VC 3.2.2.2: iss, nbf, exp, cnf, vct, vct#integrity and status MUST NOT be
    selectively disclosed: one hidden in a Disclosure rejects the credential."""
    payload = forge.payload(disclosures=[])
    hidden = disclosure(claim, payload.pop(claim), b"h" * 16)
    ds = [*forge.honest_disclosures(), hidden]
    payload["_sd"] = sorted(digest(d) for d in ds)
    bundle = forge.issue(payload, ds)
    presented = "~".join([bundle.sd_jwt.split("~")[0], *ds]) + "~"
    refused(world.verify(envelope(bundle, kb_jwt(presented))), "sd_jwt",
            "vct" if claim == "vct" else "selectively")  # a VC without a plain vct fails first


def test_vc_issuer_key_must_be_validated_by_a_permitted_mechanism(world: World) -> None:
    """SD-JWT VC 3.5: the key MUST be validated as the issuer's by a permitted mechanism (here
    the registry at issuance time): a key never registered cannot anchor, so a self-made
    credential with a made-up key is refused before its signature is even looked at."""
    rogue = PrivateKey(hashlib.sha256(b"rogue-issuer").digest())
    with pytest.raises(Exception, match="valid issuer key"):
        world.issue(key=rogue)
    # the issuing helper's own check is the issuer's, not the ledger's: an anchor signed by the
    # made-up key and sent to the ledger anyway is refused there, and nothing is anchored
    head = world.ledger.store.head
    anchor = issue_tx("demo", world.agencies["edu"], hashlib.sha256(b"rogue-cred").digest(),
                      "degree", 7, T0 + 10, T0 + 30 * DAY, T0 + 10, key=rogue)
    r = world.ledger.commit([anchor], T0 + 10)
    assert r.accepted == [] and [e.code for _, e in r.rejected] == ["unknown_key"]
    assert world.ledger.store.head == head


def test_vc_status_is_checked(world: World) -> None:
    """SD-JWT VC 3.5: ``status`` present SHOULD be checked; we always do (revoked refuses)."""
    from ledger.network import status_tx

    bundle, cid = world.issue()
    world.ledger.commit([status_tx("demo", world.agencies["edu"], cid, "revoked", "x",
                                   T0 + 12)], T0 + 12)
    report = world.verify(present(bundle))
    assert report.status == "revoked"
    refused(report, "status")


# == confusions ==================================================================================

def test_disclosure_moved_between_credentials(world: World) -> None:
    """A holder moves a disclosure from credential A into a presentation of credential B (same
    issuer, same holder, same claim name): B's JWT does not reference it."""
    a, _ = world.issue(now=T0 + 10)
    b, _ = world.issue(now=T0 + 11)
    a_ds = {json.loads(unb64(d))[1]: d for d in a.sd_jwt.split("~")[1:-1]}
    jwt, *b_ds = b.sd_jwt.split("~")[:-1]
    swapped = [a_ds["degree_level"] if json.loads(unb64(d))[1] == "degree_level" else d
               for d in b_ds if json.loads(unb64(d))[1] in REQ.claims]
    refused(world.verify(envelope(b, kb_jwt("~".join([jwt, *swapped]) + "~"))), "sd_jwt",
            "not referenced")


@pytest.mark.parametrize("uri", [status_list_uri("demo", "reg", "degree"),
                                 status_list_uri("demo", "edu", "residence"),
                                 status_list_uri("other-net", "edu", "degree"),
                                 "https://lists.example/edu"])
def test_status_index_pointing_at_another_list(world: World, forge: Forge, uri: str) -> None:
    """A credential whose status points into another issuer's, type's or network's list (where
    its entry could say "valid" forever) is refused: the list must be its issuer's for its
    type."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    payload["status"]["status_list"]["uri"] = uri
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", "status list")


def test_status_index_differs_from_the_anchor(world: World, forge: Forge) -> None:
    """The signed status index must be the one the ledger anchored (and can revoke)."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds, idx=7), ds, anchor_index=8)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "requested_claims", "index")


@pytest.mark.parametrize("status", [{"status_list": []}, {"status_list": "x"}, [], "x", None,
                                    {"status_list": {"idx": "100", "uri": 5}}])
def test_malformed_status_claim_is_refused_not_a_crash(world: World, forge: Forge,
                                                       status: Any) -> None:
    """A (compromised) issuer key signs a status claim of the wrong shape: the verifier refuses
    it with a report; it never raises."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    if status is None:
        del payload["status"]
    else:
        payload["status"] = status
    bundle = forge.issue(payload, ds)
    report = world.verify(envelope(bundle, kb_over(bundle)))
    refused(report, "requested_claims", "status")


def test_es256_holder_key_offered_as_eddsa(world: World, forge: Forge) -> None:
    """An ES256 (P-256) holder key in ``cnf`` with a KB-JWT that says ``alg: EdDSA``: the
    algorithm does not fit the key and is refused (no cross-algorithm confusion)."""
    p256 = ec.generate_private_key(ec.SECP256R1())
    ds = forge.honest_disclosures()
    payload = {**forge.payload(disclosures=ds), "cnf": {"jwk": sdjwt.jwk_from_ec(p256)}}
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "alg")
    # the same presentation made honestly with ES256 verifies (so the refusal is about alg)
    honest = sdjwt.present(bundle.sd_jwt, disclose=REQ.claims, holder_key=p256, nonce=REQ.nonce,
                           aud=REQ.audience, iat=NOW, alg="ES256")
    verified(world.verify(envelope(bundle, honest)))


def test_eddsa_issuer_key_offered_as_es256(world: World, forge: Forge) -> None:
    """The issuer's Ed25519 key with ``alg: ES256`` in the header is refused."""
    ds = forge.honest_disclosures()
    bundle = forge.issue(forge.payload(disclosures=ds), ds,
                         header={"alg": "ES256", "typ": "dc+sd-jwt"})
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "alg")


@pytest.mark.parametrize("jwk_alg", [["EdDSA"], {"alg": "EdDSA"}, 7])
def test_holder_jwk_alg_that_is_not_a_string_is_refused_not_a_crash(
        world: World, forge: Forge, jwk_alg: Any) -> None:
    """An issuer key signs a ``cnf.jwk`` whose ``alg`` member is an array or object (RFC 7517
    section 4.4: a string): the verifier refuses it with a report; it never raises (a list
    or object cannot be looked up as an algorithm name)."""
    ds = forge.honest_disclosures()
    payload = forge.payload(disclosures=ds)
    payload["cnf"]["jwk"]["alg"] = jwk_alg
    bundle = forge.issue(payload, ds)
    refused(world.verify(envelope(bundle, kb_over(bundle))), "sd_jwt", "alg", "string")


def test_ec_jwk_claiming_an_ed25519_curve() -> None:
    """A JWK that mixes families (kty EC, crv Ed25519) is not a key."""
    with pytest.raises(sdjwt.JwkError):
        sdjwt.public_key_from_jwk({"kty": "EC", "crv": "Ed25519", "x": b64(b"\x01" * 32)})
    with pytest.raises(sdjwt.JwkError):
        sdjwt.public_key_from_jwk({"kty": "OKP", "crv": "P-256", "x": b64(b"\x01" * 32),
                                   "y": b64(b"\x01" * 32)})


def test_replayed_presentation_to_the_same_verifier(world: World) -> None:
    """A presentation answered once is refused the second time (``nonce_fresh``)."""
    from ledger.presentation import verify_envelope

    bundle, _ = world.issue()
    env = present(bundle)
    used: set[str] = set()
    lists = world.lists()
    first = verify_envelope(env, REQ, registry=world.ledger.registry, now=NOW,
                            status_lists=lists, used_nonces=used)
    verified(first)
    again = verify_envelope(env, REQ, registry=world.ledger.registry, now=NOW,
                            status_lists=lists, used_nonces=used)
    refused(again, "nonce_fresh", "replay")
