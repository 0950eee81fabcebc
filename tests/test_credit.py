"""Credit events on the ledger: grants, policy, withdrawal, and score(subject, at_height)."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DAY, T0
from test_contracts_world import SECRET, catalogue_agencies, credit_tx, install_catalogue

from contracts import pseudonym, score, summary
from contracts.catalogue import POLICY, YEAR
from contracts.errors import ContractError
from ledger import codec
from ledger.chain import build_block
from ledger.state import MAX_CREDIT_EVENTS, credit_events, credit_key
from ledger.tx import Tx, make_tx

SUBJECT = pseudonym("91440606-MA4W", SECRET)


@pytest.fixture
def world(make_ledger: Any) -> Any:
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag, services=[])
    return lg, ag


def head(lg: Any) -> tuple[int, int]:
    return lg.store.head.height, lg.store.head.time


def test_pseudonym_is_keyed() -> None:
    assert pseudonym("91440606-MA4W", SECRET) == SUBJECT
    assert pseudonym(" 91440606-MA4W ", SECRET) == SUBJECT
    assert pseudonym("91440606-MA4W", b"another-secret-of-16+") != SUBJECT
    # one identifier, composed or decomposed (é as U+00E9 or e + U+0301): one subject
    assert pseudonym("Caf\u00e9-0417", SECRET) == pseudonym("Cafe\u0301-0417", SECRET)
    # ASCII letters have no case: a check letter typed "x" is the "X" a credential carries (it
    # was a subject of its own, its events in no one's score; ADR 70); other letters keep theirs
    assert pseudonym("91440606-ma4w", SECRET) == pseudonym("91440606-Ma4W", SECRET) == SUBJECT
    assert pseudonym("11010519491231002x", SECRET) == pseudonym("11010519491231002X", SECRET)
    assert pseudonym("Caf\u00e9-0417", SECRET) != pseudonym("Caf\u00c9-0417", SECRET)
    with pytest.raises(ContractError):
        pseudonym("x", b"short")
    # typed with an input method's full-width characters, or with a zero-width space: refused
    # (each was a pseudonym of its own, the subject's credit records split)
    with pytest.raises(ContractError, match="full-width"):
        pseudonym("\uff19\uff11\uff14\uff14\uff10\uff16\uff10\uff16-MA4W", SECRET)
    with pytest.raises(ContractError, match="invisible"):
        pseudonym("91440606\u200b-MA4W", SECRET)


def test_score_over_heights_and_withdrawal(world: Any) -> None:
    lg, ag = world
    market = ag["market"]
    h0, t0 = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h0, time=t0) == 600
    late = credit_tx(market, SUBJECT, "permits", -120, T0 + DAY, T0 + 10 * YEAR)
    assert not lg.commit([late], T0 + DAY).rejected
    h1, t1 = head(lg)
    s1 = summary(lg.store, POLICY, SUBJECT, height=h1, time=t1)
    assert (s1.score, s1.last_serious, s1.events) == (480, T0 + DAY, 1)
    # the withdrawal (after an appeal) restores the score from its height on, not before
    w = credit_tx(market, SUBJECT, "permits", 0, T0 + 2 * DAY, T0 + 10 * YEAR,
                  reason="appeal_upheld", withdraws=late.txid, ts=T0 + 2 * DAY)
    assert not lg.commit([w], T0 + 2 * DAY).rejected
    h2, t2 = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h2, time=t2) == 600
    assert score(lg.store, POLICY, SUBJECT, height=h1, time=t1) == 480
    assert score(lg.store, POLICY, SUBJECT, height=h0, time=t0) == 600
    events = credit_events(lg.store, SUBJECT)
    assert [e.withdrawn_by for e in events] == [w.txid]  # history stays


def test_weights_decay_expiry_bounds(world: Any) -> None:
    lg, ag = world
    courts, civil = ag["justice"], ag["civil"]
    txs = [credit_tx(courts, SUBJECT, "courts", -100, T0 + DAY, T0 + 20 * YEAR),
           credit_tx(civil, SUBJECT, "utilities", 30, T0 + DAY, T0 + 2 * DAY)]
    assert not lg.commit(txs, T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h, time=t) == 600 - 150 + 15
    # after expiry of the utilities event and one half-life of the court event
    later = T0 + DAY + 5 * YEAR
    assert score(lg.store, POLICY, SUBJECT, height=h, time=later) == 600 - 75
    big = [credit_tx(courts, SUBJECT, "courts", -1000, T0 + DAY, T0 + 20 * YEAR, ts=T0 + 2 * DAY)]
    assert not lg.commit(big, T0 + 2 * DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h, time=t) == 0  # clamped at min


REJECTS = [
    ("not granted", "market", "courts", -10, {}, "not_granted"),
    ("unknown category", "market", "gossip", -10, {}, "unknown_category"),
    ("zero points", "market", "permits", 0, {}, "bad_points"),
    ("future date", "market", "permits", -10, {"date": T0 + 99 * DAY}, "future_date"),
    ("expiry before date", "market", "permits", -10, {"expiry": T0}, "bad_expiry"),
]


@pytest.mark.parametrize(("name", "who", "cat", "points", "extra", "code"), REJECTS,
                         ids=[r[0] for r in REJECTS])
def test_credit_rejections(world: Any, name: str, who: str, cat: str, points: int,
                           extra: dict[str, int], code: str) -> None:
    lg, ag = world
    args = {"date": T0 + DAY, "expiry": T0 + YEAR, **extra}
    tx = credit_tx(ag[who], SUBJECT, cat, points, args["date"], args["expiry"], ts=T0 + DAY)
    r = lg.commit([tx], T0 + DAY)
    assert [e.code for _, e in r.rejected] == [code]
    assert lg.store.get(b"s" + SUBJECT) is None


def test_only_the_recording_agency_withdraws_once(world: Any) -> None:
    lg, ag = world
    ev = credit_tx(ag["market"], SUBJECT, "permits", -10, T0 + DAY, T0 + YEAR)
    assert not lg.commit([ev], T0 + DAY).rejected
    other = credit_tx(ag["civil"], SUBJECT, "permits", 0, T0 + DAY, T0 + YEAR,
                      withdraws=ev.txid)
    assert [e.code for _, e in lg.commit([other], T0 + DAY).rejected] == ["not_authorized"]
    bad = credit_tx(ag["market"], SUBJECT, "permits", 5, T0 + DAY, T0 + YEAR,
                    withdraws=ev.txid)
    assert [e.code for _, e in lg.commit([bad], T0 + DAY).rejected] == ["bad_withdrawal"]
    ok = credit_tx(ag["market"], SUBJECT, "permits", 0, T0 + DAY, T0 + YEAR,
                   withdraws=ev.txid, ts=T0 + DAY + 5)
    again = credit_tx(ag["market"], SUBJECT, "permits", 0, T0 + DAY, T0 + YEAR,
                      withdraws=ev.txid, ts=T0 + DAY + 6)
    r = lg.commit([ok, again], T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["already_withdrawn"]


def test_no_policy_means_not_enabled(ledger: Any, agencies: Any) -> None:
    tx = credit_tx(agencies["edu"], SUBJECT, "tax", -5, T0, T0 + DAY)
    assert [e.code for _, e in ledger.commit([tx], T0 + DAY).rejected] == ["not_enabled"]


# -- edges: dates, expiry, withdrawals, serious events (a mutation round, ADR 54) ---------------

def test_event_date_edge_is_the_block_time(world: Any) -> None:
    lg, ag = world
    t = T0 + DAY
    r = lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, t + 1, t + YEAR)], t)
    assert [e.code for _, e in r.rejected] == ["future_date"]  # one second ahead: refused
    r = lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, t, t + YEAR, ts=t + 1)], t)
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
                      withdraws=ev.txid, ts=T0 + DAY + 3)
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
                                    ts=d2 + 1)], d2).rejected
    h = lg.store.head.height
    assert summary(lg.store, POLICY, SUBJECT, height=h, time=d2).last_serious == d2


# -- found by a mutation round of the contracts (ADR 56) ----------------------------------------

def test_the_pseudonym_and_the_secret_s_fingerprint_are_fixed_vectors() -> None:
    """Every chain names subjects by these bytes: another domain or encoding would leave each
    subject's recorded events under a pseudonym no node computes any more."""
    from contracts.credit import secret_fingerprint

    assert SUBJECT.hex() == "83ade61d8d6e6e7f517f1aeef03f94fac5e5f5799938313571435429a4b06e62"
    assert secret_fingerprint(SECRET).hex() == "31800699f305afa0"


def test_a_weighted_or_halved_contribution_truncates_toward_zero(world: Any) -> None:
    """points * weight / 100, halved per half-life, each division truncating toward zero: a
    penalty of -5 in utilities (weight 50) counts -2, as +5 counts +2 (floor would give -3);
    -101 in courts (weight 150) counts -151, and -75 after one half-life (not -76)."""
    lg, ag = world
    civil, courts = ag["civil"], ag["justice"]
    assert not lg.commit([credit_tx(civil, SUBJECT, "utilities", -5, T0 + DAY, T0 + 30 * YEAR)],
                         T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h, time=t) == 598
    other = pseudonym("91440606-MA4X", SECRET)
    assert not lg.commit([credit_tx(civil, other, "utilities", 5, T0 + DAY, T0 + 30 * YEAR,
                                    ts=T0 + DAY + 1)], T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, other, height=h, time=t) == 602
    third = pseudonym("91440606-MA4Y", SECRET)
    assert not lg.commit([credit_tx(courts, third, "courts", -101, T0 + DAY, T0 + 30 * YEAR,
                                    ts=T0 + DAY + 2)], T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, third, height=h, time=t) == 600 - 151
    assert score(lg.store, POLICY, third, height=h, time=T0 + DAY + 5 * YEAR) == 600 - 75


def test_the_score_is_clamped_at_the_policy_s_max(world: Any) -> None:
    lg, ag = world
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", 900, T0 + DAY,
                                    T0 + YEAR)], T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h, time=t) == POLICY["max"] == 1000


def test_a_serious_event_still_dates_last_serious_after_its_expiry(world: Any) -> None:
    """An expired event no longer counts in the score or in ``events``, but the date of a
    serious one stays ``last_serious``: a rule's own window (the licence's three years) judges
    how long it matters, not the event's expiry."""
    lg, ag = world
    date, expiry = T0 + DAY, T0 + 3 * DAY
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -200, date, expiry)],
                         date).rejected
    h = lg.store.head.height
    at = summary(lg.store, POLICY, SUBJECT, height=h, time=expiry)
    assert (at.score, at.events, at.last_serious) == (600, 0, date)


def test_an_event_of_a_category_the_policy_no_longer_weighs_counts_nothing(world: Any) -> None:
    """Scored under a later policy without its category (weight 0), an event counts no
    points, and is still counted among ``events``."""
    lg, ag = world
    assert not lg.commit([credit_tx(ag["civil"], SUBJECT, "utilities", -40, T0 + DAY,
                                    T0 + YEAR)], T0 + DAY).rejected
    h, t = head(lg)
    assert score(lg.store, POLICY, SUBJECT, height=h, time=t) == 580
    later = {**POLICY, "categories": [c for c in POLICY["categories"]
                                      if c["name"] != "utilities"]}
    s = summary(lg.store, later, SUBJECT, height=h, time=t)
    assert (s.score, s.events) == (600, 1)


def test_last_serious_is_the_latest_date_whatever_the_order_recorded(world: Any) -> None:
    """A serious event recorded late (dated before one recorded earlier) does not move
    ``last_serious`` back: it is the latest date of the serious events, not the last
    recorded."""
    lg, ag = world
    d1, d2 = T0 + DAY, T0 + 5 * DAY
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -150, d2, d2 + YEAR)],
                         d2).rejected
    assert not lg.commit([credit_tx(ag["justice"], SUBJECT, "courts", -100, d1, d1 + YEAR,
                                    ts=d2 + DAY)], d2 + DAY).rejected
    h, t = head(lg)
    assert summary(lg.store, POLICY, SUBJECT, height=h, time=t).last_serious == d2


# -- found by mutation round 17 (the state machine's bounds, second pass) ------------------------

def test_a_credit_grant_covers_from_its_start_to_one_second_before_its_end(world: Any) -> None:
    """A credit grant is ``[from, until)``, as an issuing grant is: an agency records events
    from the grant's first second and not at its ``until`` (a grant ended by withdrawal ends
    exactly there)."""
    lg, ag = world
    start, until = T0 + DAY, T0 + 2 * DAY
    lg.govern("grant_credit", {"agency": "market", "category": "courts", "from": start,
                               "until": until}, [ag["civil"], ag["edu"]], T0 + 2)
    for n, (t, code) in enumerate([(start - 1, ["not_granted"]), (start, []),
                                   (until - 1, []), (until, ["not_granted"])]):
        tx = credit_tx(ag["market"], SUBJECT, "courts", -10, t, t + YEAR, ts=t + n)
        assert [e.code for _, e in lg.commit([tx], t).rejected] == code, t
    assert len(credit_events(lg.store, SUBJECT)) == 2


def test_a_withdrawal_naming_no_event_of_the_subject_is_refused(world: Any) -> None:
    """A withdrawal must name one of the subject's own events: an id of nothing, or of an
    event about someone else, withdraws nothing (not the subject's last event, which the
    same agency recorded)."""
    lg, ag = world
    market = ag["market"]
    ev = credit_tx(market, SUBJECT, "permits", -10, T0 + DAY, T0 + YEAR)
    other = pseudonym("91440606-MA4Z", SECRET)
    elsewhere = credit_tx(market, other, "permits", -20, T0 + DAY, T0 + YEAR, ts=T0 + DAY + 1)
    assert not lg.commit([ev, elsewhere], T0 + DAY).rejected
    for n, target in enumerate([b"\x00" * 32, elsewhere.txid]):
        w = credit_tx(market, SUBJECT, "permits", 0, T0 + DAY, T0 + YEAR,
                      reason="appeal_upheld", withdraws=target, ts=T0 + 2 * DAY + 10 + n)
        assert [e.code for _, e in lg.commit([w], T0 + 2 * DAY).rejected] == ["unknown_event"]
    assert [e.withdrawn_by for e in credit_events(lg.store, SUBJECT)] == [b""]
    # nor on a subject with no events at all
    nobody = pseudonym("91440606-MA5A", SECRET)
    w = credit_tx(market, nobody, "permits", 0, T0 + DAY, T0 + YEAR, withdraws=ev.txid,
                  ts=T0 + 2 * DAY + 20)
    assert [e.code for _, e in lg.commit([w], T0 + 2 * DAY).rejected] == ["unknown_event"]
    assert credit_events(lg.store, nobody) == []


def test_a_credit_grant_withdrawn_with_a_past_date_keeps_the_past(world: Any) -> None:
    """withdraw_credit_grant "at" a time before its block ends the grant at the block time,
    as withdraw_grant does: the event market recorded the day before stays recorded under a
    grant, and a withdrawal cannot rewrite who was allowed when."""
    lg, ag = world
    assert not lg.commit([credit_tx(ag["market"], SUBJECT, "permits", -10, T0 + DAY,
                                    T0 + YEAR)], T0 + DAY).rejected
    lg.govern("withdraw_credit_grant", {"agency": "market", "category": "permits", "at": T0},
              [ag["civil"], ag["edu"]], T0 + 2 * DAY)
    reg = lg.registry
    assert reg.data["credit"]["grants"]["market"]["permits"] == [[T0, T0 + 2 * DAY]]
    assert reg.credit_grant_covers("market", "permits", T0 + DAY)
    assert not reg.credit_grant_covers("market", "permits", T0 + 2 * DAY)
    late = credit_tx(ag["market"], SUBJECT, "permits", -10, T0 + 2 * DAY, T0 + YEAR,
                     ts=T0 + 2 * DAY + 1)
    assert [e.code for _, e in lg.commit([late], T0 + 2 * DAY).rejected] == ["not_granted"]


def test_a_new_credit_policy_keeps_the_agencies_credit_grants(world: Any) -> None:
    """Replacing the policy (new weights, say) changes how events count, not who may record
    them: the agencies' credit grants stay, and market records a permits event after it."""
    lg, ag = world
    grants = lg.registry.data["credit"]["grants"]
    heavier = {**POLICY, "categories": [{**c, "weight": c["weight"] + 10}
                                        for c in POLICY["categories"]]}
    lg.govern("set_credit_policy", {"policy": heavier}, [ag["civil"], ag["edu"]], T0 + DAY)
    assert lg.registry.credit_policy() == heavier
    assert lg.registry.data["credit"]["grants"] == grants
    ev = credit_tx(ag["market"], SUBJECT, "permits", -10, T0 + 2 * DAY, T0 + YEAR)
    assert not lg.commit([ev], T0 + 2 * DAY).rejected


def test_a_second_credit_grant_adds_a_window_and_keeps_the_first(world: Any) -> None:
    """Granting a category again adds a window: the first one still covers its own time,
    as a second issuing grant does (a replaced window would rewrite who was allowed when)."""
    lg, ag = world
    for start in (T0 + DAY, T0 + 5 * DAY):
        lg.govern("grant_credit", {"agency": "market", "category": "courts", "from": start,
                                   "until": start + DAY}, [ag["civil"], ag["edu"]], T0 + 2)
    assert lg.registry.data["credit"]["grants"]["market"]["courts"] == [
        [T0 + DAY, T0 + 2 * DAY], [T0 + 5 * DAY, T0 + 6 * DAY]]
    for n, t in enumerate((T0 + DAY, T0 + 5 * DAY)):
        tx = credit_tx(ag["market"], SUBJECT, "courts", -10, t, t + YEAR, ts=t + n)
        assert not lg.commit([tx], t).rejected
    late = credit_tx(ag["market"], SUBJECT, "courts", -10, T0 + 3 * DAY, T0 + YEAR,
                     ts=T0 + 6 * DAY + 9)
    assert [e.code for _, e in lg.commit([late], T0 + 6 * DAY).rejected] == ["not_granted"]


def test_credit_events_need_the_recording_agency_s_current_key_and_membership(
        world: Any) -> None:
    """A credit grant outlives a key rotation and a removal (governance ends neither grant):
    the key rotated out, or the agency removed, records no event from that second on, though
    the grant still covers the time."""
    from ledger.keys import PrivateKey

    lg, ag = world
    market, signers = ag["market"], [ag["civil"], ag["edu"]]
    at = T0 + DAY
    new = PrivateKey(b"\x09" * 32)
    lg.govern("rotate_key", {"agency": "market", "role": "issuer", "new_key": new.public.raw,
                             "at": at}, signers, T0 + 2)
    stolen = credit_tx(market, SUBJECT, "permits", -10, at, at + YEAR)
    assert [e.code for _, e in lg.commit([stolen], at).rejected] == ["key_not_valid"]
    removed_at = T0 + 2 * DAY
    lg.govern("remove_agency", {"agency": "market"}, signers, removed_at)
    assert lg.registry.credit_grant_covers("market", "permits", removed_at)
    body = {"subject": SUBJECT, "category": "permits", "points": -10, "reason": "late_filing",
            "date": removed_at, "expiry": removed_at + YEAR, "ts": removed_at}
    after = make_tx("demo", "credit", body, [new])
    assert [e.code for _, e in lg.commit([after], removed_at).rejected] == ["agency_not_current"]
    assert credit_events(lg.store, SUBJECT) == []


def test_a_credit_grant_goes_to_a_current_member_only(world: Any) -> None:
    """grant_credit names a member: an unknown id, or an agency removed before, gets none
    (unknown_agency), as an issuing grant (mutation round 17)."""
    lg, ag = world
    signers = [ag["civil"], ag["edu"]]
    lg.govern("remove_agency", {"agency": "justice"}, signers, T0 + DAY)
    grants = lg.registry.data["credit"]["grants"]
    for who in ("nobody", "justice"):
        tx = lg.gov_tx("grant_credit", {"agency": who, "category": "permits", "from": T0,
                                        "until": T0 + YEAR}, signers)
        assert [e.code for _, e in lg.commit([tx], T0 + 2 * DAY).rejected] == \
            ["unknown_agency"], who
    assert lg.registry.data["credit"]["grants"] == grants


def test_a_refused_event_is_not_recorded_when_replayed_after_a_grant(world: Any) -> None:
    """ADR 69: an event is signed within MAX_BACKDATE of the block that records it, as a status
    change is. A penalty refused for want of a grant could otherwise be sent again by anyone
    (``POST /v1/tx`` takes it from whoever saw it) once a grant came, months later; so could
    one signed and never sent, or one dated far ahead."""
    from ledger.state import MAX_BACKDATE

    lg, ag = world
    t = T0 + DAY
    tx = credit_tx(ag["market"], SUBJECT, "courts", -100, t, t + 10 * YEAR, ts=t)
    assert [e.code for _, e in lg.commit([tx], t).rejected] == ["not_granted"]
    later = T0 + 200 * DAY
    lg.govern("grant_credit", {"agency": "market", "category": "courts", "from": T0,
                               "until": T0 + 10 * YEAR}, [ag["civil"], ag["edu"]], later)
    r = lg.commit([tx], later)
    assert [e.code for _, e in r.rejected] == ["stale"]
    assert f"signed at {t}, more than {MAX_BACKDATE} s before the block's time {later}: sign " \
        "the event again" in str(r.rejected[0][1])
    assert credit_events(lg.store, SUBJECT) == []
    # at the bounds: MAX_BACKDATE either way is taken, one second more is not
    for n, (ts, code) in enumerate([(later - MAX_BACKDATE - 1, ["stale"]),
                                    (later + MAX_BACKDATE + 1, ["future_dated"]),
                                    (later - MAX_BACKDATE, []), (later + MAX_BACKDATE, [])]):
        ev = credit_tx(ag["market"], SUBJECT, "courts", -10 - n, t, t + YEAR, ts=ts)
        assert [e.code for _, e in lg.commit([ev], later).rejected] == code, ts
    # a withdrawal too: one signed long ago does not withdraw today
    first = credit_events(lg.store, SUBJECT)[0]
    w = credit_tx(ag["market"], SUBJECT, "courts", 0, t, t + YEAR, reason="appeal_upheld",
                  withdraws=first.txid, ts=t)
    assert [e.code for _, e in lg.commit([w], later).rejected] == ["stale"]


def test_a_subject_s_credit_events_stop_where_every_node_can_still_read_them(world: Any) -> None:
    """Each credit transaction reads and rewrites all of its subject's events, and
    ``credit_events`` reads at most 16 MiB: a record past that could be written but never read
    again, so the next transaction on the subject would fail on every node (a DecodeError, not
    a rejection) and its score could not be read. A new event past ``MAX_CREDIT_EVENTS`` is
    refused; the events already there can still be withdrawn, each of them at its largest."""
    lg, ag = world
    market = ag["market"]
    first = credit_tx(market, SUBJECT, "permits", -10, T0 + DAY, T0 + YEAR)
    assert not lg.commit([first], T0 + DAY).rejected
    # the subject's record as MAX_CREDIT_EVENTS events each as large as a body can make it
    big = [first.txid, "m" * 64, "c" * 64, -1_000_000, "r" * 64, (1 << 40) - 1, 1 << 40, b""]
    events = [credit_events(lg.store, SUBJECT)[0].to_list()]
    events += [[n.to_bytes(32, "big"), *big[1:]] for n in range(1, MAX_CREDIT_EVENTS)]
    full = {credit_key(SUBJECT): codec.encode(events)}

    class Full:
        def get(self, key: bytes) -> bytes | None:
            return full[key] if key in full else lg.store.get(key)

    def build(tx: Tx) -> Any:
        head, reg = lg.store.head, lg.store.registry
        assert head is not None and reg is not None
        return build_block(head, reg, Full(), lg.store.frontier, [tx], T0 + 2 * DAY)

    more = credit_tx(market, SUBJECT, "permits", -5, T0 + 2 * DAY, T0 + YEAR)
    r = build(more)
    assert [e.code for _, e in r.rejected] == ["too_many_events"]
    assert r.header is None and r.writes == {}
    # every event withdrawn (the largest record a subject can have) is still readable
    withdrawn = [[*e[:7], bytes(32)] for e in events]
    assert len(codec.encode(withdrawn)) <= 16 << 20
    full[credit_key(SUBJECT)] = codec.encode(events[:1] + withdrawn[1:])
    last = credit_tx(market, SUBJECT, "permits", 0, T0 + DAY, T0 + YEAR,
                     withdraws=first.txid, ts=T0 + 2 * DAY + 1)
    r = build(last)
    assert [e.code for _, e in r.rejected] == []
    assert len(credit_events(_Writes(r.writes), SUBJECT)) == MAX_CREDIT_EVENTS


class _Writes:
    def __init__(self, writes: dict[bytes, bytes]) -> None:
        self.writes = writes

    def get(self, key: bytes) -> bytes | None:
        return self.writes.get(key)
