"""Times past the year 9999: the ledger's schema allows them (up to 2^40 s), so everything that
shows a ledger time must say them instead of failing (a 500 page, a traceback in the CLI)."""

from __future__ import annotations

from ledger.governance import describe
from ledger.keys import PrivateKey
from ledger.network import Agency, governance_tx
from ledger.timetext import utc_text
from node.pages import _when
from wallet.cli import _date

LAST = (1 << 40)  # the schema's bound for a time


def test_ordinary_times_read_as_utc() -> None:
    assert utc_text(0) == "1970-01-01 00:00:00 UTC"
    assert utc_text(253402300799) == "9999-12-31 23:59:59 UTC"
    assert _date(1_795_000_000) == "2026-11-18 11:06 UTC"


def test_a_time_past_9999_is_said_as_seconds() -> None:
    for shown in (utc_text(LAST), _when(LAST), _date(LAST), utc_text(253402300800)):
        assert "past the year 9999" in shown
    assert str(LAST) in _when(LAST)


def test_a_proposal_with_such_a_time_can_be_read_before_signing() -> None:
    civil = Agency("civil", "Civil", PrivateKey(b"\x01" * 32), PrivateKey(b"\x02" * 32))
    tx = governance_tx("net", 2, "grant", {"agency": "edu", "type": "degree", "from": 0,
                                           "until": LAST}, [civil])
    lines = describe(tx)
    assert any(line.startswith("  until = ") and "past the year 9999" in line
               for line in lines)
