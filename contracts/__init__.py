"""Approval rules (CEL), credit scoring and the service catalogue. Evaluation is pure.

Imports only ``ledger``. The state machine uses :class:`CelEngine` through the
:class:`ledger.state.RuleEngine` protocol (ADR 17); :func:`install` puts it in place.
Errors: see :mod:`contracts.errors`.
"""

from __future__ import annotations

from contracts.audit import check_approval, reevaluate, stated
from contracts.credit import CreditSummary, pseudonym, score, summary
from contracts.errors import ApplicationError, ContractError, RuleError
from contracts.evidence import Evidence
from contracts.rules import CelEngine, CompiledRule, Outcome, decision_bytes

__all__ = [
    "ApplicationError",
    "CelEngine",
    "CompiledRule",
    "ContractError",
    "CreditSummary",
    "Evidence",
    "Outcome",
    "RuleError",
    "check_approval",
    "decision_bytes",
    "install",
    "pseudonym",
    "reevaluate",
    "score",
    "stated",
    "summary",
]


def install() -> CelEngine:
    """Install one shared :class:`CelEngine` as the state machine's rule engine; return it."""
    from ledger.state import use_rule_engine

    engine = CelEngine()
    use_rule_engine(engine)
    return engine
