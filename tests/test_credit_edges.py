"""Credit events and the score at their edges: dates, expiry, withdrawals, serious events
(ADR 54)."""
from __future__ import annotations

from typing import Any

import pytest
from conftest import DAY, T0
from test_contracts_world import SECRET, catalogue_agencies, credit_tx, install_catalogue

from contracts import pseudonym, summary
from contracts.catalogue import POLICY, YEAR

SUBJECT = pseudonym("91440606-MA4W", SECRET)


@pytest.fixture
def world(make_ledger: Any) -> Any:
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag, services=[])
    return lg, ag


def test_event_date_edge_is_the_block_time(world: Any) -> None:
    lg, ag = world
    t = T0 + DAY
    r = lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, t + 1, t + YEAR)], t)
    assert [e.code for _, e in r.rejected] == ["future_date"]  # one second ahead: refused
    r = lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, t, t + YEAR, ts=T0 + 1)], t)
    assert not r.rejected  # dated at the block time: taken


def test_expiry_equal_to_date_is_refused(world: Any) -> None:
    lg, ag = world
    t = T0 + DAY
    r = lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, t, t)], t)
    assert [e.code for _, e in r.rejected] == ["bad_expiry"]


def test_a_withdrawal_names_the_withdrawn_events_category(world: Any) -> None:
    lg, ag = world
    ev = credit_tx(ag["civil"], SUBJECT, "tax", -10, T0 + DAY, T0 + YEAR)
    assert not lg.commit([ev], T0 + DAY).rejected
    wrong = credit_tx(ag["civil"], SUBJECT, "utilities", 0, T0 + DAY, T0 + YEAR,
                      withdraws=ev.txid, ts=T0 + 3)
    assert [e.code for _, e in lg.commit([wrong], T0 + DAY).rejected] == ["bad_withdrawal"]


def test_an_event_stops_counting_at_its_expiry(world: Any) -> None:
    lg, ag = world
    date, expiry = T0 + DAY, T0 + 3 * DAY
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -50, date, expiry)],
                         date).rejected
    h = lg.store.head.height
    assert summary(lg.store, POLICY, SUBJECT, height=h, time=expiry - 1).score == 550
    at = summary(lg.store, POLICY, SUBJECT, height=h, time=expiry)
    assert (at.score, at.events) == (600, 0)  # date <= t < expiry


def test_serious_at_is_inclusive(world: Any) -> None:
    """POLICY serious_at is 100: a -100 event (weight 100) is serious, -99 is not."""
    lg, ag = world
    d1, d2 = T0 + DAY, T0 + 2 * DAY
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -99, d1, d1 + YEAR)],
                         d1).rejected
    h = lg.store.head.height
    assert summary(lg.store, POLICY, SUBJECT, height=h, time=d1).last_serious == 0
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -100, d2, d2 + YEAR,
                                    ts=T0 + 1)], d2).rejected
    h = lg.store.head.height
    assert summary(lg.store, POLICY, SUBJECT, height=h, time=d2).last_serious == d2
