"""The auditor: replay a chain from genesis and report the first thing that is broken.

:func:`audit` reads a store (a node's data folder or its LevelDB store, read raw: it trusts
neither the head pointer nor any derived record) or an archive (:mod:`ledger.archive`), and
replays every block into a scratch store with :class:`ledger.archive.Replayer`: each block is
rebuilt from its transactions (every signature, every registry rule as of its height, the hash
link, every header field, the Merkle root) and must equal the recorded header byte for byte; each
stored checkpoint must be for the replayed tree head and final (quorum of the agencies in force at
that height). From a store, the derived records the replay writes (log entries, tx index, Merkle
nodes, registry versions) must also equal the stored ones, and so must the head pointer.
Two validly signed checkpoints of one size with different roots are reported as equivocation.

The chain is replayed until the first broken block or transaction (later blocks build on it, so
nothing after it can be checked); a checkpoint that is not final is reported and the replay goes
on. Signatures can be pre-checked in worker processes (``workers``, :mod:`ledger.sigcheck`).

An incremental audit (``since``: an earlier audited checkpoint) reports only the blocks after
the block whose log size equals that checkpoint's size. The replayer can only start from an empty
store, so the blocks up to that height are replayed silently (still fully checked: a problem there
is reported, but they count in no statistic); at that height the old checkpoint must be final
under the registry in force there (block time) and its root must equal the replayed root, else
the log forked (expected: the old checkpoint's root, found: the log's root). After the replay the
old checkpoint must be consistent with the head: an RFC 9162 consistency proof from the replayed
store (:meth:`ledger.store.Store.consistency_proof`) is checked with
:func:`ledger.merkle.verify_consistency`.

A report can be attested: :func:`sign_statement` signs (domain ``audit``) the latest verified
checkpoint text and the SHA-256 of the report's canonical JSON (:meth:`AuditReport.digest`:
``json.dumps(report.to_json(), sort_keys=True, separators=(",", ":"))`` in UTF-8).

Errors::

    LedgerError
    └── AuditError   the source cannot be read at all (not a store nor an archive, locked,
                     missing). A source that reads but does not verify is not an error: it is
                     a report with ``clean`` False.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections import Counter, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import plyvel

from ledger import codec, merkle
from ledger.archive import (
    ArchiveError,
    BlockRecord,
    Replayer,
    ReplayError,
    read_archive,
)
from ledger.block import BlockHeader
from ledger.chain import Head, block_key, checkpoint_key, entry_key, head_key
from ledger.checkpoint import Equivocation, SignedCheckpoint, find_equivocation
from ledger.errors import (
    CheckpointError,
    DecodeError,
    LedgerError,
    ProofError,
    SignatureError,
    StoreError,
)
from ledger.finality import checkpoint_verifiers, verify_final
from ledger.keys import PrivateKey, PublicKey
from ledger.sigcheck import SignatureChecker
from ledger.state import Registry
from ledger.store import Store
from ledger.tx import Tx

__all__ = ["AuditError", "AuditReport", "Problem", "audit", "sign_statement",
           "verify_statement"]

Progress = Callable[[int, int, int], None]
"""``progress(blocks_done, blocks_total, txs_done)``."""

_WINDOW = 16
"""Blocks whose signatures are being checked ahead of the replay."""


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
            "audited_at": self.audited_at,
            "blocks_total": self.blocks_total,
            "blocks_checked": self.blocks_checked,
            "txs_checked": self.txs_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "head": head,
            "checkpoint": self.checkpoint,
            "tx_types": dict(sorted(self.tx_types.items())),
            "agencies": dict(sorted(self.agencies.items())),
            "first_broken": None if first is None else first.to_json(),
            "problems": [p.to_json() for p in self.problems],
            "equivocations": [e.to_dict() for e in self.equivocations],
        } | ({} if self.since is None else {"since": {
            "size": self.since.checkpoint.size, "root": self.since.checkpoint.root.hex(),
            "height": self.since_height}})

    def digest(self) -> bytes:
        """SHA-256 of the canonical JSON of :meth:`to_json` (sorted keys, no spaces, UTF-8)."""
        text = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)
        return hashlib.sha256(text.encode()).digest()


# -- sources -----------------------------------------------------------------------------------


class _StoreSource:
    """A LevelDB store read raw: block records follow the stored headers, not the head pointer."""

    def __init__(self, path: Path) -> None:
        if not (path / "CURRENT").exists() and (path / "ledger" / "CURRENT").exists():
            path = path / "ledger"
        if not (path / "CURRENT").exists():
            raise AuditError(f"{path} is neither a ledger store nor a node's data folder")
        try:
            self._db = plyvel.DB(str(path), create_if_missing=False)
        except plyvel.Error as e:
            raise AuditError(f"cannot open the store at {path}: {e}") from e
        self.path = path

    def close(self) -> None:
        self._db.close()

    def get(self, key: bytes) -> bytes | None:
        v = self._db.get(key)
        return None if v is None else bytes(v)

    def total(self) -> int:
        return sum(1 for _ in self._db.iterator(prefix=b"b", include_value=False))

    def network(self) -> str | None:
        return None

    def blocks(self) -> Iterator[BlockRecord]:
        size = 0
        for n, (key, raw) in enumerate(self._db.iterator(prefix=b"b")):
            height = int.from_bytes(key[1:], "big") if len(key) == 9 else -1
            if height != n:
                raise ArchiveError(f"stored block keys are not 0, 1, 2, …: found {key.hex()} "
                                   f"at position {n}", height=n)
            try:
                count = BlockHeader.from_bytes(bytes(raw)).tx_count
            except DecodeError:
                count = 0  # the replay reports the undecodable header
            entries = []
            for i in range(size, size + count):
                e = self.get(entry_key(i))
                if e is None:
                    break
                entries.append(e)
            size += count
            cp = self.get(checkpoint_key(size))
            yield BlockRecord(height, bytes(raw), tuple(entries), () if cp is None else (cp,))


class _ArchiveSource:
    def __init__(self, path: Path) -> None:
        try:
            self._f = path.open("rb")
        except OSError as e:
            raise AuditError(f"cannot read the archive {path}: {e.strerror or e}") from e
        try:
            self._header, self._blocks = read_archive(self._f)
        except ArchiveError as e:
            self._f.close()
            raise AuditError(f"{path} is not a readable archive: {e}") from e
        self.path = path

    def close(self) -> None:
        self._f.close()

    def total(self) -> int:
        return self._header.blocks

    def network(self) -> str | None:
        return self._header.network

    def blocks(self) -> Iterator[BlockRecord]:
        return self._blocks


# -- the audit ---------------------------------------------------------------------------------


def audit(source: Path | str, *, now: int, progress: Progress | None = None,
          workers: int = 0, since: SignedCheckpoint | None = None) -> AuditReport:
    """Replay ``source`` (a store / data folder, or an archive file) and report on it.

    ``now`` is the audit time written into the report; ``workers`` > 0 pre-checks signatures in
    that many processes; ``since`` (an earlier audited checkpoint) limits the report to the blocks
    after it (see the module docstring). Raises :class:`AuditError` only if the source cannot be
    read at all.
    """
    path = Path(source)
    src: _StoreSource | _ArchiveSource
    if path.is_dir():
        src = _StoreSource(path)
        kind = "store"
    elif path.is_file():
        src = _ArchiveSource(path)
        kind = "archive"
    else:
        raise AuditError(f"{path} does not exist")
    report = AuditReport(kind, str(path), now, network=src.network(), since=since)
    checker = SignatureChecker(workers) if workers > 0 else None
    try:
        report.blocks_total = src.total()
        with tempfile.TemporaryDirectory(prefix="credledger-audit-") as scratch, \
                Store(Path(scratch) / "replay") as store:
            _run(report, src, Replayer(store), checker, progress)
    finally:
        if checker is not None:
            checker.close()
        src.close()
    return report


def _agencies_of(tx: Tx, registry: Registry) -> set[str]:
    out = set()
    for s in tx.sigs:
        k = registry.key(s.kid)
        if k is not None:
            out.add(str(k["agency"]))
    return out


def _run(report: AuditReport, src: _StoreSource | _ArchiveSource, replayer: Replayer,
         checker: SignatureChecker | None, progress: Progress | None) -> None:
    def count(tx: Tx, registry: Registry) -> None:
        report.tx_types[tx.type] += 1
        for agency in _agencies_of(tx, registry):
            report.agencies[agency] += 1

    silent = report.since is not None  # replaying the already audited prefix

    def on_tx(tx: Tx, registry: Registry) -> None:
        if not silent:
            count(tx, registry)

    replayer.on_tx = on_tx
    compare = src.get if isinstance(src, _StoreSource) else None
    by_size: dict[int, list[SignedCheckpoint]] = {}
    base_txs = n_checkpoints = 0
    try:
        for rec, checked in _prechecked(src.blocks(), replayer, checker):
            try:
                replayer.apply(rec, checked, compare)
            except ReplayError as e:
                report.problems.append(Problem.of(e))
                if e.kind != "checkpoint":
                    return
            _equivocations(report, replayer, rec, by_size)
            if silent:
                if not _at_since(report, replayer):
                    continue
                if report.since_height is None:  # a fork at the old size: nothing to build on
                    return
                silent, base_txs = False, replayer.txs
                n_checkpoints = len(replayer.checkpoints)
                report.blocks_total = max(0, report.blocks_total - rec.height - 1)
                continue
            first = 0 if report.since_height is None else report.since_height + 1
            report.blocks_checked = rec.height + 1 - first
            report.txs_checked = replayer.txs - base_txs
            if progress is not None:
                progress(report.blocks_checked, report.blocks_total, report.txs_checked)
    except ArchiveError as e:
        report.problems.append(Problem.of(e))
        return
    finally:
        store = replayer.store
        report.head = store.head
        if store.registry is not None:
            report.network = store.registry.network
        report.checkpoints_checked = 0 if silent else len(replayer.checkpoints) - n_checkpoints
        if replayer.checkpoints:
            report.checkpoint = replayer.checkpoints[-1][1].to_text()
    if silent and report.since is not None:
        size = report.since.checkpoint.size
        report.problems.append(Problem("checkpoint", f"no block ends at the --since "
                                       f"checkpoint's log size {size}",
                                       expected=str(size), found=None if store.head is None
                                       else f"head log size {store.head.log_size}"))
        return
    _finish(report, src, replayer)
    if report.complete:
        _since_consistent(report, replayer.store)


def _at_since(report: AuditReport, replayer: Replayer) -> bool:
    """At the block ending at ``since``'s size: check it is final and the log's root there.

    Returns False before that block. At it, sets ``since_height`` unless the roots differ (a
    fork, reported); a checkpoint that is not final is reported and the audit goes on.
    """
    since, head, registry = report.since, replayer.store.head, replayer.store.registry
    if since is None or head is None or registry is None:
        return False
    cp = since.checkpoint
    if head.log_size < cp.size:
        return False
    if head.log_size > cp.size:  # the block straddles the old size
        report.problems.append(Problem("checkpoint", "no block ends at the --since "
                                       f"checkpoint's log size {cp.size}", head.height,
                                       expected=str(cp.size), found=str(head.log_size)))
        return True
    try:
        verify_final(since, registry, head.time)
    except CheckpointError as e:
        report.problems.append(Problem("checkpoint", f"the --since checkpoint is not final: "
                                       f"{e}", head.height))
    if head.log_root != cp.root:
        report.problems.append(Problem(
            "checkpoint", f"fork: the log's root at the --since checkpoint's size {cp.size} "
            "differs from it", head.height, expected=cp.root.hex(), found=head.log_root.hex()))
        return True
    report.since_height = head.height
    return True


def _since_consistent(report: AuditReport, store: Store) -> None:
    """The --since checkpoint must be consistent with the head (RFC 9162 proof)."""
    since, head = report.since, store.head
    if since is None or head is None:
        return
    cp = since.checkpoint
    try:
        proof = store.consistency_proof(cp.size, head.log_size)
        merkle.verify_consistency(cp.size, head.log_size, cp.root, head.log_root, proof)
    except (ProofError, StoreError) as e:
        report.complete = False
        report.problems.append(Problem(
            "checkpoint", f"the --since checkpoint is not consistent with the head: {e}",
            head.height, expected=cp.root.hex(),
            found=store.root_at(cp.size).hex() if 1 <= cp.size <= head.log_size else None))


def _finish(report: AuditReport, src: _StoreSource | _ArchiveSource,
            replayer: Replayer) -> None:
    head = replayer.store.head
    if head is None:
        report.problems.append(Problem("archive" if isinstance(src, _ArchiveSource) else
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
            report.problems.append(Problem(
                "store", "the head pointer differs from the replayed head", head.height,
                expected=f"height {head.height} hash {head.hash.hex()}", found=found))
            return
        extra = src.get(block_key(head.height + 1))
        if extra is not None:  # the key iterator saw it; kept as a guard against races
            report.problems.append(Problem("store", "a block beyond the head", head.height + 1))
            return
    elif report.network is not None and src.network() != report.network:
        report.problems.append(Problem("archive", "the archive header names another network",
                                       record=0, expected=report.network,
                                       found=src.network()))
        return
    report.complete = True


def _equivocations(report: AuditReport, replayer: Replayer, rec: BlockRecord,
                   by_size: dict[int, list[SignedCheckpoint]]) -> None:
    """Pairs of validly signed checkpoints of one size with different roots."""
    registry, head = replayer.store.registry, replayer.store.head
    if registry is None or head is None:
        return
    verifiers = checkpoint_verifiers(registry, head.time)
    for text in rec.unverified_checkpoints:
        try:
            signed = SignedCheckpoint.from_text(text)
        except CheckpointError:
            continue  # reported by the replay
        seen = by_size.setdefault(signed.checkpoint.size, [])
        for other in seen:
            try:
                found = find_equivocation(other, signed, verifiers)
            except CheckpointError:
                continue
            if found is not None:
                report.equivocations.append(found)
        seen.append(signed)


def _prechecked(records: Iterator[BlockRecord], replayer: Replayer,
                checker: SignatureChecker | None
                ) -> Iterator[tuple[BlockRecord, list[tuple[Tx, bool] | str] | None]]:
    """Each record with its envelopes pre-checked by ``checker`` (a few blocks ahead)."""
    if checker is None:
        for rec in records:
            yield rec, None
        return
    pending: deque[tuple[BlockRecord, Future[list[bool | str]]]] = deque()

    def keys() -> dict[bytes, bytes]:
        reg = replayer.store.registry
        return {} if reg is None else {kid: k.raw for kid, k in reg.public_keys.items()}

    for rec in records:
        pending.append((rec, checker.submit(rec.unverified_txs, keys())))
        if len(pending) >= _WINDOW:
            yield _collect(*pending.popleft())
    while pending:
        yield _collect(*pending.popleft())


def _collect(rec: BlockRecord, fut: Future[list[bool | str]]
             ) -> tuple[BlockRecord, list[tuple[Tx, bool] | str]]:
    out: list[tuple[Tx, bool] | str] = []
    for raw, got in zip(rec.unverified_txs, fut.result(), strict=True):
        out.append(got if isinstance(got, str) else (Tx.from_checked_bytes(raw), got))
    return rec, out


# -- signed statements -------------------------------------------------------------------------


def _statement_body(report: AuditReport, auditor: PublicKey) -> dict[str, Any]:
    return {"v": 1, "kind": "audit-statement", "network": report.network or "",
            "checkpoint": report.checkpoint or "", "report_sha256": report.digest(),
            "clean": report.clean, "blocks": report.blocks_checked,
            "txs": report.txs_checked, "audited_at": report.audited_at,
            "auditor": auditor.raw}


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
    b.int("v", lo=1, hi=1)
    b.str("kind", choices=frozenset({"audit-statement"}))
    out = {"network": b.str("network", max_len=64),
           "checkpoint": b.str("checkpoint", max_len=1 << 14),
           "report_sha256": b.bytes("report_sha256", size=32).hex(),
           "clean": b.bool("clean"), "blocks": b.int("blocks", lo=0),
           "txs": b.int("txs", lo=0), "audited_at": b.int("audited_at", lo=0)}
    auditor = b.bytes("auditor", size=32)
    b.done()
    if auditor != auditor_public.raw:
        raise SignatureError(f"the statement names auditor key {PublicKey(auditor).kid.hex()[:16]}"
                             f", not {auditor_public.kid.hex()[:16]}")
    auditor_public.verify("audit", codec.encode(body), sig)
    out["auditor"] = auditor_public.kid.hex()
    return out
