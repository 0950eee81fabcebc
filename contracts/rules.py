"""Approval rules: a header plus CEL expressions, compiled once and evaluated purely.

A rule (schema: :func:`ledger.tx.parse_rule`) names the credential types and claims it needs,
typed parameters, ordered ``clauses`` (the first whose ``when`` is true gives the decision and the
reason), an ``otherwise`` outcome, a ``fast_track`` expression for approvals, and the documents
still required on each path. Expressions see exactly four names:

``claims.<type>.<claim>``  verified claims (``-`` and ``.`` in a type id become ``_``)
``params.<name>``          the rule's own constants
``credit.score`` / ``credit.last_serious`` / ``credit.events``  (rules with a ``subject`` only)
``now``                    the block time of the evaluation height (seconds)

An expression that fails at run time (a missing claim, division by zero) makes the decision
``needs_review`` with reason ``rule_error``: still the same answer everywhere.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import celpy
import pendulum.parsing
import re2
from celpy import celtypes
from celpy.evaluation import CELEvalError, base_functions
from lark import Token, Tree

from contracts.errors import ApplicationError, RuleError
from ledger import codec
from ledger.errors import DecodeError
from ledger.state import rule_hash
from ledger.timetext import TimeZoneError, time_zone
from ledger.tx import MAX_EXPR, parse_rule

__all__ = ["CREDIT_FIELDS", "INT_MAX_STR_DIGITS", "MAX_RULE_COST", "MAX_RULE_DEPTH", "CelEngine",
           "CompiledRule", "Outcome", "alias", "decision_bytes", "outcome_of_tx",
           "pin_interpreter", "rule_cost_problem"]

CREDIT_FIELDS = frozenset({"score", "last_serious", "events"})
_ROOTS = frozenset({"claims", "params", "credit"})


def alias(kind: str) -> str:
    """A credential type's name inside expressions (``business-licence`` → ``business_licence``)."""
    return kind.replace("-", "_").replace(".", "_")


@dataclass(frozen=True, slots=True)
class Outcome:
    """A decision: what goes on the ledger (decision, path, reasons) and what the applicant is
    told (documents still required), with which expression decided it (``fired``: clause index,
    -1 for ``otherwise``, -2 for a run-time error)."""

    decision: str
    path: str
    reasons: tuple[str, ...]
    documents: tuple[str, ...]
    fired: int
    expression: str

    def to_json(self) -> dict[str, Any]:
        return {"decision": self.decision, "path": self.path, "reasons": list(self.reasons),
                "documents": list(self.documents), "fired": self.fired,
                "expression": self.expression}


def decision_bytes(service: str, rule_h: bytes, decision: str, path: str,
                   reasons: Sequence[str], documents: Sequence[str]) -> bytes:
    """The canonical bytes of a decision: what two nodes, or a node and an auditor, compare."""
    return codec.encode({"v": 1, "service": service, "rule_hash": rule_h, "decision": decision,
                         "path": path, "reasons": list(reasons), "documents": list(documents)})


def _documents(rule: Mapping[str, Any], decision: str, path: str) -> tuple[str, ...]:
    if decision == "rejected":
        return ()
    return tuple(rule["documents"]["fast_track" if path == "fast_track" else "standard"])


def outcome_of_tx(rule: Mapping[str, Any], body: Mapping[str, Any]) -> bytes:
    """The decision bytes an ``approval`` transaction body states under ``rule``."""
    return decision_bytes(body["service"], body["rule_hash"], body["decision"], body["path"],
                          body["reasons"], _documents(rule, body["decision"], body["path"]))


# -- static checks over the parse tree ---------------------------------------------------------

def _chain(t: Any) -> list[str] | None:
    """``a.b.c`` as ["a", "b", "c"] when ``t`` is a plain dotted name, else None."""
    if not isinstance(t, Tree):
        return None
    if t.data == "member_dot" and len(t.children) == 2:
        base = _chain(t.children[0])
        return None if base is None else [*base, str(t.children[1])]
    if t.data in ("member", "primary") and len(t.children) == 1:
        return _chain(t.children[0])
    if t.data == "ident" and len(t.children) == 1 and isinstance(t.children[0], Token):
        return [str(t.children[0])]
    return None


def _references(tree: Tree[Any]) -> tuple[list[list[str]], int]:
    """Dotted references rooted at claims/params/credit, and how many such roots are used
    any other way (indexing, bare, as a macro variable)."""
    refs: list[list[str]] = []
    stray = 0
    stack: list[Any] = [tree]
    while stack:
        t = stack.pop()
        if not isinstance(t, Tree):
            continue
        if t.data == "ident" and t.children and str(t.children[0]) in _ROOTS:
            stray += 1
        if t.data == "member_dot":
            c = _chain(t)
            if c is not None and c[0] in _ROOTS:
                refs.append(c)
                continue  # its root ident is accounted for: not stray
        stack.extend(t.children)
    return refs, stray


def _check_refs(rule: Mapping[str, Any], where: str, tree: Tree[Any]) -> None:
    refs, stray = _references(tree)
    if stray:
        raise RuleError(f"{where}: use claims.<type>.<claim>, params.<name> and credit.<field> "
                        "only as plain dotted names")
    needs = {alias(n["type"]): set(n["claims"]) for n in rule["needs"]}
    params = {p["name"] for p in rule["params"]}
    for ref in refs:
        root = ref[0]
        if root == "claims":
            if len(ref) != 3 or ref[1] not in needs or ref[2] not in needs[ref[1]]:
                raise RuleError(f"{where}: {'.'.join(ref)} is not a claim the rule needs")
        elif root == "params":
            if len(ref) != 2 or ref[1] not in params:
                raise RuleError(f"{where}: {'.'.join(ref)} is not a parameter of the rule")
        else:
            if not rule["subject"]:
                raise RuleError(f"{where}: a rule without a subject cannot read credit")
            if len(ref) != 2 or ref[1] not in CREDIT_FIELDS:
                raise RuleError(f"{where}: {'.'.join(ref)} is not one of credit."
                                f"{sorted(CREDIT_FIELDS)}")


# -- what evaluating costs ---------------------------------------------------------------------

MAX_RULE_COST = 50_000
"""Most evaluation steps (parse-tree nodes visited, a comprehension's body counted once per
element it could range over) a rule's expressions may take together. An expression of the
longest text without comprehensions takes ~10,000; a step is 3-8 µs of CPU here, and every
application and every audit of an approval pays for all of them (ADR 57)."""

MAX_RULE_DEPTH = 300
"""Deepest parse tree an expression may have. celpy evaluates a tree recursively, about five
Python frames per level, and a RecursionError (not a decision) comes where the frames reach
the interpreter's recursion limit: with the frames the caller already uses counted, so the same
rule decided in a node's request thread and re-checked by ``ledger audit`` could be decided in
one and fail in the other (a 300-deep ``!!!…`` took 1,500 frames; celpy sets the limit to 2,500:
:func:`pin_interpreter`). The longest ``a && b && …`` that fits in :data:`MAX_EXPR` characters
is 259 levels deep, the catalogue's deepest 32; 30 nested brackets are 312 (ADR 63)."""

_COMPREHENSIONS = frozenset({"all", "exists", "exists_one", "map", "filter", "reduce"})
"""CEL's macros that evaluate an expression once per element, and celpy's ``reduce``
(``[…].reduce(r, x, init, expr)``: its ``r + r`` doubles a string at each element)."""


def _elements(target: Any, where: str) -> int:
    """How many elements a comprehension over ``target`` ranges over at most. It must be a list
    or map literal (or a sum of them): its elements are then counted exactly. Over anything
    else the count is not in the text: a string ranges over its characters (a claim's up to a
    credential's size), ``list("…")`` and ``string([…])`` make many elements of few
    characters. RuleError for those."""
    t = target
    while isinstance(t, Tree) and len(t.children) == 1 and t.data not in ("list_lit", "map_lit"):
        t = t.children[0]
    if isinstance(t, Tree) and t.data == "list_lit":
        return max(1, len(t.children[0].children) if t.children else 0)
    if isinstance(t, Tree) and t.data == "map_lit":
        return max(1, len(t.children[0].children) // 2 if t.children else 0)
    if isinstance(t, Tree) and t.data == "addition" and len(t.children) == 2 and \
            isinstance(t.children[0], Tree) and t.children[0].data == "addition_add":
        # celpy's shape of ``left + right``: addition(addition_add(left), right)
        return _elements(t.children[0], where) + _elements(t.children[1], where)
    raise RuleError(f"{where}: a comprehension ({'/'.join(sorted(_COMPREHENSIONS))}) must range "
                    "over a list or map written out in the rule ([...] or {...}): over a "
                    "string or a value it computes, how many times its expression runs is not "
                    "known before it runs")


def _is_comprehension(t: Any) -> bool:
    return isinstance(t, Tree) and t.data == "member_dot_arg" and len(t.children) == 3 and \
        isinstance(t.children[1], Token) and str(t.children[1]) in _COMPREHENSIONS


def expression_cost(tree: Tree[Any], where: str) -> int:
    """Upper bound on an expression's evaluation steps; RuleError for a comprehension inside
    another (in its list or its expression): nested, their steps multiply, and chained
    (``.map(x, x + x).map(...)``) their values double at each link; and for a parse tree more
    than :data:`MAX_RULE_DEPTH` levels deep (celpy evaluates it recursively)."""
    total = 0
    # (node, multiplier, inside a comprehension's list or arguments, depth)
    stack: list[tuple[Any, int, bool, int]] = [(tree, 1, False, 1)]
    while stack:
        t, times, inside, depth = stack.pop()
        if not isinstance(t, Tree):
            continue
        if depth > MAX_RULE_DEPTH:
            raise RuleError(f"{where}: nested more than {MAX_RULE_DEPTH} levels deep (brackets, "
                            "negations, or a long chain of && or ||): evaluating it would "
                            "depend on how deep the evaluating program's stack already is, "
                            "so nodes and auditors could decide differently")
        total += times
        if _is_comprehension(t):
            if inside:
                raise RuleError(f"{where}: a comprehension ({'/'.join(sorted(_COMPREHENSIONS))}) "
                                "inside another one's list or expression is not allowed: their "
                                "cost multiplies at every application")
            target, name, args = t.children
            if str(name) == "reduce":
                raise RuleError(f"{where}: reduce (celpy's extension, not CEL) is not allowed: "
                                "its accumulator can double at each element (r + r over 30 "
                                "elements is gigabytes)")
            stack.append((target, times, True, depth + 1))
            stack.append((args, times * _elements(target, where), True, depth + 1))
            continue
        stack.extend((c, times, inside, depth + 1) for c in t.children)
    return total


def _costs_problem(trees: Sequence[tuple[str, Tree[Any]]]) -> str | None:
    total = 0
    for where, tree in trees:
        try:
            total += expression_cost(tree, where)
        except RuleError as e:
            return str(e)
        if total > MAX_RULE_COST:
            return (f"evaluating it could take over {MAX_RULE_COST:,} steps (at {where}: "
                    "a comprehension over a long list, or long expressions, at every "
                    "application): decide on fewer or shorter conditions")
    return None


@functools.cache
def _cost_env() -> celpy.Environment:
    return celpy.Environment()


def rule_cost_problem(rule: Mapping[str, Any]) -> str | None:
    """Why evaluating ``rule`` (a rule map of the schema) would cost too much, else None: a
    comprehension nested in another, or over :data:`MAX_RULE_COST` steps in all. The state
    machine still takes such a rule (chains already written may hold one); a node's
    ``/v1/tx`` refuses to register it, and the node does not evaluate it (ADR 57)."""
    texts = [(f"rule.clauses[{i}].when", str(c["when"]))
             for i, c in enumerate(rule["clauses"])]
    if str(rule["fast_track"]).strip():
        texts.append(("rule.fast_track", str(rule["fast_track"])))
    trees = []
    for where, text in texts:
        if len(text) > MAX_EXPR:
            return f"{where} is over {MAX_EXPR} characters"
        try:
            trees.append((where, _cost_env().compile(text)))
        except Exception:  # celpy raises CELParseError and lark errors
            return f"{where} does not compile"
    return _costs_problem(trees)


# -- compile and evaluate ----------------------------------------------------------------------

INT_MAX_STR_DIGITS = 4300
"""Most decimal digits CEL's ``int("…")`` and ``uint("…")`` read (Python's default bound on
``int(str)``; the digits count, leading zeros too). Python takes the bound from the process's
environment (``PYTHONINTMAXSTRDIGITS``, ``-X int_max_str_digits``): on a node started with 0 (no
bound), ``int(claims.x.y) == 1`` held for a claim of 4,400 zeros and a 1, where every other node
and auditor got ``rule_error``. :func:`pin_interpreter` sets it before every evaluation (ADR 63)."""

RECURSION_LIMIT = 2500
"""The recursion limit ``celpy.Environment()`` sets (and expects) for the process."""


def pin_interpreter() -> None:
    """Set the interpreter settings an evaluation's result depends on to the ledger's values,
    whatever the process's environment or another library made them: the digits ``int(str)``
    reads (:data:`INT_MAX_STR_DIGITS`) and at least the recursion limit celpy sets."""
    if sys.get_int_max_str_digits() != INT_MAX_STR_DIGITS:
        sys.set_int_max_str_digits(INT_MAX_STR_DIGITS)
    if sys.getrecursionlimit() < RECURSION_LIMIT:
        sys.setrecursionlimit(RECURSION_LIMIT)


def _cel(value: Any) -> Any:
    if isinstance(value, bool):
        return celtypes.BoolType(value)
    if isinstance(value, int):
        return celtypes.IntType(value)
    if isinstance(value, str):
        return celtypes.StringType(value)
    if isinstance(value, Mapping):
        return celtypes.MapType({celtypes.StringType(k): _cel(v) for k, v in value.items()})
    raise TypeError(f"{type(value).__name__} is not a rule input")


_RE2_QUIET = re2.Options()
_RE2_QUIET.log_errors = False


def _matches(text: Any, pattern: Any) -> Any:
    """CEL's ``matches`` as celpy's (RE2 search), but an RE2 that writes nothing: celpy's
    wrote a pattern that does not parse to standard error, the node's log, and a rule that
    reads a claim as the pattern would put the claim value there."""
    try:
        found = re2.compile(pattern, _RE2_QUIET).search(text)
    except re2.error as e:
        return CELEvalError("match error", e.__class__, e.args)
    return celtypes.BoolType(found is not None)


def _timestamp(value: Any, *args: Any) -> Any:
    """CEL's ``timestamp`` as celpy's, but never the evaluating machine's clock: celpy's
    (pendulum's parser) read ``"now"`` as the current time and a time of day alone
    (``"12:00"``) as that time today, so a rule reading either decided by when it ran and the
    auditor's replay of the same evidence could differ. Both are run-time errors; every other
    text gives what celpy's gave (ValueError: a rule error)."""
    if isinstance(value, str):
        if value == "now":
            raise ValueError("timestamp(\"now\") is the evaluating machine's clock: use now")
        try:
            parsed = pendulum.parsing.parse(str(value), exact=True)
        except ValueError:
            parsed = None  # celpy's own parse below fails alike
        if isinstance(parsed, dt.time):
            raise ValueError("a timestamp needs a date: a time of day alone falls on the "
                             "evaluating machine's today")
    return celtypes.TimestampType(value, *args)


_FIXED_OFFSET = re2.compile(r"^[+-]?\d\d?:\d\d$")
"""celpy's spelling of a fixed offset from UTC (``+08:00``)."""


def _same_everywhere(zone: str) -> bool:
    """Whether ``zone`` names the same zone on every machine: UTC, a fixed offset, or a name
    of the IANA database as spelled there (not ``localtime``, the machine's own zone, nor
    ``Factory``, nor a path; not ``asia/shanghai``, which only a case-insensitive file system
    finds)."""
    if zone.lower() == "utc" or _FIXED_OFFSET.match(zone):
        return True
    try:
        time_zone(zone)
    except TimeZoneError:
        return False
    return True


def _zoned(name: str) -> Any:
    """celpy's ``get…`` method ``name`` (its zone argument resolved by pendulum, i.e. by the
    machine's time zone files), refusing a zone that is not the same on every machine: a
    ``getDate("localtime")`` gave one day on a node set to Asia/Shanghai and another on an
    auditor's machine in UTC."""
    method = base_functions[name]

    def get(value: Any, *zone: Any) -> Any:
        if zone and zone[0] and not _same_everywhere(str(zone[0])):
            raise ValueError(f"{name}: the time zone is not an IANA zone name, UTC or a fixed "
                             "offset (+08:00)")
        return method(value, *zone)

    return get


_ZONED = ("getDate", "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getMonth",
          "getHours", "getMilliseconds", "getMinutes", "getSeconds")

_FUNCTIONS: dict[str, Any] = {"matches": _matches, "timestamp": _timestamp,
                              **{n: _zoned(n) for n in _ZONED}}
"""Functions that replace celpy's own in every program (:meth:`CompiledRule._compile`)."""


def _param_value(p: Mapping[str, Any]) -> Any:
    for k in ("int", "str", "bool"):
        if k in p:
            return p[k]
    raise RuleError(f"parameter {p.get('name')!r} has no value")


class CompiledRule:
    """A rule with every expression compiled. Build through :meth:`CelEngine.compile`."""

    __slots__ = ("_clauses", "_fast", "_params", "cost_problem", "hash", "rule")

    def __init__(self, rule: Mapping[str, Any], env: celpy.Environment) -> None:
        try:
            self.rule: dict[str, Any] = parse_rule(dict(rule))
        except DecodeError as e:
            raise RuleError(f"malformed rule: {e}") from e
        aliases = [alias(n["type"]) for n in self.rule["needs"]]
        if len(set(aliases)) != len(aliases):
            raise RuleError("two needed credential types share an expression name")
        self.hash = rule_hash(self.rule)
        trees: list[tuple[str, Tree[Any]]] = []
        self._clauses = [self._compile(env, f"clauses[{i}].when", c["when"], trees)
                         for i, c in enumerate(self.rule["clauses"])]
        self._fast = (self._compile(env, "fast_track", self.rule["fast_track"], trees)
                      if self.rule["fast_track"].strip() else None)
        self._params = _cel({p["name"]: _param_value(p) for p in self.rule["params"]})
        self.cost_problem = _costs_problem(trees)
        """Why evaluating it would cost too much (:func:`rule_cost_problem`), else None: still
        compiled (the state machine takes it), but a node does not evaluate it."""

    def _compile(self, env: celpy.Environment, where: str, text: str,
                 trees: list[tuple[str, Tree[Any]]]) -> Any:
        try:
            tree = env.compile(text)
        except Exception as e:  # celpy raises CELParseError and lark errors
            raise RuleError(f"{where} does not compile: {str(e).splitlines()[0]}") from e
        _check_refs(self.rule, where, tree)
        trees.append((where, tree))
        return env.program(tree, functions=_FUNCTIONS)

    @property
    def service(self) -> str:
        return str(self.rule["service"])

    def activation(self, claims: Mapping[str, Mapping[str, Any]],
                   credit: Mapping[str, int] | None, now: int) -> dict[str, Any]:
        """The expression inputs: only the claims the rule needs (ApplicationError if one is
        missing), credit fields only for a rule with a subject."""
        picked: dict[str, dict[str, Any]] = {}
        for need in self.rule["needs"]:
            got = claims.get(need["type"])
            missing = [c for c in need["claims"] if got is None or c not in got]
            if missing:
                raise ApplicationError(f"{self.service}: {need['type']!r} claims {missing} "
                                       "were not presented")
            assert got is not None
            picked[alias(need["type"])] = {c: got[c] for c in need["claims"]}
        act: dict[str, Any] = {"claims": _cel(picked), "params": self._params,
                               "now": celtypes.IntType(now)}
        if self.rule["subject"]:
            if credit is None:
                raise ApplicationError(f"{self.service} reads the applicant's credit record")
            act["credit"] = _cel({k: int(credit[k]) for k in sorted(CREDIT_FIELDS)})
        return act

    def evaluate(self, claims: Mapping[str, Mapping[str, Any]],
                 credit: Mapping[str, int] | None, now: int) -> Outcome:
        """Decide. Pure: the same inputs give the same :class:`Outcome` everywhere."""
        pin_interpreter()
        rule = self.rule
        try:
            act = self.activation(claims, credit, now)
        except (TypeError, ValueError, OverflowError) as e:  # a value CEL cannot hold (> 64 bits)
            return Outcome("needs_review", "standard", ("rule_error",),
                           _documents(rule, "needs_review", "standard"), -2, type(e).__name__)
        try:
            fired, decision, reason, expr = -1, rule["otherwise"]["decision"], \
                rule["otherwise"]["reason"], ""
            for i, prog in enumerate(self._clauses):
                if _truth(prog.evaluate(act)):
                    c = rule["clauses"][i]
                    fired, decision, reason, expr = i, c["decision"], c["reason"], c["when"]
                    break
            path = "standard"
            reasons = [reason]
            if decision == "approved" and self._fast is not None and \
                    _truth(self._fast.evaluate(act)):
                path = "fast_track"
                reasons.append(rule["fast_track_reason"])
                expr = f"{expr} ; fast_track: {rule['fast_track']}" if expr else \
                    f"fast_track: {rule['fast_track']}"
        except (CELEvalError, TypeError, ValueError, ArithmeticError) as e:
            # ArithmeticError: celpy's int() or uint() of a double that overflowed to infinity
            # raises OverflowError (of a NaN, ValueError)
            return Outcome("needs_review", "standard", ("rule_error",),
                           _documents(rule, "needs_review", "standard"), -2,
                           type(e).__name__)
        return Outcome(decision, path, tuple(reasons), _documents(rule, decision, path), fired,
                       expr)

    def decision_bytes(self, outcome: Outcome) -> bytes:
        return decision_bytes(self.service, self.hash, outcome.decision, outcome.path,
                              outcome.reasons, outcome.documents)


def _truth(value: Any) -> bool:
    if isinstance(value, CELEvalError):
        raise value
    if not isinstance(value, celtypes.BoolType):
        raise TypeError(f"an expression gave {type(value).__name__}, not a bool")
    return bool(value)


class CelEngine:
    """Compiles rules with cel-python and caches them by rule hash. Implements
    :class:`ledger.state.RuleEngine` (``check``) for the state machine."""

    def __init__(self, cache_size: int = 256) -> None:
        self._env = celpy.Environment()
        pin_interpreter()
        self._cache: dict[bytes, CompiledRule] = {}
        self._size = cache_size
        self._lock = threading.Lock()

    def compile(self, rule: Mapping[str, Any]) -> CompiledRule:
        h = rule_hash(rule)
        with self._lock:
            hit = self._cache.get(h)
        if hit is not None:
            return hit
        compiled = CompiledRule(rule, self._env)
        with self._lock:
            if len(self._cache) >= self._size:
                self._cache.pop(next(iter(self._cache)))
            self._cache[h] = compiled
        return compiled

    def check(self, rule: Mapping[str, Any]) -> None:
        """RuleEngine protocol: ValueError when the rule does not compile or names what it may
        not."""
        try:
            self.compile(rule)
        except RuleError as e:
            raise ValueError(str(e)) from e

    def cost_problem(self, rule: Mapping[str, Any]) -> str | None:
        """Why evaluating ``rule`` could cost too much at every application (ADR 57), else
        None: what ``agency propose``, ``cosign`` and ``submit`` ask (through
        :func:`ledger.state.rule_cost_problem`) before a quorum signs a rule nodes refuse."""
        return rule_cost_problem(rule)
