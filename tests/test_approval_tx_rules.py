"""The ledger's rules for approval decisions and rule registrations, each refusal tried (a
mutation round found them untested, ADR 54)."""
from __future__ import annotations

import hashlib
from typing import Any

import pytest
from conftest import DAY, T0
from test_contracts_world import catalogue_agencies, install_catalogue

from contracts.catalogue import RULES
from ledger.state import rule_hash
from ledger.tx import make_tx


def _approval(agency: Any, service: str, *, decision: str = "approved", path: str = "standard",
              reasons: list[str], ts: int = T0 + DAY) -> Any:
    return make_tx("demo", "approval", {
        "service": service, "rule_hash": rule_hash(RULES[service]), "decision": decision,
        "path": path, "reasons": reasons,
        "evidence": hashlib.sha256(ts.to_bytes(8, "big")).digest(), "ts": ts},
        [agency.issuer_key])


@pytest.fixture
def world(make_ledger: Any) -> tuple[Any, dict[str, Any]]:
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag)
    return lg, ag


@pytest.mark.parametrize("reasons", [["made_up_reason"], ["eligible", "made_up_reason"], []])
def test_approval_reason_codes_must_be_the_rules(world: Any, reasons: list[str]) -> None:
    lg, ag = world
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=reasons)], T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["unknown_reason"]
    # control: the rule's own codes (including the generic rule_error) are accepted
    ok = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=["eligible"],
                              ts=T0 + DAY + 2),
                    _approval(ag["civil"], "elderly-allowance", decision="needs_review",
                              reasons=["rule_error"], ts=T0 + DAY + 3)], T0 + DAY)
    assert not ok.rejected


def test_fast_track_only_for_approvals_under_a_fast_track_rule(world: Any) -> None:
    lg, ag = world
    # elderly-allowance has no fast track ("")
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", path="fast_track",
                             reasons=["fast_track"])], T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["bad_outcome"]
    # business-licence has one, but a rejection never takes it
    r = lg.commit([_approval(ag["market"], "business-licence", decision="rejected",
                             path="fast_track", reasons=["low_credit"], ts=T0 + DAY + 2)],
                  T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["bad_outcome"]
    # control: an approval on the fast track of a rule that has one is accepted
    r = lg.commit([_approval(ag["market"], "business-licence", path="fast_track",
                             reasons=["good_credit"], ts=T0 + DAY + 3)], T0 + DAY)
    assert not r.rejected


def test_registering_the_rule_in_force_again_is_refused(world: Any) -> None:
    lg, ag = world
    before = lg.registry.rule_versions("elderly-allowance")
    tx = lg.gov_tx("register_rule", {"rule": RULES["elderly-allowance"]}, [ag["civil"], ag["edu"]])
    r = lg.commit([tx], T0 + 2 * DAY)
    assert [e.code for _, e in r.rejected] == ["rule_unchanged"]
    assert lg.registry.rule_versions("elderly-allowance") == before


@pytest.mark.parametrize("subject", [["person-id", "birth_date"], ["business-registration",
                                                                     "registration_no"]])
def test_a_rule_subject_must_be_a_needed_claim(make_ledger: Any, subject: list[str]) -> None:
    """certified-copy needs person-id {person_id, holder_name, district}: a subject naming a
    claim (or type) the rule does not need is refused at registration (A07)."""
    from contracts import CelEngine
    from contracts.catalogue import rule
    from ledger.errors import TxRejected
    from ledger.state import Machine
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag, services=[])
    tx = lg.gov_tx("register_rule", {"rule": rule("certified-copy", subject=subject)},
                   [ag["civil"], ag["edu"]])
    m = Machine(lg.registry, lg.store, rules=CelEngine())
    with pytest.raises(TxRejected) as info:
        m.apply(tx, T0 + DAY)
    assert info.value.code == "unknown_claim"


def test_only_the_rules_agency_records_its_decisions(world: Any) -> None:
    """elderly-allowance is civil's: market (a current agency with an approval grant of its
    own) may not record a decision for it (A04)."""
    lg, ag = world
    r = lg.commit([_approval(ag["market"], "elderly-allowance", reasons=["eligible"])], T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["not_authorized"]


def test_a_credit_rule_needs_a_policy_first(make_ledger: Any) -> None:
    """A09: business-licence reads credit.*; registered before any credit policy it is
    refused (every decision under it would otherwise fail at the node)."""
    from contracts import CelEngine
    from contracts.catalogue import rule, setup_actions
    from ledger.errors import TxRejected
    from ledger.state import Machine
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    for action, args in setup_actions(lg.registry.data["types"], T0, T0 + 4000 * DAY,
                                      services=[]):
        if action not in ("set_credit_policy", "grant_credit", "register_rule"):
            lg.govern(action, args, [ag["civil"], ag["edu"]], T0 + 1)
    assert lg.registry.credit_policy() is None
    tx = lg.gov_tx("register_rule", {"rule": rule("business-licence")}, [ag["civil"], ag["edu"]])
    with pytest.raises(TxRejected) as info:
        Machine(lg.registry, lg.store, rules=CelEngine()).apply(tx, T0 + DAY)
    assert info.value.code == "no_credit_policy"


def test_a_credit_grant_names_a_policy_category(world: Any) -> None:
    """G10: with a policy in force, grant_credit for a category it lacks is refused."""
    lg, ag = world
    tx = lg.gov_tx("grant_credit", {"agency": "market", "category": "gossip", "from": T0,
                                    "until": T0 + 10 * DAY}, [ag["civil"], ag["edu"]])
    r = lg.commit([tx], T0 + DAY)
    assert [e.code for _, e in r.rejected] == ["unknown_category"]


def test_a_rule_is_decided_by_a_current_member_only(world: Any) -> None:
    """A rule names the agency that decides its service: an id no member has, or a member
    removed since, is refused (unknown_agency) and the rule in force stays, so no decision can
    be recorded under a rule no agency may sign (mutation round 17)."""
    from contracts.catalogue import rule

    lg, ag = world
    signers = [ag["civil"], ag["edu"]]
    before = lg.registry.rule_versions("certified-copy")
    lg.govern("remove_agency", {"agency": "justice"}, signers, T0 + DAY)
    for who in ("nobody", "justice"):
        tx = lg.gov_tx("register_rule", {"rule": rule("certified-copy", agency=who)}, signers)
        r = lg.commit([tx], T0 + 2 * DAY)
        assert [e.code for _, e in r.rejected] == ["unknown_agency"], who
    assert lg.registry.rule_versions("certified-copy") == before
    # control: moved to another current member, it is taken
    lg.govern("register_rule", {"rule": rule("certified-copy", agency="edu")}, signers,
              T0 + 2 * DAY)
    assert lg.registry.rule("certified-copy")["agency"] == "edu"  # type: ignore[index]


def test_a_rule_s_version_is_sha256_over_its_domain_and_canonical_bytes() -> None:
    """A decision names the rule's version by this hash and every node must compute the same
    one: SHA-256 over "credledger/v1/rule" NUL and the rule's canonical encoding, computed
    here from that definition (mutation round 17: another domain went unnoticed)."""
    from ledger import codec

    for service, r in RULES.items():
        want = hashlib.sha256(b"credledger/v1/rule\x00" + codec.encode(r)).digest()
        assert rule_hash(r) == want, service


def test_a_refused_decision_is_not_recorded_when_replayed_under_its_rule_again(
        world: Any) -> None:
    """A decision refused as ``stale_rule`` (its rule was upgraded between signing and ordering)
    could be recorded by anyone who kept its bytes, once the same rule version was registered
    again: ``ts`` was unread. A decision is now refused more than ``MAX_BACKDATE`` from its
    block's time, both ways, as status changes and credit events are (ADR 70)."""
    from contracts.catalogue import rule
    from ledger.state import MAX_BACKDATE
    lg, ag = world
    signers = [ag["civil"], ag["edu"]]
    old = RULES["elderly-allowance"]
    held = _approval(ag["civil"], "elderly-allowance", reasons=["eligible"], ts=T0 + DAY)
    lg.govern("register_rule", {"rule": rule("elderly-allowance", params=[
        {"name": "district", "str": "changsheng"}, {"name": "income_line", "int": 30_000}])},
        signers, T0 + DAY)
    r = lg.commit([held], T0 + DAY + 1)
    assert [e.code for _, e in r.rejected] == ["stale_rule"]
    lg.govern("register_rule", {"rule": old}, signers, T0 + 200 * DAY)
    assert lg.registry.rule("elderly-allowance") == old
    r = lg.commit([held], T0 + 200 * DAY + 1)
    assert [e.code for _, e in r.rejected] == ["stale"]
    assert "sign the decision again" in str(r.rejected[0][1])
    # the bounds, to the second, each way
    t = T0 + 201 * DAY
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=["eligible"], ts=ts)
                   for ts in (t - MAX_BACKDATE - 1, t + MAX_BACKDATE + 1)], t)
    assert [e.code for _, e in r.rejected] == ["stale", "future_dated"]
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=["eligible"], ts=ts)
                   for ts in (t - MAX_BACKDATE, t + MAX_BACKDATE)], t)
    assert not r.rejected and len(r.accepted) == 2


def test_a_decision_needs_its_agencys_approval_grant(world: Any) -> None:
    """The node decides nothing without the grant to issue approval credentials, but the
    ledger recorded a decision its agency sent by hand once that grant had ended (ADR 70)."""
    lg, ag = world
    end = T0 + 4000 * DAY  # the catalogue's grants run until then (install_catalogue)
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=["eligible"],
                             ts=end - 1)], end - 1)
    assert not r.rejected
    r = lg.commit([_approval(ag["civil"], "elderly-allowance", reasons=["eligible"],
                             ts=end)], end)
    assert [e.code for _, e in r.rejected] == ["not_granted"]
    assert "holds no grant to issue 'approval'" in str(r.rejected[0][1])


def test_an_approval_credential_is_its_deciding_agencys_alone_to_change(world: Any) -> None:
    """An approval credential is issued with its agency's decision: another agency holding the
    approval grant (each decides its own services) may not revoke or suspend it, where a grant
    of any other type lets its holder change another agency's credentials of that type
    (``may_change_status``'s reserved types). Mutation round 42M: the reserved-type check
    dropped left every test passing."""
    from ledger.network import issue_tx, status_tx

    lg, ag = world
    cid = hashlib.sha256(b"an approval credential of civil's").digest()
    r = lg.commit([issue_tx("demo", ag["civil"], cid, "approval", 7, T0 + DAY, T0 + 400 * DAY,
                            T0 + DAY)], T0 + DAY)
    assert not r.rejected, r.rejected
    assert lg.registry.grant_covers("market", "approval", T0 + DAY)  # so the type alone refuses
    for new in ("suspended", "revoked"):
        r = lg.commit([status_tx("demo", ag["market"], cid, new, "test", T0 + DAY + 1)],
                      T0 + DAY)
        assert [e.code for _, e in r.rejected] == ["not_authorized"], new
    assert lg.store.credential(cid).status == "valid"
    r = lg.commit([status_tx("demo", ag["civil"], cid, "revoked", "test", T0 + DAY + 2)],
                  T0 + DAY)  # control: its issuer may
    assert not r.rejected, r.rejected
    assert lg.store.credential(cid).status == "revoked"
