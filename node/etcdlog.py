"""The thin etcd adapter: the shared ordering log of a multi-agency network (gRPC, mTLS).

etcd's Raft gives the total order (the revision) and durability while a majority of members is
up. Everything here is a few etcd v3 gRPC calls, made with the synchronous ``grpcio`` client and
the message classes that ``aetcd`` generates from etcd's own ``rpc.proto`` (ADR 27); what the
records *mean* is decided in :mod:`node.replication`. Keys, under ``/credledger/<network>/``::

    b/<seq:020d>               a batch (ledger.batch); seq is the version of ``n`` when it
                               was put, so key order is commit order (compare-and-swap below)
    n                          the batch counter: its version is the last batch's seq
    s/<size:020d>/<agency>     an agency node's checkpoint co-signature for that log size
    a/<agency>                 what that node has applied: {rev, height, size, time}
    p                          the pruning marker: batches up to ``rev`` are gone; they made
                               blocks up to ``height`` (log size ``size``)
    t                          the tick: put with every batch and co-signature; watched

Readers still select batches by create revision (``min_create_revision``, sorted by it). The
sequence in the key only lets a reader start its range after the last batch it saw: etcd reads
every key of a range that has revision filters, values included, before filtering it.

Several endpoints may be given; a call that cannot reach one tries the next.
"""

from __future__ import annotations

import contextlib
import os
import queue
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from aetcd.rpc import rpc_pb2 as pb
from aetcd.rpc import rpc_pb2_grpc as pbg

from ledger import codec
from ledger.errors import OrderingError
from ledger.files import read_capped

__all__ = ["ETCD_ROLE", "MAX_VALUE", "READ_BATCHES", "READ_COSIGS", "READ_POSITIONS",
           "CounterBehind", "EtcdLog", "NoSpace", "Record", "TlsFiles", "network_prefix",
           "prefix_end", "rpc_reason"]

_DELETE_CHUNK = 100  # etcd allows 128 operations per transaction by default
READ_BATCHES = 16
"""Batches :meth:`EtcdLog.read_after` returns at most at once: a read that returns fewer
reached the end of the ordered batches."""
_MAX_MESSAGE = 256 << 20  # the largest answer this client takes (gRPC's cap)
MAX_VALUE = 3 << 19
"""The largest value etcd takes (its --max-request-bytes, 1.5 MiB by default)."""
READ_COSIGS = 128
"""Co-signatures :meth:`EtcdLog.read_after` returns at most at once: with
:data:`READ_BATCHES` batches, a read of values of :data:`MAX_VALUE` each stays under
:data:`_MAX_MESSAGE`. At 512, 180 co-signatures of 1.5 MiB (any agency's certificate writes
them, at sizes never pruned) made every read too large, on every node, for good."""
READ_POSITIONS = 128
"""Published positions :meth:`EtcdLog.applied` reads at most in one transaction (each up to
:data:`MAX_VALUE`, so the answer stays under :data:`_MAX_MESSAGE`)."""
_SEQ_WIDTH = 20
_CAS_ATTEMPTS = 64
_KNOWN_SEQS = 256  # create revision -> sequence of batches returned lately


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str
    cert: str
    key: str
    crl: str | None = None  # the CA's revocation list, when the PKI has one (ADR 48)

    def crl_stamp(self) -> tuple[int, int, int] | None:
        """The revocation list's (inode, size, modification time), to notice a new one."""
        if self.crl is None:
            return None
        try:
            st = os.stat(self.crl)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def peer_context(self) -> ssl.SSLContext:
        """A client context for the peers' HTTPS: the network CA, and its revocation list
        checked for each peer's certificate (a revoked agency's node is not a peer)."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if self.crl is not None and os.path.exists(self.crl):  # a list copied in later counts
            ctx.load_verify_locations(cafile=self.crl)
            ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
        return ctx


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    value: bytes
    create_rev: int
    mod_rev: int


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


ETCD_ROLE = "credledger"  # the etcd role of every agency's node (ADR 48)


def network_prefix(network: str) -> str:
    """The etcd keys of ``network``: the nodes' role may read and write only these."""
    return f"/credledger/{network}/"


class NoSpace(OrderingError):
    """etcd refused a write because its NOSPACE alarm is raised: a member's database reached
    its ``--quota-backend-bytes``, or an agency's certificate raised the alarm (etcd 3.4's roles
    do not cover alarms, ADR 48). Every write fails until the operator disarms it; reads go on.

    ``retry_after`` is what a refused client is told to wait (HTTP ``Retry-After``)."""

    retry_after = 30


class CounterBehind(OrderingError):
    """A batch put refused because the counter ``n`` is behind the batch keys in etcd (deleted
    or written outside the nodes' protocol): nothing was written, and no put will be until the
    network's operator looks at etcd. Not worth retrying, and no "it may be ordered yet"."""


_NOSPACE = "database space exceeded"  # etcd's ErrGRPCNoSpace: "etcdserver: mvcc: database …"


def rpc_reason(e: Exception) -> str:
    if isinstance(e, grpc.RpcError):
        code, details = e.code(), e.details()
        return f"{code.name if code else 'error'}: {details}"
    return str(e) or type(e).__name__


class _Endpoint:
    def __init__(self, url: str, tls: TlsFiles | None) -> None:
        scheme, _, rest = url.partition("://")
        target = rest.rstrip("/")
        options = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                   ("grpc.max_send_message_length", _MAX_MESSAGE),
                   ("grpc.enable_http_proxy", 0)]  # like trust_env = False: no proxy detour
        if scheme == "https":
            if tls is None:
                raise OrderingError(f"{url}: https needs the network CA and a client certificate")
            creds = grpc.ssl_channel_credentials(
                root_certificates=read_capped(Path(tls.ca)),
                private_key=read_capped(Path(tls.key)),
                certificate_chain=read_capped(Path(tls.cert)))
            self.channel = grpc.secure_channel(target, creds, options=options)
        elif scheme == "http":
            self.channel = grpc.insecure_channel(target, options=options)
        else:
            raise OrderingError(f"{url}: an etcd endpoint is http:// or https://")
        self.url = url
        self.kv = pbg.KVStub(self.channel)
        self.watch = pbg.WatchStub(self.channel)


class EtcdLog:
    """One node's view of the ordering log in etcd."""

    def __init__(self, endpoints: Sequence[str], network: str, *, tls: TlsFiles | None = None,
                 timeout: float = 2.0, timer: Callable[[], float] = time.monotonic) -> None:
        if not endpoints:
            raise OrderingError("no etcd endpoints configured")
        self.prefix = network_prefix(network)
        self._p = self.prefix.encode()
        self.timeout = timeout
        self._ends = [_Endpoint(url, tls) for url in endpoints]
        self._current = 0
        # since when (by ``timer``, monotonic: never the wall clock, which an NTP step moves by
        # hours) the first endpoint, the agency's own member, has not answered (None: it
        # answers); the others carry the node meanwhile (ADR 50)
        self.timer = timer
        self.first_down_at: float | None = None
        self._lock = threading.Lock()
        self._seq = 0  # our guess of the counter's version; a failed swap corrects it
        # (key, value) of a batch put whose answer was lost: it may have been applied
        self._unsure: tuple[bytes, bytes] | None = None
        self._seqs: dict[int, int] = {}  # create revision -> sequence, of batches we returned
        self._watch_cancel: Callable[[], None] | None = None

    # -- plumbing --
    def _call(self, method: str, request: Any, lost: list[int] | None = None) -> Any:
        """``method`` on the first endpoint that answers. An attempt that got no answer (a
        timeout, a member gone) may yet have been applied: ``lost`` counts them."""
        last: Exception | None = None
        for attempt in range(len(self._ends)):
            with self._lock:
                i = (self._current + attempt) % len(self._ends)
            end = self._ends[i]
            try:
                result = getattr(end.kv, method)(request, timeout=self.timeout)
            except grpc.RpcError as e:
                # a refusal, not a member that does not answer: every member would say the
                # same (a NOSPACE alarm, the role's rights), and this one answered
                if e.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                grpc.StatusCode.OUT_OF_RANGE,
                                grpc.StatusCode.FAILED_PRECONDITION,
                                grpc.StatusCode.RESOURCE_EXHAUSTED,
                                grpc.StatusCode.PERMISSION_DENIED):
                    if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and \
                            _NOSPACE in (e.details() or ""):
                        raise NoSpace(f"etcd refused {method}: {rpc_reason(e)}") from e
                    raise OrderingError(f"etcd refused {method}: {rpc_reason(e)}") from e
                if i == 0 and len(self._ends) > 1 and self.first_down_at is None:
                    self.first_down_at = self.timer()
                if lost is not None:
                    lost.append(i)
                last = e
                continue
            with self._lock:
                self._current = i
            return result
        why = rpc_reason(last) if last is not None else "no endpoint"
        raise OrderingError(f"etcd unreachable ({len(self._ends)} endpoint(s)): {why}")

    def check_first(self) -> None:
        """Ask the first endpoint (the agency's own member) a small read: while it does not
        answer, :attr:`first_down_at` says since when; once it answers again, calls go
        back to it. Only with other endpoints to fall back on."""
        if len(self._ends) < 2:
            return
        try:
            self._ends[0].kv.Range(self._range("a/", keys_only=True, limit=1),
                                   timeout=self.timeout)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                if self.first_down_at is None:
                    self.first_down_at = self.timer()
                return
            # a refusal (an alarm, the role's rights) is an answer: the member is there
        self.first_down_at = None
        with self._lock:
            self._current = 0

    def _range(self, sub: str | bytes, *, start: bytes | None = None,
               min_create: int | None = None, max_create: int | None = None,
               min_mod: int | None = None, limit: int = 0, keys_only: bool = False,
               exact: bool = False) -> pb.RangeRequest:
        key = self._p + (sub.encode() if isinstance(sub, str) else sub)
        if exact:
            return pb.RangeRequest(key=key)
        req = pb.RangeRequest(
            key=start or key, range_end=prefix_end(key), limit=limit, keys_only=keys_only,
            sort_order=pb.RangeRequest.ASCEND,
            sort_target=pb.RangeRequest.MOD if min_mod is not None else pb.RangeRequest.CREATE)
        if min_mod is not None:
            req.min_mod_revision = min_mod
        if min_create is not None:
            req.min_create_revision = min_create
        if max_create is not None:
            req.max_create_revision = max_create
        return req

    def _records(self, resp: Any) -> list[Record]:
        n = len(self._p)
        # "replace": a member could write any bytes under our prefix; such a key then names no
        # size or agency and is refused where it is read, instead of stopping the apply loop
        return [Record(kv.key[n:].decode("utf-8", "replace"), kv.value, kv.create_revision,
                       kv.mod_revision) for kv in resp.kvs]

    @staticmethod
    def _cosig_key(size: int, agency: str) -> str:
        return f"s/{size:020d}/{agency}"

    def _put(self, key: str | bytes, value: bytes = b"") -> pb.RequestOp:
        k = self._p + (key.encode() if isinstance(key, str) else key)
        return pb.RequestOp(request_put=pb.PutRequest(key=k, value=value))

    # -- the ordering log --
    def put_batch(self, value: bytes) -> int:
        """Append a batch; returns the revision that orders it.

        The batch's key carries the next version of the counter ``n``, taken with a
        compare-and-swap, so batch keys sort in commit order."""
        counter = self._p + b"n"
        if self._unsure is not None and self._unsure[1] == value:
            rev = self._ours(*self._unsure)  # unanswered again: still asked at the next call
            if rev:
                self._unsure = None
                return rev  # the put whose answer was lost was applied: not put twice
        self._unsure = None
        for _ in range(_CAS_ATTEMPTS):
            seq = self._seq + 1
            key = self._p + f"b/{seq:0{_SEQ_WIDTH}d}".encode()
            lost: list[int] = []
            try:
                resp = self._call("Txn", pb.TxnRequest(
                    compare=[pb.Compare(key=counter, target=pb.Compare.VERSION,
                                        result=pb.Compare.EQUAL, version=self._seq),
                             # a new key: written over, a batch keeps its create revision (by
                             # which readers select), gets this value, and this one is never read
                             pb.Compare(key=key, target=pb.Compare.CREATE, result=pb.Compare.EQUAL,
                                        create_revision=0)],
                    success=[self._put(key[len(self._p):], value), self._put(b"n"),
                             self._put(b"t")],
                    failure=[pb.RequestOp(request_range=pb.RangeRequest(key=counter)),
                             pb.RequestOp(request_range=pb.RangeRequest(key=key, keys_only=True))]),
                    lost)
            except OrderingError:
                if lost:  # asked first at the next call (the caller puts the same again)
                    self._unsure = (key, value)
                raise
            if resp.succeeded:
                self._seq = seq
                return int(resp.header.revision)
            if lost and resp.responses[1].response_range.kvs:
                self._unsure = (key, value)  # until etcd has said whose batch is there
                rev = self._ours(key, value)
                self._unsure = None
                if rev:
                    self._seq = max(self._seq, seq)  # an endpoint that did not answer applied it
                    return rev
            kvs = resp.responses[0].response_range.kvs
            was, self._seq = self._seq, int(kvs[0].version) if kvs else 0
            if self._seq == was and resp.responses[1].response_range.kvs:
                raise CounterBehind(
                    f"the batch counter is behind the batch keys in etcd (batch {seq} is there "
                    "already): the counter key was deleted or written outside the nodes' "
                    "protocol; no batch is put until the network's operator looks at etcd")
        raise OrderingError(f"could not take a batch number in {_CAS_ATTEMPTS} attempts")

    def _ours(self, key: bytes, value: bytes) -> int:
        """The create revision of the batch at ``key`` if it is ``value`` (a put of ours whose
        answer was lost), else 0. etcd compares the value: nothing is read back."""
        resp = self._call("Txn", pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.VALUE, result=pb.Compare.EQUAL,
                                value=value)],
            success=[pb.RequestOp(request_range=pb.RangeRequest(key=key, keys_only=True))]))
        kvs = resp.responses[0].response_range.kvs if resp.succeeded else []
        return int(kvs[0].create_revision) if kvs else 0

    def counter_behind(self) -> bool:
        """Whether the batch counter is still behind the batch keys (:class:`CounterBehind`):
        the key after the counter's version is taken, at one revision. Reads only: a node
        whose put was refused so asks it while idle, and says "ok" once the operator has
        mended the counter, not at its next batch only."""
        resp = self._call("Range", pb.RangeRequest(key=self._p + b"n"))
        version = int(resp.kvs[0].version) if resp.kvs else 0
        key = self._p + f"b/{version + 1:0{_SEQ_WIDTH}d}".encode()
        return bool(self._call("Range", pb.RangeRequest(
            key=key, keys_only=True, revision=int(resp.header.revision))).kvs)

    def read_after(self, rev: int, cosig_rev: int, limit: int = READ_BATCHES,
                   cosig_limit: int = READ_COSIGS
                   ) -> tuple[list[Record], Record | None, list[Record]]:
        """In one etcd transaction (one revision): batches created after ``rev`` in order, the
        pruning marker, and co-signatures written after ``cosig_rev`` in write order.

        A range that starts after the last batch read (its sequence known) and ends short of
        the newest batch the counter ``n`` was written with is read again whole: any agency's
        certificate writes any batch key, and one put outside the counter under a key past
        every sequence it gives, read last, set the start past every batch put after it (the
        node read nothing again until restarted)."""
        seq = self._seqs.get(rev)
        parts = self._read(rev, cosig_rev, limit, cosig_limit, seq)
        batches = self._records(parts[0])
        counter = parts[3].kvs
        newest = int(counter[0].mod_revision) if counter else 0
        if seq is not None and len(batches) < limit \
                and newest > max(rev, batches[-1].create_rev if batches else 0):
            self._seqs.pop(rev, None)
            parts = self._read(rev, cosig_rev, limit, cosig_limit, None)
            batches = self._records(parts[0])
        for r in batches:
            with contextlib.suppress(ValueError):
                self._seqs[r.create_rev] = int(r.key[2:])
        while len(self._seqs) > _KNOWN_SEQS:
            del self._seqs[next(iter(self._seqs))]
        marker = self._records(parts[1])
        return batches, marker[0] if marker else None, self._records(parts[2])

    def _read(self, rev: int, cosig_rev: int, limit: int, cosig_limit: int,
              seq: int | None) -> list[Any]:
        """The ranges of :meth:`read_after` (batches from the key after ``seq`` if known, the
        marker, co-signatures, the counter), in one etcd transaction."""
        start = self._p + f"b/{seq + 1:0{_SEQ_WIDTH}d}".encode() if seq is not None else None
        resp = self._call("Txn", pb.TxnRequest(success=[
            pb.RequestOp(request_range=self._range("b/", start=start, min_create=rev + 1,
                                                   limit=limit)),
            pb.RequestOp(request_range=self._range("p", exact=True)),
            pb.RequestOp(request_range=self._range("s/", min_mod=cosig_rev + 1,
                                                   limit=cosig_limit)),
            pb.RequestOp(request_range=self._range("n", exact=True)),
        ]))
        parts = [r.response_range for r in resp.responses]
        if len(parts) != 4:
            raise OrderingError(f"etcd answered {len(parts)} of 4 ranges")
        return parts

    def publish(self, size: int, agency: str, cosig: bytes, applied: bytes) -> None:
        """This node's co-signature for log size ``size`` and its applied position, at once."""
        self._call("Txn", pb.TxnRequest(success=[
            self._put(self._cosig_key(size, agency), cosig), self._put(f"a/{agency}", applied),
            self._put(b"t")]))

    def put_applied(self, agency: str, applied: bytes) -> None:
        """This node's applied position alone (after a catch-up, which signs nothing)."""
        self._call("Txn", pb.TxnRequest(success=[self._put(f"a/{agency}", applied),
                                                 self._put(b"t")]))

    def put_cosig(self, size: int, agency: str, value: bytes) -> None:
        self._call("Txn", pb.TxnRequest(success=[self._put(self._cosig_key(size, agency), value)]))

    def cosig(self, size: int, agency: str) -> bytes | None:
        """The co-signature etcd holds of ``agency`` for log size ``size`` (None: none)."""
        got = self._call("Range", self._range(self._cosig_key(size, agency), exact=True)).kvs
        return bytes(got[0].value) if got else None

    def applied(self, agencies: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The published positions of ``agencies`` (those that decode to a map). Read by name,
        :data:`READ_POSITIONS` a transaction: any agency's certificate writes any ``a/`` key,
        and positions of 1.5 MiB under names of no agency made a read of the whole range
        larger than this client takes, on every node, for good."""
        names = sorted(set(agencies))
        records: list[Record] = []
        for start in range(0, len(names), READ_POSITIONS):
            resp = self._call("Txn", pb.TxnRequest(success=[
                pb.RequestOp(request_range=self._range(f"a/{a}", exact=True))
                for a in names[start:start + READ_POSITIONS]]))
            for part in resp.responses:
                records += self._records(part.response_range)
        out: dict[str, dict[str, Any]] = {}
        for r in records:
            try:
                got = codec.decode(r.value, what="applied record")
            except ValueError:
                continue
            if isinstance(got, dict):
                out[r.key[2:]] = got
        return out

    def none_gone_after(self, rev: int) -> bool:
        """Whether every batch created after revision ``rev`` (the last one a node applied) is
        still in etcd. Pruning deletes the oldest batches first, so it is when the batch at
        ``rev`` still is, when that batch is the newest ever put (the counter ``n`` was last
        written with it), or when the next one by number is there (known if this reader read
        the one at ``rev``). False when it cannot tell."""
        if rev <= 0:
            return False
        resp = self._call("Txn", pb.TxnRequest(success=[
            pb.RequestOp(request_range=self._range("b/", min_create=rev, max_create=rev,
                                                   keys_only=True, limit=1)),
            pb.RequestOp(request_range=self._range("n", exact=True))]))
        ours, counter = (r.response_range.kvs for r in resp.responses)
        if ours or (counter and int(counter[0].mod_revision) == rev):
            return True
        seq = self._seqs.get(rev)
        return seq is not None and bool(self._call("Range", self._range(
            f"b/{seq + 1:0{_SEQ_WIDTH}d}", exact=True)).kvs)

    def marker(self) -> Record | None:
        got = self._records(self._call("Range", self._range("p", exact=True)))
        return got[0] if got else None

    def prune(self, upto_rev: int, marker: bytes, cosig_size: int, *, seen: Record | None
              ) -> int | None:
        """Write the marker, delete batches created at or before ``upto_rev`` and co-signatures
        below ``cosig_size``, then compact etcd's history. Returns the number of batches removed,
        or None (nothing done) when the marker is no longer ``seen``, the one the caller read:
        another member pruned meanwhile, and a marker written over it could move back."""
        key = self._p + b"p"
        swapped = self._call("Txn", pb.TxnRequest(
            compare=[pb.Compare(key=key, target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                                mod_revision=seen.mod_rev if seen else 0)],
            success=[pb.RequestOp(request_put=pb.PutRequest(key=key, value=marker))]))
        if not swapped.succeeded:
            return None
        gone = self._records(self._call("Range", self._range(
            "b/", max_create=upto_rev, keys_only=True)))
        for start in range(0, len(gone), _DELETE_CHUNK):
            ops = [pb.RequestOp(request_delete_range=pb.DeleteRangeRequest(
                key=self._p + r.key.encode())) for r in gone[start:start + _DELETE_CHUNK]]
            self._call("Txn", pb.TxnRequest(success=ops))
        resp = self._call("DeleteRange", pb.DeleteRangeRequest(
            key=self._p + b"s/", range_end=self._p + f"s/{cosig_size:020d}".encode()))
        with contextlib.suppress(OrderingError):  # compacted already by another member
            self._call("Compact", pb.CompactionRequest(revision=int(resp.header.revision)))
        return len(gone)

    # -- waking up --
    def watch(self, on_event: Callable[[], None]) -> None:
        """Call ``on_event`` whenever a batch or co-signature is written (best effort: the
        caller also polls). Only the tiny tick key is watched, so no batch travels twice."""
        self.stop_watch()
        end = self._ends[self._current]
        requests: queue.SimpleQueue[pb.WatchRequest | None] = queue.SimpleQueue()
        requests.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=self._p + b"t")))

        def outgoing() -> Iterator[pb.WatchRequest]:
            while (req := requests.get()) is not None:
                yield req

        try:
            call = end.watch.Watch(outgoing())
        except grpc.RpcError:
            return

        def cancel() -> None:
            requests.put(None)
            call.cancel()

        self._watch_cancel = cancel

        def pump() -> None:
            try:
                for _ in call:
                    on_event()
            except grpc.RpcError:  # cancelled, or the member went away: the poll covers it
                pass

        threading.Thread(target=pump, name="etcd-watch", daemon=True).start()

    def stop_watch(self) -> None:
        if self._watch_cancel is not None:
            cancel, self._watch_cancel = self._watch_cancel, None
            with contextlib.suppress(Exception):
                cancel()

    def close(self) -> None:
        self.stop_watch()
        for e in self._ends:
            e.channel.close()
