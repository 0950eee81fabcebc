"""The deterministic state machine: the registry and credential status, and ``apply``.

Pure: no I/O. The credential table is read through a :class:`StateView` (the store gives one backed
by LevelDB); changes accumulate in the :class:`Machine` overlay until the caller takes them. Every
rule is evaluated against the state before the transaction and the *block time*; a refused
transaction raises :class:`~ledger.errors.TxRejected` with a stable ``code`` and changes nothing.

State keys (values are canonical msgpack):
``c`` + credential_id → credential record; ``i`` + issuer NUL type NUL index(4) → credential_id.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from ledger import codec
from ledger.errors import DecodeError, SignatureError, TxRejected
from ledger.keys import PublicKey
from ledger.tx import Tx

__all__ = ["Credential", "Machine", "Registry", "StateView", "credential_key", "index_key"]

_TRANSITIONS = {("valid", "suspended"), ("suspended", "valid"), ("valid", "revoked"),
                ("suspended", "revoked")}


class StateView(Protocol):
    def get(self, key: bytes) -> bytes | None: ...


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
        # A fixed-order array, not a map: written once per anchor, so kept small and cheap.
        return codec.encode([self.issuer, self.type, self.status, self.status_index,
                             self.valid_from, self.valid_until, self.issued_at, self.issuer_kid])

    @classmethod
    def from_bytes(cls, credential_id: bytes, data: bytes) -> Credential:
        d = codec.decode(data, what="credential")
        if not isinstance(d, list) or len(d) != 8:
            raise DecodeError("a credential record is an array of 8", "credential")
        return cls(credential_id, *d)


class Registry:
    """Agencies, keys with their history, grants, credential types and the quorum.

    Held as one canonical map (``data``) so it can be stored, hashed and compared as a whole.
    Treat instances as immutable: governance produces a new one (:meth:`evolve`).
    """

    __slots__ = ("_pubs", "data")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data: dict[str, Any] = dict(data)
        self._pubs = {kid: PublicKey(k["pub"]) for kid, k in self._keys().items()}

    # -- serialization --
    def to_bytes(self) -> bytes:
        return codec.encode(_keys_to_hex(self.data))

    @classmethod
    def from_bytes(cls, data: bytes) -> Registry:
        return cls(_keys_from_hex(codec.decode(data, max_size=16 << 20, what="registry")))

    def evolve(self) -> dict[str, Any]:
        """A deep, mutable copy of the data for building the next registry."""
        return copy.deepcopy(self.data)

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

    def node_keys(self, t: int) -> dict[str, list[PublicKey]]:
        """Current agency → node keys valid at ``t`` (checkpoint quorum checks)."""
        out: dict[str, list[PublicKey]] = {}
        for a in self.current_agencies(t):
            out[a] = [self._pubs[kid] for kid, _ in self.keys_of(a)
                      if self.key_valid(kid, t, "node")]
        return out

    def grant_covers(self, agency_id: str, kind: str, t: int) -> bool:
        windows = self.data["grants"].get(agency_id, {}).get(kind, [])
        return any(w[0] <= t < w[1] for w in windows)

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

    def signer(self, tx: Tx, t: int) -> str:
        """The agency whose current issuer key signed a single-signer ``tx`` at ``t``."""
        if len(tx.sigs) != 1:
            raise TxRejected("bad_signers", f"a {tx.type} transaction has exactly one signature")
        kid = tx.sigs[0].kid
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
    data["keys"][kid] = {"agency": agency, "role": role, "pub": pub, "valid_from": t,
                         "invalid_from": None}


def _add_agency(data: dict[str, Any], spec: Mapping[str, Any], t: int) -> None:
    if spec["id"] in data["agencies"]:
        raise TxRejected("agency_exists", f"agency {spec['id']!r} already exists")
    if spec["node_key"] == spec["issuer_key"]:
        raise TxRejected("key_reused", "node and issuer keys must differ")
    data["agencies"][spec["id"]] = {"name": spec["name"], "added": t, "removed": None}
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


class Machine:
    """Applies transactions in order against a registry and a base state view.

    ``apply`` either raises TxRejected (nothing changed) or records the effects in the overlay.
    """

    def __init__(self, registry: Registry, base: StateView) -> None:
        self.registry = registry
        self.registry_changed = False
        self._base = base
        self.writes: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        v = self.writes.get(key)
        return v if v is not None else self._base.get(key)

    def credential(self, credential_id: bytes) -> Credential | None:
        raw = self.get(credential_key(credential_id))
        return None if raw is None else Credential.from_bytes(credential_id, raw)

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
        else:
            raise TxRejected("not_enabled", f"{tx.type} transactions are not enabled on this "
                                            "ledger yet (no credit policy / rule registered)")

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
        ckey = credential_key(b["credential_id"])
        if self.get(ckey) is not None:
            raise TxRejected("credential_exists", "this credential is already anchored")
        ikey = index_key(agency, b["type"], b["status_index"])
        if self.get(ikey) is not None:
            raise TxRejected("status_index_used", f"status index {b['status_index']} of "
                                                  f"{agency}/{b['type']} was used before")
        cred = Credential(b["credential_id"], agency, b["type"], "valid", b["status_index"],
                          b["valid_from"], b["valid_until"], t, tx.sigs[0].kid)
        self.writes[ckey] = cred.to_bytes()
        self.writes[ikey] = b["credential_id"]

    def _status(self, tx: Tx, t: int) -> None:
        b = tx.body
        agency = self.registry.signer(tx, t)
        cred = self.credential(b["credential_id"])
        if cred is None:
            raise TxRejected("unknown_credential", "no anchored credential has this id")
        if agency != cred.issuer and not self.registry.grant_covers(agency, cred.type, t):
            raise TxRejected("not_authorized", f"{agency!r} neither issued this credential nor "
                                               f"holds a grant for {cred.type!r}")
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
        data = reg.evolve()
        data["gov_seq"] = b["seq"]
        a = b["args"]
        action = b["action"]
        try:
            _GOV[action](data, a, t)
        except (KeyError, ValueError) as e:  # pragma: no cover - defensive
            raise TxRejected("bad_governance", str(e)) from e
        live = [x for x, v in data["agencies"].items() if v["removed"] is None]
        if data["quorum"] > len(live):
            raise TxRejected("quorum_unreachable", f"quorum {data['quorum']} > {len(live)} "
                                                   "member agencies")
        self.registry = Registry(data)
        self.registry_changed = True


def _need_agency(data: dict[str, Any], agency: str) -> dict[str, Any]:
    a: dict[str, Any] | None = data["agencies"].get(agency)
    if a is None or a["removed"] is not None:
        raise TxRejected("unknown_agency", f"agency {agency!r} is not a member")
    return a


def _g_add_agency(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _add_agency(data, a["agency"], t)


def _g_remove_agency(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])["removed"] = t


def _g_rotate_key(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])
    at = max(a["at"], t)
    for k in data["keys"].values():
        if (k["agency"] == a["agency"] and k["role"] == a["role"]
                and (k["invalid_from"] is None or k["invalid_from"] > at)):
            k["invalid_from"] = at
    _add_key(data, a["agency"], a["role"], a["new_key"], at)


def _g_invalidate_key(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    k = data["keys"].get(a["kid"])
    if k is None:
        raise TxRejected("unknown_key", f"key {a['kid'].hex()[:16]} is not registered")
    if k["invalid_from"] is None or k["invalid_from"] > a["from"]:
        k["invalid_from"] = a["from"]


def _g_grant(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    _need_agency(data, a["agency"])
    if a["type"] not in data["types"]:
        raise TxRejected("unknown_type", f"credential type {a['type']!r} is not registered")
    windows = data["grants"].setdefault(a["agency"], {}).setdefault(a["type"], [])
    windows.append([a["from"], a["until"]])


def _g_withdraw_grant(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    windows = data["grants"].get(a["agency"], {}).get(a["type"])
    if not windows:
        raise TxRejected("unknown_grant", f"{a['agency']!r} holds no grant for {a['type']!r}")
    at = max(a["at"], t)  # a withdrawal never rewrites who was allowed in the past
    for w in windows:
        w[1] = max(w[0], min(w[1], at))


def _g_register_type(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    d = dict(a["type"])
    kind = d.pop("id")
    if kind in data["types"]:
        raise TxRejected("type_exists", f"credential type {kind!r} is already registered")
    d["registered"] = t
    data["types"][kind] = d


def _g_set_quorum(data: dict[str, Any], a: Mapping[str, Any], t: int) -> None:
    data["quorum"] = a["quorum"]


_GOV = {"add_agency": _g_add_agency, "remove_agency": _g_remove_agency,
        "rotate_key": _g_rotate_key, "invalidate_key": _g_invalidate_key, "grant": _g_grant,
        "withdraw_grant": _g_withdraw_grant, "register_type": _g_register_type,
        "set_quorum": _g_set_quorum}

