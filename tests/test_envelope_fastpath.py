"""The fast path of Envelope.from_bytes accepts a subset of the strict parse, with equal results.

Like the transaction fast path (ADR 25): ``_fast_envelope`` returns either ``None`` (the strict
path then decides and names the error) or exactly the Envelope the strict path builds.
"""

from __future__ import annotations

import random
from typing import Any

import fastpath
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import presentation as pres
from ledger.errors import DecodeError
from ledger.presentation import MAX_ENVELOPE, Envelope

GOOD = Envelope(anchor=b"\x93" + bytes(120), leaf_index=41,
                proof=(bytes(range(32)), bytes(32)), checkpoint="demo\n42\nroot\n",
                sd_jwt_kb="eyJh.eyJi.c2ln~WyJz~eyJr.eyJw.c2ln")


def strict(raw: bytes) -> Envelope:
    """The strict path alone, with the fast path switched off."""
    return fastpath.strict_only(pres, "_fast_envelope", Envelope.from_bytes, raw)


def agree(raw: bytes) -> Envelope | None:
    """The fast path is None or the strict result; return the fast result."""
    return fastpath.agree(pres._fast_envelope, strict, raw)


def test_a_canonical_envelope_takes_the_fast_path_with_the_strict_result() -> None:
    raw = GOOD.to_bytes()
    got = agree(raw)
    assert got == GOOD
    assert Envelope.from_bytes(raw) == GOOD


def _fields(**change: Any) -> dict[str, Any]:
    m = msgpack.unpackb(GOOD.to_bytes(), raw=False)
    m.update(change)
    return dict(sorted(m.items()))


def _pack(m: object) -> bytes:
    return msgpack.packb(m, use_bin_type=True)  # type: ignore[no-any-return]


CASES = {
    "v 2": _pack(_fields(v=2)),
    "v true": _pack(_fields(v=True)),
    "kind bundle": _pack(_fields(kind="bundle")),
    "negative index": _pack(_fields(leaf_index=-1)),
    "index as str": _pack(_fields(leaf_index="41")),
    "short proof hash": _pack(_fields(proof=[bytes(31)])),
    "proof hash as str": _pack(_fields(proof=["a" * 32])),
    "65 proof hashes": _pack(_fields(proof=[bytes(32)] * 65)),
    "anchor as str": _pack(_fields(anchor="x")),
    "checkpoint as bytes": _pack(_fields(checkpoint=b"x")),
    "sd_jwt_kb as bytes": _pack(_fields(sd_jwt_kb=b"x")),
    "missing field": _pack({k: v for k, v in _fields().items() if k != "proof"}),
    "extra field": _pack({**_fields(), "zz": 1}),
    "unsorted keys": _pack(dict(reversed(list(_fields().items())))),
    "non-minimal int": GOOD.to_bytes().replace(b"\xa1v\x01", b"\xa1v\xcd\x00\x01"),
    "trailing bytes": GOOD.to_bytes() + b"\x00",
    "duplicate key": b"\x88" + GOOD.to_bytes()[1:] + b"\xa1v\x01",
    "ext type": _pack(_fields(v=msgpack.ExtType(1, b"x"))),
    "float": _pack(_fields(leaf_index=41.0)),
    "not a map": _pack([1, 2, 3]),
    "over the size limit": _pack(_fields(sd_jwt_kb="a" * MAX_ENVELOPE)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_envelopes_are_refused_by_both(case: str) -> None:
    raw = CASES[case]
    assert raw != GOOD.to_bytes(), case
    assert pres._fast_envelope(raw) is None, case
    with pytest.raises(DecodeError):
        Envelope.from_bytes(raw)


def test_the_strict_path_still_names_the_error() -> None:
    with pytest.raises(DecodeError, match="proof hashes are 32 bytes"):
        Envelope.from_bytes(CASES["short proof hash"])
    with pytest.raises(DecodeError, match="unknown field"):
        Envelope.from_bytes(CASES["extra field"])


def test_random_byte_flips_never_split_the_paths() -> None:
    rng = random.Random(26)
    seed = GOOD.to_bytes()
    accepted = 0
    for _ in range(3000):
        raw = bytearray(seed)
        for _ in range(rng.randint(1, 3)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        if agree(bytes(raw)) is not None:
            accepted += 1
    assert accepted > 0  # flips inside the anchor or proof bytes keep the envelope well-formed


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_split_the_paths(data: bytes) -> None:
    agree(data)

