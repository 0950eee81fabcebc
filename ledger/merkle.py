"""RFC 9162 §2.1 Merkle tree hashing, inclusion proofs and consistency proofs (SHA-256).

Builders raise ``ValueError`` on bad arguments; verifiers return ``None`` or raise
:class:`ledger.errors.ProofError`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.errors import ProofError

__all__ = [
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_hash",
    "verify_consistency",
    "verify_inclusion",
]

_HASH_SIZE = 32
_EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    """Hash of a leaf: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash of an interior node: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


# --- building ---------------------------------------------------------------------------------


def _check_leaf_hashes(leaf_hashes: Sequence[bytes]) -> None:
    for i, h in enumerate(leaf_hashes):
        if len(h) != _HASH_SIZE:
            raise ValueError(f"leaf hash {i} is {len(h)} bytes, expected {_HASH_SIZE}")


def _mth(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) level by level; a lone last node is carried up, which is RFC 9162's split."""
    if not leaf_hashes:
        return _EMPTY_ROOT
    level = list(leaf_hashes)
    while len(level) > 1:
        nxt = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def _largest_power_of_two_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def root_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH of the tree over ``leaf_hashes``; the empty tree hashes to SHA-256 of b""."""
    _check_leaf_hashes(leaf_hashes)
    return _mth(leaf_hashes)


def inclusion_proof(leaf_hashes: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]) of RFC 9162 §2.1.3.1, ordered from the leaf's sibling upwards."""
    _check_leaf_hashes(leaf_hashes)
    if not 0 <= index < len(leaf_hashes):
        raise ValueError(f"index {index} out of range for tree size {len(leaf_hashes)}")
    proof: list[bytes] = []
    level = list(leaf_hashes)
    i = index
    while len(level) > 1:
        sibling = i ^ 1
        if sibling < len(level):  # otherwise node i is a lone last node carried up unchanged
            proof.append(level[sibling])
        nxt = [node_hash(level[j], level[j + 1]) for j in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        i //= 2
    return proof


def consistency_proof(leaf_hashes: Sequence[bytes], old_size: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 9162 §2.1.4.1, for 0 < m <= n.

    The proof for m == n is empty. A proof from the empty tree (m == 0) is not defined.
    """
    _check_leaf_hashes(leaf_hashes)
    n = len(leaf_hashes)
    if not 0 < old_size <= n:
        raise ValueError(f"old size {old_size} out of range for tree size {n} (need 0 < m <= n)")
    # Walk SUBPROOF(m, D[lo:hi], b) down from the root. Each step appends the sibling subtree
    # *after* the recursive part, so siblings are collected top-down and reversed at the end.
    siblings: list[bytes] = []
    lo, hi, m, b = 0, n, old_size, True
    while m != hi - lo:
        k = _largest_power_of_two_below(hi - lo)
        if m <= k:
            siblings.append(_mth(leaf_hashes[lo + k : hi]))
            hi = lo + k
        else:
            siblings.append(_mth(leaf_hashes[lo : lo + k]))
            lo, m, b = lo + k, m - k, False
    siblings.reverse()
    if b:
        return siblings
    return [_mth(leaf_hashes[lo:hi]), *siblings]


# --- verifying --------------------------------------------------------------------------------


def _check_hash(what: str, value: bytes) -> None:
    if len(value) != _HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {_HASH_SIZE}")


def _check_proof(kind: str, proof: Sequence[bytes], expected_len: int) -> None:
    if len(proof) != expected_len:
        raise ProofError(
            f"{kind} proof has wrong length: expected {expected_len} hashes, got {len(proof)}"
        )
    for i, h in enumerate(proof):
        if len(h) != _HASH_SIZE:  # the message is built only for a wrong hash
            _check_hash(f"{kind} proof hash {i}", h)


def _mismatch(what: str, expected: bytes, calculated: bytes) -> ProofError:
    return ProofError(f"{what} mismatch: expected {expected.hex()}, calculated {calculated.hex()}")


def _inclusion_proof_len(index: int, size: int) -> int:
    # Below the level where the paths to `index` and `size - 1` meet, every level has a sibling;
    # above it, only the levels where the path turns right (a left sibling) do.
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_proof_len(old_size: int, new_size: int) -> int:
    # The inclusion path of leaf old_size - 1 starting at the level of the rightmost complete
    # subtree of the old tree, plus that subtree's own hash unless it is the whole old tree.
    shift = (old_size & -old_size).bit_length() - 1
    path = _inclusion_proof_len(old_size - 1, new_size) - shift
    return path if old_size == 1 << shift else path + 1


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check an inclusion proof (RFC 9162 §2.1.3.2); raise ProofError if it does not verify."""
    if index < 0 or size < 0:
        raise ProofError(f"index {index} and size {size} must not be negative")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    _check_proof("inclusion", proof, _inclusion_proof_len(index, size))

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofError("inclusion proof is longer than the path to the root")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the path to the root")
    if r != root:
        raise _mismatch("inclusion proof root", root, r)


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check a consistency proof (RFC 9162 §2.1.4.2); raise ProofError if it does not verify.

    Sizes must satisfy 0 < old_size <= new_size; equal sizes need equal roots and an empty proof.
    """
    if old_size < 0 or new_size < 0:
        raise ProofError(f"old size {old_size} and new size {new_size} must not be negative")
    if old_size > new_size:
        raise ProofError(f"old size {old_size} is greater than new size {new_size}")
    if old_size == 0:
        raise ProofError("a consistency proof from the empty tree (old size 0) is not defined")
    _check_hash("old root hash", old_root)
    _check_hash("new root hash", new_root)
    if old_size == new_size:
        _check_proof("consistency", proof, 0)
        if old_root != new_root:
            raise _mismatch("consistency proof root (equal sizes)", old_root, new_root)
        return
    _check_proof("consistency", proof, _consistency_proof_len(old_size, new_size))

    path = list(proof)
    if old_size & (old_size - 1) == 0:  # the old tree is a complete subtree: its root starts it
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofError("consistency proof is longer than the path to the new root")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofError("consistency proof is shorter than the path to the new root")
    if fr != old_root:
        raise _mismatch("consistency proof old root", old_root, fr)
    if sr != new_root:
        raise _mismatch("consistency proof new root", new_root, sr)
