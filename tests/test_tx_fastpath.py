"""The fast path of Tx.from_bytes (ADR 25) accepts a subset of the strict parse, with equal results.

Every case runs both: ``_fast_parse`` must return either ``None`` (the strict path then decides)
or exactly the Tx the strict path builds; it must never accept bytes the strict path refuses.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from typing import Any

import fastpath
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger import tx as txmod
from ledger.errors import DecodeError
from ledger.keys import PrivateKey
from ledger.network import demo_agency
from ledger.tx import Tx, make_tx

NET = "demo"
T0 = 1_700_000_000
EDU = demo_agency("edu", "Education Office")
CID = hashlib.sha256(b"credential one").digest()

ISSUE = {"credential_id": CID, "issuer": "edu", "type": "diploma", "valid_from": T0,
         "valid_until": T0 + 1000, "status_index": 7, "ts": T0}
STATUS = {"credential_id": CID, "status": "suspended", "reason": "lost", "ts": T0}
CREDIT = {"subject": CID, "category": "tax", "points": -20, "reason": "late", "date": T0,
          "expiry": T0 + 10, "ts": T0}
CREDIT_W = {**CREDIT, "withdraws": hashlib.sha256(b"earlier").digest()}
GOV = {"seq": 1, "action": "set_quorum", "args": {"quorum": 1}}


def strict(raw: bytes) -> Tx:
    """The strict path alone, with the fast path switched off."""
    return fastpath.strict_only(txmod, "_fast_parse", Tx.from_bytes, raw)


def agree(raw: bytes) -> Tx | None:
    """The fast path is None or the strict result (bodies in the same key order too)."""
    got = fastpath.agree(txmod._fast_parse, strict, raw)
    if got is not None:
        assert list(got.body) == list(strict(raw).body)
    return got


def envelope(kind: str, body: dict[str, Any], *, sigs: int = 1) -> bytes:
    keys = [EDU.issuer_key, EDU.node_key][:sigs]
    return make_tx(NET, kind, body, keys).raw


@pytest.mark.parametrize(("kind", "body"), [("issue", ISSUE), ("status", STATUS),
                                            ("credit", CREDIT), ("credit", CREDIT_W)])
@pytest.mark.parametrize("sigs", [1, 2])
def test_flat_types_take_the_fast_path_with_the_strict_result(kind: str, body: dict[str, Any],
                                                              sigs: int) -> None:
    got = agree(envelope(kind, body, sigs=sigs))
    assert got is not None and got.type == kind and len(got.sigs) == sigs


def test_other_types_are_left_to_the_strict_path() -> None:
    raw = envelope("governance", GOV)
    assert txmod._fast_parse(raw) is None
    assert Tx.from_bytes(raw).type == "governance"


def _raw_env(payload: dict[str, Any] | bytes, **env: Any) -> bytes:
    p = payload if isinstance(payload, bytes) else msgpack.packb(payload, use_bin_type=True)
    e = {"payload": p, "sigs": [{"kid": bytes(32), "sig": bytes(64)}], "v": 1, **env}
    return msgpack.packb(e, use_bin_type=True)  # type: ignore[no-any-return]


def _payload(body: dict[str, Any], kind: str = "issue") -> dict[str, Any]:
    return {"body": body, "net": NET, "type": kind}


def _body_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    sorted_issue = dict(sorted(ISSUE.items()))
    yield "unsorted body keys", dict(reversed(list(sorted_issue.items())))
    yield "extra key", {**sorted_issue, "zz": 1}
    yield "missing key", {k: v for k, v in sorted_issue.items() if k != "ts"}
    yield "bool for int", {**sorted_issue, "status_index": True}
    yield "float", {**sorted_issue, "ts": float(T0)}
    yield "str for bytes", {**sorted_issue, "credential_id": CID.hex()}
    yield "short id", {**sorted_issue, "credential_id": CID[:31]}
    yield "bad identifier", {**sorted_issue, "issuer": "Edu!"}
    yield "long identifier", {**sorted_issue, "issuer": "e" * 65}
    yield "identifier with a trailing newline", {**sorted_issue, "issuer": "edu\n"}
    yield "negative time", {**sorted_issue, "valid_from": -1}
    yield "time too large", {**sorted_issue, "ts": 1 << 41}
    yield "window backwards", {**sorted_issue, "valid_until": T0 - 1}
    yield "index too large", {**sorted_issue, "status_index": 1 << 32}
    yield "nested map", {**sorted_issue, "type": {"a": 1}}


@pytest.mark.parametrize(("case", "body"), list(_body_cases()))
def test_malformed_issue_bodies_are_refused_by_both(case: str, body: dict[str, Any]) -> None:
    raw = _raw_env(_payload(body))
    assert txmod._fast_parse(raw) is None, case
    with pytest.raises(DecodeError):
        Tx.from_bytes(raw)


def _flat_cases() -> Iterator[tuple[str, str, dict[str, Any]]]:
    status, credit = dict(sorted(STATUS.items())), dict(sorted(CREDIT.items()))
    credit_w = dict(sorted(CREDIT_W.items()))
    yield "status", "unknown status", {**status, "status": "expired"}
    yield "status", "reason too long", {**status, "reason": "r" * 65}
    yield "status", "reason not a str", {**status, "reason": b"lost"}
    yield "status", "short id", {**status, "credential_id": CID[:31]}
    yield "status", "negative time", {**status, "ts": -1}
    yield "credit", "points too low", {**credit, "points": -1_000_001}
    yield "credit", "points too high", {**credit, "points": 1_000_001}
    yield "credit", "bool points", {**credit, "points": True}
    yield "credit", "reason too long", {**credit, "reason": "r" * 65}
    yield "credit", "bad category", {**credit, "category": "Tax"}
    yield "credit", "short subject", {**credit, "subject": CID[:31]}
    yield "credit", "negative date", {**credit, "date": -1}
    yield "credit", "expiry too large", {**credit, "expiry": (1 << 40) + 1}
    yield "credit", "ts too large", {**credit, "ts": (1 << 40) + 1}
    yield "credit", "short withdraws", {**credit_w, "withdraws": CID[:31]}
    yield "credit", "str withdraws", {**credit_w, "withdraws": CID.hex()}
    yield "credit", "extra key", {**credit, "zz": 1}


@pytest.mark.parametrize(("kind", "case", "body"), list(_flat_cases()))
def test_malformed_status_and_credit_bodies_are_refused_by_both(kind: str, case: str,
                                                                 body: dict[str, Any]) -> None:
    good = _raw_env(_payload(dict(sorted((STATUS if kind == "status" else CREDIT).items())),
                             kind))
    assert agree(good) is not None
    raw = _raw_env(_payload(body, kind))
    assert txmod._fast_parse(raw) is None, case
    with pytest.raises(DecodeError):
        Tx.from_bytes(raw)


def test_the_identifier_cache_is_bounded() -> None:
    """Identifiers seen valid are remembered, but no more than 4096 of them: bytes from
    anyone (each a new network or agency name) cannot grow a node's memory without end."""
    for i in range(5000):
        assert txmod._is_ident(f"agency-{i}")
        assert len(txmod._IDENTS) <= 4096
    assert not txmod._is_ident("Agency") and "Agency" not in txmod._IDENTS


def test_non_canonical_encodings_are_refused_by_both() -> None:
    good = _raw_env(_payload(dict(sorted(ISSUE.items()))))
    assert agree(good) is not None
    env = msgpack.unpackb(good, raw=False)
    cases = {
        # v as uint16 (0xcd 0x00 0x01) instead of a positive fixint: non-minimal
        "non-minimal int": good.replace(b"\xa1v\x01", b"\xa1v\xcd\x00\x01"),
        "unsorted envelope": msgpack.packb({"v": 1, "sigs": env["sigs"],
                                            "payload": env["payload"]}, use_bin_type=True),
        "duplicate key": good[:1].replace(b"\x83", b"\x84") + good[1:] + b"\xa1v\x01",
        "trailing bytes": good + b"\x00",
        "ext type": _raw_env(_payload(dict(sorted(ISSUE.items()))),
                             v=msgpack.ExtType(1, b"x")),
        "str payload": msgpack.packb({**env, "payload": "x"}, use_bin_type=True),
        "no signatures": msgpack.packb({**env, "sigs": []}, use_bin_type=True),
        "same key twice": msgpack.packb({**env, "sigs": env["sigs"] * 2}, use_bin_type=True),
        "v 2": msgpack.packb({**env, "v": 2}, use_bin_type=True),
        "unknown type": _raw_env(_payload(dict(sorted(ISSUE.items())), "mint")),
        "bad net": _raw_env({"body": dict(sorted(ISSUE.items())), "net": "NET",
                             "type": "issue"}),
        "non-canonical payload": _raw_env(codec.encode(_payload(ISSUE))[:-1] + b"\xce"),
        # the same payload values in longer forms: another txid for the same transaction
        "str 8 for a fixstr": _raw_env(codec.encode(_payload(ISSUE)).replace(
            b"\xa4demo", b"\xd9\x04demo")),
        "uint 64 for a uint 32": _raw_env(codec.encode(_payload(ISSUE)).replace(
            b"\xa2ts\xce" + T0.to_bytes(4, "big"), b"\xa2ts\xcf" + T0.to_bytes(8, "big"))),
    }
    for name, raw in cases.items():
        assert raw != good, name
        if name in ("str 8 for a fixstr", "uint 64 for a uint 32"):
            assert codec.unpack_plain(msgpack.unpackb(raw)["payload"], max_size=1 << 16) == \
                _payload(ISSUE), name
        assert txmod._fast_parse(raw) is None, name
        with pytest.raises(DecodeError):
            Tx.from_bytes(raw)


def test_random_byte_flips_never_split_the_paths() -> None:
    rng = random.Random(25)
    seeds = [envelope(k, b) for k, b in (("issue", ISSUE), ("status", STATUS),
                                          ("credit", CREDIT_W))]
    accepted = 0
    for _ in range(3000):
        raw = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if agree(bytes(raw)) is not None:
            accepted += 1
    assert accepted > 0  # flips inside signature bytes keep the envelope well-formed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_split_the_paths(data: bytes) -> None:
    agree(data)


def test_envelope_byte_layouts_at_the_edges_of_the_short_forms() -> None:
    """The fast path reads the envelope's canonical bytes directly (ADR 28): a payload of 256
    bytes or more has a bin 16 length, more than 15 signatures an array 16 header."""
    long_net = "n" * 64
    body = {**CREDIT_W, "category": "c" * 64, "reason": "r" * 64}
    raw = make_tx(long_net, "credit", body, [EDU.issuer_key]).raw
    payload = msgpack.unpackb(raw)["payload"]
    assert len(payload) >= 256 and raw[9] == 0xC5
    assert agree(raw) is not None  # bin 16 taken by the fast path
    short = envelope("issue", ISSUE)
    assert short[9] == 0xC4
    n = short[10]
    stretched = short[:9] + b"\xc5" + n.to_bytes(2, "big") + short[11:]  # non-minimal length
    assert txmod._fast_parse(stretched) is None
    with pytest.raises(DecodeError):
        Tx.from_bytes(stretched)
    keys = [PrivateKey(bytes([i]) * 32) for i in range(1, 17)]
    many = make_tx(NET, "issue", ISSUE, keys).raw
    assert txmod._fast_parse(many) is None  # 16 signatures: left to the strict path
    assert len(strict(many).sigs) == 16
    fifteen = make_tx(NET, "issue", ISSUE, keys[:15]).raw
    assert agree(fifteen) is not None
