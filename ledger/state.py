"""The deterministic state machine: the registry and credential status, and ``apply``.

Pure: no I/O. The credential table is read through a :class:`StateView` (the store gives one backed
by LevelDB); changes accumulate in the :class:`Machine` overlay until the caller takes them. Every
rule is evaluated against the state before the transaction and the *block time*; a refused
transaction raises :class:`~ledger.errors.TxRejected` with a stable ``code`` and changes nothing.

State keys (values are canonical msgpack):
``c`` + credential_id → credential record; ``i`` + issuer NUL type NUL index(4) → credential_id;
``s`` + subject (32-byte keyed pseudonym) → that subject's credit events, in commit order.

Credit and approvals (ADR 17): a ``credit`` transaction needs a credit policy and a credit grant;
an ``approval`` needs a registered rule for its service. Registering a rule compiles its CEL
expressions, which lives in ``contracts``: the machine calls a :class:`RuleEngine` that the
program installs (:func:`use_rule_engine`) or that is found through the ``credledger.rule_engines``
entry point. Without one, a ``register_rule`` raises :class:`RuleEngineMissing` (not a rejection:
a node that cannot judge a rule stops rather than decide differently from the others).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from ledger import codec
from ledger.checkpoint import MAX_SIGNATURES
from ledger.errors import (
    DecodeError,
    LedgerError,
    SignatureError,
    StoreError,
    TxRejected,
    damaged,
)
from ledger.keys import PublicKey
from ledger.tx import Tx

__all__ = [
    "MAX_CREDIT_EVENTS",
    "MAX_REGISTRY_SIZE",
    "RULES",
    "RULES_CHANGES",
    "STATUS_LISTS",
    "STATUS_LIST_SIZE",
    "Credential",
    "CreditEvent",
    "Machine",
    "Registry",
    "RuleEngine",
    "RuleEngineMissing",
    "StateView",
    "credential_key",
    "credit_events",
    "credit_key",
    "index_key",
    "policy_weights",
    "registry_after",
    "rule_cost_problem",
    "rule_engine",
    "rule_hash",
    "rules_changes_since",
    "status_list_of",
    "use_rule_engine",
]

RULE_DOMAIN = b"credledger/v1/rule\x00"


class RuleEngine(Protocol):
    """What the state machine needs from an approval-rule implementation (``contracts``).

    ``check`` compiles every expression of a structurally valid rule and raises ValueError
    (with a message naming the expression) if one does not compile or uses a name it may not.
    It must be pure and give the same answer on every node.
    """

    def check(self, rule: Mapping[str, Any]) -> None: ...


class RuleEngineMissing(LedgerError):
    """A rule had to be judged but no rule engine is installed (install contracts)."""


_engine: list[RuleEngine] = []


def use_rule_engine(engine: RuleEngine) -> None:
    """Install the rule engine every :class:`Machine` uses unless given one explicitly."""
    _engine[:] = [engine]


def rule_engine() -> RuleEngine:
    """The installed engine, else the one the ``credledger.rule_engines`` entry point names."""
    if not _engine:
        for ep in metadata.entry_points(group="credledger.rule_engines"):
            use_rule_engine(ep.load()())
            break
    if not _engine:
        raise RuleEngineMissing("no approval-rule engine is installed (contracts.rules)")
    return _engine[0]


def rule_cost_problem(rule: Mapping[str, Any]) -> str | None:
    """Why evaluating ``rule`` could cost too much at every application, as the installed rule
    engine judges it (``contracts``: ADR 57), else None; also None when no engine is installed
    or the engine does not judge costs. Not a rule of the state machine: the tools that build
    rules ask it before a quorum signs one that nodes' ``/v1/tx`` refuses."""
    try:
        engine = rule_engine()
    except RuleEngineMissing:
        return None
    judge = getattr(engine, "cost_problem", None)
    return None if judge is None else judge(rule)


def rule_hash(rule: Mapping[str, Any]) -> bytes:
    """A rule's version: SHA-256 over the rule domain and its canonical bytes."""
    return hashlib.sha256(RULE_DOMAIN + codec.encode(dict(rule))).digest()


def policy_weights(policy: Mapping[str, Any]) -> dict[str, int]:
    """Category → weight (percent) of a credit policy."""
    return {c["name"]: int(c["weight"]) for c in policy["categories"]}


def credit_key(subject: bytes) -> bytes:
    return b"s" + subject


@dataclass(frozen=True, slots=True)
class CreditEvent:
    """One credit event as the ledger keeps it (``withdrawn_by`` is b"" while in force)."""

    txid: bytes
    agency: str
    category: str
    points: int
    reason: str
    date: int
    expiry: int
    withdrawn_by: bytes

    def to_list(self) -> list[Any]:
        return [self.txid, self.agency, self.category, self.points, self.reason, self.date,
                self.expiry, self.withdrawn_by]


def credit_events(view: StateView, subject: bytes) -> list[CreditEvent]:
    """Every credit event recorded about ``subject`` (withdrawn ones included), oldest first."""
    raw = view.get(credit_key(subject))
    if raw is None:
        return []
    # this store's own record, as apply wrote it: one that does not decode is the store's
    # damage (503, the audit to run), not the caller's malformed input (a 400 of codec words)
    try:
        items = codec.decode(raw, max_size=16 << 20, what="credit events")
    except DecodeError as e:
        raise StoreError(damaged("the stored credit events of a subject", e)) from e
    if not isinstance(items, list) or not all(isinstance(e, list) and len(e) == 8
                                              for e in items):
        raise StoreError(damaged("the stored credit events of a subject", None,
                                 "are not arrays of 8"))
    return [CreditEvent(*e) for e in items]

RULES = 1
"""The version of the consensus rules this code applies: what a node accepts into a block and
how it applies it. Every node publishes it with its applied position, and health names the
peers whose nodes run other rules while a network is upgraded one agency at a time (ADR 77).
Raise it with every change to what a block accepts, and say the change in
:data:`RULES_CHANGES`: two versions that judge a transaction differently build different
blocks, and the node outvoted halts as a fork. 0 stands for every version before ADR 77,
which publish none."""

RULES_CHANGES: dict[int, str] = {
    1: "since ADR 70 an approval decision of an agency holding no grant to issue `approval` "
       "credentials is refused (not_granted); since ADR 72 a credit event past 50,000 about "
       "one subject (too_many_events) and a governance change that would grow the registry "
       "past 16 MiB (registry_full)",
}
"""What each rules version refuses or takes that the one before it did not, as an operator
must know it while versions are mixed (README, Upgrading)."""


def rules_changes_since(version: int) -> list[str]:
    """What the consensus rules after ``version`` changed, oldest first (:data:`RULES_CHANGES`)."""
    return [RULES_CHANGES[v] for v in sorted(RULES_CHANGES) if v > version]

MAX_CREDIT_EVENTS = 50_000
"""Credit events kept about one subject; a new one past them is refused (``too_many_events``).
Every credit transaction reads and rewrites all its subject's events, and :func:`credit_events`
reads at most 16 MiB: one event takes at most 290 bytes, withdrawn or not, so 50,000 stay
readable and each can still be withdrawn. Without a bound, one agency's events about one
subject could grow a record past what any node reads, and the next transaction about the
subject would stop every node's block instead of being refused."""

RESERVED_TYPES = frozenset({"approval"})
"""Credential types no operator issues by hand: an approval credential is issued by the node's
approvals service together with the decision transaction it records (node.approvals), and only
its issuer may change its status."""

STATUS_LIST_SIZE = 1 << 20
"""Entries per status list (2 bits each: 256 KiB before compression). An issuer's credentials
of one type fill lists 0, 1, 2 … in turn: status index ``i`` is entry ``i % STATUS_LIST_SIZE``
of list ``i // STATUS_LIST_SIZE`` (:func:`status_list_of`, ADR 55)."""

STATUS_LISTS = 64
"""Status lists per issuer and type (67 million credentials of one type by one agency: a city
of ten million with several each); an ``issue`` with an index past the last is refused."""


def status_list_of(status_index: int) -> tuple[int, int]:
    """(list number, entry in that list) of an anchored status index."""
    return divmod(status_index, STATUS_LIST_SIZE)


MAX_BACKDATE = 600
"""How far before its block's time an anchored credential's ``valid_from`` may lie (seconds).

A verifier judges the issuer key and grant at ``valid_from`` (ADR 4): the envelope carries no
block time. Without this bound, whoever stole an issuer key could anchor credentials dated
before the compromise, and they would survive ``invalidate_key`` from the compromise time.
With it, an invalidation from ``C - MAX_BACKDATE`` covers everything anchored after ``C``.
Ten minutes leave room for a client's clock and a retry after a fail-over (ADR 43)."""

_TRANSITIONS = {("valid", "suspended"), ("suspended", "valid"), ("valid", "revoked"),
                ("suspended", "revoked")}


class StateView(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


def may_change_status(registry: Registry, agency: str, cred: Credential, t: int) -> bool:
    """Whether ``agency`` may change ``cred``'s status at ``t``: its issuer, or an agency
    granted its type then. Any agency may hold the approval grant (each decides its own
    services): an approval is its deciding agency's alone to revoke or suspend. (Also asked by
    `agency status` before the passphrase, so a change the ledger refuses is not signed.)"""
    return agency == cred.issuer or (cred.type not in RESERVED_TYPES
                                     and registry.grant_covers(agency, cred.type, t))


def credential_key(credential_id: bytes) -> bytes:
    return b"c" + credential_id


def index_key(issuer: str, kind: str, index: int) -> bytes:
    return b"i" + issuer.encode() + b"\x00" + kind.encode() + b"\x00" + index.to_bytes(4, "big")


@dataclass(frozen=True, slots=True)
class Credential:
    """What the ledger knows about an anchored credential: no claim values."""

    credential_id: bytes
    issuer: str
    type: str
    status: str
    status_index: int
    valid_from: int
    valid_until: int
    issued_at: int
    issuer_kid: bytes

    def to_bytes(self) -> bytes:
        return _credential_record(self.issuer, self.type, self.status, self.status_index,
                                  self.valid_from, self.valid_until, self.issued_at,
                                  self.issuer_kid)

    @classmethod
    def from_bytes(cls, credential_id: bytes, data: bytes) -> Credential:
        d = codec.decode(data, what="credential")
        if not isinstance(d, list) or len(d) != 8:
            raise DecodeError("a credential record is an array of 8", "credential")
        return cls(credential_id, *d)


def _credential_record(issuer: str, kind: str, status: str, status_index: int, valid_from: int,
                       valid_until: int, issued_at: int, issuer_kid: bytes) -> bytes:
    """A :class:`Credential`'s stored bytes (the state machine writes new anchors with it
    directly, without building the dataclass first).

    A fixed-order array, not a map: written once per anchor, so kept small and cheap. Every field
    is a str, bytes or a range-checked int from a parsed transaction or record, and an array has
    no key order, so msgpack's own bytes are the canonical ones (codec.encode would only re-check
    the types; test_state checks the equality)."""
    return codec.pack_plain([issuer, kind, status, status_index, valid_from, valid_until,
                             issued_at, issuer_kid])


_MEMO_MAX = 4096

MAX_REGISTRY_SIZE = 16 << 20
"""The most bytes a registry may take: what a node reads back from its store when it opens
(:meth:`Registry.from_bytes`). A governance transaction that would make it larger is refused
(``registry_full``): the running nodes would go on, and none of them could open its store
again after a restart."""


class Registry:
    """Agencies, keys with their history, grants, credential types and the quorum.

    Held as one canonical map (``data``) so it can be stored, hashed and compared as a whole.
    Treat instances as immutable: governance produces a new one (:meth:`evolve`).
    """

    __slots__ = ("_bytes", "_enc", "_grant_memo", "_prev_enc", "_pubs", "_signer_memo", "data")

    def __init__(self, data: Mapping[str, Any], prev: Registry | None = None) -> None:
        self.data: dict[str, Any] = dict(data)
        # a key's bytes never change under its kid: the previous registry's parsed keys serve
        old: Mapping[bytes, PublicKey] = prev._pubs if prev is not None else {}
        self._pubs: dict[bytes, PublicKey] = {kid: old[kid] if kid in old else PublicKey(k["pub"])
                      for kid, k in self._keys().items()}
        # to_bytes reuses the previous registry's encoding of each entry it still shares
        # (only its cache is kept, not the registry, so no chain of old registries builds up)
        self._prev_enc = prev._enc if prev is not None else None
        self._enc: dict[str, dict[str, tuple[object, bytes]]] | None = None
        self._bytes: bytes | None = None
        # Answers of signer() and grant_covers() by (who, time): every transaction of a block
        # asks the same few at the same block time. The registry never changes (governance
        # builds a new one), so they stay true; bounded so a long replay does not grow them.
        self._signer_memo: dict[tuple[bytes, int], str] = {}
        self._grant_memo: dict[tuple[str, str, int], bool] = {}

    # -- serialization --
    def to_bytes(self) -> bytes:
        """The canonical bytes, ``codec.encode`` of the data with kids as hex (``test_state``
        holds the two equal). Built once, from the canonical bytes of each section's entries:
        an entry this registry shares with the one it evolved from is not encoded again, so a
        governance change costs what it touched plus a join (ADR 50)."""
        if self._bytes is None:
            self._bytes = self._encode()
            self._prev_enc = None
        return self._bytes

    def _encode(self) -> bytes:
        data = _keys_to_hex(self.data)
        was = self._prev_enc or {}
        enc: dict[str, dict[str, tuple[object, bytes]]] = {}
        parts = [_map_header(len(data))]
        for name in sorted(data):
            if type(name) is not str:
                raise TypeError(f"map key {name!r} is not a str")
            section = data[name]
            parts.append(codec.encode(name))
            if type(section) is not dict:
                parts.append(codec.encode(section))
                continue
            old, mine = was.get(name, {}), enc.setdefault(name, {})
            parts.append(_map_header(len(section)))
            for key in sorted(section):
                if type(key) is not str:
                    raise TypeError(f"map key {key!r} is not a str")
                value = section[key]
                hit = old.get(key)
                if hit is None or hit[0] is not value:
                    hit = (value, codec.encode(key) + codec.encode(value))
                mine[key] = hit
                parts.append(hit[1])
        self._enc = enc
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Registry:
        """A registry from bytes this node wrote (its own store); see :meth:`from_unverified`."""
        return cls(_keys_from_hex(codec.decode(data, max_size=MAX_REGISTRY_SIZE,
                                               what="registry")))

    @classmethod
    def from_unverified(cls, data: bytes) -> Registry:
        """A registry from outside (a snapshot file, a wallet's --registry): its shape is
        checked first, so a malformed one raises DecodeError naming the bad member instead of
        failing later, deep inside a verification. (Whether its contents are *true* is the
        caller's to check: a snapshot's checkpoint must be final under it.)"""
        raw = codec.decode(data, max_size=MAX_REGISTRY_SIZE, what="registry")
        _check_shape(raw)
        return cls(_keys_from_hex(raw))

    def evolve(self) -> dict[str, Any]:
        """A copy of the top-level map for building the next registry.

        Only the top level is new: its members are the ones this registry holds, shared with
        it. A governance action replaces each map or list on the path it changes with a copy
        (``_own``) and never changes one in place, so a change costs what it touches, not the
        size of the whole registry (a deep copy per change made a city's replay quadratic:
        ADR 50). ``test_state`` checks every action leaves the older registry's bytes alone."""
        return dict(self.data)

    # -- queries --
    @property
    def network(self) -> str:
        return str(self.data["network"])

    @property
    def quorum(self) -> int:
        return int(self.data["quorum"])

    @property
    def gov_seq(self) -> int:
        return int(self.data["gov_seq"])

    def _keys(self) -> dict[bytes, dict[str, Any]]:
        keys: dict[bytes, dict[str, Any]] = self.data["keys"]
        return keys

    @property
    def public_keys(self) -> Mapping[bytes, PublicKey]:
        """kid → public key for every key ever registered (kids never change meaning)."""
        return self._pubs

    def agency(self, agency_id: str) -> dict[str, Any] | None:
        a: dict[str, Any] | None = self.data["agencies"].get(agency_id)
        return a

    def agencies(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = self.data["agencies"]
        return out

    def agency_current(self, agency_id: str, t: int) -> bool:
        a = self.agency(agency_id)
        return a is not None and a["added"] <= t and (a["removed"] is None or t < a["removed"])

    def key(self, kid: bytes) -> dict[str, Any] | None:
        return self._keys().get(kid)

    def key_valid(self, kid: bytes, t: int, role: str) -> bool:
        k = self.key(kid)
        return (k is not None and k["role"] == role and k["valid_from"] <= t
                and (k["invalid_from"] is None or t < k["invalid_from"]))

    def keys_of(self, agency_id: str) -> list[tuple[bytes, dict[str, Any]]]:
        """An agency's key history, oldest first."""
        return sorted(((kid, k) for kid, k in self._keys().items() if k["agency"] == agency_id),
                      key=lambda item: (item[1]["valid_from"], item[0]))

    def current_agencies(self, t: int) -> list[str]:
        return sorted(a for a in self.agencies() if self.agency_current(a, t))

    def node_key_span(self, t: int) -> tuple[float, float]:
        """``[lo, hi)`` around ``t`` in which :meth:`node_keys` gives the same answer: between
        the registry's recorded times either side of ``t`` (agencies added or removed, node keys
        valid or invalid from), which may lie in the future (a rotation planned ``at`` a time)."""
        times = {x for a in self.agencies().values() for x in (a["added"], a["removed"])
                 if x is not None}
        times |= {x for k in self._keys().values() if k["role"] == "node"
                  for x in (k["valid_from"], k["invalid_from"]) if x is not None}
        return (max((x for x in times if x <= t), default=-math.inf),
                min((x for x in times if x > t), default=math.inf))

    def node_keys(self, t: int) -> dict[str, list[PublicKey]]:
        """Current agency → node keys valid at ``t`` (checkpoint quorum checks)."""
        return {a: self.node_keys_of(a, t) for a in self.current_agencies(t)}

    def node_keys_of(self, agency_id: str, t: int) -> list[PublicKey]:
        """``agency_id``'s node keys valid at ``t``; none unless it is a current agency then
        (one agency's entry of :meth:`node_keys`, without building the others')."""
        if not self.agency_current(agency_id, t):
            return []
        return [self._pubs[kid] for kid, _ in self.keys_of(agency_id)
                if self.key_valid(kid, t, "node")]

    def grant_covers(self, agency_id: str, kind: str, t: int) -> bool:
        memo = self._grant_memo
        got = memo.get((agency_id, kind, t))
        if got is None:
            windows = self.data["grants"].get(agency_id, {}).get(kind, [])
            got = any(w[0] <= t < w[1] for w in windows)
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[(agency_id, kind, t)] = got
        return got

    def grants_at(self, t: int) -> dict[str, list[str]]:
        """Agency → credential types it may issue at time ``t``."""
        out: dict[str, list[str]] = {}
        for agency, kinds in self.data["grants"].items():
            ok = sorted(k for k in kinds if self.grant_covers(agency, k, t))
            if ok:
                out[agency] = ok
        return out

    def type_def(self, kind: str) -> dict[str, Any] | None:
        d: dict[str, Any] | None = self.data["types"].get(kind)
        return d

    # -- credit and rules (keys absent until governance adds them: old registries unchanged) --
    def credit_policy(self) -> dict[str, Any] | None:
        credit: dict[str, Any] = self.data.get("credit", {})
        policy: dict[str, Any] | None = credit.get("policy")
        return policy

    def credit_grant_covers(self, agency_id: str, category: str, t: int) -> bool:
        grants = self.data.get("credit", {}).get("grants", {})
        return any(w[0] <= t < w[1] for w in grants.get(agency_id, {}).get(category, []))

    def services(self) -> list[str]:
        return sorted(self.data.get("rules", {}))

    def rule(self, service: str) -> dict[str, Any] | None:
        """The rule in force for ``service`` in this registry (with the rule text)."""
        entry = self.data.get("rules", {}).get(service)
        return None if entry is None else self.rule_by_hash(bytes.fromhex(entry["current"]))

    def rule_by_hash(self, h: bytes) -> dict[str, Any] | None:
        got: dict[str, Any] | None = self.data.get("rule_texts", {}).get(h.hex())
        return got

    def rule_versions(self, service: str) -> list[tuple[int, bytes]]:
        """(block time registered, rule hash) of every version of ``service``'s rule."""
        entry = self.data.get("rules", {}).get(service, {"versions": []})
        return [(int(t), bytes.fromhex(h)) for t, h in entry["versions"]]

    def signer(self, tx: Tx, t: int) -> str:
        """The agency whose current issuer key signed a single-signer ``tx`` at ``t``."""
        if len(tx.sigs) != 1:
            raise TxRejected("bad_signers", f"a {tx.type} transaction has exactly one signature")
        kid = tx.sigs[0].kid
        known = self._signer_memo.get((kid, t))
        if known is not None:
            return known
        agency = self._signer(kid, t)
        if len(self._signer_memo) >= _MEMO_MAX:
            self._signer_memo.clear()
        self._signer_memo[(kid, t)] = agency
        return agency

    def _signer(self, kid: bytes, t: int) -> str:
        k = self.key(kid)
        if k is None:
            raise TxRejected("unknown_key", f"signer key {kid.hex()[:16]} is not registered")
        if not self.agency_current(k["agency"], t):
            raise TxRejected("agency_not_current",
                             f"agency {k['agency']!r} is not a member at time {t}")
        if not self.key_valid(kid, t, "issuer"):
            raise TxRejected("key_not_valid",
                             f"key {kid.hex()[:16]} of {k['agency']!r} is not a valid issuer key"
                             f" at time {t}")
        return str(k["agency"])


def _check_shape(raw: object) -> None:
    """Raise DecodeError unless ``raw`` has the members and types a registry's queries use."""
    def need(ok: bool, where: str, what: str) -> None:
        if not ok:
            raise DecodeError(f"must be {what}", f"registry{where}")

    def is_int(v: object) -> bool:
        return type(v) is int

    need(isinstance(raw, dict), "", "a map")
    assert isinstance(raw, dict)
    need(isinstance(raw.get("network"), str), ".network", "a string")
    need(is_int(raw.get("quorum")) and raw["quorum"] >= 1, ".quorum", "an integer >= 1")
    need(is_int(raw.get("gov_seq")) and raw["gov_seq"] >= 0, ".gov_seq", "an integer >= 0")
    need(is_int(raw.get("genesis_time")), ".genesis_time", "an integer")
    for name in ("agencies", "keys", "grants", "types"):
        need(isinstance(raw.get(name), dict), f".{name}", "a map")
    for name in ("credit", "rules", "rule_texts"):
        need(isinstance(raw.get(name, {}), dict), f".{name}", "a map")
    for agency, a in raw["agencies"].items():
        need(isinstance(agency, str) and isinstance(a, dict) and isinstance(a.get("name"), str)
             and is_int(a.get("added")) and (a.get("removed") is None or is_int(a["removed"])),
             f".agencies[{agency!r}]", "{name, added, removed}")
    for kid, k in raw["keys"].items():
        where = f".keys[{kid!r}]"
        need(isinstance(kid, str) and len(kid) == 64 and all(c in "0123456789abcdef"
                                                             for c in kid), where,
             "keyed by 64 hex digits")
        need(isinstance(k, dict) and isinstance(k.get("agency"), str)
             and k["agency"] in raw["agencies"]
             and k.get("role") in ("node", "issuer") and type(k.get("pub")) is bytes
             and len(k["pub"]) == 32 and is_int(k.get("valid_from"))
             and (k.get("invalid_from") is None or is_int(k["invalid_from"])), where,
             "{agency, role, pub, valid_from, invalid_from}")
        need(PublicKey(k["pub"]).kid.hex() == kid, where, "the key id of its pub")
    for agency, kinds in raw["grants"].items():
        need(isinstance(kinds, dict) and all(
            isinstance(kind, str) and isinstance(ws, list) and all(
                isinstance(w, list) and len(w) == 2 and all(map(is_int, w)) for w in ws)
            for kind, ws in kinds.items()), f".grants[{agency!r}]",
            "a map of type -> [[from, until], ...]")
    for kind, spec in raw["types"].items():
        need(isinstance(kind, str) and isinstance(spec, dict)
             and isinstance(spec.get("claims"), dict), f".types[{kind!r}]",
             "a type definition with claims")


def _map_header(n: int) -> bytes:
    """msgpack's shortest header for a map of ``n`` entries (fixmap, map 16, map 32)."""
    if n < 16:
        return bytes([0x80 | n])
    if n < 1 << 16:
        return b"\xde" + n.to_bytes(2, "big")
    return b"\xdf" + n.to_bytes(4, "big")


def _keys_to_hex(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["keys"] = {kid.hex(): v for kid, v in d["keys"].items()}
    return out


def _keys_from_hex(d: dict[str, Any]) -> dict[str, Any]:
    out = dict(d)
    out["keys"] = {bytes.fromhex(kid): v for kid, v in d["keys"].items()}
    return out


def _add_key(data: dict[str, Any], agency: str, role: str, pub: bytes, t: int) -> None:
    kid = PublicKey(pub).kid
    if kid in data["keys"]:
        raise TxRejected("key_reused", f"key {kid.hex()[:16]} is already registered")
    _own(data, "keys")[kid] = {"agency": agency, "role": role, "pub": pub, "valid_from": t,
                               "invalid_from": None}


def _add_agency(data: dict[str, Any], spec: Mapping[str, Any], t: int) -> None:
    held = data["agencies"].get(spec["id"])
    if held is not None:
        raise TxRejected("agency_exists", f"agency {spec['id']!r} " + (
            "already exists" if held["removed"] is None else
            "was removed, and an agency id is never given again"))
    if spec["node_key"] == spec["issuer_key"]:
        raise TxRejected("key_reused", "node and issuer keys must differ")
    _own(data, "agencies")[spec["id"]] = {"name": spec["name"], "added": t, "removed": None}
    _add_key(data, spec["id"], "node", spec["node_key"], t)
    _add_key(data, spec["id"], "issuer", spec["issuer_key"], t)


def genesis_registry(tx: Tx) -> Registry:
    """The registry a genesis transaction creates; checks every founder signed it."""
    if tx.type != "genesis":
        raise TxRejected("not_genesis", "the first transaction must be a genesis")
    b = tx.body
    if tx.net != b["network"]:
        raise TxRejected("wrong_network", f"envelope network {tx.net!r} != {b['network']!r}")
    data: dict[str, Any] = {"network": b["network"], "quorum": b["quorum"], "gov_seq": 0,
                            "genesis_time": b["time"], "agencies": {}, "keys": {}, "grants": {},
                            "types": {}}
    for spec in b["agencies"]:
        _add_agency(data, spec, b["time"])
    reg = Registry(data)
    founders = {PublicKey(s["issuer_key"]).kid for s in b["agencies"]}
    if {s.kid for s in tx.sigs} != founders:
        raise TxRejected("bad_signers", "genesis must be signed by every founding agency's "
                                        "issuer key and no other")
    try:
        tx.verify_signatures(reg.public_keys)
    except SignatureError as e:
        raise TxRejected("bad_signature", str(e)) from e
    return reg


def _fresh(ts: int, t: int, what: str) -> None:
    """Refuse a status change, credit event or approval decision signed more than
    ``MAX_BACKDATE`` from the block's time ``t``. A refused one (a "reinstate" while valid, an
    event before its agency's grant, a decision under a rule since replaced) could otherwise be
    replayed by anyone whenever the state came to allow it, and so could one signed and never
    sent (ADRs 43, 48, 69, 70)."""
    if ts < t - MAX_BACKDATE:
        raise TxRejected("stale", f"signed at {ts}, more than {MAX_BACKDATE} s before the "
                                  f"block's time {t}: sign the {what} again (if it was signed "
                                  "just now, this machine's clock is slow or an agency node's "
                                  "is fast)")
    if ts > t + MAX_BACKDATE:
        # ... and one dated ahead would stay replayable until ts + MAX_BACKDATE (ADR 48)
        raise TxRejected("future_dated", f"signed at {ts}, more than {MAX_BACKDATE} s after "
                                         f"the block's time {t}: this machine's clock is fast "
                                         "(or an agency node's is slow); set it right and sign "
                                         f"the {what} again")


class Machine:
    """Applies transactions in order against a registry and a base state view.

    ``apply`` either raises TxRejected (nothing changed) or records the effects in the overlay.
    ``base`` must not change while the machine is in use (one block): keys it lacks are
    remembered, so a second lookup of the same absent key does not reach the store.
    """

    def __init__(self, registry: Registry, base: StateView, *,
                 rules: RuleEngine | None = None) -> None:
        self.registry = registry
        self.registry_changed = False
        self._base = base
        self._rules = rules
        self.writes: dict[bytes, bytes] = {}
        self._absent: set[bytes] = set()

    def get(self, key: bytes) -> bytes | None:
        v = self.writes.get(key)
        if v is not None or key in self._absent:
            return v
        v = self._base.get(key)
        if v is None:
            self._absent.add(key)
        return v

    def credential(self, credential_id: bytes) -> Credential | None:
        raw = self.get(credential_key(credential_id))
        try:
            return None if raw is None else Credential.from_bytes(credential_id, raw)
        except DecodeError as e:  # the store's record (apply writes only valid ones): damaged
            raise StoreError(damaged(f"the stored record of credential {credential_id.hex()}",
                                     e)) from e

    def apply(self, tx: Tx, t: int, *, signatures_checked: bool = False) -> None:
        """Validate ``tx`` at block time ``t`` and record its effects, or raise TxRejected.

        ``signatures_checked`` says the caller already verified every signature against the key
        its kid names (kids are hashes of keys, so that check does not depend on state).
        """
        reg = self.registry
        if tx.net != reg.network:
            raise TxRejected("wrong_network", f"transaction is for network {tx.net!r}, "
                                              f"this ledger is {reg.network!r}")
        if tx.type == "genesis":
            raise TxRejected("genesis_repeated", "genesis is only the first transaction")
        if not signatures_checked:
            for s in tx.sigs:
                key = reg.public_keys.get(s.kid)
                if key is None:
                    raise TxRejected("unknown_key", f"signer key {s.kid.hex()[:16]} "
                                                    "is not registered")
                try:
                    key.verify("tx", tx.payload, s.sig)
                except SignatureError as e:
                    raise TxRejected("bad_signature", str(e)) from e
        if tx.type == "issue":
            self._issue(tx, t)
        elif tx.type == "status":
            self._status(tx, t)
        elif tx.type == "governance":
            self._governance(tx, t)
        elif tx.type == "credit":
            self._credit(tx, t)
        else:
            self._approval(tx, t)

    # -- credit --
    def _credit(self, tx: Tx, t: int) -> None:
        b = tx.body
        reg = self.registry
        policy = reg.credit_policy()
        if policy is None:
            raise TxRejected("not_enabled", "credit transactions are not enabled on this ledger "
                                            "yet (no credit policy registered)")
        agency = reg.signer(tx, t)
        _fresh(b["ts"], t, "event")  # a refused event, replayed once a grant allows it (ADR 69)
        events = credit_events(self, b["subject"])
        if "withdraws" in b:
            i = next((n for n, ev in enumerate(events) if ev.txid == b["withdraws"]), -1)
            if i < 0:
                raise TxRejected("unknown_event", "no credit event of this subject has that id")
            e = events[i]
            if e.agency != agency:
                raise TxRejected("not_authorized", f"only {e.agency!r}, which recorded the "
                                                   "event, may withdraw it")
            if e.withdrawn_by:
                raise TxRejected("already_withdrawn", "this credit event was already withdrawn")
            if b["points"] != 0 or b["category"] != e.category:
                raise TxRejected("bad_withdrawal", "a withdrawal has 0 points and the "
                                                   "withdrawn event's category")
            events[i] = CreditEvent(e.txid, e.agency, e.category, e.points, e.reason, e.date,
                                    e.expiry, tx.txid)
        else:
            if b["category"] not in policy_weights(policy):
                raise TxRejected("unknown_category", f"credit category {b['category']!r} is not "
                                                     "in the credit policy")
            if not reg.credit_grant_covers(agency, b["category"], t):
                raise TxRejected("not_granted", f"{agency!r} may not record {b['category']!r} "
                                                f"credit events at {t}")
            if b["points"] == 0:
                raise TxRejected("bad_points", "a credit event moves the score (points != 0)")
            if b["date"] > t:
                raise TxRejected("future_date", f"event date {b['date']} is after block time {t}")
            if b["expiry"] <= b["date"]:
                raise TxRejected("bad_expiry", "a credit event expires after its date")
            if len(events) >= MAX_CREDIT_EVENTS:
                raise TxRejected("too_many_events", f"this subject has {MAX_CREDIT_EVENTS} "
                                                    "credit events, as many as the ledger "
                                                    "keeps about one subject")
            events.append(CreditEvent(tx.txid, agency, b["category"], b["points"], b["reason"],
                                      b["date"], b["expiry"], b""))
        self.writes[credit_key(b["subject"])] = codec.encode([e.to_list() for e in events])

    # -- approval --
    def _approval(self, tx: Tx, t: int) -> None:
        b = tx.body
        reg = self.registry
        rule = reg.rule(b["service"])
        if rule is None:
            raise TxRejected("not_enabled", f"no approval rule is registered for service "
                                            f"{b['service']!r}")
        agency = reg.signer(tx, t)
        if agency != rule["agency"]:
            raise TxRejected("not_authorized", f"{b['service']!r} is decided by "
                                               f"{rule['agency']!r}, not {agency!r}")
        # a decision refused as stale_rule, replayed once the same rule version is back in
        # force, or one signed and held back, is not recorded (ADR 70)
        _fresh(b["ts"], t, "decision")
        if not reg.grant_covers(agency, "approval", t):
            # the node decides nothing without it; a decision sent by hand was recorded (ADR 70)
            raise TxRejected("not_granted", f"{agency!r} holds no grant to issue 'approval' "
                                            f"credentials at {t}, so it records no decision")
        if b["rule_hash"] != rule_hash(rule):
            raise TxRejected("stale_rule", f"rule version {b['rule_hash'].hex()[:16]} is not the "
                                           f"one in force for {b['service']!r}")
        codes = {c["reason"] for c in rule["clauses"]} | {rule["otherwise"]["reason"],
                                                          rule["fast_track_reason"], "rule_error"}
        unknown = sorted(set(b["reasons"]) - codes)
        if unknown or not b["reasons"]:
            raise TxRejected("unknown_reason", f"reason codes {unknown} are not the rule's"
                             if unknown else "a decision names at least one reason")
        if b["path"] == "fast_track" and (b["decision"] != "approved" or not rule["fast_track"]):
            raise TxRejected("bad_outcome", "only an approval under a rule with a fast track "
                                            "can take the fast track")

    # -- issue / status --
    def _issue(self, tx: Tx, t: int) -> None:
        b = tx.body
        agency = self.registry.signer(tx, t)
        if agency != b["issuer"]:
            raise TxRejected("issuer_mismatch", f"signed by {agency!r} but names issuer "
                                                f"{b['issuer']!r}")
        if self.registry.type_def(b["type"]) is None:
            raise TxRejected("unknown_type", f"credential type {b['type']!r} is not registered")
        if not self.registry.grant_covers(agency, b["type"], t):
            raise TxRejected("not_granted", f"{agency!r} may not issue {b['type']!r} at {t}")
        if b["valid_from"] < t - MAX_BACKDATE:
            raise TxRejected("backdated", f"valid_from {b['valid_from']} is more than "
                                          f"{MAX_BACKDATE} s before the block's time {t} "
                                          "(block times follow the agency nodes' clocks: if "
                                          "the signer's clock is right, a node's is fast)")
        if b["status_index"] >= STATUS_LISTS * STATUS_LIST_SIZE:
            raise TxRejected("status_index_out_of_range",
                             f"status index {b['status_index']} is past the last status list "
                             f"({STATUS_LISTS} lists of {STATUS_LIST_SIZE} entries): its status "
                             "could never be read")
        ckey = credential_key(b["credential_id"])
        if self.get(ckey) is not None:
            raise TxRejected("credential_exists", "this credential is already anchored")
        ikey = index_key(agency, b["type"], b["status_index"])
        if self.get(ikey) is not None:
            raise TxRejected("status_index_used", f"status index {b['status_index']} of "
                                                  f"{agency}/{b['type']} was used before")
        self.writes[ckey] = _credential_record(agency, b["type"], "valid", b["status_index"],
                                               b["valid_from"], b["valid_until"], t,
                                               tx.sigs[0].kid)
        self.writes[ikey] = b["credential_id"]

    def _status(self, tx: Tx, t: int) -> None:
        b = tx.body
        agency = self.registry.signer(tx, t)
        cred = self.credential(b["credential_id"])
        if cred is None:
            raise TxRejected("unknown_credential", "no anchored credential has this id")
        if not may_change_status(self.registry, agency, cred, t):
            raise TxRejected("not_authorized", f"{agency!r} neither issued this credential nor "
                                               f"may change {cred.type!r} credentials of "
                                               "another agency")
        _fresh(b["ts"], t, "change")
        if (cred.status, b["status"]) not in _TRANSITIONS:
            raise TxRejected("illegal_transition", f"{cred.status} -> {b['status']} is not "
                                                   "allowed")
        new = Credential(cred.credential_id, cred.issuer, cred.type, b["status"],
                         cred.status_index, cred.valid_from, cred.valid_until, cred.issued_at,
                         cred.issuer_kid)
        self.writes[credential_key(cred.credential_id)] = new.to_bytes()

    # -- governance --
    def _governance(self, tx: Tx, t: int) -> None:
        reg = self.registry
        b = tx.body
        if b["seq"] != reg.gov_seq + 1:
            raise TxRejected("bad_sequence", f"governance seq {b['seq']} but next is "
                                             f"{reg.gov_seq + 1}")
        approvers = set()
        for s in tx.sigs:
            k = reg.key(s.kid)
            if k is None:
                raise TxRejected("unknown_key", f"signer key {s.kid.hex()[:16]} is not "
                                                "registered")
            if not (reg.agency_current(k["agency"], t) and reg.key_valid(s.kid, t, "issuer")):
                raise TxRejected("key_not_valid", f"{k['agency']!r} key {s.kid.hex()[:16]} "
                                                  f"may not sign at {t}")
            approvers.add(k["agency"])
        if len(approvers) < reg.quorum:
            raise TxRejected("no_quorum", f"{len(approvers)} of {reg.quorum} required agencies "
                                          "signed")
        self.registry = registry_after(reg, tx, t, self._rules)
        self.registry_changed = True


def registry_after(reg: Registry, tx: Tx, t: int, engine: RuleEngine | None = None
                   ) -> Registry:
    """The registry governance ``tx`` makes of ``reg`` at block time ``t``, its signers not
    looked at (the state machine counts them first); :class:`TxRejected` if the ledger refuses
    the change itself, whoever signs it. ``agency propose`` asks it before anyone signs."""
    b = tx.body
    data = reg.evolve()
    data["gov_seq"] = b["seq"]
    a = b["args"]
    action = b["action"]
    if action == "register_rule":
        _register_rule(data, a["rule"], t, engine)
    try:
        _GOV[action](data, a, t)
    except (KeyError, ValueError) as e:  # pragma: no cover - defensive
        raise TxRejected("bad_governance", str(e)) from e
    # Agencies that can still sign governance: not removed, and holding an issuer key with
    # no end (one rotated in for later counts). Fewer than the quorum, and no transaction
    # could ever change the registry again (after invalidate_key, say: ADR 46).
    signers = {k["agency"] for k in data["keys"].values()
               if k["role"] == "issuer" and k["invalid_from"] is None}
    live = [x for x, v in data["agencies"].items() if v["removed"] is None and x in signers]
    current = sum(1 for v in data["agencies"].values() if v["removed"] is None)
    if current > MAX_SIGNATURES:
        # every current agency's node co-signs checkpoints, and a checkpoint carries at
        # most MAX_SIGNATURES signature lines (ADR 48)
        raise TxRejected("too_many_agencies", f"{current} current agencies: a network has "
                                              f"at most {MAX_SIGNATURES}, as many as a "
                                              "checkpoint carries co-signatures")
    if data["quorum"] > len(live):
        raise TxRejected("quorum_unreachable", f"quorum {data['quorum']} > {len(live)} "
                                               "member agencies that can still sign")
    new = Registry(data, prev=reg)
    size = len(new.to_bytes())
    if size > MAX_REGISTRY_SIZE:
        raise TxRejected("registry_full", f"the registry would take {size} bytes, over the "
                                          f"{MAX_REGISTRY_SIZE} a node reads back when it "
                                          "opens its store")
    return new


def _register_rule(data: dict[str, Any], rule: Mapping[str, Any], t: int,
                   engine: RuleEngine | None) -> None:
    _need_agency(data, rule["agency"])
    for need in rule["needs"]:
        type_def = data["types"].get(need["type"])
        if type_def is None:
            raise TxRejected("unknown_type", f"the rule needs credential type "
                                             f"{need['type']!r}, which is not registered")
        known = set(type_def["claims"]) | set(type_def.get("derived", {}))
        missing = sorted(set(need["claims"]) - known)
        if missing:
            raise TxRejected("unknown_claim", f"credential type {need['type']!r} has no "
                                              f"claim {missing}")
    if rule["subject"]:
        kind, claim = rule["subject"]
        if not any(n["type"] == kind and claim in n["claims"] for n in rule["needs"]):
            raise TxRejected("unknown_claim", "the subject claim must be one the rule needs")
        if data.get("credit", {}).get("policy") is None:
            raise TxRejected("no_credit_policy", "a rule that reads credit records needs a "
                                                 "credit policy first")
    engine = engine or rule_engine()
    try:
        engine.check(rule)
    except ValueError as e:
        raise TxRejected("rule_invalid", str(e)) from e
    h = rule_hash(rule).hex()
    entry = data.get("rules", {}).get(rule["service"], {"current": "", "versions": []})
    if entry["current"] == h:
        raise TxRejected("rule_unchanged", "this version of the rule is already in force")
    _own(data, "rules")[rule["service"]] = {"current": h,
                                            "versions": [*entry["versions"], [t, h]]}
    _own(data, "rule_texts")[h] = dict(rule)


def _own(d: dict[Any, Any], *path: Any) -> dict[Any, Any]:
    """The map at ``d[path[0]][path[1]]…``, each map on the way replaced in its parent by a
    shallow copy (a missing one by an empty map), so it can be changed without changing a
    registry that shares it. ``d`` itself must be the draft's own (``Registry.evolve``)."""
    for key in path:
        d[key] = dict(d.get(key, {}))
        d = d[key]
    return d


def _need_agency(data: dict[str, Any], agency: str) -> dict[str, Any]:
    """The agency's entry, read only (it is shared with the older registry)."""
    a: dict[str, Any] | None = data["agencies"].get(agency)
    if a is None or a["removed"] is not None:
        raise TxRejected("unknown_agency", f"agency {agency!r} is not a member")
    return a


def _ended(windows: list[list[int]], at: int) -> list[list[int]]:
    """New ``[from, until]`` windows, each ended at ``at`` at the latest (never before it began)."""
    return [[w[0], max(w[0], min(w[1], at))] for w in windows]


def _g_add_agency(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _add_agency(data, a["agency"], t)


def _g_remove_agency(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    entry = _need_agency(data, a["agency"])
    _own(data, "agencies")[a["agency"]] = {**entry, "removed": t}


def _g_rotate_key(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])
    at = max(a["at"], t)
    keys = _own(data, "keys")
    for kid, k in keys.items():
        if (k["agency"] == a["agency"] and k["role"] == a["role"]
                and (k["invalid_from"] is None or k["invalid_from"] > at)):
            keys[kid] = {**k, "invalid_from": at}
    _add_key(data, a["agency"], a["role"], a["new_key"], at)


def _g_invalidate_key(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    k = data["keys"].get(a["kid"])
    if k is None:
        raise TxRejected("unknown_key", f"key {a['kid'].hex()[:16]} is not registered")
    if k["invalid_from"] is None or k["invalid_from"] > a["from"]:
        _own(data, "keys")[a["kid"]] = {**k, "invalid_from": a["from"]}


def _g_grant(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])
    if a["type"] not in data["types"]:
        raise TxRejected("unknown_type", f"credential type {a['type']!r} is not registered")
    held = _own(data, "grants", a["agency"])
    held[a["type"]] = [*held.get(a["type"], []), [a["from"], a["until"]]]


def _g_withdraw_grant(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    windows = data["grants"].get(a["agency"], {}).get(a["type"])
    if not windows:
        raise TxRejected("unknown_grant", f"{a['agency']!r} holds no grant for {a['type']!r}")
    # a withdrawal never rewrites who was allowed in the past
    _own(data, "grants", a["agency"])[a["type"]] = _ended(windows, max(a["at"], t))


def _g_register_type(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    d = dict(a["type"])
    kind = d.pop("id")
    if kind in data["types"]:
        raise TxRejected("type_exists", f"credential type {kind!r} is already registered")
    d["registered"] = t
    _own(data, "types")[kind] = d


def _g_set_quorum(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    data["quorum"] = a["quorum"]


def _g_set_credit_policy(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    if "credit" not in data:
        data["credit"] = {"grants": {}}
    _own(data, "credit")["policy"] = dict(a["policy"])


def _g_grant_credit(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])
    policy = data.get("credit", {}).get("policy")
    if policy is None or a["category"] not in policy_weights(policy):
        raise TxRejected("unknown_category", f"credit category {a['category']!r} is not in the "
                                             "credit policy")
    held = _own(data, "credit", "grants", a["agency"])
    held[a["category"]] = [*held.get(a["category"], []), [a["from"], a["until"]]]


def _g_withdraw_credit_grant(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    windows = data.get("credit", {}).get("grants", {}).get(a["agency"], {}).get(a["category"])
    if not windows:
        raise TxRejected("unknown_grant", f"{a['agency']!r} holds no credit grant for "
                                          f"{a['category']!r}")
    _own(data, "credit", "grants", a["agency"])[a["category"]] = _ended(windows,
                                                                        max(a["at"], t))


def _g_register_rule(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    """Done by Machine._register_rule (it needs the rule engine)."""


_GOV = {"add_agency": _g_add_agency, "remove_agency": _g_remove_agency,
        "rotate_key": _g_rotate_key, "invalidate_key": _g_invalidate_key, "grant": _g_grant,
        "withdraw_grant": _g_withdraw_grant, "register_type": _g_register_type,
        "set_quorum": _g_set_quorum, "set_credit_policy": _g_set_credit_policy,
        "grant_credit": _g_grant_credit, "withdraw_credit_grant": _g_withdraw_credit_grant,
        "register_rule": _g_register_rule}

