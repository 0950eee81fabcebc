"""Multi-agency ordering on etcd: batches in, identical blocks out, co-signed checkpoints.

Each agency node runs one :class:`EtcdOrderer` beside its etcd member.

* **Proposing.** Submitted transactions are parsed (malformed ones fail at once), answered from
  the store if already committed, and cut into batches (``max_batch`` or ``max_wait``) signed by
  the node key (:mod:`ledger.batch`) and put into etcd. A put that fails is retried against the
  other endpoints until ``submit_timeout``; the caller may then retry (ids are idempotent).
* **Applying.** One thread reads the batches after the last one applied, in revision order, and
  turns each into at most one block with :func:`ledger.chain.build_block`; every node does the
  same with the same bytes, so blocks are identical. Each block, its own-signed checkpoint and
  the revision it came from are written in one synced LevelDB batch; the node then publishes its
  co-signature and its applied position.
* **Finality and equivocation.** Co-signatures of the other nodes are verified against the
  registry in force at that size; a valid one for our root and block is merged into the stored
  checkpoint, which becomes *final* with the quorum. A forged one is refused and counted. A valid
  signature over a different root, or over our root in another block (ADR 60), is kept as
  evidence; when a quorum signed that other checkpoint, this node is on a fork and stops applying
  (``halted``).
* **Retention and catch-up.** The lowest-id live agency prunes batches that a final checkpoint
  covers and every live member applied (members more than ``retention`` blocks behind do not hold
  it back), writing the marker first. A node whose position is older than the marker fetches the
  missing blocks from a peer over HTTP, re-executes them, and checks the result against the peer's
  final checkpoint (quorum, consistency proof, and a chain to the block it names: ADR 60) before
  writing anything.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import queue
import socket
import ssl
import struct
import threading
import time as _time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final, TypeVar

import httpx
import plyvel

from ledger import codec, merkle
from ledger.batch import (
    MAX_WITNESSES,
    Batch,
    Witness,
    block_time,
    check_batch,
    clock_signature,
    make_batch,
)
from ledger.block import BlockHeader
from ledger.chain import BlockResult, Head, build_block, checkpoint_key, follow_block
from ledger.checkpoint import Checkpoint, NoteSignature, SignedCheckpoint, note_key_hash
from ledger.errors import (
    CheckpointError,
    DecodeError,
    LedgerError,
    OrderingError,
    ProofError,
    SignatureError,
    StoreError,
    TxRejected,
)
from ledger.finality import (
    block_line,
    checkpoint_block,
    checkpoint_of,
    checkpoint_verifiers,
    sign_checkpoint,
    verify_final,
)
from ledger.keys import PrivateKey
from ledger.ordering import Pending, Receipt, settle, store_error_words
from ledger.sdjwt import CLOCK_SKEW
from ledger.sigcheck import Checking, SignatureChecker
from ledger.state import RULES, Registry
from ledger.store import Store, damaged
from ledger.tx import Tx
from node.etcdlog import READ_BATCHES, CounterBehind, EtcdLog, NoSpace, Record, TlsFiles
from node.ratelimit import Tally

__all__ = ["META_FINAL", "META_REV", "NOSPACE_FIX", "EtcdOrderer", "SyncError", "Unconfirmed"]

log = logging.getLogger("credledger.replication")

META_REV = b"xrev"
"""be64 etcd revision of the batch that made the latest block (written with the block)."""
META_FINAL = b"xfinal"
"""be64 log size of the latest final checkpoint."""
_PENDING = b"xcp"
"""+ be64(size): this node's checkpoint for that size while it lacks the quorum. Only *final*
checkpoints are stored under ``k`` (what auditors and the store's rollback check read)."""
_EVIDENCE = b"xev"
META_HALTED = b"xhalt"
"""Why this node halted (UTF-8), kept in the store: a restart must not build more blocks on
the fork. A store restored from a peer has no such record."""
_BE = struct.Struct(">Q")
_RECENT = 100_000  # size → (rev, height) entries kept for pruning decisions
_BATCH_BYTES = 768 * 1024  # a batch is cut once it holds this much (MAX_BATCH_BYTES is 1 MiB)
_PEER_TIME_MAX = 1 << 40  # a published clock time past this is no clock's (as ledger.tx)
_OWN_KEPT = 64  # our batches in flight whose parsed transactions are kept for applying
_PROBE_EVERY = 5.0  # seconds between write probes while etcd refuses our writes (ADR 48)
CUT_OFF_AFTER = 10.0
"""Seconds this node may fail to read the ordered batches from etcd (no member it reaches has a
quorum: the agency cut off, most members down) before it refuses submissions at once (503)
instead of taking them to answer 202 when their wait ends; an election lasts ~2 s."""
PACED_FOR = 60.0
"""Seconds after etcd's NOSPACE alarm clears during which this node puts its batches at a
measured pace (:data:`PACE`): clients refused meanwhile send again all at once, and etcd's
space must last until the nodes co-sign and prune what was put."""
PACE = 0.5
"""Seconds between two of this node's batch puts while paced (pruning runs every 0.5 s); what
arrives meanwhile joins the next batch (up to ``max_batch`` transactions or ~768 KB)."""
NOSPACE_FIX = (
    "a member's database reached its --quota-backend-bytes, or an agency raised the alarm; "
    "etcd takes no writes until it is disarmed. The network's operator restarts the etcd "
    "members one at a time with a larger --quota-backend-bytes, then runs `etcdctl defrag` "
    "and `etcdctl alarm disarm` (README, \"Several agencies, one ledger\")")
"""What the NOSPACE alarm means and how the operator ends it (refusals and health say it)."""
HEARTBEAT = 10.0
"""Seconds between publications of a node's applied position while it applies nothing: on an
idle network they tell a peer that is down from one with nothing to do (ADR 50)."""
FAILURE_SAID_EVERY = 60.0
"""Seconds between log lines about failing replication steps, after the first of a run."""
PEER_CLOCK_SLACK = 60
"""Seconds this node's clock may be off the clocks its peers publish (those heard from lately,
at least two) before it proposes their time for its batches instead of its own: block times
follow the proposer and never go back (ADR 43)."""
PEER_CLOCK_WAIT = 2 * HEARTBEAT + 1
"""Seconds after start a node whose clock is ahead of its peers' last published times, with
fewer than two of them (or than it found) heard anew, holds its first batch to hear them (ADR
58): positions found at start cannot say whether this clock is fast or the peers were down, and
a node restarted an hour fast proposed its own time meanwhile (the chain an hour ahead for
good)."""
PRUNER_QUIET = 30.0
"""A current agency's node whose published position changed within this many seconds (by this
node's monotonic timer) may be the one that prunes etcd (the first such agency is)."""

MAX_VOUCH_BLOCKS = 1_000_000
"""Blocks a catching-up node follows past a synced run to a peer's final checkpoint whose
signers its registry does not know (a rotation between them), before the checkpoint's
signatures can be checked: the block hashes it keeps (~73 bytes each) are bounded by this,
not by the size the peer claims (ADR 64)."""

PEER_QUIET = 35.0
"""A current agency's node whose published position has not changed for this long is reported
(health: degraded): down, cut off from etcd, or no longer applying."""


_T = TypeVar("_T")

SYNC_REPLY_BYTES = 32 << 20
"""A peer's ``/v1/sync/blocks`` reply stops adding blocks past this many bytes (one at least);
the catching-up node reads up to twice that."""
SYNC_HEADERS = 5000
"""Headers per ``/v1/sync/headers`` request (~150 bytes each)."""
SYNC_BLOCKS = 200
"""Blocks per ``/v1/sync/blocks`` request (the peer stops short past its byte bound)."""
PEER_READ_DEADLINE = 120.0
"""Seconds a peer's catch-up answer may take in all (a 64 MiB reply at ~0.5 MiB/s); the client's
timeout is per read, and a peer sending a byte every few seconds held the apply loop for good."""


class SyncError(OrderingError):
    """Blocks from a peer did not re-execute to its headers or to a final checkpoint."""


class CutOff(OrderingError):
    """This node has not read the ordered batches from etcd for :data:`CUT_OFF_AFTER` s: a
    submission would wait for nothing. Refused before anything is taken."""

    retry_after = 10
    taken = False


class Unconfirmed(OrderingError):
    """etcd did not confirm a batch put within ``submit_timeout``. Most likely it was not
    ordered; but a put etcd took whose answer was lost (a frozen member, a lossy link) is in
    the log, and its transactions commit once a node reads it. ``reason`` is the last error."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not confirmed by etcd: {reason}; it may be ordered yet if etcd took "
                         "a put whose answer was lost: send the same transaction again (a "
                         "repeated transaction id is a no-op)")
        self.reason = reason


@dataclass(slots=True)
class Stats:
    batches_put: int = 0
    batches_applied: int = 0
    batches_skipped: int = 0
    own_batches_reused: int = 0  # parsed by our API already (ADR 27)
    blocks: int = 0
    cosigs_merged: int = 0
    cosigs_forged: int = 0
    pruned_batches: int = 0
    synced_blocks: int = 0
    equivocations: int = 0
    last_error: str = ""
    failing_since: float = 0.0
    """When the apply loop's steps started failing (0: the last step succeeded)."""
    reads_failing_since: float = 0.0
    """When reading the ordered batches from etcd started failing (0: the last read worked)."""
    put_failing_since: float = 0.0
    """When putting our batches into etcd started failing (0: the last put succeeded): e.g.
    a member's NOSPACE alarm, which any agency's certificate can raise (ADR 48)."""
    put_error: str = ""
    nospace_since: float = 0.0
    """Since when etcd has refused our writes with its NOSPACE alarm (0: it has not, or a
    write was taken since): submissions are refused meanwhile."""
    peers: dict[str, dict[str, Any]] = field(default_factory=dict)


def _pruners_marker(marker: Record | None) -> dict[str, Any] | None:
    """The pruning marker's fields (``rev``, ``height``, ``size``: integers; ``hash``), or None
    if there is none or it is no pruner's. Any agency's certificate writes the key: one that
    does not decode, or of another shape, failed every step of every node's apply loop; one
    naming a revision not below its own (a pruner writes it after the batches it names), taken
    up, left a node reading no batch again. The next real prune writes over it."""
    if marker is None:
        return None
    try:
        m = codec.decode(marker.value, what="pruning marker")
    except DecodeError:
        return None
    if not isinstance(m, dict) or not all(type(m.get(k)) is int for k in ("rev", "height",
                                                                           "size")):
        return None
    return m if 0 <= m["rev"] < marker.mod_rev and m["height"] >= 0 and m["size"] >= 0 \
        else None


def cosig_value(head: Head | BlockHeader, line: str) -> bytes:
    """What a node publishes in etcd beside its co-signature ``line`` of ``head``'s checkpoint:
    the root and the block it names, from which a peer rebuilds the signed text (ADR 60)."""
    return codec.encode({"root": head.log_root, "line": line, "height": head.height,
                         "hash": head.hash})


_EVIDENCE_FIELDS = frozenset({"size", "agency", "ours", "theirs", "seen"})


def _evidence_record(key: bytes, value: bytes) -> dict[str, Any]:
    """A stored evidence record (:meth:`EtcdOrderer._evidence`); StoreError naming it if it is
    damaged: the client's 400 (DecodeError) or a 500 (not a map) on ``/v1/evidence``."""
    try:
        got = codec.decode(value, what="evidence")
    except DecodeError as e:
        got = e
    # its size a number too: "twelve" ended the thread of a halted node that looks for its
    # fork's size (EtcdOrderer._fork_cosig_found) in a ValueError (helper round 43V)
    if isinstance(got, dict) and got.keys() == _EVIDENCE_FIELDS and all(
            isinstance(got[f], str) for f in ("agency", "ours", "theirs")) \
            and type(got["size"]) is int:
        return got
    size = _BE.unpack_from(key, len(_EVIDENCE))[0] if len(key) >= len(_EVIDENCE) + 8 else None
    agency = key[len(_EVIDENCE) + 8:].decode("utf-8", "replace")
    raise StoreError(damaged(f"this node's evidence record of size {size} by {agency!r}",
                             got if isinstance(got, DecodeError) else
                             ValueError("not an evidence record")))


def _said(cp: Checkpoint) -> str:
    """A checkpoint's root and block, for logs and halting messages."""
    try:
        height, block_hash = checkpoint_block(cp)
    except CheckpointError:
        return f"root {cp.root.hex()} (no block named)"
    return f"root {cp.root.hex()} in block {height} {block_hash.hex()}"


def _outcomes(futs: list[Pending], result: Receipt | Exception
              ) -> list[tuple[Pending, Receipt | Exception]]:
    """Each waiter of one transaction with its outcome: a receipt marks every waiter after the
    first as a duplicate submission."""
    if not isinstance(result, Receipt):
        return [(f, result) for f in futs]
    return [(f, result if n == 0 or result.duplicate else
             Receipt(result.txid, result.index, result.height, duplicate=True))
            for n, f in enumerate(futs)]


class _Overlay:
    """A state view: writes of blocks built but not yet written, over the store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.writes: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        v = self.writes.get(key)
        return v if v is not None else self.store.get(key)


class PeerHttp:
    """The HTTP client for the peers' HTTPS (catch-up), for one thread at a time.

    Given the network's TLS files, it checks the peers' certificates against the CA's
    revocation list, and makes its client again when the list changes on disk: a peer revoked
    while this node runs is refused from its next connection, not from the next restart
    (ADR 50). A changed list that does not load keeps the one read before, and says so."""

    def __init__(self, verify: str | bool | ssl.SSLContext | TlsFiles) -> None:
        self._tls = verify if isinstance(verify, TlsFiles) else None
        self._seen = self._tls.crl_stamp() if self._tls is not None else None
        ctx: ssl.SSLContext | bool
        if isinstance(verify, TlsFiles):
            ctx = verify.peer_context()
        elif isinstance(verify, str):
            ctx = ssl.create_default_context(cafile=verify)
        else:
            ctx = verify
        self._client = self._new(ctx)

    @staticmethod
    def _new(ctx: ssl.SSLContext | bool) -> httpx.Client:
        # No connection kept between answers: each answer's own connection is the one its
        # deadline can cut (EtcdOrderer._peer_get); catch-up asks for thousands of blocks at
        # once, so a handshake per answer costs little
        # (no proxy of the environment: a node talks only to the addresses governance and its
        # config name)
        return httpx.Client(verify=ctx, timeout=30.0, trust_env=False,
                            limits=httpx.Limits(max_keepalive_connections=0))

    def client(self) -> httpx.Client:
        tls = self._tls
        if tls is not None and (stamp := tls.crl_stamp()) != self._seen:
            self._seen = stamp  # one warning per change of the file, not one per request
            try:
                fresh = self._new(tls.peer_context())
            except (OSError, ssl.SSLError) as e:
                log.warning("the revocation list %s changed but does not load (%s); peers are "
                            "still checked against the one read before", tls.crl, e)
                return self._client
            self._client.close()
            self._client = fresh
            log.info("the revocation list %s changed; peers are checked against it", tls.crl)
        return self._client

    def close(self) -> None:
        self._client.close()


_COMMITS_THERE: Final = (
    "ordered by the network and commits there: ask another agency's node for its receipt, or "
    "send it again (transaction ids are idempotent)")
"""What a submitter whose batch etcd holds is told when this node cannot answer with its
receipt (its store failed, it stopped)."""


class EtcdOrderer:
    """Orders transactions through etcd for one agency node (the SoloOrderer interface)."""

    def __init__(self, store: Store, etcd: EtcdLog, *, agency: str, node_key: PrivateKey,
                 clock: Callable[[], int], peers: Sequence[str] = (),
                 http_verify: str | bool | ssl.SSLContext | TlsFiles = True,
                 max_batch: int = 2000, max_wait: float = 0.02, workers: int | None = None,
                 retention: int = 1000, submit_timeout: float = 30.0,
                 poll: float = 0.25, credit_mark: bytes | None = None,
                 timer: Callable[[], float] = _time.monotonic) -> None:
        if store.head is None or store.registry is None:
            raise OrderingError("the store has no genesis yet")
        self.store, self.etcd, self.agency, self.node_key = store, etcd, agency, node_key
        self.network = store.registry.network
        self.clock, self.peers = clock, list(peers)
        # monotonic: how long ago each peer's published position last changed (retention)
        self.timer = timer
        self._good_peer = 0  # the peer catch-up asks first: the last that answered well
        # each peer's header walk so far, kept across attempts: peer -> (our head's hash,
        # hashes). A walk cut by a 429 or a 503 goes on where it stopped (ADR 47).
        self._walks: dict[str, tuple[bytes, list[bytes]]] = {}
        # and each peer's walk from a synced run's end towards the block its final checkpoint
        # names: peer -> (the run's last hash, hashes), kept across attempts the same way
        self._binds: dict[str, tuple[bytes, list[bytes]]] = {}
        # catch-up: the blocks (first height, hashes) re-executed up to a peer's final
        # checkpoint and checked against it, and that checkpoint
        self._vouched: tuple[int, list[bytes]] | None = None
        self._vouching: SignedCheckpoint | None = None
        # A store restored from a peer's archive is ahead of the pruning marker, but has no
        # etcd revision of its own: (next block to match, our head's height) while the batches
        # after the marker are matched to the blocks it already holds (ADR 48).
        self._aligning: tuple[int, int] | None = None
        self._last_probe = 0.0  # when a write was last tried while etcd refused ours
        # monotonic: until when batches are paced (after a NOSPACE alarm), and our last put
        self._paced_until = 0.0
        # our last batch put was refused for a counter behind its batch keys: only a batch put
        # shows that over (etcd takes our position writes meanwhile)
        self._counter_behind = False
        self._last_put = 0.0
        self._last_published = 0.0  # monotonic time of our last applied-position put
        # by our timer, as the dates in ``stats`` are: since when the apply loop's steps have
        # failed, and since when etcd has refused our writes with NOSPACE (how long, said in
        # logs and refusals, stays right whatever the clock does meanwhile)
        self._failing_at = 0.0
        self._nospace_at = 0.0
        # (log size, our node key) of the last co-signature published: the head is signed
        # again after a restart with a rotated key (_cosign_head)
        self._cosigned: tuple[int, bytes] | None = None
        # (head, our line) of a co-signature whose put etcd refused, until one is put: a node
        # halted on a fork puts it again (_publish_halted), as _cosign_head does otherwise
        self._unpublished: tuple[Head, str] | None = None
        self._last_halted_put: float | None = None  # our timer's time of the last one tried
        # a node halted on a fork: (log size, value) of its own co-signature at the fork's size
        # as it signed it, found again in its evidence (_fork_cosig_found) and put if etcd does
        # not hold it, also after a restart (the refused one above lives in memory only).
        # None: to be looked for; False: none (not halted on a fork, or nothing of ours there)
        self._fork_cosig: tuple[int, bytes] | bool | None = False
        self._fork_published = False  # etcd was seen to hold it (read back, or a put taken)
        self._fork_refused = False  # a refusal of it said since it was last taken
        self._failures = Tally(FAILURE_SAID_EVERY)  # failed steps since the last line
        # each agency's published position and when (our monotonic clock) it last changed:
        # no peer's clock is trusted to say how long it has been quiet
        self._heard: dict[str, tuple[dict[str, Any], float]] = {}
        # current peers heard from lately: agency -> (published wall time, heard at by our
        # timer, seen to change since start), replaced whole by the applying thread, read by
        # the proposing one
        self._peer_clocks: dict[str, tuple[int, float, bool]] = {}
        self._moved: set[str] = set()  # agencies whose published position changed since start
        # current agencies with no position in etcd -> when (our timer) this node first found so
        self._unheard: dict[str, float] = {}
        self._started = timer()
        # our timer's time at the start of the last read that reached the end of the ordered
        # batches, all of them applied since: what this node knows is current as of then
        # (None: not yet). Status List Tokens are dated by current_at (Node.lists_as_of).
        self._current_t: float | None = None
        self._current_date = 0  # the same moment by this node's clock (a date)
        self._positions_read = False  # the peers' published positions read once since start
        self._positions_held: set[str] = set()  # the agencies etcd held a position of then
        self._forged_said: bytes | None = None  # the marker last said to be no pruner's
        # why this node holds beside a version before ADR 58 ("" when it does not)
        self._older_clocks = ""
        self._clock_wait_said = False
        self._clock_said = Tally(FAILURE_SAID_EVERY)  # batches proposed at the peers' time
        # our timer's time since when the head has had no final checkpoint (None: it has one);
        # /v1/cluster says since when by our clock now, less how long by our timer
        self._unfinal_at: float | None = None
        # our timer's time when reading the ordered batches started failing (None: the last
        # read worked): how long the node has been cut off (submit_many's CutOff) is timed by
        # it, never by the wall clock, which an NTP step or a resumed VM moves by hours
        self._reads_failing_at: float | None = None
        # agency -> the log size of its newest co-signature read, and whether that one was in
        # the format of a version before ADR 60 (no block named): health says which peers run
        # an older version while a network is being upgraded (ADR 62)
        self._cosig_format: dict[str, tuple[int, bool]] = {}
        self.max_batch, self.max_wait, self.retention = max_batch, max_wait, retention
        self.submit_timeout, self.poll = submit_timeout, poll
        self.cut_off_after = CUT_OFF_AFTER
        self.credit_mark = credit_mark  # the credit secret's fingerprint, published with ours
        raw_rev = store.get(META_REV)
        if raw_rev is not None and len(raw_rev) != _BE.size:
            # (no guess: a revision too low builds blocks again, one too high skips batches)
            raise StoreError(f"this node's record of the etcd revision it applied up to is "
                             f"damaged ({len(raw_rev)} bytes, not 8): restore the store from a "
                             "peer's archive (`ledger export --node`, then `ledger import`) "
                             "or let the node catch up from its peers into a new folder")
        self.rev = _BE.unpack(raw_rev)[0] if raw_rev else 0
        self.final_size = self._final_at_start(store.get(META_FINAL))
        self.cosig_rev = 0
        raw_halted = store.get(META_HALTED)
        self.halted: str | None = None if raw_halted is None else raw_halted.decode(
            "utf-8", "replace")
        if raw_halted is not None:  # only a fork is kept as a halt (_evidence)
            self._fork_cosig = None
        self.store_failure: str | None = None
        """Why the store refused a write (a full disk): nothing more until a restart."""
        self.stats = Stats()
        self._recent: OrderedDict[int, tuple[int, int]] = OrderedDict()
        # size -> agency -> (checkpoint, line): the newest read of each co-signature key, as
        # etcd holds it (a key written again over and over added an entry per read, for good)
        self._pending_cosigs: dict[int, dict[str, tuple[Checkpoint, str]]] = {}
        self._waiting: dict[bytes, list[Pending]] = {}
        # the waiting pendings whose batch is not put yet (queued, or being put): a store
        # failure drops them unput, so only the others are told their transaction was ordered
        self._unput: set[Pending] = set()
        self._wlock = threading.Lock()
        # batch signature -> (our parsed transactions, SHA-256 of the batch's bytes as put: a
        # batch of ours that comes back not decoding is known by its bytes alone, _skip)
        self._own: dict[bytes, tuple[list[Tx], bytes]] = {}
        # one item per submit_many call: its transactions not yet known here, with their pendings
        self._queue: queue.SimpleQueue[list[tuple[Tx, Pending]] | None] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        n = (os.cpu_count() or 2) if workers is None else workers
        self._last_prune = 0.0
        self._checker: SignatureChecker | None = None
        self._threads: list[threading.Thread] = []
        # What the steps below take is released when a later one fails (a bad argument, a
        # signal): the peer client and the worker processes were left until the process ended.
        self._peers_http = PeerHttp(http_verify)
        try:
            self._checker = SignatureChecker(n) if n > 0 else None
            self.etcd.watch(self._wake.set)
            self._threads = [threading.Thread(target=self._propose_loop, name="etcd-propose",
                                              daemon=True),
                             threading.Thread(target=self._apply_loop, name="etcd-apply",
                                              daemon=True)]
            for t in self._threads:
                t.start()
        except BaseException:
            self._release_at_failed_start()
            raise

    def _release_at_failed_start(self) -> None:
        """Stop what a failed :meth:`__init__` started; the caller's EtcdLog stays open (the
        node closes it), only its watch ends."""
        self._stop.set()
        self._release(close_etcd=False)

    # -- submitting (SoloOrderer interface) --
    def submit(self, raw: bytes | Tx) -> Pending:
        return self.submit_many([raw])[0]

    def submit_many(self, raws: Sequence[bytes | Tx], chunk: int = 256) -> list[Pending]:
        del chunk
        if self._stop.is_set():
            raise OrderingError("orderer is stopped", taken=False)
        if not self._member():
            raise OrderingError(
                f"this node's key is not a current node key of {self.agency!r} on "
                f"{self.network!r} at its head (rotated or invalidated, or the agency "
                "removed): its batches would be refused; put the agency's current node key "
                "file in the keys folder and restart the node", taken=False)
        if self.store_failure is not None:
            raise self._store_refusal()
        if self.stats.nospace_since:
            raise NoSpace(self._nospace_refusal(), taken=False)
        if self._older_clocks:
            raise OrderingError(self._older_clocks, taken=False)
        out: list[Pending] = []
        cond = threading.Condition()  # one per call: see ledger.ordering.Pending
        new: list[tuple[Tx, Pending]] = []
        for raw in raws:
            fut = Pending(cond)
            out.append(fut)
            try:
                tx = raw if isinstance(raw, Tx) else Tx.from_bytes(raw)
            except DecodeError as e:
                fut.set_exception(e)
                continue
            loc = self.store.tx_location(tx.txid)
            if loc is not None:
                fut.set_result(Receipt(tx.txid, loc[0], loc[1], duplicate=True))
                continue
            new.append((tx, fut))
        cut = self._reads_failing_at
        cut_for = 0.0 if cut is None else self.timer() - cut
        if new and cut_for > self.cut_off_after:  # known ones: answered
            raise CutOff(
                f"this node has not been able to read the network's ordered batches from etcd "
                f"for {int(cut_for)} s ({self.stats.last_error or 'no answer'}): "
                "it is cut off from a quorum of the etcd members, or most of them are down. "
                "Nothing was taken; send it to another agency's node, or here again once "
                "/v1/health is ok")
        if new:
            with self._wlock:
                for tx, fut in new:
                    self._waiting.setdefault(tx.txid, []).append(fut)
                    self._unput.add(fut)
            self._queue.put(new)
        return out

    def _propose_loop(self) -> None:
        """Cut the queued transactions into batches: up to ``max_batch`` transactions or ~768 KB,
        waiting at most ``max_wait`` after the first for more to join."""
        pending: list[tuple[Tx, Pending]] = []
        stopping = False
        while True:
            if not pending:
                got = None if stopping else self._queue.get()
                if got is None:
                    return
                pending = got
            size = sum(len(tx.raw) for tx, _ in pending[:self.max_batch])
            # while paced, what arrives before the next put is due joins this batch
            deadline = _time.monotonic() + max(self.max_wait, self._pace_wait())
            while not stopping and len(pending) < self.max_batch and size < _BATCH_BYTES:
                left = deadline - _time.monotonic()
                try:
                    nxt = self._queue.get(timeout=left) if left > 0 else \
                        self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stopping = True
                    break
                pending = pending + nxt
                size += sum(len(tx.raw) for tx, _ in nxt)
            cut, size = 0, 0
            while cut < len(pending) and cut < self.max_batch and size < _BATCH_BYTES:
                size += len(pending[cut][0].raw)
                cut += 1
            try:
                self._put(pending[:cut])
            except Exception as e:  # the thread that puts batches never dies
                # a bug, or input no check foresaw (a peer's clock dated near 2**64 made a
                # batch time that did not encode): said to this batch's submitters, and the
                # next batch is put as usual; ending the thread left every later one waiting
                self.stats.last_error = f"{type(e).__name__}: {e}"
                log.error("could not put a batch", exc_info=True)
                self._fail([f for _, f in pending[:cut]], OrderingError(
                    f"this node could not put its batch ({type(e).__name__}: {e})"))
            pending = pending[cut:]

    def _pace_wait(self) -> float:
        """Seconds until the next batch may be put: 0 unless paced (after a NOSPACE alarm)."""
        now = _time.monotonic()
        if now >= self._paced_until:
            return 0.0
        return max(0.0, self._last_put + PACE - now)

    def batch_time_now(self) -> tuple[int, int | None]:
        """(the time this node proposes for a batch now, the peers' time it took instead of
        its clock, or None). Its own clock, unless that is more than
        :data:`PEER_CLOCK_SLACK` off the clocks that two or more current agencies' nodes
        heard from lately publish (each their published time plus how long ago it was heard,
        by this node's timer): ahead of their upper median, it takes that; behind their lower
        median, that. Block times follow the proposer and never go back (ADR 43): one batch
        of a node an hour fast dragged the chain an hour ahead (every credential and status
        change signed with a correct clock refused for that hour), and a slow node's batches
        left the block time where it was (status changes refused as dated ahead). One lying
        peer cannot move this node's time past an honest peer's (the medians). Not a
        consensus rule: a batch's time was always its proposer's to choose."""
        own = int(self.clock())
        now = self.timer()
        # A position found at start may be hours old (its node down): its time is only a
        # lower bound of that node's clock now. So it may say this clock is behind, never that
        # it is ahead: taken for that, a node starting while its peers were down proposed
        # their last times, and left the block time hours old (status changes signed now
        # refused as dated ahead).
        known = sorted(t + int(now - heard) for t, heard, _ in self._peer_clocks.values())
        fresh = sorted(t + int(now - heard) for t, heard, moved in self._peer_clocks.values()
                       if moved)
        if len(fresh) >= 2 and own - fresh[len(fresh) // 2] > PEER_CLOCK_SLACK:
            return fresh[len(fresh) // 2], fresh[len(fresh) // 2]
        if len(known) >= 2 and known[(len(known) - 1) // 2] - own > PEER_CLOCK_SLACK:
            return known[(len(known) - 1) // 2], known[(len(known) - 1) // 2]
        return own, None

    def block_time_now(self) -> int:
        """The time a block of a batch this node proposed now would have: its batch time
        (:meth:`batch_time_now`), bounded as :func:`ledger.batch.block_time` bounds it by the
        clocks its peers witnessed, and never before the head's. A later batch's is no earlier
        (clocks and witnessed times only move on). A time this node signs into a transaction
        the ledger refuses when it lies after its block's (a credit event's ``date``) is
        taken no later than this: with this clock minutes fast, its own was refused."""
        head, registry = self.store.head, self.store.registry
        assert head is not None
        assert registry is not None
        probe = Batch(self.network, self.agency, self.batch_time_now()[0], (), b"",
                      tuple(self._witnesses())[:MAX_WITNESSES])
        return block_time(probe, registry, head.time)

    def _clock_undecided(self) -> int | None:
        """How far this clock is ahead of its peers' last published times (the upper median of
        those found at start), while fewer than two (or than were found) were heard anew and it
        started less than :data:`PEER_CLOCK_WAIT` ago; else None (0: not read yet). Those
        positions are lower bounds only (batch_time_now): this clock may be fast, or the peers
        down. One is enough to wait for: its old time bounds the block (ADR 58), and a pair's
        first batch after a restart made a block at its peer's week-old time."""
        if self.timer() - self._started >= PEER_CLOCK_WAIT:
            return None
        if not self._positions_read:
            return 0
        clocks = list(self._peer_clocks.values())
        if not clocks or sum(1 for *_, moved in clocks if moved) >= min(2, len(clocks)):
            return None
        now, own = self.timer(), int(self.clock())
        known = sorted(t + int(now - heard) for t, heard, _ in clocks)
        ahead = own - known[len(known) // 2]
        return ahead if ahead > PEER_CLOCK_SLACK else None

    def _hear_peers_first(self) -> None:
        """Hold the first batch after start while :meth:`_clock_undecided` (at most
        :data:`PEER_CLOCK_WAIT`): running peers publish within :data:`HEARTBEAT`."""
        while not self._stop.is_set() and (ahead := self._clock_undecided()) is not None:
            if ahead and not self._clock_wait_said:
                self._clock_wait_said = True
                log.warning("this machine's clock is %d s ahead of the last times its peers "
                            "published (fast, or they were down): hearing them for up to %d s "
                            "before proposing a batch", ahead, int(PEER_CLOCK_WAIT))
            self._stop.wait(0.05)

    def _witnesses(self) -> list[Witness]:
        """The signed clock times other current agencies' nodes last published with their
        positions, the latest first: a batch moves the chain's time only as far as they
        witness (ADR 58), and holds :data:`ledger.batch.MAX_WITNESSES` of them at most (taken
        by name, down or removed agencies' old times could fill it)."""
        head, registry = self.store.head, self.store.registry
        assert head is not None
        assert registry is not None
        current = set(registry.current_agencies(head.time))
        out = []
        for agency, (v, _) in dict(self._heard).items():  # the applying thread writes
            t, sig = v.get("time"), v.get("clock_sig")
            # a time below 0 does not decode in a batch (Batch.from_bytes): one such position
            # (any writer of the network's etcd keys) made every batch of this node skipped
            if agency == self.agency or agency not in current or type(t) is not int or t < 0 \
                    or type(sig) is not str:
                continue
            try:
                raw = bytes.fromhex(sig)
            except ValueError:
                continue
            if len(raw) == 64:
                out.append(Witness(agency, t, raw))
        return sorted(out, key=lambda w: (-w.time, w.agency))

    def _batch_time(self) -> int:
        t, theirs = self.batch_time_now()
        if theirs is not None:
            self._clock_said.add()
            if self._clock_said.due():
                n, _ = self._clock_said.take()
                off = int(self.clock()) - theirs
                log.warning("this machine's clock is %d s %s its peers' clocks: %d batches "
                            "proposed at their time since the last line; set the clock right "
                            "(NTP)", abs(off), "ahead of" if off > 0 else "behind", n)
        return t

    def _nospace_refusal(self) -> str:
        since = int(self.timer() - self._nospace_at)
        return (f"etcd's NOSPACE alarm is raised (its writes refused for {since} s): this node "
                f"takes no submissions meanwhile; {NOSPACE_FIX}. Send the transaction again "
                "after that (transaction ids are idempotent)")

    def _store_refusal(self) -> OrderingError:
        """A submission's answer once the store failed (:meth:`_store_failed`): nothing of it
        put in etcd (the writer drops what was queued before it)."""
        return OrderingError(f"{self.store_failure}. Nothing was taken", taken=False)

    def _put(self, items: list[tuple[Tx, Pending]]) -> None:
        if self.store_failure is not None:  # queued before it: nothing put for them
            self._fail([f for _, f in items], self._store_refusal())
            return
        if self.stats.nospace_since:  # known refused: answer at once, hold nothing for later
            self._fail([f for _, f in items], NoSpace(self._nospace_refusal(), taken=False))
            return
        if (wait := self._pace_wait()) > 0:
            self._stop.wait(wait)
        self._hear_peers_first()
        batch = make_batch(self.network, self.agency, self.node_key, self._batch_time(),
                           [tx.raw for tx, _ in items], self._witnesses())
        data = batch.to_bytes()
        with self._wlock:
            self._own[batch.sig] = ([tx for tx, _ in items], hashlib.sha256(data).digest())
            while len(self._own) > _OWN_KEPT:
                del self._own[next(iter(self._own))]
        give_up = _time.monotonic() + self.submit_timeout
        delay = 0.05
        while True:
            try:
                self._last_put = _time.monotonic()
                self.etcd.put_batch(data)
                self._was_put([f for _, f in items])
                self.stats.batches_put += 1
                self._counter_behind = False
                self._write_taken()  # etcd takes our writes (again)
                self._wake.set()
                return
            except (NoSpace, CounterBehind) as e:
                # Either lasts until the operator acts (an alarm raised; a counter behind its
                # batch keys, nothing written): refused at once, not kept to be put later nor
                # retried for submit_timeout and then said "not confirmed" (it may be ordered
                # yet), which it cannot be. A NOSPACE refusal says when to come back.
                self._write_failed(e)
                self.stats.last_error = str(e)
                self._fail([f for _, f in items],
                           NoSpace(self._nospace_refusal()) if isinstance(e, NoSpace) else e)
                return
            except OrderingError as e:
                self._write_failed(e)
                if self._stop.is_set() or _time.monotonic() + delay > give_up:
                    self.stats.last_error = str(e)
                    self._fail([f for _, f in items], Unconfirmed(str(e)))
                    return
                _time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def _was_put(self, futures: Sequence[Pending]) -> None:
        """``futures``' batch is in etcd: ordered. If the store failed meanwhile (nothing more
        is applied here), they are answered so now, unless :meth:`_store_failed` did."""
        with self._wlock:
            self._unput.difference_update(futures)
            if self.store_failure is None:
                return
            ordered = set(futures)
            for txid, futs in list(self._waiting.items()):
                futs[:] = [f for f in futs if f not in ordered]
                if not futs:
                    del self._waiting[txid]
        settle((f, self._ordered_refusal()) for f in futures)

    def _ordered_refusal(self) -> OrderingError:
        """A waiting submitter's answer once the store failed, its transaction put in etcd."""
        return OrderingError(f"{self.store_failure}. The transaction was {_COMMITS_THERE}")

    def _fail(self, futures: Sequence[Pending], error: Exception) -> None:
        with self._wlock:
            self._unput.difference_update(futures)
            for fut in futures:
                for txid, futs in list(self._waiting.items()):
                    if fut in futs:
                        futs.remove(fut)
                        if not futs:
                            del self._waiting[txid]
        for fut in futures:
            if not fut.done():
                fut.set_exception(error)

    def _resolve(self, txid: bytes, result: Receipt | Exception) -> None:
        with self._wlock:
            futs = self._waiting.pop(txid, [])
        settle(_outcomes(futs, result))

    # -- applying --
    def _apply_loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.poll)
            self._wake.clear()
            if self.halted:
                try:
                    self._publish_halted()
                except Exception as e:  # halted too, the thread that applies blocks never dies
                    self.stats.last_error = f"{type(e).__name__}: {e}"
                    if (more := self._say_failure()) is not None:
                        log.error("a halted node's put of its co-signature failed%s", more,
                                  exc_info=True)
                    self._stop.wait(1.0)
                continue
            try:
                while self._step():
                    self._maybe_prune()  # at most every 0.5 s, also under sustained load
                self._maybe_prune()
            except plyvel.Error as e:  # the store's own I/O (a full disk) or damage
                self._store_failed(e)
                continue
            except LedgerError as e:
                self.stats.last_error = str(e)
                if isinstance(e, NoSpace):  # a prune's write
                    self._write_failed(e)
                if (more := self._say_failure()) is not None:
                    log.warning("replication step failed: %s%s", e, more)
                self._stop.wait(0.2)
            except (httpx.HTTPError, OSError) as e:
                self.stats.last_error = f"peer sync: {e}"
                if (more := self._say_failure()) is not None:
                    log.warning("peer sync failed: %s%s", e, more)
                self._stop.wait(0.5)
            except Exception as e:  # the thread that applies blocks never dies
                # Anything else (a peer's answer of an unexpected shape, a bug) is reported and
                # retried: ending this thread silently left a node serving, never applying.
                self.stats.last_error = f"{type(e).__name__}: {e}"
                if (more := self._say_failure()) is not None:
                    log.error("replication step failed unexpectedly%s", more, exc_info=True)
                self._stop.wait(1.0)
            else:
                if self.stats.failing_since:  # said once, as the failures were
                    log.warning("replication steps succeed again, after %d s of failures",
                                int(self.timer() - self._failing_at))
                    self.stats.last_error = ""
                    self._failures.reset()
                self.stats.failing_since = 0.0
                self._probe_writes()
                self._heartbeat()
                try:  # it writes the store too
                    self._cosign_head()
                except plyvel.Error as e:
                    self._store_failed(e)
                self._watch_finality()
                continue
            # after a failure: health reports the node degraded until a step succeeds
            if not self.stats.failing_since:
                self.stats.failing_since, self._failing_at = _time.time(), self.timer()

    def _store_failed(self, e: plyvel.Error) -> None:
        """The store refused a write (a full disk) or a read (damage): apply nothing more until
        the node is restarted. LevelDB's log may end in a torn record then, and LevelDB takes
        the writes after it once there is room again, acknowledges them, and drops every one
        of them when the store is opened again: blocks, receipts and co-signatures this node
        gave would go back. Reopened (the restart), it ends its log at the torn record and the
        node applies the ordered batches from there. The waiting submitters are answered."""
        words = store_error_words(e)  # it travels to API clients and the health
        self.store_failure = (
            f"this node could not use its store ({words}): it applies nothing more and takes "
            "no submission until it is restarted; free space on its data folder's disk (or "
            "restore a damaged store), then restart the node: it applies what was ordered "
            "meanwhile")
        self.halted = self.halted or self.store_failure
        log.error("the block writer stopped: %s: %s (the node takes no transaction until it is "
                  "restarted)", type(e).__name__, words)
        with self._wlock:  # those not put yet are answered by the writer: nothing was taken
            waiting = [f for futs in self._waiting.values() for f in futs
                       if f not in self._unput]
            for txid, futs in list(self._waiting.items()):
                futs[:] = [f for f in futs if f in self._unput]
                if not futs:
                    del self._waiting[txid]
        ordered = self._ordered_refusal()
        settle((f, ordered) for f in waiting if not f.done())

    def _say_failure(self) -> str | None:
        """None if this failed step is not logged now (a step is retried every 0.2 to 1 s:
        the first of a run is said, then one line a minute); else the end of its line, how
        many more failed steps it stands for."""
        self._failures.add()
        if not self._failures.due():
            return None
        more = self._failures.take()[0] - 1
        return f" ({more} more failed steps since the last line)" if more > 0 else ""

    def _step(self) -> bool:
        """Apply the next run of batches, then take in co-signatures and publish ours once.

        True when there may be more batches."""
        asked, asked_at = self.timer(), int(self.clock())
        # Only this read says whether the node is cut off (submit_many's CutOff): not a
        # peer's sync or a prune failing while etcd answers, and not kept while a run of
        # steps, one after another under load, has not ended
        try:
            records, marker, cosigs = self.etcd.read_after(self.rev, self.cosig_rev)
        except OrderingError:
            if self._reads_failing_at is None:
                self._reads_failing_at = self.timer()
                self.stats.reads_failing_since = _time.time()  # a date, for /v1/cluster
            raise
        self.stats.reads_failing_since = 0.0
        self._reads_failing_at = None
        m = _pruners_marker(marker)
        if m is not None and self.rev < m["rev"] and self.etcd.none_gone_after(self.rev):
            # Not a pruner's (any agency's certificate writes the marker): no batch after the
            # last one applied here is gone from etcd. Taken up, one naming a height far ahead
            # held every node in a catch-up no peer could end: none applied, became final or
            # pruned again, and nothing wrote over it (ADR 64).
            said = marker.value if marker is not None else b""
            if self._forged_said != said:
                self._forged_said = said
                log.warning("the pruning marker names revision %d, past this node's last batch "
                            "(revision %d), but no batch after that one is gone from etcd: "
                            "no pruner's, ignored", m["rev"], self.rev)
            m = None
        self._hold_beside_older_clocks(m["height"] if m is not None and self.rev < m["rev"]
                                       else 0)
        if m is not None and self.rev < m["rev"]:
            got = m.get("hash")
            self._catch_up(m["rev"], m["height"], m["size"],
                           got if isinstance(got, bytes) and len(got) == 32 else None)
            return True
        self._take_cosigs(cosigs)
        if not records:
            self._merge_pending()
            self._current(asked, asked_at)
            return False
        checks = []
        head = self.store.head
        registry = self.store.registry
        assert head is not None
        assert registry is not None
        keys = {kid: k.raw for kid, k in registry.public_keys.items()}
        for rec in records:
            batch: Batch | None = None
            with contextlib.suppress(DecodeError):
                batch = Batch.from_bytes(rec.value)
            txs = self._parse(batch) if batch is not None else []
            fut = (self._checker.submit_parsed(txs, keys)
                   if self._checker is not None and batch is not None else None)
            checks.append((rec, batch, txs, fut))
        made: tuple[Head, str] | None = None
        for rec, batch, txs, fut in checks:
            if self._stop.is_set() or self.halted:
                return False
            if self._aligning is not None:
                self._align(rec, batch, txs)
                continue
            made = self._apply(rec, batch, txs, fut) or made
        if made is not None:
            self._publish(*made)  # the newest block's co-signature covers the earlier ones
        self._merge_pending()
        if len(records) < READ_BATCHES:  # the read reached the end, and all of it is applied
            self._current(asked, asked_at)
        return True

    def _older_clock_peers(self) -> tuple[list[str], dict[str, int]]:
        """Current agencies whose node runs a version before ADR 58, or may: its newest
        position carries no signed clock (every version since signs its clock in each) and
        was found or changed within :data:`PEER_QUIET` (one found so at start and unchanged
        since is a node of that version that stopped: an upgrade of all at once); and the
        heights such positions, as etcd holds them now, say were applied. Only what etcd holds
        now: any agency's certificate writes any position, and a height kept from one forged
        write would hold every node for good; a real one stays until that agency's node
        publishes anew (ADR 62)."""
        registry, head = self.store.registry, self.store.head
        if registry is None or head is None:
            return [], {}
        now, current = self.timer(), set(registry.current_agencies(head.time))
        held = self._positions_held  # (one deleted since stays in _heard, not in etcd)
        older = {a: (v, at) for a, (v, at) in dict(self._heard).items()  # (the applying
                 if a in current and a in held and a != self.agency  # thread writes)
                 and "clock_sig" not in v}
        return (sorted(a for a, (_, at) in older.items() if now - at <= PEER_QUIET),
                {a: v["height"] for a, (v, _) in older.items()})

    def _hold_beside_older_clocks(self, taken_to: int = 0) -> None:
        """Apply nothing beside a node of a version before ADR 58 (ADR 62): that version
        times a block by its proposer alone and refuses the witnesses in this version's
        batches, so beside it this node built blocks of other times (a fork of its own) and
        its submissions were skipped there. Nor past the height such a node applied (a
        stopped one): this node would build those blocks otherwise than it did. Positions
        are read first, and this node's own is published meanwhile (a peer upgraded at the
        same time then goes on at once). Blocks up to ``taken_to`` (the pruning marker's
        height, when this node is behind it) are not built here but taken from peers, bound
        by the marker's hash: an older position at or below it holds nothing (a current
        agency's node down since an upgrade of all at once left one in etcd for good, and
        held every node behind it, a fresh one too, short of its catch-up)."""
        if not self._positions_read or self._older_clocks:
            self._maybe_prune()  # reads the positions (at most every 0.5 s)
        head = self.store.head
        assert head is not None
        live, heights = self._older_clock_peers()
        ahead = {a: h for a, h in heights.items() if h > max(head.height, taken_to)}
        if not live and not ahead:
            self._older_clocks = ""
            return
        many = len(live) > 1
        self._older_clocks = (
            (("the nodes of " if many else "the node of ") + ", ".join(live)
             + (" run" if many else " runs") + " a version before ADR 58 (" + (
                 "their positions carry" if many else "its position carries")
             + " no signed clock): the two versions time blocks differently and would "
             "build different chains, so this node applies and takes nothing beside it")
            if live else
            ("a node of a version before ADR 58 applied blocks this node has not: " + ", ".join(
                f"{a} up to height {h}" for a, h in sorted(ahead.items()))
             + f" (this node is at {head.height}); built here they would differ (that "
             "version times blocks otherwise), so this node applies and takes nothing")) + (
            ". Versions before ADR 58 cannot be mixed with this one: put the older version "
            "back on this node until its head is every node's, then stop every node and "
            "upgrade them all at once (README, Upgrading)")
        self._heartbeat()
        raise OrderingError(self._older_clocks)

    def _current(self, asked: float, asked_at: int) -> None:
        """Everything ordered before ``asked`` (our timer's time; ``asked_at`` the same moment
        by our clock; a linearizable read: etcd answers it only with a quorum of members) is
        applied here, unless aligning a restored store."""
        if self._aligning is None and not self.halted and (
                self._current_t is None or asked > self._current_t):
            self._current_t, self._current_date = asked, asked_at

    @property
    def current_at(self) -> int | None:
        """The time by this node's clock (a date: Status List Tokens are dated by it) of the
        start of the last read that reached the end of the ordered batches, all of them
        applied since (None: not yet). As our clock read it then, unless the clock has stepped
        since by more than a verifier's skew: then now less how long ago that was by our
        timer. Kept as a date alone, an NTP step back of an hour left it an hour ahead of the
        clock: a node cut off after it called its lists current, and dated its tokens now,
        for an hour more (round 31K)."""
        if self._current_t is None:
            return None
        by_timer = int(self.clock()) - max(0, int(self.timer() - self._current_t))
        if abs(by_timer - self._current_date) <= CLOCK_SKEW:  # no step: the date as read
            return self._current_date
        return by_timer

    def _parse(self, batch: Batch) -> list[Tx]:
        """The batch's transactions, parsed once here: our own batches come back as the values
        we were given (from ``Tx.from_bytes``, or from ``make_tx``/``Tx.sign``, which equal the
        strict parse of their bytes: tests/test_ordering.py); a malformed entry is dropped, the
        same way on every node."""
        with self._wlock:
            kept = self._own.pop(batch.sig, None)
        own = None if kept is None else kept[0]
        if own is not None and batch.proposer == self.agency and len(own) == len(batch.txs) \
                and all(t.raw == raw for t, raw in zip(own, batch.txs, strict=True)):
            self.stats.own_batches_reused += 1
            return own
        txs = []
        parse = Tx.from_bytes
        for raw in batch.txs:  # try, not contextlib.suppress: ~0.35 us less per transaction
            try:
                txs.append(parse(raw))
            except DecodeError:
                continue
        return txs

    def _apply(self, rec: Record, batch: Batch | None, txs: list[Tx],
               checked: Checking[list[bool]] | None) -> tuple[Head, str] | None:
        """Apply one batch; the new head and our signature line if it made a block."""
        head, registry = self.store.head, self.store.registry
        assert head is not None
        assert registry is not None
        if batch is None:
            self._skip(rec, "does not decode")
            return None
        try:
            check_batch(batch, registry, head.time)
        except (DecodeError, SignatureError) as e:
            self._skip(rec, str(e), batch)
            return None
        flags = checked.result() if checked is not None else [False] * len(txs)
        result = build_block(head, registry, self.store, self.store.frontier, txs,
                             block_time(batch, registry, head.time),
                             checked=flags)
        self.stats.batches_applied += 1
        line: str | None = None
        if result.header is not None and result.head is not None:
            extra = {META_REV: _BE.pack(rec.create_rev)}
            # Signed only with the node key the block's registry names for this agency: a key
            # file put in place before its rotate_key commits (or a new agency's node before
            # its add_agency) signed lines no registry holds there (ADR 54, Left)
            if self._signs_at(result.registry, result.head.time):
                cp = sign_checkpoint(self.network, result.head, [(self.agency, self.node_key)])
                extra[_PENDING + _BE.pack(result.head.log_size)] = cp.to_text().encode()
                line = cp.signatures[0].to_line()
            self.store.write_block(result, extra)
            self.stats.blocks += 1
            self._remember(result.head.log_size, rec.create_rev, result.head.height)
        self.rev = rec.create_rev
        self._settle(result, ours=batch.proposer == self.agency)
        if result.head is not None and line is not None:
            return result.head, line
        return None

    def _skip(self, rec: Record, why: str, batch: Batch | None = None) -> None:
        self.stats.batches_skipped += 1
        log.warning("skipped batch at revision %d: %s", rec.create_rev, why)
        self.rev = rec.create_rev
        refused = OrderingError(f"our batch was refused by the network: {why}")
        if batch is None:  # ours, if its bytes are what this node put (rare: a short scan)
            digest = hashlib.sha256(rec.value).digest()
            with self._wlock:
                sig = next((k for k, (_, d) in self._own.items() if d == digest), None)
                txs = [] if sig is None else self._own.pop(sig)[0]
            for tx in txs:
                self._resolve(tx.txid, refused)
        elif batch.proposer == self.agency:
            for raw in batch.txs:
                with contextlib.suppress(DecodeError):
                    self._resolve(Tx.from_bytes(raw).txid, refused)

    def _settle(self, result: BlockResult, *, ours: bool) -> None:
        """Answer the submitters waiting here. Most transactions of a batch another node
        proposed have none, so the waiters are looked up under one lock before any receipt is
        made, and each waiting request is woken once (``settle``). A transaction of another
        node's batch that is waited for here was submitted there too (a client's retry on
        another node, or this node still behind when it was given one already committed
        there): the copy that committed was that node's, so ours is a duplicate."""
        height = result.head.height if result.head else -1
        waiting = self._waiting
        with self._wlock:
            if not waiting:
                return
            found: list[tuple[list[Pending], Receipt | Exception]] = []
            for tx, index in result.accepted:
                if tx.txid in waiting:
                    found.append((waiting.pop(tx.txid),
                                  Receipt(tx.txid, index, height, duplicate=not ours)))
            for tx, err in result.rejected:
                if tx.txid in waiting:
                    found.append((waiting.pop(tx.txid), TxRejected(err.code, err.message)))
            for tx, index, h in result.duplicates:
                if tx.txid in waiting:
                    found.append((waiting.pop(tx.txid),
                                  Receipt(tx.txid, index, h, duplicate=True)))
        settle(o for futs, result_ in found for o in _outcomes(futs, result_))

    def _remember(self, size: int, rev: int, height: int) -> None:
        self._recent[size] = (rev, height)
        while len(self._recent) > _RECENT:
            self._recent.popitem(last=False)

    def _signs_at(self, registry: Registry, t: int) -> bool:
        """Whether this node's key is the node key ``registry`` names for its agency at ``t``:
        the key its checkpoint signatures there are checked against."""
        return checkpoint_verifiers(registry, t).get(self.agency) == self.node_key.public

    def _member(self) -> bool:
        """Whether this node's key is a current agency node key at the head."""
        head = self.store.head
        assert head is not None
        return self._node_key_at(head.time)

    def _witnesses_now(self) -> bool:
        """Whether this node's key is its agency's node key by this machine's clock: its
        signed clock witnesses the time (ADR 58) before the chain reaches a rotation to it.
        A node that took its new key before then published nothing, and a two-agency
        network's idle chain could never get there (its peer's batches need its witness)."""
        return self._node_key_at(int(self.clock()))

    def _node_key_at(self, t: int) -> bool:
        registry = self.store.registry
        assert registry is not None
        return self.node_key.public in registry.node_keys_of(self.agency, t)

    def _publish(self, head: Head, line: str) -> None:
        if not self._member():
            return  # not (or no longer) a member: our signature would count for nothing
        try:
            self.etcd.publish(head.log_size, self.agency, cosig_value(head, line),
                              self._applied(head))
            self._cosigned = (head.log_size, self.node_key.public.raw)
            self._unpublished = None
            self._write_taken()
        except OrderingError as e:  # the next block publishes again
            self.stats.last_error = str(e)
            self._write_failed(e)
            if self._unpublished is None:  # said once a run of refusals
                log.warning("etcd refused this node's co-signature at log size %d (%s): it "
                            "is put again (with a later block, or alone if the node halts)",
                            head.log_size, e)
            self._unpublished = (head, line)

    def _publish_halted(self) -> None:
        """Put again, on a node halted on a fork, its co-signature of its newest block if etcd
        refused that put (a timeout under load, NOSPACE). A node halts in the step that applied
        the block, and a halted node co-signs nothing more (:meth:`_cosign_head`): its peers
        name the fork only from that co-signature, and they never held evidence against it.
        Not after a store failure: the block may be gone when the store is opened again."""
        if self.store_failure is not None or (
                self._unpublished is None and (self._fork_cosig is False or self._fork_published)):
            return
        if self._last_halted_put is not None and self.timer() - self._last_halted_put < 1.0:
            return  # (the loop wakes every poll)
        self._last_halted_put = self.timer()
        self._put_fork_cosig()
        if self._unpublished is not None and not self._fork_is_unpublished():
            self._publish(*self._unpublished)  # (the same put is tried once a second, once)

    def _fork_is_unpublished(self) -> bool:
        """Whether the co-signature naming the fork is the refused one :meth:`_publish` kept
        (a node that halted since it started): one put of it a second, one refusal said."""
        fork, kept = self._fork_cosig, self._unpublished
        return isinstance(fork, tuple) and kept is not None and \
            fork[0] == kept[0].log_size and fork[1] == cosig_value(*kept)

    def _put_fork_cosig(self) -> None:
        """Put this node's co-signature at its fork's size, as it signed it, unless etcd holds
        it: a node restarted while halted lost the refused put :meth:`_publish_halted` kept,
        and its store alone says what it signed there (never signed again: one checkpoint of a
        size per key). Read first, so a restart of a node whose evidence is in etcd writes
        nothing."""
        if self._fork_cosig is None:
            self._fork_cosig = self._fork_cosig_found()
        if not isinstance(self._fork_cosig, tuple) or self._fork_published:
            return
        size, value = self._fork_cosig
        try:
            if self.etcd.cosig(size, self.agency) != value:
                head = self.store.head
                assert head is not None
                self.etcd.publish(size, self.agency, value, self._applied(head))
                self._write_taken()
                log.warning("put this node's co-signature at log size %d again: it names this "
                            "node's fork to its peers", size)
        except OrderingError as e:
            self.stats.last_error = str(e)
            self._write_failed(e)
            if not self._fork_refused and not self._fork_is_unpublished():  # said once a run
                log.warning("etcd refused this node's co-signature at log size %d, which names "
                            "its fork to its peers (%s): it is put again", size, e)
            self._fork_refused = True
            return
        if self._fork_is_unpublished():
            self._unpublished = None  # the same put
        self._fork_published, self._fork_refused = True, False

    def _fork_cosig_found(self) -> tuple[int, bytes] | bool:
        """(log size, value) of this node's co-signature of its own block at the smallest size
        where the evidence it stored holds a quorum's co-signatures of one other checkpoint
        (where it halted, :meth:`_evidence`), as it signed it then; False, said in the log,
        when there is none (a block it did not sign, a record damaged or of an older format)."""
        sizes: dict[int, list[dict[str, Any]]] = {}
        for k, v in self.store.iterate(_EVIDENCE):
            try:
                d = _evidence_record(k, v)
            except StoreError:  # (said where evidence is read; it counts for nothing)
                continue
            sizes.setdefault(int(d["size"]), []).append(d)
        for size in sorted(sizes):
            try:
                registry, verifiers = self._verifiers_at(size)
            except LedgerError:
                continue
            others: list[SignedCheckpoint] = []
            for d in sizes[size]:
                with contextlib.suppress(CheckpointError, ValueError):
                    cand = SignedCheckpoint.from_text(d["theirs"])
                    i = next((i for i, o in enumerate(others)
                              if o.checkpoint == cand.checkpoint), None)
                    if i is None:
                        others.append(cand)
                    else:
                        others[i] = SignedCheckpoint(cand.checkpoint, (
                            *others[i].signatures, *cand.signatures))
            quorum = False
            for other in others:
                with contextlib.suppress(CheckpointError):
                    other.verify_quorum(verifiers, registry.quorum)
                    quorum = True
            if not quorum:
                continue
            try:
                block = self.store.block(self._height_of(size))
            except LedgerError:
                break
            mine = checkpoint_of(self.network, block)
            for d in sizes[size]:  # each record holds ours (unsigned if we did not sign it)
                with contextlib.suppress(CheckpointError, ValueError):
                    ours = SignedCheckpoint.from_text(d["ours"])
                    line = next((s.to_line() for s in ours.signatures
                                 if s.name == self.agency), None)
                    if line is not None and ours.checkpoint == mine:
                        return size, cosig_value(block, line)
            break
        log.warning("this node halted on a fork, and its store holds no co-signature of its "
                    "own at the fork's size to put in etcd (the peers name the fork from it)")
        return False

    def fork_evidence_published(self) -> bool | None:
        """Whether etcd was seen to hold this node's co-signature naming its fork (None: not
        halted on a fork, or none of its own to put)."""
        if not self.halted or self.store_failure is not None or self._fork_cosig is False:
            return None
        return self._fork_published and self._unpublished is None

    # -- co-signatures, finality, evidence --
    def _verifiers_at(self, size: int) -> tuple[Registry, dict[str, Any]]:
        """The registry and node keys in force for the block that ends at log size ``size``."""
        height = self._height_of(size)
        registry = self.store.registry_at(height)
        return registry, checkpoint_verifiers(registry, self.store.block(height).time)

    def _height_of(self, size: int) -> int:
        """The height of the block whose last entry is ``size - 1``."""
        if size < 1:
            raise OrderingError("no block ends at log size 0")
        known = self._recent.get(size)  # every block this node applied: no read, no hash
        if known is not None:
            return known[1]
        loc = self.store.tx_location(hashlib.sha256(self.store.entry(size - 1)).digest())
        if loc is None:
            raise OrderingError(f"no block ends at log size {size}")
        return loc[1]

    def _take_cosigs(self, records: list[Record]) -> None:
        for rec in records:
            self.cosig_rev = max(self.cosig_rev, rec.mod_rev)
            parts = rec.key.split("/")
            if len(parts) != 3 or parts[2] == self.agency:
                continue
            try:
                size, agency = int(parts[1]), parts[2]
                got = codec.decode(rec.value, what="co-signature")
                if isinstance(got, dict) and got.keys() == {"root", "line"} \
                        and isinstance(got["root"], bytes) and len(got["root"]) == 32 \
                        and isinstance(got["line"], str):
                    # a node of a version before ADR 60: it signed the root alone, a body
                    # this node neither signs nor counts; not forged, not evidence if the
                    # root is ours (_merge), and health names that node (ADR 62)
                    self._pending_cosigs.setdefault(size, {})[agency] = (
                        Checkpoint(self.network, size, got["root"]), got["line"])
                    continue
                root, line, height, block_hash = (got["root"], got["line"], got["height"],
                                                  got["hash"])
                if not isinstance(root, bytes) or len(root) != 32 or not isinstance(line, str) \
                        or type(height) is not int or not 0 < height < 1 << 63 \
                        or not isinstance(block_hash, bytes) or len(block_hash) != 32:
                    raise DecodeError("co-signature needs a 32-byte root, a line, a height and "
                                      "a 32-byte block hash")
                theirs = Checkpoint(self.network, size, root, (block_line(height, block_hash),))
            except (DecodeError, ValueError, KeyError, TypeError) as e:
                self.stats.cosigs_forged += 1
                log.warning("malformed co-signature %s: %s", rec.key, e)
                continue
            self._pending_cosigs.setdefault(size, {})[agency] = (theirs, line)
        if len(self._pending_cosigs) > 10_000:  # far ahead of us: catch-up will bring them back
            # the farthest go: dropping them all dropped those read with them for blocks
            # applied, and one agency's co-signatures for sizes far ahead kept the head short
            # of its quorum
            for size in sorted(self._pending_cosigs)[10_000:]:
                del self._pending_cosigs[size]

    def _merge_pending(self) -> None:
        """Check every co-signature we have the block for; store merged checkpoints at once."""
        head = self.store.head
        assert head is not None
        writes: dict[int, SignedCheckpoint] = {}
        for size in sorted(s for s in self._pending_cosigs if s <= head.log_size):
            for agency, (theirs, line) in self._pending_cosigs.pop(size).items():
                self._merge(size, agency, theirs, line, writes)
        if not writes:
            return
        finals = {s: cp for s, cp in writes.items() if s > self.final_size
                  and self._is_final(s, cp)}
        # a late co-signature on a checkpoint that is final already is added to it in place
        known = {s: cp for s, cp in writes.items() if s not in finals and s <= self.final_size
                 and self.store.checkpoint(s) is not None}
        records: dict[bytes, bytes | None] = {
            _PENDING + _BE.pack(s): cp.to_text().encode() for s, cp in writes.items()
            if s not in finals and s not in known}
        if finals:
            top = max(finals)
            records[META_FINAL] = _BE.pack(top)
            for k, _v in self.store.iterate(_PENDING):  # pending below a final one: done
                if _BE.unpack(k[len(_PENDING):])[0] <= top:
                    records[k] = None
        # Not synced: merged co-signatures are re-read from etcd after a crash (cosig_rev
        # starts at 0), so losing this write loses nothing that cannot be rebuilt.
        self.store.put_checkpoints({s: cp.to_text().encode()
                                    for s, cp in (finals | known).items()}, records)
        if finals:
            self.final_size = max(finals)

    def _is_final(self, size: int, cp: SignedCheckpoint) -> bool:
        registry, _ = self._verifiers_at(size)
        try:
            verify_final(cp, registry, self._block_time(size))
        except CheckpointError:
            return False
        return True

    def _merge(self, size: int, agency: str, body: Checkpoint, line: str,
               writes: dict[int, SignedCheckpoint]) -> None:
        """``agency``'s co-signature ``line`` of the checkpoint ``body`` (its root and the
        block it names) merged into ours; evidence if it signed another one."""
        try:
            registry, verifiers = self._verifiers_at(size)
        except LedgerError:
            return
        try:
            theirs = SignedCheckpoint(body, (NoteSignature.from_line(line),))
            signed_by = theirs.signers({agency: verifiers[agency]} if agency in verifiers
                                       else {})
        except (CheckpointError, ValueError) as e:
            self.stats.cosigs_forged += 1
            log.warning("refused co-signature of %s at size %d: %s", agency, size, e)
            return
        if agency not in signed_by:
            self.stats.cosigs_forged += 1
            log.warning("refused co-signature at size %d: %s is not a current agency node "
                        "key holder there", size, agency)
            return
        older = not body.extensions  # signed by a version before ADR 60 (ADR 62)
        if size >= self._cosig_format.get(agency, (0, False))[0]:
            self._cosig_format[agency] = (size, older)
        if older:
            if body.root == self.store.root_at(size):
                return  # the same log: it counts for nothing here, and is no evidence
            self._evidence(size, agency, SignedCheckpoint(Checkpoint(
                self.network, size, self.store.root_at(size))), theirs, verifiers, registry)
            return  # another log
        ours: SignedCheckpoint | None = writes.get(size)
        if ours is None:
            ours_text = self.store.get(_PENDING + _BE.pack(size)) or self.store.checkpoint(size)
            if ours_text is not None:
                ours = self._own_text(size, ours_text)
                if ours is None and size <= self.final_size:
                    return  # (a final one damaged: nothing merged into it, no one accused)
            if ours is not None and not ours.checkpoint.extensions:
                # written by the version before ADR 60 that ran on this store: it names no
                # block, so a peer's co-signature of the same block is judged against ours
                # as it is now (the store's own block), not against the old text (ADR 62)
                ours = None
            if ours is None:
                # a block this node applied without signing it (its key not registered
                # there): the others' co-signatures still make it final here; or one whose
                # pending checkpoint a later final one dropped (nodes co-sign the newest block
                # they applied), where a late co-signature of another root is evidence still
                ours = SignedCheckpoint(checkpoint_of(
                    self.network, self.store.block(self._height_of(size))))
                if size <= self.final_size and body == ours.checkpoint:
                    return  # a final checkpoint covers it already
        if body != ours.checkpoint:  # another log, or the same one in other blocks
            self._evidence(size, agency, ours, theirs, verifiers, registry)
            return
        if size < self.final_size:
            return  # a later final checkpoint covers it already
        merged = SignedCheckpoint(ours.checkpoint, (*ours.signatures, *theirs.signatures))
        if merged != ours:
            writes[size] = merged
            self.stats.cosigs_merged += 1

    def _own_text(self, size: int, text: bytes) -> SignedCheckpoint | None:
        """This node's stored checkpoint text at ``size`` (pending or final), if it parses and
        is the checkpoint of the node's own block there (or names no block: one written by a
        version before ADR 60); else None, said in the log. A text damaged on disk made each
        peer's co-signature of the block an equivocation, and a quorum of them halted the node
        as a fork, its blocks whole."""
        try:
            ours = SignedCheckpoint.from_text(text)
        except CheckpointError as e:
            why = str(e)
        else:
            if not ours.checkpoint.extensions or ours.checkpoint == checkpoint_of(
                    self.network, self.store.block(self._height_of(size))):
                return ours
            why = "it is not the checkpoint of its own block there"
        log.error("this node's stored checkpoint at log size %d is damaged (%s): the peers' "
                  "co-signatures are judged against its block, and no one is accused; stop "
                  "the node and run `ledger audit` on its data folder", size, why)
        return None

    def _block_time(self, size: int) -> int:
        return self.store.block(self._height_of(size)).time

    def _evidence(self, size: int, agency: str, ours: SignedCheckpoint,
                  theirs: SignedCheckpoint, verifiers: dict[str, Any],
                  registry: Registry) -> None:
        self.stats.equivocations += 1
        key = _EVIDENCE + _BE.pack(size) + agency.encode()
        record = codec.encode({"size": size, "agency": agency,
                               # a block this node did not sign: the checkpoint's body alone
                               "ours": ours.to_text() if ours.signatures
                               else ours.checkpoint.body().decode(),
                               "theirs": theirs.to_text(), "seen": int(self.clock())})
        self.store.put_records({key: record})
        log.error("EQUIVOCATION at size %d: %s signed %s, ours is %s", size, agency,
                  _said(theirs.checkpoint), _said(ours.checkpoint))
        # Do the others agree among themselves on their root? Then we are the fork.
        other = theirs
        for ev_agency, ev_text in self.evidence_for(size):
            if ev_agency != agency:
                with contextlib.suppress(CheckpointError):
                    cand = SignedCheckpoint.from_text(ev_text)
                    if cand.checkpoint == theirs.checkpoint:
                        other = SignedCheckpoint(other.checkpoint,
                                                 (*other.signatures, *cand.signatures))
        try:
            other.verify_quorum(verifiers, registry.quorum)
        except CheckpointError:
            return
        self.halted = (f"a quorum signed {_said(theirs.checkpoint)} at size {size}, ours is "
                       f"{_said(ours.checkpoint)}: this node's chain is a fork; it stopped "
                       "applying blocks (restore it from a peer)")
        self.store.put_records({META_HALTED: self.halted.encode()})
        log.error("HALTED: %s", self.halted)
        self._fork_cosig = None  # looked for in the evidence, and put if etcd lacks it

    def evidence_for(self, size: int) -> list[tuple[str, str]]:
        out = []
        for k, v in self.store.iterate(_EVIDENCE + _BE.pack(size)):
            try:
                d = _evidence_record(k, v)
            except StoreError as e:  # (a damaged one counts toward no halt)
                log.error("%s", e)
                continue
            out.append((d["agency"], d["theirs"]))
        return out

    def evidence(self) -> list[dict[str, Any]]:
        return [_evidence_record(k, v) for k, v in self.store.iterate(_EVIDENCE)]

    def _final_on_disk(self) -> int:
        """The log size of the newest final checkpoint the store holds among its last 64
        blocks, 0 if none. A store imported from a peer's archive holds the network's final
        checkpoints but no record of which is final here: without this the restored node said
        it had none (and /v1/checkpoint answered 404) until the next block (ADR 50)."""
        head = self.store.head
        assert head is not None
        for height in range(head.height, max(0, head.height - 64), -1):
            header = self.store.block(height)
            text = self.store.checkpoint(header.log_size)
            if text is None:
                continue
            try:
                cp = SignedCheckpoint.from_text(text.decode("utf-8"))
                verify_final(cp, self.store.registry_at(height), header.time)
            except (LedgerError, UnicodeDecodeError):
                continue
            if cp.checkpoint != checkpoint_of(self.network, header):
                continue  # not this block's (its root, or the block it names: ADR 60)
            return int(header.log_size)
        return 0

    def _final_at_start(self, raw: bytes | None) -> int:
        """The log size of the newest final checkpoint, as this node recorded it: when the
        record names none the store holds within its head that parses (the record or the
        checkpoint damaged), the newest final one found on disk, said in the log. A damaged
        record raised struct.error at every start, or named a size past the head: then the
        node served no checkpoint, took no newer one as final and co-signed nothing."""
        if raw is None:
            return self._final_on_disk()
        head = self.store.head
        assert head is not None
        size = _BE.unpack(raw)[0] if len(raw) == _BE.size else None
        text = self.store.checkpoint(size) if size and size <= head.log_size else None
        try:
            if text is not None and SignedCheckpoint.from_text(text).checkpoint.size == size:
                return int(size)
        except CheckpointError:
            pass
        found = self._final_on_disk()
        log.warning("this node's record of its newest final checkpoint (log size %s, head "
                    "%d) names no checkpoint its store holds (damaged?): taking the newest "
                    "final checkpoint among its last blocks instead (log size %d)", size,
                    head.log_size, found)
        return found

    def final_checkpoint(self) -> bytes | None:
        return self.store.checkpoint(self.final_size) if self.final_size else None

    # -- retention --
    def _maybe_prune(self) -> None:
        now = self.timer()
        if now - self._last_prune < 0.5:
            return
        self._last_prune = now
        head, registry = self.store.head, self.store.registry
        assert head is not None
        assert registry is not None
        # the current agencies' nodes (a removed one's last position stays in etcd)
        current = registry.current_agencies(head.time)  # sorted
        # any agency's certificate writes any position: one whose revision, height or size is
        # no integer is left out (it failed every step of the apply loop, and health's answer)
        applied = {a: v for a, v in self.etcd.applied(current).items()
                   if all(type(v.get(k)) is int for k in ("rev", "height", "size"))}
        now = self.timer()
        self._positions_held = set(applied)
        # A current agency with no (well-formed) position at all is as quiet as one whose
        # position stopped changing, since this node first looked for it: it was in no peer
        # list, and health said ok with a node never heard from (replaced whole: read by
        # status() on another thread)
        self._unheard = {a: self._unheard.get(a, now) for a in current
                         if a != self.agency and a not in applied}
        for a, v in applied.items():
            was = self._heard.get(a)
            if was is None or was[0] != v:
                if was is not None:  # changed while we watched: its time is recent
                    self._moved.add(a)
                self._heard[a] = (v, now)
        # The clocks of the peers heard from lately. A position found at start may be hours
        # old (a node down): health names a clock only by a position seen to change, and the
        # batch time takes one found at start only as a lower bound (batch_time_now); an
        # unchanged one drops out after PEER_QUIET.
        # A time past any date a transaction may carry is no clock's: any agency's certificate
        # writes any position, and two dated near 2**64 made this node's batch time overflow
        # the codec (the thread that puts batches died; every submission waited for ever)
        clocks = {a: (v["time"], self._heard[a][1]) for a, v in applied.items()
                  if a in current and a != self.agency and type(v.get("time")) is int
                  and 0 <= v["time"] <= _PEER_TIME_MAX and now - self._heard[a][1] <= PEER_QUIET}
        self._peer_clocks = {a: (t, heard, a in self._moved) for a, (t, heard) in clocks.items()}
        self._positions_read = True
        wall = int(self.clock())
        self.stats.peers = {a: {**{k: x for k, x in v.items() if k != "clock_sig"},
                                "lag": head.height - v["height"],
                                "quiet": int(now - self._heard[a][1]),
                                **({"clock_ahead": clocks[a][0] + int(now - clocks[a][1])
                                    - wall} if a in clocks and a in self._moved else {})}
                            for a, v in applied.items() if a in current}
        if not self.final_size:
            return
        # The pruner is the first current agency whose node is up: this one, and those whose
        # published position changed lately by our own timer. A peer's published wall time
        # would say "up" for as long as its clock was ahead when it went down (an hour fast,
        # and nobody pruned for that hour).
        live = [a for a in current if a == self.agency or (
            a in applied and now - self._heard[a][1] <= PRUNER_QUIET)]
        if not live or live[0] != self.agency:
            return
        final_rev = self._recent.get(self.final_size)
        if final_rev is None:
            return
        upto = final_rev[0]
        # A node at a height applied the batch of that block: a position below the revision of
        # the block ``retention`` back is far behind, whatever height it claims (one claiming
        # the head at revision 0 held every batch in etcd for good)
        floor = next((r for r, h in reversed(self._recent.values())
                      if h <= head.height - self.retention), 0)
        for a in current:
            got = applied.get(a)
            if got is None or head.height - got["height"] > self.retention or got["rev"] < floor:
                continue  # far behind or never seen: it will catch up from a peer
            upto = min(upto, got["rev"])
        marker = self.etcd.marker()
        m = _pruners_marker(marker)
        done = m["rev"] if m is not None else 0  # one no pruner's pruned nothing: written over
        if upto <= done:
            return
        at = next(((s, h) for s, (r, h) in self._recent.items() if r == upto), None)
        if at is None:
            return
        size, height = at
        # The block hash at the marker lets a node catching up past it take from a peer only
        # the network's blocks, not the same entries grouped or timed otherwise (ADR 46).
        # The batch at the marker's revision is kept (deleted by the next prune): every node at
        # or past it still finds its last batch in etcd, so none takes up a marker forged past
        # it (EtcdLog.none_gone_after). Deleting it too left an idle network with no batch in
        # etcd, and a forger writing the counter with the marker stopped every node (ADR 64).
        n = self.etcd.prune(upto - 1, codec.encode({"rev": upto, "height": height, "size": size,
                                                "hash": self.store.block(height).hash}),
                            cosig_size=size, seen=marker)
        if n is None:
            log.info("another member pruned first; the marker is left to it")
            return
        self.stats.pruned_batches += n
        log.info("pruned %d batches up to revision %d (height %d)", n, upto, height)

    # -- catch-up from a peer --
    def _catch_up(self, rev: int, height: int, size: int, block_hash: bytes | None) -> None:
        head = self.store.head
        assert head is not None
        if head.height > height:
            if self._restored_past(rev, height, size, block_hash):
                return
            self._aligning = None
            raise SyncError(f"pruning marker says height {height} at revision {rev}, but this "
                            f"node is at height {head.height} with revision {self.rev}")
        self._aligning = None  # (the marker passed the restored head: a plain catch-up)
        if head.height == height and block_hash is not None and head.hash != block_hash:
            raise SyncError(f"this node's block {height} is not the network's (its hash differs "
                            "from the pruning marker's): restore its store from a peer")
        # The network's block hashes from here to the marker, from the first peer whose header
        # chain ends at the marker's hash: blocks are then taken only if they re-execute to them.
        first = head.height + 1
        hashes = None if block_hash is None or head.height == height else \
            self._from_peers(lambda peer: self._headers_from(peer, height, block_hash), height)
        expected = None if hashes is None else (first, hashes)
        while head.height < height:
            self._from_peers(lambda peer: self._sync_from(peer, height, expected), height)
            head = self.store.head
            assert head is not None
        if head.log_size != size:
            raise SyncError(f"after sync the log has {head.log_size} entries, the marker "
                            f"says {size}")
        self.rev = rev
        self.store.put_records({META_REV: _BE.pack(rev)})
        # Say where this node now stands: peers (and its own health) showed it at the height
        # it fell behind at until its next block (a node of an idle network: indefinitely).
        self._publish_applied(head)
        self.stats.last_error = ""

    def _restored_past(self, rev: int, height: int, size: int,
                       block_hash: bytes | None) -> bool:
        """A store restored from a peer's archive (``ledger import``) holds the network's
        blocks past the marker but no etcd revision: when its block at the marker's height is
        the marker's, take up from the marker and match the batches after it to the blocks
        already held (:meth:`_align`) instead of building them again: a transaction refused
        then might pass on the later state, and would fork the chain."""
        head = self.store.head
        assert head is not None
        # never applied a batch here (or still matching them: the marker moved meanwhile)
        if block_hash is None or (self._aligning is None and self.store.get(META_REV)):
            return False
        at = self.store.block(height)
        if at.hash != block_hash or at.log_size != size:
            return False
        if head.log_size > self.final_size:
            # Its blocks past the marker are matched to the batches only as far as their
            # transactions appear in them, in order: a tail no quorum signed could be another
            # member's cut-down version (ADR 52). Final blocks only; etcd holds the batches
            # after them (none is pruned before a final checkpoint covers it).
            raise SyncError(f"this store was restored from an archive and holds blocks past "
                            f"its newest final checkpoint (log size {self.final_size}, head "
                            f"{head.log_size}): a node takes only final blocks from an "
                            "archive. Stop the node and import the archive again with "
                            "`ledger import --until-final`")
        log.info("store restored past the pruning marker (height %d, ours %d): matching the "
                 "batches after it to the blocks held", height, head.height)
        self.rev = rev
        self._aligning = (height + 1, head.height)
        return True

    def _align(self, rec: Record, batch: Batch | None, txs: list[Tx]) -> None:
        """While aligning: whether ``rec``'s batch made the next block held, k. It did when
        the network took it (decodes, signed by a node key of a current agency), its block
        time is block k's, and block k's transactions appear in it in order. Then no earlier
        batch since block k-1 can have: it made no block, so it was refused whole on the same
        state, and with the same block time its first transaction of block k would have been
        taken there too. A batch with the same transactions refused earlier (a grant not yet
        in force, say) differs in time or in state, and is passed over."""
        assert self._aligning is not None
        k, top = self._aligning
        self.rev = rec.create_rev
        if batch is None:
            return
        header, prev = self.store.block(k), self.store.block(k - 1)
        try:
            check_batch(batch, self.store.registry_at(k - 1), prev.time)
        except (DecodeError, SignatureError):
            return
        if header.time != block_time(batch, self.store.registry_at(k - 1), prev.time):
            return
        # a transaction's id is the SHA-256 of its bytes: no parse of what the store holds
        held = iter(hashlib.sha256(raw).digest() for raw in self.store.block_entries(header))
        want = next(held, None)
        for tx in txs:
            if tx.txid == want:
                want = next(held, None)
        if want is not None:
            return
        self._remember(header.log_size, rec.create_rev, k)
        if k < top:
            self._aligning = (k + 1, top)
            return
        self._aligning = None
        self.store.put_records({META_REV: _BE.pack(rec.create_rev)})
        log.info("restored store aligned with etcd at revision %d (height %d)",
                 rec.create_rev, k)
        head = self.store.head
        assert head is not None
        self._publish_applied(head)

    def _applied(self, head: Head) -> bytes:
        """This node's applied position, as peers read it (``a/<agency>``)."""
        now = int(self.clock())
        return codec.encode({"rev": self.rev, "height": head.height, "size": head.log_size,
                             "time": now, "rules": RULES,  # ADR 77
                             # the time signed, as other agencies' batches carry it to witness
                             # the chain's time (ADR 58); hex, as "credit" below
                             "clock_sig": clock_signature(self.network, self.agency,
                                                          self.node_key, now).hex(),
                             # hex: a node of a version before ADR 51 copies its peers'
                             # fields into its JSON, and bytes broke it (ADR 52)
                             **({"credit": self.credit_mark.hex()} if self.credit_mark
                                else {})})

    def _heartbeat(self) -> None:
        """Publish our applied position if nothing else did for :data:`HEARTBEAT` seconds."""
        if _time.monotonic() - self._last_published < HEARTBEAT:
            return
        self.etcd.check_first()
        head = self.store.head
        if head is not None:
            self._last_published = _time.monotonic()  # tried: a failing put is retried later
            self._publish_applied(head)

    def _publish_applied(self, head: Head) -> None:
        if not self._member() and not self._witnesses_now():
            return
        try:
            self.etcd.put_applied(self.agency, self._applied(head))
            self._last_published = _time.monotonic()
            self._write_taken()
        except OrderingError as e:
            self.stats.last_error = str(e)
            self._write_failed(e)

    def _write_failed(self, e: OrderingError) -> None:
        self.stats.put_failing_since = self.stats.put_failing_since or _time.time()
        self.stats.put_error = str(e)
        if isinstance(e, CounterBehind):
            self._counter_behind = True
        if isinstance(e, NoSpace) and not self.stats.nospace_since:
            self.stats.nospace_since, self._nospace_at = _time.time(), self.timer()
            log.error("etcd's NOSPACE alarm is raised (%s): this node refuses submissions "
                      "until it clears; %s", e, NOSPACE_FIX)

    def _write_taken(self) -> None:
        """etcd took one of our writes: whatever refused them is over. After a NOSPACE alarm
        the node takes submissions again and paces its batches for :data:`PACED_FOR` s. A
        counter behind its batch keys stays said until a batch is put again: etcd takes every
        other write meanwhile, and health said "ok" at the next while no batch could be put."""
        if not self._counter_behind:
            self.stats.put_failing_since = 0.0
        if self.stats.nospace_since:
            log.warning("etcd takes writes again after %d s of NOSPACE: submissions are taken "
                        "again, and for %d s this node puts at most one batch every %.1f s",
                        int(self.timer() - self._nospace_at), PACED_FOR, PACE)
            self.stats.nospace_since = 0.0
            self._paced_until = _time.monotonic() + PACED_FOR

    def _probe_writes(self) -> None:
        """While etcd refuses our writes, try a small one (our applied position) every few
        seconds: an idle node would otherwise say "degraded" until its next submission, or
        "ok" while etcd still refuses every write. A counter behind its batch keys is asked
        by a read (:meth:`EtcdLog.counter_behind`): etcd takes the position meanwhile."""
        if not self.stats.put_failing_since:
            return
        now = _time.monotonic()
        if now - self._last_probe < _PROBE_EVERY:
            return
        self._last_probe = now
        if self._counter_behind:  # etcd takes every other write: asked by a read
            try:
                if self.etcd.counter_behind():
                    return
            except OrderingError:
                return
            log.warning("the batch counter is no longer behind the batch keys in etcd: "
                        "this node puts batches again")
            self._counter_behind = False
        head = self.store.head
        if head is not None:
            self._publish_applied(head)

    def _from_peers(self, step: Callable[[str], _T], height: int) -> _T:
        """``step(peer)`` with each peer in turn until one succeeds, starting with the last
        one that did (a peer that answers badly does not stand first again)."""
        last: Exception | None = None
        first = self._good_peer % max(1, len(self.peers))
        for i in [*range(first, len(self.peers)), *range(first)]:
            try:
                got = step(self.peers[i])
            except Exception as e:  # whatever one peer sends or fails with, try the next
                last = e
                log.warning("sync from %s failed: %s", self.peers[i], e)
                continue
            self._good_peer = i
            return got
        raise SyncError(f"no peer could bring this node to height {height}: {last}")

    def _peer_get(self, url: str, cap: int, params: dict[str, int] | None = None) -> bytes:
        """A peer's answer, read up to ``cap`` bytes and within :data:`PEER_READ_DEADLINE`
        (else SyncError): a peer's endless or byte-by-byte answer does not hold this node."""
        deadline = _time.monotonic() + PEER_READ_DEADLINE
        body = bytearray()
        streams: list[Any] = []  # this answer's connection, as it is made (and wrapped in TLS)

        def made(event: str, info: dict[str, Any]) -> None:
            if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
                streams.append(info.get("return_value"))

        def cut() -> None:
            # The status line and headers are read before the body, each read bounded alone:
            # a peer sending them a byte at a time held this node for days. At the deadline
            # the socket is shut down, and the read waiting on it ends.
            for stream in streams:
                with contextlib.suppress(Exception):
                    stream.get_extra_info("socket").shutdown(socket.SHUT_RDWR)

        watchdog = threading.Timer(PEER_READ_DEADLINE, cut)
        watchdog.daemon = True
        watchdog.start()
        try:
            with self._peers_http.client().stream("GET", url, params=params,
                                                  extensions={"trace": made}) as r:
                r.raise_for_status()
                for chunk in r.iter_bytes():
                    body += chunk
                    if len(body) > cap:
                        raise SyncError(f"{url} answered more than {cap} bytes")
                    if _time.monotonic() > deadline:
                        raise SyncError(f"{url} took over {PEER_READ_DEADLINE:.0f} s to answer")
        except httpx.TransportError as e:
            if _time.monotonic() > deadline:
                raise SyncError(f"{url} took over {PEER_READ_DEADLINE:.0f} s to answer") from e
            raise
        finally:
            watchdog.cancel()
        return bytes(body)

    def _headers_from(self, peer: str, target: int, target_hash: bytes) -> list[bytes]:
        """The hashes of blocks head+1..target as ``peer`` has them, checked to chain from our
        head to ``target_hash`` (the pruning marker's): so they are the network's."""
        head = self.store.head
        assert head is not None
        return self._resumed_walk(
            self._walks, peer, head.height, head.hash, target, target_hash,
            f"{peer}'s block {target} is not the network's (its hash differs from the pruning "
            "marker's)")

    def _resumed_walk(self, walks: dict[str, tuple[bytes, list[bytes]]], peer: str,
                      height: int, block_hash: bytes, target: int, target_hash: bytes,
                      wrong: str) -> list[bytes]:
        """``peer``'s hashes of blocks ``height``+1..``target``, checked to chain from
        ``block_hash`` (block ``height``'s) to ``target_hash``, else SyncError(``wrong``).
        Each peer's own walk is kept in ``walks`` across attempts (and marker moves): one cut
        by a 429 or a 503 goes on where it stopped, or a long gap could never be crossed (ADR
        47); one peer's headers never stand in for another's, so a liar's prefix costs only
        itself."""
        walk = walks.get(peer)
        hashes = list(walk[1]) if walk is not None and walk[0] == block_hash else []
        del hashes[max(0, target - height):]
        walks[peer] = (block_hash, hashes)
        try:
            last = self._walk_headers(peer, height, block_hash, hashes, target)
        except SyncError:
            walks.pop(peer, None)
            raise
        if last != target_hash:
            walks.pop(peer, None)
            raise SyncError(wrong)
        walks.clear()
        return hashes

    def _walk_headers(self, peer: str, height: int, block_hash: bytes, hashes: list[bytes],
                      target: int) -> bytes:
        """Extend ``hashes`` (of ``peer``'s blocks after ``height``, whose hash is
        ``block_hash``) up to block ``target`` with ``peer``'s headers, each checked to chain
        from the one before; the hash of the last one."""
        prev = hashes[-1] if hashes else block_hash
        while height + len(hashes) < target:
            self._heartbeat()  # a long catch-up is not a node gone quiet
            start = height + len(hashes) + 1
            got = codec.decode(self._peer_get(
                f"{peer}/v1/sync/headers", 4 << 20,
                {"from": start, "count": min(SYNC_HEADERS, target - start + 1)}),
                max_size=4 << 20, what="sync headers")
            if not isinstance(got, list) or not got:
                raise SyncError(f"{peer} sent no headers from {start}")
            for i, raw in enumerate(got):
                if not isinstance(raw, bytes):
                    raise SyncError(f"{peer} sent a header that is not bytes")
                header = BlockHeader.from_bytes(raw)
                if header.height != start + i or header.prev_hash != prev:
                    raise SyncError(f"{peer}'s header {start + i} does not chain from block "
                                    f"{start + i - 1}")
                prev = header.hash
                hashes.append(prev)
                if header.height == target:
                    break
        return prev

    def _bind(self, peer: str, results: list[BlockResult], cp: SignedCheckpoint) -> None:
        """The run ``results`` on the chain that ends at the block ``cp`` names (a quorum
        signed that block's hash, so the run is the network's blocks and not the same log
        grouped or timed otherwise: ADR 60). ``peer``'s headers from the run's end to that
        block, checked to chain; the run's and their hashes are kept (:attr:`_vouched`), so
        the next runs up to it need only match them."""
        height, block_hash = checkpoint_block(cp.checkpoint)
        run = [r.head for r in results if r.head is not None]
        end = run[-1]
        hashes = [h.hash for h in run]
        if height < end.height or (height == end.height and block_hash != end.hash):
            raise SyncError(f"{peer}'s final checkpoint (size {cp.checkpoint.size}) names "
                            f"block {height}, not one of the chain it sent")
        # (kept per peer from the run's end: a retry fetches the same run)
        after = self._resumed_walk(
            self._binds, peer, end.height, end.hash, height, block_hash,
            f"{peer}'s block {height} is not the one its final checkpoint (size "
            f"{cp.checkpoint.size}) names: blocks other than the network's")
        self._vouched = (run[0].height, hashes + after)

    def _peer_blocks(self, peer: str, start: int, count: int) -> list[list[Any]]:
        """``peer``'s blocks from ``start`` (``count`` at most), as [header, [entries]]."""
        self._heartbeat()  # a long catch-up is not a node gone quiet
        unverified = codec.decode(self._peer_get(
            f"{peer}/v1/sync/blocks", 2 * SYNC_REPLY_BYTES, {"from": start, "count": count}),
            max_size=2 * SYNC_REPLY_BYTES, what="sync blocks")
        if not isinstance(unverified, list) or not unverified:
            raise SyncError(f"{peer} sent no blocks")
        if not all(isinstance(item, list) and len(item) == 2 and isinstance(item[0], bytes)
                   and isinstance(item[1], list) and all(isinstance(e, bytes) for e in item[1])
                   for item in unverified):
            raise SyncError(f"{peer} sent something other than [header, [entries]] pairs")
        return unverified

    @staticmethod
    def _reexecute(peer: str, item: list[Any], head: Head, registry: Registry,
                   overlay: _Overlay, frontier: Any) -> BlockResult:
        """One of ``peer``'s blocks built again on ``overlay`` (its writes go there)."""
        header = BlockHeader.from_bytes(item[0])
        txs = [Tx.from_bytes(raw) for raw in item[1]]
        res = build_block(head, registry, overlay, frontier, txs, header.time)
        if res.header is None or res.head is None or res.header.to_bytes() != item[0] \
                or res.rejected or res.duplicates:
            raise SyncError(f"{peer}'s block {header.height} does not re-execute to its "
                            "header")
        overlay.writes.update(res.writes)
        return res

    def _consistent(self, peer: str, head: Head, cp: SignedCheckpoint) -> None:
        """``head``'s log a prefix of ``cp``'s, by ``peer``'s consistency proof."""
        proof: list[bytes] = []
        if cp.checkpoint.size > head.log_size:
            got = json.loads(self._peer_get(  # (64 hashes at most, ~50 bytes each)
                f"{peer}/v1/proofs/consistency", 1 << 16,
                {"old": head.log_size, "new": cp.checkpoint.size}))
            proof = [base64.b64decode(p) for p in got["proof"]]
        try:
            merkle.verify_consistency(head.log_size, cp.checkpoint.size, head.log_root,
                                      cp.checkpoint.root, proof)
        except ProofError as e:
            raise SyncError(f"{peer}'s blocks are not consistent with its final checkpoint: "
                            f"{e}") from e

    def _vouch(self, peer: str, results: list[BlockResult], head: Head, registry: Registry,
               frontier: Any, cp: SignedCheckpoint) -> None:
        """Check ``cp`` (past the run ``results``, ending at ``head``) with the registry at its
        own block: ``peer``'s blocks after the run followed up to it by their headers, entries
        and governance only (``follow_block``: nothing per transaction is held, however far
        the checkpoint is; ADR 64), not written. The run's blocks and those after it are then
        vouched for by it (kept, so the next runs need only match their hashes; each is still
        re-executed in full before it is written)."""
        hashes = [r.head.hash for r in results if r.head is not None]
        at, at_registry, at_frontier = head, registry, frontier
        while at.log_size < cp.checkpoint.size:
            for item in self._peer_blocks(peer, at.height + 1, SYNC_BLOCKS):
                try:
                    at, at_registry, at_frontier = follow_block(at, at_registry, at_frontier,
                                                                item[0], item[1])
                except ValueError as e:
                    raise SyncError(f"{peer}'s {e}") from e
                hashes.append(at.hash)
                if at.log_size >= cp.checkpoint.size:
                    break
                if len(hashes) - len(results) >= MAX_VOUCH_BLOCKS:
                    raise SyncError(
                        f"{peer}'s final checkpoint (size {cp.checkpoint.size}) is more than "
                        f"{MAX_VOUCH_BLOCKS:,} blocks past the synced run, with signers this "
                        "node cannot judge yet: not followed further (rebuild the store from "
                        "a peer's archive: `ledger export --node`, then `ledger import`)")
        if at.log_size != cp.checkpoint.size:
            raise SyncError(f"{peer}'s final checkpoint (size {cp.checkpoint.size}) is not at "
                            "the end of a block of its chain")
        verify_final(cp, at_registry, at.time)
        if at.log_root != cp.checkpoint.root:
            raise SyncError(f"{peer}'s blocks are not consistent with its final checkpoint "
                            f"(size {cp.checkpoint.size})")
        if checkpoint_block(cp.checkpoint) != (at.height, at.hash):
            raise SyncError(f"{peer}'s block {at.height} is not the one its final checkpoint "
                            f"(size {cp.checkpoint.size}) names: blocks other than the "
                            "network's")
        assert results[0].head is not None
        self._vouched, self._vouching = (results[0].head.height, hashes), cp

    def _sync_from(self, peer: str, target: int,
                   expected: tuple[int, list[bytes]] | None = None) -> None:
        """Blocks from ``peer`` up to ``target`` (a run of them), re-executed and checked
        against ``peer``'s final checkpoint, and with ``expected`` (the height of the first
        hash, the hashes) against the network's block hashes, before any is written."""
        head, registry = self.store.head, self.store.registry
        assert head is not None
        assert registry is not None
        overlay = _Overlay(self.store)
        frontier = self.store.frontier
        results: list[BlockResult] = []
        for item in self._peer_blocks(peer, head.height + 1,
                                      min(SYNC_BLOCKS, target - head.height)):
            res = self._reexecute(peer, item, head, registry, overlay, frontier)
            assert res.head is not None
            if expected is not None and not (
                    0 <= res.head.height - expected[0] < len(expected[1])
                    and res.header is not None
                    and res.header.hash == expected[1][res.head.height - expected[0]]):
                raise SyncError(f"{peer}'s block {res.head.height} is not the network's (not "
                                "the block the pruning marker's chain has there)")
            head, registry, frontier = res.head, res.registry, res.frontier
            results.append(res)
            if head.height >= target:
                break
        vouched = self._vouched
        if vouched is None or not all(
                r.head is not None and 0 <= r.head.height - vouched[0] < len(vouched[1])
                and r.head.hash == vouched[1][r.head.height - vouched[0]] for r in results):
            # The run against the peer's final checkpoint, before writing anything. Its
            # signers are judged by the registry at the checkpoint's own block: one past a
            # rotation (or an agency added) that the run's registry does not know has its
            # block's registry found by re-executing the peer's blocks up to it (not written).
            got = SignedCheckpoint.from_text(  # (at most MAX_SIGNATURES lines of ~100 bytes)
                self._peer_get(f"{peer}/v1/checkpoint", 1 << 16))
            if not got.checkpoint.extensions:  # (no line at all: an older version's)
                raise SyncError(
                    f"{peer}'s final checkpoint (size {got.checkpoint.size}) names no block: "
                    "that node runs a version before ADR 60, whose checkpoints bind no blocks, "
                    "and this node takes no blocks past etcd's pruning marker from it; upgrade "
                    "that agency's node (or another peer's) first, then this one catches up "
                    "from it (README, Upgrading)")
            try:
                checkpoint_block(got.checkpoint)  # (what binds the run's blocks: ADR 60)
            except CheckpointError as e:
                raise SyncError(f"{peer}'s final checkpoint: {e}") from e
            if got.checkpoint.size < head.log_size:
                raise SyncError(f"{peer}'s final checkpoint (size {got.checkpoint.size}) does "
                                f"not cover the synced log (size {head.log_size})")
            try:
                verify_final(got, registry, head.time)
                self._consistent(peer, head, got)
                self._bind(peer, results, got)
                self._vouching = got
            except CheckpointError:
                if got.checkpoint.size == head.log_size:
                    raise
                self._vouch(peer, results, head, registry, frontier, got)
        cp = self._vouching
        assert cp is not None
        for res in results:
            assert res.head is not None
            final = cp.checkpoint.size == res.head.log_size
            self.store.write_block(res, {
                checkpoint_key(res.head.log_size): cp.to_text().encode(),
                META_FINAL: _BE.pack(res.head.log_size)} if final else None)
            if final:
                self.final_size = res.head.log_size
            self.stats.synced_blocks += 1
        last = results[-1].head
        vouched = self._vouched
        if last is not None and vouched is not None and \
                last.height >= vouched[0] + len(vouched[1]) - 1:
            # written up to the checkpoint's block: its hashes (up to MAX_VOUCH_BLOCKS of
            # them) vouch for nothing more, and the next run needs a newer checkpoint anyway
            self._vouched = self._vouching = None

    # -- status and lifecycle --
    def _cosign_head(self) -> None:
        """Co-sign the head with this node's key if no co-signature of it by this key was
        published: its block was applied, and signed, with a node key rotated out since (that
        signature counts for nothing and was not published), and the node restarted with the
        new key. The block would stay short of the quorum until the next block (ADR 52). A
        block this node applied itself, so nothing to check but that it is not final. The
        peers' co-signatures it holds for the head stay; a line of ours by another key goes."""
        head = self.store.head
        if (head is None or head.height == 0 or self.final_size >= head.log_size
                or self._aligning is not None or self.halted
                or self._cosigned == (head.log_size, self.node_key.public.raw)
                or self.store.registry is None
                or not self._signs_at(self.store.registry, head.time)):
            return
        existing: SignedCheckpoint | None = None
        held = self.store.get(_PENDING + _BE.pack(head.log_size))
        with contextlib.suppress(CheckpointError, UnicodeDecodeError):
            if held is not None:  # the peers' co-signatures merged so far stay
                existing = SignedCheckpoint.from_text(held)
        if existing is not None:  # (not a line of ours by a key rotated out)
            existing = None if existing.checkpoint != checkpoint_of(self.network, head) \
                else SignedCheckpoint(existing.checkpoint, tuple(
                    s for s in existing.signatures if s.name != self.agency))
        cp = sign_checkpoint(self.network, head, [(self.agency, self.node_key)], existing)
        self.store.put_records({_PENDING + _BE.pack(head.log_size): cp.to_text().encode()})
        log.info("co-signing the head (log size %d) with this node's current key",
                 head.log_size)
        mine = next(s for s in cp.signatures if s.name == self.agency and s.key_hash ==
                    note_key_hash(self.agency, self.node_key.public.raw))
        self._publish(head, mine.to_line())

    def _watch_finality(self) -> None:
        """Note since when the head has had no final checkpoint (0 while it has one)."""
        head = self.store.head
        # the genesis alone is no one's to co-sign: a new network is not short of a quorum
        if head is None or self.final_size >= head.log_size or head.height == 0:
            self._unfinal_at = None
        elif self._unfinal_at is None:
            self._unfinal_at = self.timer()

    def status(self) -> dict[str, Any]:
        head = self.store.head
        assert head is not None
        now = self.timer()
        return {"agency": self.agency, "ordering": "etcd", "revision": self.rev,
                "height": head.height, "log_size": head.log_size,
                "final_size": self.final_size, "halted": self.halted,
                "fork_evidence_published": self.fork_evidence_published(),
                "peers": {a: {k: v.hex() if isinstance(v, bytes) else v for k, v in p.items()}
                          for a, p in self.stats.peers.items()},  # JSON: the fingerprint as hex
                "counters": {f.name: getattr(self.stats, f.name) for f in fields(Stats)
                             if f.type == "int"},
                "last_error": self.stats.last_error,
                "failing_since": self.stats.failing_since or None,
                "reads_failing_since": self.stats.reads_failing_since or None,
                "put_failing_since": self.stats.put_failing_since or None,
                "put_error": self.stats.put_error,
                "nospace_since": self.stats.nospace_since or None,
                "paced_until": (_time.time() + self._paced_until - _time.monotonic()
                                if self._paced_until > _time.monotonic() else None),
                # a time by this node's clock, as health compares it: an hour's step of the
                # clock since then moves it as much, and how long it has been stays right
                "unfinal_since": (None if self._unfinal_at is None
                                  else self.clock() - (now - self._unfinal_at)),
                "current_at": self.current_at,
                "quiet_peers": {**{a: p["quiet"] for a, p in self.stats.peers.items()
                                   if a != self.agency and p.get("quiet", 0) > PEER_QUIET},
                                **{a: int(now - t) for a, t in self._unheard.items()
                                   if now - t > PEER_QUIET}},
                "evidence_held": sum(1 for _ in self.store.iterate(_EVIDENCE)),
                "older_peers": self.older_peers(),
                "rules": RULES,
                "other_rules": self.other_rules(),
                "own_etcd_down_since": (None if self.etcd.first_down_at is None else
                                        self.clock() - (self.etcd.timer()
                                                        - self.etcd.first_down_at)),
                "member": self._member(),
                "settings": {"max_batch": self.max_batch, "retention": self.retention}}

    def older_peers(self) -> list[str]:
        """The current agencies whose newest co-signature read is in the format of a version
        before ADR 60 (it names no block): their co-signatures count for nothing here, nor
        this node's there, until they are upgraded (ADR 62)."""
        registry, head = self.store.registry, self.store.head
        if registry is None or head is None:
            return []
        current = set(registry.current_agencies(head.time))
        return sorted(a for a, (_size, older) in self._cosig_format.items()
                      if older and a in current and a != self.agency)

    def other_rules(self) -> dict[str, int]:
        """The current agencies whose node, heard from lately, publishes consensus rules other
        than this node's :data:`~ledger.state.RULES` (0: a version before ADR 77, which
        publishes none): while versions are mixed, what the two judge differently must not be
        sent to any node (ADR 77). A position is any etcd writer's word, so this says, and
        holds nothing."""
        def rules(p: dict[str, Any]) -> int:
            r = p.get("rules")
            return r if type(r) is int else 0
        return {a: rules(p) for a, p in sorted(self.stats.peers.items())
                if a != self.agency and p.get("quiet", 0) <= PEER_QUIET and rules(p) != RULES}

    def stop(self) -> None:
        if self._stop.is_set():
            return
        # Stopping first: a batch put that cannot reach etcd now gives up at once, instead of
        # retrying for submit_timeout while the node's supervisor waits (and then kills it).
        self._stop.set()
        self._release(close_etcd=True)
        with self._wlock:  # one whose batch was put is ordered: it commits on the network
            waiting = [(f, f in self._unput) for futs in self._waiting.values() for f in futs]
            self._waiting.clear()
            self._unput.clear()
        for f, unput in waiting:
            if not f.done():
                f.set_exception(OrderingError(
                    "the node stopped before the transaction was ordered; retry it" if unput
                    else f"the node stopped after the transaction was put in etcd: it was "
                    f"{_COMMITS_THERE}"))

    def _release(self, *, close_etcd: bool) -> None:
        """Once stopping: the threads (those started) ended, then etcd (or only its watch),
        the peer client and the signature workers closed."""
        self._queue.put(None)
        self._wake.set()
        for t, wait in zip(self._threads, (self.submit_timeout + 5, 30.0), strict=False):
            if t.is_alive():  # (one a failed start never started cannot be joined)
                t.join(timeout=wait)
        if close_etcd:
            self.etcd.close()
        else:
            self.etcd.stop_watch()
        self._peers_http.close()
        if self._checker is not None:
            self._checker.close()

    def __enter__(self) -> EtcdOrderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
