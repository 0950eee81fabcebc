"""Credentials of registered types: claim checks, derived predicates, issuance with an anchor.

An agency issues an SD-JWT VC (:mod:`ledger.sdjwt`) of a type registered on the ledger and gets
back the ``issue`` transaction that anchors SHA-256 of the issuer-signed JWT: no claim value goes
on the chain. Status indexes are drawn at random from a fixed-size list per issuer and type; the
ledger refuses an index used before (``status_index_used``), and the caller draws again.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import sdjwt
from ledger.display import hidden_character, printable
from ledger.errors import LedgerError
from ledger.keys import PrivateKey, PublicKey
from ledger.state import (
    RESERVED_TYPES,
    STATUS_LIST_SIZE,
    STATUS_LISTS,
    Registry,
    status_list_of,
)
from ledger.statuslist import INVALID, SUSPENDED, VALID, StatusList
from ledger.timetext import local_day
from ledger.tx import Tx, make_tx

__all__ = [
    "RESERVED_TYPES",
    "STATUS_DRAWS",
    "STATUS_FULL",
    "STATUS_LISTS",
    "STATUS_LIST_SIZE",
    "STATUS_SAMPLE",
    "ClaimError",
    "IssuedCredential",
    "check_claims",
    "check_identifiers",
    "draw_status_index",
    "identifier_claims",
    "issue_batch",
    "issue_credential",
    "issuer_uri",
    "status_list",
    "status_list_uri",
    "status_lists_in_order",
]

_STATUS_VALUE = {"valid": VALID, "revoked": INVALID, "suspended": SUSPENDED}


class ClaimError(LedgerError):
    """Claims do not match the registered credential type (names the claim, never its value)."""


def issuer_uri(network: str, agency: str) -> str:
    return f"urn:credledger:{network}:{agency}"


def status_list_uri(network: str, agency: str, kind: str, number: int = 0) -> str:
    """The URI of ``agency``'s status list ``number`` for type ``kind``: the first list has
    the URI lists had before there were several (ADR 55), the next ones end in ``:1``, ``:2``…
    (identifiers hold no ``:``)."""
    base = f"urn:credledger:{network}:status-list:{agency}:{kind}"
    return base if number == 0 else f"{base}:{number}"


STATUS_DRAWS = 16
"""Random entries :func:`draw_status_index` tries in a list before it samples the list to
decide whether it is full."""

STATUS_SAMPLE = 256
"""Entries sampled in a list where :data:`STATUS_DRAWS` draws in a row were used."""

STATUS_FULL = 0.85
"""The share of a list's sampled entries in use from which :func:`draw_status_index` takes
the list as full and goes on to the next."""


def draw_status_index(taken: Callable[[int], bool], first_list: int = 0, *,
                      draws: int = STATUS_DRAWS,
                      rng: Callable[[int], int] = secrets.randbelow) -> int:
    """A random status index no credential uses yet (``taken(index)`` says if one does), in the
    first list from ``first_list`` on that is not full: a type an agency issues to a whole
    district (1.26 million inhabitants) fills the first list of 1,048,576 entries and goes on
    in the next. Random within a list, so an index tells nothing of the order of issuance
    there (the list's number tells roughly when).

    :data:`STATUS_DRAWS` used entries in a row happen now and then in a list far from full
    (in one issuance of 65,000 at half full: a node issuing half a million credentials would
    leave its list half empty), so a list is left only when a sample of
    :data:`STATUS_SAMPLE` entries finds at least :data:`STATUS_FULL` of them used: lists
    fill to about 78% (the last one on to its end), and an issuance reads 2 to 3 index keys
    on average over a list's filling, about 9 near the end (ADR 55). LedgerError once every
    list is full."""
    for number in range(first_list, STATUS_LISTS):
        base = number * STATUS_LIST_SIZE
        for _ in range(draws):
            index = base + rng(STATUS_LIST_SIZE)
            if not taken(index):
                return index
        free, used = None, 0
        for _ in range(STATUS_SAMPLE):
            index = base + rng(STATUS_LIST_SIZE)
            if taken(index):
                used += 1
            elif free is None:
                free = index
        if free is not None and (used < STATUS_FULL * STATUS_SAMPLE
                                 or number == STATUS_LISTS - 1):  # the last: to its end
            return free
    raise LedgerError(f"every status list is full ({STATUS_LISTS} lists of {STATUS_LIST_SIZE} "
                      "entries): register a new credential type to issue more")


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
MAX_INT_CLAIM = 2**53 - 1
"""Largest magnitude of an ``int`` claim: what every JSON reader holds exactly (RFC 8259 §6)."""


def _date(value: Any, name: str) -> dt.date:
    # fromisoformat alone also takes "19550302xx", "2020-W01-1" and "20200101T0" (3.11)
    if isinstance(value, str) and _DATE.match(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ClaimError(f"claim {name!r} must be a date YYYY-MM-DD")


def _kind_ok(kind: str, value: Any, name: str) -> bool:
    if kind == "string":
        return isinstance(value, str) and 0 < len(value) <= 1000
    if kind == "int":
        return type(value) is int and -MAX_INT_CLAIM <= value <= MAX_INT_CLAIM
    if kind == "bool":
        return type(value) is bool
    _date(value, name)  # "date": raises with the claim's name
    return True


def check_claims(type_def: Mapping[str, Any], claims: Mapping[str, Any]) -> None:
    """Every registered claim present with its kind, and no other claim; else ClaimError."""
    want: Mapping[str, str] = type_def["claims"]
    missing = sorted(set(want) - set(claims))
    extra = sorted(set(claims) - set(want))
    if missing or extra:
        raise ClaimError(f"claims do not match the type: missing {missing}, not registered "
                         f"{extra}")
    for name, kind in want.items():
        if not _kind_ok(kind, claims[name], name):
            raise ClaimError(f"claim {name!r} must be of kind {kind}" + (
                f" (at most {MAX_INT_CLAIM:,} either side of 0)" if kind == "int" else
                " of 1 to 1,000 characters" if kind == "string" else ""))
        if kind == "string":
            _plain_text(name, claims[name])


def _plain_text(name: str, value: str) -> None:
    """ClaimError for a string claim a rule or an official could take for another text: not
    in Unicode's composed form (NFC: ``Cha\u0301ng`` is ``Cháng`` to the eye, not to a rule),
    with control, format or invisible characters (a zero-width space, a bidi override), or
    nothing visible. Refused, never rewritten: the issuer signs what it typed."""
    if not unicodedata.is_normalized("NFC", value):
        raise ClaimError(f"claim {name!r} is not in Unicode's composed form (NFC): the same "
                         "letters typed another way (an accent as a separate mark) would not "
                         "equal the usual form in an approval rule; normalize it to NFC")
    odd = hidden_character(value)
    if odd is not None and unicodedata.category(odd) == "Cs":
        raise ClaimError(f"claim {name!r} holds text that is not valid Unicode: a lone "
                         f"surrogate {printable(odd)}, from bytes that are not UTF-8 or a JSON "
                         "\\uD800-\\uDFFF escape")
    if odd is not None:
        raise ClaimError(f"claim {name!r} holds the invisible or control character "
                         f"{printable(odd)} (U+{ord(odd):04X}): its text would not look like "
                         "what it is")
    if not value.strip(" \u3000"):
        raise ClaimError(f"claim {name!r} holds nothing visible")


def _age_at_least(birth: dt.date, years: int, on: dt.date) -> bool:
    try:
        threshold = birth.replace(year=birth.year + years)
    except ValueError:  # born on 29 February, threshold year not a leap year
        threshold = dt.date(birth.year + years, 3, 1)
    return on >= threshold


def derive_claims(type_def: Mapping[str, Any], claims: Mapping[str, Any],
                  at: int, zone: dt.tzinfo = dt.UTC) -> dict[str, bool]:
    """Predicates the type declares, computed at issuance time ``at`` (e.g. ``age_over_18``).

    Birthdays count by the calendar of ``zone``, the issuing agency's time zone (ADR 56): in
    Asia/Shanghai a person born on 30 November 2008 is 18 from 00:00 local time on 30 November
    2026, 16:00 UTC the day before."""
    today = local_day(at, zone)
    out = {}
    for name, spec in type_def.get("derived", {}).items():
        birth = _date(claims[spec["claim"]], spec["claim"])
        if birth > today:  # an age cannot be derived from a date still to come: a typo
            # the date is not quoted: errors name claims, never their values
            raise ClaimError(f"claim {spec['claim']!r} is after the day of issue ({today})")
        out[name] = _age_at_least(birth, int(spec["age_over"]), today)
    return out


@dataclass(frozen=True)
class IssuedCredential:
    """The holder's credential and the transaction that anchors it."""

    sd_jwt: sdjwt.IssuedSdJwt
    anchor: Tx
    status_index: int

    @property
    def credential_id(self) -> bytes:
        return self.sd_jwt.credential_id


def status_lists_in_order(numbers: Sequence[int]) -> int:
    """The list issuance goes on in, given the numbers of a type's lists holding credentials
    (:meth:`ledger.store.Store.status_lists`): the last of the run 0, 1, 2 … without a gap.
    One credential anchored far out (by other software) does not make the lists before it
    look full."""
    last = 0
    for expected, number in enumerate(numbers):
        if number != expected:
            break
        last = number
    return last


def identifier_claims(registry: Registry, kind: str) -> dict[str, str]:
    """Claim of type ``kind`` → the service whose registered approval rule reads it as its
    applicant's identifier (the rule's ``subject``: whose credit record counts)."""
    out: dict[str, str] = {}
    for service in registry.services():
        rule = registry.rule(service)
        subject = rule.get("subject") if rule is not None else None
        if subject and subject[0] == kind:
            out.setdefault(subject[1], service)
    return out


def check_identifiers(registry: Registry, kind: str, claims: Mapping[str, Any],
                      names: Iterable[str] = ()) -> None:
    """ClaimError for an identifier claim (one an approval rule reads as its applicant's, or
    one of ``names``) in full-width or other compatibility characters (NFKC would change it),
    as an input method types them: its keyed pseudonym would be another subject's, so every
    credit-checked application with it would be refused, or find no record (ADR 55)."""
    readers = identifier_claims(registry, kind)
    for name in sorted({*readers, *names}):
        value = claims.get(name)
        if isinstance(value, str) and unicodedata.normalize("NFKC", value) != value:
            why = (f"the service {readers[name]!r} reads it as the applicant's identifier"
                   if name in readers else "it is the holder's identifier for credit records")
            raise ClaimError(f"claim {name!r} holds full-width or other compatibility "
                             f"characters (as an input method types them), and {why}: type it "
                             "in ordinary (half-width) characters")


def issue_credential(*, registry: Registry, agency: str, issuer_key: PrivateKey, kind: str,
                     claims: Mapping[str, Any], holder_jwk: Mapping[str, Any], now: int,
                     valid_for: int, rng: Callable[[int], bytes] = os.urandom,
                     status_index: int | None = None, decoys: int = 0,
                     zone: dt.tzinfo = dt.UTC) -> IssuedCredential:
    """Check ``claims`` against the registered type, sign the SD-JWT VC, build its anchor.

    Raises ClaimError for claims that do not fit the type, LedgerError if the agency may not
    issue it now (the ledger would refuse the anchor anyway; this fails before signing).
    """
    type_def = registry.type_def(kind)
    if type_def is None:
        raise ClaimError(f"credential type {kind!r} is not registered")
    if not registry.agency_current(agency, now):  # a removed agency's grant runs on (ADR 69)
        raise LedgerError(f"{agency!r} is not a member of the network at {now}")
    if not registry.grant_covers(agency, kind, now):
        raise LedgerError(f"{agency!r} holds no grant to issue {kind!r} at {now}")
    if not registry.key_valid(issuer_key.kid, now, "issuer") or \
            (registry.key(issuer_key.kid) or {}).get("agency") != agency:
        raise LedgerError(f"this key is not a valid issuer key of {agency!r} at {now} "
                          "(rotated or invalidated by governance: sign with the agency's "
                          "current issuer key)")
    check_claims(type_def, claims)
    check_identifiers(registry, kind, claims)
    all_claims = {**claims, **derive_claims(type_def, claims, now, zone)}
    if status_index is None:
        status_index = int.from_bytes(rng(4), "big") % STATUS_LIST_SIZE
    number, entry = status_list_of(status_index)
    net = registry.network
    issued = sdjwt.issue_sd_jwt(
        issuer_key=issuer_key, issuer_kid=issuer_key.kid.hex(), claims=all_claims,
        holder_jwk=holder_jwk, vct=kind, iss=issuer_uri(net, agency), iat=now, nbf=now,
        exp=now + valid_for,
        status={"status_list": {"idx": entry,
                                "uri": status_list_uri(net, agency, kind, number)}},
        decoys=decoys, rng=rng)
    body = {"credential_id": issued.credential_id, "issuer": agency, "type": kind,
            "valid_from": now, "valid_until": now + valid_for, "status_index": status_index,
            "ts": now}
    anchor = make_tx(net, "issue", body, [issuer_key])
    return IssuedCredential(issued, anchor, status_index)


def issue_batch(*, registry: Registry, agency: str, issuer_key: PrivateKey, kind: str,
                claims: Mapping[str, Any], holder_jwks: Sequence[Mapping[str, Any]], now: int,
                valid_for: int, rng: Callable[[int], bytes] = os.urandom,
                decoys: int = 0, zone: dt.tzinfo = dt.UTC) -> list[IssuedCredential]:
    """Several copies of one credential, one per holder key, for unlinkable presentations.

    Every copy has its own salts (so its own digests), its own holder key in ``cnf``, its own
    issuer signature and credential id, and its own random status index (distinct within the
    batch; the ledger refuses an index used before, and the caller draws that copy again). A
    holder shows each verifier a different copy, so two verifiers comparing notes find no common
    salt, digest, key, id, index or signature. Revoking the credential means revoking every copy.
    """
    if not holder_jwks:
        raise ValueError("a batch needs at least one holder key")
    keys = [sdjwt.public_key_from_jwk(j) for j in holder_jwks]
    public = [k.raw if isinstance(k, PublicKey) else sdjwt.jwk_from_ec(k)["x"].encode()
              for k in keys]
    if len(set(public)) != len(public):
        raise ValueError("each copy needs its own holder key: a shared key links the copies")
    used: set[int] = set()
    out = []
    for jwk in holder_jwks:
        index = int.from_bytes(rng(4), "big") % STATUS_LIST_SIZE
        while index in used:
            index = int.from_bytes(rng(4), "big") % STATUS_LIST_SIZE
        used.add(index)
        out.append(issue_credential(registry=registry, agency=agency, issuer_key=issuer_key,
                                    kind=kind, claims=claims, holder_jwk=jwk, now=now,
                                    valid_for=valid_for, rng=rng, status_index=index,
                                    decoys=decoys, zone=zone))
    return out


def status_list(entries: Iterable[tuple[int, str]], size: int = STATUS_LIST_SIZE) -> StatusList:
    """A 2-bit Token Status List from (index, status name) pairs."""
    return StatusList.from_entries(2, size, ((i, _STATUS_VALUE[s]) for i, s in entries))

