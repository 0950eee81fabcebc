"""Checkpoints against the registry: who may sign, and when a checkpoint is final.

A checkpoint's note signer name is the agency id; its key is that agency's node key valid at the
block time the checkpoint covers. A checkpoint is *final* when at least the registry's quorum of
current agencies signed it (the registry in force at that height, not today's).

Every checkpoint a node signs carries one extension line (C2SP tlog-checkpoint allows them after
the root), ``block <height> <base64 block hash>``: the block that ends at its size. The root binds
the log's entries; the line binds how they were grouped into blocks, their times and heights, so
a quorum signs the chain and not only the log (ADR 60).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable
from typing import Protocol

from ledger.chain import Head
from ledger.checkpoint import Checkpoint, NoteSignature, SignedCheckpoint, note_key_hash
from ledger.errors import CheckpointError
from ledger.keys import PrivateKey, PublicKey
from ledger.state import Registry

__all__ = ["block_line", "checkpoint_block", "checkpoint_of", "checkpoint_verifiers",
           "sign_checkpoint", "verify_final"]

# A height of 19 digits at most (heights are below 2^63, as co-signatures say): int() of an
# unbounded one raised ValueError past 4,300 digits, out of the replay and catch-up's checks.
_BLOCK_LINE = re.compile(r"block (0|[1-9][0-9]{0,18}) ([A-Za-z0-9+/]{43}=)")


class _Ends(Protocol):
    """A block's end: a :class:`~ledger.chain.Head` or a :class:`~ledger.block.BlockHeader`."""

    @property
    def height(self) -> int: ...
    @property
    def hash(self) -> bytes: ...
    @property
    def log_size(self) -> int: ...
    @property
    def log_root(self) -> bytes: ...


def block_line(height: int, block_hash: bytes) -> str:
    """The extension line naming the block a checkpoint ends at."""
    return f"block {height} {base64.b64encode(block_hash).decode()}"


def checkpoint_of(network: str, at: _Ends) -> Checkpoint:
    """The checkpoint (unsigned) of the block ``at`` ends: its log and the block's line."""
    return Checkpoint(network, at.log_size, at.log_root, (block_line(at.height, at.hash),))


def checkpoint_block(cp: Checkpoint) -> tuple[int, bytes]:
    """(height, hash) of the block ``cp`` names; CheckpointError if it names none, or names
    it in a line that does not parse (one block line, first among the extensions)."""
    if not cp.extensions:
        raise CheckpointError(f"checkpoint at size {cp.size} names no block (a `block <height> "
                              "<hash>` line after the root)")
    m = _BLOCK_LINE.fullmatch(cp.extensions[0])
    if m is None:
        raise CheckpointError(f"checkpoint at size {cp.size}: its first extension line "
                              f"{cp.extensions[0][:80]!r} is not `block <height> <base64 hash>`")
    try:
        block_hash = base64.b64decode(m.group(2), validate=True)
    except (binascii.Error, ValueError) as e:  # (the pattern admits only valid base64)
        raise CheckpointError(f"checkpoint at size {cp.size}: block hash {e}") from e
    if base64.b64encode(block_hash).decode() != m.group(2):
        raise CheckpointError(f"checkpoint at size {cp.size}: block hash is not canonical "
                              "base64")
    return int(m.group(1)), block_hash


def checkpoint_verifiers(registry: Registry, t: int) -> dict[str, PublicKey]:
    """Note name (agency id) → node key, for every current agency with a node key valid at t."""
    out: dict[str, PublicKey] = {}
    for agency, keys in registry.node_keys(t).items():
        if keys:
            out[agency] = keys[-1]
    return out


def sign_checkpoint(network: str, head: Head, signers: Iterable[tuple[str, PrivateKey]],
                    existing: SignedCheckpoint | None = None) -> SignedCheckpoint:
    """The checkpoint of ``head`` signed by each (agency id, node key) in ``signers``."""
    signed = existing or SignedCheckpoint(checkpoint_of(network, head))
    if signed.checkpoint != checkpoint_of(network, head):
        raise CheckpointError("the existing checkpoint is for another tree head or block")
    for name, key in signers:
        signed = signed.cosign(name, key)
    return signed


def verify_final(signed: SignedCheckpoint, registry: Registry, t: int) -> set[str]:
    """Check origin and a quorum of valid node signatures as of ``registry`` and time ``t``.

    Returns the signing agencies; raises CheckpointError naming what is missing.
    """
    if signed.checkpoint.origin != registry.network:
        raise CheckpointError(f"checkpoint origin {signed.checkpoint.origin!r} is not this "
                              f"network {registry.network!r}")
    try:
        return signed.verify_quorum(checkpoint_verifiers(registry, t), registry.quorum)
    except CheckpointError as e:
        stale = _invalid_signers(signed, registry, t)
        if not stale:
            raise
        raise type(e)(f"{e}; not counted: {'; '.join(stale)}") from e  # BelowQuorumError kept


def registered_node_key(registry: Registry, sig: NoteSignature) -> PublicKey | None:
    """The node key ``registry`` registered (at any time) that a signature line names."""
    if registry.agency(sig.name) is None:
        return None
    for _, k in registry.keys_of(sig.name):
        if k["role"] == "node" and note_key_hash(sig.name, k["pub"]) == sig.key_hash:
            return PublicKey(k["pub"])
    return None


def line_verifies(signed: SignedCheckpoint, sig: NoteSignature, key: PublicKey) -> bool:
    """Whether one signature line of ``signed`` is ``key``'s signature of its checkpoint."""
    try:
        return sig.name in SignedCheckpoint(signed.checkpoint, (sig,)).signers({sig.name: key})
    except CheckpointError:
        return False


def unregistered_signatures(signed: SignedCheckpoint, registry: Registry, *,
                            unknown_ok: bool = False) -> list[str]:
    """The signature lines (``name+keyhash``) of ``signed`` by no node key ``registry`` has
    ever registered, or by one whose signature does not verify. A verifier ignores a line by
    a key it does not hold (signed notes say so); but a node stores its own line and
    co-signatures it checked, so in a stored checkpoint such a line was changed after the
    fact (its name or key hash altered: it no longer counts, and the others may still make
    the quorum). With ``unknown_ok``, only lines by registered keys that do not verify (a
    registry of a chain cut short may not hold a key a later block registers)."""
    out = []
    for sig in signed.signatures:
        key = registered_node_key(registry, sig)
        if key is None:
            if not unknown_ok:
                out.append(f"{sig.name}+{sig.key_hash.hex()} (no such key)")
        elif not line_verifies(signed, sig, key):
            out.append(f"{sig.name}+{sig.key_hash.hex()} (its signature does not verify)")
    return out


def _invalid_signers(signed: SignedCheckpoint, registry: Registry, t: int) -> list[str]:
    """Why signatures by registered node keys that are not valid at ``t`` did not count."""
    out = []
    for sig in signed.signatures:
        for kid, k in registry.keys_of(sig.name) if registry.agency(sig.name) else []:
            if k["role"] != "node" or registry.key_valid(kid, t, "node") or \
                    note_key_hash(sig.name, k["pub"]) != sig.key_hash:
                continue
            if k["invalid_from"] is not None and t >= k["invalid_from"]:
                out.append(f"{sig.name}'s node key {kid.hex()[:16]} was invalidated from "
                           f"{k['invalid_from']} (rotation or key compromise)")
            else:
                out.append(f"{sig.name}'s node key {kid.hex()[:16]} is only valid from "
                           f"{k['valid_from']}")
    return out
