"""Ordered batches: what an agency node puts into the shared ordering log (etcd).

A batch is canonical msgpack ``{v, net, proposer, time, txs, sig}``: the proposing agency, its
proposed block time, the signed transactions (raw envelopes), and the proposer's node-key signature
(domain ``batch``) over the same map without ``sig``. Every node reads the batches in the log's
order and turns each into at most one block (:func:`ledger.chain.build_block`, block time
``max(batch time, previous block time)``), so all nodes build byte-identical chains.

Whether a batch counts is decided by :func:`check_batch` against the registry in force, the same
way on every node: a batch that does not decode, names another network, or is not signed by the
current node key of a current agency is skipped whole (its transactions are not applied).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError, SignatureError
from ledger.keys import PrivateKey
from ledger.state import Registry

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_TXS", "Batch", "check_batch", "make_batch"]

MAX_BATCH_TXS = 4096
MAX_BATCH_BYTES = 1 << 20
"""etcd's default request limit is 1.5 MiB; a batch stays below it with room to spare."""


@dataclass(frozen=True, slots=True)
class Batch:
    net: str
    proposer: str
    time: int
    txs: tuple[bytes, ...]
    sig: bytes

    def _unsigned(self) -> dict[str, object]:
        return {"v": 1, "net": self.net, "proposer": self.proposer, "time": self.time,
                "txs": list(self.txs)}

    def to_bytes(self) -> bytes:
        return codec.encode({**self._unsigned(), "sig": self.sig})

    @classmethod
    def from_bytes(cls, unverified: bytes) -> Batch:
        if len(unverified) > MAX_BATCH_BYTES:
            raise DecodeError(f"batch of {len(unverified)} bytes, at most {MAX_BATCH_BYTES}",
                              "batch")
        f = Fields(codec.decode(unverified, max_size=MAX_BATCH_BYTES, what="batch"), "batch")
        f.int("v", lo=1, hi=1)
        net, proposer = f.str("net", max_len=64), f.str("proposer", max_len=64)
        time = f.int("time", lo=0)
        txs = f.list("txs", max_len=MAX_BATCH_TXS)
        sig = f.bytes("sig", size=64)
        f.done()
        if not txs or not all(type(t) is bytes for t in txs):
            raise DecodeError("txs must be a non-empty list of byte strings", "batch.txs")
        return cls(net, proposer, time, tuple(txs), sig)


def make_batch(net: str, proposer: str, key: PrivateKey, time: int,
               txs: Sequence[bytes]) -> Batch:
    """A signed batch of ``txs`` proposed by ``proposer`` (signed with its node key)."""
    if not txs:
        raise ValueError("a batch holds at least one transaction")
    unsigned = Batch(net, proposer, time, tuple(txs), b"")
    sig = key.sign("batch", codec.encode(unsigned._unsigned()))
    return Batch(net, proposer, time, tuple(txs), sig)


def check_batch(batch: Batch, registry: Registry, t: int) -> None:
    """Raise unless ``batch`` is for this network and signed by a current agency's node key."""
    if batch.net != registry.network:
        raise DecodeError(f"batch for network {batch.net!r}, not {registry.network!r}",
                          "batch.net")
    keys = registry.node_keys(t).get(batch.proposer)
    if not keys:
        raise SignatureError(f"batch proposer {batch.proposer!r} is not a current agency "
                             "with a node key")
    message = codec.encode(batch._unsigned())
    for key in keys:
        try:
            key.verify("batch", message, batch.sig)
            return
        except SignatureError:
            continue
    raise SignatureError(f"batch signature does not verify with {batch.proposer!r}'s node key")
