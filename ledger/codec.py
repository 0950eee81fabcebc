"""The one canonical codec: every byte that is hashed or signed comes from :func:`encode`.

Canonical form: msgpack with the bin type for bytes, maps with ``str`` keys sorted by their UTF-8
bytes, integers in the smallest encoding, no floats, no extension types. :func:`decode` accepts only
bytes that re-encode to themselves, so a value has exactly one encoding.

Closed schemas are checked with :class:`Fields`, which raises :class:`DecodeError` naming the field.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Mapping
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
    raise DecodeError(f"nesting deeper than {_MAX_DEPTH}", what)


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
        raise DecodeError(str(e), what) from e  # from a hook: named by what it is in
    except msgpack.StackError as e:
        raise DecodeError("not canonical msgpack: nested deeper than msgpack reads "
                          "(StackError)", what) from e
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as e:
        raise DecodeError(f"not canonical msgpack ({type(e).__name__}: {e})", what) from e
    if type(value) not in _PLAIN:
        raise DecodeError(f"a {type(value).__name__} is not allowed", what)
    if type(value) is dict or type(value) is list:
        _check_depth(value, what)
    # Keys are sorted and unique and no floats occur (hooks above); re-packing as-is in C now
    # catches every remaining non-canonical form: non-minimal ints/lengths, str/bin confusion.
    if msgpack.packb(value, use_bin_type=True) != data:
        raise DecodeError("bytes are not in canonical form (non-minimal integer or length "
                          "encoding)", what)
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
