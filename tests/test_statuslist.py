"""Tests for ledger.statuslist: the draft's vectors, round trips, strict decoding, tokens, checks.

Vectors: tests/vectors/statuslist/draft-ietf-oauth-status-list.json, taken from the draft's source
repository (oauth-wg/draft-ietf-oauth-status-list, tag draft-ietf-oauth-status-list-20): the two
small examples of the "Compressed Byte Array" section and the four appendix "Test vectors for
Status List encoding" (bits 1, 2, 4 and 8, 2^20 entries each).

Byte-for-byte: the draft's generator compresses with Python's ``zlib.compress(level=9)``, as our
encoder does, so we assert that our ``encode()`` reproduces every published ``lst`` exactly, and
separately that decoding each published ``lst`` gives exactly the listed statuses (every other
entry VALID), checked with an independent bit-offset reading of the array.
"""

from __future__ import annotations

import base64
import json
import random
import re
import zlib
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import sdjwt, statuslist
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.statuslist import (
    DEFAULT_SKEW,
    INVALID,
    MAX_DECOMPRESSED_BYTES,
    SUSPENDED,
    VALID,
    StatusList,
    StatusListError,
    StatusResult,
    check_status,
    make_token,
    verify_token,
)

VECTORS_PATH = (Path(__file__).parent / "vectors" / "statuslist"
                / "draft-ietf-oauth-status-list.json")
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())
BODY = VECTORS["body_examples"]
APPENDIX = VECTORS["test_vectors"]

KEY = PrivateKey(bytes(range(32)))
OTHER_KEY = PrivateKey(bytes(range(1, 33)))
URI = "https://reg.example.gov/statuslists/1"
T0 = 1_700_000_000
HOUR = 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _ref_get(data: bytes, bits: int, idx: int) -> int:
    """Independent reading: the entry starts at bit offset idx*bits, bit 0 = least significant."""
    offset = idx * bits
    return (data[offset // 8] >> (offset % 8)) & ((1 << bits) - 1)


def _lst(raw: bytes) -> dict[str, Any]:
    return {"bits": 2, "lst": _b64(zlib.compress(raw, 9))}


# --- the public surface ---------------------------------------------------------------------------


def test_exports() -> None:
    assert sorted(statuslist.__all__) == sorted([
        "DEFAULT_SKEW", "INVALID", "MAX_DECOMPRESSED_BYTES", "SUSPENDED", "VALID", "StatusList",
        "StatusListError", "StatusResult", "check_status", "make_token", "verify_token",
    ])
    for name in statuslist.__all__:
        assert hasattr(statuslist, name)


def test_status_values_are_the_draft_registry() -> None:
    assert (VALID, INVALID, SUSPENDED) == (0x00, 0x01, 0x02)
    assert issubclass(StatusListError, LedgerError)
    assert MAX_DECOMPRESSED_BYTES == 16 * 1024 * 1024


# --- the draft's vectors --------------------------------------------------------------------------


def test_vector_file_is_what_we_expect() -> None:
    assert VECTORS["source"]["repository"].endswith("oauth-wg/draft-ietf-oauth-status-list")
    assert [v["bits"] for v in BODY] == [1, 2]
    assert [v["bits"] for v in APPENDIX] == [1, 2, 4, 8]
    assert [len(v["statuses"]) for v in APPENDIX] == [11, 11, 15, 256]
    assert BODY[0]["lst"] == "eNrbuRgAAhcBXQ"


@pytest.mark.parametrize("vec", BODY, ids=lambda v: f"bits{v['bits']}")
def test_body_example_decodes(vec: dict[str, Any]) -> None:
    sl = StatusList.decode({"bits": vec["bits"], "lst": vec["lst"]})
    assert sl.bits == vec["bits"]
    assert sl.data == bytes.fromhex(vec["byte_array_hex"])
    assert sl.size == len(vec["statuses"])
    assert [sl.get(i) for i in range(sl.size)] == vec["statuses"]
    assert [_ref_get(sl.data, sl.bits, i) for i in range(sl.size)] == vec["statuses"]
    assert _unb64(vec["lst"]) == bytes.fromhex(vec["compressed_hex"])


@pytest.mark.parametrize("vec", BODY, ids=lambda v: f"bits{v['bits']}")
def test_body_example_encodes_byte_for_byte(vec: dict[str, Any]) -> None:
    sl = StatusList.from_entries(vec["bits"], len(vec["statuses"]), enumerate(vec["statuses"]))
    assert sl.data == bytes.fromhex(vec["byte_array_hex"])
    assert sl.encode() == {"bits": vec["bits"], "lst": vec["lst"]}


def test_body_examples_match_the_drafts_diagrams() -> None:
    # Section "Compressed Byte Array": 0xB9 0xA3 for 1 bit, 0xC9 0x44 0xF9 for 2 bits.
    one = StatusList.from_entries(1, 16, [(0, 1), (3, 1), (4, 1), (5, 1), (7, 1), (8, 1), (9, 1),
                                          (13, 1), (15, 1)])
    assert one.data == b"\xb9\xa3"
    two = StatusList.from_entries(2, 12, [(0, 1), (1, 2), (3, 3), (5, 1), (7, 1), (8, 1), (9, 2),
                                          (10, 3), (11, 3)])
    assert two.data == b"\xc9\x44\xf9"
    assert two.get(1) == SUSPENDED
    assert two.get(0) == INVALID
    assert two.get(2) == VALID


@pytest.mark.parametrize("vec", APPENDIX, ids=lambda v: f"bits{v['bits']}")
def test_appendix_vector_decodes_to_the_listed_statuses(vec: dict[str, Any]) -> None:
    sl = StatusList.decode({"bits": vec["bits"], "lst": vec["lst"]})
    assert sl.bits == vec["bits"]
    assert sl.size == vec["size"] == 2**20
    expected = dict(vec["statuses"])
    for idx, value in expected.items():
        assert sl.get(idx) == value
        assert _ref_get(sl.data, sl.bits, idx) == value
    # Every entry not listed is VALID: count non-zero entries with the independent reading.
    nonzero = {i for i, byte in enumerate(sl.data) if byte}
    per = 8 // sl.bits
    found = {idx: _ref_get(sl.data, sl.bits, idx)
             for pos in nonzero for idx in range(pos * per, pos * per + per)
             if _ref_get(sl.data, sl.bits, idx)}
    assert found == {i: v for i, v in expected.items() if v}


@pytest.mark.parametrize("vec", APPENDIX, ids=lambda v: f"bits{v['bits']}")
def test_appendix_vector_encodes_byte_for_byte(vec: dict[str, Any]) -> None:
    sl = StatusList.from_entries(vec["bits"], vec["size"], vec["statuses"])
    assert sl.encode() == {"bits": vec["bits"], "lst": vec["lst"]}
    assert StatusList.decode(sl.encode()) == sl


def test_draft_jwt_example_verifies_under_its_es256_key_only() -> None:
    """The draft's own ES256 token (a foreign issuer's kind of token, ADR 39) verifies under the
    draft's example P-256 key, and is refused under an Ed25519 key and under another P-256 key."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from ledger import sdjwt

    example = VECTORS["jwt_example"]
    token = example["token"]
    header = json.loads(_unb64(token.split(".")[0]))
    payload = json.loads(_unb64(token.split(".")[1]))
    assert header == {"alg": "ES256", "kid": "12", "typ": "statuslist+jwt"}
    assert payload["status_list"] == {"bits": 1, "lst": BODY[0]["lst"]}
    key = sdjwt.public_key_from_jwk(example["public_jwk"])
    got = verify_token(token, public_key=key, expected_sub=payload["sub"], now=payload["iat"])
    assert got == StatusList.decode(payload["status_list"])
    assert [got.get(i) for i in range(got.size)] == BODY[0]["statuses"]
    with pytest.raises(StatusListError, match="alg 'ES256' does not fit"):
        verify_token(token, public_key=KEY.public, expected_sub=payload["sub"],
                     now=payload["iat"])
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    with pytest.raises(StatusListError, match="signature does not verify"):
        verify_token(token, public_key=other, expected_sub=payload["sub"], now=payload["iat"])


def test_a_p256_key_signs_es256_tokens_that_round_trip() -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    sk = ec.generate_private_key(ec.SECP256R1())
    token = make_token(SL, sub=URI, iat=T0, exp=None, ttl=None, key=sk, kid="p256")
    assert json.loads(_unb64(token.split(".")[0]))["alg"] == "ES256"
    assert verify_token(token, public_key=sk.public_key(), expected_sub=URI, now=T0) == SL
    with pytest.raises(StatusListError, match="does not fit"):
        verify_token(token, public_key=KEY.public, expected_sub=URI, now=T0)


# --- the list as a value --------------------------------------------------------------------------


def test_empty_list_is_all_valid() -> None:
    sl = StatusList.empty(2, 16)
    assert sl.size == 16
    assert sl.data == bytes(4)
    assert all(sl.get(i) == VALID for i in range(16))


def test_with_status_returns_a_new_list_and_leaves_the_old_one() -> None:
    base = StatusList.empty(2, 8)
    changed = base.with_status(5, SUSPENDED)
    assert base.get(5) == VALID
    assert changed.get(5) == SUSPENDED
    assert changed.with_status(5, INVALID).get(5) == INVALID  # overwrite, not OR
    assert changed.with_status(5, VALID) == base
    with pytest.raises(FrozenInstanceError):
        base.bits = 4  # type: ignore[misc]


def test_later_pairs_win() -> None:
    sl = StatusList.from_entries(2, 4, [(1, 3), (1, 1)])
    assert sl.get(1) == 1
    assert sl.data == b"\x04"


def test_repr_does_not_dump_the_array() -> None:
    assert repr(StatusList.empty(2, 1 << 20)) == "StatusList(bits=2, size=1048576)"


@pytest.mark.parametrize("bits", [0, 3, 16, -1, True, "2", 2.0, None])
def test_bad_bits_are_refused_when_building(bits: Any) -> None:
    with pytest.raises(ValueError, match="bits must be one of"):
        StatusList.empty(bits, 8)
    with pytest.raises(ValueError, match="bits must be one of"):
        StatusList(bits, b"\x00")


@pytest.mark.parametrize(("bits", "size"), [(2, 3), (1, 9), (4, 1), (2, -4)])
def test_size_must_fill_whole_bytes(bits: int, size: int) -> None:
    with pytest.raises(ValueError, match="multiple of"):
        StatusList.empty(bits, size)


def test_size_over_the_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="needs more than"):
        StatusList.empty(8, MAX_DECOMPRESSED_BYTES + 1)
    with pytest.raises(ValueError, match="at most"):
        StatusList(8, bytes(MAX_DECOMPRESSED_BYTES + 1))
    assert StatusList.empty(8, MAX_DECOMPRESSED_BYTES).size == MAX_DECOMPRESSED_BYTES


def test_data_must_be_bytes() -> None:
    with pytest.raises(TypeError, match="bytes"):
        StatusList(2, bytearray(4))  # type: ignore[arg-type]


@pytest.mark.parametrize("idx", [-1, 8, 9, 1 << 40])
def test_index_out_of_range(idx: int) -> None:
    sl = StatusList.empty(2, 8)
    with pytest.raises(IndexError, match="outside a status list of 8 entries"):
        sl.get(idx)
    with pytest.raises(IndexError, match="outside"):
        sl.with_status(idx, INVALID)
    with pytest.raises(IndexError, match="outside"):
        StatusList.from_entries(2, 8, [(idx, INVALID)])


@pytest.mark.parametrize("idx", [True, 1.0, "1", None])
def test_index_must_be_an_int(idx: Any) -> None:
    with pytest.raises(TypeError, match="idx must be an int"):
        StatusList.empty(2, 8).get(idx)


@pytest.mark.parametrize(("bits", "value"), [(1, 2), (2, 4), (4, 16), (8, 256), (2, -1)])
def test_value_must_fit_the_bits(bits: int, value: int) -> None:
    with pytest.raises(ValueError, match=f"does not fit in {bits} bits"):
        StatusList.from_entries(bits, 8, [(0, value)])


# --- Hypothesis round trips -----------------------------------------------------------------------


@st.composite
def sparse_lists(draw: st.DrawFn) -> tuple[int, int, list[tuple[int, int]]]:
    bits = draw(st.sampled_from([1, 2, 4, 8]))
    size = draw(st.integers(0, 512)) * (8 // bits)
    if size == 0:
        return bits, 0, []
    entries = draw(st.lists(st.tuples(st.integers(0, size - 1), st.integers(0, (1 << bits) - 1)),
                            max_size=64))
    return bits, size, entries


@given(sparse_lists())
@settings(max_examples=300, deadline=None)
def test_round_trip_sparse_lists(case: tuple[int, int, list[tuple[int, int]]]) -> None:
    bits, size, entries = case
    model = dict(entries)
    sl = StatusList.from_entries(bits, size, entries)
    assert sl.size == size
    for i in range(size):
        assert sl.get(i) == model.get(i, VALID)
        assert _ref_get(sl.data, bits, i) == model.get(i, VALID)
    encoded = sl.encode()
    assert set(encoded) == {"bits", "lst"}
    back = StatusList.decode(encoded)
    assert back == sl
    assert back.encode() == encoded
    assert StatusList.empty(bits, size).with_statuses(entries) == sl


@given(sparse_lists(), st.integers(0, 10**6))
@settings(max_examples=100, deadline=None)
def test_with_status_changes_exactly_one_entry(
    case: tuple[int, int, list[tuple[int, int]]], pick: int
) -> None:
    bits, size, entries = case
    if size == 0:
        return
    sl = StatusList.from_entries(bits, size, entries)
    idx = pick % size
    value = (pick // size) % (1 << bits)
    changed = sl.with_status(idx, value)
    assert changed.get(idx) == value
    assert all(changed.get(i) == sl.get(i) for i in range(size) if i != idx)


@given(st.one_of(st.text(max_size=40), st.binary(max_size=40).map(_b64),
                 st.binary(max_size=40).map(lambda b: _b64(zlib.compress(b)[: len(b) // 2 + 4]))))
@settings(max_examples=300, deadline=None)
def test_decode_of_arbitrary_lst_raises_only_status_list_error(lst: str) -> None:
    try:
        sl = StatusList.decode({"bits": 2, "lst": lst})
    except StatusListError:
        return
    # Accepted only when it is exactly one canonical ZLIB stream.
    assert _b64(_unb64(lst)) == lst
    assert zlib.decompress(_unb64(lst)) == sl.data


# --- strict decoding ------------------------------------------------------------------------------

GOOD = StatusList.from_entries(2, 12, enumerate(BODY[1]["statuses"])).encode()


def _raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _gzip(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _with_dictionary(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 15, zdict=b"dictionary")
    return c.compress(data) + c.flush()


_Z = zlib.compress(b"\x01\x02\x03\x04", 9)

BAD_LISTS: list[tuple[str, Any, str]] = [
    ("not an object", [2, GOOD["lst"]], "must be a JSON object"),
    ("string", json.dumps(GOOD), "must be a JSON object"),
    ("no bits", {"lst": GOOD["lst"]}, "needs both"),
    ("no lst", {"bits": 2}, "needs both"),
    ("unknown member", {**GOOD, "size": 12}, "unknown members"),
    ("bits 0", {**GOOD, "bits": 0}, "bits must be one of"),
    ("bits 3", {**GOOD, "bits": 3}, "bits must be one of"),
    ("bits 16", {**GOOD, "bits": 16}, "bits must be one of"),
    ("bits true", {**GOOD, "bits": True}, "bits must be one of"),
    ("bits string", {**GOOD, "bits": "2"}, "bits must be one of"),
    ("bits float", {**GOOD, "bits": 2.0}, "bits must be one of"),
    ("aggregation_uri not string", {**GOOD, "aggregation_uri": 1}, "aggregation_uri"),
    ("lst bytes", {"bits": 2, "lst": _Z}, "lst must be a string"),
    ("lst null", {"bits": 2, "lst": None}, "lst must be a string"),
    ("lst padded", {"bits": 2, "lst": _b64(_Z) + "=" * (-len(_b64(_Z)) % 4 or 4)},
     "not unpadded base64url"),
    ("lst standard base64", {"bits": 2, "lst": base64.b64encode(b"\xfb\xff" + _Z).decode()
                             .rstrip("=")}, "not unpadded base64url"),
    ("lst whitespace", {"bits": 2, "lst": GOOD["lst"][:4] + " " + GOOD["lst"][4:]},
     "not unpadded base64url"),
    ("lst newline", {"bits": 2, "lst": GOOD["lst"] + "\n"}, "not unpadded base64url"),
    ("lst length 1 mod 4", {"bits": 2, "lst": "eNrbu"}, "not unpadded base64url"),
    ("lst non-canonical trailing bits", {"bits": 2, "lst": "eNrbuRgAAhcBXR"},
     "not canonical base64url"),
    ("lst empty", {"bits": 2, "lst": ""}, "truncated ZLIB stream"),
    ("raw deflate", {"bits": 2, "lst": _b64(_raw_deflate(b"\x01\x02"))}, "not a valid ZLIB"),
    ("gzip", {"bits": 2, "lst": _b64(_gzip(b"\x01\x02"))}, "not a valid ZLIB"),
    ("not compressed", {"bits": 2, "lst": _b64(b"\x01\x02\x03\x04")}, "not a valid ZLIB"),
    ("preset dictionary", {"bits": 2, "lst": _b64(_with_dictionary(b"\x01\x02"))},
     "not a valid ZLIB"),
    ("bad checksum", {"bits": 2, "lst": _b64(_Z[:-1] + bytes([_Z[-1] ^ 1]))},
     "not a valid ZLIB"),
    ("truncated", {"bits": 2, "lst": _b64(_Z[:-3])}, "truncated ZLIB stream"),
    ("trailing bytes", {"bits": 2, "lst": _b64(_Z + b"\x00")}, "after the end"),
    ("two streams", {"bits": 2, "lst": _b64(_Z + _Z)}, "after the end"),
]


@pytest.mark.parametrize(("unverified", "message"), [(u, m) for _, u, m in BAD_LISTS],
                         ids=[name for name, _, _ in BAD_LISTS])
def test_decode_refuses(unverified: Any, message: str) -> None:
    with pytest.raises(StatusListError, match=message):
        StatusList.decode(unverified)


def test_the_bad_list_bases_are_good() -> None:
    # The negative cases above are one change away from inputs that decode.
    assert StatusList.decode(GOOD).size == 12
    assert StatusList.decode({"bits": 2, "lst": _b64(_Z)}).data == b"\x01\x02\x03\x04"
    assert StatusList.decode({"bits": 1, "lst": "eNrbuRgAAhcBXQ"}).size == 16
    assert StatusList.decode({**GOOD, "aggregation_uri": "https://x.example/agg"}).size == 12
    assert StatusList.decode({"bits": 2, "lst": _b64(zlib.compress(b""))}).size == 0


def test_zlib_bomb_over_the_default_limit_is_refused() -> None:
    bomb = zlib.compress(bytes(MAX_DECOMPRESSED_BYTES + 1), 9)
    assert len(bomb) < 64 * 1024  # the attack: a few KiB that inflate past 16 MiB
    with pytest.raises(StatusListError, match=f"more than {MAX_DECOMPRESSED_BYTES} bytes"):
        StatusList.decode({"bits": 2, "lst": _b64(bomb)})


def test_a_list_at_the_default_limit_decodes() -> None:
    at_limit = {"bits": 8, "lst": _b64(zlib.compress(bytes(MAX_DECOMPRESSED_BYTES), 9))}
    assert StatusList.decode(at_limit).size == MAX_DECOMPRESSED_BYTES


def test_max_bytes_is_exact() -> None:
    payload = _lst(bytes(1000))
    assert StatusList.decode(payload, max_bytes=1000).size == 4000
    with pytest.raises(StatusListError, match="more than 999 bytes"):
        StatusList.decode(payload, max_bytes=999)
    with pytest.raises(ValueError, match="max_bytes"):
        StatusList.decode(payload, max_bytes=MAX_DECOMPRESSED_BYTES + 1)


def test_oversize_lst_text_is_refused_before_decoding() -> None:
    incompressible = random.Random(7).randbytes(4000)
    payload = _lst(incompressible)
    with pytest.raises(StatusListError, match="characters, over the limit"):
        StatusList.decode(payload, max_bytes=100)
    assert StatusList.decode(payload, max_bytes=4000).data == incompressible


# --- a million entries ----------------------------------------------------------------------------


def test_million_entry_list_builds_encodes_and_decodes() -> None:
    size = 1_000_000
    rng = random.Random(20240521)
    entries = [(rng.randrange(size), rng.choice([INVALID, SUSPENDED])) for _ in range(50_000)]
    model = dict(entries)
    sl = StatusList.from_entries(2, size, entries)
    assert sl.size == size
    assert len(sl.data) == 250_000
    encoded = sl.encode()
    back = StatusList.decode(encoded)
    assert back == sl
    samples = list(model) + [rng.randrange(size) for _ in range(5000)] + [0, size - 1]
    for idx in samples:
        assert back.get(idx) == model.get(idx, VALID)
        assert _ref_get(back.data, 2, idx) == model.get(idx, VALID)
    assert sum(1 for i in range(size) if _ref_get(back.data, 2, i)) == len(model)
    one_more = back.with_statuses([(size - 1, SUSPENDED), (0, INVALID)])
    assert (one_more.get(size - 1), one_more.get(0), back.get(size - 1)) == (
        SUSPENDED, INVALID, model.get(size - 1, VALID))


# --- the Status List Token ------------------------------------------------------------------------

SL = StatusList.from_entries(2, 16, [(0, INVALID), (3, SUSPENDED), (15, INVALID)])


def _token(**overrides: Any) -> str:
    args: dict[str, Any] = {"sub": URI, "iat": T0, "exp": T0 + 24 * HOUR, "ttl": HOUR,
                            "key": KEY, "kid": "reg-status-1"}
    args.update(overrides)
    return make_token(SL, **args)


def _verify(token: str, **overrides: Any) -> StatusList:
    args: dict[str, Any] = {"public_key": KEY.public, "expected_sub": URI, "now": T0 + HOUR}
    args.update(overrides)
    return verify_token(token, **args)


def _signed(header: Any, payload: Any, key: PrivateKey = KEY, *,
            raw_header: bytes | None = None, raw_payload: bytes | None = None) -> str:
    h = _b64(raw_header if raw_header is not None else json.dumps(header).encode())
    p = _b64(raw_payload if raw_payload is not None else json.dumps(payload).encode())
    return f"{h}.{p}.{_b64(key.sign_raw(f'{h}.{p}'.encode()))}"


HEADER = {"alg": "EdDSA", "kid": "reg-status-1", "typ": "statuslist+jwt"}
PAYLOAD = {"sub": URI, "iat": T0, "exp": T0 + 24 * HOUR, "ttl": HOUR, "status_list": SL.encode()}


def test_token_round_trip_and_shape() -> None:
    token = _token()
    assert _verify(token) == SL
    h, p, s = token.split(".")
    assert json.loads(_unb64(h)) == HEADER
    assert json.loads(_unb64(p)) == PAYLOAD
    assert _unb64(p) == json.dumps(PAYLOAD, separators=(",", ":"), sort_keys=True).encode()
    KEY.public.verify_raw(f"{h}.{p}".encode(), _unb64(s))  # plain Ed25519 over the JWS input
    assert token == _token()  # Ed25519 is deterministic


def test_token_without_exp_and_ttl() -> None:
    token = _token(exp=None, ttl=None)
    payload = json.loads(_unb64(token.split(".")[1]))
    assert set(payload) == {"sub", "iat", "status_list"}
    assert _verify(token, now=T0 + 10**8) == SL


def test_a_token_past_its_ttl_is_refused() -> None:
    """ttl bounds how long a copy may be relied on: a token left in a desk's folder for
    days must not keep answering "valid" (exp alone would not catch one without exp)."""
    token = _token(exp=None, ttl=300)
    assert _verify(token, now=T0 + 300 + DEFAULT_SKEW - 1) == SL
    with pytest.raises(StatusListError, match="past its ttl of 300 s"):
        _verify(token, now=T0 + 300 + DEFAULT_SKEW)
    with pytest.raises(StatusListError, match=r"34560000 s old"):
        _verify(token, now=T0 + 400 * 86400)


def test_token_from_a_hand_made_jws_verifies() -> None:
    assert _verify(_signed(HEADER, PAYLOAD)) == SL
    assert _verify(_signed({**HEADER, "typ": "application/statuslist+jwt"}, PAYLOAD)) == SL
    # media types are case-insensitive (RFC 7515 4.1.9 via RFC 2045)
    for typ in ("StatusList+JWT", "Application/StatusList+JWT"):
        assert _verify(_signed({**HEADER, "typ": typ}, PAYLOAD)) == SL
    assert _verify(_signed({"alg": "EdDSA", "typ": "statuslist+jwt"},
                           {**PAYLOAD, "iss": "https://reg.example.gov"})) == SL


def test_a_token_nested_too_deeply_is_refused_with_words() -> None:
    """A header of 3,000 nested arrays (read before the signature is checked), or a payload of
    as many under a valid signature, raised RecursionError, which no caller of
    :func:`verify_token` expects: a StatusListError says what is wrong."""
    # deeper than the recursion limit of any process here (2,500 once celpy is imported: a
    # run of the whole suite), within the 4,096 characters of a header read
    deep = b"[" * 3000
    with pytest.raises(StatusListError, match="token header nests too deeply"):
        _verify(_signed(None, PAYLOAD, raw_header=deep))
    with pytest.raises(StatusListError, match="token payload nests too deeply"):
        _verify(_signed(HEADER, None, raw_payload=deep))


def test_token_time_window_edges() -> None:
    token = _token(ttl=None)  # the exp edges (ttl's: test_a_token_past_its_ttl_is_refused)
    exp = T0 + 24 * HOUR
    skew = statuslist.DEFAULT_SKEW
    assert _verify(token, now=exp + skew - 1) == SL
    with pytest.raises(StatusListError, match="expired"):
        _verify(token, now=exp + skew)
    with pytest.raises(StatusListError, match="expired"):
        _verify(token, now=exp, skew=0)
    assert _verify(token, now=T0 - skew) == SL
    with pytest.raises(StatusListError, match="in the future"):
        _verify(token, now=T0 - skew - 1)
    with pytest.raises(ValueError, match="skew"):
        _verify(token, skew=-1)
    nbf = T0 + 2 * HOUR  # a token not valid before nbf: within the skew it is
    later = _signed(HEADER, {**{k: v for k, v in PAYLOAD.items() if k != "ttl"}, "nbf": nbf})
    assert _verify(later, now=nbf - skew) == SL
    with pytest.raises(StatusListError, match="not valid before"):
        _verify(later, now=nbf - skew - 1)


BAD_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    ("typ JWT", lambda: _signed({**HEADER, "typ": "JWT"}, PAYLOAD), "typ must be"),
    ("typ missing", lambda: _signed({"alg": "EdDSA"}, PAYLOAD), "typ must be"),
    ("typ of a credential", lambda: _signed({**HEADER, "typ": "dc+sd-jwt"}, PAYLOAD),
     "typ must be"),
    ("alg none", lambda: (_b64(json.dumps({"alg": "none", "typ": "statuslist+jwt"}).encode())
                          + "." + _b64(json.dumps(PAYLOAD).encode()) + "."),
     "alg 'none' is not allowed"),
    ("alg none signed", lambda: _signed({**HEADER, "alg": "none"}, PAYLOAD),
     "alg 'none' is not allowed"),
    ("alg HS256", lambda: _signed({**HEADER, "alg": "HS256"}, PAYLOAD), "alg 'HS256'"),
    ("alg ES256", lambda: _signed({**HEADER, "alg": "ES256"}, PAYLOAD), "alg 'ES256'"),
    ("alg lower case", lambda: _signed({**HEADER, "alg": "eddsa"}, PAYLOAD), "alg 'eddsa'"),
    ("alg missing", lambda: _signed({"typ": "statuslist+jwt"}, PAYLOAD), "alg None"),
    ("crit", lambda: _signed({**HEADER, "crit": ["exp"]}, PAYLOAD), "crit"),
    ("kid not a string", lambda: _signed({**HEADER, "kid": 7}, PAYLOAD), "kid must be"),
    ("other key", lambda: _signed(HEADER, PAYLOAD, OTHER_KEY), "signature"),
    ("flipped signature bit", lambda: _token()[:-2] + ("A" if _token()[-2] != "A" else "B")
     + _token()[-1], "signature"),
    ("payload swapped", lambda: ".".join([_token().split(".")[0],
                                          _b64(json.dumps({**PAYLOAD, "sub": URI}).encode()),
                                          _token().split(".")[2]]), "signature"),
    ("short signature", lambda: _token().rsplit(".", 1)[0] + "." + _b64(b"\x00" * 63),
     "signature"),
    ("empty signature", lambda: _token().rsplit(".", 1)[0] + ".", "signature"),
    ("wrong sub", lambda: _token(sub="https://reg.example.gov/statuslists/2"), "token sub is"),
    ("no sub", lambda: _signed(HEADER, {k: v for k, v in PAYLOAD.items() if k != "sub"}),
     "token sub is None"),
    ("no iat", lambda: _signed(HEADER, {k: v for k, v in PAYLOAD.items() if k != "iat"}),
     "no 'iat'"),
    ("iat float", lambda: _signed(HEADER, {**PAYLOAD, "iat": T0 + 0.5}), "'iat' must be"),
    ("iat bool", lambda: _signed(HEADER, {**PAYLOAD, "iat": True}), "'iat' must be"),
    ("iat string", lambda: _signed(HEADER, {**PAYLOAD, "iat": str(T0)}), "'iat' must be"),
    ("exp null", lambda: _signed(HEADER, {**PAYLOAD, "exp": None}), "'exp' must be"),
    ("exp before iat", lambda: _signed(HEADER, {**PAYLOAD, "exp": T0}), "not after iat"),
    ("expired", lambda: _token(iat=T0 - 48 * HOUR, exp=T0 - 24 * HOUR), "expired"),
    ("iat in the future", lambda: _token(iat=T0 + 2 * HOUR, exp=T0 + 3 * HOUR), "in the future"),
    ("nbf in the future", lambda: _signed(HEADER, {**PAYLOAD, "nbf": T0 + 2 * HOUR}),
     "not valid before"),
    ("ttl zero", lambda: _signed(HEADER, {**PAYLOAD, "ttl": 0}), "ttl must be positive"),
    ("ttl negative", lambda: _signed(HEADER, {**PAYLOAD, "ttl": -5}), "ttl must be positive"),
    ("no status_list", lambda: _signed(HEADER, {k: v for k, v in PAYLOAD.items()
                                                if k != "status_list"}), "no 'status_list'"),
    ("status_list bad bits", lambda: _signed(HEADER, {**PAYLOAD, "status_list": {
        **SL.encode(), "bits": 3}}), "bits must be one of"),
    ("status_list not zlib", lambda: _signed(HEADER, {**PAYLOAD, "status_list": {
        "bits": 2, "lst": _b64(b"\x01\x02\x03")}}), "not a valid ZLIB"),
    ("duplicate header member", lambda: _signed(None, PAYLOAD, raw_header=(
        b'{"alg":"EdDSA","typ":"statuslist+jwt","alg":"none"}')), "duplicate member 'alg'"),
    ("duplicate claim", lambda: _signed(HEADER, None, raw_payload=(
        json.dumps(PAYLOAD)[:-1] + f', "sub": "{URI}"}}').encode()), "duplicate member 'sub'"),
    ("NaN claim", lambda: _signed(HEADER, None, raw_payload=(
        json.dumps(PAYLOAD)[:-1] + ', "x": NaN}').encode()), "NaN is not JSON"),
    ("lone surrogate", lambda: _signed(HEADER, None, raw_payload=(
        json.dumps(PAYLOAD)[:-1] + ', "x": "\\udfff"}').encode()), "lone surrogate"),
    ("payload not UTF-8", lambda: _signed(HEADER, None, raw_payload=(
        json.dumps(PAYLOAD)[:-1] + ', "x": "\xff"}').encode("latin-1")), "not strict UTF-8"),
    ("payload UTF-16", lambda: _signed(HEADER, None,
                                       raw_payload=json.dumps(PAYLOAD).encode("utf-16")),
     "not strict UTF-8"),
    ("payload an array", lambda: _signed(HEADER, [PAYLOAD]), "payload must be a JSON object"),
    ("header an array", lambda: _signed([HEADER], PAYLOAD), "header must be a JSON object"),
    ("two parts", lambda: _token().rsplit(".", 1)[0], "3 parts, got 2"),
    ("four parts", lambda: _token() + ".", "3 parts, got 4"),
    ("padded header", lambda: _token().split(".")[0] + "=." + _token().split(".", 1)[1],
     "header is not unpadded base64url"),
    ("padded signature", lambda: _token() + "==", "signature is not unpadded base64url"),
    ("standard base64 payload", lambda: ".".join([_token().split(".")[0],
                                                  _token().split(".")[1] + "+",
                                                  _token().split(".")[2]]),
     "payload is not unpadded base64url"),
    ("header too long", lambda: _signed({**HEADER, "x": "a" * 4000}, PAYLOAD),
     "header is over"),
]


@pytest.mark.parametrize(("make", "message"), [(m, msg) for _, m, msg in BAD_TOKENS],
                         ids=[name for name, _, _ in BAD_TOKENS])
def test_verify_token_refuses(make: Callable[[], str], message: str) -> None:
    with pytest.raises(StatusListError, match=message):
        _verify(make())


def test_a_refusal_quotes_an_issuers_long_words_cut() -> None:
    """Every value a refusal quotes from a token is cut to the length others are: a duplicate
    member's name, a time claim's value and unknown status_list members were quoted whole (up
    to the token's size limit; helper round 38D)."""
    long = "x" * 5000
    dup = json.dumps(PAYLOAD)[:-1] + f', "{long}": 1, "{long}": 2}}'
    for make, said in (
            (lambda: _signed(HEADER, None, raw_payload=dup.encode()), "duplicate member"),
            (lambda: _signed(HEADER, {**PAYLOAD, "exp": long}), "'exp' must be"),
            (lambda: _signed(HEADER, {**PAYLOAD, "status_list": {**SL.encode(), long: 1}}),
             "unknown members")):
        with pytest.raises(StatusListError, match=said) as caught:
            _verify(make())
        assert len(str(caught.value)) < 200 and "xx'…" in str(caught.value), str(caught.value)


def test_unknown_status_list_members_are_said_three_at_most_in_order() -> None:
    """An issuer's status_list with many unknown members (each up to the token's size limit):
    the refusal names the first three in sorted order, each cut, and counts the rest; three
    alone are named with no count (helper round 39M: the three, the count and the order were
    held by no test)."""
    for count, more in ((3, ""), (4, " and 1 more"), (6, " and 3 more")):
        unknown = {f"{c}{'y' * 3000}": 1 for c in "fedcba"[:count]}
        token = _signed(HEADER, {**PAYLOAD, "status_list": {**SL.encode(), **unknown}})
        with pytest.raises(StatusListError, match="unknown members") as caught:
            _verify(token)
        said = str(caught.value)
        named = re.findall(r"'([a-f])y+'…", said)  # each quoted cut
        assert named == [name[0] for name in sorted(unknown)[:3]], said
        assert said.endswith("…" + more) and len(said) < 200, said


def test_bad_signature_is_a_status_list_error_that_says_so() -> None:
    with pytest.raises(StatusListError, match="signature does not verify under the list "
                                              "signer's key"):
        _verify(_signed(HEADER, PAYLOAD, OTHER_KEY))


def test_verify_token_refuses_non_strings_and_huge_input() -> None:
    with pytest.raises(StatusListError, match="is a string"):
        _verify(_token().encode())  # type: ignore[arg-type]
    with pytest.raises(StatusListError, match="characters, over"):
        _verify("a" * (32 * 1024 * 1024 + 1))


def test_verify_token_caller_arguments() -> None:
    with pytest.raises(ValueError, match="expected_sub"):
        _verify(_token(), expected_sub="")
    with pytest.raises(TypeError, match="now must be an int"):
        _verify(_token(), now=float(T0))


@pytest.mark.parametrize(("overrides", "error", "message"), [
    ({"sub": ""}, ValueError, "sub must be"),
    ({"kid": ""}, ValueError, "kid must be"),
    ({"iat": -1}, ValueError, "iat must not be negative"),
    ({"iat": float(T0)}, TypeError, "iat must be an int"),
    ({"exp": T0}, ValueError, "must be after iat"),
    ({"ttl": 0}, ValueError, "ttl must be a positive number"),
])
def test_make_token_refuses_bad_arguments(overrides: dict[str, Any], error: type[Exception],
                                          message: str) -> None:
    with pytest.raises(error, match=message):
        _token(**overrides)


# --- check_status ---------------------------------------------------------------------------------

LIVE = StatusList.from_entries(2, 8, [(1, INVALID), (2, SUSPENDED), (3, 0x03)])


def _claim(idx: Any, uri: Any = URI) -> dict[str, Any]:
    return {"status_list": {"idx": idx, "uri": uri}}


def _source(lists: dict[str, StatusList]) -> Callable[[str], StatusList | None]:
    return lists.get


@pytest.mark.parametrize(("idx", "status", "value"), [
    (0, "valid", VALID), (1, "revoked", INVALID), (2, "suspended", SUSPENDED), (7, "valid", VALID),
])
def test_check_status_reads_the_entry(idx: int, status: str, value: int) -> None:
    result = check_status(_claim(idx), _source({URI: LIVE}))
    assert result == StatusResult(status, result.reason, value)  # type: ignore[arg-type]
    assert f"index {idx} of {URI}" in result.reason


@pytest.mark.parametrize("aud", ["https://other-verifier.example", ["https://a.example"], ""])
def test_a_status_list_token_for_an_audience_is_refused(aud: object) -> None:
    """RFC 7519 section 4.1.3: a principal that does not identify itself with a value in a
    JWT's ``aud`` MUST reject it. A Status List Token is for whoever checks a status and names
    no audience (the draft's claims are sub, iat, exp, ttl, status_list); one naming some was
    taken by every verifier, which names itself in none (ADR 77's 30I item)."""
    with pytest.raises(StatusListError, match="'aud'"):
        _verify(_signed(HEADER, {**PAYLOAD, "aud": aud}))
    assert _verify(_signed(HEADER, PAYLOAD)) == SL


def test_check_status_asks_for_the_claims_uri() -> None:
    asked: list[str] = []

    def get_list(uri: str) -> StatusList | None:
        asked.append(uri)
        return LIVE

    assert check_status(_claim(1), get_list).status == "revoked"
    assert asked == [URI]


def test_check_status_ignores_other_members_and_mechanisms() -> None:
    claim = {"status_list": {"idx": 1, "uri": URI, "x": 1}, "other_mechanism": {"a": 1}}
    assert check_status(claim, _source({URI: LIVE})).status == "revoked"


class _Boom(Exception):
    pass


def _raises(exc: Exception) -> Callable[[str], StatusList | None]:
    def get_list(uri: str) -> StatusList | None:
        raise exc
    return get_list


@pytest.mark.parametrize(("claim", "get_list", "reason"), [
    (_claim(3), _source({URI: LIVE}), "holds status 0x03"),
    (_claim(8), _source({URI: LIVE}), "index 8 is outside status list"),
    (_claim(1 << 40), _source({URI: LIVE}), "is outside status list"),
    (_claim(0), _source({}), "is not available"),
    (_claim(0), _raises(StatusListError("token expired")), "StatusListError: token expired"),
    (_claim(0), _raises(OSError("connection refused")), "OSError: connection refused"),
    (_claim(0), _raises(_Boom("adapter bug")), "_Boom: adapter bug"),
    (_claim(0), lambda uri: {"bits": 2, "lst": "eNo76fITAAPfAgc"}, "not a StatusList"),
    (_claim(-1), _source({URI: LIVE}), "idx must be a non-negative integer"),
    (_claim(True), _source({URI: LIVE}), "idx must be a non-negative integer"),
    (_claim(1.0), _source({URI: LIVE}), "idx must be a non-negative integer"),
    (_claim("1"), _source({URI: LIVE}), "idx must be a non-negative integer"),
    (_claim(None), _source({URI: LIVE}), "idx must be a non-negative integer"),
    (_claim(1, ""), _source({URI: LIVE}), "uri must be a non-empty string"),
    (_claim(1, None), _source({URI: LIVE}), "uri must be a non-empty string"),
    ({"status_list": [1, URI]}, _source({URI: LIVE}), "no 'status_list' object"),
    ({}, _source({URI: LIVE}), "no 'status_list' object"),
    ([], _source({URI: LIVE}), "not a JSON object"),
    (None, _source({URI: LIVE}), "not a JSON object"),
])
def test_check_status_is_undetermined_rather_than_guessing(
    claim: Any, get_list: Callable[[str], StatusList | None], reason: str
) -> None:
    result = check_status(claim, get_list)
    assert result.status == "undetermined"
    assert reason in result.reason


def test_unknown_value_is_reported_with_the_value() -> None:
    assert check_status(_claim(3), _source({URI: LIVE})).value == 3
    assert check_status(_claim(8), _source({URI: LIVE})).value is None


def test_check_status_through_verified_tokens() -> None:
    """The intended wiring: get_list verifies the served token for exactly the claim's URI."""
    served = {URI: make_token(LIVE, sub=URI, iat=T0, exp=T0 + HOUR, ttl=600, key=KEY,
                              kid="reg-status-1")}

    def get_list_at(now: int) -> Callable[[str], StatusList | None]:
        def get_list(uri: str) -> StatusList | None:
            token = served.get(uri)
            if token is None:
                return None
            return verify_token(token, public_key=KEY.public, expected_sub=uri, now=now)
        return get_list

    assert check_status(_claim(1), get_list_at(T0 + 60)).status == "revoked"
    assert check_status(_claim(0), get_list_at(T0 + 60)).status == "valid"
    expired = check_status(_claim(1), get_list_at(T0 + 2 * HOUR))
    assert expired.status == "undetermined"
    assert "expired" in expired.reason
    missing = check_status(_claim(1, URI + "/other"), get_list_at(T0 + 60))
    assert missing.status == "undetermined"
    # A token for another list served at this URI is refused by sub, so: undetermined.
    served[URI] = make_token(LIVE, sub=URI + "/other", iat=T0, exp=None, ttl=None, key=KEY,
                             kid="reg-status-1")
    swapped = check_status(_claim(0), get_list_at(T0 + 60))
    assert swapped.status == "undetermined"
    assert "token sub is" in swapped.reason


def test_rfc_9864s_ed25519_alg_name_is_accepted_for_an_ed25519_signer() -> None:
    """As for SD-JWTs (ADR 50): an issuer that moved to the fully specified "Ed25519" keeps
    status answers; a name of another algorithm still does not fit its key."""
    key = PrivateKey.generate()
    sub = "https://issuer.example/sl/1"
    body = make_token(StatusList.empty(2, 1024), sub=sub, iat=1000, exp=None, ttl=None,
                      key=key, kid="k1").split(".")[1]

    def signed(alg: str) -> str:
        head = base64.urlsafe_b64encode(json.dumps(
            {"alg": alg, "kid": "k1", "typ": "statuslist+jwt"}).encode()).rstrip(b"=").decode()
        sig = base64.urlsafe_b64encode(sdjwt.jws_sign(key, f"{head}.{body}".encode()))
        return f"{head}.{body}.{sig.rstrip(b'=').decode()}"

    assert verify_token(signed("Ed25519"), public_key=key.public, expected_sub=sub,
                        now=1000).get(5) == 0
    with pytest.raises(StatusListError, match="does not fit"):
        verify_token(signed("ES256"), public_key=key.public, expected_sub=sub, now=1000)


@pytest.mark.parametrize("member", ["typ", "alg", "sub"])
def test_a_tokens_outside_text_is_quoted_short_in_its_refusal(member: str) -> None:
    """A Status List Token's typ, alg or sub (its issuer's text, up to the header's 4,096
    characters) was quoted whole in the refusal that the desk's status check and `ledger
    verify` show; it is quoted as sdjwt quotes an alg: 40 characters at most, the quotes kept
    (the desk's pages isolate a quoted string), escapes whole (helper round 36D)."""
    hostile = "\u05d0" * 30 + "\x1b[2J" + "x" * 1500  # within the header's 4,096
    header, payload = dict(HEADER), dict(PAYLOAD)
    (payload if member == "sub" else header)[member] = hostile
    with pytest.raises(StatusListError) as e:
        _verify(_signed(header, payload))
    said = str(e.value)
    limit = 160 if member == "sub" else 40  # a list's URI may be long: more of it is kept
    quoted = re.search("'\u05d0{30}\\\\x1b\\[2Jx*'\u2026", said)
    assert quoted and len(quoted.group()) == limit, said
    assert len(said) < limit + 120 and "\x1b" not in said
