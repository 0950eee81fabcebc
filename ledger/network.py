"""Building a network's founding transactions: agencies, genesis, governance helpers.

Used by ``ledger-node demo``, the tests and the benchmarks. Key material is passed in; the
``demo_agency`` helper derives keys from a fixed label so golden files are reproducible — such
keys are public knowledge and only fit demos and tests.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ledger.display import hidden_character, printable
from ledger.errors import LedgerError
from ledger.keys import PrivateKey
from ledger.state import rule_cost_problem
from ledger.tx import Tx, make_tx

__all__ = ["STATUS_REPEATS", "Agency", "demo_agency", "free_text_reason", "genesis_tx",
           "governance_tx", "issue_tx", "not_a_repeat", "reason_code_problem",
           "rule_cost_of", "rule_text_problem", "status_tx"]

_REASON = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}\Z")


def reason_code_problem(reason: str) -> str | None:
    """Why ``reason`` is no reason code for a status change, or None. The reason is written on
    the public ledger for good: the tools take a code (an identifier, e.g. ``withdrawn``), so
    a name or another personal detail cannot be typed into it (ADR 47). The ledger itself
    takes any text of 1 to 64 characters, as chains already written hold."""
    if _REASON.match(reason) is None:
        return (f"the reason must be a code of 1 to 64 lowercase letters, digits, '.', '_' or "
                f"'-' (e.g. withdrawn, under-review), not {len(reason)} character(s) of text: "
                "it is public on the ledger for good, so never a name or other personal detail")
    return None

def free_text_reason(tx: Tx) -> str | None:
    """Why a ``status`` or ``credit`` transaction's reason is no reason code (None if it is, or
    for other types): the edges that take signed transactions from outside (a node's
    ``/v1/tx``) refuse it as the tools refuse to write it (ADR 47, 55). The ledger itself
    still takes any text of 1 to 64 characters, as chains already written hold."""
    if tx.type not in ("status", "credit"):
        return None
    reason = tx.body.get("reason")
    return None if not isinstance(reason, str) else reason_code_problem(reason)


def _unclear_text(text: str, allowed: str) -> str | None:
    """Why ``text`` is not as a claim must be (NFC, nothing hidden), never quoting it; or None."""
    if not unicodedata.is_normalized("NFC", text):
        return ("is not in Unicode's composed form (NFC): string claims must be NFC, so a "
                "text typed another way (an accent as a separate mark) would never equal one; "
                "normalize it to NFC")
    odd = hidden_character(text, allowed)
    if odd is not None:
        return (f"holds the invisible or control character {printable(odd)} (U+{ord(odd):04X}):"
                " string claims may not hold one, and it would not look like what it is")
    return None


def rule_cost_of(tx: Tx) -> str | None:
    """Why a ``register_rule`` transaction's rule would cost too much to evaluate at every
    application, as the installed rule engine judges it (:func:`ledger.state.rule_cost_problem`,
    ADR 57); None for other transactions. The ledger still takes such a rule (chains already
    written may hold one): ``agency propose``, ``cosign``, ``submit`` and a node's ``/v1/tx``
    refuse it, as they refuse rule text no claim could hold."""
    if tx.type != "governance" or tx.body.get("action") != "register_rule":
        return None
    return rule_cost_problem(tx.body["args"]["rule"])


def rule_text_problem(tx: Tx) -> str | None:
    """Why a ``register_rule`` transaction's rule holds text a string claim could not (None if
    it holds none, or for other transactions): its title, a string parameter or an expression
    (where string literals are) not in NFC, or with a control, format or invisible character
    (line breaks and tabs allowed in expressions). Claims are refused unless NFC and plain
    (:func:`ledger.credentials.check_claims`), so such a rule would never match one, or show
    officials another text than it compares (ADR 53). The tools that build and submit rules
    (``agency propose``, ``cosign``, ``submit``) and a node's ``/v1/tx`` refuse it; the ledger
    itself still takes it, as chains already written may hold one."""
    if tx.type != "governance" or tx.body.get("action") != "register_rule":
        return None
    rule = tx.body["args"]["rule"]
    texts: list[tuple[str, str, str]] = [("rule.title", rule["title"], " \u3000")]
    texts += [(f"rule.params[{i}].str (parameter {p['name']!r})", p["str"], " \u3000")
              for i, p in enumerate(rule["params"]) if "str" in p]
    texts += [(f"rule.clauses[{i}].when", c["when"], " \u3000\n\r\t")
              for i, c in enumerate(rule["clauses"])]
    texts.append(("rule.fast_track", rule["fast_track"], " \u3000\n\r\t"))
    for where, text, allowed in texts:
        why = _unclear_text(text, allowed)
        if why is not None:
            return f"{where} {why}"
    return None


_T = TypeVar("_T")

STATUS_REPEATS = 16
"""How many seconds a status change's ``ts`` may move forward past a change the ledger holds
already (the same credential, status, reason and second sign to the same transaction)."""


@dataclass(frozen=True)
class Agency:
    """An agency's identity and its two keys (node: blocks/checkpoints; issuer: txs/credentials)."""

    id: str
    name: str
    node_key: PrivateKey
    issuer_key: PrivateKey

    def spec(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "node_key": self.node_key.public.raw,
                "issuer_key": self.issuer_key.public.raw}


def demo_agency(agency_id: str, name: str, label: str = "demo") -> Agency:
    """An agency with keys derived from ``label`` — reproducible, therefore NOT secret."""

    def seed(role: str) -> bytes:
        return hashlib.sha256(f"credledger/{label}/{agency_id}/{role}".encode()).digest()

    return Agency(agency_id, name, PrivateKey(seed("node")), PrivateKey(seed("issuer")))


def genesis_tx(network: str, agencies: Sequence[Agency], quorum: int, time: int) -> Tx:
    body = {"network": network, "time": time, "quorum": quorum,
            "agencies": [a.spec() for a in agencies]}
    return make_tx(network, "genesis", body, [a.issuer_key for a in agencies])


def governance_tx(network: str, seq: int, action: str, args: Mapping[str, Any],
                  signers: Iterable[Agency]) -> Tx:
    return make_tx(network, "governance", {"seq": seq, "action": action, "args": dict(args)},
                   [a.issuer_key for a in signers])


def issue_tx(network: str, agency: Agency, credential_id: bytes, kind: str, status_index: int,
             valid_from: int, valid_until: int, ts: int, key: PrivateKey | None = None) -> Tx:
    body = {"credential_id": credential_id, "issuer": agency.id, "type": kind,
            "valid_from": valid_from, "valid_until": valid_until, "status_index": status_index,
            "ts": ts}
    return make_tx(network, "issue", body, [key or agency.issuer_key])


def status_tx(network: str, agency: Agency, credential_id: bytes, status: str, reason: str,
              ts: int) -> Tx:
    problem = reason_code_problem(reason)
    if problem is not None:
        raise LedgerError(problem)
    body = {"credential_id": credential_id, "status": status, "reason": reason, "ts": ts}
    return make_tx(network, "status", body, [agency.issuer_key])


def not_a_repeat(submit: Callable[[int], _T], is_repeat: Callable[[_T], bool], now: int) -> _T:
    """``submit(ts)`` for a status change signed at ``now``, and again a second later while
    ``is_repeat`` says the ledger holds that very transaction already. Signatures are
    deterministic, so suspending, reinstating and suspending again within one second signs the
    first transaction twice: the ledger would call the repeat a duplicate and change nothing,
    and the credential would stay valid. LedgerError after :data:`STATUS_REPEATS` seconds."""
    for ts in range(now, now + STATUS_REPEATS):
        got = submit(ts)
        if not is_repeat(got):
            return got
    raise LedgerError(f"the ledger holds this change signed at each of {STATUS_REPEATS} "
                      f"seconds from {now} already; nothing changed (try again in a few "
                      "seconds)")
