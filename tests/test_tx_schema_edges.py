"""Closed-schema refusals of rules, types and credit policies in ledger.tx (ADR 54)."""
from __future__ import annotations

from typing import Any

import pytest

from contracts.catalogue import POLICY, RULES
from ledger.errors import DecodeError
from ledger.tx import parse_body, parse_rule

RULE = RULES["business-licence"]


def gov(action: str, args: dict[str, Any]) -> dict[str, Any]:
    return parse_body("governance", {"seq": 1, "action": action, "args": args})


def test_controls_parse() -> None:
    parse_rule(dict(RULE))
    gov("set_credit_policy", {"policy": dict(POLICY)})
    gov("register_type", {"type": {"id": "t", "title": "T", "claims": {"name": "string"},
                                   "derived": {}}})


@pytest.mark.parametrize("changes", [
    {"subject": ["business-registration"]},  # T03: [] or [type, claim], never one member
    {"needs": [*RULE["needs"], dict(RULE["needs"][0])]},  # T08: a type needed twice
    {"params": [*RULE["params"], dict(RULE["params"][0])]},  # T09: a parameter named twice
    {"needs": [{**RULE["needs"][0], "claims": ["c" * 65]}]},  # an identifier is 1-64 chars
    {"documents": {"fast_track": ["d" * 65], "standard": []}},
    {"documents": {"fast_track": [], "standard": ["premises_plan", "premises_plan"]}},
    {"needs": [{**RULE["needs"][0], "claims": ["scope", "scope"]}]},  # a claim named twice
    {"needs": [{**RULE["needs"][0], "claims": []}]},  # a type needed for no claim
    {"clauses": [{**RULE["clauses"][0], "when": " \t\n"}]},  # an expression of blanks only
    {"clauses": [{**RULE["clauses"][0], "note": "x"}]},  # a clause's schema is closed
    {"params": [{"name": "p", "int": 1, "str": "x"}]},  # a parameter of two kinds
    {"params": [{"name": "p"}]},  # of none
])
def test_rule_schema_refusals(changes: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        parse_rule({**RULE, **changes})


@pytest.mark.parametrize("name", ["iss", "vct", "status", "sub", "cnf"])
def test_reserved_claim_names_are_refused(name: str) -> None:  # T04
    with pytest.raises(DecodeError, match="reserve"):
        gov("register_type", {"type": {"id": "t", "title": "T", "claims": {name: "string"},
                                       "derived": {}}})


def test_a_serious_event_is_one_point_or_more() -> None:
    with pytest.raises(DecodeError, match=r"outside \[1, 1000000\]"):
        gov("set_credit_policy", {"policy": {**POLICY, "serious_at": 0}})
    assert gov("set_credit_policy", {"policy": {**POLICY, "serious_at": 1}})["args"]["policy"][
        "serious_at"] == 1


def test_credit_policy_base_above_max_is_refused() -> None:  # T06
    with pytest.raises(DecodeError, match="min <= base <= max"):
        gov("set_credit_policy", {"policy": {**POLICY, "base": POLICY["max"] + 1}})


@pytest.mark.parametrize("categories", [
    [],  # a policy weighing nothing
    [*POLICY["categories"], {"name": POLICY["categories"][0]["name"], "weight": 1}],  # twice
], ids=["none", "one-named-twice"])
def test_credit_policy_categories_are_one_or_more_and_distinct(
        categories: list[dict[str, Any]]) -> None:
    with pytest.raises(DecodeError, match="distinct categories") as info:
        gov("set_credit_policy", {"policy": {**POLICY, "categories": categories}})
    assert info.value.where == "tx.body<governance>.args.policy.categories"
