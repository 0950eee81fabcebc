"""The auditor: replay a chain from genesis and report the first thing that is broken.

:func:`audit` reads a store (a node's data folder or its LevelDB store, read raw: it trusts
neither the head pointer nor any derived record) or an archive (:mod:`ledger.archive`), and
replays every block with :class:`ledger.archive.Replayer`: each block is rebuilt from its
transactions (every signature, every registry rule as of its height, the hash link, every header
field, the Merkle root) and must equal the recorded header byte for byte; each stored checkpoint
must be for the replayed tree head and final (quorum of the agencies in force at that height).
From a store, the derived records must also equal the replayed ones: Merkle nodes and registry
versions block by block, every kind of state record (tx index, credentials, status indexes,
credit records) in one merge of key-order scans at the end (a record the replay did not produce
is reported too), and the head pointer; headers and entries are the ones read. Two validly
signed checkpoints of one size with different roots (or one root and different block lines) are
reported as equivocation.

The chain is replayed until the first broken block or transaction (later blocks build on it, so
nothing after it can be checked); a checkpoint that is not final is reported and the replay goes
on. With ``workers`` the envelopes are parsed and their signatures checked in worker processes
(:mod:`ledger.sigcheck`) a few thousand transactions ahead of the replay, which then rebuilds
each ``Tx`` with :meth:`Tx.from_checked_bytes`. Memory does not grow with the chain: headers and
entries are streamed; the replay keeps head, registry and Merkle frontier in memory and only the
state records (tx index, credentials, status indexes, credit records) in a throwaway LevelDB;
nothing per block is kept (see ``docs/adr/0020-audit-pipeline.md``).

An incremental audit (``since``: an earlier audited checkpoint) checks only the growth. The
first ``size`` entries must hash to the checkpoint's root (RFC 9162), else the log forked or its
old part changed since that audit (reported at the block that reaches the size, nothing after it
is replayed; if the chain holds a final checkpoint of that size, the two are listed among the
equivocations, judged by the registry a full replay of the old part gives). Those bytes are then
exactly the ones that audit checked, so the state at the old height is rebuilt from them without
signature checks or checkpoint checks (the chain commits to no state, so the registry, tx index
and credential state cannot be taken from the store's records without that pass; the stored
records are still compared, which costs little). At the block ending at that size the old
checkpoint must be final under the registry in force there, and name that block (ADR 60).
The newer blocks are then audited in full, and from a store the RFC 9162 consistency proof from
the old checkpoint to the head, built from the stored Merkle nodes
(:func:`ledger.store.stored_consistency_proof`), must verify with
:func:`ledger.merkle.verify_consistency`. (An archive holds no nodes: there both roots come from
one replay of one leaf sequence.) From an archive the old part is parsed strictly again, as a
file may change between the two reads.

A report can be attested: :func:`sign_statement` signs (domain ``audit``) the latest verified
checkpoint text, the SHA-256 of the report's canonical JSON (:meth:`AuditReport.digest`:
``json.dumps(report.to_json(), sort_keys=True, separators=(",", ":"))`` in UTF-8), and (v2,
ADR 70) the genesis hash, the head and the attested size.

Errors::

    LedgerError
    └── AuditError   the source cannot be read at all (not a store nor an archive, locked,
                     missing). A source that reads but does not verify is not an error: it is
                     a report with ``clean`` False.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import json
import os
import shutil
import tempfile
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import plyvel

from ledger import codec, merkle
from ledger.archive import (
    ArchiveError,
    BlockRecord,
    Replayer,
    ReplayError,
    node_lines,
    parse_envelopes,
    read_archive,
    record_difference,
)
from ledger.block import BlockHeader
from ledger.chain import (
    BlockResult,
    CompactRange,
    Head,
    block_key,
    checkpoint_key,
    entry_key,
    head_key,
    parse_index_value,
)
from ledger.checkpoint import Equivocation, SignedCheckpoint, find_equivocation
from ledger.errors import (
    CheckpointError,
    DecodeError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
)
from ledger.finality import (
    checkpoint_block,
    checkpoint_verifiers,
    unregistered_signatures,
    verify_final,
)
from ledger.keys import PrivateKey, PublicKey
from ledger.network import free_text_reason
from ledger.sealed import SealedError, key_mark, open_record
from ledger.sigcheck import Checking, SignatureChecker
from ledger.state import MAX_BACKDATE, Registry
from ledger.store import (
    leveldb_words,
    open_error,
    release_mapped_tables,
    store_unused,
    stored_consistency_proof,
)
from ledger.tx import Tx

__all__ = ["AuditError", "AuditReport", "Problem", "audit", "sign_statement",
           "verify_statement"]

Progress = Callable[[int, int, int], None]
"""``progress(blocks_done, blocks_total, txs_done)``."""

_WINDOW = 16
"""Blocks whose signatures are being checked ahead of the replay."""


FREE_TEXT_KEPT = 100
"""Transactions with a reason in free text an audit report lists (it counts them all)."""
FINDINGS_KEPT = 1000
"""Problems, and equivocations, a report lists; past it they are counted (ADR 71)."""


class AuditError(LedgerError):
    """The audit source cannot be read at all."""


@dataclass(frozen=True)
class Problem:
    """One finding: what is broken, where, and the expected (replayed) vs found value."""

    kind: str  # "block" | "tx" | "checkpoint" | "archive" | "store"
    reason: str
    height: int | None = None
    tx_index: int | None = None
    txid: str | None = None
    record: int | None = None
    expected: str | None = None
    found: str | None = None

    @classmethod
    def of(cls, e: ArchiveError) -> Problem:
        if isinstance(e, ReplayError):
            return cls(e.kind, e.reason, e.height, e.tx_index,
                       None if e.txid is None else e.txid.hex(), e.record, e.expected, e.found)
        return cls("archive", e.reason, e.height, record=e.record)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "reason": self.reason, "height": self.height,
                "tx_index": self.tx_index, "txid": self.txid, "record": self.record,
                "expected": self.expected, "found": self.found}

    def __str__(self) -> str:
        where = [self.kind]
        if self.height is not None:
            where.append(f"block {self.height}")
        if self.tx_index is not None:
            where.append(f"tx {self.tx_index}")
        if self.record is not None:
            where.append(f"record {self.record}")
        text = f"{' '.join(where)}: {self.reason}"
        if self.expected is not None or self.found is not None:
            text += f" (expected {self.expected}, found {self.found})"
        return text


@dataclass
class AuditReport:
    source_kind: str
    source: str
    audited_at: int
    network: str | None = None
    blocks_total: int = 0
    blocks_checked: int = 0
    txs_checked: int = 0
    checkpoints_checked: int = 0
    head: Head | None = None
    checkpoint: str | None = None
    tx_types: Counter[str] = field(default_factory=Counter)
    agencies: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    equivocations: list[Equivocation] = field(default_factory=list)
    complete: bool = False
    since: SignedCheckpoint | None = None
    since_height: int | None = None
    """The height of the block whose log size is ``since``'s size (None until found)."""
    approvals_total: int = 0
    approvals_rechecked: int = 0
    free_text: list[dict[str, Any]] = field(default_factory=list)
    """The first FREE_TEXT_KEPT ``status``/``credit`` transactions whose reason is no reason
    code (its height, txid, type and length; never the text): public for good, and a name
    could be in it (ADR 55). Not a break: the ledger takes such text."""
    free_text_count: int = 0
    blockless: int = 0
    """Checkpoints checked that name no block: of a version before ADR 60 (ADR 62)."""
    blockless_last: bool = False
    """Whether the newest checkpoint checked is one of them (it binds the log only)."""
    genesis: bytes | None = None
    """The hash of block 0 as replayed (None until it is): what ``--genesis`` pins."""
    pinned_genesis: bytes | None = None
    """The genesis hash the auditor gave (``--genesis``): block 0 must hash to it (ADR 70)."""
    problems_omitted: int = 0
    """Problems past the first :data:`FINDINGS_KEPT`, counted only: a crafted chain (a
    checkpoint below quorum in every block, say) grew the report with its length (ADR 71)."""
    equivocations_omitted: int = 0
    """The same for equivocations."""

    def add_problem(self, problem: Problem) -> None:
        if len(self.problems) < FINDINGS_KEPT:
            self.problems.append(problem)
        else:
            self.problems_omitted += 1

    def add_equivocation(self, found: Equivocation) -> None:
        if len(self.equivocations) < FINDINGS_KEPT:
            self.equivocations.append(found)
        else:
            self.equivocations_omitted += 1

    @property
    def attested_size(self) -> int:
        """The log size the newest verified final checkpoint covers (0: none). Transactions past
        it are checked but vouched for by no quorum: a copy cut short there audits the same."""
        if self.checkpoint is None:
            return 0
        try:
            return SignedCheckpoint.from_text(self.checkpoint).checkpoint.size
        except LedgerError:  # it was verified when set; a text that no longer parses is ours
            return 0

    @property
    def first_broken(self) -> Problem | None:
        return self.problems[0] if self.problems else None

    @property
    def clean(self) -> bool:
        return self.complete and not self.problems and not self.equivocations

    def to_json(self) -> dict[str, Any]:
        head = None if self.head is None else {
            "height": self.head.height, "hash": self.head.hash.hex(),
            "log_size": self.head.log_size, "log_root": self.head.log_root.hex(),
            "time": self.head.time}
        first = self.first_broken
        return {
            "v": 1,
            "clean": self.clean,
            "complete": self.complete,
            "source": {"kind": self.source_kind, "path": self.source},
            "network": self.network,
            "genesis": None if self.genesis is None else self.genesis.hex(),
            "audited_at": self.audited_at,
            "blocks_total": self.blocks_total,
            "blocks_checked": self.blocks_checked,
            "txs_checked": self.txs_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "head": head,
            "checkpoint": self.checkpoint,
            "attested_size": self.attested_size,
            "tx_types": dict(sorted(self.tx_types.items())),
            "agencies": dict(sorted(self.agencies.items())),
            "first_broken": None if first is None else first.to_json(),
            "problems": [p.to_json() for p in self.problems],
            "equivocations": [e.to_dict() for e in self.equivocations],
            "approvals": {"total": self.approvals_total, "rechecked": self.approvals_rechecked,
                          "unchecked": self.approvals_total - self.approvals_rechecked},
        } | ({} if self.since is None else {"since": {
            "size": self.since.checkpoint.size, "root": self.since.checkpoint.root.hex(),
            "height": self.since_height}}) | ({} if not self.free_text_count else {
            "free_text_reasons": {"count": self.free_text_count, "first": self.free_text}}) \
            | ({} if not self.blockless else {"checkpoints_naming_no_block": {
                "count": self.blockless, "newest": self.blockless_last}}) \
            | ({} if not self.problems_omitted else {
                "problems_omitted": self.problems_omitted}) \
            | ({} if not self.equivocations_omitted else {
                "equivocations_omitted": self.equivocations_omitted})

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of :meth:`to_json` (sorted keys, no spaces, UTF-8)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return hashlib.sha256(text.encode()).digest()


# -- sources -----------------------------------------------------------------------------------


_SOURCE_OPTIONS: dict[str, Any] = {"max_open_files": 100, "lru_cache_size": 8 << 20,
                                   "paranoid_checks": True}
"""The audited store is read in key order; a small table cache keeps few tables mapped. A
damaged record in LevelDB's log stops the audit (exit 2) instead of being dropped, which would
audit a silently shortened chain as clean (ADR 47)."""


class _StoreSource:
    """A LevelDB store read raw: block records follow the stored headers, not the head pointer.

    Headers and entries are streamed with two key-order iterators (no per-entry lookups); an
    entry key that is not the next index ends the block's entries early, and the replay then
    reports that block.
    """

    def __init__(self, path: Path, notice: Callable[[str], None] | None = None) -> None:
        if not (path / "CURRENT").exists() and (path / "ledger" / "CURRENT").exists():
            path = path / "ledger"
        if not (path / "CURRENT").exists():
            raise AuditError(f"{path} is neither a ledger store nor a node's data folder")
        path = path.resolve()  # "." has no parent: the copy must go beside the store
        self.audited = path
        self._shadow = _shadow_store(path, notice)
        self.path = self._shadow / "db"
        """Where LevelDB has the store open (its tables are mapped from there)."""
        try:
            self._db = plyvel.DB(str(self.path), create_if_missing=False, **_SOURCE_OPTIONS)
        except BaseException as e:
            shutil.rmtree(self._shadow, ignore_errors=True)
            if isinstance(e, plyvel.Error):
                raise AuditError(self.named(open_error(path, e))) from e
            raise

    def close(self) -> None:
        self._db.close()
        shutil.rmtree(self._shadow, ignore_errors=True)

    def named(self, message: str) -> str:
        """``message`` (LevelDB's words name the files it read) with the audited store's path
        in place of its hidden copy's, which is gone once the audit ends."""
        return message.replace(str(self.path), str(self.audited))

    def get(self, key: bytes) -> bytes | None:
        v = self._db.get(key)
        return None if v is None else bytes(v)

    def keys(self, prefix: bytes, start: bytes | None = None) -> Iterator[bytes]:
        """The keys under ``prefix`` (from ``start`` on, which must begin with it), in order."""
        if start is None:
            it = self._db.iterator(prefix=prefix, include_value=False, fill_cache=False)
        else:  # plyvel takes a prefix or a range: the range up to the prefix's successor
            stop = prefix[:-1] + bytes([prefix[-1] + 1])
            it = self._db.iterator(start=start, stop=stop, include_value=False,
                                   fill_cache=False)
        with it:
            for k in it:
                yield bytes(k)

    def total(self) -> int:
        return sum(1 for _ in self._db.iterator(prefix=b"b", include_value=False))

    def check_files(self) -> None:
        """Every table's block checksums, read once more after a clean replay: a byte changed
        where no record's meaning changed (a key's shared prefix, a block's trailer) replays
        the same, and a store LevelDB itself finds damaged is not called clean (exit 2). The
        replay reads without them, so an altered record is named by block, not by file."""
        try:
            with self._db.iterator(fill_cache=False, verify_checksums=True) as it:
                for _ in it:
                    pass
        except plyvel.Error as e:
            raise AuditError(self.named(
                f"every record of {self.audited} replayed, but its files fail LevelDB's own "
                f"checksums ({type(e).__name__}: {leveldb_words(e)}): a damaged or altered "
                "table; restore the store from a backup or an archive")) from e

    def network(self) -> str | None:
        return None

    def reread(self) -> Iterator[BlockRecord]:
        """The block records again, from the start (a second, independent pass)."""
        return self.blocks()

    def records(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every record under ``prefix``, in key order."""
        for k, v in self._db.iterator(prefix=prefix, fill_cache=False):
            yield bytes(k), bytes(v)

    def stored_records(self) -> _StoredRecords:
        return _StoredRecords(self._db)

    def block_ends(self) -> Iterator[int]:
        """The log size at the end of each stored block, in order (a second scan of the headers,
        as :meth:`blocks` counts them): where checkpoints may be stored. Streamed, so a chain of
        millions of one-transaction blocks costs the audit no memory."""
        size = 0
        for _, raw in self._db.iterator(prefix=b"b", fill_cache=False):
            with contextlib.suppress(DecodeError):  # the replay reported it
                size += BlockHeader.from_bytes(bytes(raw)).tx_count
            yield size

    def blocks(self) -> Iterator[BlockRecord]:
        size = 0
        entries = self._db.iterator(prefix=b"e", fill_cache=False)
        try:
            for n, (key, raw) in enumerate(self._db.iterator(prefix=b"b", fill_cache=False)):
                height = int.from_bytes(key[1:], "big") if len(key) == 9 else -1
                if height != n:
                    raise ReplayError("store", n, "stored block keys are not 0, 1, 2, …",
                                      expected=block_key(n).hex(), found=bytes(key).hex())
                try:
                    count = BlockHeader.from_bytes(bytes(raw)).tx_count
                except DecodeError:
                    count = 0  # the replay reports the undecodable header
                items = []
                for i in range(size, size + count):
                    got = next(entries, None)
                    if got is None or got[0] != entry_key(i):
                        break  # missing: the block comes out short and does not replay
                    items.append(bytes(got[1]))
                size += count
                cp = self.get(checkpoint_key(size))
                yield BlockRecord(height, bytes(raw), tuple(items), () if cp is None else (cp,))
        finally:
            entries.close()


_TABLE_SUFFIXES = (".ldb", ".sst")


@contextlib.contextmanager
def store_copy(path: Path, notice: Callable[[str], None] | None = None, *,
               doing: str = "audit") -> Iterator[Path]:
    """The store at ``path`` copied for LevelDB to open (see :func:`_shadow_store`), removed
    when the ``with`` block ends: for reading a store without writing into its folder, as
    ``ledger export`` does. ``doing`` names the command in errors; they are AuditError."""
    shadow = _shadow_store(path.resolve(), notice, doing)
    try:
        yield shadow / "db"
    finally:
        shutil.rmtree(shadow, ignore_errors=True)


def _shadow_store(path: Path, notice: Callable[[str], None] | None,
                  doing: str = "audit") -> Path:
    """A copy of the store at ``path`` for LevelDB to open, so the audit writes nothing into the
    audited folder (ADR 40).

    LevelDB has no read-only open: opening a store writes a new MANIFEST, CURRENT, a log and its
    info LOG, and may compact. The copy hard-links the table files, which LevelDB never changes
    after writing them, and copies the rest (a few MiB at most). The links must be on the store's
    file system, so the copy goes in a hidden folder beside the store and is removed after the
    audit; where that folder cannot be written (read-only media, another owner), or the copy
    runs out of room there, every file is copied to the system's temporary folder instead
    (``notice`` is told when room was the reason). A shared lock on the store's LOCK file is
    held while copying (it needs read access only): LevelDB's own lock is exclusive, so a store
    in use is refused, as before, and no node can open it half-way through the copy."""
    try:
        with store_unused(path, shared=True):
            return _copy_store(path, notice, doing)
    except StoreError as e:
        raise AuditError(f"cannot {doing}: {e}, or {doing} the running node instead: "
                         f"`ledger {doing} --node URL`") from e
    except OSError as e:
        raise AuditError(f"cannot read the store at {path}: {e.strerror or e}") from e


_NO_ROOM = (errno.ENOSPC, errno.EDQUOT)


STALE_COPY_AGE = 600
"""Seconds after which an audit's copy whose LevelDB lock nobody holds is taken as left by an
audit that was killed (SIGKILL, a power cut): the next audit beside it removes it."""


def _sweep_stale_copies(folder: Path, prefix: str) -> None:
    """Remove audit copies (``prefix*`` in ``folder``) left by audits that were killed: their
    hard links would keep the store's old tables on disk after compaction. A copy in use is
    locked by the LevelDB that opened it; one still being filled is younger than
    STALE_COPY_AGE."""
    try:
        found = [p for p in folder.iterdir() if p.name.startswith(prefix) and p.is_dir()]
    except OSError:
        return
    for copy in found:
        try:
            st = copy.stat()
            if st.st_uid != os.getuid() or time.time() - _newest(copy) < STALE_COPY_AGE:
                continue
            with store_unused(copy / "db", shared=True):
                shutil.rmtree(copy)
        except (OSError, StoreError):
            continue  # in use, or not ours to remove


def _newest(copy: Path) -> float:
    """When an audit's copy last changed: the folder's, its ``db``'s or a file's time (a copy
    still being filled changes all the time; the folder alone stops once ``db`` is made)."""
    db = copy / "db"
    times = [copy.stat().st_mtime]
    if db.is_dir():
        times.append(db.stat().st_mtime)
        times += [f.stat().st_mtime for f in db.iterdir()]
    return max(times)


def _copy_store(path: Path, notice: Callable[[str], None] | None, doing: str) -> Path:
    _sweep_stale_copies(path.parent, ".credledger-audit-")
    try:
        beside = Path(tempfile.mkdtemp(prefix=".credledger-audit-", dir=path.parent))
    except OSError:
        beside = None  # read-only media, another owner's folder
    if beside is not None:
        try:
            return _fill_copy(path, beside, link=True)
        except OSError as e:
            if e.errno not in _NO_ROOM:
                raise AuditError(f"cannot make a copy of {path} to {doing}: "
                                 f"{e.strerror or e}") from e
            if notice is not None:
                notice(f"no room beside {path} for the copy the {doing} opens "
                       f"({e.strerror}): copying the store to {tempfile.gettempdir()} instead")
    _sweep_stale_copies(Path(tempfile.gettempdir()), "credledger-audit-")
    try:
        shadow = Path(tempfile.mkdtemp(prefix="credledger-audit-"))
        return _fill_copy(path, shadow, link=False)
    except OSError as e:
        where = "" if beside is None else f", neither beside it nor in {tempfile.gettempdir()}"
        raise AuditError(f"cannot make a copy of {path} to {doing}{where}: "
                         f"{e.strerror or e}") from e


def _fill_copy(path: Path, shadow: Path, *, link: bool) -> Path:
    """Copy the store at ``path`` into ``shadow``/db (the tables hard-linked while ``link``);
    on any error, also Ctrl-C and SIGTERM (ledger.files.Terminated), no copy is left."""
    try:
        db = shadow / "db"
        db.mkdir()
        for f in sorted(path.iterdir()):
            if f.name in ("LOCK", "LOG", "LOG.old") or not f.is_file():
                continue
            if link and f.suffix in _TABLE_SUFFIXES:
                try:
                    os.link(f, db / f.name)
                    continue
                except OSError:
                    link = False  # another file system, or links not allowed: copy from now on
            shutil.copyfile(f, db / f.name)
    except BaseException:
        shutil.rmtree(shadow, ignore_errors=True)
        raise
    return shadow


class _StoredRecords:
    """The audited store's derived records, read in the order the replay produces them.

    Merkle nodes stream through one key-order iterator per tree level (a block's new nodes are
    the next ones at each level), so the comparison costs no random reads; other records (the
    rare registry versions) are read by key.
    """

    def __init__(self, db: Any) -> None:
        self._db = db
        self._levels: dict[int, Any] = {}

    def __call__(self, key: bytes) -> bytes | None:
        if key[:1] == b"n" and len(key) == 10:
            it = self._levels.get(key[1])
            if it is None:
                it = self._levels[key[1]] = self._db.iterator(prefix=key[:2], fill_cache=False)
            got = next(it, None)
            return None if got is None or got[0] != key else bytes(got[1])
        v = self._db.get(key)
        return None if v is None else bytes(v)

    def extra_node(self) -> bytes | None:
        """The first stored Merkle node key that the replay did not produce, if any."""
        for level in range(65):
            it = self._levels.get(level)
            if it is None:
                it = self._levels[level] = self._db.iterator(prefix=b"n" + bytes([level]),
                                                                fill_cache=False)
            got = next(it, None)
            if got is not None:
                return bytes(got[0])
        return None

    def close(self) -> None:
        for it in self._levels.values():
            it.close()
        self._levels.clear()


class _ArchiveSource:
    def __init__(self, path: Path) -> None:
        self._f = self._open(path)
        try:
            self._header, self._blocks = read_archive(self._f)
        except ArchiveError as e:
            self._f.close()
            raise AuditError(f"{path} is not a readable archive: {e}") from e
        self.path = path

    @staticmethod
    def _open(path: Path) -> BinaryIO:
        try:
            return path.open("rb")
        except OSError as e:
            raise AuditError(f"cannot read the archive {path}: {e.strerror or e}") from e

    def close(self) -> None:
        self._f.close()

    def total(self) -> int:
        return self._header.blocks

    def network(self) -> str | None:
        return self._header.network

    def log_size(self) -> int:
        """The log size the header claims (an import refuses an archive whose replay differs)."""
        return self._header.log_size

    def reread(self) -> Iterator[BlockRecord]:
        """The block records again, from the start (a second pass over the file)."""
        with self._open(self.path) as f:
            _, blocks = read_archive(f)
            yield from blocks

    def blocks(self) -> Iterator[BlockRecord]:
        return self._blocks


# -- the scratch state ---------------------------------------------------------------------------


_NOT_KEPT = b"benHr"
"""Records a block writes that the scratch state does not keep: headers, entries, Merkle nodes,
the head pointer and registry versions (the replay holds the head, frontier and registry in
memory and compares these with the source as it goes). Everything else a block writes is state
the machine may read back (tx index, credentials, status indexes, credit records, …)."""


class _Scratch:
    """The replay's working state (a :class:`ledger.archive.ReplayTarget`).

    Head, registry and Merkle frontier live in memory (constant size); only the state records
    (everything but :data:`_NOT_KEPT`) go to a throwaway LevelDB, unsynced, with small caches. Log
    entries, headers and Merkle nodes are not copied: the replay checks them against the source
    as it goes, so the auditor's memory does not grow with the chain.
    """

    def __init__(self, path: Path) -> None:
        # Small memtables keep level-0 tables (and the compactions that read them through
        # memory maps) small; 16 KiB blocks keep the per-table index small (state keys are read
        # at random, mostly absent: the bloom filters answer those). Random hashes do not
        # compress. A large table cache: random reads must not reopen tables.
        self._db = plyvel.DB(str(path), create_if_missing=True, error_if_exists=True,
                             bloom_filter_bits=10, lru_cache_size=8 << 20,
                             write_buffer_size=8 << 20, block_size=16 << 10,
                             max_open_files=1000, compression=None)
        self.head: Head | None = None
        self.registry: Registry | None = None
        self.frontier = CompactRange()
        self.prefixes: set[bytes] = set()
        """The record kinds (first key byte) written so far."""
        self.registry_keys: set[bytes] = set()
        """The registry versions written so far (few: one per governance block)."""

    def close(self) -> None:
        self._db.close()

    def get(self, key: bytes) -> bytes | None:
        v = self._db.get(key)
        return None if v is None else bytes(v)

    def records(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for k, v in self._db.iterator(prefix=prefix):
            yield bytes(k), bytes(v)

    def write_block(self, result: BlockResult, extra: dict[bytes, bytes] | None = None) -> None:
        if result.header is None or result.head is None:
            raise StoreError("nothing to write: the block has no accepted transaction")
        with self._db.write_batch() as wb:
            for k, v in result.writes.items():
                kind = k[:1]
                if kind not in _NOT_KEPT:
                    wb.put(k, v)
                    if kind not in self.prefixes:
                        self.prefixes.add(kind)
                elif kind == b"r":
                    self.registry_keys.add(k)
        self.head, self.registry, self.frontier = result.head, result.registry, result.frontier


_RELEASE_EVERY = 10_000
"""Transactions replayed between two :func:`release_mapped_tables` calls."""


# -- the audit ---------------------------------------------------------------------------------


def audit(source: Path | str, *, now: int, progress: Progress | None = None,
          workers: int = 0, since: SignedCheckpoint | None = None,
          evidence: Path | None = None, evidence_keys: Sequence[bytes] = (),
          notice: Callable[[str], None] | None = None,
          genesis: bytes | None = None) -> AuditReport:
    """Replay ``source`` (a store / data folder, or an archive file) and report on it.

    ``now`` is the audit time written into the report; ``workers`` > 0 pre-checks signatures in
    that many processes; ``since`` (an earlier audited checkpoint) limits the audit to the blocks
    after it (see the module docstring). Raises :class:`AuditError` only if the source cannot be
    read at all. ``evidence`` is a folder of the approving agencies' evidence records
    (``*.ev``, see :class:`Approvals`): each approval is then evaluated again against the rule
    version in force at its evaluation height, and one without a record is a finding; records
    sealed at rest are opened with ``evidence_keys`` (the agencies' evidence keys, ADR 66).
    ``genesis`` pins the network: block 0 must hash to it, else the chain is another network's,
    whatever its name, and the replay stops there (ADR 70).
    ``notice`` is told of a fallback the caller may want to know of (a store's copy made in the
    system's temporary folder for want of room beside it).
    """
    approvals = Approvals(evidence, evidence_keys)
    path = Path(source)
    src: _StoreSource | _ArchiveSource
    if path.is_dir():
        src = _StoreSource(path, notice)
        kind = "store"
    elif path.is_file():
        src = _ArchiveSource(path)
        kind = "archive"
    elif path.exists():
        raise AuditError(f"{path} is neither a store folder nor an archive file (a device or "
                         "a pipe?): export the chain to a file first")
    else:
        raise AuditError(f"{path} does not exist")
    report = AuditReport(kind, str(path), now, network=src.network(), since=since,
                         pinned_genesis=genesis)
    checker = None
    try:
        report.blocks_total = src.total()
        checker = SignatureChecker(workers) if workers > 0 else None
        with tempfile.TemporaryDirectory(prefix="credledger-audit-") as scratch_dir:
            scratch = _Scratch(Path(scratch_dir) / "state")
            try:
                folders = (Path(scratch_dir),) + ((src.path,) if kind == "store" else ())
                _run(report, src, scratch, checker, progress, folders, approvals)
            finally:
                scratch.close()
    except (plyvel.Error, OSError) as e:
        # A damaged LevelDB table, a full disk for the scratch state: the source could not be
        # read (exit 2), which is not the chain being broken (exit 1).
        why = leveldb_words(e) if isinstance(e, plyvel.Error) else str(e)
        if isinstance(src, _StoreSource):
            why = src.named(why)
        raise AuditError(f"cannot complete the audit of {path}: {type(e).__name__}: {why}") from e
    finally:
        if checker is not None:
            checker.close()
        src.close()
    return report


def _agencies_of(kids: tuple[bytes, ...], registry: Registry) -> set[str]:
    out = set()
    for kid in kids:
        k = registry.key(kid)
        if k is not None:
            out.add(str(k["agency"]))
    return out


def _run(report: AuditReport, src: _StoreSource | _ArchiveSource, scratch: _Scratch,
         checker: SignatureChecker | None, progress: Progress | None,
         folders: tuple[Path, ...], approvals: Approvals) -> None:
    stored = src.stored_records() if isinstance(src, _StoreSource) else None
    replayer = Replayer(scratch)
    try:
        _replay(report, src, replayer, stored, checker, progress, folders, approvals)
        if report.complete:
            _stray_signatures(report, src, replayer)
        if report.complete:
            approvals.check(report, scratch)
        if report.complete:
            _finish_store(report, src, scratch, stored, folders)
        if report.complete:
            _since_consistent(report, src)
        if report.clean and isinstance(src, _StoreSource):
            src.check_files()
    finally:
        if stored is not None:
            stored.close()


def _stray_signatures(report: AuditReport, src: _StoreSource | _ArchiveSource,
                      replayer: Replayer) -> None:
    """A stored checkpoint's signature line by a key the network never registered by the end
    of the chain, or by one whose signature does not verify. A verifier ignores a line by a
    key it does not hold (signed notes say so), and the others may still make the quorum: a
    byte changed in a signer's name or key hash audited CLEAN. A node stores its own line and
    co-signatures it checked, so such a line was changed (ADR 54). Past the replay's
    :data:`Replayer.STRAY_KEPT` the chain's checkpoints are read once more, every line
    checked."""
    final = replayer.store.registry
    if final is None:
        return
    found: list[tuple[int, int | None, list[str]]] = []
    for height, record, signed in replayer.stray_signatures:
        stray = unregistered_signatures(signed, final)
        if stray:
            found.append((height, record, stray))
    if replayer.stray_overflow and not found:
        try:
            for rec in src.reread():
                for text in rec.unverified_checkpoints:
                    with contextlib.suppress(CheckpointError):  # the replay said so already
                        stray = unregistered_signatures(SignedCheckpoint.from_text(text), final)
                        if stray:
                            found.append((rec.height, rec.record, stray))
        except ArchiveError as e:  # it read whole a moment ago: cut short or replaced since
            where = src.audited if isinstance(src, _StoreSource) else src.path
            raise AuditError(f"{where} changed while it was audited (its checkpoints read "
                             f"again: {e})") from e
    if found:
        height, record, stray = found[0]
        more = f" (and {len(found) - 1} more checkpoints)" if len(found) > 1 else ""
        report.add_problem(Problem(
            "checkpoint", "checkpoint holds a signature line by no node key the network ever "
            "registered, or one that does not verify: a node stores only its own and checked "
            "co-signatures, so this line was changed (or a node ran with a key file its "
            f"agency never registered){more}", height, record=record,
            expected="signatures by registered node keys", found=", ".join(stray)))


def _replay(report: AuditReport, src: _StoreSource | _ArchiveSource, replayer: Replayer,
            stored: _StoredRecords | None, checker: SignatureChecker | None,
            progress: Progress | None, folders: tuple[Path, ...],
            approvals: Approvals) -> None:
    signers: Counter[tuple[bytes, ...]] = Counter()
    """Per block: how many transactions each set of signer kids signed (resolved per block)."""
    at = [0]

    def on_tx(tx: Tx, registry: Registry) -> None:
        report.tx_types[tx.type] += 1
        signers[tuple(s.kid for s in tx.sigs)] += 1
        if tx.type == "approval":
            approvals.committed(tx, at[0])
        elif tx.type in ("status", "credit") and free_text_reason(tx) is not None:
            report.free_text_count += 1
            if len(report.free_text) < FREE_TEXT_KEPT:
                report.free_text.append({"height": at[0], "txid": tx.txid.hex(),
                                         "type": tx.type, "length": len(tx.body["reason"])})

    def count_agencies() -> None:
        registry = replayer.store.registry
        if registry is not None:
            for kids, n in signers.items():
                for agency in _agencies_of(kids, registry):
                    report.agencies[agency] += n
        signers.clear()

    records = src.blocks()
    if report.since is not None:
        try:
            if not _rebuild_to_since(report, src, records, replayer, stored, folders,
                                     approvals, checker):
                _name_network(report, replayer)
                return
        except ArchiveError as e:
            report.add_problem(Problem.of(e))
            _name_network(report, replayer)
            return
    replayer.on_tx = on_tx
    store = replayer.store
    by_size: dict[int, list[SignedCheckpoint]] = {}
    first = 0 if report.since_height is None else report.since_height + 1
    base_txs, base_cps = replayer.txs, replayer.checkpoints
    base_blockless = replayer.blockless
    released = replayer.txs
    try:
        for rec, checked in _prechecked(records, replayer, checker):
            at[0] = rec.height
            try:
                replayer.apply(rec, checked, stored, compared=_COMPARED)
            except ReplayError as e:
                report.add_problem(Problem.of(e))
                if e.kind != "checkpoint":
                    return
            finally:
                count_agencies()
            if not _genesis_seen(report, replayer):
                return
            _equivocations(report, replayer, rec, by_size)
            approvals.block_done(rec.height, store.registry, store.head)
            report.blocks_checked = rec.height + 1 - first
            report.txs_checked = replayer.txs - base_txs
            if replayer.txs - released >= _RELEASE_EVERY:
                release_mapped_tables(folders)
                released = replayer.txs
            if progress is not None:
                progress(report.blocks_checked, report.blocks_total, report.txs_checked)
    except ArchiveError as e:
        report.add_problem(Problem.of(e))
        return
    finally:
        report.head = store.head
        if store.registry is not None:
            report.network = store.registry.network
        report.checkpoints_checked = replayer.checkpoints - base_cps
        report.blockless = replayer.blockless - base_blockless
        if replayer.last_checkpoint is not None and replayer.checkpoints > base_cps:
            report.checkpoint = replayer.last_checkpoint.to_text()
            report.blockless_last = not replayer.last_checkpoint.checkpoint.extensions
    _finish(report, src, replayer)


class ApprovalChecker(Protocol):
    """Re-evaluates one approval (``contracts.audit.check_approval``): None, or raises a
    :class:`~ledger.errors.LedgerError` saying why the decision does not follow from its rule."""

    def __call__(self, registry_at_h: Registry, view: Any, approval: Tx, evidence: bytes, *,
                 block_time: int) -> None: ...


def approval_checker() -> ApprovalChecker:
    """The checker named by the ``credledger.approval_checkers`` entry point (``contracts``),
    found without importing it: ``ledger`` imports none of the packages above it."""
    for ep in metadata.entry_points(group="credledger.approval_checkers"):
        checker: ApprovalChecker = ep.load()
        return checker
    raise AuditError("no approval checker is installed (the contracts package provides it)")


class Approvals:
    """Approval decisions met in the replay, and the evidence records to re-check them with.

    An evidence folder holds the approving nodes' records (``<data>/approvals/*.ev``: canonical
    msgpack ``{tx, evidence, …}``, sealed with the agency's evidence key since ADR 66: see
    :mod:`ledger.sealed`; the evidence map names the evaluation ``height``). Registry and
    block time are kept only for the heights some record names; approvals kept are the ones
    committed, so memory grows with approvals, not with the chain.
    """

    def __init__(self, folder: Path | None, keys: Sequence[bytes] = ()) -> None:
        self.folder = folder
        self.records: dict[bytes, tuple[bytes, int]] = {}  # txid -> (evidence bytes, height)
        self.at: dict[int, tuple[Registry, int]] = {}
        self.after: dict[int, int] = {}  # evaluation height -> time of the block after it
        self.found: list[tuple[Tx, int]] = []
        if folder is None:
            return
        if not folder.is_dir():
            raise AuditError(f"the evidence folder {folder} does not exist")
        marks = {key_mark(k): k for k in keys}
        for path in sorted(folder.glob("*.ev")):
            try:
                rec = open_record(path.read_bytes(), marks, f"evidence record {path.name}")
                tx = Tx.from_bytes(rec["tx"])
                ev = codec.decode(rec["evidence"], what="evidence")
                height = int(ev["height"])
            except SealedError as e:
                raise AuditError(f"{e}: give its agency's evidence key (--evidence-key; the "
                                 "agency writes a copy for you with `ledger-node "
                                 "evidence-key`)") from e
            except (DecodeError, KeyError, TypeError, ValueError, OSError) as e:
                raise AuditError(f"{path} is not an evidence record: {e}") from e
            self.records[tx.txid] = (rec["evidence"], height)
        self.wanted = {h for _, h in self.records.values()}

    def committed(self, tx: Tx, height: int) -> None:
        self.found.append((tx, height))

    def block_done(self, height: int, registry: Registry | None, head: Head | None) -> None:
        if self.records and height in self.wanted and registry is not None and \
                head is not None:
            self.at[height] = (registry, head.time)
        if self.records and height - 1 in self.wanted and head is not None:
            self.after[height - 1] = head.time

    def check(self, report: AuditReport, view: Any) -> None:
        report.approvals_total = len(self.found)
        if self.folder is None or not self.found:
            return
        checker = approval_checker()
        for tx, height in self.found:
            got = self.records.get(tx.txid)
            if got is None:
                report.add_problem(Problem("approval", "no evidence record for this "
                                               "approval in the evidence folder", height,
                                               txid=tx.txid.hex()))
                continue
            evidence, ev_height = got
            snap = self.at.get(ev_height)
            if ev_height >= height or snap is None:
                why = ("the evidence names an evaluation height that is not a block before the "
                       "approval's" if ev_height >= height else "the evidence names an "
                       "evaluation height whose block this audit did not replay")
                report.add_problem(Problem("approval", why, height, txid=tx.txid.hex(),
                                               expected=f"< {height}", found=str(ev_height)))
                continue
            # Evaluated at the head when it was signed: a block between the evaluation height
            # and the decision's own from more than MAX_BACKDATE before the signing (block
            # times do not go back) was on the chain, unread. On that stale state, a credit
            # event or a rule version since could have decided otherwise (ADR 70's window).
            nxt = self.after.get(ev_height)
            signed = int(tx.body["ts"])
            if ev_height + 1 < height and nxt is not None and nxt < signed - MAX_BACKDATE:
                report.add_problem(Problem(
                    "approval", f"the evidence names a stale evaluation height: the block "
                    f"after it is from {nxt}, more than {MAX_BACKDATE} s before the decision "
                    f"was signed ({signed}), and the decision was evaluated without it", height,
                    txid=tx.txid.hex(), expected=f">= {signed - MAX_BACKDATE}", found=str(nxt)))
                continue
            try:
                checker(snap[0], view, tx, evidence, block_time=snap[1])
            except LedgerError as e:
                report.add_problem(Problem("approval", str(e), height,
                                               txid=tx.txid.hex()))
                continue
            report.approvals_rechecked += 1


_COMPARED = b"nr"
"""Stored records compared block by block (Merkle nodes, registry versions); headers and
entries are the ones read, and the tx index and credential state are compared in one merge at
the end (:func:`_finish_store`)."""


def _finish_store(report: AuditReport, src: _StoreSource | _ArchiveSource, scratch: _Scratch,
                  stored: _StoredRecords | None, folders: tuple[Path, ...]) -> None:
    """From a store: no Merkle node beyond the replayed ones, and every kind of state record the
    replay wrote (tx index, credentials, status indexes, credit records, …) equal to the
    replayed state, record for record (a merge of two key-order scans per kind: no random
    reads, nothing held)."""
    if not isinstance(src, _StoreSource) or stored is None or report.head is None:
        return
    extra = stored.extra_node()
    if extra is not None:
        report.add_problem(Problem("store", f"stored Merkle node n/{extra[1:].hex()} was "
                                       "not produced by the replay", report.head.height,
                                       found=extra.hex()))
        report.complete = False
        return
    n = 0
    for prefix in sorted(scratch.prefixes):
        pairs = itertools.zip_longest(scratch.records(prefix), src.records(prefix))
        for mine, theirs in pairs:
            if mine != theirs:
                report.add_problem(_state_difference(mine, theirs))
                report.complete = False
                return
            n += 1
            if n % _RELEASE_EVERY == 0:
                release_mapped_tables(folders)
    stray = _stray_record(src, scratch, report.head)
    if stray is not None:
        report.add_problem(stray)
        report.complete = False


_BOOKKEEPING = b"x"
"""Records a node keeps beside the chain (``Store.put_records``): not chain state."""


def _stray_record(src: _StoreSource, scratch: _Scratch, head: Head) -> Problem | None:
    """The first stored record that the replay did not produce and no check above covers: a
    registry version, checkpoint, log entry or head pointer beyond what the chain has, or a
    record of a kind the chain never wrote (a credit record on a chain without credit events).

    Any of them would be read as real: the store loads the newest registry version, the credit
    rules read credit records, a node refuses to open beside a corrupt checkpoint."""
    def stray(key: bytes, why: str) -> Problem:
        return Problem("store", f"stored record {key[:1].decode(errors='replace')}/"
                       f"{key[1:].hex()} was not produced by the replay: {why}", head.height,
                       found=key.hex())

    for byte in range(256):
        prefix = bytes([byte])
        if prefix in scratch.prefixes or prefix in b"bn" + _BOOKKEEPING:
            continue  # merged above, replayed block by block, or not chain state
        keys = src.keys(prefix)
        if prefix == b"H":
            found = [k for k in keys if k != head_key]
            if found:
                return stray(found[0], "not the head pointer")
        elif prefix == b"e":
            for k in src.keys(b"e", start=entry_key(head.log_size)):
                return stray(k, f"beyond the log's {head.log_size} entries")
        elif prefix == b"r":
            for k in keys:
                if k not in scratch.registry_keys:
                    return stray(k, "no block wrote this registry version")
        elif prefix == b"k":  # keys in size order (big-endian), as the block ends: merged
            ends = src.block_ends()
            end = next(ends, None)
            for k in keys:
                size = int.from_bytes(k[1:], "big")
                while end is not None and end < size:
                    end = next(ends, None)
                if len(k) != 9 or end != size or size > head.log_size:
                    return stray(k, "a checkpoint at a log size where no block ends")
        else:
            for k in keys:
                return stray(k, "the chain wrote no record of this kind")
    return None


def _state_difference(mine: tuple[bytes, bytes] | None,
                      theirs: tuple[bytes, bytes] | None) -> Problem:
    """The first differing record of a merge: the smaller key is the one missing or changed."""
    key = min(x[0] for x in (mine, theirs) if x is not None)
    want = mine[1] if mine is not None and mine[0] == key else None
    have = theirs[1] if theirs is not None and theirs[0] == key else None
    height = None
    value = want if want is not None else have
    if key[:1] == b"t" and value is not None and len(value) == 16:
        height = parse_index_value(value)[1]
    where, expected, found = record_difference(want, have)
    return Problem("store", f"stored record {key[:1].decode()}/{key[1:].hex()} differs from the "
                   f"replayed state{where}", height, expected=expected, found=found)


# -- --since: the state at the old checkpoint ------------------------------------------------------


def _prefix_root(src: _StoreSource | _ArchiveSource, size: int
                 ) -> tuple[int | None, int, bytes, str | None]:
    """(height of the block that reaches ``size`` or None, entries read, RFC 9162 root of them,
    the network the genesis transaction names or None if it does not parse).

    Reads entries up to the first block whose log size reaches ``size``; only leaf hashes are
    computed, and the genesis transaction parsed.
    """
    frontier = CompactRange()
    sink: dict[bytes, bytes] = {}
    network = None
    for rec in src.reread():
        if rec.height == 0 and rec.unverified_txs:
            with contextlib.suppress(DecodeError):  # the replay reports it
                network = Tx.from_bytes(rec.unverified_txs[0]).net
        for raw in rec.unverified_txs:
            frontier.append(merkle.leaf_hash(raw), sink)
            sink.clear()
        if frontier.size >= size:
            return rec.height, frontier.size, frontier.root(), network
    return None, frontier.size, frontier.root(), network


def _rebuild_to_since(report: AuditReport, src: _StoreSource | _ArchiveSource,
                      records: Iterator[BlockRecord], replayer: Replayer,
                      stored: _StoredRecords | None, folders: tuple[Path, ...],
                      approvals: Approvals, checker: SignatureChecker | None) -> bool:
    """Bring ``replayer`` to the block ending at the --since checkpoint's size, cheaply.

    First the old log is bound to the checkpoint: the RFC 9162 root of the first ``size``
    entries must be its root (else the log forked or the old part was changed: reported, the
    old part replayed in full only to find evidence of equivocation, :func:`_fork_evidence`,
    and nothing after it). Those bytes are then exactly the ones the earlier audit checked, so
    they are parsed strictly again and applied without signature or checkpoint checks, to
    rebuild the state the new blocks need (registry, tx index,
    credentials and status indexes, Merkle frontier, head); headers and stored records are still
    compared, which is cheap. The chain commits to no state, so that state cannot be taken from
    the store's records without this pass. The registry and block time of each block an
    evidence record names are kept here too: a decision committed after the checkpoint may have
    been evaluated at or before it.

    Returns True when the replayer stands at that block and the checkpoint is final there.
    """
    since = report.since
    if since is None:
        return True
    cp = since.checkpoint
    height, have, root, network = _prefix_root(src, cp.size)
    if network is not None and cp.origin != network:  # not "a fork", nor "no block ends"
        report.add_problem(Problem(
            "checkpoint", f"the --since checkpoint is of network {cp.origin!r}, not of this "
            f"chain's {network!r}: no audit of this chain gave it", expected=network,
            found=cp.origin))
        return False
    if have != cp.size:
        report.add_problem(Problem("checkpoint", f"no block ends at the --since "
                                       f"checkpoint's log size {cp.size}", height,
                                       expected=str(cp.size), found=f"log size {have}"))
        return False
    if root != cp.root:
        report.add_problem(Problem(
            "checkpoint", f"fork: the log's root at the --since checkpoint's size {cp.size} "
            "differs from it (the log forked, or its old part changed since that audit)",
            height, expected=cp.root.hex(), found=root.hex()))
        if height is not None:
            _fork_evidence(report, records, replayer, checker, height)
        return False
    released = 0
    for rec in records:
        light = BlockRecord(rec.height, rec.unverified_header, rec.unverified_txs, (),
                            rec.record)
        # Parsed strictly again (signatures are still not checked): the bytes hash to the
        # --since checkpoint's root, but that file is the caller's, not yet shown final, and a
        # file can change between two reads (the root at the old size is compared again at
        # that block). Tx.from_checked_bytes took an envelope that does not parse, or one no
        # strict parse accepts, and a KeyError ended the audit.
        checked: list[tuple[Tx, bool] | str] = [
            p if isinstance(p, str) else (p[0], True)
            for p in parse_envelopes(rec.unverified_txs)]
        if replayer.txs - released >= _RELEASE_EVERY:
            release_mapped_tables(folders)
            released = replayer.txs
        try:
            replayer.apply(light, checked, stored, compared=_COMPARED)
        except ReplayError as e:
            p = Problem.of(e)
            report.add_problem(Problem(p.kind, "before the --since checkpoint: " + p.reason,
                                           p.height, p.tx_index, p.txid, p.record, p.expected,
                                           p.found))
            return False
        if not _genesis_seen(report, replayer):
            return False
        approvals.block_done(rec.height, replayer.store.registry, replayer.store.head)
        if _at_since(report, replayer):
            if report.since_height is None:
                return False
            report.blocks_total = max(0, report.blocks_total - rec.height - 1)
            return True
    report.add_problem(Problem("checkpoint", f"no block ends at the --since checkpoint's "
                                   f"log size {cp.size}", expected=str(cp.size), found=None))
    return False


def _genesis_seen(report: AuditReport, replayer: Replayer) -> bool:
    """Note block 0's hash once it is replayed; False (a finding) if the auditor pinned
    another: a chain of its own genesis, agencies and checkpoints replays clean under any name,
    so only a pinned genesis tells the network's chain from another's (ADR 70)."""
    head = replayer.store.head
    if report.genesis is not None or head is None or head.height != 0:
        return True
    report.genesis = head.hash
    if report.pinned_genesis is not None and head.hash != report.pinned_genesis:
        report.add_problem(Problem(
            "genesis", "block 0 is not the genesis block given (--genesis): this is another "
            "network's chain, whatever its name; nothing after it was replayed", 0,
            expected=report.pinned_genesis.hex(), found=head.hash.hex()))
        return False
    return True


def _name_network(report: AuditReport, replayer: Replayer) -> None:
    """The network the replay before the --since checkpoint read, when it stopped there."""
    if report.network is None and replayer.store.registry is not None:
        report.network = replayer.store.registry.network


def _fork_evidence(report: AuditReport, records: Iterator[BlockRecord], replayer: Replayer,
                   checker: SignatureChecker | None, height: int) -> None:
    """The --since checkpoint and the chain's own final checkpoint at its size, if they are
    both final there: two roots for one size, listed among the equivocations.

    The old part is not the log the earlier audit checked, so it is replayed in full up to
    ``height`` (signatures, rules, checkpoints) for the registry the two are judged by: a
    checkpoint final under a registry the replay did not establish is no evidence. A break in
    that part is reported too; a --since checkpoint that is not final there (another registry,
    or its lines changed), or a chain with no final checkpoint at that size, leaves the fork
    alone."""
    since = report.since
    if since is None:
        return
    at: BlockRecord | None = None
    for rec, checked in _prechecked(records, replayer, checker):
        try:
            replayer.apply(rec, checked)
        except ReplayError as e:
            if e.kind != "checkpoint":  # a chain checkpoint that is not final is no evidence
                p = Problem.of(e)
                report.add_problem(Problem(
                    p.kind, "before the --since checkpoint: " + p.reason, p.height, p.tx_index,
                    p.txid, p.record, p.expected, p.found))
                return
        if rec.height >= height:
            at = rec
            break
    registry, head = replayer.store.registry, replayer.store.head
    if at is None or registry is None or head is None or \
            head.log_size != since.checkpoint.size:
        return
    try:
        verify_final(since, registry, head.time)
    except CheckpointError:
        return
    verifiers = checkpoint_verifiers(registry, head.time)
    for text in at.unverified_checkpoints:
        try:
            ours = SignedCheckpoint.from_text(text)
            verify_final(ours, registry, head.time)
            found = find_equivocation(since, ours, verifiers)
        except CheckpointError:
            continue
        if found is not None:
            report.add_equivocation(found)
            return


def _at_since(report: AuditReport, replayer: Replayer) -> bool:
    """At the block ending at ``since``'s size: check it is final, the log's root there and
    the block it names.

    Returns False before that block. At it, sets ``since_height`` unless the roots or blocks
    differ (a fork, reported); a checkpoint that is not final is reported and the audit goes
    on. Only a final one is the report's verified ``checkpoint`` (until a newer one replaces
    it): one short of its quorum attests nothing.
    """
    since, head, registry = report.since, replayer.store.head, replayer.store.registry
    if since is None or head is None or registry is None:
        return False
    cp = since.checkpoint
    if head.log_size < cp.size:
        return False
    if head.log_size > cp.size:  # the block straddles the old size
        report.add_problem(Problem("checkpoint", "no block ends at the --since "
                                       f"checkpoint's log size {cp.size}", head.height,
                                       expected=str(cp.size), found=str(head.log_size)))
        return True
    final = True
    try:
        verify_final(since, registry, head.time)
    except CheckpointError as e:
        final = False
        report.add_problem(Problem("checkpoint", f"the --since checkpoint is not final: "
                                       f"{e}", head.height))
    if head.log_root != cp.root:
        report.add_problem(Problem(
            "checkpoint", f"fork: the log's root at the --since checkpoint's size {cp.size} "
            "differs from it", head.height, expected=cp.root.hex(), found=head.log_root.hex()))
        return True
    # The root binds the old log, the block line how it was grouped into blocks (ADR 60): the
    # same entries regrouped since that audit keep the root and end in another block.
    try:
        named = checkpoint_block(cp)
    except CheckpointError as e:
        report.add_problem(Problem("checkpoint", f"the --since checkpoint: {e}",
                                       head.height, expected=f"block {head.height} "
                                       f"{head.hash.hex()}"))
        return True
    if named != (head.height, head.hash):
        report.add_problem(Problem(
            "checkpoint", f"fork: the block ending at the --since checkpoint's size {cp.size} "
            "is not the one it names (the old part was grouped into other blocks since that "
            "audit)", head.height, expected=f"block {named[0]} {named[1].hex()}",
            found=f"block {head.height} {head.hash.hex()}"))
        return True
    report.since_height = head.height
    if final:
        report.checkpoint = since.to_text()  # newer verified ones replace it
    return True


def _since_consistent(report: AuditReport, src: _StoreSource | _ArchiveSource) -> None:
    """The --since checkpoint must be consistent with the head (RFC 9162 proof).

    From a store, the proof is built from its stored Merkle nodes (what the node serves to
    monitors) and verified against the checkpoint's root and the replayed head root. An archive
    holds no nodes: there both roots came out of one replay of one leaf sequence.
    """
    since, head = report.since, report.head
    if since is None or head is None or not isinstance(src, _StoreSource):
        return
    cp = since.checkpoint
    try:
        proof = stored_consistency_proof(src.get, cp.size, head.log_size)
        merkle.verify_consistency(cp.size, head.log_size, cp.root, head.log_root, proof)
    except (ProofError, StoreError) as e:
        report.complete = False
        report.add_problem(Problem(
            "checkpoint", f"the --since checkpoint is not consistent with the head: {e}",
            head.height, expected=cp.root.hex(), found=None))


def _finish(report: AuditReport, src: _StoreSource | _ArchiveSource,
            replayer: Replayer) -> None:
    head = replayer.store.head
    if head is None:
        report.add_problem(Problem("archive" if isinstance(src, _ArchiveSource) else
                                       "store", "no block at all"))
        return
    if isinstance(src, _StoreSource):
        stored = src.get(head_key)
        if stored != head.to_bytes():
            found = "missing"
            if stored is not None:
                try:
                    h = Head.from_bytes(stored)
                    found = f"height {h.height} hash {h.hash.hex()}"
                except DecodeError as e:
                    found = f"undecodable ({e})"
            report.add_problem(Problem(
                "store", "the head pointer differs from the replayed head", head.height,
                expected=f"height {head.height} hash {head.hash.hex()}", found=found))
            return
        extra = src.get(block_key(head.height + 1))
        if extra is not None:  # the key iterator saw it; kept as a guard against races
            report.add_problem(Problem("store", "a block beyond the head", head.height + 1))
            return
        if src.get(entry_key(head.log_size)) is not None:
            report.add_problem(Problem("store", "a log entry beyond the head",
                                           head.height, expected=str(head.log_size),
                                           found=str(head.log_size + 1)))
            return
    elif report.network is not None and src.network() != report.network:
        report.add_problem(Problem("archive", "the archive header names another network",
                                       record=0, expected=report.network,
                                       found=src.network()))
        return
    if isinstance(src, _ArchiveSource) and src.log_size() != head.log_size:
        report.add_problem(Problem("archive", "the archive header's log size differs from "
                                       "the replayed log (a block cut off, or a forged count)",
                                       head.height, record=0, expected=str(head.log_size),
                                       found=str(src.log_size())))
        return
    report.complete = True


def _equivocations(report: AuditReport, replayer: Replayer, rec: BlockRecord,
                   by_size: dict[int, list[SignedCheckpoint]]) -> None:
    """Pairs of validly signed checkpoints of one size that differ (roots or block lines).

    A block record carries the checkpoints for its own log size, so sizes the log has passed
    are dropped after each block (memory stays flat); a stray checkpoint of another size is
    reported by the replay and compared only with those still held. Only a checkpoint that a
    key in force signed is held (no other is evidence: :func:`find_equivocation`), and one
    body once: a size the log never reaches is held to the end, and unsigned or repeated ones
    in every block record grew the auditor's memory with the chain.
    """
    registry, head = replayer.store.registry, replayer.store.head
    if registry is None or head is None:
        return
    if rec.unverified_checkpoints:
        verifiers = checkpoint_verifiers(registry, head.time)
        for text in rec.unverified_checkpoints:
            try:
                signed = node_lines(SignedCheckpoint.from_text(text))  # held: no junk
                if not signed.signers(verifiers):
                    continue  # no evidence of anything (the replay reports it)
            except CheckpointError:
                continue  # reported by the replay
            seen = by_size.setdefault(signed.checkpoint.size, [])
            if any(other.checkpoint == signed.checkpoint for other in seen):
                continue  # the same body: no new evidence
            for other in seen:
                try:
                    found = find_equivocation(other, signed, verifiers)
                except CheckpointError:
                    continue
                if found is not None:
                    report.add_equivocation(found)
            seen.append(signed)
    for size in [s for s in by_size if s < head.log_size]:
        del by_size[size]


# -- signature checks ahead of the replay ------------------------------------------------------


_CHUNK = 500
"""Envelopes per worker task: small blocks are grouped, large ones split."""
_AHEAD = 6
"""Tasks in flight per worker while the replay catches up."""


class _Batch:
    __slots__ = ("fut", "raws")

    def __init__(self) -> None:
        self.raws: list[bytes] = []
        self.fut: Checking[list[bool | str]] | None = None


def _prechecked(records: Iterator[BlockRecord], replayer: Replayer,
                checker: SignatureChecker | None
                ) -> Iterator[tuple[BlockRecord, list[tuple[Tx, bool] | str] | None]]:
    """Each record with its envelopes pre-checked by ``checker``, a few thousand ahead.

    Envelopes go to the workers in tasks of :data:`_CHUNK`, keyed by every key the replayed
    registries have named so far (a ``True`` needs only kid = hash of key, so a superset is
    sound; a key added by a block still in the window is checked by the state machine itself).
    Until the genesis is replayed there is no key at all, so block 0 goes through unchecked.
    """
    if checker is None:
        for rec in records:
            yield rec, None
        return
    pending: deque[tuple[BlockRecord, list[tuple[_Batch, int, int]]]] = deque()
    known: dict[bytes, bytes] = {}
    seen_registry: list[Registry | None] = [None]
    batch = _Batch()
    queued = 0
    limit = max(1, checker.workers) * _CHUNK * _AHEAD

    def submit(b: _Batch) -> None:
        reg = replayer.registry
        if reg is not None and reg is not seen_registry[0]:
            known.update((kid, k.raw) for kid, k in reg.public_keys.items())
            seen_registry[0] = reg
        assert checker is not None
        b.fut = checker.submit(b.raws, known)

    def collect(rec: BlockRecord, slices: list[tuple[_Batch, int, int]]
                ) -> tuple[BlockRecord, list[tuple[Tx, bool] | str]]:
        nonlocal batch
        out: list[tuple[Tx, bool] | str] = []
        for b, lo, hi in slices:
            if b.fut is None:  # the batch still filling: send it as it is
                submit(b)
                if b is batch:
                    batch = _Batch()
            assert b.fut is not None
            verdicts = b.fut.result()
            for raw, got in zip(b.raws[lo:hi], verdicts[lo:hi], strict=True):
                out.append(got if isinstance(got, str) else (Tx.from_checked_bytes(raw), got))
        return rec, out

    for rec in records:
        if replayer.registry is None and not pending:
            yield rec, None  # the genesis: no key to check against yet
            continue
        slices: list[tuple[_Batch, int, int]] = []
        txs = rec.unverified_txs
        i = 0
        while i < len(txs):
            take = min(_CHUNK - len(batch.raws), len(txs) - i)
            slices.append((batch, len(batch.raws), len(batch.raws) + take))
            batch.raws.extend(txs[i:i + take])
            i += take
            if len(batch.raws) >= _CHUNK:
                submit(batch)
                batch = _Batch()
        pending.append((rec, slices))
        queued += len(txs)
        while pending and queued > limit:
            done = pending.popleft()
            queued -= len(done[0].unverified_txs)
            yield collect(*done)
    while pending:
        yield collect(*pending.popleft())


# -- signed statements -------------------------------------------------------------------------


def _statement_body(report: AuditReport, auditor: PublicKey) -> dict[str, Any]:
    # v2 (ADR 70) names the chain itself: its genesis, its head and how much of it a final
    # checkpoint covers. A v1 statement bound no block past its checkpoint, and nothing at all
    # without one: another tail of the network with the same counts matched it.
    head = report.head
    return {"v": 2, "kind": "audit-statement", "network": report.network or "",
            "checkpoint": report.checkpoint or "", "report_sha256": report.digest(),
            "clean": report.clean, "blocks": report.blocks_checked,
            "txs": report.txs_checked, "audited_at": report.audited_at,
            "auditor": auditor.raw, "genesis": report.genesis or b"",
            "head": b"" if head is None else head.hash,
            "head_height": -1 if head is None else head.height,
            "log_size": 0 if head is None else head.log_size,
            "attested_size": report.attested_size}


def sign_statement(report: AuditReport, auditor_key: PrivateKey) -> bytes:
    """Canonical bytes of ``{"statement": {...}, "sig": Ed25519 over the statement, "audit"}``."""
    body = _statement_body(report, auditor_key.public)
    return codec.encode({"statement": body, "sig": auditor_key.sign("audit",
                                                                   codec.encode(body))})


def verify_statement(unverified: bytes, auditor_public: PublicKey) -> dict[str, Any]:
    """Check a statement's signature by ``auditor_public``; return its fields (JSON-friendly).

    Raises DecodeError (malformed) or SignatureError (another auditor, or a bad signature).
    """
    f = codec.Fields(codec.decode(unverified, max_size=1 << 16, what="statement"), "statement")
    body = f.raw_map("statement")
    sig = f.bytes("sig", size=64)
    f.done()
    b = codec.Fields(body, "statement.statement")
    v = b.version(2, "audit statement")
    b.str("kind", choices=frozenset({"audit-statement"}))
    out: dict[str, Any] = {
        "v": v, "network": b.str("network", max_len=64),
        "checkpoint": b.str("checkpoint", max_len=1 << 14),
        "report_sha256": b.bytes("report_sha256", size=32).hex(),
        "clean": b.bool("clean"), "blocks": b.int("blocks", lo=0),
        "txs": b.int("txs", lo=0), "audited_at": b.int("audited_at", lo=0)}
    auditor = b.bytes("auditor", size=32)
    if v >= 2:  # the chain itself (ADR 70); a v1 statement names none of it
        genesis, head = b.bytes("genesis", max_len=32), b.bytes("head", max_len=32)
        if len(genesis) not in (0, 32) or len(head) not in (0, 32):
            raise DecodeError("a genesis or head hash is 32 bytes (or none)", "statement")
        out |= {"genesis": genesis.hex() or None, "head": head.hex() or None,
                "head_height": b.int("head_height", lo=-1),
                "log_size": b.int("log_size", lo=0),
                "attested_size": b.int("attested_size", lo=0)}
    b.done()
    if auditor != auditor_public.raw:
        raise SignatureError(f"the statement names auditor public key {auditor.hex()}, not "
                             f"{auditor_public.raw.hex()}")
    auditor_public.verify("audit", codec.encode(body), sig)
    out["auditor"] = auditor_public.raw.hex()  # the public key the checker was given
    out["auditor_kid"] = auditor_public.kid.hex()
    return out
