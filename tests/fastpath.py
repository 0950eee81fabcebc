"""Shared check for the decoders' fast paths (ADR 25, ADR 26): a fast path returns either None
(the strict path then decides and names the error) or exactly what the strict path builds."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from ledger.errors import DecodeError

T = TypeVar("T")


def agree(fast: Callable[[bytes], T | None], strict: Callable[[bytes], T], raw: bytes) -> T | None:
    """Assert ``fast(raw)`` is None or equals ``strict(raw)``, and is None whenever the strict
    parse refuses ``raw``; return the fast result."""
    got = fast(raw)
    try:
        want = strict(raw)
    except DecodeError:
        assert got is None, f"fast path accepted bytes the strict parse refuses: {raw!r}"
        return None
    if got is not None:
        assert got == want
    return got


def strict_only(module: object, fast_name: str, parse: Callable[[bytes], T], raw: bytes) -> T:
    """``parse(raw)`` with ``module.<fast_name>`` (the fast path) switched off."""
    fast = getattr(module, fast_name)
    setattr(module, fast_name, lambda _: None)
    try:
        return parse(raw)
    finally:
        setattr(module, fast_name, fast)
