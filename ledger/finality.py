"""Checkpoints against the registry: who may sign, and when a checkpoint is final.

A checkpoint's note signer name is the agency id; its key is that agency's node key valid at the
block time the checkpoint covers. A checkpoint is *final* when at least the registry's quorum of
current agencies signed it (the registry in force at that height, not today's).
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.chain import Head
from ledger.checkpoint import Checkpoint, NoteSignature, SignedCheckpoint, note_key_hash
from ledger.errors import CheckpointError
from ledger.keys import PrivateKey, PublicKey
from ledger.state import Registry

__all__ = ["checkpoint_verifiers", "sign_checkpoint", "verify_final"]


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
    signed = existing or SignedCheckpoint(Checkpoint(network, head.log_size, head.log_root))
    if (signed.checkpoint.size, signed.checkpoint.root) != (head.log_size, head.log_root):
        raise CheckpointError("the existing checkpoint is for another tree head")
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
        raise CheckpointError(f"{e}; not counted: {'; '.join(stale)}") from e


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


def unregistered_signatures(signed: SignedCheckpoint, registry: Registry) -> list[str]:
    """The signature lines (``name+keyhash``) of ``signed`` by no node key ``registry`` has
    ever registered, or by one whose signature does not verify. A verifier ignores a line by
    a key it does not hold (signed notes say so); but a node stores its own line and
    co-signatures it checked, so in a stored checkpoint such a line was changed after the
    fact (its name or key hash altered: it no longer counts, and the others may still make
    the quorum)."""
    out = []
    for sig in signed.signatures:
        key = registered_node_key(registry, sig)
        if key is None:
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
