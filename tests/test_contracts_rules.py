"""Catalogue rules, table-driven with boundary cases; registration checks; rule upgrades."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from conftest import DAY, T0
from test_contracts_world import catalogue_agencies, install_catalogue

from contracts import CelEngine
from contracts import rules as rules_mod
from contracts.catalogue import APPROVAL_TYPE, POLICY, RULES, YEAR, rule
from contracts.errors import ApplicationError
from ledger.credentials import RESERVED_TYPES
from ledger.presentation import IMPLIED_CLAIMS, with_implied_claims
from ledger.state import Machine, rule_hash
from ledger.tx import make_tx

ENGINE = CelEngine()
NOW = T0 + 30 * YEAR


def decide(service: str, claims: dict[str, Any], credit: dict[str, int] | None = None,
           now: int = NOW) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    o = ENGINE.compile(RULES[service]).evaluate(claims, credit, now)
    return o.decision, o.path, o.reasons, o.documents


def person(district: str = "changsheng", over65: bool = True) -> dict[str, Any]:
    return {"district": district, "age_over_65": over65, "person_id": "P-1",
            "holder_name": "Chen Mei-4b1e"}


ELDERLY = [
    ("eligible", person(), 12_000, ("approved", "standard", ("eligible",),
                                    ("bank_account_form",))),
    ("income one below the line", person(), 23_999, ("approved", "standard", ("eligible",),
                                                      ("bank_account_form",))),
    ("income at the line", person(), 24_000, ("rejected", "standard", ("income_above_line",),
                                               ())),
    ("other district", person(district="nanhai"), 1, ("rejected", "standard",
                                                      ("not_resident",), ())),
    ("under 65", person(over65=False), 1, ("rejected", "standard", ("under_65",), ())),
]


@pytest.mark.parametrize(("name", "p", "income", "want"), ELDERLY, ids=[c[0] for c in ELDERLY])
def test_elderly_allowance(name: str, p: dict[str, Any], income: int, want: Any) -> None:
    got = decide("elderly-allowance", {"person-id": p,
                                       "income-statement": {"annual_income": income}})
    assert got == want


QUAL = [
    ("master, clean", "master", False, ("approved", "standard", ("recognised",), ())),
    ("doctor, clean", "doctor", False, ("approved", "standard", ("recognised",), ())),
    ("master, disqualified", "master", True, ("rejected", "standard",
                                              ("disqualifying_record",), ())),
    ("unlisted level", "diploma", False, ("needs_review", "standard", ("level_not_listed",),
                                          ())),
]


@pytest.mark.parametrize(("name", "level", "record", "want"), QUAL, ids=[c[0] for c in QUAL])
def test_qualification_recognition(name: str, level: str, record: bool, want: Any) -> None:
    got = decide("qualification-recognition", {
        "degree": {"degree_level": level, "field": "hydrology"},
        "conduct-record": {"disqualifying_record": record}})
    assert got == want


STD = ("premises_plan", "onsite_inspection_report")
FAST = ("premises_plan",)
LICENCE = [
    ("score at threshold, no events", 700, 0, "retail",
     ("approved", "fast_track", ("licensed", "good_credit"), FAST)),
    ("score one below threshold", 699, 0, "retail",
     ("approved", "standard", ("licensed",), STD)),
    ("serious event exactly three years old", 800, NOW - 3 * YEAR, "retail",
     ("approved", "fast_track", ("licensed", "good_credit"), FAST)),
    ("serious event one second inside three years", 800, NOW - 3 * YEAR + 1, "retail",
     ("approved", "standard", ("licensed",), STD)),
    ("low credit goes to review", 299, 0, "retail",
     ("needs_review", "standard", ("low_credit",), STD)),
    ("review boundary", 300, 0, "retail", ("approved", "standard", ("licensed",), STD)),
    ("scope never licensable", 900, 0, "gambling",
     ("rejected", "standard", ("scope_not_licensable",), ())),
]


@pytest.mark.parametrize(("name", "score", "serious", "scope", "want"), LICENCE,
                         ids=[c[0] for c in LICENCE])
def test_business_licence(name: str, score: int, serious: int, scope: str, want: Any) -> None:
    got = decide("business-licence",
                 {"business-registration": {"registration_no": "91440606-X", "scope": scope}},
                 {"score": score, "last_serious": serious, "events": 1})
    assert got == want


def test_certified_copy() -> None:
    got = decide("certified-copy", {"person-id": person()})
    assert got == ("approved", "standard", ("certified",), ())


def test_missing_claim_is_an_application_error() -> None:
    with pytest.raises(ApplicationError, match="annual_income"):
        decide("elderly-allowance", {"person-id": person(), "income-statement": {}})


def test_credit_rule_needs_credit() -> None:
    with pytest.raises(ApplicationError, match="credit"):
        decide("business-licence", {"business-registration": {"registration_no": "x",
                                                              "scope": "retail"}})


def test_runtime_error_is_needs_review() -> None:
    r = rule("certified-copy", clauses=[{"when": "1 / (size(claims.person_id.district) - 10) "
                                                 "> 0", "decision": "rejected",
                                         "reason": "odd"}])
    o = ENGINE.compile(r).evaluate({"person-id": person()}, None, NOW)  # district: 10 chars
    assert (o.decision, o.reasons, o.fired) == ("needs_review", ("rule_error",), -2)


def test_a_claim_value_cel_cannot_hold_is_needs_review() -> None:
    """An income over 64 bits (issued before int claims were bounded) used to end the
    application in an HTTP 500; it is a rule error, decided the same way everywhere."""
    o = ENGINE.compile(RULES["elderly-allowance"]).evaluate(
        {"person-id": person(), "income-statement": {"annual_income": 10**38}}, None, NOW)
    assert (o.decision, o.reasons, o.fired) == ("needs_review", ("rule_error",), -2)


def test_a_number_past_what_an_int_holds_is_a_rule_error() -> None:
    """``int()`` or ``uint()`` of a double that overflowed to infinity (a claim times a large
    constant, a division by 0.0) raised OverflowError out of the evaluation: the application
    ended in an HTTP 500, not in a decision. It is a rule error, as a NaN there is."""
    income = {"person-id": person(), "income-statement": {"annual_income": 1}}
    for when in ("int(double(claims.income_statement.annual_income) / 0.0) > 1",
                 "uint(double(claims.income_statement.annual_income) * 1e308 * 10.0) > 1u",
                 "int(double(claims.income_statement.annual_income) * 0.0 / 0.0) > 1"):
        r = rule("elderly-allowance", clauses=[{"when": when, "decision": "rejected",
                                                "reason": "odd"}])
        o = ENGINE.compile(r).evaluate(income, None, NOW)
        assert (o.decision, o.reasons, o.fired) == ("needs_review", ("rule_error",), -2), when


def test_a_claim_read_as_a_pattern_that_does_not_parse_is_not_written_to_stderr(
        capfd: pytest.CaptureFixture[str]) -> None:
    """A rule that matches against a pattern a claim gives (the arguments of ``matches``
    swapped, say): a claim value that is no regular expression is a rule error, and RE2 wrote
    the pattern (the claim value) to the process's standard error, i.e. the node's log."""
    r = rule("certified-copy", clauses=[
        {"when": "'Chen'.matches(claims.person_id.holder_name)", "decision": "rejected",
         "reason": "odd"}])
    o = ENGINE.compile(r).evaluate({"person-id": person() | {"holder_name": "Chen (Mei"}},
                                   None, NOW)
    assert (o.decision, o.reasons, o.fired) == ("needs_review", ("rule_error",), -2)
    said = capfd.readouterr()
    assert "Chen (Mei" not in said.err + said.out, said.err
    o = ENGINE.compile(r).evaluate({"person-id": person() | {"holder_name": "^Ch"}}, None, NOW)
    assert (o.decision, o.reasons, o.fired) == ("rejected", ("odd",), 0)  # still RE2's


def test_evaluation_sees_only_needed_claims() -> None:
    r = rule("certified-copy")
    act = ENGINE.compile(r).activation({"person-id": {**person(), "birth_date": "1950-01-01"}},
                                       None, NOW)
    assert set(act["claims"]["person_id"]) == {"person_id", "holder_name", "district"}


# --- registration on the ledger ------------------------------------------------------------------

BAD_RULES = [
    ("does not compile", {"clauses": [{"when": "claims.person_id.district ==",
                                       "decision": "rejected", "reason": "x"}]},
     "rule_invalid"),
    ("claim the rule does not need", {"clauses": [{"when": "claims.person_id.birth_date == ''",
                                                   "decision": "rejected", "reason": "x"}]},
     "rule_invalid"),
    ("indexing around the check", {"clauses": [{"when": "claims['person_id'].x == 1",
                                                "decision": "rejected", "reason": "x"}]},
     "rule_invalid"),
    ("needed claim the type lacks", {"needs": [{"type": "person-id",
                                                "claims": ["person_id", "shoe_size"]}]},
     "unknown_claim"),
    ("unknown type", {"needs": [{"type": "passport", "claims": ["number"]}]}, "unknown_type"),
    ("credit without a subject", {"fast_track": "credit.score > 1"}, "rule_invalid"),
    ("unknown parameter", {"fast_track": "params.nope"}, "rule_invalid"),
    # found by a mutation round of the contracts (ADR 56): a name past the claim, and a credit
    # field the record does not have, were taken and failed at every application instead
    ("name past a needed claim", {"clauses": [{"when": "claims.person_id.district.size == 1",
                                               "decision": "rejected", "reason": "x"}]},
     "rule_invalid"),
    ("unknown credit field", {"subject": ["person-id", "person_id"],
                              "fast_track": "credit.bogus > 1"}, "rule_invalid"),
]


@pytest.mark.parametrize(("name", "changes", "code"), BAD_RULES, ids=[c[0] for c in BAD_RULES])
def test_bad_rules_are_rejected_at_registration(make_ledger: Any, name: str,
                                                changes: dict[str, Any], code: str) -> None:
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag, services=[])
    before = lg.registry.to_bytes()
    tx = lg.gov_tx("register_rule", {"rule": rule("certified-copy", **changes)},
                   [ag["civil"], ag["edu"]])
    m = Machine(lg.registry, lg.store, rules=ENGINE)
    from ledger.errors import TxRejected
    with pytest.raises(TxRejected) as info:
        m.apply(tx, T0 + DAY)
    assert info.value.code == code
    assert lg.registry.to_bytes() == before and not m.writes


def test_rule_upgrade_mid_chain(make_ledger: Any) -> None:
    """Approvals before and after an upgrade must cite the version in force at their height."""
    ag = catalogue_agencies()
    lg = make_ledger(list(ag.values()), 2, T0)
    install_catalogue(lg, ag)
    civil = ag["civil"]
    v1 = rule_hash(RULES["elderly-allowance"])
    assert lg.registry.rule("elderly-allowance") == RULES["elderly-allowance"]
    h1 = lg.store.head.height if lg.store.head else 0

    def approval(h: bytes, ts: int) -> Any:
        return make_tx("demo", "approval", {
            "service": "elderly-allowance", "rule_hash": h, "decision": "approved",
            "path": "standard", "reasons": ["eligible"], "evidence": hashlib.sha256(
                ts.to_bytes(8, "big")).digest(), "ts": ts}, [civil.issuer_key])

    assert not lg.commit([approval(v1, T0 + DAY)], T0 + DAY).rejected
    upgraded = rule("elderly-allowance", params=[{"name": "district", "str": "changsheng"},
                                                 {"name": "income_line", "int": 30_000}])
    lg.govern("register_rule", {"rule": upgraded}, [civil, ag["edu"]], T0 + 2 * DAY)
    v2 = rule_hash(upgraded)
    r = lg.commit([approval(v1, T0 + 3 * DAY)], T0 + 3 * DAY)
    assert [e.code for _, e in r.rejected] == ["stale_rule"]
    assert not lg.commit([approval(v2, T0 + 3 * DAY + 1)], T0 + 3 * DAY).rejected
    # the registry at each height says which version was in force there
    assert lg.store.registry_at(h1).rule("elderly-allowance") == RULES["elderly-allowance"]
    assert lg.registry.rule("elderly-allowance") == upgraded
    assert [h for _, h in lg.registry.rule_versions("elderly-allowance")] == [v1, v2]
    # and the same applicant at the same income is decided differently by each version
    claims = {"person-id": person(), "income-statement": {"annual_income": 25_000}}
    assert ENGINE.compile(lg.store.registry_at(h1).rule("elderly-allowance") or {}).evaluate(
        claims, None, NOW).decision == "rejected"
    assert ENGINE.compile(upgraded).evaluate(claims, None, NOW).decision == "approved"


def test_policy_is_sane() -> None:
    assert POLICY["min"] <= POLICY["base"] <= POLICY["max"]


def test_requests_for_approval_credentials_always_ask_for_the_decision() -> None:
    """The verifier's tools add these claims to every request for the approval type; they must
    be claims the catalogue's approval type has."""
    implied = IMPLIED_CLAIMS[APPROVAL_TYPE["id"]]
    assert "decision" in implied
    assert set(implied) <= set(APPROVAL_TYPE["claims"])
    assert with_implied_claims("approval", ["decision", "path"]) == [
        "decision", "path", "service", "approval_tx"]
    assert with_implied_claims("degree", ["field", "field"]) == ["field"]
    assert APPROVAL_TYPE["id"] in RESERVED_TYPES  # issued with a decision only, never by hand


# -- what evaluating a rule may cost (ADR 57) --------------------------------------------------

def _costly(when: str, fast_track: str = "") -> dict[str, Any]:
    return rule("elderly-allowance", clauses=[
        {"when": when, "decision": "rejected", "reason": "not_resident"}],
        fast_track=fast_track)


_LONG = "[" + ",".join(["0"] * 480) + "]"
_NESTED = "true"
for _d in range(4):
    _NESTED = f"[0,0,0,0,0,0,0,0,0,0].all(x{_d}, {_NESTED})"
# each .map in the list of the next, once: the string doubles at each of 25 links (~100 MB)
_IN_LISTS = '["ab"]'
for _ in range(25):
    _IN_LISTS = f"[{_IN_LISTS}.map(x, x + x)[0]]"
_IN_LISTS += ".size() > 0"


@pytest.mark.parametrize(("when", "fast_track", "said"), [
    (_NESTED, "", "rule.clauses[0].when: a comprehension (all/exists/exists_one/filter/map/"
                  "reduce) inside another one's list or expression is not allowed"),
    ('["aaaaaaaa"]' + ".map(x, x + x)" * 20 + ".size() > 0", "",
     "rule.clauses[0].when: a comprehension"),
    (f"{_LONG}.all(x, " + " && ".join(["x + 1 > x"] * 70) + ")", "",
     "evaluating it could take over 50,000 steps (at rule.clauses[0].when"),
    ("true", f"{_LONG}.exists(x, " + " || ".join(["x == 1"] * 90) + ")",
     "evaluating it could take over 50,000 steps (at rule.fast_track"),
    # celpy's reduce: its r + r doubles the string at each of 27 elements (419 MB; 30: GBs)
    ("[" + ",".join(["0"] * 27) + '].reduce(r, i, "ab", r + r).size() > 0', "",
     "rule.clauses[0].when: reduce (celpy's extension, not CEL) is not allowed"),
    ("[0,0,0,0,0,0,0,0,0,0].reduce(a, i, 0, a + [0,0,0,0,0,0,0,0,0,0].reduce(b, j, 0, b))"
     " > 0", "", "rule.clauses[0].when: reduce"),
    # a string ranges over its characters: 1,000 of them x 70 terms took 11 s per evaluation
    (f'list("{"a" * 1000}").all(x, ' + " && ".join(["x + x != x"] * 70) + ")", "",
     "rule.clauses[0].when: a comprehension (all/exists/exists_one/filter/map/reduce) must "
     "range over a list or map written out in the rule"),
    (f'"{"a" * 1000}".all(x, x != "b")', "", "rule.clauses[0].when: a comprehension"),
    ("string([0,0,0,0,0,0,0,0,0,0]).exists(c, c == \"x\")", "",
     "rule.clauses[0].when: a comprehension"),
    ('claims.person_id.district.exists(c, c == "x")', "",
     "rule.clauses[0].when: a comprehension"),
    (_IN_LISTS, "", "rule.clauses[0].when: a comprehension (all/exists/exists_one/filter/map/"
                    "reduce) inside another one's list"),
], ids=["nested 10^4", "chained doubling", "480 x 70 terms", "fast track", "reduce doubling",
        "nested reduce", "list of a string", "string literal", "string of a list",
        "claim string", "doubling through lists"])
def test_a_rule_costly_at_every_application_is_named(when: str, fast_track: str,
                                                    said: str) -> None:
    """Comprehensions nested (their steps multiply: 4 levels over 10 elements took 0.85 s of
    CPU, 5 levels 8.5 s, from under 200 characters) or chained (each ``.map(x, x + x)`` doubles
    the strings), or one comprehension whose body runs for each of a long list's elements
    (7.6 s per application): named, with where it is. The ledger still takes the rule (old
    chains replay), so the node refuses it at /v1/tx and will not evaluate it."""
    costly = _costly(when, fast_track)
    problem = rules_mod.rule_cost_problem(costly)
    assert problem is not None and problem.startswith(said), problem
    compiled = CelEngine().compile(costly)  # still compiles: the state machine takes it
    assert compiled.cost_problem is not None
    CelEngine().check(costly)


def test_the_catalogue_s_rules_cost_a_small_part_of_the_bound() -> None:
    for name, r in RULES.items():
        assert rules_mod.rule_cost_problem(r) is None, name
        assert ENGINE.compile(r).cost_problem is None, name
    short = _costly(f"{_LONG}.exists(x, x == 1)")  # a comprehension over a long list, once
    assert rules_mod.rule_cost_problem(short) is None


def test_the_bound_counts_the_elements_a_comprehension_ranges_over() -> None:
    """Over a sum of lists, the elements of each (the body runs for all of them); over a map
    literal, its keys (not keys and values: a rule within the bound is not refused)."""
    two_terms = "x + 1 > x && x + 1 > x"
    assert rules_mod.rule_cost_problem(_costly(f"{_LONG}.all(x, {two_terms})")) is None
    summed = rules_mod.rule_cost_problem(_costly(f"({_LONG} + {_LONG}).all(x, {two_terms})"))
    assert summed is not None and summed.startswith("evaluating it could take over 50,000"), \
        summed
    keys = "{" + ",".join(f"{i}:0" for i in range(250)) + "}"  # 48,513 steps, 7 terms each
    within = _costly(f"{keys}.all(x, " + " && ".join(["x + 1 > x"] * 7) + ")")
    assert rules_mod.rule_cost_problem(within) is None
    assert CelEngine().compile(within).cost_problem is None


def test_the_cost_bound_counts_every_step_an_evaluation_takes() -> None:
    """The bound is an upper bound: the steps celpy's evaluator takes (its visits of the parse
    tree, counted by wrapping the visitor) never exceed what the bound counted."""
    import celpy
    from celpy import evaluation

    env = celpy.Environment()
    for text in ["[1,2,3].all(x, x > 0) && 5 in [1,2,3,4,5]",
                 '{"a": 1, "b": 2}.exists(k, k == "b") || [3,4].map(y, y * 2).size() == 2',
                 f"{_LONG}.filter(x, x == 0).size() > 1",
                 "[[1], [2, 3]].exists(l, l.size() > 1)",
                 "([1, 2] + [3]).all(x, x > 0)"]:
        tree = env.compile(text)
        bound = rules_mod.expression_cost(tree, "x")
        visits = 0
        original = evaluation.Evaluator.visit

        def counting(self: Any, tree: Any, _o: Any = original) -> Any:
            nonlocal visits
            visits += 1
            return _o(self, tree)

        evaluation.Evaluator.visit = counting  # type: ignore[method-assign]
        try:
            env.program(tree).evaluate({})
        finally:
            evaluation.Evaluator.visit = original  # type: ignore[method-assign]
        assert 0 < visits <= bound, (text, visits, bound)


# -- found by a mutation round of the contracts (ADR 56) ----------------------------------------

def test_the_first_true_clause_decides() -> None:
    """Clauses are tried in order: an applicant from another district, under 65 and over the
    income line is refused for the first of them, not the last."""
    o = ENGINE.compile(RULES["elderly-allowance"]).evaluate(
        {"person-id": person(district="nanhai", over65=False),
         "income-statement": {"annual_income": 99_999}}, None, NOW)
    assert (o.decision, o.reasons, o.fired) == ("rejected", ("not_resident",), 0)


def test_a_clause_that_gives_no_bool_is_a_rule_error() -> None:
    """A ``when`` that gives a number (or a string) is not taken as true: the decision is
    needs_review with reason rule_error, as for any expression that fails at run time."""
    for when in ("size(claims.person_id.district)", "claims.person_id.district"):
        r = rule("certified-copy", clauses=[{"when": when, "decision": "rejected",
                                             "reason": "odd"}])
        o = ENGINE.compile(r).evaluate({"person-id": person()}, None, NOW)
        assert (o.decision, o.reasons, o.fired) == ("needs_review", ("rule_error",), -2), when


def test_types_an_expression_would_name_alike_are_refused_and_a_dotted_type_is_read() -> None:
    """``-`` and ``.`` in a type id become ``_`` in expressions: a rule needing two types that
    become one name is refused (which one would ``claims.a_b`` read?), and a type with a dot
    in its id is read under its ``_`` name."""
    from contracts.errors import RuleError

    clash = rule("certified-copy", needs=[{"type": "a-b", "claims": ["x"]},
                                          {"type": "a_b", "claims": ["y"]}])
    with pytest.raises(RuleError, match="share an expression name"):
        CelEngine().compile(clash)
    dotted = rule("certified-copy", needs=[{"type": "gov.person", "claims": ["district"]}],
                  clauses=[{"when": "claims.gov_person.district == 'nanhai'",
                            "decision": "rejected", "reason": "not_resident"}])
    o = CelEngine().compile(dotted).evaluate({"gov.person": {"district": "nanhai"}}, None, NOW)
    assert (o.decision, o.reasons) == ("rejected", ("not_resident",))


def test_the_bound_counts_every_key_of_a_map_a_comprehension_ranges_over() -> None:
    """The map literal of test_the_bound_counts_the_elements_... with twice the terms: over
    the bound, as its 250 keys make it (a quarter of them would not)."""
    keys = "{" + ",".join(f"{i}:0" for i in range(250)) + "}"
    over = rules_mod.rule_cost_problem(
        _costly(f"{keys}.all(x, " + " && ".join(["x + 1 > x"] * 14) + ")"))
    assert over is not None and over.startswith("evaluating it could take over 50,000"), over


def test_an_expression_over_the_longest_text_is_named_before_it_is_compiled() -> None:
    long = "true" + " && true" * 300  # 2,404 characters
    assert rules_mod.rule_cost_problem(_costly(long)) == \
        "rule.clauses[0].when is over 2000 characters"
    assert rules_mod.rule_cost_problem(_costly("true", fast_track=long)) == \
        "rule.fast_track is over 2000 characters"


def test_the_engine_keeps_at_most_its_cache_size_of_compiled_rules() -> None:
    """Each rule version compiled is cached by hash; a node that saw many versions keeps only
    the newest ``cache_size`` (the oldest goes first) and compiles an evicted one again."""
    engine = CelEngine(cache_size=2)
    versions = [rule("certified-copy", title=f"Certified copy {i}") for i in range(3)]
    first = engine.compile(versions[0])
    assert engine.compile(versions[0]) is first  # cached
    for v in versions[1:]:
        engine.compile(v)
    assert len(engine._cache) == 2
    again = engine.compile(versions[0])
    assert again is not first and again.hash == first.hash


# -- helper round 23E ---------------------------------------------------------------------------

def _when(when: str) -> tuple[str, tuple[str, ...], int]:
    r = rule("certified-copy", clauses=[{"when": when, "decision": "rejected",
                                         "reason": "odd"}])
    o = ENGINE.compile(r).evaluate({"person-id": person()}, None, NOW)
    return o.decision, o.reasons, o.fired


def test_a_timestamp_that_reads_the_wall_clock_is_a_rule_error() -> None:
    """celpy's ``timestamp("now")`` is the evaluating machine's clock, and a time of day alone
    (``timestamp("12:00")``) falls on the machine's today: a rule reading either decided by
    when it ran, so the auditor's replay of the evidence (same block time) could differ from
    the node's decision. Both are rule errors; a written-out date still decides."""
    for when in ('timestamp("now") > timestamp("2000-01-01T00:00:00Z")',
                 'timestamp("12:00") > timestamp("2000-01-01T00:00:00Z")',
                 'timestamp("2000-01-01T00:00:00Z") < timestamp("now")'):
        assert _when(when) == ("needs_review", ("rule_error",), -2), when
    for when in ('timestamp("2026-06-01T00:00:00Z") > timestamp("2000-01-01")',
                 'timestamp("2026-06") > timestamp("2026")',
                 'timestamp("2026-06-01T00:00:00Z") == timestamp("2026-06-01T08:00:00+08:00")'):
        assert _when(when) == ("rejected", ("odd",), 0), when


def test_a_time_zone_that_is_the_machine_s_own_is_a_rule_error() -> None:
    """``getDate("localtime")`` (any of the ``get…`` methods) read the evaluating machine's
    /etc/localtime: the same evidence gave one day on a node set to Asia/Shanghai and another
    on an auditor's machine in UTC. A zone must be an IANA zone name, UTC or a fixed offset."""
    at = 'timestamp("2026-06-01T20:00:00Z")'
    for when in (f'{at}.getDate("localtime") > 0', f'{at}.getFullYear("Factory") > 0',
                 f'{at}.getHours("localtime") >= 0', f'{at}.getDate("asia/shanghai") > 0',
                 f'{at}.getDate("/etc/localtime") > 0'):
        assert _when(when) == ("needs_review", ("rule_error",), -2), when
    for when in (f'{at}.getDate("Asia/Shanghai") == 2', f'{at}.getDate("+08:00") == 2',
                 f'{at}.getDate() == 1', f'{at}.getDate("UTC") == 1',
                 f'{at}.getHours("Europe/Paris") == 22', f'{at}.getDayOfWeek("-05:00") == 1'):
        assert _when(when) == ("rejected", ("odd",), 0), when
