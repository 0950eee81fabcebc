"""Ordered batches: what an agency node puts into the shared ordering log (etcd).

A batch is canonical msgpack ``{v, net, proposer, time, txs, sig}``: the proposing agency, its
proposed block time, the signed transactions (raw envelopes), and the proposer's node-key signature
(domain ``batch``) over the same map without ``sig``. Every node reads the batches in the log's
order and turns each into at most one block (:func:`ledger.chain.build_block`, block time
``max(batch time, previous block time)``), so all nodes build byte-identical chains.

Whether a batch counts is decided by :func:`check_batch` against the registry in force, the same
way on every node: a batch that does not decode, names another network, or is not signed by the
current node key of a current agency is skipped whole (its transactions are not applied).

A batch's time moves the chain's time only as far as other agencies witness (ADR 58): a batch
may carry ``wit``, the clock times other current agencies' nodes signed (domain ``clock``) and
published with their positions, and its block's time is at most :data:`WITNESS_SLACK` past the
``quorum - 1``-th latest of them (:func:`block_time`). One agency's node (or a thief of its key)
alone cannot move the time ahead: a batch dated 88 days ahead froze every honest issuance and
revocation, for good, since block times never go back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger import codec
from ledger.codec import Fields
from ledger.errors import DecodeError, SignatureError
from ledger.keys import PrivateKey
from ledger.state import Registry

__all__ = ["MAX_BATCH_BYTES", "MAX_BATCH_TXS", "WITNESS_SLACK", "Batch", "Witness", "block_time",
           "check_batch", "clock_signature", "make_batch"]

MAX_BATCH_TXS = 4096
MAX_BATCH_BYTES = 1 << 20
"""etcd's default request limit is 1.5 MiB; a batch stays below it with room to spare."""
WITNESS_SLACK = 60
"""Seconds a block's time may run past the time other agencies' nodes witnessed (the same
slack as a node allows its own clock against its peers': ``PEER_CLOCK_SLACK``)."""
MAX_WITNESSES = 16


def _clock_message(net: str, agency: str, time: int) -> bytes:
    return codec.encode({"net": net, "agency": agency, "time": time})


def clock_signature(net: str, agency: str, key: PrivateKey, time: int) -> bytes:
    """``agency``'s node saying its clock read ``time``: published with its position, and
    carried by other agencies' batches as a witness of the time."""
    return key.sign("clock", _clock_message(net, agency, time))


@dataclass(frozen=True, slots=True)
class Witness:
    """Another agency's node's signed clock time, as it published it."""

    agency: str
    time: int
    sig: bytes

    def to_map(self) -> dict[str, object]:
        return {"agency": self.agency, "sig": self.sig, "time": self.time}


@dataclass(frozen=True, slots=True)
class Batch:
    net: str
    proposer: str
    time: int
    txs: tuple[bytes, ...]
    sig: bytes
    wit: tuple[Witness, ...] = ()

    def _unsigned(self) -> dict[str, object]:
        out: dict[str, object] = {"v": 1, "net": self.net, "proposer": self.proposer,
                                  "time": self.time, "txs": list(self.txs)}
        if self.wit:  # absent when empty: a batch without witnesses is as before ADR 58
            out["wit"] = [w.to_map() for w in self.wit]
        return out

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
        wit: list[Witness] = []
        if f.has("wit"):
            items = f.list("wit", max_len=MAX_WITNESSES)
            if not items:
                raise DecodeError("an empty witness list is left out", "batch.wit")
            for k, item in enumerate(items):
                if type(item) is not dict:
                    raise DecodeError("a witness is a map", f"batch.wit[{k}]")
                w = Fields(item, f"batch.wit[{k}]")
                wit.append(Witness(w.str("agency", max_len=64), w.int("time", lo=0),
                                   w.bytes("sig", size=64)))
                w.done()
        f.done()
        if not txs or not all(type(t) is bytes for t in txs):
            raise DecodeError("txs must be a non-empty list of byte strings", "batch.txs")
        return cls(net, proposer, time, tuple(txs), sig, tuple(wit))


def make_batch(net: str, proposer: str, key: PrivateKey, time: int,
               txs: Sequence[bytes], witnesses: Sequence[Witness] = ()) -> Batch:
    """A signed batch of ``txs`` proposed by ``proposer`` (signed with its node key), with the
    other agencies' signed clock times it holds (``witnesses``)."""
    if not txs:
        raise ValueError("a batch holds at least one transaction")
    wit = tuple(witnesses)[:MAX_WITNESSES]
    unsigned = Batch(net, proposer, time, tuple(txs), b"", wit)
    sig = key.sign("batch", codec.encode(unsigned._unsigned()))
    return Batch(net, proposer, time, tuple(txs), sig, wit)


def block_time(batch: Batch, registry: Registry, head_time: int) -> int:
    """The time of the block ``batch`` makes after a block at ``head_time``: its proposer's
    time, but never before ``head_time`` nor more than :data:`WITNESS_SLACK` past the
    ``quorum - 1``-th (at most the :data:`MAX_WITNESSES`-th) latest time witnessed by other
    current agencies' nodes (each signature checked with its agency's node keys at the time
    it witnesses, or with those at ``head_time`` for a time before the registry's next
    change; a witness that does not verify, names the proposer, an agency twice or no
    current agency counts for nothing). With too few witnesses the time stays where it is.
    A quorum of one needs no witness."""
    if batch.time <= head_time:
        return head_time
    need = registry.quorum - 1
    if need <= 0:
        return batch.time
    keys = registry.node_keys(head_time)
    # a batch holds MAX_WITNESSES at most: a larger quorum could never move the time
    need = min(need, MAX_WITNESSES, sum(1 for a in keys if a != batch.proposer))
    if need <= 0:
        return batch.time
    # node keys and current agencies stay as at the head's time until then
    _, change = registry.node_key_span(head_time)
    seen: dict[str, int] = {}
    for w in batch.wit:
        if w.agency == batch.proposer or w.agency in seen or w.agency not in keys:
            continue
        message = _clock_message(registry.network, w.agency, w.time)
        then = registry.node_keys_of(w.agency, w.time)  # not every agency's
        # the node key its agency had at the time it witnessed: a key rotated in for a time
        # the chain has not reached yet signs that time (with the key valid now, a two-agency
        # network whose peer took its new key before then could never move the time there);
        # or the one it has at the head's time, which vouches for times before the registry's
        # next change only: a node keeps that key until the chain reaches its rotation (the
        # new one signs nothing before), and an idle two-agency network could never get there
        for key, counts in [*((k, w.time) for k in then),
                            *((k, int(min(w.time, change - 1))) for k in keys[w.agency]
                              if k not in then)]:
            try:
                key.verify("clock", message, w.sig)
            except SignatureError:
                continue
            seen[w.agency] = counts
            break
    if len(seen) < need:
        return head_time
    witnessed = sorted(seen.values(), reverse=True)[need - 1]
    return max(head_time, min(batch.time, witnessed + WITNESS_SLACK))


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
