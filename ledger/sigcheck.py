"""Parsing and signature checks of transaction envelopes in worker processes.

libsodium's verify is the floor cost of ingest, and both it (through PyNaCl) and our parsing hold
the GIL, so threads do not scale. Worker processes run :meth:`Tx.from_bytes` (the canonical,
closed-schema parse) and check every signature against a kid → public-key map. They return a
flag per envelope, or the parse error's text. A caller that parsed the envelopes itself (a
cluster node, ADR 27) sends them to :func:`check_signatures`, which only verifies.

A ``False`` flag only means "not confirmed here" (unknown kid, bad signature): the state machine
then verifies that transaction itself and gives the authoritative rejection. A ``True`` is safe to
rely on because a kid is the hash of its key, so the check does not depend on ledger state.

The pool exchanges values with our own spawned workers over a local pipe (multiprocessing's
serialization); untrusted bytes only ever travel inside ``bytes``/``str`` values, never as code.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Generic, TypeVar

import msgpack

from ledger.errors import DecodeError, SignatureError
from ledger.files import die_with_parent
from ledger.keys import PublicKey
from ledger.tx import Tx

__all__ = ["Checked", "Checking", "SignatureChecker", "check_signatures", "parse_and_check",
           "rebuild"]

_T = TypeVar("_T")
log = logging.getLogger("node.sigcheck")

Checked = bool | str
"""Per envelope: whether every signature was confirmed (the strict parse succeeded), or the
DecodeError message. Sending back one bool keeps the pipe cheap; the parent rebuilds the
:class:`Tx` from the raw bytes it holds (:func:`rebuild`)."""


def parse_and_check(raws: Sequence[bytes], keys: Mapping[bytes, bytes]) -> list[Checked]:
    pubs = {kid: PublicKey(raw) for kid, raw in keys.items()}
    out: list[Checked] = []
    for raw in raws:
        try:
            tx = Tx.from_bytes(raw)
        except DecodeError as e:
            out.append(str(e))
            continue
        try:
            tx.verify_signatures(pubs)
            out.append(True)
        except SignatureError:
            out.append(False)
    return out


def check_signatures(raws: Sequence[bytes], keys: Mapping[bytes, bytes]) -> list[bool]:
    """Per envelope: whether every signature verifies with the key its kid names (the same
    meaning of a flag as above). Only for envelopes the caller has already parsed with
    :meth:`Tx.from_bytes` (``node.replication``), so a plain unpack finds their parts."""
    pubs = {kid: PublicKey(raw) for kid, raw in keys.items()}
    out: list[bool] = []
    for raw in raws:
        env = msgpack.unpackb(raw, raw=False)
        payload, ok = env["payload"], True
        for s in env["sigs"]:
            key = pubs.get(s["kid"])
            if key is None:
                ok = False
                break
            try:
                key.verify("tx", payload, s["sig"])
            except SignatureError:
                ok = False
                break
        out.append(ok)
    return out


def rebuild(raw: bytes, fields: Checked) -> tuple[Tx, bool]:
    """The worker's parse of ``raw`` as a Tx, and its signature verdict."""
    if isinstance(fields, str):
        raise DecodeError(fields)
    return Tx.from_checked_bytes(raw), fields


def _worker_init(parent: int) -> None:
    """Worker initializer: ignore Ctrl-C, and on Linux be killed when the parent process dies
    (even by SIGKILL).

    A terminal sends Ctrl-C's SIGINT to the whole process group, workers included. The parent
    decides when its pool stops (it shuts the pool down as it stops); a worker that took the
    SIGINT itself only printed a KeyboardInterrupt traceback on the way out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(signal.SIGKILL, parent)


class Checking(Generic[_T]):
    """One task on the pool. A worker that dies (killed, out of memory) breaks the whole
    pool, so every later task would fail and the node would stop applying blocks: ``result``
    then runs the task once more on a fresh pool (ADR 42)."""

    __slots__ = ("_args", "_checker", "_fn", "_fut", "_pool")

    def __init__(self, checker: SignatureChecker, fn: Callable[..., _T], *args: Any) -> None:
        self._checker, self._fn, self._args = checker, fn, args
        self._pool, self._fut = checker._submit(fn, *args)

    def result(self, timeout: float | None = None) -> _T:
        try:
            return self._fut.result(timeout)
        except BrokenProcessPool:
            pool = self._checker._replace(self._pool)
            return pool.submit(self._fn, *self._args).result(timeout)


class SignatureChecker:
    """A pool of ``workers`` processes, spawned (not forked: the parent holds LevelDB, threads).

    The workers are started and warmed up in the constructor so the first block does not wait.
    A pool broken by a dead worker is replaced (``restarts`` counts it).
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.restarts = 0
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(max_workers=self.workers,  # (starts no process yet)
                                   mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_worker_init, initargs=(os.getpid(),))
        try:
            # SIGINT blocked while the workers are spawned (each submit below starts one): they
            # inherit the mask, so a Ctrl-C that a terminal sends to the whole process group
            # does not reach one still starting (before _worker_init ignores it), which printed
            # a KeyboardInterrupt traceback. This process takes its own Ctrl-C once unblocked.
            old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
            try:
                warm = [pool.submit(parse_and_check, [], {}) for _ in range(self.workers)]
            finally:
                signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
            for f in warm:
                f.result()
        except BaseException:  # a worker that could not start, or a signal (Ctrl-C, SIGTERM)
            pool.shutdown(wait=True, cancel_futures=True)  # no worker outlives the failed start
            raise
        return pool

    def _submit(self, fn: Callable[..., _T], *args: Any
                ) -> tuple[ProcessPoolExecutor, Future[_T]]:
        pool = self._pool
        try:
            return pool, pool.submit(fn, *args)
        except BrokenProcessPool:
            pool = self._replace(pool)
            return pool, pool.submit(fn, *args)

    def _replace(self, broken: ProcessPoolExecutor) -> ProcessPoolExecutor:
        """A working pool in place of ``broken`` (once, however many tasks found it broken)."""
        with self._lock:
            if self._pool is broken:
                log.warning("a signature worker died; starting the pool again")
                broken.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self.restarts += 1
            return self._pool

    def submit(self, raws: Sequence[bytes], keys: Mapping[bytes, bytes]) -> Checking[list[Checked]]:
        return Checking(self, parse_and_check, list(raws), dict(keys))

    def submit_parsed(self, txs: Sequence[Tx], keys: Mapping[bytes, bytes]
                      ) -> Checking[list[bool]]:
        """Only the signature checks of transactions this process parsed already."""
        return Checking(self, check_signatures, [t.raw for t in txs], dict(keys))

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
