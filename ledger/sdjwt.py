"""SD-JWT VCs (RFC 9901 + draft-ietf-oauth-sd-jwt-vc): issue, present (SD-JWT+KB) and verify.

Our own implementation on PyNaCl (EdDSA / Ed25519) and ``cryptography`` (ES256 / P-256). The
``sd-jwt`` package is only an interop peer in tests. Everything here is pure: time (``now``,
``iat``) and randomness (``rng``) are parameters; ``os.urandom`` is only the default at the public
edge.

Formats produced:

* issuer-signed JWT: header ``{"alg": "EdDSA"|"ES256", "typ": "dc+sd-jwt", "kid": ...}``, payload
  ``_sd`` (sorted digests, optional decoys), ``_sd_alg: sha-256``, ``vct``, ``iss``, ``iat``,
  ``nbf``, ``exp``, ``cnf.jwk`` and ``status``; every other top-level claim is a Disclosure
  ``[salt, name, value]`` with a 128-bit salt;
* SD-JWT ``<jwt>~<d1>~...~<dn>~``; SD-JWT+KB ``<jwt>~<di>~...~<kb-jwt>`` where the KB-JWT has
  ``typ: kb+jwt`` and claims ``nonce``, ``aud``, ``iat``, ``sd_hash``.

The verifier checks everything RFC 9901 section 7.1 and 7.3 require: ``alg`` allow-list (never
``none``, and the ``alg`` must fit the key type), the issuer signature, ``_sd_alg``, every
Disclosure's shape and that it is referenced exactly once, no digest twice, no claim overwritten,
recursive Disclosures, ``exp``/``nbf``/``iat`` with clock skew, and a Key Binding JWT signed by
``cnf.jwk`` with the expected ``nonce`` and ``aud``, a fresh ``iat`` and a matching ``sd_hash``.
Input is strict: unpadded canonical base64url, JSON without duplicate keys or non-finite numbers,
bounded size, disclosure count and nesting depth.

Exceptions (every one a :class:`ledger.errors.LedgerError`; ``check`` is a short stable name)::

    VerificationError                 "sd_jwt"      base of every rejection below
    ├── MalformedError                "malformed"   structure of the serialization / JWS / claims
    │   ├── SizeError                 "size"        over the size / disclosure-count / depth limit
    │   ├── EncodingError             "base64url"   not strict unpadded base64url, not ASCII
    │   ├── JsonError                 "json"        invalid JSON, duplicate key, NaN, bad UTF-8
    │   ├── HeaderError               "typ"         wrong ``typ``, or a ``crit`` header
    │   └── JwkError                  "jwk"         an unusable or unsupported JWK
    ├── AlgorithmError                "alg"         ``alg`` not allowed or not fitting the key
    │   └── DigestAlgorithmError      "sd_alg"      ``_sd_alg`` other than sha-256
    ├── SignatureInvalid              "signature"   issuer signature does not verify
    ├── ExpiredError                  "exp"
    ├── NotYetValidError              "nbf"
    │   └── IssuedInFutureError       "iat"
    ├── AudienceError                 "aud"         the Issuer-signed JWT's ``aud`` names
    │                                               another verifier
    ├── DisclosureError               "disclosure"  a Disclosure of the wrong shape / place
    │   ├── UnreferencedDisclosureError "disclosure_unreferenced"
    │   ├── DuplicateDisclosureError  "disclosure_duplicate"
    │   ├── DigestCollisionError      "digest_duplicate"  a digest twice in the payload
    │   └── ClaimConflictError        "disclosure_claim"  reserved name or overwriting a claim
    └── KeyBindingError               "kb"          KB-JWT malformed
        ├── KbMissingError            "kb_missing"
        ├── KbHeaderError             "kb_typ"
        ├── KbSignatureError          "kb_signature"   not signed by the holder key in cnf.jwk
        ├── KbNonceError              "kb_nonce"
        ├── KbAudienceError           "kb_aud"
        ├── KbIatError                "kb_iat"      too old or in the future
        ├── KbSdHashError             "kb_sd_hash"
        └── HolderKeyError            "cnf"         missing or unusable ``cnf.jwk``

Messages say what was expected and what was found; they never contain claim values.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ledger.errors import LedgerError, SignatureError
from ledger.keys import PrivateKey, PublicKey

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_ACCEPTED_ALGS",
    "MAX_DEPTH",
    "MAX_DISCLOSURES",
    "MAX_SIZE",
    "AlgorithmError",
    "AudienceError",
    "ClaimConflictError",
    "DigestAlgorithmError",
    "DigestCollisionError",
    "DisclosureError",
    "DuplicateDisclosureError",
    "EncodingError",
    "ExpiredError",
    "HeaderError",
    "HolderKeyError",
    "IssuedInFutureError",
    "IssuedSdJwt",
    "JsonError",
    "JwkError",
    "KbAudienceError",
    "KbHeaderError",
    "KbIatError",
    "KbMissingError",
    "KbNonceError",
    "KbSdHashError",
    "KbSignatureError",
    "KeyBindingError",
    "MalformedError",
    "MemberTwice",
    "NotYetValidError",
    "SignatureInvalid",
    "SigningKey",
    "SizeError",
    "UnreferencedDisclosureError",
    "UnverifiedSdJwt",
    "VerificationError",
    "VerifyKey",
    "disclosure_values",
    "issue_sd_jwt",
    "jwk_from_ec",
    "jwk_from_ed25519",
    "jwk_of",
    "jws_alg",
    "jws_algs",
    "jws_sign",
    "jws_verify",
    "members_once",
    "no_lone_surrogates",
    "parse",
    "parse_jws",
    "parse_jws_header",
    "parse_jws_payload",
    "present",
    "public_jwk",
    "public_key_from_jwk",
    "sign_jws",
    "strict_json",
    "verify_issuer_signed",
    "verify_presentation",
    "window_state",
]

# ----------------------------------------------------------------------------------------------
# Errors


class VerificationError(LedgerError):
    """An SD-JWT, SD-JWT+KB or one of its parts was rejected. ``check`` names the failed check."""

    check: ClassVar[str] = "sd_jwt"


class MalformedError(VerificationError):
    check = "malformed"


class SizeError(MalformedError):
    check = "size"


class EncodingError(MalformedError):
    check = "base64url"


class JsonError(MalformedError):
    check = "json"


class HeaderError(MalformedError):
    check = "typ"


class JwkError(MalformedError):
    check = "jwk"


class AlgorithmError(VerificationError):
    check = "alg"


class DigestAlgorithmError(AlgorithmError):
    check = "sd_alg"


class SignatureInvalid(VerificationError):
    check = "signature"


class ExpiredError(VerificationError):
    check = "exp"


class NotYetValidError(VerificationError):
    check = "nbf"


class IssuedInFutureError(NotYetValidError):
    check = "iat"


class AudienceError(VerificationError):
    check = "aud"


class DisclosureError(VerificationError):
    check = "disclosure"


class UnreferencedDisclosureError(DisclosureError):
    check = "disclosure_unreferenced"


class DuplicateDisclosureError(DisclosureError):
    check = "disclosure_duplicate"


class DigestCollisionError(DisclosureError):
    check = "digest_duplicate"


class ClaimConflictError(DisclosureError):
    check = "disclosure_claim"


class KeyBindingError(VerificationError):
    check = "kb"


class KbMissingError(KeyBindingError):
    check = "kb_missing"


class KbHeaderError(KeyBindingError):
    check = "kb_typ"


class KbSignatureError(KeyBindingError):
    check = "kb_signature"


class KbNonceError(KeyBindingError):
    check = "kb_nonce"


class KbAudienceError(KeyBindingError):
    check = "kb_aud"


class KbIatError(KeyBindingError):
    check = "kb_iat"


class KbSdHashError(KeyBindingError):
    check = "kb_sd_hash"


class HolderKeyError(KeyBindingError):
    check = "cnf"


# ----------------------------------------------------------------------------------------------
# Constants and types

MAX_SIZE: Final = 64 * 1024
"""Largest accepted SD-JWT / SD-JWT+KB serialization, in characters (all ASCII)."""
MAX_DISCLOSURES: Final = 100
MAX_DEPTH: Final = 32
"""Deepest nesting of objects/arrays walked while processing Disclosures."""

DEFAULT_ACCEPTED_ALGS: Final = ("EdDSA", "Ed25519", "ES256")
CLOCK_SKEW: Final = 60
"""Seconds a verifier's clock may differ from the issuer's or holder's (nbf, exp, iat)."""
SD_ALG: Final = "sha-256"
ISSUER_TYP: Final = "dc+sd-jwt"
KB_TYP: Final = "kb+jwt"
SALT_BYTES: Final = 16

_VC_TYPS: Final = frozenset({"dc+sd-jwt", "vc+sd-jwt"})
# SD-JWT VC: these claims MUST NOT be selectively disclosable.
_VC_PLAIN_CLAIMS: Final = frozenset({"iss", "nbf", "exp", "cnf", "vct", "vct#integrity", "status"})
# Claims the issuer sets itself; a caller's ``claims`` may not contain them.
_RESERVED_CLAIMS: Final = _VC_PLAIN_CLAIMS | {"iat", "_sd", "_sd_alg", "..."}
# alg -> key family; "Ed25519" is the fully specified name (RFC 9864) for the same algorithm.
_ALG_KTY: Final = {"EdDSA": "OKP", "Ed25519": "OKP", "ES256": "EC"}
# Names that mean one algorithm with our keys: an Ed25519 key's "EdDSA" is RFC 9864's "Ed25519".
_ALG_NAME: Final = {"Ed25519": "EdDSA"}

SigningKey = PrivateKey | ec.EllipticCurvePrivateKey
"""An issuer or holder signing key: Ed25519 (:class:`ledger.keys.PrivateKey`) or P-256."""
VerifyKey = PublicKey | ec.EllipticCurvePublicKey
"""A public key from a JWK: Ed25519 (:class:`ledger.keys.PublicKey`) or P-256."""

_B64URL_RE: Final = re.compile(r"[A-Za-z0-9_-]*")
_TO_STANDARD_B64: Final = bytes.maketrans(b"-_", b"+/")
_TO_URLSAFE_B64: Final = bytes.maketrans(b"+/", b"-_")
_ECDSA_SHA256: Final = ec.ECDSA(hashes.SHA256())
_JSON_WS: Final = " \t\n\r"
_B64_ALPHABET: Final = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_B64_VALUE: Final = {c: i for i, c in enumerate(_B64_ALPHABET)}
_MISSING: Final = object()


def _show(value: object, limit: int = 40) -> str:
    """A short repr of an untrusted protocol value (never used for claim values). A string is
    cut before it is quoted, so the quotes stay and no escape is cut in two: the desk's pages
    isolate a quoted string in ``<bdi>``, and a cut one (``'אאא…``) was not isolated."""
    text = repr(value)
    if len(text) <= limit:
        return text
    if isinstance(value, str):
        n = limit
        while len(text := repr(value[:n])) > limit - 1:
            n -= 1
        return text + "…"
    return text[: limit - 1] + "…"


def _kind(value: object) -> str:
    """The JSON type name of a value, for messages that must not show the value itself."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


# ----------------------------------------------------------------------------------------------
# base64url and JSON


def _b64e(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64d(text: object, what: str, err: type[VerificationError] = EncodingError) -> bytes:
    """Strict unpadded base64url: alphabet only, valid length, zero unused trailing bits."""
    if type(text) is not str or "+" in text or "/" in text or "=" in text:
        raise err(f"{what}: expected unpadded base64url ([A-Za-z0-9_-]), found another character "
                  f"or padding" if type(text) is str else f"{what}: expected a base64url string, "
                  f"found {_kind(text)}")
    rem = len(text) % 4
    if rem:
        if rem == 1:
            raise err(f"{what}: base64url length {len(text)} is impossible (length % 4 == 1)")
        if _B64_VALUE.get(text[-1], 0) & (0x0F if rem == 2 else 0x03):
            raise err(f"{what}: non-canonical base64url (unused trailing bits are not zero)")
        text += "==" if rem == 2 else "="
    try:
        # strict_mode rejects every character outside the (translated) alphabet, and non-ASCII.
        return binascii.a2b_base64(text.encode("ascii").translate(_TO_STANDARD_B64),
                                   strict_mode=True)
    except (binascii.Error, ValueError) as e:
        raise err(f"{what}: expected unpadded base64url, found characters outside "
                  f"[A-Za-z0-9_-]") from e


class MemberTwice(ValueError):
    """A JSON object names a member twice (:func:`members_once`)."""


def members_once(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members (``object_pairs_hook``), :class:`MemberTwice` if one is named
    twice: Python's reader keeps the last, another reader may take the first."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise MemberTwice(f"duplicate member name {_show(key)}")
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"non-finite number {name} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number with a fraction or exponent; one past a float's range (``1e400``) would
    be an infinity, which JSON has not: an ``exp`` that never comes, an ``nbf`` no integer
    holds."""
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number is too large for a float")  # its digits may be a claim
    return value


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=members_once, parse_constant=_reject_constant,
    parse_float=_finite_float
)
# The C scanner behind JSONDecoder.decode, minus its whitespace regex (the fast path of _json).
_SCAN_ONCE: Final[Callable[[str, int], tuple[Any, int]]] = (
    _DECODER.scan_once  # type: ignore[attr-defined]
)


def strict_json(raw: bytes, what: str) -> Any:
    """``raw`` as strict JSON: UTF-8, no member named twice in an object, no NaN or Infinity,
    bounded nesting; :class:`JsonError` (a LedgerError) naming ``what`` otherwise."""
    return _json(raw, what)


def strict_json_file(raw: bytes, what: str) -> Any:
    """:func:`strict_json` of a file a person saved: UTF-16 or -32 (PowerShell 5's ``>``
    writes UTF-16) as JSON's own detection tells them, and a UTF-8 byte-order mark (Notepad
    writes one) skipped; :class:`JsonError` otherwise."""
    encoding = json.detect_encoding(raw)
    if encoding not in ("utf-8", "utf-8-sig"):
        try:
            raw = raw.decode(encoding).encode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonError(f"{what}: it reads as {encoding.upper()}, but {e.reason} at byte "
                            f"{e.start}; save it as UTF-8") from e
    return _json(raw.removeprefix(b"\xef\xbb\xbf"), what)


def _json(raw: bytes, what: str, *, values: bool = False) -> Any:
    """``raw`` as strict JSON; ``values``: it holds claim values (a disclosure), so a repeated
    member name, which may be one inside a claim's value, is not quoted."""
    try:
        text = raw.decode("utf-8")
        if text[:1] in _JSON_WS or text[-1:] in _JSON_WS:  # also the empty text
            value = _DECODER.decode(text)
        else:
            value, end = _SCAN_ONCE(text, 0)
            if end != len(text):
                raise ValueError(f"extra data after the JSON value at offset {end}")
        if b"\\ud" in raw or b"\\uD" in raw:  # only an escape can name a surrogate
            no_lone_surrogates(value, what)
        return value
    except StopIteration as e:
        raise JsonError(f"{what}: invalid JSON (no value at offset {e.value})") from e
    except RecursionError as e:
        raise SizeError(f"{what}: JSON nested too deeply") from e
    except UnicodeDecodeError as e:
        raise JsonError(f"{what}: not UTF-8 at byte {e.start}") from e
    except MemberTwice as e:
        if values:  # nothing of it chained either: a traceback would show it
            raise JsonError(f"{what}: invalid JSON (a member name appears twice in one "
                            "object)") from None
        raise JsonError(f"{what}: invalid JSON ({e})") from e
    except ValueError as e:  # json.JSONDecodeError, duplicate keys, NaN, int digit limit
        raise JsonError(f"{what}: invalid JSON ({e})") from e


def no_lone_surrogates(value: Any, what: str) -> None:
    """:class:`JsonError` if a string or member name of a parsed JSON value holds a surrogate
    not in a pair (an escape such as ``\\ud800``): not Unicode text (RFC 8259 section 8.2,
    I-JSON: RFC 7493 section 2.1), and such a claim could not be shown or written as UTF-8."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as e:
        raise JsonError(f"{what}: a string holds a lone surrogate escape (\\u"
                        f"{ord(e.object[e.start]):04x}); JSON text must be Unicode") from e


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _digest(disclosure: str) -> str:
    """Base64url SHA-256 of a Disclosure (or SD-JWT prefix) as its ASCII text."""
    # 32 bytes encode to 43 base64 characters and one '=' of padding.
    digest = hashlib.sha256(disclosure.encode("ascii")).digest()
    return binascii.b2a_base64(digest, newline=False)[:43].translate(_TO_URLSAFE_B64).decode()


# ----------------------------------------------------------------------------------------------
# JWKs and keys


def jwk_from_ed25519(public_raw: bytes) -> dict[str, str]:
    """The OKP JWK (RFC 8037) of a raw 32-byte Ed25519 public key."""
    if not isinstance(public_raw, bytes) or len(public_raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return {"kty": "OKP", "crv": "Ed25519", "x": _b64e(public_raw)}


def jwk_from_ec(
    public_key: ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey,
) -> dict[str, str]:
    """The EC JWK (RFC 7518) of a P-256 public key (a private key gives its public half)."""
    if isinstance(public_key, ec.EllipticCurvePrivateKey):
        public_key = public_key.public_key()
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise ValueError(f"only P-256 keys are supported, not {public_key.curve.name}")
    numbers = public_key.public_numbers()
    return {
        "kty": "EC",
        "crv": "P-256",
        "x": _b64e(numbers.x.to_bytes(32, "big")),
        "y": _b64e(numbers.y.to_bytes(32, "big")),
    }


def _jwk_coordinate(text: object, name: str) -> bytes:
    raw = _b64d(text, f"JWK member {name!r}", JwkError)
    if len(raw) != 32:
        raise JwkError(f"JWK member {name!r} is {len(raw)} bytes, expected 32")
    return raw


@functools.lru_cache(maxsize=256)
def _key_from_members(kty: object, crv: object, x: object, y: object) -> VerifyKey:
    # A pure function of the JWK's (hashable, immutable) members returning an immutable key, so
    # sharing results between calls is safe. Errors raise and are never cached.
    if kty == "OKP":
        if crv != "Ed25519":
            raise JwkError("the OKP JWK's curve is not supported, expected 'Ed25519'")
        return PublicKey(_jwk_coordinate(x, "x"))
    if kty == "EC":
        if crv != "P-256":
            raise JwkError("the EC JWK's curve is not supported, expected 'P-256'")
        point = b"\x04" + _jwk_coordinate(x, "x") + _jwk_coordinate(y, "y")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        except ValueError as e:
            raise JwkError("EC JWK point is not on the P-256 curve") from e
    raise JwkError("the JWK's kty is not supported, expected 'OKP' or 'EC'")


def public_key_from_jwk(jwk: Mapping[str, Any]) -> VerifyKey:
    """Parse a public JWK: OKP/Ed25519 or EC/P-256, for checking signatures (``use`` and
    ``key_ops``, when present, must allow it). Raise :class:`JwkError` otherwise."""
    if type(jwk) is not dict and not isinstance(jwk, Mapping):
        raise JwkError(f"a JWK is a JSON object, found {_kind(jwk)}")
    if "d" in jwk:
        raise JwkError("the JWK has a private member 'd'; expected a public key")
    if "alg" in jwk and type(jwk["alg"]) is not str:  # RFC 7517 section 4.4: a string
        raise JwkError(f"JWK member 'alg' is a {_kind(jwk['alg'])}, expected a string")
    # RFC 7517 sections 4.2 and 4.3: a key marked for encryption, or for operations that do
    # not include checking signatures, is not used to check one (an issuer's key, cnf.jwk)
    if jwk.get("use", "sig") != "sig":
        raise JwkError("use is not 'sig': this key is not for signatures")
    ops = jwk.get("key_ops", ["verify"])
    if type(ops) is not list or "verify" not in ops:
        raise JwkError("key_ops does not include 'verify': this key is not for checking "
                       "signatures")
    members = (jwk.get("kty"), jwk.get("crv"), jwk.get("x"), jwk.get("y"))
    if not all(m is None or type(m) is str for m in members):
        raise JwkError("JWK members kty, crv, x and y must be strings")
    return _key_from_members(*members)


def public_jwk(jwk: Mapping[str, Any]) -> dict[str, str]:
    """Validated public members only, in their one spelling (what goes into ``cnf.jwk``):
    equal for two JWKs of the same key, whatever other members they carry (``alg``, an
    Ed25519 key's ``y``, which is not read). :class:`JwkError` for a JWK that is no key."""
    return jwk_of(public_key_from_jwk(jwk))


def jwk_of(key: VerifyKey) -> dict[str, str]:
    """A public key's JWK in its one spelling (:func:`jwk_from_ed25519`, :func:`jwk_from_ec`)."""
    if isinstance(key, PublicKey):
        return jwk_from_ed25519(key.raw)
    return jwk_from_ec(key)


def _key_kty(key: VerifyKey | SigningKey) -> str:
    return "OKP" if isinstance(key, PublicKey | PrivateKey) else "EC"


# ----------------------------------------------------------------------------------------------
# JWS (compact) signing and verification


def _sign(key: SigningKey, alg: str, data: bytes) -> bytes:
    if isinstance(key, PrivateKey):
        if _ALG_KTY.get(alg) != "OKP":
            raise ValueError(f"an Ed25519 key signs with alg 'EdDSA', not {alg!r}")
        return key.sign_raw(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        if alg != "ES256":
            raise ValueError(f"a P-256 key signs with alg 'ES256', not {alg!r}")
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"ES256 needs a P-256 key, not {key.curve.name}")
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
        return r.to_bytes(32, "big") + s.to_bytes(32, "big")
    raise TypeError(f"unsupported signing key type {type(key).__name__}")


def _sign_jws(header: Mapping[str, Any], payload: Mapping[str, Any], key: SigningKey,
              alg: str) -> str:
    signing_input = f"{_b64e(_dumps(header))}.{_b64e(_dumps(payload))}"
    return f"{signing_input}.{_b64e(_sign(key, alg, signing_input.encode('ascii')))}"


def _verify_signature(key: VerifyKey, data: bytes, signature: bytes) -> bool:
    if len(signature) != 64:
        return False
    if isinstance(key, PublicKey):
        try:
            key.verify_raw(data, signature)
        except SignatureError:
            return False
        return True
    der = encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        key.verify(der, data, _ECDSA_SHA256)
    except InvalidSignature:
        return False
    return True


def jws_algs(key: VerifyKey | SigningKey) -> tuple[str, ...]:
    """Every JWS ``alg`` name a key's signatures may carry: ``EdDSA`` and its fully specified
    name ``Ed25519`` (RFC 9864) for an Ed25519 key, ``ES256`` for P-256."""
    alg = jws_alg(key)
    return (alg, "Ed25519") if alg == "EdDSA" else (alg,)


def jws_alg(key: VerifyKey | SigningKey) -> str:
    """The JWS ``alg`` a key signs with: ``EdDSA`` for Ed25519, ``ES256`` for P-256 (ValueError
    for any other curve)."""
    if isinstance(key, PublicKey | PrivateKey):
        return "EdDSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey) \
            and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"no JWS alg for a {type(key).__name__} key (Ed25519 or P-256 only)")


def jws_sign(key: SigningKey, data: bytes) -> bytes:
    """The JWS signature of ``data`` (the signing input) with ``key``, under :func:`jws_alg`:
    64 bytes, R || S for ES256."""
    return _sign(key, jws_alg(key), data)


def sign_jws(header: Mapping[str, Any], payload: Mapping[str, Any], key: SigningKey) -> str:
    """A compact JWS of ``payload`` signed by ``key``: ``header`` with its ``alg`` (:func:`jws_alg`)
    added."""
    alg = jws_alg(key)
    return _sign_jws({**header, "alg": alg}, payload, key, alg)


def jws_verify(key: VerifyKey, data: bytes, signature: bytes) -> bool:
    """Whether ``signature`` is ``key``'s JWS signature over ``data`` (alg :func:`jws_alg`)."""
    jws_alg(key)
    return _verify_signature(key, data, signature)


class _Jws(NamedTuple):
    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def _parse_jws(token: str, what: str) -> _Jws:
    parts = token.split(".")
    if len(parts) != 3:
        raise MalformedError(f"{what}: expected 3 '.'-separated parts, found {len(parts)}")
    header = _json(_b64d(parts[0], f"{what} header"), f"{what} header")
    payload = _json(_b64d(parts[1], f"{what} payload"), f"{what} payload")
    signature = _b64d(parts[2], f"{what} signature")
    if type(header) is not dict:
        raise MalformedError(f"{what}: header is a JSON {_kind(header)}, expected an object")
    if type(payload) is not dict:
        raise MalformedError(f"{what}: payload is a JSON {_kind(payload)}, expected an object")
    if "crit" in header:
        raise HeaderError(f"{what}: header has 'crit'; no critical extensions are understood")
    return _Jws(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), signature)


def parse_jws(token: str, what: str = "JWS"
              ) -> tuple[dict[str, Any], dict[str, Any], bytes, bytes]:
    """A compact JWS strictly decoded, NOT verified: its header, its payload, its signing input
    and its signature (for :func:`jws_verify`)."""
    if type(token) is not str:
        raise MalformedError(f"a compact JWS is a str, found {type(token).__name__}")
    header, payload, signing_input, signature = _parse_jws(token, what)
    return header, payload, signing_input, signature


def parse_jws_payload(token: str, what: str = "JWS") -> Any:
    """The strictly decoded payload of a compact JWS, NOT verified (a key-binding JWT's nonce
    and aud, read to tell an answer to another request before any check)."""
    if type(token) is not str:
        raise MalformedError(f"a compact JWS is a str, found {type(token).__name__}")
    return _parse_jws(token, what).payload


def parse_jws_header(token: str) -> dict[str, Any]:
    """The strictly decoded header of a compact JWS, NOT verified (to pick the key by ``kid``)."""
    if type(token) is not str:
        raise MalformedError(f"a compact JWS is a str, found {type(token).__name__}")
    head, sep, _ = token.partition(".")
    if not sep or len(head) > 4096:
        raise MalformedError("not a compact JWS (a header of at most 4096 characters, then '.')")
    header = _json(_b64d(head, "JWS header"), "JWS header")
    if type(header) is not dict:
        raise MalformedError(f"JWS header is a JSON {_kind(header)}, expected an object")
    return header


def _check_alg(alg: object, accepted: tuple[str, ...], key: VerifyKey, jwk: Mapping[str, Any],
               what: str) -> None:
    # ``key`` is public_key_from_jwk(jwk): so the JWK's alg, if any, is a string
    if not isinstance(alg, str):
        raise AlgorithmError(f"{what}: header 'alg' is a {_kind(alg)}, expected a string")
    if alg not in accepted or alg not in _ALG_KTY:
        allowed = sorted(a for a in accepted if a in _ALG_KTY)
        raise AlgorithmError(f"{what}: alg {_show(alg)} is not accepted (accepted: {allowed})")
    kty = _key_kty(key)
    if _ALG_KTY[alg] != kty:
        raise AlgorithmError(f"{what}: alg {alg!r} does not fit the {kty} key "
                             f"(expected {'ES256' if kty == 'EC' else 'EdDSA'})")
    jwk_alg = jwk.get("alg")
    if jwk_alg is not None and _ALG_NAME.get(jwk_alg, jwk_alg) != _ALG_NAME.get(alg, alg):
        raise AlgorithmError(f"{what}: alg {alg!r} differs from the key's JWK alg {_show(jwk_alg)}")


# ----------------------------------------------------------------------------------------------
# Serialization


def _split(serialized: str) -> tuple[str, list[str], str]:
    """``<jwt>~<d1>~...~<dn>~<kb or empty>`` into its parts (no decoding yet)."""
    if type(serialized) is not str:
        raise MalformedError(f"expected the compact serialization as str, found "
                             f"{type(serialized).__name__}")
    if len(serialized) > MAX_SIZE:
        raise SizeError(f"serialization is {len(serialized)} characters, limit {MAX_SIZE}")
    if not serialized.isascii():
        raise EncodingError("serialization contains non-ASCII characters")
    parts = serialized.split("~")
    if len(parts) < 2:
        raise MalformedError("no '~' separator: expected <issuer-jwt>~<disclosure>~...~[<kb-jwt>]")
    disclosures = parts[1:-1]
    if len(disclosures) > MAX_DISCLOSURES:
        raise SizeError(f"{len(disclosures)} disclosures, limit {MAX_DISCLOSURES}")
    for i, d in enumerate(disclosures):
        if not d:
            raise MalformedError(f"disclosure #{i} is empty ('~~')")
    if parts[-1] and "." not in parts[-1]:  # a JWS has two dots; a Disclosure has none
        raise MalformedError("the text after the last '~' is not a Key Binding JWT (it has no "
                             "'.'): an SD-JWT ends in '~' (is its last '~' missing?)")
    return parts[0], disclosures, parts[-1]


@dataclass(frozen=True, slots=True)
class UnverifiedSdJwt:
    """The parts of an SD-JWT / SD-JWT+KB, decoded but NOT verified: nothing here is trusted."""

    issuer_jwt: str
    header: dict[str, Any]
    payload: dict[str, Any]
    disclosures: tuple[str, ...]
    kb_jwt: str | None


def parse(unverified: str) -> UnverifiedSdJwt:
    """Split and decode (strictly) without verifying anything. For holders and tooling."""
    jwt, disclosures, kb = _split(unverified)
    jws = _parse_jws(jwt, "issuer-signed JWT")
    return UnverifiedSdJwt(jwt, jws.header, jws.payload, tuple(disclosures), kb or None)


@dataclass(frozen=True, slots=True)
class IssuedSdJwt:
    """An issued SD-JWT VC: the issuer-signed JWT and all its Disclosures."""

    issuer_jwt: str
    disclosures: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.issuer_jwt, str) or self.issuer_jwt.count(".") != 2 \
                or "~" in self.issuer_jwt or not self.issuer_jwt.isascii():
            raise ValueError("issuer_jwt must be a compact JWS")
        if not isinstance(self.disclosures, tuple) or not all(
                isinstance(d, str) and d and _B64URL_RE.fullmatch(d) for d in self.disclosures):
            raise ValueError("disclosures must be a tuple of non-empty base64url strings")

    def serialize(self) -> str:
        """``<issuer-jwt>~<d1>~...~<dn>~``."""
        return "~".join((self.issuer_jwt, *self.disclosures)) + "~"

    @property
    def credential_id(self) -> bytes:
        """SHA-256 of the ASCII issuer-signed JWT (what the ledger anchors)."""
        return hashlib.sha256(self.issuer_jwt.encode("ascii")).digest()


# ----------------------------------------------------------------------------------------------
# Issuance


def _check_claim_value(value: Any, where: str, depth: int = 1) -> None:
    """Plain JSON only, and nothing the verifier would read as SD-JWT structure."""
    if isinstance(value, dict | list | tuple) and depth > MAX_DEPTH:
        raise ValueError(f"claim {where} nests deeper than {MAX_DEPTH}")
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"claim {where} has a non-string member name")
            if k == "_sd":
                raise ValueError(f"claim {where} contains the reserved member name '_sd'")
            _check_claim_value(v, f"{where}.{k}", depth + 1)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            if isinstance(v, dict) and len(v) == 1 and "..." in v:
                raise ValueError(f"claim {where}[{i}] looks like an array-element digest")
            _check_claim_value(v, f"{where}[{i}]", depth + 1)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"claim {where} is a non-finite number")
    elif not (value is None or isinstance(value, str | int)):
        raise ValueError(f"claim {where} has non-JSON type {type(value).__name__}")


def _numeric_date(value: object, name: str) -> int:
    if type(value) is not int:
        raise ValueError(f"{name} must be an int (seconds since the epoch)")
    return value


def _salt(rng: Callable[[int], bytes]) -> bytes:
    salt = rng(SALT_BYTES)
    if not isinstance(salt, bytes) or len(salt) != SALT_BYTES:
        raise ValueError(f"rng({SALT_BYTES}) must return {SALT_BYTES} bytes")
    return salt


def issue_sd_jwt(
    *,
    issuer_key: SigningKey,
    issuer_kid: str,
    claims: Mapping[str, Any],
    holder_jwk: Mapping[str, Any],
    vct: str,
    iss: str,
    iat: int,
    nbf: int,
    exp: int,
    status: Mapping[str, Any] | None,
    decoys: int = 0,
    rng: Callable[[int], bytes] = os.urandom,
    alg: str = "EdDSA",
) -> IssuedSdJwt:
    """Issue an SD-JWT VC in which every claim of ``claims`` is selectively disclosable.

    ``vct``, ``iss``, ``iat``, ``nbf``, ``exp``, ``cnf`` and ``status`` are always visible.
    Raises ``ValueError``/``TypeError`` for unusable arguments (a caller's mistake).
    """
    if not isinstance(issuer_kid, str) or not issuer_kid:
        raise ValueError("issuer_kid must be a non-empty string")
    for name, text in (("vct", vct), ("iss", iss)):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name} must be a non-empty string")
    iat, nbf, exp = (_numeric_date(iat, "iat"), _numeric_date(nbf, "nbf"),
                     _numeric_date(exp, "exp"))
    if not exp > nbf or not exp > iat:
        raise ValueError("exp must be after nbf and iat")
    if type(decoys) is not int or not 0 <= decoys <= MAX_DISCLOSURES:
        raise ValueError(f"decoys must be an int in 0..{MAX_DISCLOSURES}")
    if len(claims) + decoys > MAX_DISCLOSURES:
        raise ValueError(f"more than {MAX_DISCLOSURES} claims and decoys")
    if status is not None:
        _check_claim_value(dict(status), "status")
    for name, value in claims.items():
        if not isinstance(name, str) or name in _RESERVED_CLAIMS:
            raise ValueError(f"claim name {_show(name)} is reserved or not a string")
        _check_claim_value(value, name)
    holder = public_jwk(holder_jwk)

    disclosures: list[str] = []
    digests: list[str] = []
    for name, value in claims.items():
        disclosure = _b64e(_dumps([_b64e(_salt(rng)), name, value]))
        disclosures.append(disclosure)
        digests.append(_digest(disclosure))
    # RFC 9901 section 4.2.5: a decoy is the digest of a random value, here a random salt.
    digests.extend(_digest(_b64e(_salt(rng))) for _ in range(decoys))
    digests.sort()

    payload: dict[str, Any] = {}
    if digests:
        payload["_sd"] = digests
    payload.update({"_sd_alg": SD_ALG, "vct": vct, "iss": iss, "iat": iat, "nbf": nbf,
                    "exp": exp, "cnf": {"jwk": holder}})
    if status is not None:
        payload["status"] = dict(status)
    header = {"alg": alg, "typ": ISSUER_TYP, "kid": issuer_kid}
    return IssuedSdJwt(_sign_jws(header, payload, issuer_key, alg), tuple(disclosures))


# ----------------------------------------------------------------------------------------------
# Presentation (holder)


def _referenced_digests(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise SizeError(f"claims nest deeper than {MAX_DEPTH}")
    if type(value) is dict:
        sd = value.get("_sd")
        if type(sd) is list:
            out.extend(d for d in sd if type(d) is str)
        for k, v in value.items():
            if k != "_sd":
                _referenced_digests(v, out, depth + 1)
    elif type(value) is list:
        for el in value:
            if type(el) is dict and len(el) == 1 and type(el.get("...")) is str:
                out.append(el["..."])
            else:
                _referenced_digests(el, out, depth + 1)


def present(
    sd_jwt: str,
    *,
    disclose: Iterable[str],
    holder_key: SigningKey,
    nonce: str,
    aud: str,
    iat: int,
    alg: str = "EdDSA",
) -> str:
    """Make an SD-JWT+KB disclosing the named top-level claims (and everything nested in them).

    ``sd_jwt`` is the holder's own credential (``<jwt>~<d1>~...~``). Raises ``ValueError`` for a
    claim name the credential does not have, and :class:`VerificationError` if it is malformed.
    """
    if isinstance(disclose, str):
        raise TypeError("disclose is an iterable of claim names, not one string")
    wanted = set(disclose)
    for name, text in (("nonce", nonce), ("aud", aud)):
        if not isinstance(text, str) or not text:
            raise ValueError(f"{name} must be a non-empty string")
    _numeric_date(iat, "iat")
    if _ALG_KTY.get(alg) != _key_kty(holder_key):
        raise ValueError(f"alg {alg!r} does not fit the holder key")
    unverified = parse(sd_jwt)
    if unverified.kb_jwt is not None:
        raise ValueError("expected an SD-JWT ending in '~', found one with a Key Binding JWT")

    by_digest: dict[str, tuple[int, Any]] = {}
    for i, d in enumerate(unverified.disclosures):
        by_digest[_digest(d)] = (i, _json(_b64d(d, f"disclosure #{i}"), f"disclosure #{i}",
                                          values=True))

    chosen: set[int] = set()

    def take(digest: str) -> None:
        entry = by_digest.get(digest)
        if entry is None or entry[0] in chosen:
            return
        chosen.add(entry[0])
        nested: list[str] = []
        if type(entry[1]) is list and entry[1]:
            _referenced_digests(entry[1][-1], nested)
        for n in nested:
            take(n)

    top_level: list[str] = []
    sd = unverified.payload.get("_sd", [])
    found: set[str] = {k for k in unverified.payload if k not in ("_sd", "_sd_alg")}
    for digest in sd if type(sd) is list else []:
        entry = by_digest.get(digest) if type(digest) is str else None
        if entry is None or type(entry[1]) is not list or len(entry[1]) != 3:
            continue
        name = entry[1][1]
        if type(name) is str:
            found.add(name)
        if name in wanted:
            top_level.append(digest)
    missing = wanted - found
    if missing:
        raise ValueError(f"the credential has no claim named {sorted(missing)}")
    # a plain claim asked for brings its selectively disclosable members too (its own value
    # holds their digests): as a disclosed claim brings what is nested in it
    for name in wanted.intersection(unverified.payload).difference(("_sd", "_sd_alg")):
        _referenced_digests(unverified.payload[name], top_level)
    for digest in top_level:
        take(digest)

    prefix = "~".join([unverified.issuer_jwt,
                       *(d for i, d in enumerate(unverified.disclosures) if i in chosen)]) + "~"
    kb_payload = {"nonce": nonce, "aud": aud, "iat": iat, "sd_hash": _digest(prefix)}
    return prefix + _sign_jws({"alg": alg, "typ": KB_TYP}, kb_payload, holder_key, alg)


# ----------------------------------------------------------------------------------------------
# Verification


class _Unpacker:
    """RFC 9901 section 7.1 step 3: replace digests by disclosed claims, in place.

    Works on freshly parsed JSON owned by one verification call; every Disclosure value is
    inserted at most once (a digest may appear only once), so nothing is shared or copied.
    """

    __slots__ = ("by_digest", "seen", "used")

    def __init__(self, by_digest: dict[str, list[Any]]) -> None:
        self.by_digest = by_digest
        self.seen: set[str] = set()
        self.used = 0

    def _claim(self, digest: object, where: str) -> list[Any] | None:
        if type(digest) is not str:
            raise MalformedError(f"{where}: a digest is a {_kind(digest)}, expected a string")
        if digest in self.seen:
            raise DigestCollisionError(f"{where}: digest {digest[:16]}… appears more than once")
        self.seen.add(digest)
        disclosure = self.by_digest.get(digest)
        if disclosure is not None:
            self.used += 1
        return disclosure

    def unpack(self, node: Any, depth: int, where: str) -> Any:
        if depth > MAX_DEPTH:
            raise SizeError(f"{where}: nesting deeper than {MAX_DEPTH}")
        if type(node) is dict:
            sd = node.pop("_sd", _MISSING)
            for key, value in node.items():
                if type(value) is dict or type(value) is list:
                    node[key] = self.unpack(value, depth + 1, f"{where}.{key}")
            if sd is _MISSING:
                return node
            if type(sd) is not list:
                raise MalformedError(f"{where}._sd is a {_kind(sd)}, expected an array")
            for digest in sd:
                disclosure = self._claim(digest, f"{where}._sd")
                if disclosure is None:
                    continue  # a decoy, or a claim not disclosed
                if len(disclosure) != 3:
                    raise DisclosureError(f"{where}._sd: an array-element Disclosure "
                                          f"(2 elements) is referenced as an object property")
                name, value = disclosure[1], disclosure[2]
                if type(name) is not str:
                    raise DisclosureError(f"{where}: Disclosure claim name is a {_kind(name)}, "
                                          f"expected a string")
                if name in ("_sd", "..."):
                    raise ClaimConflictError(f"{where}: Disclosure uses the reserved claim "
                                             f"name {name!r}")
                if name in node:
                    raise ClaimConflictError(f"{where}: Disclosure for {_show(name)} would "
                                             f"overwrite an existing claim")
                if type(value) is dict or type(value) is list:
                    value = self.unpack(value, depth + 1, f"{where}.{name}")
                node[name] = value
            return node
        if type(node) is list:
            out: list[Any] = []
            for i, element in enumerate(node):
                item = element
                if type(item) is dict and len(item) == 1 and "..." in item:
                    disclosure = self._claim(item["..."], f"{where}[{i}]")
                    if disclosure is None:
                        continue
                    if len(disclosure) != 2:
                        raise DisclosureError(f"{where}[{i}]: an object-property Disclosure "
                                              f"(3 elements) is referenced as an array element")
                    item = disclosure[1]
                if type(item) is dict or type(item) is list:
                    item = self.unpack(item, depth + 1, f"{where}[{i}]")
                out.append(item)
            return out
        return node


def disclosure_values(disclosures: Iterable[str]) -> list[list[Any]]:
    """Each disclosure decoded (``[salt, name, value]``, or ``[salt, value]`` for an array
    element), strictly; :class:`DisclosureError` (or an encoding error) for a bad one."""
    return list(_decode_disclosures(list(disclosures))[0].values())


def _decode_disclosures(disclosures: list[str]) -> tuple[dict[str, list[Any]], list[str]]:
    by_digest: dict[str, list[Any]] = {}
    digests: list[str] = []
    for i, text in enumerate(disclosures):
        digest = _digest(text)
        if digest in by_digest:
            raise DuplicateDisclosureError(f"disclosure #{i} repeats an earlier disclosure "
                                           f"(digest {digest[:16]}…)")
        value = _json(_b64d(text, f"disclosure #{i}"), f"disclosure #{i}", values=True)
        if type(value) is not list or len(value) not in (2, 3):
            shape = f"array of {len(value)}" if type(value) is list else _kind(value)
            raise DisclosureError(f"disclosure #{i} is a JSON {shape}, expected an array of "
                                  f"3 (object property) or 2 (array element)")
        if type(value[0]) is not str:
            raise DisclosureError(f"disclosure #{i}: salt is a {_kind(value[0])}, "
                                  f"expected a string")
        by_digest[digest] = value
        digests.append(digest)
    return by_digest, digests


def _number(claims: Mapping[str, Any], name: str) -> int | float | None:
    value = claims.get(name)
    if value is None:
        return None
    if type(value) is not int and type(value) is not float:
        raise MalformedError(f"claim {name!r} is a {_kind(value)}, expected a NumericDate")
    return value


def window_state(nbf: float | None, exp: float | None, now: int,
                 skew: int = CLOCK_SKEW) -> str:
    """``"expired"``, ``"not yet valid"`` or ``"valid"``: what a verifier at ``now`` allowing
    ``skew`` seconds of clock difference says of the validity window ``nbf`` to ``exp`` (either
    may be None, no bound). The one rule :func:`verify_presentation` and
    :func:`verify_issuer_signed` apply, and the wallet's ``list`` and ``present`` say."""
    if exp is not None and now >= exp + skew:
        return "expired"
    if nbf is not None and nbf > now + skew:
        return "not yet valid"
    return "valid"


def _check_times(claims: Mapping[str, Any], now: int, skew: int) -> None:
    exp = _number(claims, "exp")
    nbf = _number(claims, "nbf")
    state = window_state(nbf, exp, now, skew)
    if state == "expired":
        raise ExpiredError(f"expired: exp {exp} is not after now {now} (skew {skew}s)")
    if state == "not yet valid":
        raise NotYetValidError(f"not yet valid: nbf {nbf} is after now {now} (skew {skew}s)")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + skew:
        raise IssuedInFutureError(f"iat {iat} is in the future: now {now} (skew {skew}s)")


def _check_params(now: int, clock_skew: int, accepted_algs: Iterable[str]) -> tuple[str, ...]:
    if type(now) is not int or type(clock_skew) is not int or clock_skew < 0:
        raise ValueError("now and clock_skew must be ints, clock_skew >= 0")
    return tuple(accepted_algs)


def _verify_sd_jwt(jwt: str, disclosures: list[str], issuer_public_jwk: Mapping[str, Any],
                   now: int, clock_skew: int, accepted: tuple[str, ...],
                   vc_only: bool) -> dict[str, Any]:
    """RFC 9901 section 7.1: issuer signature, Disclosures, validity. Returns processed claims."""
    key = public_key_from_jwk(issuer_public_jwk)
    jws = _parse_jws(jwt, "issuer-signed JWT")
    header, payload = jws.header, jws.payload
    _check_alg(header.get("alg"), accepted, key, issuer_public_jwk, "issuer-signed JWT")
    typ = header.get("typ")
    if not isinstance(typ, str) or not typ.lower().removeprefix("application/").endswith("+sd-jwt"):
        raise HeaderError(f"issuer-signed JWT typ is {_show(typ)}, expected 'dc+sd-jwt' "
                          f"(or another '+sd-jwt' type)")
    is_vc = typ.lower().removeprefix("application/") in _VC_TYPS
    if vc_only and not is_vc:
        # RFC 9901 section 9.11: another '+sd-jwt' type is another application's SD-JWT, under
        # whose rules iss, exp, cnf or status may be selectively disclosable
        raise HeaderError(f"issuer-signed JWT typ is {_show(typ)}, expected 'dc+sd-jwt' (or "
                          f"'vc+sd-jwt'): an SD-JWT VC")
    if not _verify_signature(key, jws.signing_input, jws.signature):
        raise SignatureInvalid("issuer-signed JWT signature does not verify under the issuer key")

    # kept in the payload while the Disclosures are inserted (a Disclosure named _sd_alg
    # beside it is a claim that already exists, 7.1 step 3.c.ii.3), removed after (3.f)
    sd_alg = payload.get("_sd_alg", SD_ALG)
    if sd_alg != SD_ALG:
        raise DigestAlgorithmError(f"_sd_alg is {_show(sd_alg)}, expected {SD_ALG!r}")
    plain = frozenset(payload) if is_vc else frozenset()
    if is_vc and type(payload.get("vct")) is not str:
        raise MalformedError(f"SD-JWT VC: 'vct' is {_kind(payload.get('vct'))}, expected a "
                             f"string in the issuer-signed JWT")

    by_digest, digests = _decode_disclosures(disclosures)
    unpacker = _Unpacker(by_digest)
    claims: dict[str, Any] = unpacker.unpack(payload, 0, "$")
    claims.pop("_sd_alg", None)  # 7.1 step 3.f: the issuer's, or one a Disclosure inserted
    if unpacker.used != len(by_digest):
        for i, digest in enumerate(digests):
            if digest not in unpacker.seen:
                raise UnreferencedDisclosureError(
                    f"disclosure #{i} (digest {digest[:16]}…) is not referenced by the "
                    f"issuer-signed JWT")
    if is_vc:
        disclosed = (_VC_PLAIN_CLAIMS & claims.keys()) - plain
        if disclosed:
            raise ClaimConflictError(f"SD-JWT VC: {sorted(disclosed)} must not be selectively "
                                     f"disclosable")
    _check_times(claims, now, clock_skew)
    return claims


def _check_audience(claims: Mapping[str, Any], expected: str) -> None:
    """RFC 9901 section 7.1 step 6 and RFC 7519 section 4.1.3: an ``aud`` in the processed
    payload (a string, or an array of strings) must name this verifier."""
    if "aud" not in claims:
        return
    aud = claims["aud"]
    if aud == expected or (type(aud) is list and expected in aud):
        return
    raise AudienceError(f"the issuer-signed JWT's aud ({_kind(aud)}) does not name this "
                        f"verifier {_show(expected)}: the credential is for another audience")


def _holder_jwk(claims: Mapping[str, Any]) -> dict[str, Any]:
    cnf = claims.get("cnf")
    if type(cnf) is not dict or type(cnf.get("jwk")) is not dict:
        raise HolderKeyError("key binding is required but the credential has no cnf.jwk object")
    jwk: dict[str, Any] = cnf["jwk"]
    return jwk


def verify_issuer_signed(
    sd_jwt: str,
    *,
    issuer_public_jwk: Mapping[str, Any],
    now: int,
    clock_skew: int = CLOCK_SKEW,
    accepted_algs: Iterable[str] = DEFAULT_ACCEPTED_ALGS,
    expected_holder_jwk: Mapping[str, Any] | None = None,
    vc_only: bool = False,
) -> dict[str, Any]:
    """Verify an SD-JWT without Key Binding (a wallet checking a credential it just received).

    Returns the processed claims. With ``expected_holder_jwk``, also checks that ``cnf.jwk`` is
    that key (same public key; other JWK members are ignored). With ``vc_only``, the ``typ``
    must be an SD-JWT VC's (``dc+sd-jwt``, or the older ``vc+sd-jwt``), not just any
    ``+sd-jwt`` type: what a credential's verifier wants (SD-JWT VC section 3.2.1).
    """
    accepted = _check_params(now, clock_skew, accepted_algs)
    jwt, disclosures, kb = _split(sd_jwt)
    if kb:
        raise MalformedError("expected an SD-JWT ending in '~', found a Key Binding JWT after it")
    claims = _verify_sd_jwt(jwt, disclosures, issuer_public_jwk, now, clock_skew, accepted,
                            vc_only)
    if expected_holder_jwk is not None:
        try:
            holder = public_jwk(_holder_jwk(claims))
        except JwkError as e:
            raise HolderKeyError(f"cnf.jwk is not a usable key: {e}") from e
        if holder != public_jwk(expected_holder_jwk):
            raise HolderKeyError("cnf.jwk is not the expected holder key")
    return claims


def verify_presentation(
    sd_jwt_kb: str,
    *,
    issuer_public_jwk: dict[str, Any],
    expected_nonce: str,
    expected_audience: str,
    now: int,
    kb_max_age: int = 300,
    clock_skew: int = CLOCK_SKEW,
    accepted_algs: Iterable[str] = DEFAULT_ACCEPTED_ALGS,
    vc_only: bool = False,
) -> dict[str, Any]:
    """Verify an SD-JWT+KB (RFC 9901 sections 7.1 and 7.3); return the processed claims.

    Key Binding is required. An ``aud`` in the processed payload (the issuer's) must be, or
    list, ``expected_audience``, as the KB-JWT's ``aud`` must be it (RFC 9901 section 7.1 step
    6). The KB-JWT ``iat`` must be within ``kb_max_age`` seconds before
    ``now`` and at most ``clock_skew`` seconds after it. With ``vc_only``, the issuer-signed
    JWT must be an SD-JWT VC (:func:`verify_issuer_signed`). Raises a
    :class:`VerificationError`.
    """
    accepted = _check_params(now, clock_skew, accepted_algs)
    if type(kb_max_age) is not int or kb_max_age < 0:
        raise ValueError("kb_max_age must be an int >= 0")
    jwt, disclosures, kb = _split(sd_jwt_kb)
    if not kb:
        raise KbMissingError("key binding is required: the presentation ends with '~' and has "
                             "no KB-JWT")
    claims = _verify_sd_jwt(jwt, disclosures, issuer_public_jwk, now, clock_skew, accepted,
                            vc_only)
    _check_audience(claims, expected_audience)

    # RFC 9901 section 7.3, step 5: the Key Binding JWT.
    jwk = _holder_jwk(claims)
    try:
        holder_key = public_key_from_jwk(jwk)
    except JwkError as e:
        raise HolderKeyError(f"cnf.jwk is not a usable key: {e}") from e
    jws = _parse_jws(kb, "KB-JWT")
    typ = jws.header.get("typ")
    # media types ignore case, and "application/" may be left out (RFC 7515 section 4.1.9)
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != KB_TYP:
        raise KbHeaderError(f"KB-JWT typ is {_show(jws.header.get('typ'))}, expected {KB_TYP!r}")
    _check_alg(jws.header.get("alg"), accepted, holder_key, jwk, "KB-JWT")
    if not _verify_signature(holder_key, jws.signing_input, jws.signature):
        raise KbSignatureError("KB-JWT signature does not verify under the holder key in cnf.jwk")
    kb_claims = jws.payload
    nonce = kb_claims.get("nonce")
    if nonce != expected_nonce:
        raise KbNonceError(f"KB-JWT nonce {_show(nonce)} is not the expected "
                           f"{_show(expected_nonce)}")
    aud = kb_claims.get("aud")
    if aud != expected_audience:
        raise KbAudienceError(f"KB-JWT aud {_show(aud)} is not the expected "
                              f"{_show(expected_audience)}")
    iat = kb_claims.get("iat")
    if type(iat) is not int and type(iat) is not float:
        raise KbIatError(f"KB-JWT iat is a {_kind(iat)}, expected a NumericDate")
    if iat > now + clock_skew:
        raise KbIatError(f"KB-JWT iat {iat} is in the future: now {now} (skew {clock_skew}s)")
    if now - iat > kb_max_age:
        raise KbIatError(f"KB-JWT iat {iat} is {now - iat}s old, limit {kb_max_age}s")
    try:  # section 7.3 step 4.8: a valid JWT in all other respects (RFC 7519 exp and nbf)
        _check_times({k: kb_claims[k] for k in ("exp", "nbf") if k in kb_claims}, now,
                     clock_skew)
    except VerificationError as e:
        raise KeyBindingError(f"KB-JWT {e}") from e
    expected_hash = _digest(sd_jwt_kb[: len(sd_jwt_kb) - len(kb)])
    sd_hash = kb_claims.get("sd_hash")
    if sd_hash != expected_hash:
        raise KbSdHashError(f"KB-JWT sd_hash {_show(sd_hash)} does not match the presented "
                            f"SD-JWT (expected {expected_hash!r})")
    return claims
