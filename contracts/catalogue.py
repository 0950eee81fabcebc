"""The service catalogue: credential types, the credit policy and approval rules modelled on the
district's credit-based approvals (elderly allowance, qualification recognition, business licence
with a credit fast track, certified copy of an official document).

Everything here is data; :func:`setup_actions` turns it into governance actions for a network
whose agencies hold the roles ``civil`` (civil affairs: identity, residence, allowances, copies),
``edu`` (education: degrees, recognition), ``market`` (market regulation: registrations, licences)
and ``justice`` (conduct records).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["APPROVAL_TYPE", "IDENTITY", "POLICY", "RULES", "TYPES", "rule", "setup_actions"]

YEAR = 365 * 86_400

APPROVAL_TYPE: dict[str, Any] = {
    "id": "approval", "title": "Administrative approval",
    "claims": {"service": "string", "decision": "string", "path": "string",
               "rule_version": "string", "approval_tx": "string", "reasons": "string",
               "documents": "string", "decided_on": "date"},
    "derived": {}}

TYPES: list[dict[str, Any]] = [
    {"id": "person-id", "title": "Resident identity card",
     "claims": {"person_id": "string", "holder_name": "string", "birth_date": "date",
                "district": "string"},
     "derived": {"age_over_18": {"claim": "birth_date", "age_over": 18},
                 "age_over_65": {"claim": "birth_date", "age_over": 65}}},
    {"id": "income-statement", "title": "Annual income statement",
     "claims": {"tax_year": "int", "annual_income": "int"}, "derived": {}},
    {"id": "degree", "title": "Academic degree",
     "claims": {"holder_name": "string", "degree_level": "string", "field": "string",
                "awarded_on": "date"}, "derived": {}},
    {"id": "conduct-record", "title": "Professional conduct record",
     "claims": {"disqualifying_record": "bool"}, "derived": {}},
    {"id": "business-registration", "title": "Business registration",
     "claims": {"registration_no": "string", "business_name": "string", "scope": "string"},
     "derived": {}},
    APPROVAL_TYPE,
]

ISSUERS = {"person-id": "civil", "income-statement": "civil", "degree": "edu",
           "conduct-record": "justice", "business-registration": "market"}

IDENTITY = {"person-id": "person_id", "business-registration": "registration_no"}
"""Identity credential type → the claim whose value is the subject's identifier."""

POLICY: dict[str, Any] = {
    "categories": [{"name": "courts", "weight": 150}, {"name": "permits", "weight": 100},
                   {"name": "tax", "weight": 100}, {"name": "utilities", "weight": 50}],
    "base": 600, "min": 0, "max": 1000, "half_life": 5 * YEAR, "serious_at": 100}

CREDIT_GRANTS = [("market", "permits"), ("civil", "tax"), ("civil", "utilities"),
                 ("justice", "courts")]


def _p(name: str, value: int | str | bool) -> dict[str, Any]:
    kind = "bool" if isinstance(value, bool) else "int" if isinstance(value, int) else "str"
    return {"name": name, kind: value}


RULES: dict[str, dict[str, Any]] = {
    "elderly-allowance": {
        "service": "elderly-allowance", "title": "Monthly allowance for elderly residents",
        "area": "micro_allowances", "agency": "civil",
        "needs": [{"type": "person-id", "claims": ["district", "age_over_65"]},
                  {"type": "income-statement", "claims": ["annual_income"]}],
        "params": [_p("district", "changsheng"), _p("income_line", 24_000)],
        "subject": [],
        "clauses": [
            {"when": "claims.person_id.district != params.district", "decision": "rejected",
             "reason": "not_resident"},
            {"when": "!claims.person_id.age_over_65", "decision": "rejected",
             "reason": "under_65"},
            {"when": "claims.income_statement.annual_income >= params.income_line",
             "decision": "rejected", "reason": "income_above_line"}],
        "otherwise": {"decision": "approved", "reason": "eligible"},
        "fast_track": "", "fast_track_reason": "fast_track",
        "documents": {"fast_track": [], "standard": ["bank_account_form"]}},
    "qualification-recognition": {
        "service": "qualification-recognition", "title": "Recognition of a qualification",
        "area": "qualifications", "agency": "edu",
        "needs": [{"type": "degree", "claims": ["degree_level", "field"]},
                  {"type": "conduct-record", "claims": ["disqualifying_record"]}],
        "params": [],
        "subject": [],
        "clauses": [
            {"when": "claims.conduct_record.disqualifying_record", "decision": "rejected",
             "reason": "disqualifying_record"},
            {"when": "!(claims.degree.degree_level in ['bachelor', 'master', 'doctor'])",
             "decision": "needs_review", "reason": "level_not_listed"}],
        "otherwise": {"decision": "approved", "reason": "recognised"},
        "fast_track": "", "fast_track_reason": "fast_track",
        "documents": {"fast_track": [], "standard": []}},
    "business-licence": {
        "service": "business-licence", "title": "Business operating licence",
        "area": "licensing", "agency": "market",
        "needs": [{"type": "business-registration", "claims": ["registration_no", "scope"]}],
        "params": [_p("fast_track_score", 700), _p("review_below", 300),
                   _p("serious_window", 3 * YEAR)],
        "subject": ["business-registration", "registration_no"],
        "clauses": [
            {"when": "claims.business_registration.scope in ['weapons', 'gambling']",
             "decision": "rejected", "reason": "scope_not_licensable"},
            {"when": "credit.score < params.review_below", "decision": "needs_review",
             "reason": "low_credit"}],
        "otherwise": {"decision": "approved", "reason": "licensed"},
        "fast_track": "credit.score >= params.fast_track_score && (credit.last_serious == 0 "
                      "|| now - credit.last_serious >= params.serious_window)",
        "fast_track_reason": "good_credit",
        "documents": {"fast_track": ["premises_plan"],
                      "standard": ["premises_plan", "onsite_inspection_report"]}},
    "certified-copy": {
        "service": "certified-copy", "title": "Certified copy of the resident identity card",
        "area": "official_documents", "agency": "civil",
        "needs": [{"type": "person-id", "claims": ["person_id", "holder_name", "district"]}],
        "params": [], "subject": [], "clauses": [],
        "otherwise": {"decision": "approved", "reason": "certified"},
        "fast_track": "", "fast_track_reason": "fast_track",
        "documents": {"fast_track": [], "standard": []}},
}


def rule(service: str, **changes: Any) -> dict[str, Any]:
    """A copy of a catalogue rule, with header fields replaced (e.g. ``agency=``)."""
    return {**RULES[service], **changes}


def setup_actions(registered: Mapping[str, Any], start: int, until: int,
                  agencies: Mapping[str, str] | None = None,
                  services: list[str] | None = None) -> list[tuple[str, dict[str, Any]]]:
    """Governance (action, args) that install the catalogue on a network whose registry has
    ``registered`` types already: types, grants, the credit policy, credit grants, the rules.
    ``agencies`` maps the roles civil/edu/market/justice to agency ids (default: same names)."""
    role = dict(agencies or {})

    def who(r: str) -> str:
        return role.get(r, r)

    out: list[tuple[str, dict[str, Any]]] = []
    for t in TYPES:
        if t["id"] not in registered:
            out.append(("register_type", {"type": t}))
    for kind, r in ISSUERS.items():
        out.append(("grant", {"agency": who(r), "type": kind, "from": start, "until": until}))
    for r in ("civil", "edu", "market"):
        out.append(("grant", {"agency": who(r), "type": "approval", "from": start,
                              "until": until}))
    out.append(("set_credit_policy", {"policy": POLICY}))
    for r, cat in CREDIT_GRANTS:
        out.append(("grant_credit", {"agency": who(r), "category": cat, "from": start,
                                     "until": until}))
    for name in services or list(RULES):
        out.append(("register_rule", {"rule": rule(name, agency=who(RULES[name]["agency"]))}))
    return out
