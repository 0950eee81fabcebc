"""Solo ordering: one writer thread cuts submitted transactions into blocks.

A block is cut when ``max_batch`` transactions are waiting or ``max_wait`` seconds passed since
the first of them arrived. Signatures are pre-checked in worker processes
(:mod:`ledger.sigcheck`) while earlier blocks are built; the state machine then applies the batch
in order, verifying itself whatever the workers could not confirm.
Each caller's future resolves with a :class:`Receipt` only after the block's synced batch is
written, or with the :class:`~ledger.errors.TxRejected` that refused it.
"""

from __future__ import annotations

import logging
import os
import queue
import re
import threading
import time as _time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger.chain import Head, build_block
from ledger.errors import DecodeError, OrderingError, TxRejected
from ledger.sigcheck import Checked, Checking, SignatureChecker, rebuild
from ledger.state import Registry
from ledger.store import Store, leveldb_words
from ledger.tx import Tx

__all__ = ["Pending", "Receipt", "SoloOrderer", "settle", "store_error_words"]

_log = logging.getLogger("credledger.ordering")  # the JSON log of `ledger-node run`

_FOLDERS = re.compile(r"/(?:[^/\s:]+/)+")
"""The folders of an absolute path in an error's words ("/srv/data/ledger/000008.log" →
"000008.log")."""


def store_error_words(e: BaseException) -> str:
    """A LevelDB error's own words without the folders of its paths: they travel to API
    clients and into health, which need not learn where the node keeps its data."""
    return _FOLDERS.sub("", leveldb_words(e))


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof of acceptance: where the transaction sits in the log."""

    txid: bytes
    index: int
    height: int
    duplicate: bool = False

    def to_json(self) -> dict[str, object]:
        return {"txid": self.txid.hex(), "index": self.index, "height": self.height,
                "duplicate": self.duplicate}


class Pending:
    """The receipt of one submitted transaction, once it is durable: a light future.

    ``result(timeout)`` returns the :class:`Receipt` or raises the transaction's error (or
    ``TimeoutError``). A ``concurrent.futures.Future`` per transaction cost a lock and a
    condition each; the transactions of one submitted chunk share one condition instead.
    """

    __slots__ = ("_cond", "_done", "_error", "_value")

    def __init__(self, cond: threading.Condition) -> None:
        self._cond = cond
        self._done = False
        self._value: Receipt | None = None
        self._error: BaseException | None = None

    def done(self) -> bool:
        return self._done

    def result(self, timeout: float | None = None) -> Receipt:
        if not self._done:
            with self._cond:
                if not self._cond.wait_for(self.done, timeout):
                    raise TimeoutError("the transaction is not durable yet")
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        try:
            self.result(timeout)
        except TimeoutError:
            raise
        except BaseException as e:
            return e
        return None

    def set_result(self, value: Receipt) -> None:
        """Settle with ``value`` and wake this condition's waiters (for one transaction)."""
        self._set(value, None)
        with self._cond:
            self._cond.notify_all()

    def set_exception(self, error: BaseException) -> None:
        """Settle with ``error`` and wake this condition's waiters (for one transaction)."""
        self._set(None, error)
        with self._cond:
            self._cond.notify_all()

    # Settled by the writer thread; waiters are woken by _wake, once per condition.
    def _set(self, value: Receipt | None, error: BaseException | None) -> None:
        self._value, self._error = value, error
        self._done = True


def settle(outcomes: Iterable[tuple[Pending, Receipt | BaseException]]) -> None:
    """Settle many pendings (a receipt or an error each; settled ones are left alone), then wake
    each distinct condition once: a ``set_result`` per transaction notified its condition each
    time, ~1 µs more per transaction of a batch (ADR 28)."""
    woken = []
    for fut, outcome in outcomes:
        if fut.done():
            continue
        if isinstance(outcome, Receipt):
            fut._set(outcome, None)
        else:
            fut._set(None, outcome)
        woken.append(fut)
    _wake(woken)


def _wake(pendings: Iterable[Pending]) -> None:
    """Notify the waiters of every distinct condition among ``pendings`` (already settled)."""
    seen: set[int] = set()
    for p in pendings:
        cond = p._cond
        if id(cond) not in seen:
            seen.add(id(cond))
            with cond:
                cond.notify_all()


@dataclass(slots=True)
class _Item:
    tx: Tx
    checked: bool
    future: Pending


@dataclass(slots=True)
class _Chunk:
    raws: Sequence[bytes | Tx]
    futures: list[Pending]
    checked: Checking[list[Checked]] | None


class SoloOrderer:
    """The embedded single-writer orderer over one :class:`Store`.

    ``workers`` signature-checking processes are spawned (default: one per core; 0 checks
    inline). As with any spawning multiprocessing program, a script that creates an orderer at
    import time needs the ``if __name__ == "__main__":`` guard; the console scripts have it.
    """

    def __init__(self, store: Store, *, clock: Callable[[], int], max_batch: int = 2000,
                 max_wait: float = 0.02, workers: int | None = None,
                 on_block: Callable[[Head, Registry], dict[bytes, bytes]] | None = None
                 ) -> None:
        if store.head is None or store.registry is None:
            raise OrderingError("the store has no genesis yet")
        self.store = store
        self.clock = clock
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.on_block = on_block
        self._queue: queue.SimpleQueue[_Chunk | None] = queue.SimpleQueue()
        n = (os.cpu_count() or 2) if workers is None else workers
        self._thread = threading.Thread(target=self._run, name="solo-orderer", daemon=True)
        self._failure: BaseException | None = None
        # Taken to put work in the queue and to close it (a stop, or the writer failing): no
        # chunk is put after the writer's last look at the queue, where no one would answer it.
        self._put_lock = threading.Lock()
        self._closed = False
        self._checker = SignatureChecker(n) if n > 0 else None
        try:
            self._thread.start()
        except BaseException:  # (no thread to be had, a signal): the workers were left running
            if self._checker is not None:
                self._checker.close()
            raise

    # -- submitting --
    def submit(self, raw: bytes | Tx) -> Pending:
        """Queue one transaction; the future gives its receipt once durable."""
        return self.submit_many([raw])[0]

    def submit_many(self, raws: Sequence[bytes | Tx], chunk: int = 256) -> list[Pending]:
        """Queue transactions in order; malformed ones fail their future with DecodeError."""
        registry = self.store.registry
        keys = {kid: k.raw for kid, k in registry.public_keys.items()} if registry else {}
        futures: list[Pending] = []
        with self._put_lock:
            if self._closed:
                raise OrderingError(f"orderer is stopped{self._failure_text()}", taken=False)
            for start in range(0, len(raws), chunk):
                part = raws[start:start + chunk]
                cond = threading.Condition()
                futs = [Pending(cond) for _ in part]
                futures.extend(futs)
                checked = None
                if self._checker is not None:
                    checked = self._checker.submit(
                        [r.raw if isinstance(r, Tx) else r for r in part], keys)
                self._queue.put(_Chunk(part, futs, checked))
        return futures

    @staticmethod
    def _items(chunk: _Chunk) -> list[_Item]:
        items = []
        refused = []
        if chunk.checked is not None:
            for raw, got, fut in zip(chunk.raws, chunk.checked.result(), chunk.futures,
                                     strict=True):
                try:
                    tx, ok = rebuild(raw.raw if isinstance(raw, Tx) else raw, got)
                except DecodeError as e:
                    fut._set(None, e)
                    refused.append(fut)
                    continue
                items.append(_Item(tx, ok, fut))
        else:
            for raw, fut in zip(chunk.raws, chunk.futures, strict=True):
                try:
                    items.append(_Item(raw if isinstance(raw, Tx) else Tx.from_bytes(raw), False,
                                       fut))
                except DecodeError as e:
                    fut._set(None, e)
                    refused.append(fut)
        _wake(refused)
        return items

    # -- the writer --
    def _next_items(self, block: bool) -> list[_Item] | None:
        try:
            got = self._queue.get(timeout=0.1) if block else self._queue.get_nowait()
        except queue.Empty:
            return []
        if got is None:
            return None
        try:
            return self._items(got)
        except BaseException as e:  # its signature checks failed for good: the chunk in hand
            failed = OrderingError(f"orderer failed: {e}")  # is answered with the queue's
            settle((fut, failed) for fut in got.futures)
            raise

    def _run(self) -> None:
        pending: list[_Item] = []
        stopping = False
        try:
            while not (stopping and not pending):
                if not pending:
                    items = self._next_items(block=True)
                    if items is None:
                        stopping = True
                        continue
                    pending.extend(items)
                    if not pending:
                        continue
                deadline = _time.monotonic() + self.max_wait
                while len(pending) < self.max_batch and not stopping:
                    if _time.monotonic() >= deadline:
                        break
                    items = self._next_items(block=False)
                    if items is None:
                        stopping = True
                    elif items:
                        pending.extend(items)
                    else:
                        _time.sleep(0.0005)
                batch, pending = pending[:self.max_batch], pending[self.max_batch:]
                try:
                    self._commit(batch)
                except BaseException:
                    pending = batch + pending  # their waiters learn it below, not a timeout
                    raise
        except BaseException as e:  # reported to every waiter, queued ones included
            with self._put_lock:
                self._failure, self._closed = e, True
            # once, for whoever watches the logs: the node takes nothing more until restarted
            _log.error("the block writer stopped: %s: %s (the node takes no transaction until "
                       "it is restarted)", type(e).__name__, e)
            waiting = [it.future for it in pending]
            while True:
                try:
                    got = self._queue.get_nowait()
                except queue.Empty:
                    break
                if got is not None:
                    waiting.extend(got.futures)
            failed = OrderingError(f"orderer failed: {e}")
            settle((fut, failed) for fut in waiting)

    def _commit(self, batch: list[_Item]) -> None:
        store = self.store
        if store.head is None or store.registry is None:
            raise OrderingError("the store lost its head")
        result = build_block(store.head, store.registry, store, store.frontier,
                             [it.tx for it in batch], self.clock(),
                             checked=[it.checked for it in batch])
        by_tx: dict[bytes, list[_Item]] = {}
        for it in batch:
            by_tx.setdefault(it.tx.txid, []).append(it)
        try:
            if result.header is not None and result.head is not None:
                extra = (self.on_block(result.head, result.registry) if self.on_block
                         else None)
                store.write_block(result, extra)
        except Exception as e:  # LedgerError, or the store's I/O (a full disk): nothing written
            # the words without folders: they travel to API clients and the public health
            failed = OrderingError("block not written: "
                                   + store_error_words(e))
            settle((it.future, failed) for it in batch)
            raise failed from e
        height = result.head.height if result.head else -1
        for tx, index in result.accepted:
            for n, it in enumerate(by_tx.pop(tx.txid, [])):
                it.future._set(Receipt(tx.txid, index, height, duplicate=n > 0), None)
        for tx, err in result.rejected:
            for it in by_tx.pop(tx.txid, []):
                it.future._set(None, TxRejected(err.code, err.message))
        for tx, index, h in result.duplicates:
            for it in by_tx.pop(tx.txid, []):
                it.future._set(Receipt(tx.txid, index, h, duplicate=True), None)
        _wake([it.future for it in batch])

    # -- lifecycle --
    def _failure_text(self) -> str:
        return f" ({self._failure})" if self._failure else ""

    @property
    def failure(self) -> str | None:
        """Why the writer stopped by itself (a block it could not write: a full disk), or
        None while it runs or after a normal :meth:`stop`. It takes nothing more until the
        process is restarted."""
        return str(self._failure) if self._failure is not None else None

    def stop(self) -> None:
        """Commit what is queued, then stop the writer and the verify pool."""
        with self._put_lock:
            closing, self._closed = not self._closed, True
            if closing:
                self._queue.put(None)  # after every chunk put before it: they are committed
        self._thread.join()
        if self._checker is not None:
            self._checker.close()

    def __enter__(self) -> SoloOrderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
