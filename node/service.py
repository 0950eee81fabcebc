"""The agency node's domain service: one store, one solo orderer, the keys this node holds.

Pure of HTTP: the FastAPI routes (``node.api``) and pages (``node.pages``) call these methods and
map :class:`~ledger.errors.LedgerError` subclasses to status codes in one place. Time is the
``clock`` parameter; randomness for nonces and status indexes comes from ``secrets``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import itertools
import logging
import queue
import secrets
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import contracts
from contracts.catalogue import IDENTITY
from contracts.credit import secret_fingerprint
from ledger import codec, sdjwt
from ledger.chain import Head, checkpoint_key
from ledger.checkpoint import SignedCheckpoint, vkey
from ledger.credentials import (
    STATUS_LIST_SIZE,
    check_identifiers,
    draw_status_index,
    issue_credential,
    status_list_uri,
    status_lists_in_order,
)
from ledger.errors import (
    CheckpointError,
    DecodeError,
    KeyFileError,
    LedgerError,
    OrderingError,
    StoreError,
    TxRejected,
)
from ledger.files import read_capped
from ledger.finality import checkpoint_verifiers, sign_checkpoint, verify_final
from ledger.foreign import TrustList, verify_foreign
from ledger.keys import PrivateKey, load_private_key, open_secret
from ledger.offline import StatusListCache, export_snapshot
from ledger.ordering import Pending, Receipt, SoloOrderer
from ledger.presentation import (
    Bundle,
    Report,
    Request,
    Verifier,
    bundle_from_store,
    with_implied_claims,
)
from ledger.sealed import load_evidence_key
from ledger.state import Registry, index_key
from ledger.statuslist import DEFAULT_SKEW, StatusList, make_token
from ledger.store import Store, damaged
from ledger.timetext import utc_text
from ledger.tx import Tx
from node.etcdlog import EtcdLog, TlsFiles
from node.replication import SYNC_REPLY_BYTES, EtcdOrderer, Unconfirmed

__all__ = ["Node", "NotFound", "PendingRequest", "Replication"]

REQUEST_TTL = 600
"""Seconds a presentation request (its nonce) stays open."""
SYNC_SERVING = 2
"""Catch-up replies (``/v1/sync/*``) a node prepares at once; more get 503 (Busy)."""
MAX_OPEN_REQUESTS = 50_000
"""Open presentation requests kept at most (~20 MiB); past it the oldest open one is dropped."""
_UNSETTLED = 10_000
"""Submissions kept after their request's wait ran out, for ``GET /v1/tx/{id}/receipt``."""
_SETTLING = 1.0
"""Seconds a submission found committed after its wait may take to settle (see ``_not_yet``)."""


log = logging.getLogger("node.service")


class NotFound(LedgerError):
    """The thing asked for does not exist (no such block, transaction, list, request)."""


class Busy(LedgerError):
    """The node is already doing this for someone else and does it once at a time."""

    retry_after = 5
    """What a refused client is told to wait (HTTP ``Retry-After``): a peer's catch-up reply
    or an archive's turn frees within moments, and the client is told when to come back."""

    taken = False


CREDIT_SECRET_FILE = "credit.secret"  # noqa: S105 - a file name
"""The network's credit secret (keyed pseudonyms of credit subjects) in a node's keys folder."""
CREDIT_SECRET = "credit-secret"  # noqa: S105 - the label of the sealed file, not a secret


def read_credit_secret(path: Path, passphrase: bytes) -> bytes | None:
    """The credit secret in ``path``, sealed as key files are (ADR 46); a clear file from before
    is still read. None when there is no such file (a node that keeps no credit records)."""
    try:
        blob = read_capped(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise KeyFileError(f"cannot read {path}: {e.strerror or e}") from e
    # A clear secret written before ADR 46 is 32 random bytes (16 to 64 accepted); a sealed
    # file is longer (135 bytes or more), names its "kdf", and starts with a map whose first
    # key is "box". A sealed one must open, even cut short, else the node refuses to start
    # rather than key pseudonyms with damaged bytes. (The map's first byte alone, 0x80..0x8f,
    # does not tell: one clear secret in 16 starts so. ADR 50.)
    if len(blob) > 64 or b"kdf" in blob or blob[1:5] == b"\xa3box":
        return open_secret(blob, passphrase, CREDIT_SECRET, path)
    if not 16 <= len(blob) <= 64:
        raise KeyFileError(f"{path} is neither a sealed credit secret nor a clear one from "
                           f"before (16 to 64 bytes; it has {len(blob)})")
    return blob


_BUSY_ARCHIVE = "this node is already sending its chain to someone; retry in a while"
TOKEN_REUSE = 60
"""Seconds a Status List Token is served again while its list is unchanged (its ``ttl`` is
300): a list of a million entries takes milliseconds to compress and sign."""
TOKEN_LIFETIME = 3600
"""Seconds from a Status List Token's ``iat`` to its ``exp``."""
TOKEN_TTL = 300
"""A Status List Token's ``ttl``: how long after its ``iat`` a verifier may rely on it (and
on this node's lists at its own desk, counted from when they were last known current)."""
EXPORT_IDLE = 60.0
"""Seconds an archive reader may take nothing before it loses its turn (``Node.archive``)."""


class _Stopped(Exception):
    """The reader of an archive went away: the export stops."""


class ArchiveStream:
    """The chunks of an archive being sent (an iterator), and its reader's turn, which
    :meth:`close` gives back at once: whoever serves it closes it when the reader goes, so the
    next reader need not wait until the collector finalizes the chunks' generator (a dropped
    TLS connection can keep it in a cycle for long: ADR 50)."""

    def __init__(self, chunks: Iterator[bytes], release: Callable[[], None]) -> None:
        self._chunks, self._release = chunks, release

    def __iter__(self) -> ArchiveStream:
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        self._release()
        # a thread may be inside the generator ("already executing"): it ends on its own,
        # now that the export was told to stop
        with contextlib.suppress(ValueError):
            self._chunks.close()  # type: ignore[attr-defined]


class _Chunks:
    """A file-like ``write`` target that hands 256 KiB chunks to a reader through a bounded
    queue (the exporting thread waits while the reader is slow; it stops once told to, or
    once the reader has taken nothing for ``idle`` seconds)."""

    def __init__(self, idle: float) -> None:
        self.queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self.stop = threading.Event()
        self.idle = idle
        self._buf = bytearray()

    def write(self, data: bytes) -> int:
        self._buf += data
        if len(self._buf) >= 256 << 10:
            self.put(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def put(self, item: bytes | BaseException | None) -> None:
        deadline = _time.monotonic() + self.idle
        while True:
            if self.stop.is_set():
                raise _Stopped
            try:
                self.queue.put(item, timeout=0.5)
                return
            except queue.Full:
                if _time.monotonic() > deadline:  # the reader is gone or stalled
                    self.stop.set()
                    raise _Stopped from None

    def close(self) -> None:
        if self._buf:
            self.put(bytes(self._buf))
        self.put(None)


DESK = "desk"
"""The purpose of a request opened at the verifier's desk (``POST /v1/presentation-requests``,
the desk's page): its answer is checked there and nowhere else."""
_NO_REQUEST = ("no open presentation request with this nonce (expired or used, or opened for "
               "another purpose: a desk's, a credit record's or an application's request is "
               "answered only there)")


@dataclass(frozen=True)
class PendingRequest:
    request: Request
    created: int  # wall-clock time, shown to the holder's wallet
    since: float  # the node's monotonic timer then: what the request's age counts from
    purpose: str = DESK  # where its answer counts: the desk, a credit record, an application

    def to_json(self) -> dict[str, Any]:
        return {**self.request.to_json(), "created": self.created,
                "expires": self.created + REQUEST_TTL}


@dataclass(frozen=True)
class Replication:
    """How a node joins a multi-agency network on etcd (see :mod:`node.replication`)."""

    endpoints: tuple[str, ...]
    peers: tuple[str, ...] = ()
    tls: TlsFiles | None = None
    retention: int = 1000
    max_batch: int = 2000


def _hex_mark(mark: object) -> str | None:
    """A peer's published credit fingerprint as hex: a str since ADR 52, bytes before."""
    if isinstance(mark, bytes):
        return mark.hex()
    return mark if isinstance(mark, str) else None


COMMIT_WAIT = 30.0
"""Seconds a request that submits a transaction (issue, status change, decision, credit event)
waits for its commit before it answers that it did not see one (the transaction may commit
yet)."""

FINAL_WAIT = 15.0
"""Seconds an issuance on a replicated node waits, after its commit, for a final checkpoint to
cover the anchor (the holder's bundle carries it)."""


def _stored_tx(raw: bytes, index: int) -> Tx:
    """Log entry ``index`` of this node's store, parsed: a damaged one is the store's 503, not
    the client's 400."""
    try:
        return Tx.from_bytes(raw)
    except DecodeError as e:
        raise StoreError(damaged(f"the stored log entry {index}", e)) from e


class Node:
    """An agency's node over its data folder (``<data>/ledger``, ``<data>/keys``)."""

    def __init__(self, data: Path, agency: str, passphrase: bytes, *,
                 clock: Callable[[], float] = _time.time, workers: int | None = None,
                 replication: Replication | None = None,
                 timer: Callable[[], float] = _time.monotonic,
                 zone: _dt.tzinfo = _dt.UTC) -> None:
        contracts.install()  # the state machine's rule engine (ADR 17)
        self.data = data
        self.agency = agency
        self.clock = clock
        self.zone = zone  # the calendar the agency counts days in (ADR 56)
        self.commit_wait = COMMIT_WAIT
        # Ages of open requests: a step of the wall clock (NTP, an operator) must neither
        # expire every open request nor keep them open for the length of the step (ADR 48).
        self.timer = timer
        self.store = Store(data / "ledger", create=False)
        # Every later step that fails (a wrong passphrase, a damaged key file, a signal, the
        # workers or etcd not starting) closes the store again: its LevelDB lock is held by this
        # process until closed, and a caller that goes on (a test, a retry) could not open it.
        try:
            registry = self._registry()
            # A node joining a replicated network may start before governance admitted its agency
            # (it learns that by catching up); a solo node must already be in its registry.
            if registry.agency(agency) is None and replication is None:
                raise LedgerError(f"agency {agency!r} is not in the registry of "
                                  f"{registry.network!r}")
            self.network = registry.network
            keys = data / "keys"
            self.issuer_key = load_private_key(keys / f"{agency}.issuer.key", passphrase)
            self.credit_secret = read_credit_secret(keys / CREDIT_SECRET_FILE, passphrase)
            # seals the approval records kept for auditors (claim values; ADR 66)
            self.evidence_key = load_evidence_key(keys, passphrase, data / "approvals")
            # its fingerprint, published with this node's position: peers compare theirs (ADR 51)
            self.credit_mark = None if self.credit_secret is None else secret_fingerprint(
                self.credit_secret)
            now = self.now()
            current = checkpoint_verifiers(registry, now)
            # Every node key file here (one per agency); a solo node signs each checkpoint with
            # those the registry counts at the block's time, so a key rotated out stops signing.
            self._node_key_files: dict[str, PrivateKey] = {}
            self.node_keys: dict[str, PrivateKey] = {}
            for path in sorted(keys.glob("*.node.key")):
                name = path.name.removesuffix(".node.key")
                key = load_private_key(path, passphrase)
                self._node_key_files[name] = key
                if current.get(name) == key.public or (replication is not None and name == agency):
                    self.node_keys[name] = key
            if agency not in self.node_keys:
                raise LedgerError(f"no current node key of {agency!r} in {keys}")
            self._requests: dict[str, PendingRequest] = {}
            self._sync_slots = threading.BoundedSemaphore(SYNC_SERVING)
            self._lists = StatusListCache(self.store)  # decoded lists, updated per block (ADR 23)
            self._status_list_from: dict[str, int] = {}  # type → the list issuance draws from
            self._verifier: Verifier | None = None
            self._lock = threading.Lock()
            self._tokens: dict[str, tuple[StatusList, int, PrivateKey, str]] = {}
            self._export_lock = threading.Lock()
            self._short: tuple[object, bool] = (None, False)  # (registry, ten seconds): short?
            self._checkpoint_checked: tuple[object, tuple[str, ...]] | None = None
            self._export: tuple[object, float] | None = None  # (reader, last progress)
            # Submissions that outlived their request's wait, so that GET …/receipt can still tell
            # a rejection from a transaction not ordered yet (bounded: the oldest are forgotten).
            self._unsettled: OrderedDict[bytes, Pending] = OrderedDict()
            self.replicated: EtcdOrderer | None = None
            self.orderer: SoloOrderer | EtcdOrderer
            if replication is None:
                self.orderer = SoloOrderer(self.store, clock=lambda: int(self.clock()),
                                           on_block=self._on_block, workers=workers)
                return
            tls = replication.tls
            etcd: EtcdLog | None = None
            try:
                etcd = EtcdLog(replication.endpoints, self.network, tls=tls, timer=self.timer)
                self.replicated = EtcdOrderer(
                    self.store, etcd, agency=agency, node_key=self.node_keys[agency],
                    clock=lambda: int(self.clock()), peers=replication.peers,
                    http_verify=tls if tls else True,
                    retention=replication.retention, max_batch=replication.max_batch,
                    workers=workers, credit_mark=self.credit_mark, timer=self.timer)
            except BaseException:
                if etcd is not None:  # its channels (and a watch once started) end with the start
                    etcd.close()
                raise
            self.orderer = self.replicated
        except BaseException:
            self.store.close()
            raise

    # -- lifecycle --
    def close(self) -> None:
        self.orderer.stop()
        self.store.close()

    def now(self) -> int:
        return int(self.clock())

    def network_now(self) -> int:
        """This clock's time, or its peers' when they show it fast: on a network, the time
        this node's batches take when its clock runs more than a minute ahead of theirs
        (ADR 58). Times it signs into what it issues are by it: by its own fast clock, a
        credential was not valid yet for any right clock (its block took the peers' time)."""
        now = self.now()
        if self.replicated is None:
            return now
        return min(now, self.replicated.batch_time_now()[0])

    def block_time_now(self) -> int:
        """The earliest time a block with a transaction this node orders now will have: on a
        network its batch's, bounded by its peers' witnessed clocks (a clock minutes fast
        proposes theirs, ADR 58); solo this clock's, or the head's if later."""
        if self.replicated is not None:
            return self.replicated.block_time_now()
        head = self.store.head
        return max(self.now(), head.time if head is not None else 0)

    def lists_as_of(self) -> int:
        """The time this node's status lists are known current as of: now on a solo node; on a
        network, when it last read the ordered batches to their end, all applied
        (``EtcdOrderer.current_at``). A node cut off from etcd's quorum, halted or catching up
        knows nothing later: a revocation sent through another agency's node may be missing
        (ADR 58). Raises OrderingError when that is not known, or a token would be dead."""
        now = self.now()
        if self.replicated is None:
            return now
        at = self.replicated.current_at
        if at is None:
            raise OrderingError("this node has not yet read the network's ordered batches to "
                                "their end: its status lists are not known current; ask again "
                                "in a moment (/v1/health says why if it lasts)")
        if now - at >= TOKEN_LIFETIME:
            raise OrderingError(f"this node's status lists are current only as of {at} "
                                f"({now - at} s ago: it has not read the network's ordered "
                                "batches since; /v1/health says why): a token dated then would "
                                "have expired")
        return min(at, now)

    def _registry(self) -> Registry:
        if self.store.registry is None:
            raise StoreError("the store has no genesis")
        return self.store.registry

    def _head(self) -> Head:
        if self.store.head is None:
            raise StoreError("the store has no genesis")
        return self.store.head

    def _on_block(self, head: Head, registry: Registry) -> dict[bytes, bytes]:
        """The block's checkpoint, signed with the node keys ``registry`` (as of this block,
        its own governance included) counts at the block's time. A key rotated out is left out;
        its successor signs once its file is in the keys folder and the node restarted."""
        signers = self._checkpoint_keys(registry, head.time)
        if len(signers) < registry.quorum:  # /v1/health says so (signing_problem)
            # The block is kept with no checkpoint until a quorum of keys signs again: a stored
            # checkpoint is final, and the audit holds every one to that (ADR 46).
            log.warning("no checkpoint for size %d: current node keys of %s only, quorum %d",
                        head.log_size, sorted(signers), registry.quorum)
            return {}
        cp = sign_checkpoint(self.network, head, sorted(signers.items()))
        return {checkpoint_key(head.log_size): cp.to_text().encode()}

    def _checkpoint_keys(self, registry: Registry, t: int) -> dict[str, PrivateKey]:
        """The node key files here that ``registry`` counts at time ``t``, by agency."""
        current = checkpoint_verifiers(registry, t)
        return {name: key for name, key in self._node_key_files.items()
                if current.get(name) == key.public}

    def _keys_advice(self) -> str:
        """What a solo node short of current node keys is told to do: put them in its keys
        folder; and when the registry counts other agencies' node keys this folder lacks, that
        a node of a network of agencies orders through etcd (its own key, the others' nodes
        co-signing) rather than holding their keys."""
        advice = "put the current node keys in the keys folder and restart the node"
        registry = self.store.registry
        if registry is None:
            return advice
        others = sorted(a for a in checkpoint_verifiers(registry, self.now())
                        if a != self.agency and a not in self._node_key_files)
        if not others:
            return advice
        return (f"{advice}; or, as a node of the network {self.network} whose other agencies "
                f"({', '.join(others)}) keep their node keys, run it with ordering = \"etcd\": "
                "`ledger-node init --etcd-endpoint URL --peer URL --pki FOLDER` writes that "
                "config (README: \"A new agency joins a running network\")")

    def check_can_finalize(self) -> None:
        """A solo node that could not sign a final checkpoint for a new block now refuses to
        issue (the holder's bundle needs one): :class:`OrderingError`, nothing committed."""
        if self.replicated is not None:
            return
        registry = self._registry()
        keys = self._checkpoint_keys(registry, self.now())
        if len(keys) < registry.quorum:
            raise OrderingError(
                f"this node holds current node keys of {', '.join(sorted(keys)) or 'no agency'}"
                f" only, and a final checkpoint needs {registry.quorum}: a credential issued "
                f"now could not be proven; nothing was issued ({self._keys_advice()})",
                taken=False)

    def writer_failure(self) -> str | None:
        """Why this solo node's block writer stopped (it takes no transaction until the node
        is restarted), or None."""
        if self.replicated is not None or not isinstance(self.orderer, SoloOrderer):
            return None
        failure = self.orderer.failure
        return None if failure is None else (
            f"the node could not write a block and takes nothing more until it is restarted "
            f"(fix the cause first): {failure}")

    def credit_problem(self) -> str | None:
        """Why this node cannot decide its rules on credit rightly (None: it can): it decides
        one but holds no credit secret, or its secret is not its peers' (its pseudonyms would
        find no one's events, and decisions would count none)."""
        registry = self._registry()
        rules = sorted(s for s in registry.data.get("rules", {})
                       if (r := registry.rule(s)) is not None and r.get("agency") == self.agency
                       and r.get("subject"))
        if self.credit_secret is None:
            if not rules:
                return None
            return (f"this node decides {', '.join(rules)} (rules on credit) but holds no "
                    f"credit secret ({CREDIT_SECRET_FILE} in its keys folder): applications "
                    "are refused; put the network's copy there (`ledger-node credit-secret "
                    "--from`) and restart the node")
        if self.replicated is None:
            return None
        mine = self.credit_mark.hex() if self.credit_mark else None
        others = sorted(a for a, p in self.replicated.stats.peers.items()
                        if a != self.agency and (mark := _hex_mark(p.get("credit"))) is not None
                        and mark != mine)
        if not others:
            return None
        return (f"this node's credit secret is not the one of {', '.join(others)}: its "
                "pseudonyms find no one's credit events, so its decisions on credit, credit "
                "events and credit records are refused; put the network's copy in place "
                "(`ledger-node credit-secret --from`) and restart the node")

    def keys_gone_quiet(self, quiet: Mapping[str, int]) -> set[str]:
        """Of the agencies whose nodes were quiet for ``quiet[a]`` seconds, those with a node
        key that governance rotated out or invalidated about when they went quiet: such a
        node says nothing more until its operator puts the new key file in place and
        restarts it (ADR 52), and is not down."""
        registry, now = self._registry(), self.now()
        return {a for a, q in quiet.items() if any(
            k["role"] == "node" and k["invalid_from"] is not None
            and now - q - 15 <= k["invalid_from"] <= now for _, k in registry.keys_of(a))}

    def issuer_problem(self) -> str | None:
        """Why this node cannot issue now (None: it can): its issuer key, read at start, is
        no longer a valid issuer key of its agency (rotated, or invalidated after a theft).
        Every issuance is refused until the current key file is in place and the node
        restarted: health says so, where it said ``ok`` (ADR 52)."""
        registry, now = self._registry(), self.now()
        kid = self.issuer_key.kid
        key = registry.key(kid) or {}
        if registry.key_valid(kid, now, "issuer") and key.get("agency") == self.agency:
            return None
        if key.get("agency") == self.agency and key.get("role") == "issuer" and \
                key["valid_from"] > now and key["invalid_from"] is None:
            # not rotated out: valid from a time this machine's clock has not reached
            return (f"this node's issuer key ({kid.hex()[:16]}) is valid only from "
                    f"{utc_text(key['valid_from'])}, {key['valid_from'] - now} s after this "
                    "machine's clock: issuances are refused until then (if this clock is "
                    "behind, set it right, NTP; if the key file was put in place before its "
                    "rotate_key takes effect, put the old one back until then)")
        return (f"this node's issuer key ({kid.hex()[:16]}) is not a valid issuer key of "
                f"{self.agency!r} now (rotated or invalidated): issuances are refused; put the "
                "agency's current issuer key file in the keys folder and restart the node")

    _tls: tuple[Path, str, Path | None] | None = None  # what watch_certificates watches
    _tls_seen: tuple[float, str | None] = (float("-inf"), None)  # when read, what it said
    TLS_CHECK_EVERY = 60.0
    """Seconds between two reads of the PKI folder for :meth:`tls_problem` (health probes
    come every few seconds; the folder changes when an operator renews or revokes). A read
    that failed is not kept: the next probe reads again (a ``crl.pem`` copied in with a
    plain ``cp`` is half there for a moment)."""

    def watch_certificates(self, folder: Path, agency: str, in_use: Path | None = None) -> None:
        """Have health say when the TLS certificate this agency runs with (the copies in
        ``in_use``, else ``folder``'s), or the CA's, nears its end, has ended, or is revoked
        on the folder's ``crl.pem`` (ADR 54)."""
        self._tls = (folder, agency, in_use)
        self._tls_seen = (-self.TLS_CHECK_EVERY, None)

    def tls_problem(self) -> str | None:
        """What :meth:`watch_certificates` found (None: nothing, or not watching)."""
        watched = self._tls
        if watched is None:
            return None
        at, problem = self._tls_seen
        if _time.monotonic() - at >= self.TLS_CHECK_EVERY:
            from node.pki import UNREADABLE, certificate_problem

            folder, agency, in_use = watched
            problem = certificate_problem(folder, agency,
                                          _dt.datetime.fromtimestamp(self.now(), _dt.UTC),
                                          in_use)
            if problem is None or not problem.startswith(UNREADABLE):
                self._tls_seen = (_time.monotonic(), problem)
        return problem

    def signing_problem(self) -> str:
        """Why this solo node's chain is not covered by a final checkpoint now ("" when it is):
        a node key rotated out (or a planned rotation come due) whose successor the node does
        not hold, so the latest checkpoint no longer counts or later blocks got none."""
        if self.replicated is not None:
            return ""
        text = self.store.head_checkpoint()
        try:
            signed = None if text is None else SignedCheckpoint.from_text(text.decode())
            if signed is not None:
                verify_final(signed, self._registry(), self.now())
        except CheckpointError as e:
            return f"the latest checkpoint is not final: {e} ({self._keys_advice()})"
        try:
            self.check_can_finalize()
        except OrderingError as e:
            return str(e).replace("; nothing was issued", "")
        if signed is None:
            return ""
        head = self._head()
        if signed.checkpoint.size < head.log_size:  # blocks kept without one (ADR 46)
            return (f"no final checkpoint covers the log past {signed.checkpoint.size} entries "
                    f"(head {head.log_size}): too few current node keys signed the blocks "
                    f"since ({self._keys_advice()})")
        return ""

    # -- reading the chain --
    def head(self) -> dict[str, Any]:
        return self.store.block(self._head().height).to_json()

    def block(self, height: int, offset: int = 0, limit: int | None = None) -> dict[str, Any]:
        """A block's header and its transactions (``limit`` of them from ``offset``: a block
        holds up to thousands)."""
        if not 0 <= height <= self._head().height:
            raise NotFound(f"no block at height {height}")
        header = self.store.block(height)  # (StoreError when its record is damaged: 503)
        n = header.log_size - header.first_index  # its transactions: islice takes no more
        raws = itertools.islice(self.store.block_entries(header), min(offset, n),
                                n if limit is None else min(offset + limit, n))
        txs = [_stored_tx(raw, header.first_index + min(offset, n) + i).to_dict()
               for i, raw in enumerate(raws)]
        return {"header": header.to_json(), "transactions": txs}

    def recent_blocks(self, n: int = 20, before: int | None = None) -> list[dict[str, Any]]:
        """The ``n`` newest block headers, newest first; with ``before``, those below it (a
        page further back)."""
        top = self._head().height
        if before is not None:
            top = min(top, before - 1)
        return [self.store.block(h).to_json() for h in range(top, max(-1, top - n), -1)]

    def tx(self, txid: bytes) -> dict[str, Any]:
        loc = self.store.tx_location(txid)
        if loc is None:
            raise NotFound(f"no committed transaction {txid.hex()}")
        return {**_stored_tx(self.store.entry(loc[0]), loc[0]).to_dict(), "index": loc[0],
                "height": loc[1]}

    def entry(self, index: int) -> bytes:
        try:
            return self.store.entry(index)
        except StoreError as e:
            raise NotFound(str(e)) from e

    def _stored_checkpoint(self) -> tuple[int, str, SignedCheckpoint]:
        """The latest *final* checkpoint (in solo mode every checkpoint is final at once): its
        log size, text and parse; StoreError when the stored text is no checkpoint note
        (damaged)."""
        if self.replicated is not None:
            size = self.replicated.final_size
            text = self.replicated.final_checkpoint()
        else:
            found = self.store.head_checkpoint_entry()
            size, text = (0, None) if found is None else found
        if text is None:
            raise NotFound("no checkpoint yet")
        try:
            signed = SignedCheckpoint.from_text(text)  # (strict: UTF-8, signature lines, body)
        except CheckpointError as e:
            raise StoreError(damaged(f"this node's stored checkpoint at log size {size}",
                                     e)) from e
        return size, text.decode(), signed

    def checkpoint(self) -> str:
        """The latest *final* checkpoint (in solo mode every checkpoint is final at once);
        StoreError, as :meth:`checkpoint_signers`, when a current node key's signature on it
        does not verify: a note every client refuses is not served as the node's word."""
        return self._verified_checkpoint()[0]

    def checkpoint_signers(self) -> list[str]:
        """The current agencies whose signatures of :meth:`checkpoint` verify; StoreError when
        one of theirs does not (the stored note is damaged: it was verified when stored)."""
        return list(self._verified_checkpoint()[1])

    def _verified_checkpoint(self) -> tuple[str, tuple[str, ...]]:
        # Checked once per text and set of current node keys (a new block or a rotation
        # checks again): a few Ed25519 verifies, not one per request.
        size, text, signed = self._stored_checkpoint()
        verifiers = checkpoint_verifiers(self._registry(), self.now())
        key = (text, tuple(sorted((name, k.raw) for name, k in verifiers.items())))
        hit = self._checkpoint_checked
        if hit is not None and hit[0] == key:
            return text, hit[1]
        try:
            signers = tuple(sorted(signed.signers(verifiers)))
        except CheckpointError as e:
            raise StoreError(damaged(f"this node's stored checkpoint at log size {size}", e,
                                     "does not verify")) from e
        self._checkpoint_checked = (key, signers)
        return text, signers

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.store.inclusion_proof(index, size)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return self.store.consistency_proof(old, new)

    # -- registry --
    def registry_summary(self) -> dict[str, Any]:
        reg, head = self._registry(), self._head()
        return {"network": reg.network, "quorum": reg.quorum, "gov_seq": reg.gov_seq,
                "height": head.height}

    def agencies(self) -> list[dict[str, Any]]:
        reg = self._registry()
        keys = checkpoint_verifiers(reg, self.now())
        return [{"id": a, "name": v["name"], "added": v["added"], "removed": v["removed"],
                 "current": reg.agency_current(a, self.now()),
                 "note_vkey": vkey(a, keys[a].raw) if a in keys else None}
                for a, v in sorted(reg.agencies().items())]

    def keys(self) -> list[dict[str, Any]]:
        reg = self._registry()
        return [{"kid": kid.hex(), "agency": k["agency"], "role": k["role"],
                 "public_key": k["pub"].hex(), "valid_from": k["valid_from"],
                 "invalid_from": k["invalid_from"]}
                for a in sorted(reg.agencies()) for kid, k in reg.keys_of(a)]

    def grants(self, at: int | None = None) -> dict[str, list[str]]:
        return self._registry().grants_at(self.now() if at is None else at)

    def types(self) -> dict[str, Any]:
        return {k: dict(v) for k, v in sorted(self._registry().data["types"].items())}

    def status_list_token(self, issuer: str, kind: str, number: int = 0) -> str:
        """The current list ``number`` of ``issuer``/``kind`` as a Status List Token by the
        issuer's node."""
        key = self.node_keys.get(issuer)
        if key is None:
            raise NotFound(f"this node does not serve {issuer!r}'s status lists")
        uri = status_list_uri(self.network, issuer, kind, number)
        lst = self.status_list(uri)
        if lst is None:
            raise NotFound(f"no status list {uri}")
        # dated when the list was last known current, not now: a node cut off from the network
        # signed "valid" tokens dated now from lists that missed revocations made meanwhile
        iat = self.lists_as_of()
        with self._lock:
            got = self._tokens.get(uri)
        if got is not None and got[0] is lst and got[2] is key and 0 <= iat - got[1] < TOKEN_REUSE:
            return got[3]  # the list has not changed: no new compression and signature
        token = make_token(lst, sub=uri, iat=iat, exp=iat + TOKEN_LIFETIME, ttl=TOKEN_TTL,
                           key=key, kid=key.kid.hex())
        with self._lock:
            if len(self._tokens) >= 4096:
                self._tokens.clear()
            self._tokens[uri] = (lst, iat, key, token)
        return token

    def snapshot(self) -> bytes:
        """A snapshot (``ledger.offline``) with the lists of the agencies whose node keys this
        node holds (on a network, its own agency's): ``ledger snapshot --node`` merges the
        parts of every agency's node into a verifier's offline cache."""
        self._head()
        # dated, as its tokens are, when the lists were last known current (lists_as_of)
        return export_snapshot(self.store, self.lists_as_of(), node_keys=self.node_keys,
                               only_keyed=True, read_list=self.status_list)

    # -- writing --
    def _short_of_keys(self) -> bool:
        """Whether this solo node holds fewer current node keys than the quorum (counted once
        per registry and ten seconds: it is asked on every submission)."""
        if self.replicated is not None:
            return False
        registry, t = self._registry(), self.now()
        key = (id(registry), t // 10)
        if self._short[0] != key:
            self._short = (key, len(self._checkpoint_keys(registry, t)) < registry.quorum)
        return self._short[1]

    def _refused_issue(self, raw: bytes | Tx) -> LedgerError | None:
        """On a node :meth:`_short_of_keys`, the error an ``issue`` gets (its holder's bundle
        could not be proven: ADR 46); None for anything else."""
        try:
            kind = (raw if isinstance(raw, Tx) else Tx.from_bytes(raw)).type
        except LedgerError:
            return None  # the orderer refuses it, saying why
        if kind != "issue":
            return None
        try:
            self.check_can_finalize()
        except OrderingError as e:
            return e
        return None

    def submit(self, raw: bytes, wait: float | None = 10.0) -> Receipt | None:
        """Order a signed transaction; the receipt, or None if not durable within ``wait``."""
        refused = self._refused_issue(raw) if self._short_of_keys() else None
        if refused is not None:
            raise refused
        future = self.orderer.submit(raw)
        try:
            return future.result(timeout=wait or 0.0)
        except TimeoutError:
            return self._not_yet(hashlib.sha256(raw).digest(), future,
                                 _time.monotonic() + _SETTLING)

    def submit_many(self, raws: list[bytes | Tx], wait: float = 10.0
                    ) -> list[Receipt | LedgerError | None]:
        """Order many signed transactions; per transaction its receipt, its error, or None if
        not durable within ``wait`` seconds (all waited for together)."""
        refused = [self._refused_issue(r) for r in raws] if self._short_of_keys() else []
        if any(refused):
            kept = [r for r, e in zip(raws, refused, strict=True) if e is None]
            got = iter(self.submit_many(kept, wait) if kept else [])
            return [e if e is not None else next(got) for e in refused]
        futures = self.orderer.submit_many(raws)
        deadline = _time.monotonic() + wait
        settle_by = deadline + _SETTLING  # one short grace for the whole batch, not one each
        out: list[Receipt | LedgerError | None] = []
        for raw, fut in zip(raws, futures, strict=True):
            try:
                try:
                    out.append(fut.result(timeout=max(0.0, deadline - _time.monotonic())))
                except TimeoutError:
                    out.append(self._not_yet(raw.txid if isinstance(raw, Tx)
                                             else hashlib.sha256(raw).digest(), fut,
                                             settle_by))
            except LedgerError as e:
                out.append(e)
        return out

    def _not_yet(self, txid: bytes, future: Pending, settle_by: float) -> Receipt | None:
        """A submission not settled within its wait: the receipt of an earlier commit of the
        same transaction if there is one (the orderer would answer that too, later), else None;
        the submission is kept for :meth:`receipt`. ``settle_by`` (monotonic) bounds the wait
        for a committed submission's own answer, once per request."""
        if future.done():  # settled since the wait ran out: its own receipt, or its error
            return future.result()
        loc = self.store.tx_location(txid)
        if loc is not None:
            # Committed: by this submission (written just now, its future about to settle) or
            # by an earlier one (the orderer answers a duplicate within a round). Either way
            # the future says which; only if it is slow is the stored commit named a duplicate.
            try:
                return future.result(timeout=max(0.0, settle_by - _time.monotonic()))
            except TimeoutError:
                return Receipt(txid, loc[0], loc[1], duplicate=True)
        with self._lock:
            self._unsettled[txid] = future
            self._unsettled.move_to_end(txid)
            while len(self._unsettled) > _UNSETTLED:
                self._unsettled.popitem(last=False)
        return None

    def receipt(self, txid: bytes) -> Receipt | None:
        """The receipt of a committed transaction; None if it is not committed (yet). Raises the
        transaction's error if a submission here that outlived its wait was refused since."""
        loc = self.store.tx_location(txid)
        if loc is not None:
            return Receipt(txid, loc[0], loc[1])
        with self._lock:
            future = self._unsettled.get(txid)
        if future is not None and future.done():
            return future.result()
        return None

    def issue(self, kind: str, claims: dict[str, Any], holder_jwk: dict[str, Any],
              valid_days: int) -> tuple[Bundle, Receipt]:
        """Issue a credential of this node's agency; returns the holder's bundle and receipt."""
        sdjwt.public_key_from_jwk(holder_jwk)
        self.check_can_finalize()
        if kind in IDENTITY:  # the catalogue's identity types: credit checks read this claim
            check_identifiers(self._registry(), kind, claims, (IDENTITY[kind],))

        def taken(index: int) -> bool:
            return self.store.get(index_key(self.agency, kind, index)) is not None

        first = self._status_list_from.get(kind)
        if first is None:  # the type's last list holding credentials: those before are full
            first = status_lists_in_order(self.store.status_lists(self.agency, kind))
        for _ in range(32):
            # from the list the last issue of this type drew from: the lists before it are
            # about full
            index = draw_status_index(taken, first)
            first = index // STATUS_LIST_SIZE
            self._status_list_from[kind] = first
            cred = issue_credential(registry=self._registry(), agency=self.agency,
                                    issuer_key=self.issuer_key, kind=kind, claims=claims,
                                    holder_jwk=holder_jwk, now=self.network_now(),
                                    valid_for=valid_days * 86400, status_index=index,
                                    zone=self.zone)
            cid = cred.anchor.body["credential_id"].hex()
            try:
                receipt = self.commit(cred.anchor, f"credential {cid}", (
                    "its holder's copy is not kept. Once GET /v1/tx/<txid> finds it, revoke "
                    f"it (`agency status --credential-id {cid} --set revoked`); issue again "
                    "once /v1/health is ok"))
            except TxRejected as e:
                if e.code == "status_index_used":
                    continue
                raise
            try:
                covering = self._final_covering(receipt.index)
                return bundle_from_store(self.store, receipt.index, cred.sd_jwt.serialize(),
                                         covering), receipt
            except LedgerError as e:  # no final checkpoint, or a damaged store (ADR 47)
                raise OrderingError(
                    f"credential {cid} is committed, but {e}: its holder's copy cannot be "
                    "proven and is not kept. Revoke it (`agency status --credential-id "
                    f"{cid} --set revoked`) and issue again once /v1/health is ok") from e
        raise LedgerError(f"no free status index of {self.agency}/{kind}: 32 drawn were taken by "
                          "credentials issued at the same time")

    def bundle(self, index: int, sd_jwt: str) -> Bundle:
        """The holder's bundle of a credential this node issued before (``sd_jwt``, its anchor
        at log entry ``index``), proven again as :meth:`issue` proves a new one."""
        try:
            return bundle_from_store(self.store, index, sd_jwt, self._final_covering(index))
        except LedgerError as e:  # no final checkpoint, or a damaged store (ADR 47)
            raise OrderingError(f"the credential at log entry {index} cannot be proven now: "
                                f"{e}") from e

    def commit(self, tx: Tx, what: str, then: str) -> Receipt:
        """Submit ``tx`` and wait up to :attr:`commit_wait` for its receipt. A wait that ends
        first, or an orderer that gives up on etcd first, is an OrderingError that names
        ``what`` and its txid (it may commit yet) and says ``then``, instead of a bare timeout
        (a 500 that named nothing) or the orderer's "send it again" (a new request is a new
        transaction)."""
        pending = self.orderer.submit(tx)
        try:
            return pending.result(timeout=self.commit_wait)
        except TimeoutError as e:
            raise OrderingError(
                f"{what} (txid {tx.txid.hex()}) was not committed within "
                f"{self.commit_wait:g} s (ordering is stalled or slow here: /v1/health says "
                f"why). It may commit yet: {then}") from e
        except Unconfirmed as e:
            # The orderer gave up before the wait ended (etcd unreachable for its
            # submit_timeout). Its "send the same transaction again" is no advice for a
            # transaction this node made: a new request makes another (a second credential,
            # a credit event counted twice), and the first may commit yet.
            raise OrderingError(
                f"{what} (txid {tx.txid.hex()}) was not confirmed by etcd ({e.reason}); "
                f"/v1/health says why. It may commit yet: {then}") from e

    def _final_covering(self, index: int, wait: float = FINAL_WAIT) -> bytes | None:
        """A final checkpoint covering log entry ``index`` (None in solo mode: the latest)."""
        rep = self.replicated
        if rep is None:
            return None
        deadline = _time.monotonic() + wait
        while rep.final_size <= index:
            if _time.monotonic() > deadline:
                raise OrderingError(f"no final checkpoint covered entry {index} within "
                                    f"{wait:g} s (final size {rep.final_size}): fewer than the "
                                    "quorum of agency nodes are co-signing")
            _time.sleep(0.02)
        return rep.final_checkpoint()

    def cluster_status(self) -> dict[str, Any] | None:
        return None if self.replicated is None else self.replicated.status()

    def evidence(self) -> list[dict[str, Any]]:
        return [] if self.replicated is None else self.replicated.evidence()

    @contextmanager
    def _sync_turn(self) -> Iterator[None]:
        """A catch-up reply costs ~100 requests' CPU: :data:`SYNC_SERVING` at a time, so they
        cannot take the threads every other route shares (ADR 47)."""
        if not self._sync_slots.acquire(blocking=False):
            raise Busy("this node is serving other peers' catch-up; retry in a moment")
        try:
            yield
        finally:
            self._sync_slots.release()

    def sync_blocks(self, start: int, count: int) -> bytes:
        """Canonical msgpack [[header, [entries]]...] of blocks start.. for a catching-up peer:
        at most ``count``, and no more once ``SYNC_REPLY_BYTES`` are packed (one at least), so
        a run of full blocks never outgrows what the peer reads (``node.replication``)."""
        with self._sync_turn():
            return self._sync_blocks(start, count)

    def _sync_blocks(self, start: int, count: int) -> bytes:
        top = self._head().height
        if start > top:
            raise NotFound(f"no block {start} (head is {top})")
        out: list[list[Any]] = []
        packed = 0
        for h in range(start, min(top, start + count - 1) + 1):
            header = self.store.block(h)
            entries = self.store.block_entries(header)
            size = sum(len(e) for e in entries) + 16 * len(entries) + 256
            if out and packed + size > SYNC_REPLY_BYTES:
                break
            packed += size
            out.append([header.to_bytes(), entries])
        return codec.encode(out)

    def archive(self) -> ArchiveStream:
        """The chain up to the current head as a portable archive (``ledger export``'s format),
        in chunks, for ``GET /v1/archive``: what ``ledger audit --node`` and ``ledger export
        --node`` read while the node runs (LevelDB lets one process open the store). Blocks are
        immutable once written, so reading beside the node's own writes is safe.

        One archive at a time (:class:`Busy` for a second), held as a lease: a reader that
        reads nothing for ``EXPORT_IDLE`` seconds (gone, stalled, or never started) loses it,
        and its export thread stops (a client that keeps taking turns is not stopped: ADR 46)."""
        self._head()
        token = object()
        now = _time.monotonic()
        with self._export_lock:
            if self._export is not None and now - self._export[1] < EXPORT_IDLE:
                raise Busy(_BUSY_ARCHIVE)
            self._export = (token, now)
        out = _Chunks(EXPORT_IDLE)

        def release() -> None:
            out.stop.set()  # the export thread sees it within half a second
            self._export_touch(token, release=True)

        return ArchiveStream(self._archive_chunks(token, out), release)

    def _export_touch(self, token: object, *, release: bool = False) -> None:
        with self._export_lock:
            if self._export is not None and self._export[0] is token:
                self._export = None if release else (token, _time.monotonic())

    def _archive_chunks(self, token: object, out: _Chunks) -> Iterator[bytes]:
        from ledger.archive import export_archive


        def run() -> None:
            try:
                export_archive(self.store, out)  # type: ignore[arg-type]
                out.close()
            except _Stopped:
                pass
            except BaseException as e:  # the reader learns it; its archive ends short
                with contextlib.suppress(_Stopped):
                    out.put(e)

        thread = threading.Thread(target=run, name="archive", daemon=True)
        try:
            thread.start()
            while True:
                try:
                    item = out.queue.get(timeout=1.0)
                except queue.Empty:
                    if thread.is_alive() or not out.queue.empty():
                        continue
                    raise LedgerError("the export stopped before its end") from None
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                self._export_touch(token)
                yield item
        finally:  # the thread sees stop within half a second, or at its next write
            out.stop.set()
            self._export_touch(token, release=True)

    def sync_headers(self, start: int, count: int) -> bytes:
        """Canonical msgpack [header...] of blocks start.. (at most ``count``): what a peer
        catching up checks against the pruning marker's block hash before taking blocks."""
        with self._sync_turn():
            top = self._head().height
            if start > top:
                raise NotFound(f"no block {start} (head is {top})")
            return codec.encode([self.store.block(h).to_bytes()
                                 for h in range(start, min(top, start + count - 1) + 1)])

    def set_status(self, credential_id: bytes, status: str, reason: str) -> Receipt:
        from ledger.network import Agency, not_a_repeat, status_tx

        # (a status transaction is signed with the issuer key alone)
        me = Agency(self.agency, "", self._node_key_files[self.agency], self.issuer_key)
        return not_a_repeat(lambda ts: self.commit(status_tx(
            self.network, me, credential_id, status, reason, ts), f"the {status} change", (
                "GET /v1/tx/<txid> says whether it did; send it again if not")),
            lambda receipt: receipt.duplicate, self.now())

    # -- verifying --
    def new_request(self, kind: str, claims: list[str], audience: str, *,
                    foreign: bool = False, purpose: str = DESK) -> PendingRequest:
        """Open a request for ``claims`` of ``kind``. A type the registry does not know is
        refused, unless ``foreign`` (the verifier has a trust list, ADR 39): then it is a
        credential type from outside the network, whose claims only its issuer defines.
        A type of :data:`~ledger.presentation.IMPLIED_CLAIMS` is asked for those claims too.
        Its answer counts only for ``purpose`` (:meth:`request`, :meth:`verify`): a citizen
        who shows the desk a claim has not let whoever holds the answer read their credit
        record, or apply in their name."""
        type_def = self._registry().type_def(kind)
        if type_def is not None:
            claims = with_implied_claims(kind, claims)
        if type_def is None and not foreign:
            raise NotFound(f"credential type {kind!r} is not registered")
        known = (set(claims) if type_def is None
                 else set(type_def["claims"]) | set(type_def.get("derived", {})))
        unknown = sorted(set(claims) - known)
        if unknown or not claims:
            raise LedgerError(f"claims {unknown} are not part of {kind!r}" if unknown else
                              "ask for at least one claim")
        try:
            req = Request(secrets.token_urlsafe(16), audience, kind, tuple(claims))
        except LedgerError as e:
            raise LedgerError(f"not a valid request: {e}") from e
        pending = PendingRequest(req, self.now(), self.timer(), purpose)
        with self._lock:
            self._expire()
            while len(self._requests) >= MAX_OPEN_REQUESTS:  # the oldest open one goes
                del self._requests[next(iter(self._requests))]
            self._requests[pending.request.nonce] = pending
        return pending

    def request(self, nonce: str, purpose: str | None = DESK) -> PendingRequest:
        """The open request ``nonce`` opened for ``purpose`` (None: for any; the caller then
        checks :attr:`PendingRequest.purpose` itself); NotFound else."""
        with self._lock:
            self._expire()
            got = self._open(nonce, take=False, purpose=purpose)
        if got is None:
            raise NotFound(_NO_REQUEST)
        return got

    def _open(self, nonce: str, *, take: bool, purpose: str | None = DESK
              ) -> PendingRequest | None:
        """The open request ``nonce`` (taken out with ``take``), or None; None too (and not
        taken) if it was opened for another purpose than ``purpose`` (None: any). Its age is
        checked here too: one put back after a check that gave no verdict sits behind newer
        ones, where :meth:`_expire` does not look."""
        got = self._requests.get(nonce)
        if got is None or (purpose is not None and got.purpose != purpose):
            return None
        expired = self.timer() - got.since > REQUEST_TTL
        if take or expired:
            del self._requests[nonce]
        return None if expired else got

    def _expire(self) -> None:
        """Drop expired requests from the front: the table is in the order they were made,
        so this costs the expired ones, not a walk of every open request (ADR 47)."""
        now = self.timer()
        requests = self._requests
        while requests:
            nonce = next(iter(requests))
            if now - requests[nonce].since <= REQUEST_TTL:
                break
            del requests[nonce]

    def status_list(self, uri: str) -> StatusList | None:
        """The current list behind ``uri``: read from the store once, then brought up to date
        with the status changes of each new block (ADR 23), never rebuilt per request."""
        self._head()  # a node without a chain has no lists (raises like the other reads)
        return self._lists.get(uri)

    def _desk_status_list(self, uri: str) -> StatusList | None:
        """The list a check at this node's own desk reads: :meth:`status_list` while its lists
        are as current as a token it signed from them would be to any verifier (its ``ttl``
        from when they were last known current, :meth:`lists_as_of`); else OrderingError, and
        the status is undetermined. A node cut off from etcd's quorum said "valid" at its desk
        for credentials revoked meanwhile through another agency's node."""
        as_of, now = self.lists_as_of(), self.now()
        if now - as_of >= TOKEN_TTL + DEFAULT_SKEW:
            raise OrderingError(f"this node's status lists are current only as of {as_of} "
                                f"({now - as_of} s ago: it has not read the network's ordered "
                                "batches since; /v1/health says why): check at a current node")
        return self.status_list(uri)

    def _current_verifier(self) -> Verifier:
        registry = self._registry()
        if self._verifier is None or self._verifier.registry is not registry:
            # Single use is enforced by the open-request table (answered requests are removed),
            # so no ever-growing set of used nonces is kept.
            self._verifier = Verifier(registry, self._desk_status_list, ledger=self.store)
        return self._verifier

    def verify_foreign(self, presentation: str, nonce: str, trust: TrustList,
                       status_tokens: Mapping[str, str]) -> Report:
        """Verify a presentation of a credential from an issuer outside the network against
        the open request ``nonce`` (which it then consumes), with the verifier's trust list and
        the issuers' Status List Tokens (ADR 39). The ledger is not consulted."""
        kind = self.request(nonce).request.credential_type
        if self._registry().type_def(kind) is not None:
            # A trusted outside issuer may write any vct: only the ledger's anchor and grants
            # say who issues the network's own types.
            raise LedgerError(f"{kind!r} is a credential type of this network: it is checked "
                              "against the ledger (a presentation envelope), never as a "
                              "credential from an issuer outside the network")
        with self._answering(nonce) as pending:
            return verify_foreign(presentation, pending.request, trust=trust, now=self.now(),
                                  status_tokens=status_tokens)

    def verify(self, envelope: bytes, nonce: str, purpose: str = DESK) -> Report:
        """Verify an envelope against the open request ``nonce`` opened for ``purpose``
        (which it then consumes)."""
        with self._answering(nonce, purpose) as pending:
            return self._current_verifier().verify(envelope, pending.request, now=self.now())

    @contextmanager
    def _answering(self, nonce: str, purpose: str = DESK) -> Iterator[PendingRequest]:
        """The open request ``nonce`` opened for ``purpose``, taken out for one answer, so no
        other thread can answer it meanwhile: a request gets one verdict, whatever it is. If
        no verdict comes (the check raised), it is open again. One opened for another
        purpose is not taken (NotFound)."""
        with self._lock:
            self._expire()
            pending = self._open(nonce, take=True, purpose=purpose)
        if pending is None:
            raise NotFound(_NO_REQUEST)
        try:
            yield pending
        except BaseException:
            with self._lock:
                self._requests.setdefault(nonce, pending)
            raise
