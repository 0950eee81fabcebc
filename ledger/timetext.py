"""Ledger times (seconds since 1970, UTC) as text for people."""

from __future__ import annotations

import datetime as dt

__all__ = ["utc_text"]


def utc_text(ts: int, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """``ts`` formatted with ``fmt`` in UTC. The ledger's schema allows times up to 2^40 s
    (year 36812), past what ``datetime`` can show (year 9999): such a time is said as its
    number of seconds instead of failing the page or command that shows it."""
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts} s after 1970 (past the year 9999)" if ts > 0 else f"{ts} s from 1970"
