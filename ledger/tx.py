"""Transactions: closed schemas, the signed envelope, and transaction ids.

Wire form (canonical msgpack, see :mod:`ledger.codec`)::

    {"payload": bytes, "sigs": [{"kid": bytes32, "sig": bytes64}, ...], "v": 1}

``payload`` is itself canonical msgpack of ``{"body": {...}, "net": str, "type": str}``; every
signature is over ``payload`` in the ``tx`` signing domain. The transaction id is SHA-256 of the
whole envelope bytes, and those bytes are the RFC 9162 leaf entry. Parse untrusted bytes only with
:meth:`Tx.from_bytes`; build new ones with :func:`make_tx` / :meth:`Tx.sign`.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError, SignatureError
from ledger.keys import PrivateKey, PublicKey

__all__ = [
    "APPROVAL_DECISIONS",
    "APPROVAL_PATHS",
    "CLAIM_KINDS",
    "GOV_ACTIONS",
    "MAX_SIGS",
    "MAX_TX_SIZE",
    "RESERVED_CLAIM_NAMES",
    "RULE_AREAS",
    "STATUSES",
    "TX_TYPES",
    "Tx",
    "TxSig",
    "is_identifier",
    "make_tx",
    "parse_body",
    "parse_rule",
]

MAX_TX_SIZE = 64 * 1024
MAX_SIGS = 64
"""Signatures one transaction carries at most: so a genesis has at most 64 founders, and a
quorum (the signatures governance needs) is at most 64 (ADR 48)."""
TX_TYPES = frozenset({"genesis", "governance", "issue", "status", "credit", "approval"})
STATUSES = frozenset({"valid", "revoked", "suspended"})
CLAIM_KINDS = frozenset({"string", "int", "bool", "date"})
GOV_ACTIONS = frozenset({
    "add_agency", "remove_agency", "rotate_key", "invalidate_key", "grant", "withdraw_grant",
    "register_type", "set_quorum", "set_credit_policy", "grant_credit", "withdraw_credit_grant",
    "register_rule",
})
KEY_ROLES = frozenset({"node", "issuer"})
APPROVAL_DECISIONS = frozenset({"approved", "rejected", "needs_review"})
APPROVAL_PATHS = frozenset({"fast_track", "standard"})
RULE_AREAS = frozenset({"official_documents", "certifications", "qualifications",
                        "micro_allowances", "licensing"})
MAX_EXPR = 2000

RESERVED_CLAIM_NAMES = frozenset({"iss", "iat", "nbf", "exp", "cnf", "vct", "status", "sub"})
"""Claim names a registered type may not use: the SD-JWT VC's own members (``sub`` too, which
the VC spec defines though :mod:`ledger.sdjwt` would disclose it); ``_sd`` and the like cannot
be claim ids anyway."""
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}\Z")  # \Z: "$" would let a trailing "\n" in
_MAX_TIME = (1 << 40)  # seconds; far beyond any real date, keeps arithmetic in int64


def _ident(f: Fields, name: str) -> str:
    v = f.str(name, max_len=64)
    if not _ID.match(v):
        raise DecodeError(f"{v!r} is not an identifier ([a-z0-9._-], 1-64 chars)",
                          f"{f.where}.{name}")
    return v


def _time(f: Fields, name: str) -> int:
    return f.int(name, lo=0, hi=_MAX_TIME)


@dataclass(frozen=True, slots=True)
class TxSig:
    kid: bytes
    sig: bytes


@dataclass(frozen=True, slots=True)
class Tx:
    """A parsed, canonical, schema-checked transaction. Signatures are *not* verified here."""

    net: str
    type: str
    body: Mapping[str, Any]
    sigs: tuple[TxSig, ...]
    payload: bytes
    raw: bytes
    txid: bytes

    @classmethod
    def from_bytes(cls, unverified: bytes) -> Tx:
        """Parse envelope bytes: canonical, closed schema, known type; raises DecodeError."""
        fast = _fast_parse(unverified)
        if fast is not None:
            return fast
        env = Fields(codec.decode(unverified, max_size=MAX_TX_SIZE, what="tx"), "tx")
        env.int("v", lo=1, hi=1)
        payload = env.bytes("payload", max_len=MAX_TX_SIZE)
        sig_items = env.list("sigs", max_len=MAX_SIGS)
        env.done()
        if not sig_items:
            raise DecodeError("a transaction needs at least one signature", "tx.sigs")
        sigs = []
        for i, item in enumerate(sig_items):
            s = Fields(item, f"tx.sigs[{i}]")
            sigs.append(TxSig(s.bytes("kid", size=32), s.bytes("sig", size=64)))
            s.done()
        if len({s.kid for s in sigs}) != len(sigs):
            raise DecodeError("the same key signed twice", "tx.sigs")
        p = Fields(codec.decode(payload, max_size=MAX_TX_SIZE, what="tx.payload"), "tx.payload")
        net = _ident(p, "net")
        kind = p.str("type", choices=TX_TYPES)
        body = parse_body(kind, p.raw_map("body"))
        p.done()
        raw = bytes(unverified)
        return cls(net, kind, body, tuple(sigs), payload, raw, hashlib.sha256(raw).digest())

    @classmethod
    def from_checked_bytes(cls, raw: bytes) -> Tx:
        """Rebuild a Tx from bytes that :meth:`from_bytes` already accepted *in this program*.

        Only for :mod:`ledger.sigcheck`, whose worker processes ran the strict parse: a closed
        schema means the accepted body equals the decoded map, so plain unpacking suffices.
        Never call it on bytes from outside that no worker has checked.
        """
        env = msgpack.unpackb(raw, raw=False)
        payload = env["payload"]
        p = msgpack.unpackb(payload, raw=False)
        sigs = tuple([TxSig(s["kid"], s["sig"]) for s in env["sigs"]])
        return cls(p["net"], p["type"], p["body"], sigs, payload, raw,
                   hashlib.sha256(raw).digest())

    def verify_signatures(self, keys: Mapping[bytes, PublicKey]) -> None:
        """Check every signature with the key its kid names; raise SignatureError otherwise."""
        for s in self.sigs:
            key = keys.get(s.kid)
            if key is None:
                raise SignatureError(f"signer key {s.kid.hex()[:16]} is not in the registry")
            key.verify("tx", self.payload, s.sig)

    def sign(self, key: PrivateKey) -> Tx:
        """A new transaction with ``key``'s signature added (for k-of-n governance)."""
        if any(s.kid == key.kid for s in self.sigs):
            return self
        if len(self.sigs) >= MAX_SIGS:
            # one more would make bytes no one can parse again (a proposal lost, ADR 48)
            raise DecodeError(f"a transaction carries at most {MAX_SIGS} signatures, and this "
                              f"one has {len(self.sigs)}: no more can be added", "tx.sigs")
        sigs = (*self.sigs, TxSig(key.kid, key.sign("tx", self.payload)))
        signed = _envelope(self.net, self.type, self.body, self.payload, sigs)
        if len(signed.raw) > MAX_TX_SIZE:  # a payload near the limit: as at 65 signatures
            raise DecodeError(f"with one more signature the transaction is {len(signed.raw)} "
                              f"bytes, over the {MAX_TX_SIZE}-byte limit: no node could read "
                              f"it", "tx")
        return signed

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly view (bytes as hex) for APIs and explorers."""
        return {"txid": self.txid.hex(), "net": self.net, "type": self.type,
                "body": _jsonable(self.body), "signers": [s.kid.hex() for s in self.sigs]}


# --- the fast path of Tx.from_bytes (ADR 25) ------------------------------------------------
#
# Most transactions are flat `issue`, `status` and `credit` envelopes. For those, exact key lists,
# exact types and a C re-encode check replace the generic hooks and Fields readers. It accepts a
# subset of what the strict path accepts, with the same result; anything else returns None and
# the strict path gives the precise error. tests/test_tx_fastpath.py compares both.

_PAYLOAD_KEYS = ["body", "net", "type"]
_ISSUE_KEYS = sorted(["credential_id", "issuer", "type", "valid_from", "valid_until",
                      "status_index", "ts"])
_STATUS_KEYS = sorted(["credential_id", "status", "reason", "ts"])
_CREDIT_KEYS = sorted(["subject", "category", "points", "reason", "date", "expiry", "ts"])
_CREDIT_KEYS_W = sorted([*_CREDIT_KEYS, "withdraws"])


_IDENTS: set[str] = set()  # identifiers seen to match _ID: networks, agencies, types repeat


def is_identifier(v: object) -> bool:
    """Whether ``v`` is an identifier of the ledger (a network, agency, type or category id:
    ``[a-z0-9][a-z0-9._-]``, 1 to 64 characters)."""
    return _is_ident(v)


def _is_ident(v: object) -> bool:
    if type(v) is not str:
        return False
    if v in _IDENTS:
        return True
    if len(v) > 64 or _ID.match(v) is None:
        return False
    if len(_IDENTS) >= 4096:
        _IDENTS.clear()
    _IDENTS.add(v)
    return True


def _is_time(v: object) -> bool:
    return type(v) is int and 0 <= v <= _MAX_TIME


def _is_b32(v: object) -> bool:
    return type(v) is bytes and len(v) == 32


def _fast_body(kind: str, b: dict[str, Any]) -> dict[str, Any] | None:
    keys = list(b)
    if kind == "issue":
        if (keys != _ISSUE_KEYS or not _is_b32(b["credential_id"]) or not _is_ident(b["issuer"])
                or not _is_ident(b["type"]) or not _is_time(b["valid_from"])
                or not _is_time(b["valid_until"]) or not _is_time(b["ts"])
                or type(b["status_index"]) is not int
                or not 0 <= b["status_index"] <= (1 << 32) - 1
                or b["valid_until"] <= b["valid_from"]):
            return None
        return {"credential_id": b["credential_id"], "issuer": b["issuer"], "type": b["type"],
                "valid_from": b["valid_from"], "valid_until": b["valid_until"],
                "status_index": b["status_index"], "ts": b["ts"]}
    if kind == "status":
        reason = b.get("reason")
        if (keys != _STATUS_KEYS or not _is_b32(b["credential_id"])
                or type(b["status"]) is not str or b["status"] not in STATUSES
                or type(reason) is not str or len(reason) > 64 or not _is_time(b["ts"])):
            return None
        return {"credential_id": b["credential_id"], "status": b["status"], "reason": reason,
                "ts": b["ts"]}
    if kind == "credit":
        withdraws = keys == _CREDIT_KEYS_W
        reason, points = b.get("reason"), b.get("points")
        if (not (withdraws or keys == _CREDIT_KEYS) or not _is_b32(b["subject"])
                or not _is_ident(b["category"]) or type(points) is not int
                or not -1_000_000 <= points <= 1_000_000
                or type(reason) is not str or len(reason) > 64 or not _is_time(b["date"])
                or not _is_time(b["expiry"]) or not _is_time(b["ts"])
                or (withdraws and not _is_b32(b["withdraws"]))):
            return None
        out = {"subject": b["subject"], "category": b["category"], "points": points,
               "reason": reason, "date": b["date"], "expiry": b["expiry"], "ts": b["ts"]}
        if withdraws:
            out["withdraws"] = b["withdraws"]
        return out
    return None


# The canonical envelope has one byte layout: its keys sorted ("payload" < "sigs" < "v"), every
# length and integer in its shortest form. Matching that layout byte for byte replaces unpacking
# the envelope and re-encoding it (ADR 28).
_ENV_HEAD = b"\x83\xa7payload"
_SIGS_HEAD = b"\xa4sigs"
_KID_HEAD = b"\x82\xa3kid\xc4\x20"  # {"kid": bin 32, ...
_SIG_HEAD = b"\xa3sig\xc4\x40"  # ..., "sig": bin 64}
_SIG_ITEM = len(_KID_HEAD) + 32 + len(_SIG_HEAD) + 64
_ENV_TAIL = b"\xa1v\x01"  # "v": 1


def _split_envelope(raw: bytes) -> tuple[bytes, list[TxSig]] | None:
    """The payload and signatures of a canonical envelope with 1..15 signatures, or None."""
    if len(raw) < 12 or raw[:9] != _ENV_HEAD:
        return None
    tag = raw[9]
    if tag == 0xC4:  # bin 8
        n, p = raw[10], 11
    elif tag == 0xC5:  # bin 16, only for lengths bin 8 cannot hold
        n, p = int.from_bytes(raw[10:12], "big"), 12
        if n < 256:
            return None
    else:
        return None
    payload = raw[p:p + n]
    p += n
    if len(payload) != n or raw[p:p + 5] != _SIGS_HEAD:
        return None
    count = raw[p + 5] - 0x90 if len(raw) > p + 5 else 0  # fixarray
    if not 0 < count <= 15:
        return None
    p += 6
    sigs = []
    for _ in range(count):
        if raw[p:p + 7] != _KID_HEAD or raw[p + 39:p + 45] != _SIG_HEAD:
            return None
        sigs.append(TxSig(raw[p + 7:p + 39], raw[p + 45:p + 109]))
        p += _SIG_ITEM
    if len(raw) != p + 3 or raw[p:] != _ENV_TAIL:
        return None
    if count > 1 and len({s.kid for s in sigs}) != count:
        return None
    return payload, sigs


def _fast_parse(unverified: object) -> Tx | None:
    """The strict parse for flat transactions, or None: then the strict path decides."""
    if type(unverified) is not bytes or len(unverified) > MAX_TX_SIZE:
        return None
    try:
        env = _split_envelope(unverified)
        if env is None:
            return None
        payload, sigs = env
        p = codec.unpack_plain(payload, max_size=MAX_TX_SIZE)
        if type(p) is not dict or list(p) != _PAYLOAD_KEYS:
            return None
        net, kind, raw_body = p["net"], p["type"], p["body"]
        if not _is_ident(net) or type(kind) is not str or type(raw_body) is not dict:
            return None
        body = _fast_body(kind, raw_body)
        # Every value has an exact plain type, so equal re-encoded bytes mean canonical.
        if body is None or codec.pack_plain(p) != payload:
            return None
    except codec.UNPACK_ERRORS:
        return None
    return Tx(net, kind, body, tuple(sigs), payload, unverified,
              hashlib.sha256(unverified).digest())


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, Mapping):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _envelope(net: str, kind: str, body: Mapping[str, Any], payload: bytes,
              sigs: tuple[TxSig, ...]) -> Tx:
    raw = codec.encode({"v": 1, "payload": payload,
                        "sigs": [{"kid": s.kid, "sig": s.sig} for s in sigs]})
    return Tx(net, kind, body, sigs, payload, raw, hashlib.sha256(raw).digest())


def make_tx(net: str, kind: str, body: Mapping[str, Any], signers: Iterable[PrivateKey]) -> Tx:
    """Build, schema-check and sign a transaction. Raises DecodeError on a malformed body."""
    payload = codec.encode({"net": net, "type": kind, "body": body})
    tx = Tx.from_bytes(codec.encode({"v": 1, "payload": payload,
                                     "sigs": [{"kid": bytes(32), "sig": bytes(64)}]}))
    unsigned = _envelope(tx.net, tx.type, tx.body, tx.payload, ())
    keys = list(signers)
    if not keys:
        raise ValueError("a transaction needs at least one signer")
    for k in keys:
        unsigned = unsigned.sign(k)
    return unsigned


# --- bodies ------------------------------------------------------------------------------------


def _agency_spec(f: Fields) -> dict[str, Any]:
    out = {"id": _ident(f, "id"), "name": f.str("name", max_len=200),
           "node_key": f.bytes("node_key", size=32), "issuer_key": f.bytes("issuer_key", size=32)}
    f.done()
    return out


def _genesis(f: Fields) -> dict[str, Any]:
    agencies = []
    # every founder signs the genesis, so there are at most MAX_SIGS of them
    for i, a in enumerate(f.list("agencies", max_len=MAX_SIGS)):
        agencies.append(_agency_spec(Fields(a, f"{f.where}.agencies[{i}]")))
    ids = [a["id"] for a in agencies]
    if len(set(ids)) != len(ids):
        raise DecodeError("duplicate agency id", f"{f.where}.agencies")
    quorum = f.int("quorum", lo=1, hi=MAX_SIGS)
    if not agencies or quorum > len(agencies):
        raise DecodeError(f"quorum {quorum} needs 1..{len(agencies)} agencies",
                          f"{f.where}.quorum")
    return {"network": _ident(f, "network"), "time": _time(f, "time"), "agencies": agencies,
            "quorum": quorum}


def _type_def(f: Fields) -> dict[str, Any]:
    claims_raw = f.raw_map("claims", max_len=64)
    claims: dict[str, str] = {}
    for name, kind in claims_raw.items():
        if not _ID.match(name) or not isinstance(kind, str) or kind not in CLAIM_KINDS:
            raise DecodeError(f"claim {name!r}: kind must be one of {sorted(CLAIM_KINDS)}",
                              f"{f.where}.claims")
        if name in RESERVED_CLAIM_NAMES:
            raise DecodeError(f"claim {name!r} is a name SD-JWT VCs reserve (iss, vct, status, "
                              "...): no credential of the type could be issued",
                              f"{f.where}.claims")
        claims[name] = kind
    derived_raw = f.raw_map("derived", max_len=16)
    derived: dict[str, Any] = {}
    for name, spec in derived_raw.items():
        if not _ID.match(name):  # as a claim's: a look-alike (Cyrillic U+0430) passed for another
            raise DecodeError(f"derived claim {name!r}: a name is lower-case ASCII letters, "
                              "digits, '.', '_' and '-'", f"{f.where}.derived")
        d = Fields(spec, f"{f.where}.derived.{name}")
        src = d.str("claim", max_len=64)
        years = d.int("age_over", lo=1, hi=150)
        d.done()
        if claims.get(src) != "date":
            raise DecodeError(f"derived claim {name!r} needs a date claim, not {src!r}",
                              f"{f.where}.derived")
        if name in claims or name in RESERVED_CLAIM_NAMES:
            raise DecodeError(f"derived claim {name!r} clashes with a claim or a name SD-JWT "
                              "VCs reserve", f"{f.where}.derived")
        derived[name] = {"claim": src, "age_over": years}
    out = {"id": _ident(f, "id"), "title": f.str("title", max_len=200), "claims": claims,
           "derived": derived}
    if not claims:
        raise DecodeError("a credential type needs at least one claim", f"{f.where}.claims")
    f.done()
    return out


def _governance(f: Fields) -> dict[str, Any]:
    seq = f.int("seq", lo=1)
    action = f.str("action", choices=GOV_ACTIONS)
    a = f.map("args")
    args: dict[str, Any]
    if action == "add_agency":
        args = {"agency": _agency_spec(a.map("agency"))}
    elif action == "remove_agency":
        args = {"agency": _ident(a, "agency")}
    elif action == "rotate_key":
        args = {"agency": _ident(a, "agency"), "role": a.str("role", choices=KEY_ROLES),
                "new_key": a.bytes("new_key", size=32), "at": _time(a, "at")}
    elif action == "invalidate_key":
        args = {"kid": a.bytes("kid", size=32), "from": _time(a, "from")}
    elif action == "grant":
        args = {"agency": _ident(a, "agency"), "type": _ident(a, "type"),
                "from": _time(a, "from"), "until": _time(a, "until")}
        if args["until"] <= args["from"]:
            raise DecodeError("grant window ends before it starts", f"{a.where}.until")
    elif action == "withdraw_grant":
        args = {"agency": _ident(a, "agency"), "type": _ident(a, "type"), "at": _time(a, "at")}
    elif action == "register_type":
        args = {"type": _type_def(a.map("type"))}
    elif action == "set_credit_policy":
        pf = a.map("policy")
        args = {"policy": _credit_policy(pf)}
        pf.done()
    elif action == "grant_credit":
        args = {"agency": _ident(a, "agency"), "category": _ident(a, "category"),
                "from": _time(a, "from"), "until": _time(a, "until")}
        if args["until"] <= args["from"]:
            raise DecodeError("grant window ends before it starts", f"{a.where}.until")
    elif action == "withdraw_credit_grant":
        args = {"agency": _ident(a, "agency"), "category": _ident(a, "category"),
                "at": _time(a, "at")}
    elif action == "register_rule":
        rf = a.map("rule")
        args = {"rule": rule_fields(rf)}
        rf.done()
    else:  # set_quorum
        # a governance transaction needs the quorum's signatures: at most MAX_SIGS (ADR 48)
        args = {"quorum": a.int("quorum", lo=1, hi=MAX_SIGS)}
    a.done()
    return {"seq": seq, "action": action, "args": args}


def _issue(f: Fields) -> dict[str, Any]:
    out: dict[str, Any] = {
           "credential_id": f.bytes("credential_id", size=32), "issuer": _ident(f, "issuer"),
           "type": _ident(f, "type"), "valid_from": _time(f, "valid_from"),
           "valid_until": _time(f, "valid_until"),
           "status_index": f.int("status_index", lo=0, hi=(1 << 32) - 1),
           "ts": _time(f, "ts")}
    if out["valid_until"] <= out["valid_from"]:
        raise DecodeError("validity window ends before it starts", f"{f.where}.valid_until")
    return out


def _status(f: Fields) -> dict[str, Any]:
    return {"credential_id": f.bytes("credential_id", size=32),
            "status": f.str("status", choices=STATUSES), "reason": f.str("reason", max_len=64),
            "ts": _time(f, "ts")}


def _credit(f: Fields) -> dict[str, Any]:
    out = {"subject": f.bytes("subject", size=32), "category": _ident(f, "category"),
           "points": f.int("points", lo=-1_000_000, hi=1_000_000),
           "reason": f.str("reason", max_len=64), "date": _time(f, "date"),
           "expiry": _time(f, "expiry"), "ts": _time(f, "ts")}
    if f.has("withdraws"):  # optional: this event withdraws an earlier one (by its txid)
        out["withdraws"] = f.bytes("withdraws", size=32)
    return out


def _credit_policy(f: Fields) -> dict[str, Any]:
    """Weights per category (percent), base score, bounds, half-life, serious-event level."""
    categories = []
    for i, c in enumerate(f.list("categories", max_len=64)):
        cf = Fields(c, f"{f.where}.categories[{i}]")
        categories.append({"name": _ident(cf, "name"), "weight": cf.int("weight", lo=0, hi=1000)})
        cf.done()
    names = [c["name"] for c in categories]
    if not names or len(set(names)) != len(names):
        raise DecodeError("a credit policy names 1..64 distinct categories",
                          f"{f.where}.categories")
    out: dict[str, Any] = {
        "categories": categories, "base": f.int("base", lo=-1_000_000, hi=1_000_000),
        "min": f.int("min", lo=-1_000_000, hi=1_000_000),
        "max": f.int("max", lo=-1_000_000, hi=1_000_000),
        "half_life": f.int("half_life", lo=0, hi=_MAX_TIME),
        "serious_at": f.int("serious_at", lo=1, hi=1_000_000)}
    if not out["min"] <= out["base"] <= out["max"]:
        raise DecodeError("bounds must satisfy min <= base <= max", f"{f.where}.base")
    return out


def _expr(f: Fields, name: str, *, empty: bool = False) -> str:
    v = f.str(name, max_len=MAX_EXPR)
    if not v.strip() and not empty:
        raise DecodeError("an expression cannot be empty", f"{f.where}.{name}")
    return v


def _outcome(f: Fields) -> dict[str, Any]:
    return {"decision": f.str("decision", choices=APPROVAL_DECISIONS),
            "reason": _ident(f, "reason")}


def _names(f: Fields, name: str, max_len: int) -> list[str]:
    items = f.list(name, max_len=max_len)
    if not all(isinstance(x, str) and _ID.match(x) for x in items) or \
            len(set(items)) != len(items):
        raise DecodeError("distinct identifiers ([a-z0-9._-], 1-64 chars)", f"{f.where}.{name}")
    return items


def _param(f: Fields) -> dict[str, Any]:
    """``{name, int|str|bool: value}``: a named constant, typed by its one value field."""
    name = _ident(f, "name")
    kinds = [k for k in ("int", "str", "bool") if f.has(k)]
    if len(kinds) != 1:
        raise DecodeError("a parameter has exactly one of int, str, bool", f"{f.where}")
    if kinds[0] == "int":
        return {"name": name, "int": f.int("int", lo=-(1 << 53), hi=1 << 53)}
    if kinds[0] == "str":
        return {"name": name, "str": f.str("str", max_len=200)}
    return {"name": name, "bool": f.bool("bool")}


def rule_fields(f: Fields) -> dict[str, Any]:
    """The closed schema of an approval rule (header plus CEL expression texts).

    Structure only: compiling the expressions and checking the claims against the registered
    credential types is the state machine's job at registration (with the rule engine).
    """
    needs = []
    for i, n in enumerate(f.list("needs", max_len=8)):
        nf = Fields(n, f"{f.where}.needs[{i}]")
        kind = _ident(nf, "type")
        claims = _names(nf, "claims", 32)
        if not claims:
            raise DecodeError("name at least one claim", f"{nf.where}.claims")
        nf.done()
        needs.append({"type": kind, "claims": claims})
    if not needs or len({n["type"] for n in needs}) != len(needs):
        raise DecodeError("a rule needs 1..8 distinct credential types", f"{f.where}.needs")
    params = []
    for i, p in enumerate(f.list("params", max_len=32)):
        pf = Fields(p, f"{f.where}.params[{i}]")
        params.append(_param(pf))
        pf.done()
    if len({p["name"] for p in params}) != len(params):
        raise DecodeError("parameter names are distinct", f"{f.where}.params")
    subject = f.list("subject", max_len=2)  # [] or [type, claim]: the applicant's identifier
    if len(subject) == 1 or not all(isinstance(x, str) and _ID.match(x) for x in subject):
        raise DecodeError("[] or [credential type, claim] naming the applicant's identifier",
                          f"{f.where}.subject")
    clauses = []
    for i, c in enumerate(f.list("clauses", max_len=32)):
        cf = Fields(c, f"{f.where}.clauses[{i}]")
        clauses.append({"when": _expr(cf, "when"), **_outcome(cf)})
        cf.done()
    of = f.map("otherwise")
    otherwise = _outcome(of)
    of.done()
    df = f.map("documents")
    documents = {"fast_track": _names(df, "fast_track", 16),
                 "standard": _names(df, "standard", 16)}
    df.done()
    return {"service": _ident(f, "service"), "title": f.str("title", max_len=200),
            "area": f.str("area", choices=RULE_AREAS), "agency": _ident(f, "agency"),
            "needs": needs, "params": params, "subject": subject, "clauses": clauses,
            "otherwise": otherwise, "fast_track": _expr(f, "fast_track", empty=True),
            "fast_track_reason": _ident(f, "fast_track_reason"), "documents": documents}


def parse_rule(unverified: Any, where: str = "rule") -> dict[str, Any]:
    """Check an untrusted rule map against the closed rule schema (DecodeError otherwise)."""
    f = Fields(unverified, where)
    out = rule_fields(f)
    f.done()
    return out


def _approval(f: Fields) -> dict[str, Any]:
    reasons = f.list("reasons", max_len=32)
    if not all(isinstance(r, str) and 0 < len(r) <= 64 for r in reasons):
        raise DecodeError("reason codes are short strings", f"{f.where}.reasons")
    return {"service": _ident(f, "service"), "rule_hash": f.bytes("rule_hash", size=32),
            "decision": f.str("decision", choices=APPROVAL_DECISIONS),
            "path": f.str("path", choices=APPROVAL_PATHS), "reasons": reasons,
            "evidence": f.bytes("evidence", size=32), "ts": _time(f, "ts")}


_BODIES = {"genesis": _genesis, "governance": _governance, "issue": _issue, "status": _status,
           "credit": _credit, "approval": _approval}


def parse_body(kind: str, unverified: Mapping[str, Any]) -> dict[str, Any]:
    """Check ``unverified`` against the closed schema of ``kind``; return the normalized body."""
    f = Fields(dict(unverified), f"tx.body<{kind}>")
    out: dict[str, Any] = _BODIES[kind](f)
    f.done()
    return out
