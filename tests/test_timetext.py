"""Times past the year 9999: the ledger's schema allows them (up to 2^40 s), so everything that
shows a ledger time must say them instead of failing (a 500 page, a traceback in the CLI)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from ledger.governance import describe
from ledger.keys import PrivateKey
from ledger.network import Agency, governance_tx
from ledger.timetext import local_text, time_zone, utc_text
from node.pages import _when
from wallet.cli import _date

LAST = (1 << 40)  # the schema's bound for a time


@pytest.fixture
def machine_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Sets this process's own time zone (``TZ``) for a test, and gives the old one back."""
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()
    yield use
    monkeypatch.undo()
    time.tzset()


def test_ordinary_times_read_as_utc(machine_zone: Callable[[str], None]) -> None:
    assert utc_text(0) == "1970-01-01 00:00:00 UTC"
    assert utc_text(253402300799) == "9999-12-31 23:59:59 UTC"
    machine_zone("UTC")
    assert _date(1_795_000_000) == "2026-11-18 11:06 UTC"


def test_the_wallet_shows_times_on_its_machines_clock(machine_zone: Callable[[str], None]) -> None:
    """The wallet said every date in UTC: a holder in Tokyo read a credential valid until
    "2026-11-18 23:30 UTC" that their day ends at 08:30 the next morning."""
    machine_zone("Asia/Tokyo")
    assert _date(1_795_000_000) == "2026-11-18 20:06 UTC+09:00"
    machine_zone("Europe/Paris")
    assert _date(1_795_000_000) == "2026-11-18 12:06 UTC+01:00"
    assert _date(1_751_270_400) == "2025-06-30 10:00 UTC+02:00"  # summer time on that day
    assert "past the year 9999" in _date(LAST)


def test_a_zones_clock_is_shown_with_its_offset() -> None:
    t = 1_764_489_900  # 2025-11-30 08:05:00 UTC
    assert local_text(t) == utc_text(t) == local_text(t, time_zone("UTC"))
    assert local_text(t, time_zone("Asia/Shanghai")) == "2025-11-30 16:05:00 UTC+08:00"
    assert local_text(t, time_zone("America/St_Johns")) == "2025-11-30 04:35:00 UTC-03:30"
    assert local_text(t, time_zone("Asia/Kathmandu")) == "2025-11-30 13:50:00 UTC+05:45"
    assert local_text(t, time_zone("Europe/London")) == "2025-11-30 08:05:00 UTC+00:00"
    # the offset of that day: summer time, and a zone's own history
    assert local_text(1_751_270_400, time_zone("Europe/Paris")).endswith(" UTC+02:00")
    assert local_text(0, time_zone("Asia/Kathmandu")) == "1970-01-01 05:30:00 UTC+05:30"


def test_a_time_past_9999_is_said_as_seconds() -> None:
    shanghai = time_zone("Asia/Shanghai")
    for shown in (utc_text(LAST), _when(LAST), _date(LAST), utc_text(253402300800),
                  local_text(LAST, shanghai), _when(LAST, shanghai)):
        assert "past the year 9999" in shown
    assert str(LAST) in _when(LAST)


def test_a_proposal_with_such_a_time_can_be_read_before_signing() -> None:
    civil = Agency("civil", "Civil", PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32))
    tx = governance_tx("net", 2, "grant", {"agency": "edu", "type": "degree", "from": 0,
                                           "until": LAST}, [civil])
    lines = describe(tx)
    assert any(line.startswith("  until = ") and "past the year 9999" in line
               for line in lines)


def test_a_time_before_the_year_1_is_not_said_to_be_past_9999() -> None:
    """Too early for ``datetime`` is said as seconds from 1970, not as past the year 9999."""
    shown = utc_text(-LAST)
    assert shown == f"{-LAST} s from 1970"
    assert "9999" not in local_text(-LAST, time_zone("Asia/Shanghai"))


def test_a_named_zone_shows_its_offset_even_at_utc() -> None:
    """The bare " UTC" is for UTC itself and for a machine kept on UTC; a zone named by its
    IANA name is shown with its offset, as London's is in winter, even when it is UTC's."""
    t = 1_764_489_900  # 2025-11-30 08:05:00 UTC
    assert local_text(t, time_zone("Etc/UTC")) == "2025-11-30 08:05:00 UTC+00:00"
    assert local_text(t, time_zone("Etc/UTC"), seconds=False) == "2025-11-30 08:05 UTC+00:00"
