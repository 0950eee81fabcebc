"""``scripts/bench approve``: licence-rule decisions per second vs one core's Ed25519 verify.

One decision = CompiledRule.evaluate (the CEL clauses and the fast-track expression over the
verified claims, the credit summary and the block time) plus the canonical decision bytes; the
rule is compiled once, as at registration. The reference is measured before and after.
"""

from __future__ import annotations

import time
from typing import Any

from contracts.catalogue import RULES
from contracts.rules import CelEngine


def bench_approve(verify_rate: Any, seconds: float = 3.0) -> dict[str, float]:
    before = verify_rate()
    compiled = CelEngine().compile(RULES["business-licence"])
    cases = [({"business-registration": {"registration_no": f"REG-{i}", "scope": scope}},
              {"score": score, "last_serious": serious, "events": 3})
             for i, (scope, score, serious) in enumerate(
                 [("retail", 750, 0), ("catering", 650, 0), ("retail", 820, 1_600_000_000),
                  ("gambling", 900, 0), ("retail", 250, 0)])]
    now = 1_767_225_600
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for claims, credit in cases:
            compiled.decision_bytes(compiled.evaluate(claims, credit, now))
        n += len(cases)
    rate = n / (time.perf_counter() - start)
    after = verify_rate()
    ref = (before + after) / 2
    return {"ref_verify_per_s_one_core": ref, "approve_decisions_per_s": rate,
            "approve_ratio": rate / ref}


def report(got: dict[str, float]) -> None:
    ref = got["ref_verify_per_s_one_core"]
    print(f"reference  one core VerifyKey.verify       {ref:10,.0f} /s")
    print(f"approve    business-licence decisions      {got['approve_decisions_per_s']:10,.0f} /s"
          f"   ratio {got['approve_ratio']:.3f}")
