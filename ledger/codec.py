"""The one canonical codec: every byte that is hashed or signed comes from :func:`encode`.

Canonical form: msgpack with the bin type for bytes, maps with ``str`` keys sorted by their UTF-8
bytes, integers in the smallest encoding, no floats, no extension types. :func:`decode` accepts only
bytes that re-encode to themselves, so a value has exactly one encoding.

Closed schemas are checked with :class:`Fields`, which raises :class:`DecodeError` naming the field.
"""

from __future__ import annotations

import builtins
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import msgpack

from ledger.errors import DecodeError

__all__ = ["MAX_SIZE", "Fields", "decode", "encode"]

MAX_SIZE = 1 << 20
"""Largest canonical object accepted by :func:`decode` unless the caller passes ``max_size``."""

_MAX_INT = (1 << 64) - 1
_MIN_INT = -(1 << 63)
_MAX_DEPTH = 32


def _canon(value: Any, depth: int) -> Any:
    t = type(value)
    if t is str or t is bytes or t is bool or value is None:
        return value
    if t is int:  # a scalar, like str: only containers count towards the depth limit
        if not _MIN_INT <= value <= _MAX_INT:
            raise ValueError(f"integer {value} outside the 64-bit range")
        return value
    if depth > _MAX_DEPTH:
        raise ValueError("nesting deeper than 32")
    if t is dict or isinstance(value, Mapping):
        for key in value:
            if type(key) is not str:
                raise TypeError(f"map key {key!r} is not a str")
        # Code-point order of str equals the byte order of their UTF-8 encodings.
        return {k: _canon(value[k], depth + 1) for k in sorted(value)}
    if t is list or t is tuple:
        return [_canon(v, depth + 1) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"type {t.__name__} has no canonical encoding")


_PLAIN = frozenset({str, bytes, int, bool, type(None), dict, list})
"""The only types a canonical value holds: floats and msgpack timestamps/extensions are out."""


def _check_depth(value: Any, what: str) -> None:
    """Reject nesting deeper than :func:`encode` accepts, so decode∘encode never fails."""
    level: list[Any] = [value]
    for _ in range(_MAX_DEPTH + 1):
        nxt = []
        for c in level:
            for v in (c.values() if type(c) is dict else c):
                if type(v) is dict or type(v) is list:
                    nxt.append(v)
        if not nxt:
            return
        level = nxt
    raise DecodeError(f"nesting deeper than {_MAX_DEPTH}", _too_deep(value, what, 0) or what)


# -- where a decoding error is (only once decoding failed: the hot path never comes here) ------

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _step(where: str, key: Any) -> str:
    """The path of the value under ``key`` in the map at ``where``: ``where.key`` for a name,
    ``where['key']`` (its repr, cut at 64 characters) for any other key."""
    if type(key) is str and _NAME.fullmatch(key):
        return f"{where}.{key}"
    if type(key) is str or type(key) is bytes:
        key = key[:64]
    return f"{where}[{key!r}]"


class _Pairs(list[tuple[Any, Any]]):
    """A map as its pairs, in the order the bytes hold them (repeated keys kept)."""


def _as_pairs(pairs: list[tuple[Any, Any]]) -> _Pairs:
    return _Pairs(pairs)


def _misplaced(data: bytes, what: str, max_size: int) -> tuple[str, str] | None:
    """Why and where (a path from ``what``) the bytes hold what the hooks of :func:`decode`
    refused: a non-str or out-of-order map key, a float, an extension type. None if they cannot
    be read even so (their msgpack itself is broken)."""
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False,
                                object_pairs_hook=_as_pairs, max_bin_len=max_size,
                                max_str_len=max_size, max_array_len=max_size,
                                max_map_len=max_size)
    except UNPACK_ERRORS:  # unreadable here too: the caller says what it can
        return None
    return _first_misplaced(value, what, 0)


_SCALARS = frozenset({str, bytes, int, bool, type(None)})


def _first_misplaced(value: Any, where: str, depth: int) -> tuple[str, str] | None:
    """The first thing :func:`decode`'s hooks refuse in ``value`` (maps as :class:`_Pairs`),
    as (why, its path); None if nothing. A scalar's path is made only when it is reported."""
    if depth > _MAX_DEPTH + 1:  # deeper is refused for its depth, before anything inside
        return None
    if type(value) is _Pairs:
        prev = None
        for k, v in value:
            if type(k) is not str:
                return f"map key {k!r} is not a str", where
            if prev is not None and k <= prev:
                return f"map key {k!r} is out of order or repeated after {prev!r}", where
            prev = k
            if type(v) not in _SCALARS:
                found = _first_misplaced(v, _step(where, k), depth + 1)
                if found is not None:
                    return found
        return None
    if type(value) is list:
        for i, v in enumerate(value):
            if type(v) not in _SCALARS:
                found = _first_misplaced(v, f"{where}[{i}]", depth + 1)
                if found is not None:
                    return found
        return None
    if type(value) is msgpack.ExtType:
        return f"msgpack extension type {value.code} is not allowed", where
    if type(value) not in _PLAIN:
        return f"a {type(value).__name__} is not allowed", where
    return None


def _too_deep(value: Any, where: str, depth: int) -> str | None:
    """The path of a map or list nested deeper than :data:`_MAX_DEPTH` in ``value``."""
    if type(value) is not dict and type(value) is not list:
        return None
    if depth > _MAX_DEPTH:
        return where
    items = value.items() if type(value) is dict else enumerate(value)
    for k, v in items:
        found = _too_deep(v, _step(where, k) if type(value) is dict else f"{where}[{k}]",
                          depth + 1)
        if found is not None:
            return found
    return None


def _not_canonical_at(value: Any, data: bytes, what: str) -> str:
    """The path of the innermost value whose canonical encoding holds the first byte at which
    ``data`` differs from it (``value`` decoded from ``data``, with every type plain)."""
    canonical = msgpack.packb(value, use_bin_type=True)
    at, hi = 0, min(len(canonical), len(data))  # the first byte that differs: halving, in C
    while at < hi:
        mid = (at + hi + 1) // 2
        if canonical[at:mid] == data[at:mid]:
            at = mid
        else:
            hi = mid - 1
    header = msgpack.Packer(use_bin_type=True)
    where, pos, end = what, 0, len(canonical)
    while type(value) is dict or type(value) is list:
        is_map = type(value) is dict
        items: Iterable[tuple[Any, Any]] = \
            value.items() if type(value) is dict else enumerate(value)
        pos += len(header.pack_map_header(len(value)) if is_map else
                   header.pack_array_header(len(value)))
        if at < pos:
            return where  # in the map's or list's own length
        for n, (k, v) in enumerate(items, 1):
            step = _step(where, k) if is_map else f"{where}[{k}]"
            if is_map:
                pos += len(msgpack.packb(k, use_bin_type=True))
                if at < pos:
                    return step  # in the key's own encoding
            # the last value ends where its map or list does: not packed again
            size = end - pos if n == len(value) else len(msgpack.packb(v, use_bin_type=True))
            if at < pos + size:
                value, where, end = v, step, pos + size
                break
            pos += size
        else:
            return where
    return where


def _pairs_hook(pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
    prev = None
    for k, v in pairs:
        if type(k) is not str:
            raise ValueError(f"map key {k!r} is not a str")
        if prev is not None and k <= prev:
            raise ValueError(f"map key {k!r} is out of order or repeated after {prev!r}")
        if type(v) not in _PLAIN:
            raise ValueError(f"{type(v).__name__} value under key {k!r}")
        prev = k
    return dict(pairs)


def _list_hook(items: list[Any]) -> list[Any]:
    for v in items:
        if type(v) not in _PLAIN:
            raise ValueError(f"{type(v).__name__} value in a list")
    return items


def encode(value: Any) -> bytes:
    """Return the canonical msgpack bytes of ``value``.

    Raises ``TypeError``/``ValueError`` for floats, non-str map keys, out-of-range integers or
    unsupported types: those are programming errors, not bad input.
    """
    return msgpack.packb(_canon(value, 0), use_bin_type=True)  # type: ignore[no-any-return]


def decode(data: bytes, *, max_size: int = MAX_SIZE, what: str = "object") -> Any:
    """Parse canonical bytes; raise :class:`DecodeError` for anything else.

    Rejected: input over ``max_size``, malformed or trailing bytes, floats, extension types,
    non-str map keys, and any encoding that is not the canonical one (unsorted or duplicate keys,
    non-minimal integers or lengths, str where bytes are due).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}", what)
    if len(data) > max_size:
        raise DecodeError(f"{len(data)} bytes is over the {max_size}-byte limit", what)
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            object_pairs_hook=_pairs_hook,
            list_hook=_list_hook,
            ext_hook=_reject_ext,
            max_bin_len=max_size,
            max_str_len=max_size,
            max_array_len=max_size,
            max_map_len=max_size,
        )
    except DecodeError as e:
        if e.where:
            raise
        # an extension type: named by the path it is at
        found = _misplaced(bytes(data), what, max_size)
        raise DecodeError(*found if found else (str(e), what)) from e
    except msgpack.StackError as e:
        raise DecodeError("not canonical msgpack: nested deeper than msgpack reads "
                          "(StackError)", what) from e
    except (ValueError, TypeError) as e:  # a hook's (named by the path), or msgpack's own
        found = _misplaced(bytes(data), what, max_size)
        if found is not None:
            raise DecodeError(f"not canonical msgpack ({found[0]})", found[1]) from e
        raise DecodeError(f"not canonical msgpack ({type(e).__name__}: {e})", what) from e
    except (msgpack.ExtraData, msgpack.FormatError) as e:
        raise DecodeError(f"not canonical msgpack ({type(e).__name__}: {e})", what) from e
    if type(value) not in _PLAIN:
        raise DecodeError(f"a {type(value).__name__} is not allowed", what)
    if type(value) is dict or type(value) is list:
        _check_depth(value, what)
    # Keys are sorted and unique and no floats occur (hooks above); re-packing as-is in C now
    # catches every remaining non-canonical form: non-minimal ints/lengths, str/bin confusion.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("bytes are not in canonical form (non-minimal integer or length "
                          "encoding)", _not_canonical_at(value, bytes(data), what))
    return value


UNPACK_ERRORS = (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                 msgpack.StackError, RecursionError)
"""What :func:`unpack_plain` raises on malformed bytes (this, :func:`unpack_plain` and
:func:`pack_plain` are for the ledger's own decoders, not part of the public surface)."""


def _ext_is_invalid(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code}")


def unpack_plain(data: bytes, *, max_size: int) -> Any:
    """msgpack's C unpacking without hooks, for the decoders' fast paths (ADR 25, ADR 26).

    Extension types and lengths over ``max_size`` are refused, but nothing checks the canonical
    form: the caller checks exact keys and types, then compares a re-encode with ``data``, and
    leaves anything else to :func:`decode`. Raises one of :data:`UNPACK_ERRORS`.
    """
    return msgpack.unpackb(data, raw=False, ext_hook=_ext_is_invalid, max_bin_len=max_size,
                           max_str_len=max_size, max_array_len=max_size, max_map_len=max_size)


_PACKERS = threading.local()


def pack_plain(value: Any) -> bytes:
    """msgpack's C packing of a plain value (bytes as bin), for the decoders' re-encode checks
    and records whose values are known canonical (ADR 28).

    Each thread keeps one ``Packer``: ``msgpack.packb`` builds a new one per call, a third of the
    cost of packing a transaction's payload. Nothing is checked here, unlike :func:`encode`.
    """
    packer = getattr(_PACKERS, "packer", None)
    if packer is None:
        packer = _PACKERS.packer = msgpack.Packer(use_bin_type=True)
    return packer.pack(value)  # type: ignore[no-any-return]


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


class Fields:
    """Closed-schema reader over one decoded map: every key must be consumed exactly once.

    >>> f = Fields({"a": 1}, "tx"); f.int("a"); f.done()
    1
    """

    __slots__ = ("_m", "_seen", "where")

    def __init__(self, value: Any, where: builtins.str) -> None:
        if not isinstance(value, dict):
            raise DecodeError(f"expected a map, got {_kind(value)}", where)
        self._m: dict[str, Any] = value
        self._seen: list[str] = []
        self.where = where

    def _get(self, name: builtins.str, kind: type,
             label: builtins.str) -> Any:
        try:
            v = self._m[name]
        except KeyError:
            raise DecodeError("missing field", f"{self.where}.{name}") from None
        self._seen.append(name)
        # Decoded values have exact types, so `type is` is both strict (bool is not int) and fast.
        if type(v) is not kind:
            raise DecodeError(f"expected {label}, got {_kind(v)}", f"{self.where}.{name}")
        return v

    def has(self, name: builtins.str) -> builtins.bool:
        return name in self._m

    def int(self, name: builtins.str, *, lo: builtins.int = _MIN_INT,
            hi: builtins.int = _MAX_INT) -> builtins.int:
        v: builtins.int = self._get(name, int, "int")
        if not lo <= v <= hi:
            raise DecodeError(f"{v} outside [{lo}, {hi}]", f"{self.where}.{name}")
        return v

    def version(self, supported: builtins.int, what: builtins.str) -> builtins.int:
        """The format version in ``v``, from 1 to ``supported``; a higher one says the file
        came from a newer version of the software (to upgrade), not that it is damaged."""
        v: builtins.int = self._get("v", int, "int")
        if v > supported:
            raise DecodeError(f"written by a newer version of credledger ({what} format {v}; "
                              f"this one reads up to {supported}): upgrade to read it",
                              f"{self.where}.v")
        if v < 1:
            raise DecodeError(f"{v} outside [1, {supported}]", f"{self.where}.v")
        return v

    def str(self, name: builtins.str, *, max_len: builtins.int = 256,
            choices: frozenset[builtins.str] | None = None) -> builtins.str:
        v: builtins.str = self._get(name, str, "str")
        if len(v) > max_len:
            raise DecodeError(f"longer than {max_len} characters", f"{self.where}.{name}")
        if choices is not None and v not in choices:
            raise DecodeError(f"{v!r} is not one of {sorted(choices)}", f"{self.where}.{name}")
        return v

    def bytes(self, name: builtins.str, *, size: builtins.int | None = None,
              max_len: builtins.int = 4096) -> builtins.bytes:
        v: builtins.bytes = self._get(name, bytes, "bytes")
        if size is not None and len(v) != size:
            raise DecodeError(f"expected {size} bytes, got {len(v)}", f"{self.where}.{name}")
        if len(v) > max_len:
            raise DecodeError(f"longer than {max_len} bytes", f"{self.where}.{name}")
        return v

    def bool(self, name: builtins.str) -> builtins.bool:
        v: builtins.bool = self._get(name, bool, "bool")
        return v

    def list(self, name: builtins.str, *, max_len: builtins.int = 1024) -> builtins.list[Any]:
        v: builtins.list[Any] = self._get(name, list, "list")
        if len(v) > max_len:
            raise DecodeError(f"more than {max_len} items", f"{self.where}.{name}")
        return v

    def map(self, name: builtins.str) -> Fields:
        return Fields(self._get(name, dict, "map"), f"{self.where}.{name}")

    def raw_map(self, name: builtins.str, *,
                max_len: builtins.int = 1024) -> dict[builtins.str, Any]:
        v: dict[builtins.str, Any] = self._get(name, dict, "map")
        if len(v) > max_len:
            raise DecodeError(f"more than {max_len} entries", f"{self.where}.{name}")
        return v

    def done(self) -> None:
        if len(self._seen) == len(self._m):
            return
        extra = set(self._m) - set(self._seen)
        if extra:
            raise DecodeError(f"unknown field(s) {sorted(extra)}", self.where)


def _kind(v: Any) -> str:
    return "nil" if v is None else type(v).__name__
