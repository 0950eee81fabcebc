"""Per-client rate limiting for the node: one token bucket per client IP, as ASGI middleware.

Each client address gets a bucket of ``burst`` tokens that refills at ``per_minute`` tokens a
minute; a request takes one token. An empty bucket answers ``429 Too Many Requests`` with a JSON
body ``{"detail": ..., "error": "RateLimited"}`` and ``Retry-After`` (whole seconds until a token
is back), before the request body is read. ``per_minute = 0`` turns the limiter off.

A request that makes the node do more than one request's work takes more once its size is
known, through :func:`charge`, before that work is done (``POST /v1/tx/batch``: one signature
check per transaction, :data:`BATCH_ITEMS_PER_TOKEN` transactions a token; the catch-up reads
``/v1/sync/*``: 500 headers or 50 blocks a token); without them it
is refused with :class:`RateLimited` (429, ``Retry-After``) and nothing is submitted (ADR 47). A
cost over what a full bucket holds needs a full bucket and leaves it in debt.

Time is the ``clock`` parameter (the app's clock), so tests drive it without sleeping. The bucket
table is bounded (``max_clients``): when it is full, the buckets that have refilled completely
are dropped first (they carry no state), then the least recently seen.
"""

from __future__ import annotations

import ipaddress
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ledger.errors import LedgerError

__all__ = ["BATCH_ITEMS_PER_TOKEN", "RateLimit", "RateLimited", "RefusalPage", "TokenBuckets",
           "charge", "client_key"]

BATCH_ITEMS_PER_TOKEN = 64
"""Transactions of a batch that one rate-limit token pays for, beyond the request's own token:
a batch of 4096 costs 65 tokens. An agency's bulk issuance at the default 6,000 tokens a minute
still has room for ~6,000 transactions a second; a stranger's batches of forged signatures cost
the node at most 64 checks a token instead of 4096."""
_SCOPE_KEY = "ledger.ratelimit"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
RefusalPage = Callable[[Scope, str, int], ASGIApp | None]
"""A refusal as a person's page: given the request, the refusal's words and its Retry-After,
the reply to send (None: the API's JSON)."""


class TokenBuckets:
    """Token buckets keyed by client; :meth:`take` returns 0 (allowed) or seconds to wait."""

    def __init__(self, per_minute: int, burst: int, clock: Callable[[], float],
                 max_clients: int = 10_000) -> None:
        if per_minute < 0 or burst < 1 or max_clients < 1:
            raise ValueError("per_minute >= 0, burst >= 1 and max_clients >= 1")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self.clock = clock
        self.max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()  # the middleware takes on the event loop, charge also
        # from the routes' worker threads

    def take(self, client: str, cost: float = 1.0, *, need: float | None = None) -> float:
        """Take ``cost`` tokens once the bucket holds ``need`` (default: ``cost``; at most the
        burst); 0 if taken, else the seconds until it holds them (nothing taken). A cost over
        ``need`` leaves the bucket in debt: the client's next requests wait it out."""
        need = min(cost if need is None else need, self.burst)
        with self._lock:
            now = self.clock()
            tokens, seen = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + max(0.0, now - seen) * self.rate)
            if tokens >= need:
                self._store(client, (tokens - cost, now))
                return 0.0
            self._store(client, (tokens, now))
        return (need - tokens) / self.rate if self.rate else math.inf

    def _store(self, client: str, value: tuple[float, float]) -> None:
        self._buckets[client] = value
        if len(self._buckets) <= self.max_clients:
            return
        # Over the bound: sweep down to 90% in one pass, so the scan is paid once per tenth of
        # the table's new clients, not on every new client's request (ADR 46). Buckets that
        # have filled up again go first (forgetting them changes nothing), then the oldest.
        target = self.max_clients * 9 // 10
        now = self.clock()
        extra = len(self._buckets) - target
        full = [c for c, (t, s) in self._buckets.items()
                if c != client and t + max(0.0, now - s) * self.rate >= self.burst]
        for c in full[:extra]:
            del self._buckets[c]
        while len(self._buckets) > target:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


class RateLimited(LedgerError):
    """A request costs more tokens than its client's bucket holds now: 429 with Retry-After."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def client_key(host: str) -> str:
    """The bucket of an address: IPv4 as it is; IPv6 by its /64, the block one subscriber
    gets, so a client cannot take a fresh burst from each of its 2^64 addresses (ADR 47)."""
    if ":" not in host:
        return host
    try:
        address = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(ipaddress.IPv6Network((address, 64), strict=False))


def _retry(wait: float) -> int:
    return max(1, math.ceil(wait)) if math.isfinite(wait) else 3600


def charge(scope: Scope, cost: int, what: str, rate: str) -> None:
    """Take ``cost`` more tokens from the bucket of the request's client (:class:`RateLimit`
    put it in ``scope``); raise :class:`RateLimited` if the bucket does not hold them. A no-op
    with the limiter off or a cost of 0. ``what`` is the request, ``rate`` how it is charged
    (both said in the refusal)."""
    got = scope.get(_SCOPE_KEY)
    if got is None or cost <= 0:
        return
    limiter, client = got
    buckets = limiter.buckets
    # A cost over what a full bucket holds beside the request's own token could never be
    # there at once: it needs a full bucket, and leaves it in debt (with a burst of 1 too).
    wait = buckets.take(client, cost, need=min(cost, buckets.burst - 1))
    if wait > 0:
        retry = _retry(wait + 1 / buckets.rate)  # the retry takes its own token first
        raise RateLimited(f"rate limit exceeded: {what} costs {cost} more of the "
                          f"{limiter.per_minute} requests a minute per client ({rate}); "
                          f"retry in {retry} s", retry)


class Tally:
    """Events counted between log lines: a line is due for the first at once, then at most
    one every ``every`` seconds, saying how many it stands for. A flood (refusals a client
    keeps drawing, a step retried while etcd is down) must not fill the log one line each."""

    def __init__(self, every: float) -> None:
        self.every, self.count = every, 0
        self._said = time.monotonic() - every  # the first is due at once

    def add(self) -> None:
        self.count += 1

    def due(self) -> bool:
        return self.count > 0 and time.monotonic() - self._said >= self.every

    def take(self) -> tuple[int, float]:
        """The events counted and the seconds since the last line; counted afresh from now."""
        now = time.monotonic()
        got = (self.count, now - self._said)
        self.count, self._said = 0, now
        return got

    def reset(self) -> None:
        """Forget the run: the next event is said at once."""
        self.count, self._said = 0, time.monotonic() - self.every


PROBE_PATHS = frozenset({"/v1/health", "/metrics"})
"""Paths monitoring reads: rate-limited apart from everything else a client asks."""


class RateLimit:
    """ASGI middleware: refuse HTTP requests of a client whose bucket is empty with 429."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int,
                 clock: Callable[[], float], page: RefusalPage | None = None) -> None:
        self.app = app
        self.per_minute = per_minute
        self.page = page  # a desk's pages are refused as a page, not with the API's JSON
        self.buckets = TokenBuckets(per_minute, burst, clock) if per_minute else None
        # Health probes and metrics scrapes draw on buckets of their own: a busy client (or
        # every client behind one proxy) must not make the node look down to its monitoring.
        self.probe_buckets = TokenBuckets(per_minute, burst, clock) if per_minute else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.buckets is None or self.probe_buckets is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        key = client_key(str(client[0])) if client else "unknown"
        probe = scope.get("path") in PROBE_PATHS
        wait = (self.probe_buckets if probe else self.buckets).take(key)
        if wait <= 0:
            scope[_SCOPE_KEY] = (self, key)  # for :func:`charge`
            await self.app(scope, receive, send)
            return
        retry = _retry(wait)
        detail = (f"rate limit exceeded: at most {self.per_minute} requests a minute per "
                  f"client; retry in {retry} s")
        shown = None if self.page is None else self.page(scope, detail, retry)
        if shown is not None:
            await shown(scope, receive, send)
            return
        body = json.dumps({"detail": detail, "error": "RateLimited"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(retry).encode())]})
        await send({"type": "http.response.body", "body": body})
