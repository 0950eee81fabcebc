"""The durable store: LevelDB through plyvel, one synced WriteBatch per block.

A thin adapter: :mod:`ledger.chain` computes every write a block needs; :meth:`Store.write_block`
commits them atomically with ``sync=True``. A process killed at any instant reopens at the last
whole block. On open the store re-derives its Merkle root from stored interior nodes and checks it
against the head and the last block header; a mismatch refuses to open.

Proofs read O(log n) stored complete-subtree nodes; nothing is rehashed after a restart.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import re
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from itertools import starmap
from pathlib import Path

import msgpack
import plyvel

from ledger import merkle
from ledger.block import BlockHeader
from ledger.chain import (
    BlockResult,
    CompactRange,
    Head,
    block_key,
    checkpoint_key,
    entry_key,
    head_key,
    node_key,
    parse_index_value,
    registry_key,
    txid_key,
)
from ledger.checkpoint import SignedCheckpoint
from ledger.errors import CheckpointError, DecodeError, StoreError, damaged
from ledger.finality import checkpoint_block
from ledger.state import STATUS_LIST_SIZE, Credential, Registry, credential_key
from ledger.tx import STATUSES, Tx

__all__ = [
    "Store", "damaged", "leveldb_words", "open_error", "release_mapped_tables", "store_unused",
    "stored_consistency_proof",
]

_BE = struct.Struct(">Q")
_MADV_DONTNEED = 4  # Linux
_CHECK_AFTER_READS = 16
"""Random reads (proof nodes, state lookups, status-list reads) between two checks of the mapped
table pages against the budget: under one inclusion proof at 10M entries (24 reads). A check is
one read of /proc/self/statm (~1.5 µs) in the reading thread."""
_CHECK_EVERY_S = 0.5
"""The background check also runs this often, for pages no read of ours counts (compaction)."""
MAPPED_BUDGET = 48 << 20
"""Bytes of mapped file pages a store lets its process gain before it releases its table pages
(ADR 26). A release costs 3-10 ms at 10M entries, paid by the reader that crossed the budget."""


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_STATM: dict[int, int] = {}  # pid -> an open /proc/self/statm of that process
_STATM_LOCK = threading.Lock()


def _file_resident_bytes() -> int | None:
    """This process's resident file-backed (and shared) memory: /proc/self/statm's third field
    (Linux; else None). One ``pread`` on a kept descriptor, ~1.5 µs (open-read-close was ~11):
    the ingest path checks it every few transactions."""
    pid = os.getpid()  # /proc/self is resolved when opened: a forked child opens its own
    try:
        fd = _STATM.get(pid)
        if fd is None:
            with _STATM_LOCK:
                fd = _STATM.get(pid)
                if fd is None:
                    fd = _STATM[pid] = os.open("/proc/self/statm", os.O_RDONLY)
        return int(os.pread(fd, 128, 0).split()[2]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def _largest_pow2_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _list_range(prefix: bytes, number: int | None) -> dict[str, bytes]:
    """plyvel iterator bounds: every status-index key under ``prefix``, or those of one list."""
    if number is None:
        return {"prefix": prefix}
    start = number * STATUS_LIST_SIZE
    stop = min(start + STATUS_LIST_SIZE, 1 << 32)
    return {"start": prefix + start.to_bytes(4, "big"),
            "stop": prefix + stop.to_bytes(4, "big") if stop < 1 << 32 else prefix + b"\xff" * 5}


def release_mapped_tables(folders: tuple[Path, ...]) -> None:
    """Drop this process's mappings of the LevelDB table files under ``folders`` (Linux only).

    LevelDB memory-maps the table files it reads, and every page touched stays in the resident
    set while the table is open. ``MADV_DONTNEED`` on these read-only shared file mappings only
    unmaps the pages (they stay in the page cache, and the next read maps them again).

    LevelDB may unmap a table (cache eviction, compaction) after ``/proc/self/maps`` was read, and
    the range could then hold anonymous memory that ``MADV_DONTNEED`` would zero. So each range
    is re-checked just before its call through ``/proc/self/map_files`` (~4 us): the window left
    is microseconds, not the milliseconds of the whole loop (ADR 25).
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return
    # One regular-expression scan (in C) rather than a Python loop over every line: a release
    # may run on a background thread, and pure-Python work there holds the GIL that the
    # request threads are waiting for.
    dirs = "|".join(re.escape(f"{Path(f).resolve()}/") for f in folders)
    found = re.findall(rf"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+ +((?:{dirs})[^\n]*\.ldb)$",
                       maps, re.MULTILINE)
    if not found:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    for lo_hex, hi_hex, path in found:
        try:
            if os.readlink(f"/proc/self/map_files/{lo_hex}-{hi_hex}") != path:
                continue
        except OSError:
            continue
        lo = int(lo_hex, 16)
        libc.madvise(lo, int(hi_hex, 16) - lo, _MADV_DONTNEED)


_IN_USE = "(a running node, or another ledger command); stop it first"


def leveldb_words(e: BaseException) -> str:
    """A LevelDB error's own words: plyvel gives them as bytes, whose ``str`` is a repr."""
    why = e.args[0] if e.args else e
    return why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)


def open_error(path: Path, e: plyvel.Error) -> str:
    """LevelDB's reason for refusing to open ``path``, in words an operator can act on."""
    why = leveldb_words(e)
    if isinstance(e, plyvel.IOError) and "LOCK" in why and \
            ("temporarily unavailable" in why or "already held" in why):
        return f"cannot open store at {path}: another process has it open {_IN_USE}"
    if isinstance(e, plyvel.CorruptionError):
        return (f"cannot open store at {path}: it is damaged ({why}); restore it from a "
                "backup (`ledger import`) or let the node catch up from its peers into a new "
                "folder. Nothing was changed")
    if isinstance(e, plyvel.IOError) and "No space left on device" in why:
        return (f"cannot open store at {path}: {why}; its disk is full: free space on it, then "
                "try again")
    return f"cannot open store at {path}: {why}"


def _elsewhere(issuer: str, kind: str, index: int) -> str:
    return damaged(f"status index {index} of {issuer}/{kind}", None,
                   "points at a credential of another list or index")


def _stored_registry(key: bytes, value: bytes) -> Registry:
    try:
        return Registry.from_bytes(value)
    except DecodeError as e:
        raise StoreError(damaged(f"the stored registry of block {_BE.unpack(key[1:])[0]}",
                                 e)) from e


@contextlib.contextmanager
def store_unused(path: Path | str, *, shared: bool = False) -> Iterator[None]:
    """Hold the lock LevelDB takes on the store at ``path`` (if there is one) for the ``with``
    block, or raise StoreError when another process has the store open: for replacing or
    deleting a store folder without pulling it from under a running node. Not for a store this
    process has open: POSIX locks belong to the process, and closing the file drops them.

    ``shared``: a shared lock, which needs read access to LOCK only (a store on read-only media,
    another owner's): enough to keep LevelDB, whose lock is exclusive, out while it is held,
    as for copying the store (ADR 40)."""
    lock = Path(path) / "LOCK"
    try:
        fd = os.open(lock, os.O_RDONLY if shared else os.O_RDWR)
    except FileNotFoundError:
        yield
        return
    try:
        try:
            # LevelDB locks with fcntl(F_SETLK) on this file; lockf takes the same kind of lock.
            fcntl.lockf(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as e:
            raise StoreError(f"the store at {path} is open in another process {_IN_USE}") from e
        yield
    finally:
        os.close(fd)


class Store:
    """A ledger's LevelDB store. Use as a context manager or call :meth:`close`."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not (self.path / "CURRENT").exists():
            # before LevelDB, which would leave its LOCK and LOG files in the folder
            raise StoreError(f"cannot open store at {self.path}: there is no ledger store there")
        try:
            # Bloom filters make the ingest path's lookups of absent keys (new tx ids, credential
            # ids, status indexes) cost about one memory probe instead of a read per level.
            # 16 KiB blocks: LevelDB holds each open table's index block in memory, one entry per
            # block, so 4 KiB blocks cost ~20 MiB at 10M entries (ADR 26).
            # No compression (ADR 29): snappy on every flush and compaction cost more CPU than
            # the disk it saved, most bytes being hashes and signatures. Tables written
            # compressed before stay readable.
            # paranoid_checks: a damaged record in LevelDB's log stops the open instead of
            # being dropped with the rest of its block, which silently rolled back acknowledged
            # blocks (ADR 47); reads verify block checksums as they come from the file.
            self._db = plyvel.DB(str(self.path), create_if_missing=create, bloom_filter_bits=10,
                                 lru_cache_size=64 << 20, write_buffer_size=32 << 20,
                                 block_size=16 << 10, compression=None, paranoid_checks=True)
        except plyvel.Error as e:
            raise StoreError(open_error(self.path, e)) from e
        self.head: Head | None = None
        self.registry: Registry | None = None
        self.frontier = CompactRange()
        self._random_reads = 0
        self.releases = 0
        """How many releases of mapped table pages ran (see _count_random_reads)."""
        self.mapped_budget = MAPPED_BUDGET
        self._mapped_floor: int | None = None  # file-backed bytes resident after the last release
        self._release_wanted = threading.Event()
        self._releaser_lock = threading.Lock()
        self._releaser: threading.Thread | None = None
        self._releasing = threading.Lock()
        self._closing = False
        try:
            self._load()
        except plyvel.Error as e:  # a table that is cut short or damaged
            self._db.close()
            raise StoreError(f"cannot read the store at {self.path}: {leveldb_words(e)}") from e
        except BaseException:
            self._db.close()
            raise
        self._mapped_floor = _file_resident_bytes()

    # -- lifecycle --
    def close(self) -> None:
        with self._releaser_lock:
            self._closing = True
            releaser, self._releaser = self._releaser, None
        if releaser is not None:
            self._release_wanted.set()
            releaser.join()
        if not self._db.closed:
            self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _load(self) -> None:
        raw = self._db.get(head_key, verify_checksums=True)
        if raw is None:
            return
        try:
            head = Head.from_bytes(raw)
            header = BlockHeader.from_bytes(self._need(block_key(head.height)))
        except DecodeError as e:
            raise StoreError(f"store head is corrupt: {e}") from e
        hashes = [self._need(node_key(lv, i)) for lv, i in CompactRange.nodes_for(head.log_size)]
        frontier = CompactRange(head.log_size, hashes)
        root = frontier.root()
        if root != head.log_root or header.log_root != root or header.hash != head.hash:
            raise StoreError(
                f"store head does not match its Merkle log: head root {head.log_root.hex()}, "
                f"block {head.height} root {header.log_root.hex()}, recomputed root {root.hex()}")
        self.head, self.frontier = head, frontier
        self.registry = self.registry_at(head.height)
        self._check_last_checkpoint()

    def _check_last_checkpoint(self) -> None:
        """A head behind, or off, the last checkpoint this store signed is a rolled-back store;
        each refusal names `ledger audit`, which says what is damaged or missing."""
        try:
            self._off_last_checkpoint()
        except StoreError as e:
            raise StoreError(f"{e}; run `ledger audit` on this data folder: it names the first "
                             "damaged or missing record (restore the store from an archive or "
                             "a peer)") from e.__cause__

    def _off_last_checkpoint(self) -> None:
        text = self.checkpoint()
        if text is None or self.head is None:
            return
        try:
            cp = SignedCheckpoint.from_text(text.decode()).checkpoint
        except (CheckpointError, UnicodeDecodeError) as e:
            raise StoreError(f"stored checkpoint is corrupt: {e}") from e
        if cp.size > self.head.log_size:
            raise StoreError(f"store head (log size {self.head.log_size}) is behind its own "
                             f"checkpoint of size {cp.size}: the store was rolled back")
        if self.root_at(cp.size) != cp.root:
            raise StoreError(f"stored log does not match its checkpoint at size {cp.size}: "
                             f"expected root {cp.root.hex()}, found {self.root_at(cp.size).hex()}")
        if not cp.extensions:
            return  # (a checkpoint of a store written before ADR 60 names no block)
        try:
            height, block_hash = checkpoint_block(cp)
        except CheckpointError as e:
            raise StoreError(f"stored checkpoint is corrupt: {e}") from e
        # the same log grouped into other blocks (ADR 60): a chain no quorum signed
        at = self.block(height) if height <= self.head.height else None
        if at is None or at.hash != block_hash or at.log_size != cp.size:
            raise StoreError(f"stored blocks do not match their checkpoint at size {cp.size}: it "
                             f"names block {height} {block_hash.hex()}, which this store does "
                             "not hold there")

    def _need(self, key: bytes, *, verify: bool = True) -> bytes:
        v = self._db.get(key, verify_checksums=verify)
        if v is None:
            raise StoreError(f"store is missing record {key[:1].decode()}/{key[1:].hex()}")
        return bytes(v)

    # -- writing --
    def write_block(self, result: BlockResult, extra: dict[bytes, bytes] | None = None) -> None:
        """Commit a built block (and ``extra`` records, e.g. its checkpoint) in one synced batch."""
        if result.header is None or result.head is None:
            raise StoreError("nothing to write: the block has no accepted transaction")
        expected = 0 if self.head is None else self.head.height + 1
        if result.header.height != expected:
            raise StoreError(f"block height {result.header.height}, expected {expected}")
        with self._db.write_batch(sync=True) as wb:
            # ~5 puts per transaction: starmap drives them from C, without a bytecode loop.
            deque(starmap(wb.put, result.writes.items()), maxlen=0)
            deque(starmap(wb.put, (extra or {}).items()), maxlen=0)
        self.head, self.registry, self.frontier = result.head, result.registry, result.frontier

    def put_checkpoint(self, size: int, text: bytes) -> None:
        self._db.put(checkpoint_key(size), text, sync=True)

    def put_checkpoints(self, texts: dict[int, bytes],
                        records: dict[bytes, bytes | None] | None = None) -> None:
        """Store signed checkpoint texts (by log size) and write (or, for None, delete) ``x``
        bookkeeping records in one batch, *not* synced: for co-signatures that can be fetched
        again after a crash."""
        if records and not all(k[:1] == b"x" for k in records):
            raise StoreError("only x-prefixed bookkeeping records may be written directly")
        with self._db.write_batch(sync=False) as wb:
            for size, text in texts.items():
                wb.put(checkpoint_key(size), text)
            for k, v in (records or {}).items():
                if v is None:
                    wb.delete(k)
                else:
                    wb.put(k, v)

    def put_records(self, records: dict[bytes, bytes]) -> None:
        """Write node bookkeeping records (keys starting with ``x``) in one synced batch."""
        if not all(k[:1] == b"x" for k in records):
            raise StoreError("only x-prefixed bookkeeping records may be written directly")
        with self._db.write_batch(sync=True) as wb:
            for k, v in records.items():
                wb.put(k, v)

    def iterate(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Records under ``prefix``, in key order."""
        for k, v in self._db.iterator(prefix=prefix, verify_checksums=True):
            yield bytes(k), bytes(v)

    # -- reading --
    def get(self, key: bytes) -> bytes | None:
        """Raw state read (the StateView protocol used by the state machine).

        The state machine looks up ~3 mostly absent keys per transaction, each touching some
        table's mapped index and filter pages: as random as a proof's reads, so counted too."""
        v = self._db.get(key, verify_checksums=True)
        self._random_reads += 1
        if self._random_reads >= _CHECK_AFTER_READS:
            self._count_random_reads(0)
        return None if v is None else bytes(v)

    def block(self, height: int) -> BlockHeader:
        if self.head is None or not 0 <= height <= self.head.height:
            raise StoreError(f"no block at height {height}")
        try:
            return BlockHeader.from_bytes(self._need(block_key(height)))
        except DecodeError as e:  # this store's own record: damaged, not a client's error
            raise StoreError(damaged(f"the stored header of block {height}", e)) from e

    def entry(self, index: int) -> bytes:
        if self.head is None or not 0 <= index < self.head.log_size:
            raise StoreError(f"no log entry at index {index}")
        return self._need(entry_key(index))

    def block_entries(self, header: BlockHeader) -> list[bytes]:
        start, stop = entry_key(header.first_index), entry_key(header.log_size)
        return [bytes(v) for _, v in self._db.iterator(start=start, stop=stop,
                                                        verify_checksums=True)]

    def tx_location(self, txid: bytes) -> tuple[int, int] | None:
        """(leaf index, block height) of a committed transaction id."""
        v = self._db.get(txid_key(txid), verify_checksums=True)
        if v is not None and len(v) != 16:  # (struct.error, a bare 500, on every read of it)
            raise StoreError(damaged(f"the stored place of transaction {txid.hex()}",
                                     ValueError(f"{len(v)} bytes, not 16")))
        return None if v is None else parse_index_value(bytes(v))

    def tx(self, txid: bytes) -> Tx | None:
        loc = self.tx_location(txid)
        return None if loc is None else Tx.from_bytes(self.entry(loc[0]))

    def credential(self, credential_id: bytes) -> Credential | None:
        v = self.get(credential_key(credential_id))
        try:
            return None if v is None else Credential.from_bytes(credential_id, v)
        except DecodeError as e:
            raise StoreError(damaged(f"the stored record of credential {credential_id.hex()}",
                                     e)) from e

    def status_entries(self, issuer: str, kind: str,
                       number: int | None = None) -> Iterator[tuple[int, str]]:
        """(status index, status) of every credential ``issuer`` anchored of type ``kind``; with
        ``number``, of those in that status list only (ADR 55)."""
        prefix = b"i" + issuer.encode() + b"\x00" + kind.encode() + b"\x00"
        for k, cid in self._db.iterator(**_list_range(prefix, number), verify_checksums=True):
            cred = self.credential(bytes(cid))
            index = int.from_bytes(k[len(prefix):], "big")
            if cred is None:
                raise StoreError(f"status index {k[len(prefix):].hex()} points at no credential")
            if (cred.issuer, cred.type, cred.status_index) != (issuer, kind, index):
                raise StoreError(_elsewhere(issuer, kind, index))
            yield index, cred.status

    def status_lists(self, issuer: str, kind: str) -> list[int]:
        """The numbers of ``issuer``'s status lists of type ``kind`` that hold a credential, in
        order (ADR 55): one seek per list, whatever their size."""
        prefix = b"i" + issuer.encode() + b"\x00" + kind.encode() + b"\x00"
        numbers: list[int] = []
        with self._db.iterator(prefix=prefix, include_value=False) as it:
            while True:
                k = next(it, None)
                if k is None:
                    return numbers
                number = int.from_bytes(k[len(prefix):], "big") // STATUS_LIST_SIZE
                numbers.append(number)
                if (number + 1) * STATUS_LIST_SIZE >= 1 << 32:
                    return numbers
                it.seek(prefix + ((number + 1) * STATUS_LIST_SIZE).to_bytes(4, "big"))

    def status_values(self, issuer: str, kind: str, number: int | None = None, *,
                      chunk: int = 50_000) -> Iterator[tuple[int, str]]:
        """The pairs of :meth:`status_entries`, in another order, for lists of many entries.

        The status index is scanned in chunks of ``chunk`` entries; each chunk's credential
        records are read in key order (sorted ids), so the reads walk the tables forward instead
        of jumping at random (about 6x faster at 60,000 entries of a 1M-entry chain), and are
        decoded without the strict codec's re-encoding: they are this store's own records, as
        the state machine wrote them. Read-only.
        """
        prefix = b"i" + issuer.encode() + b"\x00" + kind.encode() + b"\x00"
        batch: list[tuple[bytes, int]] = []

        def drain() -> Iterator[tuple[int, str]]:
            # A bulk scan: fill_cache=False keeps it from evicting the block cache's hot blocks
            # (LevelDB's advice for scans) and from growing the cache to its 64 MiB bound. One
            # iterator sought forward reuses its current block when the next id is in it, where
            # uncached gets would decompress that block again (3-4 µs per record vs 6-9, ADR 26).
            batch.sort()
            count = self._count_random_reads
            it = self._db.iterator(prefix=b"c", fill_cache=False, verify_checksums=True)
            try:
                for cid, index in batch:
                    count(1)
                    key = credential_key(cid)
                    it.seek(key)
                    got = next(it, None)
                    try:
                        rec = (msgpack.unpackb(got[1], raw=False)
                               if got is not None and got[0] == key else None)
                    except (ValueError, TypeError):  # damaged: msgpack's own errors are both
                        rec = None
                    if not isinstance(rec, list) or len(rec) != 8 or \
                            not isinstance(rec[2], str) or rec[2] not in STATUSES:
                        raise StoreError(damaged(
                            f"the credential record that status index {index} of "
                            f"{issuer}/{kind} points at", ValueError("no valid credential "
                                                                     "record")))
                    if rec[0] != issuer or rec[1] != kind or rec[3] != index:
                        # another credential's status would be served as this index's
                        raise StoreError(_elsewhere(issuer, kind, index))
                    yield index, rec[2]
            finally:
                it.close()
            batch.clear()

        for k, cid in self._db.iterator(**_list_range(prefix, number), fill_cache=False,
                                        verify_checksums=True):
            batch.append((bytes(cid), int.from_bytes(k[len(prefix):], "big")))
            if len(batch) >= chunk:
                yield from drain()
        yield from drain()

    def release_mapped_pages(self) -> None:
        """Drop this process's mappings of the table pages it has read (Linux; else nothing).

        LevelDB memory-maps the table files it reads, and every page touched stays in the
        resident set while the table is open: a scan over millions of random records (a full
        status-list read at 10M entries) would make the process look as large as the store. The
        pages stay in the page cache; ``MADV_DONTNEED`` on these read-only shared file mappings
        only unmaps them, and the next read maps them again. Nothing is written.
        """
        release_mapped_tables((self.path,))

    def registry_at(self, height: int) -> Registry:
        """The registry in force at the end of block ``height``."""
        # start=b"r" rather than registry_key(0): plyvel 1.5's reverse iterator skips a key
        # equal to ``start`` when it is the only one in range.
        it = self._db.iterator(start=b"r", stop=registry_key(height + 1), reverse=True,
                               verify_checksums=True)
        for k, v in it:
            return _stored_registry(bytes(k), bytes(v))
        raise StoreError(f"no registry at or before height {height}")

    def registry_history(self) -> Iterator[tuple[int, Registry]]:
        for k, v in self._db.iterator(prefix=b"r", verify_checksums=True):
            yield _BE.unpack(k[1:])[0], _stored_registry(bytes(k), bytes(v))

    def checkpoint(self, size: int | None = None) -> bytes | None:
        """The stored checkpoint text for ``size`` (default: the latest one, even one past
        :attr:`head`: see :meth:`head_checkpoint`)."""
        if size is not None:
            return self.get(checkpoint_key(size))
        for v in self._db.iterator(prefix=b"k", reverse=True, include_key=False,
                                   verify_checksums=True):
            return bytes(v)
        return None

    def head_checkpoint(self, head: Head | None = None) -> bytes | None:
        """The latest stored checkpoint that ``head`` (default: :attr:`head`) covers, its size
        at most the head's log size; what a reader beside the block writer proves against.

        A block's checkpoint is written in the block's own batch, so another thread sees it a
        moment before :attr:`head` moves to the block (the writer takes the GIL back first):
        the latest checkpoint then names a tree size the store still refuses to prove, and a
        node issuing credentials while other blocks were written lost about one holder's
        bundle in twenty under load (the credential committed, "cannot be proven")."""
        found = self.head_checkpoint_entry(head)
        return None if found is None else found[1]

    def head_checkpoint_entry(self, head: Head | None = None) -> tuple[int, bytes] | None:
        """:meth:`head_checkpoint` with its log size: (size, text)."""
        head = self.head if head is None else head
        if head is None:
            return None
        for k, v in self._db.iterator(start=b"k", stop=checkpoint_key(head.log_size + 1),
                                      reverse=True, verify_checksums=True):
            return _BE.unpack(k[1:])[0], bytes(v)
        return None

    # -- Merkle proofs from stored nodes --
    # Node hashes are read without LevelDB's block checksum (ADR 47): every use ends against a
    # signed root (a proof its verifier checks, the checkpoint and head checks of _load), so a
    # damaged one is found there, and a proof's ~24 cold reads stay a third of the time.
    def _subtree(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            return self._need(node_key(n.bit_length() - 1, lo // n), verify=False)
        k = _largest_pow2_below(n)
        return merkle.node_hash(self._subtree(lo, lo + k), self._subtree(lo + k, hi))

    def _size_ok(self, size: int) -> None:
        if self.head is None or not 1 <= size <= self.head.log_size:
            have = 0 if self.head is None else self.head.log_size
            raise StoreError(f"tree size {size} is not in 1..{have}")

    def root_at(self, size: int) -> bytes:
        self._size_ok(size)
        return self._subtree(0, size)

    def leaf_hash(self, index: int) -> bytes:
        self._size_ok(index + 1)
        return self._need(node_key(0, index), verify=False)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of leaf ``index`` in the tree of ``size`` (O(log n) reads)."""
        self._size_ok(size)
        if not 0 <= index < size:
            raise StoreError(f"leaf index {index} is not in 0..{size - 1}")
        proof: list[bytes] = []
        lo, hi = 0, size
        while hi - lo > 1:
            k = _largest_pow2_below(hi - lo)
            if index < lo + k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo = lo + k
        proof.reverse()
        self._count_random_reads(len(proof))
        return proof

    def _count_random_reads(self, n: int) -> None:
        """Keep a long-running reader's resident set flat: reads touch pages all over the mapped
        tables, so every 16 reads the process's file-backed resident memory is compared with the
        budget (one read of /proc/self/statm, ~1.5 µs), and when it is over, the table pages
        are released right here (ADR 26).

        The reader that crosses the budget pays for the release (3-10 ms at 10M entries): that is
        the proofs' p99 there. Releasing on a background thread instead let the readers map
        another ~25 MiB at 10M before the release caught up, so memory was not flat."""
        self._random_reads += n
        if self._random_reads < _CHECK_AFTER_READS:
            return
        self._random_reads = 0
        floor, mapped = self._mapped_floor, _file_resident_bytes()
        if floor is not None and mapped is not None and mapped - floor <= self.mapped_budget:
            return  # the usual case: one small /proc read, here, and no thread woken
        if sys.platform.startswith("linux"):
            with self._releaser_lock:
                if self._releaser is None and not self._closing:
                    self._releaser = threading.Thread(target=self._release_loop, daemon=True,
                                                      name="store-page-release")
                    self._releaser.start()
            self._release_if_over_budget()

    def _release_loop(self) -> None:
        # Every _CHECK_EVERY_S, for the pages LevelDB's own compaction thread maps, which no read
        # of ours counts (started by the first release, so idle stores have no thread).
        while True:
            self._release_wanted.wait(_CHECK_EVERY_S)
            self._release_wanted.clear()
            if self._closing:
                return
            self._release_if_over_budget()

    def _release_if_over_budget(self) -> None:
        if not self._releasing.acquire(blocking=False):
            return  # another thread is releasing right now
        try:
            mapped = _file_resident_bytes()
            if mapped is None:
                return
            if self._mapped_floor is None:
                self._mapped_floor = mapped
            if mapped - self._mapped_floor <= self.mapped_budget:
                return
            self.release_mapped_pages()
            self.releases += 1
            # What is left is not ours to release (code, other files): the next budget starts
            # there.
            after = _file_resident_bytes()
            self._mapped_floor = mapped if after is None else after
        finally:
            self._releasing.release()

    def consistency_proof(self, old_size: int, new_size: int) -> list[bytes]:
        """RFC 9162 consistency proof from ``old_size`` to ``new_size``."""
        self._size_ok(new_size)
        if not 1 <= old_size <= new_size:
            raise StoreError(f"old size {old_size} is not in 1..{new_size}")
        proof: list[bytes] = []
        lo, hi, m, complete = 0, new_size, old_size, True
        while m != hi - lo:
            k = _largest_pow2_below(hi - lo)
            if m <= k:
                proof.append(self._subtree(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._subtree(lo, lo + k))
                lo, m, complete = lo + k, m - k, False
        if not complete:
            proof.append(self._subtree(lo, hi))
        proof.reverse()
        self._count_random_reads(len(proof))
        return proof


def stored_consistency_proof(get: Callable[[bytes], bytes | None], old_size: int,
                             new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof from ``old_size`` to ``new_size`` out of stored ``n`` records.

    Read-only, for a store opened raw (the auditor reads a data folder without trusting its head
    pointer, so it has no :class:`Store`). ``get`` reads one record; a missing node raises
    StoreError. The proof is as unverified as the store it came from: check it with
    :func:`ledger.merkle.verify_consistency`.
    """
    if not 1 <= old_size <= new_size:
        raise StoreError(f"old size {old_size} is not in 1..{new_size}")

    def subtree(lo: int, hi: int) -> bytes:
        n = hi - lo
        if n & (n - 1) == 0 and lo % n == 0:
            v = get(node_key(n.bit_length() - 1, lo // n))
            if v is None:
                raise StoreError(f"store is missing Merkle node [{lo}, {hi})")
            return v
        k = _largest_pow2_below(n)
        return merkle.node_hash(subtree(lo, lo + k), subtree(lo + k, hi))

    proof: list[bytes] = []
    lo, hi, m, complete = 0, new_size, old_size, True
    while m != hi - lo:
        k = _largest_pow2_below(hi - lo)
        if m <= k:
            proof.append(subtree(lo + k, hi))
            hi = lo + k
        else:
            proof.append(subtree(lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    if not complete:
        proof.append(subtree(lo, hi))
    proof.reverse()
    return proof
