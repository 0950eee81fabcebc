"""The one canonical codec: every byte that is hashed or signed comes from :func:`encode`.

Canonical form: msgpack with the bin type for bytes, maps with ``str`` keys sorted by their UTF-8
bytes, integers in the smallest encoding, no floats, no extension types. :func:`decode` accepts only
bytes that re-encode to themselves, so a value has exactly one encoding.

Closed schemas are checked with :class:`Fields`, which raises :class:`DecodeError` naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

import msgpack

from ledger.errors import DecodeError

__all__ = ["MAX_SIZE", "Fields", "decode", "encode"]

MAX_SIZE = 1 << 20
"""Largest canonical object accepted by :func:`decode` unless the caller passes ``max_size``."""

_MAX_INT = (1 << 64) - 1
_MIN_INT = -(1 << 63)
_MAX_DEPTH = 32

T = TypeVar("T")


def _canon(value: Any, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise ValueError("nesting deeper than 32")
    if value is None or isinstance(value, bool | str | bytes):
        return value
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            raise ValueError(f"integer {value} outside the 64-bit range")
        return value
    if isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"map key {key!r} is not a str")
        return {
            k: _canon(value[k], depth + 1) for k in sorted(value, key=lambda s: s.encode("utf-8"))
        }
    if isinstance(value, list | tuple):
        return [_canon(v, depth + 1) for v in value]
    raise TypeError(f"type {type(value).__name__} has no canonical encoding")


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
            ext_hook=_reject_ext,
        )
    except DecodeError:
        raise
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError,
            msgpack.StackError) as e:
        raise DecodeError(f"malformed msgpack ({type(e).__name__}: {e})", what) from e
    try:
        again = encode(value)
    except (TypeError, ValueError) as e:
        raise DecodeError(f"value has no canonical form ({e})", what) from e
    if again != bytes(data):
        raise DecodeError("bytes are not in canonical form (key order, duplicate key, or "
                          "integer/length encoding)", what)
    return value


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"msgpack extension type {code} is not allowed")


class Fields:
    """Closed-schema reader over one decoded map: every key must be consumed exactly once.

    >>> f = Fields({"a": 1}, "tx"); f.int("a"); f.done()
    1
    """

    __slots__ = ("_m", "_seen", "where")

    def __init__(self, value: Any, where: str) -> None:
        if not isinstance(value, dict):
            raise DecodeError(f"expected a map, got {_kind(value)}", where)
        self._m: dict[str, Any] = value
        self._seen: set[str] = set()
        self.where = where

    def _get(self, name: str, kind: type | tuple[type, ...], label: str) -> Any:
        if name not in self._m:
            raise DecodeError("missing field", f"{self.where}.{name}")
        self._seen.add(name)
        v = self._m[name]
        if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
            raise DecodeError(f"expected {label}, got {_kind(v)}", f"{self.where}.{name}")
        return v

    def has(self, name: str) -> bool:
        return name in self._m

    def int(self, name: str, *, lo: int = _MIN_INT, hi: int = _MAX_INT) -> int:
        v: int = self._get(name, int, "int")
        if not lo <= v <= hi:
            raise DecodeError(f"{v} outside [{lo}, {hi}]", f"{self.where}.{name}")
        return v

    def opt_int(self, name: str, *, lo: int = _MIN_INT, hi: int = _MAX_INT) -> int | None:
        if self._m.get(name, 0) is None:
            self._seen.add(name)
            return None
        return self.int(name, lo=lo, hi=hi)

    def str(self, name: str, *, max_len: int = 256, choices: frozenset[str] | None = None) -> str:
        v: str = self._get(name, str, "str")
        if len(v) > max_len:
            raise DecodeError(f"longer than {max_len} characters", f"{self.where}.{name}")
        if choices is not None and v not in choices:
            raise DecodeError(f"{v!r} is not one of {sorted(choices)}", f"{self.where}.{name}")
        return v

    def bytes(self, name: str, *, size: int | None = None, max_len: int = 4096) -> bytes:
        v: bytes = self._get(name, bytes, "bytes")
        if size is not None and len(v) != size:
            raise DecodeError(f"expected {size} bytes, got {len(v)}", f"{self.where}.{name}")
        if len(v) > max_len:
            raise DecodeError(f"longer than {max_len} bytes", f"{self.where}.{name}")
        return v

    def bool(self, name: str) -> bool:
        v: bool = self._get(name, bool, "bool")
        return v

    def list(self, name: str, *, max_len: int = 1024) -> list[Any]:
        v: list[Any] = self._get(name, list, "list")
        if len(v) > max_len:
            raise DecodeError(f"more than {max_len} items", f"{self.where}.{name}")
        return v

    def map(self, name: str) -> Fields:
        return Fields(self._get(name, dict, "map"), f"{self.where}.{name}")

    def raw_map(self, name: str, *, max_len: int = 1024) -> dict[str, Any]:
        v: dict[str, Any] = self._get(name, dict, "map")
        if len(v) > max_len:
            raise DecodeError(f"more than {max_len} entries", f"{self.where}.{name}")
        return v

    def done(self) -> None:
        extra = set(self._m) - self._seen
        if extra:
            raise DecodeError(f"unknown field(s) {sorted(extra)}", self.where)


def _kind(v: Any) -> str:
    return "nil" if v is None else type(v).__name__
