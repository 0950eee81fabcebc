"""Re-checking an approval decision (for ``ledger audit`` and for anyone holding the evidence).

:func:`reevaluate` is pure: given the registry in force at the evaluation height, a state view
(any later state of the same chain: credit events are filtered by the height of the
transactions that recorded and withdrew them), the committed ``approval`` transaction, the
agency's evidence record and the block time at the evaluation height, it evaluates the rule
again and returns the decision bytes. :func:`stated` gives the bytes the transaction itself
states; an auditor compares the two (:func:`check_approval` does both and raises on a
difference). Without the evidence record only :func:`stated` (and the on-chain checks the state
machine already made) can be had.
"""

from __future__ import annotations

from contracts.credit import summary
from contracts.errors import ContractError
from contracts.evidence import Evidence
from contracts.rules import CelEngine, outcome_of_tx
from ledger.state import Registry, StateView
from ledger.tx import Tx

__all__ = ["check_approval", "reevaluate", "stated"]


def stated(registry: Registry, approval: Tx) -> bytes:
    """The decision bytes ``approval`` states (its rule must be in ``registry``)."""
    rule = registry.rule_by_hash(approval.body["rule_hash"])
    if rule is None:
        raise ContractError("the approval's rule version is not in this registry")
    return outcome_of_tx(rule, approval.body)


def reevaluate(registry_at_h: Registry, view: StateView, approval: Tx, evidence: bytes, *,
               block_time: int, engine: CelEngine | None = None) -> bytes:
    """Evaluate ``approval``'s rule again from ``evidence``; the decision bytes."""
    if approval.type != "approval":
        raise ContractError(f"a {approval.type} transaction is not an approval")
    ev = Evidence.from_bytes(evidence)
    b = approval.body
    if ev.digest != b["evidence"]:
        raise ContractError("the evidence record's digest is not the one on the ledger")
    if ev.service != b["service"] or ev.rule_hash != b["rule_hash"]:
        raise ContractError("the evidence record is for another service or rule version")
    if ev.time != block_time:
        raise ContractError(f"evidence time {ev.time} is not the block time {block_time} of "
                            f"height {ev.height}")
    rule = registry_at_h.rule(b["service"])
    if rule is None or registry_at_h.rule_by_hash(b["rule_hash"]) != rule:
        raise ContractError(f"rule version {b['rule_hash'].hex()[:16]} was not in force at "
                            f"height {ev.height}")
    compiled = (engine or CelEngine()).compile(rule)
    credit = None
    if rule["subject"]:
        policy = registry_at_h.credit_policy()
        if policy is None or not ev.subject:
            raise ContractError("a credit rule's evidence needs a subject and a policy")
        credit = summary(view, policy, ev.subject, height=ev.height, time=ev.time).to_map()
        if credit != dict(ev.credit):
            raise ContractError("the credit record at the evaluation height differs from the "
                                "evidence")
    outcome = compiled.evaluate(ev.claims, credit, ev.time)
    return compiled.decision_bytes(outcome)


def check_approval(registry_at_h: Registry, view: StateView, approval: Tx, evidence: bytes, *,
                   block_time: int, engine: CelEngine | None = None) -> None:
    """None if re-evaluation gives the decision ``approval`` states; ContractError otherwise."""
    again = reevaluate(registry_at_h, view, approval, evidence, block_time=block_time,
                       engine=engine)
    if again != stated(registry_at_h, approval):
        raise ContractError("re-evaluating the rule gives another decision than the ledger's")
