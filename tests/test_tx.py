"""Tests for ledger.tx: the signed envelope, txids, and the closed schema of every body type."""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.errors import DecodeError, SignatureError
from ledger.keys import PrivateKey, PublicKey
from ledger.network import demo_agency
from ledger.tx import GOV_ACTIONS, MAX_TX_SIZE, TX_TYPES, Tx, TxSig, make_tx, parse_body

NET = "demo"
T0 = 1_700_000_000
REG = demo_agency("reg", "Civil Registry")
EDU = demo_agency("edu", "Education Office")
NEW = demo_agency("new", "New Agency")
KEYS: dict[bytes, PublicKey] = {
    k.kid: k.public
    for a in (REG, EDU, NEW)
    for k in (a.issuer_key, a.node_key)
}
CID = hashlib.sha256(b"credential one").digest()


def spec(a: Any) -> dict[str, Any]:
    return dict(a.spec())


PERSON_TYPE = {
    "id": "person-id",
    "title": "Person identity",
    "claims": {"given_name": "string", "birth_date": "date", "height_cm": "int", "alive": "bool"},
    "derived": {"age_over_18": {"claim": "birth_date", "age_over": 18}},
}

GOV_ARGS: dict[str, dict[str, Any]] = {
    "add_agency": {"agency": spec(NEW)},
    "remove_agency": {"agency": "edu"},
    "rotate_key": {"agency": "reg", "role": "issuer", "new_key": NEW.issuer_key.public.raw,
                   "at": T0 + 10},
    "invalidate_key": {"kid": REG.issuer_key.kid, "from": T0 + 5},
    "grant": {"agency": "edu", "type": "diploma", "from": T0, "until": T0 + 1000},
    "withdraw_grant": {"agency": "edu", "type": "diploma", "at": T0 + 500},
    "register_type": {"type": PERSON_TYPE},
    "set_quorum": {"quorum": 2},
    "set_credit_policy": {"policy": {"categories": [{"name": "tax", "weight": 100}],
                                     "base": 600, "min": 0, "max": 1000, "half_life": 0,
                                     "serious_at": 50}},
    "grant_credit": {"agency": "edu", "category": "tax", "from": T0, "until": T0 + 1000},
    "withdraw_credit_grant": {"agency": "edu", "category": "tax", "at": T0 + 500},
    "register_rule": {"rule": {
        "service": "housing", "title": "Housing", "area": "micro_allowances", "agency": "edu",
        "needs": [{"type": "person-id", "claims": ["name"]}], "params": [], "subject": [],
        "clauses": [], "otherwise": {"decision": "approved", "reason": "ok"}, "fast_track": "",
        "fast_track_reason": "fast", "documents": {"fast_track": [], "standard": []}}},
}

BODIES: dict[str, dict[str, Any]] = {
    "genesis": {"network": NET, "time": T0, "quorum": 2, "agencies": [spec(REG), spec(EDU)]},
    **{f"governance:{action}": {"seq": 1, "action": action, "args": args}
       for action, args in GOV_ARGS.items()},
    "issue": {"credential_id": CID, "issuer": "reg", "type": "person-id", "valid_from": T0,
              "valid_until": T0 + 100, "status_index": 7, "ts": T0},
    "status": {"credential_id": CID, "status": "revoked", "reason": "lost", "ts": T0},
    "credit": {"subject": b"\x01" * 32, "category": "loan", "points": -20, "reason": "late",
               "date": T0, "expiry": T0 + 10, "ts": T0},
    "approval": {"service": "housing", "rule_hash": b"\x02" * 32, "decision": "approved",
                 "path": "fast_track", "reasons": ["good-credit"], "evidence": b"\x03" * 32,
                 "ts": T0},
}


def kind_of(name: str) -> str:
    return name.split(":", maxsplit=1)[0]


def envelope(payload: bytes, sigs: list[dict[str, Any]], **extra: Any) -> bytes:
    return codec.encode({"v": 1, "payload": payload, "sigs": sigs, **extra})


def raw_tx(kind: str, body: Any, signers: list[PrivateKey], net: str = NET,
           **payload_extra: Any) -> bytes:
    """Envelope bytes built by hand (bypassing make_tx's checks), signed properly."""
    payload = codec.encode({"net": net, "type": kind, "body": body, **payload_extra})
    return envelope(payload, [{"kid": k.kid, "sig": k.sign("tx", payload)} for k in signers])


def parse(kind: str, body: Any) -> Tx:
    return Tx.from_bytes(raw_tx(kind, body, [REG.issuer_key]))


def where_of(kind: str, path: tuple[Any, ...]) -> str:
    out = f"tx.body<{kind}>"
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# Raw maps whose keys are data (claim names), not schema fields.
OPAQUE = {"claims", "derived"}


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """Every schema field below ``value`` as (path, value), nested maps included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*path, k), v
            if k not in OPAQUE:
                yield from leaves(v, (*path, k))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        yield from leaves(value[0], (*path, 0))


def maps(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every closed map (schema object) in ``value``."""
    if isinstance(value, dict):
        yield path
        for k, v in value.items():
            if k not in OPAQUE:
                yield from maps(v, (*path, k))
    elif isinstance(value, list) and value and isinstance(value[0], dict):
        yield from maps(value[0], (*path, 0))


def get_in(value: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        value = value[p]
    return value


def wrong_values(v: Any) -> list[Any]:
    if isinstance(v, bool):
        return [1, "true"]
    if isinstance(v, int):
        return [True, "1", b"\x01", None]
    if isinstance(v, str):
        return [1, v.encode(), None]
    if isinstance(v, bytes):
        return [v.hex(), 1, [1]]
    if isinstance(v, list):
        return [{"a": 1}, "x"]
    if isinstance(v, dict):
        return [[1], "x", 1]
    raise AssertionError(v)


FIELD_CASES = [(name, path) for name, body in BODIES.items() for path, _ in leaves(body)]
MAP_CASES = [(name, path) for name, body in BODIES.items() for path in maps(body)]


def case_id(case: tuple[str, tuple[Any, ...]]) -> str:
    return f"{case[0]}/{'.'.join(map(str, case[1])) or '<body>'}"


# --- the valid bodies --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BODIES))
def test_valid_body_parses_and_round_trips(name: str) -> None:
    kind = kind_of(name)
    tx = make_tx(NET, kind, BODIES[name], [REG.issuer_key])
    assert tx.type == kind
    assert tx.net == NET
    assert tx.txid == hashlib.sha256(tx.raw).digest()
    again = Tx.from_bytes(tx.raw)
    assert again == tx
    assert again.raw == tx.raw
    assert again.txid == tx.txid
    assert codec.decode(tx.payload) == {"net": NET, "type": kind, "body": BODIES[name]}
    tx.verify_signatures(KEYS)


def test_every_type_and_action_is_covered() -> None:
    assert {kind_of(n) for n in BODIES} == set(TX_TYPES)
    assert set(GOV_ARGS) == set(GOV_ACTIONS)


def test_envelope_layout() -> None:
    tx = make_tx(NET, "issue", BODIES["issue"], [REG.issuer_key])
    env = codec.decode(tx.raw)
    assert set(env) == {"v", "payload", "sigs"}
    assert env["v"] == 1
    assert env["payload"] == tx.payload
    assert env["sigs"] == [{"kid": REG.issuer_key.kid,
                            "sig": REG.issuer_key.sign("tx", tx.payload)}]
    assert tx.sigs == (TxSig(REG.issuer_key.kid, env["sigs"][0]["sig"]),)


def test_txid_changes_with_signers_but_payload_does_not() -> None:
    body = BODIES["governance:set_quorum"]
    one = make_tx(NET, "governance", body, [REG.issuer_key])
    two = make_tx(NET, "governance", body, [REG.issuer_key, EDU.issuer_key])
    assert one.payload == two.payload
    assert one.txid != two.txid
    assert [s.kid for s in two.sigs] == [REG.issuer_key.kid, EDU.issuer_key.kid]
    assert one.sign(EDU.issuer_key) == two
    assert two.sign(REG.issuer_key) is two  # signing twice with one key is a no-op
    two.verify_signatures(KEYS)


def test_make_tx_needs_signers() -> None:
    with pytest.raises(ValueError, match="signer"):
        make_tx(NET, "issue", BODIES["issue"], [])


def test_make_tx_rejects_bad_body() -> None:
    body = dict(BODIES["issue"], extra=1)
    with pytest.raises(DecodeError) as info:
        make_tx(NET, "issue", body, [REG.issuer_key])
    assert info.value.where == "tx.body<issue>"


def test_body_is_normalized_copy() -> None:
    body = copy.deepcopy(BODIES["issue"])
    tx = make_tx(NET, "issue", body, [REG.issuer_key])
    body["status_index"] = 99
    assert tx.body["status_index"] == 7


def test_to_dict() -> None:
    tx = make_tx(NET, "status", BODIES["status"], [REG.issuer_key])
    d = tx.to_dict()
    assert d["txid"] == tx.txid.hex()
    assert d["type"] == "status"
    assert d["body"]["credential_id"] == CID.hex()
    assert d["signers"] == [REG.issuer_key.kid.hex()]


def test_parse_body_direct() -> None:
    assert parse_body("status", BODIES["status"]) == BODIES["status"]
    with pytest.raises(DecodeError):
        parse_body("status", {**BODIES["status"], "x": 1})


# --- closed schemas: missing / wrong type / unknown --------------------------------------------


@pytest.mark.parametrize("case", FIELD_CASES, ids=case_id)
def test_missing_field(case: tuple[str, tuple[Any, ...]]) -> None:
    name, path = case
    body = copy.deepcopy(BODIES[name])
    del get_in(body, path[:-1])[path[-1]]
    with pytest.raises(DecodeError) as info:
        parse(kind_of(name), body)
    assert info.value.where == where_of(kind_of(name), path)
    assert "missing" in str(info.value)


@pytest.mark.parametrize("case", FIELD_CASES, ids=case_id)
def test_wrong_type_field(case: tuple[str, tuple[Any, ...]]) -> None:
    name, path = case
    original = get_in(BODIES[name], path)
    for bad in wrong_values(original):
        body = copy.deepcopy(BODIES[name])
        get_in(body, path[:-1])[path[-1]] = bad
        with pytest.raises(DecodeError) as info:
            parse(kind_of(name), body)
        assert info.value.where == where_of(kind_of(name), path), (bad, str(info.value))
        assert "expected" in str(info.value)


@pytest.mark.parametrize("case", MAP_CASES, ids=case_id)
def test_unknown_field(case: tuple[str, tuple[Any, ...]]) -> None:
    name, path = case
    body = copy.deepcopy(BODIES[name])
    get_in(body, path)["zz_unknown"] = 1
    with pytest.raises(DecodeError) as info:
        parse(kind_of(name), body)
    assert info.value.where == where_of(kind_of(name), path)
    assert "zz_unknown" in str(info.value)


def test_bool_is_not_an_int_in_bodies() -> None:
    with pytest.raises(DecodeError) as info:
        parse("issue", {**BODIES["issue"], "status_index": True})
    assert info.value.where == "tx.body<issue>.status_index"
    with pytest.raises(DecodeError) as info:
        parse("governance", {"seq": 1, "action": "set_quorum", "args": {"quorum": True}})
    assert info.value.where == "tx.body<governance>.args.quorum"


# --- value rules -------------------------------------------------------------------------------


def bad_body(name: str, path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(BODIES[name])
    get_in(body, path[:-1])[path[-1]] = value
    return body


@pytest.mark.parametrize(
    ("name", "path", "value"),
    [
        ("issue", ("credential_id",), b"\x00" * 31),
        ("issue", ("issuer",), "Reg"),
        ("issue", ("issuer",), ""),
        ("issue", ("issuer",), "-reg"),
        ("issue", ("issuer",), "a" * 65),
        ("issue", ("type",), "person id"),
        ("issue", ("status_index",), -1),
        ("issue", ("status_index",), 1 << 32),
        ("issue", ("valid_from",), -1),
        ("issue", ("ts",), (1 << 40) + 1),
        ("status", ("status",), "expired"),
        ("status", ("reason",), "r" * 65),
        ("credit", ("points",), 1_000_001),
        ("credit", ("subject",), b"\x01" * 33),
        ("approval", ("decision",), "maybe"),
        ("approval", ("path",), "slow"),
        ("approval", ("reasons",), [""]),
        ("approval", ("reasons",), [1]),
        ("approval", ("reasons",), ["x" * 65]),
        ("approval", ("reasons",), ["r"] * 33),
        ("approval", ("evidence",), b"\x03" * 31),
        ("approval", ("rule_hash",), b"\x02" * 33),
        ("credit", ("withdraws",), b"\x04" * 31),
        ("governance:set_quorum", ("seq",), 0),
        ("governance:set_quorum", ("action",), "dissolve"),
        ("governance:set_quorum", ("args", "quorum"), 0),
        ("governance:set_quorum", ("args", "quorum"), 257),
        ("governance:set_quorum", ("args", "quorum"), 65),  # MAX_SIGS + 1: no tx could meet it
        ("governance:rotate_key", ("args", "role"), "admin"),
        ("governance:rotate_key", ("args", "new_key"), b"\x01" * 31),
        ("governance:invalidate_key", ("args", "kid"), b"\x01" * 33),
        ("governance:add_agency", ("args", "agency", "node_key"), b"\x01" * 16),
        ("governance:add_agency", ("args", "agency", "name"), "n" * 201),
        ("genesis", ("quorum",), 0),
        ("genesis", ("quorum",), 3),
        ("genesis", ("network",), "Demo Net"),
        ("genesis", ("agencies", 0, "id"), "REG"),
    ],
)
def test_out_of_range_values(name: str, path: tuple[Any, ...], value: Any) -> None:
    kind = kind_of(name)
    with pytest.raises(DecodeError) as info:
        parse(kind, bad_body(name, path, value))
    assert info.value.where.startswith(f"tx.body<{kind}>")
    # the error names the field (or, for list items, the list)
    assert str(path[0]) in info.value.where


def test_issue_validity_window_inverted() -> None:
    for until in (T0, T0 - 1):
        with pytest.raises(DecodeError, match="ends before") as info:
            parse("issue", {**BODIES["issue"], "valid_until": until})
        assert info.value.where == "tx.body<issue>.valid_until"
    assert parse("issue", {**BODIES["issue"], "valid_until": T0 + 1}).body["valid_until"] == T0 + 1


@pytest.mark.parametrize("action", ["grant", "grant_credit"])
def test_grant_window_inverted(action: str) -> None:
    for until in (T0, T0 - 1):  # a window of no second, or backwards
        args = dict(GOV_ARGS[action], until=until)
        with pytest.raises(DecodeError, match="ends before") as info:
            parse("governance", {"seq": 1, "action": action, "args": args})
        assert info.value.where == "tx.body<governance>.args.until"
    args = dict(GOV_ARGS[action], until=T0 + 1)
    assert parse("governance", {"seq": 1, "action": action, "args": args}).body["args"] == args


def test_genesis_rules() -> None:
    with pytest.raises(DecodeError) as info:
        parse("genesis", {**BODIES["genesis"], "agencies": [spec(REG), spec(REG)]})
    assert info.value.where == "tx.body<genesis>.agencies"
    assert "duplicate" in str(info.value)
    with pytest.raises(DecodeError) as info:
        parse("genesis", {**BODIES["genesis"], "agencies": [], "quorum": 1})
    assert info.value.where == "tx.body<genesis>.quorum"
    with pytest.raises(DecodeError) as info:
        parse("genesis", {**BODIES["genesis"], "agencies": [spec(REG), "edu"]})
    assert info.value.where == "tx.body<genesis>.agencies[1]"
    # every founder signs the genesis: at most MAX_SIGS (64) of them
    founders = [spec(demo_agency(f"a{i:02d}", f"Agency {i}", "caps")) for i in range(65)]
    with pytest.raises(DecodeError, match="more than 64 items") as info:
        parse("genesis", {**BODIES["genesis"], "agencies": founders, "quorum": 1})
    assert info.value.where == "tx.body<genesis>.agencies"
    body = parse("genesis", {**BODIES["genesis"], "agencies": founders[:64], "quorum": 64}).body
    assert len(body["agencies"]) == 64


def type_def(**changes: Any) -> dict[str, Any]:
    return {"seq": 1, "action": "register_type",
            "args": {"type": {**copy.deepcopy(PERSON_TYPE), **changes}}}


@pytest.mark.parametrize(
    "changes",
    [
        {"claims": {}},
        {"claims": {"name": "float"}},
        {"claims": {"Name": "string"}},
        {"claims": {"na me": "string"}},
        # as above, with the derived claim's date kept: each refused for its one fault
        {"claims": {}, "derived": {}},  # a type of no claim at all
        {"claims": {"n" * 65: "string", "birth_date": "date"}},  # identifiers: 1-64 chars
        {"claims": {"name": "float", "birth_date": "date"}},
        {"claims": {"Name": "string", "birth_date": "date"}},
        {"claims": {"name": None, "birth_date": "date"}},
        {"derived": {"a" * 65: {"claim": "birth_date", "age_over": 18}}},
        {"claims": {"name": 1}},
        {"claims": {"name": None}},
        {"derived": {"adult": {"claim": "given_name", "age_over": 18}}},
        {"derived": {"adult": {"claim": "nope", "age_over": 18}}},
        {"derived": {"birth_date": {"claim": "birth_date", "age_over": 18}}},
        {"derived": {"adult": {"claim": "birth_date", "age_over": 0}}},
        {"derived": {"adult": {"claim": "birth_date"}}},
        {"derived": {"adult": "birth_date"}},
        {"title": "t" * 201},
        # reserved by SD-JWT VC: nothing of the type could issue (birth_date kept, for the
        # derived claim: only the reserved name is wrong)
        {"claims": {"iss": "string", "birth_date": "date"}},
        {"claims": {"status": "string", "name": "string", "birth_date": "date"}},
        {"derived": {"exp": {"claim": "birth_date", "age_over": 18}}},
        # a derived name as a claim's: a Cyrillic U+0430 passed for age_over_65 (ADR 53)
        {"derived": {"\u0430ge_over_65": {"claim": "birth_date", "age_over": 18}}},
        {"derived": {"age_over_65\u202e": {"claim": "birth_date", "age_over": 18}}},
        {"derived": {"_sd": {"claim": "birth_date", "age_over": 18}}},
    ],
)
def test_register_type_rules(changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError) as info:
        parse("governance", type_def(**changes))
    assert info.value.where.startswith("tx.body<governance>.args.type")


@pytest.mark.parametrize("kind", [[1], {"k": "string"}], ids=["list", "map"])
def test_register_type_unhashable_claim_kind_is_decode_error(kind: Any) -> None:
    """Untrusted bytes must only ever raise DecodeError, whatever the claim kind's type is."""
    with pytest.raises(DecodeError) as info:
        parse("governance", type_def(claims={"name": kind}))
    assert info.value.where.startswith("tx.body<governance>.args.type")


def test_register_type_normalized() -> None:
    tx = parse("governance", type_def())
    assert tx.body["args"]["type"] == PERSON_TYPE
    longest = {"n" * 64: "string", "birth_date": "date"}
    derived = {"a" * 64: {"claim": "birth_date", "age_over": 18}}
    body = parse("governance", type_def(claims=longest, derived=derived)).body
    assert body["args"]["type"]["claims"] == longest


# --- envelope rules ----------------------------------------------------------------------------


def good_payload() -> bytes:
    return codec.encode({"net": NET, "type": "issue", "body": BODIES["issue"]})


def sig_of(k: PrivateKey, payload: bytes) -> dict[str, Any]:
    return {"kid": k.kid, "sig": k.sign("tx", payload)}


def test_no_signatures() -> None:
    with pytest.raises(DecodeError, match="at least one signature") as info:
        Tx.from_bytes(envelope(good_payload(), []))
    assert info.value.where == "tx.sigs"


def test_same_key_twice() -> None:
    p = good_payload()
    with pytest.raises(DecodeError, match="twice") as info:
        Tx.from_bytes(envelope(p, [sig_of(REG.issuer_key, p), sig_of(REG.issuer_key, p)]))
    assert info.value.where == "tx.sigs"
    # the same kid with a different signature value is still the same key twice
    other = {"kid": REG.issuer_key.kid, "sig": b"\x00" * 64}
    with pytest.raises(DecodeError, match="twice"):
        Tx.from_bytes(envelope(p, [sig_of(REG.issuer_key, p), other]))


def test_too_many_signatures() -> None:
    p = good_payload()
    sigs = [{"kid": bytes([i]) * 32, "sig": b"\x00" * 64} for i in range(65)]
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(envelope(p, sigs))
    assert info.value.where == "tx.sigs"


def test_a_65th_signature_is_not_added() -> None:
    """Tx.sign refuses a signature the parse would refuse (ADR 48): at 64, none is added."""
    keys = [PrivateKey(hashlib.sha256(b"signer %d" % i).digest()) for i in range(65)]
    full = make_tx(NET, "issue", BODIES["issue"], keys[:64])
    assert len(Tx.from_bytes(full.raw).sigs) == 64
    with pytest.raises(DecodeError, match="at most 64 signatures") as info:
        full.sign(keys[64])
    assert info.value.where == "tx.sigs"
    assert full.sign(keys[0]) is full  # a key that signed already adds nothing


def test_a_signature_that_would_pass_the_size_limit_is_not_added() -> None:
    """A rule's clauses may fill a payload nearly to MAX_TX_SIZE: a co-signature that took the
    envelope past it made bytes every node refuses (a proposal lost, as at 65 signatures)."""
    rule = copy.deepcopy(GOV_ARGS["register_rule"]["rule"])
    rule["clauses"] = [{"when": "x" * 1995, "decision": "approved", "reason": "ok"}] * 32
    one = make_tx(NET, "governance", {"seq": 1, "action": "register_rule", "args": {
        "rule": rule}}, [REG.node_key])
    assert MAX_TX_SIZE - len(one.raw) < 109  # room for no second {kid, sig}
    assert Tx.from_bytes(one.raw).raw == one.raw
    with pytest.raises(DecodeError, match="over the 65536-byte limit") as info:
        one.sign(EDU.node_key)
    assert info.value.where == "tx"
    with pytest.raises(DecodeError, match="over the 65536-byte limit"):
        make_tx(NET, "governance", {"seq": 1, "action": "register_rule", "args": {
            "rule": rule}}, [REG.node_key, EDU.node_key])


@pytest.mark.parametrize(
    ("sig", "where"),
    [
        ({"kid": b"\x00" * 31, "sig": b"\x00" * 64}, "tx.sigs[0].kid"),
        ({"kid": b"\x00" * 32, "sig": b"\x00" * 63}, "tx.sigs[0].sig"),
        ({"kid": b"\x00" * 32}, "tx.sigs[0].sig"),
        ({"kid": b"\x00" * 32, "sig": b"\x00" * 64, "alg": "ed25519"}, "tx.sigs[0]"),
        ({"kid": "00" * 32, "sig": b"\x00" * 64}, "tx.sigs[0].kid"),
    ],
)
def test_bad_signature_entries(sig: dict[str, Any], where: str) -> None:
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(envelope(good_payload(), [sig]))
    assert info.value.where == where


def test_signature_entry_not_a_map() -> None:
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(envelope(good_payload(), [b"\x00" * 96]))
    assert info.value.where == "tx.sigs[0]"


@pytest.mark.parametrize(
    ("env", "where"),
    [
        ({"v": 2}, "tx.v"),
        ({"v": True}, "tx.v"),
        ({"extra": 1}, "tx"),
        ({"payload": "text"}, "tx.payload"),
        ({"sigs": {}}, "tx.sigs"),
    ],
)
def test_bad_envelope(env: dict[str, Any], where: str) -> None:
    p = good_payload()
    base: dict[str, Any] = {"v": 1, "payload": p, "sigs": [sig_of(REG.issuer_key, p)]}
    base.update(env)
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(codec.encode(base))
    assert info.value.where == where


def test_missing_envelope_fields() -> None:
    p = good_payload()
    full: dict[str, Any] = {"v": 1, "payload": p, "sigs": [sig_of(REG.issuer_key, p)]}
    for name in full:
        partial = {k: v for k, v in full.items() if k != name}
        with pytest.raises(DecodeError) as info:
            Tx.from_bytes(codec.encode(partial))
        assert info.value.where == f"tx.{name}"


def test_envelope_not_a_map_or_not_canonical() -> None:
    with pytest.raises(DecodeError):
        Tx.from_bytes(codec.encode([1, 2]))
    tx = make_tx(NET, "issue", BODIES["issue"], [REG.issuer_key])
    with pytest.raises(DecodeError):
        Tx.from_bytes(tx.raw + b"\x00")


def test_unknown_tx_type() -> None:
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(raw_tx("mint", BODIES["issue"], [REG.issuer_key]))
    assert info.value.where == "tx.payload.type"
    with pytest.raises(KeyError):
        parse_body("mint", {})


@pytest.mark.parametrize(
    ("payload", "where"),
    [
        ({"net": NET, "type": "issue"}, "tx.payload.body"),
        ({"net": NET, "body": BODIES["issue"]}, "tx.payload.type"),
        ({"type": "issue", "body": BODIES["issue"]}, "tx.payload.net"),
        ({"net": "Demo!", "type": "issue", "body": BODIES["issue"]}, "tx.payload.net"),
        ({"net": NET, "type": "issue", "body": BODIES["issue"], "x": 1}, "tx.payload"),
        ({"net": NET, "type": "issue", "body": [1]}, "tx.payload.body"),
    ],
)
def test_bad_payload(payload: dict[str, Any], where: str) -> None:
    p = codec.encode(payload)
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(envelope(p, [sig_of(REG.issuer_key, p)]))
    assert info.value.where == where


def test_payload_not_canonical() -> None:
    p = b"\x83\xa3net\xa4demo\xa4type\xa5issue\xa4body\x80"  # keys out of order
    with pytest.raises(DecodeError) as info:
        Tx.from_bytes(envelope(p, [sig_of(REG.issuer_key, p)]))
    assert info.value.where == "tx.payload"


def test_oversize_tx() -> None:
    p = good_payload()
    big = envelope(p, [sig_of(REG.issuer_key, p)], pad=b"\x00" * MAX_TX_SIZE)
    assert len(big) > MAX_TX_SIZE
    with pytest.raises(DecodeError, match="limit") as info:
        Tx.from_bytes(big)
    assert info.value.where == "tx"


# --- signatures --------------------------------------------------------------------------------


def test_verify_signatures_unknown_key() -> None:
    tx = make_tx(NET, "issue", BODIES["issue"], [REG.issuer_key])
    with pytest.raises(SignatureError, match="not in the registry"):
        tx.verify_signatures({})
    with pytest.raises(SignatureError):
        tx.verify_signatures({REG.issuer_key.kid: EDU.issuer_key.public})


def test_verify_signatures_checks_all() -> None:
    body = BODIES["governance:set_quorum"]
    tx = make_tx(NET, "governance", body, [REG.issuer_key, EDU.issuer_key])
    tx.verify_signatures(KEYS)
    env = codec.decode(tx.raw)
    env["sigs"][1]["sig"] = env["sigs"][0]["sig"]
    forged = Tx.from_bytes(codec.encode(env))
    with pytest.raises(SignatureError):
        forged.verify_signatures(KEYS)


def test_signature_is_in_tx_domain() -> None:
    p = good_payload()
    wrong_domain = {"kid": REG.issuer_key.kid, "sig": REG.issuer_key.sign("checkpoint", p)}
    tx = Tx.from_bytes(envelope(p, [wrong_domain]))
    with pytest.raises(SignatureError):
        tx.verify_signatures(KEYS)


SAMPLE_TXS = [
    make_tx(NET, "issue", BODIES["issue"], [REG.issuer_key]),
    make_tx(NET, "governance", BODIES["governance:add_agency"], [REG.issuer_key,
                                                                  EDU.issuer_key]),
    make_tx(NET, "approval", BODIES["approval"], [EDU.issuer_key]),
]


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(SAMPLE_TXS), st.data())
def test_one_byte_mutation_never_keeps_txid_or_signature(tx: Tx, data: st.DataObject) -> None:
    raw = bytearray(tx.raw)
    pos = data.draw(st.integers(0, len(raw) - 1), label="pos")
    delta = data.draw(st.integers(1, 255), label="xor")
    raw[pos] ^= delta
    try:
        mutated = Tx.from_bytes(bytes(raw))
    except DecodeError:
        return
    assert mutated.txid != tx.txid
    with pytest.raises(SignatureError):
        mutated.verify_signatures(KEYS)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        Tx.from_bytes(data)
