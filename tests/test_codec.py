"""Tests for ledger.codec: canonical msgpack, every rejection, and the closed-schema reader."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.codec import MAX_SIZE, Fields, decode, encode
from ledger.errors import DecodeError

# --- strategies --------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 63), max_value=(1 << 64) - 1)
    | st.text(max_size=40)
    | st.binary(max_size=40)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6)
    | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)


def nested_list(depth: int) -> Any:
    v: Any = None
    for _ in range(depth):
        v = [v]
    return v


# --- round trips -------------------------------------------------------------------------------


@given(values)
def test_round_trip_value(value: Any) -> None:
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(values)
def test_round_trip_bytes_are_fixed_point(value: Any) -> None:
    data = encode(value)
    again = encode(decode(data))
    assert again == data
    assert decode(again) == value


@given(st.dictionaries(st.text(max_size=8), st.integers(0, 10), min_size=2, max_size=8))
def test_encoding_ignores_insertion_order(d: dict[str, int]) -> None:
    reversed_d = dict(reversed(list(d.items())))
    assert encode(d) == encode(reversed_d)
    keys = list(decode(encode(reversed_d)))
    assert keys == sorted(keys, key=lambda k: k.encode())


def test_known_encodings() -> None:
    assert encode({"b": 1, "a": b"\x00"}) == b"\x82\xa1a\xc4\x01\x00\xa1b\x01"
    assert encode([True, False, None]) == b"\x93\xc3\xc2\xc0"
    assert encode(-1) == b"\xff"
    assert encode((1 << 64) - 1) == b"\xcf" + b"\xff" * 8
    assert encode(-(1 << 63)) == b"\xd3\x80" + b"\x00" * 7
    # tuples encode as lists, bytearray/memoryview as bytes
    assert encode((1, 2)) == encode([1, 2])
    assert encode(bytearray(b"xy")) == encode(b"xy") == encode(memoryview(b"xy"))


def test_keys_sort_by_utf8_bytes() -> None:
    # U+00E9 (2 UTF-8 bytes c3 a9) sorts after "z" (7a); U+FF21 (ef bc a1) after U+00E9.
    d = {"\uff21": 1, "z": 2, "\u00e9": 3, "": 4}
    assert list(decode(encode(d))) == ["", "z", "\u00e9", "\uff21"]


def test_bytes_and_str_stay_distinct() -> None:
    assert decode(encode(b"abc")) == b"abc"
    assert decode(encode("abc")) == "abc"
    assert encode(b"abc") != encode("abc")


# --- decode rejections -------------------------------------------------------------------------


def assert_decode_error(data: bytes, **kwargs: Any) -> DecodeError:
    with pytest.raises(DecodeError) as info:
        decode(data, **kwargs)
    assert str(info.value), "a DecodeError must carry a message"
    return info.value


def test_unsorted_keys_rejected() -> None:
    data = b"\x82\xa1b\x01\xa1a\x02"  # {"b": 1, "a": 2} in that order
    assert msgpack.unpackb(data) == {"b": 1, "a": 2}
    err = assert_decode_error(data)
    assert "order" in str(err)


def test_duplicate_keys_rejected() -> None:
    data = b"\x82\xa1a\x01\xa1a\x02"
    err = assert_decode_error(data)
    assert "repeated" in str(err) or "duplicate" in str(err)


def test_nested_unsorted_keys_rejected() -> None:
    inner = b"\x82\xa1y\x01\xa1x\x02"
    assert_decode_error(b"\x91" + inner)
    assert_decode_error(b"\x81\xa1k" + inner)


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb(1.5),
        msgpack.packb(0.0),
        b"\xca\x3f\xc0\x00\x00",  # float32 1.5
        msgpack.packb([1, 2.5]),
        msgpack.packb({"a": 2.5}),
        msgpack.packb({"a": [{"b": 0.5}]}),
        msgpack.packb([[[1.0]]]),
    ],
    ids=["top", "zero", "float32", "in-list", "in-map", "deep-map", "deep-list"],
)
def test_floats_rejected(data: bytes) -> None:
    err = assert_decode_error(data)
    assert "float" in str(err).lower()


@pytest.mark.parametrize(
    "data",
    [
        msgpack.packb({1: "a"}),
        msgpack.packb({b"k": 1}, use_bin_type=True),
        b"\x81\xc0\x01",  # nil key
        b"\x81\xc3\x01",  # bool key
        b"\x81\xcb" + b"\x3f\xf0" + b"\x00" * 6 + b"\x01",  # float key
    ],
    ids=["int", "bytes", "nil", "bool", "float"],
)
def test_non_str_keys_rejected(data: bytes) -> None:
    assert_decode_error(data)


@pytest.mark.parametrize(
    "data",
    [
        b"\xcd\x00\x01",  # uint16 1
        b"\xcc\x05",  # uint8 5 (fixint would do)
        b"\xce\x00\x00\x01\x00",  # uint32 256 (uint16 would do)
        b"\xcf" + b"\x00" * 7 + b"\x01",  # uint64 1
        b"\xd0\x05",  # int8 5
        b"\xd1\xff\xff",  # int16 -1
        b"\xd3" + b"\xff" * 8,  # int64 -1
        b"\xd9\x01a",  # str8 for a 1-char string
        b"\xda\x00\x01a",  # str16 for a 1-char string
        b"\xc5\x00\x01a",  # bin16 for 1 byte
        b"\xdc\x00\x01\x01",  # array16 of one item
        b"\xde\x00\x01\xa1a\x01",  # map16 of one entry
        b"\xa1\x61\xd9\x00",  # fine str followed by trailing garbage
    ],
)
def test_non_minimal_encodings_rejected(data: bytes) -> None:
    assert_decode_error(data)


def test_str8_for_short_string_message() -> None:
    err = assert_decode_error(b"\xd9\x03abc")
    assert "canonical" in str(err)
    assert decode(b"\xa3abc") == "abc"


def test_str_where_bin_is_due_is_a_different_value() -> None:
    # old-style raw (str) bytes decode as str, never as bytes
    assert decode(b"\xa2hi") == "hi"
    assert decode(b"\xc4\x02hi") == b"hi"


def test_invalid_utf8_rejected() -> None:
    assert_decode_error(b"\xa2\xff\xfe")


@pytest.mark.parametrize("data", [encode(1) + b"\x00", encode({"a": 1}) + b"\xc0", b"\xc0\xc0"])
def test_trailing_bytes_rejected(data: bytes) -> None:
    assert_decode_error(data)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x92\x01", b"\x81\xa1a", b"\xa5abc", b"\xcd\x01", b"\xc4\x05ab", b"\xdc\x00"],
)
def test_truncated_input_rejected(data: bytes) -> None:
    assert_decode_error(data)


def test_truncation_of_valid_value_always_rejected() -> None:
    data = encode({"a": [1, 2, {"b": b"xyz"}], "c": "text", "d": 1 << 40})
    for cut in range(len(data)):
        assert_decode_error(data[:cut])


def test_reserved_byte_rejected() -> None:
    assert_decode_error(b"\xc1")


@pytest.mark.parametrize(
    "data",
    [
        b"\xd4\x05\x00",  # fixext1 type 5
        b"\xd5\x01\x00\x00",  # fixext2 type 1
        b"\xc7\x03\x07abc",  # ext8 type 7
        b"\x91\xd4\x05\x00",  # ext inside a list
        b"\x81\xa1a\xd4\x05\x00",  # ext inside a map
    ],
)
def test_extension_types_rejected(data: bytes) -> None:
    err = assert_decode_error(data)
    assert "extension" in str(err)


@pytest.mark.parametrize(
    "data",
    [
        b"\xd6\xff\x00\x00\x00\x01",  # timestamp32 (ext type -1)
        b"\xd7\xff" + b"\x00" * 7 + b"\x01",  # timestamp64
        b"\xc7\x0c\xff" + b"\x00" * 11 + b"\x01",  # timestamp96
        b"\x91\xd6\xff\x00\x00\x00\x01",  # timestamp inside a list
    ],
    ids=["ts32", "ts64", "ts96", "ts-in-list"],
)
def test_timestamp_extension_rejected(data: bytes) -> None:
    """Ext type -1 (msgpack Timestamp) is an extension type like any other: not canonical."""
    assert_decode_error(data)


def test_oversize_rejected() -> None:
    data = encode(b"x" * 100)
    assert decode(data, max_size=len(data)) == b"x" * 100
    err = assert_decode_error(data, max_size=len(data) - 1)
    assert "limit" in str(err)
    big = encode(b"\x00" * MAX_SIZE)
    assert len(big) > MAX_SIZE
    assert_decode_error(big)


def test_oversize_declared_length_rejected_before_allocation() -> None:
    # bin32 announcing 4 GiB with 3 bytes present
    assert_decode_error(b"\xc6\xff\xff\xff\xffabc")
    assert_decode_error(b"\xdd\xff\xff\xff\xff")  # array32 of 4G items
    assert_decode_error(b"\xdf\xff\xff\xff\xff")  # map32 of 4G items


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError, match="expected bytes"):
        decode("a string")  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        decode(None)  # type: ignore[arg-type]


def test_decode_error_names_what() -> None:
    with pytest.raises(DecodeError) as info:
        decode(b"\xc1", what="tx.payload")
    assert info.value.where == "tx.payload"
    assert str(info.value).startswith("tx.payload: ")


_CLAIMS = {"body": {"claims": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}}


@pytest.mark.parametrize(("data", "where", "said"), [
    (msgpack.packb({"body": {"claims": [{"name": "a"}, {"name": "b"}, {"name": 1.5}]}}),
     "tx.payload.body.claims[2].name", "a float is not allowed"),
    (msgpack.packb([1, [2, 2.5]]), "tx.payload[1][1]", "a float is not allowed"),
    (b"\x81\xa4body\x82\xa1b\x01\xa1a\x02", "tx.payload.body",
     "map key 'a' is out of order or repeated after 'b'"),
    (b"\x81\xa4body\x82\xa1a\x01\xa1a\x02", "tx.payload.body",
     "map key 'a' is out of order or repeated after 'a'"),
    (msgpack.packb({"body": {1: "a"}}), "tx.payload.body", "map key 1 is not a str"),
    (b"\x81\xa1a\x91\xd4\x05\x00", "tx.payload.a[0]", "msgpack extension type 5"),
    (b"\x91\xd6\xff\x00\x00\x00\x01", "tx.payload[0]", "a Timestamp is not allowed"),
    (msgpack.packb({"a b\n": [2.5]}), "tx.payload['a b\\n'][0]", "a float"),  # not a name
    # non-minimal encodings: the value, the key or the length that is not canonical
    (encode(_CLAIMS)[:-2] + b"\xd9\x01c", "tx.payload.body.claims[2].name", "canonical form"),
    (b"\x81\xa4body\x92\x01\xcc\x05", "tx.payload.body[1]", "canonical form"),
    (b"\x81\xd9\x04body\x01", "tx.payload.body", "canonical form"),
    (b"\x81\xa4body\xdc\x00\x01\x01", "tx.payload.body", "canonical form"),
    (b"\x81\xa1x" + b"\x91" * 33 + b"\xc0", "tx.payload.x" + "[0]" * 32, "nesting deeper"),
])
def test_errors_inside_nested_values_name_their_path(data: bytes, where: str,
                                                      said: str) -> None:
    """An error inside a nested value named only the outer value (``tx.payload: not
    canonical msgpack (ValueError: float value in a list)``): it names the value's path."""
    err = assert_decode_error(data, what="tx.payload")
    assert err.where == where, str(err)
    assert said in str(err) and str(err).startswith(f"{where}: ")


def test_errors_in_the_byte_stream_name_the_whole_value() -> None:
    """Bytes msgpack cannot read at all (cut short, bad UTF-8, trailing bytes) have no path
    inside: they name what was decoded, as before."""
    for data in (encode(_CLAIMS)[:-1], b"\x91\xa2\xff\xfe", encode(_CLAIMS) + b"\xc0"):
        assert assert_decode_error(data, what="tx.payload").where == "tx.payload"


def test_deep_nesting_within_limit_round_trips() -> None:
    v = nested_list(32)
    assert decode(encode(v)) == v


@pytest.mark.parametrize("depth", [33, 40, 200, 600])
def test_decode_of_too_deep_nesting_is_not_canonical(depth: int) -> None:
    """decode must not accept bytes that encode() refuses to produce: no exception but
    DecodeError, and whatever decodes must re-encode to the same bytes."""
    data = b"\x91" * depth + b"\xc0"
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


def test_extremely_deep_nesting_rejected() -> None:
    assert_decode_error(b"\x91" * 5000 + b"\xc0")


# --- encode rejections -------------------------------------------------------------------------


def test_encode_too_deep_rejected() -> None:
    with pytest.raises(ValueError, match="deeper"):
        encode(nested_list(40))
    deep_map: Any = 1
    for _ in range(40):
        deep_map = {"k": deep_map}
    with pytest.raises(ValueError, match="deeper"):
        encode(deep_map)


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (1.5, TypeError),
        ([1, 2.0], TypeError),
        ({"a": 0.1}, TypeError),
        ({1: "a"}, TypeError),
        ({b"k": 1}, TypeError),
        ({"a": {2: 3}}, TypeError),
        (1 << 64, ValueError),
        (-(1 << 63) - 1, ValueError),
        ({1, 2}, TypeError),
        (object(), TypeError),
    ],
)
def test_encode_rejects_non_canonical_values(value: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        encode(value)


# --- random input ------------------------------------------------------------------------------


@settings(max_examples=400)
@given(st.binary(max_size=64))
def test_random_bytes_only_decode_error(data: bytes) -> None:
    try:
        value = decode(data)
    except DecodeError as e:
        message = str(e)
    else:
        assert encode(value) == data
        return
    assert message


@settings(max_examples=300)
@given(values, st.data())
def test_mutated_encodings_only_decode_error(value: Any, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    pos = data.draw(st.integers(0, len(raw) - 1))
    raw[pos] = data.draw(st.integers(0, 255))
    try:
        again = decode(bytes(raw))
    except DecodeError:
        return
    assert encode(again) == bytes(raw)


# --- Fields: the closed-schema reader ----------------------------------------------------------


def test_fields_reads_every_kind() -> None:
    m = {"i": 5, "s": "x", "b": b"\x01\x02", "t": True, "l": [1], "m": {"z": 1}, "r": {"q": 2}}
    f = Fields(m, "obj")
    assert f.int("i", lo=0, hi=10) == 5
    assert f.str("s", choices=frozenset({"x", "y"})) == "x"
    assert f.bytes("b", size=2) == b"\x01\x02"
    assert f.bool("t") is True
    assert f.list("l") == [1]
    sub = f.map("m")
    assert sub.where == "obj.m"
    assert sub.int("z") == 1
    sub.done()
    assert f.raw_map("r") == {"q": 2}
    assert f.has("i")
    assert not f.has("nope")
    f.done()


def test_fields_needs_a_map() -> None:
    for v in ([1], "s", 1, None, b"x"):
        with pytest.raises(DecodeError) as info:
            Fields(v, "top")
        assert info.value.where == "top"
        assert "expected a map" in str(info.value)


def test_fields_missing() -> None:
    with pytest.raises(DecodeError) as info:
        Fields({}, "tx.body").int("seq")
    assert info.value.where == "tx.body.seq"
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    ("method", "value", "label"),
    [
        ("int", True, "int"),
        ("int", False, "int"),
        ("int", "1", "int"),
        ("int", None, "int"),
        ("str", b"x", "str"),
        ("str", 1, "str"),
        ("bytes", "x", "bytes"),
        ("bytes", [1], "bytes"),
        ("bool", 1, "bool"),
        ("bool", 0, "bool"),
        ("list", {"a": 1}, "list"),
        ("list", "ab", "list"),
        ("map", [1], "map"),
        ("raw_map", "x", "map"),
    ],
)
def test_fields_wrong_type(method: str, value: Any, label: str) -> None:
    f = Fields({"v": value}, "o.p")
    with pytest.raises(DecodeError) as info:
        getattr(f, method)("v")
    assert info.value.where == "o.p.v"
    assert f"expected {label}" in str(info.value)


def test_bool_is_not_int_in_nested_path() -> None:
    f = Fields({"args": {"quorum": True}}, "tx.body")
    a = f.map("args")
    with pytest.raises(DecodeError) as info:
        a.int("quorum")
    assert info.value.where == "tx.body.args.quorum"


def test_fields_unknown_field() -> None:
    f = Fields({"a": 1, "zz": 2, "yy": 3}, "tx")
    f.int("a")
    with pytest.raises(DecodeError) as info:
        f.done()
    assert info.value.where == "tx"
    assert "zz" in str(info.value)
    assert "yy" in str(info.value)


def test_fields_done_passes_when_all_read() -> None:
    f = Fields({"a": 1}, "tx")
    f.int("a")
    f.done()
    Fields({}, "empty").done()


@pytest.mark.parametrize(("value", "ok"), [(0, True), (10, True), (-1, False), (11, False)])
def test_fields_int_range(value: int, ok: bool) -> None:
    f = Fields({"n": value}, "o")
    if ok:
        assert f.int("n", lo=0, hi=10) == value
    else:
        with pytest.raises(DecodeError) as info:
            f.int("n", lo=0, hi=10)
        assert info.value.where == "o.n"
        assert "outside" in str(info.value)


def test_fields_str_choices_and_length() -> None:
    with pytest.raises(DecodeError) as info:
        Fields({"s": "maybe"}, "o").str("s", choices=frozenset({"yes", "no"}))
    assert info.value.where == "o.s"
    assert "'maybe'" in str(info.value)
    with pytest.raises(DecodeError) as info:
        Fields({"s": "abcd"}, "o").str("s", max_len=3)
    assert info.value.where == "o.s"
    assert Fields({"s": "abc"}, "o").str("s", max_len=3) == "abc"


@pytest.mark.parametrize("n", [0, 31, 33])
def test_fields_bytes_size(n: int) -> None:
    with pytest.raises(DecodeError) as info:
        Fields({"k": b"\x00" * n}, "o").bytes("k", size=32)
    assert info.value.where == "o.k"
    assert f"got {n}" in str(info.value)


def test_fields_bytes_max_len() -> None:
    with pytest.raises(DecodeError) as info:
        Fields({"k": b"\x00" * 9}, "o").bytes("k", max_len=8)
    assert info.value.where == "o.k"
    assert Fields({"k": b"\x00" * 8}, "o").bytes("k", max_len=8) == b"\x00" * 8


def test_fields_list_and_map_max_len() -> None:
    with pytest.raises(DecodeError) as info:
        Fields({"l": [1, 2, 3]}, "o").list("l", max_len=2)
    assert info.value.where == "o.l"
    with pytest.raises(DecodeError) as info:
        Fields({"m": {"a": 1, "b": 2}}, "o").raw_map("m", max_len=1)
    assert info.value.where == "o.m"


def test_public_surface() -> None:
    assert set(codec.__all__) == {"MAX_SIZE", "Fields", "decode", "encode"}


def test_fields_version_tells_a_newer_file_from_a_damaged_one() -> None:
    f = Fields({"v": 2}, "snapshot")
    with pytest.raises(DecodeError, match=r"newer version of credledger \(snapshot format 2; "
                                          r"this one reads up to 1\): upgrade"):
        f.version(1, "snapshot")
    for bad in (0, -1):
        with pytest.raises(DecodeError, match=r"outside \[1, 1\]"):
            Fields({"v": bad}, "snapshot").version(1, "snapshot")
    with pytest.raises(DecodeError, match="expected int"):
        Fields({"v": "2"}, "snapshot").version(1, "snapshot")
    assert Fields({"v": 1}, "snapshot").version(1, "snapshot") == 1


def test_every_kept_file_written_by_a_newer_version_says_so() -> None:
    """Files users keep for years (snapshots, bundles, presentations, foreign credentials, key
    files, wallet contents, approval evidence, audit statements): one from a newer version is
    refused with the advice to upgrade, not as damaged (the compat hunt, ADR 50)."""
    from contracts.evidence import Evidence
    from ledger.audit import verify_statement
    from ledger.errors import LedgerError
    from ledger.foreign import ForeignCredential
    from ledger.keys import PrivateKey, open_secret
    from ledger.offline import load_snapshot
    from ledger.presentation import Bundle, Envelope
    from wallet.store import Contents

    def newer(kind: str | None = None) -> bytes:
        return encode({"v": 2, **({"kind": kind} if kind else {})})

    readers = [
        (lambda: load_snapshot(newer("snapshot")), "snapshot format 2"),
        (lambda: Bundle.from_bytes(newer("bundle")), "bundle format 2"),
        (lambda: Envelope.from_bytes(newer("presentation")), "presentation format 2"),
        (lambda: ForeignCredential.from_bytes(newer("foreign")), "foreign credential format 2"),
        (lambda: Evidence.from_bytes(newer()), "approval evidence format 2"),
        (lambda: open_secret(newer(), b"pw", "credit", "credit.secret"), "key file format 2"),
        (lambda: Contents.from_bytes(encode({"v": 3})), "wallet contents format 3"),
        (lambda: verify_statement(encode({"statement": {"v": 3, "kind": "audit-statement"},
                                          "sig": bytes(64)}), PrivateKey.generate().public),
         "audit statement format 3"),  # v2 since ADR 70
    ]
    for read, what in readers:
        with pytest.raises(LedgerError, match="upgrade to read it") as e:
            read()
        assert what in str(e.value), str(e.value)


# -- found by a mutation round of the node, the verifier and the codec (ADR 54) ----------------

@pytest.mark.parametrize("depth", range(30, 41))
def test_encode_refuses_exactly_what_decode_would_refuse(depth: int) -> None:
    """The nesting bound is one bound: whatever encode() produces (a payload hashed, signed,
    committed) decode() reads back; one level more than decode takes is refused by encode
    too, for lists and maps. (test_encode_too_deep_rejected only tries depth 40.)"""
    deep_map: Any = 1
    for _ in range(depth):
        deep_map = {"k": deep_map}
    for value in (nested_list(depth), deep_map):
        if depth > 33:
            with pytest.raises(ValueError, match="deeper"):
                encode(value)
        else:
            assert decode(encode(value)) == value
