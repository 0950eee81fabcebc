"""Credential bundles, presentation envelopes, and the verifying official's full check.

A **bundle** is what an issuing agency hands the citizen: the SD-JWT VC with all disclosures, the
anchoring ``issue`` transaction's bytes, its leaf index, an inclusion proof and the checkpoint it
proves against. An **envelope** is what the citizen shows: the same ledger evidence around an
SD-JWT+KB that discloses only what the verifier asked for. Both are canonical msgpack.

:func:`verify_envelope` checks, without calling anyone: the checkpoint's quorum (cached registry),
the anchor's inclusion, the anchor's signature and that it anchors *this* JWT, the issuer's key
and grant at issuance time, the SD-JWT+KB (every RFC 9901 MUST, via :mod:`ledger.sdjwt`), the
requested claims, and the status (valid / revoked / suspended / undetermined — never guessed).
"""

from __future__ import annotations

import hashlib
import threading
import urllib.parse
from collections.abc import Callable, MutableSet
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ledger import codec, merkle, sdjwt
from ledger.checkpoint import SignedCheckpoint
from ledger.codec import Fields
from ledger.credentials import issuer_uri, status_list_uri
from ledger.errors import DecodeError, LedgerError, ProofError, StoreError
from ledger.finality import verify_final
from ledger.state import RESERVED_TYPES, Registry, status_list_of
from ledger.statuslist import StatusList, check_status
from ledger.store import Store
from ledger.timetext import utc_text
from ledger.tx import Tx

__all__ = ["IMPLIED_CLAIMS", "ON_LEDGER_CLAIMS", "PLAIN_CLAIMS", "Bundle", "Check", "Envelope",
           "Report", "Request", "Verifier", "asked_claims", "bundle_from_store",
           "issuer_jwk_at_issuance", "origin_of", "spend_nonce", "verify_envelope",
           "with_implied_claims"]

MAX_ENVELOPE = 32 * 1024
MAX_REQUEST_CLAIMS = 64
"""Most claims one presentation request may ask for."""

#: Credential types that mean nothing without some of their claims: a request the verifier's
#: tools make for such a type always asks for these too. An approval credential records every
#: decision, rejections included (ADR 41); shown without its ``decision`` it would read as an
#: approval.
IMPLIED_CLAIMS: dict[str, tuple[str, ...]] = {"approval": ("service", "decision", "approval_tx")}

#: Claims of a type that the public ledger shows anyone who holds a presentation of it, asked
#: for or not: an approval credential's decision is a committed ``approval`` transaction (its
#: ``approval_tx``, always disclosed, and just before the credential's anchor in the log),
#: which carries the service, decision, path, reasons, rule and time (ADR 41, 47). A wallet
#: must not call these withheld.
ON_LEDGER_CLAIMS: dict[str, frozenset[str]] = {"approval": frozenset({
    "service", "decision", "path", "reasons", "rule_version", "decided_on", "approval_tx"})}


def with_implied_claims(credential_type: str, claims: list[str] | tuple[str, ...]
                        ) -> list[str]:
    """``claims`` in their order, once each, then the type's implied claims not among them."""
    return list(dict.fromkeys([*claims, *IMPLIED_CLAIMS.get(credential_type, ())]))


@dataclass(frozen=True)
class _Evidence:
    anchor: bytes
    leaf_index: int
    proof: tuple[bytes, ...]
    checkpoint: str

    def _fields(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "leaf_index": self.leaf_index, "proof": list(self.proof),
                "checkpoint": self.checkpoint}

    @staticmethod
    def _read(f: Fields) -> dict[str, Any]:
        proof = f.list("proof", max_len=64)
        if not all(isinstance(h, bytes) and len(h) == 32 for h in proof):
            raise DecodeError("proof hashes are 32 bytes each", f"{f.where}.proof")
        return {"anchor": f.bytes("anchor", max_len=64 * 1024),
                "leaf_index": f.int("leaf_index", lo=0),
                "proof": tuple(proof), "checkpoint": f.str("checkpoint", max_len=16 * 1024)}


@dataclass(frozen=True)
class Bundle(_Evidence):
    """A holder's credential with its ledger evidence (all disclosures included)."""

    sd_jwt: str = ""

    def to_bytes(self) -> bytes:
        return codec.encode({"v": 1, "kind": "bundle", "sd_jwt": self.sd_jwt, **self._fields()})

    @classmethod
    def from_bytes(cls, unverified: bytes) -> Bundle:
        f = Fields(codec.decode(unverified, max_size=MAX_ENVELOPE * 4, what="bundle"), "bundle")
        f.version(1, "bundle")
        f.str("kind", choices=frozenset({"bundle"}))
        out = cls(sd_jwt=f.str("sd_jwt", max_len=MAX_ENVELOPE * 4), **cls._read(f))
        f.done()
        return out


@dataclass(frozen=True)
class Envelope(_Evidence):
    """What a holder shows a verifier: SD-JWT+KB plus the anchor's inclusion evidence."""

    sd_jwt_kb: str = ""

    def to_bytes(self) -> bytes:
        return codec.encode({"v": 1, "kind": "presentation", "sd_jwt_kb": self.sd_jwt_kb,
                             **self._fields()})

    @classmethod
    def from_bytes(cls, unverified: bytes) -> Envelope:
        fast = _fast_envelope(unverified)
        if fast is not None:
            return fast
        f = Fields(codec.decode(unverified, max_size=MAX_ENVELOPE, what="envelope"), "envelope")
        f.version(1, "presentation")
        f.str("kind", choices=frozenset({"presentation"}))
        out = cls(sd_jwt_kb=f.str("sd_jwt_kb", max_len=MAX_ENVELOPE), **cls._read(f))
        f.done()
        return out

    @classmethod
    def from_bundle(cls, bundle: Bundle, sd_jwt_kb: str) -> Envelope:
        return cls(bundle.anchor, bundle.leaf_index, bundle.proof, bundle.checkpoint, sd_jwt_kb)


_ENVELOPE_KEYS = ["anchor", "checkpoint", "kind", "leaf_index", "proof", "sd_jwt_kb", "v"]


def _fast_envelope(unverified: object) -> Envelope | None:
    """The strict envelope parse for the plain case, or None: then the strict path decides.

    Accepts a subset of what the strict path accepts (exact key list, so canonical order; exact
    types and the same limits), confirmed canonical by a C re-encode equal to the input, and
    builds an equal Envelope. Anything else, including every error, goes to the strict path,
    which names the problem.
    """
    if type(unverified) is not bytes or len(unverified) > MAX_ENVELOPE:
        return None
    try:
        m = codec.unpack_plain(unverified, max_size=MAX_ENVELOPE)
    except codec.UNPACK_ERRORS:
        return None
    if type(m) is not dict or list(m) != _ENVELOPE_KEYS:
        return None
    anchor, cp, idx, proof, kb = (m["anchor"], m["checkpoint"], m["leaf_index"], m["proof"],
                                  m["sd_jwt_kb"])
    if (m["v"] != 1 or type(m["v"]) is not int or m["kind"] != "presentation"
            or type(anchor) is not bytes or len(anchor) > 64 * 1024
            or type(cp) is not str or len(cp) > 16 * 1024
            or type(idx) is not int or idx < 0
            or type(kb) is not str or len(kb) > MAX_ENVELOPE
            or type(proof) is not list or len(proof) > 64
            or not all(type(h) is bytes and len(h) == 32 for h in proof)):
        return None
    # Every value has an exact plain type now, so equal re-encoded bytes mean canonical.
    if codec.pack_plain(m) != unverified:
        return None
    return Envelope(anchor, idx, tuple(proof), cp, kb)


def origin_of(url: str) -> str:
    """The origin a URL names (scheme, host, port; lower case, without the scheme's default
    port or the host's trailing dot): one address however it is spelt. Something that is no
    URL is kept as it is."""
    try:
        u = urllib.parse.urlsplit(url.strip())
        port = u.port
    except ValueError:
        return url
    if not u.scheme or not u.hostname:
        return url
    default = {"https": 443, "http": 80}.get(u.scheme.lower())
    netloc = u.hostname.lower().rstrip(".") + (f":{port}" if port and port != default else "")
    return f"{u.scheme.lower()}://{netloc}"


@dataclass(frozen=True)
class Request:
    """A verifier's presentation request: bound to ``nonce`` and ``audience``."""

    nonce: str
    audience: str
    credential_type: str
    claims: tuple[str, ...]

    def __post_init__(self) -> None:
        # A wallet shows these fields to its holder before signing: no escape sequence or line
        # break may redraw that screen (ledger.display).
        if len(self.claims) > MAX_REQUEST_CLAIMS:
            raise DecodeError(f"at most {MAX_REQUEST_CLAIMS} claims", "request.claims")
        for where, text, limit in (("nonce", self.nonce, 256), ("audience", self.audience, 512),
                                   ("type", self.credential_type, 200),
                                   *((f"claims[{i}]", c, 100)
                                     for i, c in enumerate(self.claims))):
            if not isinstance(text, str) or not text:
                raise DecodeError("must be a non-empty string", f"request.{where}")
            if len(text) > limit:
                raise DecodeError(f"longer than {limit} characters", f"request.{where}")
            if not text.isprintable():
                raise DecodeError("must be printable text (no control characters, line breaks "
                                  "or format characters)", f"request.{where}")

    def to_json(self) -> dict[str, Any]:
        return {"nonce": self.nonce, "audience": self.audience, "type": self.credential_type,
                "claims": list(self.claims)}

    @classmethod
    def from_file_json(cls, unverified: Any, now: int | None = None) -> Request:
        """A request as a file gives it: :meth:`from_json`'s four members, or a node's answer
        to ``POST /v1/presentation-requests``, which also has ``created``, ``expires`` and
        ``qr_svg`` (an official may save that answer whole). With ``now``, a request past its
        ``expires`` is refused: the node would refuse what is presented for it."""
        if isinstance(unverified, dict) and set(unverified) == {*_REQUEST, *_NODE_EXTRAS}:
            expires = unverified["expires"]
            if now is not None and isinstance(expires, int) and now >= expires:
                raise DecodeError(f"this request expired at {utc_text(expires)}: ask the "
                                  "verifier for a new one", "request.expires")
            unverified = {k: unverified[k] for k in _REQUEST}
        return cls.from_json(unverified)

    @classmethod
    def from_json(cls, unverified: Any) -> Request:
        if not isinstance(unverified, dict) or set(unverified) != set(_REQUEST):
            raise DecodeError("a request has exactly nonce, audience, type and claims",
                              "request")
        claims = unverified["claims"]
        if not (isinstance(claims, list) and all(isinstance(c, str) for c in claims)):
            raise DecodeError("claims is a list of claim names", "request.claims")
        return cls(unverified["nonce"], unverified["audience"], unverified["type"],
                   tuple(claims))


_REQUEST = ("nonce", "audience", "type", "claims")
_NODE_EXTRAS = ("created", "expires", "qr_svg")
"""What a node's answer to ``POST /v1/presentation-requests`` has besides the request."""


class Check(NamedTuple):
    """One named step of a verification and its outcome (immutable)."""

    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    """The verdict: ``verified`` only if every check passed and the status is valid."""

    checks: list[Check] = field(default_factory=list)
    claims: dict[str, Any] = field(default_factory=dict)
    status: str = "undetermined"

    @property
    def verified(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks) and self.status == "valid"

    def to_json(self) -> dict[str, Any]:
        return {"verified": self.verified, "status": self.status,
                "checks": [{"check": c.name, "ok": c.ok, "detail": c.detail}
                           for c in self.checks],
                "claims": self.claims}


PLAIN_CLAIMS = frozenset({"iss", "iat", "nbf", "exp", "vct", "cnf", "status"})
"""An SD-JWT VC's registered claims: checked by the verifier, never shown as claim values."""


def asked_claims(claims: dict[str, Any], request: Request) -> tuple[dict[str, Any], str]:
    """The verified ``claims`` a verifier is shown: only those its request asked for, in the
    request's order, and the ``requested_claims`` step's detail, which counts any other claims
    the presentation disclosed (a wallet other than ours may disclose more; the official
    asked for what the service needs, and sees only that)."""
    shown = {c: claims[c] for c in request.claims if c in claims}
    extra = sum(1 for c in claims if c not in PLAIN_CLAIMS and c not in shown)
    detail = (f"type {request.credential_type!r}, {len(shown)} "
              f"{'claim' if len(shown) == 1 else 'claims'} disclosed")
    if extra:
        detail += f"; {extra} more disclosed than asked, not shown"
    return shown, detail


def verify_envelope(unverified: bytes, request: Request, *, registry: Registry, now: int,
                    status_lists: Callable[[str], StatusList | None],
                    used_nonces: MutableSet[str] | None = None,
                    status_as_of: int | None = None,
                    ledger: Store | None = None) -> Report:
    """Check a presentation envelope against ``request``; never raises for bad input.

    ``registry`` is the verifier's (possibly cached) registry snapshot; ``status_lists`` maps a
    status-list URI to an already verified list, or None when it cannot be had. With
    ``used_nonces``, a request's nonce is accepted once: a replayed presentation fails. With
    ``status_as_of`` (the log size the lists reflect, e.g. an offline snapshot's), a credential
    anchored at or after it has an undetermined status: the lists cannot know it. With
    ``ledger`` (a verifier with the store, whose status lists ``status_lists`` reads), an
    approval credential's decision is checked against the approval transaction it names, and
    a credential anchored at or past the store's log size has an undetermined status.
    """
    return Verifier(registry, status_lists, used_nonces, status_as_of=status_as_of,
                    ledger=ledger).verify(unverified, request, now=now)


class Verifier:
    """A verifying official's verifier over one registry snapshot.

    It remembers which checkpoint texts it found final, and for which span of ``now`` that
    holds (until the registry's next recorded time: a node key or an agency planned to come or
    go, :meth:`Registry.node_key_span`), so a desk checking many presentations against the same
    checkpoint verifies its quorum signatures once. A new registry snapshot means a new
    Verifier (and an empty cache).
    """

    def __init__(self, registry: Registry, status_lists: Callable[[str], StatusList | None],
                 used_nonces: MutableSet[str] | None = None, cache_size: int = 64, *,
                 status_as_of: int | None = None, ledger: Store | None = None) -> None:
        self.registry = registry
        self.ledger = ledger
        self.status_lists = status_lists
        self.used_nonces = used_nonces
        self.status_as_of = status_as_of
        # text -> (from, until, (checkpoint, its final signers, the report's detail line))
        self._final: dict[str, tuple[float, float,
                                     tuple[SignedCheckpoint, frozenset[str], str]]] = {}
        self._cache_size = cache_size
        self._evicting = threading.Lock()

    def _checkpoint(self, text: str, now: int) -> tuple[SignedCheckpoint, frozenset[str], str]:
        hit = self._final.get(text)
        if hit is not None and hit[0] <= now < hit[1]:
            return hit[2]
        signed = SignedCheckpoint.from_text(text)
        signers = frozenset(verify_final(signed, self.registry, now))
        got = (signed, signers,
               f"size {signed.checkpoint.size}, final: signed by {', '.join(sorted(signers))}")
        span = self.registry.node_key_span(now)
        # A node shares one verifier among its worker threads: two evicting at once would
        # pop the same oldest text (KeyError). A hit (one dict read) needs no lock.
        with self._evicting:
            if len(self._final) >= self._cache_size and text not in self._final:
                self._final.pop(next(iter(self._final)))
            self._final[text] = (*span, got)
        return got

    def verify(self, unverified: bytes, request: Request, *, now: int) -> Report:
        """See :func:`verify_envelope`."""
        return _verify(self, unverified, request, now)


def spend_nonce(report: Report, request: Request, used_nonces: MutableSet[str] | None) -> bool:
    """Accept the request's nonce once: False (and a failed ``nonce_fresh`` check in
    ``report``) if it was used before; otherwise it is marked used. No set: always True."""
    if used_nonces is None:
        return True
    if request.nonce in used_nonces:
        report.checks.append(Check("nonce_fresh", False,
                                   "this request's nonce was already used: a replay"))
        return False
    used_nonces.add(request.nonce)
    return True


def _verify(v: Verifier, unverified: bytes, request: Request, now: int) -> Report:
    registry, status_lists, used_nonces = v.registry, v.status_lists, v.used_nonces
    report = Report()
    add = report.checks.append
    if not spend_nonce(report, request, used_nonces):
        return report
    try:
        env = Envelope.from_bytes(unverified)
    except DecodeError as e:
        add(Check("envelope", False, str(e)))
        return report
    add(Check("envelope", True, f"{len(unverified)} bytes"))
    try:
        signed, _, detail = v._checkpoint(env.checkpoint, now)
        cp = signed.checkpoint
        add(Check("checkpoint", True, detail))
        merkle.verify_inclusion(merkle.leaf_hash(env.anchor), env.leaf_index, cp.size,
                                list(env.proof), cp.root)
        add(Check("anchor_inclusion", True, f"leaf {env.leaf_index} is in the checkpoint"))
        anchor = _check_anchor(env, registry)
        add(Check("anchor", True, f"issue transaction by {anchor.body['issuer']!r}, "
                                  "committed under a final checkpoint"))
        issuer_jwk = issuer_jwk_at_issuance(anchor, registry)
        add(Check("issuer_authority", True, "issuer key valid and type granted at issuance"))
        claims = sdjwt.verify_presentation(env.sd_jwt_kb, issuer_public_jwk=issuer_jwk,
                                           expected_nonce=request.nonce,
                                           expected_audience=request.audience, now=now,
                                           vc_only=True)
        add(Check("sd_jwt", True, "issuer signature, disclosures, validity, key binding"))
        _check_binding(anchor, env)
        add(Check("anchor_binding", True, "the anchor's credential_id is this JWT's SHA-256"))
        _check_request(claims, anchor, request)
        shown, detail = asked_claims(claims, request)
        add(Check("requested_claims", True, detail))
    except LedgerError as e:  # every failure names itself; no exception escapes
        add(Check(_failed_step(report), False, str(e)))
        return report
    if anchor.body["type"] in RESERVED_TYPES and v.ledger is not None:
        why = _decision_mismatch(claims, anchor, env.leaf_index, v.ledger, registry)
        add(Check("approval_decision", why is None, why or "the decision the ledger recorded"))
        if why is not None:
            return report
    # A ledger copy's size is read before its lists (a list read later is as new or newer):
    # one that has not reached the credential's leaf has lists that cannot know it, where an
    # index no anchor took reads 0, "valid", whatever the network did with it meanwhile.
    copy_size = None
    if v.ledger is not None and v.status_as_of is None:
        head = v.ledger.head
        copy_size = 0 if head is None else head.log_size
    if v.status_as_of is not None and env.leaf_index >= v.status_as_of:
        report.status = "undetermined"
        add(Check("status", False, f"the status lists are as of log size {v.status_as_of}, "
                                   f"before this credential was anchored (leaf "
                                   f"{env.leaf_index}): they cannot know it; use newer ones"))
    elif copy_size is not None and env.leaf_index >= copy_size:
        report.status = "undetermined"
        add(Check("status", False, f"this ledger copy (log size {copy_size}) has not seen the "
                                   f"credential (leaf {env.leaf_index}) yet: its status cannot "
                                   "be known here; check against a current node"))
    else:
        result = check_status(claims.get("status", {}), status_lists)
        report.status = result.status
        add(Check("status", result.status == "valid", result.reason or result.status))
    report.claims = shown
    return report


def _decision_mismatch(claims: dict[str, Any], anchor: Tx, leaf_index: int, ledger: Store,
                       registry: Registry) -> str | None:
    """Why an approval credential is not backed by the approval transaction it names (None:
    it is): committed, an approval, signed by the credential's issuer, for the same service
    and decision, and the same path, reasons, rule version, documents still required and
    day of the decision where those are disclosed. An agency granted ``approval`` could
    otherwise anchor one by hand (ADR 43)."""
    named = claims.get("approval_tx")
    if not isinstance(named, str):
        return "approval_tx is not disclosed: the decision cannot be checked (ask for it)"
    head = ledger.head
    if head is None or head.log_size <= leaf_index:
        return (f"this ledger copy (log size {head.log_size if head else 0}) has not seen the "
                f"credential (leaf {leaf_index}) yet: the decision cannot be checked here; "
                "check against a current node")
    try:
        txid = bytes.fromhex(named)
    except ValueError:
        txid = b""
    try:
        tx = ledger.tx(txid) if len(txid) == 32 else None
    except LedgerError as e:
        return f"the ledger copy cannot read approval_tx {named[:64]!r}: {e}"
    if tx is None or tx.type != "approval":
        return f"approval_tx {named[:64]!r} is no approval transaction on the ledger"
    key = registry.key(tx.sigs[0].kid) if tx.sigs else None
    decided_by = key["agency"] if key else None
    if decided_by != anchor.body["issuer"]:
        return (f"the approval transaction was signed by {decided_by!r}, the credential by "
                f"{anchor.body['issuer']!r}")
    for claim in ("service", "decision"):
        if claim not in claims:
            return f"{claim} is not disclosed: the decision cannot be checked (ask for it)"
        if claims[claim] != tx.body[claim]:
            return (f"the credential says {claim} {str(claims[claim])[:80]!r}, the ledger's "
                    f"decision {tx.body[claim]!r}")
    # the others the decision states, where disclosed (a verifier shows them as checked): a
    # standard-path decision's credential saying "fast_track" passed
    stated = {"path": tx.body["path"], "reasons": ",".join(tx.body["reasons"]),
              "rule_version": tx.body["rule_hash"].hex()}
    rule = registry.rule_by_hash(tx.body["rule_hash"])
    if rule is not None:  # the documents its rule still requires on that path (none: rejected)
        # (as contracts.rules._documents gives them, and node.approvals writes them)
        docs = [] if tx.body["decision"] == "rejected" else rule["documents"][
            "fast_track" if tx.body["path"] == "fast_track" else "standard"]
        stated["documents"] = ",".join(docs) or "none"
    for claim, want in stated.items():
        if claim in claims and claims[claim] != want:
            return (f"the credential says {claim} {str(claims[claim])[:80]!r}, the ledger's "
                    f"decision {want!r}")
    # the day it was decided, in the agency's calendar: the UTC day of the decision's ts, or
    # the one either side (time zones run from UTC-12 to UTC+14); a backdated one passed
    days = {utc_text(tx.body["ts"] + d * 86400, "%Y-%m-%d") for d in (-1, 0, 1)}
    if "decided_on" in claims and claims["decided_on"] not in days:
        return (f"the credential says decided_on {str(claims['decided_on'])[:80]!r}, the "
                f"ledger's decision was made on {utc_text(tx.body['ts'], '%Y-%m-%d')} (UTC)")
    return None


_STEPS = ("envelope", "checkpoint", "anchor_inclusion", "anchor", "issuer_authority", "sd_jwt",
          "anchor_binding", "requested_claims")


def _failed_step(report: Report) -> str:
    return _STEPS[len(report.checks)] if len(report.checks) < len(_STEPS) else "verification"


def _check_anchor(env: Envelope, registry: Registry) -> Tx:
    # Called only after inclusion under a final checkpoint: these exact bytes were committed, so
    # every node already ran the strict parse on them.
    tx = Tx.from_checked_bytes(env.anchor)
    if tx.type != "issue" or tx.net != registry.network:
        raise DecodeError(f"the anchor is a {tx.type} transaction of {tx.net!r}, not an issue "
                          f"of {registry.network!r}", "anchor")
    # No second signature check: the bytes are in a log a quorum of agencies signed, and every
    # node verified the signature and the issuer's rights before committing them (ADR 8).
    return tx


def _check_binding(anchor: Tx, env: Envelope) -> None:
    jwt = env.sd_jwt_kb.split("~", 1)[0]
    if hashlib.sha256(jwt.encode("ascii", "replace")).digest() != anchor.body["credential_id"]:
        raise DecodeError("the anchor is for a different credential (credential_id is not "
                          "SHA-256 of this issuer-signed JWT)", "anchor.credential_id")


def issuer_jwk_at_issuance(anchor: Tx, registry: Registry) -> dict[str, str]:
    """The JWK of the key that anchored ``anchor``, if it was a valid issuer key of the anchoring
    agency and the agency was granted the type at issuance time; else LedgerError."""
    b = anchor.body
    kid = anchor.sigs[0].kid
    key = registry.key(kid)
    t = int(b["valid_from"])
    if len(anchor.sigs) != 1 or key is None or key["agency"] != b["issuer"] \
            or not registry.key_valid(kid, t, "issuer"):
        why = ""
        if key is not None and key["invalid_from"] is not None and t >= key["invalid_from"]:
            why = (f": governance invalidated that key from {key['invalid_from']} (a rotation or "
                   f"a key compromise)")
        raise LedgerError(f"the key that anchored this credential was not a valid issuer key of "
                          f"{b['issuer']!r} at issuance time {t}{why}")
    if not registry.grant_covers(b["issuer"], b["type"], t):
        raise LedgerError(f"{b['issuer']!r} was not granted {b['type']!r} at issuance time {t}")
    return sdjwt.jwk_from_ed25519(registry.public_keys[kid].raw)


def _check_request(claims: dict[str, Any], anchor: Tx, request: Request) -> None:
    b = anchor.body
    if claims.get("vct") != b["type"] or b["type"] != request.credential_type:
        raise LedgerError(f"credential type {claims.get('vct')!r} (anchored as {b['type']!r}) "
                          f"is not the requested {request.credential_type!r}")
    # RFC 9901 7.1 step 2.3: the key that signed is the anchoring issuer's, so `iss` must name it.
    iss = issuer_uri(anchor.net, b["issuer"])
    if claims.get("iss") != iss:
        raise LedgerError(f"the credential's iss {str(claims.get('iss'))[:80]!r} is not its "
                          f"anchoring issuer {iss!r}")
    # 7.1 step 5: nbf and exp are required here, and are the window the ledger anchored.
    if claims.get("nbf") != b["valid_from"] or claims.get("exp") != b["valid_until"]:
        raise LedgerError(f"the credential's validity window (nbf {claims.get('nbf')!r}, exp "
                          f"{claims.get('exp')!r}) is not its anchor's ({b['valid_from']}, "
                          f"{b['valid_until']})")
    status = claims.get("status")
    st = status.get("status_list") if isinstance(status, dict) else None
    if not isinstance(st, dict):
        raise LedgerError("the credential's status claim has no status_list object")
    number, entry = status_list_of(b["status_index"])
    if st.get("idx") != entry:
        raise LedgerError("the credential's status index differs from its anchor's")
    if st.get("uri") != status_list_uri(anchor.net, b["issuer"], b["type"], number):
        raise LedgerError("the credential's status list is not its issuer's list for its type "
                          "and its anchor's status index")
    missing = [c for c in request.claims if c not in claims]
    if missing:
        raise LedgerError(f"requested claims not disclosed: {missing}")


def bundle_from_store(store: Store, leaf_index: int, sd_jwt: str,
                      checkpoint: bytes | None = None) -> Bundle:
    """The holder's bundle for the committed anchor at ``leaf_index``: proven against
    ``checkpoint`` (default: the latest stored checkpoint the head covers)."""
    text = checkpoint if checkpoint is not None else store.head_checkpoint()
    if text is None:
        raise StoreError("no checkpoint is stored: the anchor cannot be proven yet")
    signed = SignedCheckpoint.from_text(text.decode()).checkpoint
    anchor = store.entry(leaf_index)
    proof = store.inclusion_proof(leaf_index, signed.size)
    # The node hashes are read without LevelDB's checksums (ADR 47): a damaged one is found
    # here, before the holder is handed a bundle every verifier would refuse.
    try:
        merkle.verify_inclusion(merkle.leaf_hash(anchor), leaf_index, signed.size, proof,
                                signed.root)
    except ProofError as e:
        raise StoreError(f"the store's proof of leaf {leaf_index} does not reach its "
                         f"checkpoint's root ({e}): the store is damaged") from e
    return Bundle(anchor, leaf_index, tuple(proof), text.decode(), sd_jwt)
