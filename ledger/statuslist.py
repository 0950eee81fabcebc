"""IETF Token Status List (draft-ietf-oauth-status-list) and its JWT Status List Token.

A status list packs one status per credential into a byte array: ``bits`` (1, 2, 4 or 8) bits per
entry, entry ``i`` in byte ``i // (8 // bits)`` starting at the *least* significant bit. The array
travels ZLIB-compressed (RFC 1950 around RFC 1951 DEFLATE, level 9 as the draft recommends) and
base64url-encoded without padding as ``{"bits": ..., "lst": ...}``. We use ``bits = 2``:

- ``0x00`` VALID (the draft's name) is ``"valid"`` (ours),
- ``0x01`` INVALID is ``"revoked"``,
- ``0x02`` SUSPENDED is ``"suspended"``.

Any other value (0x03 is "application specific" in the draft's registry) is never guessed at:
:func:`check_status` answers *undetermined* for it.

A node serves the current list as a Status List Token: a JWS compact JWT with header
``{"alg": "EdDSA", "kid": ..., "typ": "statuslist+jwt"}`` and claims ``sub`` (the list's URI),
``iat``, optional ``exp`` and ``ttl``, and ``status_list``. :func:`make_token` signs one with an
Ed25519 key (``EdDSA``, our nodes) or a P-256 key (``ES256``, issuers outside the network, whose
tokens :mod:`ledger.foreign` checks); :func:`verify_token` is strict (JSON with duplicate keys,
non-canonical base64url, ``alg`` outside the allow-list or not the key's, unknown ``crit``, wrong
``typ`` or ``sub``, expiry, a future ``iat`` all raise).

Everything here is pure: time is the ``now=`` parameter and fetching a list is the caller's
``get_list`` callable. Errors::

    LedgerError
    └── StatusListError   untrusted input: a list, token or signature that is malformed,
                          oversize, expired, for another URI, or does not verify

Arguments a caller controls (building a list, making a token) raise ``ValueError`` /
``TypeError``; an index outside a list raises ``IndexError``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric import ec

from ledger import sdjwt
from ledger.errors import DecodeError, LedgerError
from ledger.keys import PrivateKey, PublicKey

__all__ = [
    "DEFAULT_SKEW",
    "INVALID",
    "MAX_DECOMPRESSED_BYTES",
    "SUSPENDED",
    "VALID",
    "StatusList",
    "StatusListError",
    "StatusResult",
    "check_status",
    "make_token",
    "verify_token",
]

VALID = 0x00
"""Draft status type VALID."""
INVALID = 0x01
"""Draft status type INVALID: revoked, annulled, cancelled. Our name for it is ``"revoked"``."""
SUSPENDED = 0x02
"""Draft status type SUSPENDED: temporarily invalid."""

MAX_DECOMPRESSED_BYTES = 16 * 1024 * 1024
"""Largest uncompressed byte array we build or accept (128 Mi entries at 1 bit, 64 Mi at 2)."""

_ALLOWED_BITS = (1, 2, 4, 8)
_TOKEN_TYP = "statuslist+jwt"  # noqa: S105 - a JWT type, not a secret
DEFAULT_SKEW = 60
"""Seconds of clock difference tolerated on ``iat``, ``nbf`` and ``exp``."""

# each only with its own kind of key; "Ed25519" is RFC 9864's name for "EdDSA" with one
_ALLOWED_ALGS = frozenset({"EdDSA", "Ed25519", "ES256"})
_ZLIB_LEVEL = 9
_MAX_HEADER_CHARS = 4096
# base64url of the largest signed payload: a 16 MiB incompressible list, base64url'd twice.
_MAX_TOKEN_CHARS = 32 * 1024 * 1024
_B64URL = re.compile(r"\A[A-Za-z0-9_-]*\Z")

StatusName = Literal["valid", "revoked", "suspended", "undetermined"]
_NAMES: dict[int, StatusName] = {VALID: "valid", INVALID: "revoked", SUSPENDED: "suspended"}


class StatusListError(LedgerError):
    """A status list or Status List Token from outside is malformed, oversize or does not verify."""


# --- the list ---------------------------------------------------------------------------------


def _check_bits(bits: object) -> int:
    if not isinstance(bits, int) or isinstance(bits, bool) or bits not in _ALLOWED_BITS:
        raise ValueError(f"bits must be one of {_ALLOWED_BITS}, got {bits!r}")
    return bits


def _check_int(name: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    return value


@dataclass(frozen=True, slots=True)
class StatusList:
    """An immutable status list: ``bits`` per entry over the uncompressed byte array ``data``.

    ``size`` is ``len(data) * 8 // bits``: a list always fills whole bytes (the draft recommends
    it, and a decoder could not tell a partial last byte from padding). Build one with
    :meth:`empty`, :meth:`from_entries` or :meth:`decode`; change it with :meth:`with_statuses`
    (one copy of the array for any number of changes) or :meth:`with_status`. ``get`` is O(1).
    """

    bits: int
    data: bytes = field(repr=False)
    # encode()'s result, computed once: level-9 ZLIB of a sparse 2^20-entry list takes about 2 s
    # here, and a node serves the same list object until it changes (ADR 23). Not compared.
    _lst: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_bits(self.bits)
        if not isinstance(self.data, bytes):
            raise TypeError(f"data must be bytes, got {type(self.data).__name__}")
        if len(self.data) > MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"a status list is at most {MAX_DECOMPRESSED_BYTES} bytes, "
                             f"got {len(self.data)}")

    @property
    def size(self) -> int:
        """Number of entries (indexes ``0 .. size - 1``)."""
        return len(self.data) * (8 // self.bits)

    def __repr__(self) -> str:
        return f"StatusList(bits={self.bits}, size={self.size})"

    # construction

    @classmethod
    def empty(cls, bits: int, size: int) -> StatusList:
        """A list of ``size`` entries, all VALID. ``size`` must be a multiple of ``8 // bits``."""
        return cls(bits, bytes(_array_len(bits, size)))

    @classmethod
    def from_entries(cls, bits: int, size: int, entries: Iterable[tuple[int, int]]) -> StatusList:
        """A list of ``size`` entries, VALID except the sparse ``(index, status)`` pairs.

        Pairs apply in order (a repeated index keeps its last status). O(size / per byte) to
        allocate plus O(1) per pair; no per-entry objects.
        """
        buf = bytearray(_array_len(bits, size))
        _apply(buf, bits, entries)
        return cls(bits, bytes(buf))

    def with_statuses(self, entries: Iterable[tuple[int, int]]) -> StatusList:
        """A new list with each ``(index, status)`` pair applied in order."""
        buf = bytearray(self.data)
        _apply(buf, self.bits, entries)
        return StatusList(self.bits, bytes(buf))

    def with_status(self, idx: int, value: int) -> StatusList:
        """A new list with entry ``idx`` set to ``value`` (copies the array: batch changes with
        :meth:`with_statuses`)."""
        return self.with_statuses(((idx, value),))

    # reading

    def get(self, idx: int) -> int:
        """The status at ``idx``; ``IndexError`` outside ``0 .. size - 1``."""
        _check_int("idx", idx)
        per = 8 // self.bits
        if not 0 <= idx < len(self.data) * per:
            raise IndexError(f"index {idx} outside a status list of {self.size} entries")
        shift = (idx % per) * self.bits
        return (self.data[idx // per] >> shift) & ((1 << self.bits) - 1)

    # the draft's JSON form

    def encode(self) -> dict[str, Any]:
        """``{"bits": bits, "lst": base64url(zlib level 9 (data))}`` exactly as the draft's
        generator makes it (its appendix vectors reproduce byte for byte)."""
        if not self._lst:  # a race computes it twice, the same value: harmless
            self._lst.append(_b64url_encode(zlib.compress(self.data, _ZLIB_LEVEL)))
        return {"bits": self.bits, "lst": self._lst[0]}

    @classmethod
    def decode(cls, unverified: object, *,
               max_bytes: int = MAX_DECOMPRESSED_BYTES) -> StatusList:
        """Parse the draft's JSON ``StatusList`` object; raise :class:`StatusListError`.

        Closed schema: ``bits`` and ``lst`` are required; ``aggregation_uri`` (the draft's only
        optional member) must be a string and is not kept; anything else is refused. ``lst`` must be
        canonical unpadded base64url of one complete ZLIB stream with nothing after it, which
        inflates to at most ``max_bytes`` (checked while inflating: a bomb costs at most
        ``max_bytes + 1`` bytes of memory).
        """
        if not 0 <= max_bytes <= MAX_DECOMPRESSED_BYTES:
            raise ValueError(f"max_bytes must be within 0..{MAX_DECOMPRESSED_BYTES}")
        if not isinstance(unverified, dict):
            raise StatusListError(f"status_list must be a JSON object, got "
                                  f"{type(unverified).__name__}")
        unknown = set(unverified) - {"bits", "lst", "aggregation_uri"}
        if unknown:
            named = sorted(map(str, unknown))  # the issuer's words: each cut, three at most
            raise StatusListError("status_list has unknown members " + ", ".join(
                map(_show, named[:3])) + (f" and {len(named) - 3} more" if len(named) > 3 else ""))
        if "bits" not in unverified or "lst" not in unverified:
            raise StatusListError("status_list needs both 'bits' and 'lst'")
        bits = unverified["bits"]
        try:
            _check_bits(bits)
        except ValueError as e:
            raise StatusListError(f"status_list.bits: {e}") from e
        if "aggregation_uri" in unverified and not isinstance(unverified["aggregation_uri"], str):
            raise StatusListError("status_list.aggregation_uri must be a string")
        lst = unverified["lst"]
        if not isinstance(lst, str):
            raise StatusListError(f"status_list.lst must be a string, got {type(lst).__name__}")
        # Stored DEFLATE blocks add 5 bytes per 65535, plus header and checksum.
        max_compressed = max_bytes + max_bytes // 8192 + 64
        if len(lst) > (max_compressed * 4 + 2) // 3:
            raise StatusListError(f"status_list.lst is {len(lst)} characters, over the limit for "
                                  f"{max_bytes} uncompressed bytes")
        compressed = _b64url_decode("status_list.lst", lst)
        return cls(bits, _inflate(compressed, max_bytes))


def _array_len(bits: int, size: int) -> int:
    _check_bits(bits)
    _check_int("size", size)
    per = 8 // bits
    if size < 0 or size % per:
        raise ValueError(f"size must be a non-negative multiple of {per} for bits={bits} "
                         f"(a list fills whole bytes), got {size}")
    if size // per > MAX_DECOMPRESSED_BYTES:
        raise ValueError(f"size {size} needs more than {MAX_DECOMPRESSED_BYTES} bytes")
    return size // per


def _apply(buf: bytearray, bits: int, entries: Iterable[tuple[int, int]]) -> None:
    per = 8 // bits
    mask = (1 << bits) - 1
    size = len(buf) * per
    for idx, value in entries:
        _check_int("idx", idx)
        _check_int("status", value)
        if not 0 <= idx < size:
            raise IndexError(f"index {idx} outside a status list of {size} entries")
        if not 0 <= value <= mask:
            raise ValueError(f"status {value} does not fit in {bits} bits")
        pos, rest = divmod(idx, per)
        shift = rest * bits
        buf[pos] = (buf[pos] & ~(mask << shift) & 0xFF) | (value << shift)


def _inflate(compressed: bytes, max_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS)  # ZLIB format only: no gzip, no raw
    try:
        raw = inflater.decompress(compressed, max_bytes + 1)
    except zlib.error as e:
        raise StatusListError(f"status_list.lst is not a valid ZLIB stream: {e}") from e
    if len(raw) > max_bytes:
        raise StatusListError(f"status_list.lst inflates to more than {max_bytes} bytes")
    if not inflater.eof:
        raise StatusListError("status_list.lst is a truncated ZLIB stream")
    if inflater.unused_data:
        raise StatusListError(f"status_list.lst has {len(inflater.unused_data)} bytes after "
                              f"the end of its ZLIB stream")
    return raw


# --- strict JOSE pieces ---------------------------------------------------------------------------


def _b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(what: str, text: str) -> bytes:
    """Unpadded base64url that re-encodes to exactly ``text`` (no stray bits, no padding)."""
    if not _B64URL.match(text) or len(text) % 4 == 1:
        raise StatusListError(f"{what} is not unpadded base64url")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except binascii.Error as e:  # pragma: no cover - the pattern and length checks exclude it
        raise StatusListError(f"{what} is not unpadded base64url: {e}") from e
    if _b64url_encode(raw) != text:
        raise StatusListError(f"{what} is not canonical base64url (non-zero trailing bits)")
    return raw


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate member {_show(key)}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _json_object(what: str, raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
        sdjwt.no_lone_surrogates(value, what)
    except ValueError as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise StatusListError(f"{what} is not strict UTF-8 JSON: {e}") from e
    except RecursionError as e:  # a header is read before its signature is checked
        raise StatusListError(f"{what} nests too deeply") from e
    except sdjwt.JsonError as e:
        raise StatusListError(str(e)) from e
    if not isinstance(value, dict):
        raise StatusListError(f"{what} must be a JSON object")
    return value


def _json_bytes(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=True).encode()


def _claim_int(payload: dict[str, Any], name: str) -> int | None:
    value = payload.get(name)
    if value is None and name not in payload:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise StatusListError(f"claim {name!r} must be an integer NumericDate/seconds, "
                              f"got {_show(value)}")
    return value


# --- the Status List Token --------------------------------------------------------------------


def make_token(status_list: StatusList, *, sub: str, iat: int, exp: int | None,
               ttl: int | None, key: PrivateKey | ec.EllipticCurvePrivateKey,
               kid: str) -> str:
    """Sign ``status_list`` as a Status List Token (JWS compact, ``alg: EdDSA`` with an Ed25519
    key, ``ES256`` with a P-256 key).

    ``sub`` is the list's URI (equal to ``status.status_list.uri`` in the credentials that point
    at it); ``exp`` must be after ``iat``; ``ttl`` is a positive number of seconds.
    """
    if not isinstance(status_list, StatusList):
        raise TypeError("status_list must be a StatusList")
    if not isinstance(sub, str) or not sub:
        raise ValueError("sub must be the list's URI")
    if not isinstance(kid, str) or not kid:
        raise ValueError("kid must be a non-empty string")
    if _check_int("iat", iat) < 0:
        raise ValueError("iat must not be negative")
    payload: dict[str, Any] = {"sub": sub, "iat": iat, "status_list": status_list.encode()}
    if exp is not None:
        if _check_int("exp", exp) <= iat:
            raise ValueError(f"exp {exp} must be after iat {iat}")
        payload["exp"] = exp
    if ttl is not None:
        if _check_int("ttl", ttl) <= 0:
            raise ValueError("ttl must be a positive number of seconds")
        payload["ttl"] = ttl
    header = {"alg": sdjwt.jws_alg(key), "kid": kid, "typ": _TOKEN_TYP}
    signing_input = f"{_b64url_encode(_json_bytes(header))}.{_b64url_encode(_json_bytes(payload))}"
    signature = sdjwt.jws_sign(key, signing_input.encode("ascii"))
    return f"{signing_input}.{_b64url_encode(signature)}"


def unverified_list(token: str, where: str) -> tuple[str, int]:
    """The list URI (``sub``) a Status List Token names and its ``iat`` (0 if it has none that
    is an integer), read unverified: which list a file is for, and which of two files for one
    list is newer; or, of a token :func:`verify_token` took, when it was signed. DecodeError
    for a token that is not a JWT with a ``sub``."""
    parts = token.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(f"a JWS compact token has 3 parts, not {len(parts)}")
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, RecursionError) as e:
        raise DecodeError(f"not a Status List Token: {e}", where) from e
    sub = payload.get("sub") if isinstance(payload, dict) else None
    if not isinstance(sub, str) or not sub:
        raise DecodeError("names no list (no 'sub')", where)
    iat = payload.get("iat")
    return sub, iat if type(iat) is int else 0


def _show(value: object, limit: int = 40) -> str:
    """An outside value of a token's header or claims, quoted short as sdjwt's refusals quote
    one (a header holds up to 4,096 characters of the issuer's text)."""
    return sdjwt._show(value, limit)


def verify_token(unverified: str, *, public_key: PublicKey | ec.EllipticCurvePublicKey,
                 expected_sub: str, now: int, skew: int = DEFAULT_SKEW) -> StatusList:
    """Verify a Status List Token and return its list; raise :class:`StatusListError`.

    Checks, in order: size and shape (three canonical base64url parts); the header (strict JSON,
    ``typ`` ``statuslist+jwt`` or ``application/statuslist+jwt``, ``alg`` in the allow-list
    {EdDSA, ES256} and the one ``public_key`` signs with (EdDSA for Ed25519, ES256 for P-256),
    no ``crit``); the signature under ``public_key``; then the claims (strict JSON; ``sub ==
    expected_sub``; no ``aud``; integer ``iat`` not after ``now + skew``; ``exp``, if present,
    after ``iat`` and ``now < exp + skew``; ``nbf``, if present, not after ``now + skew``;
    ``ttl``, if present, positive and ``now < iat + ttl + skew``: the issuer's bound on how
    long a copy may be relied on) and ``status_list`` via :meth:`StatusList.decode`.
    """
    _check_int("now", now)
    if not isinstance(expected_sub, str) or not expected_sub:
        raise ValueError("expected_sub must be the list's URI")
    if _check_int("skew", skew) < 0:
        raise ValueError("skew must not be negative")
    if not isinstance(unverified, str):
        raise StatusListError(f"a Status List Token is a string, got {type(unverified).__name__}")
    if len(unverified) > _MAX_TOKEN_CHARS:
        raise StatusListError(f"token is {len(unverified)} characters, over {_MAX_TOKEN_CHARS}")
    parts = unverified.split(".")
    if len(parts) != 3:
        raise StatusListError(f"a JWS compact token has 3 parts, got {len(parts)}")
    header_b64, payload_b64, signature_b64 = parts
    if len(header_b64) > _MAX_HEADER_CHARS:
        raise StatusListError(f"token header is over {_MAX_HEADER_CHARS} characters")

    header = _json_object("token header", _b64url_decode("token header", header_b64))
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower().removeprefix("application/") != _TOKEN_TYP:
        raise StatusListError(f"token typ must be {_TOKEN_TYP!r}, got {_show(typ)}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in _ALLOWED_ALGS:  # a list or object is unhashable
        raise StatusListError(f"token alg {_show(alg)} is not allowed (allowed: "
                              f"{sorted(_ALLOWED_ALGS)})")
    if alg not in sdjwt.jws_algs(public_key):
        raise StatusListError(f"token alg {alg!r} does not fit the list signer's key, which "
                              f"signs {sdjwt.jws_alg(public_key)!r}")
    if "crit" in header:
        raise StatusListError("token header has 'crit' extensions this verifier does not know")
    if "kid" in header and not isinstance(header["kid"], str):
        raise StatusListError("token kid must be a string")

    payload_bytes = _b64url_decode("token payload", payload_b64)  # shape only: parsed once signed
    signature = _b64url_decode("token signature", signature_b64)
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    if not sdjwt.jws_verify(public_key, signing_input, signature):
        raise StatusListError("Status List Token signature does not verify under the list "
                              "signer's key")

    payload = _json_object("token payload", payload_bytes)
    sub = payload.get("sub")
    if sub != expected_sub:
        raise StatusListError(f"token sub is {_show(sub, 160)}, expected {expected_sub!r}")
    if "aud" in payload:  # RFC 7519 section 4.1.3: this verifier names itself in none
        raise StatusListError("token has an 'aud' claim: it is for the audience it names, and "
                              "a status list's reader is not one")
    iat = _claim_int(payload, "iat")
    if iat is None:
        raise StatusListError("token has no 'iat' claim")
    if iat > now + skew:
        raise StatusListError(f"token iat {iat} is in the future (now {now}, skew {skew})")
    exp = _claim_int(payload, "exp")
    if exp is not None:
        if exp <= iat:
            raise StatusListError(f"token exp {exp} is not after iat {iat}")
        if now >= exp + skew:
            raise StatusListError(f"token expired at {exp} (now {now}, skew {skew})")
    nbf = _claim_int(payload, "nbf")
    if nbf is not None and nbf > now + skew:
        raise StatusListError(f"token not valid before {nbf} (now {now}, skew {skew})")
    ttl = _claim_int(payload, "ttl")
    if ttl is not None and ttl <= 0:
        raise StatusListError(f"token ttl must be positive, got {ttl}")
    if ttl is not None and now >= iat + ttl + skew:
        # the issuer's bound on how long a copy may be relied on: an old token left in a
        # desk's folder must not keep saying "valid" (ADR 48)
        raise StatusListError(f"token is {now - iat} s old, past its ttl of {ttl} s (now "
                              f"{now}, skew {skew}): fetch a fresh one from its issuer")
    if "status_list" not in payload:
        raise StatusListError("token has no 'status_list' claim")
    return StatusList.decode(payload["status_list"])


# --- checking a credential's status ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StatusResult:
    """The answer for one referenced token: ``status`` and why; ``value`` is the raw entry when
    one was read."""

    status: StatusName
    reason: str
    value: int | None = None


def _undetermined(reason: str, value: int | None = None) -> StatusResult:
    return StatusResult("undetermined", reason, value)


def check_status(status_claim: object,
                 get_list: Callable[[str], StatusList | None]) -> StatusResult:
    """The status of a credential whose ``status`` claim is ``status_claim``.

    ``status_claim`` is ``{"status_list": {"idx": int, "uri": str}}`` (other members, and other
    status mechanisms beside ``status_list``, are allowed by the draft and ignored).
    ``get_list(uri)`` returns the *verified* list for ``uri`` (for instance by
    :func:`verify_token` with ``expected_sub=uri``), or None. Never guesses: a malformed claim, a
    list that cannot be had (None, or ``get_list`` raising anything), an index outside the list or
    a value other than VALID/INVALID/SUSPENDED is *undetermined*, never valid and never revoked.
    """
    if not isinstance(status_claim, dict):
        return _undetermined("status claim is not a JSON object")
    ref = status_claim.get("status_list")
    if not isinstance(ref, dict):
        return _undetermined("status claim has no 'status_list' object")
    idx = ref.get("idx")
    uri = ref.get("uri")
    if not isinstance(idx, int) or isinstance(idx, bool) or idx < 0:
        return _undetermined(f"status_list.idx must be a non-negative integer, got {idx!r}")
    if not isinstance(uri, str) or not uri:
        return _undetermined(f"status_list.uri must be a non-empty string, got {uri!r}")
    try:
        status_list = get_list(uri)
    except Exception as e:  # any failure to obtain a list is "undetermined", whatever it is
        return _undetermined(f"status list {uri} could not be obtained: "
                             f"{type(e).__name__}: {e}")
    if status_list is None:
        return _undetermined(f"status list {uri} is not available")
    if not isinstance(status_list, StatusList):
        return _undetermined(f"status list source for {uri} returned a "
                             f"{type(status_list).__name__}, not a StatusList")
    if idx >= status_list.size:
        return _undetermined(f"index {idx} is outside status list {uri} of "
                             f"{status_list.size} entries")
    value = status_list.get(idx)
    name = _NAMES.get(value)
    if name is None:
        return _undetermined(f"index {idx} of {uri} holds status 0x{value:02x}, which is not "
                             f"valid, revoked or suspended", value)
    return StatusResult(name, f"index {idx} of {uri} is 0x{value:02x}", value)
