"""Tests for ledger.merkle: published transparency-dev/merkle vectors plus RFC 9162 properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import LedgerError, ProofError
from ledger.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_hash,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = Path(__file__).parent / "vectors" / "merkle" / "transparency-dev-merkle.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_PATH.read_text())

LEAVES = [bytes.fromhex(x) for x in VECTORS["leaf_inputs"]]
NODE_HASHES = [[bytes.fromhex(x) for x in level] for level in VECTORS["node_hashes"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["roots_by_size"]]
LEAF_HASHES = NODE_HASHES[0]
EMPTY_ROOT = hashlib.sha256(b"").digest()

# Upstream probes whose expectation we deliberately do not share. Go's VerifyConsistency returns
# root1 for size1 == size2 without looking at hash lengths; ours rejects any hash that is not
# 32 bytes (here: the 12-byte "don't care 1" and "don't care 2") before anything else, and a
# consistency proof from an empty tree (size1 = 0) proves nothing, so it is refused too.
DIVERGENT_PROBES = {
    "testdata/consistency/additional/sizes-are-equal-one-and-proof-is-empty.json": True,
    "testdata/consistency/additional/"
    "sizes-are-equal-and-proof-is-empty-where-both-sizes-are-zero.json": True,
    "testdata/consistency/additional/"
    "sizes-are-equal-and-proof-is-empty-where-both-sizes-are-one.json": True,
}


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _flip(data: bytes, pos: int, mask: int = 0x01) -> bytes:
    return data[:pos] + bytes([data[pos] ^ mask]) + data[pos + 1 :]


# --- independent models of the RFC 9162 recursive definitions -----------------------------------


def _rfc_mth(hashes: list[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition (k = largest power of two < n)."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    return node_hash(_rfc_mth(hashes[:k]), _rfc_mth(hashes[k:]))


def _inclusion_sides(index: int, size: int) -> list[bool] | None:
    """PATH(index, D[size]) as sibling sides, leaf first (True: sibling is on the left)."""
    if not 0 <= index < size:
        return None
    sides: list[bool] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if index - lo < k:
            sides.append(False)
            hi = lo + k
        else:
            sides.append(True)
            lo += k
    sides.reverse()
    return sides


def _consistency_shape(old: int, new: int) -> tuple[bool, list[bool]] | None:
    """SUBPROOF(old, D[new], true) as (old root omitted?, sibling sides deepest first)."""
    if not 0 < old <= new:
        return None
    sides: list[bool] = []
    lo, hi, m, b = 0, new, old, True
    while m != hi - lo:
        k = 1
        while k * 2 < hi - lo:
            k *= 2
        if m <= k:
            sides.append(False)
            hi = lo + k
        else:
            sides.append(True)
            lo, m, b = lo + k, m - k, False
    sides.reverse()
    return b, sides


def _rfc_inclusion_len(index: int, size: int) -> int:
    sides = _inclusion_sides(index, size)
    assert sides is not None
    return len(sides)


def _rfc_consistency_len(old: int, new: int) -> int:
    shape = _consistency_shape(old, new)
    assert shape is not None
    omitted, sides = shape
    return len(sides) + (0 if omitted else 1)


# --- the public API surface ---------------------------------------------------------------------


def test_public_api_is_exactly_the_rfc_functions() -> None:
    assert sorted(merkle.__all__) == sorted(
        [
            "consistency_proof",
            "inclusion_proof",
            "leaf_hash",
            "node_hash",
            "root_hash",
            "verify_consistency",
            "verify_inclusion",
        ]
    )


def test_proof_error_is_a_ledger_error() -> None:
    with pytest.raises(LedgerError):
        verify_inclusion(LEAF_HASHES[0], 1, 1, [], ROOTS[1])


def test_hash_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    a, b = b"\x11" * 32, b"\x22" * 32
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    assert root_hash([]) == EMPTY_ROOT


# --- transparency-dev/merkle vectors ------------------------------------------------------------


def test_vector_file_names_its_source() -> None:
    src = VECTORS["source"]
    assert src["repository"] == "https://github.com/transparency-dev/merkle"
    assert len(src["commit"]) == 40
    assert len(LEAVES) == 8
    assert len(ROOTS) == 9


@pytest.mark.parametrize("i", range(8))
def test_vector_leaf_hashes(i: int) -> None:
    assert leaf_hash(LEAVES[i]) == LEAF_HASHES[i]


@pytest.mark.parametrize("size", range(9))
def test_vector_roots(size: int) -> None:
    hashes = [leaf_hash(x) for x in LEAVES[:size]]
    assert root_hash(hashes) == ROOTS[size]


def test_vector_complete_subtree_hashes() -> None:
    checked = 0
    for level, row in enumerate(NODE_HASHES):
        width = 1 << level
        for i, want in enumerate(row):
            assert root_hash(LEAF_HASHES[i * width : (i + 1) * width]) == want
            if level:
                below = NODE_HASHES[level - 1]
                assert node_hash(below[2 * i], below[2 * i + 1]) == want
            checked += 1
    assert checked == 15


@pytest.mark.parametrize(
    "case", VECTORS["inclusion_proofs"], ids=lambda c: f"{c['index']}:{c['size']}"
)
def test_vector_inclusion_proofs(case: dict[str, Any]) -> None:
    index, size, want = case["index"], case["size"], _hexes(case["proof"])
    assert inclusion_proof(LEAF_HASHES[:size], index) == want
    verify_inclusion(LEAF_HASHES[index], index, size, want, ROOTS[size])


@pytest.mark.parametrize(
    "case", VECTORS["consistency_proofs"], ids=lambda c: f"{c['size1']}:{c['size2']}"
)
def test_vector_consistency_proofs(case: dict[str, Any]) -> None:
    old, new, want = case["size1"], case["size2"], _hexes(case["proof"])
    assert consistency_proof(LEAF_HASHES[:new], old) == want
    verify_consistency(old, new, ROOTS[old], ROOTS[new], want)


def _probe_id(p: dict[str, Any]) -> str:
    return str(p["file"]).removeprefix("testdata/")


@pytest.mark.parametrize("probe", VECTORS["inclusion_probes"], ids=_probe_id)
def test_vector_inclusion_probes(probe: dict[str, Any]) -> None:
    want_err = DIVERGENT_PROBES.get(probe["file"], probe["wantErr"])
    leaf, root = bytes.fromhex(probe["leafHash"]), bytes.fromhex(probe["root"])
    index, size, proof = probe["leafIdx"], probe["treeSize"], _hexes(probe["proof"])
    if want_err:
        with pytest.raises(ProofError):
            verify_inclusion(leaf, index, size, proof, root)
        return
    verify_inclusion(leaf, index, size, proof, root)
    if 0 < size <= 8 and root == ROOTS[size]:  # a good proof in the vector tree: rebuild it
        assert leaf == LEAF_HASHES[index]
        assert inclusion_proof(LEAF_HASHES[:size], index) == proof


@pytest.mark.parametrize("probe", VECTORS["consistency_probes"], ids=_probe_id)
def test_vector_consistency_probes(probe: dict[str, Any]) -> None:
    want_err = DIVERGENT_PROBES.get(probe["file"], probe["wantErr"])
    old, new, proof = probe["size1"], probe["size2"], _hexes(probe["proof"])
    root1, root2 = bytes.fromhex(probe["root1"]), bytes.fromhex(probe["root2"])
    if want_err:
        with pytest.raises(ProofError):
            verify_consistency(old, new, root1, root2, proof)
        return
    verify_consistency(old, new, root1, root2, proof)
    assert 0 < new <= 8
    assert (root1, root2) == (ROOTS[old], ROOTS[new])
    assert consistency_proof(LEAF_HASHES[:new], old) == proof


def test_vector_probe_coverage() -> None:
    """The transcription holds the negative kinds the brief asks for, and the good ones."""
    descs = {p["desc"] for p in VECTORS["inclusion_probes"] + VECTORS["consistency_probes"]}
    for needed in [
        "happy path",
        "leafIdx plus @1",
        "leafIdx sub @1",
        "treeSize mul @2",
        "treeSize div @2",
        "removed component",
        "inserted component",
        "trailing garbage",
        "modified proof[0] bit @3",
        "truncated proof",
        "size1 plus @1",
        "size2 div @2",
        "wrong root1",
        "swapped roots",
    ]:
        assert needed in descs, needed
    assert len(VECTORS["inclusion_probes"]) == 98
    assert len(VECTORS["consistency_probes"]) == 98 + 2  # two from the later commit (notes)


def _valid_subtree(start: int, end: int) -> bool:
    if start in (0, end):
        return True
    ceil = 1 << (end - start - 1).bit_length()
    return start % ceil == 0


def test_vector_accumulated_subtree_hashes() -> None:
    acc = VECTORS["accumulated"]
    hashes = [leaf_hash(bytes([i])) for i in range(acc["max_size"])]
    h = hashlib.sha256()
    for end in range(acc["max_size"] + 1):
        for start in range(end + 1):
            if _valid_subtree(start, end):
                h.update(f"[{start}, {end}) {root_hash(hashes[start:end]).hex()}\n".encode())
    assert h.hexdigest() == acc["subtree_hash"]


def test_vector_accumulated_subtree_inclusion_proofs() -> None:
    acc = VECTORS["accumulated"]
    hashes = [leaf_hash(bytes([i])) for i in range(acc["max_size"])]
    h = hashlib.sha256()
    for end in range(acc["max_size"] + 1):
        for start in range(end + 1):
            if not _valid_subtree(start, end):
                continue
            for index in range(start, end):
                proof = inclusion_proof(hashes[start:end], index - start)
                line = f"{index} [{start}, {end})" + "".join(f" {p.hex()}" for p in proof)
                h.update(f"{line}\n".encode())
    assert h.hexdigest() == acc["subtree_inclusion_proof"]


# --- argument checking --------------------------------------------------------------------------


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (5, 3), (-1, 3), (0, -1)])
def test_verify_inclusion_rejects_bad_index_or_size(index: int, size: int) -> None:
    with pytest.raises(ProofError, match=r"is not below tree size|must not be negative"):
        verify_inclusion(LEAF_HASHES[0], index, size, [], ROOTS[1])


@pytest.mark.parametrize(
    ("old", "new", "match"),
    [(2, 1, "greater"), (-1, 3, "negative"), (1, -1, "negative"), (0, 0, "empty"), (0, 5, "empty")],
)
def test_verify_consistency_rejects_bad_sizes(old: int, new: int, match: str) -> None:
    with pytest.raises(ProofError, match=match):
        verify_consistency(old, new, EMPTY_ROOT, EMPTY_ROOT, [])


def test_verifiers_reject_short_hashes() -> None:
    good = inclusion_proof(LEAF_HASHES, 3)
    with pytest.raises(ProofError, match="leaf hash is 31 bytes"):
        verify_inclusion(LEAF_HASHES[3][:31], 3, 8, good, ROOTS[8])
    with pytest.raises(ProofError, match="root hash is 33 bytes"):
        verify_inclusion(LEAF_HASHES[3], 3, 8, good, ROOTS[8] + b"\x00")
    with pytest.raises(ProofError, match="inclusion proof hash 1 is 0 bytes"):
        verify_inclusion(LEAF_HASHES[3], 3, 8, [good[0], b"", good[2]], ROOTS[8])
    cons = consistency_proof(LEAF_HASHES, 3)
    with pytest.raises(ProofError, match="old root hash is 0 bytes"):
        verify_consistency(3, 8, b"", ROOTS[8], cons)
    with pytest.raises(ProofError, match="new root hash is 31 bytes"):
        verify_consistency(3, 8, ROOTS[3], ROOTS[8][:31], cons)
    with pytest.raises(ProofError, match="consistency proof hash 0 is 31 bytes"):
        verify_consistency(3, 8, ROOTS[3], ROOTS[8], [cons[0][:31], *cons[1:]])


def test_error_messages_show_expected_and_calculated_hex() -> None:
    proof = inclusion_proof(LEAF_HASHES, 2)
    wrong_root = _flip(ROOTS[8], 0)
    with pytest.raises(ProofError) as err:
        verify_inclusion(LEAF_HASHES[2], 2, 8, proof, wrong_root)
    assert f"expected {wrong_root.hex()}" in str(err.value)
    assert f"calculated {ROOTS[8].hex()}" in str(err.value)

    with pytest.raises(ProofError, match="expected 3 hashes, got 4"):
        verify_inclusion(LEAF_HASHES[2], 2, 8, [*proof, proof[0]], ROOTS[8])

    cons = consistency_proof(LEAF_HASHES, 5)
    wrong_old = _flip(ROOTS[5], 31)
    with pytest.raises(ProofError) as err:
        verify_consistency(5, 8, wrong_old, ROOTS[8], cons)
    assert f"expected {wrong_old.hex()}" in str(err.value)
    assert f"calculated {ROOTS[5].hex()}" in str(err.value)
    with pytest.raises(ProofError, match=f"expected {len(cons)} hashes, got {len(cons) - 1}"):
        verify_consistency(5, 8, ROOTS[5], ROOTS[8], cons[:-1])


def test_builders_raise_value_error() -> None:
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(LEAF_HASHES, 8)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(LEAF_HASHES, -1)
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof([], 0)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(LEAF_HASHES, 9)
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(LEAF_HASHES, 0)
    with pytest.raises(ValueError, match="leaf hash 1 is 3 bytes"):
        root_hash([LEAF_HASHES[0], b"abc"])
    with pytest.raises(ValueError, match="leaf hash 0 is 0 bytes"):
        inclusion_proof([b""], 0)


def test_equal_sizes_need_equal_roots_and_empty_proof() -> None:
    verify_consistency(8, 8, ROOTS[8], ROOTS[8], [])
    with pytest.raises(ProofError, match="mismatch"):
        verify_consistency(8, 8, ROOTS[8], ROOTS[7], [])
    with pytest.raises(ProofError, match="expected 0 hashes, got 1"):
        verify_consistency(8, 8, ROOTS[8], ROOTS[8], [ROOTS[8]])
    assert consistency_proof(LEAF_HASHES, 8) == []


# --- exhaustive small trees ---------------------------------------------------------------------

SMALL = [leaf_hash(i.to_bytes(2, "big")) for i in range(70)]


def test_small_trees_exhaustively() -> None:
    """Every proof in every tree of size 1..70 is built, sized and verified per RFC 9162."""
    for size in range(1, len(SMALL) + 1):
        leaves = SMALL[:size]
        root = root_hash(leaves)
        assert root == _rfc_mth(leaves)
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            assert len(proof) == _rfc_inclusion_len(index, size)
            verify_inclusion(leaves[index], index, size, proof, root)
        for old in range(1, size + 1):
            proof = consistency_proof(leaves, old)
            assert len(proof) == _rfc_consistency_len(old, size)
            verify_consistency(old, size, root_hash(leaves[:old]), root, proof)


def test_every_flipped_byte_is_caught_in_small_trees() -> None:
    for size in range(1, 13):
        leaves = SMALL[:size]
        root = root_hash(leaves)
        for index in range(size):
            proof = inclusion_proof(leaves, index)
            for j, p in enumerate(proof):
                for pos in range(32):
                    bad = [*proof[:j], _flip(p, pos, 0x80), *proof[j + 1 :]]
                    with pytest.raises(ProofError):
                        verify_inclusion(leaves[index], index, size, bad, root)
        for old in range(1, size):
            proof = consistency_proof(leaves, old)
            old_root = root_hash(leaves[:old])
            for j, p in enumerate(proof):
                for pos in range(32):
                    bad = [*proof[:j], _flip(p, pos, 0x80), *proof[j + 1 :]]
                    with pytest.raises(ProofError):
                        verify_consistency(old, size, old_root, root, bad)


# --- hypothesis properties ----------------------------------------------------------------------


@st.composite
def hash_lists(draw: st.DrawFn) -> list[bytes]:
    """Leaf hash lists of 1..300 distinct entries: either drawn hash by hash, or derived from a
    seed so that large sizes are as likely as small ones. Distinct, because with equal leaves
    two positions legitimately share one hash chain (two equal leaves of a 2-leaf tree)."""
    if draw(st.booleans()):
        return draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=300,
                             unique=True))
    size = draw(st.integers(1, 300), label="size")
    seed = draw(st.binary(min_size=1, max_size=8), label="seed")
    return [hashlib.sha256(seed + i.to_bytes(2, "big")).digest() for i in range(size)]


@settings(max_examples=40, deadline=None)
@given(leaves=hash_lists())
def test_every_inclusion_proof_verifies(leaves: list[bytes]) -> None:
    root = root_hash(leaves)
    for index in range(len(leaves)):
        proof = inclusion_proof(leaves, index)
        assert len(proof) == _rfc_inclusion_len(index, len(leaves))
        verify_inclusion(leaves[index], index, len(leaves), proof, root)


@settings(max_examples=40, deadline=None)
@given(leaves=hash_lists())
def test_every_consistency_proof_verifies(leaves: list[bytes]) -> None:
    n = len(leaves)
    root = root_hash(leaves)
    for old in range(1, n + 1):
        proof = consistency_proof(leaves, old)
        assert len(proof) == _rfc_consistency_len(old, n)
        verify_consistency(old, n, root_hash(leaves[:old]), root, proof)


@settings(max_examples=200, deadline=None)
@given(leaves=hash_lists(), data=st.data())
def test_root_matches_recursive_definition(leaves: list[bytes], data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, len(leaves)))
    assert root_hash(leaves) == _rfc_mth(leaves)
    assert root_hash(leaves[:cut]) == _rfc_mth(leaves[:cut])


@settings(max_examples=300, deadline=None)
@given(leaves=hash_lists(), data=st.data())
def test_corrupted_inclusion_proof_is_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(leaves, index)
    root = root_hash(leaves)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        pos = data.draw(st.integers(0, 31), label="byte")
        mask = data.draw(st.integers(1, 255), label="mask")
        bad = [*proof[:j], _flip(proof[j], pos, mask), *proof[j + 1 :]]
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, n, bad, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, n, proof, _flip(root, 7))
    with pytest.raises(ProofError):
        verify_inclusion(_flip(leaves[index], 0), index, n, proof, root)
    with pytest.raises(ProofError):
        verify_inclusion(leaves[index], index, n, [*proof, root], root)
    if proof:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], index, n, proof[:-1], root)


@settings(max_examples=300, deadline=None)
@given(leaves=hash_lists(), data=st.data())
def test_changed_index_or_size_is_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    """Another (index, size) verifies only when RFC 9162 gives it the very same hash chain.

    The verifier cannot tell (2, 3) from (1, 2), say: both hash H(p, leaf) with one proof hash.
    So the oracle is the sibling sequence of PATH() from the recursive definition; any other
    pair, and every out-of-range pair, must raise ProofError.
    """
    n = len(leaves)
    index = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(leaves, index)
    root = root_hash(leaves)
    new_index = data.draw(st.integers(-1, 2 * n), label="new index")
    new_size = data.draw(st.integers(-1, 2 * n + 1), label="new size")
    if (new_index, new_size) == (index, n):
        new_size += 1
    same_chain = _inclusion_sides(new_index, new_size) == _inclusion_sides(index, n)
    if same_chain:
        verify_inclusion(leaves[index], new_index, new_size, proof, root)
    else:
        with pytest.raises(ProofError):
            verify_inclusion(leaves[index], new_index, new_size, proof, root)


@settings(max_examples=300, deadline=None)
@given(leaves=hash_lists(), data=st.data())
def test_corrupted_consistency_proof_is_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    n = len(leaves)
    old = data.draw(st.integers(1, n), label="old size")
    proof = consistency_proof(leaves, old)
    old_root, new_root = root_hash(leaves[:old]), root_hash(leaves)
    if proof:
        j = data.draw(st.integers(0, len(proof) - 1), label="proof hash")
        pos = data.draw(st.integers(0, 31), label="byte")
        mask = data.draw(st.integers(1, 255), label="mask")
        bad = [*proof[:j], _flip(proof[j], pos, mask), *proof[j + 1 :]]
        with pytest.raises(ProofError):
            verify_consistency(old, n, old_root, new_root, bad)
        with pytest.raises(ProofError):
            verify_consistency(old, n, old_root, new_root, proof[:-1])
    with pytest.raises(ProofError):
        verify_consistency(old, n, _flip(old_root, 3), new_root, proof)
    with pytest.raises(ProofError):
        verify_consistency(old, n, old_root, _flip(new_root, 30), proof)
    with pytest.raises(ProofError):
        verify_consistency(old, n, old_root, new_root, [*proof, new_root])


@settings(max_examples=300, deadline=None)
@given(leaves=hash_lists(), data=st.data())
def test_changed_consistency_sizes_are_rejected(leaves: list[bytes], data: st.DataObject) -> None:
    """Other sizes verify only when SUBPROOF() gives them the very same hash computation."""
    n = len(leaves)
    old = data.draw(st.integers(1, n), label="old size")
    proof = consistency_proof(leaves, old)
    old_root, new_root = root_hash(leaves[:old]), root_hash(leaves)
    new_old = data.draw(st.integers(-1, 2 * n), label="new old size")
    new_new = data.draw(st.integers(-1, 2 * n + 1), label="new new size")
    if (new_old, new_new) == (old, n):
        new_new += 1
    if _consistency_shape(new_old, new_new) == _consistency_shape(old, n):
        verify_consistency(new_old, new_new, old_root, new_root, proof)
    else:
        with pytest.raises(ProofError):
            verify_consistency(new_old, new_new, old_root, new_root, proof)
