"""Governance proposals passed from agency to agency until the quorum has signed (ADR 36).

A governance transaction changes the registry (agencies, keys, grants, credential types, the
credit policy, approval rules, the quorum) and needs the issuer signatures of at least the quorum
of current agencies. The agencies' keys live with each agency, so the transaction travels: one
agency proposes it (and signs first), the others each add their signature (:meth:`Tx.sign`), and
any of them submits it once enough have signed. The proposal file is the transaction itself, in
its wire form, so nothing but the signatures changes on the way and every signer signs the same
payload.

This module is the part without a terminal: turning a person's JSON arguments into a body, saying
what a proposal does, and counting who has signed. :mod:`ledger.cli` (``agency propose``,
``agency cosign``, ``agency submit``) is the part with one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ledger.errors import DecodeError
from ledger.keys import PrivateKey, PublicKey
from ledger.state import MAX_BACKDATE
from ledger.timetext import utc_text
from ledger.tx import Tx, make_tx

__all__ = ["AT_NOT_BEFORE_BLOCK", "KEY_FIELDS", "TIME_FIELDS", "Signer", "args_from_json",
           "describe", "parse_proposal", "propose", "signers", "unix_time"]

KEY_FIELDS = frozenset({"node_key", "issuer_key", "new_key", "kid"})
"""Arguments that are 32 bytes on the ledger (a public key or a key id), written as 64 hex digits
in the JSON a person edits."""
TIME_FIELDS = frozenset({"from", "until", "at"})
"""Arguments that are Unix times on the ledger; the JSON may also give a UTC date (2027-01-01)
or an ISO 8601 time with its offset (2027-01-01T08:00:00+08:00)."""


def args_from_json(args: Any, where: str = "args", *, convert: bool = True) -> Any:
    """The arguments of a governance action as the ledger wants them, from JSON: hex key fields
    to bytes, date strings in time fields to Unix times. Raises :class:`DecodeError` naming the
    member. Everything else is left to the transaction's own schema check (:func:`make_tx`).

    Key and time fields are converted where actions define them: among the arguments and in an
    ``agency`` record (``add_agency``), not inside a credential type, rule or policy, whose
    claim names may be ``from`` or ``kid`` too."""
    if isinstance(args, list):
        return [args_from_json(v, f"{where}[{i}]", convert=False) for i, v in enumerate(args)]
    if isinstance(args, float):  # also NaN and Infinity, which Python's JSON reader accepts
        raise DecodeError(f"{args!r} is not an integer (the ledger has no fractions: write 2, "
                          "not 2.0)", where)
    if isinstance(args, int) and not isinstance(args, bool) and \
            not -(2**63) <= args < 2**64:
        raise DecodeError("is outside the range of a 64-bit integer", where)
    if not isinstance(args, dict):
        return args
    out: dict[str, Any] = {}
    for name, value in args.items():
        at = f"{where}.{name}"
        if convert and name in KEY_FIELDS and isinstance(value, str):
            try:
                out[name] = bytes.fromhex(value)
            except ValueError:
                raise DecodeError("must be 64 hex digits", at) from None
            if len(out[name]) != 32:
                raise DecodeError("must be 64 hex digits", at)
        elif convert and name in TIME_FIELDS and isinstance(value, str):
            out[name] = unix_time(value, at)
        else:
            out[name] = args_from_json(value, at,
                                       convert=convert and where == "args" and name == "agency")
    return out


def unix_time(text: str, where: str) -> int:
    """A date ``YYYY-MM-DD`` (UTC midnight) or an ISO 8601 time with its offset, as a Unix
    time; :class:`DecodeError` naming ``where`` otherwise."""
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        if _no_day(text[:10]):  # the shape of a day, not one (2025-02-29)
            raise DecodeError(f"{text[:10]} is no day of the calendar", where) from None
        raise DecodeError("must be a Unix time (a JSON number, not a string), a date "
                          "YYYY-MM-DD or an ISO 8601 time with its offset", where) from None
    if moment.tzinfo is None:
        raise DecodeError("an ISO 8601 time needs its offset (e.g. +08:00 or Z)", where)
    # the second it falls in: a time just before 1970 is before it (int() rounds towards 0)
    return math.floor(moment.timestamp())


def _no_day(text: str) -> bool:
    """Whether ``text`` is written as a day YYYY-MM-DD that the calendar has not."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return False
    try:
        dt.date.fromisoformat(text)
    except ValueError:
        return True
    return False


def propose(network: str, seq: int, action: str, args: Mapping[str, Any],
            key: PrivateKey) -> Tx:
    """The governance transaction ``seq`` doing ``action``, signed by the proposer's issuer key.
    Raises :class:`DecodeError` if the action or its arguments do not fit the schema."""
    return make_tx(network, "governance", {"seq": seq, "action": action, "args": dict(args)},
                   [key])


def parse_proposal(raw: bytes) -> Tx:
    """A proposal file's transaction (schema-checked; signatures not yet verified)."""
    tx = Tx.from_bytes(raw)
    if tx.type != "governance":
        raise DecodeError(f"a {tx.type!r} transaction, not a governance proposal", "tx")
    return tx


@dataclass(frozen=True)
class Signer:
    kid: bytes
    agency: str | None
    """The agency the key belongs to, or None if the registry does not know the key."""


def signers(tx: Tx, public_keys: Mapping[bytes, PublicKey],
            owners: Mapping[bytes, str]) -> list[Signer]:
    """Who signed ``tx``, each signature verified with the registry's key
    (:meth:`Tx.verify_signatures`: :class:`SignatureError` for a signature that does not verify
    or a key the registry lacks)."""
    tx.verify_signatures(public_keys)
    return [Signer(s.kid, owners.get(s.kid)) for s in tx.sigs]


AT_NOT_BEFORE_BLOCK = frozenset({"rotate_key", "withdraw_grant", "withdraw_credit_grant"})
"""Actions whose ``at`` the ledger applies at its block's time when it is earlier (a rotation
or a withdrawal never rewrites the past: :mod:`ledger.state`)."""


def describe(tx: Tx, now: int | None = None) -> list[str]:
    """What the proposal does, for a person about to sign it: a heading, then one line per
    argument (times also as UTC). With ``now``, an ``at`` before it that the ledger will move
    to the block's time is said so."""
    body = tx.to_dict()["body"]
    lines = [f"governance #{body['seq']} on {tx.net!r}: {body['action']}"]
    for name, value in sorted(body["args"].items()):
        shown = json.dumps(value, sort_keys=True, ensure_ascii=False)
        if name in TIME_FIELDS and type(value) is int:
            shown += f" ({utc_text(value)})"
        lines.append(f"  {name} = {shown}")
    if body["action"] == "invalidate_key":
        # A verifier judges an issuer key at a credential's valid_from, which a signer may
        # date up to MAX_BACKDATE before its block (ADR 52; SECURITY.md's runbook).
        lines.append(f"  note: a thief's credential anchored after 'from' may be dated up to "
                     f"{MAX_BACKDATE // 60} minutes before it and still verify: to shut out "
                     "everything signed since a compromise, invalidate from the time of "
                     f"compromise minus {MAX_BACKDATE // 60} minutes (and the agencies' clock "
                     "lag)")
    at = body["args"].get("at")
    if body["action"] in AT_NOT_BEFORE_BLOCK and now is not None and type(at) is int \
            and at < now:
        # shown the time given, a signer took it for the time the change happens
        lines.append(f"  note: 'at' is before now, and the ledger applies {body['action']} "
                     f"from the block that commits it at the earliest, not from {utc_text(at)}"
                     + (": the old key stays valid until that block, and what it signed "
                        "until then still verifies (to shut out what a stolen key signed "
                        "since an earlier time, invalidate_key)"
                        if body["action"] == "rotate_key" else
                        ": what the grant covered until that block stays covered"))
    return lines
