"""A portable, self-describing, streamed archive of a chain, and its replay.

An archive does not depend on LevelDB's format: it holds only the bytes that the chain commits to.
It is a sequence of *frames*; each frame is::

    be32(length) ‖ record (canonical msgpack, ``length`` bytes) ‖ digest (32 bytes)
    digest = SHA-256(previous frame's digest ‖ be32(length) ‖ record)   (the first: over 32 zeros)

so the running checksum pins every frame to all the frames before it and a reader finds a changed,
missing, repeated or reordered frame at that frame, while streaming. The records::

    0       {"kind": "header", "magic": "credledger-archive", "v": 1, "network": str,
             "blocks": int, "log_size": int}
    1..n    {"kind": "block", "height": int, "header": bytes, "txs": [bytes, ...],
             "checkpoints": [bytes, ...]}       one per block, in height order; ``checkpoints``
                                                holds the stored checkpoint text for the block's
                                                log size, if any
    n+1     {"kind": "trailer", "blocks": int, "txs": int, "checkpoints": int,
             "sha256": bytes}                   ``sha256`` = the digest of frame n

A checksum is not a signature: anyone can rewrite an archive with fresh checksums. Trust comes from
the replay (:class:`Replayer`): every block is rebuilt from its transactions with
:func:`ledger.chain.build_genesis` / :func:`ledger.chain.build_block` (signatures, registry rules
as of that height) and must equal the archived header byte for byte, and every checkpoint must be
final (a quorum of the agencies in force) for the replayed root.

Errors::

    LedgerError
    └── ArchiveError     an archive that is malformed, truncated, fails its checksum, or does not
        │                replay (``record`` names the frame, ``height`` the block, when known)
        └── ReplayError  a block, transaction or checkpoint that does not replay; carries
                         ``kind``, ``height``, ``tx_index``, ``txid``, ``reason``, ``expected``,
                         ``found``
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import itertools
import os
import shutil
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import plyvel

from ledger import codec
from ledger.block import BlockHeader
from ledger.chain import (
    BlockResult,
    CompactRange,
    Head,
    block_key,
    build_block,
    build_genesis,
    checkpoint_key,
    entry_key,
)
from ledger.checkpoint import NoteSignature, SignedCheckpoint, note_key_hash
from ledger.errors import (
    BelowQuorumError,
    CheckpointError,
    DecodeError,
    LedgerError,
    StoreError,
    TxRejected,
)
from ledger.finality import (
    checkpoint_block,
    checkpoint_verifiers,
    line_verifies,
    registered_node_key,
    unregistered_signatures,
    verify_final,
)
from ledger.state import Registry
from ledger.store import Store, leveldb_words, store_unused
from ledger.tx import Tx

__all__ = [
    "MAGIC",
    "ArchiveError",
    "BlockRecord",
    "ExportSummary",
    "NotFinalError",
    "ReplayError",
    "ReplayTarget",
    "Replayer",
    "check_archive",
    "export_archive",
    "import_archive",
    "import_final",
    "last_checkpointed",
    "read_archive",
    "write_archive",
]

MAGIC = "credledger-archive"
VERSION = 1
MAX_RECORD = 256 << 20
"""Largest frame accepted: a block of a few thousand 64 KiB transactions fits."""
_MAX_TXS = 1 << 20
_LEN = struct.Struct(">I")
_ZERO = bytes(32)

Progress = Callable[[int, int, int], None]
"""``progress(blocks_done, blocks_total, txs_done)``."""


class ArchiveError(LedgerError):
    """An archive is malformed, truncated, fails its checksum, or does not replay."""

    def __init__(self, message: str, *, record: int | None = None,
                 height: int | None = None) -> None:
        self.record = record
        self.height = height
        self.reason = message
        where = []
        if record is not None:
            where.append(f"record {record}")
        if height is not None:
            where.append(f"block {height}")
        super().__init__(f"archive {', '.join(where)}: {message}" if where else message)


class ReplayError(ArchiveError):
    """A block, transaction or checkpoint that does not replay (expected = what replay gives)."""

    def __init__(self, kind: str, height: int, reason: str, *, tx_index: int | None = None,
                 txid: bytes | None = None, expected: str | None = None,
                 found: str | None = None, record: int | None = None) -> None:
        self.kind = kind
        self.tx_index = tx_index
        self.txid = txid
        self.expected = expected
        self.found = found
        detail = reason
        if tx_index is not None:
            detail = f"tx {tx_index}: {detail}"
        if expected is not None or found is not None:
            detail += f" (expected {expected}, found {found})"
        super().__init__(detail, record=record, height=height)
        self.reason = reason

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "height": self.height, "tx_index": self.tx_index,
                "txid": None if self.txid is None else self.txid.hex(), "record": self.record,
                "reason": self.reason, "expected": self.expected, "found": self.found}


class NotFinalError(ReplayError):
    """A checkpoint whose signatures verify but do not make the quorum: the block is not final
    (an export of a live node holds its newest checkpoints before its peers' co-signatures)."""

    last_final: int | None = None
    """Set by the import: the newest block before it whose checkpoint was final."""


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """One block as archived or stored: *unverified* header, envelope and checkpoint bytes."""

    height: int
    unverified_header: bytes
    unverified_txs: tuple[bytes, ...]
    unverified_checkpoints: tuple[bytes, ...] = ()
    record: int | None = None


@dataclass(frozen=True, slots=True)
class ExportSummary:
    network: str
    blocks: int
    txs: int
    checkpoints: int
    sha256: bytes
    bytes: int


# -- framing ---------------------------------------------------------------------------------


class _Writer:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = _ZERO
        self.size = 0

    def put(self, record: dict[str, Any]) -> None:
        body = codec.encode(record)
        if len(body) > MAX_RECORD:
            raise ArchiveError(f"a record of {len(body)} bytes is over {MAX_RECORD}")
        prefix = _LEN.pack(len(body))
        self.digest = hashlib.sha256(self.digest + prefix + body).digest()
        self._out.write(prefix + body + self.digest)
        self.size += len(prefix) + len(body) + 32


def _read_exact(src: BinaryIO, n: int, record: int, what: str) -> bytes:
    chunks = []
    left = n
    while left:
        got = src.read(min(left, 1 << 20))
        if not got:
            raise ArchiveError(f"truncated: {what} ends after {n - left} of {n} bytes",
                               record=record)
        chunks.append(got)
        left -= len(got)
    return b"".join(chunks)


def _frames(unverified: BinaryIO) -> Iterator[tuple[int, dict[str, Any], bytes]]:
    """(record number, decoded record, digest before it), checking each frame's checksum."""
    digest = _ZERO
    n = 0
    while True:
        prefix = unverified.read(_LEN.size)
        if not prefix:
            return
        if len(prefix) < _LEN.size:
            prefix += _read_exact(unverified, _LEN.size - len(prefix), n, "the length prefix")
        (length,) = _LEN.unpack(prefix)
        if length > MAX_RECORD:
            raise ArchiveError(f"length {length} is over the {MAX_RECORD}-byte limit", record=n)
        body = _read_exact(unverified, length, n, "the record")
        stored = _read_exact(unverified, 32, n, "the checksum")
        computed = hashlib.sha256(digest + prefix + body).digest()
        if computed != stored:
            raise ArchiveError(f"checksum mismatch: expected {computed.hex()}, found "
                               f"{stored.hex()}", record=n)
        try:
            value = codec.decode(body, max_size=MAX_RECORD, what=f"record {n}")
        except DecodeError as e:
            raise ArchiveError(str(e), record=n) from e
        if not isinstance(value, dict):
            raise ArchiveError("a record is a map", record=n)
        yield n, value, digest
        digest = computed
        n += 1


@dataclass
class ArchiveHeader:
    network: str
    blocks: int
    log_size: int


@dataclass
class _Reader:
    """Iterates the block records of an archive; the header is read on construction."""

    src: BinaryIO
    header: ArchiveHeader = field(init=False)
    sha256: bytes = b""  # the trailer's checksum, once read
    _it: Iterator[tuple[int, dict[str, Any], bytes]] = field(init=False)

    def __post_init__(self) -> None:
        self._it = _frames(self.src)
        first = next(self._it, None)
        if first is None:
            raise ArchiveError("empty file: not an archive", record=0)
        _, rec, _ = first
        try:
            f = codec.Fields(rec, "header")
            f.str("kind", choices=frozenset({"header"}))
            if f.str("magic", max_len=64) != MAGIC:
                raise ArchiveError("not a credledger archive (bad magic)", record=0)
            f.version(VERSION, "archive")
            self.header = ArchiveHeader(f.str("network", max_len=64), f.int("blocks", lo=1),
                                        f.int("log_size", lo=1))
            f.done()
        except DecodeError as e:
            raise ArchiveError(str(e), record=0) from e

    def blocks(self) -> Iterator[BlockRecord]:
        try:
            yield from self._blocks()
        except ArchiveError as e:
            if e.height is not None or e.record is None or not 1 <= e.record <= self.header.blocks:
                raise
            raise ArchiveError(e.reason, record=e.record, height=e.record - 1) from e

    def _blocks(self) -> Iterator[BlockRecord]:
        txs = checkpoints = 0
        expected_height = 0
        for n, rec, digest in self._it:
            try:
                f = codec.Fields(rec, f"record {n}")
                kind = f.str("kind", choices=frozenset({"block", "trailer"}))
                if kind == "trailer":
                    counts = (f.int("blocks", lo=0), f.int("txs", lo=0),
                              f.int("checkpoints", lo=0))
                    sha = f.bytes("sha256", size=32)
                    f.done()
                    have = (expected_height, txs, checkpoints)
                    if counts != have or expected_height != self.header.blocks:
                        raise ArchiveError(f"trailer counts (blocks, txs, checkpoints) "
                                           f"{counts}, header blocks {self.header.blocks}, "
                                           f"found {have}", record=n)
                    if sha != digest:
                        raise ArchiveError(f"trailer checksum: expected {digest.hex()}, "
                                           f"found {sha.hex()}", record=n)
                    if self.src.read(1):
                        raise ArchiveError("bytes after the trailer", record=n + 1)
                    self.sha256 = sha
                    return
                if expected_height >= self.header.blocks:  # a reader of a stream stops here
                    raise ArchiveError(f"more block records than the header's "
                                       f"{self.header.blocks}", record=n)
                height = f.int("height", lo=0)
                header = f.bytes("header", max_len=4096)
                items = f.list("txs", max_len=_MAX_TXS)
                cps = f.list("checkpoints", max_len=16)
                f.done()
            except DecodeError as e:
                raise ArchiveError(str(e), record=n, height=expected_height) from e
            if height != expected_height:
                raise ArchiveError(f"block records out of order: expected height "
                                   f"{expected_height}, found {height}", record=n,
                                   height=expected_height)
            if not all(type(x) is bytes for x in (*items, *cps)):
                raise ArchiveError("txs and checkpoints are bytes", record=n, height=height)
            txs += len(items)
            checkpoints += len(cps)
            expected_height += 1
            yield BlockRecord(height, header, tuple(items), tuple(cps), record=n)
        raise ArchiveError(f"truncated: no trailer after {expected_height} block record(s)",
                           record=expected_height + 1)


def read_archive(unverified: BinaryIO) -> tuple[ArchiveHeader, Iterator[BlockRecord]]:
    """The archive's header and an iterator over its block records (checksums checked as read).

    The iterator raises :class:`ArchiveError` on a bad frame, a bad trailer or truncation.
    """
    reader = _Reader(unverified)
    return reader.header, reader.blocks()


def check_archive(unverified: BinaryIO) -> ExportSummary:
    """Read a whole archive (every frame's checksum, the counts, the trailer) and sum it up as
    :func:`export_archive` does; :class:`ArchiveError` if it is damaged or cut short. Replays
    nothing: that is the audit's and the import's work."""
    reader = _Reader(unverified)
    blocks = txs = checkpoints = 0
    for b in reader.blocks():
        blocks += 1
        txs += len(b.unverified_txs)
        checkpoints += len(b.unverified_checkpoints)
    return ExportSummary(reader.header.network, blocks, txs, checkpoints, reader.sha256,
                         unverified.tell())


def last_checkpointed(unverified: BinaryIO,
                      progress: Progress | None = None) -> int | None:
    """The height of the last block record that holds a checkpoint, None if none: the archive
    read whole (every checksum, the counts, the trailer), nothing replayed. An import that
    stops there (:func:`import_archive` ``until=``) takes no block past the archive's newest
    final checkpoint, since the import refuses a checkpoint that is not final."""
    reader = _Reader(unverified)
    last, txs = None, 0
    for b in reader.blocks():
        txs += len(b.unverified_txs)
        if b.unverified_checkpoints:
            last = b.height
        if progress is not None:
            progress(b.height + 1, reader.header.blocks, txs)
    if txs != reader.header.log_size:  # the import that stops early cannot compare it
        raise ArchiveError(f"archive header says log size {reader.header.log_size}, its block "
                           f"records hold {txs} entries", record=0)
    return last


def write_archive(out: BinaryIO, network: str, log_size: int,
                  blocks: Sequence[BlockRecord]) -> ExportSummary:
    """Write ``blocks`` as an archive (used by export, and by tests to build bad archives)."""
    w = _Writer(out)
    w.put({"kind": "header", "magic": MAGIC, "v": VERSION, "network": network,
           "blocks": len(blocks), "log_size": log_size})
    txs = cps = 0
    for b in blocks:
        w.put(_block_record(b))
        txs += len(b.unverified_txs)
        cps += len(b.unverified_checkpoints)
    return _finish(w, network, len(blocks), txs, cps)


def _block_record(b: BlockRecord) -> dict[str, Any]:
    return {"kind": "block", "height": b.height, "header": b.unverified_header,
            "txs": list(b.unverified_txs), "checkpoints": list(b.unverified_checkpoints)}


def _finish(w: _Writer, network: str, blocks: int, txs: int, cps: int) -> ExportSummary:
    sha = w.digest
    w.put({"kind": "trailer", "blocks": blocks, "txs": txs, "checkpoints": cps, "sha256": sha})
    return ExportSummary(network, blocks, txs, cps, sha, w.size)


def export_archive(store: Store, out: BinaryIO,
                   progress: Progress | None = None) -> ExportSummary:
    """Stream every block of ``store`` (raw stored bytes) into ``out`` as an archive."""
    head, registry = store.head, store.registry
    if head is None or registry is None:
        raise ArchiveError("the store holds no chain")
    w = _Writer(out)
    total = head.height + 1
    w.put({"kind": "header", "magic": MAGIC, "v": VERSION, "network": registry.network,
           "blocks": total, "log_size": head.log_size})
    txs = cps = 0
    for height in range(total):
        raw = store.get(block_key(height))
        if raw is None:
            raise ArchiveError(f"the store has no block {height}", height=height)
        header = BlockHeader.from_bytes(raw)
        entries = []
        for i in range(header.first_index, header.log_size):
            e = store.get(entry_key(i))
            if e is None:
                raise ArchiveError(f"the store has no log entry {i}", height=height)
            entries.append(e)
        cp = store.get(checkpoint_key(header.log_size))
        checkpoints = () if cp is None else (cp,)
        w.put(_block_record(BlockRecord(height, raw, tuple(entries), checkpoints)))
        txs += len(entries)
        cps += len(checkpoints)
        if progress is not None:
            progress(height + 1, total, txs)
    return _finish(w, registry.network, total, txs, cps)


# -- replay ------------------------------------------------------------------------------------


def _header_diff(expected: BlockHeader, unverified: bytes) -> tuple[str, str, str]:
    """(field, expected, found) of the first header field that differs from the rebuilt one."""
    try:
        found = BlockHeader.from_bytes(unverified)
    except DecodeError as e:
        return "bytes", expected.to_bytes().hex(), f"undecodable header ({e})"
    want, got = expected.to_json(), found.to_json()
    for name in ("v", "net", "height", "prev_hash", "time", "first_index", "tx_count",
                 "log_size", "log_root"):
        if want[name] != got[name]:
            return name, str(want[name]), str(got[name])
    return "bytes", expected.to_bytes().hex(), unverified.hex()


_WINDOW = 64
"""Bytes of a stored record a report shows (in hex) when it differs from the replayed one."""


def record_difference(want: bytes | None, have: bytes | None
                      ) -> tuple[str, str | None, str | None]:
    """(where, expected, found) for a stored record that differs from the replayed one.

    ``expected`` and ``found`` are the same window of each in hex, :data:`_WINDOW` bytes that
    start a little before the first byte that differs (the whole value when it is short; ``…``
    marks bytes left out), so a difference past the first bytes shows in both; ``where`` names
    that byte's offset and the lengths for a reason text (empty when one side is missing).
    """
    def head(value: bytes | None) -> str | None:
        return None if value is None else value[:_WINDOW].hex() + (
            "…" if len(value) > _WINDOW else "")

    if want is None or have is None:
        return "", head(want), head(have)
    offset = next((i for i, (a, b) in enumerate(zip(want, have, strict=False)) if a != b),
                  min(len(want), len(have)))
    start = 0 if max(len(want), len(have)) <= _WINDOW else max(0, offset - _WINDOW // 4)

    def window(value: bytes) -> str:
        return ("…" if start else "") + value[start:start + _WINDOW].hex() + (
            "…" if len(value) > start + _WINDOW else "")

    where = (f" at byte {offset} (expected {len(want)} bytes, found {len(have)}; both shown "
             f"from byte {start})")
    return where, window(want), window(have)


Checked = Sequence[tuple[Tx, bool] | str]
"""Per envelope of a block: the parsed Tx and whether its signatures were confirmed, or the
parse error's text (see :mod:`ledger.sigcheck`)."""


def parse_envelopes(raws: Sequence[bytes]) -> list[tuple[Tx, bool] | str]:
    """Strict parse of each envelope, in this process (signatures left to the state machine)."""
    out: list[tuple[Tx, bool] | str] = []
    for raw in raws:
        try:
            out.append((Tx.from_bytes(raw), False))
        except DecodeError as e:
            out.append(str(e))
    return out


class ReplayTarget(Protocol):
    """Where a replay writes: a :class:`~ledger.store.Store`, or any object that keeps the head,
    registry and Merkle frontier and serves the state records the machine reads back (tx index,
    credentials, status indexes, credit records) through :meth:`get` (the auditor's scratch
    state keeps only those)."""

    head: Head | None
    registry: Registry | None
    frontier: CompactRange

    def get(self, key: bytes) -> bytes | None: ...

    def write_block(self, result: BlockResult, extra: dict[bytes, bytes] | None = None
                    ) -> None: ...


class Replayer:
    """Rebuilds a chain block by block into ``store`` (a new, empty target) and checks each block.

    :meth:`apply` raises :class:`ReplayError` on the first thing that does not replay and leaves
    the store at the last good block; checkpoint problems are raised *after* the block is written
    (the chain itself is intact), so a caller may record them and go on.

    Memory stays flat however long the chain: only counts and the latest verified checkpoint are
    kept, never a per-block list.
    """

    def __init__(self, store: ReplayTarget) -> None:
        if store.head is not None:
            raise ArchiveError("replay needs an empty store")
        self.store = store
        self.txs = 0
        self.checkpoints = 0
        """How many checkpoints were verified final for their replayed tree head."""
        self.last_checkpoint: SignedCheckpoint | None = None
        self.last_final: int | None = None
        """The height of the newest block whose checkpoint was verified final."""
        self.blockless = 0
        """How many of them name no block: written by a version before ADR 60 (ADR 62)."""
        self.on_tx: Callable[[Tx, Registry], None] | None = None
        self.stray_signatures: list[tuple[int, int | None, SignedCheckpoint]] = []
        self.stray_overflow = 0
        """Checkpoints holding a signature line by a node key not registered at their height
        (height, record, checkpoint), the first :data:`STRAY_KEPT`."""

    STRAY_KEPT = 10_000
    """Past it, :attr:`stray_overflow` counts them, and the audit reads the chain's
    checkpoints once more to check every line against the final registry."""

    @property
    def registry(self) -> Registry | None:
        return self.store.registry

    def apply(self, rec: BlockRecord, checked: Checked | None = None,
              compare: Callable[[bytes], bytes | None] | None = None,
              compared: bytes = b"betnr") -> BlockResult:
        """Replay one block; ``compare(key)`` (optional) reads the audited store's record.

        ``compared`` names the record kinds (key prefixes) compared with ``compare``: a caller
        that read the headers and entries from that same store leaves out ``b`` and ``e``.
        """
        head = self.store.head
        expected_height = 0 if head is None else head.height + 1
        if rec.height != expected_height:
            raise ReplayError("block", expected_height, "block missing or out of order",
                              expected=str(expected_height), found=str(rec.height),
                              record=rec.record)
        parsed = list(checked) if checked is not None else parse_envelopes(rec.unverified_txs)
        txs: list[Tx] = []
        flags: list[bool] = []
        first = 0 if head is None else head.log_size
        for i, p in enumerate(parsed):
            if isinstance(p, str):
                raise ReplayError("tx", rec.height, f"envelope does not parse: {p}",
                                  tx_index=first + i, record=rec.record)
            txs.append(p[0])
            flags.append(p[1])
        if not txs:
            raise ReplayError("block", rec.height, "a block holds at least one transaction",
                              record=rec.record)
        try:
            unverified = BlockHeader.from_bytes(rec.unverified_header)
        except DecodeError as e:
            raise ReplayError("block", rec.height, f"header does not decode: {e}",
                              record=rec.record) from e
        result = self._build(rec, head, txs, flags, unverified.time, first)
        if result.header is None or result.head is None:  # _build raised for every rejection
            raise ReplayError("block", rec.height, "no transaction was accepted",
                              record=rec.record)
        if result.header.to_bytes() != rec.unverified_header:
            name, want, got = _header_diff(result.header, rec.unverified_header)
            raise ReplayError("block", rec.height, f"header field {name} differs from the "
                              "replay", expected=want, found=got, record=rec.record)
        if compare is not None:
            writes = result.writes
            # One read per record, in the order the block wrote them (a streaming reader can
            # serve them), then the first difference in key order.
            stored = {k: compare(k) for k in writes if k[:1] in compared}
            bad = [k for k, have in stored.items() if have != writes[k]]
            if bad:
                key = min(bad)
                where, expected, found = record_difference(writes[key], stored[key])
                raise ReplayError("block", rec.height, f"stored record {key[:1].decode()}/"
                                  f"{key[1:].hex()} differs from the replay{where}",
                                  expected=expected, found=found, record=rec.record)
        registry = result.registry
        if self.on_tx is not None:
            for tx, _ in result.accepted:
                self.on_tx(tx, registry)
        extra: dict[bytes, bytes] = {}
        problem: ReplayError | None = None
        for text in rec.unverified_checkpoints:
            try:
                signed = self._checkpoint(rec, result.head, registry, text)
                # as every node writes it: lines sorted, none repeated (a repeated one makes a
                # note sumdb/note's verifiers refuse, and the restored node would serve it)
                extra[checkpoint_key(result.head.log_size)] = signed.to_text().encode()
            except ReplayError as e:
                problem = problem or e
        self.store.write_block(result, extra)
        self.txs += len(result.accepted)
        if problem is not None:
            raise problem
        return result

    def _build(self, rec: BlockRecord, head: Head | None, txs: list[Tx], flags: list[bool],
               time: int, first: int) -> BlockResult:
        if head is None:
            if len(txs) != 1:
                raise ReplayError("block", 0, "block 0 holds the genesis alone",
                                  expected="1 transaction", found=f"{len(txs)} transactions",
                                  record=rec.record)
            try:
                return build_genesis(txs[0])
            except TxRejected as e:
                raise ReplayError("tx", 0, f"genesis rejected ({e.code}): {e.message}",
                                  tx_index=0, txid=txs[0].txid, record=rec.record) from e
        registry = self.store.registry
        if registry is None:
            raise ArchiveError("the replay store has a head but no registry")
        result = build_block(head, registry, self.store, self.store.frontier, txs, time,
                             checked=flags)
        for tx, why in result.rejected:
            i = next(n for n, t in enumerate(txs) if t is tx)
            raise ReplayError("tx", rec.height, f"rejected by the state machine ({why.code}): "
                              f"{why.message}", tx_index=first + i, txid=tx.txid,
                              record=rec.record)
        for tx, at, h in result.duplicates:
            i = next(n for n, t in enumerate(txs) if t is tx)
            raise ReplayError("tx", rec.height, f"repeats the transaction at index {at} "
                              f"(block {h})", tx_index=first + i, txid=tx.txid,
                              record=rec.record)
        return result

    def _checkpoint(self, rec: BlockRecord, head: Head, registry: Registry,
                    text: bytes) -> SignedCheckpoint:
        try:
            signed = SignedCheckpoint.from_text(text)
        except CheckpointError as e:
            raise ReplayError("checkpoint", rec.height, f"checkpoint does not parse: {e}",
                              record=rec.record) from e
        if signed.to_text().encode() != text:
            # every node writes its notes so (lines sorted, none twice): one otherwise is a
            # changed record (ADR 54), though it verifies alike
            raise ReplayError("checkpoint", rec.height, "checkpoint is not as every node writes "
                              "it (its signature lines reordered or repeated): a changed record",
                              record=rec.record)
        cp = signed.checkpoint
        if cp.size != head.log_size or cp.root != head.log_root:
            raise ReplayError("checkpoint", rec.height, "checkpoint is not for the replayed "
                              "tree head", expected=f"{head.log_size} {head.log_root.hex()}",
                              found=f"{cp.size} {cp.root.hex()}", record=rec.record)
        # the root binds the log; the block line binds how it was grouped into blocks (ADR 60).
        # A checkpoint with no extension line at all is of a version before ADR 60 (a store
        # or archive of a network upgraded since, ADR 62): it binds the log only, as it did
        # then; a later one naming its block binds the blocks up to it (each block's hash
        # chains to the one before). No version since signs one, so none can be made anew.
        named = None
        if cp.extensions:
            try:
                named = checkpoint_block(cp)
            except CheckpointError as e:
                raise ReplayError("checkpoint", rec.height, str(e), expected=_named(head),
                                  record=rec.record) from e
        if named is not None and named != (head.height, head.hash):
            raise ReplayError("checkpoint", rec.height, "checkpoint names another block than "
                              "the replayed one", expected=_named(head),
                              found=f"block {named[0]} {named[1].hex()}", record=rec.record)
        try:
            signers = verify_final(signed, registry, head.time)
        except CheckpointError as e:
            error = NotFinalError if isinstance(e, BelowQuorumError) else ReplayError
            raise error("checkpoint", rec.height, f"checkpoint is not final: {e}" + (
                f" (and it names no block: {BLOCKLESS_SAID})" if named is None else ""),
                expected=_named(head) if named is None else None, record=rec.record) from e
        if len(signed.signatures) > len(signers):
            self._unchecked_lines(rec, head, registry, signed)
        self.checkpoints += 1
        self.blockless += named is None
        self.last_checkpoint = signed
        self.last_final = rec.height
        return signed

    def _unchecked_lines(self, rec: BlockRecord, head: Head, registry: Registry,
                         signed: SignedCheckpoint) -> None:
        """Lines verify_final did not check (by keys not valid at this time): one by a key
        registered here must verify; one by a key not registered yet (a node restarted with a
        rotated key signs the blocks it missed before the rotation with it) is checked by the
        audit against the chain's final registry."""
        current = checkpoint_verifiers(registry, head.time)
        stray: list[NoteSignature] = []
        for sig in signed.signatures:
            now_key = current.get(sig.name)
            if now_key is not None and note_key_hash(sig.name, now_key.raw) == sig.key_hash:
                continue
            key = registered_node_key(registry, sig)
            if key is None:
                if not could_be_a_node_line(sig):
                    # no registration to come can make it verify: changed, and not held to the
                    # end (a line of megabytes in every checkpoint grew memory with the file)
                    raise ReplayError("checkpoint", rec.height, "a signature line no node key "
                                      "can have made (a signature of another length than "
                                      f"{_SIGNATURE} bytes, or a name longer than any "
                                      "agency's): the stored checkpoint was changed",
                                      expected="signatures by registered node keys",
                                      found=f"{sig.name[:_MAX_NAME]}+{sig.key_hash.hex()}",
                                      record=rec.record)
                stray.append(sig)
            elif not line_verifies(signed, sig, key):
                raise ReplayError("checkpoint", rec.height, "a signature line by a registered "
                                  "node key does not verify: the stored checkpoint was "
                                  "changed", expected="signatures that verify",
                                  found=f"{sig.name}+{sig.key_hash.hex()}", record=rec.record)
        if stray:  # only those lines: the others were checked here
            if len(self.stray_signatures) < self.STRAY_KEPT:
                self.stray_signatures.append(
                    (rec.height, rec.record, SignedCheckpoint(signed.checkpoint, tuple(stray))))
            else:
                self.stray_overflow += 1


_SIGNATURE = 64
"""Bytes of an Ed25519 signature: every node key's (:meth:`ledger.keys.PublicKey.verify_raw`)."""
_MAX_NAME = 64
"""Characters of the longest agency id (an identifier, :mod:`ledger.tx`): a signature line's
name past it is no agency's."""


def could_be_a_node_line(sig: NoteSignature) -> bool:
    """Whether some node key, registered now or later, can have made this signature line: one of
    :data:`_SIGNATURE` bytes by a name no longer than an agency id."""
    return len(sig.signature) == _SIGNATURE and len(sig.name) <= _MAX_NAME


def node_lines(signed: SignedCheckpoint) -> SignedCheckpoint:
    """``signed`` without the lines no node key can have made (:func:`could_be_a_node_line`):
    what is worth holding of it (a verifier ignores such lines; they may be megabytes long)."""
    kept = tuple(s for s in signed.signatures if could_be_a_node_line(s))
    return signed if len(kept) == len(signed.signatures) else SignedCheckpoint(
        signed.checkpoint, kept)


BLOCKLESS_SAID = ("no `block <height> <hash>` line after the root; only a version before "
                  "ADR 60 signed such a checkpoint")


def _named(head: Head) -> str:
    return f"block {head.height} {head.hash.hex()}"


# -- import ------------------------------------------------------------------------------------


_IMPORTING = ".importing-"


def _temp_beside(target: Path) -> Path:
    return target.with_name(f".{target.name}{_IMPORTING}{os.urandom(4).hex()}")


def _sweep_killed_imports(target: Path) -> None:
    """Remove the temporary folders of imports into ``target`` that were killed (SIGKILL, a
    power cut: any other stop removes its own). One whose store another process has open is
    an import running now, and stays; so does one whose store was never opened (no LOCK yet:
    one just made)."""
    for stale in target.parent.glob(f".{glob.escape(target.name)}{_IMPORTING}*"):
        if stale.is_symlink() or not (stale / "LOCK").is_file():
            continue
        with contextlib.suppress(StoreError, OSError), store_unused(stale):
            shutil.rmtree(stale)


def import_archive(src: BinaryIO, store_path: Path | str,
                   progress: Progress | None = None, *, until: int | None = None,
                   genesis: bytes | None = None) -> Head:
    """Rebuild a store at ``store_path`` (which must not exist) by replaying the archive, or
    its blocks up to height ``until`` (then the caller read the rest: :func:`last_checkpointed`).
    With ``genesis``, block 0 must hash to it: a chain of another network (its own genesis,
    agencies and checkpoints, perhaps the same name) is refused (ADR 71).

    Builds in a temporary folder beside it and renames it into place only when every block,
    checkpoint and the trailer checked out; on any error nothing is left behind.
    """
    target = Path(store_path)
    if target.exists() or target.is_symlink():  # a link to nowhere is taken too
        raise ArchiveError(f"{target} already exists: import builds a new store")
    if not target.parent.is_dir():
        raise ArchiveError(f"{target.parent} is not a folder")
    _sweep_killed_imports(target)
    tmp = _temp_beside(target)
    # an OSError that names the folder (LevelDB's would be "LOCK: No such file"); 0750 whatever
    # the umask (0777 under umask 000: anyone could swap the imported store's tables)
    tmp.mkdir(mode=0o750)
    try:
        head = _import_into(src, tmp, progress, until, genesis)
        os.rename(tmp, target)
    except (StoreError, plyvel.Error) as e:  # a full disk, say: named by the folder the
        # caller gave, not the hidden one, which is gone
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(leveldb_words(e).replace(str(tmp), str(target))) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return head


def import_final(src: BinaryIO, store_path: Path | str, until: int,
                 progress: Progress | None = None, *, genesis: bytes | None = None
                 ) -> tuple[Head, NotFinalError | None]:
    """:func:`import_archive` up to ``until`` (the archive's newest checkpointed block,
    :func:`last_checkpointed`), where a checkpoint below quorum on the way (an export of a live
    node holds its newest ones before its peers' co-signatures) ends the import at the newest
    final checkpoint before it: the archive is replayed once more, up to there. Returns the
    head and the checkpoint that stopped it (None: none did); ArchiveError when no checkpoint
    before it is final. ``src`` must be seekable for that second replay."""
    try:
        return import_archive(src, store_path, progress, until=until, genesis=genesis), None
    except NotFinalError as e:
        if e.last_final is None:
            raise ArchiveError(f"no checkpoint before it is final: nothing final to import "
                               f"({e})", record=e.record, height=e.height) from e
        try:
            src.seek(0)
        except (OSError, ValueError) as again:
            raise ArchiveError(f"{e}; the import would stop at block {e.last_final}, the "
                               "newest final checkpoint before it, but cannot read the "
                               "archive again from a stream: import from a file") from again
        return import_archive(src, store_path, progress, until=e.last_final,
                              genesis=genesis), e


def _import_into(src: BinaryIO, tmp: Path, progress: Progress | None,
                 until: int | None, genesis: bytes | None = None) -> Head:
    header, blocks = read_archive(src)
    if until is not None:
        if not 0 <= until < header.blocks:
            raise ArchiveError(f"no block {until} to stop at: the archive holds "
                               f"{header.blocks}")
        blocks = itertools.islice(blocks, until + 1)
    with Store(tmp) as store:
        replayer = Replayer(store)
        try:
            _replay_all(replayer, blocks, header.blocks if until is None else until + 1,
                        progress, genesis)
        except NotFinalError as e:
            e.last_final = replayer.last_final
            raise
        head = store.head
        if head is None:
            raise ArchiveError("the archive holds no block")
        if store.registry is None or store.registry.network != header.network:
            found = None if store.registry is None else store.registry.network
            raise ArchiveError(f"archive header names network {header.network!r}, the chain "
                               f"is {found!r}", record=0)
        if until is not None and head.height != until:
            raise ArchiveError(f"the archive ends at block {head.height}, before block "
                               f"{until}")
        if (until is None or until == header.blocks - 1) and head.log_size != header.log_size:
            raise ArchiveError(f"archive header says log size {header.log_size}, the replayed "
                               f"log has {head.log_size}", record=0)
        _refuse_stray_lines(replayer, src, store.registry, head.height,
                            later_blocks=until is not None and until < header.blocks - 1)
        return head


def _refuse_stray_lines(replayer: Replayer, src: BinaryIO, final: Registry, last: int, *,
                        later_blocks: bool) -> None:
    """A checkpoint line by no node key the imported chain ever registered, or one that does
    not verify: the audit calls such a line changed (ADR 54), so a store built with it would
    audit NOT CLEAN. Judged, as the audit of the new store judges it, against the registry at
    its head; with ``later_blocks`` left out (``until``), a line by a key no block up to it
    registers is left alone (a rotation in those blocks may register it: a node restarted with
    its rotated key signs the blocks it missed with it). Past :attr:`Replayer.STRAY_KEPT` the
    archive's checkpoints are read again."""
    def stray(signed: SignedCheckpoint) -> list[str]:  # (the audit's check: ADR 54)
        return unregistered_signatures(signed, final, unknown_ok=later_blocks)

    found = [(height, record, lines) for height, record, signed in replayer.stray_signatures
             if (lines := stray(signed))]
    if not found and replayer.stray_overflow:
        try:
            src.seek(0)
        except (OSError, ValueError) as e:
            raise ArchiveError("too many checkpoint lines by keys not registered at their "
                               "height to check them all from a stream: import from a "
                               "file") from e
        for rec in read_archive(src)[1]:
            if rec.height > last or found:
                break
            for text in rec.unverified_checkpoints:
                lines = stray(SignedCheckpoint.from_text(text))
                if lines:
                    found.append((rec.height, rec.record, lines))
                    break
    if found:
        height, record, lines = found[0]
        raise ReplayError("checkpoint", height, "checkpoint holds a signature line by no node "
                          "key the chain ever registered, or one that does not verify: a node "
                          "stores only its own and checked co-signatures, so this line was "
                          "changed", expected="signatures by registered node keys",
                          found=", ".join(lines), record=record)


def _replay_all(replayer: Replayer, blocks: Iterable[BlockRecord], total: int,
                progress: Progress | None, genesis: bytes | None = None) -> None:
    for rec in blocks:
        replayer.apply(rec)
        head = replayer.store.head
        if genesis is not None and rec.height == 0 and head is not None \
                and head.hash != genesis:
            raise ReplayError("genesis", 0, "block 0 is not the genesis block given "
                              "(--genesis): this is another network's chain",
                              expected=genesis.hex(), found=head.hash.hex(), record=rec.record)
        if progress is not None and head is not None:
            progress(head.height + 1, total, replayer.txs)
