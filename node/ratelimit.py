"""Per-client rate limiting for the node: one token bucket per client IP, as ASGI middleware.

Each client address gets a bucket of ``burst`` tokens that refills at ``per_minute`` tokens a
minute; a request takes one token. An empty bucket answers ``429 Too Many Requests`` with a JSON
body ``{"detail": ..., "error": "RateLimited"}`` and ``Retry-After`` (whole seconds until a token
is back), before the request body is read. ``per_minute = 0`` turns the limiter off.

Time is the ``clock`` parameter (the app's clock), so tests drive it without sleeping. The bucket
table is bounded (``max_clients``): when it is full, the buckets that have refilled completely
are dropped first (they carry no state), then the least recently seen.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["RateLimit", "TokenBuckets"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


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

    def take(self, client: str) -> float:
        now = self.clock()
        tokens, seen = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - seen) * self.rate)
        if tokens >= 1.0:
            self._store(client, (tokens - 1.0, now))
            return 0.0
        self._store(client, (tokens, now))
        return (1.0 - tokens) / self.rate if self.rate else math.inf

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


class RateLimit:
    """ASGI middleware: refuse HTTP requests of a client whose bucket is empty with 429."""

    def __init__(self, app: ASGIApp, per_minute: int, burst: int,
                 clock: Callable[[], float]) -> None:
        self.app = app
        self.per_minute = per_minute
        self.buckets = TokenBuckets(per_minute, burst, clock) if per_minute else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.buckets is None:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        wait = self.buckets.take(str(client[0]) if client else "unknown")
        if wait <= 0:
            await self.app(scope, receive, send)
            return
        retry = max(1, math.ceil(wait)) if math.isfinite(wait) else 3600
        body = json.dumps({"detail": f"rate limit exceeded: at most {self.per_minute} requests "
                                     f"a minute per client; retry in {retry} s",
                           "error": "RateLimited"}).encode()
        await send({"type": "http.response.start", "status": 429,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"retry-after", str(retry).encode())]})
        await send({"type": "http.response.body", "body": body})
