"""A server's answer read by an httpx client, bounded in time as a whole.

httpx's read timeout starts again with every byte: a server dripping its answer a byte at a
time, each within it, status line and headers too, held the command reading it for as long as
it liked. A client made by :func:`client` (its transport ours, on httpx's and httpcore's public
API alone) reads through streams whose every read's timeout is cut to what is left of the
:class:`Bound` set by :func:`within` (none set: httpx's own alone);
past it, the read raises ``httpcore.ReadTimeout``, which httpx raises as ``httpx.ReadTimeout``
(a write, a connect, a TLS handshake: their own timeouts, the handshake cut by a timer).
The wallet's answers are bounded in time (:class:`Bound` with no rate); an archive, which may
be large, by a least rate after its first wait. httpx is imported by the caller alone (the
core imports no web client): these wrap what it hands them.
"""

from __future__ import annotations

import importlib.util
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from functools import cache
from typing import Any
from weakref import WeakSet

__all__ = ["UNCOMPRESSED", "Bound", "bounded", "client", "compressed", "within"]


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


def _cut(bound: Bound, timeout: float | None, late: Any) -> float:
    """``timeout`` cut to what is left of ``bound``; ``late`` (an httpcore timeout) raised if
    nothing is."""
    left = bound.left()
    if left <= 0:
        raise late("the answer's time is up")
    return left if timeout is None else min(timeout, left)


class _Stream:
    """An httpcore network stream (``httpcore.NetworkStream``'s methods) whose reads, writes
    and TLS handshake end at the :class:`Bound` set."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        bound = _BOUND.get()
        if bound is not None:
            import httpcore

            timeout = _cut(bound, timeout, httpcore.ReadTimeout)
        got: bytes = self._stream.read(max_bytes, timeout)
        if bound is not None:
            bound.took(len(got))
        return got

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _Stream:
        """TLS begun on this stream, its handshake ended at the :class:`Bound` set: the
        socket's timeout starts again with every read of it, so a server dripping its
        handshake is cut off by a timer shutting the socket down when the bound is up."""
        bound = _BOUND.get()
        if bound is None:
            return _Stream(self._stream.start_tls(ssl_context, server_hostname, timeout))
        import httpcore

        timeout = _cut(bound, timeout, httpcore.ConnectTimeout)
        sock = self._stream.get_extra_info("socket")
        ended = threading.Event()

        def end() -> None:
            ended.set()
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(bound.left(), end)
        timer.daemon = True
        if sock is not None:
            timer.start()
        try:
            begun = self._stream.start_tls(ssl_context, server_hostname, timeout)
        except httpcore.NetworkError as e:
            if ended.is_set() or bound.passed():
                raise httpcore.ConnectTimeout("the answer's time is up (TLS handshake)") from e
            raise
        finally:
            timer.cancel()
            if sock is not None:
                timer.join()
        if ended.is_set():  # the timer shut the socket down as the handshake ended
            begun.close()
            raise httpcore.ConnectTimeout("the answer's time is up (TLS handshake)")
        return _Stream(begun)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        bound = _BOUND.get()
        if bound is not None:
            import httpcore

            timeout = _cut(bound, timeout, httpcore.WriteTimeout)
        self._stream.write(buffer, timeout)

    def close(self) -> None:
        self._stream.close()

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _Backend:
    """An httpcore network backend (``httpcore.NetworkBackend``'s methods) whose streams are
    :class:`_Stream`."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> _Stream:
        bound = _BOUND.get()
        if bound is not None:  # one connect call: its timeout cut to the bound holds it
            import httpcore

            timeout = _cut(bound, timeout, httpcore.ConnectTimeout)
        return _Stream(self._backend.connect_tcp(host, port, timeout, local_address,
                                                 socket_options))

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> _Stream:
        return _Stream(self._backend.connect_unix_socket(*args, **kwargs))

    def sleep(self, seconds: float) -> None:
        self._backend.sleep(seconds)


_EXCEPTIONS: list[tuple[Any, Any]] = []  # (httpcore's, httpx's), filled on first use


def _mapped(exc: Exception) -> Exception | None:
    """``exc`` (httpcore's) as httpx's most specific exception for it, as httpx's own
    transport maps it (so that callers' ``except httpx.…`` hold); None: not httpcore's."""
    if not _EXCEPTIONS:
        import httpcore
        import httpx

        _EXCEPTIONS.extend((getattr(httpcore, name), getattr(httpx, name)) for name in (
            "TimeoutException", "ConnectTimeout", "ReadTimeout", "WriteTimeout", "PoolTimeout",
            "NetworkError", "ConnectError", "ReadError", "WriteError", "ProxyError",
            "UnsupportedProtocol", "ProtocolError", "LocalProtocolError",
            "RemoteProtocolError"))
    found: Any = None
    for theirs, ours in _EXCEPTIONS:
        if isinstance(exc, theirs) and (found is None or issubclass(ours, found)):
            found = ours
    return None if found is None else found(str(exc))


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as e:
        mapped = _mapped(e)
        if mapped is None:
            raise
        raise mapped from e


class _Body:
    """An answer's body as httpcore gives it, read as an httpx stream (errors httpx's)."""

    def __init__(self, parts: Any) -> None:
        self._parts = parts

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._parts

    def close(self) -> None:
        with _httpx_errors():
            self._parts.close()


class _Transport:
    """An httpx transport of an httpcore connection pool whose network backend is
    :class:`_Backend` (public API of both: ``httpx.BaseTransport``, ``httpcore.ConnectionPool``,
    ``httpcore.SyncBackend``), requests and answers mapped as httpx's own transport maps them;
    TLS verified as httpx's ``verify`` says (True: its default trust)."""

    def __init__(self, verify: Any = True, proxy: str | None = None,
                 trust_env: bool = True) -> None:
        import httpcore
        import httpx

        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)  # httpx's
        common: dict[str, Any] = {
            "ssl_context": httpx.create_ssl_context(verify=verify, trust_env=trust_env),
            "max_connections": limits.max_connections,
            "max_keepalive_connections": limits.max_keepalive_connections,
            "keepalive_expiry": limits.keepalive_expiry,
            "network_backend": _Backend(httpcore.SyncBackend())}
        if proxy is None:
            self._pool: Any = httpcore.ConnectionPool(**common)
            return
        through = httpx.Proxy(url=proxy)  # as httpx's own transport reaches a proxy
        url = httpcore.URL(scheme=through.url.raw_scheme, host=through.url.raw_host,
                           port=through.url.port, target=through.url.raw_path)
        if through.url.scheme in ("http", "https"):
            self._pool = httpcore.HTTPProxy(
                proxy_url=url, proxy_auth=through.raw_auth,
                proxy_headers=through.headers.raw, proxy_ssl_context=through.ssl_context,
                **common)
        elif through.url.scheme in ("socks5", "socks5h"):
            if importlib.util.find_spec("socksio") is None:
                raise ImportError("a SOCKS proxy is set (the environment's), but the "
                                  "'socksio' package is not installed")
            self._pool = httpcore.SOCKSProxy(proxy_url=url, proxy_auth=through.raw_auth,
                                             **common)
        else:
            raise ValueError("a proxy's scheme must be http, https, socks5 or socks5h, not "
                             f"{through.url.scheme!r}")

    def handle_request(self, request: Any) -> Any:
        import httpcore
        import httpx

        core = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=request.url.raw_scheme, host=request.url.raw_host,
                             port=request.url.port, target=request.url.raw_path),
            headers=request.headers.raw, content=request.stream,
            extensions=request.extensions)
        with _httpx_errors():
            got = self._pool.handle_request(core)
        return httpx.Response(status_code=got.status, headers=got.headers,
                              stream=_classes()[1](got.stream),
                              extensions=got.extensions)

    def close(self) -> None:
        with _httpx_errors():
            self._pool.close()


@cache
def _classes() -> tuple[Any, Any]:
    """:class:`_Transport` as an ``httpx.BaseTransport`` and :class:`_Body` as an
    ``httpx.SyncByteStream``, as httpx wants them (httpx imported when first asked)."""
    import httpx

    return (type("Transport", (_Transport, httpx.BaseTransport), {}),
            type("Body", (_Body, httpx.SyncByteStream), {}))


_MADE: WeakSet[Any] = WeakSet()


def _environment_proxies() -> dict[str, str | None]:
    """The proxies of the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) as an
    ``httpx.Client``'s mounts, URL patterns to a proxy's URL or to None (none), read as
    httpx reads them for a client given no transport."""
    import ipaddress
    from urllib.request import getproxies

    def address(name: str, kind: Any) -> bool:
        try:
            kind(name.split("/", maxsplit=1)[0])
        except ValueError:
            return False
        return True

    info = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        if info.get(scheme):
            mounts[f"{scheme}://"] = info[scheme] if "://" in info[scheme] else (
                f"http://{info[scheme]}")
    for name in (host.strip() for host in info.get("no", "").split(",")):
        if name == "*":
            return {}
        if not name:
            continue
        if "://" in name:
            mounts[name] = None
        elif address(name, ipaddress.IPv4Address) or name.lower() == "localhost":
            mounts[f"all://{name}"] = None
        elif address(name, ipaddress.IPv6Address):
            mounts[f"all://[{name}]"] = None
        else:
            mounts[f"all://*{name}"] = None
    return mounts


_TRANSPORTS_OWN = ("app", "cert", "http1", "http2", "limits", "mounts", "proxies", "proxy",
                   "transport")
"""``httpx.Client``'s options for the transports it makes: given beside a transport, httpx
drops them unsaid (``proxy``: it makes a transport of its own, unbounded, for every URL)."""


def client(verify: Any = True, **kw: Any) -> Any:
    """An ``httpx.Client`` (``kw`` its own) whose every connection is read through
    :class:`_Stream`: its transports :class:`_Transport`, TLS verified as ``verify`` says, the
    environment's proxies (and SSL_CERT_FILE, SSL_CERT_DIR) used as httpx uses them unless
    ``trust_env`` is False. An option of httpx's for its own transports is a TypeError."""
    import httpx

    refused = [name for name in _TRANSPORTS_OWN if name in kw]
    if refused:
        raise TypeError(f"ledger.within.client takes no {', '.join(refused)}: its transports "
                        "are its own (httpx would drop it, or read unbounded)")
    trust_env = bool(kw.get("trust_env", True))
    transport = _classes()[0]
    mounts: dict[str, Any] = {}
    for pattern, proxy in (_environment_proxies() if trust_env else {}).items():
        try:
            mounts[pattern] = None if proxy is None else transport(verify, proxy, trust_env)
        except (ValueError, ImportError, httpx.InvalidURL) as e:  # the environment's words
            name = f"{pattern.partition(':')[0].upper()}_PROXY"
            raise httpx.ProxyError(f"the proxy set in {name} cannot be used ({e}); correct "
                                   f"or unset {name}") from e
    made = httpx.Client(transport=transport(verify, None, trust_env), mounts=mounts, **kw)
    _MADE.add(made)
    return made


def bounded(given: Any) -> Any:
    """``given`` if made by :func:`client`; else a TypeError: another client's reads cannot be
    bounded through httpx's public API, and one left unbounded would be a bound lost unsaid."""
    if given not in _MADE:
        raise TypeError("an httpx client not made by ledger.within.client: its answers "
                        "cannot be bounded in time")
    return given
