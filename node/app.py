"""The node's FastAPI application: :func:`create_app` builds one per call; nothing at import time.

The app owns a :class:`~node.service.Node` (opened in the lifespan unless the caller passes one,
which the caller then closes), exposes it as ``app.state.node`` to :mod:`node.api` and, when it
exists, :mod:`node.pages`. Errors map to statuses here and only here (:data:`ERROR_STATUS`).
Access logs are JSON lines with method, route, status and duration: never bodies or claims.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import logging
import math
import os
import sys
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import plyvel
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from starlette.exceptions import HTTPException as StarletteHTTPException

from ledger.credentials import ClaimError
from ledger.errors import (
    CheckpointError,
    DecodeError,
    KeyFileError,
    LedgerError,
    OrderingError,
    ProofError,
    SignatureError,
    StoreError,
    TxRejected,
)
from ledger.files import NOT_UNICODE
from ledger.foreign import read_trust_list
from ledger.keys import PASSPHRASE_ENV, read_passphrase
from ledger.offline import SnapshotError
from ledger.sdjwt import VerificationError
from ledger.statuslist import StatusListError
from ledger.store import leveldb_words
from node.api import HEAD_AS_GET, BadRequest, http_error, router, validation_error
from node.api_approvals import router as approvals_router
from node.config import Settings
from node.ratelimit import RateLimit, RateLimited, Tally
from node.service import Busy, Node, NotFound

__all__ = ["ERROR_STATUS", "Metrics", "configure_logging", "create_app"]

ASGIApp = Callable[[MutableMapping[str, Any], Callable[[], Awaitable[MutableMapping[str, Any]]],
                    Callable[[MutableMapping[str, Any]], Awaitable[None]]], Awaitable[None]]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

ERROR_STATUS: tuple[tuple[type[LedgerError], int], ...] = (
    (NotFound, 404),
    (RateLimited, 429),
    (Busy, 503),
    (TxRejected, 409),
    (DecodeError, 400),
    (ClaimError, 400),
    (VerificationError, 400),
    (StatusListError, 400),
    (ProofError, 400),
    (BadRequest, 400),
    (SignatureError, 422),
    (CheckpointError, 422),
    (StoreError, 503),
    (OrderingError, 503),
    (SnapshotError, 503),
    (KeyFileError, 500),
)
"""Each error class → one HTTP status; the first match in this order wins. Any other
:class:`LedgerError` (a refused request the service names in words) is a 400."""

_log = logging.getLogger("node.http")


def status_for(error: LedgerError) -> int:
    for cls, status in ERROR_STATUS:
        if isinstance(error, cls):
            return status
    return 400


LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Upper bounds (seconds) of the request latency histogram's buckets: a read takes
milliseconds, a submission that waits for its commit tens of them, a catch-up reply seconds."""


class Metrics:
    """Prometheus metrics of one app, in the app's own registry (no global collectors)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ledger_node_http_requests", "HTTP requests handled",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("ledger_node_http_request_seconds",
                                 "Time from a request's arrival to its reply's end (a "
                                 "submission that waits for its commit includes the wait)",
                                 ["method", "route"], buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        self.blocks = Gauge("ledger_node_blocks", "Blocks in the chain (height + 1)",
                            registry=self.registry)
        self.txs = Gauge("ledger_node_transactions",
                         "Committed transactions (the Merkle log's size)", registry=self.registry)
        self.final = Gauge("ledger_node_final_log_size",
                           "Log size of the latest final (quorum-signed) checkpoint",
                           registry=self.registry)
        self.equivocations = Gauge("ledger_node_equivocations",
                                   "Checkpoint equivocations seen since the node started",
                                   registry=self.registry)
        self.evidence = Gauge("ledger_node_equivocation_evidence",
                              "Equivocation evidence records the node holds (kept for good; "
                              "GET /v1/evidence)", registry=self.registry)
        self.degraded = Gauge("ledger_node_degraded",
                              "1 when GET /v1/health says degraded (its problem says why)",
                              registry=self.registry)
        self.peer_quiet = Gauge("ledger_node_peer_quiet_seconds",
                                "Seconds since each current agency's node last published where "
                                "it stands (every 10 s while it runs)", ["peer"],
                                registry=self.registry)
        self.peers_labelled: set[str] = set()  # the peers with a lag series
        self.quiet_labelled: set[str] = set()  # those with a quiet series
        self.forged = Gauge("ledger_node_refused_cosignatures",
                            "Co-signatures refused (bad signature or not a current agency)",
                            registry=self.registry)
        self.halted = Gauge("ledger_node_halted", "1 when the node takes nothing more: it "
                            "refuses to build on a fork, or (solo) could not write a block",
                            registry=self.registry)
        ProcessCollector(registry=self.registry)  # memory, open files, start time, CPU
        self.peer_lag = Gauge("ledger_node_peer_lag_blocks", "Blocks each peer is behind us",
                              ["peer"], registry=self.registry)


class _JsonFormatter(logging.Formatter):
    _FIELDS = ("method", "route", "path", "status", "ms", "error", "code", "file", "cut_short",
               "count", "seconds")

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname,
                               "logger": record.name, "msg": record.getMessage()}
        for name in self._FIELDS:
            if hasattr(record, name):
                out[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            out["exc"] = record.exc_info[0].__name__
            # where it was raised: files, lines and functions only (a message or a frame's
            # values could quote a claim), the innermost last
            out["exc_frames"] = [f"{Path(f.filename).name}:{f.lineno}:{f.name}" for f in
                                 traceback.extract_tb(record.exc_info[2])[-12:]]
        return json.dumps(out, separators=(",", ":"))


STOP_CANCEL = "timeout graceful shutdown exceeded"
"""What uvicorn says when it cancels the replies a stop's grace period did not see end."""


class _StopIsNoError(logging.Filter):
    """A stop that outlasts uvicorn's grace period (a reader still taking an archive) cancels
    that reply: uvicorn says so at ERROR, twice. It is a reply cut short, not a fault of the
    node: said at WARNING, so that an operator's alert on ERROR means a fault."""

    last_cut = -math.inf
    """When :class:`_AccessLog` last took a reply cut short by a stop (monotonic clock): the
    "returned without completing" line uvicorn logs right after it is lowered, no other."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ""
        if record.levelno == logging.ERROR:
            stop = STOP_CANCEL in msg
            if not stop and msg.startswith("ASGI callable returned without completing") \
                    and time.monotonic() - _StopIsNoError.last_cut < 1.0:
                stop = True
            if stop:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Send the node's logs to stderr as JSON lines (called by ``ledger-node run``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    for name in ("node", "credledger", "uvicorn.error"):  # credledger: the replication's
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    uv = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _StopIsNoError) for f in uv.filters):
        uv.addFilter(_StopIsNoError())


BODY_SECONDS = 30.0
"""How long a request body may take to arrive whole before the node answers 408."""


class _BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413 before any route reads them.

    The verifier page's upload (a photo of a QR code) may be larger: ``pages.MAX_UPLOAD`` (4 MiB)
    and room for the form around it, refused beyond that as a page, not as JSON."""

    _UPLOAD_PATH = "/verify/check"
    UPLOAD_LIMIT = 4 * 1024 * 1024 + 64 * 1024

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit
        self.upload_limit = max(limit, self.UPLOAD_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        page = scope.get("path") == self._UPLOAD_PATH
        limit = self.upload_limit if page else self.limit
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await self._refuse(send, limit, page)
            return
        chunks: list[bytes] = []
        size = 0
        # A body trickled in (a byte now and then) would hold its buffer and connection for
        # ever: it has BODY_SECONDS to arrive whole (ADR 46).
        with anyio.move_on_after(BODY_SECONDS) as late:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    break
                size += len(message.get("body", b""))
                if size > limit:
                    await self._refuse(send, limit, page)
                    return
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        if late.cancelled_caught:
            page = _person_page(scope, "Not received in time", (
                f"What was sent did not arrive whole within {BODY_SECONDS:g} s (a slow or "
                "broken connection?). Go back and send it again; for a picture of a QR code, "
                "paste the presentation's text instead, or send a smaller picture."), 408,
                {"Connection": "close"})
            if page is not None:
                await page(scope, receive, send)
                return
            body408 = json.dumps({"detail": f"the request body did not arrive within "
                                            f"{BODY_SECONDS:g} s", "error": "Timeout"}).encode()
            await send({"type": "http.response.start", "status": 408,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body408)).encode()),
                                    (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": body408})
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _refuse(send: Send, limit: int, page: bool) -> None:
        if page:
            kind = b"text/html; charset=utf-8"
            body = ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
                    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                    "<title>Upload too large</title><link rel=\"stylesheet\" "
                    "href=\"/static/pages.css\"></head><body><main><h1>Upload too large</h1>"
                    f"<p class=\"error\" role=\"alert\">What was sent is over {limit // 1024} "
                    "KiB: a presentation's text is far smaller, and a picture of its QR code "
                    "need not be larger. Go back, then paste the presentation's text, or "
                    "upload a smaller picture (the PNG the wallet saves).</p>"
                    "<p><a href=\"/verify\">Create a new presentation request</a></p>"
                    "</main></body></html>").encode()
        else:
            kind = b"application/json"
            body = json.dumps({"detail": f"request body over {limit} bytes",
                               "error": "PayloadTooLarge"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", kind),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_PLAIN_ROUTES = frozenset({"/openapi.json"})
"""FastAPI's own routes: plain Starlette routes, which leave no route in the request scope."""


class _AccessLog:
    """Count and log every request by route template and status (outermost middleware)."""

    LIMITED_EVERY = 60.0
    """Seconds between the log lines that count requests refused by the rate limit: a client
    that keeps being refused (each refusal costs it nothing) would otherwise fill the disk
    with one line a request (measured: ~130 KiB/s from one connection)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics
        self._limited = Tally(self.LIMITED_EVERY)  # 429s since the last line that counted them

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        cut = False
        try:
            await self.app(scope, receive, sending)
        except asyncio.CancelledError as e:
            # uvicorn cancels what still runs when a stop outlasts its grace period (an archive
            # being read, say): a reply cut short by the stop, not an application error that
            # uvicorn would log at ERROR with a traceback (:class:`_StopIsNoError`). Any other
            # cancellation goes on as it came.
            if not any(STOP_CANCEL in str(a) for a in e.args):
                raise
            _StopIsNoError.last_cut = time.monotonic()
            cut = True
        finally:
            # Labels from a fixed set only: a client's made-up methods and paths must not grow
            # the metrics registry (one series per label value, kept for the process's life).
            method = scope["method"] if scope["method"] in _METHODS else "other"
            route = getattr(scope.get("route"), "path", None)
            if route is None:
                path = scope.get("path", "")
                route = (path if path in _PLAIN_ROUTES else
                         "/static" if path.startswith("/static/") else
                         "rate-limited" if status == 429 else "unmatched")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            if status == 429:
                self._limited.add()
            else:
                _log.info("request", extra={
                    "method": method, "route": route, "status": status,
                    "ms": round((time.perf_counter() - started) * 1000, 1),
                    **({"cut_short": "by the node's stop"} if cut else {})})
            # the count goes out with the first request of any kind a minute on (a probe or a
            # scrape comes along), not only with the next refusal, which may never come
            if self._limited.due():
                count, seconds = self._limited.take()
                _log.info("rate-limited", extra={"status": 429, "count": count,
                                                 "seconds": round(seconds)})


_PAGE_HEADERS = [
    # The pages use no script and load nothing from elsewhere; a verdict shows claim values,
    # so it is neither framed, cached, nor named in a Referer to another site (same-origin:
    # the desk's own forms then carry their Origin, which browsers without Sec-Fetch-Site
    # need for them to be taken, ADR 53).
    (b"content-security-policy", b"default-src 'none'; style-src 'self'; img-src 'self' data:; "
                                 b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class _SecurityHeaders:
    """``nosniff`` on every response; on the HTML pages also a strict CSP, no framing, no
    Referer and no caching (the API's reference at /docs too: a page of the node's own, not
    FastAPI's Swagger UI, which loads its script from a CDN, ADR 54); on the API's answers
    ``no-cache`` unless the route says otherwise (ADR 74), and ``no-store`` on the answers to
    POSTs, which hold a client's own data."""

    def __init__(self, app: ASGIApp, https: bool = False) -> None:
        self.app = app
        # served (or proxied) as https: browsers keep to https for a year (HSTS)
        self.hsts = [(b"strict-transport-security", b"max-age=31536000")] if https else []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        static = scope.get("path", "").startswith("/static/")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                if b"x-content-type-options" not in names:
                    headers.append((b"x-content-type-options", b"nosniff"))
                headers += [h for h in self.hsts if h[0] not in names]
                html = any(k.lower() == b"content-type" and v.startswith(b"text/html")
                           for k, v in headers)
                if html:
                    headers += [(k, v) for k, v in _PAGE_HEADERS if k not in names]
                elif b"cache-control" not in names and not static:
                    # the API's answers change with each block (a head, a checkpoint, health):
                    # a cache on the way asks again before reusing one (status lists say their
                    # own max-age). An answer to a POST is the client's own (a credential, a
                    # verification's claims, a credit record): no cache keeps it at all, as
                    # no-cache let a browser's or an HTTP library's cache keep it on disk
                    kept = scope.get("method") in ("GET", "HEAD")
                    headers.append((b"cache-control", b"no-cache" if kept else b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


_NO_HEAD = frozenset({"/v1/archive"})
"""GET routes whose body is work to make (a whole export): HEAD stays 405 there."""


class _HeadAsGet:
    """HEAD answered as GET without the body (RFC 9110 §9.3.2), as Starlette does for its own
    routes but FastAPI's do not: link checkers and uptime probes send HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") != "HEAD" \
                or scope.get("path") in _NO_HEAD:
            await self.app(scope, receive, send)
            return

        async def bodiless(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # marked: a route whose GET spends something once (a request's fresh QR drawing)
        # keeps it for the GET that follows
        await self.app({**scope, "method": "GET", HEAD_AS_GET: True}, receive, bodiless)


def _server_error(request: Request, exc: Exception) -> Response:
    """The 500 for an unexpected exception. Starlette answers it outside every middleware, so
    this reply carries its own ``nosniff``; the exception still goes to the server's log."""
    return PlainTextResponse("Internal Server Error", status_code=500,
                             headers={"x-content-type-options": "nosniff",
                                      "cache-control": "no-store"})


def _person_page(scope: Scope, title: str, message: str, status: int,
                 headers: dict[str, str]) -> ASGIApp | None:
    """A refusal made before any route runs, of a person's page, as the pages' own error page
    (their ``refusal_page``, :func:`node.pages.install_error_pages`); None for the API, or an
    app without pages: the API's JSON."""
    page = getattr(getattr(scope.get("app"), "state", None), "refusal_page", None)
    return None if page is None else page(scope, title, message, status, headers)


def _refusal_page(scope: Scope, detail: str, retry: int) -> ASGIApp | None:
    """The rate limit's refusal of a person's page (:class:`RateLimit`'s ``page``)."""
    return _person_page(scope, "Too many requests", detail, 429, {"Retry-After": str(retry)})


def _passphrase(given: bytes | None) -> bytes:
    if given is not None:
        return given
    if not os.environ.get(PASSPHRASE_ENV) and not os.environ.get(f"{PASSPHRASE_ENV}_FILE"):
        raise KeyFileError(f"no key passphrase given and neither ${PASSPHRASE_ENV} nor "
                           f"${PASSPHRASE_ENV}_FILE is set")
    return read_passphrase(env=PASSPHRASE_ENV)  # one is set: no prompt


def create_app(settings: Settings, *, node: Node | None = None,
               clock: Callable[[], float] = time.time,
               passphrase: bytes | None = None,
               rate_clock: Callable[[], float] = time.monotonic) -> FastAPI:
    """The node's ASGI app. Opens a :class:`Node` on ``settings.data`` in its lifespan (with
    ``passphrase``, else ``$LEDGER_KEY_PASSPHRASE``) unless ``node`` is given. ``rate_clock``
    drives the per-client rate limiter (:mod:`node.ratelimit`), apart from the ledger's clock."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own = node is None
        app.state.node = node if node is not None else Node(
            settings.data, settings.agency, _passphrase(passphrase), clock=clock,
            zone=settings.zone)
        try:
            yield
        finally:
            if own:
                app.state.node.close()

    # No redirect for a trailing slash: Starlette builds it from the Host header, which a
    # proxy that forwards any Host would let an attacker point elsewhere.
    app = FastAPI(title="credledger node", version="1", lifespan=lifespan,
                  summary="An agency's node of the permissioned credential ledger.",
                  redirect_slashes=False, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.metrics = Metrics()
    # Credentials from issuers outside the network (ADR 39): read once, so a bad trust list
    # stops the node at start, not at an official's desk.
    app.state.trust = None if settings.trust_list is None else read_trust_list(
        settings.trust_list)
    if node is not None:
        app.state.node = node

    @app.exception_handler(LedgerError)
    async def ledger_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, LedgerError):  # registered for LedgerError only
            raise exc
        status = status_for(exc)
        body: dict[str, Any] = {"detail": str(exc), "error": type(exc).__name__}
        code = getattr(exc, "code", None)  # TxRejected's, an approval's DecidedNotIssued
        if isinstance(code, str):
            body["code"] = code
        if status >= 500 and exc.taken is False:
            # the raiser knows it handed nothing on (ADR 84): the client may send it again
            body["taken"] = False
        extra: dict[str, Any] = {"error": type(exc).__name__, "status": status}
        if isinstance(code, str):
            extra["code"] = code
        # The message may quote a claim value (ClaimError): log the class, never the text.
        # A refusal of the node's own (5xx: it cannot take work now) is a warning.
        _log.log(logging.WARNING if status >= 500 else logging.INFO, "refused", extra=extra)
        # a rate limit, or a refusal that lasts (etcd's NOSPACE alarm) says when to come back
        retry = getattr(exc, "retry_after", None)
        headers = {"Retry-After": str(retry)} if isinstance(retry, int) else None
        return JSONResponse(body, status_code=status, headers=headers)

    @app.exception_handler(UnicodeEncodeError)
    async def not_unicode(request: Request, exc: Exception) -> Response:
        # A JSON "\ud800" escape passes the request's parsing and fails where the text is
        # encoded (a signature, the store, a QR code): the client's error, and nothing changed.
        if not isinstance(exc, UnicodeEncodeError) or exc.reason != "surrogates not allowed":
            raise exc
        _log.info("refused", extra={"error": "UnicodeEncodeError", "status": 400})
        return JSONResponse({"detail": NOT_UNICODE, "error": "UnicodeEncodeError"},
                            status_code=400)

    @app.exception_handler(plyvel.Error)
    async def store_unreadable(request: Request, exc: Exception) -> Response:
        # A store damaged after it opened (block checksums, ADR 47): LevelDB's words, which
        # name the data folder's files, go to the log; the client learns what happened.
        _log.error("store unreadable", extra={"error": type(exc).__name__,
                                              "code": leveldb_words(exc)})
        return JSONResponse({"detail": "the node's store could not be read (damaged?); its "
                                       "operator has the details in the node's log",
                             "error": "StoreError"}, status_code=503)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, _server_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.include_router(router)
    app.include_router(approvals_router)
    _include_pages(app)
    app.add_middleware(_BodyLimit, limit=settings.max_body_bytes)
    app.add_middleware(RateLimit, per_minute=settings.rate_limit_per_minute,
                       burst=settings.rate_limit_burst, clock=rate_clock, page=_refusal_page)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(_SecurityHeaders, https=settings.audience.startswith("https://"))
    app.add_middleware(_HeadAsGet)
    app.add_middleware(_AccessLog, metrics=app.state.metrics)
    return app


def _include_pages(app: FastAPI) -> None:
    """Include ``node.pages.router`` (and ``node/static`` at /static) when they exist."""
    if importlib.util.find_spec("node.pages") is None:
        return
    pages = importlib.import_module("node.pages")
    router = getattr(pages, "router", None)
    if router is None:
        return
    app.include_router(router)
    install = getattr(pages, "install_error_pages", None)
    if install is not None:
        install(app)
    static = Path(__file__).with_name("static")
    if static.is_dir() and not any(getattr(r, "path", None) == "/static" for r in app.routes):
        from fastapi.staticfiles import StaticFiles

        app.mount("/static", StaticFiles(directory=static), name="static")
