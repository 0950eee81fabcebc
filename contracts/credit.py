"""Keyed pseudonyms and the deterministic credit score.

A subject is named on the chain only by ``pseudonym(identifier, secret)``: HMAC-SHA256 of the
person's or business's identifier under the network secret that member nodes hold and the chain
does not. :func:`score` is a pure function of the recorded events, the policy in force and a
height: every node and every auditor computes the same integer.

Score at height ``h`` (block time ``t``): ``clamp(base + Σ contribution, min, max)`` over the
events committed at or before ``h`` and not withdrawn at or before ``h``, with ``date <= t <
expiry``; ``contribution = points * weight / 100``, halved once per full ``half_life`` of age
(``half_life`` 0: no decay), every division truncating toward zero.
"""

from __future__ import annotations

import hashlib
import hmac
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contracts.errors import ContractError
from ledger.chain import parse_index_value, txid_key
from ledger.state import CreditEvent, StateView, credit_events, policy_weights

__all__ = ["CreditSummary", "event_height", "pseudonym", "score", "secret_fingerprint",
           "summary"]

MIN_SECRET = 16


_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def pseudonym(identifier: str, secret: bytes) -> bytes:
    """The subject's keyed pseudonym: HMAC-SHA256(secret, NFC-trimmed identifier, its ASCII
    letters in capitals).

    NFC first, so one identifier typed with composed or decomposed characters (a business name
    in a registration number, say) is one subject, not two with split credit records. ASCII
    letters have no case: an identity number's check letter typed ``x`` at an agency's desk
    is the ``X`` its holder's credential carries (it was a subject of its own, and its events
    reached no one's score: ADR 70)."""
    if len(secret) < MIN_SECRET:
        raise ContractError(f"the network credit secret must be at least {MIN_SECRET} bytes")
    ident = unicodedata.normalize("NFC", identifier).strip()
    if not ident:
        raise ContractError("an empty identifier has no pseudonym")
    # One subject, one pseudonym: a registration number typed in full-width characters (an
    # IME) or with a zero-width space would be another subject, its credit records split off.
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in ident):
        raise ContractError("the identifier holds an invisible or control character: type it "
                            "again without it")
    if unicodedata.normalize("NFKC", ident) != ident:
        raise ContractError("the identifier holds full-width or other compatibility characters "
                            "(as an input method types them): type it in ordinary (half-width) "
                            "characters")
    ident = ident.translate(_ASCII_UPPER)
    return hmac.new(secret, b"credledger/v1/subject\x00" + ident.encode(), hashlib.sha256).digest()


def secret_fingerprint(secret: bytes) -> bytes:
    """8 bytes that tell two copies of the network's credit secret apart without giving it
    away (HMAC under its own domain: no pseudonym is ever this value). Nodes publish it, so a
    node keyed with another secret, whose pseudonyms would find no one's events, is caught."""
    return hmac.new(secret, b"credledger/v1/secret-fingerprint\x00", hashlib.sha256).digest()[:8]


def _tdiv(a: int, b: int) -> int:
    """Integer division truncating toward zero (symmetric for penalties and rewards)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def event_height(view: StateView, txid: bytes) -> int | None:
    raw = view.get(txid_key(txid))
    return None if raw is None else parse_index_value(raw)[1]


@dataclass(frozen=True, slots=True)
class CreditSummary:
    """What a rule may read about the applicant: ``credit.score``, ``credit.last_serious``
    (block-time seconds of the latest serious negative event in force, 0 if none) and
    ``credit.events`` (events counted)."""

    score: int
    last_serious: int
    events: int

    def to_map(self) -> dict[str, int]:
        return {"score": self.score, "last_serious": self.last_serious, "events": self.events}


def _in_force(view: StateView, e: CreditEvent, height: int) -> bool:
    h = event_height(view, e.txid)
    if h is None or h > height:
        return False
    if e.withdrawn_by:
        w = event_height(view, e.withdrawn_by)
        if w is not None and w <= height:
            return False
    return True


def summary(view: StateView, policy: Mapping[str, Any], subject: bytes, *, height: int,
            time: int) -> CreditSummary:
    """Score and serious-event date of ``subject`` at ``height`` (block time ``time``)."""
    weights = policy_weights(policy)
    total, last_serious, counted = 0, 0, 0
    half_life = int(policy["half_life"])
    for e in credit_events(view, subject):
        if not _in_force(view, e, height) or e.date > time:
            continue
        if e.points <= -int(policy["serious_at"]):
            last_serious = max(last_serious, e.date)
        if time >= e.expiry:
            continue
        counted += 1
        c = _tdiv(e.points * weights.get(e.category, 0), 100)
        if half_life:
            c = _tdiv(c, 1 << min((time - e.date) // half_life, 62))
        total += c
    s = max(int(policy["min"]), min(int(policy["max"]), int(policy["base"]) + total))
    return CreditSummary(s, last_serious, counted)


def score(view: StateView, policy: Mapping[str, Any], subject: bytes, *, height: int,
          time: int) -> int:
    """``score(subject, at_height)``: see the module docstring."""
    return summary(view, policy, subject, height=height, time=time).score
