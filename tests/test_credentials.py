"""Issuing credentials of registered types, anchoring them, and their status lists."""

from __future__ import annotations

import datetime
import hashlib
import re
from pathlib import Path

import pytest
from conftest import DAY, T0, LedgerHarness

from ledger import sdjwt
from ledger.credentials import (
    MAX_INT_CLAIM,
    STATUS_DRAWS,
    STATUS_LIST_SIZE,
    STATUS_LISTS,
    ClaimError,
    check_claims,
    derive_claims,
    draw_status_index,
    issue_batch,
    issue_credential,
    status_list,
)
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.network import Agency, status_tx
from ledger.statuslist import check_status
from ledger.timetext import TimeZoneError, time_zone

RESIDENCE = {"id": "residence", "title": "Residence permit",
             "claims": {"holder_name": "string", "district": "string", "birth_date": "date",
                        "household_size": "int", "registered": "bool"},
             "derived": {"age_over_18": {"claim": "birth_date", "age_over": 18},
                         "age_over_65": {"claim": "birth_date", "age_over": 65}}}
CLAIMS = {"holder_name": "Chen Xiaoming-7f3a", "district": "Changsheng-2c9d",
          "birth_date": "1950-06-30", "household_size": 3, "registered": True}
HOLDER = PrivateKey(hashlib.sha256(b"holder").digest())


@pytest.fixture
def granted(ledger: LedgerHarness, agencies: dict[str, Agency]) -> LedgerHarness:
    reg, edu = agencies["reg"], agencies["edu"]
    ledger.govern("register_type", {"type": RESIDENCE}, [reg, edu], T0 + 1)
    ledger.govern("grant", {"agency": "reg", "type": "residence", "from": T0,
                            "until": T0 + 365 * DAY}, [reg, edu], T0 + 2)
    return ledger


def _issue(ledger: LedgerHarness, agencies: dict[str, Agency], **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "registry": ledger.registry, "agency": "reg", "issuer_key": agencies["reg"].issuer_key,
        "kind": "residence", "claims": CLAIMS,
        "holder_jwk": sdjwt.jwk_from_ed25519(HOLDER.public.raw), "now": T0 + 10,
        "valid_for": 30 * DAY}
    args.update(kw)
    return issue_credential(**args)  # type: ignore[arg-type]


def test_issued_credential_is_anchored_by_its_hash(granted: LedgerHarness,
                                                   agencies: dict[str, Agency]) -> None:
    cred = _issue(granted, agencies)
    assert cred.credential_id == hashlib.sha256(cred.sd_jwt.issuer_jwt.encode()).digest()
    r = granted.commit([cred.anchor], T0 + 10)
    assert [tx.txid for tx, _ in r.accepted] == [cred.anchor.txid]
    stored = granted.store.credential(cred.credential_id)
    assert stored is not None
    assert (stored.issuer, stored.type, stored.status) == ("reg", "residence", "valid")
    assert stored.status_index == cred.status_index
    assert 0 <= cred.status_index < STATUS_LIST_SIZE
    claims = sdjwt.verify_issuer_signed(
        cred.sd_jwt.serialize(),
        issuer_public_jwk=sdjwt.jwk_from_ed25519(agencies["reg"].issuer_key.public.raw),
        now=T0 + 20)
    assert claims["vct"] == "residence"
    assert claims["holder_name"] == CLAIMS["holder_name"]
    assert claims["age_over_18"] is True
    assert claims["age_over_65"] is True
    assert claims["status"]["status_list"]["idx"] == cred.status_index


def test_derived_age_predicates_are_computed_at_issuance() -> None:
    # Born 2008-02-29: 18 on 2026-03-01 (no 29 February in 2026).
    claims = dict(CLAIMS, birth_date="2008-02-29")
    before = int(datetime.datetime(2026, 2, 28, 12, tzinfo=datetime.UTC).timestamp())
    after = before + DAY
    assert derive_claims(RESIDENCE, claims, before) == {"age_over_18": False,
                                                        "age_over_65": False}
    assert derive_claims(RESIDENCE, claims, after)["age_over_18"] is True


def test_birthdays_count_by_the_issuing_agency_s_calendar() -> None:
    """ADR 56: at 00:30 on 30 November 2026 in Changsheng (UTC+8) it is still 29 November in
    UTC. Someone born on 30 November 2008 is 18 there; counted by the UTC day, the credential
    said "not over 18" and kept saying it for its whole validity."""
    at = int(datetime.datetime(2026, 11, 29, 16, 30, tzinfo=datetime.UTC).timestamp())
    claims = dict(CLAIMS, birth_date="2008-11-30")
    shanghai = time_zone("Asia/Shanghai")
    assert derive_claims(RESIDENCE, claims, at, shanghai)["age_over_18"] is True
    assert derive_claims(RESIDENCE, claims, at)["age_over_18"] is False  # UTC: the default
    # and the other way round: in a zone behind UTC the birthday has not come yet
    honolulu = time_zone("Pacific/Honolulu")  # UTC-10: still 29 November at 09:59 UTC
    early = int(datetime.datetime(2026, 11, 30, 9, 59, tzinfo=datetime.UTC).timestamp())
    assert derive_claims(RESIDENCE, claims, early, honolulu)["age_over_18"] is False
    assert derive_claims(RESIDENCE, claims, early)["age_over_18"] is True
    # a child born today in Changsheng is no typo there, though the UTC day is the day before
    born_today = dict(CLAIMS, birth_date="2026-11-30")
    assert derive_claims(RESIDENCE, born_today, at, shanghai)["age_over_18"] is False
    with pytest.raises(ClaimError, match="after the day of issue"):
        derive_claims(RESIDENCE, born_today, at)


def test_issuance_derives_ages_in_the_zone_it_is_given(granted: LedgerHarness,
                                                       agencies: dict[str, Agency]) -> None:
    # T0 + 10 is 22:13 on 14 November 2023 in UTC, 06:13 on the 15th in Asia/Shanghai
    claims = dict(CLAIMS, birth_date="2005-11-15")
    local = _issue(granted, agencies, claims=claims, zone=time_zone("Asia/Shanghai"))
    utc = _issue(granted, agencies, claims=claims)
    said = [sdjwt.verify_issuer_signed(
        c.sd_jwt.serialize(), now=T0 + 20,
        issuer_public_jwk=sdjwt.jwk_from_ed25519(agencies["reg"].issuer_key.public.raw))
        for c in (local, utc)]
    assert [c["age_over_18"] for c in said] == [True, False]


def test_a_batch_of_copies_derives_ages_in_the_zone_it_is_given(
        granted: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Every copy of a batch counts the birthday by the calendar it is given, as one credential
    does (a copy derived by the UTC day would say another age than its siblings' issuer
    meant)."""
    # T0 + 10 is 22:13 on 14 November 2023 in UTC, 06:13 on the 15th in Asia/Shanghai
    claims = dict(CLAIMS, birth_date="2005-11-15")
    holders = [sdjwt.jwk_from_ed25519(PrivateKey(bytes([i]) * 32).public.raw) for i in (1, 2)]
    issuer = sdjwt.jwk_from_ed25519(agencies["reg"].issuer_key.public.raw)
    for zone, over_18 in ((time_zone("Asia/Shanghai"), True), (datetime.UTC, False)):
        copies = issue_batch(registry=granted.registry, agency="reg",
                             issuer_key=agencies["reg"].issuer_key, kind="residence",
                             claims=claims, holder_jwks=holders, now=T0 + 10, valid_for=30 * DAY,
                             zone=zone)
        said = [sdjwt.verify_issuer_signed(c.sd_jwt.serialize(), now=T0 + 20,
                                           issuer_public_jwk=issuer)["age_over_18"]
                for c in copies]
        assert said == [over_18, over_18], zone


@pytest.mark.parametrize("name", ["Asia", "asia/shanghai", "../../etc/passwd", "",
                                  "/etc/localtime", "Mars/Olympus_Mons", "UTC\x00",
                                  "localtime", "Factory", "posixrules", "right/UTC",
                                  "posix/Asia/Shanghai"])
def test_a_time_zone_that_is_not_an_iana_name_is_refused(name: str) -> None:
    with pytest.raises(TimeZoneError, match="is not an IANA time zone name"):
        time_zone(name)


def test_a_birth_date_after_the_day_of_issue_is_refused() -> None:
    """An age cannot be derived from a date still to come: such a date is a typo, and issuing
    it would anchor a credential that says "not over 18" of someone not born yet."""
    day = int(datetime.datetime(2026, 11, 28, 12, tzinfo=datetime.UTC).timestamp())
    assert derive_claims(RESIDENCE, dict(CLAIMS, birth_date="2026-11-28"), day) == {
        "age_over_18": False, "age_over_65": False}  # born today: fine
    with pytest.raises(ClaimError, match=r"'birth_date' is after the day of issue "
                                         r"\(2026-11-28\)") as info:
        derive_claims(RESIDENCE, dict(CLAIMS, birth_date="2026-11-29"), day)
    assert "2026-11-29" not in str(info.value)  # errors name claims, never their values


@pytest.mark.parametrize(("claims", "message"), [
    ({k: v for k, v in CLAIMS.items() if k != "district"}, "missing ['district']"),
    (dict(CLAIMS, nickname="x"), "not registered ['nickname']"),
    (dict(CLAIMS, household_size="3"), "'household_size' must be of kind int"),
    (dict(CLAIMS, registered=1), "'registered' must be of kind bool"),
    (dict(CLAIMS, birth_date="1950-13-01"), "'birth_date' must be a date"),
    (dict(CLAIMS, birth_date="30/06/1950"), "'birth_date' must be a date"),
    (dict(CLAIMS, holder_name=""), "'holder_name' must be of kind string"),
    (dict(CLAIMS, holder_name="x" * 1001), "'holder_name' must be of kind string of 1 to 1,000"),
    # what Python's fromisoformat takes besides YYYY-MM-DD
    (dict(CLAIMS, birth_date="19500302xx"), "'birth_date' must be a date"),
    (dict(CLAIMS, birth_date="2020-W01-1"), "'birth_date' must be a date"),
    (dict(CLAIMS, birth_date="20200101T0"), "'birth_date' must be a date"),
    (dict(CLAIMS, birth_date="\uff11\uff19\uff15\uff10-01-01"), "'birth_date' must be a date"),
    # beyond what JSON readers hold exactly (and what the rules' CEL ints hold)
    (dict(CLAIMS, household_size=2**53), "'household_size' must be of kind int (at most"),
    (dict(CLAIMS, household_size=-(10**38)), "'household_size' must be of kind int"),
])
def test_claims_must_fit_the_registered_type(claims: dict[str, object], message: str) -> None:
    with pytest.raises(ClaimError) as info:
        check_claims(RESIDENCE, claims)
    assert message in str(info.value)
    for value in claims.values():  # errors never echo claim values
        if isinstance(value, str) and len(value) > 3:
            assert value not in str(info.value)


def test_an_int_claim_holds_what_a_json_reader_holds_exactly_either_side_of_zero() -> None:
    """2**53 - 1 either side of 0 is taken, one more is refused (a mutant taking the bound
    exclusively on the negative side went unnoticed)."""
    for edge in (MAX_INT_CLAIM, -MAX_INT_CLAIM):
        check_claims(RESIDENCE, dict(CLAIMS, household_size=edge))
    for past in (MAX_INT_CLAIM + 1, -MAX_INT_CLAIM - 1):
        with pytest.raises(ClaimError, match="'household_size' must be of kind int"):
            check_claims(RESIDENCE, dict(CLAIMS, household_size=past))


def test_unregistered_type_and_missing_grant_fail_before_signing(
        granted: LedgerHarness, agencies: dict[str, Agency]) -> None:
    with pytest.raises(ClaimError, match="not registered"):
        _issue(granted, agencies, kind="degree")
    with pytest.raises(LedgerError, match="no grant"):
        _issue(granted, agencies, agency="edu", issuer_key=agencies["edu"].issuer_key)
    with pytest.raises(LedgerError, match="not a valid issuer key"):
        _issue(granted, agencies, issuer_key=agencies["edu"].issuer_key)


def test_reused_status_index_is_refused_by_the_ledger(granted: LedgerHarness,
                                                      agencies: dict[str, Agency]) -> None:
    first = _issue(granted, agencies, status_index=77)
    second = _issue(granted, agencies, status_index=77)
    assert first.credential_id != second.credential_id  # fresh salts
    r = granted.commit([first.anchor, second.anchor], T0 + 10)
    assert [e.code for _, e in r.rejected] == ["status_index_used"]


def test_status_list_follows_the_ledger(granted: LedgerHarness,
                                        agencies: dict[str, Agency]) -> None:
    reg = agencies["reg"]
    creds = [_issue(granted, agencies, status_index=i) for i in (5, 9, 1000)]
    granted.commit([c.anchor for c in creds], T0 + 10)
    granted.commit([status_tx("demo", reg, creds[0].credential_id, "revoked", "r", T0 + 11),
                    status_tx("demo", reg, creds[1].credential_id, "suspended", "s", T0 + 11)],
                   T0 + 11)
    lst = status_list(granted.store.status_entries("reg", "residence"))
    uri = "urn:credledger:demo:status-list:reg:residence"

    def get(u: str):  # type: ignore[no-untyped-def]
        return lst if u == uri else None

    results = [check_status({"status_list": {"idx": c.status_index, "uri": uri}}, get).status
               for c in creds]
    assert results == ["revoked", "suspended", "valid"]
    other = check_status({"status_list": {"idx": 5, "uri": uri + "x"}}, get)
    assert other.status == "undetermined"


def test_the_store_holds_no_claim_value(granted: LedgerHarness, agencies: dict[str, Agency],
                                        tmp_path: Path) -> None:
    cred = _issue(granted, agencies)
    granted.commit([cred.anchor], T0 + 10)
    path = granted.path
    granted.close()
    blob = b"".join(p.read_bytes() for p in Path(path).iterdir() if p.is_file())
    for value in ("Chen Xiaoming-7f3a", "Changsheng-2c9d", "1950-06-30"):
        assert value.encode() not in blob
    assert HOLDER.public.raw not in blob
    assert cred.credential_id in blob  # the anchor itself is there: the scan can find things


@pytest.mark.parametrize(("value", "said"), [
    ("Cha\u0301ngshe\u0304ng", "not in Unicode's composed form (NFC)"),
    ("长\u200d盛", "\\u200d"), ("王\u200b芳", "\\u200b"), ("a\x00b", "\\x00"),
    ("Chang\u202esheng", "\\u202e"), ("长盛\u3164", "\\u3164"), ("district\n", "\\x0a"),
    ("\u200b", "\\u200b"), ("\u3000 ", "nothing visible"),
])
def test_a_string_claim_an_official_or_a_rule_would_misread_is_refused(value: str,
                                                                       said: str) -> None:
    """An approval rule compares code points: "Chángshēng" typed with separate accents was
    not the rule's "Chángshēng", and a citizen was refused silently; a zero-width or bidi
    character makes a text look like another. Refused at issuance, never rewritten."""
    from ledger.credentials import ClaimError, check_claims

    spec = {"claims": {"district": "string"}}
    with pytest.raises(ClaimError, match=re.escape(said)):
        check_claims(spec, {"district": value})
    for fine in ("Chángshēng", "长盛区\u3000幸福路 3 号", "Zoë 😀", "Li Hua", "阿依古丽·买买提",
                 # Mongolian: a narrow no-break space before a case suffix, a vowel separator
                 "\u182e\u1823\u1829\u182d\u1823\u182f\u202f\u1824\u1828",
                 "\u182c\u1820\u1837\u180e\u1820",
                 "\u0645\u06d0\u200c\u06be\u0645\u0627\u0646",  # Uyghur with a non-joiner
                 "\u0915\u094d\u200d\u0937",  # Devanagari with a joiner (a half form)
                 "\U00031350\u534e"):  # CJK Extension H: a name character newer than Python 3.11
        check_claims(spec, {"district": fine})
    # the same characters outside those scripts, or with their script on one side only
    for odd in ("a\u202fb", "\u200c\u4e2d", "\u182e\u202fb", "b\u202f\u182e",
                "a\u200c\u0645", "\u0645\u200d"):
        with pytest.raises(ClaimError, match="invisible"):
            check_claims(spec, {"district": odd})
        check_claims(spec, {"district": fine})


def test_status_indexes_are_drawn_in_the_first_list_not_about_full() -> None:
    """draw_status_index (ADR 55): random entries of the first list from ``first_list`` on;
    a list where STATUS_DRAWS draws all land on used entries is taken as full, and the next
    is tried; LedgerError once the last is full."""
    import random

    rng = random.Random(55)
    draw = rng.randrange
    # an empty list: its entries, spread over the whole list
    got = [draw_status_index(lambda _i: False, rng=draw) for _ in range(200)]
    assert all(0 <= i < STATUS_LIST_SIZE for i in got)
    assert max(got) - min(got) > STATUS_LIST_SIZE // 2
    # list 0 full: list 1; lists 0 to 2 full, from list 1: list 3
    assert draw_status_index(lambda i: i < STATUS_LIST_SIZE, rng=draw) // STATUS_LIST_SIZE == 1
    assert draw_status_index(lambda i: i < 3 * STATUS_LIST_SIZE, 1,
                             rng=draw) // STATUS_LIST_SIZE == 3
    # a list half used stays in use: 1,000 draws never leave it
    half = lambda i: i % 2 == 0  # noqa: E731
    assert {draw_status_index(half, rng=draw) // STATUS_LIST_SIZE for _ in range(1000)} == {0}
    # a used entry is never given; the draws before the last in a list are what count
    seen: list[int] = []

    def taken_but_last(i: int) -> bool:
        seen.append(i)
        return len(seen) < STATUS_DRAWS
    index = draw_status_index(taken_but_last, rng=draw)
    assert index == seen[-1] and index < STATUS_LIST_SIZE and len(seen) == STATUS_DRAWS
    with pytest.raises(LedgerError, match="every status list is full"):
        draw_status_index(lambda _i: True, rng=draw)
    with pytest.raises(LedgerError, match="every status list is full"):
        draw_status_index(lambda _i: False, STATUS_LISTS, rng=draw)


def test_a_list_is_left_about_80_percent_full_not_at_the_first_unlucky_draws() -> None:
    """16 used entries in a row happen in a list far from full: once in 35,000 issuances at
    half full, so a node remembering the list it drew from left its lists about half empty
    (review, ADR 55). A list is left once a sample finds STATUS_FULL of it used: issuing on
    from 60% as a node does (from the list it last drew from) leaves list 0 about 78% full
    (76.8% to 79.2% over six seeds)."""
    import random

    rng = random.Random(80)
    used = bytearray(2 * STATUS_LIST_SIZE)
    for i in range(STATUS_LIST_SIZE):
        used[i] = rng.random() < 0.6
    filled = sum(used)
    current = 0
    while True:
        index = draw_status_index(used.__getitem__, current, rng=rng.randrange)
        assert not used[index]
        used[index] = 1
        current = index // STATUS_LIST_SIZE
        if current:
            break
        filled += 1
    assert 0.75 <= filled / STATUS_LIST_SIZE <= 0.83, filled


def test_the_last_list_is_used_to_its_end_and_issuance_resumes_in_the_run_of_lists() -> None:
    """The last list is not left at 85% with "every status list is full" while a fifth of it
    is free; after a restart issuance goes on in the last list of the run 0, 1, 2 … holding
    credentials, not past a gap one stray anchor made (second review, ADR 55)."""
    import random

    from ledger.credentials import status_lists_in_order

    rng = random.Random(63)
    last = (STATUS_LISTS - 1) * STATUS_LIST_SIZE

    def taken(i: int) -> bool:  # every list before full; the last 90% used
        return i < last or (i * 2654435761) % 1000 < 900

    for _ in range(200):
        index = draw_status_index(taken, STATUS_LISTS - 1, rng=rng.randrange)
        assert index >= last and not taken(index)
    assert [status_lists_in_order(n) for n in ([], [0], [0, 1, 2], [0, 1, 63], [5], [0, 2])] \
        == [0, 0, 2, 1, 0, 0]


def test_a_rotated_out_or_node_key_fails_before_signing(granted: LedgerHarness,
                                                        agencies: dict[str, Agency]) -> None:
    """The agency's own key, but not a valid issuer key at ``now``: its node key, or its
    issuer key from the second a rotation ended it. Refused before anything is signed, as
    the ledger would refuse the anchor (mutation round 17: only another agency's key was
    tried)."""
    reg, edu = agencies["reg"], agencies["edu"]
    with pytest.raises(LedgerError, match="not a valid issuer key"):
        _issue(granted, agencies, issuer_key=reg.node_key)
    new = PrivateKey(hashlib.sha256(b"reg issuer, rotated").digest())
    at = T0 + 20
    granted.govern("rotate_key", {"agency": "reg", "role": "issuer", "new_key": new.public.raw,
                                  "at": at}, [reg, edu], T0 + 3)
    assert _issue(granted, agencies, now=at - 1).anchor.sigs[0].kid == reg.issuer_key.kid
    with pytest.raises(LedgerError, match="not a valid issuer key"):
        _issue(granted, agencies, now=at)
    assert _issue(granted, agencies, now=at, issuer_key=new).anchor.sigs[0].kid == new.kid


def test_a_batch_draws_again_an_index_it_drew_for_an_earlier_copy(
        granted: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Two copies of a batch drawing the same status index would be refused by the ledger
    (status_index_used) only for the second: the batch draws that copy's index again. A
    random source that repeats one draw shows it (mutation round 17)."""
    import os

    draws = iter([7, 7, 7, 9])

    def rng(n: int) -> bytes:
        return next(draws).to_bytes(4, "big") if n == 4 else os.urandom(n)

    holders = [sdjwt.jwk_from_ed25519(PrivateKey(bytes([i]) * 32).public.raw) for i in (1, 2)]
    copies = issue_batch(registry=granted.registry, agency="reg",
                         issuer_key=agencies["reg"].issuer_key, kind="residence",
                         claims=CLAIMS, holder_jwks=holders, now=T0 + 10, valid_for=30 * DAY,
                         rng=rng)
    assert [c.status_index for c in copies] == [7, 9]
    assert not granted.commit([c.anchor for c in copies], T0 + 10).rejected


def test_a_batch_without_holder_keys_is_refused(granted: LedgerHarness,
                                                agencies: dict[str, Agency]) -> None:
    """An empty list of holder keys is a caller's mistake, not a batch of nothing: refused,
    so no caller reports a credential issued where none was (mutation round 17)."""
    with pytest.raises(ValueError, match="at least one holder key"):
        issue_batch(registry=granted.registry, agency="reg",
                    issuer_key=agencies["reg"].issuer_key, kind="residence", claims=CLAIMS,
                    holder_jwks=[], now=T0 + 10, valid_for=30 * DAY)


def test_a_removed_agency_is_refused_before_anything_is_signed(
        granted: LedgerHarness, agencies: dict[str, Agency]) -> None:
    """Removal ends no grant and leaves the issuer key as it was: the agency's issuance was
    signed, then its anchor refused (agency_not_current). It now fails first (ADR 69)."""
    reg, edu = agencies["reg"], agencies["edu"]
    granted.govern("remove_agency", {"agency": "reg"}, [reg, edu], T0 + 5)
    assert granted.registry.grant_covers("reg", "residence", T0 + 10)  # the grant runs on
    with pytest.raises(LedgerError, match="'reg' is not a member of the network at"):
        _issue(granted, agencies, now=T0 + 10)
    signed = _issue(granted, agencies, now=T0 + 4)  # before its removal: issued as ever
    assert [e.code for _, e in granted.commit([signed.anchor], T0 + 10).rejected] == [
        "agency_not_current"]
