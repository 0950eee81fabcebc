"""Ledger times (seconds since 1970, UTC) as text for people, and the day they fall on where an
agency is."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo

__all__ = ["TimeZoneError", "local_day", "local_text", "time_zone", "utc_text"]


class TimeZoneError(ValueError):
    """A time zone name that is not in the IANA time zone database."""


_NOT_ZONES = frozenset({"localtime", "Factory"})
"""Names the time zone database answers to that name no zone: ``localtime`` is whatever this
machine's /etc/localtime is, ``Factory`` a placeholder. (``right/…`` zones, whose days end 27 s
off, and ``posix/…`` copies are not among its names.)"""


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones()) - _NOT_ZONES


def time_zone(name: str) -> dt.tzinfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``UTC``): the zone whose calendar an
    agency counts days in (ADR 56). Raises TimeZoneError naming the mistake."""
    if name == "UTC":
        return dt.UTC
    # only the database's own names: not paths ("../x", "/etc/localtime"), folders ("Asia"),
    # nor the names of _NOT_ZONES
    if name not in _zone_names():
        raise TimeZoneError(f"time zone {name!r} is not an IANA time zone name (e.g. "
                            "Asia/Shanghai, Europe/Paris, UTC)")
    return zoneinfo.ZoneInfo(name)


def local_day(ts: int, zone: dt.tzinfo = dt.UTC) -> dt.date:
    """The calendar day the ledger time ``ts`` falls on in ``zone``."""
    return dt.datetime.fromtimestamp(ts, zone).date()


def utc_text(ts: int, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    """``ts`` formatted with ``fmt`` in UTC. The ledger's schema allows times up to 2^40 s
    (year 36812), past what ``datetime`` can show (year 9999): such a time is said as its
    number of seconds instead of failing the page or command that shows it."""
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).strftime(fmt)
    except (OverflowError, OSError, ValueError):
        return f"{ts} s after 1970 (past the year 9999)" if ts > 0 else f"{ts} s from 1970"


def local_text(ts: int, zone: dt.tzinfo | None = dt.UTC, *, seconds: bool = True) -> str:
    """``ts`` as the clock in ``zone`` shows it, with its offset from UTC (``2026-11-30
    08:05:00 UTC+08:00``); in UTC itself as :func:`utc_text`. ``zone`` None is this machine's
    own (``TZ``, else /etc/localtime), with the offset it had at ``ts`` (summer time or not).
    Times past the year 9999 as there."""
    clock = "%H:%M:%S" if seconds else "%H:%M"
    if zone is dt.UTC:
        return utc_text(ts, f"%Y-%m-%d {clock} UTC")
    try:
        local = (dt.datetime.fromtimestamp(ts).astimezone() if zone is None
                 else dt.datetime.fromtimestamp(ts, zone))
    except (OverflowError, OSError, ValueError):
        return utc_text(ts, f"%Y-%m-%d {clock} UTC")
    if zone is None and local.tzname() == "UTC":  # a machine kept on UTC
        return f"{local:%Y-%m-%d} {local.strftime(clock)} UTC"
    offset = local.utcoffset() or dt.timedelta(0)
    sign, minutes = ("-", -offset) if offset < dt.timedelta(0) else ("+", offset)
    hours, rest = divmod(int(minutes.total_seconds()) // 60, 60)
    return f"{local:%Y-%m-%d} {local.strftime(clock)} UTC{sign}{hours:02d}:{rest:02d}"
