"""Credentials from issuers outside the network: SD-JWT VCs checked against a trust list.

DESIGN.md: the verifier "accepts ES256 as well as EdDSA, so credentials from other issuers verify
too". An issuer outside the network (another district, a national register, a university abroad)
has no anchor on our ledger and no key in our registry, so a verifying official decides whom to
trust: a **trust list**, a JSON file the official keeps (ADR 39)::

    {"issuers": [
      {"iss": "https://registry.example.gov",         # the credential's ``iss``, exactly
       "name": "National Register",                    # shown in reports
       "keys": [{"kty": "EC", "crv": "P-256", "x": "…", "y": "…", "kid": "2026-1"}],
       "status": "required",                           # or "optional"; default "required"
       "types": ["degree-abroad"]}                     # optional: the only vcts trusted from it
    ]}

A key is a public JWK, Ed25519 (``OKP``) or P-256 (``EC``); a ``kid`` in the JWT header picks
the key of that ``kid``. :func:`verify_foreign` checks a presentation (an SD-JWT+KB, the text a
wallet shows, with no ledger evidence) in named steps, like the envelope check of
:mod:`ledger.presentation`, and never raises for bad input:

* ``presentation``: size and shape;
* ``trusted_issuer``: its ``iss`` is on the trust list (and its header ``kid``, if any, is one of
  that issuer's keys);
* ``sd_jwt``: RFC 9901 §7 in full through :mod:`ledger.sdjwt` (issuer signature under a trusted
  key, disclosures, validity window, key binding to the request's nonce and audience);
* ``requested_claims``: its ``vct`` is the requested type, one the trust list trusts its issuer
  for (``types``, when listed), and every requested claim is disclosed; only requested claims
  are shown;
* ``status``: the Status List Token the official holds for the credential's list URI, verified
  under the same issuer's keys (EdDSA or ES256). No token: *undetermined*. No status claim: valid
  only where the trust list says the issuer's credentials carry none (``"status": "optional"``),
  because a holder could withhold a status the issuer made selectively disclosable.

The ledger is not consulted: nothing of a foreign credential is on it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, MutableSet
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ledger import codec, sdjwt
from ledger.codec import Fields
from ledger.errors import DecodeError, LedgerError
from ledger.presentation import (
    PLAIN_CLAIMS,
    Check,
    Report,
    Request,
    asked_claims,
    spend_nonce,
)
from ledger.statuslist import (
    StatusList,
    StatusListError,
    check_status,
    unverified_list,
    verify_token,
)

__all__ = ["MAX_PRESENTATION", "MAX_TRUST_LIST", "ForeignCredential", "TrustList", "TrustedIssuer",
           "all_withholdable", "read_status_tokens", "read_trust_list", "receive_foreign",
           "tokens_by_uri", "verify_foreign"]

_T = TypeVar("_T")

MAX_TRUST_LIST = 1024 * 1024
"""Largest trust list file accepted, in bytes."""
MAX_PRESENTATION = sdjwt.MAX_SIZE
"""Largest foreign presentation accepted, in characters."""
_MAX_ISSUERS = 1000
MAX_ISS = 256
"""Longest ``iss`` on a trust list: what a wallet keeps as a credential's issuer."""
_MAX_KEYS = 16
_MAX_TYPES = 64
MAX_VCT = 200
"""Longest credential type (``vct``) of a foreign credential."""
_JWK_MEMBERS = frozenset({"kty", "crv", "x", "y", "kid", "alg", "use", "key_ops"})
"""The members of a trusted key that are read; others (``ext``, ``x5c``, ``x5t#S256``) are
ignored, as RFC 7517 section 4 asks: WebCrypto and other tools export them (ADR 54)."""
_PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
"""Members only a private (or secret) key has: refused, so a key pasted by mistake is said."""
NO_EXPIRY = 253_402_300_799
"""``valid_until`` of a foreign credential without ``exp`` (9999-12-31T23:59:59Z)."""


@dataclass(frozen=True)
class TrustedIssuer:
    """One issuer outside the network that the official trusts, with its public keys."""

    iss: str
    name: str
    keys: tuple[tuple[dict[str, Any], sdjwt.VerifyKey], ...]
    status_required: bool = True
    types: frozenset[str] | None = None
    """The credential types (``vct``) the official trusts this issuer for; None: any type
    (a node still refuses this path for a type registered on its own network)."""

    def keys_for(self, kid: object) -> list[tuple[dict[str, Any], sdjwt.VerifyKey]]:
        """The keys a JWT or token with header ``kid`` may be signed with: the key of that kid,
        else the issuer's keys listed without a kid; every key when the header names none."""
        if kid is None:
            return list(self.keys)
        return [k for k in self.keys if k[0].get("kid") == kid] or \
            [k for k in self.keys if "kid" not in k[0]]


@dataclass(frozen=True)
class TrustList:
    """The issuers outside the network an official trusts, by ``iss``."""

    issuers: Mapping[str, TrustedIssuer]

    @classmethod
    def from_json(cls, unverified: Any) -> TrustList:
        """Parse a trust list (see the module's docstring); DecodeError names what is wrong."""
        if not isinstance(unverified, dict) or set(unverified) != {"issuers"}:
            raise DecodeError('a trust list is {"issuers": [...]}', "trust")
        items = unverified["issuers"]
        if not isinstance(items, list) or not items:
            raise DecodeError("must be a non-empty list of issuers", "trust.issuers")
        if len(items) > _MAX_ISSUERS:
            raise DecodeError(f"at most {_MAX_ISSUERS} issuers", "trust.issuers")
        out: dict[str, TrustedIssuer] = {}
        owners: dict[tuple[str, ...], str] = {}  # each listed key → the issuer it is listed for
        for i, item in enumerate(items):
            issuer = _issuer(item, f"trust.issuers[{i}]")
            if issuer.iss in out:
                raise DecodeError(f"issuer {issuer.iss!r} is listed twice",
                                  f"trust.issuers[{i}].iss")
            for _, key in issuer.keys:
                other = owners.setdefault(_key_id(key), issuer.iss)
                if other != issuer.iss:
                    raise DecodeError(f"a key of {issuer.iss!r} is also listed for "
                                      f"{other!r}: either could then sign as the other",
                                      f"trust.issuers[{i}].keys")
            out[issuer.iss] = issuer
        return cls(out)


def _key_id(key: sdjwt.VerifyKey) -> tuple[str, ...]:
    """A listed key as read (its public members in their one canonical spelling): equal for
    the same key, to compare keys listed under different issuers. Not the listed JWK's own
    members: an Ed25519 JWK's ``y`` is not read, so a listing with one named the same key."""
    jwk = sdjwt.jwk_of(key)
    return tuple(jwk.get(m, "") for m in ("kty", "crv", "x", "y"))


def _text(value: object, where: str, limit: int = 1024) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise DecodeError(f"must be a non-empty printable string of at most {limit} characters",
                          where)
    return value


def _issuer(item: object, where: str) -> TrustedIssuer:
    if not isinstance(item, dict):
        raise DecodeError("an issuer is a JSON object", where)
    unknown = set(item) - {"iss", "name", "keys", "status", "types"}
    if unknown:
        raise DecodeError(f"unknown member(s) {sorted(unknown)}", where)
    for member in ("iss", "name", "keys"):
        if member not in item:
            raise DecodeError(f"missing {member!r}", where)
    iss = _text(item["iss"], f"{where}.iss", MAX_ISS)
    types: frozenset[str] | None = None
    if "types" in item:
        listed = item["types"]
        if not isinstance(listed, list) or not 0 < len(listed) <= _MAX_TYPES:
            raise DecodeError(f"must be a list of 1 to {_MAX_TYPES} credential types (vct)",
                              f"{where}.types")
        types = frozenset(_text(t, f"{where}.types[{n}]", MAX_VCT)
                          for n, t in enumerate(listed))
    name = _text(item["name"], f"{where}.name", 200)
    status = item.get("status", "required")
    if status not in ("required", "optional"):
        raise DecodeError("must be 'required' or 'optional'", f"{where}.status")
    jwks = item["keys"]
    if not isinstance(jwks, list) or not jwks or len(jwks) > _MAX_KEYS:
        raise DecodeError(f"must be a list of 1 to {_MAX_KEYS} public JWKs", f"{where}.keys")
    keys: list[tuple[dict[str, Any], sdjwt.VerifyKey]] = []
    for k, listed_jwk in enumerate(jwks):
        at = f"{where}.keys[{k}]"
        if not isinstance(listed_jwk, dict):
            raise DecodeError("a key is a JWK object", at)
        private = sorted(_PRIVATE_JWK_MEMBERS.intersection(listed_jwk))
        if private:
            raise DecodeError(f"this is a private or secret key ({', '.join(map(repr, private))})"
                              "; list the issuer's public key only", at)
        jwk = {m: v for m, v in listed_jwk.items() if m in _JWK_MEMBERS}
        if "kid" in jwk:
            _text(jwk["kid"], f"{at}.kid", 200)
        try:
            key = sdjwt.public_key_from_jwk(jwk)
        except sdjwt.JwkError as e:
            raise DecodeError(str(e), at) from e
        if jwk.get("alg") not in (None, *sdjwt.jws_algs(key)):
            raise DecodeError(f"alg {jwk.get('alg')!r} does not fit this key (it signs "
                              f"{sdjwt.jws_alg(key)!r})", at)
        keys.append((dict(jwk), key))
    kids = [jwk["kid"] for jwk, _ in keys if "kid" in jwk]
    if len(set(kids)) != len(kids):
        raise DecodeError("two keys have the same kid", f"{where}.keys")
    return TrustedIssuer(iss, name, tuple(keys), status == "required", types)


def _vc_typ(parsed: sdjwt.UnverifiedSdJwt) -> None:
    """DecodeError unless the issuer-signed JWT says it is an SD-JWT VC (``dc+sd-jwt``, or the
    older ``vc+sd-jwt``). Only then do the SD-JWT VC rules hold that this path relies on: a plain
    ``vct``, and ``iss``, ``exp``, ``cnf`` and ``status`` never selectively disclosable. RFC
    9901 lets other applications use other ``+sd-jwt`` types, with other rules."""
    typ = parsed.header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") not in (
            "dc+sd-jwt", "vc+sd-jwt"):
        raise DecodeError(f"the issuer-signed JWT's typ is {str(typ)[:40]!r}: a credential from "
                          "outside the network must be an SD-JWT VC ('dc+sd-jwt')",
                          "credential.typ")


def _issues_type(issuer: TrustedIssuer, vct: str) -> None:
    """LedgerError unless the trust list trusts ``issuer`` for credentials of type ``vct``."""
    if issuer.types is not None and vct not in issuer.types:
        raise LedgerError(f"the trust list does not trust {issuer.name!r} for {vct[:80]!r} "
                          f"credentials (only {sorted(issuer.types)})")


def verify_foreign(presentation: str, request: Request, *, trust: TrustList, now: int,
                   status_tokens: Mapping[str, str] | None = None,
                   used_nonces: MutableSet[str] | None = None) -> Report:
    """Check a foreign SD-JWT+KB against ``request`` and ``trust``; never raises for bad input.

    ``status_tokens`` maps a status list URI to the Status List Token the official holds for it
    (fetched by whatever means; verified here under the issuer's trusted keys).
    """
    report = Report()
    add = report.checks.append
    if not spend_nonce(report, request, used_nonces):
        return report
    step = "presentation"
    try:
        if not isinstance(presentation, str):
            raise DecodeError("a presentation is text (an SD-JWT+KB)", "presentation")
        parsed = sdjwt.parse(presentation)
        if parsed.kb_jwt is None:
            raise DecodeError("it has no key-binding JWT: this is a credential, not a "
                              "presentation made for a request", "presentation")
        _vc_typ(parsed)
        add(Check("presentation", True, f"{len(presentation)} characters, "
                                        f"{len(parsed.disclosures)} disclosures"))
        step = "trusted_issuer"
        issuer, candidates = _trusted_keys(parsed, trust)
        add(Check("trusted_issuer", True, f"{issuer.name} ({issuer.iss})"))
        step = "sd_jwt"
        claims = _under_a_trusted_key(candidates, lambda jwk: sdjwt.verify_presentation(
            presentation, issuer_public_jwk=jwk, expected_nonce=request.nonce,
            expected_audience=request.audience, now=now, vc_only=True))
        add(Check("sd_jwt", True, "issuer signature, disclosures, validity, key binding"))
        step = "requested_claims"
        if claims.get("vct") != request.credential_type:
            raise LedgerError(f"credential type {str(claims.get('vct'))[:80]!r} is not the "
                              f"requested {request.credential_type!r}")
        _issues_type(issuer, request.credential_type)
        missing = [c for c in request.claims if c not in claims]
        if missing:
            raise LedgerError(f"requested claims not disclosed: {missing}")
        shown, detail = asked_claims(claims, request)
        add(Check("requested_claims", True, detail))
    except LedgerError as e:  # every failure names its step; no exception escapes
        add(Check(step, False, str(e)))
        return report
    if "status" not in claims:
        if issuer.status_required:
            add(Check("status", False, "the credential has no status claim, and the trust list "
                                       f"expects one from {issuer.name!r}"))
        else:
            report.status = "valid"
            add(Check("status", True, f"no status claim; the trust list says {issuer.name!r} "
                                      f"issues credentials without one"))
    else:
        result = check_status(claims["status"], _token_lists(issuer, status_tokens or {}, now))
        report.status = result.status
        add(Check("status", result.status == "valid", result.reason or result.status))
    report.claims = shown
    return report


def _trusted_keys(parsed: sdjwt.UnverifiedSdJwt, trust: TrustList
                  ) -> tuple[TrustedIssuer, list[tuple[dict[str, Any], sdjwt.VerifyKey]]]:
    """The trusted issuer its (unverified) ``iss`` names and the keys its header ``kid``
    allows; LedgerError if the issuer is not on the list or has no such key."""
    iss = parsed.payload.get("iss")
    issuer = trust.issuers.get(iss) if isinstance(iss, str) else None
    if issuer is None:
        shown = repr(iss[:80]) if isinstance(iss, str) else "missing"
        raise LedgerError(f"the issuer {shown} is not on the trust list")
    kid = parsed.header.get("kid")
    candidates = issuer.keys_for(kid)
    if not candidates:
        raise LedgerError(f"{issuer.name!r} has no key with kid {str(kid)[:40]!r} on the "
                          f"trust list")
    return issuer, candidates


def _under_a_trusted_key(candidates: list[tuple[dict[str, Any], sdjwt.VerifyKey]],
                         check: Callable[[dict[str, Any]], _T]) -> _T:
    """``check(public JWK)`` with the first candidate key the issuer signature verifies
    under; the error of the last key if none does."""
    last: sdjwt.VerificationError | None = None
    for jwk, _ in candidates:
        public = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "alg")}
        try:
            return check(public)
        except (sdjwt.SignatureInvalid, sdjwt.AlgorithmError) as e:
            last = e  # another of the issuer's keys may have signed it
    if last is None:  # candidates is never empty here
        raise LedgerError("no key to check the issuer signature with")
    if len(candidates) > 1:
        raise LedgerError(f"{last} (tried {len(candidates)} trusted keys of this issuer)")
    raise last


def _token_lists(issuer: TrustedIssuer, tokens: Mapping[str, str],
                 now: int) -> Callable[[str], StatusList | None]:
    def get(uri: str) -> StatusList | None:
        token = tokens.get(uri)
        if token is None:
            return None
        try:
            kid = sdjwt.parse_jws_header(token).get("kid")
        except sdjwt.VerificationError as e:
            raise StatusListError(f"the Status List Token for {uri} is malformed: {e}") from e
        last: StatusListError | None = None
        for _, key in issuer.keys_for(kid):
            try:
                return verify_token(token, public_key=key, expected_sub=uri, now=now)
            except StatusListError as e:
                last = e
        raise last or StatusListError(f"no trusted key of {issuer.name!r} has kid "
                                      f"{str(kid)[:40]!r}")
    return get


@dataclass(frozen=True)
class ForeignCredential:
    """A holder's credential from an issuer outside the network: the SD-JWT with all its
    disclosures and no ledger evidence (what a wallet keeps; canonical msgpack)."""

    sd_jwt: str

    def to_bytes(self) -> bytes:
        return codec.encode({"v": 1, "kind": "foreign", "sd_jwt": self.sd_jwt})

    @classmethod
    def from_bytes(cls, unverified: bytes) -> ForeignCredential:
        f = Fields(codec.decode(unverified, max_size=MAX_PRESENTATION * 2, what="foreign "
                                "credential"), "foreign")
        f.version(1, "foreign credential")
        f.str("kind", choices=frozenset({"foreign"}))
        out = cls(f.str("sd_jwt", max_len=MAX_PRESENTATION))
        f.done()
        return out


@dataclass(frozen=True)
class ReceivedForeign:
    """A foreign credential a holder checked on receipt, with what a wallet lists (no claims)."""

    credential: ForeignCredential
    credential_id: bytes
    type: str
    issuer: str
    valid_from: int
    valid_until: int


def receive_foreign(unverified: str, *, trust: TrustList, holder_jwk: Mapping[str, Any],
                    now: int) -> ReceivedForeign:
    """Check a foreign SD-JWT VC a holder was given: its issuer is on ``trust`` and signed it,
    its disclosures and validity hold at ``now``, it is bound to ``holder_jwk`` and has a
    ``vct``. Raises LedgerError naming what failed."""
    if not isinstance(unverified, str):
        raise DecodeError("a credential is text (an SD-JWT)", "credential")
    parsed = sdjwt.parse(unverified)
    if parsed.kb_jwt is not None:
        raise DecodeError("this is a presentation (it ends in a key-binding JWT), not a "
                          "credential", "credential")
    _vc_typ(parsed)
    issuer, candidates = _trusted_keys(parsed, trust)
    claims = _under_a_trusted_key(candidates, lambda jwk: sdjwt.verify_issuer_signed(
        unverified, issuer_public_jwk=jwk, now=now, expected_holder_jwk=holder_jwk,
        vc_only=True))
    vct = claims.get("vct")
    if not isinstance(vct, str) or not vct.isprintable() or not 0 < len(vct) <= MAX_VCT:
        raise DecodeError(f"an SD-JWT VC needs a printable vct of at most {MAX_VCT} "
                          "characters", "credential.vct")
    _issues_type(issuer, vct)
    all_withholdable(parsed)
    if issuer.status_required and "status" not in claims:
        raise LedgerError(f"the credential has no status claim, and the trust list expects one "
                          f"from {issuer.name!r}: no verifier would accept it")
    start = next((claims[k] for k in ("nbf", "iat") if claims.get(k) is not None), 0)
    end = claims["exp"] if claims.get("exp") is not None else NO_EXPIRY
    return ReceivedForeign(ForeignCredential(unverified),
                           hashlib.sha256(parsed.issuer_jwt.encode("ascii")).digest(),
                           vct, issuer.iss, max(0, int(start)),
                           max(0, int(min(end, NO_EXPIRY))))


def all_withholdable(parsed: sdjwt.UnverifiedSdJwt) -> None:
    """LedgerError unless every claim of the credential is a top-level selectively disclosable
    one: a wallet's preview names each claim it discloses or withholds (ADR 10), so a claim in
    the clear (shown to every verifier) or one nested in a disclosed object (shown with it)
    would go out unannounced. The wallet holds a bundle of the network to the same rule."""
    clear = sorted(k for k in parsed.payload
                   if k not in PLAIN_CLAIMS and k not in ("_sd", "_sd_alg"))
    if clear:
        raise LedgerError(f"the credential shows {clear} to every verifier (not selectively "
                          "disclosable); this wallet keeps only credentials whose claims it can "
                          "withhold")
    for item in sdjwt.disclosure_values(parsed.disclosures):  # checked by the signature step
        if len(item) != 3 or _has_disclosures(item[2]):
            raise LedgerError("the credential has claims nested inside others (or disclosable "
                              "list elements); this wallet keeps only credentials whose "
                              "claims are each disclosed or withheld on their own")


def _has_disclosures(value: object) -> bool:
    if isinstance(value, dict):
        return "_sd" in value or any(_has_disclosures(v) for v in value.values())
    if isinstance(value, list):
        return any((isinstance(v, dict) and "..." in v) or _has_disclosures(v) for v in value)
    return False


def tokens_by_uri(tokens: list[str]) -> dict[str, str]:
    """Status List Tokens by the list URI each names (``sub``, read unverified: the check in
    :func:`verify_foreign` verifies it). DecodeError for a token that is not a JWT with a
    ``sub``, or two tokens for one list."""
    out: dict[str, str] = {}
    for i, token in enumerate(tokens):
        sub, _ = unverified_list(token, f"status token #{i + 1}")
        if sub in out:
            raise DecodeError(f"a second token for {sub[:80]!r}", f"status token #{i + 1}")
        out[sub] = token
    return out


def read_trust_list(path: Path) -> TrustList:
    """The trust list in the JSON file ``path``; LedgerError saying what is wrong with it."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_TRUST_LIST + 1)
    except OSError as e:
        raise LedgerError(f"cannot read the trust list {path}: {e.strerror or e}") from e
    if len(raw) > MAX_TRUST_LIST:
        raise LedgerError(f"the trust list {path} is over {MAX_TRUST_LIST} bytes")
    try:
        # strict: a member named twice would show a reader one value and the verifier another
        return TrustList.from_json(sdjwt.strict_json(raw, f"the trust list {path}"))
    except DecodeError as e:
        raise LedgerError(f"the trust list {path}: {e}") from e


def read_status_tokens(folder: Path, limit: int = 32 * 1024 * 1024) -> tuple[dict[str, str],
                                                                               list[str]]:
    """The Status List Tokens in ``folder``'s ``*.jwt`` files, by list URI, and a line for each
    file left out (unreadable, not a token, an older token for a list than another file's: the
    one issued last, by ``iat``, counts). A missing folder holds none. The tokens are verified
    only when a credential's status is checked (a forged newer one is then refused, and the
    status undetermined: whoever can write the folder can do that by deleting files too)."""
    out: dict[str, str] = {}
    found: dict[str, list[tuple[int, str, str]]] = {}  # uri -> (iat, file name, token)
    skipped: list[str] = []
    try:
        files = sorted(folder.glob("*.jwt"))
    except OSError as e:
        return {}, [f"{folder}: {e.strerror or e}"]
    for f in files:
        try:
            with f.open("rb") as fh:
                raw = fh.read(limit + 1)
            if len(raw) > limit:
                raise ValueError(f"over {limit} bytes")
            text = raw.decode("ascii").strip()
            uri, iat = unverified_list(text, "status token #1")
        except (OSError, ValueError, DecodeError) as e:
            skipped.append(f"{f.name}: {e}")
            continue
        found.setdefault(uri, []).append((iat, f.name, text))
    for uri, tokens in found.items():
        # the newest; of two issued in one second, the first file by name (max keeps the
        # first of equals, and files are read in name order)
        newest = max(tokens, key=lambda t: t[0])
        out[uri] = newest[2]
        skipped.extend(f"{name}: an older token for {uri[:80]!r} than {newest[1]}"
                       for _, name, _ in tokens if name != newest[1])
    return out, skipped
