"""A server's answer read by an httpx client, bounded in time as a whole.

httpx's read timeout starts again with every byte: a server dripping its answer a byte at a
time, each within it, status line and headers too, held the command reading it for as long as
it liked. A client given to :func:`bounded` reads through streams whose every read's timeout is
cut to what is left of the :class:`Bound` set by :func:`within` (none set: httpx's own alone);
past it, the read raises ``httpcore.ReadTimeout``, which httpx raises as ``httpx.ReadTimeout``.
The wallet's answers are bounded in time (:class:`Bound` with no rate); an archive, which may
be large, by a least rate after its first wait. httpx is imported by the caller alone (the
core imports no web client): these wrap what it hands them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

__all__ = ["UNCOMPRESSED", "Bound", "bounded", "compressed", "within"]


UNCOMPRESSED = {"Accept-Encoding": "identity"}
"""The header asking for an answer as it is: httpx asks for gzip and deflate (zstd and brotli
too, where their packages are installed) and opens each read whole, 64 KiB to 64 MiB with gzip
and to GiBs with the others, before any bound on the answer's size is checked."""


def compressed(headers: Any) -> str | None:
    """The Content-Encoding of an answer's ``headers`` (httpx's) if it is compressed all the
    same (to be refused, read raw, unopened), cut; else None."""
    encoding = headers.get("content-encoding", "").strip().lower()
    return None if encoding in ("", "identity") else encoding[:40]


class Bound:
    """The time one answer may take: ``first`` seconds from now, and ``1 / least_rate`` more
    for each byte read (``least_rate`` in bytes a second; 0: no more)."""

    def __init__(self, first: float, least_rate: float = 0.0) -> None:
        self._deadline = time.monotonic() + first
        self._per_byte = 1.0 / least_rate if least_rate > 0 else 0.0

    def left(self) -> float:
        """Seconds left (0 or less: the answer is given up on)."""
        return self._deadline - time.monotonic()

    def passed(self) -> bool:
        return self.left() <= 0

    def took(self, count: int) -> None:
        """``count`` bytes were read: the time they earn is added."""
        self._deadline += count * self._per_byte


_BOUND: ContextVar[Bound | None] = ContextVar("_BOUND", default=None)


@contextmanager
def within(bound: Bound) -> Iterator[Bound]:
    """Reads through a :func:`bounded` client within this block end at ``bound``."""
    token = _BOUND.set(bound)
    try:
        yield bound
    finally:
        _BOUND.reset(token)


class _Stream:
    """An httpcore network stream whose reads end at the :class:`Bound` set."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bound = _BOUND.get()
        if bound is not None:
            left = bound.left()
            if left <= 0:
                import httpcore

                raise httpcore.ReadTimeout("the answer's time is up")
            timeout = left if timeout is None else min(timeout, left)
        got: bytes = self._stream.read(max_bytes, timeout)
        if bound is not None:
            bound.took(len(got))
        return got

    def start_tls(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._stream.start_tls(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:  # write, close, get_extra_info
        return getattr(self._stream, name)


class _Backend:
    """An httpcore network backend whose streams are :class:`_Stream`."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._backend.connect_tcp(*args, **kwargs))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._backend.connect_unix_socket(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:  # sleep
        return getattr(self._backend, name)


def bounded(client: Any) -> Any:
    """``client`` (an ``httpx.Client``), every connection it opens read through
    :class:`_Stream` (its connection pools' network backend wrapped, once; a proxy's too)."""
    wrapped = 0
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is None:
            continue
        if not isinstance(pool._network_backend, _Backend):
            pool._network_backend = _Backend(pool._network_backend)
        wrapped += 1
    if not wrapped:  # another httpx: no bound is better said than silently lost
        raise RuntimeError("this httpx's client has no connection pool to bound")
    return client
