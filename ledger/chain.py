"""Building blocks, purely: the Merkle compact range and ``build_block``.

Given the head, the registry, a read view of state and a list of parsed transactions, produce the
next block header and *every* key/value write that committing it needs (block, log entries, tx
index, Merkle interior nodes, state, registry, head). The store then writes them in one synced
batch. Nothing here touches a disk or a clock.

Key layout (shared with :mod:`ledger.store`)::

    H                    head {height, hash, log_size, log_root}
    b + be64(height)     block header bytes
    e + be64(index)      log entry (the transaction envelope bytes)
    t + txid             be64(index) + be64(height)
    n + u8(level) + be64(i)   hash of the complete subtree [i*2^level, (i+1)*2^level)
    r + be64(height)     registry bytes as of the end of that block (written when it changes)
    k + be64(size)       signed checkpoint text for that log size
    c…, i…               credential state (see ledger.state)
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from ledger import codec, merkle
from ledger.block import GENESIS_PREV, BlockHeader
from ledger.errors import LedgerError, TxRejected
from ledger.state import Machine, Registry, StateView, credential_key, genesis_registry
from ledger.tx import Tx

__all__ = [
    "BlockResult",
    "CompactRange",
    "Head",
    "block_key",
    "build_block",
    "build_genesis",
    "checkpoint_key",
    "entry_key",
    "head_key",
    "node_key",
    "registry_key",
    "txid_key",
]

_BE = struct.Struct(">Q")
_ENTRY = struct.Struct(">cQ")
_NODE = struct.Struct(">cBQ")
head_key = b"H"


def block_key(height: int) -> bytes:
    return b"b" + _BE.pack(height)


def entry_key(index: int) -> bytes:
    return _ENTRY.pack(b"e", index)


def txid_key(txid: bytes) -> bytes:
    return b"t" + txid


def node_key(level: int, index: int) -> bytes:
    return _NODE.pack(b"n", level, index)


def registry_key(height: int) -> bytes:
    return b"r" + _BE.pack(height)


def checkpoint_key(size: int) -> bytes:
    return b"k" + _BE.pack(size)


@dataclass(frozen=True, slots=True)
class Head:
    height: int
    hash: bytes
    log_size: int
    log_root: bytes
    time: int

    def to_bytes(self) -> bytes:
        return codec.encode({"height": self.height, "hash": self.hash, "log_size": self.log_size,
                             "log_root": self.log_root, "time": self.time})

    @classmethod
    def from_bytes(cls, data: bytes) -> Head:
        f = codec.Fields(codec.decode(data, what="head"), "head")
        h = cls(f.int("height", lo=0), f.bytes("hash", size=32), f.int("log_size", lo=1),
                f.bytes("log_root", size=32), f.int("time", lo=0))
        f.done()
        return h


class CompactRange:
    """The right edge of an RFC 9162 tree: one hash per set bit of ``size``, largest first."""

    __slots__ = ("hashes", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes")
        self.size = size
        self.hashes = list(hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self.hashes)

    def append(self, leaf: bytes, out: dict[bytes, bytes]) -> None:
        """Add a leaf hash; write every newly completed subtree node into ``out``."""
        idx = self.size
        out[node_key(0, idx)] = leaf
        h = leaf
        level = 0
        while idx & 1:
            h = merkle.node_hash(self.hashes.pop(), h)
            idx >>= 1
            level += 1
            out[node_key(level, idx)] = h
        self.hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        if not self.hashes:
            return merkle.root_hash([])
        h = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            h = merkle.node_hash(left, h)
        return h

    @staticmethod
    def nodes_for(size: int) -> list[tuple[int, int]]:
        """(level, index) of the stored nodes that make up a compact range of ``size``."""
        out = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                out.append((level, start >> level))
                start += 1 << level
        return out


@dataclass
class BlockResult:
    """What committing one block means. ``header`` is None when nothing was accepted."""

    header: BlockHeader | None
    head: Head | None
    registry: Registry
    frontier: CompactRange
    accepted: list[tuple[Tx, int]] = field(default_factory=list)
    rejected: list[tuple[Tx, TxRejected]] = field(default_factory=list)
    duplicates: list[tuple[Tx, int, int]] = field(default_factory=list)
    writes: dict[bytes, bytes] = field(default_factory=dict)


def _index_value(index: int, height: int) -> bytes:
    return _BE.pack(index) + _BE.pack(height)


def parse_index_value(v: bytes) -> tuple[int, int]:
    return _BE.unpack_from(v, 0)[0], _BE.unpack_from(v, 8)[0]


def build_genesis(tx: Tx) -> BlockResult:
    """Block 0 holding the genesis transaction alone."""
    registry = genesis_registry(tx)
    t = int(tx.body["time"])
    frontier = CompactRange()
    writes: dict[bytes, bytes] = {}
    frontier.append(merkle.leaf_hash(tx.raw), writes)
    header = BlockHeader(tx.net, 0, GENESIS_PREV, t, 0, 1, frontier.root())
    head = Head(0, header.hash, 1, header.log_root, t)
    writes[entry_key(0)] = tx.raw
    writes[txid_key(tx.txid)] = _index_value(0, 0)
    writes[registry_key(0)] = registry.to_bytes()
    writes[block_key(0)] = header.to_bytes()
    writes[head_key] = head.to_bytes()
    return BlockResult(header, head, registry, frontier, [(tx, 0)], [], [], writes)


def build_block(head: Head, registry: Registry, view: StateView, frontier: CompactRange,
                txs: Sequence[Tx], time: int, *,
                checked: Sequence[bool] | None = None) -> BlockResult:
    """Apply ``txs`` in order on top of ``head`` at block time ``max(time, head.time)``.

    Rejected and repeated transactions are left out (and reported); the rest form the block.
    ``checked[i]`` says tx i's signatures were already verified (see Machine.apply).
    """
    t = max(time, head.time)
    machine = Machine(registry, view)
    fr = frontier.copy()
    if fr.size != head.log_size:
        raise ValueError(f"frontier size {fr.size} != head log size {head.log_size}")
    result = BlockResult(None, None, registry, frontier)
    writes = machine.writes
    nodes: dict[bytes, bytes] = {}
    index = head.log_size
    height = head.height + 1
    for i, tx in enumerate(txs):
        # A committed issue transaction anchored its credential, and nothing removes an anchor:
        # with no record of the credential, the tx id cannot be known either, and the lookup
        # (one absent-key read per transaction on every node) is skipped. The machine
        # remembers the absent credential for its own check.
        if tx.type == "issue" and machine.get(credential_key(tx.body["credential_id"])) is None:
            prior = None
        else:
            prior = machine.get(txid_key(tx.txid))
        if prior is not None:
            at, h = parse_index_value(prior)
            result.duplicates.append((tx, at, h))
            continue
        try:
            machine.apply(tx, t, signatures_checked=bool(checked and checked[i]))
        except TxRejected as e:
            result.rejected.append((tx, e))
            continue
        writes[txid_key(tx.txid)] = _index_value(index, height)
        writes[entry_key(index)] = tx.raw
        fr.append(merkle.leaf_hash(tx.raw), nodes)
        result.accepted.append((tx, index))
        index += 1
    if not result.accepted:
        return result
    header = BlockHeader(registry.network, height, head.hash, t, head.log_size,
                         index - head.log_size, fr.root())
    new_head = Head(height, header.hash, header.log_size, header.log_root, t)
    writes.update(nodes)
    if machine.registry_changed:
        writes[registry_key(height)] = machine.registry.to_bytes()
    writes[block_key(height)] = header.to_bytes()
    writes[head_key] = new_head.to_bytes()
    result.header, result.head = header, new_head
    result.registry, result.frontier, result.writes = machine.registry, fr, writes
    return result





class _NoState:
    """The state view of :func:`follow_block`: governance reads none (it is the registry's)."""

    def get(self, key: bytes) -> bytes | None:  # pragma: no cover - a rule, not a path
        raise ValueError("a governance transaction read the ledger's state")


def follow_block(head: Head, registry: Registry, frontier: CompactRange, header_bytes: bytes,
                 raws: Sequence[bytes]) -> tuple[Head, Registry, CompactRange]:
    """The head, registry and log frontier after another node's block, followed without the
    ledger's state: its header must follow ``head`` (network, height, previous hash, first
    index, a time not earlier, canonical bytes), its entries must make its log root, and its
    governance transactions are applied to ``registry`` (they read nothing else). Its other
    transactions are *not* checked: this finds the registry that judges a checkpoint at the
    block's end, and holds nothing per transaction (a node catching up past a rotation, ADR
    64); the blocks are re-executed in full before any is written. Raises ValueError."""
    try:
        header = BlockHeader.from_bytes(header_bytes)
    except (LedgerError, ValueError) as e:
        raise ValueError(f"block {head.height + 1}: header does not decode: {e}") from e
    where = f"block {header.height}"
    if header.to_bytes() != header_bytes:
        raise ValueError(f"{where}: header is not canonical")
    if header.net != registry.network:
        raise ValueError(f"{where} is of network {header.net!r}, not {registry.network!r}")
    if (header.height, header.prev_hash, header.first_index) != (head.height + 1, head.hash,
                                                                 head.log_size):
        raise ValueError(f"{where} does not follow block {head.height} (height, previous hash "
                         "or first index)")
    if header.time < head.time:
        raise ValueError(f"{where}'s time {header.time} is before block {head.height}'s "
                         f"({head.time})")
    if header.tx_count != len(raws):
        raise ValueError(f"{where} counts {header.tx_count} transactions and holds {len(raws)}")
    machine = Machine(registry, _NoState())
    fr = frontier.copy()
    scratch: dict[bytes, bytes] = {}
    for raw in raws:
        fr.append(merkle.leaf_hash(raw), scratch)
        scratch.clear()
        if b"governance" not in raw:
            continue  # (the type is a msgpack string in the payload: only these can be)
        try:
            tx = Tx.from_bytes(raw)
        except LedgerError as e:
            raise ValueError(f"{where}: an entry does not decode: {e}") from e
        if tx.type == "governance":
            try:
                machine.apply(tx, header.time)
            except TxRejected as e:
                raise ValueError(f"{where}: governance transaction {tx.txid.hex()[:16]} does "
                                 f"not apply: {e}") from e
    if fr.root() != header.log_root:
        raise ValueError(f"{where}'s entries do not make its log root")
    return (Head(header.height, header.hash, header.log_size, header.log_root, header.time),
            machine.registry, fr)
