"""The thin etcd adapter: the shared ordering log of a multi-agency network (etcd3gw, mTLS).

etcd's Raft gives the total order (the revision) and durability while a majority of members is
up. Everything here is a few JSON-gateway calls; what the records *mean* is decided in
:mod:`node.replication`. Keys, under ``/credledger/<network>/``::

    b/<32 hex>                 a batch (ledger.batch), ordered by its create revision
    s/<size:020d>/<agency>     an agency node's checkpoint co-signature for that log size
    a/<agency>                 what that node has applied: {rev, height, size, time}
    p                          the pruning marker: batches up to ``rev`` are gone; they made
                               blocks up to ``height`` (log size ``size``)

Several endpoints may be given; a call that cannot reach one tries the next.
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import requests
from etcd3gw.client import Etcd3Client
from etcd3gw.exceptions import Etcd3Exception

from ledger import codec
from ledger.errors import OrderingError

__all__ = ["EtcdLog", "Record", "TlsFiles"]

_DELETE_CHUNK = 100  # etcd allows 128 operations per transaction by default


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca: str
    cert: str
    key: str


@dataclass(frozen=True, slots=True)
class Record:
    key: str
    value: bytes
    create_rev: int
    mod_rev: int


def _b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def _prefix_end(prefix: str) -> str:
    b = prefix.encode()
    return (b[:-1] + bytes([b[-1] + 1])).decode()


class EtcdLog:
    """One node's view of the ordering log in etcd."""

    def __init__(self, endpoints: Sequence[str], network: str, *, tls: TlsFiles | None = None,
                 timeout: float = 2.0) -> None:
        if not endpoints:
            raise OrderingError("no etcd endpoints configured")
        self.prefix = f"/credledger/{network}/"
        self._clients: list[Etcd3Client] = []
        for url in endpoints:
            scheme, _, rest = url.partition("://")
            host, _, port = rest.rstrip("/").rpartition(":")
            session = requests.Session()
            session.trust_env = False  # else REQUESTS_CA_BUNDLE & co. override our CA
            if tls is not None:
                session.verify = tls.ca
                session.cert = (tls.cert, tls.key)
            self._clients.append(Etcd3Client(host=host, port=int(port), protocol=scheme,
                                             timeout=timeout, session=session,
                                             api_path="/v3/"))
        self._current = 0
        self._lock = threading.Lock()
        self._watch_cancel: Callable[[], None] | None = None

    # -- plumbing --
    def _call(self, path: str, body: dict[str, Any]) -> Any:
        last: Exception | None = None
        for attempt in range(len(self._clients)):
            with self._lock:
                i = (self._current + attempt) % len(self._clients)
            client = self._clients[i]
            try:
                result = client.post(client.get_url(path), json=body)
            except (Etcd3Exception, requests.RequestException, OSError) as e:
                last = e
                continue
            with self._lock:
                self._current = i
            return result
        why = getattr(last, "detail_text", None) or str(last) or type(last).__name__
        raise OrderingError(f"etcd unreachable ({len(self._clients)} endpoint(s)): {why}")

    def _range_req(self, sub: str, *, min_create: int | None = None,
                   max_create: int | None = None, min_mod: int | None = None,
                   limit: int | None = None, keys_only: bool = False,
                   exact: bool = False) -> dict[str, Any]:
        key = self.prefix + sub
        req: dict[str, Any] = {"key": _b64(key)}
        if not exact:
            req["range_end"] = _b64(_prefix_end(key))
            req["sort_order"] = "ASCEND"
            req["sort_target"] = "MOD" if min_mod is not None else "CREATE"
        if min_mod is not None:
            req["min_mod_revision"] = min_mod
        if min_create is not None:
            req["min_create_revision"] = min_create
        if max_create is not None:
            req["max_create_revision"] = max_create
        if limit is not None:
            req["limit"] = limit
        if keys_only:
            req["keys_only"] = True
        return req

    def _records(self, resp: dict[str, Any]) -> list[Record]:
        out = []
        for kv in resp.get("kvs", []):
            out.append(Record(base64.b64decode(kv["key"]).decode()[len(self.prefix):],
                              base64.b64decode(kv.get("value", "")),
                              int(kv.get("create_revision", 0)), int(kv.get("mod_revision", 0))))
        return out

    # -- the ordering log --
    def _tick(self) -> dict[str, Any]:
        """A put of the tiny ``t`` key: watchers wake on it without receiving big values."""
        return {"request_put": {"key": _b64(self.prefix + "t"), "value": ""}}

    def put_batch(self, value: bytes) -> int:
        """Append a batch; returns the revision that orders it."""
        key = self.prefix + "b/" + secrets.token_hex(16)
        resp = self._call("/kv/txn", {"success": [
            {"request_put": {"key": _b64(key), "value": _b64(value)}}, self._tick()]})
        return int(resp["header"]["revision"])

    def read_after(self, rev: int, cosig_rev: int, limit: int = 16, cosig_limit: int = 512
                   ) -> tuple[list[Record], Record | None, list[Record]]:
        """In one etcd transaction (one revision): batches created after ``rev`` in order, the
        pruning marker, and co-signatures written after ``cosig_rev`` in write order."""
        body = {"success": [
            {"request_range": self._range_req("b/", min_create=rev + 1, limit=limit)},
            {"request_range": self._range_req("p", exact=True)},
            {"request_range": self._range_req("s/", min_mod=cosig_rev + 1, limit=cosig_limit)},
        ]}
        resp = self._call("/kv/txn", body)
        parts = [p.get("response_range", {}) for p in resp.get("responses", [])]
        parts += [{}] * (3 - len(parts))
        marker = self._records(parts[1])
        return (self._records(parts[0]), marker[0] if marker else None,
                self._records(parts[2]))

    def publish(self, size: int, agency: str, cosig: bytes, applied: bytes) -> None:
        """This node's co-signature for log size ``size`` and its applied position, at once."""
        self._call("/kv/txn", {"success": [
            {"request_put": {"key": _b64(f"{self.prefix}s/{size:020d}/{agency}"),
                             "value": _b64(cosig)}},
            {"request_put": {"key": _b64(self.prefix + "a/" + agency), "value": _b64(applied)}},
            self._tick(),
        ]})

    def put_cosig(self, size: int, agency: str, value: bytes) -> None:
        key = f"{self.prefix}s/{size:020d}/{agency}"
        self._call("/kv/put", {"key": _b64(key), "value": _b64(value)})

    def applied(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in self._records(self._call("/kv/range", self._range_req("a/"))):
            try:
                got = codec.decode(r.value, what="applied record")
            except ValueError:
                continue
            if isinstance(got, dict):
                out[r.key[2:]] = got
        return out

    def marker(self) -> Record | None:
        got = self._records(self._call("/kv/range", self._range_req("p", exact=True)))
        return got[0] if got else None

    def prune(self, upto_rev: int, marker: bytes, cosig_size: int) -> int:
        """Write the marker, delete batches created at or before ``upto_rev`` and co-signatures
        below ``cosig_size``, then compact etcd's history. Returns the number of batches removed."""
        self._call("/kv/put", {"key": _b64(self.prefix + "p"), "value": _b64(marker)})
        gone = self._records(self._call("/kv/range", self._range_req(
            "b/", max_create=upto_rev, keys_only=True)))
        for start in range(0, len(gone), _DELETE_CHUNK):
            ops = [{"request_delete_range": {"key": _b64(self.prefix + r.key)}}
                   for r in gone[start:start + _DELETE_CHUNK]]
            self._call("/kv/txn", {"success": ops})
        resp = self._call("/kv/deleterange", {
            "key": _b64(self.prefix + "s/"),
            "range_end": _b64(f"{self.prefix}s/{cosig_size:020d}")})
        revision = int(resp["header"]["revision"])
        with contextlib.suppress(OrderingError):  # compacted already by another member
            self._call("/kv/compaction", {"revision": revision})
        return len(gone)

    # -- waking up --
    def watch(self, on_event: Callable[[], None]) -> None:
        """Call ``on_event`` whenever a batch or co-signature is written (best effort: the
        caller also polls). Only the tiny tick key is watched, so no batch travels twice."""
        self.stop_watch()
        client = self._clients[self._current]
        try:
            _events, cancel = client.watch(self.prefix + "t")
        except (Etcd3Exception, requests.RequestException, OSError):
            return
        self._watch_cancel = cancel

        def pump() -> None:
            try:
                for _ in _events:
                    on_event()
            except Exception:  # noqa: S110 - the poll fallback covers a dead watch
                pass

        threading.Thread(target=pump, name="etcd-watch", daemon=True).start()

    def stop_watch(self) -> None:
        if self._watch_cancel is not None:
            cancel, self._watch_cancel = self._watch_cancel, None
            with contextlib.suppress(Exception):
                cancel()

    def close(self) -> None:
        self.stop_watch()
        for c in self._clients:
            c.session.close()
